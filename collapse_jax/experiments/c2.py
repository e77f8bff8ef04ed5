"""``collapse-jax recursions-c2``: seed 003 Figure 6 / Appendix C.2, settings 1-8 (fresh-data fraction alpha_t and
sample size n_t schedules), for four model classes refitted on their own samples: multinomial, Gaussian, Gaussian
mixture (EM) and logistic regression, beside the theory where there is one."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

from collapse_jax import _checks
from collapse_jax.experiments import runs
from collapse_jax.results import RunFolder

MODELS = ("multinomial", "gaussian", "gmm", "logistic")
TITLES = {"multinomial": "multinomial", "gaussian": "Gaussian", "gmm": "Gaussian mixture (EM)",
          "logistic": "logistic regression"}
YLABELS = {"multinomial": r"$\|\hat p_t - p\|^2$", "gaussian": r"$(\hat\mu-\mu)^2 + (\hat\sigma-\sigma)^2$",
           "gmm": r"$W_1(G, \hat G_t)$", "logistic": r"$\|\hat\theta_t - \theta\|^2$"}
# True Gaussian of the C.2 sweep (the seed's values are not in our text; the mixture and logistic models are
# mixture_refit.SEED003_C2 and logistic.SEED003_C2; see docs/recursions.md).
GAUSSIAN = {"mu": 0.0, "sigma": 1.0}


# The model classes each per-model option applies to (C2Config refuses one set for none of the selected models).
APPLIES_TO = {"steps": ("multinomial", "gaussian"), "base": ("multinomial", "gaussian"), "categories": ("multinomial",),
              "gmm_steps": ("gmm",), "gmm_base": ("gmm",), "gmm_max_iter": ("gmm",),
              "logistic_steps": ("logistic",), "logistic_base": ("logistic",)}


@dataclass(frozen=True)
class C2Config:
    """Which ``models`` to run, ``replicates`` per setting, and per model class the generations T and the base size
    n_0 of the schedules (``steps`` / ``base`` for the multinomial and the Gaussian). Checked on creation."""

    models: tuple[str, ...] = field(default=MODELS, metadata={
        "help": "comma-separated model classes to run, among " + ",".join(MODELS), "default_help": "all"})
    replicates: int = field(default=100, metadata={"help": "Monte Carlo replicates per setting", "minimum": 2})
    steps: int = field(default=200, metadata={"help": "generations T, multinomial and Gaussian, >= 1"})
    base: int = field(default=100, metadata={
        "help": "n_0 for multinomial and Gaussian: n_t = base (fixed), base(t+1) or base(t+1)^2; >= 1 "
                "(Gaussian: >= 2)"})
    categories: int = field(default=10, metadata={"help": "K of the multinomial, p ~ Dirichlet(1); >= 2"})
    gmm_steps: int = field(default=30, metadata={
        "help": "generations T of the Gaussian mixture (EM reads every raw sample), >= 1"})
    gmm_base: int = field(default=50, metadata={"help": "n_0 of the Gaussian mixture, >= 3 K = 9"})
    gmm_max_iter: int = field(default=100, metadata={"help": "EM iterations at most per fit, >= 1"})
    logistic_steps: int = field(default=20, metadata={
        "help": "generations T of logistic regression (Newton reads every raw sample), >= 1"})
    logistic_base: int = field(default=100, metadata={"help": "n_0 of logistic regression, >= 2 (d + 1) = 8"})
    seed: int = field(default=0, metadata={"help": "replicates and the multinomial p"})

    def __post_init__(self) -> None:
        if not self.models or any(m not in MODELS for m in self.models) or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be a comma-separated subset of {','.join(MODELS)}, each at most once, "
                             f"got {','.join(self.models)!r}")
        runs.at_least_two_replicates(self.replicates)
        for name in ("steps", "gmm_steps", "logistic_steps", "base", "gmm_base", "logistic_base",
                     "gmm_max_iter"):
            _checks.positive_int(name, getattr(self, name))
        if self.gmm_max_iter > 2**31 - 1:  # (an int32 loop bound: overflowed in the jitted EM; a user trial)
            raise ValueError(f"gmm_max_iter must be at most 2**31 - 1 = {2**31 - 1:,}, got {self.gmm_max_iter}")
        runs.at_least_two_categories(self.categories)
        _checks.random_seed("seed", self.seed)
        for name, users in APPLIES_TO.items():  # an option no selected model reads would be silently ignored
            default = type(self).__dataclass_fields__[name].default
            if getattr(self, name) != default and not set(users) & set(self.models):
                raise ValueError(f"{name} applies to {' and '.join(users)} only, which the models selected "
                                 f"({','.join(self.models)}) leave out: add {' or '.join(users)} to the models or "
                                 f"leave it at its default {default}")

    def steps_of(self, model: str) -> int:
        return {"gmm": self.gmm_steps, "logistic": self.logistic_steps}.get(model, self.steps)

    def base_of(self, model: str) -> int:
        return {"gmm": self.gmm_base, "logistic": self.logistic_base}.get(model, self.base)


def names(base: int = 100) -> list[str]:
    """Legend labels of settings 1-8 for linear growth ``base (t + 1)``."""
    return ["1 pure synth., n lin.", "2 pure synth., n quad.", "3 accumulate, pure synth.",
            f"4 n={base}, alpha=0.5", "5 n lin., alpha=1/t", "6 n lin., alpha=0.5", "7 n lin., alpha=t^-1/2",
            "8 n lin., alpha=t^-1/4"]


def settings(num_steps: int, base: int = 100):
    """(alpha, n, regime) of seed 003 Appendix C.2's settings 1-8 (our concrete values; see docs/recursions.md)."""
    from collapse_jax import schedules as S

    lin, quad = S.linear_size(base, num_steps), S.quadratic_size(base, num_steps)
    zero = S.pure_synthetic_alpha(num_steps)
    return [(zero, lin, "replace"), (zero, quad, "replace"), (zero, lin, "accumulate"),
            (S.constant_alpha(0.5, num_steps), S.constant_size(base, num_steps), "replace"),
            (S.power_decay_alpha(1.0, num_steps), lin, "replace"), (S.constant_alpha(0.5, num_steps), lin, "replace"),
            (S.power_decay_alpha(0.5, num_steps), lin, "replace"),
            (S.power_decay_alpha(0.25, num_steps), lin, "replace")]


