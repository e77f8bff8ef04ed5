"""Command-line experiments for the iterative-training recursions (seeds 003 and 004).

Subcommands: ``validate`` (theory vs Monte Carlo table -> docs/validation.md), ``recursions-fig2`` (seed 003
Figure 2), ``recursions-fig3`` (seed 003 Figure 3), plus those registered by :func:`add_parser` below (among them
seed 004's ``recursions-linreg`` and ``recursions-w2``). Each writes a run folder (config, labelled arrays, plots,
manifest) through :class:`collapse_jax.results.RunFolder`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from collapse_jax import cli_options as opts
from collapse_jax import _checks
from collapse_jax.results import RunFolder, atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_ci(losses):
    """Mean over replicates (axis 0) and the half-width of its 95% confidence interval (Student t)."""
    from scipy import stats

    half = stats.t.ppf(0.975, losses.shape[0] - 1) * losses.std(0, ddof=1) / np.sqrt(losses.shape[0])
    return losses.mean(0), half


def _band(ax, t, losses, color, label):
    """Mean over replicates with a 95% confidence band for the mean (Student t)."""
    mean, half = _mean_ci(losses)
    ax.plot(t, mean, color=color, lw=1.4, label=label)
    ax.fill_between(t, np.maximum(mean - half, 1e-300), mean + half, color=color, alpha=0.25, lw=0)


# ------------------------------------------------------------------------------------------------------------------
# Figure 2 of seed 003
# ------------------------------------------------------------------------------------------------------------------
FIG2_ALPHAS = ("alpha=0.5", "alpha=1/log(t+e)", "alpha=t^-1/2", "alpha=t^-2")
FIG2_SIZES = ("n=10", "n=10(t+1)", "n=10(t+1)^2", "n=10(t+1)^2.5")


def fig2_schedules(num_steps: int):
    from collapse_jax import schedules as S

    alphas = [S.constant_alpha(0.5, num_steps), S.inverse_log_alpha(num_steps), S.power_decay_alpha(0.5, num_steps),
              S.power_decay_alpha(2.0, num_steps)]
    sizes = [S.constant_size(10, num_steps), S.linear_size(10, num_steps), S.quadratic_size(10, num_steps),
             S.polynomial_size(10, 2.5, num_steps)]
    alpha = np.stack([a for a in alphas for _ in sizes])
    n = np.stack([m for _ in alphas for m in sizes])
    return alpha, n


def _multinomial_args(args) -> tuple[int, int, np.ndarray]:
    """Checked ``--steps``, ``--replicates`` and the true ``p ~ Dirichlet(1)`` on ``--categories`` (``--seed``)."""
    num_steps = _checks.positive_int("steps", args.steps)
    reps = _checks.positive_int("replicates", args.replicates)
    k = _checks.positive_int("categories", args.categories)
    return num_steps, reps, np.random.default_rng(args.seed).dirichlet(np.ones(k))


def cmd_fig2(args) -> int:
    from collapse_jax import multinomial as M

    num_steps, reps, p = _multinomial_args(args)
    start = time.perf_counter()
    alpha, n = fig2_schedules(num_steps)
    M.check_inputs(p, alpha, n, M.MultinomialConfig())
    run = RunFolder.create("recursions-fig2", args.out)
    run.write_config({"command": "recursions-fig2", "p": p, "alphas": FIG2_ALPHAS, "sizes": FIG2_SIZES,
                      "num_steps": num_steps, "replicates": reps, "seed": args.seed})
    losses, theory = {}, {}
    for regime in ("replace", "accumulate"):
        cfg = M.MultinomialConfig(regime)
        losses[regime] = M.simulate(args.seed, p, alpha, n, cfg, reps)
        theory[regime] = np.stack([M.theory_risk(p, a, m, cfg) for a, m in zip(alpha, n)])
    run.save_arrays({"losses_replace": losses["replace"], "losses_accumulate": losses["accumulate"],
                     "theory_replace": theory["replace"], "theory_accumulate": theory["accumulate"],
                     "alpha": alpha, "n": n, "p": p},
                    {"losses_replace": ["setting", "replicate", "step"],
                     "losses_accumulate": ["setting", "replicate", "step"],
                     "theory_replace": ["setting", "step"], "theory_accumulate": ["setting", "step"],
                     "alpha": ["setting", "step"], "n": ["setting", "step"], "p": ["category"]},
                    {"losses_replace": "||p_hat_t - p||^2, settings = alphas x sizes (row-major)"})
    plt = _plt()
    t = np.arange(num_steps + 1)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharex=True, sharey="row")
    r0 = (1 - np.sum(p ** 2)) / 10
    for row, regime in enumerate(("replace", "accumulate")):
        for col, aname in enumerate(FIG2_ALPHAS):
            ax = axes[row, col]
            for j, nname in enumerate(FIG2_SIZES):
                g = col * 4 + j
                _band(ax, t, losses[regime][g], colors[j], nname)
                ax.plot(t, theory[regime][g], color="k", ls="--", lw=0.8)
            ax.axhline(r0, color="grey", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{'no accumulation' if regime == 'replace' else 'accumulation'}: {aname}", fontsize=10)
            if row == 1:
                ax.set_xlabel("generation t")
            if col == 0:
                ax.set_ylabel(r"$\|\hat p_t - p\|^2$")
    axes[0, 0].legend(fontsize=8, title="mean, 95% band; -- exact", title_fontsize=8)
    fig.suptitle(f"Seed 003 Figure 2: multinomial K={p.size}, {reps} replicates (dotted: r_0 = s/n_0)")
    fig.tight_layout()
    return _finish(run, fig, "fig2.png", "recursions-fig2", start)


def _finish(run, fig, filename: str, command: str, start: float, summary: dict | None = None) -> int:
    """Save the figure, mark the run complete with its wall time (and ``summary``), and say where it went."""
    run.save_figure(fig, filename)
    _plt().close(fig)
    elapsed = time.perf_counter() - start
    run.finish({"elapsed_s": elapsed, **(summary or {})})
    print(f"{command}: {run.path} ({elapsed:.1f} s end to end)")
    return 0


# ------------------------------------------------------------------------------------------------------------------
# Figure 3 of seed 003: pure synthetic with accumulation
# ------------------------------------------------------------------------------------------------------------------
def cmd_fig3(args) -> int:
    from collapse_jax import multinomial as M
    from collapse_jax import schedules as S

    num_steps, reps, p = _multinomial_args(args)
    start = time.perf_counter()
    names = ["n=10", "n=10(t+1)", "n=10(t+1)^2", "n=10(t+1)^2.5"]
    n = np.stack([S.constant_size(10, num_steps), S.linear_size(10, num_steps), S.quadratic_size(10, num_steps),
                  S.polynomial_size(10, 2.5, num_steps)])
    alpha = np.stack([S.pure_synthetic_alpha(num_steps)] * 4)
    cfg = M.MultinomialConfig("accumulate")
    M.check_inputs(p, alpha, n, cfg)
    run = RunFolder.create("recursions-fig3", args.out)
    run.write_config({"command": "recursions-fig3", "p": p, "sizes": names, "num_steps": num_steps,
                      "replicates": reps, "seed": args.seed})
    losses = M.simulate(args.seed, p, alpha, n, cfg, reps)
    theory = np.stack([M.accumulate_risk(p, a, m) for a, m in zip(alpha, n)])
    run.save_arrays({"losses": losses, "theory": theory, "n": n},
                    {"losses": ["setting", "replicate", "step"], "theory": ["setting", "step"],
                     "n": ["setting", "step"]})
    plt = _plt()
    t = np.arange(num_steps + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j, (name, color) in enumerate(zip(names, ["tab:blue", "tab:orange", "tab:green", "tab:red"])):
        _band(ax, t, losses[j], color, name)
        ax.plot(t, theory[j], color="k", ls="--", lw=0.8)
    ax.axhline((1 - np.sum(p ** 2)) / 10, color="grey", ls=":", lw=1, label="r_0 = s/n_0")
    ax.set_xlabel("generation t")
    ax.set_ylabel(r"$\|\hat p_t - p\|^2$")
    ax.set_title(f"Seed 003 Figure 3: pure synthetic with accumulation (K={p.size}, {reps} replicates; -- Thm A.1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(run, fig, "fig3.png", "recursions-fig3", start)


# ------------------------------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # theory checks run in float64
    from collapse_jax import validate as V

    reps = _checks.positive_int("replicates", args.replicates)
    steps = _checks.positive_int("steps", args.steps)
    start = time.perf_counter()
    run = RunFolder.create("validate", args.out)
    run.write_config({"command": "validate", "replicates": reps, "steps": steps, "seed": args.seed})
    table = V.run_all(num_replicates=reps, num_steps=steps, seed=args.seed, extra=V.extra_checks(reps, args.seed))
    elapsed = time.perf_counter() - start
    bad = [i for i, r in enumerate(table.rows, 1) if not r.agree]
    md = V.render(table, reps=reps, steps=steps, seed=args.seed, elapsed=elapsed,
                  command=f"PYTHONPATH=. python3 -m collapse_jax.recursions_cli validate --replicates {reps} --steps {steps} "
                          f"--seed {args.seed}")
    run.save_text("validation.md", md)
    if args.doc:
        atomic_write_text(Path(args.doc), md)
    print(table.markdown())
    print(f"\n{len(table.rows)} checks, {len(table.rows) - len(bad)} agree, disagreements: {bad or 'none'} "
          f"({elapsed:.0f} s); written to {run.path}" + (f" and {args.doc}" if args.doc else ""))
    run.finish({"rows": len(table.rows), "disagree": bad, "elapsed_s": elapsed})
    return 0


# ------------------------------------------------------------------------------------------------------------------
# Seed 003 Figure 6 / Appendix C.2, settings 1-8, for the four model classes
# ------------------------------------------------------------------------------------------------------------------
C2_MODELS = ("multinomial", "gaussian", "gmm", "logistic")
C2_TITLES = {"multinomial": "multinomial", "gaussian": "Gaussian", "gmm": "Gaussian mixture (EM)",
             "logistic": "logistic regression"}
C2_YLABELS = {"multinomial": r"$\|\hat p_t - p\|^2$", "gaussian": r"$(\hat\mu-\mu)^2 + (\hat\sigma-\sigma)^2$",
              "gmm": r"$W_1(G, \hat G_t)$", "logistic": r"$\|\hat\theta_t - \theta\|^2$"}
# True Gaussian of the C.2 sweep (the seed's values are not in our text; the mixture and logistic models are
# mixture_refit.SEED003_C2 and logistic.SEED003_C2; see docs/recursions.md).
C2_GAUSSIAN = {"mu": 0.0, "sigma": 1.0}


def c2_names(base: int = 100) -> list[str]:
    """Legend labels of settings 1-8 for linear growth ``base (t + 1)``."""
    return ["1 pure synth., n lin.", "2 pure synth., n quad.", "3 accumulate, pure synth.",
            f"4 n={base}, alpha=0.5", "5 n lin., alpha=1/t", "6 n lin., alpha=0.5", "7 n lin., alpha=t^-1/2",
            "8 n lin., alpha=t^-1/4"]


C2_NAMES = c2_names()


def c2_settings(num_steps: int, base: int = 100):
    """(alpha, n, regime) of seed 003 Appendix C.2's settings 1-8 (our concrete values; see docs/recursions.md)."""
    from collapse_jax import schedules as S

    lin, quad = S.linear_size(base, num_steps), S.quadratic_size(base, num_steps)
    zero = S.pure_synthetic_alpha(num_steps)
    return [(zero, lin, "replace"), (zero, quad, "replace"), (zero, lin, "accumulate"),
            (S.constant_alpha(0.5, num_steps), S.constant_size(base, num_steps), "replace"),
            (S.power_decay_alpha(1.0, num_steps), lin, "replace"), (S.constant_alpha(0.5, num_steps), lin, "replace"),
            (S.power_decay_alpha(0.5, num_steps), lin, "replace"),
            (S.power_decay_alpha(0.25, num_steps), lin, "replace")]


