"""Benchmark the GMM network: Figure 4, Figure 6 (B = 11) and a d > 1 setting against a plain NumPy loop.

Usage:
    flock /work/bench.lock python3 benchmarks/bench_gmm_network.py [--devices 2] [--replicates 1 100 1000 10000]

``--devices N`` splits the CPU into N XLA host devices (set before JAX is imported) and shards the replicate axis
over them. Compile time is reported apart (first call minus a warm call); timed calls return host NumPy arrays,
so everything has finished; figures are medians of ``--repeats`` warm calls. The plain NumPy loop
(``tests/gmm_reference.py``, per-point loops with cached likelihoods) is timed in the same run for every setting.
The machine may be shared: the 1-minute load average is recorded before and after every row, and the process's CPU
time next to the wall time (on a busy machine CPU-seconds / cores bounds what a quiet machine would take). Results:
JSON in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)


def _positive(text: str) -> int:
    """argparse type: an integer >= 1 (``--replicates 0`` was a ZeroDivisionError after the warm-up). Not
    ``collapse_jax.cli_options.positive_int``: importing collapse_jax imports jax, which must wait for --devices."""
    if not text.lstrip("-").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)

# name -> (paper_config figure, overrides) or explicit make_config keywords; d4-B3: three components in R^4 with a
# full covariance (the generic B > 2 path of the native kernel)
SETTINGS = {
    "fig4": dict(figure=4),
    "fig6": dict(figure=6),
    "d4-B3": dict(mu=((-5.0, 0.0, 0.0, 0.0), (5.0, 0.0, 0.0, 0.0), (0.0, 5.0, 0.0, 0.0)),
                  sigma=((1.0, 0.3, 0.0, 0.0), (0.3, 1.0, 0.3, 0.0), (0.0, 0.3, 1.0, 0.3), (0.0, 0.0, 0.3, 1.0))),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=2, help="XLA CPU host devices to shard replicates over")
    ap.add_argument("--replicates", type=_positive, nargs="+", default=[1, 10, 100, 1000, 10_000])
    ap.add_argument("--other-replicates", type=int, nargs="+", default=[1000, 10_000],
                    help="replicate counts for the Figure 6 and d > 1 settings")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--steps-scaling", type=int, nargs="*", default=[50, 100, 200, 400])
    ap.add_argument("--scaling-replicates", type=int, default=1000)
    ap.add_argument("--jax-max-replicates", type=int, default=1000,
                    help="largest R timed with the portable pure-JAX kernel (slow on CPU)")
    ap.add_argument("--numpy-replicates", type=int, default=3, help="replicates of the plain NumPy loop per setting")
    ap.add_argument("--repeats", type=_positive, default=3, help="warm repeats per row")
    ap.add_argument("--batch", type=int, default=10_000, help="replicates per simulate call")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gmm_network.json"))
    args = ap.parse_args()
    if args.devices > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.devices}")
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np

    import gmm_reference
    from collapse_jax import _native
    from collapse_jax import gmm_network as gn
    from collapse_jax.results import atomic_write_json, environment_info

    def config(name, **extra):
        spec = dict(SETTINGS[name])
        if "figure" in spec:
            return gn.paper_config(spec.pop("figure"), num_steps=args.steps, **extra)
        return gn.make_config(num_models=3, points_per_step=3, beta=0.5, num_steps=args.steps, **spec, **extra)

    def sim(cfg, R, backend, seed):
        # beyond --batch replicates, run batches of --batch (as the CLI does): same compiled shapes, bounded memory
        for start in range(0, R, args.batch):
            gn.simulate(seed, cfg, min(args.batch, R - start), backend=backend, progress=False,
                        first_replicate=start)

    def timed(cfg, R, backend, repeats):
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        sim(cfg, min(R, args.batch), backend, 0)  # compiles (for R > batch: one batch as warm-up)
        first = time.perf_counter() - t0
        times, cpu = [], []
        for rep in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            sim(cfg, R, backend, rep + 1)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        warm = float(np.median(times))
        updates = R * cfg.num_models * int(gn.step_schedule(cfg).num_draws.sum())
        return dict(replicates=R, steps=cfg.num_steps, seconds=warm, times=times, cpu_seconds=float(np.median(cpu)),
                    compile_seconds=max(first - warm, 0.0) if R <= args.batch else None, repeats=len(times),
                    seconds_per_replicate=warm / R, replicate_steps_per_second=R * cfg.num_steps / warm,
                    point_updates_per_second=updates / warm, load_before=load_before, load_after=os.getloadavg()[0])

    def numpy_loop(name, cfg):
        kw = dict(num_models=cfg.num_models, mu=cfg.mu, sigma=cfg.sigma, points_per_step=cfg.points_per_step,
                  beta=cfg.beta, dirichlet_a=cfg.dirichlet_a, num_steps=cfg.num_steps)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(args.numpy_replicates):
            gmm_reference.simulate(rng, **kw)
        per_rep = (time.perf_counter() - t0) / args.numpy_replicates
        print(f"{name}: plain NumPy loop {per_rep:.3f} s per replicate (T={cfg.num_steps})", flush=True)
        return per_rep

    env = environment_info()
    out = dict(environment=env, devices=args.devices, native_lanes_float32=_native.gmm_lanes(False),
               threads_per_device=_native.cpu_threads(), settings={}, rows=[], steps_scaling=[],
               load_at_start=os.getloadavg())
    print(f"CPU: {env.get('cpu_model')}; native kernel lanes (float32): {out['native_lanes_float32']}; "
          f"load {out['load_at_start']}", flush=True)

    plan = [("fig4", args.replicates, ("native", "jax"))]
    plan += [(name, args.other_replicates, ("native",)) for name in ("fig6", "d4-B3")]
    for name, counts, backends in plan:
        cfg = config(name)
        numpy_per_rep = numpy_loop(name, cfg)
        out["settings"][name] = dict(num_components=cfg.num_components, dim=cfg.dim, num_models=cfg.num_models,
                                     points_per_step=cfg.points_per_step, beta=cfg.beta, num_steps=cfg.num_steps,
                                     numpy_seconds_per_replicate=numpy_per_rep,
                                     bytes_per_replicate=gn.bytes_per_replicate(cfg))
        for backend in backends:
            for R in counts:
                if backend == "jax" and R > args.jax_max_replicates:
                    continue
                repeats = args.repeats if (backend == "native" or R <= 100) else 1
                row = dict(setting=name, backend=backend, **timed(cfg, R, backend, repeats))
                row["speedup_vs_numpy"] = numpy_per_rep / row["seconds_per_replicate"]
                out["rows"].append(row)
                print(f"{name:6s} {backend:6s} R={R:>7d}: {row['seconds']:.3f} s, {row['cpu_seconds']:.3f} CPU-s (compile "
                      f"{row['compile_seconds'] or 0:.2f} s; runs {[round(t, 3) for t in row['times']]}), "
                      f"{row['point_updates_per_second']:.3g} updates/s, x{row['speedup_vs_numpy']:.0f} NumPy, "
                      f"load {row['load_before']:.1f}->{row['load_after']:.1f}", flush=True)
    # progress bar on against off, same R
    cfg = config("fig4")
    R = args.scaling_replicates
    gn.simulate(0, cfg, R, progress=False)   # warm-up: R may be a size the rows above never compiled (a user
    gn.simulate(1, cfg, R, progress=True)    # trial, 2026-12-05: "1.807 s without" was the compile)
    t0 = time.perf_counter(); gn.simulate(1, cfg, R, progress=False); off = time.perf_counter() - t0
    t0 = time.perf_counter(); gn.simulate(2, cfg, R, progress=True); on = time.perf_counter() - t0
    out["progress_overhead"] = dict(replicates=R, seconds_without=off, seconds_with=on)
    print(f"progress bar: {on:.3f} s with, {off:.3f} s without (R={R})", flush=True)
    for T in args.steps_scaling:
        row = timed(gn.paper_config(4, num_steps=T), args.scaling_replicates, "native", args.repeats)
        out["steps_scaling"].append(row)
        print(f"native T={T}: {row['seconds']:.3f} s for R={args.scaling_replicates}", flush=True)
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["load_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
