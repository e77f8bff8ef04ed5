"""Plain NumPy reference of the LWD GMM network (seed 000, Algorithms 2 and 3): loops, obvious, slow.

Written straight from ``shared/spec/lwd_gmm_network.md`` and independent of ``collapse_jax`` so that the JAX
simulator can be checked against it statistically.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def log_normal_pdf(u, mu, sigma_inv, logdet):
    """log N(u; mu_b, Sigma) for every component b: (B,)."""
    dim = mu.shape[1]
    diff = u[None, :] - mu
    quad = np.einsum("bi,ij,bj->b", diff, sigma_inv, diff)
    return -0.5 * (quad + logdet + dim * np.log(2 * np.pi))


def zivkovic_update(p, points_loglik, alpha, c, eps):
    """Algorithm 2: sequential weight update of one model over its drawn points (rows of log-likelihoods)."""
    p = p.copy()
    B = p.size
    for ll in points_loglik:
        with np.errstate(divide="ignore"):
            z = np.log(p) + ll
        z = z - z.max()
        o = np.exp(z)
        o = o / o.sum()
        for b in range(B):
            p[b] = (1 - alpha) * p[b] + alpha * (o[b] - c) / (1 - B * c)
        for b in range(B):
            if p[b] <= 0:
                for bp in range(B):
                    if bp != b:
                        p[bp] = p[bp] / (1 + eps - p[b])
                p[b] = 0.0
    return p


def simulate(rng, *, num_models=3, mu=((-5.0,), (5.0,)), sigma=((1.0,),), points_per_step=3, beta=0.5,
             dirichlet_a=1.0, num_steps=200, eps=0.0, num_human=0, pi_ref=None, alpha=None, c=None):
    """One replicate. Returns (dnorm (T+1,), Pi (T+1, n, B)); ``alpha``/``c`` None = paper's 1/k, 1/(k B^2),
    a float (constant) or an array over steps t = 0..T-1."""
    mu = np.asarray(mu, float)
    sigma = np.asarray(sigma, float)
    B, dim = mu.shape
    n, L, T = num_models, points_per_step, num_steps
    sigma_inv = np.linalg.inv(sigma)
    logdet = np.linalg.slogdet(sigma)[1]
    chol = np.linalg.cholesky(sigma)

    def draw_points(weights, count):
        comps = rng.choice(B, size=count, p=weights)
        return mu[comps] + rng.standard_normal((count, dim)) @ chol.T

    Pi = rng.dirichlet(np.full(B, dirichlet_a), size=n)
    internet = []  # log-likelihoods of each posted point, computed once when it is posted
    if num_human > 0:
        ref = np.full(B, 1.0 / B) if pi_ref is None else np.asarray(pi_ref, float)
        internet.extend(log_normal_pdf(u, mu, sigma_inv, logdet) for u in draw_points(ref, num_human))
    dnorm = np.zeros(T + 1)
    history = np.zeros((T + 1, n, B))
    for t in range(T + 1):
        D = np.array([[np.linalg.norm(Pi[i] - Pi[j]) for j in range(n)] for i in range(n)])
        dnorm[t] = np.linalg.norm(D)
        history[t] = Pi
        if t == T:
            break
        posts = [draw_points(Pi[i] / Pi[i].sum(), L) for i in range(n)]
        N = len(internet)
        k = math.floor(Fraction(repr(float(beta))) * N)  # beta as the decimal it prints as: 0.7 * 90 = 63
        if k > 0:
            a_t = 1.0 / k if alpha is None else float(np.broadcast_to(alpha, (T,))[t])
            c_t = 1.0 / (k * B * B) if c is None else float(np.broadcast_to(c, (T,))[t])
            lls = np.array(internet)
            new = np.empty_like(Pi)
            for i in range(n):
                idx = rng.choice(N, size=k, replace=False)  # ordered, uniformly random, without replacement
                new[i] = zivkovic_update(Pi[i], lls[idx], a_t, c_t, eps)
            Pi = new
        for i in range(n):
            internet.extend(log_normal_pdf(u, mu, sigma_inv, logdet) for u in posts[i])
    return dnorm, history
