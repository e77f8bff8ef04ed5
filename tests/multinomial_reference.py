"""Plain NumPy reference for the multinomial recursion: draws every raw sample, loops over replicates and steps.

Slow and obvious on purpose (seed 003, Section 3 and Appendices A, D): step t draws n_t tokens, each real with
probability alpha_t (from p) or synthetic (from the last fit); the filter keeps a real token with probability 1 - a
and a synthetic one with probability b, redrawing the batch if nothing is kept. Accumulate-subsample keeps every
token of generations 0..t in a pool and fits on n_t of them chosen without replacement (``Generator.choice``).
"""

from __future__ import annotations

import numpy as np


def simulate(rng: np.random.Generator, p, alpha, n, regime: str = "replace", type1: float = 0.0,
             type2: float = 0.0, num_replicates: int = 100) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[0]
    alpha = np.asarray(alpha, dtype=np.float64)
    n = np.asarray(n).astype(int)
    out = np.empty((num_replicates, n.shape[0]))
    for r in range(num_replicates):
        tokens = rng.choice(k, size=n[0], p=p)
        pool = tokens
        counts = np.bincount(tokens, minlength=k).astype(float)
        total = float(n[0])
        p_hat = counts / total
        out[r, 0] = np.sum((p_hat - p) ** 2)
        for t in range(1, n.shape[0]):
            while True:
                real = rng.random(n[t]) < alpha[t]
                tokens = np.where(real, rng.choice(k, size=n[t], p=p), rng.choice(k, size=n[t], p=p_hat))
                if regime == "filter":
                    keep = np.where(real, rng.random(n[t]) >= type1, rng.random(n[t]) < type2)
                    tokens = tokens[keep]
                if tokens.size > 0:
                    break
            new = np.bincount(tokens, minlength=k).astype(float)
            if regime == "accumulate-subsample":
                pool = np.concatenate([pool, tokens])
                fit = rng.choice(pool, size=n[t], replace=False)
                counts, total = np.bincount(fit, minlength=k).astype(float), float(n[t])
            elif regime == "accumulate":
                counts, total = counts + new, total + tokens.size
            else:
                counts, total = new, float(tokens.size)
            p_hat = counts / total
            out[r, t] = np.sum((p_hat - p) ** 2)
    return out
