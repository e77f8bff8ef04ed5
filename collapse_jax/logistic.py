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
that replicate (they descend from it), is NaN; :func:`simulate` warns with the count (``return_info=True`` gives the
flags). Below about ``n = 2 (d + 1)`` separation is likely (Cover 1965), so ``n_t >= 2 (d + 1)`` is required.

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

import functools
import math
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, _sample_buffer, schedules


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
    """

    regime: str = "replace"
    max_iter: int = 50
    tol: float = 1e-8
    ridge: float = 1e-6
    chunk: int = 256
    max_points: int = 2_000_000

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
        return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(h), g)

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
# Simulator
# ==================================================================================================================
def replicate_risk(key: jax.Array, theta: jax.Array, alpha: jax.Array, n: jax.Array, config: LogisticConfig,
                   buffer: int, chunk: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Kernel for one replicate: ``||theta_hat_t - theta||^2`` (NaN from the first failed fit on), Newton steps and
    fit-ok flags for t = 0..T, each of shape (T + 1,). ``buffer``, ``chunk``: see :func:`_sample_buffer.plan`."""
    init_key, steps_key = jax.random.split(key)
    dtype = theta.dtype
    n = n.astype(dtype)
    one = jnp.ones((), dtype)
    data = (jnp.zeros((buffer, theta.shape[0]), dtype), jnp.zeros((buffer,), dtype))
    data = _sample_buffer.write_draws(data, init_key, 0, n[0], chunk,
                                      lambda k, size: draw_mixed(k, size, one, theta, theta))
    fit0, steps0, ok0 = newton_fit(data, n[0], jnp.zeros_like(theta), config, chunk)

    def loss(fit, alive):
        return jnp.where(alive, jnp.sum((fit - theta) ** 2), jnp.nan)

    def step(carry, inputs):
        data, fit, total, alive = carry
        k, a_t, n_t = inputs
        offset = total if config.regime == "accumulate" else 0
        data = _sample_buffer.write_draws(data, k, offset, n_t, chunk,
                                          lambda kk, size: draw_mixed(kk, size, a_t, theta, fit))
        total = offset + n_t
        new, steps, ok = newton_fit(data, total, fit, config, chunk)
        alive = alive & ok
        return (data, new, total, alive), (loss(new, alive), steps, ok)

    keys = jax.random.split(steps_key, alpha.shape[0] - 1)
    _, (risks, steps, oks) = jax.lax.scan(step, (data, fit0, n[0], ok0), (keys, alpha[1:].astype(dtype), n[1:]))
    return (jnp.concatenate([loss(fit0, ok0)[None], risks]), jnp.concatenate([steps0[None], steps]),
            jnp.concatenate([ok0[None], oks]))


@functools.partial(jax.jit, static_argnames=("config", "buffer", "chunk", "batch_size"))
def batched_risk(keys: jax.Array, theta: jax.Array, alpha: jax.Array, n: jax.Array, config: LogisticConfig,
                 buffer: int, chunk: int, batch_size: int = 1):
    """Replicate keys (R,) x schedule grid (G, T + 1) -> risks, Newton steps, ok flags, each (G, R, T + 1).

    Replicates run ``batch_size`` at a time in lockstep (``lax.map`` over vmapped batches), the grid one schedule
    after the other (a ``while_loop`` under ``vmap`` runs until its slowest lane is done).
    """
    kernel = functools.partial(replicate_risk, theta=theta, config=config, buffer=buffer, chunk=chunk)

    def over_replicates(schedule):
        a, m = schedule
        return jax.lax.map(lambda k: kernel(k, alpha=a, n=m), keys, batch_size=batch_size)

    return jax.lax.map(over_replicates, (alpha, n))


