"""Fit of the GMM-network theory (collapse_jax.gmm_theory) against Monte Carlo, Figure 4 and Figure 6 settings.

Writes ``benchmarks/results/gmm_theory_fit.json`` and prints the Markdown tables quoted in ``docs/gmm_theory.md``.

    PYTHONPATH=. python3 benchmarks/gmm_theory_fit.py --replicates 1000 --replicates-fig6 500

Simulator: by default the vectorised-over-replicates NumPy implementation of Algorithms 2-3 below, written from
``shared/spec/lwd_gmm_network.md`` and checked against ``tests/gmm_reference.py`` with ``--check-reference``; it also
records the internet's label counts, which the conditional-floor diagnostic needs. ``--simulator jax`` uses the
project's engine ``collapse_jax.gmm_network.simulate`` (float64) instead, as an independent cross-check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)
from collapse_jax import gmm_theory  # noqa: E402
from collapse_jax.results import environment_info  # noqa: E402

TIMES = (1, 2, 5, 10, 20, 50, 100, 200)


# ----------------------------------------------------------------------------------------------------------------
# Vectorised NumPy simulation of Algorithm 3 (all replicates at once; the k_t sequential updates are a Python loop)
# ----------------------------------------------------------------------------------------------------------------


def simulate_numpy(rng, *, num_replicates, num_models=3, mu=((-5.0,), (5.0,)), sigma=((1.0,),), points_per_step=3,
                   beta=0.5, dirichlet_a=1.0, num_steps=200, eps=0.0, num_human=0, pi_ref=None, alpha=None, c=None,
                   return_counts=False):
    """Returns ``Pi`` (num_steps+1, num_replicates, num_models, num_components), recorded before each step's update
    (same convention as ``tests/gmm_reference.simulate``); with ``return_counts`` also the label counts of A(t),
    (num_steps+1, num_replicates, num_components)."""
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    B, dim = mu.shape
    R, n, L, T = num_replicates, num_models, points_per_step, num_steps
    sig_inv = np.linalg.inv(sigma)
    chol = np.linalg.cholesky(sigma)
    sched = gmm_theory.schedule(num_models=n, num_components=B, points_per_step=L, beta=beta, num_steps=T,
                                num_human=num_human, alpha=alpha, c=c)
    n_max = num_human + n * L * T
    ll_all = np.zeros((R, n_max, B))  # log N(u; mu_b, Sigma) up to a constant, per posted point
    counts = np.zeros((R, B), dtype=np.int64)  # generating-component counts of the points posted so far

    def post(weights, start, count):
        """Draw ``count`` points per row of ``weights`` (R, rows, B) and store their log-likelihoods from ``start``."""
        rows = weights.shape[1]
        cum = np.cumsum(weights / weights.sum(-1, keepdims=True), axis=-1)
        u = rng.random((R, rows, count))
        comp = np.minimum((u[..., None] > cum[:, :, None, :]).sum(-1), B - 1)  # (R, rows, count)
        x = mu[comp] + rng.standard_normal((R, rows, count, dim)) @ chol.T
        diff = x[..., None, :] - mu  # (R, rows, count, B, dim)
        ll = -0.5 * np.einsum("...i,ij,...j->...", diff, sig_inv, diff)
        ll_all[:, start:start + rows * count] = ll.reshape(R, rows * count, B)
        counts[:] += np.eye(B, dtype=np.int64)[comp].sum(axis=(1, 2))

    Pi = rng.dirichlet(np.full(B, dirichlet_a), size=(R, n))
    if num_human > 0:
        ref = np.full(B, 1.0 / B) if pi_ref is None else np.asarray(pi_ref, np.float64)
        post(np.broadcast_to(ref, (R, 1, B)), 0, num_human)
    history = np.empty((T + 1, R, n, B))
    count_hist = np.empty((T + 1, R, B), dtype=np.int64)
    rr = np.arange(R)[:, None, None]
    for t in range(T + 1):
        history[t] = Pi
        count_hist[t] = counts
        if t == T:
            break
        N = int(sched.internet_size[t])
        k = int(sched.k[t])
        posts_from = Pi.copy()
        if k > 0:
            a, cc = sched.alpha[t], sched.c[t]
            keys = rng.random((R, n, N))
            sel = np.argpartition(keys, k - 1, axis=-1)[..., :k] if k < N else np.broadcast_to(np.arange(N), (R, n, N))
            order = np.argsort(np.take_along_axis(keys, sel, axis=-1), axis=-1)  # uniformly random order
            idx = np.take_along_axis(sel, order, axis=-1)
            lls = ll_all[rr, idx]  # (R, n, k, B)
            p = Pi.copy()
            scale = a / (1.0 - B * cc)
            for s in range(k):
                with np.errstate(divide="ignore"):
                    z = np.log(p) + lls[:, :, s, :]
                z = z - z.max(-1, keepdims=True)
                o = np.exp(z)
                o = o / o.sum(-1, keepdims=True)
                p = (1.0 - a) * p + scale * (o - cc)
                if np.any(p <= 0):  # Algorithm 2, step 3, components in order b = 0..B-1
                    for b in range(B):
                        neg = p[..., b] <= 0
                        if neg.any():
                            div = np.where(neg, 1.0 + eps - p[..., b], 1.0)
                            pb = np.where(neg, 0.0, p[..., b])
                            p = p / div[..., None]
                            p[..., b] = pb
            Pi = p
        post(posts_from, num_human + n * L * t, L)
    return (history, count_hist) if return_counts else history


def dnorm_of(history):
    """||D||_F over the last two axes (models, components), one leading index at a time to bound memory."""
    out = np.empty(history.shape[:-2])
    for idx in np.ndindex(history.shape[:1]):
        diff = history[idx][..., :, None, :] - history[idx][..., None, :, :]
        out[idx] = np.sqrt(np.sum(diff * diff, axis=(-3, -2, -1)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Fit
# ----------------------------------------------------------------------------------------------------------------


def conditional_floor(pi, counts, mu, *, k, alpha, c, num_models=3):
    """Per replicate, the quasi-static noise floor of Eq. (3.2) given that replicate's internet composition f and its
    current ownership matrix M (evaluated at the models' mean weights, so dropped components own nothing):
    ``||D||^2 ~ n (n-1) 2 gamma^2 kappa tr(M C_f M^T) / (1 - r^2)``. A diagnostic that uses the simulated f and support,
    not a prediction from t = 0."""
    R, n, B = pi.shape
    N = counts.sum(-1)[0]
    if k == 0 or N == 0:
        return np.full(R, np.nan)
    r = (1 - alpha) ** k
    gamma = alpha / (1 - B * c)
    kappa = gmm_theory.without_replacement_factor(k, alpha, N)
    out = np.empty(R)
    for j in range(R):
        f = counts[j] / N
        M = gmm_theory.ownership_matrix(mu, [[1.0]], pi[j].mean(0))
        out[j] = num_models * (num_models - 1) * 2 * gamma**2 * kappa * np.trace(
            M @ (np.diag(f) - np.outer(f, f)) @ M.T) / (1 - r * r)
    return out


def rel(a, b):
    return float((a - b) / b) if b > 0 else float("nan")


def simulate_jax_engine(*, num_components, mu, replicates, seed, num_steps):
    """The project's JAX engine (collapse_jax.gmm_network, float64): weights (T+1, R, n, B); no label counts."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from collapse_jax import gmm_network

    cfg = gmm_network.make_config(mu=mu, sigma=((1.0,),), num_models=3, points_per_step=3, beta=0.5,
                                  dirichlet_a=1.0, num_steps=num_steps, record_pi=True)
    res = gmm_network.simulate(seed, cfg, replicates, dtype=np.float64, progress=False)
    return np.moveaxis(np.asarray(res.weights, np.float64), 0, 1)


def fit_setting(name, *, num_components, mu, replicates, seed, num_steps=200, batch=250, simulator="numpy"):
    T = num_steps
    t0 = time.perf_counter()
    if simulator == "jax":
        history = simulate_jax_engine(num_components=num_components, mu=mu, replicates=replicates, seed=seed,
                                      num_steps=T)
        counts = None
    else:
        rng = np.random.default_rng(seed)
        hist, cnt = [], []
        for start in range(0, replicates, batch):
            h, cn = simulate_numpy(rng, num_replicates=min(batch, replicates - start), mu=mu, num_steps=T,
                                   return_counts=True)
            hist.append(h)
            cnt.append(cn)
        history = np.concatenate(hist, axis=1)  # (T+1, R, n, B)
        counts = np.concatenate(cnt, axis=1)  # (T+1, R, B)
    sim_s = time.perf_counter() - t0
    d = dnorm_of(history)  # (T+1, R)
    zero = history <= 0.0
    dropped = zero.any(axis=(-1, -2))  # some model has a dropped component
    collapsed = (zero.sum(-1) == num_components - 1).all(-1)  # every model is on a single component
    clean = ~dropped[-1]  # no component dropped anywhere in the run (pruning is permanent)
    support = history[-1] > 0.0
    same_support = (support == support[:, :1]).all(axis=(-1, -2))  # all models keep the same components at T
    th = gmm_theory.second_moment(num_models=3, num_components=num_components, points_per_step=3, beta=0.5,
                                  num_steps=T, dirichlet_a=1.0)
    theory = np.sqrt(th["dnorm2"])
    sched = gmm_theory.schedule(num_models=3, num_components=num_components, points_per_step=3, beta=0.5,
                                num_steps=T + 1)  # one step further, so that k_T is listed too
    r = gmm_theory.contraction_factor(sched.k, sched.alpha)
    meanfield = theory[0] * np.concatenate([[1.0], np.cumprod(r[:T])])  # sqrt(E||D(0)||^2) prod r_s
    rows = []
    for t in TIMES:
        floor2 = (conditional_floor(history[t], counts[t], np.asarray(mu)[:, 0], k=int(sched.k[t]),
                                    alpha=sched.alpha[t], c=sched.c[t]) if counts is not None
                  else np.full(history.shape[1], np.nan))
        dt = d[t]
        rms = float(np.sqrt(np.mean(dt**2)))
        rms_clean = float(np.sqrt(np.mean(dt[clean] ** 2))) if clean.any() else float("nan")
        # standard error of the RMS by the delta method
        se = float(np.std(dt**2, ddof=1) / np.sqrt(dt.size) / (2 * rms)) if rms > 0 else float("nan")
        se_clean = (float(np.std(dt[clean] ** 2, ddof=1) / np.sqrt(clean.sum()) / (2 * rms_clean))
                    if clean.sum() > 1 else float("nan"))
        rms_same = float(np.sqrt(np.mean(dt[same_support] ** 2))) if same_support.any() else float("nan")
        se_same = (float(np.std(dt[same_support] ** 2, ddof=1) / np.sqrt(same_support.sum()) / (2 * rms_same))
                   if same_support.sum() > 1 else float("nan"))
        rows.append({
            "t": t, "k_t": int(sched.k[t]),
            "theory_rms": float(theory[t]), "mean_field": float(meanfield[t]),
            "theory_median_b2": (float(theory[t] * gmm_theory.quantile_over_rms_two_components(3))
                                 if num_components == 2 else None),
            "sim_rms": rms, "sim_rms_se": se, "sim_mean": float(dt.mean()), "sim_median": float(np.median(dt)),
            "sim_rms_clean": rms_clean, "sim_rms_clean_se": se_clean,
            "sim_median_clean": float(np.median(dt[clean])) if clean.any() else float("nan"),
            "sim_rms_same_support": rms_same, "sim_rms_same_support_se": se_same,
            "relerr_rms_same_support": rel(theory[t], rms_same),
            "floor_rms_same_support": (float(np.sqrt(np.mean(floor2[same_support])))
                                       if same_support.any() else float("nan")),
            "relerr_rms": rel(theory[t], rms), "relerr_rms_clean": rel(theory[t], rms_clean),
            "relerr_median": rel(theory[t], float(np.median(dt))),
            "relerr_mean": rel(theory[t], float(dt.mean())),
            "frac_dropped": float(dropped[t].mean()), "frac_collapsed": float(collapsed[t].mean()),
            "theory_diversity": float(th["diversity"][t]),
            "sim_diversity_proxy": float(np.mean(1.0 - np.sum(history[t].mean(1) ** 2, -1))),
        })
    return {"setting": name, "num_components": num_components, "mu": [list(m) for m in mu],
            "replicates": replicates, "simulator": simulator, "replicates_clean": int(clean.sum()),
            "replicates_same_support": int(same_support.sum()), "seed": seed, "sim_seconds": sim_s,
            "rows": rows}


def _cell(value, se=None, relerr=None):
    if value is None or not np.isfinite(value):
        return "n/a"
    out = f"{value:.4f}" + (f" ± {se:.4f}" if se is not None and np.isfinite(se) else "")
    return out + (f" ({100 * relerr:+.0f}%)" if relerr is not None else "")


def table(res):
    """Markdown table; rel. err = (theory - simulated) / simulated."""
    lines = [f"**{res['setting']}**: {res['replicates']} replicates ({res['replicates_clean']} with no dropped "
             f"component by the last step, {res['replicates_same_support']} whose models all keep the same "
             f"components), seed {res['seed']}, {res['sim_seconds']:.0f} s.", "",
             "| t | k_t | theory sqrt(E\\|\\|D\\|\\|^2) | mean field | sim RMS, all (rel. err) "
             "| sim RMS, no drop (rel. err) | sim RMS, same support (rel. err) | sim mean, all | sim median, all "
             "| sim median, no drop | theory median (B = 2) | conditional floor, same support | dropped | collapsed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(" | ".join([
            f"| {r['t']}", str(r["k_t"]), f"{r['theory_rms']:.4f}", f"{r['mean_field']:.1e}",
            _cell(r["sim_rms"], r["sim_rms_se"], r["relerr_rms"]),
            _cell(r["sim_rms_clean"], r["sim_rms_clean_se"], r["relerr_rms_clean"]),
            _cell(r["sim_rms_same_support"], r["sim_rms_same_support_se"], r["relerr_rms_same_support"]),
            _cell(r["sim_mean"]), _cell(r["sim_median"]), _cell(r["sim_median_clean"]), _cell(r.get("theory_median_b2")),
            _cell(r.get("floor_rms_same_support")),
            f"{r['frac_dropped']:.2f}", f"{r['frac_collapsed']:.2f} |"]))
    return "\n".join(lines)


