"""Benchmarks of the Sigma estimators (issue 4's performance targets), all in one run on the same machine:

1. batched Cholesky log-det of ``--count`` Gram matrices at ``--dim`` (default 10,000 at d = 384), float64:
   ``spectral.batched_logdet`` (native jax.ffi kernel) against a NumPy ``slogdet`` loop as NumPy runs by default
   (multithreaded BLAS) and with BLAS limited to one thread; XLA's batched Cholesky (the previous path) on
   ``--xla-count`` matrices;
2. Gram streaming throughput, ``--stream-n`` embeddings at ``--dim`` (``spectral.gram_streaming``; data generated
   before timing), against the previous one-jitted-accumulate-per-chunk JAX path;
3. the sweep's block kernel at ``--dim`` (one block = all 10 prefix sizes up to n = 100 d): CPU-seconds per block of
   the native (AMX), numpy and jax engines on the same blocks of a whitened float32 population, the median of
   ``--kernel-repeats`` passes over the blocks (each pass's figures kept).

Usage: PYTHONPATH=. python3 benchmarks/bench_spectral.py [--count 10000] [--dim 384] [--stream-n 1000000]
Every timed call ends in block_until_ready; compile/first calls are timed apart; wall figures are medians of repeats.
The machine is shared: wall and CPU (process) seconds are both recorded, with the load average before and after.
Writes benchmarks/results/bench_spectral.json with the device and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import _native, sigma_precision, spectral  # noqa: E402
from collapse_jax.cli_options import output_file, positive_int  # noqa: E402
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402


def timed(fn, repeats):
    """Median wall seconds over repeats, every wall time, and process CPU seconds of each repeat."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return dict(seconds=statistics.median(walls), all=walls, cpu_all=cpus)


