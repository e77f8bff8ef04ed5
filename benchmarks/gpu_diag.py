"""Diagnoses on a GPU that the benchmark run (``benchmarks/gpu.sh``) raised: one process, a minute or two.

1. **Multinomial Pallas kernel's law** (2026-12-04, session 43): the GPU run gave a mean loss 8-14 % off the exact
   recurrence at n_t = 1000 (K = 50, T = 200; within 2.5e-4 at n_t = 100, and within 9e-4 at n_t = 1000 on the first
   GPU run, 2026-11-29), while Pallas's interpreter on the CPU gives the same replicates within 0.24 %. This times
   nothing: it draws binomials with the kernel's sampler on the device (chi-square against the exact pmf, mean and
   variance in standard errors) for inversion (n p < 10) and BTRS (n p >= 10) cases, with the acceptance bound as it
   is now (``log1p`` form), as it was on the first GPU run (TensorFlow's grouping) and with ``log1p(x)`` written as
   ``log(1 + x)``; then the whole kernel's mean loss against the recurrence with each bound, and the portable JAX
   sampler on the device.
   First run (2026-12-04, ``benchmarks/results/gpu/gpu-diag1.json``): every binomial and every eager run of the
   kernel matched its law, so the ``determinism`` section (first since) runs the kernel as the benchmark and
   ``multinomial.simulate`` call it (jitted) three times, eagerly, with one warp, with 32-lane programs and through
   ``simulate``, and counts the replicates that differ between runs (none should: a replicate depends only on its
   key).
2. **Sigma sweep cells** on the device: the ``sigma-precision`` command on one cell at d = 384 (with XLA's GPU
   autotuning on and off) and d = 128 (fewer blocks than the default), each cell's set-up seconds (data, whitening,
   exact log det) apart from its blocks' (which include compiling: the first run's d = 384 cell spent 53 s on 200
   blocks, against 6-18 s for 1,000 blocks in the benchmark's later cells of that d).

    python3 benchmarks/gpu_diag.py --out DIR [--small]     # --small: tiny sizes, Pallas interpreted (any CPU)

Writes DIR/gpu_diag.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)


def _tf_log_ratio(n, k, m, r, tail_m, stirling_tail=None):
    """The BTRS bound as it was before 2e8aaec (TensorFlow's grouping; on the first GPU run)."""
    import jax.numpy as jnp

    from collapse_jax import multinomial as mn

    stirling_tail = stirling_tail or mn._stirling_tail
    return ((m + 0.5) * jnp.log((m + 1) / (r * (n - m + 1))) + (n + 1) * jnp.log((n - m + 1) / (n - k + 1))
            + (k + 0.5) * jnp.log(r * (n - k + 1) / (k + 1)) + tail_m - stirling_tail(k) - stirling_tail(n - k))


def _log_instead_of_log1p(n, k, m, r, tail_m, stirling_tail=None):
    """Today's bound with every ``log1p(x)`` written ``log(1 + x)``."""
    import jax.numpy as jnp

    from collapse_jax import multinomial as mn

    stirling_tail = stirling_tail or mn._stirling_tail
    d = k - m
    return (-(m + 0.5) * jnp.log(1 + d / (m + 1)) + (n - m + 0.5) * jnp.log(1 + d / (n - k + 1))
            + d * jnp.log(r * (n - k + 1) / (k + 1)) + tail_m - stirling_tail(k) - stirling_tail(n - k))


_CALLS: dict = {}


def binomial_draws(n: float, p: float, count: int, seed: int, interpret: bool, variant: str):
    """``count`` Binomial(n, p) draws from the Pallas kernel's sampler (``multinomial_pallas._binomial``), one per
    lane, with the acceptance bound that ``collapse_jax.multinomial.btrs_log_ratio`` holds when ``variant``'s kernel
    is first traced (one compiled kernel per variant: n and p are arrays)."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl

    from collapse_jax import multinomial_pallas as mp
    from collapse_jax.replicates import replicate_keys

    block = 128
    data = jax.random.key_data(replicate_keys(seed, 0, count)).astype(jnp.uint32).reshape(count, -1)

    def kernel(k0_ref, k1_ref, n_ref, p_ref, out_ref):
        k0 = k0_ref[...]
        x, _ = mp._binomial(n_ref[...], p_ref[...], k0, k1_ref[...], jnp.zeros_like(k0))
        out_ref[...] = x

    lanes = pl.BlockSpec((block,), lambda i: (i,))
    if (variant, count) not in _CALLS:
        _CALLS[variant, count] = jax.jit(pl.pallas_call(
            kernel, out_shape=jax.ShapeDtypeStruct((count,), jnp.float32), grid=(count // block,),
            in_specs=[lanes] * 4, out_specs=lanes, interpret=interpret))
    full = lambda v: jnp.full(count, v, jnp.float32)  # noqa: E731
    return _CALLS[variant, count](data[:, 0], data[:, 1], full(n), full(p))


def law(x, n: float, p: float) -> dict:
    import numpy as np
    from scipy import stats

    x = np.asarray(x, np.float64)
    N = x.size
    mean, var = n * p, n * p * (1 - p)
    ks = np.arange(int(n) + 1)
    pmf = stats.binom.pmf(ks, int(n), p)
    counts = np.bincount(x.astype(np.int64), minlength=ks.size)[:ks.size]
    # bins with expected counts >= 5, the tails pooled into their neighbours
    keep = pmf * N >= 5
    lo, hi = np.argmax(keep), ks.size - np.argmax(keep[::-1])
    e = pmf[lo:hi] * N
    o = counts[lo:hi].astype(np.float64)
    e[0] += pmf[:lo].sum() * N
    o[0] += counts[:lo].sum()
    e[-1] += pmf[hi:].sum() * N
    o[-1] += counts[hi:].sum()
    chi2 = float(((o - e) ** 2 / e).sum())
    df = max(e.size - 1, 1)
    m4 = var * (1 + 3 * (n - 2) * p * (1 - p))  # fourth central moment of the binomial
    return dict(n=n, p=p, draws=N, mean_z=float((x.mean() - mean) / np.sqrt(var / N)),
                var_ratio=float(x.var() / var), var_z=float((x.var() - var) / np.sqrt((m4 - var**2) / N)),
                chi2_pvalue=float(stats.chi2.sf(chi2, df)), chi2_df=df,
                out_of_range=int(np.sum((x < 0) | (x > n) | (x != np.round(x)))))


def section_binomials(args) -> dict:
    from collapse_jax import multinomial as mn

    variants = {"log1p (now)": mn.btrs_log_ratio, "tf grouping (first GPU run)": _tf_log_ratio,
                "log(1 + x)": _log_instead_of_log1p}
    cases = [(1000, 0.005), (1000, 0.02), (1000, 0.3), (1000, 0.5), (100, 0.2), (30, 0.5), (10_000, 0.01),
             (2**20, 0.1)]
    out, original = {}, mn.btrs_log_ratio
    try:
        for name, fn in variants.items():
            mn.btrs_log_ratio = fn
            rows = []
            for i, (n, p) in enumerate(cases):
                t0 = time.perf_counter()
                x = binomial_draws(n, p, args.draws, seed=100 + i, interpret=args.interpret, variant=name)
                row = law(x, n, p)
                row["seconds"] = time.perf_counter() - t0
                rows.append(row)
                print(f"binomial [{name}] n={n} p={p}: mean {row['mean_z']:+.1f} SE, var ratio "
                      f"{row['var_ratio']:.4f} ({row['var_z']:+.1f} SE), chi-square p = {row['chi2_pvalue']:.3g} "
                      f"(df {row['chi2_df']}), out of range {row['out_of_range']}", flush=True)
            out[name] = rows
    finally:
        mn.btrs_log_ratio = original
    return out


def _benchmark_case(steps: int, size: int):
    """The gap's setting, as ``gpu_bench.py``'s multinomial section builds it: K = 50 categories from
    Dirichlet(1) (seed 0), alpha = 0.5, n_t = ``size`` fixed, replace: ``(p, alpha, n, config, theory, float32
    inputs of the kernels)``."""
    import jax.numpy as jnp
    import numpy as np

    from collapse_jax import multinomial as mn
    from collapse_jax import schedules as S

    p = np.random.default_rng(0).dirichlet(np.ones(50))
    alpha, n, cfg = S.constant_alpha(0.5, steps), S.constant_size(size, steps), mn.MultinomialConfig("replace")
    f32 = tuple(jnp.asarray(x, jnp.float32) for x in (p, alpha, n))
    return p, alpha, n, cfg, mn.theory_risk(p, alpha, n, cfg), f32


def section_risk(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from collapse_jax import driver
    from collapse_jax import multinomial as mn
    from collapse_jax import multinomial_pallas as mp
    from collapse_jax.replicates import replicate_keys

    T = args.steps
    out = []
    original = mn.btrs_log_ratio
    cases = [("pallas", "log1p (now)", mn.btrs_log_ratio), ("pallas", "tf grouping (first GPU run)", _tf_log_ratio),
             ("pallas", "log(1 + x)", _log_instead_of_log1p), ("jax", "log1p (now)", mn.btrs_log_ratio)]
    try:
        for size in (1000, 100):
            _, _, _, cfg, theory, f32 = _benchmark_case(T, size)
            for backend, name, fn in cases:
                if size == 100 and name != "log1p (now)":
                    continue
                mn.btrs_log_ratio = fn
                R = args.replicates if backend == "pallas" else args.jax_replicates
                keys = replicate_keys(0, 0, R)
                t0 = time.perf_counter()
                if backend == "pallas":
                    loss = mp.batched_risk_pallas.__wrapped__(keys, *f32, interpret=args.interpret)
                else:
                    loss = driver.batched(mn.kernel, cfg)(keys, mn.Params(*f32, jnp.ones(T + 1, jnp.float32)))
                loss = np.asarray(loss, np.float64)
                m, se = loss.mean(0), loss.std(0) / np.sqrt(R)
                z = (m[1:] - theory[1:]) / se[1:]
                row = dict(backend=backend, bound=name, n_t=size, replicates=R, steps=T,
                           seconds=time.perf_counter() - t0, max_rel_dev=float(np.max(np.abs(m[1:] / theory[1:] - 1))),
                           z_min=float(z.min()), z_max=float(z.max()), z_mean=float(z.mean()),
                           rel_dev_t=[float(m[t] / theory[t] - 1) for t in sorted({1, 2, 5, min(50, T), T})])
                out.append(row)
                print(f"risk [{backend}, {name}] n_t={size} R={R}: max |mean/theory - 1| {row['max_rel_dev']:.2e}, "
                      f"z in [{row['z_min']:+.1f}, {row['z_max']:+.1f}], mean z {row['z_mean']:+.2f}", flush=True)
    finally:
        mn.btrs_log_ratio = original
    jax.clear_caches()
    return dict(rows=out)


def section_determinism(args) -> dict:
    """The Pallas kernel at n_t = 1000 (the setting of the 8-14 % gap) as the benchmark and ``multinomial.simulate``
    call it (jitted), three times, against its eager call, one warp per program, 32-lane programs and the
    ``simulate`` path: each run's mean loss against the recurrence, and how many replicates differ from the first
    jitted run and from the eager one. A replicate depends only on its key, so every run should be identical bit for
    bit; runs that differ point at a race in the compiled kernel."""
    import jax.numpy as jnp
    import numpy as np

    from collapse_jax import multinomial as mn
    from collapse_jax import multinomial_pallas as mp
    from collapse_jax.replicates import replicate_keys

    R = args.replicates
    p, alpha, n, cfg, theory, f32 = _benchmark_case(args.steps, 1000)
    keys = replicate_keys(0, 0, R)
    jitted = lambda **kw: mp.batched_risk_pallas(keys, *f32, interpret=args.interpret, **kw)  # noqa: E731
    runs = {}
    for name, call in [("jit 1", jitted), ("jit 2", jitted), ("jit 3", jitted),
                       ("eager", lambda: mp.batched_risk_pallas.__wrapped__(keys, *f32, interpret=args.interpret)),
                       ("jit num_warps=1", lambda: jitted(num_warps=1)), ("jit block=32", lambda: jitted(block=32)),
                       ("simulate", lambda: jnp.asarray(mn.simulate(0, p, alpha, n, cfg, R, backend="pallas",
                                                                    progress=False)))]:
        t0 = time.perf_counter()
        runs[name] = call().block_until_ready()
        runs[name + " seconds"] = time.perf_counter() - t0
    rows = []
    for name in [k for k in runs if not k.endswith(" seconds")]:
        loss = runs[name]
        m = np.asarray(jnp.mean(loss, axis=0), np.float64)
        sd = np.asarray(jnp.std(loss, axis=0), np.float64)
        z = (m[1:] - theory[1:]) / (sd[1:] / np.sqrt(R))
        differ = {ref: int(jnp.sum(jnp.any(loss != runs[ref], axis=1))) for ref in ("jit 1", "eager")}
        row = dict(run=name, seconds=runs[name + " seconds"], max_rel_dev=float(np.max(np.abs(m[1:] / theory[1:] - 1))),
                   max_abs_z=float(np.abs(z).max()), worst_generation=int(np.argmax(np.abs(z))) + 1,
                   replicates_differing_from=differ, nonfinite=int(jnp.sum(~jnp.isfinite(loss))))
        rows.append(row)
        print(f"determinism [{name}]: max |mean/theory - 1| {row['max_rel_dev']:.2e}, max |z| {row['max_abs_z']:.1f} "
              f"(generation {row['worst_generation']}), replicates differing from jit 1 / eager: "
              f"{differ['jit 1']} / {differ['eager']}, {row['seconds']:.1f} s", flush=True)
    return dict(replicates=R, steps=args.steps, rows=rows)


def section_sigma(args) -> dict:
    out = []
    for dim, blocks, xla_flags in args.sigma_cells:
        folder = Path(args.tmp) / f"sigma-d{dim}{'-' + str(len(out)) if xla_flags else ''}"
        cmd = [sys.executable, "-m", "collapse_jax.cli", "sigma-precision", "--engine", "jax", "--out", str(folder),
               "--dims", str(dim), "--blocks", str(blocks), "--families", "isotropic", "--no-progress"]
        if args.sigma_points:
            cmd += ["--num-points", str(args.sigma_points)]
        t0 = time.perf_counter()
        env = dict(os.environ)
        if xla_flags:  # e.g. XLA's GPU autotuning off: is the first cell's time per d compilation?
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.sigma_timeout, env=env)
            code, tail = proc.returncode, (proc.stdout + proc.stderr)[-600:]
        except subprocess.TimeoutExpired:
            code, tail = None, f"timed out after {args.sigma_timeout} s"
        wall = time.perf_counter() - t0
        row = dict(dim=dim, blocks=blocks, xla_flags=xla_flags, wall_s=wall, exit=code, tail=tail)
        manifest = folder / "manifest.json"
        if manifest.exists():
            summary = json.loads(manifest.read_text()).get("summary", {})
            row["cells"] = summary.get("cells_run_this_call")
        out.append(row)
        flags = f" ({xla_flags})" if xla_flags else ""
        print(f"sigma d={dim}, {blocks} blocks{flags}: wall {wall:.1f} s, exit {code}, cells "
              f"{json.dumps(row.get('cells'), default=str)[:400]}", flush=True)
    return dict(rows=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--small", action="store_true", help="tiny sizes, Pallas interpreted: a check on any machine")
    ap.add_argument("--sections", nargs="+", default=["determinism", "binomials", "risk", "sigma"],
                    choices=["determinism", "binomials", "risk", "sigma"])
    args = ap.parse_args()
    import jax

    args.interpret = jax.default_backend() == "cpu"
    args.draws, args.replicates, args.jax_replicates, args.steps = 2**20, 10**6, 200_000, 200
    args.sigma_cells = [(384, 200, ""), (384, 200, "--xla_gpu_autotune_level=0"), (128, 200, "")]
    args.sigma_points, args.sigma_timeout = None, 100
    if args.small:
        args.draws, args.replicates, args.jax_replicates, args.steps = 2**12, 512, 256, 10
        args.sigma_cells, args.sigma_points = [(8, 20, ""), (8, 20, "--xla_gpu_autotune_level=0")], 20_000
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.tmp = str(out / "tmp")
    from collapse_jax.results import atomic_write_json, environment_info

    results = dict(environment=environment_info(), command=" ".join(sys.argv))
    for name in args.sections:
        t0 = time.perf_counter()
        try:
            results[name] = globals()[f"section_{name}"](args)
        except Exception as e:  # noqa: BLE001 (record it and go on with the next section)
            results[name] = dict(error=f"{e.__class__.__name__}: {str(e)[:500]}")
            print(f"{name}: FAILED {results[name]['error']}", flush=True)
        results[name + "_seconds"] = time.perf_counter() - t0
        atomic_write_json(out / "gpu_diag.json", results)


if __name__ == "__main__":
    main()
