"""Phase diagrams: built-in sweeps (each one command, ``collapse-jax phase NAME``) and their plots, with the
theory's boundary drawn where one exists.

- ``gmm-beta-L``, ``gmm-n-B``, ``gmm-m0``: the GMM network's final ``||D||_F``, its decay exponent and the fraction of
  replicates where a model lost a component, over (beta, L), (n, B) and the human-data size m0 (seed 000).
- ``recursions``: the multinomial's loss at T relative to the first fit over (alpha_t decay exponent, n_t growth
  exponent), replace and accumulate side by side, with the exact accumulate-subsample map beside them; the exact
  recurrences' (seed 003 Thm 3.1, Thm A.1) boundary ``r_T = r_0`` between improvement and collapse, and the
  asymptotic consistency boundary of the replace regime.
- ``recursions-subsample``: accumulate-subsample by Monte Carlo on the same 30 x 30 grid (200 replicates: each
  generation also draws the subsample, one hypergeometric per category).
- ``filter``: the same over the classifier's (type-I, type-II) errors (seed 003 Thm D.2), with the exact boundary
  where filtering matches training on everything (``r_T`` of the filter = ``r_T`` of replace).

Every sweep writes its dataset (:mod:`collapse_jax.sweep`) and the PNGs next to it; ``--print-spec`` shows the
specification, to copy and edit for ``collapse-jax sweep``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from collapse_jax.results import pyplot as _plt

_GMM_COMMON = """
simulator = "gmm-network"
seed = {seed}
replicates = {replicates}
[fixed]
num_steps = {steps}
"""

_MULTINOMIAL_COMMON = """
simulator = "multinomial"
seed = {seed}
replicates = {replicates}
[fixed]
categories = 50
steps = {steps}
alpha0 = 0.5
n0 = 100
"""

SPECS = {
    "gmm-beta-L": ("GMM network (seed 000 Figure 4 setting) over the fraction read beta and the posts per step L",
                   _GMM_COMMON + """
[grid]
beta = {{ linspace = [0.1, 1.0, 10] }}
points_per_step = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
""", dict(steps=200, replicates=1000)),
    "gmm-n-B": ("GMM network over the number of models n and of components B (means 5 apart)", _GMM_COMMON + """
component_spacing = 5.0
[grid]
num_models = [2, 3, 4, 6, 8]
num_components = [2, 3, 5, 8, 11]
""", dict(steps=200, replicates=1000)),
    "gmm-m0": ("GMM network (Figure 4 setting) over the human-data size m0 in A(0)", _GMM_COMMON + """
[grid]
num_human = [0, 3, 10, 30, 100, 300, 1000, 3000, 10000]
""", dict(steps=200, replicates=1000)),
    "recursions": ("multinomial (K = 50, n0 = 100) over the alpha_t decay and n_t growth exponents, replace and "
                   "accumulate", _MULTINOMIAL_COMMON + """
[grid]
regime = ["replace", "accumulate"]
alpha_decay = {{ linspace = [0.0, 1.5, 30] }}
n_growth = {{ linspace = [0.0, 2.0, 30] }}
""", dict(steps=200, replicates=1000)),
    "recursions-subsample": ("multinomial accumulate-subsample (K = 50, n0 = 100) over the alpha_t decay and n_t "
                             "growth exponents", _MULTINOMIAL_COMMON + """
regime = "accumulate-subsample"
[grid]
alpha_decay = {{ linspace = [0.0, 1.5, 30] }}
n_growth = {{ linspace = [0.0, 2.0, 30] }}
""", dict(steps=200, replicates=200)),
    "filter": ("multinomial filter regime (K = 50, alpha = 0.2, n = 100) over the type-I and type-II errors",
               _MULTINOMIAL_COMMON.replace("alpha0 = 0.5", "alpha0 = 0.2") + """regime = "filter"
