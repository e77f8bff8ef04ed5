"""Benchmark: this CPU core's peak multiply-add rates, and the BLAS rates of the Sigma engine's products.

Why: the CPU kernels' figures (docs/benchmarks.md) only mean something next to what the core can do, and the CPUs
these benchmarks run on change (Intel with and without AMX, AMD EPYC). This measures, on one core:

- the float32 FMA peak (``vfmadd231ps``, 16 independent accumulators, 10 on 256-bit vectors so that they stay in
  registers without AVX-512: throughput, not latency) on 512-bit (AVX-512)
  and 256-bit (AVX2) vectors, the int16 rate on 256-bit vectors (``vpmaddwd`` + ``vpaddd``: 16 products summed
  into int32 lanes, the route a fixed-point engine would take on AVX2-only CPUs), and the bfloat16 dot-product rate
  (``vdpbf16ps``, two products per float32 lane) where the CPU has AVX-512-BF16, in giga multiply-adds per second
  (GMAC/s);
- OpenBLAS (NumPy / SciPy's, one thread) on the Sigma sweep's d = 384 shapes: the whitening ``strmm``, the weighted
  Gram ``W^T W`` and a general product, against that peak.

A C probe is compiled with the system compiler (``cc``, ``-O2 -march=native``); the probe's loops are independent
multiply-adds on registers, so the rates are the vector units' throughput at the clock the core runs them at.
Writes ``benchmarks/results/cpu_peak.json`` (with the environment). Example: ``python3 benchmarks/cpu_peak.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402
from collapse_jax.cli_options import positive_int  # noqa: E402

PROBE = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
#define REPS 3
#define STEPS 50000000L
/* Best of REPS runs of STEPS x NA independent multiply-add instructions OP(acc, a, b), MACS each; prints GMAC/s.
   NA accumulators and the two operands must fit in the vector registers (16 without AVX-512: a spilled accumulator
   measures the store-to-load latency, not the unit). */
#define PROBE_LOOP(NAME, NA, VEC, ZERO, A, B, OP, MACS, SUM)                             \
  {                                                                                      \
    double best = 0;                                                                     \
    for (int r = 0; r < REPS; ++r) {                                                     \
      VEC acc[NA];                                                                       \
      for (int j = 0; j < NA; ++j) acc[j] = ZERO;                                        \
      double t = now();                                                                  \
      for (long i = 0; i < STEPS; ++i) {                                                 \
        _Pragma("GCC unroll 16") for (int j = 0; j < NA; ++j) acc[j] = OP(acc[j], A, B); \
      }                                                                                  \
      t = now() - t;                                                                     \
      if (STEPS * (double)NA * MACS / t / 1e9 > best) best = STEPS * (double)NA * MACS / t / 1e9; \
      for (int j = 0; j < NA; ++j) sink += SUM(acc[j]);                                  \
    }                                                                                    \
    printf(NAME " %.3f\n", best);                                                       \
  }
static inline __m512 fma512(__m512 c, __m512 a, __m512 b) { return _mm512_fmadd_ps(a, b, c); }
static inline __m256 fma256(__m256 c, __m256 a, __m256 b) { return _mm256_fmadd_ps(a, b, c); }
static inline float sum256(__m256 x) { float o[8]; _mm256_storeu_ps(o, x); return o[0]; }
#if defined(__AVX2__)
/* int16 pairs multiplied and summed into int32 lanes (vpmaddwd), then accumulated (vpaddd): 16 multiply-adds. The
   pair is an asm statement: the product of the same operands in every accumulator would be computed once. */
static inline __m256i madd256(__m256i c, __m256i a, __m256i b) {
  __m256i m;
  __asm__ volatile("vpmaddwd %3, %2, %1\n\tvpaddd %1, %0, %0" : "+x"(c), "=&x"(m) : "x"(a), "x"(b));
  return c;
}
static inline float sumi256(__m256i x) { int o[8]; _mm256_storeu_si256((__m256i*)o, x); return (float)o[0]; }
#endif
int main(int argc, char** argv) {
  float sink = 0;  /* results depend on argc and are printed to stderr: nothing can be folded away */
  (void)argv;
#if defined(__AVX512F__)
  PROBE_LOOP("fma_f32_512", 16, __m512, _mm512_set1_ps(argc * 0.f), _mm512_set1_ps(1e-8f * argc),
             _mm512_set1_ps(1.0f), fma512, 16, _mm512_reduce_add_ps)
#endif
#if defined(__AVX2__) && defined(__FMA__)
  PROBE_LOOP("fma_f32_256", 10, __m256, _mm256_set1_ps(argc * 0.f), _mm256_set1_ps(1e-8f * argc),
             _mm256_set1_ps(1.0f), fma256, 8, sum256)
#endif
#if defined(__AVX2__)
  PROBE_LOOP("madd_i16_256", 10, __m256i, _mm256_set1_epi32(argc - 1), _mm256_set1_epi16((short)argc),
             _mm256_set1_epi16(3), madd256, 16, sumi256)
#endif
#if defined(__AVX512BF16__)
  PROBE_LOOP("dot_bf16_512", 16, __m512, _mm512_set1_ps(argc * 0.f), (__m512bh)_mm512_set1_epi32(0x3f803f80 * argc),
             (__m512bh)_mm512_set1_epi32(0x32003200), _mm512_dpbf16_ps, 32, _mm512_reduce_add_ps)
#endif
  fprintf(stderr, "%g\n", sink);
  return 0;
}
"""


