"""LLM Web Dynamics: a network of interacting Gaussian mixture models (seed 000, Section 3.2, Algorithms 2-3).

``n`` GMMs share fixed components ``N(mu_b, Sigma)`` and differ only in their weights ``Pi_i(t)``. At every step each
model posts ``L`` points drawn from itself to a shared internet ``A(t)``, then draws ``k_t = floor(beta |A(t)|)``
points uniformly without replacement from the internet as it was before this step's posts, and updates its weights
point by point with the recursive rule of Zivkovic & van der Heijden (2004) (Algorithm 2). The tracked statistic is
``||D(t)||_F`` with ``D_ij = ||Pi_i(t) - Pi_j(t)||_2``.

A point's component likelihoods never change, so they are computed once when the point is posted and stored in the
internet ("pool"): the update then costs O(B) per drawn point whatever the dimension. Two kernels, both exact in
their sampling without replacement:
- ``backend="native"`` (CPU default): whole replicates in C++ (``collapse_jax/_native/gmm_network.cc``): posts,
  draws (partial Fisher-Yates on each model's own copy of the internet, xoshiro128++ and Lemire's exact bounded
  integers), updates and records, (replicate, model) chains in SIMD lanes. XLA:CPU cannot run the per-replicate
  swap fast.
- ``backend="jax"`` (portable, any device, the reference): one network is ``lax.scan`` over steps, replicates are
  batched with ``vmap``; each model draws an index uniformly and keeps it only if unused this step (a per-model
  bitmap), so accepted draws form a uniform random ordered sample without replacement.
Replicates are sharded over all devices; replicate r's stream depends only on ``fold_in(key(seed), r)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from collapse_jax import _checks, driver
from collapse_jax import progress as _progress
from collapse_jax.distance import pairwise_distances, frobenius_norm
from collapse_jax.replicates import replicate_keys, replicate_mesh, replicate_sharding, padded_count



@dataclass(frozen=True)
class GMMNetworkConfig:
    """Static configuration of one GMM network (validated by :func:`make_config`).

    Attributes:
      mu: component means, ``num_components`` tuples of length ``dim``.
      sigma: the shared covariance, ``dim`` x ``dim`` (symmetric positive definite).
      num_models: ``n``, the number of GMMs.
      points_per_step: ``L``, points each model posts per step.
      beta: fraction of the internet each model reads per step, in (0, 1].
      dirichlet_a: ``a`` of the initial weights ``Pi_i(0) ~ Dirichlet(a, ..., a)``.
      num_steps: ``T``; ``D(t)`` is recorded for t = 0..T.
      eps: pruning threshold of Algorithm 2, in [0, 1].
      num_human: ``m0``, human points in ``A(0)`` drawn from the reference GMM with weights ``pi_ref``.
      pi_ref: reference weights of the human data (default uniform).
      alpha, c: Algorithm 2's coefficients; None = the paper's ``1/k_t`` and ``1/(k_t B^2)``; a number = constant;
        a sequence = one value per step t = 0..T-1.
      record_pi, record_d: also return ``Pi(t)`` (replicate, step, model, component) and ``D(t)``.
      initial_weights: ``Pi(0)`` for every replicate, ``num_models`` rows on the simplex (None: Dirichlet draws);
        e.g. weights fitted to data (:mod:`llm_bridge.web_gmm_proxy`).
    """

    mu: tuple = ((-5.0,), (5.0,))
    sigma: tuple = ((1.0,),)
    num_models: int = 3
    points_per_step: int = 3
    beta: float = 0.5
    dirichlet_a: float = 1.0
    num_steps: int = 200
    eps: float = 0.0
    num_human: int = 0
    pi_ref: tuple | None = None
    alpha: Any = None
    c: Any = None
    record_pi: bool = False
    record_d: bool = False
    initial_weights: tuple | None = None

    @property
    def num_components(self) -> int:
        return len(self.mu)

    @property
    def dim(self) -> int:
        return len(self.mu[0])

    @property
    def max_points(self) -> int:
        """``|A(T-1)|``: the largest internet any update reads."""
        return self.num_human + self.num_models * self.points_per_step * max(self.num_steps - 1, 0)

    @property
    def pool_size(self) -> int:
        """Stored points: ``|A(T)|`` (the last step's posts are stored but never read)."""
        return self.num_human + self.num_models * self.points_per_step * self.num_steps

    def replace(self, **changes) -> "GMMNetworkConfig":
        return make_config(**{**_as_kwargs(self), **changes})


def _as_kwargs(cfg: GMMNetworkConfig) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _tuplify(x):
    arr = np.asarray(x, dtype=np.float64)
    return tuple(map(_tuplify, arr)) if arr.ndim > 1 else tuple(float(v) for v in arr)


def make_config(*, mu=((-5.0,), (5.0,)), sigma=((1.0,),), num_models=3, points_per_step=3, beta=0.5,
                dirichlet_a=1.0, num_steps=200, eps=0.0, num_human=0, pi_ref=None, alpha=None, c=None,
                record_pi=False, record_d=False, initial_weights=None) -> GMMNetworkConfig:
    """Validate every parameter (clear ``ValueError`` naming it) and return a :class:`GMMNetworkConfig`.

    ``mu`` may be given as (B,) for d = 1 or (B, d); ``sigma`` as a number (d = 1, variance) or (d, d).
    """
    mu_arr = np.asarray(mu, dtype=np.float64)
    if mu_arr.ndim == 1:
        mu_arr = mu_arr[:, None]
    if mu_arr.ndim != 2 or mu_arr.shape[0] < 1 or mu_arr.shape[1] < 1:
        raise ValueError(f"mu must have shape (num_components, dim), got {np.shape(mu)}")
    mu_arr = _checks.finite_array("mu", mu_arr)
    B, dim = mu_arr.shape
    sig = np.asarray(sigma, dtype=np.float64)
    if sig.ndim == 0:
        sig = sig.reshape(1, 1)
    if sig.shape != (dim, dim):
        raise ValueError(f"sigma must have shape (dim, dim) = ({dim}, {dim}) to match mu's dim, got {sig.shape}")
    sig = _checks.spd_matrix("sigma", sig, dim)
    n = _checks.positive_int("num_models", num_models)
    L = _checks.positive_int("points_per_step", points_per_step)
    T = _checks.positive_int("num_steps", num_steps)
    beta = _checks.in_interval("beta", beta, 0.0, 1.0, low_open=True)
    a = _checks.in_interval("dirichlet_a", dirichlet_a, 0.0, math.inf, low_open=True, high_open=True)
    eps = _checks.in_interval("eps", eps, 0.0, 1.0)
    m0 = _checks.nonnegative_int("num_human", num_human)
    if pi_ref is not None:
        pi_ref = tuple(float(v) for v in _checks.simplex_vector("pi_ref", pi_ref, B))
    alpha = _schedule_arg("alpha", alpha, T, 0.0, 1.0, low_open=True)
    c = _schedule_arg("c", c, T, 0.0, 1.0 / B, high_open=True)
    if initial_weights is not None:
        w0 = _checks.finite_array("initial_weights", initial_weights, shape=(n, B))
        initial_weights = _tuplify([_checks.simplex_vector(f"initial_weights[{i}]", w, B) for i, w in enumerate(w0)])
    max_points = m0 + n * L * max(T - 1, 0)
    if max_points >= 2**31 - 1:
        raise ValueError(f"the internet would hold {max_points} points; at most 2^31 - 2 are supported "
                         "(reduce num_steps, num_models or points_per_step)")
    return GMMNetworkConfig(mu=_tuplify(mu_arr), sigma=_tuplify(sig), num_models=n, points_per_step=L, beta=beta,
                            dirichlet_a=a, num_steps=T, eps=eps, num_human=m0, pi_ref=pi_ref, alpha=alpha, c=c,
                            record_pi=bool(record_pi), record_d=bool(record_d), initial_weights=initial_weights)


def _schedule_arg(name, value, T, low, high, **kw):
    if value is None:
        return None
    if np.ndim(value) == 0:
        return _checks.in_interval(name, value, low, high, **kw)
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (T,):
        raise ValueError(f"{name} as a schedule must have one value per step, shape ({T},), got {arr.shape}")
    for t, v in enumerate(arr):
        _checks.in_interval(f"{name}[{t}]", v, low, high, **kw)
    return tuple(float(v) for v in arr)


def paper_config(figure: int = 4, **overrides) -> GMMNetworkConfig:
    """The seed's settings: Figure 4/5 (B = 2, mu = -5, 5) or Figure 6 (B = 11, mu_b = 5 (b - 5))."""
    if figure in (4, 5):
        base = dict(mu=((-5.0,), (5.0,)))
    elif figure == 6:
        base = dict(mu=tuple((5.0 * (b - 5),) for b in range(11)))
    else:
        raise ValueError(f"figure must be 4, 5 or 6, got {figure!r}")
    base.update(sigma=((1.0,),), num_models=3, points_per_step=3, beta=0.5, dirichlet_a=1.0, num_steps=200)
    base.update(overrides)
    return make_config(**base)


class StepSchedule(NamedTuple):
    """Per-step quantities, t = 0..T-1 (NumPy, float64): internet size, draws, coefficients."""

    num_points: np.ndarray  # |A(t)|
    num_draws: np.ndarray  # k_t
    alpha: np.ndarray
    c: np.ndarray


def step_schedule(cfg: GMMNetworkConfig) -> StepSchedule:
    """``|A(t)| = m0 + n L t``, ``k_t = floor(beta |A(t)|)`` and the coefficients alpha_t, c_t."""
    t = np.arange(cfg.num_steps)
    size = cfg.num_human + cfg.num_models * cfg.points_per_step * t
    k = np.floor(cfg.beta * size + 1e-9).astype(np.int64)
    kk = np.maximum(k, 1)
    alpha = 1.0 / kk if cfg.alpha is None else np.broadcast_to(np.asarray(cfg.alpha, float), t.shape).copy()
    B = cfg.num_components
    c = 1.0 / (kk * B * B) if cfg.c is None else np.broadcast_to(np.asarray(cfg.c, float), t.shape).copy()
    if np.any(B * c >= 1):
        raise ValueError("c must satisfy B * c < 1 at every step")
    return StepSchedule(size, k, alpha, c)


# --------------------------------------------------------------------------------------------------------------
# One network
# --------------------------------------------------------------------------------------------------------------


class State(NamedTuple):
    """One network's state between steps."""

    weights: jax.Array  # (num_models, num_components)
    pool: jax.Array  # (max_points, S): stored likelihood features of every internet point
    key: jax.Array


class Record(NamedTuple):
    """What is recorded at every step t (before the step's update)."""

    dnorm: jax.Array  # ()
    alive: jax.Array  # (num_models,) int8: components with positive weight
    collapsed: jax.Array  # () bool: every model one-hot on the same component
    weights: jax.Array | None  # (num_models, num_components)
    distances: jax.Array | None  # (num_models, num_models)


def _feature_size(cfg: GMMNetworkConfig) -> int:
    return 1 if cfg.num_components == 2 else cfg.num_components


def _clamp(dtype) -> float:
    return 80.0 if jnp.dtype(dtype) == jnp.float32 else 700.0


def _cholesky(cfg: GMMNetworkConfig) -> np.ndarray:
    """Lower Cholesky factor of Sigma, computed once in float64 (a constant of the compiled kernel)."""
    return np.linalg.cholesky(np.asarray(cfg.sigma))


def _whitener(cfg: GMMNetworkConfig) -> np.ndarray:
    """``L^{-1}`` for ``Sigma = L L^T``."""
    return np.linalg.inv(_cholesky(cfg))


def point_features(x: jax.Array, cfg: GMMNetworkConfig, dtype) -> jax.Array:
    """Stored likelihood features of points ``x`` (..., dim) -> (..., S).

    B = 2: ``rho = N(x; mu_1, Sigma) / N(x; mu_0, Sigma)`` (clamped to exp(+-80) in float32, which changes nothing
    for two components: a clamped ratio only matters when one weight is zero, and then the other owns the point).
    B > 2: log-likelihoods relative to their maximum (constants cancel in the ownership).
    """
    mu = jnp.asarray(cfg.mu, dtype)
    diff = x[..., None, :] - mu  # (..., B, d)
    z = diff @ jnp.asarray(_whitener(cfg), dtype).T  # rows of L^{-1} (x - mu_b), Sigma = L L^T
    quad = jnp.sum(z * z, axis=-1)
    ll = -0.5 * quad
    if cfg.num_components == 2:
        clamp = _clamp(dtype)
        return jnp.exp(jnp.clip(ll[..., 1] - ll[..., 0], -clamp, clamp))[..., None]
    return ll - jnp.max(ll, axis=-1, keepdims=True)


def draw_points(key: jax.Array, weights: jax.Array, count: int, cfg: GMMNetworkConfig, dtype) -> jax.Array:
    """``count`` points from each GMM with ``weights`` (..., B) -> (..., count, dim).

    Component by inverse CDF of one uniform (thresholds past the last positive weight are set to exactly 1, so a
    zero-weight component is never chosen), then ``x = mu_b + L z`` with ``z ~ N(0, I)``.
    """
    k_comp, k_noise = jax.random.split(key)
    w = weights / jnp.sum(weights, axis=-1, keepdims=True)
    B = w.shape[-1]
    last = B - 1 - jnp.argmax((w > 0)[..., ::-1], axis=-1)
    cum = jnp.where(jnp.arange(B) >= last[..., None], 1.0, jnp.cumsum(w, axis=-1))
    u = jax.random.uniform(k_comp, w.shape[:-1] + (count,), dtype)
    comp = jnp.sum(u[..., None] >= cum[..., None, :-1], axis=-1)
    noise = jax.random.normal(k_noise, w.shape[:-1] + (count, cfg.dim), dtype)
    return jnp.asarray(cfg.mu, dtype)[comp] + noise @ jnp.asarray(_cholesky(cfg), dtype).T


def ownership(p: jax.Array, feat: jax.Array) -> jax.Array:
    """Algorithm 2, line 3: ``o_b = p_b N(u; mu_b) / sum_l p_l N(u; mu_l)`` from a point's stored features."""
    if p.shape[-1] == 2:
        o0 = p[..., 0] / (p[..., 0] + p[..., 1] * feat[..., 0])
        return jnp.stack([o0, 1 - o0], axis=-1)
    z = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)) + feat, -jnp.inf)
    return jax.nn.softmax(z, axis=-1)


