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

# Sigma spectral estimators (seed 002) and distance estimators shared with the GMM network and the LLM side.
from collapse_jax import sigma_monitor, sigma_precision, spectral  # noqa: E402
from collapse_jax.distance import classical_mds, within_model_spread  # noqa: E402
from collapse_jax.sigma_monitor import SigmaMonitor  # noqa: E402
from collapse_jax.spectral import block_estimates, gram_streaming, logdet  # noqa: E402

__all__ += ["SigmaMonitor", "block_estimates", "classical_mds", "gram_streaming", "logdet", "sigma_monitor",
            "sigma_precision", "spectral", "within_model_spread"]
