"""Logistic regression iteratively refitted by maximum likelihood on real + synthetic labels (seed 003, App. C.2).

Features ``x ~ N(0, I_d)``, drawn fresh at every generation for every point. Parameter ``theta = (b_0, beta)`` with
intercept; ``P(y = 1 | x) = sigmoid(b_0 + x . beta)``. Generation 0 fits ``n_0`` points labelled by the true
``theta``; generation ``t >= 1`` draws ``n_t`` points, each real with probability ``alpha_t`` (labelled by the true
``theta``) or synthetic (labelled by the last fit ``theta_hat_{t-1}``), and refits. Regimes (:class:`LogisticConfig`):
``replace`` (fit on generation t's points) and ``accumulate`` (fit on all points of generations 0..t); pure synthetic
is ``alpha_t = 0``. Risk ``||theta_hat_t - theta||^2`` (intercept included).

Fit (:func:`newton_fit`): Newton's method (IRLS) on the log-likelihood with a tiny ridge ``(ridge / 2) ||theta||^2``
(default ``ridge = 1e-6``, absolute; the log-likelihood is a sum over ``n`` points, so the ridge moves the fit by
O(ridge / n), and it keeps the Hessian invertible). Generation 0 starts at ``theta = 0``, later generations at the last
fit. A step that lowers the penalised log-likelihood (by more than rounding, ``64 eps (1 + |ll|)``) is halved. Stops
when the step is at most ``tol (1 + max|theta|)`` (``tol`` is raised to ``sqrt(machine eps)``, 3e-4 in float32) or
after ``max_iter`` steps.

Separation: when a batch is linearly separable the maximum-likelihood estimate does not exist (it is infinite); the
ridge then only makes Newton converge to a huge, meaningless fit. Every fit is therefore checked: it *fails* if Newton
did not converge within ``max_iter`` steps, if the fit is not finite, or if the fit classifies every training point
correctly (a certificate that the data are separable). A failed fit's risk, and the risk of every later generation of
that replicate (they descend from it), is NaN; :func:`simulate` warns with the count and returns the flags. Below about
``n = 2 (d + 1)`` separation is likely (Cover 1965), so ``n_t >= 2 (d + 1)`` is required; at that minimum still
about half the samples of points in general position are separable (Cover's count; more for a strong signal), so
most replicates of a long run there end NaN (99.6 % at d = 1, n = 4 by t = 200 in a user trial, 2026-12-06): a
size well above it, e.g. ``n >= 10 (d + 1)``, is needed for a useful run.

Cost: the fit needs the raw samples, so a generation costs O(iterations x n_t x (d + 1)^2) (replace) or
O(iterations x (n_0 + ... + n_t) x (d + 1)^2) (accumulate) time and each replicate holds a buffer of ``max n_t`` or
``n_0 + ... + n_T`` rows of ``d + 2`` numbers; sizes beyond ``max_points`` per replicate, or beyond the memory
available, are refused before compute.

Theory (:func:`first_order_risk`): a first-order (delta-method, large-n) approximation, not an exact result. With
``I = E[sigmoid'(b_0 + x . beta) (1, x)(1, x)^T]`` the Fisher information per point and ``c = tr(I^{-1})``:
replace ``r_t = (1 - alpha_t)^2 r_{t-1} + c / n_t``; accumulate ``r_t = k_t^2 r_{t-1} + n_t c / S_t^2`` with
``S_t = n_0 + ... + n_t`` and ``k_t = (S_{t-1} + n_t (1 - alpha_t)) / S_t``; ``r_0 = c / n_0``. These are seed 003's
Theorem 3.1 and A.1 recurrences with ``s`` replaced by ``c`` and their finite-sample corrections dropped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from collapse_jax import _checks, _linalg, _sample_buffer, driver, schedules


# The true model of our seed 003 App. C.2 runs (the seed's values are not in our text).
SEED003_C2 = {"beta": (1.0, -1.0, 0.5), "intercept": 0.25}


@dataclass(frozen=True)
class LogisticConfig:
    """Static configuration of a logistic recursion.

    Attributes:
      regime: ``"replace"`` (fit on generation t's data) or ``"accumulate"`` (fit on all data so far).
      max_iter: Newton steps at most per fit (>= 1); a fit that does not converge fails (NaN risk).
      tol: stopping tolerance on the Newton step, relative to ``1 + max|theta|``.
      ridge: penalty ``(ridge / 2) ||theta||^2`` added to the negative log-likelihood (> 0).
      chunk: rows per chunk of the passes over the data.
      max_points: largest raw-sample buffer allowed per replicate (a guard on time and memory).
      lanes: replicates a device advances in lockstep (``vmap`` width; :func:`collapse_jax.driver.batched`):
        1 on a CPU, where Newton's loop under a wide ``vmap`` waits for its slowest lane; more on a GPU. The draws
        do not depend on it; the fits only to rounding (XLA orders the solves' sums by width: up to 1.6e-15
        relative between widths 1 and 8 in float64, a user trial, 2026-12-06).
      buffer: rows of each replicate's raw-sample buffer, a static size: None until :func:`sized_config` sets it
        (and ``chunk``) for a schedule; :func:`simulate` does so.
    """

    regime: str = "replace"
    max_iter: int = 50
    tol: float = 1e-8
    ridge: float = 1e-6
    chunk: int = 256
    max_points: int = 2_000_000
    lanes: int = 1
    buffer: int | None = None

    def __post_init__(self):
        _sample_buffer.check_config(self, ("ridge",))


# ==================================================================================================================
# Sampling and the Newton fit
# ==================================================================================================================
def draw_mixed(key: jax.Array, size: int, alpha_t: jax.Array, theta: jax.Array, fit: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """``size`` points: design rows ``(1, x)`` with ``x ~ N(0, I_d)`` and labels from ``theta`` (real, probability
    ``alpha_t``) or from ``fit`` (synthetic). Returns ``(design (size, d + 1), labels (size,))``."""
    k_x, k_src, k_y = jax.random.split(key, 3)
    dtype = theta.dtype
    x = jax.random.normal(k_x, (size, theta.shape[0] - 1), dtype)
    design = jnp.concatenate([jnp.ones((size, 1), dtype), x], axis=1)
    real = jax.random.uniform(k_src, (size,), dtype) < alpha_t
    eta = jnp.where(real, design @ theta, design @ fit)
    labels = (jax.random.uniform(k_y, (size,), dtype) < jax.nn.sigmoid(eta)).astype(dtype)
    return design, labels


def _objective(data, count, theta, ridge: float, chunk: int):
    """Over the valid rows: the penalised log-likelihood, its gradient, its negative Hessian (the information) and
    the smallest margin ``min_i (2 y_i - 1) (1, x_i) . theta`` (> 0: ``theta`` separates the data)."""
    p = theta.shape[0]

    def fn(rows, valid):
        design, labels = rows
        eta = design @ theta
        v = valid.astype(theta.dtype)
        e = jnp.exp(-jnp.abs(eta))  # one exponential gives both the sigmoid and the softplus
        prob = jnp.where(eta >= 0, 1.0, e) / (1.0 + e)
        ll = jnp.sum(v * (labels * eta - jnp.maximum(eta, 0.0) - jnp.log1p(e)))
        grad = design.T @ (v * (labels - prob))
        info = (design * (v * prob * (1 - prob))[:, None]).T @ design
        margin = jnp.min(jnp.where(valid, (2 * labels - 1) * eta, jnp.inf))
        return (ll, grad, info), margin

    zero = jnp.zeros((), theta.dtype)
    init = ((zero, jnp.zeros((p,), theta.dtype), jnp.zeros((p, p), theta.dtype)), jnp.asarray(jnp.inf, theta.dtype))
    (ll, grad, info), margin = _sample_buffer.reduce_rows(fn, data, count, chunk, init, (jnp.add, jnp.minimum))
    return (ll - 0.5 * ridge * theta @ theta, grad - ridge * theta, info + ridge * jnp.eye(p, dtype=theta.dtype),
            margin)


def newton_fit(data, count, start: jax.Array, config: LogisticConfig, chunk: int
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Penalised maximum likelihood on the first ``count`` rows of ``data = (design, labels)`` from ``start``.

    Returns ``(theta_hat, steps, ok)``: ``ok`` is False when Newton did not converge, the fit is not finite, or the
    fit separates the data (the unpenalised MLE does not exist).
    """
    eps = float(jnp.finfo(start.dtype).eps)
    tol = max(config.tol, math.sqrt(eps))

    def newton_step(g, h):
        return _linalg.cho_solve(_linalg.cho_factor(h, lower=False), g, lower=False)

    def cond(c):
        return (~c[-1]) & (c[-2] < config.max_iter)

    def body(c):
        theta, ll, g, h, margin, step, it, _ = c
        cand = theta + step
        ll_c, g_c, h_c, margin_c = _objective(data, count, cand, config.ridge, chunk)
        accept = ll_c >= ll - 64 * eps * (1 + jnp.abs(ll))  # a decrease within rounding is no decrease
        small = jnp.max(jnp.abs(step)) <= tol * (1 + jnp.max(jnp.abs(theta)))
        theta, ll, g, h, margin = (jnp.where(accept, a, b) for a, b in ((cand, theta), (ll_c, ll), (g_c, g),
                                                                         (h_c, h), (margin_c, margin)))
        step = jnp.where(accept, newton_step(g, h), 0.5 * step)
        return theta, ll, g, h, margin, step, it + 1, small

    ll0, g0, h0, margin0 = _objective(data, count, start, config.ridge, chunk)
    init = (start, ll0, g0, h0, margin0, newton_step(g0, h0), jnp.int32(0), jnp.asarray(False))
    theta, _, _, _, margin, _, steps, converged = jax.lax.while_loop(cond, body, init)
    ok = converged & jnp.all(jnp.isfinite(theta)) & (margin <= 0)
    return theta, steps, ok


# ==================================================================================================================
# Simulator: the init/step contract (docs/driver.md)
# ==================================================================================================================
class Params(NamedTuple):
    """What a grid may vary: the truth ``theta = (b_0, beta)`` (feature,) = (d + 1,) and the schedules ``alpha``,
    ``n`` (step,) = (T + 1,), index 0 the real data of generation 0."""

    theta: jax.Array
    alpha: jax.Array
    n: jax.Array


class State(NamedTuple):
    """One replicate after generation t: the truth, the raw-sample buffer (rows ``0 .. total - 1`` valid: generation
    t's points for replace, generations 0..t's for accumulate), the last fit and its Newton steps and ok flag, and
    whether every fit so far succeeded."""

    theta: jax.Array  # (d + 1,)
    data: tuple[jax.Array, jax.Array]  # design (buffer, d + 1), labels (buffer,)
    total: jax.Array  # ()
    fit: jax.Array  # (d + 1,)
    newton_steps: jax.Array  # () int32
    ok: jax.Array  # () bool
    alive: jax.Array  # () bool


class Record(NamedTuple):
    """Per generation: the risk ``||theta_hat_t - theta||^2`` (NaN from a replicate's first failed fit on), Newton
    steps and the fit-ok flag. One replicate: (step,) each; :func:`simulate`: (replicate, step) or (grid, replicate,
    step)."""

    risk: Any
    newton_steps: Any
    ok: Any


def sized_config(config: LogisticConfig, n, dim: int) -> LogisticConfig:
    """``config`` with the raw-sample buffer sized for the schedule(s) ``n`` and ``dim`` features (static sizes)."""
    return _sample_buffer.sized(config, np.asarray(n), "logistic", dim + 2)


def init(key: jax.Array, params: Params, config: LogisticConfig) -> State:
    """Generation 0: ``n_0`` points labelled by the true ``theta``, fitted by Newton from ``theta = 0``."""
    theta, n0 = params.theta, params.n[0]
    dtype = theta.dtype
    buffer = _sample_buffer.require_buffer(config)
    data = (jnp.zeros((buffer, theta.shape[0]), dtype), jnp.zeros((buffer,), dtype))
    one = jnp.ones((), dtype)
    data = _sample_buffer.write_draws(data, key, 0, n0, config.chunk,
                                      lambda k, size: draw_mixed(k, size, one, theta, theta))
    fit, steps, ok = newton_fit(data, n0, jnp.zeros_like(theta), config, config.chunk)
    return State(theta, data, n0, fit, steps, ok, ok)


def step_inputs(params: Params, config: LogisticConfig) -> tuple[jax.Array, jax.Array]:
    """``(alpha_t, n_t)`` for t = 1..T, each (step,) = (T,)."""
    return params.alpha[1:], params.n[1:]


def step(key: jax.Array, state: State, inputs: tuple[jax.Array, jax.Array], config: LogisticConfig
         ) -> tuple[State, Record]:
    """Generation t (seed 003 App. C.2): ``n_t`` fresh points, each labelled by the truth with probability
    ``alpha_t`` or by the last fit (:func:`draw_mixed`), written after the kept data (accumulate) or over them
    (replace); Newton from the last fit on all valid rows."""
    alpha_t, n_t = inputs
    offset = state.total if config.regime == "accumulate" else 0
    data = _sample_buffer.write_draws(state.data, key, offset, n_t, config.chunk,
                                      lambda k, size: draw_mixed(k, size, alpha_t, state.theta, state.fit))
    total = offset + n_t
    fit, steps, ok = newton_fit(data, total, state.fit, config, config.chunk)
    state = State(state.theta, data, total, fit, steps, ok, state.alive & ok)
    return state, observe(state, config)


def observe(state: State, config: LogisticConfig) -> Record:
    """The risk of the last fit (NaN once a fit has failed), its Newton steps and ok flag."""
    risk = jnp.where(state.alive, jnp.sum((state.fit - state.theta) ** 2), jnp.nan)
    return Record(risk, state.newton_steps, state.ok)


def check_params(params: Params, config: LogisticConfig) -> None:
    """:data:`kernel`'s contract check of one grid point (:func:`driver.check_params`): ``theta = (b_0, beta)``
    finite, ``alpha`` / ``n`` one schedule with ``n_t >= 2 (d + 1)``, and the config sized for it
    (:func:`sized_config`)."""
    _checks.instance("params", params, Params)
    _checks.instance("config", config, LogisticConfig)
    theta = _checks.host_array(params.theta)
    if theta.ndim != 1 or theta.shape[0] < 2:
        raise ValueError(f"theta must be (b_0, beta) of d + 1 >= 2 numbers, got shape {theta.shape}")
    _, alpha, n, _ = check_inputs(theta[1:], float(theta[0]), _checks.host_array(params.alpha),
                                  _checks.host_array(params.n), config)
    if alpha.ndim != 1 or n.ndim != 1:
        raise ValueError(f"alpha and n must be one schedule each, (T + 1,), got shapes {alpha.shape} and {n.shape} "
                         "(a grid goes along grid_axes)")
    _sample_buffer.check_sized(config, n, "logistic")


kernel = driver.scan_kernel(init, step, step_inputs, observe, check_params)
kernel.__doc__ = """One replicate: :class:`Record` for t = 0..T, (step,) = (T + 1,) each (:func:`driver.scan_kernel`)."""


def check_inputs(beta, intercept, alpha, n, config: LogisticConfig = LogisticConfig()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, LogisticConfig]:
    """Validate ``beta`` (d,), ``intercept``, the schedules and the buffer they need before compute; returns
    ``theta = (b_0, beta)``, ``alpha``, ``n`` and the config sized for them (:func:`sized_config`)."""
    b = _checks.finite_array("beta", beta)  # (complex coefficients: float()'s TypeError naming nothing; an audit)
    if b.ndim != 1 or b.shape[0] < 1:
        raise ValueError(f"beta must be a vector of d >= 1 coefficients, got shape {b.shape}")
    b0 = _checks.in_interval("intercept", intercept, -math.inf, math.inf, low_open=True, high_open=True)
    alpha, n = schedules.check_pair(alpha, n)
    _check_sizes(n, b.shape[0])
    return np.concatenate([[b0], b]), alpha, n, sized_config(config, n, b.shape[0])


def _check_sizes(n: np.ndarray, d: int) -> None:
    """Refuse schedules with some ``n_t < 2 (d + 1)`` (Cover 1965: below that separation is likely)."""
    if np.any(n < 2 * (d + 1)):
        raise ValueError(f"n must be >= 2 (d + 1) = {2 * (d + 1)} at every step (below that the data are often "
                         f"separable and the MLE does not exist; near it, many fits still fail: the module's "
                         f"docstring), got min {n.min():.0f}")


def simulate(seed: int | jax.Array, beta, intercept: float, alpha, n, config: LogisticConfig = LogisticConfig(),
             num_replicates: int = 100, *, backend: str = "auto", first_replicate: int = 0,
             chunk_size: int | None = None, memory_budget: int | None = None, mesh=None,
             progress: bool | None = None) -> Record:
    """Monte Carlo risks ``||theta_hat_t - theta||^2``, with each fit's Newton steps and ok flag.

    Args:
      seed: integer seed or key; replicate ``i`` uses ``fold_in(key, i)`` (independent of chunking).
      beta: true coefficients (d,); intercept: true ``b_0``.
      alpha, n: schedules (step,) = (T + 1,) or grids (grid, step); ``n_t >= 2 (d + 1)``.
      config: regime, Newton settings and ``lanes``.
      num_replicates: R.
      backend, first_replicate, chunk_size, memory_budget, mesh, progress: as every simulator (docs/driver.md);
        ``backend`` "auto" or "jax" (the only implementation).
    Returns:
      :class:`Record` of NumPy arrays, (replicate, step) = (R, T + 1) for 1-D schedules or (grid, replicate, step)
      for grids; risks are NaN from a replicate's first failed fit on (warned with the count).
    """
    _checks.instance("config", config, LogisticConfig)
    theta, alpha, n, config = check_inputs(beta, intercept, alpha, n, config)
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    driver.check_jax_backend(backend, "logistic")
    grid, alpha2, n2 = schedules.as_grid(alpha, n)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = Params(*(np.asarray(x, dtype) for x in (theta, alpha2, n2)))
    out = Record(*driver.run_replicates(kernel, params, config, num_replicates, seed, grid_axes=Params(None, 0, 0),
                                        first_replicate=first_replicate, chunk_size=chunk_size,
                                        memory_budget=memory_budget, mesh=mesh, lanes=config.lanes,
                                        progress=progress, desc="logistic replicates"))
    failed = int(np.sum(~out.ok))
    if failed:
        warnings.warn(f"logistic: {failed} of {out.ok.size} fits failed (separable data or no convergence within "
                      f"max_iter={config.max_iter}); their risks and all later ones of the same replicate are NaN",
                      RuntimeWarning, stacklevel=_checks.user_stacklevel())
    return out if grid else Record(*(x[0] for x in out))


# ==================================================================================================================
# First-order (asymptotic) theory
# ==================================================================================================================
def _sigmoid_slope_moments(norm: float, intercept: float) -> tuple[float, float, float]:
    """``E w(u) u^k``, k = 0, 1, 2, for ``u ~ N(0, 1)`` and ``w(u) = sigmoid'(b_0 + |beta| u)``, by adaptive
    quadrature (QUADPACK) on ``|u| <= 40`` (beyond, the normal density is below 1e-347) with breakpoints at the
    bulk of ``N(0, 1)`` and at ``u_0 = -b_0 / |beta|`` and ``u_0 +- (3, 10, 40) / |beta|``, where ``w`` has its peak
    of width ``1 / |beta|``. (Gauss-Hermite nodes, used before, cannot resolve that peak once ``|beta|`` is large:
    ``tr I^-1`` came out 33 % low at ``beta = 20``, 18x high at ``beta = 50, b_0 = 30``; a user trial. This agrees
    with 30-digit mpmath values to 1e-15 relative at ``(|beta|, b_0)`` = (2, -1), (20, 0), (1000, 3).)"""
    from scipy import integrate

    def integrand(u, k):
        z = intercept + norm * u
        # sigmoid'(z) with both factors exact (s (1 - s) lost 1 - s for z > 36)
        return math.exp(-0.5 * u * u) * special.expit(z) * special.expit(-z) * u ** k / math.sqrt(2 * math.pi)

    limit = 40.0
    points = {-10.0, -3.0, 0.0, 3.0, 10.0}
    if norm > 0:
        points |= {-intercept / norm + j / norm for j in (-40, -10, -3, 0, 3, 10, 40)}
    points = sorted(p for p in points if -limit < p < limit)
    moments = []
    for k in range(3):  # E w u and E w u^2 to 1e-13 of E w (E w u is 0 for b_0 = 0: no relative tolerance there)
        value, _ = integrate.quad(integrand, -limit, limit, args=(k,), points=points, limit=1000,
                                  epsabs=1e-13 * moments[0] if moments else 0.0, epsrel=1e-11)
        moments.append(float(value))
    return moments[0], moments[1], moments[2]


def fisher_information(beta, intercept: float) -> np.ndarray:
    """``I = E[sigmoid'(b_0 + x . beta) (1, x)(1, x)^T]`` for ``x ~ N(0, I_d)``.

    Along ``u = x . beta / |beta|`` the weight is ``w(u) = sigmoid'(b_0 + |beta| u)``; orthogonal directions are
    independent of ``u``, so ``I`` is built from ``E w``, ``E w u``, ``E w u^2`` (adaptive quadrature that follows
    the peak of ``w``, of width ``1 / |beta|``) and rotated back.
    """
    b = _checks.finite_array("beta", beta, shape=(None,))
    if b.shape[0] < 1:
        raise ValueError("beta must have at least one coefficient, got shape (0,)")
    intercept = _checks.in_interval("intercept", intercept, -math.inf, math.inf, low_open=True, high_open=True)
    d = b.shape[0]
    top = float(np.max(np.abs(b)))
    norm = top * float(np.linalg.norm(b / top)) if top > 0 else 0.0  # (norm's squares overflowed: beta = (1e300,)
    if not math.isfinite(norm):                                      # was told "|beta| = inf"; a user trial)
        raise ValueError(f"beta's norm overflows float64 (largest |beta_i| {top:.3g})")
    e0, e1, e2 = _sigmoid_slope_moments(norm, intercept)
    if not e0 > 0:  # (|b_0| beyond ~745 + 40 |beta|: every sigmoid' underflows; it returned a zero matrix)
        raise ValueError(f"intercept {intercept:g} with |beta| = {norm:g}: sigmoid'(b_0 + x . beta) underflows to 0 "
                         "wherever x has probability, so the Fisher information is 0 in float64 (the model is "
                         "degenerate: every label is the same to machine precision)")
    direction = b / norm if norm > 0 else np.eye(d)[0]
    info = np.zeros((d + 1, d + 1))
    info[0, 0] = e0
    info[0, 1:] = info[1:, 0] = e1 * direction
    info[1:, 1:] = e0 * (np.eye(d) - np.outer(direction, direction)) + e2 * np.outer(direction, direction)
    return info


def first_order_risk(beta, intercept: float, alpha, n, regime: str = "replace") -> np.ndarray:
    """First-order (delta-method) approximation of ``E||theta_hat_t - theta||^2``, t = 0..T (module doc).

    Approximate, valid for large ``n_t``: it ignores the O(1/n^2) bias and variance corrections of the MLE.
    """
    if regime not in _sample_buffer.REGIMES:
        raise ValueError(f"regime must be one of {_sample_buffer.REGIMES}, got {regime!r}")
    alpha, n = schedules.check_pair(alpha, n)
    info = fisher_information(beta, intercept)
    _check_sizes(n, info.shape[0] - 1)  # (as simulate: the law of a fit that mostly does not exist is no use)
    c = float(np.trace(np.linalg.inv(info)))
    big_s = np.cumsum(n, axis=-1)
    r = np.empty(n.shape)
    r[..., 0] = c / n[..., 0]
    for t in range(1, n.shape[-1]):
        if regime == "replace":
            r[..., t] = (1 - alpha[..., t]) ** 2 * r[..., t - 1] + c / n[..., t]
        else:
            k = (big_s[..., t - 1] + n[..., t] * (1 - alpha[..., t])) / big_s[..., t]
            r[..., t] = k ** 2 * r[..., t - 1] + n[..., t] * c / big_s[..., t] ** 2
    return r


def validation_rows(table, *, num_replicates: int, seed: int) -> None:
    """Rows for ``collapse-jax validate``: the first-order recurrence (approximate: expected to fail at small n) and
    seed 003 App. C.2's empirical statements."""
    beta, b0 = SEED003_C2["beta"], SEED003_C2["intercept"]
    steps = 2
    for regime, alpha_value, size in [("replace", 0.5, 2000), ("accumulate", 0.0, 2000), ("replace", 0.5, 100)]:
        alpha, n = schedules.constant_alpha(alpha_value, steps), schedules.constant_size(size, steps)
        risk = simulate(seed, beta, b0, alpha, n, LogisticConfig(regime), num_replicates).risk
        table.add_mean(f"logistic {regime}: first-order (delta-method) risk recurrence, t={steps}",
                       f"d=3, alpha={alpha_value}, n={size}", "approximation", risk[:, steps],
                       first_order_risk(beta, b0, alpha, n, regime)[steps])
    steps = 6
    n = schedules.linear_size(100, steps)
    alpha = np.stack([schedules.pure_synthetic_alpha(steps), schedules.constant_alpha(0.5, steps)])
    risk = simulate(seed, beta, b0, alpha, np.stack([n, n]), LogisticConfig(), num_replicates).risk
    setting = f"d=3, n=100(t+1), T={steps}"
    table.add_mean("App. C.2 (empirical) logistic pure synthetic: no improvement (r_T - r_0 > 0)", setting,
                   "statement", risk[0][:, steps] - risk[0][:, 0], 0.0, side=">")
    table.add_mean("App. C.2 (empirical) logistic alpha=0.5, growing n: improvement (r_T - r_0 < 0)", setting,
                   "statement", risk[1][:, steps] - risk[1][:, 0], 0.0, side="<")