def _c2_run(settings, simulate) -> np.ndarray:
    """Losses (8, R, T + 1): ``simulate(alpha_grid, n_grid, regime) -> (G, R, T + 1)``, one grid per regime."""
    out: list = [None] * len(settings)
    for regime in dict.fromkeys(r for _, _, r in settings):
        idx = [i for i, s in enumerate(settings) if s[2] == regime]
        losses = simulate(np.stack([settings[i][0] for i in idx]), np.stack([settings[i][1] for i in idx]), regime)
        for j, i in enumerate(idx):
            out[i] = losses[j]
    return np.stack(out)


def _tallied(simulate, flagged):
    """Wrap ``simulate(alpha, n, regime) -> Record`` into one returning the risks, with its warnings silenced and
    ``flagged(record, regime)`` (a boolean array per fit) counted in ``tally = [flagged, fits]``."""
    import warnings

    tally = [0, 0]

    def sim(alpha, n, regime):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            record = simulate(alpha, n, regime)
        flags = flagged(record, regime)
        tally[0] += int(np.sum(flags))
        tally[1] += flags.size
        return record.risk

    return sim, tally


def _c2_model(model: str, args, settings, p):
    """Check the inputs of one model class (before any compute) and return a runner ``() -> (losses, theory, note)``.

    ``theory`` maps a setting index to its closed-form curve (exact, or first-order for logistic regression).
    """
    reps, seed = args.replicates, args.seed
    if model == "multinomial":
        from collapse_jax import multinomial as M

        for alpha, n, regime in settings:
            M.check_inputs(p, alpha, n, M.MultinomialConfig(regime))

        def run():
            losses = _c2_run(settings, lambda a, n, r: M.simulate(seed, p, a, n, M.MultinomialConfig(r), reps))
            theory = {i: M.theory_risk(p, a, n, M.MultinomialConfig(r)) for i, (a, n, r) in enumerate(settings)}
            return losses, theory, "exact Thm 3.1 / A.1"
    elif model == "gaussian":
        from collapse_jax import gaussian as G

        mu, sigma = C2_GAUSSIAN["mu"], C2_GAUSSIAN["sigma"]
        for alpha, n, regime in settings:
            if np.any(n < 2):
                raise ValueError("Gaussian: n must be >= 2 at every step (unbiased variance)")

        def run():
            losses = _c2_run(settings, lambda a, n, r: G.simulate(seed, mu, sigma, a, n, G.GaussianConfig(r),
                                                                         reps))
            return losses, {i: G.pure_synthetic_w2(sigma, settings[i][1]) for i in (0, 1)}, "exact pure-synthetic W2"
    elif model == "gmm":
        from collapse_jax import mixture_refit as MR

        truth = MR.SEED003_C2
        cfg = {r: MR.MixtureConfig(r, max_iter=args.gmm_max_iter) for r in ("replace", "accumulate")}
        for alpha, n, regime in settings:
            MR.check_inputs(truth["weights"], truth["means"], truth["sds"], alpha, n, cfg[regime])

        def run():
            sim, tally = _tallied(lambda a, n, r: MR.simulate(seed, truth["weights"], truth["means"], truth["sds"],
                                                              a, n, cfg[r], reps),
                                  lambda record, r: record.iterations >= cfg[r].max_iter)
            losses = _c2_run(settings, sim)
            return losses, {}, f"no closed form; {tally[0]} of {tally[1]} EM fits stopped at max_iter"
    elif model == "logistic":
        from collapse_jax import logistic as L

        beta, b0 = L.SEED003_C2["beta"], L.SEED003_C2["intercept"]
        for alpha, n, regime in settings:
            L.check_inputs(beta, b0, alpha, n, L.LogisticConfig(regime))

        def run():
            sim, tally = _tallied(lambda a, n, r: L.simulate(seed, beta, b0, a, n, L.LogisticConfig(r), reps),
                                  lambda record, r: ~record.ok)
            losses = _c2_run(settings, sim)
            theory = {i: L.first_order_risk(beta, b0, a, n, r) for i, (a, n, r) in enumerate(settings)}
            return losses, theory, f"theory first-order (approximate); {tally[0]} of {tally[1]} fits failed (NaN)"
    else:
        raise ValueError(f"models must be among {C2_MODELS}, got {model!r}")
    return run


