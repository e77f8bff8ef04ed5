"""Sweep specifications: a TOML file naming a simulator, a parameter grid, replicates and a seed, checked field by
field before anything runs (every error names the field and the file's line).

```toml
simulator = "multinomial"        # collapse_jax.sweep_models.MODELS
seed = 0
replicates = 1000                # per cell
keep = "summary"                 # or "replicates": also store every replicate's record
description = "..."              # optional free text (also: quantiles, cells_per_chunk, memory_budget, backend;
                                 # docs/sweeps.md)

[fixed]                          # model parameters held fixed (defaults: `collapse-jax sweep --fields multinomial`)
categories = 50
steps = 200

[grid]                           # axes crossed with one another (cartesian product)
alpha_decay = { linspace = [0.0, 1.5, 30] }
n_growth = [0.0, 0.5, 1.0]

[[zip]]                          # axes that vary together: one more dimension, crossed with the grid
name = "schedule"
alpha0 = [0.2, 0.5]
n0 = [50, 100]
```

Values of an axis: a list, or one of ``{ range = [start, stop, step] }`` (stop excluded, as Python's ``range``),
``{ linspace = [start, stop, num] }``, ``{ geomspace = [start, stop, num] }`` (log-spaced between the two values),
``{ logspace = [start_exponent, stop_exponent, num] }`` (powers of ten). A float ``range`` steps in decimal
(``[0.1, 0.4, 0.1]`` is 0.1, 0.2, 0.3); the other generators' values are rounded to 15 significant digits (0.6, not
linspace's 0.6000000000000001, so that ``ds.sel(alpha=0.6)`` finds it), and to the nearest integer for an integer
parameter (``n0 = { geomspace = [10, 1000, 5] }`` is 10, 32, 100, 316, 1000). An axis's values (a zip's rows) must
be distinct. A zip without ``name`` is the dimension of its parameters joined by ``+`` (``alpha0+n0``), which
``ds.sel`` takes as a dict (``ds.sel({"alpha0+n0": ...})``), not as a keyword: a ``name`` makes ``ds.sel(schedule=...)``
(the default is kept: stores written with it resume under it).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

KEEP = ("summary", "replicates")
_TOP = {"simulator", "seed", "replicates", "keep", "quantiles", "cells_per_chunk", "memory_budget", "backend",
        "fixed", "grid", "zip", "description"}
_GENERATORS = ("range", "linspace", "geomspace", "logspace")
MAX_CELLS = 10**6   # every cell is checked before anything runs (about 25 us each), then simulated
MAX_REPLICATES = 2**32   # replicate r's key is fold_in(key(seed), r) with a 32-bit r
_INTERNAL = ("step", "statistic", "replicate", "cell_done")   # dimensions and variables of every sweep's dataset


def statistic_names(quantiles) -> list[str]:
    """``mean``, ``sem`` (standard error of the mean), then the quantiles' names: the percent, two digits before
    an underscore for the decimals (``q05``, ``q05_1`` for 0.051, ``q99_9``), so that they sort as their values."""
    percents = [round(100 * q, 6) for q in quantiles]
    return ["mean", "sem"] + [f"q{int(p):02d}" + (f"{p % 1:.6f}".rstrip("0")[1:].replace(".", "_") if p % 1 else "")
                              for p in percents]


def dataset_names(model) -> set[str]:
    """Names the dataset of a sweep of ``model`` gives its own variables and dimensions (no axis may take one)."""
    return ({*_INTERNAL, *model.scalar_descriptions}
            | {f"{name}{end}" for name in model.outputs for end in ("", "_stats", "_fraction", "_theory")})


class SpecError(ValueError):
    """A sweep specification that cannot run; the message names the file, the line and the field (as the file spells
    them: the command line prints it as is, without turning field names into its flags)."""

    verbatim = True


@dataclasses.dataclass(frozen=True)
class Axis:
    """One dimension of the grid: ``name`` and, for each parameter it sets, its values (all of one length)."""

    name: str
    values: dict[str, tuple]

    @property
    def size(self) -> int:
        return len(next(iter(self.values.values())))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A checked sweep: simulator, fixed parameters, grid axes (outermost first), replicates per cell, seed."""

    simulator: str
    fixed: dict[str, Any]
    axes: tuple[Axis, ...]
    replicates: int
    seed: int = 0
    keep: str = "summary"
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    cells_per_chunk: int | None = None
    memory_budget: int | None = None
    backend: str = "auto"
    description: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid's shape: one length per axis, in the axes' order."""
        return tuple(a.size for a in self.axes)

    @property
    def num_cells(self) -> int:
        """Cells in the grid (the product of :attr:`shape`; 1 with no axis)."""
        return math.prod(self.shape)

    def cell(self, index: int) -> dict[str, Any]:
        """Every parameter of cell ``index`` (row-major over the axes): the fixed ones and the grid's."""
        out = dict(self.fixed)
        for axis, i in zip(self.axes, np.unravel_index(index, self.shape) if self.axes else ()):
            out.update({name: values[int(i)] for name, values in axis.values.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the dataset; two runs of one sweep compare equal on it)."""
        d = dataclasses.asdict(self)
        d["axes"] = [{"name": a.name, "values": {k: list(v) for k, v in a.values.items()}} for a in self.axes]
        return d


class _Lines:
    """Line numbers of ``key = ...`` entries in a TOML text, by table (``zip`` tables numbered ``zip[i]``)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*\"?([A-Za-z0-9_\-]+)\"?\s*=")

    def __init__(self, text: str):
        self.where: dict[str, int] = {}
        table, counts = "", {}
        for number, line in enumerate(text.splitlines(), 1):
            if m := self._HEADER.match(line):
                table = m.group(2)
                if m.group(1) == "[[":
                    counts[table] = counts.get(table, -1) + 1
                    table = f"{table}[{counts[table]}]"
                self.where.setdefault(table, number)
            elif m := self._KEY.match(line):
                self.where.setdefault(f"{table}.{m.group(1)}" if table else m.group(1), number)

    def line(self, field: str) -> int | None:
        while field:
            if field in self.where:
                return self.where[field]
            field = field.rpartition(".")[0]
        return None


