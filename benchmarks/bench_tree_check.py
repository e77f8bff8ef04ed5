"""A quick check that a change did not slow the library's small paths: three timings of the collapse_jax found in
TREE (a checkout, e.g. a `git worktree` of an earlier commit), to be run alternately with the working tree's.

    git worktree add /tmp/base <commit>
    for i in 1 2 3; do python3 benchmarks/bench_tree_check.py /tmp/base; python3 benchmarks/bench_tree_check.py .; done

Prints, per call (warm-up excluded, minimum and median of repeats): ``spectral.wishart_bias(16, 100, 10**6)`` with
x64 off (the float64 wrapper and its input checks), ``spectral.block_estimates`` of a 640 x 64 Gaussian block of
N = 20,000 rows, and the Gaussian recursion (replace, pure synthetic, n_t = 50, 100 generations, 20,000
replicates, the default backend); then the CPU model and versions (collapse_jax.results.environment_info).
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path


def _per_call(fn, number: int, repeat: int) -> tuple[float, float]:
    fn()  # warm-up (compiles)
    times = sorted(t / number for t in timeit.repeat(fn, number=number, repeat=repeat))
    return times[0], times[len(times) // 2]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", nargs="?", default=".", help="the checkout whose collapse_jax is timed (default: .)")
    tree = Path(parser.parse_args().tree).resolve()  # (--help was read as a tree; an audit, 2026-12-07)
    sys.path.insert(0, str(tree))
    import numpy as np

    import collapse_jax
    from collapse_jax import gaussian, schedules, spectral
    from collapse_jax.results import environment_info

    if not Path(collapse_jax.__file__).resolve().is_relative_to(tree):
        raise SystemExit(f"collapse_jax came from {collapse_jax.__file__}, not from {tree}")
    block = np.random.default_rng(0).standard_normal((640, 64))
    alpha, n = schedules.pure_synthetic_alpha(100), schedules.constant_size(50, 100)
    config = gaussian.GaussianConfig("replace")
    timings = {
        "wishart_bias (us)": (_per_call(lambda: spectral.wishart_bias(16, 100, 10**6), 300, 9), 1e6),
        "block_estimates 640 x 64 (ms)": (_per_call(lambda: spectral.block_estimates(block, 20_000), 5, 5), 1e3),
        "gaussian 20,000 x 100 (ms)": (_per_call(lambda: gaussian.simulate(0, 0.0, 1.0, alpha, n, config, 20_000,
                                                                            progress=False), 3, 3), 1e3),
    }
    env = environment_info()
    print(f"{tree}: " + "; ".join(f"{name} min {lo * scale:.1f} median {mid * scale:.1f}"
                                  for name, ((lo, mid), scale) in timings.items()))
    print(f"  {env['cpu_model']} (family {env.get('cpu_family')} model {env.get('cpu_model_number')}), "
          f"jax {env.get('jax')}, numpy {env['numpy']}")


if __name__ == "__main__":
    main()
