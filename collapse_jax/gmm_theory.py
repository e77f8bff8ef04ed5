"""Closed-form theory for the LWD GMM network (seed 000, Section 3.2, Algorithms 2-3, Appendix A).

Two recursions, both exact for the *linearised* network (derivation: ``docs/gmm_theory.md``):

* ``mean_field``: Appendix A's recursion for ``E[Pi_i(t)]`` with the corrected geometric factor,
  ``E[Pi_i(t+1)] = r_t Pi_i(t) + (1 - r_t) (pibar(t) - c_t) / (1 - B c_t)``, ``r_t = (1 - alpha_t)^{k_t}``
  (the seed prints ``1 - abar^{k+1}``; summing ``alpha sum_{s<k} abar^s`` gives ``1 - abar^k``).
* ``second_moment``: a closed recursion for the first and second moments of the weights ``Pi_i(t)`` and of the
  internet's composition ``f(t)`` (share of each component among the points of ``A(t)``). It gives
  ``E||D(t)||_F^2 = sum_{i != j} E||Pi_i(t) - Pi_j(t)||^2`` including the sampling noise of each model's ``k_t``
  draws and the without-replacement overlap of draws from the same finite ``A(t)``.

The linearised network is Algorithm 3 with two simplifications, both from Appendix A:
(i) a drawn point's ownership is a fixed column of an ownership matrix ``M`` indexed by the point's generating
component (``M = I``, "well separated", by default), and (ii) no pruning (step 3 of Algorithm 2 is never needed).
Under (i)-(ii) one step of Algorithm 2 is linear in the drawn labels, which is what closes the moment recursion.
What this leaves out (pruning, absorbed replicates, the ownership's dependence on ``p``) is in the doc.

Pure NumPy, float64. Names: ``num_models`` n, ``num_components`` B, ``num_steps`` T, ``points_per_step`` L.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from collapse_jax import _checks

_E1 = np.exp(-1.0)
_E2 = np.exp(-2.0)


# ----------------------------------------------------------------------------------------------------------------
# Schedules: |A(t)|, k_t, alpha_t, c_t  (Algorithm 3, step 6; Section 4.2's alpha_t = 1/k_t, c_t = 1/(k_t B^2))
# ----------------------------------------------------------------------------------------------------------------


class Schedule(NamedTuple):
    """Per-step constants. ``internet_size`` (T+1,) is ``|A(t)|``; the rest (T,) are for the step t -> t+1."""

    internet_size: np.ndarray  # |A(t)| = m0 + n L t, t = 0..T
    k: np.ndarray  # k_t = floor(beta |A(t)|), t = 0..T-1
    alpha: np.ndarray  # alpha_t (0 where k_t = 0)
    c: np.ndarray  # c_t (0 where k_t = 0)


def _per_step(name, value, default, num_steps):
    if value is None:
        return default
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (num_steps,)).copy()
    except ValueError:
        raise ValueError(f"{name} must be a float or an array of shape ({num_steps},), got shape "
                         f"{np.shape(value)}") from None


def num_draws(beta: float, size) -> np.ndarray:
    """``k_t = floor(beta |A(t)|)`` for the internet sizes ``size`` (int64, same shape), with ``beta`` read as the
    shortest decimal that prints as it (``repr``), exactly: in floating point ``0.7 * 90`` is 62.99999999999999.
    The simulator (:func:`collapse_jax.gmm_network.step_schedule`) and :func:`schedule` both use it (they once
    disagreed at such steps: a ``1e-9`` nudge in one, none in the other)."""
    b = Fraction(repr(_checks.in_interval("beta", beta, 0.0, 1.0, low_open=True)))
    sizes = np.asarray(size)
    whole = sizes.dtype.kind in "iuf" and (not sizes.size or bool(
        np.all(np.isfinite(sizes)) and np.all(sizes >= 0) and np.all(np.floor(sizes) == sizes)))
    if not whole:
        # (-9 gave -5, 2.5 ran as 2; inf raised int()'s OverflowError: an audit, 2026-12-07)
        raise ValueError(f"size must hold whole numbers >= 0 (internet sizes), got {size!r}")
    return np.array([math.floor(b * int(s)) for s in sizes.reshape(-1)], np.int64).reshape(sizes.shape)


# The longest horizon the theory takes (its schedules are built step by step in Python: num_steps = 10^9 ran for
# hours before any check; a user trial), the simulator's too (gmm_network.MAX_STEPS).
MAX_STEPS = 1_000_000
# Components per model the simulator takes (gmm_network.MAX_COMPONENTS): its records' alive counts are int8. Here,
# without JAX, for the sweep's parser (collapse-jax --help must not import JAX).
MAX_COMPONENTS = 127


def schedule(*, num_models: int, num_components: int, points_per_step: int, beta: float, num_steps: int,
             num_human: int = 0, alpha=None, c=None) -> Schedule:
    """``|A(t)| = m0 + n L t``, ``k_t = floor(beta |A(t)|)``; ``alpha``/``c`` None = paper's ``1/k_t``, ``1/(k_t B^2)``,
    else a float or an array over t = 0..T-1 (used only where ``k_t > 0``)."""
    _checks.in_interval("beta", beta, 0.0, 1.0, low_open=True)
    _checks.positive_int("num_models", num_models)
    _checks.positive_int("num_components", num_components)
    _checks.positive_int("points_per_step", points_per_step)
    _checks.nonnegative_int("num_human", num_human)
    T = _checks.nonnegative_int("num_steps", num_steps)
    if T > MAX_STEPS:
        raise ValueError(f"num_steps must be at most {MAX_STEPS:,}, got {T:,}")
    size = num_human + num_models * points_per_step * np.arange(T + 1)
    k = num_draws(beta, size[:T])  # the simulator's own rule
    kk = np.maximum(k, 1).astype(np.float64)
    a = _per_step("alpha", alpha, 1.0 / kk, T)
    cc = _per_step("c", c, 1.0 / (kk * num_components**2), T)
    # NaN fails too; alpha_t = 0 (no update) as the simulator refuses it (accepted here; a user trial, 2026-12-07)
    bad = (k > 0) & ~((a > 0) & (a <= 1))
    if np.any(bad):
        raise ValueError(f"alpha_t must lie in (0, 1] (the simulator's range), got {float(a[bad][0])!r}")
    if np.any((k > 0) & ~((cc >= 0) & (cc * num_components < 1))):
        raise ValueError("c_t must satisfy 0 <= B c_t < 1")
    a = np.where(k > 0, a, 0.0)
    cc = np.where(k > 0, cc, 0.0)
    return Schedule(size.astype(np.int64), k, a, cc)


def contraction_factor(k, alpha):
    """Per-step contraction of the mean pairwise difference, ``r_t = (1 - alpha_t)^{k_t}`` (Appendix A)."""
    k, alpha = _k_alpha(k, alpha)
    return (1.0 - alpha) ** k


def _k_alpha(k, alpha) -> tuple[np.ndarray, np.ndarray]:
    """``k`` (whole numbers >= 0) and ``alpha`` (in [0, 1]) as float64 arrays, or a ValueError naming them (a
    negative ``k`` or an ``alpha`` of 2 gave factors outside [0, 1], a NaN alpha NaN sums; a user trial)."""
    k = _checks.array_in_interval("k", k, 0.0, np.inf, high_open=True)
    if np.any(k != np.round(k)):
        raise ValueError(f"k must hold whole numbers of draws, got {k.reshape(-1)[np.argmax(k != np.round(k))]!r}")
    return k, _checks.array_in_interval("alpha", alpha, 0.0, 1.0)


def geometric_sums(k, alpha):
    """Exact finite-k sums of the sequential weights ``w_s = (1-alpha)^{k-s}``, s = 1..k (Algorithm 2's loop).

    Returns ``(S1, S2) = (sum_{j<k} abar^j, sum_{j<k} abar^{2j}) = ((1 - abar^k)/alpha, (1 - abar^{2k})/(1 - abar^2))``;
    both equal k when alpha = 0. Then ``alpha S1 = 1 - abar^k`` is the corrected geometric factor of Appendix A.
    """
    k, a = _k_alpha(k, alpha)
    abar = 1.0 - a
    safe_a = np.where(a > 0, a, 1.0)
    one_m_abar2 = 1.0 - abar**2
    safe_d = np.where(one_m_abar2 > 0, one_m_abar2, 1.0)
    s1 = np.where(a > 0, (1.0 - abar**k) / safe_a, k)
    s2 = np.where(one_m_abar2 > 0, (1.0 - abar ** (2 * k)) / safe_d, k)
    return s1, s2


# ----------------------------------------------------------------------------------------------------------------
# Mean field (Appendix A, Eq. 10 and the k-point sum, with the corrected factor 1 - abar^k)
# ----------------------------------------------------------------------------------------------------------------


def _check_step(k, alpha, c, B: int) -> tuple[int, float, float]:
    """One step's ``k >= 0`` (whole), ``alpha`` in [0, 1] and ``0 <= c < 1 / B``, or a ValueError naming them."""
    k = _checks.nonnegative_int("k", k)
    alpha = _checks.in_interval("alpha", alpha, 0.0, 1.0)
    c = _checks.in_interval("c", c, 0.0, 1.0 / B, high_open=True)
    return k, alpha, c


def _ownership(ownership, B: int) -> np.ndarray:
    """The ownership matrix ``M`` (B, B) of assumption A1 (default I): finite, non-negative, columns summing to 1
    (column z is how a point of component z is shared among the components), or a ValueError naming it."""
    if ownership is None:
        return np.eye(B)
    if np.asarray(ownership).dtype == bool:  # (a 0/1 matrix, e.g. a permutation, is an ownership: finite_array
        ownership = np.asarray(ownership, np.float64)  # refuses booleans elsewhere; a review, 2026-12-07)
    M = _checks.finite_array("ownership", ownership, shape=(B, B))
    if np.any(M < 0) or not np.allclose(M.sum(axis=0), 1.0, atol=1e-9):
        raise ValueError(f"ownership must be a ({B}, {B}) matrix with non-negative entries and columns summing to 1, "
                         f"got column sums {np.round(M.sum(axis=0), 12).tolist()} and minimum {M.min():.3g}")
    return M


def expected_update(p, f, *, k: int, alpha: float, c: float):
    """One step of Algorithm 2 in expectation over ``k`` points drawn from an internet with composition ``f``
    (well-separated ownership): ``r p + (1 - r) (f - c) / (1 - B c)``, ``r = (1 - alpha)^k``."""
    p = _checks.finite_array("p", p)
    if p.ndim == 0 or p.shape[-1] < 1:
        raise ValueError(f"p must hold mixture weights along its last axis (..., B), got shape {p.shape}")
    B = p.shape[-1]
    for i, row in enumerate(p.reshape(-1, B)):  # (p = [2, 3], f = [2, 3] gave weights off the simplex; a user trial)
        _checks.simplex_vector("p" if p.ndim == 1 else f"p[{i}]", row, B)
    f = _checks.simplex_vector("f", f, B)
    return _update(p, f, *_check_step(k, alpha, c, B))


def _update(p, f, k: int, alpha: float, c: float):
    """:func:`expected_update` of checked values (the mean-field recursion's expectations, which the pruning term
    ``c`` may push outside the simplex, and an empty internet's ``f`` of zeros where ``k = 0``)."""
    if k == 0:
        return p.copy()
    r = (1.0 - alpha) ** k
    return r * p + (1.0 - r) * (f - c) / (1.0 - p.shape[-1] * c)


def mean_field(pi0, *, points_per_step: int, beta: float, num_steps: int, num_human: int = 0, pi_ref=None,
               alpha=None, c=None):
    """``E[Pi_i(t)]``, t = 0..T, shape (T+1, n, B), from Appendix A's recursion with the corrected factor:

        E[Pi_i(t+1)] = r_t E[Pi_i(t)] + (1 - r_t) (pibar(t) - c_t) / (1 - B c_t),   r_t = (1 - alpha_t)^{k_t},

    ``pibar(t) = (m0 pi_ref + L sum_{t' < t} sum_i E[Pi_i(t')]) / |A(t)|`` (each point carries its generator's weights;
    human points carry ``pi_ref``). Exact for the expectation of the linearised network (``docs/gmm_theory.md``, Sec. 2).
    """
    if np.ndim(pi0) != 2:  # ("must have shape (?, ?)": a user trial, 2026-12-06)
        raise ValueError(f"pi0 must hold each model's mixture weights, shape (num_models, num_components), got shape "
                         f"{np.shape(pi0)}")
    pi0 = _checks.finite_array("pi0", pi0, shape=(None, None))
    n, B = pi0.shape
    for i, row in enumerate(pi0):
        _checks.simplex_vector(f"pi0[{i}]", row, B)
    L, T = points_per_step, num_steps
    s = schedule(num_models=n, num_components=B, points_per_step=L, beta=beta, num_steps=T, num_human=num_human,
                 alpha=alpha, c=c)
    ref = _reference_weights(pi_ref, num_human, B)
    out = np.empty((T + 1, n, B))
    out[0] = pi0
    posted = num_human * ref  # sum of generator weights over the points of A(t)
    for t in range(T):
        pibar = posted / s.internet_size[t] if s.internet_size[t] > 0 else np.zeros(B)
        out[t + 1] = _update(out[t], pibar, *_check_step(int(s.k[t]), s.alpha[t], s.c[t], B))
        posted = posted + L * out[t].sum(axis=0)  # posts of step t come from Pi(t), before the update
    return out


def _dnorm_of(pi):
    diff = pi[..., :, None, :] - pi[..., None, :, :]
    return np.sqrt(np.sum(diff * diff, axis=(-3, -2, -1)))


def mean_field_dnorm(pi0, **kwargs):
    """``||D(t)||_F`` of the mean-field trajectories, t = 0..T. Every pairwise difference contracts by ``r_t``, so
    this equals ``||D(0)||_F prod_{s<t} (1 - alpha_s)^{k_s}``, about ``e^{-t}`` for alpha = 1/k."""
    return _dnorm_of(mean_field(pi0, **kwargs))


# ----------------------------------------------------------------------------------------------------------------
# Second-moment recursion (docs/gmm_theory.md, Sec. 3)
# ----------------------------------------------------------------------------------------------------------------


class Moments(NamedTuple):
    """Moments of the linearised network at one step. n models, B components.

    m: (n, B) E[Pi_i];  S: (n, n, B, B) E[Pi_i Pi_j^T];  g: (B,) E[f];  G: (B, B) E[f f^T];
    H: (n, B, B) E[f Pi_i^T];  size: |A(t)| (f is the component share among the points of A(t); 0 if A is empty).
    """

    m: np.ndarray
    S: np.ndarray
    g: np.ndarray
    G: np.ndarray
    H: np.ndarray
    size: int


def dirichlet_moments(a: float, num_components: int):
    """First and second moments of ``p ~ Dirichlet(a, ..., a)``: ``E p_b = 1/B``,
    ``E p_b p_b' = a (a + [b = b']) / (B a (B a + 1))``. Returns ``(mean (B,), second (B, B))``."""
    B = _checks.positive_int("num_components", num_components)
    a = _checks.in_interval("dirichlet_a", a, 0.0, np.inf, low_open=True, high_open=True)
    A = B * a
    mean = np.full(B, 1.0 / B)
    second = (a * a + a * np.eye(B)) / (A * (A + 1.0))
    return mean, second


def _reference_weights(pi_ref, num_human: int, B: int) -> np.ndarray:
    """The human data's weights (default uniform); ``pi_ref`` without human points is refused, as the simulator and
    the command refuse it (it was accepted with no effect; a user trial, 2026-12-07)."""
    if pi_ref is not None and num_human == 0:
        raise ValueError("pi_ref weights the human points' GMM only, and num_human is 0 (no human points): give "
                         "num_human >= 1 or leave pi_ref out")
    return np.full(B, 1.0 / B) if pi_ref is None else _checks.simplex_vector("pi_ref", pi_ref, B)


def initial_moments(*, num_models: int, num_components: int, pi0=None, dirichlet_a=None, num_human: int = 0,
                    pi_ref=None) -> Moments:
    """Moments at t = 0: models either fixed at ``pi0`` (n, B) or i.i.d. Dirichlet(a); ``A(0)``: ``num_human`` points
    with labels i.i.d. Cat(pi_ref), independent of the models."""
    n = _checks.positive_int("num_models", num_models)
    B = _checks.positive_int("num_components", num_components)
    num_human = _checks.nonnegative_int("num_human", num_human)
    # S (n, n, B, B) and its update's temporaries, a few copies: 10^5 models asked for 298 GiB (a MemoryError)
    _checks.fits_in_memory("num_models", n, 8 * n * B * B * 6, remedy=f"(the moments hold n^2 B^2 numbers, B = {B})")
    if (pi0 is None) == (dirichlet_a is None):
        raise ValueError("give exactly one of pi0 and dirichlet_a")
    if pi0 is not None:
        m = _checks.finite_array("pi0", pi0, shape=(n, B))
        for i, row in enumerate(m):
            _checks.simplex_vector(f"pi0[{i}]", row, B)
        S = np.einsum("ib,jc->ijbc", m, m)
    else:
        mean, second = dirichlet_moments(dirichlet_a, B)
        m = np.tile(mean, (n, 1))
        S = np.einsum("ib,jc->ijbc", m, m)
        S[np.arange(n), np.arange(n)] = second
    ref = _reference_weights(pi_ref, num_human, B)
    if num_human > 0:
        g = ref.copy()
        G = np.outer(ref, ref) + (np.diag(ref) - np.outer(ref, ref)) / num_human
        H = np.einsum("b,ic->ibc", ref, m)
    else:
        g, G, H = np.zeros(B), np.zeros((B, B)), np.zeros((n, B, B))
    return Moments(m, S, g, G, H, int(num_human))


def without_replacement_factor(k, alpha, internet_size):
    """``kappa = S2 - (S1^2 - S2)/(N - 1)``: ``Cov(X | A) = kappa (diag f - f f^T)`` for ``X = sum_s w_s e_{z_s}``, the
    weighted label counts of k draws without replacement from N points (the second term is the overlap)."""
    s1, s2 = geometric_sums(k, alpha)
    N = _checks.array_in_interval("internet_size", internet_size, 0.0, np.inf, high_open=True)
    if np.any(np.asarray(k, np.float64) > N):  # k draws without replacement need k points (kappa was -14 at k = 10
        raise ValueError(f"k must be at most internet_size (k draws without replacement from the internet), "  # N 3)
                         f"got k = {k} and internet_size = {internet_size}")
    overlap = np.where(N > 1, (s1 * s1 - s2) / np.where(N > 1, N - 1.0, 1.0), 0.0)
    return s2 - overlap


def moment_step(mom: Moments, *, points_per_step: int, k: int, alpha: float, c: float, ownership=None) -> Moments:
    """Moments at t+1 from moments at t (linearised network; docs/gmm_theory.md, Eqs. 3.2-3.7).

    Model i's update over its k ordered draws with labels z_1..z_k is (Algorithm 2 with ownership M e_z, no pruning)
        Pi_i' = r Pi_i + gamma (M X_i - c S1 1),   X_i = sum_s abar^{k-s} e_{z_s},   gamma = alpha / (1 - B c),
    with E[X_i | A] = S1 f, Cov(X_i | A) = kappa (diag f - f f^T), X_i and X_j independent given A. The posts of step t
    are Y_l ~ Multinomial(L, Pi_l(t)), and f' = (N f + sum_l Y_l) / (N + n L).
    """
    m, S, g, G, H, N = mom
    n, B = m.shape
    L = _checks.positive_int("points_per_step", points_per_step)
    k, alpha, c = _check_step(k, alpha, c, B)
    if k > N:  # (a pair's expected square came out negative at k = 50 from 5 points; a user trial)
        raise ValueError(f"k must be at most the internet's size (k draws without replacement), got k = {k} and "
                         f"{N} points")
    M = _ownership(ownership, B)
    ones = np.ones(B)
    if k > 0:
        r = (1.0 - alpha) ** k
        s1, _ = geometric_sums(k, alpha)
        gamma = alpha / (1.0 - B * c)
        u = gamma * s1  # = (1 - r) / (1 - B c)
        delta = c * u
        kappa = without_replacement_factor(k, alpha, N)
        # Q_i = r Pi_i + gamma M X_i;  Pi_i' = Q_i - delta 1
        EQ = r * m + u * (M @ g)[None, :]
        MGM = M @ G @ M.T
        cross = r * u * np.einsum("ibc,dc->ibd", np.swapaxes(H, 1, 2), M)  # r u E[Pi_i f^T] M^T
        EQQ = (r * r * S + cross[:, None, :, :] + np.swapaxes(cross, 1, 2)[None, :, :, :] + u * u * MGM)
        noise = gamma**2 * kappa * (M @ (np.diag(g) - G) @ M.T)  # own draws' sampling noise, i = j only
        EQQ[np.arange(n), np.arange(n)] += noise
        m_new = EQ - delta * ones[None, :]
        S_new = (EQQ - delta * EQ[:, None, :, None] - delta * EQ[None, :, None, :] + delta**2)
        EfQ = r * H + u * (G @ M.T)[None]  # E[f Q_i^T]
        EYQ = L * (r * S + u * np.einsum("lcb,dc->lbd", H, M)[:, None])  # E[Y_l Q_i^T], indexed (l, i, b, d)
    else:
        m_new, S_new = m, S
        EfQ, EYQ, delta = H, L * S, 0.0
    # composition after this step's posts (posted from Pi(t), before the update)
    N_new = N + n * L
    g_new = (N * g + L * m.sum(axis=0)) / N_new
    sumH = H.sum(axis=0)
    YY = L * (np.diag(m.sum(axis=0)) - np.einsum("llbc->bc", S)) + L * L * S.sum(axis=(0, 1))
    G_new = (N * N * G + N * L * (sumH + sumH.T) + YY) / N_new**2
    H_new = (N * EfQ + EYQ.sum(axis=0)) / N_new - delta * np.einsum("b,id->ibd", g_new, np.ones((n, B)))
    return Moments(m_new, S_new, g_new, G_new, H_new, N_new)


def pair_sq_distances(mom: Moments):
    """``E||Pi_i - Pi_j||^2`` for all pairs, (n, n): ``tr S_ii + tr S_jj - 2 tr S_ij``."""
    tr = np.einsum("ijbb->ij", mom.S)
    d = np.diag(tr)
    return d[:, None] + d[None, :] - 2.0 * tr


def second_moment(*, num_models: int = 3, num_components: int = 2, points_per_step: int = 3, beta: float = 0.5,
                  num_steps: int = 200, pi0=None, dirichlet_a=None, num_human: int = 0, pi_ref=None, alpha=None,
                  c=None, ownership=None):
    """Run the moment recursion (Eqs. 3.3-3.9) for t = 0..T from fixed ``pi0`` (n, B) or i.i.d. Dirichlet(``dirichlet_a``)
    initial weights (Dirichlet(1) if neither is given); ``ownership`` is the matrix M of assumption A1 (default I).
    Returns a dict of arrays over t:
    ``dnorm2`` (T+1,) = E||D(t)||_F^2; ``pair_sq`` (T+1, n, n); ``mean`` (T+1, n, B) = E[Pi_i(t)];
    ``composition_mean`` (T+1, B) = E[f(t)]; ``diversity`` (T+1,) = E[1 - ||f(t)||^2]; ``k`` (T,). While the
    internet is empty (t = 0 without human data: ``|A(0)| = 0``) ``f(t)`` is undefined: ``diversity`` is NaN and
    ``composition_mean`` 0 there."""
    n, B, T = num_models, num_components, _checks.nonnegative_int("num_steps", num_steps)
    if pi0 is None and dirichlet_a is None:
        dirichlet_a = 1.0
    s = schedule(num_models=n, num_components=B, points_per_step=points_per_step, beta=beta, num_steps=T,
                 num_human=num_human, alpha=alpha, c=c)
    mom = initial_moments(num_models=n, num_components=B, pi0=pi0, dirichlet_a=dirichlet_a, num_human=num_human,
                          pi_ref=pi_ref)
    pair = np.empty((T + 1, n, n))
    mean = np.empty((T + 1, n, B))
    gmean = np.empty((T + 1, B))
    div = np.empty(T + 1)
    for t in range(T + 1):
        pair[t] = pair_sq_distances(mom)
        mean[t] = mom.m
        gmean[t] = mom.g
        div[t] = (1.0 - np.trace(mom.G)) if mom.size > 0 else np.nan
        if t == T:
            break
        mom = moment_step(mom, points_per_step=points_per_step, k=int(s.k[t]), alpha=s.alpha[t], c=s.c[t],
                          ownership=ownership)
    return {"dnorm2": pair.sum(axis=(1, 2)), "pair_sq": pair, "mean": mean, "composition_mean": gmean,
            "diversity": div, "k": s.k}


def second_moment_dnorm2(**kwargs):
    """``E||D(t)||_F^2`` for t = 0..T from the second-moment recursion (arguments of ``second_moment``)."""
    return second_moment(**kwargs)["dnorm2"]


def second_moment_dnorm(**kwargs):
    """``sqrt(E||D(t)||_F^2)``, t = 0..T: the root-mean-square ``||D(t)||_F`` predicted by the recursion."""
    return np.sqrt(np.maximum(second_moment_dnorm2(**kwargs), 0.0))


def expected_pair_sq_after_step(p_i, p_j, f, *, internet_size: int, k: int, alpha: float, c: float, ownership=None):
    """One step, conditional on the internet (composition ``f``, ``N`` points) and on ``Pi_i, Pi_j``:

        E||Pi_i' - Pi_j'||^2 = r^2 ||Pi_i - Pi_j||^2 + 2 gamma^2 kappa tr(M (diag f - f f^T) M^T),

    r = (1-alpha)^k, gamma = alpha/(1 - B c), kappa = S2 - (S1^2 - S2)/(N - 1)  (docs/gmm_theory.md, Eq. 3.2)."""
    f = _checks.finite_array("f", f, shape=(None,))
    B = f.size
    f = _checks.simplex_vector("f", f, B)
    p_i, p_j = (_checks.simplex_vector(name, x, B) for name, x in (("p_i", p_i), ("p_j", p_j)))
    k, alpha, c = _check_step(k, alpha, c, B)
    if _checks.positive_int("internet_size", internet_size) < k:
        raise ValueError(f"k must be at most internet_size (k draws without replacement from the internet), got k = "
                         f"{k} and internet_size = {internet_size}")
    M = _ownership(ownership, B)
    diff2 = np.sum((p_i - p_j) ** 2)
    if k == 0:
        return diff2
    r = (1.0 - alpha) ** k
    gamma = alpha / (1.0 - B * c)
    kappa = without_replacement_factor(k, alpha, internet_size)
    return r * r * diff2 + 2.0 * gamma**2 * kappa * np.trace(M @ (np.diag(f) - np.outer(f, f)) @ M.T)


# ----------------------------------------------------------------------------------------------------------------
# The t^{-1/2} law (docs/gmm_theory.md, Sec. 4)
# ----------------------------------------------------------------------------------------------------------------


def noise_floor_constant(beta: float) -> float:
    """``C_beta`` in the quasi-static fixed point ``E||Pi_i - Pi_j||^2 ~ C_beta (1 - ||f||^2) / k_t`` (alpha = 1/k,
    k -> infinity): ``C_beta = 1 - 2 beta (1 - e^-1)^2 / (1 - e^-2)``; 0.5379 at beta = 0.5. For B = 2 this is
    ``E(p_i - p_j)^2 ~ C_beta f (1 - f) / k_t`` for the weight p of one component.

    ``beta`` must lie in (0, 1], as in :func:`schedule` (a model draws ``k_t = floor(beta |A(t)|)`` of the
    ``|A(t)|`` points without replacement); beyond 1.08 the formula went negative (``asymptotic_dnorm``: NaN)."""
    beta = _checks.in_interval("beta", beta, 0.0, 1.0, low_open=True)
    return 1.0 - 2.0 * beta * (1.0 - _E1) ** 2 / (1.0 - _E2)


def asymptotic_dnorm(t, *, num_models: int, points_per_step: int, beta: float, diversity: float):
    """Large-t law ``||D(t)||_F ~ sqrt(n (n-1) C_beta (1 - ||f||^2) / k_t)``, ``k_t ~ beta n L t``, i.e. a constant times
    ``t^{-1/2}``; ``diversity`` is ``1 - ||f||^2`` (1/2 for two equally shared components).

    ``t`` (a float or an array) must be > 0 and finite: the law diverges at ``t = 0`` (it returned inf there, NaN
    for ``t < 0``), where nothing has been posted yet (``k_0 = 0``); it describes large t only (about 10% off at
    t = 20, 1% at t = 200, docs/gmm_theory.md Sec. 4). ``num_models`` and ``points_per_step`` are integers >= 1,
    ``beta`` in (0, 1], ``diversity`` in [0, 1)."""
    _checks.positive_int("num_models", num_models)
    _checks.positive_int("points_per_step", points_per_step)
    _checks.in_interval("diversity", diversity, 0.0, 1.0, high_open=True)
    c_beta = noise_floor_constant(beta)
    t = _checks.array_in_interval("t", t, 0.0, np.inf, low_open=True, high_open=True)
    k = beta * num_models * points_per_step * t
    return np.sqrt(num_models * (num_models - 1) * c_beta * diversity / k)


def quantile_over_rms_two_components(num_models: int, q: float = 0.5) -> float:
    """B = 2: ratio of the q-quantile of ``||D||_F`` to its RMS when the models' weights are i.i.d. Gaussian around a
    common value (the noise floor): ``||D||_F^2 = 4 n sum_i (p_i - pbar)^2 ~ RMS^2 chi2_{n-1} / (n-1)``. For n = 3 the
    median ratio is ``sqrt(ln 2) = 0.833`` (Rayleigh). Ignores the spread of f over replicates."""
    from scipy.stats import chi2

    if _checks.positive_int("num_models", num_models) < 2:  # a NaN came back (no spread among one model)
        raise ValueError(f"num_models must be at least 2, got {num_models}")
    q = _checks.in_interval("q", q, 0.0, 1.0, low_open=True, high_open=True)
    dof = num_models - 1
    return float(np.sqrt(chi2.ppf(q, dof) / dof))


# ----------------------------------------------------------------------------------------------------------------
# Size of the well-separated assumption: ownership matrix by quadrature (d = 1)
# ----------------------------------------------------------------------------------------------------------------


MAX_NODES = 1000   # Gauss-Hermite nodes of ownership_matrix (80 resolve any separation to 1e-12)


def ownership_matrix(mu, sigma, weights=None, *, num_nodes: int = 80):
    """``M[b, b'] = E[o_b(u) | u ~ N(mu_b', sigma)]`` for a model with weights ``p`` (default uniform), d = 1, by
    Gauss-Hermite quadrature. ``M = I`` is the well-separated limit; ``1 - diag(M)`` is the ownership a component's
    own points leak to the others. M depends on p: that dependence is what the linearised network leaves out."""
    mu = _checks.finite_array("mu", mu)
    if mu.ndim > 2 or (mu.ndim == 2 and mu.shape[1] != 1):  # d > 1 was flattened into 1-D components (a user trial)
        raise ValueError(f"mu must hold one-dimensional means, shape (B,) or (B, 1) (d = 1 only), got shape {mu.shape}")
    mu = mu.reshape(-1)
    if mu.size < 1:
        raise ValueError("mu must hold at least one component's mean")
    sigma = np.asarray(sigma, np.float64)
    if sigma.size != 1:  # a (d, d) sigma had its [0, 0] entry taken without a word
        raise ValueError(f"sigma must be one variance (d = 1 only), got shape {sigma.shape}")
    sd = float(np.sqrt(_checks.in_interval("sigma", sigma.reshape(-1)[0], 0.0, math.inf, low_open=True,
                                           high_open=True)))
    B = mu.size
    p = np.full(B, 1.0 / B) if weights is None else _checks.simplex_vector("weights", weights, B)
    num_nodes = _checks.positive_int("num_nodes", num_nodes)
    if num_nodes > MAX_NODES:  # (10^7 nodes asked NumPy for 728 TiB; Gauss-Hermite is exact for far fewer)
        raise ValueError(f"num_nodes must be at most {MAX_NODES}, got {num_nodes:,}")
    x, w = np.polynomial.hermite_e.hermegauss(num_nodes)  # nodes/weights for exp(-x^2/2)
    w = w / w.sum()
    u = mu[None, :] + sd * x[:, None]  # (nodes, b') points from component b'
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    ll = -0.5 * ((u[:, :, None] - mu[None, None, :]) / sd) ** 2 + logp[None, None, :]  # (nodes, b', b)
    ll = ll - ll.max(axis=-1, keepdims=True)
    o = np.exp(ll)
    o = o / o.sum(axis=-1, keepdims=True)
    return np.einsum("n,nab->ba", w, o)