def _description(raw: dict, fail) -> str:
    """The specification's free-text ``description`` (a string; ``description = 5`` was stored as "5")."""
    text = raw.get("description", "")
    if not isinstance(text, str):
        fail("description", f"must be a string (free text), got {text!r}")
    return text


def load(path: str | Path, models: dict | None = None) -> SweepSpec:
    """Read and check the sweep specification at ``path`` (:class:`SpecError` naming the field and line)."""
    path = Path(path)
    if path.is_dir():  # (it said "does not exist" of a folder; a user trial, 2026-12-06)
        raise SpecError(f"sweep specification {str(path)!r} is a folder; give the .toml file")
    if not path.is_file():
        raise SpecError(f"sweep specification {str(path)!r} does not exist")
    return parse(path.read_text(encoding="utf-8"), name=str(path), models=models)


def parse(text: str, *, name: str = "<spec>", models: dict | None = None) -> SweepSpec:
    """Check a sweep specification given as TOML text; see the module docstring for the format."""
    lines = _Lines(text)

    def fail(field: str, message: str):
        line = lines.line(field)
        raise SpecError(f"{name}{f' line {line}' if line else ''}: {field}: {message}")

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{name}: not valid TOML: {exc}") from None
    for key in raw:
        if key not in _TOP:
            fail(key, f"unknown field; allowed: {', '.join(sorted(_TOP))}")
    if models is None:
        from collapse_jax.sweep_models import MODELS as models
    simulator = raw.get("simulator")
    if not isinstance(simulator, str) or simulator not in models:
        fail("simulator", f"must be one of {sorted(models)}, got {simulator!r} (your own simulator: register it "
                          "with collapse_jax.sweep_models.register; on the command line --import MODULE)")
    model = models[simulator]
    replicates = _integer(raw.get("replicates", 1000), "replicates", 1, fail, MAX_REPLICATES,
                          " (replicate indices are 32-bit)")
    seed = _integer(raw.get("seed", 0), "seed", 0, fail, 2**63 - 1)
    keep = raw.get("keep", "summary")
    if keep not in KEEP:
        fail("keep", f"must be one of {KEEP}, got {keep!r}")
    quantiles = raw.get("quantiles", [0.05, 0.5, 0.95])
    if not isinstance(quantiles, list) or not quantiles or not all(_real(q) and 0 < q < 1 for q in quantiles):
        fail("quantiles", f"must be a non-empty list of numbers in (0, 1), got {quantiles!r}")
    names = statistic_names(quantiles)[2:]
    if len(set(names)) < len(names):
        fail("quantiles", f"must be distinct (each names a statistic, to 1e-6 percent: {', '.join(names)}), "
                          f"got {quantiles!r}")
    cells_per_chunk = raw.get("cells_per_chunk")
    if cells_per_chunk is not None:
        cells_per_chunk = _integer(cells_per_chunk, "cells_per_chunk", 1, fail)
    memory_budget = raw.get("memory_budget")
    if memory_budget is not None:
        memory_budget = _integer(memory_budget, "memory_budget", 1, fail)
    backend = raw.get("backend", "auto")
    if backend not in model.backends:
        fail("backend", f"must be one of {model.backends} for {simulator}, got {backend!r}")

    fixed = raw.get("fixed", {})
    if not isinstance(fixed, dict):
        fail("fixed", "must be a table of parameter = value")
    seen: dict[str, str] = {}
    for key, value in fixed.items():
        model.check_value(key, value, lambda msg, k=key: fail(f"fixed.{k}", msg))
        seen[key] = f"fixed.{key}"
    axes = []
    grid = raw.get("grid", {})
    if not isinstance(grid, dict):
        fail("grid", "must be a table of parameter = values")
    for key, values in grid.items():
        if key not in model.fields:  # named before its values ("grid.n_grwth: value 0.1: unknown parameter")
            model.check_value(key, None, lambda msg, k=key: fail(f"grid.{k}", msg))
        vals = _values(values, f"grid.{key}", fail, integer=_is_integer(model, key))
        _check_new(key, f"grid.{key}", seen, fail)
        for v in vals:
            model.check_value(key, v, lambda msg, k=key, v=v: fail(f"grid.{k}", f"value {v!r}: {msg}"))
        axes.append(Axis(key, {key: _as_kind(model, key, vals)}))
    zips = raw.get("zip", [])
    if not isinstance(zips, list):
        fail("zip", "must be an array of tables ([[zip]])")
    for i, table in enumerate(zips):
        where = f"zip[{i}]"
        if not isinstance(table, dict):
            fail(where, f"must be a table of parameter = [values] ([[zip]]), got {table!r}")
        entries = {k: v for k, v in table.items() if k != "name"}
        if not entries:
            fail(where, "names no parameter")
        columns = {}
        for key, values in entries.items():
            if key not in model.fields:
                model.check_value(key, None, lambda msg, k=key: fail(f"{where}.{k}", msg))
            vals = _values(values, f"{where}.{key}", fail, integer=_is_integer(model, key), distinct=False)
            _check_new(key, f"{where}.{key}", seen, fail)
            for v in vals:
                model.check_value(key, v, lambda msg, k=key, v=v: fail(f"{where}.{k}", f"value {v!r}: {msg}"))
            columns[key] = _as_kind(model, key, vals)
        sizes = {k: len(v) for k, v in columns.items()}
        if len(set(sizes.values())) != 1:
            fail(where, f"zipped parameters must have one length, got {sizes}")
        rows = list(zip(*columns.values()))
        if len(set(rows)) < len(rows):  # (two equal cells: a coordinate selecting two of them)
            twice = next(r for i, r in enumerate(rows) if r in rows[:i])
            fail(where, f"rows must be distinct (each is one cell of the axis), got {dict(zip(columns, twice))} "
                        "twice")
        axis_name = table.get("name", "+".join(columns))
        if not isinstance(axis_name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_+]*", axis_name):
            fail(f"{where}.name", "must be an identifier (letters, digits and _; without a name the dimension is its "
                                  "parameters joined by +, e.g. 'alpha0+n0', which ds.sel takes as a dict, not as a "
                                  f"keyword), got {axis_name!r}")
        if axis_name in grid or any(a.name == axis_name for a in axes):
            fail(f"{where}.name", f"dimension {axis_name!r} is already used")
        if axis_name in model.fields and axis_name not in columns:  # its coordinate would be indices, not values
            fail(f"{where}.name", f"{axis_name!r} is a parameter of {simulator} this zip does not set; name the axis "
                                  "after one of its own parameters or anything else")
        if axis_name in dataset_names(model):
            fail(f"{where}.name", f"{axis_name!r} names a variable of the dataset; reserved: "
                                  f"{', '.join(sorted(dataset_names(model)))}")
        axes.append(Axis(axis_name, columns))
    spec = SweepSpec(simulator=simulator, fixed=dict(fixed), axes=tuple(axes), replicates=replicates, seed=seed,
                     keep=keep, quantiles=tuple(float(q) for q in quantiles), cells_per_chunk=cells_per_chunk,
                     memory_budget=memory_budget, backend=backend, description=_description(raw, fail))
    if spec.num_cells > MAX_CELLS:
        fail("grid", f"has {spec.num_cells:,} cells, more than {MAX_CELLS:,} (each is checked, then simulated with "
                     f"{replicates} replicates); split the sweep or use fewer values per axis")
    # cross-field constraints (e.g. n0 >= 2 for the Gaussian), checked on every cell before anything runs
    for index in range(spec.num_cells):
        cell = spec.cell(index)
        try:
            model.check_cell(model.complete(cell))
        except ValueError as exc:  # point at the parameters the message names, a grid axis first (it varies)
            named = [seen[w] for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(exc)) if w in seen]
            where = next((w for w in named if not w.startswith("fixed.")), named[0] if named else "fixed")
            shown = {k: v for k, v in cell.items() if k not in spec.fixed}
            fail(where, f"{exc}{f' (in the cell {shown})' if shown else ''}")
    if not axes:  # (the store's blocks run along the last axis)
        fail("grid", "names no parameter: a sweep needs at least one axis ([grid] or [[zip]]); for a single cell "
                     "give one of the simulator's parameters a one-value list, e.g. [grid] n0 = [100] for the "
                     "multinomial (collapse-jax sweep --fields SIMULATOR lists them)")
    return spec