def _c2_plot(results, p, bases, reps: int):
    """A (models x 2) grid: settings 1-4 left, 5-8 right; mean with 95% band, theory dashed in the setting's colour.

    Replicates with a NaN (a failed logistic fit) are left out of the mean; the panel title gives their count.
    """
    from matplotlib.ticker import MaxNLocator

    from collapse_jax import multinomial as M

    plt = _plt()
    colors = plt.cm.tab10(np.arange(8))
    models = list(results)
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 3.8 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        losses, theory, note = results[model]
        t = np.arange(losses.shape[-1])
        names = c2_names(bases[model])
        for col, group in enumerate([range(0, 4), range(4, 8)]):
            ax = axes[row, col]
            for i in group:
                finite = losses[i][np.all(np.isfinite(losses[i]), axis=1)]
                if finite.shape[0] >= 2:
                    _band(ax, t, finite, colors[i], names[i])
                if i in theory:
                    ax.plot(t, theory[i], color=colors[i], ls="--", lw=1.0)
            if model == "multinomial" and col == 0:
                ax.axhline(M.fixed_alpha_limit(p, 0.5, bases[model]), color=colors[3], ls=":", lw=1.2)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{C2_TITLES[model]}: settings {group.start + 1}-{group.stop}\n{note}", fontsize=9)
            ax.set_ylabel(C2_YLABELS[model])
            ax.set_xlabel("generation t")
            ax.legend(fontsize=7)
    fig.suptitle(f"Seed 003 Figure 6 / App. C.2 settings 1-8, {reps} replicates, mean with 95% band; dashed: theory "
                 "(multinomial exact, Gaussian exact for pure synthetic, logistic first-order); dotted: Cor. 3.2 limit",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def cmd_c2(args) -> int:
    from collapse_jax import logistic as L
    from collapse_jax import mixture_refit as MR

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in C2_MODELS]
    if bad or not models:
        raise ValueError(f"models must be a comma-separated subset of {','.join(C2_MODELS)}, got {args.models!r}")
    reps = _checks.positive_int("replicates", args.replicates)
    steps = {"multinomial": _checks.positive_int("steps", args.steps), "gaussian": args.steps,
             "gmm": _checks.positive_int("gmm_steps", args.gmm_steps),
             "logistic": _checks.positive_int("logistic_steps", args.logistic_steps)}
    bases = {"multinomial": _checks.positive_int("base", args.base), "gaussian": args.base,
             "gmm": _checks.positive_int("gmm_base", args.gmm_base),
             "logistic": _checks.positive_int("logistic_base", args.logistic_base)}
    _checks.positive_int("gmm_max_iter", args.gmm_max_iter)
    start = time.perf_counter()
    p = np.random.default_rng(args.seed).dirichlet(np.ones(_checks.positive_int("categories", args.categories)))
    settings_of = {m: c2_settings(steps[m], bases[m]) for m in models}
    runners = {m: _c2_model(m, args, settings_of[m], p) for m in models}  # every input checked before compute
    run = RunFolder.create("recursions-c2", args.out)
    run.write_config({"command": "recursions-c2", "models": models, "p": p,
                      "settings": {m: c2_names(bases[m]) for m in models},
                      "steps": {m: steps[m] for m in models}, "base": {m: bases[m] for m in models},
                      "replicates": reps, "seed": args.seed, "gaussian": C2_GAUSSIAN, "gmm": MR.SEED003_C2,
                      "gmm_max_iter": args.gmm_max_iter, "logistic": L.SEED003_C2})
    results, timings = {}, {}
    for m in models:
        t0 = time.perf_counter()
        results[m] = runners[m]()
        timings[m] = time.perf_counter() - t0
        print(f"recursions-c2: {m}: {timings[m]:.1f} s ({results[m][2]})")
    arrays = {m: results[m][0] for m in models}
    labels = {m: ["setting", "replicate", "step"] for m in models}
    for m in models:
        for i, curve in results[m][1].items():
            arrays[f"{m}_theory_{i + 1}"] = curve
            labels[f"{m}_theory_{i + 1}"] = ["step"]
    run.save_arrays(arrays, labels, {
        "multinomial": "||p_hat_t - p||^2, p ~ Dirichlet(1) (see config)",
        "gaussian": "(mu_hat - mu)^2 + (sigma_hat - sigma)^2 = W2^2, true N(0, 1)",
        "gmm": "W1 between true and fitted mixing measures (EM refit); true mixture in config",
        "logistic": "||theta_hat_t - theta||^2 (intercept included), NaN after a failed fit; theory first-order"})
    fig = _c2_plot(results, p, bases, reps)
    return _finish(run, fig, "c2.png", "recursions-c2", start)