def zivkovic_step(p: jax.Array, o: jax.Array, alpha, c, eps) -> jax.Array:
    """Algorithm 2, lines 4-13 for one point: ``p <- (1-alpha) p + alpha (o - c)/(1 - B c)``, then drop
    non-positive weights one component at a time, dividing the others by ``1 + eps - p_b``."""
    B = p.shape[-1]
    p = (1 - alpha) * p + alpha * (o - c) / (1 - B * c)
    for b in range(B):
        pb = p[..., b:b + 1]
        drop = pb <= 0
        others = jnp.arange(B) != b
        p = jnp.where(drop & others, p / (1 + eps - pb), p)
        p = jnp.where(drop & ~others, jnp.zeros_like(p), p)
    return p


def _mulhi(a: jax.Array, m: jax.Array) -> jax.Array:
    """High word of the 64-bit product ``a * m`` of two uint32 arrays, from 16-bit limbs (no uint64 needed)."""
    a1, a0, m1, m0 = a >> 16, a & 0xFFFF, m >> 16, m & 0xFFFF
    lo, mid1, mid2 = a0 * m0, a1 * m0, a0 * m1
    carry = ((mid1 & 0xFFFF) + (mid2 & 0xFFFF) + (lo >> 16)) >> 16
    return a1 * m1 + (mid1 >> 16) + (mid2 >> 16) + carry


