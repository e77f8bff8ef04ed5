"""Pool the leverage-jackknife coverage of several ``sigma-precision`` runs (issue 13, second pass).

Reads each run folder's per-cell chunks (the block statistics), recomputes the first-pass interval (leave-one-out
statistics only: one-step bias, plain Gaussian variance calibration), the second-pass interval (the four first
``spectral.LeaveOneOut`` statistics), the third-pass interval (all of them: the centre's jackknife variance and
Satterthwaite's critical value; runs written before it equal the second pass), the scaled-Wishart and exact-Wishart
intervals, and prints a markdown table of coverage pooled over the runs, with the binomial Monte Carlo SE of the
second pass, and the third pass's median half-width ratio to the exact Wishart interval and mean centre error.
Cells are matched by family and block size; n = N rows
(exact) are left out.

Usage: ``PYTHONPATH=. python3 benchmarks/sigma_jackknife_pooled.py RUN_FOLDER [RUN_FOLDER ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax import sigma_precision as spp  # noqa: E402
from collapse_jax import spectral as sp  # noqa: E402


def cell_coverages(res: spp.CellResult, z: float) -> dict:
    """Per block and size: covered or not by each interval, half-width ratio to Wishart, centre error."""
    ns = jnp.asarray(res.ns.astype(float))[None]
    full = res.loo()
    l_hat = jnp.asarray(res.logdet_g1 + res.dim * np.log(res.num_points / res.ns))
    out = {}
    second = full._replace(row_var=None, row_cov=None, kurtosis=None)  # the second pass (issue 13) as it was
    for name, loo in (("first", second._replace(pair_var=None, pair_mean=None)), ("second", second),
                      ("third", full)):
        iv = sp.jackknife_interval(l_hat, loo, res.dim, ns, res.num_points, z)
        out[name] = np.abs(res.truth - np.asarray(iv.center)) <= np.asarray(iv.half_width)
    wishart = sp.wishart_interval(l_hat, res.dim, ns, res.num_points, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ratio"] = np.asarray(iv.half_width) / np.asarray(wishart.half_width)
    out["error"] = np.asarray(iv.center) - res.truth
    est = sp.block_estimates_from_stats(jnp.asarray(res.logdet_g1), jnp.asarray(res.m2_insample), res.dim, ns,
                                        res.num_points, z)
    for name, iv in (("scaled_wishart", est.scaled_wishart), ("wishart", wishart)):
        out[name] = np.abs(res.truth - np.asarray(iv.center)) <= np.asarray(iv.half_width)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="sigma-precision output folders")
    p.add_argument("--level", type=float, default=0.95)
    args = p.parse_args(argv)
    z = sp.z_value(args.level)
    pooled: dict = {}
    for run in args.runs:
        cfg = json.loads((run / "config.json").read_text())["config"]
        cells = [f for d in cfg["dims"] for f in cfg["families"] if spp.family_has_dim(f, d)]  # sigma_cli's order
        for k, fam in enumerate(cells):
            chunk = run / "chunks" / f"chunk-{k:06d}.npz"
            res = spp.CellResult.from_arrays(fam, dict(np.load(chunk)))
            cov = cell_coverages(res, z)
            for j, n in enumerate(res.ns):
                if n == res.num_points:
                    continue
                cell = pooled.setdefault((fam, res.dim, int(n)), {key: [] for key in cov})
                for key, value in cov.items():
                    cell[key].append(value[:, j])
    print("| family | n (n/d) | blocks | first pass | **second pass** | MC SE (pp) | width / Wishart (median) | "
          "centre − truth (nats) | scaled Wishart | exact Wishart | third pass |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (fam, dim, n), cell in pooled.items():
        c = {key: np.concatenate(v) for key, v in cell.items()}
        blocks, cover = len(c["second"]), float(np.mean(c["second"]))
        se = 100 * np.sqrt(cover * (1 - cover) / blocks)
        print(f"| {fam} | {n} ({n / dim:g}) | {blocks} | {100 * c['first'].mean():.1f} % | **{100 * cover:.1f} %** | "
              f"{se:.1f} | {np.median(c['ratio']):.2f} | {c['error'].mean():+.2f} | "
              f"{100 * c['scaled_wishart'].mean():.1f} % | {100 * c['wishart'].mean():.1f} % | "
              f"{100 * c['third'].mean():.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