# ------------------------------------------------------------------------------------------------------------------
# Seed 004: linear regression replace vs accumulate (Gerstgrasser et al. 2024), Gaussian W2 (Shumailov et al. 2024)
# ------------------------------------------------------------------------------------------------------------------
def _at_least_two_replicates(value) -> int:
    if _checks.positive_int("replicates", value) < 2:
        raise ValueError(f"replicates must be an integer >= 2 (a confidence band needs two), got {value!r}")
    return int(value)


def _agreement(mc, theory):
    """Per-step Monte Carlo mean, 95% half-width, theory and whether theory lies inside the interval."""
    mean, half = _mean_ci(mc)
    return {"mc_mean": mean, "ci_half_width": half, "theory": theory, "inside": np.abs(mean - theory) <= half}


def cmd_linreg(args) -> int:
    from collapse_jax import linear_regression as LR
    from collapse_jax.progress import bar

    iterations = _checks.positive_int("iterations", args.iterations)
    reps = _at_least_two_replicates(args.replicates)
    sigma = _checks.in_interval("sigma", args.sigma, 0.0, math.inf, low_open=True, high_open=True)
    configs = {r: LR.LinearRegressionConfig(args.dim, args.num_samples, iterations, r)
               for r in ("replace", "accumulate")}  # checks dim >= 1 and num_samples >= dim + 2
    d, t_samples = args.dim, args.num_samples
    start = time.perf_counter()
    w_star = np.full(d, 1.0 / np.sqrt(d))  # the error does not depend on w*; a unit vector
    run = RunFolder.create("recursions-linreg", args.out)
    run.write_config({"command": "recursions-linreg", "dim": d, "num_samples": t_samples, "sigma": sigma,
                      "iterations": iterations, "replicates": reps, "seed": args.seed, "w_star": w_star,
                      "design": "x ~ N(0, I_d); one fixed design X per replicate, drawn afresh for each replicate"})
    errors, theory = {}, {"replace": LR.replace_error(sigma, d, t_samples, iterations),
                          "accumulate": LR.accumulate_error(sigma, d, t_samples, iterations)}
    with bar(2, "recursions-linreg regimes", "regime") as pbar:
        for regime, cfg in configs.items():
            errors[regime] = LR.simulate(args.seed, w_star, sigma, cfg, reps)
            pbar.update(1)
    bound = LR.accumulate_bound(sigma, d, t_samples)
    n = np.arange(1, iterations + 1)
    run.save_arrays({"errors_replace": errors["replace"], "errors_accumulate": errors["accumulate"],
                     "theory_replace": theory["replace"], "theory_accumulate": theory["accumulate"],
                     "bound_accumulate": bound, "iteration": n, "w_star": w_star},
                    {"errors_replace": ["replicate", "iteration"], "errors_accumulate": ["replicate", "iteration"],
                     "theory_replace": ["iteration"], "theory_accumulate": ["iteration"], "bound_accumulate": [],
                     "iteration": ["iteration"], "w_star": ["dim"]},
                    {"errors_replace": "||w_hat_n - w*||^2, iterations n = 1..N",
                     "theory_replace": "sigma^2 d n / (T - d - 1)",
                     "theory_accumulate": "sigma^2 d / (T - d - 1) sum_{i<=n} 1/i^2",
                     "bound_accumulate": "sigma^2 d / (T - d - 1) pi^2 / 6"})
    summary = {}
    for regime in ("replace", "accumulate"):
        a = _agreement(errors[regime], theory[regime])
        summary[regime] = {"last_mc_mean": a["mc_mean"][-1], "last_ci_half_width": a["ci_half_width"][-1],
                           "last_theory": a["theory"][-1], "iterations_theory_inside_ci": int(a["inside"].sum())}
        print(f"{regime:>10}: iteration {iterations}: Monte Carlo {a['mc_mean'][-1]:.4g} +- "
              f"{a['ci_half_width'][-1]:.2g}, theory {a['theory'][-1]:.4g}; theory inside the 95% CI at "
              f"{int(a['inside'].sum())}/{iterations} iterations")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, scale in zip(axes, ("linear", "log")):  # a linear-scale and a log-log panel
        for regime, color in (("replace", "tab:red"), ("accumulate", "tab:blue")):
            _band(ax, n, errors[regime], color, f"{regime} (Monte Carlo mean, 95% band)")
            ax.plot(n, theory[regime], color="k", ls="--", lw=0.9)
        ax.axhline(bound, color="grey", ls=":", lw=1.2, label=r"$\sigma^2 d/(T-d-1)\,\pi^2/6$")
        ax.plot([], [], color="k", ls="--", lw=0.9,
                label=r"exact: $\frac{\sigma^2 d}{T-d-1}\,n$ (replace), $\frac{\sigma^2 d}{T-d-1}\sum_{i\leq n} i^{-2}$ "
                      "(accumulate)")
        ax.set_yscale(scale)
        ax.set_xscale(scale)
        ax.set_xlabel("model-fitting iteration n")
        ax.set_ylabel(r"$\|\hat w_n - w^*\|^2$")
        ax.set_title("linear scale" if scale == "linear" else "log-log scale", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Seed 004 (Gerstgrasser et al. 2024): linear regression, replace vs accumulate "
                 f"(d={d}, T={t_samples}, sigma={sigma:g}, {reps} replicates)")
    fig.tight_layout()
    return _finish(run, fig, "linreg.png", "recursions-linreg", start, summary)