def bounded_uniform(bits: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Lemire's (2019) exact bounded integers: ``r = floor(bits m / 2^32)`` is uniform on [0, m) given ``ok``.

    ``ok`` is False for the ``2^32 mod m`` values of ``bits`` whose ``r`` would be drawn once too often; the caller
    treats them as rejected draws (here: like a repeat of an index already used), so accepted indices are exactly
    uniform for every ``m`` < 2^32.
    """
    m = m.astype(jnp.uint32)
    low = bits * m  # the low word of the product (uint32 arithmetic wraps)
    return _mulhi(bits, m), low >= (jnp.uint32(0) - m) % m


SCATTER_MIN_WORDS = 64  # bitmaps wider than this (internets over 2,048 points) are updated by scatter on a CPU too


def _update_jax(p, pool, num_points, num_draws, alpha, c, eps, key, *, block: int = 32):
    """Portable update: every model accepts ``num_draws`` distinct uniform indices (rejecting repeats with a
    per-model bitmap), applying the weight update at each acceptance, in the order accepted.

    The bitmap is updated with a one-hot mask over its words while it is small (vectorises well on a CPU) and by a
    scatter of one word per model otherwise (O(1) per draw whatever the internet's size; the GPU form)."""
    n, B = p.shape
    max_points = pool.shape[0]
    words = max(1, -(-max_points // 32))
    word_ids = jnp.arange(words, dtype=jnp.uint32)
    size = jnp.maximum(num_points, 1).astype(jnp.uint32)
    scatter = words > SCATTER_MIN_WORDS or jax.default_backend() != "cpu"
    models = jnp.arange(n)

    def cond(state):
        return jnp.any(state[2] < num_draws)

    def one_block(state):
        p, used, count, it = state
        bits = jax.random.bits(jax.random.fold_in(key, it), (block, n), jnp.uint32)

        def body(j, inner):
            p, used, count = inner
            r, fair = bounded_uniform(bits[j], size)
            w = (r >> 5).astype(jnp.int32)
            word = jnp.take_along_axis(used, w[:, None], axis=1)[:, 0]
            accept = fair & (((word >> (r & 31)) & 1) == 0) & (count < num_draws)
            flag = jnp.where(accept, jnp.uint32(1) << (r & 31), jnp.uint32(0))
            if scatter:
                used = used.at[models, w].set(word | flag)
            else:
                used = used | jnp.where(word_ids[None, :] == (r >> 5)[:, None], flag[:, None], jnp.uint32(0))
            feat = pool[r.astype(jnp.int32)]
            p_new = zivkovic_step(p, ownership(p, feat), alpha, c, eps)
            p = jnp.where(accept[:, None], p_new, p)
            return p, used, count + accept.astype(count.dtype)

        p, used, count = lax.fori_loop(0, block, body, (p, used, count))
        return p, used, count, it + 1

    init = (p, jnp.zeros((n, words), jnp.uint32), jnp.zeros((n,), jnp.int32), jnp.int32(0))
    return lax.while_loop(cond, one_block, init)[0]


def _record(p: jax.Array, cfg: GMMNetworkConfig) -> Record:
    d = pairwise_distances(p)
    alive = jnp.sum(p > 0, axis=-1).astype(jnp.int8)
    top = jnp.argmax(p, axis=-1)
    collapsed = jnp.all(alive == 1) & jnp.all(top == top[0])
    return Record(frobenius_norm(d), alive, collapsed, p if cfg.record_pi else None,
                  d if cfg.record_d else None)


def initial(key: jax.Array, cfg: GMMNetworkConfig, dtype=jnp.float32):
    """``Pi(0)`` (num_models, num_components) with rows ``~ Dirichlet(a)`` (or ``cfg.initial_weights``), the
    features of the ``m0`` human points of ``A(0)`` (m0, S) drawn from the reference GMM, and the key left for the
    steps."""
    k_pi, k_human, key = jax.random.split(key, 3)
    B = cfg.num_components
    if cfg.initial_weights is None:
        weights = jax.random.dirichlet(k_pi, jnp.full((B,), cfg.dirichlet_a, dtype), (cfg.num_models,))
    else:
        weights = jnp.asarray(cfg.initial_weights, dtype)
    human = jnp.zeros((0, _feature_size(cfg)), dtype)
    if cfg.num_human > 0:
        ref = jnp.full((B,), 1.0 / B, dtype) if cfg.pi_ref is None else jnp.asarray(cfg.pi_ref, dtype)
        human = point_features(draw_points(k_human, ref, cfg.num_human, cfg, dtype), cfg, dtype)
    return weights.astype(dtype), human, key


def init_state(key: jax.Array, cfg: GMMNetworkConfig, dtype=jnp.float32) -> State:
    """The portable kernel's state at t = 0: :func:`initial`'s weights, and the internet ``A(0)`` stored in a pool
    with room for every later post."""
    weights, human, key = initial(key, cfg, dtype)
    pool = jnp.zeros((cfg.pool_size, _feature_size(cfg)), dtype)
    pool = lax.dynamic_update_slice_in_dim(pool, human, 0, axis=0)
    return State(weights, pool, key)


def make_step(cfg: GMMNetworkConfig):
    """The portable kernel's step function ``(state, xs) -> (state, record)`` of one network; ``xs`` = (active,
    |A(t)|, k_t, alpha_t, c_t) for one step (``active`` False makes it a no-op, used to pad the last chunk)."""
    n, L = cfg.num_models, cfg.points_per_step

    def step(state: State, xs):
        active, num_points, num_draws, alpha, c = xs
        record = _record(state.weights, cfg)
        key, k_post, k_draw = jax.random.split(state.key, 3)
        dtype = state.weights.dtype
        posts = draw_points(k_post, state.weights, L, cfg, dtype)
        feats = point_features(posts.reshape(n * L, cfg.dim), cfg, dtype)
        draws = jnp.where(active, num_draws, 0)
        weights = _update_jax(state.weights, state.pool, num_points, draws, alpha.astype(dtype), c.astype(dtype),
                              jnp.asarray(cfg.eps, dtype), k_draw)
        # the pool has room for the last step's posts too, so this write never clips
        pool = lax.dynamic_update_slice_in_dim(state.pool, feats, num_points, axis=0)
        new = State(jnp.where(active, weights, state.weights), pool, jnp.where(active, key, state.key))
        return new, record

    return step


def run_network(key: jax.Array, cfg: GMMNetworkConfig, *, dtype=jnp.float32, backend: str = "auto") -> Record:
    """Simulate one network for all steps; records for t = 0..T (leading axis T+1). Pure, jit- and vmap-able."""
    backend = resolve_backend(backend)
    if backend == "native":
        return jax.tree_util.tree_map(lambda r: r[0], native_records(key[None], cfg, dtype))
    sched = step_schedule(cfg)
    state = init_state(key, cfg, dtype)
    xs = _xs(sched, 0, cfg.num_steps)
    state, records = lax.scan(make_step(cfg), state, xs)
    final = _record(state.weights, cfg)
    return jax.tree_util.tree_map(lambda r, f: jnp.concatenate([r, f[None]]), records, final)


def native_records(keys: jax.Array, cfg: GMMNetworkConfig, dtype=jnp.float32, *, engine: str = "vector") -> Record:
    """Whole replicates in the native kernel: records (num_replicates, T+1, ...) for replicate keys (num_replicates,).

    Replicate r draws Pi(0) and the human points as the portable kernel does (:func:`initial`), then four seed words
    from its remaining key: one SplitMix64 stream for its posts and one xoshiro128++ stream per model for its draws.
    ``engine="scalar"`` runs the same arithmetic one lane at a time (a check of the vector code: the results are
    bit-identical).
    """
    from collapse_jax import _native

    if not _native.available():
        raise RuntimeError("the native GMM kernel is unavailable (no C++ compiler?); use backend='jax'")
    if engine not in ("vector", "scalar"):
        raise ValueError(f"engine must be 'vector' or 'scalar', got {engine!r}")
    if cfg.pool_size * cfg.num_components * 16 >= 2**31:  # the kernel's gathers use 32-bit offsets
        raise ValueError(f"the native kernel supports internets of < 2^27 / num_components points; this one holds "
                         f"{cfg.pool_size} (reduce num_steps, num_models or points_per_step)")
    dtype = jnp.dtype(dtype)
    weights, human, rest = jax.vmap(lambda k: initial(k, cfg, dtype))(keys)
    if cfg.num_human == 0:  # the kernel takes at least one (unused) human row
        human = jnp.zeros(weights.shape[:1] + (1, _feature_size(cfg)), dtype)
    seeds = jax.vmap(lambda k: jax.random.bits(k, (4,), jnp.uint32))(rest)
    R, T1, n, B = keys.shape[0], cfg.num_steps + 1, cfg.num_models, cfg.num_components
    shapes = (jax.ShapeDtypeStruct((R, T1), dtype), jax.ShapeDtypeStruct((R, T1, n), jnp.int8),
              jax.ShapeDtypeStruct((R, T1), jnp.int8),
              jax.ShapeDtypeStruct((R, T1 if cfg.record_pi else 0, n, B), dtype),
              jax.ShapeDtypeStruct((R, T1 if cfg.record_d else 0, n, n), dtype))
    sched = step_schedule(cfg)
    chol = _cholesky(cfg)
    mu = np.asarray(cfg.mu)
    shift = (mu[:, None, :] - mu[None, :, :]) @ _whitener(cfg).T  # shift[c, b] = L^{-1} (mu_c - mu_b)
    call = jax.ffi.ffi_call(_native.GMM_TARGETS[dtype.name], shapes, vmap_method="broadcast_all")
    dnorm, alive, collapsed, pi, dist = call(
        weights, human, seeds, points=sched.num_points.astype(np.int32), draws=sched.num_draws.astype(np.int32),
        alpha=sched.alpha.astype(np.float64), c=sched.c.astype(np.float64),
        geometry=np.concatenate([mu.ravel(), chol.ravel(), shift.ravel()]).astype(np.float64),
        eps=np.float64(cfg.eps), clamp=np.float64(_clamp(dtype)), num_human=np.int64(cfg.num_human),
        points_per_step=np.int64(cfg.points_per_step), dim=np.int64(cfg.dim),
        num_threads=np.int64(_native.cpu_threads()), engine=np.int64(engine == "scalar"))
    return Record(dnorm, alive, collapsed.astype(bool), pi if cfg.record_pi else None,
                  dist if cfg.record_d else None)


def _xs(sched: StepSchedule, start: int, length: int):
    T = sched.num_points.shape[0]
    idx = np.arange(start, start + length)
    valid = idx < T
    idx = np.minimum(idx, T - 1)
    return (jnp.asarray(valid), jnp.asarray(sched.num_points[idx], jnp.int32),
            jnp.asarray(sched.num_draws[idx], jnp.int32), jnp.asarray(sched.alpha[idx]),
            jnp.asarray(sched.c[idx]))


def resolve_backend(backend: str) -> str:
    """``auto``: the native kernel on CPU when it builds, else the portable JAX kernel."""
    from collapse_jax import _native

    return _native.resolve_backend(backend)


# --------------------------------------------------------------------------------------------------------------
# Many replicates
# --------------------------------------------------------------------------------------------------------------


class GMMNetworkResult(NamedTuple):
    """Per replicate and step t = 0..T (NumPy arrays, replicate axis first)."""

    dnorm: np.ndarray  # (num_replicates, T+1): ||D(t)||_F
    alive: np.ndarray  # (num_replicates, T+1, num_models): components with positive weight
    collapsed: np.ndarray  # (num_replicates, T+1): all models one-hot on the same component
    weights: np.ndarray | None  # (num_replicates, T+1, num_models, num_components)
    distances: np.ndarray | None  # (num_replicates, T+1, num_models, num_models)


def record_bytes(cfg: GMMNetworkConfig, dtype=jnp.float32) -> int:
    """Memory of one replicate's records (what :func:`simulate` returns for it)."""
    item = jnp.dtype(dtype).itemsize
    T1, n, B = cfg.num_steps + 1, cfg.num_models, cfg.num_components
    rec = T1 * (item + n + 1)
    rec += T1 * n * B * item if cfg.record_pi else 0
    rec += T1 * n * n * item if cfg.record_d else 0
    return rec


def bytes_per_replicate(cfg: GMMNetworkConfig, dtype=jnp.float32, backend: str = "native") -> int:
    """Device memory one replicate needs (state, records, the kernel's scratch)."""
    item = jnp.dtype(dtype).itemsize
    n, B = cfg.num_models, cfg.num_components
    rec = record_bytes(cfg, dtype)
    if backend == "native":  # inputs and records; the internet lives in per-thread scratch of a few replicates
        return rec + n * B * item + max(cfg.num_human, 1) * _feature_size(cfg) * item + 16
    pool = cfg.pool_size * _feature_size(cfg) * item
    scratch = n * (-(-max(cfg.max_points, 1) // 32)) * 4
    # the scan keeps the pool twice (input and output buffers) in the worst case
    return 2 * pool + rec + 2 * n * B * item + scratch


def simulate(seed: int | jax.Array, config: GMMNetworkConfig, num_replicates: int, *, dtype=None,
             backend: str = "auto", first_replicate: int = 0, chunk_size: int | None = None,
             memory_budget: int | None = None, steps_per_call: int | None = None, mesh=None,
             progress: bool | None = None) -> GMMNetworkResult:
    """Simulate ``num_replicates`` independent networks; replicate r uses ``fold_in(key(seed), first_replicate+r)``.

    The replicate axis is sharded over all devices of ``mesh`` (default: ``jax.devices()``); results do not depend
    on the number of devices nor on ``chunk_size`` (replicates per call; default: as many as ``memory_budget``
    bytes hold, by :func:`bytes_per_replicate`; the budget defaults to half the device's memory). The native kernel
    runs all steps in one call per device (a progress bar follows the kernel's count of point updates, shown in
    replicates); the portable kernel runs steps in calls of ``steps_per_call`` (default: all at once without a
    progress bar, chunks of ~T/20 with one), its bar in steps. ``dtype``: float32 or float64 (default: float64 with
    x64 on).
    """
    cfg = config
    R = _checks.positive_int("num_replicates", num_replicates)
    first = _checks.nonnegative_int("first_replicate", first_replicate)
    if not isinstance(cfg, GMMNetworkConfig):
        raise ValueError(f"config must be a GMMNetworkConfig (use make_config), got {type(cfg).__name__}")
    dtype = jnp.dtype(dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) or --x64)")
    backend = resolve_backend(backend)
    mesh = mesh or replicate_mesh()
    _checks.fits_in_memory("num_replicates", R, record_bytes(cfg, dtype))  # the records all come back to the host
    per = bytes_per_replicate(cfg, dtype, backend)
    chunk = driver.chunk_replicates(R, mesh, chunk_size, memory_budget, lambda: per)
    _checks.fits_in_memory("chunk_size (replicates per call)", padded_count(chunk, mesh), per)
    show = _progress.enabled() if progress is None else progress
    T = cfg.num_steps
    steps = steps_per_call if steps_per_call is not None else (max(1, -(-T // 20)) if show else T)
    steps = min(_checks.positive_int("steps_per_call", steps), T)
    parts = [_simulate_chunk(seed, cfg, first + start, min(chunk, R - start), dtype, backend, steps, mesh, show)
             for start in range(0, R, chunk)]
    return GMMNetworkResult(*(None if parts[0][i] is None else np.concatenate([p[i] for p in parts])
                              for i in range(len(GMMNetworkResult._fields))))


def _simulate_chunk(seed, cfg: GMMNetworkConfig, first_replicate: int, R: int, dtype, backend: str,
                    steps_per_call: int, mesh, show: bool) -> GMMNetworkResult:
    """Replicates ``first_replicate .. first_replicate + R - 1`` in one sharded call (native) or in calls of
    ``steps_per_call`` steps (portable)."""
    total = padded_count(R, mesh)
    T = cfg.num_steps
    sched = step_schedule(cfg)
    keys = replicate_keys(seed, first_replicate, R)
    if total != R:  # padding replicates (dropped below) keep every device's shard the same size
        keys = jnp.concatenate([keys, replicate_keys(seed, first_replicate + R, total - R)])
    sharding = replicate_sharding(mesh)
    keys = jax.device_put(keys, sharding)
    if backend == "native":  # whole replicates run one after another in each thread: a bar over replicates
        per_replicate = int(np.sum(sched.num_draws)) * cfg.num_models  # point updates of one replicate
        run = _compiled_native(cfg, mesh, dtype)
        with _progress.bar(R, "gmm-network", unit="rep", disable=not show) as pbar, \
                _follow_native_progress(pbar if show else None, per_replicate * total, per_replicate):
            rec = jax.tree_util.tree_map(lambda x: np.asarray(x)[:R], run(keys))
        return GMMNetworkResult(rec.dnorm, rec.alive, rec.collapsed, rec.weights, rec.distances)
    init, run_chunk, final = _compiled(cfg, sharding, dtype)
    state = init(keys)
    pieces = []
    with _progress.bar(T, f"gmm-network ({R} replicates)", unit="step", disable=not show) as pbar:
        for start in range(0, T, steps_per_call):  # every replicate advances together: a bar over steps
            state, rec = run_chunk(state, _xs(sched, start, steps_per_call))
            length = min(steps_per_call, T - start)
            pieces.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:R, :length], rec))
            pbar.update(length)
    pieces.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:R, None], final(state.weights)))
    cat = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=1), *pieces)
    return GMMNetworkResult(cat.dnorm, cat.alive, cat.collapsed, cat.weights, cat.distances)


