"""collapse-jax: Monte Carlo simulators and closed-form theory for model collapse, in JAX.

The public API is what this module re-exports.
"""

from collapse_jax import driver
from collapse_jax.results import RunFolder
from collapse_jax.replicates import replicate_keys, replicate_mesh, replicate_sharding

# LLM Web Dynamics: the network of interacting GMMs and its theory (seed 000).
from collapse_jax import gmm_network, gmm_theory  # noqa: E402
from collapse_jax.gmm_network import GMMNetworkConfig  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GMMNetworkConfig",
    "gmm_network",
    "gmm_theory",
    "RunFolder",
    "driver",
    "replicate_keys",
    "replicate_mesh",
    "replicate_sharding",
]

# Iterative-training recursions (seeds 003 and 004).
from collapse_jax import gaussian, linear_regression, logistic, mixture_refit, multinomial, schedules  # noqa: E402
from collapse_jax.logistic import LogisticConfig  # noqa: E402
from collapse_jax.mixture_refit import MixtureConfig  # noqa: E402
from collapse_jax.multinomial import MultinomialConfig, sample_multinomial  # noqa: E402

__all__ += ["gaussian", "linear_regression", "logistic", "mixture_refit", "multinomial", "schedules",
            "LogisticConfig", "MixtureConfig", "MultinomialConfig", "sample_multinomial"]

# Sigma spectral estimators (seed 002) and distance estimators shared with the GMM network and the LLM side.
from collapse_jax import sigma_monitor, sigma_precision, spectral  # noqa: E402
from collapse_jax.distance import classical_mds, within_model_spread  # noqa: E402
from collapse_jax.sigma_monitor import SigmaMonitor  # noqa: E402
from collapse_jax.spectral import block_estimates, gram_streaming, logdet  # noqa: E402

__all__ += ["SigmaMonitor", "block_estimates", "classical_mds", "gram_streaming", "logdet", "sigma_monitor",
            "sigma_precision", "spectral", "within_model_spread"]