def _stays_outside_from(inside) -> int | None:
    """First generation from which theory stays outside the Monte Carlo interval to the end (None: it ends inside)."""
    if inside[-1]:
        return None
    back_inside = np.flatnonzero(inside)
    return int(back_inside[-1] + 1) if back_inside.size else 0


def w2_schedules(sizes, linear_base: int, generations: int):
    """Names and (G, T + 1) sample-size schedules: constant ``M`` for each of ``sizes``, then ``M_0 (t + 1)``."""
    from collapse_jax import schedules as S

    names = [f"M={m}" for m in sizes] + ([f"M_t={linear_base}(t+1)"] if linear_base else [])
    n = [S.constant_size(m, generations) for m in sizes] + ([S.linear_size(linear_base, generations)]
                                                            if linear_base else [])
    return names, np.stack(n)


def cmd_w2(args) -> int:
    from collapse_jax import gaussian as G
    from collapse_jax import schedules as S
    from collapse_jax.progress import bar

    generations = _checks.positive_int("generations", args.generations)
    reps = _at_least_two_replicates(args.replicates)
    sigma = _checks.in_interval("sigma", args.sigma, 0.0, math.inf, low_open=True, high_open=True)
    mu = _checks.in_interval("mu", args.mu, -math.inf, math.inf, low_open=True, high_open=True)
    sizes = list(args.sizes)
    if any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2 for m in sizes):
        raise ValueError(f"sizes: every M must be an integer >= 2 (unbiased variance), got {sizes}")
    base = _checks.nonnegative_int("linear_base", args.linear_base)
    if base == 1:
        raise ValueError("linear_base must be 0 (no growing schedule) or an integer >= 2 (M_0 = linear_base), got 1")
    if not sizes and not base:
        raise ValueError("nothing to simulate: give --sizes and/or a --linear-base >= 2")
    start = time.perf_counter()
    names, n = w2_schedules(sizes, base, generations)
    alpha = S.pure_synthetic_alpha(generations)
    run = RunFolder.create("recursions-w2", args.out)
    run.write_config({"command": "recursions-w2", "mu": mu, "sigma": sigma, "settings": names,
                      "generations": generations, "replicates": reps, "seed": args.seed,
                      "estimator": "sample mean, unbiased sample variance; pure synthetic (alpha_t = 0), replace"})
    losses = []
    with bar(len(names), "recursions-w2 settings", "setting") as pbar:
        for n_g in n:
            losses.append(G.simulate(args.seed, mu, sigma, alpha, n_g, G.GaussianConfig("replace"), reps))
            pbar.update(1)
    losses = np.stack(losses)
    exact = np.stack([G.pure_synthetic_w2(sigma, n_g) for n_g in n])
    first = np.stack([G.shumailov_first_order_w2(sigma, n_g) for n_g in n])
    run.save_arrays({"w2": losses, "exact": exact, "first_order": first, "n": n},
                    {"w2": ["setting", "replicate", "generation"], "exact": ["setting", "generation"],
                     "first_order": ["setting", "generation"], "n": ["setting", "generation"]},
                    {"w2": "W_2^2(N(mu_hat_t, sigma_hat_t^2), N(mu, sigma^2)) = (mu_hat-mu)^2 + (sigma_hat-sigma)^2",
                     "exact": "sigma^2 sum_{i<=t} 1/M_i + 2 sigma^2 (1 - prod_{i<=t} E sqrt(chi2_{M_i-1}/(M_i-1)))",
                     "first_order": "(3/2) sigma^2 sum_{i<=t} 1/M_i (Shumailov et al.)"})
    summary = {}
    for g, name in enumerate(names):
        vs_first, vs_exact = _agreement(losses[g], first[g]), _agreement(losses[g], exact[g])
        summary[name] = {"last_mc_mean": vs_first["mc_mean"][-1], "last_ci_half_width": vs_first["ci_half_width"][-1],
                         "last_mc_median": np.median(losses[g][:, -1]), "last_exact": exact[g, -1],
                         "last_first_order": first[g, -1],
                         "first_order_outside_ci_from": _stays_outside_from(vs_first["inside"]),
                         "exact_outside_ci_from": _stays_outside_from(vs_exact["inside"])}
        s = summary[name]
        print(f"{name:>14}: t={generations}: Monte Carlo {s['last_mc_mean']:.4g} +- {s['last_ci_half_width']:.2g} "
              f"(median {s['last_mc_median']:.3g}), exact {s['last_exact']:.4g}, first order "
              f"{s['last_first_order']:.4g}; outside the 95% CI for good from t = first order "
              f"{s['first_order_outside_ci_from']}, exact {s['exact_outside_ci_from']}")
    plt = _plt()
    t = np.arange(generations + 1)
    colors = plt.cm.tab10(np.arange(len(names)))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for g, (name, color) in enumerate(zip(names, colors)):
        _band(axes[0], t, losses[g], color, name)
        axes[0].plot(t, exact[g], color=color, ls="--", lw=0.9)
        axes[0].plot(t, first[g], color=color, ls=":", lw=1.2)
        _band(axes[1], t + 1, losses[g] / first[g], color, name)
        axes[1].plot(t + 1, exact[g] / first[g], color=color, ls="--", lw=0.9)
        axes[1].plot(t + 1, np.median(losses[g], 0) / first[g], color=color, ls="-.", lw=0.8)
    axes[0].plot([], [], color="k", ls="--", lw=0.9, label="exact E (gaussian.pure_synthetic_w2)")
    axes[0].plot([], [], color="k", ls=":", lw=1.2, label=r"first order $\frac{3}{2}\sigma^2\sum_{i\leq t} 1/M_i$")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("generation t")
    axes[0].set_ylabel(r"$W_2^2(N(\hat\mu_t, \hat\sigma_t^2), N(\mu, \sigma^2))$")
    axes[0].set_title("Monte Carlo mean, 95% band; exact and first-order expectation", fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].plot([], [], color="k", ls="--", lw=0.9, label="exact / first order")
    axes[1].plot([], [], color="k", ls="-.", lw=0.8, label="Monte Carlo median / first order")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("generation t + 1")
    axes[1].set_ylabel("ratio to the first-order law")
    axes[1].set_title("Monte Carlo mean (band), exact and median over the first-order law", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Seed 004 (Shumailov et al.): Gaussian refitted on its own samples, N({mu:g}, {sigma:g}^2), "
                 f"{reps} replicates")
    fig.tight_layout()
    return _finish(run, fig, "w2.png", "recursions-w2", start, summary)


