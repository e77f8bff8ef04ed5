"""Cost of the leverage jackknife's second-pass statistics in the numpy block kernel (issue 13).

Runs ``sigma_precision.numpy_prefix_block_stats`` as it is in this checkout and as it is at ``--base`` (read with
``git show``) on the same float32 rows of one d = 384 block (eight sizes n = 1.5 d ... 15 910, one BLAS thread) and
reports the minimum CPU seconds of ``--repeats`` calls each and their ratio. Run it under ``flock /work/bench.lock``
on the shared machine.

Usage: ``PYTHONPATH=. python3 benchmarks/bench_jackknife_kernel.py --base main --repeats 3``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import numpy as np
from threadpoolctl import threadpool_limits

from collapse_jax import sigma_precision as spp


def kernel_at(ref: str):
    """``numpy_prefix_block_stats`` as defined at git revision ``ref`` (it needs only NumPy and SciPy)."""
    src = subprocess.run(["git", "show", f"{ref}:collapse_jax/sigma_precision.py"], check=True, capture_output=True,
                         text=True).stdout
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
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    pop = rng.standard_normal((args.num_points, args.dim)).astype(np.float32)
    ns = tuple(int(n) for n in spp.block_sizes(args.dim, args.num_points, (1.5, 2, 3, 5, 10, 20, 40, 50)))
    x = pop[rng.permutation(args.num_points)[:ns[-1]]]
    best = {}
    print(f"load average before: {os.getloadavg()}")
    with threadpool_limits(1):
        for name, kernel in ((args.base, kernel_at(args.base)), ("this checkout", spp.numpy_prefix_block_stats)):
            times = []
            for _ in range(args.repeats):
                t0 = time.process_time()
                kernel(x, ns)
                times.append(time.process_time() - t0)
            best[name] = min(times)
            print(f"{name}: {min(times):.3f} CPU-s per block (all: {', '.join(f'{t:.3f}' for t in times)})")
    print(f"ratio: {best['this checkout'] / best[args.base]:.3f}; load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
