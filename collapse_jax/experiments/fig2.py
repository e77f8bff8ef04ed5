"""``collapse-jax recursions-fig2``: seed 003 Figure 2, the multinomial's risk on a 4 x 4 grid of fresh-data
fractions alpha_t and sample sizes n_t, without and with accumulation, beside the exact theory (Thm 3.1 / A.1)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from collapse_jax import _checks
from collapse_jax.experiments import runs
from collapse_jax.results import RunFolder

ALPHAS = ("alpha=0.5", "alpha=1/log(t+e)", "alpha=t^-1/2", "alpha=t^-2")
SIZES = ("n=10", "n=10(t+1)", "n=10(t+1)^2", "n=10(t+1)^2.5")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


@dataclass(frozen=True)
class MultinomialFigureConfig:
    """Seed 003 Figures 2 and 3: ``replicates`` curves per setting over ``steps`` generations of a multinomial on
    ``categories`` categories whose true ``p ~ Dirichlet(1)`` is drawn from ``seed`` (which also seeds the
    replicates). Checked on creation (ValueError naming the field)."""

    replicates: int = field(default=100, metadata={"help": "Monte Carlo replicates per curve", "minimum": 2})
    steps: int = field(default=200, metadata={"help": "generations T, >= 1"})
    categories: int = field(default=10, metadata={"help": "K of the multinomial, p ~ Dirichlet(1); >= 2"})
    seed: int = field(default=0, metadata={"help": "replicates and the multinomial p"})

    def __post_init__(self) -> None:
        _checks.positive_int("steps", self.steps)
        runs.at_least_two_replicates(self.replicates)
        runs.at_least_two_categories(self.categories)
        _checks.random_seed("seed", self.seed)

    def true_p(self) -> np.ndarray:
        """(categories,) true probabilities, ``default_rng(seed).dirichlet(ones(categories))``."""
        return np.random.default_rng(self.seed).dirichlet(np.ones(self.categories))


def schedules(num_steps: int):
    """(alpha, n), each (16, T + 1): the settings alphas x sizes in row-major order (:data:`ALPHAS`, :data:`SIZES`)."""
    from collapse_jax import schedules as S

    alphas = [S.constant_alpha(0.5, num_steps), S.inverse_log_alpha(num_steps), S.power_decay_alpha(0.5, num_steps),
              S.power_decay_alpha(2.0, num_steps)]
    sizes = [S.constant_size(10, num_steps), S.linear_size(10, num_steps), S.quadratic_size(10, num_steps),
             S.polynomial_size(10, 2.5, num_steps)]
    alpha = np.stack([a for a in alphas for _ in sizes])
    n = np.stack([m for _ in alphas for m in sizes])
    return alpha, n


def run(cfg: MultinomialFigureConfig, out: str | None) -> int:
    from collapse_jax import multinomial as M

    runs.check_results_fit(2 * len(ALPHAS) * len(SIZES) * cfg.replicates * (cfg.steps + 1), "--replicates, --steps")
    p = cfg.true_p()
    start = time.perf_counter()
    alpha, n = schedules(cfg.steps)
    regimes = ("replace", "accumulate")  # both before anything runs (the accumulate pool's limit)
    runs.flagged_steps(lambda steps: [M.check_counts(schedules(steps)[1], r, M.resolve_backend("auto", r))
                                      for r in regimes], cfg.steps, "--steps")  # (named: a user trial, 2026-12-07)
    for regime in regimes:
        M.check_inputs(p, alpha, n, M.MultinomialConfig(regime))
    folder = RunFolder.create("recursions-fig2", out)
    folder.start({**runs.numerics(), "command": "recursions-fig2", "p": p, "alphas": ALPHAS, "sizes": SIZES,
                  "num_steps": cfg.steps, "replicates": cfg.replicates, "seed": cfg.seed})
    losses, theory = {}, {}
    for regime in ("replace", "accumulate"):
        mcfg = M.MultinomialConfig(regime)
        losses[regime] = M.simulate(cfg.seed, p, alpha, n, mcfg, cfg.replicates)
        theory[regime] = np.stack([M.theory_risk(p, a, m, mcfg) for a, m in zip(alpha, n)])
    folder.save_arrays({"losses_replace": losses["replace"], "losses_accumulate": losses["accumulate"],
                        "theory_replace": theory["replace"], "theory_accumulate": theory["accumulate"],
                        "alpha": alpha, "n": n, "p": p},
                       {"losses_replace": ["setting", "replicate", "step"],
                        "losses_accumulate": ["setting", "replicate", "step"],
                        "theory_replace": ["setting", "step"], "theory_accumulate": ["setting", "step"],
                        "alpha": ["setting", "step"], "n": ["setting", "step"], "p": ["category"]},
                       {"losses_replace": "||p_hat_t - p||^2 per replicate, replace regime; settings = alphas x sizes "
                                          "(row-major, config.json's alphas and sizes)",
                        "losses_accumulate": "||p_hat_t - p||^2 per replicate, accumulate regime; same settings",
                        "theory_replace": "exact E||p_hat_t - p||^2, replace (seed 003 Thm 3.1)",
                        "theory_accumulate": "exact E||p_hat_t - p||^2, accumulate (seed 003 Thm A.1)",
                        "alpha": "alpha_t, the fresh-data share of each generation (index 0: the real data)",
                        "n": "n_t, each generation's sample size", "p": "the true distribution"},
                       coords={"setting": [f"{a}, {s}" for a in ALPHAS for s in SIZES],  # (axes by position only:
                               "step": np.arange(cfg.steps + 1)})  # a user trial, 2026-12-06)
    fig = figure(losses, theory, p, cfg.replicates)
    kernels = {regime: M.resolve_backend("auto", regime) for regime in ("replace", "accumulate")}
    return runs.finish(folder, fig, "fig2.png", "recursions-fig2", start, {"kernel": kernels})


def figure(losses: dict, theory: dict, p: np.ndarray, reps: int):
    """2 x 4 panels (no accumulation / accumulation x alpha schedule), one band per size schedule, exact theory
    dashed, r_0 = s/n_0 dotted. ``losses[regime]``: (16, R, T + 1); ``theory[regime]``: (16, T + 1)."""
    plt = runs.pyplot()
    t = np.arange(losses["replace"].shape[-1])
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharex=True, sharey="row")
    r0 = (1 - np.sum(p ** 2)) / 10
    for row, regime in enumerate(("replace", "accumulate")):
        for col, aname in enumerate(ALPHAS):
            ax = axes[row, col]
            for j, nname in enumerate(SIZES):
                g = col * 4 + j
                runs.band(ax, t, losses[regime][g], COLORS[j], nname)
                ax.plot(t, theory[regime][g], color="k", ls="--", lw=0.8)
            ax.axhline(r0, color="grey", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{'no accumulation' if regime == 'replace' else 'accumulation'}: {aname}", fontsize=10)
            if row == 1:
                ax.set_xlabel("generation t")
            if col == 0:
                ax.set_ylabel(r"$\|\hat p_t - p\|^2$")
    # one legend under the panels (in the first panel it hid its curves for t < 45; a figure trial, 2026-12-06)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=len(SIZES), fontsize=8,
               title="mean, 95% band; -- exact", title_fontsize=8, frameon=False)
    fig.suptitle(f"Seed 003 Figure 2: multinomial K={p.size}, {reps} replicates (dotted: r_0 = s/n_0)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def add_parser(sub) -> None:
    runs.add_command(sub, "recursions-fig2", MultinomialFigureConfig, run,
                     "seed 003 Figure 2: 4 x 4 alpha_t x n_t grid")
