"""collapse-jax: Monte Carlo simulators and closed-form theory for model collapse, in JAX.

The public API is what this module re-exports.
"""

from collapse_jax.results import RunFolder
from collapse_jax.replicates import replicate_keys, replicate_mesh, replicate_sharding, run_sharded

__version__ = "0.1.0"

__all__ = [
    "RunFolder",
    "replicate_keys",
    "replicate_mesh",
    "replicate_sharding",
    "run_sharded",
]
