"""The Sigma numpy engine's float32 leverage pass: the statements it replaced (six passes over the whitened rows)
against :func:`collapse_jax.sigma_precision._leverages_and_scale` (one pass in L2-sized chunks), on the same rows,
one thread, alternated, median of the runs; written to --out (JSON) with the CPU, its features and the versions.

    PYTHONPATH=. python3 benchmarks/bench_leverage_pass.py --rows 38400 19200 3840 --repeats 8
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import spectral
from collapse_jax.results import atomic_write_json, environment_info
from collapse_jax.sigma_precision import _leverages_and_scale
from collapse_jax.cli_options import positive_int


def six_passes(w):
    """The statements of the engine before the change (h, the cross leverages, the scaling)."""
    n = w.shape[0]
    h = np.einsum("ij,ij->i", w, w, dtype=np.float32).astype(np.float64)
    cross = np.empty((spectral.PAIR_OFFSETS, n))
    for k in range(1, spectral.PAIR_OFFSETS + 1):
        cross[k - 1, :n - k] = np.einsum("ij,ij->i", w[:n - k], w[k:])
        cross[k - 1, n - k:] = np.einsum("ij,ij->i", w[n - k:], w[:k])
    w *= np.sqrt(1.0 / (1.0 - h)).astype(np.float32)[:, None]
    return h, cross


def one_pass(w):
    n = w.shape[0]
    cross = np.empty((spectral.PAIR_OFFSETS, n))
    for k in range(1, spectral.PAIR_OFFSETS + 1):
        cross[k - 1, n - k:] = np.einsum("ij,ij->i", w[n - k:], w[:k])
    return _leverages_and_scale(w, cross), cross


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=positive_int, nargs="+", default=[38400, 19200, 3840])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeats", type=positive_int, default=8)
    ap.add_argument("--out", default="benchmarks/results/bench_leverage_pass.json")
    args = ap.parse_args()
    env = environment_info()
    print(f"CPU: {env['cpu_model']} ({' '.join(env['cpu_features'])}); NumPy {np.__version__}; d = {args.dim}; one "
          f"thread; median of {args.repeats} alternated runs")
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1):
        for n in args.rows:
            base = (rng.standard_normal((n, args.dim)) / np.sqrt(n)).astype(np.float32)  # leverages ~ d / n
            times = {"six passes": [], "one pass": []}
            outs = {}
            for _ in range(args.repeats):
                for name, f in (("six passes", six_passes), ("one pass", one_pass)):
                    w = base.copy()
                    t = time.perf_counter()
                    h, cross = f(w)
                    times[name].append(time.perf_counter() - t)
                    outs[name] = (h, cross, w)
            (h0, c0, w0), (h1, c1, w1) = outs["six passes"], outs["one pass"]
            print(f"n = {n}: six passes {1e3 * np.median(times['six passes']):.1f} ms, one pass "
                  f"{1e3 * np.median(times['one pass']):.1f} ms; largest differences: h {np.max(np.abs(h0 - h1)):.1e}, "
                  f"cross {np.max(np.abs(c0 - c1)):.1e}, rows {np.max(np.abs(w0 - w1)):.1e}")
            rows.append(dict(rows=n, six_passes_seconds=float(np.median(times["six passes"])),
                             one_pass_seconds=float(np.median(times["one pass"])), all_seconds=times,
                             max_diff_h=float(np.max(np.abs(h0 - h1))), max_diff_rows=float(np.max(np.abs(w0 - w1)))))
    atomic_write_json(args.out, dict(environment=env, dim=args.dim, threads=1, repeats=args.repeats, results=rows))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
