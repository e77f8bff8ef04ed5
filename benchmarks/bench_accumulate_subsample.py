"""Benchmark: what the accumulate-subsample regime costs on the jax path, against the accumulate regime.

Multinomial (K = 20, p ~ Dirichlet(2) with seed 2024) and Gaussian N(0, 1), alpha = 0.5, n_t = --size for
t = 0..--steps, --replicates replicates in one chunk. The first call (compilation and one run) is timed apart, then
the median (and minimum) of --repeats further calls (``simulate`` returns NumPy arrays: the work is done). Prints one
line per model and regime and writes them, with the CPU, its features and the versions, to --out (JSON); float64.

Example: python3 benchmarks/bench_accumulate_subsample.py --replicates 2000 --steps 30 --size 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import gaussian as G
from collapse_jax import multinomial as M
from collapse_jax import schedules as S
from collapse_jax.results import atomic_write_json, environment_info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bench_accumulate_subsample.json")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    p = np.random.default_rng(2024).dirichlet(np.full(20, 2.0))
    alpha, n = S.constant_alpha(0.5, args.steps), S.constant_size(args.size, args.steps)
    runs = {"multinomial": lambda seed, cfg, r: M.simulate(seed, p, alpha, n, cfg, r, chunk_size=args.replicates,
                                                            backend="jax", progress=False),
            "gaussian": lambda seed, cfg, r: G.simulate(seed, 0.0, 1.0, alpha, n, cfg, r,
                                                         chunk_size=args.replicates, progress=False)}
    configs = {"multinomial": M.MultinomialConfig, "gaussian": G.GaussianConfig}
    rows = []
    for model, run in runs.items():
        for regime in ("accumulate", "accumulate-subsample"):
            cfg = configs[model](regime)
            start = time.perf_counter()
            run(0, cfg, args.replicates)
            first_s = time.perf_counter() - start
            times = []
            for seed in range(1, args.repeats + 1):
                start = time.perf_counter()
                run(seed, cfg, args.replicates)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            print(f"{model:11s} {regime:20s} first call {first_s:6.1f} s   {args.replicates} replicates x "
                  f"{args.steps} generations: {median:7.2f} s (median of {args.repeats}; min {min(times):.2f} s)")
            rows.append(dict(model=model, regime=regime, first_call_seconds=first_s, seconds=median,
                             all_seconds=times))
    atomic_write_json(args.out, dict(environment=environment_info(), replicates=args.replicates, steps=args.steps,
                                     size=args.size, backend="jax", dtype="float64", results=rows))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