def _by_regime(grid, simulate) -> np.ndarray:
    """Losses (8, R, T + 1): ``simulate(alpha_grid, n_grid, regime) -> (G, R, T + 1)``, one grid per regime."""
    out: list = [None] * len(grid)
    for regime in dict.fromkeys(r for _, _, r in grid):
        idx = [i for i, s in enumerate(grid) if s[2] == regime]
        losses = simulate(np.stack([grid[i][0] for i in idx]), np.stack([grid[i][1] for i in idx]), regime)
        for j, i in enumerate(idx):
            out[i] = losses[j]
    return np.stack(out)


def _tallied(simulate, flagged):
    """Wrap ``simulate(alpha, n, regime) -> Record`` into one returning the risks, with its warnings silenced and
    ``flagged(record, regime)`` (a boolean array per fit) counted in ``tally = [flagged, fits]``."""
    tally = [0, 0]

    def sim(alpha, n, regime):
        with _checks.ignoring_warnings(RuntimeWarning):
            record = simulate(alpha, n, regime)
        flags = flagged(record, regime)
        tally[0] += int(np.sum(flags))
        tally[1] += flags.size
        return record.risk

    return sim, tally


def _check_raw_samples(model: str, grid, max_points: int, options: str) -> None:
    """Refuse, naming the command's ``options``, settings whose refit would need more than ``max_points`` raw samples
    per replicate (the simulator's own message names its API setting ``max_points``, which the command lacks)."""
    from collapse_jax import _sample_buffer

    for _, n, regime in grid:
        need = _sample_buffer.points_needed(n, regime != "replace")
        if need > max_points:
            raise ValueError(f"{model} {regime}: the refit reads every raw sample, so each replicate needs {need:,} "
                             f"points, above the {max_points:,} allowed (time and memory grow with it); "
                             f"lower {options}")


