"""Analysis of an LLM Web Dynamics run folder (:mod:`llm_bridge.llm_web`), from its stored texts and embeddings
alone: nothing is generated, so a finished (or partial) run can be re-analysed at any time.

:func:`analyse` writes to the run folder:

* ``arrays.npz`` / ``arrays.json``: ||D(t)||_F (recomputed and as recorded), normalised to t = 0, X-spread, the GMM
  bands, the calibrated proxies' bands and the LLM curve in the proxy's projection;
* ``dnorm.png``: ||D(t)||_F / ||D(0)||_F of the LLMs, raw and floor-corrected, with the GMM network's 5-95 %
  band and median (same n, beta, |A(0)|, texts read per step; the seed's Figure 4 components), and the raw
  ||D(t)||_F (seed 000 Figure 2) with its sampling-noise floor (:func:`noise_floor`) and the floor-corrected value;
* ``mds.png``: classical MDS of all answers at t = 1 and t = T (Figure 3); ``spread.png``: within-model spread;
  ``diversity.png``: each model's diversity metrics over t; ``proxy.png``: the calibrated proxy's band for each
  B = 1..proxy_components against the LLM curve in the same projection, with the coverage;
* ``summary.json`` and ``report.md``: the numbers and sample answers at t = 1 and t = T; ``manifest.json`` last.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, distance, gmm_network
from collapse_jax.results import RunFolder, atomic_write_json, read_npz
from collapse_jax.results import pyplot as _pyplot
from llm_bridge import web_gmm_proxy as proxy
from llm_bridge.llm_web import WebConfig, completed_steps, read_step, saved_config, step_metrics

DIVERSITY_PANELS = (("distinct_2", "distinct-2"), ("self_bleu_diversity", "1 - self-BLEU"),
                    ("semantic", "semantic diversity"), ("compression_ratio", "compression ratio (lower = more diverse)"))
SAMPLES_SHOWN = 3


def load_run(folder: Path) -> tuple[WebConfig, list[dict[str, Any]], np.ndarray]:
    """(configuration, step records, embeddings (num_steps_done, n, L, dim)) of a run folder."""
    cfg = saved_config(folder)
    if cfg is None:
        raise ValueError(f"run folder {str(folder)!r} holds no llm-web run (no config.json)")
    done = min(completed_steps(folder), cfg.num_steps + 1)
    if done < 2:
        raise ValueError(f"run folder {str(folder)!r} has {done} finished steps; analysis needs at least 2")
    steps = [read_step(folder, t) for t in range(done)]
    return cfg, [s[0] for s in steps], np.stack([s[1] for s in steps])


def noise_floor(emb: np.ndarray) -> np.ndarray:
    """``sqrt(E ||D||_F^2)`` if the models were one and the same distribution: (..., n, L, dim) -> (...).

    ``X_i`` is a mean of L draws, so ``E ||X_i - X_j||^2 = ||mu_i - mu_j||^2 + (v_i + v_j) / L`` with ``v_i`` the
    trace of model i's embedding covariance (estimated unbiasedly from its L answers); summed over i != j the noise
    term is ``2 (n - 1) sum_i v_i / L``. ``||D||_F^2`` minus its square estimates the population ``||D||_F^2``.
    """
    e = np.asarray(emb, np.float64)
    n, L = e.shape[-3], e.shape[-2]
    v = e.var(axis=-2, ddof=1).sum(-1)
    return np.sqrt(2 * (n - 1) * v.sum(-1) / L)


def llm_reads(cfg: WebConfig, records: list[dict[str, Any]]) -> np.ndarray:
    """The texts the LLMs read at each step t = 0..T, (T+1,) int64: in context mode those that fitted the prompt
    (the mean over the models, to the nearest integer, halves to even: 3-4 of the 10-55 retrieved at the CPU
    defaults), in finetune mode every one
    of the ``k_t = floor(beta |A(t)|)`` retrieved. The GMM network's draws follow them (:func:`gmm_band`)."""
    if cfg.mode == "context":
        return np.rint([np.mean(r["fitted"]) for r in records]).astype(np.int64)
    return np.asarray([r["k"] for r in records], np.int64)


