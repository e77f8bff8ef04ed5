"""The GMM network next to an LLM network: the seed's proxy band and a proxy calibrated to the LLMs' responses.

Seed 000 (Section 3.2) only draws the analogy "an LLM's embedded answers ~ a GMM whose weights move". Here it is made
measurable, on the responses an LLM Web Dynamics run stored (:mod:`llm_bridge.llm_web`):

1. :func:`pca_basis`: the t = 0 response embeddings (num_models * num_samples, dim), centred, projected on their top
   ``dims`` principal directions.
2. :func:`fit_shared_gmm`: in that projection, one set of ``B`` shared means ``mu_b`` and one shared covariance
   ``Sigma`` (the GMM network's fixed components) and one weight vector ``Pi_i(0)`` per model, by EM on the
   likelihood ``prod_i prod_l sum_b Pi_ib N(x_il; mu_b, Sigma)``; the human texts of ``A(0)`` get their own weights
   ``pi_ref`` under the fitted components (:func:`fit_weights`).
3. :func:`simulate_fixed_start`: the GMM network (:mod:`collapse_jax.gmm_network`, Algorithms 2-3) started from
   those weights instead of Dirichlet draws, ``num_replicates`` replicates.
4. :func:`mean_dnorm`: the proxy measured like the LLMs: ``X_i(t) = sum_b Pi_ib(t) mu_b`` (the mean of model i's
   GMM), ``D_ij = ||X_i - X_j||_2``, ``||D(t)||_F``; :func:`coverage`: the fraction of steps t = 1..T at which the
   LLM curve lies inside the proxy's 5-95 % band, both normalised to t = 0.

With ``B = 1`` every model is the same Gaussian: ``D`` is 0 at every step, the normalised band is undefined and the
coverage is reported as NaN.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, distance, gmm_network

WEIGHT_FLOOR = 1e-4        # fitted weights below this are raised to it (Algorithm 2 never revives a zero weight)


class Projection(NamedTuple):
    """``x -> (x - center) @ basis``: (dim,) center, (dim, dims) orthonormal basis, variance share of each column."""

    center: np.ndarray
    basis: np.ndarray
    explained: np.ndarray

    def __call__(self, x: Any) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.center) @ self.basis


class SharedGMM(NamedTuple):
    """B shared components and each model's weights: means (B, dims), cov (dims, dims), weights (num_models, B)."""

    means: np.ndarray
    cov: np.ndarray
    weights: np.ndarray
    log_likelihood: float
    iterations: int


def pca_basis(points: Any, dims: int) -> Projection:
    """Top ``dims`` principal directions of ``points`` (num_points, dim) (at most num_points - 1 and dim)."""
    x = _checks.finite_array("points", points)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"points must have shape (num_points >= 2, dim), got {x.shape}")
    dims = min(_checks.positive_int("dims", dims), x.shape[0] - 1, x.shape[1])
    center = x.mean(0)
    _, s, vt = np.linalg.svd(x - center, full_matrices=False)
    var = s**2
    return Projection(center, vt[:dims].T.copy(), var[:dims] / max(var.sum(), 1e-300))


