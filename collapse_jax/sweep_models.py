"""What a sweep can vary: each simulator's sweep model, its parameters (with defaults, ranges and help), how cells
group into one compiled call, its records, its closed-form theory and the per-cell statistics the phase diagrams
read.

A sweep model is a thin adapter: ``run(cells, R, seed, ...)`` calls the simulator's own ``simulate`` once per group
of cells that share static shapes, with the values that vary stacked on a leading grid axis (one compilation per
group; every grid point runs the same replicate keys, so cell g draws what the simulator run alone with the same
seed draws: the multinomial's and the Gaussian's results bit for bit, the logistic model's and the EM mixture's to
the last bits, whose vmapped arithmetic XLA compiles per grid width: 1e-6 relative in float32, 3e-15 in float64, a
user trial on 2026-12-06).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any, Callable

import numpy as np

from collapse_jax import _checks, schedules
# (the simulators' limits from modules without JAX: `collapse-jax sweep --help` lists the models; gmm_network and
# sigma_precision re-export them)
from collapse_jax.gmm_theory import MAX_COMPONENTS, MAX_STEPS
from collapse_jax.sigma_precision_config import MAX_CONDITION_NUMBER as SP_MAX_CONDITION_NUMBER
from collapse_jax.sigma_precision_config import MIN_DIM


def finite(x) -> bool:
    """``math.isfinite(x)``, False for an integer beyond float's range (``mu = 999...9``, 400 digits, in a TOML
    file: isfinite raised OverflowError, a traceback instead of the field's error)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


@dataclasses.dataclass(frozen=True)
class Field:
    """One parameter of a sweep model: its default, help, type and allowed values."""

    default: Any
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None

    def interval(self) -> str:
        """The allowed range as text, e.g. ``(0.0, 1.0]``; values are finite, so an infinite end is open."""
        lo = "(" if self.low_open or self.low is None else "["
        hi = ")" if self.high_open or self.high is None else "]"
        return f"{lo}{'-inf' if self.low is None else self.low}, {'inf' if self.high is None else self.high}{hi}"

    def describe(self) -> str:
        allowed = f"one of {list(self.choices)}" if self.choices else f"{self.kind.__name__} in {self.interval()}"
        return f"{self.help} ({allowed}; default {self.default!r})"

    def check(self, value) -> str | None:
        """None if ``value`` is allowed, else why not."""
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {list(self.choices)}, got {value!r}"
        if self.kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f"must be an integer, got {value!r}"
        if self.kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not finite(value)):
            return f"must be a finite number, got {value!r}"
        if self.kind is bool and not isinstance(value, bool):
            return f"must be true or false, got {value!r}"
        if self.kind is str:
            return None if isinstance(value, str) else f"must be a string, got {value!r}"
        lo_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        hi_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if lo_bad or hi_bad:
            return f"must be in {self.interval()}, got {value!r}"
        return None


@dataclasses.dataclass(frozen=True)
class Output:
    """A per-replicate record with a ``step`` axis: ``kind`` "real" (summarised by mean, sem and quantiles) or
    "flag" (summarised by the fraction of replicates where it holds)."""

    kind: str
    description: str

    def __post_init__(self) -> None:
        if self.kind not in ("real", "flag"):  # ("boolean" failed deep in NumPy at the first summary; a user trial)
            raise ValueError(f"Output kind must be 'real' or 'flag', got {self.kind!r}")


