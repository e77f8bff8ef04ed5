"""Plain NumPy/SciPy reference for the Sigma estimators: slow, obvious loops (seed 002, spec sigma_spectral.md)."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, polygamma


def gram(x):
    d = x.shape[1]
    g = np.zeros((d, d))
    for row in x:
        g += np.outer(row, row)
    return g


def logdet(g, eps=0.0):
    sign, val = np.linalg.slogdet(g + eps * np.eye(g.shape[0]))
    assert sign > 0
    return val


def theorem1(g1, g2):
    lam1 = np.linalg.eigvalsh(g1)
    rho = np.linalg.eigvalsh(g2).max()
    return np.sum(np.log(lam1)), np.sum(np.log(lam1 + rho))


def l_hat(x_block, num_points):
    n, d = x_block.shape
    return logdet(gram(x_block)) + d * np.log(num_points / n)


def mahalanobis(x_block):
    n = x_block.shape[0]
    s_inv = np.linalg.inv(gram(x_block) / n)
    return np.array([row @ s_inv @ row for row in x_block])


def wishart_bias(d, n, big_n):
    def b(m):
        return sum(digamma((m - i + 1) / 2) + np.log(2 / m) for i in range(1, d + 1))
    return b(big_n) - b(n)


def wishart_variance(d, n, big_n):
    return sum(polygamma(1, (n - i + 1) / 2) - polygamma(1, (big_n - i + 1) / 2) for i in range(1, d + 1))


def track_one(g1, n, big_n, eps):
    """(G_I, U_LLN, U_cov) of the spec's Track I and Track II."""
    d = g1.shape[0]
    tau = big_n - n
    lam = np.linalg.eigvalsh(g1)
    g_i = np.sum(np.log(1 + lam / (eps + tau)))
    u_lln = logdet(g1, eps) + d * np.log(big_n / n)
    u_cov = logdet(g1 / n, eps)
    return g_i, u_lln, u_cov


def pairwise(x):
    m = x.shape[0]
    return np.array([[np.linalg.norm(x[i] - x[j]) for j in range(m)] for i in range(m)])


def classical_mds(dist, k=2):
    m = dist.shape[0]
    j = np.eye(m) - np.ones((m, m)) / m
    b = -0.5 * j @ (dist ** 2) @ j
    w, v = np.linalg.eigh(b)
    order = np.argsort(w)[::-1][:k]
    return v[:, order] * np.sqrt(np.maximum(w[order], 0))
