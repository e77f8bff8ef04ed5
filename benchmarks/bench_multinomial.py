"""Benchmark: multinomial recursion, replicate-generations per second (JAX vs NumPy), seed 003 Section 3.

Simulators of the same recursion (K categories, T generations, replace, accumulate or accumulate-subsample, fixed
or growing n_t):
- native: collapse_jax.multinomial.batched_risk_native (the CPU default: C++ kernel, per-replicate exact binomials,
  all cores; its fastest engine here: "refill", eight lanes on AVX-512 CPUs and four on AVX2-only ones);
- native-group: the same kernel's "group" engine (any CPU, the only one without AVX2: eight replicates advance
  category by category; same numbers as refill);
- jax: collapse_jax.multinomial.kernel run by driver.batched (the portable path: tree of exact binomials, vmap over
  replicates, scan over generations);
  for both, compile time is reported apart (first call), then the median of --repeats timed calls, each ending in
  block_until_ready; wall seconds and the process's CPU seconds (all threads) are both recorded, as for NumPy, and
  every timed call's (the *_all keys);
- numpy-vectorised: Generator.multinomial with one probability row per replicate, a Python loop over generations
  (accumulate-subsample: Generator.multivariate_hypergeometric, one call per replicate and generation);
- numpy-raw: the test reference that draws every raw token (tests/multinomial_reference.py), on a few replicates.
Writes benchmarks/results/multinomial-<time>.json with the environment (device, versions).

Example: python3 benchmarks/bench_multinomial.py --replicates 1000 10000 --steps 200 --backends native jax
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)

sys.path.insert(0, str(ROOT / "tests"))

from collapse_jax import driver  # noqa: E402
from collapse_jax import multinomial as M  # noqa: E402
from collapse_jax import schedules as S  # noqa: E402
from collapse_jax.replicates import replicate_keys  # noqa: E402
from collapse_jax._native import multinomial_engines as native_engines  # noqa: E402
from collapse_jax.cli_options import output_file  # noqa: E402
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402


def numpy_vectorised(rng, p, alpha, n, regime, reps):
    k = p.shape[0]
    counts = rng.multinomial(int(n[0]), p, size=reps).astype(float)
    total = np.full(reps, n[0])
    p_hat = counts / total[:, None]
    for t in range(1, n.shape[0]):
        q = alpha[t] * p + (1 - alpha[t]) * p_hat
        q /= q.sum(1, keepdims=True)
        new = rng.multinomial(int(n[t]), q).astype(float)
        if regime in ("accumulate", "accumulate-subsample"):
            counts, total = counts + new, total + n[t]
        else:
            counts, total = new, np.full(reps, n[t])
        if regime == "accumulate-subsample":  # NumPy's sampler takes one pool per call
            fit = [rng.multivariate_hypergeometric(c.astype(np.int64), int(n[t])) for c in counts]
            p_hat = np.array(fit, float) / n[t]
        else:
            p_hat = counts / total[:, None]
    return np.sum((p_hat - p) ** 2, 1) if k else None


def _time(run, repeats):
    """First call (compilation included), then ``repeats`` further calls: the first call's wall seconds, then the
    warm calls' wall seconds and this process's CPU seconds (all its threads; on a machine shared with other jobs,
    work per CPU second is the figure that other jobs disturb least), every call's."""
    t0 = time.perf_counter()
    run().block_until_ready()
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run().block_until_ready()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return first, walls, cpus


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--categories", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-max-replicates", type=int, default=10000)
    ap.add_argument("--raw-replicates", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", default=["fixed", "linear"],
                    help="fixed: n_t = 1000; fixed:N: n_t = N; linear: n_t = 100 (t+1); "
                         "big: n_t = 5000 (t+1) (1e6 at t = 199)")
    ap.add_argument("--regimes", nargs="+", default=["replace", "accumulate"], choices=M.REGIMES)
    ap.add_argument("--backends", nargs="+", default=["native"], choices=["native", "native-group", "jax"])
    ap.add_argument("--jax-max-replicates", type=int, default=10000)
    ap.add_argument("--out", type=output_file, default=None,
                    help="JSON file to write (default benchmarks/results/multinomial-<time>.json)")
    args = ap.parse_args(argv)
    for name in ("steps", "categories", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.replicates) < 1:
        ap.error(f"--replicates must be >= 1, got {min(args.replicates)}")
    bad = [s for s in args.sizes if s not in ("fixed", "linear", "big") and not
           (s.startswith("fixed:") and s[6:].isdigit() and int(s[6:]) >= 1)]
    if bad:
        ap.error(f"--sizes: unknown size {bad[0]!r}; use fixed, fixed:N (N >= 1), linear or big")
    T, K = args.steps, args.categories
    p = np.random.default_rng(0).dirichlet(np.ones(K))
    alpha = S.constant_alpha(0.5, T)
    size_of = {"fixed": S.constant_size(1000, T), "linear": S.linear_size(100, T), "big": S.linear_size(5000, T)}
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    results = []
    for regime in args.regimes:
        for size in args.sizes:
            n = S.constant_size(int(float(size.split(":")[1])), T) if size.startswith("fixed:") else size_of[size]
            cfg = M.MultinomialConfig(regime)
            for reps in args.replicates:
                row = {"regime": regime, "sizes": size, "replicates": reps, "steps": T, "categories": K}
                keys = replicate_keys(0, 0, reps)
                a = (keys, jnp.asarray(p, dtype), jnp.asarray(alpha[None], dtype), jnp.asarray(n[None], dtype),
                     jnp.ones((1, T + 1), dtype))
                runners = {"native": lambda: M.batched_risk_native(*a, regime),
                           "native-group": lambda: M.batched_risk_native(*a, regime, engine="group"),
                           "jax": lambda: driver.batched(M.kernel, cfg, grid_axes=M.Params(None, 0, 0, 0))(
                               a[0], M.Params(*a[1:]))}
                for backend in args.backends:
                    if backend == "jax" and reps > args.jax_max_replicates:
                        continue
                    first, walls, cpus = _time(runners[backend], args.repeats)
                    med, cpu = statistics.median(walls), statistics.median(cpus)
                    row.update({f"{backend}_first_call_s": first,
                                f"{backend}_compile_s_estimate": max(first - med, 0.0),
                                f"{backend}_run_s": med, f"{backend}_rep_gen_per_s": reps * T / med,
                                f"{backend}_cpu_s": cpu, f"{backend}_rep_gen_per_cpu_s": reps * T / cpu,
                                # every warm call, not only the medians above (an audit)
                                f"{backend}_run_s_all": walls, f"{backend}_cpu_s_all": cpus})
                if reps <= args.numpy_max_replicates:
                    # warm-up, not timed (as every backend's first call above): the generator's and the loop's
                    # first calls, on at most 100 replicates (the allocations of larger sizes stay in the timing)
                    numpy_vectorised(np.random.default_rng(args.repeats), p, alpha, n, regime, min(reps, 100))
                    walls, cpus = [], []
                    for r in range(args.repeats):
                        t0, c0 = time.perf_counter(), time.process_time()
                        numpy_vectorised(np.random.default_rng(r), p, alpha, n, regime, reps)
                        walls.append(time.perf_counter() - t0)
                        cpus.append(time.process_time() - c0)
                    row.update(numpy_vec_run_s=statistics.median(walls),
                               numpy_vec_rep_gen_per_s=reps * T / statistics.median(walls),
                               numpy_vec_cpu_s=statistics.median(cpus),
                               numpy_vec_rep_gen_per_cpu_s=reps * T / statistics.median(cpus),
                               numpy_vec_run_s_all=walls, numpy_vec_cpu_s_all=cpus)
                print(row, flush=True)
                results.append(row)
            if args.raw_replicates:
                import multinomial_reference as ref

                t0 = time.perf_counter()
                ref.simulate(np.random.default_rng(0), p, alpha, n, regime, num_replicates=args.raw_replicates)
                dt_raw = time.perf_counter() - t0
                row = {"regime": regime, "sizes": size, "replicates": args.raw_replicates, "steps": T,
                       "categories": K, "numpy_raw_run_s": dt_raw,
                       "numpy_raw_rep_gen_per_s": args.raw_replicates * T / dt_raw}
                print(row, flush=True)
                results.append(row)
    out = Path(args.out) if args.out else (Path(__file__).parent / "results"
                                           / f"multinomial-{dt.datetime.now():%Y%m%d-%H%M%S}.json")
    atomic_write_json(out, {"command": " ".join(["python3", "benchmarks/bench_multinomial.py"] + sys.argv[1:]),
                            "environment": environment_info(), "results": results,
                            "native_engines": list(native_engines()),
                            "load_average": list(__import__("os").getloadavg())})
    print(f"written {out}")


if __name__ == "__main__":
    main()