def _log_gauss(x: np.ndarray, means: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``log N(x_p; mu_b, cov)`` for points (P, d) and means (B, d) -> (P, B)."""
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x[:, None, :] - means[None]).reshape(-1, x.shape[1]).T).T
    quad = np.sum(z * z, axis=-1).reshape(x.shape[0], means.shape[0])
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (quad + logdet + x.shape[1] * np.log(2 * np.pi))


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) followed by 20 Lloyd iterations: (k, d) centres."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        centres.append(x[rng.choice(len(x), p=d2 / total)] if total > 0 else x[rng.integers(len(x))])
    c = np.asarray(centres)
    for _ in range(20):
        owner = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        c = np.asarray([x[owner == b].mean(0) if np.any(owner == b) else c[b] for b in range(k)])
    return c


def fit_shared_gmm(points: Any, num_components: int, *, seed: int = 0, iterations: int = 200,
                   tol: float = 1e-8, ridge: float = 1e-4) -> SharedGMM:
    """EM for per-model weights over shared components: ``points`` (num_models, num_samples, dims).

    E-step: ``r_ilb = Pi_ib N(x_il; mu_b, Sigma) / sum_c Pi_ic N(x_il; mu_c, Sigma)``; M-step: ``Pi_ib = mean_l
    r_ilb``, ``mu_b = sum_il r_ilb x_il / sum_il r_ilb``, ``Sigma = sum_ilb r_ilb (x_il - mu_b)(x_il - mu_b)^T / N
    + ridge * tr(C) / dims * I`` (C: the points' covariance; the ridge keeps Sigma positive definite). Means start
    from k-means++ (``seed``), weights uniform; stops when the mean log-likelihood gains less than ``tol``.
    Weights are floored at :data:`WEIGHT_FLOOR` and renormalised. ``iterations`` >= 1, ``tol`` >= 0, ``ridge`` > 0
    and ``seed`` an integer >= 0 are checked first (0 iterations returned uniform weights with a log-likelihood of
    -inf, a NaN ridge NaN weights, ridge 0 a bare LinAlgError; a user trial, 2026-12-06).
    """
    x = _checks.finite_array("points", points)
    if x.ndim != 3:
        raise ValueError(f"points must have shape (num_models, num_samples, dims), got {x.shape}")
    iterations = _checks.positive_int("iterations", iterations)
    tol = _checks.in_interval("tol", tol, 0.0, math.inf, high_open=True)
    ridge = _checks.in_interval("ridge", ridge, 0.0, math.inf, low_open=True, high_open=True)
    seed = _checks.random_seed("seed", seed)
    n, L, d = x.shape
    B = _checks.positive_int("num_components", num_components)
    if B > n * L:
        raise ValueError(f"num_components must be at most the number of points {n * L}, got {B}")
    flat = x.reshape(n * L, d)
    floor = ridge * max(np.trace(np.atleast_2d(np.cov(flat.T))) / d, 1e-12) * np.eye(d)
    means = _kmeans_pp(flat, B, np.random.default_rng(seed))
    cov = np.atleast_2d(np.cov(flat.T)) + floor
    weights = np.full((n, B), 1.0 / B)
    previous, ll, it = -np.inf, -np.inf, 0
    for it in range(1, iterations + 1):
        logp = _log_gauss(flat, means, cov).reshape(n, L, B) + np.log(np.maximum(weights, 1e-300))[:, None, :]
        top = logp.max(-1, keepdims=True)
        norm = top + np.log(np.exp(logp - top).sum(-1, keepdims=True))
        ll = float(norm.mean())
        r = np.exp(logp - norm).reshape(n * L, B)
        weights = r.reshape(n, L, B).mean(1)
        mass = r.sum(0)
        keep = mass > 1e-10
        means[keep] = (r[:, keep].T @ flat) / mass[keep, None]
        diff = flat[:, None, :] - means[None]
        cov = np.einsum("pb,pbi,pbj->ij", r, diff, diff) / (n * L) + floor
        if ll - previous < tol:
            break
        previous = ll
    weights = np.maximum(weights, WEIGHT_FLOOR)
    return SharedGMM(means, cov, weights / weights.sum(1, keepdims=True), ll, it)


def fit_weights(points: Any, means: np.ndarray, cov: np.ndarray, *, iterations: int = 200) -> np.ndarray:
    """Mixture weights (B,) of ``points`` (num_points, dims) under fixed components (EM on the weights alone),
    floored at :data:`WEIGHT_FLOOR` and renormalised."""
    x = _checks.finite_array("points", points, shape=(None, None))
    d = x.shape[1]  # (shapes that did not fit raised NumPy's broadcasting or solve errors; a user trial)
    means = _checks.finite_array("means", means, shape=(None, d))
    cov = _checks.spd_matrix("cov", cov, d)
    iterations = _checks.positive_int("iterations", iterations)
    logn = _log_gauss(x, means, cov)
    w = np.full(logn.shape[1], 1.0 / logn.shape[1])
    for _ in range(iterations):
        logp = logn + np.log(np.maximum(w, 1e-300))
        r = np.exp(logp - logp.max(1, keepdims=True))
        w = (r / r.sum(1, keepdims=True)).mean(0)
    w = np.maximum(w, WEIGHT_FLOOR)
    return w / w.sum()


def simulate_fixed_start(cfg: gmm_network.GMMNetworkConfig, initial_weights: Any, num_replicates: int,
                         seed: int = 0, *, params: gmm_network.Params | None = None) -> np.ndarray:
    """``Pi(t)`` for t = 0..T of ``num_replicates`` GMM networks that all start from ``initial_weights``
    (num_models, B): (num_replicates, T+1, num_models, B), float64.

    :func:`collapse_jax.gmm_network.simulate` (native kernel on CPU) with ``initial_weights`` in place of the
    Dirichlet draws; replicate r's human points and draws come from ``fold_in(key(seed), r)``. Runs with x64 on.
    ``params``: the configuration's values with that start (:func:`gmm_network.make_params`, e.g. with other k_t);
    None: those of ``cfg``.
    """
    if not isinstance(cfg, gmm_network.GMMNetworkConfig):
        raise ValueError(f"cfg must be a GMMNetworkConfig (use gmm_network.make_config), got {type(cfg).__name__}")
    cfg = cfg.replace(initial_weights=initial_weights, record_pi=True)
    with jax.enable_x64(True):
        res = gmm_network.simulate(seed, cfg, num_replicates, params=params, dtype=jnp.float64, progress=False)
    return np.asarray(res.weights, dtype=np.float64)


def sampled_dnorm(weights: Any, means: Any, cov: Any, samples: int, seed: int = 0) -> np.ndarray:
    """``||D||_F`` with ``X_i`` the mean of ``samples`` draws from model i's GMM (weights ``Pi_i``, the shared
    ``means`` (B, dims) and covariance ``cov``), as an LLM's ``X_i`` is the mean of its L answers' embeddings:
    weights (..., num_models, B) -> (...), float64, deterministic per ``seed``.

    Exactly in law: the draws' component counts are Multinomial(samples, Pi_i) and their Gaussian parts average to
    N(0, cov / samples), so ``X_i = counts @ means / samples + chol(cov) z / sqrt(samples)``. Its expectation
    exceeds :func:`mean_dnorm`'s by the sampling-noise floor the LLM curve has too."""
    samples = _checks.positive_int("samples", samples)
    w = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    rng = np.random.default_rng(seed)
    w = np.clip(w, 0.0, None)
    counts = rng.multinomial(samples, w / w.sum(-1, keepdims=True))
    noise = rng.standard_normal((*w.shape[:-1], means.shape[1])) @ np.linalg.cholesky(np.asarray(cov, np.float64)).T
    x = counts @ means / samples + noise / np.sqrt(samples)
    with jax.enable_x64(True):  # (float64 whatever the caller's precision: float32 outside it; a review)
        return np.asarray(distance.distance_matrix_norm(jnp.asarray(x)), np.float64)


def mean_dnorm(weights: Any, means: Any) -> np.ndarray:
    """``||D||_F`` with ``D_ij = ||X_i - X_j||_2``, ``X_i = Pi_i @ means``: weights (..., num_models, B), means
    (B, dims) -> (...)."""
    x = np.asarray(weights, np.float64) @ np.asarray(means, np.float64)
    return np.asarray(distance.distance_matrix_norm(x))


def normalised(curve: Any) -> np.ndarray:
    """``curve[..., t] / curve[..., 0]`` (NaN where the t = 0 value is 0)."""
    c = np.asarray(curve, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c[..., :1] > 0, c / c[..., :1], np.nan)


def band(curves: Any, low: float = 0.05, high: float = 0.95) -> dict[str, np.ndarray]:
    """Quantiles ``low``, 0.5, ``high`` over the replicate axis of ``curves`` (num_replicates, T+1) (NaN rows
    ignored; all NaN gives NaN); ``0 <= low <= high <= 1``."""
    low = _checks.in_interval("low", low, 0.0, 1.0)
    if _checks.in_interval("high", high, 0.0, 1.0) < low:  # (low 0.9, high 0.1 was taken; a user trial)
        raise ValueError(f"high must be >= low = {low}, got {high}")
    c = np.asarray(curves, np.float64)
    if np.all(np.isnan(c)):
        nan = np.full(c.shape[1:], np.nan)
        return {"low": nan, "median": nan, "high": nan}
    return {"low": np.nanquantile(c, low, axis=0), "median": np.nanquantile(c, 0.5, axis=0),
            "high": np.nanquantile(c, high, axis=0)}


def coverage(curve: Any, low: Any, high: Any) -> float:
    """Fraction of steps t = 1..T with ``low[t] <= curve[t] <= high[t]`` (NaN if the band is undefined, or the
    curve at t = 0: a curve normalised by a t = 0 value of 0, such as a floor-corrected one below its floor there,
    was counted 0 % inside until 2026-12-07)."""
    c, lo, hi = (np.asarray(a, np.float64)[1:] for a in (curve, low, high))
    if c.size == 0 or np.isnan(np.asarray(curve, np.float64)[0]) or np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        return float("nan")
    return float(np.mean((lo <= c) & (c <= hi)))
