"""Plain NumPy reference for the Gaussian recursion: raw draws from the mixture, sample mean, unbiased variance.
Accumulate-subsample keeps every draw in a pool and fits on n_t of them chosen without replacement."""

import numpy as np


def simulate(rng, mu, sigma, alpha, n, regime, num_replicates):
    n = np.asarray(n).astype(int)
    out = np.empty((num_replicates, n.shape[0]))
    for r in range(num_replicates):
        data = rng.normal(mu, sigma, n[0])
        pool = data
        m, s = data.mean(), data.std(ddof=1)
        out[r, 0] = (m - mu) ** 2 + (s - sigma) ** 2
        for t in range(1, n.shape[0]):
            real = rng.random(n[t]) < alpha[t]
            new = np.where(real, rng.normal(mu, sigma, n[t]), rng.normal(m, s, n[t]))
            pool = np.concatenate([pool, new])
            if regime == "accumulate-subsample":
                data = rng.choice(pool, size=n[t], replace=False)
            else:
                data = pool if regime == "accumulate" else new
            m, s = data.mean(), data.std(ddof=1)
            out[r, t] = (m - mu) ** 2 + (s - sigma) ** 2
    return out
