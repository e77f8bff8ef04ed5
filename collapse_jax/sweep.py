"""The sweep runner: every cell of a parameter grid through its simulator, into one labelled zarr dataset written
cell by cell, resumable after a kill, shared between processes and hosts.

``run(spec, out)`` (or ``collapse-jax sweep SPEC.toml --out DIR``) writes ``DIR/dataset.zarr``, an xarray dataset
with one dimension per grid axis, then ``statistic`` (mean, sem, quantiles) or ``replicate``, then ``step``:

- ``{output}_stats`` (axes..., statistic, step) for real-valued records (loss, ``||D||_F``), ``{output}_fraction``
  (axes..., step) for flags (collapsed, lost a component), ``{output}`` (axes..., replicate, step) with
  ``keep = "replicates"``;
- ``{output}_theory`` (axes..., step): the closed form where the model has one;
- per-cell numbers for phase diagrams (``relative_loss``, ``fraction_collapsed``, ...), (axes...);
- ``cell_done`` (axes...): written last for each cell.

How it runs:

- cells that share static shapes (the model's ``group_key``) run in one call of the simulator, their varying values
  stacked on a grid axis: one compilation per group, every cell with the replicate keys ``fold_in(key(seed), r)``, so
  a cell draws what the simulator run alone with the same seed draws, whatever the chunking (docs/sweeps.md: bit
  for bit, or for some models all but the last bits);
- groups are cut into chunks of cells whose records fit the memory budget on the host and whose work stays under
  :data:`CHUNK_REPLICATE_STEPS` (``cells_per_chunk`` to set it; the simulator cuts each call to the device's
  memory); each finished cell is written to the store (every zarr chunk file is written to a temporary name and
  renamed), then marked in ``cell_done``. ``resume=True`` runs only the cells not marked: a kill at any moment loses
  at most the chunk in flight, and the resumed dataset equals an uninterrupted one;
- ``out`` must be new or empty (process 0 writes its ``config.json``, as every command's run folder), or hold this
  same sweep (continued with ``resume``); everything that can be checked is checked before anything is written;
- with several processes (``process_index``/``process_count``, e.g. from ``jax.distributed``), process p takes its
  share of every group's cells and writes them into the same store; process 0 creates the store, the others wait
  for it: the store is the only coordination. Each process runs on its local devices; whichever finishes the last
  cell sees every cell done (``SweepReport.cells_done``) and finishes the folder (the command's plots and
  ``manifest.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import shutil
import time
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from collapse_jax import _checks, sweep_models
from collapse_jax.progress import bar
from collapse_jax.results import RunFolder, _unlock_folder, config_differences, lock_folder, saved_before_stopping
from collapse_jax.sweep_models import SweepModel
from collapse_jax.sweep_spec import SpecError, SweepSpec, statistic_names

STORE = "dataset.zarr"
_WAIT_SECONDS = 600.0


def _zarr():
    try:
        import zarr
    except ImportError as exc:  # a declared dependency; say so plainly if an environment lacks it
        raise ImportError("the sweep runner writes zarr datasets: `python3 -m pip install zarr`") from exc
    return zarr


def summarize(records: np.ndarray, kind: str, quantiles) -> np.ndarray:
    """Summary over the replicate axis (axis 0) of one cell's records (replicate, step): (statistic, step) for
    real values (NaN, e.g. a failed fit, left out), (step,) fractions for flags; float64."""
    if kind == "flag":
        return records.mean(axis=0, dtype=np.float64)
    x = np.asarray(records)
    R = x.shape[0]
    if not np.isnan(x).any():  # the common case, without NumPy's slower NaN-aware reductions
        mean = x.mean(axis=0, dtype=np.float64)
        sem = x.std(axis=0, ddof=1, dtype=np.float64) / np.sqrt(R) if R > 1 else np.full_like(mean, np.nan)
        qs = np.quantile(x, quantiles, axis=0)
    else:
        with _checks.ignoring_warnings(RuntimeWarning):  # all-NaN steps stay NaN
            x = x.astype(np.float64)
            mean = np.nanmean(x, axis=0)
            sem = np.nanstd(x, axis=0, ddof=1) / np.sqrt(np.sum(~np.isnan(x), axis=0)) if R > 1 \
                else np.full_like(mean, np.nan)
            qs = np.nanquantile(x, quantiles, axis=0)
    return np.concatenate([mean[None], sem[None], np.asarray(qs, np.float64).reshape(len(quantiles), -1)])


@dataclasses.dataclass
class SweepReport:
    """What a call of :func:`run` did."""

    path: Path
    cells: int
    cells_run: int
    cells_done: int
    seconds: float
    compilations: int
    peak_host_bytes: int
    peak_device_bytes: int | None
    replicate_steps: int

    def describe(self) -> str:
        device = "" if self.peak_device_bytes is None else f", device peak {self.peak_device_bytes / 2**20:.0f} MiB"
        rate = self.replicate_steps / self.seconds if self.seconds > 0 else math.nan
        return (f"{self.cells_run} cells run in {self.seconds:.1f} s ({rate:.3g} replicate-steps/s); "
                f"{self.cells_done}/{self.cells} cells done; {self.compilations} XLA compilations; "
                f"host peak {self.peak_host_bytes / 2**20:.0f} MiB{device}")


class _CompileCounter:
    """Counts XLA backend compilations while active (``jax.monitoring`` events)."""

    count = 0
    active = False
    registered = False

    def __enter__(self):
        import jax

        if not _CompileCounter.registered:
            def listen(name, *_, **__):
                if _CompileCounter.active and name == "/jax/core/compile/backend_compile_duration":
                    _CompileCounter.count += 1
            jax.monitoring.register_event_duration_secs_listener(listen)
            _CompileCounter.registered = True
        self.start = _CompileCounter.count
        _CompileCounter.active = True
        return self

    def __exit__(self, *exc):
        _CompileCounter.active = False

    @property
    def compilations(self) -> int:
        return _CompileCounter.count - self.start


BLOCK_CELLS = 32
_BLOCK_BYTES = 2**28
# Without cells_per_chunk, a chunk also holds at most about this many replicate-steps (seconds of work for the
# fastest simulators, under a minute for the slowest per step), so that the bar moves and a kill loses little.
CHUNK_REPLICATE_STEPS = 2 * 10**7
# Units of SweepModel.work a second, roughly (the Gaussian's native kernel on 2 cores: 1.4e7), and the estimated
# seconds of one cell's call above which the sweep warns before it runs: no signal stops a call before it returns.
WORK_PER_SECOND = 10**7
LONG_CALL_SECONDS = 60


def block_size(spec: SweepSpec, model: SweepModel) -> int:
    """Cells per block: a block (consecutive cells along the last grid axis) is the unit of writing, resuming and
    sharing between processes, and one zarr chunk of every variable. It depends only on the specification: at most
    32 cells, and at most 256 MiB of records."""
    if not spec.axes:
        return 1
    steps = max(model.num_steps(model.complete(spec.cell(i))) for i in (0, spec.num_cells - 1))
    per_cell = spec.replicates * steps * 8 * len(model.outputs)
    return max(1, min(spec.axes[-1].size, BLOCK_CELLS, _BLOCK_BYTES // per_cell))


def blocks(spec: SweepSpec, block: int) -> list[range]:
    """The grid's cells (row-major indices) cut into blocks of ``block`` consecutive cells of one row of the last
    axis."""
    if not spec.axes:
        return [range(0, 1)]
    last = spec.axes[-1].size
    return [range(row * last + lo, row * last + min(lo + block, last))
            for row in range(spec.num_cells // last) for lo in range(0, last, block)]


def share(items: list, process_index: int, process_count: int) -> list:
    """Process ``process_index``'s contiguous share of ``items``."""
    n = len(items)
    return items[n * process_index // process_count: n * (process_index + 1) // process_count]


def _layout(spec: SweepSpec, model: SweepModel):
    """Names, dimensions, dtypes, chunk shapes and descriptions of every variable of the dataset."""
    axes = [a.name for a in spec.axes]
    B = block_size(spec, model)
    cell_chunk = [1] * (len(axes) - 1) + [B] if axes else []
    cells = [model.complete(spec.cell(i)) for i in range(spec.num_cells)]
    steps = max(model.num_steps(c) for c in cells)
    R = spec.replicates
    stats = statistic_names(spec.quantiles)
    has_theory = set().union(*(model.theory_outputs(c) for c in cells))
    out = {}
    for name, o in model.outputs.items():
        if o.kind == "real":
            out[f"{name}_stats"] = ((*axes, "statistic", "step"), "f8", (*cell_chunk, len(stats), steps),
                                    f"{o.description}: mean, standard error and quantiles over replicates")
        else:
            out[f"{name}_fraction"] = ((*axes, "step"), "f8", (*cell_chunk, steps),
                                       f"fraction of replicates where {o.description}")
        if spec.keep == "replicates":
            per_chunk = max(1, min(R, 2**24 // (steps * B)))
            out[name] = ((*axes, "replicate", "step"), "f4" if o.kind == "real" else "bool",
                         (*cell_chunk, per_chunk, steps), o.description)
        if name in has_theory:
            out[f"{name}_theory"] = ((*axes, "step"), "f8", (*cell_chunk, steps),
                                     f"closed-form expectation: {o.description}")
    for name, text in model.scalar_descriptions.items():
        out[name] = (tuple(axes), "f8", tuple(cell_chunk), text)
    out["cell_done"] = (tuple(axes), "bool", tuple(cell_chunk), "the cell's records and summaries are written")
    return out, steps, stats


def _coordinate(root, name: str, values, dim: str) -> None:
    """A coordinate array; text labels in zarr's variable-length ``string`` type, which format 3 specifies (NumPy's
    fixed-length ``<U`` strings map to ``fixed_length_utf32``, which it does not: zarr warns on every read that other
    zarr libraries may not read it)."""
    values = np.asarray(values)
    if values.dtype.kind != "U":
        root.create_array(name, data=values, dimension_names=[dim])
        return
    arr = root.create_array(name, shape=values.shape, dtype=_zarr().dtype.VariableLengthUTF8(), dimension_names=[dim])
    arr[...] = values


def _create(path: Path, spec: SweepSpec, model: SweepModel, kernels: str) -> None:
    """Create the empty store at ``path`` (built under a temporary name, renamed into place; removed if building it
    fails). Under the folder's lock: a store half built by a killed run (SIGKILL raises nothing to remove it by) is
    removed first (a user trial found one kept for good, and listed in manifest.json)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        _build(tmp, spec, model, kernels)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build(tmp: Path, spec: SweepSpec, model: SweepModel, kernels: str) -> None:
    zarr = _zarr()
    from collapse_jax.results import environment_info

    layout, steps, stats = _layout(spec, model)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    root.attrs.update({"sweep": json.dumps(spec.to_dict(), sort_keys=True), "simulator": spec.simulator,
                       "environment": json.dumps(environment_info(), sort_keys=True, default=str),
                       "description": spec.description, "precision": _precision(), "backend": kernels,
                       "defaults": json.dumps(_defaults(model), sort_keys=True)})
    coordinates = []
    for axis in spec.axes:
        for param, values in axis.values.items():
            _coordinate(root, param, values, axis.name)
            if param != axis.name:
                coordinates.append(param)
        if axis.name not in axis.values:
            root.create_array(axis.name, data=np.arange(axis.size), dimension_names=[axis.name])
    root.create_array("step", data=np.arange(steps), dimension_names=["step"])
    _coordinate(root, "statistic", stats, "statistic")
    if spec.keep == "replicates":
        root.create_array("replicate", data=np.arange(spec.replicates), dimension_names=["replicate"])
    shape_of = {a.name: a.size for a in spec.axes} | {"statistic": len(stats), "step": steps,
                                                      "replicate": spec.replicates}
    for name, (dims, dtype, chunks, text) in layout.items():
        attrs = {"description": text}
        if coordinates:
            attrs["coordinates"] = " ".join(coordinates)
        fill = False if dtype == "bool" else np.nan
        root.create_array(name, shape=tuple(shape_of[d] for d in dims), chunks=chunks, dtype=dtype,
                          fill_value=fill, dimension_names=list(dims), attributes=attrs)


class SweepExists(ValueError):
    """``out`` already holds this very sweep and ``resume`` was not asked for (``how``: what continues it)."""

    def __init__(self, out: Path, done: int, cells: int, how: str = "resume=True"):
        self.out, self.done, self.cells = out, done, cells
        super().__init__(f"out: {str(out)!r} already holds this sweep ({done}/{cells} cells done); continue it with "
                         f"{how}, or choose another folder")


def _open(path: Path, spec: SweepSpec, kernels: str, *, create: bool, resume: bool):
    """The store at ``path``: process 0 (``create``) checks one already there (the same sweep, ``resume``) or
    creates it in a new or empty folder (whose ``config.json`` it writes, as every command's run folder); the
    others wait for it."""
    zarr = _zarr()
    if create:
        if path.exists():
            root = _open_store(zarr, path)
            _check_store(root, path, spec, kernels)
            if not resume:  # another run holding the folder is said first ("continue it with --resume" was then
                if lock_folder(path.parent):  # refused as "in use by another run"; a user trial, 2026-12-06)
                    _unlock_folder(path.parent)
                raise SweepExists(path.parent, int(np.asarray(root["cell_done"][...]).sum()), spec.num_cells)
            # a second single-process resume, or a fresh start racing with one, computed the same cells and
            # overwrote them (a user trial, 2026-12-05): the folder's lock, as a new sweep takes in RunFolder.start
            lock_folder(path.parent)
            _remove_partial_chunks(path)
            return root
        given = {k: v for k, v in json.loads(json.dumps(spec.to_dict())).items() if k not in _HOW_TO_RUN}
        config = _as_stored(path.parent, given)
        try:  # refuses a folder with other files, or with another sweep's config.json
            path.parent.mkdir(parents=True, exist_ok=True)
            folder = RunFolder(path.parent)
            wrote_config = not folder.start(config)
            try:
                _create(path, spec, sweep_models.get(spec.simulator), kernels)
            except BaseException:  # nothing of this sweep is left: a corrected specification can use the folder
                if wrote_config:
                    folder.abandon()
                raise
            if config is not given:  # nothing ran under the killed run's record (its backend as written may
                # differ): the store now holds this specification, and config.json says so too (a review)
                folder.write_config(given)
        except OSError as exc:
            raise ValueError(f"out: cannot write {str(path.parent)!r}: {exc.strerror or exc}") from None
    else:  # another process creates it
        deadline = time.monotonic() + _WAIT_SECONDS
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no store appeared at {path} within {_WAIT_SECONDS:.0f} s (process 0 creates it)")
            time.sleep(0.2)
    root = _open_store(zarr, path)
    _check_store(root, path, spec, kernels)
    return root


def _as_stored(folder: Path, config: dict) -> dict:
    """The ``config.json`` already in ``folder`` where it is the same sweep as ``config`` by
    :func:`spec_differences` (a parameter set to its default is the sweep that leaves it out), else ``config``: a
    run killed while it built its store leaves ``config.json`` alone, and its resume with a default written out was
    refused as "another configuration" by the run folder's strict comparison, where a resume of a built store takes
    it (an audit, 2026-12-07)."""
    try:
        stored = json.loads((folder / "config.json").read_text())["config"]  # (RunFolder.start's record)
        same = isinstance(stored, dict) and not spec_differences(stored, config, by_kernels=True)
        return stored if same else config  # (the backend as another spelling of the same kernels: _check_store)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, or not a sweep's: start() decides
        return config


PARTIAL_AGE_SECONDS = 60.0


def _remove_partial_chunks(path: Path) -> None:
    """Remove zarr's temporary chunk files (``<chunk>.<uuid>.partial``, written and then renamed into place) that a
    killed run left in the store: a SIGKILL between the write and the rename kept one for good, and the manifest
    listed it (an audit, 2026-12-07). Only files older than :data:`PARTIAL_AGE_SECONDS`, so that another process of
    a multi-process sweep, writing as this one resumes, keeps its own."""
    now = time.time()
    for partial in path.rglob("*.partial"):
        try:
            if now - partial.stat().st_mtime > PARTIAL_AGE_SECONDS:
                partial.unlink()
        except OSError:  # (gone meanwhile: renamed into place by its writer)
            pass


def _open_store(zarr, path: Path):
    """The zarr group at ``path``, or a ValueError when it is none (an empty folder of that name)."""
    try:
        return zarr.open_group(str(path), mode="r+")
    except (OSError, ValueError, KeyError, TypeError, zarr.errors.BaseZarrError) as exc:
        raise ValueError(f"out: {str(path)!r} is not a sweep's store ({type(exc).__name__}: {exc}); choose a new "
                         "folder") from None


def _check_store(root, path: Path, spec: SweepSpec, kernels: str) -> None:
    """Refuse a store of another sweep, precision or kernels (naming what differs)."""
    try:
        stored = json.loads(root.attrs["sweep"])
        stored["axes"], root.attrs["precision"], root["cell_done"]
    except (KeyError, TypeError, ValueError):  # a zarr group of another program, or a damaged one
        raise ValueError(f"out: {str(path)!r} is not a collapse-jax sweep's store (no sweep specification, precision "
                         "or cell_done in it); choose a new folder") from None
    recorded = root.attrs.get("backend")  # the kernels the cells ran (stores written before 2026-12-02 have none)
    differ = spec_differences(stored, spec.to_dict(),
                              json.loads(root.attrs["defaults"]) if "defaults" in root.attrs else None,
                              by_kernels=recorded is not None)
    if differ:
        raise ValueError(f"out: the store at {path} holds another sweep (its specification differs in "
                         f"{'; '.join(differ)}); use a new folder")
    if root.attrs["precision"] != _precision():
        raise ValueError(f"out: the sweep at {path} was computed in {root.attrs['precision']}, this process computes "
                         f"in {_precision()}; resume it with the same precision (--x64 or not)")
    if recorded is not None and recorded != kernels:
        raise ValueError(f"out: the sweep at {path} was computed with the {recorded} kernels (backend = "
                         f"{stored.get('backend', 'auto')!r}), this process would use {kernels} "
                         f"({_backend_here(spec.backend)}): their draws differ, so the cells would not be one sweep; "
                         "resume it where the same kernels run (the backend of the specification and of --backend, "
                         "COLLAPSE_JAX_NATIVE, the kind of device)")


def _backend_here(backend: str) -> str:
    """How this process resolves the specification's ``backend``, for a message: ``--backend`` where it sets what
    ``auto`` means, and ``COLLAPSE_JAX_NATIVE`` where it is set."""
    from collapse_jax import _native

    said = [f"backend = {backend!r}"]
    if backend == "auto" and _native.preferred_backend() != "auto":
        said.append(f"--backend {_native.preferred_backend()}")
    if "COLLAPSE_JAX_NATIVE" in os.environ:
        said.append(f"COLLAPSE_JAX_NATIVE={os.environ['COLLAPSE_JAX_NATIVE']}")
    return ", ".join(said)


def _defaults(model: SweepModel) -> dict:
    """The model's parameter defaults, JSON-ready: what the cells of a sweep that leaves a parameter out ran with."""
    return json.loads(json.dumps({k: f.default for k, f in model.fields.items()}, default=str))


# Specification fields that change how a sweep runs, not what it computes: a resume may change them.
_HOW_TO_RUN = ("cells_per_chunk", "memory_budget", "description")


def spec_differences(stored: dict, given: dict, stored_defaults: dict | None = None, *,
                     by_kernels: bool = False) -> list[str]:
    """What differs between two specifications (``SweepSpec.to_dict``; the fields of ``_HOW_TO_RUN`` left out):
    fields as ``field: old -> new``, axes by name, parameter and value (``axis a: a[1] 0.5 -> 0.25``).

    ``by_kernels``: the ``backend`` field is left out too, its kernels compared instead (the store's ``backend``
    attribute, by the caller): ``auto`` that resolved to the native kernels runs what ``native`` runs, and the
    resume of one with the other was refused as "another sweep" (2026-12-07). Only where the caller compares the
    kernels itself, or where nothing ran under the stored specification; by default (and for a store that recorded
    no kernels, written before 2026-12-02) the backend as written is compared.

    Parameters that no axis varies are compared by the values the cells run with: a parameter left out runs at
    its default (``stored_defaults`` for the stored sweep, as its store recorded them; else, and for ``given``, the
    model's now). So a parameter set to its default is the sweep that leaves it out ("fixed.alpha0: not set -> 0.5"
    refused the resume of the same computation), and a default edited in a model of one's own between a run and its
    resume is a difference (it mixed two models in one dataset, silently; user trials, 2026-12-05)."""
    stored, given = (json.loads(json.dumps(d, sort_keys=True)) for d in (stored, given))
    old, new = ({a["name"]: a["values"] for a in d.pop("axes")} for d in (stored, given))
    if stored.get("simulator") == given.get("simulator") and stored.get("simulator") in sweep_models.MODELS:
        now = _defaults(sweep_models.get(stored["simulator"]))
        varied = {p for axes in (old, new) for values in axes.values() for p in values}
        for d, defaults in ((stored, stored_defaults or now), (given, now)):
            d["fixed"] = {k: v for k, v in {**defaults, **d.get("fixed", {})}.items() if k not in varied}
    skip = (*_HOW_TO_RUN, "backend") if by_kernels else _HOW_TO_RUN
    out = config_differences({k: v for k, v in stored.items() if k not in skip},
                             {k: v for k, v in given.items() if k not in skip})
    if list(old) != list(new):
        out.append(f"axes: {list(old)} -> {list(new)}")
    for name in [a for a in old if a in new]:
        for param in sorted(old[name].keys() | new[name].keys()):
            a, b = old[name].get(param, []), new[name].get(param, [])
            at = [i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]]
            if not at:
                continue
            counts = f"{len(a)} values -> {len(b)}: " if len(a) != len(b) else ""
            shown = ", ".join(f"{param}[{i}] {a[i] if i < len(a) else '-'} -> {b[i] if i < len(b) else '-'}"
                              for i in at[:3])
            out.append(f"axis {name}: {counts}{shown}{f' and {len(at) - 3} more' if len(at) > 3 else ''}")
    return out


def _probe_cells(spec: SweepSpec, model: SweepModel) -> list[dict]:
    """The first and last cells and the first cell with each value of each axis in turn (completed): enough to find
    the longest run and the largest replicate where those depend on one axis at a time (e.g. ``steps = [3, 8, 5]``,
    whose longest run is neither the first nor the last cell), without visiting every cell."""
    first = spec.cell(0)
    cells = [first, spec.cell(spec.num_cells - 1)] + [{**first, **{k: v[i] for k, v in axis.values.items()}}
                                                      for axis in spec.axes for i in range(axis.size)]
    return [model.complete(c) for c in cells]


def _max_work(spec: SweepSpec, model: SweepModel, every: int = 20_000) -> float:
    """The costliest replicate's :meth:`SweepModel.work` over the grid: every cell up to ``every`` cells (a cost may
    grow with several axes at once, regime x n0 x steps, which the probe cells, one axis at a time, missed by a
    factor of 78; a review, 2026-12-06), beyond that the probes and ``every`` cells spread over the grid."""
    if spec.num_cells <= every:
        cells = (model.complete(spec.cell(i)) for i in range(spec.num_cells))
    else:
        spread = np.linspace(0, spec.num_cells - 1, every).astype(int)
        cells = [*_probe_cells(spec, model), *(model.complete(spec.cell(int(i))) for i in spread)]
    return max(model.work(c) for c in cells)


def _warn_if_one_call_is_long(spec: SweepSpec, work: float) -> None:
    """A warning, before anything runs, where the costliest call (``work`` a replicate, every replicate of its cells
    in one call: a chunk holds whole cells) would run longer than :data:`LONG_CALL_SECONDS`: a multinomial cell of
    K = 10^6 ran 12 minutes past a SIGTERM without a word (a user trial, 2026-12-07). Since then a native call is
    waited for so that a signal stops it (:func:`collapse_jax.driver.wait_ready`), but the warning keeps its point:
    the call's cells are written only as it ends."""
    seconds = spec.replicates * work / WORK_PER_SECOND
    if seconds <= LONG_CALL_SECONDS:
        return
    took = (f"{seconds / 3600:.3g} hours" if seconds >= 3600 else f"{seconds / 60:.3g} minutes")
    warnings.warn(f"the costliest call is about {spec.replicates * work:.2g} steps' work ({spec.replicates:,} "
                  f"replicates of each of its cells), roughly {took} at {WORK_PER_SECOND:,} a second, whose cells are "
                  "written only as it ends (a first Ctrl-C waits for it, SIGTERM loses it): fewer replicates, steps, "
                  "cells per chunk or (multinomial) categories make it shorter", stacklevel=3)


def _cell_bytes(spec: SweepSpec, model: SweepModel) -> int:
    """Host bytes of one cell's records in a chunk (its replicates' records and their copies)."""
    each = max(model.replicate_bytes(c) for c in _probe_cells(spec, model))
    return spec.replicates * each * 4


def kernels(spec: SweepSpec) -> str:
    """The kernels the sweep's cells run with in this process, by the simulator's own resolver (the specification's
    backend; ``auto`` as the device and ``--backend`` make it): one name, or several joined by ``+`` where groups of
    cells run different ones (a multinomial grid mixing regimes on a GPU recorded ``jax+pallas`` until 2026-12-04,
    when ``auto`` there chose the Pallas kernel for two regimes). A ValueError naming the backend where some cells
    cannot run with it. The kernels depend on the backend and on at most one parameter (the regime), so one cell per
    value of each axis is asked."""
    model = sweep_models.get(spec.simulator)
    first = spec.cell(0)
    cells = [first] + [{**first, **{k: v[i] for k, v in axis.values.items()}}
                       for axis in spec.axes for i in range(axis.size)]
    try:
        return "+".join(sorted({model.kernels(model.complete(cell), spec.backend) for cell in cells}))
    except ValueError as exc:  # name the field where the resolver's message does not
        if str(exc).startswith("backend"):
            raise
        raise ValueError(f"backend: {exc}") from None


def check_plan(spec: SweepSpec, *, memory_budget: int | None = None) -> str:
    """What can only be checked in the process that runs the sweep, before anything is written: every cell runs
    with the backend here and within the precision here (``SweepModel.check_precision``), and ``memory_budget`` (or
    the specification's; else the memory available) holds one cell's records. Returns :func:`kernels`. (An audit
    found the float32 count limits and an oversized cell refused only after the store was written, so that the
    corrected command was refused in the same folder as "another sweep".)"""
    model = sweep_models.get(spec.simulator)
    given = memory_budget is not None
    budget, need = memory_budget if given else spec.memory_budget, _cell_bytes(spec, model)
    if budget is not None:
        if _checks.positive_int("memory_budget", budget) < need:
            message = f"must be >= {need} bytes (one cell's records: {spec.replicates} replicates), got {budget}"
            if given:
                raise ValueError(f"memory_budget {message}")
            # as the file spells it: the command line turned it into --memory-budget, a flag never typed
            raise SpecError(f"the specification's memory_budget {message}")
    else:
        available = _checks.available_memory_bytes()
        if available and need > 0.8 * available:
            raise ValueError(f"replicates: one cell's records ({spec.replicates} replicates) need about "
                             f"{_checks.bytes_text(need)} on the host but {_checks.bytes_text(available)} is "
                             f"available; use at most {int(0.8 * available * spec.replicates / need)} replicates")
    found = kernels(spec)
    for cell in _probe_cells(spec, model)[:1]:  # (a list gave "unhashable type" after the store was written)
        key = model.group_key(cell, spec.backend)
        try:
            hash(key)
        except TypeError:
            raise ValueError(f"sweep model {model.name!r}: group_key must return a hashable value (a tuple, not a "
                             f"list or dict), got {key!r}") from None
    for cell in _probe_cells(spec, model):  # (closed forms are cheap; the runner checks every cell's as it writes)
        curves = model.theory(cell)
        if isinstance(curves, Mapping):
            _check_theory_names(model, cell, curves)
    if type(model).check_precision is not SweepModel.check_precision:  # (every cell: ~22 us each)
        for index in range(spec.num_cells):
            cell = spec.cell(index)
            try:
                model.check_precision(model.complete(cell), spec.backend)
            except ValueError as exc:  # which cell: its grid values (a user trial: n0 and n_growth were not named)
                shown = {k: v for k, v in cell.items() if k not in spec.fixed}
                raise ValueError(f"{exc}{f' (in the cell {shown})' if shown else ''}") from None
    return found


def check_disk(spec: SweepSpec, out) -> None:
    """A ValueError unless the disk under ``out`` holds a ``keep = "replicates"`` store's records, uncompressed (its
    compressor gains little on simulated floats): a sweep of about 160 GB on 66 GB free started, its bar at 21
    hours (a user trial, 2026-12-06). Summaries alone are small and not checked, and so is a store that exists (a
    resumed sweep). The command line checks it before it makes the run folder (an empty one was left)."""
    out = Path(out)
    if spec.keep != "replicates" or (out / STORE).exists():
        return
    model = sweep_models.get(spec.simulator)
    steps = max(model.num_steps(c) for c in _probe_cells(spec, model))
    per_value = sum(4 if o.kind == "real" else 1 for o in model.outputs.values())
    need = spec.num_cells * spec.replicates * steps * per_value
    place, free = _checks.free_disk_bytes(out)
    if need > 0.95 * free:
        raise ValueError(f"keep = \"replicates\": the store's records need about {_checks.bytes_text(need)} "
                         f"({spec.num_cells:,} cells x {spec.replicates:,} replicates x {steps} steps) but "
                         f"{_checks.bytes_text(free)} is free under {str(place)!r}; keep summaries only, or lower "
                         "replicates or the grid")


def _precision() -> str:
    import jax

    return "float64" if jax.config.jax_enable_x64 else "float32"


def _pad_steps(x: np.ndarray, steps: int, fill) -> np.ndarray:
    pad = steps - x.shape[-1]
    return x if pad == 0 else np.concatenate([x, np.full((*x.shape[:-1], pad), fill, x.dtype)], axis=-1)


def _checked_records(model: SweepModel, cells: list[dict], replicates: int, records: Any) -> dict[str, np.ndarray]:
    """``records`` (what ``model.run(cells, replicates, ...)`` returned) as NumPy arrays, or a ValueError naming the
    model and what is wrong: one array per declared output, shaped (cells, replicates, steps) with steps the most
    ``model.num_steps`` of the cells, numbers (real) or booleans (flag). A model of one's own that returned one step
    or one replicate short was padded with NaN or summarised over fewer replicates, silently, and other mistakes
    failed deep in NumPy or zarr (a user trial, 2026-12-05)."""
    where = f"sweep model {model.name!r}: run"
    if not isinstance(records, Mapping):
        raise ValueError(f"{where} must return a dict of output name -> array (cells, replicates, steps), got "
                         f"{type(records).__name__}")
    missing, extra = sorted(set(model.outputs) - set(records)), sorted(set(records) - set(model.outputs))
    if missing or extra:
        raise ValueError(f"{where} returned outputs {sorted(records)}; the model declares {sorted(model.outputs)}"
                         f"{f' (missing {missing})' if missing else ''}{f' (undeclared {extra})' if extra else ''}")
    want = (len(cells), replicates, max(model.num_steps(c) for c in cells))
    out = {}
    for name, values in records.items():
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: output {name!r} is not an array ({exc})") from None
        if arr.shape != want:
            raise ValueError(f"{where}: output {name!r} has shape {arr.shape}, expected (cells, replicates, steps) = "
                             f"{want} (steps: the model's num_steps, e.g. T + 1 records for t = 0..T)")
        kind = model.outputs[name].kind
        if not (arr.dtype == bool or (kind == "real" and np.issubdtype(arr.dtype, np.number))):
            what = "numbers" if kind == "real" else "booleans"
            raise ValueError(f"{where}: output {name!r} ({kind}) must hold {what}, got dtype {arr.dtype}")
        out[name] = arr
    return out


def _write_block(arrays: dict, cells_range: range, spec: SweepSpec, model: SweepModel, cells: list[dict],
                 records: dict[str, np.ndarray]) -> None:
    """One block's raw records, summaries, theory and per-cell numbers (``records``: name -> one (replicate, step)
    array per cell; cells of one block may run different numbers of steps, e.g. a grid axis ``steps``: each is
    padded to the store's steps); ``cell_done`` last."""
    first = np.unravel_index(cells_range.start, spec.shape)
    where = (*(int(i) for i in first[:-1]), slice(int(first[-1]), int(first[-1]) + len(cells_range)))
    steps = arrays["step"].shape[0]
    names = statistic_names(spec.quantiles)
    summaries = [{"replicates": spec.replicates} for _ in cells]
    for name, o in model.outputs.items():
        rec = records[name]
        if spec.keep == "replicates":
            fill = np.nan if o.kind == "real" else False
            arrays[name][where] = np.stack([_pad_steps(r.astype(np.float32) if o.kind == "real" else r.astype(bool),
                                                       steps, fill) for r in rec])
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # NumPy's reductions release the GIL
            s = list(pool.map(lambda r, kind=o.kind: summarize(r, kind, spec.quantiles), rec))
        for summary, row in zip(summaries, s):
            if o.kind == "real":
                summary.update({f"{name}_{stat}": values for stat, values in zip(names, row)})
            else:
                summary[f"{name}_fraction"] = row
        arrays[f"{name}_stats" if o.kind == "real" else f"{name}_fraction"][where] = np.stack(
            [_pad_steps(row, steps, np.nan) for row in s])
    theory: dict[str, list] = {}
    for cell in cells:
        curves = model.theory(cell)
        if not isinstance(curves, Mapping) or set(curves) - set(model.outputs):
            got = sorted(curves) if isinstance(curves, Mapping) else type(curves).__name__
            raise ValueError(f"sweep model {model.name!r}: theory must return a dict whose names are outputs "
                             f"({sorted(model.outputs)}), got {got}")
        _check_theory_names(model, cell, curves)
        for name in model.outputs:
            if f"{name}_theory" in arrays:
                curve = np.asarray(curves[name], np.float64) if name in curves else np.full(1, np.nan)
                if name in curves and curve.shape != (model.num_steps(cell),):
                    raise ValueError(f"sweep model {model.name!r}: theory[{name!r}] has shape {curve.shape}, "
                                     f"expected ({model.num_steps(cell)},), one value per step")
                theory.setdefault(name, []).append(_pad_steps(curve, steps, np.nan))
    for name, curves in theory.items():
        arrays[f"{name}_theory"][where] = np.stack(curves)
    scalars = [model.scalars(cell, summary) for cell, summary in zip(cells, summaries)]
    for sc in scalars:
        if not isinstance(sc, Mapping) or set(sc) != set(model.scalar_descriptions) \
                or any(np.ndim(v) for v in sc.values()):
            raise ValueError(f"sweep model {model.name!r}: scalars must return one number for each of "
                             f"scalar_descriptions ({sorted(model.scalar_descriptions)}), got {sc!r}")
    for name in model.scalar_descriptions:
        arrays[name][where] = np.asarray([sc[name] for sc in scalars], np.float64)
    arrays["cell_done"][where] = True


def _check_theory_names(model: SweepModel, cell: dict, curves) -> None:
    """A ValueError unless :meth:`SweepModel.theory` gave ``cell`` exactly the names ``theory_outputs(cell)`` says:
    a model whose theory covered one of its two outputs, keeping the default ``theory_outputs`` (every output), got
    an all-NaN theory variable for the other without a word (noticed in a user trial, 2026-12-07)."""
    said = set(model.theory_outputs(cell))
    if set(curves) != said:
        missing = sorted(said - set(curves))
        hint = (f"; override theory_outputs(cell) to return only the names theory gives (it says {missing} too)"
                if missing and not set(curves) - said else "")
        raise ValueError(f"sweep model {model.name!r}: theory gave {sorted(curves)} for a cell whose "
                         f"theory_outputs are {sorted(said)}; they must agree{hint}")


def cells_done(out: str | Path) -> np.ndarray:
    """The ``cell_done`` flags of the sweep in ``out``, flattened (row-major over the axes)."""
    return np.asarray(_zarr().open_group(str(Path(out) / STORE), mode="r")["cell_done"][...]).reshape(-1)


def _calls(model: SweepModel, cells: list[dict], backend: str, size: int):
    """The chunk's cells grouped by ``group_key``, each group in calls of ``size`` cells; when a group takes several
    calls, a shorter last one is padded (repeating its last cell) to a power of two, so a group compiles for few
    shapes. Yields (positions in ``cells``, cells to run)."""
    groups: OrderedDict = OrderedDict()
    for pos, cell in enumerate(cells):
        groups.setdefault(model.group_key(cell, backend), []).append(pos)
    for positions in groups.values():
        for lo in range(0, len(positions), size):
            part = positions[lo: lo + size]
            padded = len(part) if len(positions) <= size else min(size, 1 << (len(part) - 1).bit_length())
            yield part, [cells[p] for p in part] + [cells[part[-1]]] * (padded - len(part))


def run(spec: SweepSpec, out: str | Path, *, resume: bool = False, progress: bool | None = None,
        process_index: int = 0, process_count: int = 1, mesh=None, cells_per_chunk: int | None = None,
        memory_budget: int | None = None, on_chunk: Callable[[list[int]], None] | None = None,
        on_resume: Callable[[int, int], None] | None = None) -> SweepReport:
    """Run (or continue, with ``resume``) the sweep ``spec`` into ``out/dataset.zarr``.

    Args:
      spec: a checked specification (:func:`collapse_jax.sweep_spec.load`).
      out: the sweep's folder.
      resume: continue the sweep already in ``out`` (blocks of cells not marked done run again).
      progress: one bar over this process's cells (None: :func:`collapse_jax.progress.enabled`).
      process_index, process_count: this process takes its contiguous share of the blocks (default: all).
      mesh: devices the replicate axis is sharded over (default: this process's local devices).
      cells_per_chunk, memory_budget: override the specification's. A chunk (whole blocks, at least one) holds about
        ``cells_per_chunk`` cells, or as many cells' records as a quarter of the host's memory (or ``memory_budget``
        bytes, at least one cell's) holds, and no more than :data:`CHUNK_REPLICATE_STEPS` of work (the chunks of even
        sizes); cells of a chunk that share static shapes run in one call, which the simulator cuts into calls that
        fit the device's memory. The draws never depend on them.
      on_chunk: called with the cell indices of each chunk once they are written (tests use it to kill a run).
      on_resume: called with (cells done before, cells) once the store in ``out`` is checked, where earlier runs did
        some (the command line says so).
    """
    import jax

    from collapse_jax.replicates import replicate_mesh

    model = sweep_models.get(spec.simulator)
    process_count = _checks.positive_int("process_count", process_count)
    process_index = _checks.nonnegative_int("process_index", process_index)
    if process_index >= process_count:
        raise ValueError(f"process_index must be < process_count = {process_count}, got {process_index}")
    # (0 is refused, as on the command line: `cells_per_chunk or spec's` took it for "not given"; a user trial)
    cells_per_chunk = spec.cells_per_chunk if cells_per_chunk is None else cells_per_chunk
    if cells_per_chunk is not None:
        cells_per_chunk = _checks.positive_int("cells_per_chunk", cells_per_chunk)
    if memory_budget is not None:
        memory_budget = _checks.positive_int("memory_budget", memory_budget)
    path = Path(out) / STORE
    start = time.perf_counter()
    kernels_here = check_plan(spec, memory_budget=memory_budget)
    if process_index == 0:
        check_disk(spec, out)
    root = _open(path, spec, kernels_here, create=process_index == 0, resume=resume or process_index > 0)
    arrays = {name: root[name] for name in root.array_keys()}
    done = np.asarray(arrays["cell_done"][...]).reshape(-1)
    if on_resume is not None and done.any():
        on_resume(int(done.sum()), spec.num_cells)
    mesh = mesh or replicate_mesh(jax.local_devices())
    mine = share(blocks(spec, block_size(spec, model)), process_index, process_count)
    todo = [b for b in mine if not done[b.start: b.stop].all()]
    work = _max_work(spec, model)
    if todo:  # the cells left (a resumed sweep whose costly cells are done warned of them; a review, 2026-12-07),
        # and a call of cells_per_chunk such cells where that is given
        pending = [i for b in todo for i in b if not done[i]]
        left = (max(model.work(model.complete(spec.cell(i))) for i in pending) if len(pending) <= 20_000 else work)
        _warn_if_one_call_is_long(spec, left * (cells_per_chunk or 1))
    if cells_per_chunk is None:
        budget = memory_budget if memory_budget is not None else spec.memory_budget
        by_memory = (budget or _checks.available_memory_bytes() // 4) // _cell_bytes(spec, model)
        cells_per_chunk = max(1, min(by_memory, int(CHUNK_REPLICATE_STEPS // (spec.replicates * work))))
    per_chunk = max(1, cells_per_chunk // max(len(b) for b in todo)) if todo else 1
    per_chunk = -(-len(todo) // -(-len(todo) // per_chunk)) if todo else 1  # as many chunks, of even sizes (shapes)
    total = sum(len(b) for b in todo)
    before = sum(len(b) for b in mine) - total  # (a resumed sweep's bar counts from the cells done before: it read
    # "0/360" after 1440 of 1800, without a word of the resume; a cluster trial, 2026-12-06)
    ran = replicate_steps = 0
    with _CompileCounter() as counter, bar(before + total, f"sweep {spec.simulator}", "cell", initial=before,
                                           disable=None if progress is None else not progress) as pbar:
        for lo in range(0, len(todo), per_chunk):
            chunk = todo[lo: lo + per_chunk]
            indices = [i for b in chunk for i in b]
            cells = [model.complete(spec.cell(i)) for i in indices]
            records: dict[str, list] = {name: [None] * len(cells) for name in model.outputs}
            # (a Ctrl-C while a compiled or native call runs takes effect when it returns: its cells are written first)
            with saved_before_stopping(f"the {len(indices)} cells running now"):
                for positions, batch in _calls(model, cells, spec.backend, max(cells_per_chunk, len(chunk[0]))):
                    out_batch = _checked_records(model, batch, spec.replicates, model.run(
                        batch, spec.replicates, spec.seed, backend=spec.backend, memory_budget=None,
                        mesh=mesh))  # (memory_budget: the simulator's own, by the device's memory)
                    for name, values in out_batch.items():
                        for g, pos in enumerate(positions):
                            records[name][pos] = values[g]
                pos = 0
                for b in chunk:
                    part = slice(pos, pos + len(b))
                    _write_block(arrays, b, spec, model, cells[part], {k: v[part] for k, v in records.items()})
                    pos += len(b)
                # (inside the block: a Ctrl-C held during the chunk stops the sweep at its end, and the bar then
                # read "0/1800" over the 900 cells it had just saved; a user trial, 2026-12-07)
                replicate_steps += spec.replicates * sum(model.num_steps(c) for c in cells)
                ran += len(indices)
                pbar.update(len(indices))
            if on_chunk is not None:
                on_chunk(indices)
    peak_device = None
    try:
        stats = jax.local_devices()[0].memory_stats()
        peak_device = None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None
    except Exception:  # backends without memory statistics (the CPU)
        peak_device = None
    done = int(cells_done(out).sum())
    if done == spec.num_cells:  # finished: one metadata document, so xarray.open_zarr opens it without a warning
        # (zarr notes that format 3 has no consolidated metadata yet; xarray reads it)
        with _checks.ignoring_warnings(UserWarning, "Consolidated metadata"):
            _zarr().consolidate_metadata(str(path))
    return SweepReport(path=path, cells=spec.num_cells, cells_run=ran, cells_done=done,
                       seconds=time.perf_counter() - start, compilations=counter.compilations,
                       peak_host_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                       peak_device_bytes=peak_device, replicate_steps=replicate_steps)


def open_dataset(out: str | Path):
    """The sweep in ``out`` as an ``xarray.Dataset`` (lazy; unfinished cells are NaN with ``cell_done`` False)."""
    import xarray as xr

    path = Path(out) / STORE
    if not path.exists():
        raise ValueError(f"out: no sweep at {str(path)!r}")
    return xr.open_zarr(str(path), consolidated=False)

