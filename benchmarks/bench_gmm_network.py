"""Benchmark the GMM network (Figure 4 setting): replicate-steps per second against R, T and the NumPy reference.

Usage:
    python benchmarks/bench_gmm_network.py [--devices 2] [--replicates 1 10 100 1000 10000 100000]

``--devices N`` splits the CPU into N XLA host devices (set before JAX is imported) and shards the replicate axis
over them. Compile time is reported apart (first call minus a warm call); timed calls return host NumPy arrays,
so everything has finished; figures are medians of ``--repeats`` warm calls. Results: JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2, help="XLA CPU host devices to shard replicates over")
    ap.add_argument("--replicates", type=int, nargs="+", default=[1, 10, 100, 1000, 10_000, 100_000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--steps-scaling", type=int, nargs="*", default=[50, 100, 200, 400])
    ap.add_argument("--scaling-replicates", type=int, default=1000)
    ap.add_argument("--jax-max-replicates", type=int, default=1000,
                    help="largest R timed with the portable pure-JAX kernel (slow on CPU)")
    ap.add_argument("--numpy-replicates", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="warm repeats for R <= 1000 (one above)")
    ap.add_argument("--batch", type=int, default=10_000, help="replicates per simulate call")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gmm_network.json"))
    args = ap.parse_args()
    if args.devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np

    import gmm_reference
    from collapse_jax import gmm_network as gn
    from collapse_jax.results import atomic_write_json, environment_info

    def sim(cfg, R, backend, seed):
        # beyond --batch replicates, run batches of --batch (as the CLI does): same compiled shapes, bounded memory
        for start in range(0, R, args.batch):
            gn.simulate(cfg, min(args.batch, R - start), seed=seed, backend=backend, show_progress=False,
                        first_replicate=start)

    def timed(cfg, R, backend, repeats):
        t0 = time.perf_counter()
        sim(cfg, min(R, args.batch), backend, 0)  # compiles (for R > batch: one batch as warm-up)
        first = time.perf_counter() - t0
        if R > args.batch:
            first = 0.0  # compiled by the batch-sized run before
        times = []
        for rep in range(repeats):
            t0 = time.perf_counter()
            sim(cfg, R, backend, rep + 1)
            times.append(time.perf_counter() - t0)
        warm = float(np.median(times))
        return dict(replicates=R, steps=cfg.num_steps, seconds=warm, compile_seconds=max(first - warm, 0.0) if R <= args.batch else None,
                    repeats=len(times), seconds_per_replicate=warm / R,
                    replicate_steps_per_second=R * cfg.num_steps / warm,
                    point_updates_per_second=R * cfg.num_models * int(gn.step_schedule(cfg).num_draws.sum()) / warm)

    cfg = gn.paper_config(4, num_steps=args.steps)
    out = dict(environment=environment_info(), setting="Figure 4: n=3, B=2, d=1, L=3, beta=0.5",
               devices=args.devices, bytes_per_replicate=gn.bytes_per_replicate(cfg), rows=[], steps_scaling=[])

    # the NumPy reference, same run
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(args.numpy_replicates):
        gmm_reference.simulate(rng, num_steps=args.steps)
    numpy_per_rep = (time.perf_counter() - t0) / args.numpy_replicates
    out["numpy_seconds_per_replicate"] = numpy_per_rep
    print(f"NumPy reference: {numpy_per_rep:.3f} s per replicate (T={args.steps})", flush=True)

    for backend in ("native", "jax"):
        for R in args.replicates:
            if backend == "jax" and R > args.jax_max_replicates:
                continue
            repeats = args.repeats if R <= 1000 else 1
            row = dict(backend=backend, **timed(cfg, R, backend, repeats))
            row["speedup_vs_numpy"] = numpy_per_rep / row["seconds_per_replicate"]
            out["rows"].append(row)
            print(f"{backend:6s} R={R:>7d}: {row['seconds']:.3f} s (compile {row['compile_seconds'] or 0:.2f} s), "
                  f"{row['replicate_steps_per_second']:.3g} replicate-steps/s, "
                  f"{row['point_updates_per_second']:.3g} updates/s, x{row['speedup_vs_numpy']:.0f} NumPy", flush=True)
    # progress bar on (20 calls of T/20 steps) against off (one call), same R
    R = args.scaling_replicates
    t0 = time.perf_counter(); gn.simulate(cfg, R, seed=1, show_progress=False); off = time.perf_counter() - t0
    gn.simulate(cfg, R, seed=1, show_progress=True)  # compiles the chunked runner
    t0 = time.perf_counter(); gn.simulate(cfg, R, seed=2, show_progress=True); on = time.perf_counter() - t0
    out["progress_overhead"] = dict(replicates=R, seconds_without=off, seconds_with=on)
    print(f"progress bar: {on:.3f} s with, {off:.3f} s without (R={R})", flush=True)
    for T in args.steps_scaling:
        row = timed(gn.paper_config(4, num_steps=T), args.scaling_replicates, "native", args.repeats)
        out["steps_scaling"].append(row)
        print(f"native T={T}: {row['seconds']:.3f} s for R={args.scaling_replicates}", flush=True)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