def _checked_reads(reads: Any) -> np.ndarray:
    """``reads`` as (T+1,) int64, or a ValueError naming it: whole numbers >= 0, at least two steps (an old call
    ``gmm_band(cfg, 30)`` ran a one-step band silently; a review, 2026-12-07)."""
    r = np.asarray(reads)
    if r.ndim != 1 or r.size < 2 or not (np.issubdtype(r.dtype, np.integer) or np.issubdtype(r.dtype, np.floating)):
        raise ValueError(f"reads must be a 1-d array of the texts read at each step t = 0..T (T >= 1), got "
                         f"{np.shape(reads)} {r.dtype}")
    if not np.all(np.isfinite(r)) or np.any(r < 0) or np.any(r != np.floor(r)):
        raise ValueError(f"reads must hold whole numbers >= 0, got {r.tolist()}")
    return r.astype(np.int64)


def _aligned_params(gcfg, reads: np.ndarray, first_reads: bool = True):
    """The GMM network's Params for steps s = 0..T (``gcfg.num_steps`` = T + 1) that read ``reads[s]`` points of
    A(s), as the LLMs read at t = s; with ``first_reads=False`` step 0 reads none (its start is already the models
    after reading A(0)). k_t = 0 where a step read nothing (no update). The GMM internet holds at least as many
    points as the LLMs' (``gmm_posts >= 1``), so it has the texts they read."""
    k = _checked_reads(reads)
    if not first_reads:
        k = np.r_[0, k[1:]]
    return gmm_network.make_params(gcfg, num_draws=k)


def gmm_band(cfg: WebConfig, reads: Any) -> dict[str, Any]:
    """The GMM network with the run's n, beta and |A(0)| (components of the seed's Figure 4, Dirichlet(1) starts),
    ``gmm_replicates`` replicates: ||D(t)||_F / ||D(1)||_F per replicate, summarised, for t = 1..T+1.

    Aligned with the LLMs (an audit, 2026-12-07): step s reads ``reads[s]`` points of A(s), what the LLMs read at
    t = s (:func:`llm_reads`; it read floor(beta |A(t)|), 10-55 points, where the LLMs fitted 3-4 into their
    prompts), and the record after it, Pi(s + 1), stands beside the LLMs' t = s, whose answers come after reading
    A(s) (the band's t = 0 was the Dirichlet start, before any reading). The internets differ in what a step posts:
    a GMM model posts from its weights before it reads at that step (step 0 from the Dirichlet start), an LLM after
    (Algorithm 3 against Algorithm 1)."""
    reads = _checked_reads(reads)
    gcfg = gmm_network.paper_config(4, num_models=cfg.num_models, points_per_step=cfg.gmm_posts, beta=cfg.beta,
                                    num_steps=reads.size, num_human=cfg.num_human)
    res = gmm_network.simulate(cfg.seed, gcfg, cfg.gmm_replicates, params=_aligned_params(gcfg, reads),
                               dtype=jnp.float64, progress=False)
    curves = proxy.normalised(np.asarray(res.dnorm)[:, 1:])
    return {"curves": curves, **proxy.band(curves)}


