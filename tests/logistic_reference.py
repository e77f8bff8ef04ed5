"""Plain NumPy reference for the logistic recursion: raw draws, a loop over replicates and generations, plain Newton.

Step t draws n_t fresh feature vectors x ~ N(0, I_d); each label is real with probability alpha_t (from the true
theta) or synthetic (from the last fit); Newton's method on the ridge-penalised log-likelihood (same start, step
halving, stopping rule and failure checks as collapse_jax.logistic) refits on step t's points (replace) or on all
points so far (accumulate). Risk ||theta_hat - theta||^2, NaN from the first failed fit on.
"""

from __future__ import annotations

import numpy as np


def _objective(design, y, theta, ridge):
    eta = design @ theta
    prob = 1 / (1 + np.exp(-eta))
    ll = np.sum(y * eta - np.logaddexp(0, eta)) - 0.5 * ridge * theta @ theta
    grad = design.T @ (y - prob) - ridge * theta
    info = design.T @ (design * (prob * (1 - prob))[:, None]) + ridge * np.eye(theta.shape[0])
    return ll, grad, info


def newton_fit(design, y, start, max_iter=50, tol=1e-8, ridge=1e-6):
    """Returns (theta, steps, ok)."""
    theta = start.copy()
    ll, grad, info = _objective(design, y, theta, ridge)
    step = np.linalg.solve(info, grad)
    converged = False
    steps = 0
    while not converged and steps < max_iter:
        cand = theta + step
        ll_c, g_c, h_c = _objective(design, y, cand, ridge)
        small = np.max(np.abs(step)) <= tol * (1 + np.max(np.abs(theta)))
        if ll_c >= ll - 64 * np.finfo(float).eps * (1 + abs(ll)):
            theta, ll, grad, info = cand, ll_c, g_c, h_c
            step = np.linalg.solve(info, grad)
        else:
            step = step / 2
        steps += 1
        converged = small
    separated = np.min((2 * y - 1) * (design @ theta)) > 0
    return theta, steps, bool(converged and np.all(np.isfinite(theta)) and not separated)


def draw(rng, size, alpha, theta, fit):
    design = np.empty((size, theta.shape[0]))
    y = np.empty(size)
    for i in range(size):
        row = np.concatenate([[1.0], rng.normal(size=theta.shape[0] - 1)])
        source = theta if rng.random() < alpha else fit
        y[i] = float(rng.random() < 1 / (1 + np.exp(-row @ source)))
        design[i] = row
    return design, y


def simulate(rng, beta, intercept, alpha, n, regime="replace", num_replicates=100, **fit_kw):
    theta = np.concatenate([[intercept], np.asarray(beta, dtype=np.float64)])
    n = np.asarray(n).astype(int)
    out = np.empty((num_replicates, n.shape[0]))
    for r in range(num_replicates):
        design, y = draw(rng, n[0], 1.0, theta, theta)
        fit, _, alive = newton_fit(design, y, np.zeros_like(theta), **fit_kw)
        out[r, 0] = np.sum((fit - theta) ** 2) if alive else np.nan
        for t in range(1, n.shape[0]):
            new_x, new_y = draw(rng, n[t], alpha[t], theta, fit)
            if regime == "accumulate":
                design, y = np.concatenate([design, new_x]), np.concatenate([y, new_y])
            else:
                design, y = new_x, new_y
            fit, _, ok = newton_fit(design, y, fit, **fit_kw)
            alive = alive and ok
            out[r, t] = np.sum((fit - theta) ** 2) if alive else np.nan
    return out