[grid]
type1 = {{ linspace = [0.0, 0.9, 10] }}
type2 = {{ linspace = [0.0, 0.9, 10] }}
""", dict(steps=100, replicates=1000)),
}


def spec_text(name: str, *, replicates: int | None = None, steps: int | None = None, seed: int = 0) -> str:
    """The TOML specification of the built-in diagram ``name`` (its defaults where None)."""
    if name not in SPECS:
        raise ValueError(f"diagram must be one of {sorted(SPECS)}, got {name!r}")
    _, text, defaults = SPECS[name]
    values = {"seed": seed, "replicates": defaults["replicates"] if replicates is None else replicates,
              "steps": defaults["steps"] if steps is None else steps}  # 0 is an error below, not "the default"
    for key, value in values.items():  # checked again by the specification parser, which names the field
        if not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ValueError(f"{key} must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")
    return text.format(**values).lstrip()


_FLOOR = 1e-3  # decades: a side of 1 that no value reaches


def _decades(*arrays) -> tuple[float, float]:
    """How many decades the positive finite values reach below 1 and above it (each at least :data:`_FLOOR`): the
    colour range about 1 shared by panels."""
    values = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays])
    logs = np.log10(values[np.isfinite(values) & (values > 0)])
    if not logs.size:
        return 1.0, 1.0
    return max(-float(logs.min()), _FLOOR), max(float(logs.max()), _FLOOR)


def _ratio_norm(below: float, above: float):
    """A colour norm for ratios: 10^-below ... 1 ... 10^above onto 0 ... 0.5 ... 1, logarithmic on each side, so
    that white is 1 and each side uses its whole half of the map (a range symmetric about 1 set by the larger side
    left the other side pale: five decades of improvement against one and a half of collapse)."""
    from matplotlib.colors import FuncNorm

    def forward(v):
        logs = np.log10(np.clip(np.asarray(v, np.float64), 1e-300, None))
        return np.where(logs < 0, logs / below, logs / above)

    def inverse(y):
        y = np.asarray(y, np.float64)
        return np.where(y < 0, 10.0 ** (y * below), 10.0 ** (y * above))

    return FuncNorm((forward, inverse), vmin=10.0 ** -below, vmax=10.0 ** above)


def _ratio_ticks(below: float, above: float) -> list[float]:
    """Colour-bar ticks of a ratio map: 1 and the powers of ten (every few, at most about five a side) within
    its range."""
    ticks = [1.0]
    for side, sign in ((below, -1), (above, 1)):
        whole = int(np.floor(side + 1e-9))
        step = max(1, int(np.ceil(whole / 5)))
        ticks += [10.0 ** (sign * k) for k in range(step, whole + 1, step)]
        if whole == 0:
            ticks.append(10.0 ** (sign * side))
    return sorted(ticks)


def _save(fig, out: Path, name: str) -> Path:
    """``out/name.png``, written atomically; the figure closed."""
    from collapse_jax.results import atomic_savefig

    fig.tight_layout()
    path = out / f"{name}.png"
    atomic_savefig(fig, path, dpi=120)
    _plt().close(fig)
    return path


# Axis and colour-bar labels in the docs' notation, the field's name after it (the plots showed "num_human",
# "type1", "relative_loss" where the docs write m0, a, loss(T) / loss(0); a figure trial, 2026-12-06)
_NOTATION = {"num_models": "n", "num_components": "B", "points_per_step": "L", "num_human": "m0", "dirichlet_a": "a",
             "alpha_decay": "gamma", "n0": "n_0", "n_growth": "n_t growth exponent", "type1": "type-I error a",
             "type2": "type-II error b", "final_dnorm": "mean ||D(T)||_F", "relative_loss": "loss(T) / loss(0)",
             "theory_relative_subsample": "exact r_T / r_0", "theory_vs_replace": "exact r_T over replace's"}


def _label(name: str) -> str:
    """``name`` as the docs write it, with the field's own name in brackets (the name alone where they agree)."""
    return f"{_NOTATION[name]} ({name})" if name in _NOTATION else name