def kernels(model: str):
    """The kernels ``model`` runs on here, by regime (config.json's backend is the one asked for; native and jax draw
    differently): the EM mixture and the logistic model have JAX kernels only."""
    if model in ("multinomial", "gaussian"):
        from collapse_jax import gaussian as G
        from collapse_jax import multinomial as M

        resolve = M.resolve_backend if model == "multinomial" else G.resolve_backend
        return {regime: resolve("auto", regime) for regime in ("replace", "accumulate")}
    return "jax"


def model_runner(model: str, cfg: C2Config, grid, p):
    """Check the inputs of one model class (before any compute) and return a runner ``() -> (losses, theory, note)``.

    ``grid``: the model's :func:`settings`; ``theory`` maps a setting index to its closed-form curve (exact, or
    first-order for logistic regression).
    """
    reps, seed = cfg.replicates, cfg.seed
    if model == "multinomial":
        from collapse_jax import multinomial as M

        def counts(T):  # every setting's sizes, so that the most steps named hold for all (a user trial, 2026-12-07)
            for _, n, regime in settings(T, cfg.base_of(model)):
                M.check_counts(n, regime, M.resolve_backend("auto", regime))

        runs.flagged_steps(counts, cfg.steps_of(model), "--base, --steps")
        for alpha, n, regime in grid:
            M.check_inputs(p, alpha, n, M.MultinomialConfig(regime))

        def run():
            losses = _by_regime(grid, lambda a, n, r: M.simulate(seed, p, a, n, M.MultinomialConfig(r), reps))
            theory = {i: M.theory_risk(p, a, n, M.MultinomialConfig(r)) for i, (a, n, r) in enumerate(grid)}
            return losses, theory, "exact Thm 3.1 / A.1"
    elif model == "gaussian":
        from collapse_jax import gaussian as G

        mu, sigma = GAUSSIAN["mu"], GAUSSIAN["sigma"]
        if cfg.base < 2:  # n_t >= base at every step of every schedule
            raise ValueError(f"base must be >= 2 with the gaussian model (n_t >= 2 for the unbiased variance), got "
                             f"{cfg.base}")
        backends = {regime: G.resolve_backend("auto", regime) for _, _, regime in grid}  # (its refusal is no
        # size's: outside the flagged check)

        def sizes(T):  # exact sizes in this precision, before the folder exists (a user trial)
            for _, n, regime in settings(T, cfg.base_of(model)):
                G.check_sizes(n, backends[regime])

        runs.flagged_steps(sizes, cfg.steps_of(model), "--base, --steps")

        def run():
            losses = _by_regime(grid, lambda a, n, r: G.simulate(seed, mu, sigma, a, n, G.GaussianConfig(r), reps))
            return losses, {i: G.pure_synthetic_w2(sigma, grid[i][1]) for i in (0, 1)}, "exact pure-synthetic W2"
    elif model == "gmm":
        from collapse_jax import mixture_refit as MR

        truth = MR.SEED003_C2
        mix = {r: MR.MixtureConfig(r, max_iter=cfg.gmm_max_iter) for r in ("replace", "accumulate")}
        least = 3 * len(truth["weights"])
        if cfg.gmm_base < least:  # the schedules' smallest n_t is their base
            raise ValueError(f"gmm_base must be >= 3 K = {least} (EM fits 3 K - 1 free parameters), got {cfg.gmm_base}")
        _check_raw_samples("gmm", grid, mix["replace"].max_points, "gmm_steps or gmm_base")
        for alpha, n, regime in grid:
            MR.check_inputs(truth["weights"], truth["means"], truth["sds"], alpha, n, mix[regime])

        def run():
            sim, tally = _tallied(lambda a, n, r: MR.simulate(seed, truth["weights"], truth["means"], truth["sds"],
                                                              a, n, mix[r], reps),
                                  lambda record, r: ~record.converged)
            losses = _by_regime(grid, sim)
            return losses, {}, f"no closed form; {tally[0]} of {tally[1]} EM fits stopped at max_iter"
    elif model == "logistic":
        from collapse_jax import logistic as L

        beta, b0 = L.SEED003_C2["beta"], L.SEED003_C2["intercept"]
        least = 2 * (len(beta) + 1)
        if cfg.logistic_base < least:
            raise ValueError(f"logistic_base must be >= 2 (d + 1) = {least}, got {cfg.logistic_base}")
        _check_raw_samples("logistic", grid, L.LogisticConfig().max_points, "logistic_steps or logistic_base")
        for alpha, n, regime in grid:
            L.check_inputs(beta, b0, alpha, n, L.LogisticConfig(regime))

        def run():
            sim, tally = _tallied(lambda a, n, r: L.simulate(seed, beta, b0, a, n, L.LogisticConfig(r), reps),
                                  lambda record, r: ~record.ok)
            losses = _by_regime(grid, sim)
            theory = {i: L.first_order_risk(beta, b0, a, n, r) for i, (a, n, r) in enumerate(grid)}
            failed = int(np.sum(np.isnan(losses).any(axis=-1)))
            return losses, theory, (f"theory first-order (approximate); a fit failed in {failed} of "
                                    f"{losses.shape[0] * reps} replicates ({tally[0]} of {tally[1]} fits), NaN from "
                                    "then on")
    else:
        raise ValueError(f"models must be among {MODELS}, got {model!r}")
    return run


