"""Benchmarks of the Sigma estimators: batched Cholesky log-det vs a NumPy slogdet loop, and Gram streaming.

Usage: PYTHONPATH=. python3 benchmarks/bench_spectral.py [--count 10000] [--dim 384] [--stream-n 1000000]
Warm-up (compilation) is timed apart; every timed call ends in block_until_ready; figures are medians of repeats.
Writes benchmarks/results/bench_spectral.json with the device and versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from collapse_jax import spectral  # noqa: E402
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10_000, help="Gram matrices in the batched log-det")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--stream-n", type=int, default=1_000_000, help="embeddings streamed into one Gram")
    p.add_argument("--chunk", type=int, default=32768, help="rows per streamed chunk")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_spectral.json"))
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    d, count = args.dim, args.count

    # --- batched log-det: `count` SPD matrices (d x d), float64, as count/1000 batches of 1000 distinct matrices
    # (10,000 x 384^2 float64 is 11.8 GB; one batch of 1000 is reused so host and device copies fit in memory)
    per = min(count, 1000)
    passes = -(-count // per)
    base = rng.standard_normal((2 * d, d))
    g0 = base.T @ base
    jitter = rng.uniform(0.5, 1.5, per)
    grams = g0[None] * jitter[:, None, None] + np.eye(d)[None]
    gj = jnp.asarray(grams)
    t = time.perf_counter()
    jax.block_until_ready(spectral.batched_logdet(gj))
    compile_s = time.perf_counter() - t

    def jax_run():
        for _ in range(passes):
            out = spectral.batched_logdet(gj)
        jax.block_until_ready(out)

    jax_s, jax_all = median_time(jax_run, args.repeats)
    np_s, np_all = median_time(lambda: [np.linalg.slogdet(g) for _ in range(passes) for g in grams], args.repeats)
    ld_jax = np.asarray(spectral.batched_logdet(gj))[:50]
    ld_np = np.array([np.linalg.slogdet(g)[1] for g in grams[:50]])
    res = dict(batched_logdet=dict(count=passes * per, dim=d, jax_seconds=jax_s, jax_all=jax_all,
                                   jax_compile_and_first_call_seconds=compile_s, numpy_loop_seconds=np_s,
                                   numpy_all=np_all, speedup=np_s / jax_s,
                                   max_abs_diff_first50=float(np.max(np.abs(ld_jax - ld_np)))))
    del grams, gj

    # --- Gram streaming: N embeddings in chunks, generated up front so generation is not timed
    chunk = rng.standard_normal((args.chunk, d))
    nchunks = -(-args.stream_n // args.chunk)

    def stream():
        return spectral.gram_streaming((chunk for _ in range(nchunks)), d, dtype=jnp.float64)

    t = time.perf_counter()
    stream()
    first = time.perf_counter() - t
    s, s_all = median_time(stream, args.repeats)
    res["gram_streaming"] = dict(num_points=nchunks * args.chunk, dim=d, chunk=args.chunk, seconds=s, all=s_all,
                                 first_call_seconds=first, embeddings_per_second=nchunks * args.chunk / s,
                                 note="includes the per-chunk finite/shape check and host-to-device copy")
    res["environment"] = environment_info()
    res["command"] = "PYTHONPATH=. python3 benchmarks/bench_spectral.py " + " ".join(argv or [])
    atomic_write_json(args.out, res)
    print(json.dumps({k: v for k, v in res.items() if k != "environment"}, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
