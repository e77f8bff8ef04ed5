"""``collapse-jax recursions-fig3``: seed 003 Figure 3, the multinomial trained on purely synthetic data with
accumulation for four sample-size schedules, beside the exact risk (Thm A.1)."""

from __future__ import annotations

import time

import numpy as np

from collapse_jax.experiments import runs
from collapse_jax.experiments.fig2 import COLORS, SIZES, MultinomialFigureConfig
from collapse_jax.results import RunFolder


def sizes(num_steps: int) -> np.ndarray:
    """(4, T + 1) sample sizes n_t of :data:`collapse_jax.experiments.fig2.SIZES`."""
    from collapse_jax import schedules as S

    return np.stack([S.constant_size(10, num_steps), S.linear_size(10, num_steps), S.quadratic_size(10, num_steps),
                     S.polynomial_size(10, 2.5, num_steps)])


def run(cfg: MultinomialFigureConfig, out: str | None) -> int:
    from collapse_jax import multinomial as M
    from collapse_jax import schedules as S

    runs.check_results_fit(len(SIZES) * cfg.replicates * (cfg.steps + 1), "--replicates, --steps")
    p = cfg.true_p()
    start = time.perf_counter()
    n = sizes(cfg.steps)
    alpha = np.stack([S.pure_synthetic_alpha(cfg.steps)] * 4)
    mcfg = M.MultinomialConfig("accumulate")
    backend = M.resolve_backend("auto", "accumulate")
    runs.flagged_steps(lambda steps: M.check_counts(sizes(steps), "accumulate", backend), cfg.steps, "--steps")
    M.check_inputs(p, alpha, n, mcfg)
    folder = RunFolder.create("recursions-fig3", out)
    folder.start({**runs.numerics(), "command": "recursions-fig3", "p": p, "sizes": list(SIZES), "num_steps": cfg.steps,
                  "replicates": cfg.replicates, "seed": cfg.seed})
    losses = M.simulate(cfg.seed, p, alpha, n, mcfg, cfg.replicates)
    theory = np.stack([M.accumulate_risk(p, a, m) for a, m in zip(alpha, n)])
    folder.save_arrays({"losses": losses, "theory": theory, "n": n, "alpha": alpha, "p": p},
                       {"losses": ["setting", "replicate", "step"], "theory": ["setting", "step"],
                        "n": ["setting", "step"], "alpha": ["setting", "step"], "p": ["category"]},
                       {"losses": "||p_hat_t - p||^2 per replicate, pure synthetic accumulation; one setting per size "
                                  "schedule (config.json's sizes)",
                        "theory": "exact E||p_hat_t - p||^2 (seed 003 Thm A.1)",
                        "n": "n_t, each generation's sample size",
                        "alpha": "alpha_t (pure synthetic: 0 after the real data at index 0)",
                        "p": "the true distribution"},
                       coords={"setting": list(SIZES), "step": np.arange(cfg.steps + 1)})  # (axes by position
    # only: a user trial, 2026-12-06)
    fig = figure(losses, theory, p, cfg.replicates)
    return runs.finish(folder, fig, "fig3.png", "recursions-fig3", start,
                       {"kernel": M.resolve_backend("auto", "accumulate")})


def figure(losses: np.ndarray, theory: np.ndarray, p: np.ndarray, reps: int):
    """One panel: a band per size schedule (``losses`` (4, R, T + 1)), Thm A.1 dashed (``theory`` (4, T + 1))."""
    plt = runs.pyplot()
    t = np.arange(losses.shape[-1])
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for j, (name, color) in enumerate(zip(SIZES, COLORS)):
        runs.band(ax, t, losses[j], color, name)
        # (in its curve's colour: four black dashed lines could not be told apart; a user trial, 2026-12-06)
        ax.plot(t, theory[j], color=color, ls="--", lw=1.0)
    ax.axhline((1 - np.sum(p ** 2)) / 10, color="grey", ls=":", lw=1, label="r_0 = s/n_0")
    ax.set_xlabel("generation t")
    ax.set_ylabel(r"$\|\hat p_t - p\|^2$")
    ax.plot([], [], color="k", ls="--", lw=1.0, label="Thm A.1 (exact), each in its curve's colour")
    ax.set_title(f"Seed 003 Figure 3: pure synthetic with accumulation (K={p.size}, {reps} replicates;\n"
                 "mean with 95% band)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)  # (inside, it hid the
    # largest schedule's curve and band from t = 105; a figure trial, 2026-12-06)
    fig.tight_layout()
    return fig


def add_parser(sub) -> None:
    runs.add_command(sub, "recursions-fig3", MultinomialFigureConfig, run,
                     "seed 003 Figure 3: pure synthetic + accumulation")
