"""``collapse-jax sigma-precision``: precision of the Sigma log-det estimators versus block size.

Writes a run folder with ``config.json``, one resumable chunk per cell (``chunks/``), ``arrays.npz`` (per-cell block
statistics), ``table.md`` / ``table.csv`` (bias, SD, coverage per cell and block size), ``coverage.png``
(coverage vs n/d^2) and ``error.png`` (error vs n with the sqrt(2d/n) line), and ``manifest.json`` last.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from collapse_jax import _checks
from collapse_jax import cli_options as opts
from collapse_jax import sigma_precision_config as spc  # (no JAX: the parser; sigma_precision when run)
from collapse_jax.progress import bar
from collapse_jax.results import RunFolder, hash_file

QUICK = dict(dims=(8, 32), blocks=(200,), num_points=20_000, ratios=(1.0, 2.0, 5.0, 20.0, 100.0))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sigma-precision",
        help="precision of Sigma log-det estimators (bias, SD, interval coverage) versus block size n",
        description=(
            "For each data family and dimension d, draw N rows once, compute the exact log det G by streaming the "
            "Gram matrix, then score random blocks of n rows (n from d+1 to 100 d): bias and SD of "
            "L_hat = log det G_1 + d log(N/n), and the coverage of the seed's Theorem-3 interval "
            "L_hat +- z tau_hat/sqrt(n) and of the corrected intervals (second-order, exact Wishart, scaled "
            "Wishart, leverage jackknife). A block size equal to N is exact and reported as such. Resumable: rerun "
            "with the same --out to continue after an interruption."))
    opts.add_config(p, spc.PrecisionConfig)
    p.add_argument("--threads", type=int, default=None,
                   help="worker threads for data, Gram and blocks (default: COLLAPSE_JAX_THREADS, else the CPUs this "
                        "process may use)")
    p.add_argument("--quick", action="store_true",
                   help=f"small sweep for a smoke test: {QUICK} (not combined with those flags: giving one with "
                        "--quick is an error)")
    opts.add_out(p, "sigma-precision")
    # (a Ctrl-C said only "a command that resumes continues ..."; a user trial, 2026-12-06)
    p.set_defaults(interrupt_hint="continue it: rerun the same command with --out RUN "
                                  "(the cells finished so far are kept)")
    p.set_defaults(func=run, run_option_notes={
        "x64": "no effect: sigma-precision turns float64 on itself (its exact log-dets); each --engine keeps its own "
               "working precision",
        "backend": f"sigma-precision's kernels are chosen by --engine ({', '.join(spc.ENGINES)})"})


def config_from_args(args) -> spc.PrecisionConfig:
    if args.quick:  # --quick sets these: given as well, they were silently dropped (unchecked, even invalid ones)
        given = [opts.flag_of(spc.PrecisionConfig, k) for k in QUICK if getattr(args, k, None) is not None]
        if given:
            raise ValueError(f"--quick sets {', '.join(opts.flag_of(spc.PrecisionConfig, k) for k in QUICK)}; drop "
                             f"{', '.join(given)} or --quick")
    dims = args.dims if args.dims is not None else spc.PrecisionConfig().dims
    if args.blocks is not None and not args.blocks:  # (an empty --blocks ran the defaults)
        raise ValueError("blocks must name at least one count (one per dimension, or one for all)")
    cfg = opts.config_from_args(spc.PrecisionConfig, args,
                                blocks=args.blocks or spc.PrecisionConfig.default_blocks(dims))
    if args.quick:
        cfg = replace(cfg, **QUICK)
    return cfg.validate()


def load_embeddings(path: str) -> np.ndarray:
    """A user-supplied ``.npy`` array of embeddings (rows), checked before any compute."""
    from collapse_jax import spectral

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"embeddings file {path!r} does not exist")
    try:
        with open(p, "rb") as f:
            head = f.read(6)
        arr = np.load(p, mmap_mode="r") if head == b"\x93NUMPY" else None
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"embeddings file {path!r} is not a NumPy .npy array ({type(exc).__name__}: {exc})") from None
    if arr is None:  # (np.load takes any other file for a pickle: "pickled (object) data ... load it unsafely" of a
        # text file; a user trial, 2026-12-07)
        what = "a .npz archive" if head.startswith(b"PK") else "not a NumPy .npy file (no .npy header)"
        raise ValueError(f"embeddings file {path!r} is {what}; save one (N, d) array with numpy.save")
    arr = spectral.check_embeddings(f"embeddings {path}", arr)
    spc.check_min_dim(f"embeddings {path}", arr.shape[1])
    if arr.shape[0] <= arr.shape[1] + 1:
        raise ValueError(f"embeddings {path}: need more rows than dim + 1 (N > n > d), got shape {arr.shape}")
    x = np.asarray(arr, dtype=np.float64)
    check_full_rank(f"embeddings {path}", x)
    repeated = spectral.repeated_rows(x)
    if repeated:  # (the blocks drawn from them are checked with warnings off: the CLI said nothing; a user trial,
        # 2026-12-06, saw jackknife coverage 0.50 at n = 480 with 300 copies among 1,800 rows)
        warnings.warn(f"embeddings {path}: {repeated} of its {x.shape[0]} rows repeat another row exactly; the "
                      "intervals assume distinct rows and under-cover with repeats (docs/sigma.md, 'Repeated rows')",
                      spectral.RepeatedRowsWarning, stacklevel=_checks.user_stacklevel())
    return x


def check_full_rank(name: str, x: np.ndarray) -> None:
    """Refuse rows ``x`` (N, d) whose Gram matrix is singular by the rule every block already follows
    (:data:`spectral.SINGULAR_PIVOT`: a Cholesky pivot^2 below 1e-12 of its diagonal entry; a zero column, duplicated
    or linearly dependent columns): log det G is then undefined, and the sweep reported rounding noise as bias and
    coverage (+1.0 nats, 0 %, for a copy of one column in 16). Real all-MiniLM-L6-v2 sentence embeddings (d = 384,
    N = 15,910) are far from it."""
    from collapse_jax import spectral

    gram = x.T @ x
    diag = np.diag(gram)
    if np.any(diag == 0):  # every such column named (only the first was, and a user dropping it failed again)
        zero = np.flatnonzero(diag == 0)
        shown = ", ".join(map(str, zero[:20])) + (", ..." if zero.size > 20 else "")
        raise ValueError(f"{name}: {zero.size} column{'s are' if zero.size > 1 else ' is'} all zeros ({shown}), so "
                         f"the rows span fewer than d = {x.shape[1]} dimensions and log det G is undefined; drop "
                         f"{'them' if zero.size > 1 else 'it'}")
    try:
        pivot = float(np.min(np.diag(np.linalg.cholesky(gram)) ** 2 / diag))
    except np.linalg.LinAlgError:  # (not positive definite in float64 at all)
        pivot = 0.0
    if not pivot > spectral.SINGULAR_PIVOT:
        raise ValueError(f"{name}: the rows span fewer than d = {x.shape[1]} dimensions to float64 precision "
                         f"(smallest Cholesky pivot^2 / diagonal {pivot:.2g} <= {spectral.SINGULAR_PIVOT:g}: "
                         "linearly dependent columns), so log det G is undefined; drop the dependent columns or "
                         "project onto the leading principal components")


def cells(cfg: spc.PrecisionConfig) -> list[tuple[str, int, int]]:
    """(family, d, num_blocks) of every cell, in run order; the embeddings cell (if any) last with d = -1."""
    from collapse_jax import sigma_precision as sp

    out = [(fam, d, cfg.blocks_for(i)) for i, d in enumerate(cfg.dims) for fam in cfg.families
           if spc.family_has_dim(fam, d)]
    if cfg.embeddings:
        out.append((sp.EMBEDDINGS, -1, max(cfg.blocks)))
    if not out:
        raise ValueError(f"no cells to run: families {', '.join(cfg.families) or '(none)'} have no cell at dims "
                         f"{', '.join(map(str, cfg.dims)) or '(none)'} (real-data families run only at their own d)")
    return out


def block_work(dim: int, num_points: int, ratios) -> float:
    """Relative cost of one block of a cell, for the sweep's overall progress bar: the block's O(n d^2) products,
    ``sum(ns) d^2`` multiply-adds over its sizes ``ns``, plus a fixed 10^7 for its calls and factorisations. Against
    the numpy engine's measured times per block (2-core AMD EPYC: 0.57 ms, 3.3 ms, 46 ms and 0.70 s at d = 8, 32,
    128, 384, two workers) it is 1.1x, 0.3x, 0.6x and 1.0x of their ratios to the d = 384 time, right where the time
    goes: so the bar's remaining time means something, where counting cells (a d = 8 cell takes seconds, a d = 384
    one a quarter of an hour) did not."""
    from collapse_jax import sigma_precision as sp

    return float(np.sum(sp.block_sizes(dim, num_points, ratios))) * dim * dim + 1e7


# The numpy engine's rate in block_work units (multiply-adds) per worker thread, as a share of one core's rate on its
# triangular product (numpy_probe_gmac): a block's block_work is sum(ns) d^2, its products about 1.75 times that, and
# the leverage passes, factorisations and calls come on top. Measured 2026-12-07 on a 2-core AMD EPYC Zen 4: the whole
# default synthetic sweep, 47,677 G of block_work in 1,435 s of cell compute on two threads, 16.6 G/s per thread, with
# the probe at 50.2 G/s. (A Zen 3's probe, about 33 G/s, gives 11 G/s: it ran 8 G/s per thread before the engine's
# BLAS calls released Python's lock on 2026-12-07.)
NUMPY_RATE_PER_PROBE = 0.33
NUMPY_SLOWEST_RATE = 4.0  # G block_work a second per thread: half the slowest measured (a Zen 3 before 2026-12-07)


def numpy_probe_gmac() -> float:
    """This CPU's float32 triangular-product rate in G multiply-adds a second, one thread: the numpy engine's
    whitening (``_blas.trmm_right``) of 2048 rows at d = 384, best of 5 calls of about 3 ms. The rate the engine's
    products run at differs 1.5x between the CPUs it runs on (OpenBLAS at 33 G/s on a Zen 3, 50 on a Zen 4), so an
    estimate of a sweep's time from one CPU's figure misled on another."""
    from collapse_jax import _blas
    from collapse_jax.spectral import one_blas_thread

    rng = np.random.default_rng(0)
    a = (np.tril(rng.standard_normal((384, 384))) / 20 + np.eye(384)).astype(np.float32)
    b = rng.standard_normal((2048, 384)).astype(np.float32)
    best = np.inf
    with one_blas_thread():
        for _ in range(5):
            start = time.perf_counter()
            _blas.trmm_right(a, b, trans=True)
            best = min(best, time.perf_counter() - start)
    return 2048 * 384 * 384 / 2 / best / 1e9


def slow_engine_note(engine: str, gmac: float, threads: int, rate: float | None = None) -> str | None:
    """What to say before a sweep on the numpy engine (a CPU without AMX) expected to run over ten minutes: the
    full default sweep runs half an hour to an hour on two cores, and a user trial on such a CPU (2026-12-06) was told
    nothing until its first cells' progress bar, whose early rate (small d, the fixed costs) overstated it ~2.5x.
    ``rate``: G block_work a second per thread (default: :data:`NUMPY_RATE_PER_PROBE` x :func:`numpy_probe_gmac`)."""
    if engine != "numpy" or gmac / (NUMPY_SLOWEST_RATE * threads) / 60 < 10:  # (no probe where it cannot matter)
        return None
    rate = NUMPY_RATE_PER_PROBE * numpy_probe_gmac() if rate is None else rate
    minutes = gmac / (rate * threads) / 60
    if minutes < 10:
        return None
    plural = "s" * (threads != 1)
    return (f"sigma-precision: the numpy engine (the native one needs AMX tiles) will take roughly "
            f"{minutes:.0f} minutes for these cells ({gmac:,.0f} G multiply-adds at ~{rate:.0f} G/s per thread on "
            f"this CPU, {threads} thread{plural}); --quick runs a small sweep in under a minute, and fewer "
            "--dims or --blocks cut the time in proportion")


def block_bytes(dim: int, num_points: int, ratios) -> int:
    """Working memory of one worker thread's blocks at dimension ``dim``: the native kernel's workspace for the
    largest block of ``n`` rows (its rows split into bfloat16 halves and whitened in float32, 8 bytes a number; the
    gathered rows, 4; float64 d x d matrices and small prefixes, about 100 d^2 bytes; indices, 64 bytes a row), which
    it keeps between blocks; the numpy engine's arrays are of the same order. Against peak RSS (a user trial,
    2026-12-06: d = 1024, N = 10^5, two threads: 3.67 GB measured, 3.8 GB estimated with the data buffers; d = 2048,
    N = 2 10^5 passed the check without it and was killed at 12 GB)."""
    from collapse_jax import sigma_precision as sp

    n = int(sp.block_sizes(dim, num_points, ratios)[-1])
    return 12 * n * dim + 100 * dim * dim + 64 * n


def check_memory(cfg: spc.PrecisionConfig, threads: int | None = None,
                 embeddings_shape: tuple[int, int] | None = None) -> None:
    """Refuse, before any compute, a sweep whose data buffers (one float64 and one float32 copy of the largest
    synthetic cell's N x d rows) and blocks' working memory (:func:`block_bytes`, per worker thread: ``threads``,
    default every CPU this process may use) or whose per-block statistics (a cell's float64 array of log det, mean
    M_i^2 and the leave-one-out fields for each block and block size) would not fit in memory."""
    from collapse_jax import _checks, _native
    from collapse_jax import sigma_precision as sp

    threads = threads or _native.spectral_threads()
    shapes = [(cfg.num_points, d) for d in cfg.dims] if cfg.families else []
    shapes += [embeddings_shape] if embeddings_shape is not None else []
    data = 12 * cfg.num_points * max(cfg.dims) if cfg.families and cfg.dims else 0
    blocks = max((block_bytes(d, n, cfg.ratios) for n, d in shapes if n > d), default=0)
    available = _checks.available_memory_bytes()
    if available and data + threads * blocks > 0.8 * available:
        raise ValueError(f"the sweep needs about "
                         f"{(data + threads * blocks) / 2**30:.1f} GiB ({data / 2**30:.1f} GiB of data buffers for "
                         f"{cfg.num_points:,} rows of the largest d, float64 + float32 copies, and "
                         f"{blocks / 2**30:.2f} GiB of block work per thread, {threads} threads), more than 80% of the "
                         f"{available / 2**30:.1f} GiB available; lower --num-points, the largest --dims or --ratios, "
                         "or --threads")
    _checks.fits_in_memory("blocks (per-block statistics of the largest cell)", max(cfg.blocks, default=0),
                           8 * (2 + len(sp.LOO_FIELDS)) * len(cfg.ratios))


def run_sweep(cfg: spc.PrecisionConfig, folder: RunFolder, threads: int | None = None) -> dict:
    """Run (or resume) every cell, then write arrays, tables and plots. Returns the summary."""
    import jax

    from collapse_jax import _checks, _native
    from collapse_jax import sigma_precision as sp

    jax.config.update("jax_enable_x64", True)
    threads = _checks.positive_int("threads", threads) if threads is not None else _native.spectral_threads()
    todo = cells(cfg)
    emb = load_embeddings(cfg.embeddings) if cfg.embeddings else None
    check_memory(cfg, threads, None if emb is None else emb.shape)
    # the file's content, not only its path as typed: a resumed run kept the results of a file that had changed
    # since (another N, another log det) and reported them as the new file's (a user trial, 2026-12-04)
    # and the engine "auto" resolves to here: a resume on a CPU without AMX (or without a compiler) mixed the numpy
    # engine's cells with the native one's under one config.json (a user trial, 2026-12-05)
    engine = sp.resolve_engine(cfg.engine)
    folder.start({**asdict(cfg), "engine_resolved": engine,
                  **({"embeddings_sha256": hash_file(cfg.embeddings).hexdigest()} if cfg.embeddings else {})})
    t0 = time.perf_counter()
    results, rows, engines = [], [], {}
    # one float64 and one float32 buffer for all synthetic cells: fresh 3 GB arrays per cell cost seconds of page
    # faults each (views of the first N * d elements serve every d)
    size = cfg.num_points * max(cfg.dims, default=0)
    buf64 = np.empty(size) if cfg.families and size else None
    buf32 = np.empty(max(size, emb.size if emb is not None else 0), np.float32) if size or emb is not None else None
    # one bar over the whole sweep, each cell weighted by its blocks' estimated work (block_work; a real-data
    # family's N is known once its rows are loaded, and its weight corrected then); cells finished by an earlier run
    # count as done
    work = [blocks * block_work(*(emb.shape[::-1] if fam == sp.EMBEDDINGS else (d, cfg.num_points)), cfg.ratios)
            / 1e9 for fam, d, blocks in todo]  # G multiply-adds
    saved = [folder.chunk_path(idx).is_file() for idx in range(len(todo))]
    if any(saved):  # (a resume looked like a fresh start until it ended; a user trial, 2026-12-06)
        print(f"sigma-precision: resuming {folder.path}: {sum(saved)} of {len(todo)} cells saved by an earlier run",
              file=sys.stderr)
    done, total = sum(w for w, was in zip(work, saved) if was), sum(work)
    note = slow_engine_note(engine, total - done, threads)
    if note:
        print(note, file=sys.stderr, flush=True)
    with bar(round(total), "sigma-precision (cells weighted by work)", unit="GMAC", initial=round(done)) as whole:

        def advance(gmac):  # the bar in whole units of the running float total
            nonlocal done
            before = round(done)
            done += gmac
            whole.update(round(done) - before)

        for idx, (fam, d, blocks) in enumerate(todo):
            chunk = folder.load_chunk(idx)
            if chunk is None:
                if saved[idx]:  # an unreadable chunk, counted as done: computed again
                    advance(-work[idx])
                if fam == sp.EMBEDDINGS:
                    data = emb
                else:
                    view = buf64[:cfg.num_points * d].reshape(cfg.num_points, d)
                    data = sp.family_dataset(cfg.seed, idx, cfg.num_points, d, fam, cfg, threads, out=view)
                ns = sp.block_sizes(data.shape[1], data.shape[0], cfg.ratios)
                per_block = block_work(data.shape[1], data.shape[0], cfg.ratios) / 1e9
                total += blocks * per_block - work[idx]  # its real N (a real-data family's)
                whole.total = round(total)
                whole.refresh()
                with bar(blocks, f"{fam} d={data.shape[1]}", unit="block") as b:
                    def blocks_done(k, b=b, per_block=per_block):
                        b.update(k)
                        advance(k * per_block)

                    res = sp.run_cell(data, fam, ns, blocks, seed=cfg.seed, cell=idx, progress=blocks_done,
                                      engine=cfg.engine, threads=threads,
                                      scratch=None if buf32 is None or buf32.size < data.size
                                      else buf32[:data.size].reshape(data.shape))
                engines[f"cell{idx:02d}"] = res.extra
                del data
                folder.save_chunk(idx, res.to_arrays())
            else:
                res = sp.CellResult.from_arrays(fam, chunk)
            results.append(res)
            rows.extend(sp.summarize_cell(res, cfg.level))
    arrays, labels, desc = {}, {}, {}
    for idx, res in enumerate(results):
        key = f"cell{idx:02d}_{res.family}_d{res.dim}"
        arrays[f"{key}_logdet_g1"] = res.logdet_g1
        arrays[f"{key}_m2_insample"] = res.m2_insample
        for f in sp.LOO_FIELDS:
            arrays[f"{key}_loo_{f}"] = getattr(res, f"loo_{f}")
            labels[f"{key}_loo_{f}"] = ("block", "block_size")
        arrays[f"{key}_ns"] = res.ns
        arrays[f"{key}_truth"] = np.float64(res.truth)
        labels.update({f"{key}_logdet_g1": ("block", "block_size"), f"{key}_m2_insample": ("block", "block_size"),
                       f"{key}_ns": ("block_size",), f"{key}_truth": ()})
        desc[f"{key}_logdet_g1"] = "log det G_1 of each random block at each block size"
        desc[f"{key}_m2_insample"] = "in-sample mean of M_i^2 (squared Mahalanobis norms) per block and size"
        desc[f"{key}_loo_mean"] = "mean over rows of log(1 - h_i), h_i = M_i / n (leave-one-out log-det steps)"
        desc[f"{key}_loo_var"] = "variance over rows of log(1 - h_i) (the jackknife variance, up to n - 1)"
        desc[f"{key}_loo_pair_var"] = ("variance over row pairs (i, i+k), k = 1..4, of the leave-two-out interaction "
                                        "log(1 - h_ij^2 / ((1 - h_i)(1 - h_j)))")
        desc[f"{key}_loo_pair_mean"] = "mean of that interaction over all row pairs"
        desc[f"{key}_loo_row_var"] = "variance over rows of the row sums r_i = sum_j h_ij^2 / ((1 - h_i)(1 - h_j))"
        desc[f"{key}_loo_row_cov"] = "covariance over rows of log(1 - h_i) and r_i"
        desc[f"{key}_loo_kurtosis"] = "kurtosis over rows of log(1 - h_i)"
        desc[f"{key}_truth"] = "exact log det G of the cell's N-point data set (streamed Gram)"
        desc[f"{key}_ns"] = "the block sizes n of this cell's block_size axis"  # (empty: a user trial, 2026-12-06)
        for f in sp.LOO_FIELDS:  # (they differ between engines there: a user trial, 2026-12-06)
            desc[f"{key}_loo_{f}"] += ("; not used at n = d + 1, where a block less two rows is singular (the "
                                       "jackknife is NaN) and these ill-conditioned values differ between engines")
    folder.save_arrays(arrays, labels, desc)
    folder.save_text("table.md", sp.markdown_table(rows))
    folder.save_text("table.csv", sp.csv_table(rows))
    from collapse_jax.results import pyplot

    plt = pyplot()
    if any(not r.get("exact") for r in rows):  # a sweep of exact rows only (n = N everywhere) has nothing to plot
        for name, fig in (("coverage.png", sp.coverage_figure(rows, cfg.level)), ("error.png", sp.error_figure(rows))):
            folder.save_figure(fig, name)
            plt.close(fig)
    compute_s = float(sum(r.seconds for r in results))
    summary = dict(cells=len(results), wall_seconds_this_call=time.perf_counter() - t0,
                   compute_seconds_all_cells=compute_s, threads=threads, cells_run_this_call=engines, rows=rows)
    folder.finish({k: v for k, v in summary.items() if k != "rows"})
    return summary


def run(args) -> int:
    from collapse_jax import sigma_precision as sp

    cfg = config_from_args(args)
    if args.threads is not None:
        from collapse_jax import _checks

        if _checks.positive_int("threads", args.threads) > 4096:  # (10**30 was taken, a folder made; a user trial)
            raise ValueError(f"threads must be an integer from 1 to 4096, got {args.threads}")
    # checked before a run folder is made (run_sweep reads it again)
    shape = load_embeddings(cfg.embeddings).shape if cfg.embeddings else None
    cells(cfg)  # a sweep without cells and one too large for memory are refused before a run folder is made
    check_memory(cfg, args.threads, shape)
    folder = RunFolder.create("sigma-precision", args.out)
    summary = run_sweep(cfg, folder, args.threads)
    print(sp.markdown_table(summary["rows"]))
    # (the engine was only in manifest.json; a user trial on a CPU without AMX, 2026-12-06)
    print(f"wrote {folder.path} ({summary['cells']} cells, {summary['wall_seconds_this_call']:.1f} s this call, "
          f"{summary['compute_seconds_all_cells']:.1f} s cell compute in total; "
          f"{sp.resolve_engine(cfg.engine)} engine)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m collapse_jax.sigma_cli COMMAND ...``: the same as ``collapse-jax COMMAND ...``."""
    from collapse_jax.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
