"""Sweep runner throughput (issue: massive Monte Carlo sweeps).

Measures, in one run:
1. runner overhead: the same large cells through ``sweep.run`` and one by one through the simulator's own
   ``simulate`` (both warm: a warm-up of each first), multinomial and GMM network;
2. the targets: a 30 x 30 multinomial phase diagram (K = 50, T = 200, 1,000 replicates per cell) and 100 cells x
   1,000 replicates of the Figure-4 GMM network (grid over beta in [0.4, 0.6] around Figure 4's 0.5 and the pruning
   threshold eps, which leaves the cost of a replicate unchanged): ``seconds`` is the first run, end to end with its
   compilations (the figure the targets are judged on), then ``--target-repeats`` warm runs in the same process
   (``warm_runs_s``, their median ``warm_median_s``; ``compile_s_estimate`` is the first run minus that median).

    PYTHONPATH=. python3 benchmarks/bench_sweep.py [--quick] [--out benchmarks/results/sweep.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import gmm_network as GN
from collapse_jax import multinomial as M
from collapse_jax import sweep, sweep_spec
from collapse_jax.results import atomic_write_json, environment_info
from collapse_jax.sweep_models import MODELS, recursion_schedules

MULTINOMIAL_DIAGRAM = """
simulator = "multinomial"
replicates = {replicates}
[fixed]
categories = 50
steps = 200
alpha0 = 0.5
n0 = 100
[grid]
alpha_decay = {{ linspace = [0.0, 1.5, {side}] }}
n_growth = {{ linspace = [0.0, 2.0, {side}] }}
"""

GMM_CELLS = """
simulator = "gmm-network"
replicates = {replicates}
[fixed]
num_steps = 200
[grid]
beta = {{ linspace = [0.4, 0.6, {side}] }}
eps = {{ geomspace = [1e-6, 1e-2, {side}] }}
"""


def _sweep_seconds(text: str, repeats: int = 1) -> tuple[list[float], list[sweep.SweepReport]]:
    """Wall seconds and report of each of ``repeats`` runs of the sweep ``text``, one after another."""
    spec = sweep_spec.parse(text)
    times, reports = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            reports.append(sweep.run(spec, tmp, progress=False))
            times.append(time.perf_counter() - start)
    return times, reports


def overhead(quick: bool) -> list[dict]:
    """Sweep vs a loop of ``simulate`` over the same cells (warm, median of repeats)."""
    rows = []
    side, reps = (2, 4000) if quick else (3, 20000)
    text = MULTINOMIAL_DIAGRAM.format(replicates=reps, side=side)
    spec = sweep_spec.parse(text)
    model = MODELS["multinomial"]
    cells = [model.complete(spec.cell(i)) for i in range(spec.num_cells)]

    def loop():
        for c in cells:
            M.simulate(0, model.truth(c), *recursion_schedules(c), M.MultinomialConfig(), reps, progress=False)

    rows.append(_compare("multinomial K=50 T=200", spec.num_cells, reps, 200, text, loop))
    side, reps = (2, 500) if quick else (2, 20000)
    text = GMM_CELLS.format(replicates=reps, side=side)
    spec = sweep_spec.parse(text)
    gmm = MODELS["gmm-network"]
    configs = [gmm.config(gmm.complete(spec.cell(i))) for i in range(spec.num_cells)]

    def loop_gmm():
        for cfg in configs:
            GN.simulate(0, cfg, reps, progress=False)

    rows.append(_compare("GMM network Figure 4", spec.num_cells, reps, 200, text, loop_gmm))
    return rows


def _compare(name, cells, reps, steps, text, loop, repeats: int = 3) -> dict:
    loop()  # warm-up (compilation)
    _sweep_seconds(text)
    loop_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loop()
        loop_times.append(time.perf_counter() - start)
    sweep_times, _ = _sweep_seconds(text, repeats)
    a, b = statistics.median(sweep_times), statistics.median(loop_times)
    row = {"case": name, "cells": cells, "replicates": reps, "steps": steps, "sweep_s": a, "loop_s": b,
           "sweep_runs": sweep_times, "loop_runs": loop_times, "overhead": a / b - 1,
           "replicate_steps_per_s": cells * reps * steps / a}
    print(f"{name}: {cells} cells x {reps} replicates: sweep {a:.2f} s, simulate loop {b:.2f} s, "
          f"overhead {100 * (a / b - 1):+.1f}%")
    return row


def targets(quick: bool, warm_repeats: int) -> list[dict]:
    rows = []
    for name, text, side, reps, limit in (
            ("multinomial 30 x 30 phase diagram", MULTINOMIAL_DIAGRAM, 30, 1000, 120.0),
            ("GMM network Figure 4, 100 cells", GMM_CELLS, 10, 1000, 180.0)):
        if quick:
            side, reps = max(2, side // 5), reps // 10
        times, reports = _sweep_seconds(text.format(replicates=reps, side=side), 1 + warm_repeats)
        report, warm = reports[0], times[1:]
        row = {"case": name, "cells": side * side, "replicates": reps, "seconds": times[0],
               "timing": "seconds: the first run, end to end, compilations included (the target's figure); "
                         "warm_runs_s: the runs after it in the same process",
               "compilations": report.compilations, "target_s": limit,
               "met": None if quick else times[0] <= limit,   # a --quick run is not the target's size: not judged
               "replicate_steps_per_s": report.replicate_steps / times[0],
               "warm_runs_s": warm, "warm_compilations": [r.compilations for r in reports[1:]],
               "peak_host_mib": max(r.peak_host_bytes for r in reports) / 2**20}
        if warm:
            row.update(warm_median_s=statistics.median(warm),
                       compile_s_estimate=max(times[0] - statistics.median(warm), 0.0),
                       warm_replicate_steps_per_s=report.replicate_steps / statistics.median(warm))
        print(f"{name}: {side * side} cells x {reps} replicates in {times[0]:.1f} s end to end, compilations included "
              f"(target {limit:.0f} s: {'not judged, --quick' if quick else 'met' if row['met'] else 'NOT met'}), "
              f"{report.compilations} compilations, "
              f"{row['replicate_steps_per_s']:.3g} replicate-steps/s"
              + (f"; warm: median {row['warm_median_s']:.1f} s of {len(warm)} runs, compilation about "
                 f"{row['compile_s_estimate']:.1f} s" if warm else ""))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the script)")
    parser.add_argument("--skip-targets", action="store_true", help="only the overhead comparison")
    parser.add_argument("--target-repeats", type=int, default=2,
                        help="warm runs of each target after its first (compiling) run; 0: the first run only")
    parser.add_argument("--out", default="benchmarks/results/sweep.json", help="JSON results file")
    args = parser.parse_args()
    if args.target_repeats < 0:
        parser.error(f"--target-repeats must be >= 0, got {args.target_repeats}")
    env = environment_info()
    print(f"{env.get('cpu_model')} ({env.get('cpu_count')} CPUs; {' '.join(env.get('cpu_features', []))}), "
          f"jax {env.get('jax')}, backend {env.get('backend')}")
    result = {"environment": env, "quick": args.quick, "overhead": overhead(args.quick)}
    if not args.skip_targets:
        result["targets"] = targets(args.quick, args.target_repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