def _check_new(key, where, seen, fail):
    if key in seen:
        fail(where, f"{key!r} is already set in {seen[key]}")
    seen[key] = where


def _real(x) -> bool:
    from collapse_jax.sweep_models import finite  # (an integer beyond float's range: OverflowError, a traceback)

    return isinstance(x, (int, float)) and not isinstance(x, bool) and finite(x)


def _integer(value, field, low, fail, high=None, why="") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        fail(field, f"must be an integer {f'>= {low}' if high is None else f'in [{low}, {high}]'}{why}, got {value!r}")
    return int(value)


def _is_integer(model, key: str) -> bool:
    return key in model.fields and model.fields[key].kind is int


def _as_kind(model, key: str, values: tuple) -> tuple:
    """A float parameter's values as floats: ``alpha0 = [0, 1]`` was stored as an int64 coordinate, ``[0, 0.5, 1]``
    as float64 (a user trial, 2026-12-06)."""
    field = model.fields.get(key)
    return tuple(float(v) for v in values) if field is not None and field.kind is float else values


def _values(spec, field, fail, *, integer: bool = False, distinct: bool = True) -> tuple:
    """The values of one axis (``distinct``: refused if one repeats; a zip's columns check their rows instead): a
    non-empty list, or a generator table (see the module docstring: ``range`` in exact decimal steps, the others
    rounded to 15 significant digits, or to integers for an ``integer`` parameter)."""
    values = _generated(spec, field, fail, integer)
    seen, unhashable = set(), []
    for v in values if distinct else ():  # (repeated: two cells behind one coordinate)
        try:  # (a set: comparing each value with all before it took 284 s for a 100,000-value axis)
            repeated = v in seen
            seen.add(v)
        except TypeError:
            repeated = any(v == w for w in unhashable)
            unhashable.append(v)
        if repeated:
            fail(field, f"values must be distinct (each is a coordinate of the dataset), got {v!r} twice"
                        + (" (after rounding to integers)" if integer and isinstance(spec, dict) else ""))
    return values