def check_reference(replicates_ref=150, replicates_vec=3000, num_steps=12, seed=7):
    """Vectorised simulator vs tests/gmm_reference.simulate: mean ||D(t)||^2 at t = num_steps, Figure-4 setting."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    import gmm_reference

    rng = np.random.default_rng(seed)
    ref = np.array([gmm_reference.simulate(rng, num_steps=num_steps)[0][-1] ** 2 for _ in range(replicates_ref)])
    vec = dnorm_of(simulate_numpy(rng, num_replicates=replicates_vec, num_steps=num_steps))[-1] ** 2
    se = np.sqrt(ref.var(ddof=1) / ref.size + vec.var(ddof=1) / vec.size)
    print(f"E||D({num_steps})||^2: reference {ref.mean():.4f} ({replicates_ref} reps), vectorised {vec.mean():.4f} "
          f"({replicates_vec} reps), difference {(vec.mean() - ref.mean()) / se:+.2f} standard errors")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=1000, help="Figure 4 replicates")
    ap.add_argument("--replicates-fig6", type=int, default=500, help="Figure 6 replicates")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gmm_theory_fit.json"))
    ap.add_argument("--check-reference", action="store_true")
    ap.add_argument("--simulator", choices=("numpy", "jax"), default="numpy",
                    help="numpy: simulate_numpy below (records label counts); jax: collapse_jax.gmm_network")
    ap.add_argument("--tables-only", action="store_true", help="print the tables of an existing --out file")
    args = ap.parse_args(argv)
    if args.tables_only:
        for sim, run in _load_runs(args.out).items():
            print(f"### simulator: {run['simulator']}\n")
            for res in run["settings"]:
                print(table(res), "\n")
        return
    fig4 = fit_setting("Figure 4 (B = 2, mu = (-5, 5))", num_components=2, mu=((-5.0,), (5.0,)),
                       replicates=args.replicates, seed=args.seed, simulator=args.simulator)
    print(table(fig4), "\n", flush=True)
    B6 = 11
    mu6 = tuple((5.0 * (b - (B6 - 1) / 2),) for b in range(B6))
    fig6 = fit_setting("Figure 6 (B = 11, mu_b = 5 (b - 5))", num_components=B6, mu=mu6,
                       replicates=args.replicates_fig6, seed=args.seed + 1, simulator=args.simulator)
    print(table(fig6), flush=True)
    own = gmm_theory.ownership_matrix(np.array(mu6)[:, 0], [[1.0]])
    run = {"command": "PYTHONPATH=. python3 benchmarks/gmm_theory_fit.py " + " ".join(argv or sys.argv[1:]),
           "simulator": ("vectorised NumPy (benchmarks/gmm_theory_fit.py:simulate_numpy)" if args.simulator == "numpy"
                         else "collapse_jax.gmm_network.simulate, float64"),
           "python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           # the CPU model and features, JAX's device and versions, as every benchmark records them (an audit)
           "environment": environment_info(),
           "fig6_ownership_leak_uniform_weights": float(1.0 - own[5, 5]),
           "settings": [fig4, fig6]}
    runs = _load_runs(args.out) if os.path.exists(args.out) else {}
    runs[args.simulator] = run  # one entry per simulator, so the NumPy run and the JAX cross-check sit side by side
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)   # (a bare file name crashed after the run)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"runs": runs}, fh, indent=1)
    os.replace(tmp, args.out)


def _load_runs(path):
    with open(path) as fh:
        data = json.load(fh)
    return data["runs"] if "runs" in data else {"numpy": data}


if __name__ == "__main__":
    main()