def _heatmap(ax, ds, var: str, x: str, y: str, *, log: bool = False, centre_one: bool = False,
             decades: tuple[float, float] | None = None, **sel):
    """``ds[var]`` over the axes ``x`` (horizontal) and ``y``, cells at their coordinate values."""
    from matplotlib.colors import LogNorm

    da = ds[var].sel(**sel).transpose(y, x)
    values = np.asarray(da.values, np.float64)
    xs, ys = np.asarray(ds[x].values), np.asarray(ds[y].values)
    positive = values[np.isfinite(values) & (values > 0)]
    norm, cmap, ticks = None, "viridis", None
    if log and positive.size and centre_one:  # a ratio: blue below 1, red above, 1 white (also when every value
        # lies on one side of 1: a map of ratios all above 1 in viridis left 1 unmarked, under a title about "< 1")
        below, above = decades if decades is not None else _decades(positive)
        norm, cmap, ticks = _ratio_norm(below, above), "RdBu_r", _ratio_ticks(below, above)
        if min(below, above) <= _FLOOR:  # every ratio on one side of 1: that side's half of the map alone, from
            # white at 1 (half the bar showed values no cell had, ticked 0.998; a user trial, 2026-12-06)
            from matplotlib.colors import ListedColormap

            up = below <= _FLOOR
            cmap = ListedColormap(_plt().get_cmap("RdBu_r")(np.linspace(0.5, 1.0, 128) if up
                                                             else np.linspace(0.0, 0.5, 128)))
            norm = LogNorm(1.0, 10.0 ** above) if up else LogNorm(10.0 ** -below, 1.0)
            ticks = [t for t in ticks if (t >= 1.0 if up else t <= 1.0)]
    elif log and positive.size and positive.min() < positive.max():
        norm = LogNorm(positive.min(), positive.max())
    (grid_x, values_x), (grid_y, values_y) = _cell_positions(xs), _cell_positions(ys)
    mesh = ax.pcolormesh(grid_x, grid_y, values, shading="nearest", norm=norm, cmap=cmap)
    bar = ax.figure.colorbar(mesh, ax=ax, label=_label(var))
    if ticks is not None:
        bar.set_ticks(ticks, labels=[f"{t:.3g}" if 1e-3 <= t <= 1e3 else f"1e{np.log10(t):+.0f}" for t in ticks])
    if isinstance(norm, LogNorm):  # plain numbers: over less than a decade matplotlib's own labelled the minor ticks
        # "2x10^0 3x10^0 ..." beside a plain "7.05" (a user trial, 2026-12-07); the same ticks are labelled, and the
        # decades of a wider bar (no minor labels) keep their 10^k
        from matplotlib.ticker import LogFormatter

        bar.ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        if ticks is None and np.log10(norm.vmax / norm.vmin) <= 1:
            bar.ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    for axis, name, grid, own in ((ax.xaxis, x, grid_x, values_x), (ax.yaxis, y, grid_y, values_y)):
        labels = _tick_labels(ds, name) or own
        if labels is not None and axis is ax.yaxis:  # a zipped axis's parameters one per line: side by side they ran
            labels = [text.replace(", ", "\n") for text in labels]  # into the panel beside (a user trial, 2026-12-07)
        if labels is not None:
            axis.set_ticks(grid, labels)
    return grid_x, grid_y


def _cell_positions(values) -> tuple[np.ndarray, list[str] | None]:
    """Where a heatmap draws the cells of one axis, and their tick labels: an evenly spaced numeric axis at its
    values (ticked at them when it has at most 12; None: the axis's own ticks); any other axis one unit per cell,
    labelled with its values (an uneven grid such as L = 1, 2, 4, 8, 16, 32 on a linear axis squeezed the small
    values into a sliver and put ticks at values that are not in the grid)."""
    v = np.asarray(values)
    if v.dtype.kind in "fi":
        gaps = np.diff(v.astype(np.float64))
        labels = _short_labels(v)
        if v.size < 3 or np.allclose(gaps, gaps[0], rtol=1e-6, atol=0.0):
            # an even axis at its values; a short one ticked at them (mu = 0, 3 got ticks at -1, 1, 2, 4)
            return v, (labels if v.size <= 12 else None)
        return np.arange(v.size), labels
    return np.arange(v.size), None


def _short_labels(values) -> list[str]:
    """The values with the fewest significant digits (3 at least) that still tell them apart: ``:g``'s six gave
    "0.214286 0.428571 ..." for ``linspace = [0.0, 1.5, 8]``, labels that ran into each other (a user trial). Whole
    numbers below a million as integers (``n0 = 1000`` read "1e+03"; a user trial, 2026-12-06)."""
    whole = np.asarray(values, np.float64)
    if np.all(np.isfinite(whole)) and np.all(whole == np.round(whole)) and np.all(np.abs(whole) < 1e6):
        return [str(int(a)) for a in whole]
    for digits in range(3, 18):
        labels = [f"{float(a):.{digits}g}" for a in values]
        if len(set(labels)) == len(set(np.asarray(values, np.float64).tolist())):
            return labels
    return [repr(float(a)) for a in values]


