"""Plain NumPy reference for the Gaussian recursion: raw draws from the mixture, sample mean, unbiased variance.
Accumulate-subsample keeps every draw in a pool and fits on n_t of them chosen without replacement.

``fit_moments_pairwise``: the fit's exact second moments by the pair sums of docs/recursions.md written out
directly (every pair of generations, every earlier fit: O(T^3)), against which the library's O(T^2) running sums
are checked."""

import numpy as np


def simulate(rng, mu, sigma, alpha, n, regime, num_replicates, record="loss"):
    """Losses (R, T + 1), or with ``record="fit"`` the fits (R, T + 1, 2): mean and unbiased variance."""
    n = np.asarray(n).astype(int)
    out = np.empty((num_replicates, n.shape[0]) + ((2,) if record == "fit" else ()))

    def put(r, t, data):
        m, s = data.mean(), data.std(ddof=1)
        out[r, t] = (m, s * s) if record == "fit" else (m - mu) ** 2 + (s - sigma) ** 2
        return m, s

    for r in range(num_replicates):
        data = rng.normal(mu, sigma, n[0])
        pool = data
        m, s = put(r, 0, data)
        for t in range(1, n.shape[0]):
            real = rng.random(n[t]) < alpha[t]
            new = np.where(real, rng.normal(mu, sigma, n[t]), rng.normal(m, s, n[t]))
            pool = np.concatenate([pool, new])
            if regime == "accumulate-subsample":
                data = rng.choice(pool, size=n[t], replace=False)
            else:
                data = pool if regime == "accumulate" else new
            m, s = put(r, t, data)
    return out


def fit_moments_pairwise(alpha, n, regime):
    """``(E m_t^2, E v_t)`` for mu = 0, sigma = 1, t = 0..T. Row k of generation h: ``z_k = (1 - R_k) m_{h-1} + s_k
    eps_k``; the fit at t averages ``b_t`` rows drawn uniformly, independently of the values, from the window W_t
    (replace: generation t; otherwise every generation so far). M[t, r] = E m_t m_r, Y[s, h] = E m_s z_k (k in h),
    Z[g, h] = E z_j z_k (j != k), D[h] = E z_k^2."""
    a = np.asarray(alpha, float).copy()
    a[0] = 1.0
    n = np.asarray(n, float)
    T = len(n) - 1
    M, Y, Z = (np.zeros((T + 1, T + 1)) for _ in range(3))
    Ev, D = np.zeros(T + 1), np.zeros(T + 1)

    def window(t):
        return [t] if regime == "replace" else list(range(t + 1))

    def y(s, h):  # E m_s z_k: before generation h is drawn, z_k = (1 - R_k) m_{h-1} + noise independent of m_s
        if s < 0:
            return 0.0
        return Y[s, h] if s >= h else (1 - a[h]) * M[s, h - 1]

    for t in range(T + 1):
        for h in range(t + 1):
            Z[t, h] = Z[h, t] = (1 - a[t]) * y(t - 1, h)
        D[t] = (1 - a[t]) * (M[t - 1, t - 1] if t else 0.0) + a[t] + (1 - a[t]) * (Ev[t - 1] if t else 0.0)
        w = window(t)
        size = sum(n[g] for g in w)
        b = n[t] if regime != "accumulate" else size
        same = sum(n[g] * D[g] for g in w)
        pairs = sum(n[g] * n[h] * Z[g, h] for g in w for h in w) - sum(n[g] * Z[g, g] for g in w)
        M[t, t] = same / (b * size) + (b - 1) / (b * size * (size - 1)) * pairs
        Ev[t] = b / (b - 1) * (same / size - M[t, t])
        for r in range(t):
            M[t, r] = M[r, t] = sum(n[h] * y(r, h) for h in w) / size
        for h in range(t + 1):
            Y[t, h] = (sum(n[g] * Z[g, h] for g in w) + (D[h] - Z[h, h] if h in w else 0.0)) / size
    return np.diag(M).copy(), Ev