def _generated(spec, field, fail, integer: bool) -> tuple:
    if isinstance(spec, list):
        if not spec:
            fail(field, "must not be empty")
        return tuple(spec)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _GENERATORS:
        fail(field, f"must be a list or one of {{{' | '.join(g + ' = [...]' for g in _GENERATORS)}}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or len(args) != 3 or not all(_real(a) for a in args):
        fail(field, f"{kind} takes three numbers, got {args!r}")
    a, b, c = args
    if kind == "range":
        if c == 0:
            fail(field, "range step must not be 0")
        if integer and not all(isinstance(x, int) for x in args):  # (it read "value 10.0: must be an integer")
            fail(field, f"range of an integer parameter takes integer start, stop and step, got {args!r}")
        count = math.ceil((b - a) / c) if math.isfinite((b - a) / c) else math.inf
        if count > MAX_CELLS:  # before NumPy builds it (10^14 values asked for 728 TiB)
            fail(field, f"range {args!r} gives {count:.4g} values, more than the {MAX_CELLS:,} cells a sweep may have")
        if all(isinstance(x, int) for x in args):
            out = np.arange(a, b, c)
        else:  # in decimal steps: np.arange(0.1, 0.4, 0.1) gave 4 values, the third 0.30000000000000004
            start, stop, step = (decimal.Decimal(repr(float(x))) for x in args)
            count = max(0, math.ceil((stop - start) / step))
            out = np.array([float(start + i * step) for i in range(count)])
    else:
        if not isinstance(c, int) or c < 1:
            fail(field, f"{kind} num must be an integer >= 1, got {c!r}")
        if c > MAX_CELLS:
            fail(field, f"{kind} num {c:,} is more than the {MAX_CELLS:,} cells a sweep may have")
        if kind == "geomspace" and (a <= 0 or b <= 0):
            fail(field, f"geomspace needs positive bounds, got {a!r}, {b!r}")
        with np.errstate(over="ignore"):  # (an overflow gives inf, refused by the parameter's check)
            out = {"linspace": np.linspace, "geomspace": np.geomspace, "logspace": np.logspace}[kind](a, b, c)
        if integer:  # (sample sizes log-spaced: geomspace [10, 1000, 5] -> 10, 32, 100, 316, 1000)
            return tuple(int(round(x)) if math.isfinite(x) else x.item() for x in out)
        # to 15 significant digits: a coordinate 0.6000000000000001 (linspace's rounding) needs .sel(method=...)
        out = np.array([float(f"{x:.15g}") for x in out])
    if out.size == 0:
        fail(field, f"{kind} {args!r} gives no value")
    return tuple(x.item() for x in out)