@contextlib.contextmanager
def _follow_native_progress(pbar, total_updates: int, per_replicate: int, interval: float = 0.25):
    """While the block runs, move ``pbar`` (in replicates) with the native kernel's count of point updates divided by
    one replicate's updates (polled from a thread; the count is per process, so simultaneous simulations in threads
    would share one bar's count)."""
    if pbar is None:
        yield
        return
    from collapse_jax import _native

    start, done = _native.gmm_progress(), threading.Event()
    total = pbar.total

    def poll():
        shown = 0
        while not done.wait(interval):
            now = min(_native.gmm_progress() - start, total_updates) // per_replicate
            if now > shown:
                pbar.update(min(now, total) - shown)
                shown = min(now, total)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        pbar.update(max(total - pbar.n, 0))


_COMPILED: dict = {}


def _compiled(cfg, sharding, dtype):
    """The portable kernel's jitted initialisation, chunk-of-steps runner and final record for one configuration
    (cached, so that repeated calls with the same configuration never recompile)."""
    key = ("jax", cfg, sharding, jnp.dtype(dtype).name)
    if key not in _COMPILED:
        step = make_step(cfg)

        def run(state, xs):
            return jax.vmap(lambda s: lax.scan(step, s, xs))(state)

        _COMPILED[key] = (jax.jit(jax.vmap(lambda k: init_state(k, cfg, dtype)), out_shardings=sharding),
                          jax.jit(run, donate_argnums=0),
                          jax.jit(jax.vmap(lambda w: _record(w, cfg))))
    return _COMPILED[key]


def _compiled_native(cfg, mesh, dtype):
    """The native kernel for replicate keys sharded over ``mesh``: each device runs its shard in one call."""
    key = ("native", cfg, mesh, jnp.dtype(dtype).name)
    if key not in _COMPILED:
        spec = replicate_sharding(mesh).spec
        _COMPILED[key] = jax.jit(jax.shard_map(lambda k: native_records(k, cfg, dtype), mesh=mesh, in_specs=spec,
                                               out_specs=spec))
    return _COMPILED[key]


def summarize(dnorm: np.ndarray, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> dict[str, np.ndarray]:
    """Mean, root-mean-square and quantiles of ``||D(t)||_F`` over replicates, per step."""
    dnorm = np.asarray(dnorm, dtype=np.float64)
    out = {"mean": dnorm.mean(0), "rms": np.sqrt((dnorm**2).mean(0))}
    for q in quantiles:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(dnorm, q, axis=0)
    return out
