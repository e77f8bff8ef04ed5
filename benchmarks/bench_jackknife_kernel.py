"""Cost of the leverage jackknife's second-pass statistics in the numpy block kernel (issue 13).

Runs ``sigma_precision.numpy_prefix_block_stats`` as it is in this checkout and as it is at ``--base`` (read with
``git show``) on the same float32 rows of one d = 384 block (eight sizes n = 1.5 d ... 15 910, one BLAS thread) and
reports the minimum and median CPU seconds of ``--repeats`` calls each and their ratio. After one warm-up call of
each, the two kernels alternate, the order reversed every round (since 2026-12-04: before, all of the base's calls
ran first, and the first calls paid for warming up). ``--out`` also writes a JSON with the machine's environment.
Run it under ``flock /work/bench.lock`` on the shared machine.

Usage: ``PYTHONPATH=. python3 benchmarks/bench_jackknife_kernel.py --base main --repeats 3``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import _checkout  # (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import sigma_precision as spp
from collapse_jax.results import atomic_write_json, environment_info


def kernel_at(ref: str):
    """``numpy_prefix_block_stats`` as defined at git revision ``ref`` (it needs only NumPy and SciPy)."""
    src = subprocess.run(["git", "show", f"{ref}:collapse_jax/sigma_precision.py"], check=True, capture_output=True,
                         text=True, cwd=_checkout.ROOT).stdout   # (the folder it was run in was asked: an audit)
    text = src[src.index("def numpy_prefix_block_stats"):src.index("def native_block_stats")]
    namespace = {"np": np, "spectral": spp.spectral}
    exec(text, namespace)  # noqa: S102 - our own repository's source at a named revision
    return namespace["numpy_prefix_block_stats"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="main", help="git revision to compare against")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--num-points", type=int, default=15910)
    p.add_argument("--out", default=None, help="also write the figures and environment to this JSON file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    pop = rng.standard_normal((args.num_points, args.dim)).astype(np.float32)
    ns = tuple(int(n) for n in spp.block_sizes(args.dim, args.num_points, (1.5, 2, 3, 5, 10, 20, 40, 50)))
    x = pop[rng.permutation(args.num_points)[:ns[-1]]]
    kernels = {args.base: kernel_at(args.base), "this checkout": spp.numpy_prefix_block_stats}
    times: dict[str, list[float]] = {name: [] for name in kernels}
    load_before = os.getloadavg()
    print(f"load average before: {load_before}")
    with threadpool_limits(1):
        for kernel in kernels.values():  # warm-up, not timed
            kernel(x, ns)
        for r in range(args.repeats):
            for name in (list(kernels) if r % 2 == 0 else list(kernels)[::-1]):
                t0 = time.process_time()
                kernels[name](x, ns)
                times[name].append(time.process_time() - t0)
    best = {name: min(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: min {min(t):.3f}, median {statistics.median(t):.3f} CPU-s per block "
              f"(all: {', '.join(f'{v:.3f}' for v in t)})")
    ratio = best["this checkout"] / best[args.base]
    medians = statistics.median(times["this checkout"]) / statistics.median(times[args.base])
    environment = environment_info()  # (printed too: without --out no CPU or version was recorded; an audit)
    print(f"ratio (minima): {ratio:.3f}, (medians): {medians:.3f}; load average after: {os.getloadavg()}")
    print(f"CPU: {environment.get('cpu_model')} (family {environment.get('cpu_family')} model "
          f"{environment.get('cpu_model_number')}), features {environment.get('cpu_features')}; jax "
          f"{environment.get('jax')}, numpy {environment.get('numpy')}, python {environment.get('python')}")
    if args.out:
        atomic_write_json(args.out, {"command": " ".join(sys.argv), "base": args.base, "dim": args.dim, "sizes": ns,
                                     "cpu_seconds": times, "ratio_of_minima": ratio, "ratio_of_medians": medians,
                                     "load_before": load_before, "environment": environment})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