def _tick_labels(ds, dim: str) -> list[str] | None:
    """Labels of the cells along ``dim`` where its coordinate does not say what they are: a text axis's values, or
    a zipped axis's parameters (``alpha0=0.5, n0=100``); None for a numeric axis of its own values."""
    zipped = [c for c in ds.coords if c != dim and ds[c].dims == (dim,)]
    # in the spec's order: the store's coordinate order is not kept (xarray reads it back as a set, so it changed with
    # PYTHONHASHSEED and the labels read "n0=50, alpha0=0.2" in some runs)
    axis = next((a for a in json.loads(ds.attrs.get("sweep", "{}")).get("axes", []) if a.get("name") == dim), {})
    order = list(axis.get("values", {}))
    zipped.sort(key=lambda c: (order.index(c) if c in order else len(order), c))
    if zipped:
        return [", ".join(f"{c}={ds[c].values[i]:g}" if ds[c].dtype.kind in "fi" else f"{c}={ds[c].values[i]}"
                          for c in zipped) for i in range(ds.sizes[dim])]
    if ds[dim].dtype.kind not in "fi":
        return [str(v) for v in ds[dim].values]
    return None


def plot_gmm(ds, out: Path, name: str) -> list[Path]:
    """Final ``||D||_F``, its decay exponent and the fraction that lost a component: heatmaps over two axes, lines
    over one."""
    plt = _plt()
    axes = [d for d in ds["cell_done"].dims]
    panels = [("final_dnorm", True), ("dnorm_decay_exponent", False), ("fraction_lost_component", False)]
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.6))
    for ax, (var, log) in zip(axs, panels):
        if len(axes) == 2:
            _heatmap(ax, ds, var, axes[0], axes[1], log=log)
        else:
            ax.plot(ds[axes[0]].values, ds[var].values, "o-")
            ax.set_xlabel(_label(axes[0]))
            if axes[0] == "num_human":
                ax.set_xscale("symlog", linthresh=1)
            ax.set_ylabel(_label(var))
            if log:
                ax.set_yscale("log")
        ax.set_title(_label(var))
        if not np.isfinite(np.asarray(ds[var].values, np.float64)).any():  # an empty panel said nothing
            why = (": it needs two steps in [T/10, T] with ||D(t)||_F > 0" if var == "dnorm_decay_exponent" else "")
            ax.text(0.5, 0.5, f"NaN in every cell{why}", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, wrap=True)
    fig.suptitle(f"{name}: GMM networks; {_run_summary(ds)}")  # (seed and fixed settings too: a user trial)
    return [_save(fig, out, name)]


def _relative_theory(ds, **sel):
    """``r_T / r_0`` of the exact recurrence, over the grid (NaN where the model has no closed form)."""
    if "loss_theory" not in ds:
        return None
    theory = ds["loss_theory"].sel(**sel)
    return theory.isel(step=-1) / theory.isel(step=0)


