"""The configuration of the Sigma precision sweep (:mod:`collapse_jax.sigma_precision`) and what its checks need:
its defaults and limits, the registry of real-data families, and the leverage jackknife's pair count
(:data:`PAIR_OFFSETS`, which :mod:`collapse_jax.spectral` uses). A module without JAX: ``sigma-precision --help``
and ``sweep --help`` build their parsers from it, and ``collapse-jax --help`` must not import JAX (81 % of the
2.7 s it took on a 2-core CPU)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from collapse_jax import _checks

PAIR_OFFSETS = 4  # row pairs (i, i + k mod n), k = 1..4: 4 n pairs per block, 4 n d multiply-adds (spectral's)
FAMILIES = ("isotropic", "anisotropic", "student_t", "unit_norm")
DEFAULT_RATIOS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
DEFAULT_DIMS = (8, 32, 128, 384)
DEFAULT_BLOCKS = (4000, 4000, 2000, 1000)
# The largest condition number of the anisotropic family: its data's Gram stays positive definite in float64 (inf
# or ~1e16 failed late with an error that named no option; a user trial, 2026-12-05)
MAX_CONDITION_NUMBER = 1e12
ENGINES = ("auto", "native", "numpy", "jax")


@dataclass(frozen=True)
class PrecisionConfig:
    """Static configuration of one sweep (every field is recorded in ``config.json``).

    ``ratios`` are block sizes as multiples of ``d``; ratio 1 means ``n = d + 1``; sizes are rounded, made unique and
    capped at ``N``. ``blocks`` gives the number of random blocks per cell for each entry of ``dims``.
    """

    dims: tuple[int, ...] = field(default=DEFAULT_DIMS, metadata={"help": "dimensions d, each >= 3"})
    blocks: tuple[int, ...] = field(default=DEFAULT_BLOCKS, metadata={
        "help": "random blocks per cell: one entry per dimension, or one for all",
        "default_help": f"{','.join(map(str, DEFAULT_BLOCKS))} for d = {', '.join(map(str, DEFAULT_DIMS))}; other d "
                        "take the entry of the next listed d"})
    families: tuple[str, ...] = field(default_factory=lambda: default_families(), metadata={
        "help": f"data families from {', '.join(FAMILIES)} and the registered real-data families (real-data "
                "families are in the default when installed and have cells at their own d only); empty ('') to run "
                "only --embeddings",
        "default_help": "the four synthetic families and every installed real-data family"})
    num_points: int = field(default=1_000_000, metadata={"help": "N, rows in each cell's data set"})
    ratios: tuple[float, ...] = field(default=DEFAULT_RATIOS, metadata={
        "help": "block sizes as multiples n/d (1 means n = d+1); rounded, capped at N"})
    level: float = field(default=0.95, metadata={"help": "nominal coverage of the intervals"})
    seed: int = field(default=0, metadata={"help": "data sets and block draws"})
    t_dof: float = field(default=5.0, metadata={
        "help": "degrees of freedom of the student_t family, in (4, inf): finite fourth moment (the isotropic "
                "family is its limit)"})
    condition_number: float = field(default=1e3, metadata={
        "help": "condition number of Sigma in the anisotropic family (geometric spectrum), in [1, 1e12]"})
    embeddings: str | None = field(default=None, metadata={
        "help": "optional .npy file (num_points, dim) of real embeddings, e.g. from the llm extra's sentence "
                "encoder; scored as one more cell with its own N and d", "metavar": "FILE", "default_help": "none"})
    engine: str = field(default="auto", metadata={
        "help": "block kernel: native (Intel AMX, C++; CPUs that have it), numpy (float32 BLAS, any CPU), jax (XLA; "
                "GPUs), auto (native, else numpy on CPU; jax elsewhere)", "choices": ENGINES})

    def validate(self) -> "PrecisionConfig":
        if len(self.dims) == 0 and self.embeddings is None:
            raise ValueError("dims must name at least one dimension (or give embeddings = a .npy file)")
        for d in self.dims:
            _checks.positive_int("dims", d)
            check_min_dim("dims", d)
        if len(self.blocks) != len(self.dims) and not (len(self.blocks) == 1):
            raise ValueError(f"blocks must have one entry per dimension ({len(self.dims)}) or a single entry, "
                             f"got {len(self.blocks)}")
        for b in self.blocks:
            _checks.positive_int("blocks", b)
        for f in self.families:
            if f not in FAMILIES and f not in populations():
                raise ValueError(f"families must be among {', '.join(FAMILIES + tuple(POPULATIONS))}; got unknown "
                                 f"family {f!r}")
            if f in POPULATIONS and not population_available(f):
                raise ValueError(f"family {f!r} needs the llm extra: {LLM_EXTRA_HINT}")
        _checks.positive_int("num_points", self.num_points)
        if not self.ratios:  # (it failed later, after the run folder was written, as "no block size n")
            raise ValueError("ratios must name at least one block size ratio n / d >= 1")
        for r in self.ratios:
            _checks.in_interval("ratios", r, 1.0, math.inf, high_open=True)
        for name in ("dims", "families", "ratios"):  # a repeat ran twice, on other data, under one table label
            # (a repeated ratio was dropped without a word where a repeated dim was refused; a user trial)
            values = list(getattr(self, name))
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {', '.join(map(str, values))}")
        _checks.in_interval("level", self.level, 0.0, 1.0, low_open=True, high_open=True)
        _checks.random_seed("seed", self.seed)
        # (inf passed, then drew inf / inf = NaN rows mid-run after the run folder was written; a user trial,
        # 2026-12-06: the Gaussian limit is the isotropic family)
        _checks.in_interval("t_dof", self.t_dof, 4.0, math.inf, low_open=True, high_open=True)
        # (inf, or near 1e16, left the anisotropic data's Gram singular in float64: a late error naming no option)
        _checks.in_interval("condition_number", self.condition_number, 1.0, MAX_CONDITION_NUMBER)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "native":  # (a RuntimeError traceback after the run folder was written, before)
            from collapse_jax import _native

            if not _native.amx_available():  # (it said "(here: none)" where only AMX was missing; a user trial)
                why = ("the native kernels are unavailable here" if _native.spectral_library() is None
                       else "this CPU has no AMX (or the OS grants no tile state)")
                raise ValueError(f"engine 'native' needs an AMX-capable x86 CPU and the native kernels: {why}; "
                                 "use engine 'numpy' or 'auto'")
        for d in self.dims:
            if self.families and self.num_points <= d:
                raise ValueError(f"num_points N={self.num_points} must exceed the dimension d={d}")
        return self

    @staticmethod
    def default_blocks(dims) -> tuple[int, ...]:
        """Default blocks per cell for each dimension (a d = 384 block costs ~0.6 CPU-seconds with the numpy engine,
        ~0.08 with the native AMX one; see docs/benchmarks.md)."""
        return tuple(DEFAULT_BLOCKS[min(int(np.searchsorted(DEFAULT_DIMS, d)), len(DEFAULT_DIMS) - 1)]
                     for d in dims) or (DEFAULT_BLOCKS[-1],)

    def blocks_for(self, index: int) -> int:
        return self.blocks[0] if len(self.blocks) == 1 else self.blocks[index]


@dataclass(frozen=True)
class Population:
    dim: int
    loader: str | Callable[[], np.ndarray]  # returns the (N, dim) rows; or "module:function", imported when run
    modules: tuple[str, ...]   # importable modules it needs (looked up with find_spec, nothing imported)
    about: str


# Real-data families are registered by other packages in this entry-point group (each entry names a Population);
# the core reads the group and never names them. llm_bridge registers "sentences" (pyproject.toml).
POPULATION_GROUP = "collapse_jax.populations"
POPULATIONS: dict[str, Population] = {}
_REGISTRY_READ: list[bool] = []


def populations() -> dict[str, Population]:
    """The registered real-data families (read from :data:`POPULATION_GROUP` once; entries that fail to load are
    skipped with a warning)."""
    if not _REGISTRY_READ:
        import importlib.metadata
        import warnings

        for entry in sorted(importlib.metadata.entry_points(group=POPULATION_GROUP), key=lambda e: e.name):
            try:
                spec = entry.load()
            except Exception as exc:  # noqa: BLE001 - a broken adapter must not break the core
                warnings.warn(f"population {entry.name!r} ({entry.value}) could not be loaded: {exc!r}",
                              RuntimeWarning, stacklevel=_checks.user_stacklevel())
                continue
            POPULATIONS.setdefault(entry.name, spec)
        _REGISTRY_READ.append(True)
    return POPULATIONS


LLM_EXTRA_HINT = 'python3 -m pip install torch==2.13.0 && python3 -m pip install -e ".[llm]"'


def population_available(family: str) -> bool:
    """Whether a real-data family's optional dependencies are installed (looked up, not imported)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in populations()[family].modules)


