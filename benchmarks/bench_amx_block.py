"""The Sigma sweep's native AMX block kernel: CPU seconds per block with every statistic of the leverage-jackknife
interval against the same kernel with the first pass only (log det, Var(M_i) and the leave-one-out moments: what it
computed before the jackknife), same blocks, one thread, the two alternated; medians over the repeats, with the CPU
and versions recorded. Issue 13's target: the full kernel at most 2x the first pass.

    python3 benchmarks/bench_amx_block.py --dims 384 128 --repeats 7 [--base <revision>] [--out results.json]

``--base``: also time the kernel as it is at that git revision (``spectral_kernels.cc`` from ``git show``, built
here as the library builds its own), alternated with this checkout's. The first pass alone is the kernel called with
NULL for the pair / row-sum outputs (``cj_block_stats`` skips those statistics then). ``--issue-base REV``: also time
the kernel of a revision from before the jackknife (its ``cj_block_stats`` took only the log-det and mean(M_i^2)
outputs), e.g. ``88dce5a^``, the block kernel when issue 13 was filed. Needs an x86 CPU with AMX.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import _native, sigma_precision as spp  # noqa: E402
from collapse_jax.results import atomic_write_json, cpu_info, environment_info  # noqa: E402


def library_at(rev: str, *, pre_jackknife: bool = False):
    """The spectral kernels as they are at git revision ``rev``, built like the library's own (``_native._build``:
    same flags, kept in the build cache under its own source hash). ``pre_jackknife``: the revision's
    ``cj_block_stats`` has the old signature (log det and mean(M_i^2) outputs only)."""
    work = Path(tempfile.mkdtemp(prefix="amx-base-"))
    src = work / "spectral_kernels.cc"
    src.write_text(subprocess.run(["git", "show", f"{rev}:collapse_jax/_native/spectral_kernels.cc"], cwd=ROOT,
                                  check=True, capture_output=True, text=True).stdout)
    lib = ctypes.CDLL(str(_native._build(_native._compiler(), (src,), "spectral_kernels_base")))
    if pre_jackknife:
        lib.cj_amx_available.restype = ctypes.c_int
        lib.cj_block_stats.restype = ctypes.c_int64
        lib.cj_block_stats.argtypes = ([ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
                                       + [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
                                       + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64])
        lib.pre_jackknife = True
        return lib
    for fn, (restype, argtypes) in _native._LIBRARIES["spectral_kernels"].signatures.items():
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
    return lib


def block_timer(lib, dim: int, blocks: int, num_points: int, seed: int):
    """``run(all_statistics) -> CPU seconds per block`` on fixed random blocks of a float32 Gaussian population."""
    rng = np.random.default_rng(seed)
    w32 = (rng.standard_normal((num_points, dim)) / np.sqrt(num_points)).astype(np.float32)
    ns = np.ascontiguousarray(spp.block_sizes(dim, num_points, spp.DEFAULT_RATIOS), np.int64)
    idx = np.ascontiguousarray(np.stack([rng.choice(num_points, ns[-1], replace=False) for _ in range(blocks)]),
                               np.int64)
    out = [np.empty((blocks, len(ns))) for _ in range(2 + len(spp.LOO_FIELDS))]
    if not lib.cj_amx_available():
        raise SystemExit("this CPU (or build) has no AMX kernel")

    def run(all_statistics: bool) -> float:
        ptrs = [a.ctypes.data for a in out[:4]] + [a.ctypes.data if all_statistics else None for a in out[4:]]
        if getattr(lib, "pre_jackknife", False):  # (log det, mean(M_i^2)) only, whatever is asked
            ptrs = [out[0].ctypes.data, out[1].ctypes.data]
        t0 = time.process_time()
        rc = lib.cj_block_stats(w32.ctypes.data, num_points, dim, idx.ctypes.data, blocks, int(ns[-1]),
                                ns.ctypes.data, len(ns), *ptrs, 1)
        if rc != 0:
            raise RuntimeError(f"cj_block_stats returned {rc}")
        return (time.process_time() - t0) / blocks

    return run, ns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 128])
    ap.add_argument("--blocks", type=int, default=0, help="blocks per timed call (default: 4 at d >= 256, else 12)")
    ap.add_argument("--num-points", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--base", default=None, help="git revision whose kernel is timed alongside")
    ap.add_argument("--issue-base", default=None,
                    help="a revision from before the jackknife statistics (old signature), timed alongside")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args()

    # before any build (this checkout's, --base's, --issue-base's): a CPU without AMX cannot run the kernel timed here
    cpu = cpu_info()
    if "amx_tile" not in cpu["cpu_features"]:
        raise SystemExit(f"this benchmark needs an x86 CPU with AMX; {cpu['cpu_model']} has none (its SIMD "
                         f"features: {' '.join(cpu['cpu_features']) or 'none'}): nothing was built or timed")
    libs = {"this checkout": _native.spectral_library()}
    if libs["this checkout"] is None:
        raise SystemExit("native code is off or could not be built")
    if not libs["this checkout"].cj_amx_available():  # (the flag is there, but the kernel or the OS refuses it)
        raise SystemExit(f"{cpu['cpu_model']} lists AMX, but this checkout's kernel cannot use it (a build without "
                         "AMX, or tile state not granted by the OS): nothing was timed")
    if args.base:
        libs[f"at {args.base}"] = library_at(args.base)
    if args.issue_base:
        libs[f"at {args.issue_base}"] = library_at(args.issue_base, pre_jackknife=True)
    rows = []
    for dim in args.dims:
        blocks = args.blocks or (4 if dim >= 256 else 12)
        timers = {name: block_timer(lib, dim, blocks, args.num_points, args.seed)[0] for name, lib in libs.items()}
        for run in timers.values():  # warm-up: workspaces, pages
            run(True)
            run(False)
        times = {(name, full): [] for name in timers for full in (True, False)}
        for _ in range(args.repeats):
            for name, run in timers.items():
                for full in (True, False):
                    times[(name, full)].append(run(full))
        for name in timers:
            full, first = np.median(times[(name, True)]), np.median(times[(name, False)])
            rows.append({"dim": dim, "kernel": name, "blocks": blocks, "all_statistics_cpu_s": float(full),
                         "first_pass_cpu_s": float(first), "ratio": float(full / first),
                         "all_statistics_runs": times[(name, True)], "first_pass_runs": times[(name, False)]})
            print(f"d = {dim:4d}  {name:16s} all statistics {full:.4f}  first pass {first:.4f} CPU-s per block"
                  f"  ratio {full / first:.2f}", flush=True)
        if args.issue_base:  # the block kernel when issue 13 was filed, against this checkout's
            before = np.median(times[(f"at {args.issue_base}", True)])
            now = np.median(times[("this checkout", True)])
            rows[-1]["this_checkout_all_over_issue_base"] = float(now / before)
            print(f"d = {dim:4d}  this checkout, all statistics / the kernel at {args.issue_base}: {now / before:.2f}")
    env = environment_info()
    print(f"CPU: {env['cpu_model']} ({', '.join(env['cpu_features'])}); numpy {env['numpy']}, jax {env.get('jax')}")
    if args.out:
        atomic_write_json(args.out, {"command": " ".join(sys.argv), "environment": env, "rows": rows})


if __name__ == "__main__":
    main()
