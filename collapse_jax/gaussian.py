"""Gaussian model ``N(mu, sigma^2)`` refitted each generation by sample mean and unbiased variance (seeds 003 C.2, 004).

Training data at generation t: ``n_t`` draws from ``alpha_t N(mu, sigma^2) + (1 - alpha_t) N(mu_hat, sigma_hat^2)``.
Simulated through exact sufficient statistics, never ``n_t`` draws: the real count is ``Binomial(n_t, alpha_t)``;
a group of N draws from ``N(m, v)`` has mean ``~ N(m, v/N)`` and sum of squared deviations ``~ v chi2_{N-1}``,
independent; groups (and, for ``accumulate``, all generations so far) are pooled exactly (Chan et al.'s update).

Loss: ``(mu_hat - mu)^2 + (sigma_hat - sigma)^2``, the risk of seed 003 C.2, which is also ``W_2^2`` between the
fitted and the true Gaussian (seed 004). Theory for pure synthetic data (``alpha_t = 0``, replace):
exact ``E W_2^2 = sigma^2 sum_{i<=t} 1/M_i + 2 sigma^2 (1 - prod_{i<=t} c(M_i - 1))`` with
``c(m) = E sqrt(chi2_m / m)``, and Shumailov et al.'s first order ``(3/2) sigma^2 sum_{i<=t} 1/M_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from collapse_jax import _checks, driver, schedules
from collapse_jax.multinomial import binomial


@dataclass(frozen=True)
class GaussianConfig:
    """Static configuration: ``regime`` is ``"replace"`` or ``"accumulate"``."""

    regime: str = "replace"

    def __post_init__(self):
        if self.regime not in ("replace", "accumulate"):
            raise ValueError(f"regime must be 'replace' or 'accumulate', got {self.regime!r}")


def _group(key, size, mean, var):
    """Sufficient statistics (size, mean, sum of squared deviations) of ``size`` draws from ``N(mean, var)``."""
    k_mean, k_chi = jax.random.split(key)
    safe = jnp.maximum(size, 1.0)
    m = mean + jnp.sqrt(var / safe) * jax.random.normal(k_mean, (), mean.dtype)
    df = jnp.maximum(size - 1.0, 0.0)
    chi2 = 2.0 * jax.random.gamma(k_chi, jnp.maximum(df / 2.0, 1e-3), (), mean.dtype)
    ss = jnp.where(df > 0, var * chi2, 0.0)
    return size, jnp.where(size > 0, m, 0.0), ss


def _pool(a, b):
    """Exact pooling of two groups' (size, mean, sum of squared deviations)."""
    n1, m1, s1 = a
    n2, m2, s2 = b
    n = n1 + n2
    safe = jnp.maximum(n, 1.0)
    delta = m2 - m1
    return n, m1 + delta * n2 / safe, s1 + s2 + delta * delta * n1 * n2 / safe


def replicate_loss(key, mu, sigma, alpha, n, config: GaussianConfig):
    """Kernel for one replicate: ``(mu_hat_t - mu)^2 + (sigma_hat_t - sigma)^2`` for t = 0..T."""
    init_key, steps_key = jax.random.split(key)
    var = sigma * sigma
    stats0 = _group(init_key, n[0], mu, var)

    def fit(s):
        size, m, ss = s
        return m, ss / (size - 1.0)

    def loss(m, v):
        return (m - mu) ** 2 + (jnp.sqrt(v) - sigma) ** 2

    def step(carry, inputs):
        acc, m_hat, v_hat = carry
        k, a_t, n_t = inputs
        k_split, k_real, k_syn = jax.random.split(k, 3)
        n_real = binomial(k_split, n_t, a_t)
        new = _pool(_group(k_real, n_real, mu, var), _group(k_syn, n_t - n_real, m_hat, v_hat))
        acc = _pool(acc, new) if config.regime == "accumulate" else new
        m_new, v_new = fit(acc)
        return (acc, m_new, v_new), loss(m_new, v_new)

    m0, v0 = fit(stats0)
    keys = jax.random.split(steps_key, alpha.shape[0] - 1)
    _, losses = jax.lax.scan(step, (stats0, m0, v0), (keys, alpha[1:], n[1:]))
    return jnp.concatenate([loss(m0, v0)[None], losses])


