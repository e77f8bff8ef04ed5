"""``collapse-jax gmm-network``: the LWD GMM network with its theory, written to a run folder with plots.

``collapse-jax gmm-network`` reproduces the seed's Figures 4 and 5 (B = 2) and ``--preset fig6`` Figure 6
(B = 11): the paper's 5 replicates as lines, a band over many more replicates, and the theory curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings

import numpy as np

from collapse_jax import cli_options as opts

PRESETS = {"fig4": 4, "fig6": 6}


def _json_arg(text: str):
    """A JSON value from the command line; argparse reports a failure as ``argument --FLAG: ...``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({exc.msg} at character {exc.pos}); give a number "
                                         "or a bracketed list, e.g. '[-5, 5]' or '[[0, 0], [3, 3]]'") from None


def _preset(help: str, paper, **meta):
    """A field of :class:`GmmNetworkOptions` that defaults to None: the preset's value (the paper's is ``paper``)."""
    return opts.option(None, help, default_help=f"the preset's; paper: {paper}", **meta)


@dataclasses.dataclass(frozen=True)
class GmmNetworkOptions:
    """The command's options: a paper preset, the network parameters that override it, and the run's sizes.
    The network itself is :func:`collapse_jax.gmm_network.paper_config` of the preset with the overrides, which
    checks every value before anything is compiled."""

    preset: str = opts.option("fig4", "paper setting to start from (fig4: B=2, mu=-5,5; fig6: B=11, mu_b=5(b-5)); "
                                      "the options below override it", choices=sorted(PRESETS))
    replicates: int = opts.option(10_000, "R, replicates for the band and summaries")
    paper_replicates: int = opts.option(5, "replicates drawn as individual lines, as in the paper, the one nearest "
                                           "the median also in densities.png (d = 1); their weights are saved too. "
                                           "0 draws none and writes no densities.png; a larger value is cut to "
                                           "--replicates, and config.json records the count drawn")
    seed: int = 0
    steps: int | None = _preset("T, number of steps, in [1, 1,000,000]", 200)
    models: int | None = _preset("n, number of GMMs, >= 1 (memory permitting)", 3)
    mu: object = _preset("component means as JSON: [m0, m1, ...] for d=1 or [[..d..], ...]", "[-5, 5]",
                         parse=_json_arg, metavar="JSON")
    sigma: object = _preset("shared covariance as JSON: a variance (d=1) or a d x d matrix", 1, parse=_json_arg,
                            metavar="JSON")
    points_per_step: int | None = _preset("L, points each model posts per step, >= 1", 3)
    beta: float | None = _preset("fraction of the internet read per step, (0, 1]", 0.5)
    dirichlet_a: float | None = _preset("a of Pi_i(0) ~ Dirichlet(a), > 0", 1)
    eps: float | None = _preset("pruning threshold of Algorithm 2, [0, 1]", 0)
    human: int | None = _preset("m0, human points in A(0), >= 0", 0)
    pi_ref: object = _preset("JSON weights of the human data's GMM", "uniform", parse=_json_arg, metavar="JSON")
    alpha: object = _preset("Algorithm 2's alpha in (0, 1]: a number, or a JSON list with one value per step", "1/k_t",
                            parse=_json_arg, metavar="JSON")
    c: object = _preset("Algorithm 2's c in [0, 1/B): a number, or a JSON list per step", "1/(k_t B^2)",
                        parse=_json_arg, metavar="JSON")
    replicate_batch: int = opts.option(20_000, "replicates simulated per call; each finished batch is checkpointed "
                                                "so a rerun with the same --out resumes")

    def network(self):
        """The checked :class:`collapse_jax.gmm_network.GMMNetworkConfig`: the preset with the given overrides."""
        from collapse_jax import gmm_network as gn

        overrides = {k: v for k, v in dict(
            num_steps=self.steps, num_models=self.models, mu=self.mu, sigma=self.sigma,
            points_per_step=self.points_per_step, beta=self.beta, dirichlet_a=self.dirichlet_a, eps=self.eps,
            num_human=self.human, pi_ref=self.pi_ref, alpha=self.alpha, c=self.c,
        ).items() if v is not None}
        if self.pi_ref is not None and not self.human:  # (the presets have no human points)
            raise ValueError("pi_ref weights the human points' GMM only, and --human is 0 (no human points): give "
                             "--human >= 1 or leave pi_ref out")
        return gn.paper_config(PRESETS[self.preset], **overrides)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "gmm-network",
        help="simulate the LWD network of interacting GMMs (seed 000, Figures 4-6)",
        description=__doc__,
    )
    opts.add_config(p, GmmNetworkOptions)
    # the network configuration's own names for three of the flags, in any message (cli_options.with_flags)
    # (a Ctrl-C said only "a command that resumes continues ..."; a user trial, 2026-12-06)
    p.set_defaults(interrupt_hint="continue it: rerun the same command with --out RUN "
                                  "(the batches finished so far are kept, with the one a first Ctrl-C let finish)")
    p.set_defaults(config_flags={**p.get_default("config_flags"), "num_steps": "--steps", "num_models": "--models",
                                 "num_human": "--human"})
    opts.add_out(p, "gmm-network-<preset>")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.set_defaults(func=lambda args: run(opts.config_from_args(GmmNetworkOptions, args), args.out,
                                         plots=not args.no_plots))