def plot_recursions(ds, out: Path, name: str) -> list[Path]:
    """Loss at T over loss at t = 0 (log colour scale; 1 = no change), one panel per regime, the exact recurrence's
    ``r_T = r_0`` contour (improvement below, collapse above) and, for replace over (alpha_decay, n_growth), the
    asymptotic consistency boundary ``n_growth = alpha_decay`` (alpha_decay < 1)."""
    plt = _plt()
    axes = [d for d in ds["cell_done"].dims]
    regimes = list(ds["regime"].values) if "regime" in axes else [None]
    plane = [a for a in axes if a != "regime"]
    x, y = plane[0], plane[1]
    fixed_regime = json.loads(ds.attrs["sweep"])["fixed"].get("regime", "replace")
    versus = "theory_vs_replace" in ds and regimes == [None] and fixed_regime != "replace"
    subsample = ("theory_relative_subsample" in ds and "regime" in axes
                 and "accumulate-subsample" not in regimes)  # its exact map, beside the Monte Carlo ones
    extra = int(versus) + int(subsample)
    decades = _decades(ds["relative_loss"].values,
                       *([ds["theory_relative_subsample"].values] if subsample else []))  # one colour scale
    fig, axs = plt.subplots(1, len(regimes) + extra, figsize=(6.5 * (len(regimes) + extra), 5), squeeze=False)
    if versus:  # where the regime beats plain replace training, by the exact recurrences
        _heatmap(axs[0][-1], ds, "theory_vs_replace", x, y, log=True, centre_one=True)
        axs[0][-1].set_title(f"exact r_T: {fixed_regime} / replace (< 1: {fixed_regime} helps)")
    if subsample:
        sel = {"regime": regimes[0]}  # the same schedules in every regime
        ax = axs[0][-1]
        gx, gy = _heatmap(ax, ds, "theory_relative_subsample", x, y, log=True, centre_one=True, decades=decades,
                          **sel)
        values = np.asarray(ds["theory_relative_subsample"].sel(**sel).transpose(y, x).values, np.float64)
        if np.nanmin(values) < 1 < np.nanmax(values):
            cs = ax.contour(gx, gy, values, levels=[1.0], colors="black", linewidths=1.5)
            ax.clabel(cs, fmt={1.0: "r_T = r_0"}, fontsize=8)
        ax.set_title("accumulate-subsample: exact r_T / r_0 (recurrence; `phase recursions-subsample` for Monte "
                     "Carlo)", fontsize=9)
    for ax, regime in zip(axs[0], regimes):
        sel = {} if regime is None else {"regime": regime}
        gx, gy = _heatmap(ax, ds, "relative_loss", x, y, log=True, centre_one=True, decades=decades, **sel)
        theory = _relative_theory(ds, **sel)
        if theory is not None and np.isfinite(theory.values).any():
            cs = ax.contour(gx, gy, np.asarray(theory.transpose(y, x).values, np.float64), levels=[1.0],
                            colors="black", linewidths=1.5)
            ax.clabel(cs, fmt={1.0: "theory r_T = r_0"}, fontsize=8)
        if "theory_vs_replace" in ds and regime != "replace":
            helps = np.asarray(ds["theory_vs_replace"].sel(**sel).transpose(y, x).values, np.float64)
            if np.nanmin(helps) < 1 < np.nanmax(helps):
                cs = ax.contour(gx, gy, helps, levels=[1.0], colors="black", linestyles="dotted", linewidths=2)
                ax.clabel(cs, fmt={1.0: "theory: = replace"}, fontsize=8)
        # replace's boundary only (a fixed regime is None here: an audit found it drawn on accumulate-subsample)
        if ((x, y) == ("alpha_decay", "n_growth") and (fixed_regime if regime is None else regime) == "replace"
                and np.array_equal(gx, ds[x].values) and np.array_equal(gy, ds[y].values)):  # value axes only
            g = np.linspace(0, min(1.0, gx.max()), 50)
            ax.plot(g, g, "r--", lw=1.5, label="consistency boundary n_growth = alpha_decay (asymptotic)")
            ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"loss(T) / loss(0){'' if regime is None else ': ' + str(regime)}")
    fig.suptitle(f"{name}: relative loss; below 1 the recursion improves on its first fit, above it collapses\n"
                 f"{_run_summary(ds)}", fontsize=11)
    return [_save(fig, out, name)]


def _run_summary(ds) -> str:
    """What was run, for a figure's title: steps, replicates per cell and the fixed settings (a T = 20 plot looked
    the same as a T = 200 one)."""
    sweep = json.loads(ds.attrs["sweep"])
    settings = _fixed_settings(sweep, skip=("steps", "num_steps"))
    # a grid of steps gives each cell its own T (the title said the longest: a user trial, 2026-12-06)
    grid = sorted({v for axis in sweep.get("axes", []) for k, vs in axis["values"].items()
                   if k in ("steps", "num_steps") for v in vs})
    steps = f"T = {grid[0]:g}-{grid[-1]:g} (by cell)" if len(grid) > 1 else f"T = {ds.sizes['step'] - 1}"
    return (f"{steps}, {sweep['replicates']} replicates per cell, seed {sweep['seed']}"
            + (f"; {settings}" if settings else ""))


def _fixed_settings(sweep: dict, skip=()) -> str:
    """A sweep's fixed settings for a title, ``name = value`` joined by commas (numbers as ``:g``)."""
    return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{k} = {v}"
                     for k, v in sweep.get("fixed", {}).items() if k not in skip)


