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
from typing import NamedTuple

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


class Group(NamedTuple):
    """Sufficient statistics of a group of draws, each a scalar: size N, mean, sum of squared deviations."""

    size: jax.Array
    mean: jax.Array
    ss: jax.Array


class Params(NamedTuple):
    """What a grid may vary: the true ``mu``, ``sigma`` (scalars) and the schedules ``alpha``, ``n`` (step,) =
    (T + 1,), index 0 the real data of generation 0."""

    mu: jax.Array
    sigma: jax.Array
    alpha: jax.Array
    n: jax.Array


class State(NamedTuple):
    """One replicate after generation t: the truth and the training data of the current fit (replace: generation
    t's draws; accumulate: all draws of generations 0..t)."""

    mu: jax.Array  # ()
    sigma: jax.Array  # ()
    data: Group


def _group(key, size, mean, var) -> Group:
    """Sufficient statistics of ``size`` draws from ``N(mean, var)``: mean ``~ N(mean, var / N)``, sum of squared
    deviations ``~ var chi2_{N-1}``, independent."""
    k_mean, k_chi = jax.random.split(key)
    safe = jnp.maximum(size, 1.0)
    m = mean + jnp.sqrt(var / safe) * jax.random.normal(k_mean, (), mean.dtype)
    df = jnp.maximum(size - 1.0, 0.0)
    chi2 = 2.0 * jax.random.gamma(k_chi, jnp.maximum(df / 2.0, 1e-3), (), mean.dtype)
    ss = jnp.where(df > 0, var * chi2, 0.0)
    return Group(size, jnp.where(size > 0, m, 0.0), ss)


def _pool(a: Group, b: Group) -> Group:
    """Exact pooling of two groups (Chan et al.'s update)."""
    n = a.size + b.size
    safe = jnp.maximum(n, 1.0)
    delta = b.mean - a.mean
    return Group(n, a.mean + delta * b.size / safe, a.ss + b.ss + delta * delta * a.size * b.size / safe)


def fit(data: Group) -> tuple[jax.Array, jax.Array]:
    """``(mu_hat, sigma_hat^2)``: sample mean and unbiased variance."""
    return data.mean, data.ss / (data.size - 1.0)


def init(key: jax.Array, params: Params, config: GaussianConfig) -> State:
    """Generation 0: ``n_0`` real draws from ``N(mu, sigma^2)``."""
    return State(params.mu, params.sigma, _group(key, params.n[0], params.mu, params.sigma * params.sigma))


def step_inputs(params: Params, config: GaussianConfig) -> tuple[jax.Array, jax.Array]:
    """``(alpha_t, n_t)`` for t = 1..T, each (step,) = (T,)."""
    return params.alpha[1:], params.n[1:]


def step(key: jax.Array, state: State, inputs: tuple[jax.Array, jax.Array], config: GaussianConfig
         ) -> tuple[State, jax.Array]:
    """Generation t (seed 003 Eq. 1): ``n_t`` draws from ``alpha_t N(mu, sigma^2) + (1 - alpha_t) N(mu_hat,
    sigma_hat^2)``, the real count ``Binomial(n_t, alpha_t)``; refit on them (replace) or on all data (accumulate).
    Record: the loss of the new fit."""
    alpha_t, n_t = inputs
    k_split, k_real, k_syn = jax.random.split(key, 3)
    mean, var = fit(state.data)
    n_real = binomial(k_split, n_t, alpha_t)
    new = _pool(_group(k_real, n_real, state.mu, state.sigma * state.sigma), _group(k_syn, n_t - n_real, mean, var))
    state = state._replace(data=_pool(state.data, new) if config.regime == "accumulate" else new)
    return state, observe(state, config)


def observe(state: State, config: GaussianConfig) -> jax.Array:
    """``(mu_hat - mu)^2 + (sigma_hat - sigma)^2`` (= ``W_2^2`` between the fitted and the true Gaussian)."""
    mean, var = fit(state.data)
    return (mean - state.mu) ** 2 + (jnp.sqrt(var) - state.sigma) ** 2


kernel = driver.scan_kernel(init, step, step_inputs, observe)
kernel.__doc__ = """One replicate: the losses for t = 0..T, (step,) = (T + 1,) (:func:`driver.scan_kernel`)."""


def simulate(seed, mu: float, sigma: float, alpha, n, config: GaussianConfig = GaussianConfig(),
             num_replicates: int = 100, *, backend: str = "auto", first_replicate: int = 0,
             chunk_size: int | None = None, memory_budget: int | None = None, mesh=None,
             progress: bool | None = None) -> np.ndarray:
    """Monte Carlo losses, (replicate, step) = (R, T + 1) for 1-D schedules or (grid, replicate, step) for (G, T + 1)
    grids. Requires ``n_t >= 2``. Keywords: docs/driver.md (``backend``: "auto" or "jax", the only implementation).
    """
    mu = _checks.in_interval("mu", mu, -math.inf, math.inf, low_open=True, high_open=True)
    sigma = _checks.in_interval("sigma", sigma, 0.0, math.inf, low_open=True, high_open=True)
    alpha, n = schedules.check_pair(alpha, n)
    if np.any(n < 2):
        raise ValueError(f"n must be >= 2 at every step (unbiased variance), got min {n.min():.0f}")
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    driver.check_jax_backend(backend, "Gaussian")
    grid, alpha2, n2 = schedules.as_grid(alpha, n)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = Params(*(np.asarray(x, dtype) for x in (mu, sigma, alpha2, n2)))
    out = driver.run_replicates(kernel, params, config, num_replicates, seed, grid_axes=Params(None, None, 0, 0),
                                first_replicate=first_replicate, chunk_size=chunk_size, memory_budget=memory_budget,
                                mesh=mesh, progress=progress, desc="gaussian replicates")
    return out if grid else out[0]


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
