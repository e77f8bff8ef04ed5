"""Before/after cost of a change to the simulators, first made for moving them onto the init/step contract and the
driver (issue 10), then for the unsplit LAPACK calls (``collapse_jax/_linalg.py``).

Runs the same ``simulate`` calls (logistic, EM mixture, Gaussian, multinomial ``jax``, linear regression at d = 5,
16 and 64, the Sigma ``jax`` engine's block statistics, the native multinomial kernel at K x n_t = 50 x 100, 50 x 300,
1000 x 5000, 50 x 10^4, 1000 x 10^4, 50 x 10^5, 1000 x 10^5 and 1000 x 10^6, 50 generations each; and issue 12 part
4's K = 50, n_t = 100 (t + 1), 200 generations) in this checkout and in ``--base`` (extracted with ``git archive``
into a temporary folder), each in its own worker process, the two alternating ``--rounds`` times. A worker times one
first call (compilation included) apart, then ``--repeats`` calls; it reports wall and process-CPU seconds
(``simulate`` returns NumPy arrays, so every call has finished its device work). The summary gives the median over
all timed calls per side and the ratio this / base. Run it under ``flock /work/bench.lock`` on the shared machine.

Usage: ``PYTHONPATH=. python3 benchmarks/bench_driver.py --base main --rounds 2 --repeats 3``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("logistic", "mixture", "gaussian", "multinomial", "linreg5", "linreg16", "linreg64", "sigma_jax",
         "native50x100", "native50x300", "native1000x5000", "native50x10000", "native1000x10000", "native50xlinear",
         "native50x100000", "native1000x100000", "native1000x1000000")


def _call(case: str):
    """A ``() -> None`` running one ``simulate`` call of ``case`` (the same arguments in both trees)."""
    import numpy as np

    from collapse_jax import schedules as S

    if case == "logistic":
        from collapse_jax import logistic as L

        alpha, n = S.constant_alpha(0.5, 5), S.constant_size(200, 5)
        return lambda: L.simulate(0, L.SEED003_C2["beta"], L.SEED003_C2["intercept"], alpha, n,
                                  L.LogisticConfig("accumulate"), 1000, progress=False)
    if case == "mixture":
        from collapse_jax import mixture_refit as MR

        t = MR.SEED003_C2
        n = S.linear_size(50, 6)
        alpha = np.stack([S.pure_synthetic_alpha(6), S.constant_alpha(0.5, 6)])
        return lambda: MR.simulate(0, t["weights"], t["means"], t["sds"], alpha, np.stack([n, n]), MR.MixtureConfig(),
                                   500, progress=False)
    if case == "gaussian":
        from collapse_jax import gaussian as G

        alpha, n = S.constant_alpha(0.5, 50), S.constant_size(100, 50)
        return lambda: G.simulate(0, 0.0, 1.0, np.stack([alpha, alpha / 2]), np.stack([n, n]), G.GaussianConfig(),
                                  20_000, progress=False)
    if case.startswith("linreg"):
        from collapse_jax import linear_regression as LR

        d = int(case[len("linreg"):])
        cfg = LR.LinearRegressionConfig(dim=d, num_samples=4 * d, num_iterations=20)
        reps = {5: 10_000, 16: 20_000, 64: 5_000}[d]
        return lambda: LR.simulate(0, np.ones(d), 1.0, cfg, reps, progress=False)
    if case == "sigma_jax":  # 250 blocks at d = 8 (a batch of 1000 hung before the unsplit LAPACK calls)
        import jax.numpy as jnp

        from collapse_jax import sigma_precision as SP

        ns = tuple(int(v) for v in SP.block_sizes(8, 10**6, SP.PrecisionConfig().ratios))
        rng = np.random.default_rng(0)
        w = jnp.asarray(rng.standard_normal((20_000, 8)).astype(np.float32))
        idx = jnp.asarray(np.stack([rng.choice(20_000, ns[-1], replace=False) for _ in range(250)]), jnp.int32)
        return lambda: np.asarray(SP.jit_batched_block_stats(w, idx, ns))
    from collapse_jax import multinomial as M

    if case == "native50xlinear":  # issue 12 part 4's setting: K = 50, n_t = 100 (t + 1), T = 200
        alpha, n = S.constant_alpha(0.5, 200), S.linear_size(100, 200)
        p = np.random.default_rng(0).dirichlet(np.ones(50))
        return lambda: M.simulate(0, p, alpha, n, M.MultinomialConfig(), 20_000, progress=False, backend="native")
    if case.startswith("native"):  # the native kernel, replace, fixed n_t: K x n_t
        K, size = (int(v) for v in case[len("native"):].split("x"))
        alpha, n = S.constant_alpha(0.5, 50), S.constant_size(size, 50)
        p = np.random.default_rng(0).dirichlet(np.ones(K))
        reps = 40_000 if K <= 50 else 4_000
        return lambda: M.simulate(0, p, alpha, n, M.MultinomialConfig(), reps, progress=False, backend="native")
    alpha, n = S.constant_alpha(0.5, 30), S.constant_size(100, 30)
    p = np.full(20, 1 / 20)
    return lambda: M.simulate(0, p, alpha, n, M.MultinomialConfig(), 5_000, progress=False, backend="jax")


def worker(case: str, repeats: int) -> dict:
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)  # capped EM fits are expected in the mixture case
    run = _call(case)
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"first_s": first, "wall_s": wall, "cpu_s": cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="main", help="git revision to compare against")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats)))
        return 0
    here = Path(__file__).resolve().parents[1]
    env = dict(os.environ, COLLAPSE_JAX_PROGRESS="0", JAX_PLATFORMS="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(here), "archive", args.base], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {args.base: Path(tmp), "this checkout": here}
        sys.path.insert(0, str(here))
        import platform

        import jax
        import numpy as np

        from collapse_jax.results import cpu_info

        # (versions too: only the CPU was recorded; an audit of the benchmark scripts, 2026-12-07)
        print(f"CPU: {cpu_info()}; jax {jax.__version__}, numpy {np.__version__}, python "
              f"{platform.python_version()}; load average before: {os.getloadavg()}", flush=True)
        for case in args.cases:
            runs: dict = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    out = subprocess.run([sys.executable, str(here / "benchmarks" / "bench_driver.py"), "--worker",
                                          case, "--repeats", str(args.repeats)], cwd=tree, check=True,
                                         capture_output=True, text=True, env=dict(env, PYTHONPATH=str(tree)))
                    runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {name: {k: statistics.median([t for r in rs for t in r[k]]) for k in ("wall_s", "cpu_s")}
                   | {"first_s": statistics.median([r["first_s"] for r in rs])} for name, rs in runs.items()}
            for name, m in med.items():
                print(f"{case:12s} {name:14s} first {m['first_s']:7.2f} s   median wall {m['wall_s']:7.3f} s   "
                      f"cpu {m['cpu_s']:7.3f} s", flush=True)
            print(f"{case:12s} ratio this/base: wall {med['this checkout']['wall_s'] / med[args.base]['wall_s']:.3f}"
                  f", cpu {med['this checkout']['cpu_s'] / med[args.base]['cpu_s']:.3f}", flush=True)
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