def batched_logdet(args, rng):
    """10,000 SPD matrices as count/1000 passes over 1000 distinct ones (10,000 x 384^2 float64 is 11.8 GB)."""
    d = args.dim
    per = min(args.count, 1000)
    passes = -(-args.count // per)
    base = rng.standard_normal((2 * d, d))
    grams = (base.T @ base)[None] * rng.uniform(0.5, 1.5, per)[:, None, None] + np.eye(d)[None]
    gj = jnp.asarray(grams)
    w = time.perf_counter()
    jax.block_until_ready(spectral.batched_logdet(gj, backend="native"))
    first = time.perf_counter() - w

    def native():
        for _ in range(passes):
            out = spectral.batched_logdet(gj, backend="native")
        jax.block_until_ready(out)

    def numpy_loop():
        for _ in range(passes):
            for g in grams:
                np.linalg.slogdet(g)

    res = dict(count=passes * per, dim=d, threads=_native.spectral_threads(), native_first_call_seconds=first)
    res["native"] = timed(native, args.repeats)
    np.linalg.slogdet(grams[0])  # (NumPy's first call, its BLAS threads started, outside the loops' timing; an audit)
    res["numpy_slogdet_loop"] = timed(numpy_loop, args.numpy_repeats)
    with spectral.one_blas_thread():
        res["numpy_slogdet_loop_one_blas_thread"] = timed(numpy_loop, args.numpy_repeats)
    xla_n = min(args.xla_count, per)
    gx = gj[:xla_n]
    w = time.perf_counter()
    jax.block_until_ready(spectral.batched_logdet(gx, backend="xla"))
    res["xla_first_call_seconds"] = time.perf_counter() - w
    xla = timed(lambda: jax.block_until_ready(spectral.batched_logdet(gx, backend="xla")), args.repeats)
    res["xla"] = dict(xla, count=xla_n, seconds_per_matrix=xla["seconds"] / xla_n)
    for key in ("native", "numpy_slogdet_loop", "numpy_slogdet_loop_one_blas_thread"):
        res[key]["seconds_per_matrix"] = res[key]["seconds"] / res["count"]
    res["speedup_vs_numpy_loop"] = res["numpy_slogdet_loop"]["seconds"] / res["native"]["seconds"]
    res["speedup_vs_numpy_loop_one_blas_thread"] = (res["numpy_slogdet_loop_one_blas_thread"]["seconds"]
                                                    / res["native"]["seconds"])
    ld = np.asarray(spectral.batched_logdet(gj[:50], backend="native"))
    ref = np.array([np.linalg.slogdet(g)[1] for g in grams[:50]])
    res["max_rel_diff_vs_slogdet_first50"] = float(np.max(np.abs(ld / ref - 1)))
    return res


def gram_stream(args, rng):
    d = args.dim
    chunk = rng.standard_normal((args.chunk, d))
    nchunks = -(-args.stream_n // args.chunk)
    total = nchunks * args.chunk

    def threaded():
        return spectral.gram_streaming((chunk for _ in range(nchunks)), d, dtype=jnp.float64)

    def jax_path():  # the previous implementation: one jitted float64 accumulate per chunk
        return spectral._gram_streaming_jax((chunk for _ in range(nchunks)), d, jnp.float64, None)

    res = dict(num_points=total, dim=d, chunk=args.chunk, threads=_native.spectral_threads(),
               note="includes the per-chunk finite/shape check; data generated before timing")
    for name, fn in (("gram_streaming", threaded), ("previous_jax_accumulate", jax_path)):
        w = time.perf_counter()
        fn()
        first = time.perf_counter() - w
        t = timed(fn, args.repeats)
        res[name] = dict(t, first_call_seconds=first, embeddings_per_second=total / t["seconds"])
    return res


def block_kernel(args, rng):
    """CPU-seconds per block of each engine on the same blocks (1 thread each, so CPU time is the block's cost): the
    median of ``--kernel-repeats`` passes, each over all the engine's blocks."""
    d = args.dim
    num_points = max(args.kernel_points, 100 * d + 1)
    pop = rng.standard_normal((num_points, d)).astype(np.float32)
    ns = tuple(int(n) for n in sigma_precision.block_sizes(d, num_points, sigma_precision.DEFAULT_RATIOS))
    idx = np.stack([rng.choice(num_points, ns[-1], replace=False) for _ in range(args.kernel_blocks)])
    res = dict(dim=d, ns=list(ns), blocks=args.kernel_blocks, population=num_points)

    def native():
        sigma_precision.native_block_stats(pop, idx, ns, threads=1)

    def numpy_engine():
        with spectral.one_blas_thread():
            for b in idx:
                sigma_precision.numpy_prefix_block_stats(pop[b], ns)

    def jax_engine():
        for b in idx[:args.jax_blocks]:
            jax.block_until_ready(sigma_precision.jit_prefix_block_stats(jnp.asarray(pop[b]), ns))

    engines = [("numpy", numpy_engine), ("jax", jax_engine)]
    if _native.amx_available():
        engines.insert(0, ("native", native))
    jax_engine_first = time.perf_counter()
    jax.block_until_ready(sigma_precision.jit_prefix_block_stats(jnp.asarray(pop[idx[0]]), ns))
    res["jax_compile_and_first_block_seconds"] = time.perf_counter() - jax_engine_first
    warm = time.perf_counter()  # the native library's loading and first call, and NumPy's, outside the timing
    if _native.amx_available():
        sigma_precision.native_block_stats(pop, idx[:1], ns, threads=1)
    with spectral.one_blas_thread():
        sigma_precision.numpy_prefix_block_stats(pop[idx[0]], ns)
    res["native_numpy_warm_up_seconds"] = time.perf_counter() - warm
    for name, fn in engines:  # (one pass each until 2026-12-07, though the docstring said medians: an audit)
        t = timed(fn, args.kernel_repeats)
        count = args.jax_blocks if name == "jax" else len(idx)
        res[name] = dict(blocks=count, passes=args.kernel_repeats, wall_seconds_per_block=t["seconds"] / count,
                         cpu_seconds_per_block=statistics.median(t["cpu_all"]) / count,
                         wall_seconds_per_block_all=[s / count for s in t["all"]],
                         cpu_seconds_per_block_all=[s / count for s in t["cpu_all"]])
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=positive_int, default=10_000, help="Gram matrices in the batched log-det")
    p.add_argument("--xla-count", type=positive_int, default=1000, help="matrices for XLA's batched Cholesky (slow)")
    p.add_argument("--dim", type=positive_int, default=384)
    p.add_argument("--stream-n", type=positive_int, default=1_000_000, help="embeddings streamed into one Gram")
    p.add_argument("--chunk", type=positive_int, default=32768, help="rows per streamed chunk")
    p.add_argument("--kernel-blocks", type=positive_int, default=6,
                   help="blocks per engine in the block-kernel benchmark")
    p.add_argument("--jax-blocks", type=positive_int, default=1, help="blocks for the (slow on CPU) jax engine")
    p.add_argument("--kernel-points", type=positive_int, default=200_000, help="population rows for the block kernel")
    p.add_argument("--kernel-repeats", type=positive_int, default=3,
                   help="timed passes over the blocks, per engine, in the block-kernel benchmark (the median is kept)")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--numpy-repeats", type=positive_int, default=1, help="repeats of the (slow) NumPy loops")
    p.add_argument("--out", type=output_file, default=str(Path(__file__).parent / "results" / "bench_spectral.json"))
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    res = dict(load_average_before=os.getloadavg())
    res["batched_logdet"] = batched_logdet(args, rng)
    print(json.dumps(res["batched_logdet"], indent=1), flush=True)
    res["gram_streaming"] = gram_stream(args, rng)
    print(json.dumps(res["gram_streaming"], indent=1), flush=True)
    res["block_kernel"] = block_kernel(args, rng)
    print(json.dumps(res["block_kernel"], indent=1), flush=True)
    res["load_average_after"] = os.getloadavg()
    res["environment"] = environment_info()
    res["command"] = "PYTHONPATH=. python3 benchmarks/bench_spectral.py " + " ".join(argv or [])
    atomic_write_json(args.out, res)
    print(f"load average before {res['load_average_before']}, after {res['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
