"""Every GPU benchmark of issue 12 (part 2) and issue 14 in one run of a few minutes: one JSON, one markdown table.

Sections, in this order, each in its own process with its own time budget (a section that runs out of time or fails
is recorded as such and the others still run; rows whose predicted time exceeds what is left are skipped, with the
prediction recorded; the ``gmm`` and ``multinomial`` sections save their finished rows as they go, so a section
stopped at its budget still reports them):

- ``gmm``: the GMM network, Pallas kernel (``gmm_pallas``: first run on a GPU 2026-12-04; a kernel that
  fails is recorded and the section goes on) and portable JAX kernel, Figure 4 (B = 2) at R = 10^4, 10^5, 10^6
  replicates and Figure 6 (B = 11) at R = 10^4, 10^5: each kernel's smallest R first, then the larger ones, Pallas's
  first (a kernel's first row starts only with ``--gmm-first-call-s`` left: Triton alone took 44-48 s on a CPU for
  Figure 6's Pallas kernel, ``benchmarks/triton_offline.py``); replicates/s, compile time apart, mean ||D(T)||_F;
  and the Pallas kernel's law against the portable kernel's on the GPU (KS p-values of ||D(t)||_F at four steps,
  from each kernel's smallest R).
- ``multinomial``: the multinomial recursion (K = 50, T = 200 generations, alpha = 0.5, replace; n_t = 1000 fixed
  and n_t = 100 fixed) at R = 10^6 and 10^7, Pallas kernel (``multinomial_pallas``) and vmapped JAX sampler;
  replicate-generations/s and the largest relative deviation of the mean loss from the exact recurrence.
- ``logdet``: ``spectral.batched_logdet`` (XLA batched Cholesky) of 10,000 Gram matrices at d = 384, float64 and
  float32, against the 2-core CPU figure in docs/benchmarks.md.
- ``nanogpt``: Flax nanoGPT training tokens/s (float32, bfloat16) against the PyTorch twin on the same GPU
  (eager in each dtype, torch.compile in the last one) for the seed003 preset and the 4x larger ``seed003x4``.
- ``sigma``: the default ``sigma-precision`` sweep with the GPU (``jax``) block engine, as far as its budget goes;
  per-cell times. The dimensions run largest first (``--dims 384,128,32,8``, the default blocks per d): the d = 8 and
  32 cells were measured on the first GPU run, the four d = 384 cells and one d = 128 cell on the third (140 s). The
  whole sweep is projected from the finished cells' times per d (``_sigma_projection``).
- ``sweep``: the sweep runner on the Figure-4 GMM network, 1,000 cells x 1,000 replicates (target: under 10 minutes;
  the cells done within the budget give the rate), with the GMM kernel this run's ``gmm`` section found faster on
  Figure 4 (``--sweep-backend best``; or ``jax`` / ``pallas``). Needs zarr (not in the GPU image:
  ``benchmarks/gpu.sh`` installs it from wheels carried with the checkout; the download command is in that script).

Usage (the project need not be installed: run from the repository root, or let ``benchmarks/gpu.sh`` do it)::

    python3 benchmarks/gpu_bench.py --out DIR            # full sizes (a GPU; about 10 minutes)
    python3 benchmarks/gpu_bench.py --out DIR --sections gmm sigma --section-budget sigma=300   # some, in this order
    python3 benchmarks/gpu_bench.py --out DIR --small    # tiny sizes: an end-to-end check on any machine

Timing: warm calls after a first (compiling) call, ``block_until_ready`` or host copies, medians of repeats; the
compile time is the first call minus the warm median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)
SECTIONS = ("gmm", "multinomial", "logdet", "nanogpt", "sigma", "sweep")
BUDGETS = {"gmm": 150, "multinomial": 120, "logdet": 25, "nanogpt": 150, "sigma": 50, "sweep": 120}  # s, full sizes


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


class Clock:
    """A section's budget: ``left()`` seconds remain; ``fits(seconds)`` says whether a row predicted to take that
    long still fits. ``checkpoint(result)`` writes what a section has so far (atomically, to ``partial``), so that
    a section stopped at its budget still reports the rows it finished."""

    def __init__(self, budget: float, partial: Path | None = None):
        self.end = time.perf_counter() + budget
        self.partial = partial

    def checkpoint(self, result: dict) -> None:
        if self.partial is not None:
            from collapse_jax.results import atomic_write_json

            atomic_write_json(self.partial, result)

    def left(self) -> float:
        return self.end - time.perf_counter()

    def fits(self, seconds: float) -> bool:
        return seconds < self.left()


def timed(run, repeats: int) -> tuple[float, list[float]]:
    """(first call seconds, warm call seconds) of ``run()``, which must wait for its results."""
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        warm.append(time.perf_counter() - t0)
    return first, warm


def timed_chunks(run_chunk, num_chunks: int, repeats: int) -> dict:
    """Time ``run_chunk(i)`` for i < num_chunks (each waits for its result). With three chunks or more, one pass:
    the first chunk compiles, the rest are warm, and the warm time of the whole is their mean times num_chunks.
    Otherwise a first pass (compiling) and ``repeats`` warm passes."""
    def one_pass():
        times = []
        for i in range(num_chunks):
            t0 = time.perf_counter()
            run_chunk(i)
            times.append(time.perf_counter() - t0)
        return times

    first = one_pass()
    if num_chunks >= 3:
        warm = sum(first[1:]) / (num_chunks - 1) * num_chunks
        return dict(first_call_s=sum(first), warm_s=[warm], chunk_s=first, compile_s=max(first[0] - warm / num_chunks, 0),
                    timing="one pass; warm = mean of chunks 2.. x chunks")
    warm = [sum(one_pass()) for _ in range(repeats)]
    return dict(first_call_s=sum(first), warm_s=warm, compile_s=max(sum(first) - _median(warm), 0.0),
                timing=f"first pass, then median of {repeats} warm passes")


# ---------------------------------------------------------------------------------------------------- sections


def section_gmm(args, clock: Clock) -> dict:
    import numpy as np

    from collapse_jax import gmm_network as gn

    # Each kernel's smallest R first (both figures: what the law checks compare), then the larger R in the order of
    # --gmm-backends (Pallas first: the portable kernel's were measured on the first GPU run), so that a budget that
    # runs out cuts the rows that matter least
    sizes = {4: sorted(args.gmm_replicates), 6: sorted(args.gmm_fig6_replicates)}
    plan = [(b, f, sizes[f][0]) for f in (4, 6) for b in args.gmm_backends if sizes[f]]
    plan += [(b, f, r) for b in args.gmm_backends for f in (4, 6) for r in sizes[f][1:]]
    rows, last, failed, samples = [], {}, {}, {}
    for backend, figure, R in plan:
        clock.checkpoint(dict(rows=rows))
        cfg = gn.paper_config(figure, num_steps=args.gmm_steps)
        per_rep = last.get((backend, figure))
        predicted = None if per_rep is None else per_rep * R * (1.1 if R >= 3 * args.gmm_chunk else 2.2) + 5
        row = dict(backend=backend, figure=figure, replicates=R, steps=cfg.num_steps,
                   num_components=cfg.num_components)
        if backend in failed:
            rows.append(dict(row, skipped=f"the {backend} kernel failed: {failed[backend]}"))
            continue
        if predicted is not None and not clock.fits(predicted):
            rows.append(dict(row, skipped=f"predicted {predicted:.0f} s > {clock.left():.0f} s left"))
            continue
        if predicted is None and not clock.fits(args.gmm_first_call_s):  # its first call compiles the kernel
            rows.append(dict(row, skipped=f"{clock.left():.0f} s left, under the {args.gmm_first_call_s:.0f} s a "
                                          "first call (compilation) may take"))
            continue
        chunk = min(R, args.gmm_chunk)
        parts = {}

        def run_chunk(i):
            parts[i] = gn.simulate(0, cfg, chunk, first_replicate=i * chunk, backend=backend, progress=False)

        try:
            t = timed_chunks(run_chunk, -(-R // chunk), 1 if R >= 10**5 else 2)
        except Exception as e:  # noqa: BLE001 (a kernel that does not compile on this GPU must not stop the others)
            failed[backend] = f"{e.__class__.__name__}: {str(e)[:300]}"
            rows.append(dict(row, skipped=f"the {backend} kernel failed: {failed[backend]}"))
            print(f"gmm {backend} fig{figure} R={R}: FAILED {failed[backend]}", flush=True)
            continue
        w = _median(t["warm_s"])
        d = np.concatenate([parts[i].dnorm for i in sorted(parts)])
        collapsed = np.concatenate([parts[i].collapsed[:, -1] for i in sorted(parts)])
        last[(backend, figure)] = w / R
        samples.setdefault((backend, figure), d)  # the smallest R of each kernel, for the law check below
        rows.append(dict(row, chunk=chunk, **t, replicates_per_s=R / w, dnorm_mean_t0=float(d[:, 0].mean()),
                         dnorm_mean_tT=float(d[:, -1].mean()), collapsed_fraction_tT=float(np.mean(collapsed))))
        print(f"gmm {backend} fig{figure} R={R}: {w:.2f} s warm ({R / w:,.0f} replicates/s), first pass "
              f"{t['first_call_s']:.1f} s", flush=True)
    clock.checkpoint(dict(rows=rows))
    return dict(rows=rows, law_checks=_gmm_law_checks(samples))


def _gmm_law_checks(samples: dict) -> list[dict]:
    """The Pallas kernel against the portable one on this device: two-sample KS p-values of ||D(t)||_F at a few
    steps, and the means' difference in standard errors, per figure (independent draws: different generators)."""
    from scipy import stats

    import numpy as np

    out = []
    for figure in sorted({f for _, f in samples}):
        a, b = samples.get(("pallas", figure)), samples.get(("jax", figure))
        if a is None or b is None:
            continue
        T = min(a.shape[1], b.shape[1]) - 1
        steps = sorted({1, min(10, T), T // 4, T})
        se = np.sqrt(a[:, T].var() / len(a) + b[:, T].var() / len(b))
        check = dict(figure=figure, replicates=[len(a), len(b)], steps=steps,
                     ks_pvalues=[float(stats.ks_2samp(a[:, t], b[:, t]).pvalue) for t in steps],
                     mean_tT=[float(a[:, T].mean()), float(b[:, T].mean())],
                     mean_difference_in_se=float((a[:, T].mean() - b[:, T].mean()) / se) if se > 0 else 0.0)
        out.append(check)
        print(f"gmm law, Figure {figure}, pallas against jax: KS p-values at t = {steps}: "
              f"{', '.join(f'{p:.3g}' for p in check['ks_pvalues'])}; mean ||D(T)||_F {check['mean_tT'][0]:.4f} / "
              f"{check['mean_tT'][1]:.4f} ({check['mean_difference_in_se']:+.1f} SE)", flush=True)
    return out


def section_multinomial(args, clock: Clock) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from collapse_jax import driver
    from collapse_jax import multinomial as mn
    from collapse_jax import schedules as S
    from collapse_jax.replicates import replicate_keys

    K, T = args.mn_categories, args.mn_steps
    p = np.random.default_rng(0).dirichlet(np.ones(K))
    alpha = S.constant_alpha(0.5, T)
    cfg = mn.MultinomialConfig("replace")
    interpret = jax.default_backend() == "cpu"
    rows, per_rg = [], {}
    for backend in args.mn_backends:
        if backend == "pallas":
            try:
                from collapse_jax import multinomial_pallas as mp
            except Exception as e:  # an older or newer Pallas without the Triton API: record it, time the rest
                rows.append(dict(backend=backend, skipped=f"import failed: {e!r}"))
                continue
        for size in args.mn_sizes:
            n = S.constant_size(size, T)
            theory = mn.theory_risk(p, alpha, n, cfg)
            f32 = (jnp.asarray(p, jnp.float32), jnp.asarray(alpha, jnp.float32), jnp.asarray(n, jnp.float32))
            for R in args.mn_replicates:
                clock.checkpoint(dict(rows=rows))
                chunk = min(R, args.mn_chunk)
                row = dict(backend=backend, categories=K, generations=T, n_t=size, replicates=R, chunk=chunk)
                if (backend, size) in per_rg:
                    predicted = per_rg[backend, size] * R * T * (1.1 if R >= 3 * chunk else 2.2) + 5
                    if not clock.fits(predicted):
                        rows.append(dict(row, skipped=f"predicted {predicted:.0f} s > {clock.left():.0f} s left"))
                        continue
                sums, sums2 = np.zeros(T + 1), np.zeros(T + 1)

                def one_chunk(keys):
                    if backend == "pallas":
                        return mp.batched_risk_pallas(keys, *f32, interpret=interpret)
                    return driver.batched(mn.kernel, cfg)(keys, mn.Params(*f32, jnp.ones(T + 1, jnp.float32)))

                def run_chunk(i):
                    loss = one_chunk(replicate_keys(0, i * chunk, chunk))
                    sums[:] += np.asarray(jnp.sum(loss, axis=0), np.float64)
                    sums2[:] += np.asarray(jnp.sum(jnp.square(loss), axis=0), np.float64)

                t = timed_chunks(run_chunk, -(-R // chunk), 1)
                num_passes = 1 + (len(t["warm_s"]) if len(t.get("chunk_s", [])) == 0 else 0)
                w = _median(t["warm_s"])
                per_rg[backend, size] = w / (R * T)
                mean = sums / (R * num_passes)  # every pass draws the same replicates: the mean is theirs
                se = np.sqrt(np.maximum(sums2 / (R * num_passes) - mean**2, 0) / R)
                rel = float(np.max(np.abs(mean[1:] / theory[1:] - 1)))
                z = (mean[1:] - theory[1:]) / se[1:]
                worst = int(np.argmax(np.abs(z))) + 1
                rows.append(dict(row, **t, replicate_generations_per_s=R * T / w, max_rel_dev_from_theory=rel,
                                 max_abs_z=float(np.abs(z).max()), worst_generation=worst,
                                 rel_dev_at={t_: float(mean[t_] / theory[t_] - 1) for t_ in sorted({1, 2, 10, T})}))
                print(f"multinomial {backend} n={size} R={R}: {w:.2f} s warm ({R * T / w:,.0f} "
                      f"replicate-generations/s), max |mean/theory - 1| = {rel:.2e}, max |z| {np.abs(z).max():.1f} "
                      f"(generation {worst})", flush=True)
    return dict(rows=rows, device=str(jax.devices()[0]))


def section_logdet(args, clock: Clock) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from collapse_jax import spectral

    d, count = args.logdet_dim, args.logdet_count
    rng = np.random.default_rng(0)
    base = rng.standard_normal((100, 2 * d, d))
    grams = np.einsum("bnd,bne->bde", base, base)  # 100 distinct SPD matrices, tiled to ``count``
    grams = np.tile(grams, (-(-count // 100), 1, 1))[:count]
    ref = np.linalg.slogdet(grams[:20])[1]
    rows = []
    for dtype in ("float64", "float32"):
        g = jnp.asarray(grams, dtype)
        out = {}

        def run():
            out["ld"] = spectral.batched_logdet(g, backend="xla").block_until_ready()

        first, warm = timed(run, 3)
        w = _median(warm)
        err = float(np.max(np.abs(np.asarray(out["ld"][:20], np.float64) - ref) / np.abs(ref)))
        rows.append(dict(dtype=dtype, count=count, dim=d, first_call_s=first, warm_s=warm, matrices_per_s=count / w,
                         max_rel_err=err))
        print(f"logdet {dtype}: {w * 1e3:.1f} ms for {count} (d={d}), rel err {err:.1e}", flush=True)
    return dict(rows=rows)


def section_nanogpt(args, clock: Clock) -> dict:
    out = {}
    for preset in args.nano_presets:
        left = clock.left()
        if left < 20:
            out[preset] = dict(skipped=f"{left:.0f} s left")
            continue
        path = Path(args.tmp) / f"nanogpt-{preset}.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_nanogpt.py"), "--preset", preset,
               "--batch", str(args.nano_batch), "--steps", str(args.nano_steps), "--repeats", "3",
               "--dtypes", *args.nano_flax_dtypes, "--torch-device", args.torch_device,
               "--torch-dtypes", *args.nano_torch_dtypes, "--torch-compile-dtypes", args.nano_torch_dtypes[-1],
               "--no-flax-single-step", "--out", str(path)]  # training's default call (steps_per_call), not 1 step
        if args.no_torch_compile:
            cmd.append("--no-torch-compile")
        if preset != args.nano_presets[0]:
            cmd.append("--no-generation")
        env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION="0.4")
        try:
            proc = subprocess.run(cmd, timeout=max(left - 5, 1), env=env)
            out[preset] = json.loads(path.read_text()) if proc.returncode == 0 else dict(error=proc.returncode)
        except subprocess.TimeoutExpired:
            out[preset] = dict(error=f"timed out after {left - 5:.0f} s")
    return out


def section_sigma(args, clock: Clock) -> dict:
    folder = Path(args.tmp) / "sigma-run"
    cmd = [sys.executable, "-m", "collapse_jax.cli", "sigma-precision", "--engine", "jax", "--out", str(folder)]
    cmd += args.sigma_args.split() if args.sigma_args else []
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=max(clock.left() - 5, 1))
        status = f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"stopped after {time.perf_counter() - t0:.0f} s (budget)"
    wall = time.perf_counter() - t0
    chunks = sorted((folder / "chunks").glob("chunk-*.npz"))
    cells = [p.name for p in chunks]
    # seconds from the sweep's start to each finished cell (the per-cell timings reach the manifest only at the end)
    started = (folder / "config.json").stat().st_mtime if (folder / "config.json").exists() else None
    cell_done_s = [p.stat().st_mtime - started for p in chunks] if started else []
    manifest = folder / "manifest.json"
    done = json.loads(manifest.read_text())["summary"] if manifest.exists() else None
    # per-cell seconds and engine of the cells finished in this call (recorded in the manifest when the sweep ends)
    return dict(status=status, wall_s=wall, command=" ".join(cmd[1:]), cells_saved=cells,
                cell_done_s=cell_done_s, summary=done, **_sigma_projection(folder, chunks, cell_done_s))


def _sigma_projection(folder: Path, chunks: list, cell_done_s: list) -> dict:
    """Wall seconds of each finished cell (from the chunks' times; the first includes start-up) by dimension, and the
    whole sweep projected from them: each d's cells times the median of its finished cells (the sweep's first cell
    left out when its d has another). ``projected_full_s`` needs a finished cell at every d; ``projected_done_d_s``
    covers the dimensions that have one."""
    import numpy as np

    from collapse_jax import sigma_cli, sigma_precision as sp

    if not chunks or not (folder / "config.json").exists():
        return {}
    config = json.loads((folder / "config.json").read_text())["config"]
    cfg = sp.PrecisionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    cells_per_d: dict[int, int] = {}
    for _, d, _ in sigma_cli.cells(cfg):
        cells_per_d[d] = cells_per_d.get(d, 0) + 1
    walls: dict[int, list] = {}
    prev = 0.0
    for i, (path, done_at) in enumerate(zip(chunks, cell_done_s)):
        with np.load(path) as z:
            d = int(z["dim"])
        walls.setdefault(d, []).append((i, done_at - prev))
        prev = done_at
    per_cell = {d: float(np.median([w for i, w in ws if i > 0] or [w for _, w in ws])) for d, ws in walls.items()}
    done_d = sum(cells_per_d.get(d, 0) * per_cell[d] for d in per_cell)
    full = done_d if set(per_cell) >= set(cells_per_d) else None
    return dict(cells_per_d={str(d): n for d, n in cells_per_d.items()},
                cell_wall_s_by_d={str(d): [w for _, w in ws] for d, ws in walls.items()},
                projected_done_d_s=done_d, projected_full_s=full)


def section_sweep(args, clock: Clock) -> dict:
    """The Figure-4 network over a 40 x 25 grid of (beta in [0.4, 0.6], pruning threshold eps), as far as the budget
    goes (a subprocess, stopped at the budget; the store says how many cells were done)."""
    backend = "jax" if args.sweep_backend == "best" else args.sweep_backend
    text = (f'simulator = "gmm-network"\nreplicates = {args.sweep_replicates}\nbackend = "{backend}"\n[fixed]\n'
            f'num_steps = {args.gmm_steps}\n[grid]\nbeta = {{ linspace = [0.4, 0.6, {args.sweep_side[0]}] }}\n'
            f'eps = {{ geomspace = [1e-6, 1e-2, {args.sweep_side[1]}] }}\n')
    spec = Path(args.tmp) / "sweep.toml"
    spec.write_text(text)
    folder = Path(args.tmp) / "sweep-run"
    cmd = [sys.executable, "-m", "collapse_jax.cli", "sweep", str(spec), "--out", str(folder), "--no-plots"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=max(clock.left() - 5, 1), capture_output=True, text=True)
        status = f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-400:]}"
    except subprocess.TimeoutExpired:
        status = f"stopped after {time.perf_counter() - t0:.0f} s (budget)"
    wall = time.perf_counter() - t0
    try:
        from collapse_jax import sweep

        done = int(sweep.cells_done(folder).sum())
    except Exception as exc:  # no store (zarr missing, or stopped before the store existed)
        done, status = 0, f"{status}; no store: {exc}"
    cells = args.sweep_side[0] * args.sweep_side[1]
    return dict(status=status, wall_s=wall, cells=cells, cells_done=done, replicates=args.sweep_replicates,
                backend=backend, projected_full_s=wall * cells / done if done else None, command=" ".join(cmd[1:]))


# ---------------------------------------------------------------------------------------------------- driver


def sweep_backend(choice: str, gmm: dict) -> str:
    """The sweep section's GMM kernel: ``choice`` unless it is ``best``; then ``pallas`` where this run's gmm section
    timed Figure 4 with the Pallas kernel at a higher rate than with the portable one (or only with Pallas)."""
    if choice != "best":
        return choice
    rate = {}
    for r in gmm.get("rows", []):
        if r.get("figure") == 4 and "replicates_per_s" in r:
            rate[r["backend"]] = max(rate.get(r["backend"], 0.0), r["replicates_per_s"])
    return "pallas" if rate.get("pallas", 0.0) > rate.get("jax", 0.0) else "jax"


def child(args) -> None:
    import jax

    fn = globals()[f"section_{args.section}"]
    t0 = time.perf_counter()
    res = fn(args, Clock(args.budget, partial_result(Path(args.result))))
    res["section_wall_s"] = time.perf_counter() - t0
    res["jax_devices"] = [str(d) for d in jax.devices()]
    Path(args.result).write_text(json.dumps(res, indent=1, default=str))


def partial_result(result: Path) -> Path:
    """Where a section keeps what it has finished while it runs (:meth:`Clock.checkpoint`)."""
    return result.with_name(result.stem + ".partial.json")


def environment() -> dict:
    from collapse_jax.results import environment_info

    env = environment_info()
    try:
        env["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        env["nvidia_smi"] = f"unavailable ({e.__class__.__name__})"
    return env


def environment_lines(env: dict, command: str | None) -> list[str]:
    """The machine, device, versions and command of gpu.json's ``environment``, for gpu.md's head (it had the
    nvidia-smi line only: an audit, 2026-12-07)."""
    commit = env.get("git_commit")
    devices = (f"JAX backend {env.get('backend')}: {', '.join(env.get('devices') or [])} ({env.get('device_kind')})"
               if "jax_error" not in env else f"no JAX backend started: {env['jax_error']}")
    names = ("python", "jax", "jaxlib", "numpy", "flax", "optax", "torch")
    versions = ", ".join(f"{name} {env[name]}" for name in names if env.get(name))
    lines = [f"- CPU: {env.get('cpu_model')}, {env.get('cpu_count')} logical CPUs "
             f"({env.get('cpus_usable')} usable); SIMD: {' '.join(env.get('cpu_features') or []) or 'none'}; "
             f"load average {env.get('load_average')}",
             f"- device: {devices}; x64 {env.get('x64')}",
             f"- versions: {versions}; collapse-jax {env.get('collapse-jax')}"
             + (f" (git {commit[:12]}{', uncommitted changes' if env.get('git_dirty') else ''})" if commit else ""),
             f"- platform: {env.get('platform')}"]
    if command:
        lines.append(f"- command: `{command}`")
    return lines + [""]


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"# GPU benchmarks ({env.get('nvidia_smi') or 'no GPU'})", "",
             *environment_lines(env, results.get("command"))]
    gmm = results.get("gmm", {})
    if gmm.get("rows"):
        lines += ["| GMM network | kernel | R | warm s | replicates/s | compile s | mean Frobenius norm of D(T) |",
                  "|---|---|---|---|---|---|---|"]
        for r in gmm["rows"]:
            head = f"| Figure {r['figure']} | {r.get('backend', 'jax')} | {r['replicates']:,} |"
            if "skipped" in r:
                lines.append(f"{head} skipped: {r['skipped']} | | | |")
            else:
                lines.append(f"{head} {_median(r['warm_s']):.2f} | {r['replicates_per_s']:,.0f} | "
                             f"{r['compile_s']:.1f} | {r['dnorm_mean_tT']:.4f} |")
        if gmm.get("partial"):
            lines.append(f"\n(The section stopped early, {gmm['error']}: the rows above are those it finished.)")
        for c in gmm.get("law_checks", []):
            lines.append(f"\nPallas against portable kernel, Figure {c['figure']} ({c['replicates'][0]:,} / "
                         f"{c['replicates'][1]:,} replicates): KS p-values at t = {c['steps']}: "
                         f"{', '.join(f'{p:.3g}' for p in c['ks_pvalues'])}; mean ||D(T)||_F differs by "
                         f"{c['mean_difference_in_se']:+.1f} SE.")
        lines.append("")
    mn = results.get("multinomial", {})
    if mn.get("rows"):
        first = next((r for r in mn["rows"] if "categories" in r), dict(categories="?", generations="?"))
        lines += [f"| multinomial (K = {first['categories']}, T = {first['generations']}) | n_t | R | warm s | "
                  "replicate-generations/s | "
                  "max rel. dev. from theory | max abs z |", "|---|---|---|---|---|---|---|"]
        for r in mn["rows"]:
            if "skipped" in r and "n_t" not in r:
                lines.append(f"| {r['backend']} | | | {r['skipped']} | | | |")
            elif "skipped" in r:
                lines.append(f"| {r['backend']}, replace | {r['n_t']} | {r['replicates']:,} | skipped: {r['skipped']} | | | |")
            else:
                lines.append(f"| {r['backend']}, replace | {r['n_t']} | {r['replicates']:,} | {_median(r['warm_s']):.2f} | "
                             f"{r['replicate_generations_per_s']:,.0f} | {r['max_rel_dev_from_theory']:.1e} | "
                             f"{r.get('max_abs_z', float('nan')):.1f} |")
        if mn.get("partial"):
            lines.append(f"\n(The section stopped early, {mn['error']}: the rows above are those it finished.)")
        lines.append("")
    ld = results.get("logdet", {})
    if ld.get("rows"):
        lines += ["| batched log-det (XLA) | count x d | warm ms | matrices/s | max rel. err |", "|---|---|---|---|---|"]
        for r in ld["rows"]:
            lines.append(f"| {r['dtype']} | {r['count']:,} x {r['dim']} | {_median(r['warm_s']) * 1e3:.1f} | "
                         f"{r['matrices_per_s']:,.0f} | {r['max_rel_err']:.1e} |")
        lines.append("")
    ng = results.get("nanogpt", {})
    for preset, res in ng.items():
        if not isinstance(res, dict) or "train" not in res:
            if isinstance(res, dict) and preset not in ("section_wall_s", "jax_devices", "status"):
                lines += [f"nanoGPT {preset}: {res}", ""]
            continue
        lines += [f"| nanoGPT {preset} training | tokens/s | first step s |", "|---|---|---|"]
        for name, row in res["train"].items():
            if isinstance(row, dict) and "tokens_per_second" in row:
                lines.append(f"| {name} | {row['tokens_per_second']:,.0f} | {row['first_step_seconds']:.1f} |")
        gen = res.get("generation")
        if gen:
            lines.append(f"| generation, cache / no cache (new tokens/s) | {gen['cache']['tokens_per_second']:,.0f} / "
                         f"{gen['no_cache']['tokens_per_second']:,.0f} | |")
        lines.append("")
    sg = results.get("sigma", {})
    if sg.get("status"):
        done = sg.get("cell_done_s") or []  # (none: "finished at  s" was printed)
        lines += [f"sigma-precision (jax engine): {sg['status']}, wall {sg.get('wall_s', 0):.0f} s, "
                  f"cells saved: {len(sg.get('cells_saved') or [])}"
                  + (f", finished at {', '.join(f'{t:.0f}' for t in done)} s" if done else ""), ""]
        by_d = sg.get("cell_wall_s_by_d") or {}
        if by_d:
            full = sg.get("projected_full_s")
            lines += ["per d, seconds per finished cell (of its cells): " + "; ".join(
                f"d = {d}: {', '.join(f'{w:.1f}' for w in ws)} (of {sg['cells_per_d'].get(d, '?')})"
                for d, ws in by_d.items()) + f"; projected: the measured d's {sg['projected_done_d_s']:.0f} s, "
                f"the whole sweep {'- (a d without a finished cell)' if full is None else f'{full:.0f} s'}", ""]
    sw = results.get("sweep", {})
    if sw.get("status"):
        projected = sw.get("projected_full_s")
        lines += [f"sweep runner, Figure-4 GMM network ({sw.get('backend', 'jax')} kernel): {sw.get('cells_done')}/"
                  f"{sw.get('cells')} cells x "
                  f"{sw.get('replicates')} replicates in {sw.get('wall_s', 0):.0f} s "
                  f"({sw['status'].splitlines()[0][:120]}); "  # (its second line, the dataset's path, was cut)
                  f"projected for all cells: {'-' if projected is None else f'{projected:.0f} s'}", ""]
    for name in SECTIONS:
        if "error" in results.get(name, {}) and name != "nanogpt":
            lines += [f"{name}: {results[name]['error']}", ""]
    return "\n".join(lines)


# --small: an end-to-end check of the script in a minute or two on any machine (options typed beside it win)
SMALL_SIZES = dict(gmm_replicates=[16, 64], gmm_fig6_replicates=[16], gmm_steps=20, gmm_first_call_s=0.0,
                   mn_replicates=[64, 512], mn_chunk=128, gmm_chunk=16, mn_steps=20, logdet_count=50, logdet_dim=32,
                   nano_presets=["tiny"], nano_steps=1, nano_batch=4, nano_flax_dtypes=["float32"],
                   torch_device="cpu", no_torch_compile=True, nano_torch_dtypes=["float32"],
                   sigma_args="--dims 8 --blocks 20 --num-points 20000 --families isotropic,student_t",
                   sweep_side=[2, 2], sweep_replicates=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu"), help="folder for gpu.json/gpu.md")
    ap.add_argument("--small", action="store_true", help="tiny sizes: an end-to-end check of the script on a CPU")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    ap.add_argument("--section-budget", dest="budget_overrides", action="append", default=[],
                    metavar="SECTION=SECONDS", help="one section's time budget in seconds (before --budget-scale), "
                                                    "e.g. --section-budget sigma=150; repeatable")
    # child mode
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    # sizes (--small sets those left at their defaults; the parent passes them to each child)
    ap.add_argument("--gmm-replicates", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    ap.add_argument("--gmm-fig6-replicates", type=int, nargs="+", default=[10**4, 10**5])
    ap.add_argument("--gmm-steps", type=int, default=200)
    ap.add_argument("--gmm-chunk", type=int, default=250_000, help="replicates per simulate call")
    ap.add_argument("--gmm-first-call-s", type=float, default=60.0,
                    help="time a kernel's first row must have left (it compiles; Triton took 44-48 s for Figure 6's "
                         "Pallas kernel on a CPU: benchmarks/triton_offline.py)")
    ap.add_argument("--gmm-backends", nargs="+", default=["pallas", "jax"], choices=["pallas", "jax"])
    ap.add_argument("--mn-replicates", type=int, nargs="+", default=[10**6, 10**7])
    ap.add_argument("--mn-sizes", type=int, nargs="+", default=[1000, 100])
    ap.add_argument("--mn-backends", nargs="+", default=["pallas", "jax"], choices=["pallas", "jax"])
    ap.add_argument("--mn-categories", type=int, default=50)
    ap.add_argument("--mn-steps", type=int, default=200)
    ap.add_argument("--mn-chunk", type=int, default=2_000_000, help="replicates per compiled call")
    ap.add_argument("--logdet-count", type=int, default=10_000)
    ap.add_argument("--logdet-dim", type=int, default=384)
    ap.add_argument("--nano-presets", nargs="+", default=["seed003", "seed003x4"])
    ap.add_argument("--nano-batch", type=int, default=32)
    ap.add_argument("--nano-steps", type=int, default=20, help="train steps per timed block")
    ap.add_argument("--nano-flax-dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--nano-torch-dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--torch-device", default="cuda")
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--sigma-args", default="--dims 384,128,32,8 --blocks 1000,2000,4000,4000",
                    help="arguments of the sigma-precision sweep (default: the default sweep, largest d first)")
    ap.add_argument("--sweep-side", type=int, nargs=2, default=[40, 25], help="grid of the sweep section")
    ap.add_argument("--sweep-replicates", type=int, default=1000)
    ap.add_argument("--sweep-backend", default="best", choices=["best", "jax", "pallas"],
                    help="GMM kernel of the sweep section; best: pallas when this run's gmm section timed Figure 4 "
                         "with it at a higher rate than the portable kernel (or the portable kernel did not run), "
                         "else jax")
    args = ap.parse_args()
    if args.section:
        child(args)
        return
    if args.small:  # tiny sizes for the options left at their defaults; an option typed beside --small is kept
        for name, value in SMALL_SIZES.items():
            if getattr(args, name) == ap.get_default(name):
                setattr(args, name, value)

    budgets = dict(BUDGETS)
    for item in args.budget_overrides:
        name, _, seconds = item.partition("=")
        if name not in SECTIONS:
            ap.error(f"--section-budget: section must be one of {', '.join(SECTIONS)}, got {name!r}")
        try:
            budgets[name] = float(seconds)
        except ValueError:
            ap.error(f"--section-budget {name}: seconds must be a number, got {seconds!r}")
        if not budgets[name] > 0:
            ap.error(f"--section-budget {name}: seconds must be > 0, got {seconds}")
    from collapse_jax.results import atomic_write_text   # (ROOT is on sys.path: _checkout, above)

    out = Path(args.out)   # made once the options are checked; the section results' folder removed at the end
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        _run_sections(args, out, tmp, budgets, atomic_write_text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_sections(args, out: Path, tmp: Path, budgets: dict, write) -> None:
    """Each section in its own process (``--section``), gpu.json and gpu.md rewritten (atomically) after each."""
    sizes = []
    for name in ("gmm_replicates", "gmm_fig6_replicates", "gmm_backends", "mn_replicates", "mn_sizes", "mn_backends",
                 "nano_presets", "nano_flax_dtypes", "nano_torch_dtypes", "sweep_side"):
        sizes += [f"--{name.replace('_', '-')}", *map(str, getattr(args, name))]
    for name in ("gmm_steps", "gmm_chunk", "gmm_first_call_s", "mn_categories", "mn_steps", "mn_chunk",
                 "logdet_count", "logdet_dim", "nano_batch", "nano_steps", "torch_device", "sweep_replicates"):
        sizes += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.no_torch_compile:
        sizes.append("--no-torch-compile")
    if args.sigma_args:
        sizes += ["--sigma-args", args.sigma_args]
    results = dict(environment=environment(), command=" ".join(sys.argv), small=args.small)
    print(json.dumps(results["environment"], default=str), flush=True)
    for name in args.sections:
        budget = budgets[name] * args.budget_scale
        result = tmp / f"{name}.json"
        cmd = [sys.executable, __file__, "--section", name, "--budget", str(budget), "--result", str(result),
               "--tmp", str(tmp), *sizes]
        if name == "sweep":
            cmd += ["--sweep-backend", sweep_backend(args.sweep_backend, results.get("gmm", {}))]
        t0 = time.perf_counter()
        print(f"== {name} (budget {budget:.0f} s)", flush=True)
        try:
            proc = subprocess.run(cmd, timeout=budget + 60)
            results[name] = (json.loads(result.read_text()) if proc.returncode == 0 and result.exists()
                             else dict(error=f"exit {proc.returncode}"))
        except subprocess.TimeoutExpired:
            results[name] = dict(error=f"killed after {budget + 60:.0f} s")
        if "error" in results[name] and partial_result(result).exists():  # the rows it finished before it stopped
            results[name].update(json.loads(partial_result(result).read_text()), partial=True)
        # the section process's seconds; a section's own wall_s (its command's, in sigma and sweep) is kept
        results[name]["process_wall_s"] = time.perf_counter() - t0
        results[name].setdefault("wall_s", results[name]["process_wall_s"])
        write(out / "gpu.json", json.dumps(results, indent=1, default=str))
        write(out / "gpu.md", markdown(results))
    print(markdown(results), flush=True)


if __name__ == "__main__":
    main()