def run(cfg: C2Config, out: str | None) -> int:
    from collapse_jax import logistic as L
    from collapse_jax import mixture_refit as MR

    models = list(cfg.models)
    steps = {m: cfg.steps_of(m) for m in models}
    bases = {m: cfg.base_of(m) for m in models}
    runs.check_results_fit(8 * cfg.replicates * sum(steps[m] + 1 for m in models),
                           "--replicates, --steps, --gmm-steps, --logistic-steps")
    start = time.perf_counter()
    p = np.random.default_rng(cfg.seed).dirichlet(np.ones(cfg.categories))
    runners = {m: model_runner(m, cfg, settings(steps[m], bases[m]), p) for m in models}  # all checked first
    folder = RunFolder.create("recursions-c2", out)
    truths = {"multinomial": {"p": p}, "gaussian": {"gaussian": GAUSSIAN},
              "gmm": {"gmm": MR.SEED003_C2, "gmm_max_iter": cfg.gmm_max_iter}, "logistic": {"logistic": L.SEED003_C2}}
    folder.start({**runs.numerics(), "command": "recursions-c2", "models": models,
                  **{k: v for m in models for k, v in truths[m].items()},  # the true models of the classes run
                  "settings": {m: names(bases[m]) for m in models}, "steps": steps, "base": bases,
                  "replicates": cfg.replicates, "seed": cfg.seed})
    results, timings = {}, {}
    for m in models:
        t0 = time.perf_counter()
        results[m] = runners[m]()
        timings[m] = time.perf_counter() - t0
        print(f"recursions-c2: {m}: {timings[m]:.1f} s ({results[m][2]})")
    arrays = {m: results[m][0] for m in models}
    # each model class its own generation axis where its T is its own (gmm, logistic), shared by its theory curves
    # (they got one dimension each, step_logistic_theory_1, ..., so that ds.logistic - ds.logistic_theory_1 was an
    # outer product: a user trial, 2026-12-05)
    step_dim = {m: "step" if m in ("multinomial", "gaussian") else f"step_{m}" for m in models}
    labels = {m: ["setting", "replicate", step_dim[m]] for m in models}
    for m in models:
        for i, curve in results[m][1].items():
            arrays[f"{m}_theory_{i + 1}"] = curve
            labels[f"{m}_theory_{i + 1}"] = [step_dim[m]]
    descriptions = {
        "multinomial": "||p_hat_t - p||^2, p ~ Dirichlet(1) (see config)",
        "gaussian": "(mu_hat - mu)^2 + (sigma_hat - sigma)^2 = W2^2, true N(0, 1)",
        "gmm": "W1 between true and fitted mixing measures (EM refit); true mixture in config",
        "logistic": "||theta_hat_t - theta||^2 (intercept included), NaN after a failed fit"}
    for m in models:   # the theory curves said nothing of themselves (a user trial, 2026-12-04)
        descriptions[m] += f"; {results[m][2]}"  # the run's tallies on the risk itself too (failed fits, EM caps)
        for i in results[m][1]:
            descriptions[f"{m}_theory_{i + 1}"] = (f"the {m} model's theory curve for setting {i + 1} (config.json's "
                                                   f"settings; {results[m][2]})")
    coords = {"setting": np.arange(1, 9), **{step_dim[m]: np.arange(arrays[m].shape[-1]) for m in models}}
    folder.save_arrays(arrays, labels, descriptions, coords=coords)  # (axes by position only: a user trial)
    fig = figure(results, p, bases, cfg.replicates)
    return runs.finish(folder, fig, "c2.png", "recursions-c2", start, {"kernel": {m: kernels(m) for m in models}})