def check_inputs(beta, intercept, alpha, n) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``beta`` (d,), ``intercept`` and the schedules before compute; returns ``theta = (b_0, beta)``."""
    b = np.asarray(beta, dtype=np.float64)
    if b.ndim != 1 or b.shape[0] < 1:
        raise ValueError(f"beta must be a vector of d >= 1 coefficients, got shape {b.shape}")
    b = _checks.finite_array("beta", b)
    b0 = _checks.in_interval("intercept", intercept, -math.inf, math.inf, low_open=True, high_open=True)
    alpha, n = schedules.check_pair(alpha, n)
    p = b.shape[0] + 1
    if np.any(n < 2 * p):
        raise ValueError(f"n must be >= 2 (d + 1) = {2 * p} at every step (below that the data are often "
                         f"separable and the MLE does not exist), got min {n.min():.0f}")
    return np.concatenate([[b0], b]), alpha, n


def simulate(seed: int | jax.Array, beta, intercept: float, alpha, n, config: LogisticConfig = LogisticConfig(),
             num_replicates: int = 100, *, chunk_size: int | None = None, batch_size: int = 1,
             progress: bool | None = None, return_info: bool = False):
    """Monte Carlo risks ``||theta_hat_t - theta||^2``.

    Args:
      seed: integer seed or key; replicate ``i`` uses ``fold_in(key, i)`` (independent of chunking).
      beta: true coefficients (d,); intercept: true ``b_0``.
      alpha, n: schedules (T + 1,) or grids (G, T + 1); ``n_t >= 2 (d + 1)``.
      config: regime and Newton settings.
      num_replicates: R.
      chunk_size: replicates per compiled call (default all); a progress bar runs over chunks.
      batch_size: replicates advanced in lockstep inside a call (:func:`batched_risk`); results do not depend on it.
      return_info: also return ``{"steps": ..., "ok": ...}`` (Newton steps and fit-ok flags).
    Returns:
      risks, shape (R, T + 1) for 1-D schedules or (G, R, T + 1) for grids (NumPy), NaN from a replicate's first
      failed fit on (warned); with ``return_info`` a pair ``(risks, info)``.
    """
    theta, alpha, n = check_inputs(beta, intercept, alpha, n)
    run = _sample_buffer.setup(alpha, n, config, "logistic", theta.shape[0] + 1, num_replicates, chunk_size,
                               batch_size)
    theta_j, alpha_j, n_j = (jnp.asarray(x, run.dtype) for x in (theta, run.alpha, run.n))
    risks, steps, ok = _sample_buffer.map_replicate_chunks(
        lambda keys: batched_risk(keys, theta_j, alpha_j, n_j, config, run.buffer, run.chunk, run.batch_size),
        seed, run, "logistic replicates", progress)
    failed = int(np.sum(~ok))
    if failed:
        warnings.warn(f"logistic: {failed} of {ok.size} fits failed (separable data or no convergence within "
                      f"max_iter={config.max_iter}); their risks and all later ones of the same replicate are NaN",
                      RuntimeWarning, stacklevel=2)
    if not run.grid:
        risks, steps, ok = risks[0], steps[0], ok[0]
    return (risks, {"steps": steps, "ok": ok}) if return_info else risks


# ==================================================================================================================
# First-order (asymptotic) theory
# ==================================================================================================================
def fisher_information(beta, intercept: float, *, nodes: int = 96) -> np.ndarray:
    """``I = E[sigmoid'(b_0 + x . beta) (1, x)(1, x)^T]`` for ``x ~ N(0, I_d)`` (Gauss-Hermite quadrature).

    Along ``u = x . beta / |beta|`` the weight is ``w(u) = sigmoid'(b_0 + |beta| u)``; orthogonal directions are
    independent of ``u``, so ``I`` is built from ``E w``, ``E w u``, ``E w u^2`` and rotated back.
    """
    b = _checks.finite_array("beta", beta)
    d = b.shape[0]
    norm = float(np.linalg.norm(b))
    u, wq = np.polynomial.hermite_e.hermegauss(nodes)
    wq = wq / math.sqrt(2 * math.pi)
    s = 1.0 / (1.0 + np.exp(-(intercept + norm * u)))
    w = s * (1 - s)
    e0, e1, e2 = (float(np.sum(wq * w * u ** k)) for k in range(3))
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
    c = float(np.trace(np.linalg.inv(fisher_information(beta, intercept))))
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
        risk = simulate(seed, beta, b0, alpha, n, LogisticConfig(regime), num_replicates)
        table.add_mean(f"logistic {regime}: first-order (delta-method) risk recurrence, t={steps}",
                       f"d=3, alpha={alpha_value}, n={size}", "approximation", risk[:, steps],
                       first_order_risk(beta, b0, alpha, n, regime)[steps])
    steps = 6
    n = schedules.linear_size(100, steps)
    alpha = np.stack([schedules.pure_synthetic_alpha(steps), schedules.constant_alpha(0.5, steps)])
    risk = simulate(seed, beta, b0, alpha, np.stack([n, n]), LogisticConfig(), num_replicates)
    setting = f"d=3, n=100(t+1), T={steps}"
    table.add_mean("App. C.2 (empirical) logistic pure synthetic: no improvement (r_T - r_0 > 0)", setting,
                   "statement", risk[0][:, steps] - risk[0][:, 0], 0.0, side=">")
    table.add_mean("App. C.2 (empirical) logistic alpha=0.5, growing n: improvement (r_T - r_0 < 0)", setting,
                   "statement", risk[1][:, steps] - risk[1][:, 0], 0.0, side="<")