def run(options: GmmNetworkOptions, out: str | None = None, *, backend: str = "auto", plots: bool = True) -> int:
    """Simulate the network of ``options`` into the run folder ``out`` (resumed batch by batch when it holds an
    unfinished run), with its theory, summary table and (unless not ``plots``) plots. ``backend`` as
    :func:`collapse_jax.gmm_network.simulate` (``auto`` follows the command line's ``--backend``).

    One bar counts all ``replicates`` (a resumed run's starts at those already saved). Each saved batch records the
    seconds it took, so a resumed run reports this run's time, the resumed replicates' earlier time and their sum
    (printed, in ``summary.txt``, and in ``manifest.json``'s summary: ``seconds_this_run``, ``replicates_resumed``,
    ``seconds_resumed``, ``seconds`` the sum)."""
    import jax

    from collapse_jax import _checks, progress
    from collapse_jax import gmm_network as gn
    from collapse_jax.results import RunFolder, saved_before_stopping

    cfg = options.network()  # validates every parameter before anything is compiled
    if cfg.num_models == 1:  # (printed a table of zeros without a word; a user trial, 2026-12-07. Said here, not by
        # make_config: a sweep's grid may hold one model as its baseline)
        warnings.warn("--models 1: ||D||_F, the distance between the models' weights, is 0 at every step (there is "
                      "no second model); the weights, the dropped components and collapse are still simulated",
                      UserWarning, stacklevel=2)
    if cfg.num_components == 1:  # (no word, unlike --models 1; a user trial, 2026-12-07)
        warnings.warn("one component (mu has one mean): every model's weights are (1,), so ||D||_F is 0 at every "
                      "step and nothing is ever dropped", UserWarning, stacklevel=2)
    R = _checks.positive_int("replicates", options.replicates)
    # the paper's lines are among the band's replicates: more than R drew lines of replicates outside the band
    paper_R = min(_checks.nonnegative_int("paper_replicates", options.paper_replicates), R)
    batch = _checks.positive_int("replicate_batch", options.replicate_batch)
    seed = _checks.random_seed("seed", options.seed)
    backend = gn.backend_for(cfg, backend)  # (an internet too large for the native kernel: jax under auto)
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    # every batch's records come back to the host, then once more as one array, and into arrays.npz and the
    # netCDF copy (built in memory): refused now, not after hours. Peak RSS measured at 4.2x the records (a user
    # trial, 2026-12-06: 10^5 replicates, T = 200, 1.18 GB; the check counted 2x and advised twice what fits)
    _checks.fits_in_memory("replicates", R, 5 * gn.record_bytes(cfg.static, dtype))
    gn.check_problem_size(cfg.static, dtype, backend, min(batch, R))  # (a user trial: --models 100000 crashed)
    gn.check_resolution(gn.make_params(cfg), cfg, dtype)  # (NaN records, then no summary: a user trial, 2026-12-07)
    folder = RunFolder.create(f"gmm-network-{options.preset}", out)
    config = dict(command="gmm-network", preset=options.preset, replicates=R, paper_replicates=paper_R,
                  seed=seed, backend=backend, replicate_batch=batch,
                  dtype=dtype, network=gn._as_kwargs(cfg))
    # a run with no batch saved yet resumes with any batch size (one killed in a first batch too large for the
    # memory could not be rerun with a smaller one; a user trial, 2026-12-06): the saved batch passes the check,
    # then the new one is written under the folder's lock
    unbatched = _batch_of_run_without_chunks(folder)
    folder.start(config if unbatched is None else {**config, "replicate_batch": unbatched})
    if unbatched is not None and unbatched != batch:
        folder.write_config(config)

    t0 = time.perf_counter()
    batches = [(index, start, min(batch, R - start)) for index, start in enumerate(range(0, R, batch))]
    saved = {}  # the batches an interrupted run finished
    for index, _, count in batches:
        done = folder.load_chunk(index)
        if done is not None and done["dnorm"].shape[0] == count:
            saved[index] = done
    resumed = sum(done["dnorm"].shape[0] for done in saved.values())
    if resumed:  # (said only in the last line's timing; a user trial, 2026-12-06)
        print(f"gmm-network: resuming {folder.path}: {resumed:,} of {R:,} replicates saved by an earlier run",
              file=sys.stderr)
    # each batch records the seconds it took to simulate; batches saved before that was recorded: unknown
    earlier = (None if any("seconds" not in done for done in saved.values())
               else float(sum(float(done["seconds"]) for done in saved.values())))
    pieces = []
    with progress.overall(R, "gmm-network replicates", "rep", initial=resumed):  # one bar, from the saved ones
        for index, start, count in batches:
            done = saved.get(index)
            if done is None:
                with saved_before_stopping(f"the {count:,} replicates running now"):
                    started = time.perf_counter()
                    res = gn.simulate(seed, cfg, count, backend=backend, first_replicate=start)
                    done = dict(dnorm=res.dnorm, alive=res.alive, collapsed=res.collapsed,
                                seconds=np.float64(time.perf_counter() - started))
                    folder.save_chunk(index, done)
            pieces.append(done)
    dnorm = np.concatenate([p["dnorm"] for p in pieces])
    alive = np.concatenate([p["alive"] for p in pieces])
    collapsed = np.concatenate([p["collapsed"] for p in pieces])
    with _checks.ignoring_warnings(UserWarning):  # (cfg's warnings were given once already: they printed twice)
        paper_cfg = cfg.replace(record_pi=True)
    paper = gn.simulate(seed, paper_cfg, max(paper_R, 1), backend=backend, progress=False)
    elapsed = time.perf_counter() - t0
    timing = timing_text(R, resumed, elapsed, earlier)

    summary = gn.summarize(dnorm)
    dropped = (alive < cfg.num_components).any(axis=-1).mean(axis=0)
    steps = np.arange(cfg.num_steps + 1)
    theory = theory_curves(cfg)
    # the simulated counterpart of the second-moment curve: the rms over the replicates it describes, those in which
    # no model ever dropped a component (a user trial, 2026-12-06: the green curve had none to be read against)
    kept = (alive[:, -1] == cfg.num_components).all(axis=-1)
    rms_kept = np.sqrt(np.mean(dnorm[kept] ** 2, axis=0)) if kept.any() else np.full(len(steps), np.nan)
    arrays = dict(dnorm=dnorm, alive=alive, collapsed=collapsed, paper_weights=paper.weights[:paper_R],
                  steps=steps, fraction_dropped=dropped, fraction_collapsed=collapsed.mean(axis=0), rms_kept=rms_kept,
                  **{f"summary_{k}": v for k, v in summary.items()}, **{f"theory_{k}": v for k, v in theory.items()})
    labels = dict(dnorm=("replicate", "step"), alive=("replicate", "step", "model"),
                  collapsed=("replicate", "step"), paper_weights=("replicate", "step", "model", "component"),
                  steps=("step",), fraction_dropped=("step",), fraction_collapsed=("step",), rms_kept=("step",),
                  **{f"summary_{k}": ("step",) for k in summary}, **{f"theory_{k}": ("step",) for k in theory})
    descriptions = dict(
        dnorm="||D(t)||_F per replicate, t = 0..T (recorded before step t's update)",
        alive="number of components with positive weight, per model",
        collapsed="every model one-hot on the same component",
        paper_weights="Pi(t) of the first paper_replicates replicates",
        fraction_dropped="fraction of replicates in which some model has a dropped component",
        fraction_collapsed="fraction of replicates collapsed onto one component",
        rms_kept="sqrt(mean ||D(t)||_F^2) over the replicates in which no model ever dropped a component (by T): "
                 "what theory_second_moment describes",
        # (these had empty descriptions: a user trial, 2026-12-06)
        steps="t, the step (the step axis's coordinate)",
        **{f"summary_{k}": f"{name} of ||D(t)||_F over all replicates (computed in float64)"
           for k, name in (("mean", "mean"), ("rms", "root-mean-square"), ("q05", "5 % quantile"),
                           ("q50", "median"), ("q95", "95 % quantile"))},
        theory_second_moment="sqrt(E ||D(t)||_F^2) of the second-moment recursion, Dirichlet(a) start, no pruning "
                             "(collapse_jax.gmm_theory.second_moment_dnorm)",
        theory_mean_field="Appendix A's mean-field contraction prod_{s<t} (1 - alpha_s)^{k_s} times that rms at t = 0")
    # t as the step axis's coordinate (ds.sel(step=t); it had none, positions only: a user trial, 2026-12-06)
    folder.save_arrays(arrays, labels, descriptions, coords={"step": steps})
    figures = [] if not plots else make_plots(folder, cfg, steps, dnorm, summary, theory, paper, paper_R,
                                                dropped, collapsed.mean(axis=0), (rms_kept, int(kept.sum())))
    marks = [t for t in (1, 5, 20, 50, 100, 200, cfg.num_steps) if t <= cfg.num_steps]
    table = "\n".join(f"  t={t:4d}  median {summary['q50'][t]:.4f}  mean {summary['mean'][t]:.4f}  "
                      f"5-95% [{summary['q05'][t]:.4f}, {summary['q95'][t]:.4f}]  dropped {dropped[t]:.3f}"
                      f"  collapsed {collapsed.mean(axis=0)[t]:.3f}"
                      for t in sorted(set(marks)))
    # the theory beside what it describes (summary.txt had no theory and no collapse, which the plots and arrays
    # hold: a user audit, 2026-12-07)
    theory_table = (f"theory (no pruning) against the rms of the {int(kept.sum())} of {R} replicates that keep every "
                    "component, and Appendix A's mean field:\n" + "\n".join(
                        f"  t={t:4d}  rms kept {rms_kept[t]:.4f}  second-moment recursion "
                        f"{theory['second_moment'][t]:.4f}  mean field {theory['mean_field'][t]:.4g}"
                        for t in sorted(set(marks))))
    folder.save_text("summary.txt", f"||D(t)||_F over {R} replicates ({backend} backend, {timing})\n"
                     + table + "\n" + theory_table + "\n")
    folder.finish(dict(replicates=R, seconds=None if earlier is None else elapsed + earlier,
                       seconds_this_run=elapsed, replicates_resumed=resumed, seconds_resumed=earlier,
                       median_final=float(summary["q50"][-1]), mean_final=float(summary["mean"][-1]),
                       fraction_dropped_final=float(dropped[-1])))
    # (a run with --mu and --sigma of its own was labelled "(fig4)" alone; a user trial, 2026-12-07)
    network = {"mu", "sigma", "models", "points_per_step", "beta", "dirichlet_a", "eps", "human", "pi_ref", "alpha",
               "c"}
    changed = [f"--{k.replace('_', '-')}" for k in sorted(network) if getattr(options, k) is not None]
    label = options.preset + (f" with {', '.join(changed)} of its own" if changed else "")
    print(f"gmm-network ({label}): {R} replicates x {cfg.num_steps} steps in {timing} ({backend})")
    print(table)
    print(theory_table)
    print(f"results: {folder.path}/  (arrays.nc, arrays.npz, arrays.json, config.json, summary.txt)")
    for figure in figures:
        print(f"plot:    {figure}")
    return 0