def probe_peaks() -> dict[str, float]:
    """GMAC/s per core from the C probe (empty when no C compiler is found)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text(PROBE)
        subprocess.run([cc, "-O2", "-march=native", str(src), "-o", str(exe)], check=True)
        out = subprocess.run(["taskset", "-c", "0", str(exe)] if shutil.which("taskset") else [str(exe)],
                             check=True, capture_output=True, text=True).stdout
    return {k: float(v) for k, v in (line.split() for line in out.splitlines())}


def blas_rates(dim: int, rows: int, repeats: int) -> dict[str, float]:
    """GMAC/s of the Sigma numpy engine's products on one BLAS thread (minimum time of ``repeats``)."""
    from scipy.linalg import blas

    from collapse_jax.spectral import one_blas_thread

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    chol = np.linalg.cholesky((x.T @ x).astype(np.float64))
    linv = np.linalg.inv(chol).astype(np.float32)
    w = x.copy()

    def best(f, setup=lambda: None):
        times = []
        for _ in range(repeats):
            args = setup()          # untimed
            t0 = time.perf_counter()
            f(args)
            times.append(time.perf_counter() - t0)
        return min(times)

    macs = rows * dim * dim
    with one_blas_thread():
        # strmm overwrites its operand (scaling it by ~1/sqrt(rows)): a fresh copy each repeat, or the later repeats
        # and the Gram below ran on denormal numbers (an audit, 2026-12-04: syrk 0.4 GMAC/s at --repeats 10)
        return {"strmm_whitening": macs / 2 / best(lambda b: blas.strmm(1.0, linv, b, side=0, lower=1, overwrite_b=1),
                                                   setup=lambda: w.T.copy(order="F")) / 1e9,
                "syrk_weighted_gram": macs / 2 / best(lambda _: w.T @ w) / 1e9,
                "sgemm": macs / best(lambda _: x @ linv.T) / 1e9}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--rows", type=positive_int, default=38400, help="rows of the BLAS products (the sweep's largest block)")
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cpu_peak.json")
    args = ap.parse_args(argv)
    peaks = probe_peaks()
    rates = blas_rates(args.dim, args.rows, args.repeats)
    peak = peaks.get("fma_f32_512") or peaks.get("fma_f32_256")
    result = {"peaks_gmac_per_s": peaks, "blas_gmac_per_s": rates,
              "blas_fraction_of_fma_peak": {k: v / peak for k, v in rates.items()} if peak else None,
              "dim": args.dim, "rows": args.rows, "repeats": args.repeats, "environment": environment_info()}
    atomic_write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("peaks_gmac_per_s", "blas_gmac_per_s", "blas_fraction_of_fma_peak")},
                     indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