def plot_sigma(ds, out: Path, name: str) -> list[Path]:
    """Coverage of every interval against the block size ratio n/d, one panel per value of the other axis (e.g. the
    family), the nominal level dashed."""
    plt = _plt()
    axes = list(ds["cell_done"].dims)
    if "ratio" not in axes or len(axes) > 2:
        raise ValueError(f"a sigma-blocks plot needs a ratio axis and at most one other, got {axes}")
    other = [a for a in axes if a != "ratio"]
    values = list(ds[other[0]].values) if other else [None]
    sweep = json.loads(ds.attrs["sweep"])
    level = sweep["fixed"].get("level", 0.95)
    fig, axs = plt.subplots(1, len(values), figsize=(5.5 * len(values), 4.2), squeeze=False, sharey=True)
    for ax, value in zip(axs[0], values):
        sub = ds if value is None else ds.sel({other[0]: value})
        x, notes = _block_ratios(ds, sweep, {} if value is None else {other[0]: value})
        for var in [v for v in ds.data_vars if v.startswith("coverage_")]:
            ax.plot(x, sub[var].values, "o-", label=var.removeprefix("coverage_"))
        ax.axhline(level, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        _block_size_ticks(ax, x)
        ax.set_xlabel("n / d (the block size run)")
        ax.set_title("\n".join(([] if value is None else [f"{other[0]} = {value}"]) + notes), fontsize=9)
    axs[0][0].set_ylabel("coverage")
    axs[0][0].legend(fontsize=8)
    fixed = _fixed_settings(sweep)
    fig.suptitle(f"{name}: interval coverage against block size ({sweep['replicates']} blocks per cell, seed "
                 f"{sweep['seed']}{'; ' + fixed if fixed else ''})")
    return [_save(fig, out, name)]


def _block_size_ticks(ax, x) -> None:
    """Ticks at the ratios run (up to eight), labelled plainly, and no minor-tick labels: over less than a decade a
    log axis labelled its minor ticks, which ran into each other ("3x10^0 4x10^0"; a user trial, 2026-12-06)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = np.unique(np.asarray(x, np.float64)[np.isfinite(x)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    if 0 < ticks.size <= 8:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{t:.3g}" for t in ticks])


def _block_ratios(ds, sweep: dict, panel: dict) -> tuple[np.ndarray, list[str]]:
    """The block size ratio each ``ratio`` cell ran, ``n / d`` with ``n = max(d + 1, round(ratio d))`` capped at N,
    and notes on ratios that ran one size and on those capped at N (exact: no interval, so no coverage point). The
    plot drew the requested ratios: 1.0 and 1.05 at d = 8 both ran n = 9, drawn as two sizes, and the capped cells
    were dropped without a word (a user trial, 2026-12-06)."""
    from collapse_jax import sweep_models

    model = sweep_models.get("sigma-blocks")
    defaults = json.loads(ds.attrs["defaults"]) if "defaults" in ds.attrs else {}
    cell = {k: panel.get(k, sweep["fixed"].get(k, defaults.get(k, model.fields[k].default)))
            for k in ("dim", "num_points")}
    ratios = [float(r) for r in ds["ratio"].values]
    sizes = [model.block_size({**cell, "ratio": r}) for r in ratios]
    notes = []
    for n in sorted(set(sizes)):
        same = [f"{r:g}" for r, m in zip(ratios, sizes) if m == n]
        if n == cell["num_points"]:
            notes.append(f"ratio {', '.join(same)}: n = N = {n}, exact (no interval)")
        elif len(same) > 1:
            notes.append(f"ratios {', '.join(same)} ran one block size, n = {n}")
    return np.asarray(sizes, np.float64) / cell["dim"], notes


def plot(name: str, ds, out: str | Path) -> list[Path]:
    """The diagram of a built-in sweep (or, for any sweep, the plot of its model) as PNG files in ``out``."""
    out = Path(out)
    if ds.attrs.get("simulator") == "gmm-network":
        return plot_gmm(ds, out, name)
    if ds.attrs.get("simulator") == "sigma-blocks":
        return plot_sigma(ds, out, name)
    axes = [d for d in ds["cell_done"].dims if d != "regime"]
    if "relative_loss" in ds and len(axes) == 2:
        short = [a for a in axes if ds.sizes[a] < 2]
        if short:  # a heatmap with contours needs two values on each axis
            raise ValueError(f"no phase-diagram plot: its axes need at least 2 values each, and {', '.join(short)} "
                             "has one")
        return plot_recursions(ds, out, name)
    every = list(ds["cell_done"].dims)  # (regime too: it read "over ['dim']" for a regime x dim grid; a user trial)
    raise ValueError(f"no phase-diagram plot for a {ds.attrs.get('simulator')} sweep over {every}: plots are drawn for "
                     "gmm-network and sigma-blocks sweeps, and for the recursions' sweeps (multinomial, gaussian, "
                     "logistic, mixture: a relative loss) over two grid axes besides regime")
