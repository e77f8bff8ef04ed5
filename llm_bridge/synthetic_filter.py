"""A real-vs-synthetic classifier on sentence embeddings: seed 003 Appendix D's filter made real.

The classifier is ridge-penalised logistic regression on embeddings ``x`` (dim,) with an intercept:
``P(real | x) = sigmoid(b + x . w)``, fitted by Newton's method on
``sum_i log(1 + exp(-y_i (b + x_i . w))) + (ridge / 2) ||w||^2`` with ``y = +1`` for real and ``-1`` for synthetic
documents (the intercept is not penalised). The ridge keeps the fit finite when the two sets are linearly separable,
which 384-d embeddings of a few hundred documents usually are. A document is *kept* (classified real) when
``P(real | x) > 1/2``.

Errors (seed 003 Appendix D; the null hypothesis is "real"): type-I ``a`` = fraction of real documents rejected,
type-II ``b`` = fraction of synthetic documents kept, both measured on held-out documents the fit never saw. They
enter :func:`collapse_jax.multinomial.filter_risk` (Theorem D.2).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from collapse_jax import _checks


@dataclass(frozen=True)
class RealSyntheticClassifier:
    """A fitted classifier: ``weights`` (dim,), ``intercept``, the ``ridge`` it was fitted with and Newton steps."""

    weights: np.ndarray
    intercept: float
    ridge: float
    iterations: int

    def score(self, embeddings: Any) -> np.ndarray:
        """``b + x . w`` for each row of ``embeddings`` (num_docs, dim): > 0 means classified real."""
        x = _checks.finite_array("embeddings", embeddings, shape=(None, self.weights.shape[0]))
        return x.astype(np.float64) @ self.weights + self.intercept

    def keep(self, embeddings: Any) -> np.ndarray:
        """Bool (num_docs,): the documents classified real (``P(real | x) > 1/2``)."""
        return self.score(embeddings) > 0.0


def _design(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)


def fit(real: Any, synthetic: Any, *, ridge: float = 1.0, max_iter: int = 50, tol: float = 1e-8
        ) -> RealSyntheticClassifier:
    """Fit the classifier on ``real`` (num_real, dim) and ``synthetic`` (num_synthetic, dim) embeddings.

    Newton's method from zero; each step solves ``H delta = g`` with ``H = X^T diag(s (1 - s)) X + ridge I'``
    (``I'``: identity without the intercept entry) and stops when ``max |delta| <= tol (1 + max |theta|)``; warns
    (RuntimeWarning) when ``max_iter`` steps did not get there, and raises a ValueError when the fit overflowed.
    """
    real = _checks.finite_array("real", real)
    if real.ndim != 2 or real.shape[0] < 1:
        raise ValueError(f"real must be a (num_real >= 1, dim) array, got shape {real.shape}")
    synthetic = _checks.finite_array("synthetic", synthetic, shape=(None, real.shape[1]))
    if synthetic.shape[0] < 1:
        raise ValueError("synthetic must hold at least one embedding")
    ridge = _checks.in_interval("ridge", ridge, 0.0, math.inf, low_open=True, high_open=True)
    max_iter = _checks.positive_int("max_iter", max_iter)
    tol = _checks.in_interval("tol", tol, 0.0, math.inf, high_open=True)  # (NaN warned "before reaching tol = nan")
    x = _design(np.concatenate([real, synthetic]).astype(np.float64))
    y = np.concatenate([np.ones(len(real)), -np.ones(len(synthetic))])
    penalty = np.full(x.shape[1], ridge)
    penalty[0] = 0.0
    theta = np.zeros(x.shape[1])
    converged = False
    with np.errstate(over="ignore", invalid="ignore"):   # (overflow is reported below, naming the inputs)
        for it in range(1, max_iter + 1):
            margin = y * (x @ theta)
            prob_wrong = 0.5 * (1.0 - np.tanh(0.5 * margin))          # sigmoid(-margin), overflow-free
            grad = -(x.T @ (y * prob_wrong)) + penalty * theta
            hess = (x.T * (prob_wrong * (1.0 - prob_wrong))) @ x + np.diag(penalty)
            hess[0, 0] += 1e-12                                          # an all-one column with zero curvature
            delta = np.linalg.solve(hess, grad)
            theta = theta - delta
            if not np.all(np.isfinite(theta)):
                break
            if np.max(np.abs(delta)) <= tol * (1.0 + np.max(np.abs(theta))):
                converged = True
                break
    if not np.all(np.isfinite(theta)):  # weights of NaN classified nothing, silently (a user trial, 2026-12-05)
        raise ValueError(f"the classifier's fit overflowed (embeddings up to {np.max(np.abs(x)):.3g} in magnitude); "
                         "scale real and synthetic down (e.g. to unit norm) and fit again")
    if not converged:
        warnings.warn(f"synthetic_filter.fit stopped at max_iter = {max_iter} Newton steps before reaching tol = "
                      f"{tol:g}; raise max_iter or ridge (separable data need a ridge to have a finite fit)",
                      RuntimeWarning, stacklevel=_checks.user_stacklevel())
    return RealSyntheticClassifier(weights=theta[1:], intercept=float(theta[0]), ridge=ridge, iterations=it)


def error_rates(classifier: RealSyntheticClassifier, real: Any, synthetic: Any) -> tuple[float, float]:
    """(type-I, type-II) on held-out embeddings: real documents rejected, synthetic documents kept; each set must
    hold at least one embedding (an empty one gave NaN)."""
    kept = {}
    for name, x in (("real", real), ("synthetic", synthetic)):
        kept[name] = classifier.keep(x)
        if kept[name].size == 0:
            raise ValueError(f"{name} must hold at least one held-out embedding (its error rate is a mean over them)")
    return float(np.mean(~kept["real"])), float(np.mean(kept["synthetic"]))