def simulate(seed, mu: float, sigma: float, alpha, n, config: GaussianConfig = GaussianConfig(),
             num_replicates: int = 100, *, progress: bool | None = None) -> np.ndarray:
    """Monte Carlo losses, (R, T + 1) for 1-D schedules or (G, R, T + 1) for grids. Requires ``n_t >= 2``."""
    mu = _checks.in_interval("mu", mu, -math.inf, math.inf, low_open=True, high_open=True)
    sigma = _checks.in_interval("sigma", sigma, 0.0, math.inf, low_open=True, high_open=True)
    alpha, n = schedules.check_pair(alpha, n)
    if np.any(n < 2):
        raise ValueError(f"n must be >= 2 at every step (unbiased variance), got min {n.min():.0f}")
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    grid = alpha.ndim == 2 or n.ndim == 2
    alpha2, n2 = (np.array(x) for x in np.broadcast_arrays(np.atleast_2d(alpha), np.atleast_2d(n)))
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = tuple(np.asarray(x, dtype) for x in (mu, sigma, alpha2, n2))
    out = driver.run_replicates(_kernel, params, config, num_replicates, seed, grid_axes=(None, None, 0, 0),
                                progress=progress, desc="gaussian replicates")
    return out if grid else out[0]


def _kernel(key, params, config: GaussianConfig):
    """:func:`replicate_loss` in the driver's ``kernel(key, params, config)`` form."""
    return replicate_loss(key, *params, config)


def _c(m):
    """``E sqrt(chi2_m / m) = sqrt(2/m) Gamma((m+1)/2) / Gamma(m/2)``."""
    m = np.asarray(m, dtype=np.float64)
    return np.exp(0.5 * np.log(2.0 / m) + special.gammaln((m + 1) / 2) - special.gammaln(m / 2))


def pure_synthetic_w2(sigma: float, n) -> np.ndarray:
    """Exact ``E W_2^2`` after t = 0..T generations of pure synthetic refitting on ``n_t`` samples."""
    n = schedules.check_sizes(n)
    return sigma ** 2 * np.cumsum(1.0 / n) + 2 * sigma ** 2 * (1 - np.cumprod(_c(n - 1)))


def shumailov_first_order_w2(sigma: float, n) -> np.ndarray:
    """Shumailov et al. (seed 004): ``E W_2^2 ~ (3/2) sigma^2 (1/M_0 + ... + 1/M_t)`` to first order."""
    n = schedules.check_sizes(n)
    return 1.5 * sigma ** 2 * np.cumsum(1.0 / n)


def validation_rows(table, *, num_replicates: int, seed: int) -> None:
    """Rows for ``collapse-jax validate``."""
    steps = 30
    settings = [(2.0, 0.0, schedules.constant_size(100, steps), "M=100"),
                (1.0, 1.0, schedules.constant_size(10, steps), "M=10"),
                (1.5, -1.0, schedules.linear_size(20, steps), "M=20(t+1)")]
    for sigma, mu, n, name in settings:
        alpha = schedules.pure_synthetic_alpha(steps)
        loss = simulate(seed, mu, sigma, alpha, n, GaussianConfig(), num_replicates)
        table.add_mean("Gaussian pure synthetic: exact E W2^2 (sample mean, unbiased variance)",
                       f"sigma={sigma}, {name}, t={steps}", "exact", loss[:, steps], pure_synthetic_w2(sigma, n)[steps])
        table.add_mean("Shumailov first-order E W2^2 ~ (3/2) sigma^2 sum 1/M_i", f"sigma={sigma}, {name}, t={steps}",
                       "approximation", loss[:, steps], shumailov_first_order_w2(sigma, n)[steps])
