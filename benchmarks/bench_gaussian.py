"""The Gaussian refit simulator against a vectorised NumPy implementation of the same model, timed in the same run.

Model (``collapse_jax/gaussian.py``, exact sufficient statistics): each generation a group of ``M`` draws from the
current fit ``N(m, v)`` has mean ``~ N(m, v / M)`` and sum of squared deviations ``~ v chi2_{M-1}``; the refit is
that mean and ``SS / (M - 1)``; the loss is ``W_2^2`` to ``N(0, 1)``. Pure synthetic (``alpha_t = 0`` after the first
generation), replace, constant ``M``: NumPy needs one normal and one chi-square per replicate and generation
(``Generator.standard_normal`` and ``Generator.chisquare``, vectorised over replicates, one thread). With fresh data
(``--alpha``): a ``Generator.binomial`` real count per replicate, the real and synthetic groups drawn apart and
pooled.

Reports replicate-generations per second of each backend of the library (``--backends``: the native C++ kernel and
the portable JAX path) and of NumPy (median of ``--repeats`` timed calls after one warm-up call, whose time,
compilation included, is reported apart), their ratios to NumPy, the mean loss at the last generation of each (they
estimate the same number) and the CPU, versions and load average.

Usage: ``PYTHONPATH=. python3 benchmarks/bench_gaussian.py --replicates 200000 --generations 30 --size 10
[--alpha 0.5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax.cli_options import output_file, positive_int


def numpy_losses(rng: np.random.Generator, replicates: int, generations: int, size: int,
                 alpha: float = 0.0) -> np.ndarray:
    """W2^2 of the fits at generations 0..T, (replicates, T + 1), replace: the first group from N(0, 1), then from
    the fit; with ``alpha > 0`` each generation's real count is ``Binomial(size, alpha)``, the real and synthetic
    groups drawn apart (a chi-square of 0 degrees of freedom for a group of one) and pooled."""
    m, v = np.zeros(replicates), np.ones(replicates)
    out = np.empty((replicates, generations + 1))
    for t in range(generations + 1):
        if t == 0 or alpha == 0.0:  # one group: one normal and one chi-square per replicate
            mean = m + np.sqrt(v / size) * rng.standard_normal(replicates)
            m, v = mean, v * rng.chisquare(size - 1, replicates) / (size - 1)
            out[:, t] = m * m + (np.sqrt(v) - 1.0) ** 2
            continue
        real = rng.binomial(size, alpha, replicates)
        groups = []
        for count, centre, var in ((real, 0.0, 1.0), (size - real, m, v)):
            safe = np.maximum(count, 1)
            mean = centre + np.sqrt(var / safe) * rng.standard_normal(replicates)
            ss = var * rng.chisquare(np.maximum(count - 1, 1), replicates) * (count > 1)
            groups.append((count, np.where(count > 0, mean, 0.0), ss))
        (n1, m1, s1), (n2, m2, s2) = groups
        m = (n1 * m1 + n2 * m2) / size
        v = (s1 + s2 + n1 * n2 / size * (m2 - m1) ** 2) / (size - 1)
        out[:, t] = m * m + (np.sqrt(v) - 1.0) ** 2
    return out


def timed(call, repeats: int) -> tuple[float, list[float], np.ndarray]:
    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return first, times, result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=positive_int, default=200_000)
    p.add_argument("--generations", type=positive_int, default=30)
    p.add_argument("--size", type=positive_int, default=10, help="M, draws per generation (>= 2)")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--alpha", type=float, default=0.0, help="fresh-data weight alpha_t for t >= 1 (0: pure synthetic)")
    p.add_argument("--backends", nargs="+", default=["native", "jax"], choices=["native", "jax"])
    p.add_argument("--out", type=output_file, default=None,
                   help="write the figures as JSON here (default: none, printed only)")
    args = p.parse_args(argv)

    import jax

    from collapse_jax import gaussian as G
    from collapse_jax import schedules as S
    from collapse_jax.results import environment_info

    alpha, n = S.constant_alpha(args.alpha, args.generations), S.constant_size(args.size, args.generations)
    work = args.replicates * args.generations
    seeds = iter(range(10**6))
    lib = {}
    for backend in args.backends:
        lib[backend] = timed(lambda: G.simulate(next(seeds), 0.0, 1.0, alpha, n, G.GaussianConfig(),
                                                args.replicates, backend=backend, progress=False), args.repeats)
    rng = np.random.default_rng(0)
    first_np, ref, np_out = timed(lambda: numpy_losses(rng, args.replicates, args.generations, args.size,
                                                       args.alpha), args.repeats)
    env = environment_info()
    rate_np = work / statistics.median(ref)
    result = dict(replicates=args.replicates, generations=args.generations, size=args.size, alpha=args.alpha,
                  numpy_per_s=rate_np,
                  numpy_first_call_s=first_np, numpy_s=ref, mean_loss_last=dict(numpy=float(np.mean(np_out[:, -1]))),
                  x64=bool(jax.config.jax_enable_x64), load_average=os.getloadavg(), env=env, backends={})
    print(f"CPU: {env.get('cpu_model')} ({' '.join(env.get('cpu_features', []))}); jax {env.get('jax')}, numpy "
          f"{np.__version__}; load average {os.getloadavg()[0]:.2f}")
    print(f"NumPy: {rate_np / 1e6:.3f} M replicate-generations/s; mean loss at T "
          f"{result['mean_loss_last']['numpy']:.4f}")
    for backend, (first, times, out) in lib.items():
        rate = work / statistics.median(times)
        result["backends"][backend] = dict(per_s=rate, ratio_to_numpy=rate / rate_np, first_call_s=first, times_s=times)
        result["mean_loss_last"][backend] = float(np.mean(out[:, -1]))
        print(f"collapse-jax {backend}: {rate / 1e6:.3f} M replicate-generations/s (first call {first:.1f} s); "
              f"{rate / rate_np:.2f}x NumPy; mean loss at T {result['mean_loss_last'][backend]:.4f}")
    if args.out:
        from collapse_jax.results import atomic_write_json

        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
