"""Plain NumPy reference for the EM mixture recursion: raw draws, a loop over replicates and generations, plain EM.

Step t draws n_t points, each real with probability alpha_t (a component of the true mixture, then a normal) or
synthetic (the same from the last fit); EM (same start, guards and stopping rule as collapse_jax.mixture_refit) refits
on step t's points (replace) or on all points so far (accumulate). Risk: W1 between the mixing measures.
"""

from __future__ import annotations

import numpy as np


def mixing_w1(w1, m1, w2, m2):
    points = np.concatenate([m1, m2])
    mass = np.concatenate([w1, -np.asarray(w2)])
    order = np.argsort(points)
    return float(np.sum(np.abs(np.cumsum(mass[order])[:-1]) * np.diff(points[order])))


def em_step(x, w, m, s, var_floor):
    with np.errstate(divide="ignore"):  # a component of weight 0 (it died): log 0 = -inf, responsibility 0
        log_w = np.log(w)
    logp = log_w - np.log(s) - 0.5 * np.log(2 * np.pi) - 0.5 * ((x[:, None] - m) / s) ** 2
    logp -= logp.max(axis=1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(axis=1, keepdims=True)
    mass = r.sum(0)
    alive = mass > 1e-12 * x.shape[0]
    new_m, new_s = m.copy(), s.copy()
    for k in range(w.shape[0]):
        if alive[k]:
            new_m[k] = np.sum(r[:, k] * x) / mass[k]
            new_s[k] = np.sqrt(max(np.sum(r[:, k] * (x - new_m[k]) ** 2) / mass[k], var_floor))
    return mass / x.shape[0], new_m, new_s


def em_fit(x, w, m, s, max_iter, tol, var_floor):
    for it in range(1, max_iter + 1):
        nw, nm, ns = em_step(x, w, m, s, var_floor)
        change = max(np.max(np.abs(nw - w)), np.max(np.abs(nm - m) / s), np.max(np.abs(ns - s) / s))
        w, m, s = nw, nm, ns
        if change <= tol:
            break
    return w, m, s, it


def draw(rng, size, alpha, truth, fit):
    out = np.empty(size)
    for i in range(size):
        w, m, s = truth if rng.random() < alpha else fit
        k = rng.choice(len(w), p=w / w.sum())
        out[i] = rng.normal(m[k], s[k])
    return out


def simulate(rng, weights, means, sds, alpha, n, regime="replace", num_replicates=100, max_iter=100, tol=1e-5,
             var_floor=1e-6):
    truth = tuple(np.asarray(a, dtype=np.float64) for a in (weights, means, sds))
    n = np.asarray(n).astype(int)
    out = np.empty((num_replicates, n.shape[0]))
    for r in range(num_replicates):
        data = draw(rng, n[0], 1.0, truth, truth)
        fit = em_fit(data, *truth, max_iter, tol, var_floor)[:3]
        out[r, 0] = mixing_w1(truth[0], truth[1], fit[0], fit[1])
        for t in range(1, n.shape[0]):
            new = draw(rng, n[t], alpha[t], truth, fit)
            data = np.concatenate([data, new]) if regime == "accumulate" else new
            fit = em_fit(data, *fit, max_iter, tol, var_floor)[:3]
            out[r, t] = mixing_w1(truth[0], truth[1], fit[0], fit[1])
    return out