def calibrated_proxies(cfg: WebConfig, emb: np.ndarray, human: np.ndarray, *, reads: Any = None,
                       pbar=None) -> dict[str, Any]:
    """For B = 1..proxy_components: the proxy fitted to the t = 0 answers (:mod:`llm_bridge.web_gmm_proxy`), its
    band over ``gmm_replicates`` replicates and its coverage of the LLM curve in the same projection.

    ``emb``: (T+1, n, L, dim) answer embeddings; ``human``: (|A(0)|, dim) embeddings of the human texts; ``reads``:
    the texts the LLMs read at each step (:func:`llm_reads`; None: floor(beta |A(t)|)); ``pbar``: a progress bar
    moved by one for each B, or None.

    The proxy starts from the weights fitted to the answers given after reading A(0); its step s >= 1 reads
    ``reads[s]`` points of A(s), an internet of the LLMs' size at t = s (it read A(0) again at its first step, one
    step behind: an audit, 2026-12-07); its posts differ, as :func:`gmm_band` says (steps 0 and 1 both post from
    the fitted start, step s from the weights before reading A(s)). Each model's ``X_i`` is the mean of L draws
    from its GMM, as the LLMs' is the mean of L answers (:func:`web_gmm_proxy.sampled_dnorm`; it was the mixture's
    mean, without the sampling noise that gives the LLM curve its floor).
    """
    T = emb.shape[0] - 1
    L = emb.shape[2]
    proj = proxy.pca_basis(emb[0].reshape(-1, emb.shape[-1]), cfg.proxy_dims)
    pts0 = proj(emb[0])
    llm = proxy.normalised(np.asarray(distance.distance_matrix_norm(proj(emb.mean(axis=2)))))
    human_pts = proj(human)
    out: dict[str, Any] = {"explained": proj.explained, "llm": llm, "coverage": [], "weights0": [], "pi_ref": [],
                           "log_likelihood": []}
    bands = []
    for B in range(1, cfg.proxy_components + 1):
        fit = proxy.fit_shared_gmm(pts0, B, seed=cfg.seed)
        pi_ref = proxy.fit_weights(human_pts, fit.means, fit.cov)
        if B == 1:  # one component shared by every model: D = 0 at every step, so its band is undefined (n/a);
            # not simulated (its default c_t = 1 / k_t would also need k_t >= 2, i.e. beta |A(0)| >= 2: a run with
            # fewer human texts failed here, after all its steps)
            bands.append(proxy.band(np.full((1, T + 1), np.nan)))
        else:
            # EM can leave two components on one point when the t = 0 answers have fewer distinct points than B:
            # gmm_network's advice to give each its own mean is not the user's
            cov = (fit.cov + fit.cov.T) / 2
            with _checks.ignoring_warnings(UserWarning, r"mu: components \d+ and \d+ have the same mean"):
                gcfg = gmm_network.make_config(mu=fit.means, sigma=cov, num_models=cfg.num_models,
                                               points_per_step=cfg.gmm_posts, beta=cfg.beta, num_steps=T + 1,
                                               num_human=cfg.num_human, pi_ref=pi_ref)
                given = gmm_network.step_schedule(gcfg).num_draws if reads is None else np.asarray(reads)
                params = _aligned_params(gcfg.replace(initial_weights=fit.weights), given, first_reads=False)
                weights = proxy.simulate_fixed_start(gcfg, fit.weights, cfg.gmm_replicates, seed=cfg.seed + B,
                                                     params=params)[:, 1:]
            curves = proxy.sampled_dnorm(weights, fit.means, cov, L, seed=cfg.seed + B)
            bands.append(proxy.band(proxy.normalised(curves)))
        out["coverage"].append(proxy.coverage(llm, bands[-1]["low"], bands[-1]["high"]))
        out["weights0"].append(fit.weights.tolist())
        out["pi_ref"].append(pi_ref.tolist())
        out["log_likelihood"].append(fit.log_likelihood)
        if pbar is not None:
            pbar.update(1)
    for key in ("low", "median", "high"):
        out[key] = np.stack([b[key] for b in bands])
    return out


def min_ratio(ratios: np.ndarray) -> float:
    """The smallest ``||D(t)||_F / ||D(0)||_F`` over t = 1..T (NaN steps left out): t = 0's ratio is 1 by definition,
    and with it the minimum read 1 whenever every later step was above ``D(0)`` (a user trial, 2026-12-07)."""
    later = np.asarray(ratios, dtype=np.float64)[1:]
    return float(np.nanmin(later)) if np.isfinite(later).any() else float("nan")


