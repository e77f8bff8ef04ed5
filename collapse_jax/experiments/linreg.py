"""``collapse-jax recursions-linreg``: seed 004 (Gerstgrasser et al. 2024), linear regression refitted on its own
labels, replacing versus accumulating data, beside the exact errors (and the accumulate bound)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from collapse_jax import _checks
from collapse_jax.experiments import runs
from collapse_jax.results import RunFolder


@dataclass(frozen=True)
class LinregConfig:
    """d = ``dim`` features, T = ``num_samples`` per iteration, label noise ``sigma``, ``iterations`` refits,
    ``replicates`` runs (each with its own fixed design X), ``seed``. Checked on creation."""

    dim: int = field(default=10, metadata={"help": "d, number of features, >= 1"})
    num_samples: int = field(default=20, metadata={"help": "T, samples per iteration, >= d + 2"})
    sigma: float = field(default=1.0, metadata={"help": "label noise standard deviation, in [1e-150, 1e150]"})
    iterations: int = field(default=50, metadata={"help": "model-fitting iterations n, >= 1"})
    replicates: int = field(default=10000, metadata={"help": "Monte Carlo runs, each with its own fixed design X",
                                                     "minimum": 2})
    seed: int = 0

    def __post_init__(self) -> None:
        _checks.positive_int("iterations", self.iterations)
        _checks.random_seed("seed", self.seed)
        runs.at_least_two_replicates(self.replicates)
        _checks.scale("sigma", self.sigma)
        self.regimes()  # checks dim >= 1 and num_samples >= dim + 2

    def regimes(self) -> dict:
        """``{regime: LinearRegressionConfig}`` for replace and accumulate."""
        from collapse_jax.linear_regression_config import LinearRegressionConfig  # (no JAX: --help builds one)

        return {r: LinearRegressionConfig(self.dim, self.num_samples, self.iterations, r)
                for r in ("replace", "accumulate")}


def run(cfg: LinregConfig, out: str | None) -> int:
    from collapse_jax import linear_regression as LR
    from collapse_jax.progress import bar

    d, t_samples, sigma, iterations, reps = cfg.dim, cfg.num_samples, float(cfg.sigma), cfg.iterations, cfg.replicates
    runs.check_results_fit(2 * reps * iterations, "--replicates, --iterations")
    runs.check_results_fit(4 * t_samples * d, "--dim, --num-samples", "one replicate's design X and its products")
    start = time.perf_counter()
    w_star = np.full(d, 1.0 / np.sqrt(d))  # the error does not depend on w*; a unit vector
    folder = RunFolder.create("recursions-linreg", out)
    folder.start({**runs.numerics(), "command": "recursions-linreg", "dim": d, "num_samples": t_samples, "sigma": sigma,
                  "iterations": iterations, "replicates": reps, "seed": cfg.seed, "w_star": w_star,
                  "design": "x ~ N(0, I_d); one fixed design X per replicate, drawn afresh for each replicate"})
    if t_samples <= d + 3:  # documented (docs/recursions.md) but silent before: a user trial, 2026-12-04 (said once
        # the folder is taken: before it, a refused --out printed two lines; a user trial, 2026-12-06)
        print(f"recursions-linreg: warning: T = {t_samples} <= d + 3 = {d + 3}: the error tr (X^T X)^-1 has no "
              "finite variance there, so the Monte Carlo mean converges slowly and its 95% interval is not "
              "trustworthy; use --num-samples >= d + 4 for a check against theory", file=sys.stderr)
    errors, theory = {}, {"replace": LR.replace_error(sigma, d, t_samples, iterations),
                          "accumulate": LR.accumulate_error(sigma, d, t_samples, iterations)}
    with bar(2, "recursions-linreg regimes", "regime") as pbar:
        for regime, lcfg in cfg.regimes().items():
            errors[regime] = LR.simulate(cfg.seed, w_star, sigma, lcfg, reps)
            pbar.update(1)
    bound = LR.accumulate_bound(sigma, d, t_samples)
    n = np.arange(1, iterations + 1)
    folder.save_arrays({"errors_replace": errors["replace"], "errors_accumulate": errors["accumulate"],
                        "theory_replace": theory["replace"], "theory_accumulate": theory["accumulate"],
                        "bound_accumulate": bound, "iteration": n, "w_star": w_star},
                       {"errors_replace": ["replicate", "iteration"], "errors_accumulate": ["replicate", "iteration"],
                        "theory_replace": ["iteration"], "theory_accumulate": ["iteration"], "bound_accumulate": [],
                        "iteration": ["iteration"], "w_star": ["dim"]},
                       {"errors_replace": "||w_hat_n - w*||^2, iterations n = 1..N, replace (each fit on the labels "
                                          "of the last)",
                        "errors_accumulate": "||w_hat_n - w*||^2, iterations n = 1..N, accumulate (each fit on every "
                                             "label so far)",
                        "iteration": "the iteration n = 1..N",
                        "w_star": "the true weights w* (a unit vector; the error does not depend on it)",
                        "theory_replace": "sigma^2 d n / (T - d - 1)",
                        "theory_accumulate": "sigma^2 d / (T - d - 1) sum_{i<=n} 1/i^2",
                        "bound_accumulate": "sigma^2 d / (T - d - 1) pi^2 / 6"})
    summary = {}
    for regime in ("replace", "accumulate"):
        a = runs.agreement(errors[regime], theory[regime])
        summary[regime] = {"last_mc_mean": a["mc_mean"][-1], "last_ci_half_width": a["ci_half_width"][-1],
                           "last_theory": a["theory"][-1], "iterations_theory_inside_ci": int(a["inside"].sum())}
        print(f"{regime:>10}: iteration {iterations}: Monte Carlo {a['mc_mean'][-1]:.4g} +- "
              f"{a['ci_half_width'][-1]:.2g}, theory {a['theory'][-1]:.4g}; theory inside the 95% CI at "
              f"{int(a['inside'].sum())}/{iterations} iterations")
    summary["kernel"] = "jax"  # (the only one; every other recursion command records its kernel: a user trial)
    fig = figure(errors, theory, bound, cfg)
    return runs.finish(folder, fig, "linreg.png", "recursions-linreg", start, summary)


def figure(errors: dict, theory: dict, bound: float, cfg: LinregConfig):
    """A linear-scale and a log-log panel: per regime the Monte Carlo mean with its 95% band (``errors[regime]``
    (R, N)) and the exact error dashed (``theory[regime]`` (N,)); the accumulate bound dotted."""
    plt = runs.pyplot()
    n = np.arange(1, cfg.iterations + 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, scale in zip(axes, ("linear", "log")):
        for regime, color in (("replace", "tab:red"), ("accumulate", "tab:blue")):
            runs.band(ax, n, errors[regime], color, f"{regime} (Monte Carlo mean, 95% band)")
            ax.plot(n, theory[regime], color="k", ls="--", lw=0.9)
        ax.axhline(bound, color="grey", ls=":", lw=1.2, label=r"$\sigma^2 d/(T-d-1)\,\pi^2/6$")
        ax.plot([], [], color="k", ls="--", lw=0.9,
                label=r"exact: $\frac{\sigma^2 d}{T-d-1}\,n$ (replace), "
                      r"$\frac{\sigma^2 d}{T-d-1}\sum_{i\leq n} i^{-2}$ (accumulate)")
        ax.set_yscale(scale)
        ax.set_xscale(scale)
        ax.set_xlabel("model-fitting iteration n")
        ax.set_ylabel(r"$\|\hat w_n - w^*\|^2$")
        ax.set_title("linear scale" if scale == "linear" else "log-log scale", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Seed 004 (Gerstgrasser et al. 2024): linear regression, replace vs accumulate "
                 f"(d={cfg.dim}, T={cfg.num_samples}, sigma={cfg.sigma:g}, {cfg.replicates} replicates)")
    fig.tight_layout()
    return fig


def add_parser(sub) -> None:
    runs.add_command(sub, "recursions-linreg", LinregConfig, run, "seed 004: linear regression on its own labels, "
                                                                  "replace vs accumulate (Gerstgrasser et al. 2024)",
                     run_option_notes={"jax_only": "the linear-regression recursion has only a JAX kernel"})
