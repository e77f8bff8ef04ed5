"""How much the CPU default ``collapse-jax llm-web`` run moves from one seed to the next: its single-run numbers
(docs/llm_web.md) against their spread.

``--seed`` drives every draw of a run (the base models' training, retrieval, sampling, the GMM replicates), so runs
with seeds 0..S-1 are independent repetitions of the whole experiment. The script runs those that are not already
in ``--root`` (``llm-web --seed S --out ROOT/seed-S`` plus any ``--extra`` options, one after the other: about
2.5-5 minutes each on 2 cores), or summarises finished run folders given with ``--runs``. For each run it reads
``summary.json`` and the per-step ``||D||_F`` of ``steps/step-*.json``, prints one row per run, then the mean, SD
and range over the runs of each quantity, and writes all of it with the environment to ``--out`` (JSON).

Examples::

    python3 benchmarks/llm_web_seeds.py --root runs/llm-web-seeds --seeds 5
    python3 benchmarks/llm_web_seeds.py --runs RUN1 RUN2 --out /tmp/spread.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax.results import atomic_write_json, environment_info, read_json

# summary.json keys reported per run (see docs/llm_web.md for their meaning)
SUMMARY_KEYS = ("dnorm_t0", "dnorm_tT", "dnorm_ratio", "dnorm_min_ratio", "noise_floor_t0", "noise_floor_tT",
                "signal_mean_first_third", "signal_mean_last_third", "mean_fitted", "gmm_coverage",
                "gmm_median_tT", "gmm_coverage_raw", "mean_reads")  # (the last two, and gmm_coverage's meaning, since
# 2026-12-07: the band reads what the LLMs read and is set against the floor-corrected curve; docs/llm_web.md)


def run_stats(run: Path) -> dict:
    """The summary's scalars and the per-step ||D||_F's mean, SD over steps and last-ten-step mean of one run."""
    summary = read_json(run / "summary.json")
    steps = sorted((run / "steps").glob("step-*.json"))
    if not steps:
        raise SystemExit(f"{run}: no steps/step-*.json (not an llm-web run folder?)")
    dnorm = np.array([read_json(f)["metrics"]["dnorm"] for f in steps], float)
    row = {k: np.nan if summary.get(k) is None else float(summary[k]) for k in SUMMARY_KEYS}  # (mean_fitted: None in
    # finetune mode, where nothing is retrieved into a prompt)
    row.update(steps=len(dnorm), dnorm_step_mean=float(dnorm.mean()), dnorm_step_sd=float(dnorm.std(ddof=1)),
               dnorm_last10_mean=float(dnorm[-10:].mean()))
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="folder for the runs seed-0 .. seed-(S-1) (run where missing)")
    ap.add_argument("--seeds", type=int, default=5, help="S, runs with seeds 0..S-1, >= 2 (default 5)")
    ap.add_argument("--extra", default="", help="more llm-web options for every run, one string")
    ap.add_argument("--runs", type=Path, nargs="+", help="finished llm-web run folders to summarise instead")
    ap.add_argument("--out", type=Path, help="JSON output (default ROOT/seeds.json)")
    args = ap.parse_args(argv)
    if (args.root is None) == (args.runs is None):
        ap.error("give exactly one of --root or --runs")
    if args.runs is None and args.seeds < 2:
        ap.error(f"--seeds must be >= 2, got {args.seeds}")
    if args.runs is not None and len({run.resolve() for run in args.runs}) < len(args.runs):
        ap.error("--runs names a run folder twice")
    if args.runs is not None and len(args.runs) < 2:
        ap.error("--runs needs at least 2 run folders for a spread")
    if args.out is None and args.root is None:
        ap.error("--out is needed with --runs")
    runs = args.runs
    if runs is None:
        runs = [args.root / f"seed-{s}" for s in range(args.seeds)]
        for s, run in enumerate(runs):
            if (run / "summary.json").exists():
                continue
            cmd = [sys.executable, "-m", "collapse_jax.cli", "llm-web", "--seed", str(s), "--out", str(run),
                   "--no-progress", *args.extra.split()]
            if run.exists():  # a killed run: continue it with its own configuration
                cmd = [sys.executable, "-m", "collapse_jax.cli", "llm-web", "--resume", "--out", str(run),
                       "--no-progress"]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    rows = {str(run): run_stats(run) for run in runs}
    keys = list(next(iter(rows.values())))
    print("run", *keys, sep="\t")
    for run, row in rows.items():
        print(Path(run).name, *(f"{row[k]:.3f}" for k in keys), sep="\t")
    spread = {}
    for k in keys:
        v = np.array([row[k] for row in rows.values()], float)
        spread[k] = dict(mean=float(np.nanmean(v)), sd=float(np.nanstd(v, ddof=1)), min=float(np.nanmin(v)),
                         max=float(np.nanmax(v)))
        print(f"{k}: mean {spread[k]['mean']:.3f}, SD {spread[k]['sd']:.3f}, "
              f"range {spread[k]['min']:.3f} .. {spread[k]['max']:.3f}")
    out = args.out or args.root / "seeds.json"
    atomic_write_json(out, dict(runs=rows, spread=spread, environment=environment_info()))
    print("wrote", out)


if __name__ == "__main__":
    main()