def _batch_of_run_without_chunks(folder) -> int | None:
    """The saved ``replicate_batch`` of the run in ``folder`` when it has saved no batch yet (None otherwise, and for
    a folder without a readable run: :meth:`RunFolder.start` says why)."""
    try:
        saved = json.loads((folder.path / "config.json").read_text())["config"]["replicate_batch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None if any((folder.path / "chunks").glob("chunk-*.npz")) else saved


def timing_text(replicates: int, resumed: int, seconds: float, earlier: float | None) -> str:
    """The run's time as printed and written to ``summary.txt``: this run's ``seconds`` and, when ``resumed`` of the
    replicates were taken from the run folder's checkpoints, the ``earlier`` seconds that simulating them took
    (None: not recorded, checkpoints of an older version) and the sum."""
    if resumed == 0:
        return f"{seconds:.1f} s"
    now = f"{seconds:.1f} s in this run, which simulated {replicates - resumed or 'none (it read them back)'}"
    if earlier is None:
        return f"{now}; {resumed} more resumed from the run folder (their earlier time was not recorded)"
    return f"{seconds + earlier:.1f} s in all: {now}, and {earlier:.1f} s earlier for the {resumed} resumed " \
           "from the run folder"


def theory_curves(cfg) -> dict[str, np.ndarray]:
    """Theory on the simulation's axes (collapse_jax.gmm_theory, well-separated components, no pruning):

    ``second_moment``: the recursion's root-mean-square ``sqrt(E||D(t)||_F^2)`` from Dirichlet(a) initial weights;
    ``mean_field``: Appendix A's contraction ``prod_{s<t} (1 - alpha_s)^{k_s}`` applied to the same rms at t = 0.
    """
    from collapse_jax import gmm_theory as th

    kw = dict(num_models=cfg.num_models, num_components=cfg.num_components, points_per_step=cfg.points_per_step,
              beta=cfg.beta, num_steps=cfg.num_steps, dirichlet_a=cfg.dirichlet_a, num_human=cfg.num_human,
              pi_ref=cfg.pi_ref, alpha=None if cfg.alpha is None else np.asarray(cfg.alpha),
              c=None if cfg.c is None else np.asarray(cfg.c))
    rms = th.second_moment_dnorm(**kw)
    sched = th.schedule(num_models=cfg.num_models, num_components=cfg.num_components,
                        points_per_step=cfg.points_per_step, beta=cfg.beta, num_steps=cfg.num_steps,
                        num_human=cfg.num_human, alpha=kw["alpha"], c=kw["c"])
    contraction = np.concatenate([[1.0], np.cumprod(th.contraction_factor(sched.k, sched.alpha))])
    return {"second_moment": rms, "mean_field": rms[0] * contraction}


MIN_KEPT_DRAWN = 20  # replicates that keep every component needed to draw their rms beside its theory


def make_plots(folder, cfg, steps, dnorm, summary, theory, paper, paper_R, dropped, collapsed, kept=None):
    """The run's figures; ``kept``: (rms over the replicates that keep every component, their count), drawn beside
    the second-moment theory it is compared with."""
    from collapse_jax.results import pyplot

    plt = pyplot()

    R = dnorm.shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, logscale in zip(axes, (False, True)):
        ax.fill_between(steps, summary["q05"], summary["q95"], color="tab:blue", alpha=0.2,
                        label=f"5-95% of {R:,} replicates")
        ax.plot(steps, summary["q50"], color="tab:blue", lw=2, label="median")
        ax.plot(steps, summary["mean"], color="tab:blue", lw=1, ls="--", label="mean")
        for r in range(paper_R):
            ax.plot(steps, paper.dnorm[r], lw=0.8, color="0.35", alpha=0.8,
                    label="the paper's view: single replicates" if r == 0 else None)
        styles = {"mean_field": ("tab:red", "mean field (Appendix A)"),
                  "second_moment": ("tab:green", "second-moment recursion (rms of replicates that keep every "
                                                 "component; docs/gmm_theory.md)")}
        for name, curve in theory.items():
            color, text = styles.get(name, ("k", name))
            if name == "second_moment" and kept is not None and kept[1] == 0:  # it describes no replicate here: it
                # was drawn above the largest ||D||_F possible with every replicate absorbed (a user trial, 2026-12-07)
                ax.plot([], [], color=color, lw=1.5, label=f"second-moment recursion: not drawn (no replicate of "
                                                           f"{R:,} keeps every component; docs/gmm_theory.md)")
                continue
            ax.plot(steps, curve, color=color, lw=1.5, label=text)
        if kept is not None and kept[1] >= min(MIN_KEPT_DRAWN, R) and "second_moment" in theory:
            ax.plot(steps, kept[0], color="tab:green", lw=1.2, ls=(0, (4, 2)),
                    label=f"simulated rms of those replicates ({kept[1]:,} of {R:,})")
        elif kept is not None and "second_moment" in theory:  # (no such replicate: the curve was left out without a
            # word, and the green theory read as failing against the median; a user trial, 2026-12-06, fig6. One
            # such replicate of 500 was drawn as the check: one noisy path; a figure trial, 2026-12-06)
            ax.plot([], [], color="tab:green", lw=1.2, ls=(0, (4, 2)),
                    label=f"simulated rms of those replicates: not drawn ({kept[1]:,} of {R:,})")
        ax.set_xlabel("step t")
        ax.set_ylabel(r"$\|D(t)\|_F$")
        if logscale and not np.any(summary["q95"] > 0):  # (n = 1 or B = 1: matplotlib's "no positive values"
            # warnings and an empty log-log panel; a user trial, 2026-12-07)
            ax.text(0.5, 0.5, r"$\|D(t)\|_F = 0$ at every step: no log-log panel", transform=ax.transAxes,
                    ha="center", va="center")
            ax.set_title("log-log")
        elif logscale:
            ax.set_xscale("log")
            ax.set_yscale("log")
            positive = summary["q05"][1:][summary["q05"][1:] > 0]
            lo = max(positive.min() if positive.size else 1e-4, 1e-4)
            ax.set_ylim(lo / 2, max(summary["q95"].max(), dnorm[:paper_R].max() if paper_R else 0) * 1.5)
            ax.set_xlim(1, steps[-1])
            if cfg.alpha is None and cfg.c is None:  # the law of the paper's 1/k_t schedules only (a user trial:
                # it was drawn beside a constant alpha's curve, which does not follow it)
                ref = summary["q50"][min(50, steps[-1])] * np.sqrt(min(50, steps[-1]) / steps[1:])
                ax.plot(steps[1:], ref, color="0.5", ls=":", label=r"$\propto t^{-1/2}$ (1/k_t schedules)")
            ax.set_title("log-log")
        else:
            schedules = "alpha, c: 1/k_t, 1/(k_t B^2)" if cfg.alpha is None and cfg.c is None else "alpha, c: given"
            ax.set_title(f"GMM network: n={cfg.num_models}, B={cfg.num_components}, L={cfg.points_per_step}, "
                         f"beta={cfg.beta}, eps={cfg.eps:g}, m0={cfg.num_human}; {schedules}", fontsize=9)
    # one legend under both panels (a user trial, 2026-12-05: inside them it hid the band and the axis label
    # wherever the 95 % quantile stayed high, e.g. beta = 0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    paths = [folder.save_figure(fig, "dnorm.png")]
    plt.close(fig)

    if paper_R > 0 and cfg.dim == 1:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
        mu = np.asarray(cfg.mu)[:, 0]
        sd = float(np.sqrt(cfg.sigma[0][0]))
        x = np.linspace(mu.min() - 4 * sd, mu.max() + 4 * sd, 1000)
        comps = np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
        # a typical replicate: the one among those with stored weights whose ||D(T)||_F is nearest the median (replicate
        # 0 of seed 0 had collapsed completely, three identical curves, as 3 % of replicates do; a user trial)
        r = int(np.argmin(np.abs(paper.dnorm[:paper_R, -1] - summary["q50"][-1])))
        for ax, t in zip(axes, (1, cfg.num_steps)):
            for i in range(cfg.num_models):
                w = paper.weights[r, t, i]
                ax.plot(x, comps @ w, lw=1.5, label=f"model {i + 1}: weights {np.array2string(w, precision=2)}"
                        if cfg.num_components <= 3 else f"model {i + 1}")
            ax.set_title(f"t = {t}")
            ax.set_xlabel("x")
            ax.legend(fontsize=8)
        axes[0].set_ylabel("density")
        fig.suptitle(f"densities of the {cfg.num_models} GMMs of replicate {r} (of the first {paper_R}, the one whose "
                     r"$\|D(T)\|_F$ is nearest the median)", fontsize=10)
        fig.tight_layout()
        paths.append(folder.save_figure(fig, "densities.png"))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, dropped, label="some model has a dropped component")
    ax.plot(steps, collapsed, label="all models collapsed onto one component")
    ax.set_xlabel("step t")
    ax.set_ylabel(f"fraction of {R:,} replicates")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("absorption by Algorithm 2's pruning step")
    paths.append(folder.save_figure(fig, "dropped.png"))
    plt.close(fig)
    return paths
