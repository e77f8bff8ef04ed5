"""Coverage of the leverage-jackknife interval when the embeddings repeat (docs/sigma.md, "Repeated rows").

A generator that collapses repeats itself, so the checkpoint a Sigma monitor scores may hold the same sentence many
times. This script builds populations of N = 6000 MiniLM embeddings of the standard library's sentences (the
project's corpus, `llm_bridge.populations.stdlib_minilm_embeddings`, cached after its first run) and scores random
blocks (drawn without replacement) with `spectral.block_estimates` against the population's exact log det:

* `distinct`: 6000 distinct sentences (the control: the intervals' documented case);
* `copies`: 4500 distinct sentences and 1500 exact copies of some of them (a quarter of the rows repeat);
* `near-copies`: the same with each copy moved by 5 % noise and renormalised (no row repeats bit for bit);
* `few-sentences`: 6000 rows drawn with replacement from 871 distinct sentences (a generator down to a few
  hundred texts).

    python3 benchmarks/sigma_repeated_rows.py --blocks 200 --out benchmarks/results/sigma_repeated_rows.json
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import spectral  # noqa: E402
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402


def populations(embeddings: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    distinct = np.unique(embeddings, axis=0)
    rng.shuffle(distinct)
    base = distinct[:4500]
    src = rng.choice(4500, 1500, replace=False)
    near = base[src] + rng.standard_normal((1500, base.shape[1])) * 0.05 / np.sqrt(base.shape[1])
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    few = distinct[6000:6871]
    return {"distinct": distinct[:6000], "copies": np.vstack([base, base[src]]),
            "near-copies": np.vstack([base, near]), "few-sentences": few[rng.integers(0, len(few), 6000)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=200, help="blocks per population and size (default 200)")
    p.add_argument("--ratios", default="2,5,10", help="block sizes n as multiples of d = 384 (default 2,5,10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = p.parse_args(argv)
    from llm_bridge.populations import stdlib_minilm_embeddings

    emb = np.asarray(stdlib_minilm_embeddings(progress=False), np.float64)
    d = emb.shape[1]
    rows = []
    for name, pop in populations(emb, args.seed).items():
        N, truth = len(pop), float(np.linalg.slogdet(pop.T @ pop)[1])
        repeats = spectral.repeated_rows(pop)
        for k, ratio in enumerate(float(r) for r in args.ratios.split(",")):
            n = int(round(ratio * d))
            rng = np.random.default_rng([args.seed, k, len(name)])
            start, centre, half = time.perf_counter(), [], []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", spectral.RepeatedRowsWarning)
                for _ in range(args.blocks):
                    est = spectral.block_estimates(pop[rng.choice(N, n, replace=False)], N).jackknife
                    centre.append(float(est.center))
                    half.append(float(est.half_width))
            c, h = np.asarray(centre), np.asarray(half)
            cover = float(np.mean(np.abs(c - truth) <= h))
            row = dict(population=name, repeated_rows=repeats, N=N, d=d, n=n, ratio=ratio, blocks=args.blocks,
                       coverage=cover, coverage_se=float(np.sqrt(cover * (1 - cover) / args.blocks)),
                       truth_above=float(np.mean(truth > c + h)), truth_below=float(np.mean(truth < c - h)),
                       bias=float(np.mean(c - truth)), sd=float(np.std(c - truth)),
                       median_half_width_over_z=float(np.median(h) / spectral.z_value(0.95)),
                       seconds=time.perf_counter() - start)
            rows.append(row)
            print(f"{name:14s} (repeats {repeats:4d}) n = {ratio:g} d: coverage {100 * cover:5.1f} % +- "
                  f"{100 * row['coverage_se']:.1f} (truth above {100 * row['truth_above']:.1f} %, below "
                  f"{100 * row['truth_below']:.1f} %), centre - truth {row['bias']:+.2f}, SD {row['sd']:.2f} against "
                  f"half-width / z {row['median_half_width_over_z']:.2f}; {row['seconds']:.0f} s", flush=True)
    if args.out is not None:
        atomic_write_json(args.out, {"command": " ".join(sys.argv), "environment": environment_info(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
