"""Gaussian model ``N(mu, sigma^2)`` refitted each generation by sample mean and unbiased variance (seeds 003 C.2, 004).

Training data at generation t: ``n_t`` draws from ``alpha_t N(mu, sigma^2) + (1 - alpha_t) N(mu_hat, sigma_hat^2)``.
Simulated through exact sufficient statistics, never ``n_t`` draws: the real count is ``Binomial(n_t, alpha_t)``;
a group of N draws from ``N(m, v)`` has mean ``~ N(m, v/N)`` and sum of squared deviations ``~ v chi2_{N-1}``,
independent; groups (and, for ``accumulate``, all generations so far) are pooled exactly (Chan et al.'s update).
``accumulate-subsample`` (a fixed training budget, Kazdan et al. 2024) fits on ``n_t`` points drawn without
replacement from all points of generations 0..t: a subsample's mean and variance need the points themselves, so this
regime keeps a raw-sample pool of static size ``n_0 + ... + n_T`` per replicate (:func:`sized_config`) and costs
O(n_t) per generation (a partial Fisher-Yates shuffle picks the subsample, :func:`subsample_fit`). Its risk has no
closed form (it needs ``E sigma_hat``), but the fit's first two moments do, in every regime and for any ``alpha``:
:func:`fit_moments` (``E mu_hat_t = mu``,
``E (mu_hat_t - mu)^2``, ``E sigma_hat_t^2``, and from them a lower bound on ``E W_2^2``), checked against the fits
that ``GaussianConfig(record="fit")`` records.

Backends: the JAX kernel (:func:`kernel`, any device, every regime) and, for replace and accumulate on a CPU, a native
C++ kernel (:func:`batched_native`, ``collapse_jax/_native/gaussian.cc``: the same exact laws, a SplitMix64 stream per
replicate, only the groups that are not empty drawn), which ``backend="auto"`` picks there.

Loss: ``(mu_hat - mu)^2 + (sigma_hat - sigma)^2``, the risk of seed 003 C.2, which is also ``W_2^2`` between the
fitted and the true Gaussian (seed 004). Theory for pure synthetic data (``alpha_t = 0``, replace):
exact ``E W_2^2 = sigma^2 sum_{i<=t} 1/M_i + 2 sigma^2 (1 - prod_{i<=t} c(M_i - 1))`` with
``c(m) = E sqrt(chi2_m / m)``, and Shumailov et al.'s first order ``(3/2) sigma^2 sum_{i<=t} 1/M_i``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from collapse_jax import _checks, _sample_buffer, driver, schedules
from collapse_jax.multinomial import binomial
from collapse_jax.replicates import check_mesh, check_replicate_keys

REGIMES = ("replace", "accumulate", "accumulate-subsample")
RECORDS = ("loss", "fit")


@dataclass(frozen=True)
class GaussianConfig:
    """Static configuration.

    Attributes:
      regime: ``"replace"`` (fit on generation t's draws), ``"accumulate"`` (on all draws so far) or
        ``"accumulate-subsample"`` (on ``n_t`` of all draws so far, chosen uniformly without replacement).
      max_points: accumulate-subsample only: the largest raw-sample pool allowed per replicate (time and memory).
      buffer: accumulate-subsample only: rows of each replicate's pool, a static size: None until
        :func:`sized_config` sets it for a schedule (``simulate`` does); at least ``n_0 + ... + n_T + 64``.
      max_budget: accumulate-subsample only: the largest ``n_t`` (a static bound on the subsample's steps), set with
        ``buffer`` by :func:`sized_config`.
      record: what each generation records: ``"loss"`` (``(mu_hat - mu)^2 + (sigma_hat - sigma)^2``) or ``"fit"``
        (the pair ``(mu_hat, sigma_hat^2)``, the unbiased variance; the moments :func:`fit_moments` gives).
    """

    regime: str = "replace"
    max_points: int = 2_000_000
    buffer: int | None = None
    max_budget: int | None = None
    record: str = "loss"

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.record not in RECORDS:
            raise ValueError(f"record must be one of {RECORDS}, got {self.record!r}")
        _checks.positive_int("max_points", self.max_points)
        if self.buffer is not None:
            _checks.positive_int("buffer", self.buffer)
        if self.max_budget is not None:
            _checks.positive_int("max_budget", self.max_budget)


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
    """One replicate after generation t: the truth, the training data of the current fit (replace: generation
    t's draws; accumulate: all draws of generations 0..t; accumulate-subsample: ``n_t`` of those), the number of
    draws of generations 0..t and, for accumulate-subsample, those draws (the pool: its first ``total`` rows; shape
    (0,) in the other regimes) and a permutation of the pool's rows that each generation's partial Fisher-Yates
    shuffle continues (:func:`subsample_fit`; rows from ``total`` on are still in place)."""

    mu: jax.Array  # ()
    sigma: jax.Array  # ()
    data: Group
    pool: jax.Array  # (sample,) = (buffer,), or (0,)
    total: jax.Array  # ()
    perm: jax.Array  # (sample,) int32, or (0,)


def _group(key, size, mean, var) -> Group:
    """Sufficient statistics of ``size`` draws from ``N(mean, var)``: mean ``~ N(mean, var / N)``, sum of squared
    deviations ``~ var chi2_{N-1}``, independent. The mean's normal and the chi-square's first proposals come from
    one call of the generator (:func:`_normals_and_uniforms`)."""
    normals, uniforms = _normals_and_uniforms(key, 1 + CHI_SQUARE_PROPOSALS, CHI_SQUARE_PROPOSALS, mean.dtype)
    safe = jnp.maximum(size, 1.0)
    m = mean + jnp.sqrt(var / safe) * normals[0]
    df = jnp.maximum(size - 1.0, 0.0)
    ss = jnp.where(df > 0, var * _chi_square(key, df, normals[1:], uniforms), 0.0)
    return Group(size, jnp.where(size > 0, m, 0.0), ss)


# Marsaglia-Tsang proposals drawn at once per round: each is accepted with probability >= 0.95 (shape >= 1), so a
# round of four leaves a draw undecided with probability below 7e-6 and another round is rarely needed.
CHI_SQUARE_PROPOSALS = 4


def _normals_and_uniforms(key, normals: int, uniforms: int, dtype):
    """``normals`` standard normals and ``uniforms`` uniforms on (0, 1) from one ``jax.random.uniform`` call on
    (-1, 1) (the normals as ``jax.random.normal`` forms them, ``sqrt 2 erfinv(v)``; the uniforms ``(v + 1) / 2``):
    the Threefry blocks behind each key split and each call were most of the Gaussian simulator's time."""
    v = jax.random.uniform(key, (normals + uniforms,), dtype, minval=jnp.nextafter(jnp.asarray(-1.0, dtype), 0.0),
                           maxval=1.0)
    return np.sqrt(2.0).astype(dtype) * jax.lax.erf_inv(v[:normals]), (v[normals:] + 1.0) / 2.0


def chi_square(key, df):
    """One exact draw from ``chi2_df`` for a whole number ``df >= 0`` (a scalar; a floating array's dtype is the
    draw's, other numbers draw in the default float; NaN for a negative, infinite or NaN ``df``, whose rounds never
    ended before, beyond the reach of Ctrl-C: a user trial, 2026-12-06): 0 for ``df = 0``, ``z^2`` for ``df = 1``,
    else ``2 Gamma(df / 2)`` by Marsaglia and Tsang's method (2000), with :data:`CHI_SQUARE_PROPOSALS` proposals
    per round and more rounds (``lax.while_loop``) only while none is accepted. ``jax.random.gamma`` draws one
    proposal per loop trip with its own key splits: the Gaussian simulator spent nearly all its time there, 26x
    slower than NumPy (40x on a loaded machine; a user trial, 2026-12-06). The
    acceptance test ``log u < x^2 / 2 + d - d v + d log v`` (``v = (1 + c x)^3``) is evaluated as ``d h(c x)`` with
    ``h(y) = 3 (log1p(y) - y + y^2 / 2) - y^3``, its series for small ``|y|``: the direct sum cancels to nothing
    when ``d`` is large (``d = 5e11`` at ``n = 10^12``; ``|h| ~ y^4``)."""
    df = jnp.asarray(df)
    if not jnp.issubdtype(df.dtype, jnp.floating):
        df = df.astype(jnp.result_type(float))
    normals, uniforms = _normals_and_uniforms(key, CHI_SQUARE_PROPOSALS, CHI_SQUARE_PROPOSALS, df.dtype)
    return _chi_square(key, df, normals, uniforms)


def _chi_square(key, df, normals, uniforms):
    """:func:`chi_square` from its first round's proposals (``normals``, ``uniforms``); later rounds draw from
    ``fold_in(key, round)``."""
    dtype = df.dtype
    shape = jnp.maximum(df / 2.0, 1.0)
    d = shape - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)

    bad = ~(jnp.isfinite(df) & (df >= 0.0))  # NaN, not a loop that never ends (inf or NaN: a user trial)

    def decide(x, u):
        y = c * x
        ok = (y > -1.0) & (jnp.log(u) < d * _mt_exponent(y))
        return jnp.any(ok) | bad, d * (1.0 + y[jnp.argmax(ok)]) ** 3

    def again(state):
        accepted, value, trip = state
        more, other = decide(*_normals_and_uniforms(jax.random.fold_in(key, trip), CHI_SQUARE_PROPOSALS,
                                                    CHI_SQUARE_PROPOSALS, dtype))
        return more, jnp.where(accepted, value, other), trip + 1

    accepted, value = decide(normals, uniforms)
    _, value, _ = jax.lax.while_loop(lambda state: ~state[0], again, (accepted, value, jnp.int32(1)))
    z = normals[0]
    draw = jnp.where(df >= 2.0, 2.0 * value, jnp.where(df == 1.0, z * z, 0.0))
    return jnp.where(bad, jnp.nan, draw).astype(dtype)


def _mt_exponent(y):
    """``h(y) = 3 (log1p(y) - y + y^2 / 2) - y^3`` (Marsaglia-Tsang's log acceptance over d, for ``y = c x > -1``):
    for ``|y| < 0.1`` from its series ``sum_{k >= 4} 3 (-1)^(k+1) y^k / k`` to ``k = 9`` (relative error ~1e-6),
    where the direct form cancels."""
    safe = jnp.where(y > -1.0, y, 0.0)  # (y <= -1 is rejected before this counts, but must not give NaN)
    direct = 3.0 * (jnp.log1p(safe) - safe + 0.5 * safe * safe) - safe ** 3
    series = y ** 4 * (-3 / 4 + y * (3 / 5 + y * (-1 / 2 + y * (3 / 7 + y * (-3 / 8 + y * (1 / 3))))))
    return jnp.where(jnp.abs(y) < 0.1, series, direct)


def _pool(a: Group, b: Group) -> Group:
    """Exact pooling of two groups (Chan et al.'s update)."""
    n = a.size + b.size
    safe = jnp.maximum(n, 1.0)
    delta = b.mean - a.mean
    return Group(n, a.mean + delta * b.size / safe, a.ss + b.ss + delta * delta * a.size * b.size / safe)


def fit(data: Group) -> tuple[jax.Array, jax.Array]:
    """``(mu_hat, sigma_hat^2)``: sample mean and unbiased variance."""
    return data.mean, data.ss / (data.size - 1.0)


def _rows_group(x: jax.Array, chosen: jax.Array) -> Group:
    """Sufficient statistics of the rows of ``x`` (sample,) where ``chosen`` (sample,) is true (two passes)."""
    size = jnp.sum(chosen).astype(x.dtype)
    mean = jnp.sum(jnp.where(chosen, x, 0.0)) / jnp.maximum(size, 1.0)
    return Group(size, mean, jnp.sum(jnp.where(chosen, (x - mean) ** 2, 0.0)))


def subsample_fit(key: jax.Array, perm: jax.Array, pool: jax.Array, count: jax.Array, size: jax.Array,
                  bound: int | None = None) -> tuple[jax.Array, Group]:
    """Sufficient statistics of a uniformly random ``size``-subset of the rows ``perm[0 .. count - 1]`` of ``pool``,
    and the permutation that chose them.

    A partial Fisher-Yates shuffle of ``perm[0 .. count - 1]``: step i swaps position i with a position drawn
    uniformly from ``i .. count - 1`` (``jax.random.randint``, drawn for 64 steps at a time from ``fold_in(key,
    block)``), so after ``size`` steps positions ``0 .. size - 1`` hold a uniformly random ordered ``size``-subset
    whatever order ``perm`` was in; the chosen values are pooled as they are drawn (Welford's update). O(size) per
    call, whatever the pool's size. ``bound``: a static number of steps >= ``size``, the steps from ``size`` on doing
    nothing (under ``vmap`` over sizes that differ, a loop of traced length would select its whole carry, the
    permutation, at every step).
    """
    count = jnp.asarray(count).astype(jnp.int32)
    size = jnp.asarray(size).astype(jnp.int32)
    zero = jnp.zeros((), pool.dtype)
    block = _FY_BLOCK

    def block_body(b, carry):
        first = b * block
        picks = jax.random.randint(jax.random.fold_in(key, b), (block,), first + jnp.arange(block, dtype=jnp.int32),
                                   count, jnp.int32)  # where first + r >= count the pick is first + r: no swap

        def body(r, carry):
            perm, k, mean, ss = carry
            active = first + r < size
            i = jnp.where(active, first + r, 0)  # a step past size swaps row 0 with itself
            j = jnp.where(active, picks[r], 0)
            row, here = perm[j], perm[i]
            perm = perm.at[jnp.stack([j, i])].set(jnp.stack([here, row]))  # one scatter (two copy the array)
            x = pool[row]
            k_next = k + active.astype(k.dtype)
            delta = x - mean
            mean_next = jnp.where(active, mean + delta / jnp.maximum(k_next, 1), mean)
            return perm, k_next, mean_next, jnp.where(active, ss + delta * (x - mean_next), ss)

        return jax.lax.fori_loop(0, block, body, carry)

    blocks = (size + block - 1) // block if bound is None else -(-bound // block)
    perm, k, mean, ss = jax.lax.fori_loop(0, blocks, block_body, (perm, zero, zero, zero))
    return perm, Group(k, mean, ss)


_FY_BLOCK = 64  # Fisher-Yates steps per randint call
_DRAW_CHUNK = 64  # accumulate-subsample: pool rows drawn per block (each generation draws O(n_t), not the buffer)


def init(key: jax.Array, params: Params, config: GaussianConfig) -> State:
    """Generation 0: ``n_0`` real draws from ``N(mu, sigma^2)`` (accumulate-subsample: the pool's first ``n_0``
    rows, and the fit on all of them, the budget ``n_0`` being the whole pool)."""
    n0 = params.n[0]
    if config.regime != "accumulate-subsample":
        empty = jnp.zeros((0,), params.mu.dtype)
        return State(params.mu, params.sigma, _group(key, n0, params.mu, params.sigma * params.sigma), empty, n0,
                     jnp.zeros((0,), jnp.int32))
    buffer = _sample_buffer.require_buffer(config)
    pool = _sample_buffer.write_draws(
        jnp.zeros((buffer,), params.mu.dtype), key, 0, n0, _chunk(buffer),
        lambda k, size: params.mu + params.sigma * jax.random.normal(k, (size,), params.mu.dtype))
    rows = jnp.arange(buffer, dtype=jnp.int32)
    return State(params.mu, params.sigma, _rows_group(pool, rows < n0), pool, n0, rows)


def _chunk(buffer: int) -> int:
    """Rows per block of draws: :data:`_DRAW_CHUNK` (a buffer from :func:`sized_config` has that many spare rows)."""
    return min(_DRAW_CHUNK, buffer)


def step_inputs(params: Params, config: GaussianConfig) -> tuple[jax.Array, jax.Array]:
    """``(alpha_t, n_t)`` for t = 1..T, each (step,) = (T,)."""
    return params.alpha[1:], params.n[1:]


def step(key: jax.Array, state: State, inputs: tuple[jax.Array, jax.Array], config: GaussianConfig
         ) -> tuple[State, jax.Array]:
    """Generation t (seed 003 Eq. 1): ``n_t`` draws from ``alpha_t N(mu, sigma^2) + (1 - alpha_t) N(mu_hat,
    sigma_hat^2)``, the real count ``Binomial(n_t, alpha_t)``; refit on them (replace) or on all data (accumulate).
    Record: the loss of the new fit.

    Accumulate-subsample: the ``n_t`` new draws join the pool (each real with probability ``alpha_t``, the same law
    as the binomial split) and the fit reads ``n_t`` pool points chosen uniformly without replacement
    (:func:`subsample_fit`): the budget is ``n_t``, the size of generation t's batch. O(n_t) per generation."""
    alpha_t, n_t = inputs
    k_split, k_real, k_syn = jax.random.split(key, 3)
    mean, var = fit(state.data)
    if config.regime == "accumulate-subsample":

        def draw(k, size):
            k_u, k_z = jax.random.split(k)
            z = jax.random.normal(k_z, (size,), mean.dtype)
            real = jax.random.uniform(k_u, (size,), mean.dtype) < alpha_t
            return jnp.where(real, state.mu + state.sigma * z, mean + jnp.sqrt(var) * z)

        pool = _sample_buffer.write_draws(state.pool, k_syn, state.total, n_t, _chunk(state.pool.shape[0]), draw,
                                          config.max_budget)
        total = state.total + n_t
        perm, data = subsample_fit(k_split, state.perm, pool, total, n_t, config.max_budget)
        state = state._replace(data=data, pool=pool, total=total, perm=perm)
        return state, observe(state, config)
    # (binomial draws in JAX's default float, float64 under x64: float32 params there changed the scan carry's type;
    # a user trial, 2026-12-06)
    n_real = binomial(k_split, n_t, alpha_t).astype(state.data.size.dtype)
    new = _pool(_group(k_real, n_real, state.mu, state.sigma * state.sigma), _group(k_syn, n_t - n_real, mean, var))
    state = state._replace(data=_pool(state.data, new) if config.regime == "accumulate" else new,
                           total=state.total + n_t)
    return state, observe(state, config)


def observe(state: State, config: GaussianConfig) -> jax.Array:
    """``(mu_hat - mu)^2 + (sigma_hat - sigma)^2`` (= ``W_2^2`` between the fitted and the true Gaussian); with
    ``config.record == "fit"`` the pair ``(mu_hat, sigma_hat^2)`` instead, shape (2,)."""
    mean, var = fit(state.data)
    if config.record == "fit":
        return jnp.stack([mean, var])
    return (mean - state.mu) ** 2 + (jnp.sqrt(var) - state.sigma) ** 2


def check_params(params: Params, config: GaussianConfig) -> None:
    """:data:`kernel`'s contract check of one grid point (:func:`driver.check_params`): ``mu`` finite, ``sigma`` a
    scale, ``alpha`` / ``n`` one schedule with ``n_t >= 2`` counted exactly by the jax kernel in this precision, and
    an accumulate-subsample config sized for it (:func:`sized_config`)."""
    _checks.instance("params", params, Params)
    _checks.instance("config", config, GaussianConfig)
    for name in ("mu", "sigma"):
        if np.ndim(getattr(params, name)) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {np.shape(getattr(params, name))}")
    _checks.in_interval("mu", float(params.mu), -math.inf, math.inf, low_open=True, high_open=True)
    check_sigma(float(params.sigma))
    alpha, n = schedules.check_pair(_checks.host_array(params.alpha), _checks.host_array(params.n))
    if alpha.ndim != 1 or n.ndim != 1:
        raise ValueError(f"alpha and n must be one schedule each, (T + 1,), got shapes {alpha.shape} and {n.shape} "
                         "(a grid goes along grid_axes)")
    _require_two(n)
    check_sizes(n, "jax")
    if config.regime == "accumulate-subsample":
        need = sized_config(dataclasses.replace(config, buffer=None, max_budget=None), n)
        if config.buffer is None or config.buffer < need.buffer or (config.max_budget or 0) < need.max_budget:
            raise ValueError(f"config (buffer {config.buffer}, max_budget {config.max_budget}) is not sized for the "
                             f"schedule n (buffer {need.buffer}, max_budget {need.max_budget}): pass "
                             "sized_config(config, n)")


kernel = driver.scan_kernel(init, step, step_inputs, observe, check_params)
kernel.__doc__ = """One replicate: the losses for t = 0..T, (step,) = (T + 1,) (:func:`driver.scan_kernel`)."""


def sized_config(config: GaussianConfig, n) -> GaussianConfig:
    """``config`` with ``buffer`` set for the schedule(s) ``n`` (accumulate-subsample: ``n_0 + ... + n_T`` rows plus
    one block of draws, which may write past the last valid row; refused beyond ``max_points`` by
    :func:`collapse_jax._sample_buffer.plan`); other regimes unchanged."""
    if config.regime != "accumulate-subsample":
        return config
    _sample_buffer.plan(np.asarray(n), config.regime, 1, config.max_points, "Gaussian")
    need = int(np.cumsum(np.atleast_2d(n), axis=-1).max())
    return dataclasses.replace(config, buffer=need + _DRAW_CHUNK, max_budget=int(np.max(n)))


def _require_two(n) -> None:
    """A ValueError naming ``n`` unless every ``n_t >= 2``: an unbiased variance needs two points, and every regime's
    kernels draw each generation's own spread from its ``n_t`` points (accumulate's pool would have two points from
    n_0 on, but its kernels draw a generation's sum of squares as a chi-square with ``n_t - 1`` degrees of freedom,
    so its ``n_t = 1`` was refused with the others' reason alone; a user trial, 2026-12-07)."""
    n = np.asarray(n)
    if np.any(n < 2):
        where = np.argwhere(n < 2)[0]
        at = f"n[{', '.join(str(int(i)) for i in where)}]"
        raise ValueError(f"n must be >= 2 at every step (an unbiased variance needs two points, and the kernels "
                         "draw each generation's sum of squares from its own n_t points, in accumulate too), got "
                         f"{at} = {n[tuple(where)]:.0f}")


def check_sizes(n, backend: str) -> None:
    """That the sample sizes ``n`` run exactly with the resolved ``backend`` (:func:`resolve_backend`) in this
    process's precision; a ValueError naming ``n`` otherwise, before any compute. Every path counts exactly up to
    2**53 in float64; without float64 (``jax_enable_x64``) the schedules are float32, which rounds whole numbers
    above 2**24 (2**25 + 1 ran as 2**25), and the ``jax`` kernel's float32 arithmetic cannot resolve the fit's
    spread there either (mean losses 0.83-0.88x the exact ones at n = 1e15, 0.62x at 2**53; sizes beyond float32's
    range became inf and the chi-square sampler's loop never ended, beyond the reach of Ctrl-C: a user trial,
    2026-12-06). The native kernel computes in float64 whatever the precision, so it takes any float32 size."""
    n = np.asarray(n, np.float64)
    top = float(n.max())
    if top > 2 ** 53:
        raise ValueError(f"n must be at most 2**53 = {2 ** 53} at every step (exact float64 counts), got n_t up to "
                         f"{top:.4g}")
    if jax.config.jax_enable_x64:
        return
    if backend == "jax" and top > 2 ** 24:
        raise ValueError(f"n up to {top:.4g} exceeds 2**24: the jax kernel in float32 neither counts nor resolves "
                         "the fit exactly there; enable float64 (collapse-jax --x64 or jax_enable_x64), or use "
                         "backend='native' (a CPU; it computes in float64)")
    rounded = n[n.astype(np.float32).astype(np.float64) != n]
    if rounded.size:
        raise ValueError(f"n_t = {rounded.flat[0]:.0f} is not a float32 number (float32 rounds whole numbers above "
                         "2**24); enable float64 (collapse-jax --x64 or jax_enable_x64) or choose sizes float32 holds")


def simulate(seed, mu: float, sigma: float, alpha, n, config: GaussianConfig = GaussianConfig(),
             num_replicates: int = 100, *, backend: str = "auto", first_replicate: int = 0,
             chunk_size: int | None = None, memory_budget: int | None = None, mesh=None,
             progress: bool | None = None) -> np.ndarray:
    """Monte Carlo losses, (replicate, step) = (R, T + 1) for 1-D schedules or (grid, replicate, step) for (G, T + 1)
    grids; with ``config.record == "fit"`` the fits instead, a trailing axis (mu_hat, sigma_hat^2). Requires
    ``n_t >= 2``; ``alpha[0]`` is not used (generation 0 is the fit to real data alone). The model is location-scale
    equivariant, so it is simulated as ``N(0, 1)`` and the results mapped back in float64: losses times
    ``sigma^2``, fits ``(mu + sigma m, sigma^2 v)``; returned in float64 unless ``mu = 0`` and ``sigma = 1``. So the
    losses keep their precision whatever ``|mu| / sigma`` (in float32, ``mu = 1e6``, ``sigma = 0.01`` would round
    every ``mu_hat`` to ``mu``) and whatever the scale (float32 squares gave losses of 0 at ``sigma = 1e-20`` and inf
    at 1e20). :func:`kernel` called directly draws from its own
    ``mu`` and ``sigma``.
    Keywords: docs/driver.md (``backend``: "auto", "native" or "jax", :func:`resolve_backend`; the native kernel,
    :func:`batched_native`, runs replace and accumulate on the CPU, the same laws from other draws, about 2^24
    recorded numbers per call by default and ``mesh`` unused; accumulate-subsample runs "jax", its default
    ``chunk_size`` counting each replicate's pool against ``memory_budget``).
    """
    mu = _checks.in_interval("mu", mu, -math.inf, math.inf, low_open=True, high_open=True)
    sigma = check_sigma(sigma)
    _checks.instance("config", config, GaussianConfig)
    alpha, n = schedules.check_pair(alpha, n)
    _require_two(n)
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    backend = resolve_backend(backend, config.regime)
    check_sizes(n, backend)
    mesh = check_mesh(mesh)  # (the native kernel does not use it: checked all the same)
    if chunk_size is not None:
        chunk_size = _checks.positive_int("chunk_size", chunk_size)
    config = sized_config(config, n)
    grid, alpha2, n2 = schedules.as_grid(alpha, n)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    if config.buffer is not None and chunk_size is None:  # the pool, its draws and sort keys: ~10 numbers a row
        bytes_each = 10 * config.buffer * np.dtype(dtype).itemsize * alpha2.shape[0]
        chunk_size = driver.chunk_replicates(num_replicates, mesh, None, memory_budget,
                                             lambda: bytes_each, strict=True)
    # Location-scale equivariant: simulated as N(0, 1) and mapped back in float64, so neither a location far from 0
    # against sigma (float32, mu = 1e6, sigma = 0.01 gave 0.34x the exact loss; an audit) nor a scale whose squares
    # leave float32's range (sigma = 1e-20: losses of 0; a user trial) costs precision
    params = Params(*(np.asarray(x, dtype) for x in (0.0, 1.0, alpha2, n2)))
    if backend == "native":
        if memory_budget is not None:  # checked whatever the backend (the native one does not use it)
            _checks.positive_int("memory_budget", memory_budget)
        out = driver.map_chunks(lambda keys: batched_native(keys, params.alpha, params.n, config.regime,
                                                            config.record),
                                num_replicates, seed, chunk_size or _native_chunk(num_replicates, alpha2.shape,
                                                                                  config.record),
                                first_replicate=first_replicate, replicate_axis=1, pad=False, progress=progress,
                                desc="gaussian replicates")
    else:
        out = driver.run_replicates(kernel, params, config, num_replicates, seed, grid_axes=Params(None, None, 0, 0),
                                    first_replicate=first_replicate, chunk_size=chunk_size,
                                    memory_budget=memory_budget, mesh=mesh, progress=progress,
                                    desc="gaussian replicates")
    if mu != 0.0 or sigma != 1.0:  # in float64: mu_hat - mu survives (float32 rounded it away at mu = 1e6)
        out = np.array(out, np.float64)
        if config.record == "fit":
            out[..., 0] = mu + sigma * out[..., 0]
            out[..., 1] *= sigma * sigma
        else:
            out *= sigma * sigma
    _warn_underflow(out, config.record)
    return out if grid else out[0]


def _warn_underflow(out, record: str) -> None:
    """A warning where float32 recorded exact zeros: a long pure-synthetic run's fitted variances (median 3e-56 at
    n = 2, t = 100 in float64) underflow to 0, and so do its losses' tails, which carry the mean (2,979,154 of
    3,000,300 variances were 0, and a mean loss 2.3 against the exact 5000.5 came without a word; a user trial,
    2026-12-06)."""
    arr = np.asarray(out)
    if arr.dtype != np.float32:
        return
    values = arr[..., 1] if record == "fit" else arr
    zeros = int(np.count_nonzero(values == 0))
    if zeros:
        what = "fitted variances" if record == "fit" else "losses"
        warnings.warn(f"gaussian: {zeros:,} of {values.size:,} recorded {what} are exactly 0 in float32 (an "
                      "underflow: the recursion's variance collapses below 1e-38); run with x64 "
                      "(jax.config.update('jax_enable_x64', True), --x64) for these horizons, and mind that the mean "
                      "is then carried by rare replicates (docs/recursions.md)", RuntimeWarning,
                      stacklevel=_checks.user_stacklevel())


def _native_chunk(num_replicates: int, grid_shape: tuple, record: str) -> int:
    """Replicates per native call: about 2^24 recorded numbers (64 MiB in float32, a few tenths of a second of
    work), so the progress bar moves and the host holds two copies of a chunk at most."""
    per_replicate = int(np.prod(grid_shape)) * (2 if record == "fit" else 1)
    return max(1, min(num_replicates, (1 << 24) // per_replicate))


NATIVE_REGIMES = ("replace", "accumulate")  # accumulate-subsample needs the points themselves: JAX only


def resolve_backend(backend: str, regime: str = "replace") -> str:
    """``"auto"``: the native kernel (:func:`batched_native`) on a CPU where it builds, else ``"jax"``;
    accumulate-subsample runs ``"jax"`` whatever is preferred (``"native"`` is refused for it)."""
    from collapse_jax import _native

    if regime not in REGIMES:  # ("foo" resolved to "jax": a user trial, 2026-12-06)
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if regime not in NATIVE_REGIMES:
        if backend == "native":
            raise ValueError(f"backend='native' runs the Gaussian regimes {NATIVE_REGIMES}, got regime {regime!r}; "
                             "use backend='jax' (or 'auto')")
        driver.check_jax_backend(backend, f"Gaussian {regime}")
        return "jax"
    return _native.resolve_backend(backend)


def batched_native(keys: jax.Array, alpha, n, regime: str, record: str = "loss") -> jax.Array:
    """Native CPU kernel (``collapse_jax/_native/gaussian.cc``) for the truth ``N(0, 1)``: replicate keys (R,) and
    schedules (G, T + 1) -> losses (G, R, T + 1), or with ``record="fit"`` fits (G, R, T + 1, 2). The same exact
    laws as :func:`kernel` from a SplitMix64 stream per replicate (seeded from its key), so not the same draws; a
    replicate draws the same stream for every schedule of the grid (common random numbers). Only the groups that
    are not empty are drawn."""
    from collapse_jax import _native

    if regime not in NATIVE_REGIMES:
        raise ValueError(f"regime must be one of {NATIVE_REGIMES} for the native kernel, got {regime!r}")
    check_replicate_keys("keys", keys)
    if record not in RECORDS:
        raise ValueError(f"record must be one of {RECORDS}, got {record!r}")
    if np.ndim(alpha) != 2 or np.shape(alpha) != np.shape(n):
        raise ValueError(f"alpha and n must be (G, T + 1) grids of one shape (a single schedule as one row, x[None]), "
                         f"got shapes {np.shape(alpha)} and {np.shape(n)}")
    if not _checks.is_traced((alpha, n)):  # (the kernel refuses them too, with a terser message; a NaN alpha hung
        schedules.check_pair(np.asarray(alpha), np.asarray(n))  # it before; a user trial, 2026-12-06)
        _require_two(np.asarray(n))
        check_sizes(n, "native")
    if not _native.available():
        raise RuntimeError("the native Gaussian kernel is unavailable (no C++ compiler?); use backend='jax'")
    return _batched_native(keys, jnp.asarray(alpha), jnp.asarray(n), regime, record)


@functools.partial(jax.jit, static_argnames=("regime", "record"))
def _batched_native(keys, alpha, n, regime: str, record: str) -> jax.Array:
    from collapse_jax import _native
    from collapse_jax.multinomial import _native_seeds

    dtype = alpha.dtype if alpha.dtype in (jnp.float32, jnp.float64) else jnp.result_type(float)
    alpha, n = alpha.astype(dtype), n.astype(dtype)
    shape = (alpha.shape[0], keys.shape[0], alpha.shape[1]) + ((2,) if record == "fit" else ())
    call = jax.ffi.ffi_call(_native.GAUSSIAN_TARGETS["float64" if dtype == jnp.float64 else "float32"],
                            jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")
    return call(alpha, n, _native_seeds(keys), regime=np.int64(REGIMES.index(regime)),
                record=np.int64(RECORDS.index(record)), num_threads=np.int64(_native.cpu_threads()))


def _log_c(m):
    """``log E sqrt(chi2_m / m) = log(sqrt(2/m) Gamma((m+1)/2) / Gamma(m/2))``, about ``-1/(4m)``. For m >= 64 from
    its asymptotic series ``-1/(4m) + 1/(24m^3) - 1/(20m^5) + 17/(112m^7)`` (relative error below 1e-13 there):
    the difference of the two log-gammas, each near ``(m/2) log(m/2)``, keeps only about ``1e-16 m log m`` of
    absolute precision, which at m = 1e9 is all of ``1/(4m)``."""
    m = np.asarray(m, dtype=np.float64)
    small = m < 64
    direct = 0.5 * np.log(2.0 / m) + special.gammaln((m + 1) / 2) - special.gammaln(m / 2)
    u = 1 / np.where(small, 64.0, m)  # (in powers of 1/m: big ** 7 overflowed from m ~ 1e44 with a warning)
    series = u * (-1 / 4 + u ** 2 * (1 / 24 + u ** 2 * (-1 / 20 + u ** 2 * 17 / 112)))
    return np.where(small, direct, series)


def check_sigma(sigma) -> float:
    """``sigma`` as a float in :data:`collapse_jax._checks.SCALE_RANGE` (``[1e-150, 1e150]``, where ``sigma^2`` is a
    normal float64), or a ValueError naming it. :func:`simulate` runs at ``sigma = 1`` and rescales in float64, so the
    working precision sets no narrower range (float32 at ``sigma = 1e-20`` gave losses of 0, 1e20 inf; a user
    trial)."""
    return _checks.scale("sigma", sigma)


def pure_synthetic_w2(sigma: float, n) -> np.ndarray:
    """Exact ``E W_2^2`` after t = 0..T generations of pure synthetic refitting on ``n_t`` samples: ``sigma^2 sum_s
    1/n_s + 2 sigma^2 (1 - prod_s c(n_s - 1))``, the product as ``-expm1(sum log c)`` so that it keeps its precision
    for any n (``1 - c`` is about ``1/(4n)``). ``n``: a schedule (T + 1,) or a grid of them (G, T + 1), one curve per
    row (a grid's rows were summed as one schedule; a user trial, 2026-12-07)."""
    n = _fit_sizes(n)
    check_sigma(sigma)
    return sigma ** 2 * np.cumsum(1.0 / n, axis=-1) - 2 * sigma ** 2 * np.expm1(np.cumsum(_log_c(n - 1), axis=-1))


def _fit_sizes(n) -> np.ndarray:
    """``n`` checked as a schedule of fits' sample sizes: whole numbers >= 2 (a sample variance needs two points)."""
    n = schedules.check_sizes(n)
    if np.any(n < 2):
        raise ValueError(f"n must be at least 2 in every generation (a sample variance needs two points), got "
                         f"min {n.min()}")
    return n


def shumailov_first_order_w2(sigma: float, n) -> np.ndarray:
    """Shumailov et al. (seed 004): ``E W_2^2 ~ (3/2) sigma^2 (1/M_0 + ... + 1/M_t)`` to first order (``M_t >= 2``,
    as :func:`pure_synthetic_w2`: M = 1 gave a value where the exact law refuses; a user trial, 2026-12-06); a grid
    ``n`` (G, T + 1) gives one curve per row."""
    n = _fit_sizes(n)
    sigma = check_sigma(sigma)
    return 1.5 * sigma ** 2 * np.cumsum(1.0 / n, axis=-1)


class FitMoments(NamedTuple):
    """Exact moments of the fit at t = 0..T (each (T + 1,)); ``E mu_hat_t = mu`` always."""

    mean_sq_error: np.ndarray  # E (mu_hat_t - mu)^2
    variance: np.ndarray       # E sigma_hat_t^2 (the unbiased variance)
    w2_lower: np.ndarray       # E (mu_hat_t - mu)^2 + (sqrt(E sigma_hat_t^2) - sigma)^2 <= E W_2^2 (Jensen)


def fit_moments(sigma: float, alpha, n, regime: str) -> FitMoments:
    """Exact ``E (mu_hat_t - mu)^2`` and ``E sigma_hat_t^2`` of the refitted Gaussian, any regime and ``alpha``.
    ``regime`` has no default: it defaulted to accumulate-subsample while :class:`GaussianConfig` defaults to replace,
    so the two calls with their defaults compared different regimes (a user trial, 2026-12-07).

    Derivation (docs/recursions.md, "Gaussian: exact moments of the fit"): with mu = 0, sigma = 1 (the process is
    affine-equivariant) a row k of generation h is ``z_k = (1 - R_k) m_{h-1} + s_k eps_k``, ``R_k`` real with
    probability ``alpha_h``, ``s_k^2 = R_k + (1 - R_k) v_{h-1}``; the fit ``m_t`` averages ``b_t`` rows chosen
    uniformly from a window ``W_t`` (replace: generation t, ``b_t = n_t``; accumulate: every row, ``b_t = S_t``;
    accumulate-subsample: every row, ``b_t = n_t``), independently of their values. Everything then closes over
    three families of second moments: ``M[t, r] = E m_t m_r``, ``Y[s, h] = E m_s z_k`` (k in generation h) and the
    pair moments ``Z[g, h] = E z_j z_k = (1 - alpha_g) Y[g - 1, h]`` (j != k, g >= h), with
    ``E z_k^2 = (1 - alpha_h) M[h-1, h-1] + alpha_h + (1 - alpha_h) E v_{h-1}``. Running sums over the window
    keep it O(T^2) time and O(T) memory. ``w2_lower`` bounds the risk from below (``E sigma_hat <= sqrt(E
    sigma_hat^2)``); the risk itself needs ``E sigma_hat``, which has no closed form here."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    sigma = check_sigma(sigma)
    alpha, n = schedules.check_pair(alpha, n)
    if alpha.ndim != 1:
        raise ValueError(f"fit_moments takes one schedule: alpha and n of shape (T + 1,), got {alpha.shape}")
    _require_two(n)
    a = np.asarray(alpha, np.float64).copy()
    a[0] = 1.0  # generation 0 is real data
    nf = np.asarray(n, np.float64)
    steps = nf.shape[0]
    mse, var = np.empty(steps), np.empty(steps)
    e_sq, z_diag, colsum, rowsum = (np.zeros(steps) for _ in range(4))
    m_row = y_row = np.zeros(0)  # M[t - 1, 0..t-1] and Y[t - 1, 0..t-1]
    v_prev = diag_sum = pool = 0.0
    for t in range(steps):
        at, nt = a[t], nf[t]
        m_prev = m_row[t - 1] if t else 0.0
        z_t = (1 - at) * np.append(y_row, (1 - at) * m_prev)  # Z[t, h], h = 0..t (Y[t - 1, t] = (1 - a_t) M[t-1, t-1])
        e_sq[t] = (1 - at) * m_prev + at + (1 - at) * v_prev   # E z_k^2, k in generation t
        z_diag[t] = z_t[t]
        if regime == "replace":
            m_tt = e_sq[t] / nt + (nt - 1) / nt * z_t[t]
            v_t = nt / (nt - 1) * (e_sq[t] - m_tt)
            m_cross = (1 - at) * m_row                        # M[t, r] = Y[r, t], r < t
            y_row = z_t.copy()
            y_row[t] += (e_sq[t] - z_t[t]) / nt
        else:
            colsum[:t] += nt * z_t[:t]                        # sum over the window of n_g Z[g, h]
            colsum[t] = nf[:t + 1] @ z_t
            diag_sum += nt * e_sq[t]
            pool += nt
            budget = nt if regime == "accumulate-subsample" else pool
            pairs = nf[:t + 1] @ (colsum[:t + 1] - z_diag[:t + 1])
            # (divided in turn: budget * pool * (pool - 1) overflowed at n_t = 1e300, which fit_moments takes)
            m_tt = diag_sum / budget / pool + (budget - 1) / budget * (pairs / pool / (pool - 1))
            v_t = budget / (budget - 1) * (diag_sum / pool - m_tt)
            rowsum[:t] += nt * (1 - at) * m_row               # + n_t Y[r, t], Y[r, t] = (1 - a_t) M[r, t - 1]
            m_cross = rowsum[:t] / pool
            y_row = (colsum[:t + 1] + e_sq[:t + 1] - z_diag[:t + 1]) / pool
            rowsum[t] = nf[:t + 1] @ y_row
        m_row = np.append(m_cross, m_tt)
        mse[t], var[t], v_prev = m_tt, v_t, v_t
    s2 = sigma * sigma
    return FitMoments(s2 * mse, s2 * var, s2 * (mse + (np.sqrt(var) - 1.0) ** 2))


def validation_rows(table, *, num_replicates: int, seed: int) -> None:
    """Rows for ``collapse-jax validate``."""
    steps = 30
    settings = [(2.0, 0.0, schedules.constant_size(100, steps), "M=100"),
                (1.0, 1.0, schedules.constant_size(10, steps), "M=10"),
                (1.5, -1.0, schedules.linear_size(20, steps), "M=20(t+1)")]
    for sigma, mu, n, name in settings:
        alpha = schedules.pure_synthetic_alpha(steps)
        loss = simulate(seed, mu, sigma, alpha, n, GaussianConfig(), num_replicates)
        # M = 10 is read at t = 5: sigma_hat_t^2 is sigma^2 times a product of t + 1 factors chi2_9 / 9, whose log has
        # SD 2.8 at t = 30; the mean of so heavy a tail is no Monte Carlo check (an audit, 2026-12-04: |z| > the
        # Bonferroni value in 4.3 % of tables, the whole family's budget); at t = 5 the SD is 1.2
        t = 5 if name == "M=10" else steps
        table.add_mean("Gaussian pure synthetic: exact E W2^2 (sample mean, unbiased variance)",
                       f"sigma={sigma}, {name}, t={t}", "exact", loss[:, t], pure_synthetic_w2(sigma, n)[t])
        table.add_mean("Shumailov first-order E W2^2 ~ (3/2) sigma^2 sum 1/M_i", f"sigma={sigma}, {name}, t={t}",
                       "approximation", loss[:, t], shumailov_first_order_w2(sigma, n)[t])
    # the fit's exact moments (fit_moments) in each regime with fresh data, and accumulate-subsample pure synthetic
    n = schedules.constant_size(20, steps)
    for regime, a in (("replace", 0.5), ("accumulate", 0.5), ("accumulate-subsample", 0.5),
                      ("accumulate-subsample", 0.0)):
        alpha = schedules.constant_alpha(a, steps)
        fits = simulate(seed, 1.0, 1.5, alpha, n, GaussianConfig(regime, record="fit"), num_replicates)[:, steps]
        theory = fit_moments(1.5, alpha, n, regime)
        setting = f"{regime}, sigma=1.5, alpha={a}, n=20, t={steps}"
        table.add_mean("Gaussian fit, exact recursion: E (mu_hat - mu)^2", setting, "exact", (fits[:, 0] - 1.0) ** 2,
                       theory.mean_sq_error[steps])
        table.add_mean("Gaussian fit, exact recursion: E sigma_hat^2 (unbiased variance)", setting, "exact",
                       fits[:, 1], theory.variance[steps])
        if regime == "accumulate-subsample":
            loss = (fits[:, 0] - 1.0) ** 2 + (np.sqrt(fits[:, 1]) - 1.5) ** 2
            table.add_mean("Gaussian E W2^2 above its lower bound E (mu_hat - mu)^2 + (sqrt(E sigma_hat^2) - sigma)^2",
                           setting, "statement", loss, theory.w2_lower[steps], side=">")