def figure(results, p, bases, reps: int):
    """A (models x 2) grid: settings 1-4 left, 5-8 right; mean with 95% band, theory dashed in the setting's colour.

    ``results[model] = (losses (8, R, T + 1), theory {setting: (T + 1,)}, note)``. A NaN (a logistic fit that
    failed, and every later step of its replicate) is left out of that step's mean only, so the steps before a
    failure keep every replicate (dropping whole replicates biased them: t = 0 of setting 1 read 5.2 for 17.8 in
    a user trial); the legend gives each setting's count of replicates with a failure.
    """
    from matplotlib.ticker import MaxNLocator

    from collapse_jax import multinomial as M

    plt = runs.pyplot()
    colors = plt.cm.tab10(np.arange(8))
    models = list(results)
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 3.8 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        losses, theory, note = results[model]
        t = np.arange(losses.shape[-1])
        labels = names(bases[model])
        for col, group in enumerate([range(0, 4), range(4, 8)]):
            ax = axes[row, col]
            for i in group:
                failed = int(np.sum(np.isnan(losses[i]).any(axis=1)))
                if np.sum(~np.isnan(losses[i][:, 0])) >= 2:
                    runs.band(ax, t, losses[i], colors[i], labels[i] + (f" ({failed} failed)" if failed else ""))
                if i in theory:
                    ax.plot(t, theory[i], color=colors[i], ls="--", lw=1.0)
            if model == "multinomial" and col == 0:
                ax.axhline(M.fixed_alpha_limit(p, 0.5, bases[model]), color=colors[3], ls=":", lw=1.2)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            # the note wrapped to the panel (two logistic titles ran into each other), and a panel without a theory
            # curve says so (the Gaussian's fresh-data settings were titled "exact pure-synthetic W2"; a user trial)
            shown_note = note if not theory or any(i in theory for i in group) else "no closed form for these settings"
            ax.set_title(f"{TITLES[model]}: settings {group.start + 1}-{group.stop}\n"
                         + textwrap.fill(shown_note, 75), fontsize=9)
            ax.set_ylabel(YLABELS[model])
            ax.set_xlabel("generation t")
            ax.legend(fontsize=7)
    kinds = {"multinomial": "multinomial exact", "gaussian": "Gaussian exact for pure synthetic",
             "logistic": "logistic first-order"}
    shown = [kinds[m] for m in models if m in kinds]  # (only the models drawn: a user trial, 2026-12-06, read the
    # multinomial's and the Gaussian's theory named above a figure of the mixture and the logistic model alone)
    fig.suptitle(f"Seed 003 Figure 6 / App. C.2 settings 1-8, {reps} replicates, mean with 95% band"
                 + (f"; dashed: theory ({', '.join(shown)})" if shown else "")
                 + ("; dotted: Cor. 3.2 limit" if "multinomial" in models else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def add_parser(sub) -> None:
    runs.add_command(sub, "recursions-c2", C2Config, run, "seed 003 Figure 6 / App. C.2 settings 1-8 for the "
                                                          "multinomial, Gaussian, Gaussian-mixture (EM) and logistic "
                                                          "model classes")
