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

# Iterative-training recursions (seeds 003 and 004).
from collapse_jax import gaussian, linear_regression, multinomial, schedules  # noqa: E402
from collapse_jax.multinomial import MultinomialConfig, sample_multinomial  # noqa: E402

__all__ += ["gaussian", "linear_regression", "multinomial", "schedules", "MultinomialConfig", "sample_multinomial"]