def analyse(folder: str | Path) -> dict[str, Any]:
    """Recompute every output of the run in ``folder`` from its stored answers and embeddings (see the module
    docstring); returns the summary written to ``summary.json``."""
    import jax

    path = Path(folder)
    cfg, records, emb = load_run(path)
    T = emb.shape[0] - 1
    metrics = [step_metrics(r["responses"], e) for r, e in zip(records, emb)]
    dnorm = np.asarray([m["dnorm"] for m in metrics])
    recorded = np.asarray([r["metrics"]["dnorm"] for r in records])
    (human,) = read_npz(path / "human.npz", "embeddings")
    from collapse_jax.progress import bar

    # (a minute and more without a word after the steps' bar, or alone under --analyse; a user trial, 2026-12-07)
    with (jax.enable_x64(True),
          bar(1 + cfg.proxy_components, f"llm-web analysis (GMM band, proxies B = 1..{cfg.proxy_components})",
              "fit") as pbar):
        reads = llm_reads(cfg, records)
        gmm = gmm_band(cfg, reads)
        pbar.update(1)
        prox = calibrated_proxies(cfg, emb, human, reads=reads, pbar=pbar)
    llm = proxy.normalised(dnorm)
    spread = np.asarray([m["spread"] for m in metrics])
    floor = noise_floor(emb)
    signal = np.sqrt(np.maximum(dnorm**2 - floor**2, 0.0))
    # the band is of population weights, without the sampling noise of L answers: it is set against the
    # floor-corrected curve (the raw one has a floor of 0.66-0.98 of its t = 0 value in the documented runs, above
    # most of the band; an audit, 2026-12-07)
    signal_normalised = proxy.normalised(signal)
    gmm_cov = proxy.coverage(signal_normalised, gmm["low"], gmm["high"])

    out = RunFolder(path)
    out.save_arrays(
        {"dnorm": dnorm, "dnorm_recorded": recorded, "dnorm_normalised": llm, "dnorm_floor": floor,
         "dnorm_signal": signal, "dnorm_signal_normalised": signal_normalised, "spread": spread, "reads": reads,
         "fitted": np.asarray([r["fitted"] for r in records]), "gmm_low": gmm["low"], "gmm_median": gmm["median"],
         "gmm_high": gmm["high"], "proxy_llm": prox["llm"], "proxy_low": prox["low"],
         "proxy_median": prox["median"], "proxy_high": prox["high"], "proxy_coverage": np.asarray(prox["coverage"])},
        {"dnorm": ["step"], "dnorm_recorded": ["step"], "dnorm_normalised": ["step"], "dnorm_floor": ["step"],
         "dnorm_signal": ["step"], "dnorm_signal_normalised": ["step"], "spread": ["step", "model"],
         "reads": ["step"],
         "fitted": ["step", "model"], "gmm_low": ["step"], "gmm_median": ["step"], "gmm_high": ["step"],
         "proxy_llm": ["step"], "proxy_low": ["components", "step"], "proxy_median": ["components", "step"],
         "proxy_high": ["components", "step"], "proxy_coverage": ["components"]},
        {"dnorm": "||D(t)||_F of the answers' mean embeddings, recomputed from the stored embeddings",
         "dnorm_recorded": "||D(t)||_F as recorded while the run generated",
         "dnorm_normalised": "dnorm / dnorm[0]",
         "dnorm_floor": "||D||_F expected from sampling noise alone (identical models, L answers each)",
         "dnorm_signal": "sqrt(max(dnorm^2 - dnorm_floor^2, 0)): estimate of the population ||D||_F",
         "dnorm_signal_normalised": "dnorm_signal / dnorm_signal[0] (what the GMM band is set against)",
         "reads": "texts the models read at step t (context mode: mean of fitted, rounded); the GMM's k_t",
         "spread": "mean distance of a model's L answer embeddings to their mean",
         "fitted": "retrieved texts that fitted in the prompt (context mode; 0 in finetune mode)",
         "gmm_low": "GMM network (n, beta, |A(0)|, reads of the run; Figure 4 components): 5 % quantile of "
                    "||D||_F / ||D(0)||_F (its Pi(t + 1), after reading A(t), at step t)",
         "gmm_median": "GMM network: median of ||D(t)||_F / ||D(0)||_F",
         "gmm_high": "GMM network: 95 % quantile of ||D(t)||_F / ||D(0)||_F",
         "proxy_llm": "LLM ||D(t)||_F / ||D(0)||_F in the proxy's PCA projection",
         "proxy_low": "calibrated proxy with B = index + 1 components, X_i the mean of L draws: 5 % quantile "
                      "(normalised)",
         "proxy_median": "calibrated proxy: median (normalised)",
         "proxy_high": "calibrated proxy: 95 % quantile (normalised)",
         "proxy_coverage": "fraction of steps t = 1..T with the LLM curve inside the proxy's 5-95 % band"},
        coords={"step": np.arange(len(dnorm)), "model": np.arange(spread.shape[1]),
                "components": np.arange(1, len(prox["coverage"]) + 1)})  # (the proxy's B, for ds.sel)
    summary = {
        "mode": cfg.mode, "steps_done": T + 1, "num_steps": cfg.num_steps,
        "models": records[0]["models"],
        "dnorm_t0": float(dnorm[0]), "dnorm_tT": float(dnorm[-1]), "dnorm_ratio": float(llm[-1]),
        "dnorm_min_ratio": min_ratio(llm),
        "noise_floor_t0": float(floor[0]), "noise_floor_tT": float(floor[-1]),
        "signal_t0": float(signal[0]), "signal_tT": float(signal[-1]),
        "signal_mean_last_third": float(signal[-max(1, (T + 1) // 3):].mean()),
        "signal_mean_first_third": float(signal[:max(1, (T + 1) // 3)].mean()),
        "third_steps": max(1, (T + 1) // 3),
        "steps_above_floor": int(np.sum(dnorm > floor)),
        "dnorm_recorded_max_abs_diff": float(np.max(np.abs(dnorm - recorded))),
        "spread_t0": spread[0].tolist(), "spread_tT": spread[-1].tolist(),
        # (None in finetune mode, where nothing is retrieved into a prompt: "0" read as "nothing fitted"; a user trial)
        "mean_fitted": float(np.mean([r["fitted"] for r in records])) if cfg.mode == "context" else None,
        "gmm_median_tT": float(gmm["median"][-1]), "gmm_band_tT": [float(gmm["low"][-1]), float(gmm["high"][-1])],
        # (against the floor-corrected curve; the raw one beside it, for comparison with runs analysed before
        # 2026-12-07, whose gmm_coverage was of the raw curve and a band that read floor(beta |A(t)|) points)
        "gmm_coverage": gmm_cov, "gmm_coverage_raw": proxy.coverage(llm, gmm["low"], gmm["high"]),
        "mean_reads": float(np.mean(reads)),
        "gmm_posts": cfg.gmm_posts, "gmm_replicates": cfg.gmm_replicates,
        "proxy_dims": int(prox["explained"].size), "proxy_explained": prox["explained"].tolist(),
        "proxy_coverage": {str(B + 1): c for B, c in enumerate(prox["coverage"])},
        "proxy_llm_ratio": float(prox["llm"][-1]),
        "proxy_median_tT": {str(B + 1): float(prox["median"][B, -1]) for B in range(len(prox["coverage"]))},
        "proxy_weights0": {str(B + 1): w for B, w in enumerate(prox["weights0"])},
        "diversity_t0": [m for m in metrics[0]["diversity"]], "diversity_tT": [m for m in metrics[-1]["diversity"]],
        "samples_t1": [r[:SAMPLES_SHOWN] for r in records[1]["responses"]],
        "samples_tT": [r[:SAMPLES_SHOWN] for r in records[-1]["responses"]],
        "step_seconds": float(np.sum([r.get("seconds", 0.0) for r in records])),
    }
    atomic_write_json(path / "summary.json", summary)
    plots(out, cfg, emb, metrics, (llm, signal_normalised), (dnorm, floor, signal), gmm, prox)
    out.save_text("report.md", report_markdown(cfg, summary))
    if T == cfg.num_steps:  # manifest.json marks a finished run; a partial one analysed so far is not finished
        out.finish({k: summary[k] for k in ("dnorm_t0", "dnorm_tT", "dnorm_ratio", "gmm_coverage",
                                            "proxy_coverage")})
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Plots and the report
# ----------------------------------------------------------------------------------------------------------------


def _integer_steps(fig) -> None:
    """Whole-number ticks on every step axis (at small T they read 0.5, 1.5, ...; a user trial, 2026-12-06)."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        if ax.get_xlabel() == "t":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plots(out: RunFolder, cfg: WebConfig, emb, metrics, llm, raw, gmm, prox) -> None:
    """The five figures of the module docstring; ``llm`` = (||D||_F / ||D(0)||_F, the floor-corrected value over its
    t = 0 value), ``raw`` = (||D||_F, its noise floor, the floor-corrected value)."""
    from llm_bridge.embedding_metrics import measure_embeddings

    plt = _pyplot()
    T = emb.shape[0] - 1
    t = np.arange(T + 1)
    label = f"{cfg.mode} mode, n={cfg.num_models}, L={cfg.samples}, beta={cfg.beta}"

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.fill_between(t, gmm["low"], gmm["high"], color="C1", alpha=0.25, label="GMM network 5-95 %")
    a.plot(t, gmm["median"], color="C1", lw=1.2, label="GMM network median")
    a.plot(t, llm[0], "o-", color="C0", ms=3, label="LLM network")
    a.plot(t, llm[1], "s-", color="C3", ms=2.5, lw=1, label="LLM, floor-corrected (set against the band)")
    a.set(xlabel="t", ylabel="||D(t)||_F / ||D(0)||_F", title=f"normalised to t = 0 ({label})")
    a.grid(alpha=0.3)
    b.plot(t, raw[0], "o-", color="C0", ms=3, label="||D(t)||_F")
    b.plot(t, raw[1], "--", color="0.4", label="sampling-noise floor (identical models)")
    # steps below the floor have no floor-corrected value above 0: drawn open at 0 and said so (drawn as measured
    # zeros, they entered a reader's eye as data; a figure trial, 2026-12-06)
    below = ~(np.asarray(raw[0]) > np.asarray(raw[1]))
    b.plot(t, raw[2], "-", color="C3", lw=1)
    b.plot(t[~below], raw[2][~below], "s", color="C3", ms=2.5, label="floor-corrected sqrt(||D||^2 - floor^2)")
    if below.any():
        b.plot(t[below], raw[2][below], "s", color="C3", mfc="none", ms=3.5,
               label=f"... below the floor at {below.sum()} of {T + 1} steps: 0 (no estimate above 0)")
    b.set(xlabel="t", ylabel="embedding units", title="LLM network, raw (seed 000 Figure 2)")
    b.grid(alpha=0.3)
    for ax, ncol in ((a, 2), (b, 1)):  # under the panels: inside, they covered points (a user trial, 2026-12-06)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol, frameon=False)
    _integer_steps(fig)
    out.save_figure(fig, "dnorm.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, step in zip(axes, (1, T)):
        m = measure_embeddings(emb[step], sigma=False, mds_components=2)
        for i in range(cfg.num_models):
            rows = m.model_of_row == i
            ax.scatter(m.mds[rows, 0], m.mds[rows, 1], s=14, alpha=0.7, label=f"model {i}")
        ax.set(title=f"t = {step}", xlabel="MDS 1", ylabel="MDS 2")
        ax.legend(fontsize=8)
    fig.suptitle("classical MDS of all answers' embeddings (seed 000 Figure 3)")
    out.save_figure(fig, "mds.png")
    plt.close(fig)

    spread = np.asarray([m["spread"] for m in metrics])
    fig, ax = plt.subplots(figsize=(6, 4))
    for i in range(cfg.num_models):
        ax.plot(t, spread[:, i], "o-", ms=3, label=f"model {i}")
    ax.set(xlabel="t", ylabel="mean distance to the model's mean embedding", title="within-model spread")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _integer_steps(fig)
    out.save_figure(fig, "spread.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(DIVERSITY_PANELS), figsize=(4 * len(DIVERSITY_PANELS), 3.6))
    for ax, (key, title) in zip(axes, DIVERSITY_PANELS):
        for i in range(cfg.num_models):
            vals = [m["diversity"][i][key] for m in metrics]
            ax.plot(t, [np.nan if v is None else v for v in vals], "o-", ms=2.5, label=f"model {i}")
        ax.set(xlabel="t", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _integer_steps(fig)
    out.save_figure(fig, "diversity.png")
    plt.close(fig)

    Bs = len(prox["coverage"])
    cols = min(4, Bs)
    rows = -(-Bs // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharex=True)
    for B in range(Bs):
        ax = axes[B // cols, B % cols]
        ax.fill_between(t, prox["low"][B], prox["high"][B], color="C2", alpha=0.3, label="GMM proxy 5-95 %")
        ax.plot(t, prox["median"][B], color="C2", lw=1, label="GMM proxy median")
        ax.plot(t, prox["llm"], "o-", color="C0", ms=2, label="LLM network, PCA projection")  # (not dnorm.png's
        # full-space curve, whose label it had: a user trial, 2026-12-06)
        cov = prox["coverage"][B]
        ax.set_title(f"B = {B + 1}: " + ("undefined (D = 0)" if np.isnan(cov) else f"{cov:.0%} inside"), fontsize=9)
        ax.grid(alpha=0.3)
        if B // cols == rows - 1 or B + cols >= Bs:
            ax.set_xlabel("t")
        if B % cols == 0:
            ax.set_ylabel("||D(t)||_F / ||D(0)||_F")
    axes[0, 0].legend(fontsize=7)
    for B in range(Bs, rows * cols):
        axes[B // cols, B % cols].axis("off")
    fig.suptitle(f"calibrated GMM proxy (PCA to {prox['explained'].size} dims, {cfg.gmm_replicates} replicates) "
                 "vs the LLM curve in the same projection, both ||D(t)||_F / ||D(0)||_F", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))          # the title overlapped the panels' titles
    _integer_steps(fig)
    out.save_figure(fig, "proxy.png")
    plt.close(fig)


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3g}"


def report_caveats(cfg: WebConfig, s: dict[str, Any], T: int) -> list[str]:
    """What makes a run's numbers weak, said in its report (a user trial, 2026-12-06: a run whose prompts held no
    retrieved text, whose ‖D‖_F never rose above the noise floor, over 4 steps and 50 GMM replicates, was reported
    with a coverage of 1 and nothing else)."""
    out = []
    if s.get("mean_fitted") == 0:
        out.append("no retrieved text fitted in any prompt: the models read only the query, so the run does not "
                   "test retrieval (raise model_context or lower max_new_tokens)")
    if s.get("steps_above_floor") == 0:
        out.append("‖D(t)‖_F is at or below its sampling-noise floor at every step: the differences between the "
                   f"models are not resolved with L = {cfg.samples} answers each")
    if s.get("signal_t0") == 0:
        out.append("‖D(0)‖_F is at or below its sampling-noise floor, so the floor-corrected curve has no t = 0 "
                   "value to divide by: the GMM band's coverage is n/a (the raw curve's is given beside it)")
    small = [f"{name} = {value}" for name, value, least in (("T", T, 10), ("L", cfg.samples, 8),
                                                            ("gmm_replicates", cfg.gmm_replicates, 200))
             if value < least]
    if small:
        out.append(f"a small run ({', '.join(small)}): the coverage fractions count few steps and the bands few "
                   "replicates; read them as a smoke test")
    return out


def report_markdown(cfg: WebConfig, s: dict[str, Any]) -> str:
    """``report.md``: configuration, the headline numbers and sample answers at t = 1 and t = T (norms written with
    ``‖``: a ``|`` inside a table cell ended the cell, and the first table rendered empty; a user trial,
    2026-12-05)."""
    T = s["steps_done"] - 1
    partial = T < cfg.num_steps  # (an --analyse of a run so far read as a finished run of T steps; a user trial)
    third = s.get("third_steps", max(1, (T + 1) // 3))
    lines = [f"# LLM Web Dynamics run ({cfg.mode} mode{', partial' if partial else ''})", "",
             *([f"**Partial run: steps t = 0..{T} of 0..{cfg.num_steps} are stored; continue it with `collapse-jax "
                "llm-web --resume --out RUN`.**", ""] if partial else []),
             f"n = {cfg.num_models}, L = {cfg.samples}, beta = {cfg.beta}, T = {T} (steps t = 0..{T}), "
             f"|A(0)| = {cfg.num_human} sentences about {cfg.topic!r}, query {cfg.query!r}; models: "
             + (", ".join(cfg.hf) if cfg.hf else f"nanoGPTs ({cfg.model_layers} "
                f"layer{'s' if cfg.model_layers != 1 else ''}, {cfg.model_dim}-d, context "
                f"{cfg.model_context}, {cfg.train_steps} training steps) on {cfg.num_models} parts of the "
                "standard-library corpus") + ".", "",
             "| quantity | value |", "|---|---|",
             f"| ‖D(0)‖_F | {_fmt(s['dnorm_t0'])} |", f"| ‖D(T)‖_F | {_fmt(s['dnorm_tT'])} |",
             f"| ‖D(T)‖_F / ‖D(0)‖_F | {_fmt(s['dnorm_ratio'])} "
             f"(min over t = 1..T: {_fmt(s['dnorm_min_ratio'])}) |",
             f"| sampling-noise floor of ‖D‖_F at t = 0, T | {_fmt(s['noise_floor_t0'])}, "
             f"{_fmt(s['noise_floor_tT'])} |",
             # (the steps named: at T = 4 a "third" is one step, and t = 0 against t = 4 read as a trend)
             f"| floor-corrected ‖D‖_F, mean over t = 0..{third - 1} / t = {T - third + 1}..{T} | "
             f"{_fmt(s['signal_mean_first_third'])} / {_fmt(s['signal_mean_last_third'])} |",
             f"| recomputed vs recorded ‖D‖_F, max abs diff | {_fmt(s['dnorm_recorded_max_abs_diff'])} |",
             f"| retrieved texts that fit the prompt, mean | {_fmt(s['mean_fitted'])} |",
             f"| GMM network median at T (normalised; its k_t = the texts the LLMs read, mean "
             f"{_fmt(s['mean_reads'])}) | {_fmt(s['gmm_median_tT'])} |",
             # (a fraction, printed as one: the label read as a count; a user trial)
             f"| fraction of the steps with the floor-corrected LLM curve inside the GMM 5-95 % band (the raw "
             f"curve: {_fmt(s['gmm_coverage_raw'])}) | {_fmt(s['gmm_coverage'])} |",
             "",
             f"Calibrated proxy (PCA to {s['proxy_dims']} dims, explaining "
             f"{', '.join(f'{v:.0%}' for v in s['proxy_explained'])} of the t = 0 answers' variance; LLM curve in "
             f"that projection ends at {_fmt(s['proxy_llm_ratio'])}):", "",
             "| B | fraction of steps t = 1..T inside the 5-95 % band | proxy median at T |", "|---|---|---|"]
    lines += [f"| {B} | {_fmt(c)} | {_fmt(s['proxy_median_tT'][B])} |" for B, c in s["proxy_coverage"].items()]
    caveats = report_caveats(cfg, s, T)
    if caveats:
        lines[2:2] = ["**Read with care:**", *[f"- {c}" for c in caveats], ""]
    for key, when in (("samples_t1", "t = 1"), ("samples_tT", f"t = {T}")):
        lines += ["", f"## Sample answers at {when}", ""]
        for i, texts in enumerate(s[key]):
            lines += [f"- model {i}: " + " / ".join(f"`{x}`" for x in texts)]
    return "\n".join(lines) + "\n"