class SweepModel(abc.ABC):
    """Base of the sweep models: parameter checks and defaults; subclasses define ``fields``, ``outputs``,
    ``group_key``, ``run`` and optionally ``theory`` and ``scalars``."""

    name: str = ""
    backends: tuple[str, ...] = ("auto", "jax")
    fields: dict[str, Field] = {}
    outputs: dict[str, Output] = {}

    def check_value(self, key: str, value, fail: Callable[[str], None]) -> None:
        if key not in self.fields:
            import difflib

            near = difflib.get_close_matches(key, self.fields, n=1)
            fail(f"unknown parameter of {self.name}{f' (did you mean {near[0]}?)' if near else ''}; allowed: "
                 f"{', '.join(sorted(self.fields))}")
        elif (why := self.fields[key].check(value)) is not None:
            fail(why)

    def complete(self, cell: dict) -> dict:
        """``cell`` with every parameter it does not set at its default."""
        return {**{k: f.default for k, f in self.fields.items()}, **cell}

    def check_cell(self, cell: dict) -> None:
        """Constraints between parameters; a ValueError whose message starts with the parameter's name."""

    @abc.abstractmethod
    def num_steps(self, cell: dict) -> int:
        """Records per replicate along ``step``."""

    @abc.abstractmethod
    def group_key(self, cell: dict, backend: str) -> tuple:
        """Cells with equal keys run in one compiled call."""

    def check_precision(self, cell: dict, backend: str) -> None:
        """Limits that depend on this process (float32 or float64, the kernels ``backend`` resolves to here, its
        memory): a ValueError where ``cell`` would run out of exact arithmetic or of memory. Checked by the sweep
        runner on every cell before it writes anything (the specification's checks cannot: they hold whatever the
        precision and the machine)."""

    def kernels(self, cell: dict, backend: str) -> str:
        """The kernels ``run`` runs ``cell`` with when asked for ``backend`` (``auto`` as this process resolves it:
        the device, ``--backend``), by the simulator's own resolver; a ValueError naming the backend where the cell
        cannot run with it. The portable JAX path, unless the simulator has others: a model with several paths must
        say here which one runs, since a resume compares these names, not the backend as written (``auto`` and
        ``native`` resume each other where they run the same kernels)."""
        return "jax"

    @abc.abstractmethod
    def run(self, cells: list[dict], num_replicates: int, seed: int, *, backend: str, memory_budget, mesh,
            first_replicate: int = 0) -> dict[str, np.ndarray]:
        """Records of ``cells`` (one group): ``name -> (grid, replicate, step)``."""

    def replicate_bytes(self, cell: dict) -> int:
        """Host bytes of one replicate's records (sizes the chunks of cells)."""
        return 8 * len(self.outputs) * self.num_steps(cell)

    def work(self, cell: dict) -> float:
        """One replicate's cost in the units of :data:`collapse_jax.sweep.CHUNK_REPLICATE_STEPS` (a step of the
        fastest simulators): its steps, unless a simulator costs more per step (sizes the chunks of cells, so that
        a chunk is seconds of work, its bar moves and a kill loses little)."""
        return float(self.num_steps(cell))

    def theory(self, cell: dict) -> dict[str, np.ndarray]:
        """Closed-form expectations of outputs, ``name -> (step,)`` (only where one exists)."""
        return {}

    def theory_outputs(self, cell: dict) -> set[str]:
        """The names :meth:`theory` gives for ``cell``, without computing them: the sweep's dataset has an
        ``{name}_theory`` variable when some cell has one (NaN in the others). By default every output of a model
        that defines :meth:`theory`; models with cheap exact answers override it, and a model whose theory covers
        only some outputs must (the runner refuses a cell whose :meth:`theory` gives other names). (The dataset's
        variables were decided by the first and last cells alone, so a Gaussian grid with its pure-synthetic cell in
        the middle lost its exact curve without a word; a user trial, 2026-12-06.)"""
        return set(self.outputs) if type(self).theory is not SweepModel.theory else set()

    def scalars(self, cell: dict, summary: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-cell numbers for phase diagrams, from the cell's summaries (``name_mean`` etc., (step,); and
        ``replicates``)."""
        return {}

    scalar_descriptions: dict[str, str] = {}


# --- the recursions (seed 003 Section 3, App. C.2; seed 004) ----------------------------------------------------
_SCHEDULE_FIELDS = {
    "steps": Field(50, "generations T (records t = 0..T)", int, 1, 100_000),
    "alpha0": Field(0.5, "real-data weight scale: alpha_t = min(1, alpha0 t^-alpha_decay) for t >= 1", float, 0.0, 1.0),
    "alpha_decay": Field(0.0, "decay exponent gamma of alpha_t (0: constant alpha0)", float, 0.0, 10.0),
    "n0": Field(100, "sample size scale: n_t = round(n0 (t + 1)^n_growth)", int, 1, 10**9),
    "n_growth": Field(0.0, "growth exponent of n_t (0: constant, 1: linear, 2: quadratic)", float, 0.0, 4.0),
}


def recursion_schedules(cell: dict) -> tuple[np.ndarray, np.ndarray]:
    """``alpha_t`` and ``n_t``, (step,) = (T + 1,), of a recursion cell."""
    T = cell["steps"]
    alpha = schedules.power_decay_alpha(cell["alpha_decay"], T, scale=cell["alpha0"])
    n = schedules.polynomial_size(cell["n0"], cell["n_growth"], T)
    return alpha, n


class _Recursion(SweepModel):
    outputs = {"loss": Output("real", "the model's loss against the truth, per generation")}
    scalar_descriptions = {
        "final_loss": "mean loss at t = T",
        "relative_loss": "mean loss at t = T over mean loss at t = 0 (< 1: improvement, > 1: collapse)",
    }

    def num_steps(self, cell):
        return cell["steps"] + 1

    def check_cell(self, cell):
        n = recursion_schedules(cell)[1]
        if n.max() > 2**31 - 1:
            raise ValueError(f"n_growth {cell['n_growth']} with n0 {cell['n0']} over {cell['steps']} steps gives "
                             f"n_t = {n.max():.3g}, beyond 2^31 - 1")

    def _check_raw_pool(self, cell, pooled: bool, max_points: int, what: str) -> None:
        """A ValueError naming n0 and steps where one replicate's raw samples (``max n_t``, or ``n_0 + ... + n_T``
        when ``pooled``) exceed the simulator's ``max_points``: refused when the specification is read, with its
        line (the simulator refused it only once the store was written, and named its own ``max_points``, which is
        no sweep parameter)."""
        from collapse_jax import _sample_buffer

        need = _sample_buffer.points_needed(recursion_schedules(cell)[1], pooled)
        if need > max_points:
            held = "n_0 + ... + n_T" if pooled else "max n_t"
            raise ValueError(f"n0 {cell['n0']} with steps {cell['steps']} (n_growth {cell['n_growth']}): {what} "
                             f"keeps every raw sample, {need:,} points per replicate ({held}), above its limit of "
                             f"{max_points:,}; lower n0, steps or n_growth")

    def _raw_work(self, cell, pooled: bool) -> float:
        """:meth:`work` of a recursion that keeps raw samples: each generation also touches its raw points, ``n_t``
        or, ``pooled``, ``n_0 + ... + n_t`` (a grid of accumulate-subsample cells with n0 = 1000 ran as one chunk of
        150 s, the bar at 0 and a kill losing all; a user trial, 2026-12-06)."""
        n = np.asarray(recursion_schedules(cell)[1], np.float64)
        return float(self.num_steps(cell) + (np.cumsum(n) if pooled else n).sum())

    def _schedule_grid(self, cells):
        pairs = [recursion_schedules(c) for c in cells]
        return np.stack([a for a, _ in pairs]), np.stack([n for _, n in pairs])

    def scalars(self, cell, summary):
        mean = summary["loss_mean"]
        return {"final_loss": float(mean[-1]), "relative_loss": float(mean[-1] / mean[0])}


class MultinomialSweep(_Recursion):
    """The categorical next-token model (seed 003 Section 3): ``p`` uniform or Zipf on K categories."""

    name = "multinomial"
    backends = ("auto", "native", "jax", "pallas")
    fields = {
        **_SCHEDULE_FIELDS,
        "categories": Field(50, "categories K", int, 2, 10**6),
        "p": Field("uniform", "the truth p: uniform, or Zipf with exponent zipf_exponent", str,
                   choices=("uniform", "zipf")),
        "zipf_exponent": Field(1.0, "p_k proportional to k^-zipf_exponent (p = 'zipf')", float, 0.0, 10.0),
        "regime": Field("replace", "training regime (accumulate-subsample: n_t points drawn without replacement "
                        "from everything accumulated)", str,
                        choices=("replace", "accumulate", "filter", "accumulate-subsample")),
        "type1": Field(0.0, "filter: type-I error a (real data rejected)", float, 0.0, 1.0),
        "type2": Field(0.0, "filter: type-II error b (synthetic data kept)", float, 0.0, 1.0),
    }

    def truth(self, cell) -> np.ndarray:
        K = cell["categories"]
        if cell["p"] == "uniform":
            return np.full(K, 1.0 / K)
        w = np.arange(1, K + 1, dtype=np.float64) ** -cell["zipf_exponent"]
        return w / w.sum()

    def check_cell(self, cell):
        super().check_cell(cell)
        from collapse_jax import multinomial as M

        M.MultinomialConfig(cell["regime"], cell["type1"], cell["type2"])  # type1 / type2 only with the filter
        if cell["regime"] == "filter":  # as the simulator checks it, but before the sweep writes anything
            alpha, n = recursion_schedules(cell)
            M.check_filter_keeps(alpha, n, cell["type1"], cell["type2"])

    def _config(self, cell):
        from collapse_jax import multinomial as M

        return M.MultinomialConfig(cell["regime"], cell["type1"], cell["type2"])

    def check_precision(self, cell, backend):
        from collapse_jax import multinomial as M

        M.check_counts(recursion_schedules(cell)[1], cell["regime"], self.kernels(cell, backend))

    def group_key(self, cell, backend):
        return (cell["categories"], cell["p"], cell["zipf_exponent"], cell["steps"], cell["regime"])

    def work(self, cell):
        """A generation draws K - 1 conditional binomials (O(K) whatever n_t): about 1 + K / 4 Gaussian steps (the
        native kernel on 2 cores took 3, 21, 140 and 21,000 Gaussian steps' time for K = 2, 50, 1,000 and 100,000).
        Steps alone made one chunk of 5e6 replicate-steps at K = 10^6, hours that no signal stopped (a user trial,
        2026-12-07)."""
        return super().work(cell) * (1 + cell["categories"] / 4)

    def kernels(self, cell, backend):
        from collapse_jax import multinomial as M

        return M.resolve_backend(backend, cell["regime"])  # on a GPU: Pallas for replace and accumulate only

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import multinomial as M

        common = dict(backend=backend, first_replicate=first_replicate, memory_budget=memory_budget,
                      mesh=mesh, progress=False)
        p = self.truth(cells[0])
        if cells[0]["regime"] == "filter":  # the filter errors live in the config: one call per cell
            return {"loss": np.stack([M.simulate(seed, p, *recursion_schedules(c), self._config(c), num_replicates,
                                                 **common) for c in cells])}
        alpha, n = self._schedule_grid(cells)
        return {"loss": M.simulate(seed, p, alpha, n, self._config(cells[0]), num_replicates, **common)}

    def theory(self, cell):
        return {"loss": self._theory_risk(self._theory_key(cell))}

    def theory_outputs(self, cell):
        return {"loss"}  # exact in every regime

    _THEORY_FIELDS = ("categories", "p", "zipf_exponent", "regime", "type1", "type2", "steps", "alpha0",
                      "alpha_decay", "n0", "n_growth")

    def _theory_key(self, cell) -> tuple:
        """The parameters the exact risk depends on (hashable: :meth:`_theory_risk` caches it)."""
        return tuple(cell[k] for k in self._THEORY_FIELDS)

    @functools.lru_cache(maxsize=256)
    def _theory_risk(self, key: tuple) -> np.ndarray:
        """The exact risk of a cell (:meth:`_theory_key`), computed once for :meth:`theory` and :meth:`scalars`
        (the filter's exact risk, a sum over the kept sizes' law, took half of a 240-cell sweep's time, twice per
        cell; a user trial, 2026-12-06). Read-only."""
        from collapse_jax import multinomial as M

        cell = dict(zip(self._THEORY_FIELDS, key))
        risk = M.theory_risk(self.truth(cell), *recursion_schedules(cell), self._config(cell))
        risk.flags.writeable = False
        return risk

    scalar_descriptions = {
        **_Recursion.scalar_descriptions,
        "theory_vs_replace": "exact r_T of this regime over the exact r_T of the replace regime with the same "
                             "schedules (< 1: the regime (accumulation, the filter) helps)",
        "theory_relative_subsample": "exact r_T / r_0 of the accumulate-subsample regime with the cell's schedules "
                                     "(whatever the cell's regime: its map costs nothing to draw)",
    }

    def scalars(self, cell, summary):
        from collapse_jax import multinomial as M

        p, (alpha, n) = self.truth(cell), recursion_schedules(cell)
        ratio = self._theory_risk(self._theory_key(cell))[-1] / M.replace_risk(p, alpha, n)[-1]
        subsample = M.accumulate_subsample_risk(p, alpha, n)
        return {**super().scalars(cell, summary), "theory_vs_replace": float(ratio),
                "theory_relative_subsample": float(subsample[-1] / subsample[0])}


class GaussianSweep(_Recursion):
    """The Gaussian ``N(mu, sigma^2)`` refitted by sample mean and unbiased variance (seeds 003 C.2, 004)."""

    name = "gaussian"
    backends = ("auto", "native", "jax")
    fields = {
        **_SCHEDULE_FIELDS,
        "mu": Field(0.0, "true mean", float),
        "sigma": Field(1.0, "true standard deviation", float, *_checks.SCALE_RANGE),
        "regime": Field("replace", "training regime", str, choices=("replace", "accumulate", "accumulate-subsample")),
    }

    def check_cell(self, cell):
        super().check_cell(cell)
        if cell["n0"] < 2:
            raise ValueError(f"n0 must be >= 2 for the Gaussian (unbiased variance), got {cell['n0']}")
        if cell["regime"] == "accumulate-subsample":
            from collapse_jax import gaussian as G

            self._check_raw_pool(cell, True, G.GaussianConfig().max_points, "the Gaussian's accumulate-subsample")

    def work(self, cell):
        return self._raw_work(cell, True) if cell["regime"] == "accumulate-subsample" else super().work(cell)

    def check_precision(self, cell, backend):
        from collapse_jax import gaussian as G

        G.check_sizes(recursion_schedules(cell)[1], self.kernels(cell, backend))

    def group_key(self, cell, backend):
        return (cell["mu"], cell["sigma"], cell["steps"], cell["regime"])

    def kernels(self, cell, backend):
        from collapse_jax import gaussian as G

        return G.resolve_backend(backend, cell["regime"])  # accumulate-subsample: jax only

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import gaussian as G

        alpha, n = self._schedule_grid(cells)
        c = cells[0]
        return {"loss": G.simulate(seed, c["mu"], c["sigma"], alpha, n, G.GaussianConfig(c["regime"]),
                                   num_replicates, backend=backend, first_replicate=first_replicate,
                                   memory_budget=memory_budget, mesh=mesh, progress=False)}

    def theory(self, cell):
        from collapse_jax import gaussian as G

        alpha, n = recursion_schedules(cell)
        if cell["regime"] == "replace" and np.all(alpha[1:] == 0):  # exact pure-synthetic W2 only
            return {"loss": G.pure_synthetic_w2(cell["sigma"], n)}
        return {}

    def theory_outputs(self, cell):
        return {"loss"} if cell["regime"] == "replace" and cell["alpha0"] == 0 else set()  # (alpha_1 = alpha0)


class _RawSampleRecursion(_Recursion):
    """Recursions refitted from raw samples (logistic regression by Newton, a Gaussian mixture by EM): the truth of
    seed 003 App. C.2, ``simulate`` sizing the sample buffer for the whole grid of a call."""

    outputs = {"loss": Output("real", "the fit's loss against the truth, per generation (NaN after a failed fit)"),
               "failed": Output("flag", "the fit failed (Newton) or stopped at max_iter before tol (EM)")}
    fields = {**_SCHEDULE_FIELDS, "regime": Field("replace", "training regime", str,
                                                  choices=("replace", "accumulate"))}

    def group_key(self, cell, backend):
        return (cell["steps"], cell["regime"])

    def check_cell(self, cell):
        super().check_cell(cell)
        self._check_raw_pool(cell, cell["regime"] != "replace", self.max_points(), f"the {self.name} refit")

    def work(self, cell):
        return self._raw_work(cell, cell["regime"] != "replace")

    @abc.abstractmethod
    def max_points(self) -> int:
        """The simulator's default limit on one replicate's raw samples."""


class LogisticSweep(_RawSampleRecursion):
    """Logistic regression with intercept refitted by Newton on its own labels (seed 003 App. C.2; truth
    ``beta = (1, -1, 0.5)``, intercept 0.25)."""

    name = "logistic"

    def check_cell(self, cell):
        super().check_cell(cell)
        from collapse_jax import logistic as L

        low = 2 * (len(L.SEED003_C2["beta"]) + 1)
        if cell["n0"] < low:
            raise ValueError(f"n0 must be >= {low} for the logistic model (2 (d + 1)), got {cell['n0']}")

    def max_points(self):
        from collapse_jax import logistic as L

        return L.LogisticConfig().max_points

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import logistic as L

        alpha, n = self._schedule_grid(cells)
        rec = L.simulate(seed, L.SEED003_C2["beta"], L.SEED003_C2["intercept"], alpha, n,
                         L.LogisticConfig(cells[0]["regime"]), num_replicates, backend=backend,
                         first_replicate=first_replicate, memory_budget=memory_budget, mesh=mesh, progress=False)
        return {"loss": rec.risk, "failed": ~rec.ok}


class MixtureSweep(_RawSampleRecursion):
    """A univariate 3-component Gaussian mixture refitted by EM on its own samples (seed 003 App. C.2; weights
    (0.3, 0.4, 0.3), means (-3, 0, 3), sds 0.5); loss: W1 between mixing measures."""

    name = "mixture"

    def check_cell(self, cell):
        super().check_cell(cell)
        from collapse_jax import mixture_refit as MR

        low = 3 * len(MR.SEED003_C2["weights"])
        if cell["n0"] < low:
            raise ValueError(f"n0 must be >= {low} for the mixture (3K), got {cell['n0']}")

    def max_points(self):
        from collapse_jax import mixture_refit as MR

        return MR.MixtureConfig().max_points

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):

        from collapse_jax import mixture_refit as MR

        alpha, n = self._schedule_grid(cells)
        config = MR.MixtureConfig(cells[0]["regime"])
        with _checks.ignoring_warnings(RuntimeWarning):  # the record says which fits stopped at max_iter
            rec = MR.simulate(seed, *(MR.SEED003_C2[k] for k in ("weights", "means", "sds")), alpha, n, config,
                              num_replicates, backend=backend, first_replicate=first_replicate,
                              memory_budget=memory_budget, mesh=mesh, progress=False)
        return {"loss": rec.risk, "failed": ~rec.converged}


class LinearRegressionSweep(SweepModel):
    """Seed 004's fixed-design linear regression retrained on its own labels, ``w* = 1/sqrt(d)`` in every
    coordinate; records the error ``||w_hat_i - w*||^2`` at iterations i = 1..n."""

    name = "linear-regression"
    fields = {
        "dim": Field(5, "features d", int, 1, 10_000),
        "num_samples": Field(20, "samples T per iteration (>= d + 2)", int, 3, 10**7),
        "num_iterations": Field(20, "iterations n", int, 1, 100_000),
        "sigma": Field(1.0, "label noise standard deviation", float, *_checks.SCALE_RANGE),
        "regime": Field("replace", "training regime", str, choices=("replace", "accumulate")),
    }
    outputs = {"error": Output("real", "||w_hat_i - w*||^2 at iteration i = 1..n (step i - 1)")}
    scalar_descriptions = {"final_error": "mean error at the last iteration"}

    def num_steps(self, cell):
        return cell["num_iterations"]

    def check_cell(self, cell):
        if cell["num_samples"] < cell["dim"] + 2:
            raise ValueError(f"num_samples must be >= dim + 2 = {cell['dim'] + 2}, got {cell['num_samples']}")

    def group_key(self, cell, backend):
        return tuple(sorted(cell.items()))  # sigma is a scalar of simulate: one call per cell

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import linear_regression as LR

        outs = []
        for c in cells:
            config = LR.LinearRegressionConfig(c["dim"], c["num_samples"], c["num_iterations"], c["regime"])
            outs.append(LR.simulate(seed, np.full(c["dim"], c["dim"] ** -0.5), c["sigma"], config, num_replicates,
                                    backend=backend, first_replicate=first_replicate, memory_budget=memory_budget,
                                    mesh=mesh, progress=False))
        return {"error": np.stack(outs)}

    def theory(self, cell):
        from collapse_jax import linear_regression as LR

        law = LR.replace_error if cell["regime"] == "replace" else LR.accumulate_error
        return {"error": law(cell["sigma"], cell["dim"], cell["num_samples"], cell["num_iterations"])}

    def theory_outputs(self, cell):
        return {"error"}

    def scalars(self, cell, summary):
        return {"final_error": float(summary["error_mean"][-1])}


# --- the GMM network (seed 000, LLM Web Dynamics) ------------------------------------------------------------------
class GMMNetworkSweep(SweepModel):
    """Networks of GMMs reading and writing one internet (seed 000 Algorithm 1), means ``mu_b = spacing (b - (B-1)/2)``
    in one dimension (B = 2, spacing 10: the seed's Figure 4; B = 11, spacing 5: Figure 6)."""

    name = "gmm-network"
    backends = ("auto", "native", "jax", "pallas")
    fields = {
        "num_models": Field(3, "models n", int, 1, 10_000),
        "points_per_step": Field(3, "points L each model posts per step", int, 1, 100_000),
        "beta": Field(0.5, "fraction of the internet each model reads per step", float, 0.0, 1.0, low_open=True),
        "num_steps": Field(200, "steps T (records t = 0..T)", int, 1, MAX_STEPS),
        "num_components": Field(2, "mixture components B", int, 2, MAX_COMPONENTS),  # (1,000 advertised; a user trial)
        "component_spacing": Field(10.0, "distance between neighbouring component means", float, 0.0, None,
                                   low_open=True),
        "sigma": Field(1.0, "variance of every component", float, 0.0, None, low_open=True),
        "num_human": Field(0, "human points m0 in A(0), drawn from the uniform reference mixture", int, 0, 10**8),
        "dirichlet_a": Field(1.0, "a of the initial weights Pi_i(0) ~ Dirichlet(a)", float, 0.0, None, low_open=True),
        "eps": Field(0.0, "pruning threshold of Algorithm 2", float, 0.0, 1.0),
    }
    outputs = {
        "dnorm": Output("real", "||D(t)||_F, the Frobenius norm of the models' distance matrix"),
        "lost_component": Output("flag", "some model has lost a mixture component (a weight at 0)"),
        "collapsed": Output("flag", "every model is on one and the same component"),
    }
    scalar_descriptions = {
        "final_dnorm": "mean ||D(T)||_F",
        "dnorm_decay_exponent": "slope of log mean ||D(t)||_F against log t over t in [T/10, T]",
        "fraction_lost_component": "fraction of replicates where some model lost a component by t = T",
        "fraction_collapsed": "fraction of replicates collapsed onto one component at t = T",
    }

    def num_steps(self, cell):
        return cell["num_steps"] + 1

    def config(self, cell):
        from collapse_jax import gmm_network as GN

        B = cell["num_components"]
        mu = [[cell["component_spacing"] * (b - (B - 1) / 2)] for b in range(B)]
        return GN.make_config(mu=mu, sigma=cell["sigma"], num_models=cell["num_models"],
                              points_per_step=cell["points_per_step"], beta=cell["beta"],
                              num_steps=cell["num_steps"], num_human=cell["num_human"],
                              dirichlet_a=cell["dirichlet_a"], eps=cell["eps"])

    def check_cell(self, cell):
        self.config(cell)

    def check_precision(self, cell, backend):
        import jax

        from collapse_jax import gmm_network as GN

        config = self.config(cell)  # (10,000 models over 200 steps: 240 GB per native worker thread)
        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
        GN.check_problem_size(config.static, dtype, GN.backend_for(config, backend), 2**31)

    def group_key(self, cell, backend):
        return self.config(cell).static  # sizes only: a grid over beta, a, eps, the means is one call

    def kernels(self, cell, backend):
        from collapse_jax import gmm_network as GN

        return GN.resolve_backend(backend)

    def replicate_bytes(self, cell):
        return (8 + 2 * cell["num_models"]) * self.num_steps(cell)

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import gmm_network as GN

        configs = [self.config(cell) for cell in cells]
        res = GN.simulate(seed, configs[0], num_replicates, params=[GN.make_params(c) for c in configs],
                          backend=backend, first_replicate=first_replicate, memory_budget=memory_budget, mesh=mesh,
                          progress=False)
        lost = np.any(res.alive < cells[0]["num_components"], axis=-1)
        return {"dnorm": res.dnorm, "lost_component": lost, "collapsed": res.collapsed}

    def scalars(self, cell, summary):
        mean = summary["dnorm_mean"]
        T = cell["num_steps"]
        t = np.arange(max(1, T // 10), T + 1)
        ok = mean[t] > 0
        slope = np.polyfit(np.log(t[ok]), np.log(mean[t][ok]), 1)[0] if ok.sum() >= 2 else math.nan
        return {"final_dnorm": float(mean[-1]), "dnorm_decay_exponent": float(slope),
                "fraction_lost_component": float(summary["lost_component_fraction"][-1]),
                "fraction_collapsed": float(summary["collapsed_fraction"][-1])}


# --- the Sigma block study (issue: Sigma intervals; docs/sigma.md) ------------------------------------------------
class SigmaBlockSweep(SweepModel):
    """Sigma estimators on random blocks of a synthetic data set (the ``sigma-precision`` study): a replicate is one
    block of n = ratio d rows; records its log-det error and whether each interval covers the exact log det G (one
    step). Cells of one data set (family, d, N, condition number, t dof) share it and their blocks (prefixes of the
    same random rows, as the study does, drawn by :func:`~collapse_jax.sigma_precision.nested_block_indices` so that
    a cell's blocks do not depend on which cells share its call), so a grid over ``ratio`` is one call."""

    name = "sigma-blocks"
    backends = ("auto", "native", "numpy", "jax")
    fields = {
        "family": Field("isotropic", "data family", str,
                        choices=("isotropic", "anisotropic", "student_t", "unit_norm")),
        "dim": Field(32, "dimension d", int, MIN_DIM, 4096),
        "num_points": Field(100_000, "N, rows of the data set", int, 2, 10**8),
        "ratio": Field(5.0, "block size n = max(d + 1, round(ratio d)), capped at N", float, 1.0, 10**6),
        "condition_number": Field(1e3, "condition number of Sigma (anisotropic family)", float, 1.0,
                                  SP_MAX_CONDITION_NUMBER),
        "t_dof": Field(5.0, "degrees of freedom (student_t family)", float, 4.0, None, low_open=True),
        "level": Field(0.95, "nominal coverage of the intervals", float, 0.0, 1.0, low_open=True, high_open=True),
    }
    _ESTIMATORS = ("seed", "second_order", "wishart", "scaled_wishart", "jackknife")
    outputs = {"error": Output("real", "L_hat - log det G, the scaling estimate's error on the block"),
               **{f"covered_{e}": Output("flag", f"the {e.replace('_', ' ')} interval covers log det G (to "
                                                 "rounding where the block is the whole data set: exact)")
                  for e in _ESTIMATORS}}
    scalar_descriptions = {"bias": "mean error of L_hat", "sd": "standard deviation of the error",
                           **{f"coverage_{e}": f"coverage of the {e.replace('_', ' ')} interval" for e in _ESTIMATORS}}

    def num_steps(self, cell):
        return 1

    def block_size(self, cell) -> int:
        from collapse_jax import sigma_precision as SP

        return int(SP.block_sizes(cell["dim"], cell["num_points"], [cell["ratio"]])[0])

    def check_cell(self, cell):
        if cell["num_points"] <= cell["dim"]:
            raise ValueError(f"num_points N = {cell['num_points']} must exceed dim d = {cell['dim']}")

    def group_key(self, cell, backend):
        return tuple((k, cell[k]) for k in ("family", "dim", "num_points", "condition_number", "t_dof", "level"))

    def kernels(self, cell, backend):
        from collapse_jax import sigma_precision as SP

        return SP.resolve_engine(backend)  # "auto": native with AMX, numpy on other CPUs, jax on GPU/TPU

    def replicate_bytes(self, cell):
        return 8 * len(self.outputs)

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        from collapse_jax import sigma_precision as SP
        from collapse_jax import spectral

        if first_replicate:
            raise ValueError("first_replicate: the block study draws its blocks from the seed only")
        c = cells[0]
        sizes = [self.block_size(cell) for cell in cells]
        ns = np.unique(sizes)
        cfg = SP.PrecisionConfig(t_dof=c["t_dof"], condition_number=c["condition_number"])
        data = SP.family_dataset(seed, 0, c["num_points"], c["dim"], c["family"], cfg)
        # nested rows: a cell's blocks are the same whichever other sizes (cells) share the call
        res = SP.run_cell(data, c["family"], ns, num_replicates, seed=seed, cell=0, engine=backend,
                          rows=SP.nested_block_indices)
        # the statistics as float64 NumPy arrays: a JAX array would round them to float32 where x64 is off
        est = spectral.block_estimates_from_stats(res.logdet_g1, res.m2_insample,
                                                  res.dim, np.asarray(ns, np.float64)[None, :], res.num_points,
                                                  spectral.z_value(c["level"]), res.loo())
        column = [int(np.searchsorted(ns, n)) for n in sizes]
        error = np.asarray(est.l_hat) - res.truth
        out = {"error": error[:, column].T[..., None]}
        # a block that is the whole data set: L_hat is log det G up to rounding (float32 rows: ~3e-7) and every
        # interval the point L_hat; it covers to that rounding (the flags said 0 % where coverage_* says exact, NaN;
        # a user trial, 2026-12-06)
        whole = (ns == res.num_points)[None, :] & (np.abs(error) <= 1e-6 * np.maximum(1.0, np.abs(res.truth)))
        for e in self._ESTIMATORS:
            iv = getattr(est, e)
            covered = (np.abs(res.truth - np.asarray(iv.center)) <= np.asarray(iv.half_width)) | whole
            out[f"covered_{e}"] = covered[:, column].T[..., None]
        return out

    def scalars(self, cell, summary):
        exact = self.block_size(cell) == cell["num_points"]  # the whole population: L_hat is exact, no interval
        return {"bias": float(summary["error_mean"][0]),
                "sd": float(summary["error_sem"][0] * math.sqrt(summary["replicates"])),
                **{f"coverage_{e}": math.nan if exact else float(summary[f"covered_{e}_fraction"][0])
                   for e in self._ESTIMATORS}}


MODELS: dict[str, SweepModel] = {m.name: m for m in (GMMNetworkSweep(), MultinomialSweep(), GaussianSweep(),
                                                      LogisticSweep(), MixtureSweep(), LinearRegressionSweep(),
                                                      SigmaBlockSweep())}
BUILT_IN = frozenset(MODELS)


def register(model: SweepModel) -> SweepModel:
    """Make ``model`` (an instance of a :class:`SweepModel` subclass) runnable by the sweep runner as
    ``simulator = "<model.name>"`` (docs/sweeps.md, "Your own simulator"); returns it. Registering the same name
    again replaces the model (a module imported twice, an edited notebook cell); a built-in name is refused. From
    the command line, ``collapse-jax sweep SPEC --import MODULE`` imports a module that calls this."""
    if not isinstance(model, SweepModel):
        raise ValueError(f"model must be an instance of a SweepModel subclass, got {type(model).__name__}")
    name = model.name
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ValueError(f"model.name must be a name of letters, digits, '_' or '-', got {name!r}")
    if name in BUILT_IN:
        raise ValueError(f"model.name {name!r} is a built-in simulator; choose another name")
    if not model.fields or not model.outputs:
        raise ValueError(f"model {name!r} must define fields (its parameters) and outputs (its records)")
    from collapse_jax.sweep_spec import _INTERNAL, dataset_names

    for what, names, reserved in (("fields", model.fields, dataset_names(model)), ("outputs", model.outputs,
                                                                               _INTERNAL)):
        bad = sorted(set(names) & set(reserved))
        if bad:
            raise ValueError(f"model {name!r}: {what} may not be named {', '.join(bad)} (names of the dataset)")
    for key, f in model.fields.items():
        if not isinstance(f, Field):
            raise ValueError(f"model {name!r}: fields[{key!r}] must be a sweep_models.Field, got {type(f).__name__}")
        if (why := f.check(f.default)) is not None:  # a default outside its range ran every cell leaving it out
            raise ValueError(f"model {name!r}: the default of field {key!r} {why} (a spec that leaves {key} out "
                             "runs it)")  # (NaN records and a negative theory, cell_done true; a user trial)
    for key, o in model.outputs.items():
        if not isinstance(o, Output):
            raise ValueError(f"model {name!r}: outputs[{key!r}] must be a sweep_models.Output, got "
                             f"{type(o).__name__}")
    MODELS[name] = model
    return model


def get(name: str) -> SweepModel:
    """The sweep model called ``name``, or a ValueError listing those registered."""
    if name not in MODELS:
        raise ValueError(f"simulator {name!r} is not registered: choose one of {', '.join(sorted(MODELS))}, or "
                         "register your own (sweep_models.register; on the command line --import MODULE)")
    return MODELS[name]
