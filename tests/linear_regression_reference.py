"""Plain NumPy reference for seed 004's linear regression loop: raw draws, np.linalg.lstsq on stacked data."""

import numpy as np


def simulate(rng, w_star, sigma, dim, num_samples, num_iterations, regime, num_replicates):
    out = np.empty((num_replicates, num_iterations))
    for r in range(num_replicates):
        x = rng.standard_normal((num_samples, dim))
        xs, ys = [], []
        w = np.asarray(w_star, dtype=float)
        for i in range(num_iterations):
            y = x @ w + sigma * rng.standard_normal(num_samples)
            if regime == "accumulate":
                xs.append(x)
                ys.append(y)
                w = np.linalg.lstsq(np.vstack(xs), np.concatenate(ys), rcond=None)[0]
            else:
                w = np.linalg.lstsq(x, y, rcond=None)[0]
            out[r, i] = np.sum((w - w_star) ** 2)
    return out
