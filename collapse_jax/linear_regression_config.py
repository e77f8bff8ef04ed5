"""The static configuration of :mod:`collapse_jax.linear_regression`, in a module without JAX: the
``recursions-linreg`` command checks its defaults while its parser is built, and ``collapse-jax --help`` must not
import JAX (it was 81 % of the 2.7 s ``--help`` took on a 2-core CPU)."""

from __future__ import annotations

from dataclasses import dataclass

from collapse_jax import _checks


@dataclass(frozen=True)
class LinearRegressionConfig:
    """Static configuration: ``dim`` d, ``num_samples`` T (>= d + 2), ``num_iterations`` n, ``regime``."""

    dim: int = 5
    num_samples: int = 20
    num_iterations: int = 20
    regime: str = "replace"

    def __post_init__(self):
        _checks.positive_int("dim", self.dim)
        _checks.positive_int("num_iterations", self.num_iterations)
        if _checks.positive_int("num_samples", self.num_samples) < self.dim + 2:
            raise ValueError(f"num_samples must be >= dim + 2 = {self.dim + 2} (finite error), "
                             f"got {self.num_samples}")
        if self.regime not in ("replace", "accumulate"):
            raise ValueError(f"regime must be 'replace' or 'accumulate', got {self.regime!r}")