def default_families() -> tuple[str, ...]:
    """The synthetic families, plus every real-data family whose dependencies are installed."""
    return FAMILIES + tuple(f for f in populations() if population_available(f))


def family_has_dim(family: str, dim: int) -> bool:
    """Whether a family has a cell at dimension ``dim`` (synthetic families: every d; real ones: their own d)."""
    return family not in populations() or POPULATIONS[family].dim == dim


# The leverage jackknife's sampled pairs (i, i + k mod n), k = 1 .. PAIR_OFFSETS, are distinct rows only in
# blocks of more than PAIR_OFFSETS rows, and the sweep's blocks start at n = d + 1 (the jackknife's at d + 2), so d
# must be at least PAIR_OFFSETS - 1. (Smaller d crashed mid-sweep with a misleading message: the numpy engine's pair
# slicing assumes n > PAIR_OFFSETS.)
MIN_DIM = PAIR_OFFSETS - 1


def check_min_dim(name: str, d: int) -> None:
    """Raises unless ``d >= MIN_DIM`` (the sweep's smallest jackknife block, ``d + 2`` rows, must hold the sampled
    pairs' ``PAIR_OFFSETS`` distinct partners of every row)."""
    if d < MIN_DIM:
        raise ValueError(f"{name}: the dimension d must be at least {MIN_DIM}, got {d} (the leverage jackknife's "
                         f"smallest block, d + 2 rows, must give each row {PAIR_OFFSETS} distinct partners)")
