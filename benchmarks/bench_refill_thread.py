"""The multinomial kernel's refill engine on one thread: replicate-generations per thread-CPU second of this
checkout's kernel against the same kernel at another git revision, on the same runs, the two builds alternated
(order reversed every other round); per case the median rate of each build and the median (and quartiles) of the
per-round ratios this / base, which is what compares on a machine whose speed drifts by 10-25 % within minutes.
The checksum (sum of all losses) says whether the two builds drew the same numbers.

    python3 benchmarks/bench_refill_thread.py --base <revision> [--cases 50x100000 1000x1000000] [--rounds 15]

Each case K x n_t runs the replace regime with n_t fixed for ``--generations`` generations from p = Dirichlet(1)
(seed 0, as ``bench_multinomial.py``), alpha = 0.5, 100,000 / K replicates (at least 50). Both kernels are built as
the library builds its own (``_native._build``: same flags, ``-march=native``, kept in the build cache) with a small
C entry point appended that runs the refill engine on the calling thread (``refill_run``, which picks the variant
the library would, or ``RefillRun`` itself for revisions before that dispatch). Needs a build with the refill engine
(AVX-512 or AVX2). Without ``--base`` only this checkout is timed.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import _native  # noqa: E402
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402

KERNEL = "collapse_jax/_native/multinomial_risk.cc"
HEADER = "collapse_jax/_native/common.h"

# Appended to the kernel source (inside its file, so its anonymous namespace is visible).
ENTRY = r"""
#include <ctime>
extern "C" double cj_refill_thread(const double* p, int64_t K, double size, int64_t T1, int64_t R, double* loss) {
#if COLLAPSE_JAX_REFILL
  std::vector<double> alpha(T1, 0.5), n(T1, size), kappa(T1, 1.0);
  std::vector<uint32_t> seeds(2 * R);
  for (int64_t i = 0; i < 2 * R; ++i) seeds[i] = (uint32_t)(i * 2654435761u + 12345u);
  const Problem pr{p, alpha.data(), n.data(), kappa.data(), seeds.data(), K, 1, R, T1, 0};
  std::atomic<int64_t> next{0};
  timespec a, b;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
#if COLLAPSE_JAX_REFILL_DISPATCH
  refill_run<double>(pr, next, R, loss);
#else
  RefillRun<double, RefillLanes>(pr, next, R, loss).run();
#endif
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
  return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
#else
  return -1.0;
#endif
}
"""


def kernel_library(source: str, name: str, header: str | None = None):
    """The kernel source plus the entry point, built by ``_native._build`` (the hash covers the whole text), beside
    ``header``, the ``common.h`` it includes (the kernel has included it since 3cf5505, and the copy alone failed to
    compile with "common.h: No such file or directory"; an audit, 2026-12-07)."""
    work = Path(tempfile.mkdtemp(prefix="refill-thread-"))
    path = work / f"{name}.cc"
    path.write_text(source + ENTRY)
    if header is not None:
        (work / "common.h").write_text(header)
    lib = ctypes.CDLL(str(_native._build(_native._compiler(), (path,), name)))
    lib.cj_refill_thread.restype = ctypes.c_double
    lib.cj_refill_thread.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_void_p]
    return lib


def parse_case(text: str) -> tuple[int, int]:
    try:
        K, n = (int(float(v)) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"case {text!r}: expected K x n_t, e.g. 50x100000") from None
    if K < 2 or n < 1:
        raise argparse.ArgumentTypeError(f"case {text!r}: need K >= 2 and n_t >= 1")
    return K, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=None, help="git revision to compare against (default: none)")
    ap.add_argument("--cases", nargs="+", type=parse_case,
                    default=[parse_case(c) for c in ("50x1000", "50x10000", "50x100000", "50x1000000", "1000x10000",
                                                     "1000x100000", "1000x1000000")])
    ap.add_argument("--rounds", type=int, default=15, help="alternations per case (at least 2)")
    ap.add_argument("--generations", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/refill_thread.json"))
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be at least 2")
    builds = {"this": kernel_library((ROOT / KERNEL).read_text(), "refill_thread", (ROOT / HEADER).read_text())}
    if args.base:
        def show(path: str) -> str | None:
            got = subprocess.run(["git", "show", f"{args.base}:{path}"], cwd=ROOT, capture_output=True, text=True)
            return got.stdout if got.returncode == 0 else None  # (no common.h before 3cf5505)

        base = show(KERNEL)
        if base is None:
            raise SystemExit(f"--base {args.base}: no {KERNEL} there")
        builds["base"] = kernel_library(base, "refill_thread_base", show(HEADER))
    T1 = args.generations + 1
    rows = []
    for K, n in args.cases:
        R = max(50, 100_000 // K)
        p = np.random.default_rng(0).dirichlet(np.ones(K))
        loss = {name: np.zeros(R * T1) for name in builds}
        rates: dict[str, list[float]] = {name: [] for name in builds}
        for name in builds:  # an untimed warm-up call each (page faults, caches, frequency: the first round counted)
            builds[name].cj_refill_thread(p.ctypes.data, K, float(n), T1, R, loss[name].ctypes.data)
        for r in range(args.rounds):
            for name in (list(builds) if r % 2 == 0 else list(builds)[::-1]):
                seconds = builds[name].cj_refill_thread(p.ctypes.data, K, float(n), T1, R, loss[name].ctypes.data)
                if seconds < 0:
                    raise SystemExit("this build has no refill engine (it needs AVX-512 or AVX2)")
                rates[name].append(R * T1 / seconds)
        row = {"K": K, "n_t": n, "replicates": R, "generations": args.generations,
               "rate_median": {k: statistics.median(v) for k, v in rates.items()},
               "rates": rates, "checksum": {k: float(v.sum()) for k, v in loss.items()}}
        line = f"K = {K:5d}, n_t = {n:8d}: this {row['rate_median']['this'] / 1e3:8.0f} k/s"
        if "base" in builds:
            ratios = [a / b for a, b in zip(rates["this"], rates["base"])]
            q1, _, q3 = statistics.quantiles(ratios, n=4)
            row.update(ratio_median=statistics.median(ratios), ratio_quartiles=[q1, q3],
                       same_draws=row["checksum"]["this"] == row["checksum"]["base"])
            line += (f", base {row['rate_median']['base'] / 1e3:8.0f} k/s, this / base {row['ratio_median']:.3f} "
                     f"(quartiles {q1:.3f}-{q3:.3f}), same draws: {row['same_draws']}")
        print(line, flush=True)
        rows.append(row)
    atomic_write_json(Path(args.out), {"command": " ".join(sys.argv), "base": args.base, "time": time.time(),
                                       "environment": environment_info(), "results": rows})
    print("written", args.out)


if __name__ == "__main__":
    main()
