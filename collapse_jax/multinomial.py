"""Multinomial / categorical next-token model iteratively retrained on real + synthetic data (seed 003, Section 3).

True distribution ``Cat(p)`` on K categories; the estimator is the vector of empirical frequencies. At generation
``t >= 1`` the training data are ``n_t`` draws from ``alpha_t p + (1 - alpha_t) p_hat_{t-1}`` (Eq. 1). Risk
``r_t = E||p_hat_t - p||^2``. Regimes (:class:`MultinomialConfig`): ``replace`` (Theorem 3.1), ``accumulate``
(Theorem A.1, general ``alpha_t``), ``filter`` (Theorem D.2: a classifier with type-I error ``a`` and type-II error
``b`` screens each batch), ``accumulate-subsample`` (a fixed training budget as in Kazdan et al. 2024: the fit
reads ``n_t`` points drawn without replacement from the accumulate regime's pool, :func:`accumulate_subsample_risk`;
``native`` and ``jax`` backends). Pure synthetic is ``alpha_t = 0``; adaptive weights (Appendix E) are
:func:`adaptive_alpha`.

A generation costs O(K) whatever ``n_t``: counts are drawn as ``Multinomial(n_t, q_t)`` by a balanced binary tree of
K - 1 conditional binomials (:func:`sample_multinomial`), never as ``n_t`` individual draws; a subsample of the pool
likewise, by K - 1 conditional hypergeometric draws (:func:`sample_multivariate_hypergeometric`).

Simulator, three backends with the same distribution (checked against each other and against the raw-draw NumPy
reference or the exact recurrences in tests/):
- ``native`` (CPU default): :func:`batched_risk_native`, a C++ kernel (``collapse_jax/_native/multinomial_risk.cc``)
  that runs whole replicates with per-replicate loops (inversion / BTRS binomials, conditional binomials across
  categories; for accumulate-subsample, conditional hypergeometrics by HRUA) on a SplitMix64 stream seeded from
  each replicate's JAX key; multithreaded.
- ``jax`` (portable: GPU, or no C++ compiler): the simulator contract (docs/driver.md) for one replicate,
  :func:`init` and :func:`step` (the binomial-tree sampler), run by :mod:`collapse_jax.driver` (``lax.scan`` over
  generations, ``vmap`` over replicates and over a grid of schedules, the replicate axis sharded).
- ``pallas`` (replace and accumulate, when asked for): :mod:`collapse_jax.multinomial_pallas`, one Triton kernel
  that runs whole replicates per lane (conditional binomials across categories, as the native kernel), 17-32x the
  ``jax`` path on an H200, but not the GPU default: one GPU run found its mean loss off the exact recurrence
  (:func:`resolve_backend`; docs/benchmarks.md).
Replicate ``i`` uses the key ``fold_in(seed, i)`` in all, so results do not depend on chunking; the backends draw
different numbers from the same law. Theory:
:func:`replace_risk`, :func:`accumulate_risk`, :func:`filter_risk`, :func:`accumulate_subsample_risk`,
:func:`fixed_alpha_limit`, :func:`pure_synthetic_limit`, :func:`adaptive_alpha`.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, driver, schedules
from collapse_jax.replicates import check_mesh, is_prng_key

# Appended only: the native kernel receives ``REGIMES.index(regime)`` for its regimes, NATIVE_REGIMES.
REGIMES = ("replace", "accumulate", "filter", "accumulate-subsample")
NATIVE_REGIMES = ("replace", "accumulate", "filter", "accumulate-subsample")  # the C++ kernel's regimes 0-3


# ==================================================================================================================
# Exact binomial sampler: inversion for small means, BTRS (Hoermann 1993) otherwise
# ==================================================================================================================
_BTRS_MIN_MEAN = 10.0


def _binomial_inversion(key: jax.Array, n: jax.Array, p: jax.Array) -> jax.Array:
    """Sequential-search inversion for ``n p < 10`` (p <= 1/2): walk the cdf from 0, pmf by its ratio recursion."""
    dtype = p.dtype
    u = jax.random.uniform(key, p.shape, dtype)
    ratio = p / (1 - p)
    f0 = jnp.exp(n * jnp.log1p(-p))

    def cond(c):
        k, f, cdf = c
        return jnp.any((u > cdf) & (k < n) & (f > 0))

    def body(c):
        k, f, cdf = c
        go = (u > cdf) & (k < n) & (f > 0)
        k1 = k + 1
        f1 = f * (n - k) / k1 * ratio
        return jnp.where(go, k1, k), jnp.where(go, f1, f), jnp.where(go, cdf + f1, cdf)

    k, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros_like(p), f0, f0))
    return k


_STIRLING_TAIL = (0.0810614667953272, 0.0413406959554092, 0.0276779256849983, 0.02079067210376509,
                  0.0166446911898211, 0.0138761288230707, 0.0118967099458917, 0.0104112652619720,
                  0.00925546218271273, 0.00833056343336287)


def _stirling_tail(k: jax.Array) -> jax.Array:
    """``log k! - [(k + 1/2) log(k + 1) - (k + 1) + log(2 pi)/2]`` (table for k <= 9, series beyond)."""
    table = jnp.asarray(_STIRLING_TAIL, k.dtype)[jnp.clip(k, 0, 9).astype(jnp.int32)]
    kp1 = k + 1
    kp1sq = kp1 * kp1
    series = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / kp1
    return jnp.where(k <= 9, table, series)


def btrs_constants(n, p, stirling_tail=None) -> tuple:
    """The per-(n, p) constants of BTRS (Hoermann 1993) for ``n p >= 10``, p <= 1/2: ``(a, b, c, v_r, alpha, r, m,
    tail_m)``. ``stirling_tail``: :func:`_stirling_tail` or an equivalent without a table gather (Pallas)."""
    stirling_tail = stirling_tail or _stirling_tail
    q = 1 - p
    spq = jnp.sqrt(n * p * q)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    m = jnp.floor((n + 1) * p)
    return (a, b, n * p + 0.5, 0.92 - 4.2 / b, (2.83 + 5.1 / b) * spq, p / q, m,
            stirling_tail(m) + stirling_tail(n - m))


def btrs_proposal(n, consts: tuple, u, v, stirling_tail=None) -> tuple:
    """One BTRS proposal from uniforms ``u`` in (-1/2, 1/2) and ``v`` in (0, 1): ``(k, accepted)``, accepted where
    ``log(v alpha / (a / us^2 + b)) <= log f(k) - log f(m)`` (:func:`btrs_log_ratio`)."""
    a, b, c, v_r, alpha, r, m, tail_m = consts
    us = 0.5 - jnp.abs(u)
    k = jnp.floor((2 * a / us + b) * u + c)
    in_range = (k >= 0) & (k <= n)
    squeeze = (us >= 0.07) & (v <= v_r)
    kk = jnp.clip(k, 0, n)
    lv = jnp.log(v * alpha / (a / (us * us) + b))
    return kk, in_range & (squeeze | (lv <= btrs_log_ratio(n, kk, m, r, tail_m, stirling_tail)))


def btrs_log_ratio(n, k, m, r, tail_m, stirling_tail=None):
    """``log f(k) - log f(m)`` of the Binomial(n, p) pmf f at ``0 <= k <= n``, mode ``m``, ``r = p / q``, ``tail_m``
    the Stirling tails of ``m`` and ``n - m`` (:func:`btrs_constants`): with ``d = k - m``,

        -(m + 1/2) log1p(d / (m + 1)) + (n - m + 1/2) log1p(d / (n - k + 1)) + d log(r (n - k + 1) / (k + 1))
        + tail_m - tail(k) - tail(n - k),

    Stirling's series for the four factorials with every difference of logs taken as a ``log1p`` of a small ratio,
    so each term's rounding is about ``|d|`` ulps, not ``n`` ulps. (TensorFlow's grouping, used here before,
    multiplies the float32 rounding of logs of ratios near 1 by n + 1: errors of 0.04-0.5 nats rms in the bound
    at n = 1e6-2^24, and a biased law: the Pallas kernel's risk at n = 2^24 was 1.032 r_0, 22 sigma; an audit,
    2026-12-04.)"""
    stirling_tail = stirling_tail or _stirling_tail
    d = k - m
    return (-(m + 0.5) * jnp.log1p(d / (m + 1)) + (n - m + 0.5) * jnp.log1p(d / (n - k + 1))
            + d * jnp.log(r * (n - k + 1) / (k + 1)) + tail_m - stirling_tail(k) - stirling_tail(n - k))


def _binomial_btrs(key: jax.Array, n: jax.Array, p: jax.Array, active: jax.Array) -> jax.Array:
    """Transformed rejection with squeeze (BTRS, Hoermann 1993) for ``n p >= 10``, p <= 1/2. Exact (rejection).
    Only ``active`` lanes iterate (:func:`btrs_proposal` until accepted)."""
    dtype = p.dtype
    consts = btrs_constants(n, p)

    def cond(c_):
        return jnp.any(~c_[2])

    def body(c_):
        k_, out, done = c_
        k_, ku, kv = jax.random.split(k_, 3)
        u = jax.random.uniform(ku, p.shape, dtype) - 0.5
        v = jax.random.uniform(kv, p.shape, dtype)
        kk, ok = btrs_proposal(n, consts, u, v)
        accept = ok & ~done
        return k_, jnp.where(accept, kk, out), done | accept

    _, out, _ = jax.lax.while_loop(cond, body, (key, jnp.zeros_like(p), ~active))
    return out


def check_sampler_inputs(key, n, probs, probs_name: str, *, vector: bool) -> None:
    """The exact samplers' arguments where they are concrete (inside ``jit``/``vmap`` their values are unknown and
    not checked): one PRNG key, ``n`` whole numbers >= 0, ``probs`` finite and in [0, 1] (``vector``: a (K,) vector
    of masses >= 0 with a positive sum instead). A ValueError naming the argument (a user trial, 2026-12-06:
    ``sample_multinomial`` with n = -5 drew [0, -5, 0], n = 5.5 counts summing to 5.5, q = (1.5, -0.5) or a NaN
    gave counts, and an integer key failed deep inside JAX)."""
    _check_one_key(key)
    if vector and np.ndim(probs) != 1:
        raise ValueError(f"{probs_name} must be a (K,) probability vector, got shape {np.shape(probs)}")
    if not _checks.is_traced(n):
        counts = _checks.host_array(n)
        if counts.dtype == bool:  # (True drew one item: an audit, 2026-12-07)
            raise ValueError(f"n must hold whole numbers >= 0, got booleans {counts.ravel()[:5].tolist()}")
        counts = counts.astype(np.float64)
        if vector and counts.size != 1:  # (one count of any shape, e.g. (1,), as the sampler took it before)
            raise ValueError(f"n must be one total count (a scalar), got shape {counts.shape}")
        if not np.all(np.isfinite(counts) & (counts >= 0) & (counts == np.floor(counts))):
            raise ValueError(f"n must hold whole numbers >= 0, got {counts.ravel()[:5].tolist()}")
        dtype = _count_dtype(probs) if vector else jnp.result_type(float)  # (the counts' type: q's for a vector)
        exact = 2 ** 53 if dtype == jnp.float64 else 2 ** 24
        if counts.size and counts.max() > exact:  # (float32 counts above 2**24 did not sum to n: a user trial)
            raise ValueError(f"n = {counts.max():.17g} exceeds 2**{exact.bit_length() - 1}, beyond exact "
                             f"{jnp.dtype(dtype).name} counts" + ("; use float64 (jax_enable_x64, and float64 "
                                                                  "probabilities), which counts exactly up to 2**53"
                                                                  if exact == 2 ** 24 else ""))
    if not _checks.is_traced(probs):
        if vector:
            mass = _checks.array_in_interval(probs_name, probs, 0.0, math.inf, high_open=True)
            if not mass.sum() > 0:
                raise ValueError(f"{probs_name} must have a positive sum (it is renormalised by it), got {mass.sum()}")
        else:
            _checks.array_in_interval(probs_name, probs, 0.0, 1.0)


def check_hypergeometric_inputs(key, draws, good, total) -> None:
    """:func:`hypergeometric`'s arguments where they are concrete (inside ``jit``/``vmap`` their values are unknown
    and not checked): one PRNG key, ``draws``, ``good``, ``total`` broadcastable whole numbers >= 0 with ``draws <=
    total`` and ``good <= total``, counted exactly in the default float. A ValueError naming the argument (an audit,
    2026-12-07: ``draws = 11`` of ``total = 10`` drew 3 every time, ``draws = -1`` drew 0, and ``good = 3.5`` or a
    NaN never returned, a while loop inside XLA that Ctrl-C does not stop)."""
    _check_one_key(key)
    try:
        np.broadcast_shapes(*(np.shape(x) for x in (draws, good, total)))
    except ValueError:
        raise ValueError(f"draws, good and total must broadcast together, got shapes {np.shape(draws)}, "
                         f"{np.shape(good)} and {np.shape(total)}") from None
    values = {name: _whole_counts(name, value) for name, value in (("draws", draws), ("good", good),
                                                                   ("total", total)) if not _checks.is_traced(value)}
    if "total" in values:
        for name in ("draws", "good"):
            if name in values:
                _at_most(name, values[name], "total", values["total"])


def _whole_counts(name: str, value) -> np.ndarray:
    """``value`` as float64 whole numbers >= 0 that the default float counts exactly, or a ValueError naming it."""
    arr = _checks.host_array(value)
    if arr.dtype == bool or np.iscomplexobj(arr) or arr.dtype.kind in "USO":
        raise ValueError(f"{name} must hold whole numbers >= 0, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr >= 0) & (arr == np.floor(arr)))
    if np.any(bad):
        raise ValueError(f"{name} must hold whole numbers >= 0, got {arr[bad].ravel()[:5].tolist()}")
    dtype = jnp.dtype(jnp.result_type(float))
    exact = 2 ** 53 if dtype == jnp.float64 else 2 ** 24
    if arr.size and arr.max() > exact:
        raise ValueError(f"{name} = {arr.max():.17g} exceeds 2**{exact.bit_length() - 1}, beyond exact {dtype.name} "
                         "counts" + ("; enable float64 (jax_enable_x64), which counts exactly up to 2**53"
                                     if exact == 2 ** 24 else ""))
    return arr


def _at_most(name: str, value: np.ndarray, bound_name: str, bound: np.ndarray) -> None:
    """A ValueError naming ``name`` where an entry of ``value`` exceeds ``bound`` (broadcast)."""
    a, b = np.broadcast_arrays(value, bound)
    if np.any(a > b):
        i = tuple(np.argwhere(a > b)[0])
        raise ValueError(f"{name} must be at most {bound_name}, got {name} = {a[i]:.17g} > {bound_name} = {b[i]:.17g}")


def _check_one_key(key) -> None:
    """A ValueError unless ``key`` (when concrete) is one PRNG key, typed or raw."""
    if not _checks.is_traced(key):
        typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        if not is_prng_key(key) or np.ndim(key) != (0 if typed else 1):
            raise ValueError(f"key must be one PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got "
                             f"{type(key).__name__} of shape {np.shape(key)}")


def _count_dtype(q) -> Any:
    """The type :func:`sample_multinomial` counts in: ``q``'s, a floating one (a float32 ``q`` with x64 on counts in
    float32: 2**30 + 1 summed to 2**30; a review, 2026-12-06), else the default float."""
    dtype = jnp.asarray(q).dtype if not isinstance(q, (list, tuple)) else jnp.result_type(float)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def binomial(key: jax.Array, n: jax.Array, p: jax.Array) -> jax.Array:
    """Exact ``Binomial(n, p)`` draws, elementwise over broadcast ``n`` (whole numbers, float) and ``p`` in [0, 1].

    Cost O(1) in ``n``: for ``p > 1/2`` draws ``n - Binomial(n, 1 - p)``; means below 10 use inversion (at most
    ~mean + 10 sd cheap iterations), larger means use BTRS (about 1.15 proposals per draw, two uniforms each).
    Both branches run vectorised; each element's parameters are masked so the other branch exits at once.
    Concrete arguments are checked (:func:`check_sampler_inputs`); traced elements that are not valid draw NaN.
    """
    check_sampler_inputs(key, n, p, "p", vector=False)
    dtype = jnp.result_type(float)
    n = jnp.asarray(n, dtype)
    p = jnp.asarray(p, dtype)
    n, p = jnp.broadcast_arrays(n, p)
    flip = p > 0.5
    pp = jnp.where(flip, 1 - p, p)
    big = n * pp >= _BTRS_MIN_MEAN
    inv_key, btrs_key = jax.random.split(key)
    # Masked parameters: inversion lanes that belong to BTRS get n = 0 (exit at once) and vice versa.
    x_inv = _binomial_inversion(inv_key, jnp.where(big, 0.0, n), jnp.where(big, 0.25, pp))
    x_big = _binomial_btrs(btrs_key, jnp.where(big, n, 100.0), jnp.where(big, pp, 0.5), big)
    x = jnp.where(big, x_big, x_inv)
    x = jnp.where((n <= 0) | (pp <= 0), 0.0, x)
    valid = jnp.isfinite(n) & (n >= 0) & (n == jnp.floor(n)) & (p >= 0) & (p <= 1)  # (False for NaN)
    return jnp.where(valid, jnp.where(flip, n - x, x), jnp.nan)  # (traced bad parameters drew 0 or n: a user trial)



# ==================================================================================================================
# Exact multinomial sampler: a balanced tree of conditional binomials
# ==================================================================================================================
@functools.lru_cache(maxsize=None)
def _tree_plan(num_categories: int) -> tuple:
    """Static plan of the binary splitting tree for K categories.

    Each level lists, for the segments that split, (lo, mid, hi) boundaries and a gather index that assembles the
    next level's segment counts from ``concat([counts, left, right])``. K - 1 binomials in ceil(log2 K) levels.
    """
    segments = [(0, num_categories)]
    levels = []
    while any(hi - lo > 1 for lo, hi in segments):
        split = [j for j, (lo, hi) in enumerate(segments) if hi - lo > 1]
        num_seg, num_split = len(segments), len(split)
        lo = np.array([segments[j][0] for j in split], np.int32)  # int32 in both precisions (x64 on or off)
        hi = np.array([segments[j][1] for j in split], np.int32)
        mid = (lo + hi) // 2
        gather, new = [], []
        for j, (a, b) in enumerate(segments):
            if b - a > 1:
                s = split.index(j)
                m = (a + b) // 2
                gather += [num_seg + s, num_seg + num_split + s]
                new += [(a, m), (m, b)]
            else:
                gather.append(j)
                new.append((a, b))
        levels.append((lo, mid, hi, np.array(split, np.int32), np.array(gather, np.int32)))
        segments = new
    return tuple(levels)


@functools.lru_cache(maxsize=None)
def _halves(num_categories: int) -> tuple:
    """Per level of :func:`_tree_plan`, the half each category falls in: ``s`` in the left half ``[lo, mid)`` of the
    level's s-th splitting segment, ``S + s`` in its right half ``[mid, hi)`` (S segments split), ``2 S`` in a
    segment that does not split (int32 ids for ``jax.ops.segment_sum``)."""
    out = []
    for lo, mid, hi, _, _ in _tree_plan(num_categories):
        ids = np.full(num_categories, 2 * len(lo), np.int32)
        for s, (a, m, b) in enumerate(zip(lo, mid, hi)):
            ids[a:m], ids[m:b] = s, len(lo) + s
        out.append(ids)
    return tuple(out)


def _split_down_tree(key: jax.Array, n: jax.Array, dtype, num_categories: int, halves: Callable,
                     draw_left: Callable) -> jax.Array:
    """Counts (K,) from a total ``n`` split down the balanced binary tree of :func:`_tree_plan`.

    At each level ``halves(level, lo, mid, hi)`` gives what ``draw_left`` needs about the segments ``[lo, hi)`` that
    split (their halves' probabilities, or pool counts); a node with count ``c`` sends ``draw_left(key, c, *that)``
    to its left child ``[lo, mid)`` and the rest to its right child. One key per level.
    """
    counts = jnp.reshape(jnp.asarray(n, dtype), (1,))
    plan = _tree_plan(num_categories)
    keys = jax.random.split(key, len(plan))
    for level, (level_key, (lo, mid, hi, split, gather)) in enumerate(zip(keys, plan)):
        parent = counts[split]
        left = draw_left(level_key, parent, *halves(level, lo, mid, hi))
        counts = jnp.concatenate([counts, left, parent - left])[gather]
    return counts


# Halves whose masses differ by at most this many units of rounding (relative to the node's mass) split as an exact
# tie, Binomial(parent, 1/2): see _binomial_split.
TIE_ULPS = 16


def _binomial_split(key, parent, left_mass, right_mass):
    """Left share of a multinomial node: ``Binomial(parent, Q_left / Q)``, drawn as the smaller half's share (the
    binomial's own flip, ``1 - Q_left / Q`` for a left half above 1/2, kept only the rounding of a ratio near 1 for
    a tiny right half). The same draws as flipping inside :func:`binomial`, up to that rounding.

    Halves within ``TIE_ULPS`` units of rounding of each other split as an exact tie (ratio 1/2, no flip): which
    half was the smaller one otherwise hung on the last bits of the masses, which change with how XLA compiles the
    program (one replicate alone against a batch under ``vmap``, a grid axis or none: in float64 18-54 of 200
    replicates drew differently, an audit, 2026-12-05, with p = (1/4, ...) or (0.5, 0.3, 0.2), whose root halves
    tie). The split probability then moves by at most ``TIE_ULPS`` x 2^-53 (float64) or x 2^-24 (float32).
    """
    node_mass = left_mass + right_mass
    safe = jnp.where(node_mass > 0, node_mass, 1.0)
    tie = (node_mass > 0) & (jnp.abs(left_mass - right_mass) <= TIE_ULPS * jnp.finfo(safe.dtype).eps * safe)
    flip = (left_mass > right_mass) & ~tie
    small = jnp.where(flip, right_mass, left_mass)
    ratio = jnp.where(node_mass > 0, jnp.where(tie, 0.5, small / safe), 0.0)
    x = binomial(key, parent, jnp.clip(ratio, 0.0, 0.5))
    return jnp.where(flip, parent - x, x)


def sample_multinomial(key: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
    """Exact ``Multinomial(n, q)`` counts (float array of shape (K,)) for one draw; O(K) work whatever ``n``.

    The total ``n`` is split down a balanced binary tree: a node with count ``m`` and mass ``Q`` sends
    ``Binomial(m, Q_left / Q)`` to its left child and the rest to its right child. Each split is an exact
    conditional of the multinomial, so the leaves are exactly multinomial (up to floating-point rounding of ``q``).

    Args:
      key: PRNG key.
      n: total count (scalar, whole number; float so that n can exceed the int32 range in float64).
      q: probabilities (K,), nonnegative, summing to 1 (they are renormalised by their sum).
    Returns:
      counts (K,) summing exactly to ``n``.
    Concrete arguments are checked (:func:`check_sampler_inputs`); traced ones (inside ``jit``/``vmap``) that are
    not valid give NaN counts.
    """
    check_sampler_inputs(key, n, q, "q", vector=True)
    q = jnp.asarray(q)
    num = q.shape[0]

    def halves(level, lo, mid, hi):  # each half summed on its own: differences of a running sum (cum[mid] -
        # cum[lo]) kept only its rounding for masses below ~1e-16 after a prefix near 1 (an audit: a category of
        # mass 5e-17 after one of 0.5 drew 0 items in 4000 draws at n = 2^53, against 0.45 expected)
        mass = jax.ops.segment_sum(q, _halves(num)[level], num_segments=2 * len(lo) + 1)
        return mass[:len(lo)], mass[len(lo):2 * len(lo)]

    counts = _split_down_tree(key, n, q.dtype, num, halves, _binomial_split)
    n = jnp.asarray(n, counts.dtype).reshape(())
    valid = (jnp.isfinite(n) & (n >= 0) & (n == jnp.floor(n)) & jnp.all(q >= 0) & (jnp.sum(q) > 0)
             & jnp.all(jnp.isfinite(q)))
    return jnp.where(valid, counts, jnp.nan)  # (traced bad parameters drew [0, -3, 0] for n = -3: a user trial)


# ==================================================================================================================
# Exact hypergeometric sampler: ratio of uniforms (Stadlober's HRUA) with an accurate pmf ratio
# ==================================================================================================================
_HRUA_D1 = 1.7155277699214135  # 2 sqrt(2/e)
_HRUA_D2 = 0.8989161620588988  # 3 - 2 sqrt(3/e)


def _log_factorial_ratio_rest(x: jax.Array, y: jax.Array) -> jax.Array:
    """``log x! - log y! - (x - y) (log(y + 1) - 1)`` for whole numbers ``x, y >= 0``.

    Stirling with exact tails, ``log k! = (k + 1/2) log(k + 1) - (k + 1) + log(2 pi)/2 + tail(k)``, makes it
    ``(x + 1/2) log1p((x - y) / (y + 1)) + tail(x) - tail(y)``: a log of a ratio, accurate in float32 when ``x`` and
    ``y`` are large and close (unlike a difference of ``lgamma`` values). The caller adds the ``(x - y) (log(y + 1)
    - 1)`` parts of several such differences as one log of a product, where they cancel.
    """
    return (x + 0.5) * jnp.log1p((x - y) / (y + 1)) + _stirling_tail(x) - _stirling_tail(y)


def hypergeometric_log_pmf_ratio(k: jax.Array, j: jax.Array, draws: jax.Array, good: jax.Array,
                                 total: jax.Array) -> jax.Array:
    """``log f(k) - log f(j)`` for ``f`` the pmf of ``Hypergeometric(draws; good, total)`` (the number of good
    items among ``draws`` drawn without replacement from ``total`` items, ``good`` of them good).

    ``f(k) = C(good, k) C(total - good, draws - k) / C(total, draws)``, so the ratio is four log-factorial
    differences (:func:`_log_factorial_ratio_rest`) whose linear parts ``(x - y) log(y + 1)`` add up to
    ``(k - j) log[(good - j + 1)(draws - j + 1) / ((j + 1)(total - good - draws + j + 1))]`` (the ``-(x - y)``
    parts cancel). ``k`` and ``j`` must lie in the support.
    """
    rest = 0.0
    for x, y in ((k, j), (good - k, good - j), (draws - k, draws - j), (total - good - draws + k,
                                                                          total - good - draws + j)):
        rest = rest - _log_factorial_ratio_rest(x, y)
    ratio = (good - j + 1) / (j + 1) * ((draws - j + 1) / (total - good - draws + j + 1))
    return rest + (k - j) * jnp.log(ratio)


_HRUA_PROPOSALS = 8  # proposals per lane and round (acceptance 0.4-0.7 each): few rounds of the while_loop


def _hypergeometric_hrua(key: jax.Array, draws: jax.Array, good: jax.Array, total: jax.Array,
                         active: jax.Array) -> jax.Array:
    """Ratio of uniforms with Stadlober's table-mountain hat (HRUA; Stadlober 1989, as NumPy's sampler) for
    ``draws <= good <= total / 2``. Exact (rejection): a proposal ``X = a + h (V - 1/2) / U``, ``a = mean + 1/2``,
    ``h = D1 sqrt(var + 1/2) + D2``, is accepted as ``k = floor(X)`` when ``U^2 <= f(k) / f(mode)``; the hat covers
    every log-concave discrete pmf (Stadlober 1989), the hypergeometric's included. Proposals beyond 16 standard
    deviations above the mean are rejected (mass below ``exp(-100)``), as in NumPy.

    Each round draws :data:`_HRUA_PROPOSALS` independent proposals per lane at once and keeps the first accepted
    one (the same law as one proposal at a time): under ``vmap`` a loop of single proposals would run until the
    unluckiest of thousands of lanes accepts (~20 rounds at acceptance 0.45), a round of 8 needs ~3. Only
    ``active`` lanes iterate.
    """
    dtype = good.dtype
    p = good / total
    mean = draws * p
    var = (total - draws) * draws * p * (1 - p) / jnp.maximum(total - 1, 1)
    spread = jnp.sqrt(var + 0.5)
    h = _HRUA_D1 * spread + _HRUA_D2
    mode = jnp.floor((draws + 1) * (good + 1) / (total + 2))
    a = mean + 0.5
    a_int = jnp.floor(a)
    upper = jnp.minimum(draws + 1, jnp.floor(a + 16 * spread))
    shape = (_HRUA_PROPOSALS,) + good.shape

    def cond(c):
        return jnp.any(~c[2])

    def body(c):
        k_, out, done = c
        k_, ku, kv = jax.random.split(k_, 3)
        u = jax.random.uniform(ku, shape, dtype)
        v = jax.random.uniform(kv, shape, dtype)
        safe_u = jnp.where(u > 0, u, 1.0)
        x = a_int + jnp.floor((a - a_int) + h * (v - 0.5) / safe_u)  # the offset first: an exact floor
        kk = jnp.clip(x, 0, draws)
        accept = ((u > 0) & (x >= 0) & (x < upper)
                  & (2 * jnp.log(safe_u) <= hypergeometric_log_pmf_ratio(kk, mode, draws, good, total)))
        first = jnp.argmax(accept, axis=0)  # the first accepted proposal of the round
        value = jnp.take_along_axis(kk, first[None], axis=0)[0]
        take = jnp.any(accept, axis=0) & ~done
        return k_, jnp.where(take, value, out), done | take

    _, out, _ = jax.lax.while_loop(cond, body, (key, jnp.zeros_like(good), ~active))
    return out


def hypergeometric(key: jax.Array, draws: jax.Array, good: jax.Array, total: jax.Array) -> jax.Array:
    """Exact ``Hypergeometric(draws; good, total)`` draws: the number of good items among ``draws`` items drawn
    without replacement from ``total``, ``good`` of them good; elementwise over broadcast whole-number floats with
    ``0 <= draws, good <= total``.

    Cost O(1) in the sizes: the law's symmetries reduce every case to ``draws <= good <= total / 2`` (drawing
    ``total - draws`` items and counting the good ones left out; counting bad items; swapping the roles of draws
    and good items, ``C(g, k) C(N - g, m - k) / C(N, m) = C(m, k) C(N - m, g - k) / C(N, g)``), then one ratio of
    uniforms sampler (:func:`_hypergeometric_hrua`, acceptance 0.4-0.7 per proposal of two uniforms) serves every mean,
    small or large. Its acceptance test evaluates the pmf ratio from logs of ratios
    (:func:`hypergeometric_log_pmf_ratio`), accurate in float32 up to the 2**24 counts float32 holds exactly.
    Concrete arguments are checked (:func:`check_hypergeometric_inputs`); traced elements that are not valid draw
    NaN (without the mask their sampler's loop never ended).
    """
    check_hypergeometric_inputs(key, draws, good, total)
    dtype = jnp.result_type(float)
    draws, good, total = jnp.broadcast_arrays(*(jnp.asarray(x, dtype) for x in (draws, good, total)))
    valid = jnp.isfinite(total) & (total == jnp.floor(total))  # (False for NaN)
    for x in (draws, good):
        valid &= jnp.isfinite(x) & (x >= 0) & (x == jnp.floor(x)) & (x <= total)
    draws, good, total = (jnp.where(valid, x, 0.0) for x in (draws, good, total))
    flip_draws = 2 * draws > total
    m1 = jnp.where(flip_draws, total - draws, draws)
    flip_good = 2 * good > total
    g1 = jnp.where(flip_good, total - good, good)
    small, large = jnp.minimum(m1, g1), jnp.maximum(m1, g1)
    active = small > 0
    # Masked parameters: degenerate lanes (no draws or no good items: the answer is 0) exit at once.
    base = _hypergeometric_hrua(key, jnp.where(active, small, 1.0), jnp.where(active, large, 1.0),
                                jnp.where(active, total, 2.0), active)
    base = jnp.where(active, base, 0.0)
    x = jnp.where(flip_good, m1 - base, base)  # good items among m1 draws
    return jnp.where(valid, jnp.where(flip_draws, good - x, x), jnp.nan)  # good items among the draws


def sample_multivariate_hypergeometric(key: jax.Array, m: jax.Array, counts: jax.Array) -> jax.Array:
    """Exact multivariate hypergeometric counts (K,): the categories of ``m`` items drawn uniformly without
    replacement from a pool holding ``counts`` (K,) items of each category (``m <= sum(counts)``); O(K) work
    whatever ``m`` and the pool size.

    The draw is split down the same balanced binary tree as :func:`sample_multinomial`: a node whose pool holds
    ``N`` items, ``N_left`` of them in its left half, sends ``Hypergeometric(c; N_left, N)`` of its ``c`` draws to
    the left (:func:`hypergeometric`), an exact conditional of the multivariate hypergeometric law.
    Concrete arguments are checked: ``m`` one whole number in [0, sum(counts)], ``counts`` (K,) whole numbers >= 0
    (``m`` beyond the pool drew the whole pool, ``m = 2.5`` never returned: an audit, 2026-12-07).
    """
    _check_one_key(key)
    if np.ndim(counts) != 1:
        raise ValueError(f"counts must be a (K,) vector of pool counts, got shape {np.shape(counts)}")
    if not _checks.is_traced(m) and np.size(m) != 1:
        raise ValueError(f"m must be one number of items to draw (a scalar), got shape {np.shape(m)}")
    if not _checks.is_traced(counts):
        pool = _whole_counts("counts", counts).sum()
        _whole_counts("sum(counts)", pool)
        if not _checks.is_traced(m):
            _at_most("m", _whole_counts("m", m), "sum(counts)", pool)
    elif not _checks.is_traced(m):
        _whole_counts("m", m)
    counts = jnp.asarray(counts)
    cum = jnp.concatenate([jnp.zeros((1,), counts.dtype), jnp.cumsum(counts)])  # whole numbers: exact differences
    return _split_down_tree(key, m, counts.dtype, counts.shape[0],
                            lambda level, lo, mid, hi: (cum[mid] - cum[lo], cum[hi] - cum[lo]), hypergeometric)


# ==================================================================================================================
# Simulator
# ==================================================================================================================
@dataclass(frozen=True)
class MultinomialConfig:
    """Static configuration of a multinomial recursion.

    Attributes:
      regime: ``"replace"`` (fit on generation t's data only), ``"accumulate"`` (fit on all data so far),
        ``"filter"`` (a classifier keeps each point of generation t's data before a replace fit) or
        ``"accumulate-subsample"`` (fit on ``n_t`` points drawn without replacement from all data so far: a fixed
        training budget, Kazdan et al. 2024; ``native`` and ``jax`` backends).
      type1: filter only: probability ``a`` that a real point is rejected, in [0, 1].
      type2: filter only: probability ``b`` that a synthetic point is kept, in [0, 1]. Under the other regimes
        both must be 0 (a ValueError otherwise: they would have no effect).
    """

    regime: str = "replace"
    type1: float = 0.0
    type2: float = 0.0

    def __post_init__(self):
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        _checks.in_interval("type1", self.type1, 0.0, 1.0)
        _checks.in_interval("type2", self.type2, 0.0, 1.0)
        if self.regime != "filter" and (self.type1 != 0 or self.type2 != 0):  # they were ignored: a forgotten regime
            raise ValueError(f"type1 and type2 apply to the filter regime only, got type1={self.type1}, "
                             f"type2={self.type2} with regime {self.regime!r}: give regime='filter', or leave them 0")


class Params(NamedTuple):
    """What a grid may vary: the true ``p`` (category,) = (K,) and the schedules ``alpha``, ``n``, ``kappa``
    (step,) = (T + 1,), index 0 the real data of generation 0 (``kappa``: the filter's keep probability, else 1).
    Under the filter regime ``alpha`` is the kept real weight ``alpha~_t``, not the raw share:
    ``alpha, kappa = filter_schedules(raw_alpha, type1, type2)`` (as :func:`simulate` does)."""

    p: jax.Array
    alpha: jax.Array
    n: jax.Array
    kappa: jax.Array


class State(NamedTuple):
    """One replicate after generation t: the truth, the current fit and the pool of counts it was fitted from
    (accumulate and accumulate-subsample: all counts of generations 0..t, of which accumulate-subsample's fit saw a
    subsample of ``n_t``; else generation t's)."""

    p: jax.Array  # (K,)
    p_hat: jax.Array  # (K,)
    counts: jax.Array  # (K,)
    total: jax.Array  # ()


def _truncated_binomial(key: jax.Array, n: jax.Array, kappa: jax.Array) -> jax.Array:
    """``Binomial(n, kappa)`` conditioned on being > 0 (redraw until positive; kappa > 0 is checked upstream)."""

    def cond(carry):
        return carry[1] <= 0

    def body(carry):
        k, _ = carry
        k, sub = jax.random.split(k)
        return k, binomial(sub, n, kappa)

    k0, sub = jax.random.split(key)
    return jax.lax.while_loop(cond, body, (k0, binomial(sub, n, kappa)))[1]


def init(key: jax.Array, params: Params, config: MultinomialConfig) -> State:
    """Generation 0: the empirical frequencies of ``n_0`` real draws, ``Multinomial(n_0, p)``."""
    counts = sample_multinomial(key, params.n[0], params.p)
    return State(params.p, counts / params.n[0], counts, params.n[0])


def step_inputs(params: Params, config: MultinomialConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(alpha_t, n_t, kappa_t)`` for t = 1..T, each (step,) = (T,)."""
    return params.alpha[1:], params.n[1:], params.kappa[1:]


def step(key: jax.Array, state: State, inputs: tuple[jax.Array, jax.Array, jax.Array], config: MultinomialConfig
         ) -> tuple[State, jax.Array]:
    """Generation t (seed 003 Eq. 1): ``n_t`` draws from ``q_t = alpha_t p + (1 - alpha_t) p_hat_{t-1}``, refitted
    on them (replace, Theorem 3.1), on all counts so far (accumulate, Theorem A.1) or on ``n_t`` of all counts so far
    drawn without replacement (accumulate-subsample: a multivariate hypergeometric draw from the pool,
    :func:`sample_multivariate_hypergeometric`; :func:`accumulate_subsample_risk`). Record ``||p_hat_t - p||^2``.

    Filter (Theorem D.2): ``alpha_t`` is already the real weight among kept points, ``alpha~_t``, and the kept size
    is ``N_t ~ Binomial(n_t, kappa_t) | N_t > 0`` (:func:`filter_schedules`); other regimes ignore ``kappa_t``.
    """
    alpha_t, n_t, kappa_t = inputs
    if config.regime == "filter":
        kept_key, draw_key = jax.random.split(key)
        n_t = _truncated_binomial(kept_key, n_t, kappa_t)
    else:
        draw_key = key
    q = alpha_t * state.p + (1 - alpha_t) * state.p_hat  # population mixture, Eq. (1)
    if config.regime == "accumulate-subsample":
        draw_key, subsample_key = jax.random.split(draw_key)
    new = sample_multinomial(draw_key, n_t, q)
    if config.regime in ("accumulate", "accumulate-subsample"):
        counts, total = state.counts + new, state.total + n_t
    else:
        counts, total = new, n_t
    if config.regime == "accumulate-subsample":  # budget m_t = n_t points of the pool's S_t
        p_hat = sample_multivariate_hypergeometric(subsample_key, n_t, counts) / n_t
    else:
        p_hat = counts / total
    state = State(state.p, p_hat, counts, total)
    return state, observe(state, config)


def observe(state: State, config: MultinomialConfig) -> jax.Array:
    """The loss ``||p_hat_t - p||^2``."""
    return jnp.sum((state.p_hat - state.p) ** 2)


def check_params(params: Params, config: MultinomialConfig) -> None:
    """:data:`kernel`'s contract check of one grid point (:func:`driver.check_params`): ``p`` on the simplex,
    ``alpha`` / ``n`` one schedule counted exactly by the jax kernel in this precision, ``kappa`` in [0, 1] of its
    length."""
    _checks.instance("params", params, Params)
    _checks.instance("config", config, MultinomialConfig)
    # (not check_inputs: under the filter the kernel's alpha is the kept real weight and kappa the keep
    # probability, from filter_schedules, not the raw share check_filter_keeps reads)
    check_p(_checks.host_array(params.p))
    alpha, n = schedules.check_pair(_checks.host_array(params.alpha), _checks.host_array(params.n))
    check_counts(n, config.regime, "jax")
    if alpha.ndim != 1 or n.ndim != 1:
        raise ValueError(f"alpha and n must be one schedule each, (T + 1,), got shapes {alpha.shape} and {n.shape} "
                         "(a grid goes along grid_axes)")
    kappa = _checks.array_in_interval("kappa", _checks.host_array(params.kappa), 0.0, 1.0)
    if kappa.shape != n.shape:
        raise ValueError(f"kappa must have the schedule's shape {n.shape}, got {kappa.shape}")
    if config.regime == "filter":  # (kappa_t = 0 ran for ever, the kernel redrawing empty batches; a user trial)
        if np.any(kappa[1:] <= 0) or np.any(empty_batch_probability(kappa[1:], n[1:]) > 0.99):
            raise ValueError("the filter keeps nothing in more than 99% of batches at some step (keep probability "
                             f"kappa_t down to {kappa[1:].min():.4g}); raise n_t or lower the filter's errors")


kernel = driver.scan_kernel(init, step, step_inputs, observe, check_params)
kernel.__doc__ = """One replicate: the losses for t = 0..T, (step,) = (T + 1,) (:func:`driver.scan_kernel`)."""


def filter_schedules(alpha: np.ndarray, type1: float, type2: float) -> tuple[np.ndarray, np.ndarray]:
    """Theorem D.2: returns ``(alpha~, kappa)``, the kept real weight ``alpha~_t = alpha_t (1-a) / kappa_t`` and the
    keep probability ``kappa_t = alpha_t (1-a) + (1-alpha_t) b`` (index 0: alpha~ = 1, kappa = 1). The filter
    kernel's :class:`Params` take ``alpha = alpha~`` and ``kappa``, not the raw ``alpha``."""
    kappa = alpha * (1 - type1) + (1 - alpha) * type2
    kappa[..., 0] = 1.0
    tilde = np.where(kappa > 0, alpha * (1 - type1) / np.where(kappa > 0, kappa, 1.0), 0.0)
    tilde[..., 0] = 1.0
    return tilde, kappa


def _native_call(targets: dict, shape: tuple, dtype) -> Callable:
    """An ``ffi_call`` of a native multinomial kernel (float32/float64 by ``dtype``); under ``jax.vmap`` it runs
    once per mapped element (``vmap_method="sequential"``)."""
    from collapse_jax import _native

    if not _native.available():
        raise RuntimeError("the native multinomial kernel is unavailable (no C++ compiler?); use backend='jax'")
    target = targets["float64" if dtype == jnp.float64 else "float32"]
    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")
    return functools.partial(call, num_threads=np.int64(_native.cpu_threads()))


def _native_seeds(keys: jax.Array) -> jax.Array:
    """Two uint32 seed words per replicate key, (R, 2): the native kernel's per-replicate stream."""
    return jax.vmap(lambda k: jax.random.bits(k, (2,), jnp.uint32))(keys)


@jax.jit
def sample_multinomial_native(keys: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
    """Native CPU sampler: exact ``Multinomial(n_r, q_r)`` counts for keys (R,), n (R,), q (R, K) -> (R, K).

    Small samples (``n <= 6 K``) item by item (inverse cdf with a guide table, O(K + n) per row), larger ones as
    conditional binomials across categories (inversion below mean 10, BTRS above), O(K) per row whatever ``n``,
    except that the categories expecting fewer than 10 items share the chain's last count by items;
    row ``r`` depends only on ``keys[r]``. ``q`` rows are nonnegative weights, used as given (row ``r``'s law is
    ``q_r / sum(q_r)``).
    """
    from collapse_jax import _native

    q = jnp.asarray(q)
    n = jnp.asarray(n, q.dtype)
    return _native_call(_native.COUNTS_TARGETS, q.shape, q.dtype)(n, q, _native_seeds(keys))


NATIVE_ENGINES = ("auto", "group", "refill")


def batched_risk_native(keys: jax.Array, p: jax.Array, alpha: jax.Array, n: jax.Array, kappa: jax.Array,
                        regime: str, engine: str = "auto") -> jax.Array:
    """Native CPU kernel: losses for replicate keys (R,) and schedules (G, T + 1) -> (G, R, T + 1).

    Same inputs as :class:`Params` (``kappa`` from :func:`filter_schedules` for the filter regime). A replicate
    draws the same random stream for every schedule of the grid (common random numbers). ``engine``: "refill"
    (AVX-512 and AVX2 builds, the fastest), "group" (any build) or "auto" (refill where built); both give the same numbers,
    see :func:`collapse_jax._native.multinomial_engines`.
    """
    from collapse_jax import _native

    if regime not in NATIVE_REGIMES:
        raise ValueError(f"the native kernel runs the regimes {NATIVE_REGIMES}, got {regime!r}; use backend='jax'")
    if engine not in NATIVE_ENGINES:
        raise ValueError(f"engine must be one of {NATIVE_ENGINES}, got {engine!r}")
    if engine == "refill" and "refill" not in _native.multinomial_engines():
        raise ValueError("engine='refill' needs a native build with AVX-512 or AVX2 (this one has "
                         f"{_native.multinomial_engines() or 'no native kernels'}); use engine='group' or 'auto'")
    shapes = {name: np.shape(x) for name, x in (("alpha", alpha), ("n", n), ("kappa", kappa))}
    if len(set(shapes.values())) != 1 or len(shapes["alpha"]) != 2:  # (1-D schedules: an IndexError in the call;
        # a user trial, 2026-12-06)
        raise ValueError(f"alpha, n and kappa must be (G, T + 1) grids of one shape (a single schedule as one row, "
                         f"x[None]), got shapes {shapes}")
    return _batched_risk_native(keys, p, alpha, n, kappa, regime, engine)


@functools.partial(jax.jit, static_argnames=("regime", "engine"))
def _batched_risk_native(keys, p, alpha, n, kappa, regime: str, engine: str) -> jax.Array:
    from collapse_jax import _native

    alpha, n, kappa = (jnp.asarray(x, p.dtype) for x in (alpha, n, kappa))
    call = _native_call(_native.MULTINOMIAL_TARGETS, (alpha.shape[0], keys.shape[0], alpha.shape[1]), p.dtype)
    return call(p, alpha, n, kappa, _native_seeds(keys), regime=np.int64(REGIMES.index(regime)),
                engine=np.int64(NATIVE_ENGINES.index(engine)))


def check_p(p) -> np.ndarray:
    """``p`` as a float64 probability vector with K >= 2 entries, or a ValueError naming ``p``. Within the simplex
    check's tolerance (1e-6) of summing to 1 it is renormalised: the samplers draw from ``p / sum(p)``, so a loss
    measured against the raw ``p`` (and a theory with ``s = 1 - ||p||^2`` of it) carried an extra
    ``(sum - 1)^2 ||p||^2``, which outgrows the risk ``s / n`` from ``n ~ 1 / (sum - 1)^2`` (an audit: 14.8x the
    theory at n = 1e15 for a sum of 1 + 1e-7)."""
    p_arr = _checks.finite_array("p", p)
    if p_arr.ndim != 1 or p_arr.shape[0] < 2:
        raise ValueError(f"p must be a probability vector with K >= 2 entries, got shape {p_arr.shape}")
    p_arr = _checks.simplex_vector("p", p_arr, p_arr.shape[0])
    total = math.fsum(p_arr)
    return p_arr if total == 1.0 else p_arr / total


def empty_batch_probability(kappa: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``P(N_t = 0) = (1 - kappa_t)^{n_t}``: the chance that the filter keeps none of a batch of ``n_t`` points."""
    with np.errstate(under="ignore", divide="ignore"):  # kappa = 1: log1p(-1) = -inf and P(N_t = 0) = 0, as meant
        return np.exp(n * np.log1p(-np.minimum(kappa, 1 - 1e-300)))


def check_filter_keeps(alpha: np.ndarray, n: np.ndarray, type1: float, type2: float) -> None:
    """A ValueError unless the filter keeps something: the keep probability ``kappa_t = alpha_t (1 - type1) +
    (1 - alpha_t) type2`` is positive at every step t >= 1, and ``P(N_t = 0) = (1 - kappa_t)^{n_t}`` stays at most
    0.99 (checked schedules ``alpha``, ``n``, (..., T + 1))."""
    kappa = alpha[..., 1:] * (1 - type1) + (1 - alpha[..., 1:]) * type2
    if np.any(kappa <= 0):
        first = tuple(int(i) for i in np.argwhere(kappa <= 0)[0])   # (schedule index..., step - 1)
        t = first[-1] + 1
        a_t = float(alpha[first[:-1] + (t,)])
        hint = ("with alpha_t = 1 (all fresh data) it needs type1 < 1" if a_t == 1 else
                "with alpha_t = 0 (all synthetic data) it needs type2 > 0" if a_t == 0 else "")
        raise ValueError("the filter keeps nothing: keep probability alpha_t (1 - type1) + (1 - alpha_t) type2 "
                         f"is 0 at step t = {t} (alpha_t = {a_t:g}, type1={type1}, type2={type2})"
                         + (f"; {hint}" if hint else ""))
    p_empty = empty_batch_probability(kappa, n[..., 1:])
    if np.any(p_empty > 0.99):
        raise ValueError("the filter keeps nothing in more than 99% of batches at some step "
                         f"(max P(N_t = 0) = {p_empty.max():.4g}); raise n_t or lower the filter's errors")


def check_inputs(p, alpha, n, config: MultinomialConfig, backend: str = "auto", num_replicates: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``p`` (simplex), ``alpha`` ([0, 1]), ``n`` (>= 1), the filter (keeps something) and, for the
    ``backend`` that will run (:func:`simulate`'s, resolved by :func:`resolve_backend`), that its counts stay exact
    and that its scratch memory for K categories fits (:func:`check_memory`; ``num_replicates``: the lanes of
    work, default as many as there are threads), before compute."""
    p_arr = check_p(p)
    alpha, n = schedules.check_pair(alpha, n)
    if config.regime == "filter":
        check_filter_keeps(alpha, n, config.type1, config.type2)
    resolved = resolve_backend(backend, config.regime)
    check_counts(n, config.regime, resolved)
    check_memory(p_arr.size, resolved, num_replicates)
    return p_arr, alpha, n


# Scratch of one native worker thread per category: the refill engine's five rows of 32 interleaved replicates and
# its categorical tables (about 170 float64 numbers; the group engine's about 50). Measured, K = 10**6, 2-core
# Xeon: 1.57 GB peak with one thread, 2.84 GB with two.
NATIVE_BYTES_PER_CATEGORY = 170 * 8
# One replicate of the portable kernel per category: its counts, probabilities and splitting tree in a few
# float32/float64 arrays (an upper bound; the driver chunks replicates by the memory budget above this).
JAX_ARRAYS_PER_CATEGORY = 16


def check_memory(num_categories: int, backend: str, num_replicates: int | None = None) -> None:
    """A ValueError naming K unless the ``backend``'s (resolved) scratch for ``num_categories`` categories fits:
    the native kernel's per-thread rows in 80 % of the memory available, one replicate of the portable kernels in
    the memory budget (half the device's memory). ``recursions-fig3 --categories 10000000`` grew to 21 GB and was
    killed by the system with no message, leaving a half-written run folder (a user trial, 2026-12-05)."""
    from collapse_jax import _native

    K = int(num_categories)
    if backend == "native":
        threads = _native.worker_threads(num_replicates)
        need, limit = threads * K * NATIVE_BYTES_PER_CATEGORY, 0.8 * _checks.available_memory_bytes()
        what = f"the native kernel's scratch ({threads} worker thread{'s' if threads > 1 else ''})"
    else:
        item = 8 if jax.config.jax_enable_x64 else 4
        need, limit = K * item * JAX_ARRAYS_PER_CATEGORY, driver.memory_budget_bytes(None)
        what = f"one replicate of the {backend} kernel"
    if limit and need > limit:
        raise ValueError(f"K = {K:,} categories (p has K entries) need about {need / 2**30:.1f} GiB for {what}, more "
                         f"than the {limit / 2**30:.1f} GiB this machine can give them; lower K (--categories)")


def check_counts(n, regime: str, backend: str) -> None:
    """That the counts of sample sizes ``n`` (and of the accumulate regimes' pool) stay whole numbers in the
    precision this process and the resolved ``backend`` keep them in (:func:`resolve_backend`); the sweep runner
    checks every cell with it before it writes anything."""
    top = float(np.max(n))
    if top > 2 ** 53:  # float64 counts: the samplers' arithmetic is exact below this, not above (an audit
        # measured mean losses 1.1-9x the exact risk at n_t = 1e17-1e20, and 0 at 1e300); checked first, so that
        # float32's advice below never leads to this refusal (a user trial, 2026-12-06)
        raise ValueError(f"n_t up to {top:.4g} exceeds 2**53, beyond exact float64 counts (the largest any "
                         "precision here keeps); lower n_t")
    if not jax.config.jax_enable_x64 and top > 2 ** 24:
        raise ValueError(f"n_t up to {top:.4g} exceeds 2**24, beyond exact float32 counts; enable float64 "
                         "(collapse-jax --x64 or jax_enable_x64), which counts exactly up to 2**53")
    if backend == "pallas" and top > 2 ** 24:
        raise ValueError(f"n_t up to {top:.4g} exceeds 2**24, beyond the Pallas kernel's exact float32 counts; "
                         "use backend='jax' with float64")
    if regime in ("accumulate", "accumulate-subsample"):
        _check_pool(float(np.max(np.cumsum(n, axis=-1))), regime, backend)


def _check_pool(pool: float, regime: str, backend: str) -> None:
    """The pooled counts of the accumulate regimes, up to ``pool = n_0 + ... + n_T``, must stay whole numbers in
    the precision ``backend`` keeps them in: float32 (the ``jax`` path without x64, and the Pallas kernel always)
    holds whole numbers exactly up to 2**24, float64 (``jax`` with x64, and the native kernel, which counts in
    float64 whatever the precision of its inputs and outputs) up to 2**53. Beyond, counts are rounded and no longer
    sum to the pool (an audit, float32 jax accumulate, pool 3.6e7: 101 of 200 replicates)."""
    if pool > 2 ** 53:
        raise ValueError(f"n_0 + ... + n_T up to {pool:.4g} exceeds 2**53: the {regime} pool's counts would not be "
                         "exact in float64; lower n_t or the number of steps")
    if pool <= 2 ** 24:
        return
    if backend == "pallas":
        raise ValueError(f"n_0 + ... + n_T up to {pool:.4g} exceeds 2**24: the Pallas kernel keeps the {regime} "
                         "pool's counts in float32, where they would not be exact; use backend='jax' with float64 "
                         "(collapse-jax --x64 or jax_enable_x64) or backend='native' (a CPU)")
    if backend == "jax" and not jax.config.jax_enable_x64:
        native = " or backend='native' (a CPU; it counts in float64)" if regime in NATIVE_REGIMES else ""
        raise ValueError(f"n_0 + ... + n_T up to {pool:.4g} exceeds 2**24: the {regime} pool's counts would not be "
                         f"exact in float32; enable float64 (collapse-jax --x64 or jax_enable_x64){native}")


def resolve_backend(backend: str, regime: str = "replace") -> str:
    """``auto``: the native kernel on a CPU with a C++ compiler, else the portable ``jax`` path (a GPU).
    ``pallas`` (:mod:`collapse_jax.multinomial_pallas`; replace and accumulate) only when asked for: on an H200 its
    mean loss was once 8-14 % off the exact recurrence at n_t = 1000 (compiled inside a jitted call), while the same
    replicates run on their own matched it (docs/benchmarks.md, 2026-12-04), so it is not the GPU default until a GPU
    run shows why. ``pallas`` runs in Pallas's interpreter on a CPU (slow; for tests). A preferred backend
    (:func:`collapse_jax._native.prefer_backend`) replaces ``auto`` where the regime has that backend."""
    from collapse_jax import _native

    if regime not in NATIVE_REGIMES and backend in ("auto", "native"):
        if backend == "native":
            raise ValueError(f"backend='native' runs the regimes {NATIVE_REGIMES}, got regime {regime!r}; "
                             "use backend='jax' (or 'auto')")
        return "jax"

    if backend == "pallas":
        if regime not in ("replace", "accumulate"):
            raise ValueError(f"backend='pallas' supports the replace and accumulate regimes, got {regime!r}")
        return backend
    if backend not in ("auto", "native", "jax"):
        raise ValueError(f"backend must be 'auto', 'native', 'jax' or 'pallas', got {backend!r}")
    return _native.resolve_backend(backend)


def simulate(seed: int | jax.Array, p, alpha, n, config: MultinomialConfig = MultinomialConfig(),
             num_replicates: int = 100, *, backend: str = "auto", first_replicate: int = 0,
             chunk_size: int | None = None, memory_budget: int | None = None, mesh=None,
             progress: bool | None = None) -> np.ndarray:
    """Monte Carlo losses ``||p_hat_t - p||^2``.

    Args:
      seed: integer seed or key; replicate ``i`` uses ``fold_in(key, i)`` (independent of chunking).
      p: true probabilities (category,) = (K,).
      alpha, n: schedules (step,) = (T + 1,) or grids (grid, step) (see :mod:`collapse_jax.schedules`);
        ``alpha[0]`` is not used (generation 0 is the fit to real data alone), so a constant ``alpha`` mixes from
        generation 1 on.
      config: regime and filter errors.
      num_replicates: R.
      backend: ``"auto"`` (native on CPU when a C++ compiler is found, else jax), ``"native"``,
        ``"jax"`` or ``"pallas"`` (see :func:`resolve_backend`).
      first_replicate, memory_budget, mesh, progress: as :func:`collapse_jax.driver.run_replicates` (``mesh`` and
        ``memory_budget``: the ``jax`` backend; the native and Pallas kernels run on the default device).
      chunk_size: replicates per call (default: by ``memory_budget`` for ``jax``, 10,000 for ``native`` or fewer,
        so that a call records at most about 2^24 numbers, and 2,000,000 for ``pallas``).
    Returns:
      losses, (replicate, step) = (R, T + 1) for 1-D schedules or (grid, replicate, step) for grids (NumPy).
    """
    if not isinstance(config, MultinomialConfig):
        raise ValueError(f"config must be a MultinomialConfig (e.g. MultinomialConfig('accumulate')), got {config!r}")
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    rows = max(np.shape(x)[0] if np.ndim(x) == 2 else 1 for x in (alpha, n))   # lanes: replicates x grid rows
    p_arr, alpha, n = check_inputs(p, alpha, n, config, backend, num_replicates * rows)
    backend = resolve_backend(backend, config.regime)
    if chunk_size is not None:
        chunk_size = _checks.positive_int("chunk_size", chunk_size)
    if memory_budget is not None:  # checked whatever the backend (the native one does not use it)
        _checks.positive_int("memory_budget", memory_budget)
    mesh = check_mesh(mesh)  # (so is mesh)
    grid, alpha2, n2 = schedules.as_grid(alpha, n)
    if config.regime == "filter":
        alpha2, kappa2 = filter_schedules(alpha2, config.type1, config.type2)
    else:
        kappa2 = np.ones_like(alpha2)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    params = Params(*(jnp.asarray(x, dtype) for x in (p_arr, alpha2, n2, kappa2)))
    common = dict(first_replicate=first_replicate, progress=progress, desc="multinomial replicates")
    if backend == "jax":  # only the regime is static: one compilation serves every schedule and filter error pair
        out = driver.run_replicates(kernel, params, MultinomialConfig(config.regime), num_replicates, seed,
                                    grid_axes=Params(None, 0, 0, 0), chunk_size=chunk_size,
                                    memory_budget=memory_budget, mesh=mesh, **common)
    elif backend == "native":
        # (10,000 replicates a call whatever the grid: 8 schedules of 2,000 steps made calls of 1.6e8 numbers, 640 MB,
        # where docs/driver.md says about 2^24; an audit, 2026-12-07; the draws do not depend on the chunks)
        per_call = chunk_size or max(1, min(10_000, 2 ** 24 // int(np.prod(alpha2.shape))))
        out = driver.map_chunks(lambda keys: batched_risk_native(keys, *params, config.regime), num_replicates, seed,
                                min(per_call, num_replicates), replicate_axis=1, pad=False, **common)
    else:
        from collapse_jax import multinomial_pallas

        def run(keys):
            return np.stack([np.asarray(multinomial_pallas.batched_risk_pallas(
                keys, params.p, a_row, n_row, regime=config.regime, interpret=jax.default_backend() == "cpu"))
                for a_row, n_row in zip(params.alpha, params.n)])

        out = driver.map_chunks(run, num_replicates, seed, min(chunk_size or 2_000_000, num_replicates),
                                replicate_axis=1, pad=False, **common)
    return out if grid else out[0]


# ==================================================================================================================
# Exact theory (float64 NumPy)
# ==================================================================================================================
def _s(p) -> float:
    """``s = 1 - ||p||^2`` of a checked probability vector (:func:`check_p`): the theory refuses what the
    simulators refuse (an off-simplex p gave negative risks). Computed as ``sum_k p_k (sum_{j != k} p_j)``, the
    other entries' sum from prefix and suffix sums: ``1 - ||p||^2`` cancels when one entry is near 1 (p = [1 - 2e,
    e, e] lost 8e-4 of s at e = 1e-15 and all of it at [1, 1e-17]; an audit, 2026-12-04)."""
    p = check_p(p)
    before = np.concatenate(([0.0], np.cumsum(p)[:-1]))  # sum_{j < k} p_j
    after = np.concatenate((np.cumsum(p[::-1])[::-1][1:], [0.0]))  # sum_{j > k} p_j
    return float(np.sum(p * (before + after)))


def _by_step(alpha, n) -> tuple[int, list, list]:
    """``(T + 1, alpha_t, n_t)`` of two checked schedules broadcast together, one entry per step: Python floats for
    1-D schedules (a recurrence over floats runs ~20x faster than over 0-d array views, which matters to sweeps that
    evaluate one per cell), arrays of the leading (grid) shape otherwise."""
    alpha, n = np.broadcast_arrays(alpha, n)
    if alpha.ndim == 1:
        return alpha.shape[0], alpha.tolist(), n.astype(np.float64).tolist()
    return alpha.shape[-1], list(np.moveaxis(alpha, -1, 0)), list(np.moveaxis(n.astype(np.float64), -1, 0))


def _stacked(r: list) -> np.ndarray:
    """A recurrence's per-step values (floats or arrays) as one array, step last."""
    return np.moveaxis(np.asarray(r, np.float64), 0, -1)


def replace_risk(p, alpha, n) -> np.ndarray:
    """Theorem 3.1: ``r_0 = s/n_0``, ``r_t = (1 - alpha_t)^2 (1 - 1/n_t) r_{t-1} + s/n_t``, ``s = 1 - ||p||^2``."""
    steps, alpha, n = _by_step(*schedules.check_pair(alpha, n))
    s = _s(p)
    r = [s / n[0]]
    for t in range(1, steps):
        r.append((1 - alpha[t]) ** 2 * (1 - 1 / n[t]) * r[t - 1] + s / n[t])
    return _stacked(r)


def accumulate_risk(p, alpha, n) -> np.ndarray:
    """Theorem A.1 (general alpha_t), ``S_t = n_0 + ... + n_t``, ``c_t = (S_{t-1} + n_t (1 - alpha_t)) / S_t``:

    ``r_t = c_t^2 r_{t-1} + (n_t / S_t^2) (s - (1 - alpha_t)^2 r_{t-1})``.
    """
    steps, alpha, n = _by_step(*schedules.check_pair(alpha, n))
    s = _s(p)
    r, pool = [s / n[0]], [n[0]]
    for t in range(1, steps):
        pool.append(pool[t - 1] + n[t])
        c = (pool[t - 1] + n[t] * (1 - alpha[t])) / pool[t]
        r.append(c ** 2 * r[t - 1] + n[t] / pool[t] ** 2 * (s - (1 - alpha[t]) ** 2 * r[t - 1]))
    return _stacked(r)


def accumulate_subsample_risk(p, alpha, n) -> np.ndarray:
    """Accumulate-subsample (fit on ``n_t`` points drawn without replacement from the pool of all ``S_t = n_0 + ...
    + n_t`` points so far), exact. Derivation in docs/recursions.md; with ``beta_t = 1 - alpha_t``:

    ``B_t = E||pi_t - p||^2`` (``pi_t``: the pool's frequencies) and the risk ``r_t = E||p_hat_t - p||^2`` obey
    ``S_t^2 B_t = (S_{t-1} + n_t beta_t)^2 B_{t-1} + n_t^2 beta_t^2 (r_{t-1} - B_{t-1}) + n_t (s - beta_t^2 r_{t-1})``
    and ``r_t = B_t + f_t (s - B_t)`` with the finite-population factor ``f_t = (S_t - n_t) / (n_t (S_t - 1))``
    (``S_t >= 2`` for t >= 1); ``r_0 = B_0 = s / n_0``. A subsample of the whole pool (``f_t = 0``) gives Theorem
    A.1.
    """
    steps, alpha, n = _by_step(*schedules.check_pair(alpha, n))
    s = _s(p)
    r, size = [s / n[0]], [n[0]]
    pool = r[0]
    for t in range(1, steps):
        beta, nt = 1 - alpha[t], n[t]
        size.append(size[t - 1] + nt)
        st = size[t]
        pool = ((size[t - 1] + nt * beta) ** 2 * pool + nt ** 2 * beta ** 2 * (r[t - 1] - pool)
                + nt * (s - beta ** 2 * r[t - 1])) / st ** 2
        r.append(pool + (st - nt) / (nt * (st - 1)) * (s - pool))
    return _stacked(r)


def expected_inverse_kept(n: float, kappa: float) -> float:
    """Exact ``E[1/N | N > 0]`` for ``N ~ Binomial(n, kappa)``: the sum over the pmf (tails beyond 40 sd dropped)
    while the mean ``mu = n kappa`` is below 10^6; from there (the sum's cost grows as ``sqrt(mu)``: 8.6 s and 4e7
    terms at n = 10^12) the series ``E[1/N] = (1/mu) sum_k (-1)^k m_k / mu^k`` in the central moments ``m_k`` up to
    the fifth, whose first term left out (``m_6 / mu^6 <= 15 / mu^3``) is below float64 rounding there, and
    ``P(N = 0) <= e^-mu`` is 0. ``n`` a whole number >= 1, ``kappa`` in (0, 1] (N > 0 must be possible; 0 gave NaN
    with a RuntimeWarning, a NaN a ValueError naming nothing, 2.5 ran as 2: a user trial, 2026-12-06)."""
    n = int(_checks.positive_whole("n", n))
    if n > sys.float_info.max:  # (an int beyond float64 raised a bare OverflowError)
        raise ValueError(f"n must be at most {sys.float_info.max:.6g} (float64's largest number), got an integer of "
                         f"{len(str(n))} digits")
    kappa = _checks.in_interval("kappa", kappa, 0.0, 1.0, low_open=True)
    if kappa >= 1.0:
        return 1.0 / n
    mean, sd = n * kappa, math.sqrt(n * kappa * (1 - kappa))
    if mean >= 1e6:
        # m_k / mu^k in powers of x = 1 / mu and q = 1 - kappa (v = mu q): mean ** k overflowed float64 from
        # mu ~ 1e62 on (n = 1e300 raised a bare OverflowError; an audit, 2026-12-07)
        x, q, skew, flat = 1.0 / mean, 1.0 - kappa, 1 - 2 * kappa, 1 - 6 * kappa * (1 - kappa)
        terms = (q * x, q * skew * x * x, 3 * q * q * x * x + q * flat * x ** 3,
                 10 * q * q * skew * x ** 3 + q * skew * (1 - 12 * kappa * q) * x ** 4)
        return (1 + sum((-1) ** k * t for k, t in enumerate(terms, start=2))) * x
    lo, hi = max(1, int(mean - 40 * sd) - 1), min(n, int(mean + 40 * sd) + 2)
    k = np.arange(lo, hi + 1, dtype=np.float64)
    from scipy import stats  # (imported here: scipy.stats adds 0.4 s to every start-up)

    pmf = stats.binom.pmf(k, n, kappa)
    return float(np.sum(pmf / k) / -np.expm1(n * np.log1p(-kappa)))


def filter_risk(p, alpha, n, type1: float, type2: float, *, mean_field: bool = False) -> np.ndarray:
    """Theorem D.2: ``r_t = (1 - alpha~_t)^2 (1 - E[1/N_t]) r_{t-1} + s E[1/N_t]``.

    ``kappa_t = alpha_t (1 - a) + (1 - alpha_t) b``, ``alpha~_t = alpha_t (1 - a) / kappa_t``,
    ``N_t ~ Binomial(n_t, kappa_t) | N_t > 0``. ``mean_field=True`` uses ``E[1/N_t] ~ 1/(n_t kappa_t)`` (Remark D.3),
    refused where ``n_t kappa_t < 1`` (the approximation exceeds 1 there, and the risks any loss could reach).
    Grids of schedules (..., T + 1), as the simulators take, give one curve per row.
    """
    alpha, n = schedules.check_pair(alpha, n)
    a = _checks.in_interval("type1", type1, 0.0, 1.0)
    b = _checks.in_interval("type2", type2, 0.0, 1.0)
    if alpha.ndim > 1 or n.ndim > 1:  # E[1/N_t] is a sum per (n_t, kappa_t): one row at a time
        alpha, n = np.broadcast_arrays(alpha, n)
        rows = [filter_risk(p, x, m, a, b, mean_field=mean_field)
                for x, m in zip(alpha.reshape(-1, alpha.shape[-1]), n.reshape(-1, n.shape[-1]))]
        return np.stack(rows).reshape(alpha.shape)
    s = _s(p)
    r = np.empty(n.shape)
    r[0] = s / n[0]
    for t in range(1, n.shape[0]):
        kappa = alpha[t] * (1 - a) + (1 - alpha[t]) * b
        if kappa <= 0:
            raise ValueError(f"the filter keeps nothing at step {t} (keep probability 0)")
        tilde = alpha[t] * (1 - a) / kappa
        if mean_field and n[t] * kappa < 1:  # 1 / (n kappa) > 1 >= E[1/N_t]: risks above any loss (a user trial)
            raise ValueError(f"mean_field=True approximates E[1/N_t] by 1/(n_t kappa_t), above 1 (impossible: "
                             f"N_t >= 1) where n_t kappa_t < 1, as at step {t}: n_t kappa_t = {n[t] * kappa:.3g}; "
                             "use mean_field=False (exact)")
        inv = 1 / (n[t] * kappa) if mean_field else expected_inverse_kept(n[t], kappa)
        r[t] = (1 - tilde) ** 2 * (1 - inv) * r[t - 1] + s * inv
    return r


def fixed_alpha_limit(p, alpha: float, n: int | float) -> float:
    """Corollary 3.2 / Remark 3.3: ``r_inf = (s/n) / (1 - (1 - alpha)^2 (1 - 1/n))`` for fixed ``alpha``, ``n``
    (``n`` a whole number >= 1, an int or an integral float such as ``100.0``, as the schedules' ``n_t``)."""
    alpha = _checks.in_interval("alpha", alpha, 0.0, 1.0)
    n = _checks.positive_whole("n", n)
    # the same, times n / n without the subtraction: 1 - (1 - alpha)^2 (1 - 1/n) lost every digit at large n
    # (alpha = 0, n = 1e16 gave 0.56 s instead of s; a user trial, 2026-12-06)
    return _s(p) / (n * alpha * (2 - alpha) + (1 - alpha) ** 2)


def pure_synthetic_limit(p, n) -> np.ndarray:
    """Corollary 3.6 (alpha_t = 0, replace): ``r_t = s (1 - prod_{i<=t} (1 - 1/n_i))`` (cumulative products)."""
    n = schedules.check_sizes(n)
    # 1 - prod(1 - 1/n_i) through logs: 1 - (1 - 1/n) rounded away the digits at large n (8e-4 off replace_risk
    # at n = 1e15; a user trial, 2026-12-06)
    with np.errstate(divide="ignore"):  # (n_t = 1: log 0 = -inf, exactly the limit s; NumPy's warning leaked)
        return _s(p) * -np.expm1(np.cumsum(np.log1p(-1 / n), axis=-1))


def adaptive_alpha(p, f: Callable[[float], float], n, *, regime: str = "replace") -> tuple[np.ndarray, np.ndarray]:
    """Appendix E: naturally adaptive weights ``1 - alpha_t = f(r_{t-1})`` with ``r`` the exact risk.

    ``f`` maps a risk to the synthetic share in [0, 1] (decreasing in the risk). Returns ``(alpha, r)``; ``alpha``
    is a deterministic schedule (it depends on the expected risk, not on a replicate's draw), so the Monte Carlo
    simulator runs it as any other schedule.
    """
    if not callable(f):  # (a number failed with "'float' object is not callable": a user trial, 2026-12-06)
        raise ValueError(f"f must be a function of the risk giving the synthetic share in [0, 1], got "
                         f"{type(f).__name__} {f!r}; for a constant share use schedules.constant_alpha")
    n = schedules.check_sizes(n)
    if n.ndim != 1:
        raise ValueError("adaptive_alpha takes a 1-D n schedule")
    if regime not in ("replace", "accumulate"):
        raise ValueError(f"regime must be 'replace' or 'accumulate', got {regime!r}")
    s = _s(p)
    alpha = np.ones(n.shape)
    r = np.empty(n.shape)
    r[0] = s / n[0]
    big_s = np.cumsum(n)
    for t in range(1, n.shape[0]):
        share = _checks.in_interval("f(r)", f(r[t - 1]), 0.0, 1.0)
        alpha[t] = 1 - share
        if regime == "replace":
            r[t] = share ** 2 * (1 - 1 / n[t]) * r[t - 1] + s / n[t]
        else:
            c = (big_s[t - 1] + n[t] * share) / big_s[t]
            r[t] = c ** 2 * r[t - 1] + n[t] / big_s[t] ** 2 * (s - share ** 2 * r[t - 1])
    return alpha, r


def theory_risk(p, alpha, n, config: MultinomialConfig = MultinomialConfig()) -> np.ndarray:
    """The exact recurrence for ``config.regime`` (replace, accumulate, filter or accumulate-subsample)."""
    _checks.instance("config", config, MultinomialConfig)  # (a regime name gave an AttributeError; a user trial)
    if config.regime == "replace":
        return replace_risk(p, alpha, n)
    if config.regime == "accumulate":
        return accumulate_risk(p, alpha, n)
    if config.regime == "accumulate-subsample":
        return accumulate_subsample_risk(p, alpha, n)
    return filter_risk(p, alpha, n, config.type1, config.type2)
