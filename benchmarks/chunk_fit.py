"""How the driver sizes a default chunk: XLA's memory analysis of the compiled call against the 8x-outputs guess.

Runs the multinomial ``jax`` path (K categories, T generations, fixed n) through ``driver.run_replicates``' sizing
and prints, for the chosen chunk, the bytes per replicate of the outputs and of the compiled call, and the chunk
each rule gives for the budget; stops before simulating (the jax path at K = 1000 is slow on a CPU).

    python3 benchmarks/chunk_fit.py --categories 1000 --replicates 200000 --memory-budget 1000000000
"""

import argparse
import time

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--n", type=float, default=1000.0)
    parser.add_argument("--replicates", type=int, default=200_000)
    parser.add_argument("--memory-budget", type=int, default=10**9)
    args = parser.parse_args()

    import jax

    from collapse_jax import driver
    from collapse_jax import multinomial as M
    from collapse_jax.results import cpu_info

    chosen = {}

    def stop(run, R, seed, chunk, **kw):  # the chunk the driver settled on; nothing is simulated
        chosen["chunk"] = chunk
        raise StopIteration

    driver.map_chunks = stop
    p = np.random.default_rng(0).dirichlet(np.ones(args.categories))
    t = time.perf_counter()
    try:
        M.simulate(0, p, np.zeros(args.steps + 1), np.full(args.steps + 1, args.n), num_replicates=args.replicates,
                   backend="jax", memory_budget=args.memory_budget)
    except StopIteration:
        pass
    seconds = time.perf_counter() - t
    out_bytes = 4 * (args.steps + 1)
    cpu = cpu_info()
    print(f"cpu {cpu['cpu_model']} ({' '.join(cpu['cpu_features'])}), jax {jax.__version__}, {jax.devices()}")
    print(f"K = {args.categories}, T = {args.steps}, n = {args.n:g}, R = {args.replicates}, "
          f"budget {args.memory_budget:.3g} B")
    print(f"8x-outputs guess: chunk {min(args.replicates, args.memory_budget // (8 * out_bytes))}")
    print(f"fitted to the compiled call: chunk {chosen['chunk']} ({seconds:.1f} s of tracing and compiling)")


if __name__ == "__main__":
    main()