def _c2_parser(sub) -> None:
    q = sub.add_parser("recursions-c2", help="seed 003 Figure 6 / App. C.2 settings 1-8 for the multinomial, "
                                             "Gaussian, Gaussian-mixture (EM) and logistic model classes")
    q.add_argument("--models", default=",".join(C2_MODELS),
                   help="comma-separated model classes to run, among " + ",".join(C2_MODELS) + " (default all)")
    opts.add_replicates(q, 100, "Monte Carlo replicates per setting")
    q.add_argument("--steps", type=int, default=200, help="generations T, multinomial and Gaussian (default 200)")
    q.add_argument("--base", type=int, default=100,
                   help="n_0 for multinomial and Gaussian: n_t = base (fixed), base(t+1) or base(t+1)^2 (default 100)")
    q.add_argument("--categories", type=int, default=10, help="K of the multinomial, p ~ Dirichlet(1) (default 10)")
    q.add_argument("--gmm-steps", type=int, default=30,
                   help="generations T of the Gaussian mixture (EM reads every raw sample; default 30)")
    q.add_argument("--gmm-base", type=int, default=50, help="n_0 of the Gaussian mixture (default 50)")
    q.add_argument("--gmm-max-iter", type=int, default=100, help="EM iterations at most per fit (default 100)")
    q.add_argument("--logistic-steps", type=int, default=20,
                   help="generations T of logistic regression (Newton reads every raw sample; default 20)")
    q.add_argument("--logistic-base", type=int, default=100, help="n_0 of logistic regression (default 100)")
    opts.add_seed(q, "replicates and the multinomial p")
    opts.add_out(q, "recursions-c2")
    q.set_defaults(func=cmd_c2)


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="theory vs Monte Carlo for every theorem / proposition (writes a table)")
    opts.add_replicates(p, 4000, "Monte Carlo replicates per checked statement")
    p.add_argument("--steps", type=int, default=30, help="generations T of the multinomial checks")
    opts.add_seed(p)
    p.add_argument("--doc", default="docs/validation.md", help="also write the table here ('' to skip)")
    opts.add_out(p, "validate")
    p.set_defaults(func=cmd_validate)

    for name, fn, helptext in [("recursions-fig2", cmd_fig2, "seed 003 Figure 2: 4 x 4 alpha_t x n_t grid"),
                               ("recursions-fig3", cmd_fig3, "seed 003 Figure 3: pure synthetic + accumulation")]:
        q = sub.add_parser(name, help=helptext)
        opts.add_replicates(q, 100, "Monte Carlo replicates per curve")
        q.add_argument("--steps", type=int, default=200, help="generations T (default 200)")
        q.add_argument("--categories", type=int, default=10, help="K of the multinomial, p ~ Dirichlet(1) (default 10)")
        opts.add_seed(q, "replicates and the multinomial p")
        opts.add_out(q, name)
        q.set_defaults(func=fn)
    _c2_parser(sub)

    q = sub.add_parser("recursions-linreg", help="seed 004: linear regression on its own labels, replace vs "
                                                 "accumulate (Gerstgrasser et al. 2024)")
    q.add_argument("--dim", type=int, default=10, help="d, number of features (default 10)")
    q.add_argument("--num-samples", type=int, default=20, help="T, samples per iteration, >= d + 2 (default 20)")
    q.add_argument("--sigma", type=float, default=1.0, help="label noise standard deviation, > 0 (default 1)")
    q.add_argument("--iterations", type=int, default=50, help="model-fitting iterations n (default 50)")
    opts.add_replicates(q, 10000, "Monte Carlo runs, each with its own fixed design X")
    opts.add_seed(q)
    opts.add_out(q, "recursions-linreg")
    q.set_defaults(func=cmd_linreg)

    q = sub.add_parser("recursions-w2", help="seed 004: Shumailov et al.'s Gaussian W2 growth under pure synthetic "
                                             "training")
    q.add_argument("--sizes", type=int, nargs="*", default=[10, 30, 100],
                   help="constant sample sizes M, each >= 2 (default 10 30 100)")
    q.add_argument("--linear-base", type=int, default=10,
                   help="also the growing schedule M_t = BASE (t + 1), BASE >= 2; 0 skips it (default 10)")
    q.add_argument("--generations", type=int, default=200, help="generations t = 0..GENERATIONS (default 200)")
    opts.add_replicates(q, 2000, "Monte Carlo replicates per schedule")
    q.add_argument("--mu", type=float, default=0.0, help="true mean (default 0)")
    q.add_argument("--sigma", type=float, default=1.0, help="true standard deviation, > 0 (default 1)")
    opts.add_seed(q)
    opts.add_out(q, "recursions-w2")
    q.set_defaults(func=cmd_w2)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m collapse_jax.recursions_cli COMMAND ...``: the same as ``collapse-jax COMMAND ...``."""
    from collapse_jax.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
