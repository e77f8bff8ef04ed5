"""The GMM network as one Pallas kernel for GPUs: whole replicates per lane, the weights in registers.

Under ``vmap`` the portable kernel (:data:`collapse_jax.gmm_network.kernel`) runs each step's draws as a while loop
over all R x n lanes at once: every iteration carries every lane's weights, counts and bitmap word through device
memory, and the loop runs until the slowest of all lanes is done (on an H200, 10^6 Figure-4 replicates took 89.5 s,
docs/benchmarks.md). Here every lane is one replicate that runs all steps itself: its models' weights stay in
registers for a whole step's draws, and a loop waits only for the slowest lane of its block (``block`` lanes).

Per step t, as Algorithm 3 (seed 000) and the portable kernel: every model posts ``L`` points drawn from its GMM
``Pi_i(t)`` (component by inverse cdf, ``x = mu_b + C z`` with Box-Muller normals), stored as likelihood features
at ``|A(t)|..`` of the replicate's internet; then each model in turn draws ``k_t`` distinct points of ``A(t)``
uniformly (Lemire's exact bounded integers; a repeat, found in a per-replicate bitmap cleared for each model, is
drawn again), updating its weights point by point with Algorithm 2 in the order drawn. The internet (its features)
and the bitmap live in device memory, one column per lane. Uniforms come from Threefry-2x32 (JAX's generator)
keyed per replicate, with a counter that advances only with that lane's own draws, so a replicate's records depend
only on its key, never on the block size or on which replicates share its block. The kernel computes in float32.

Same law as the portable and native kernels, different draws (its own generator). Pallas lowers the kernel with
Triton on NVIDIA GPUs; on a CPU it runs in interpret mode (slow, for tests). The lowering to Triton is checked on
any machine by :func:`lower_for_gpu`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from collapse_jax import _checks
from collapse_jax.gmm_network import Params, Record, StaticConfig, _clamp, _feature_size, _native_inputs, \
    bounded_uniform, cast_params
from collapse_jax.multinomial_pallas import any_lane, lower_for_cuda, threefry2x32, uniform24

_TWO_PI = np.float32(2.0 * np.pi)

DEFAULT_BLOCK = 128  # replicates per Pallas program (one per thread with 4 warps)
INTERPRET_BLOCK = 512  # the same in Pallas's interpreter (a CPU): its programs run one after another


def _ownership(p, feat):
    """Algorithm 2's ownership ``o_b = p_b N(u; mu_b) / sum_l p_l N(u; mu_l)`` from a point's stored features:
    B = 2: one feature, the likelihood ratio ``N_1 / N_0``; B > 2: log-likelihoods relative to their maximum."""
    if len(p) == 2:  # (a dropped p_0 = 0 with p_1 rho underflowing to 0 gave 0 / 0: NaN weights, as the portable
        # kernel did until 2026-12-04; this kernel kept it until an audit, 2026-12-07)
        den = p[0] + p[1] * feat[0]
        o0 = jnp.where(den > 0, p[0] / jnp.where(den > 0, den, 1.0), 0.0)
        return [o0, 1 - o0]
    z = [jnp.where(pb > 0, jnp.log(jnp.where(pb > 0, pb, 1.0)) + f, -jnp.inf) for pb, f in zip(p, feat)]
    top = functools.reduce(jnp.maximum, z)
    e = [jnp.exp(zb - top) for zb in z]
    total = functools.reduce(jnp.add, e)
    return [eb / total for eb in e]


def _zivkovic(p, o, alpha, c, eps):
    """Algorithm 2, lines 4-13 (as :func:`collapse_jax.gmm_network.zivkovic_step`), on a list of B lane vectors: the
    portable functions work on (..., B) arrays, which Triton takes only for B a power of two.

    Dropping component b (``p_b <= 0``, in turn) divides every other weight by ``1 + eps - p_b``, ``p_b`` its value at
    that turn. A division by that (>= 1 + eps) never changes a sign, so which components drop is known from the
    start, and every survivor ends divided by the product of the dropped components' divisors: one running product,
    O(B) operations instead of the sequential form's O(B^2) (Figure 6, B = 11: a smaller kernel; the same weights up
    to rounding)."""
    B = len(p)
    scale = alpha / (1 - B * c)
    p = [(1 - alpha) * pb + scale * (ob - c) for pb, ob in zip(p, o)]
    div = jnp.ones_like(p[0])  # the product of the divisors so far; p_b / div is p_b's value at its turn
    for pb in p:
        div = jnp.where(pb <= 0, div * (1 + eps - pb / div), div)
    return [jnp.where(pb <= 0, jnp.zeros_like(pb), pb / div) for pb in p]


def _record(p, t, dnorm_ref, alive_ref, collapsed_ref, pi_ref, dist_ref):
    """Record step t of the weights ``p`` (model, component) of lane vectors: ``||D||_F``, live components per
    model, whether every model is one-hot on one component, and (if their refs exist) ``Pi`` and ``D``."""
    n, B = len(p), len(p[0])
    total = jnp.zeros_like(p[0][0])
    for i in range(n):
        for j in range(i + 1, n):
            dij2 = functools.reduce(jnp.add, [(p[i][b] - p[j][b]) ** 2 for b in range(B)])
            total = total + 2 * dij2
            if dist_ref is not None:
                dist_ref[t, i, j, :] = jnp.sqrt(dij2)
                dist_ref[t, j, i, :] = jnp.sqrt(dij2)
        if dist_ref is not None:
            dist_ref[t, i, i, :] = jnp.zeros_like(total)
    dnorm_ref[t, :] = jnp.sqrt(total)
    collapsed = None
    top0 = None
    for i in range(n):
        alive = functools.reduce(jnp.add, [(p[i][b] > 0).astype(jnp.int32) for b in range(B)])
        alive_ref[t, i, :] = alive
        top = jnp.zeros_like(alive)  # the first largest weight's index (argmax)
        best = p[i][0]
        for b in range(1, B):
            better = p[i][b] > best
            top = jnp.where(better, b, top)
            best = jnp.where(better, p[i][b], best)
        one_hot = alive == 1
        if i == 0:
            collapsed, top0 = one_hot, top
        else:
            collapsed = collapsed & one_hot & (top == top0)
        if pi_ref is not None:
            for b in range(B):
                pi_ref[t, i, b, :] = p[i][b]
    collapsed_ref[t, :] = collapsed.astype(jnp.int32)


def _kernel(k0_ref, k1_ref, w0_ref, human_ref, points_ref, draws_ref, alpha_ref, c_ref, geom_ref,
            dnorm_ref, alive_ref, collapsed_ref, *rest, config: StaticConfig, clamp: float):
    n, B, d, L, m0, T = (config.num_models, config.num_components, config.dim, config.points_per_step,
                         config.num_human, config.num_steps)
    S = 1 if B == 2 else B
    pi_ref = rest[0] if config.record_pi else None
    dist_ref = rest[int(config.record_pi)] if config.record_d else None
    pool_ref, bitmap_ref, weights_ref = rest[int(config.record_pi) + int(config.record_d):]
    k0, k1 = k0_ref[...], k1_ref[...]
    block = k0.shape[0]
    lanes = jnp.arange(block, dtype=jnp.int32)
    zero = jnp.zeros((block,), jnp.float32)
    zero_u = jnp.zeros((block,), jnp.uint32)

    # the geometry: shift[b, c] = C^{-1} (mu_b - mu_c) (B, B, d), then eps. A point of component b is
    # x = mu_b + C z, so C^{-1} (x - mu_c) = shift[b, c] + z: its features need no x.
    shift = [[[geom_ref[(b * B + c) * d + i] for i in range(d)] for c in range(B)] for b in range(B)]
    eps = geom_ref[B * B * d]

    def random_words(ctr, active=None):
        w0, w1 = threefry2x32(k0, k1, ctr, zero_u)
        return w0, w1, ctr + (jnp.uint32(1) if active is None else active.astype(jnp.uint32))

    def load_weights(m):
        return [weights_ref[m, b, :] for b in range(B)]

    def all_weights():
        return [load_weights(m) for m in range(n)]

    for m in range(n):
        for b in range(B):
            weights_ref[m, b, :] = w0_ref[m, b, :]

    def copy_human(row, carry):
        pool_ref[row, :] = human_ref[row, :]
        return carry

    lax.fori_loop(0, m0 * S, copy_human, 0)
    _record(all_weights(), 0, dnorm_ref, alive_ref, collapsed_ref, pi_ref, dist_ref)

    def post(m, state):
        """Model m's L posts of step t, stored at rows ``|A(t)| + m L ..`` of the internet."""
        ctr, first = state
        p = load_weights(m)
        total = functools.reduce(jnp.add, p)
        # component by inverse cdf; thresholds from the last positive weight on are never passed
        last = jnp.zeros((block,), jnp.int32)
        for b in range(1, B):
            last = jnp.where(p[b] > 0, b, last)
        cum, thresholds = zero, []
        for b in range(B - 1):
            cum = cum + p[b] / total
            thresholds.append(jnp.where(b >= last, np.float32(2.0), cum))

        def one(l, ctr):
            w0, _, ctr = random_words(ctr)
            u = uniform24(w0)
            comp = functools.reduce(jnp.add, [(u >= th).astype(jnp.int32) for th in thresholds], jnp.zeros_like(last))
            z = []
            for _ in range((d + 1) // 2):
                a, b_, ctr = random_words(ctr)
                radius = jnp.sqrt(-2.0 * jnp.log(uniform24(a)))
                angle = _TWO_PI * uniform24(b_)
                z += [radius * jnp.cos(angle), radius * jnp.sin(angle)]
            z = z[:d]
            # log N(x; mu_c) = -||C^{-1} (x - mu_c)||^2 / 2 + const, with C^{-1} (x - mu_c) = shift[comp, c] + z
            ll = []
            for c in range(B):
                acc = zero
                for i in range(d):
                    s = zero
                    for b in range(B):
                        s = jnp.where(comp == b, shift[b][c][i], s)
                    acc = acc + (s + z[i]) ** 2
                ll.append(-0.5 * acc)
            if B == 2:
                feats = [jnp.exp(jnp.clip(ll[1] - ll[0], -clamp, clamp))]
            else:
                top = functools.reduce(jnp.maximum, ll)
                feats = [x - top for x in ll]
            row = (first + m * L + l) * S
            for s_, f in enumerate(feats):
                pool_ref[row + s_, :] = f
            return ctr

        return lax.fori_loop(0, L, one, ctr), first

    def update(m, state):
        """Model m draws ``k_t`` distinct points of ``A(t)`` and updates its weights point by point."""
        ctr, size, k, alpha, c = state

        def clear(w, carry):
            bitmap_ref[w, :] = zero_u
            return carry

        lax.fori_loop(0, (size + 31) // 32, clear, 0)
        size_u = jnp.maximum(size, 1).astype(jnp.uint32) + zero_u

        def go(s):
            return any_lane(s[1] < k)

        def draw(s):
            p, count, ctr_ = s
            active = count < k
            w0, _, ctr_ = random_words(ctr_, active)
            r, fair = bounded_uniform(w0, size_u)
            word_idx = (r >> 5).astype(jnp.int32)
            # lanes already done read nothing (masked loads); the two loads of a live lane are independent
            word = pltriton.load(bitmap_ref.at[word_idx, lanes], mask=active, other=0)
            bit = jnp.uint32(1) << (r & 31)
            accept = active & fair & ((word & bit) == 0)
            pltriton.store(bitmap_ref.at[word_idx, lanes], word | bit, mask=accept)
            row = r.astype(jnp.int32) * S
            feat = [pltriton.load(pool_ref.at[row + s_, lanes], mask=active, other=1.0) for s_ in range(S)]
            new = _zivkovic(p, _ownership(p, feat), alpha, c, eps)
            p = [jnp.where(accept, q_new, q) for q_new, q in zip(new, p)]
            return p, count + accept.astype(jnp.int32), ctr_

        p, _, ctr = lax.while_loop(go, draw, (load_weights(m), jnp.zeros((block,), jnp.int32), ctr))
        for b in range(B):
            weights_ref[m, b, :] = p[b]
        return ctr, size, k, alpha, c

    def step(t, ctr):
        size, k, alpha, c = points_ref[t], draws_ref[t], alpha_ref[t], c_ref[t]
        ctr, _ = lax.fori_loop(0, n, post, (ctr, size))  # posts use Pi(t); draws read rows below |A(t)| only
        ctr = lax.fori_loop(0, n, update, (ctr, size, k, alpha, c))[0]
        _record(all_weights(), t + 1, dnorm_ref, alive_ref, collapsed_ref, pi_ref, dist_ref)
        return ctr

    lax.fori_loop(0, T, step, zero_u)


@functools.partial(jax.jit, static_argnames=("config", "block", "num_warps", "interpret"))
def _records(keys, cells: Params, *, config: StaticConfig, block: int, num_warps: int, interpret: bool):
    """The kernel for replicate keys (R,), R a multiple of ``block``, and G parameter cells (``cells``: Params with a
    leading cell axis), one program per (cell, block of lanes): every cell runs the same replicates. Each cell's
    start comes from :func:`collapse_jax.gmm_network._native_inputs` (``Pi(0)``, the human features, the seed words,
    which depend on the key only), compiled with the kernel; records (G, R, T + 1, ...) as
    :class:`collapse_jax.gmm_network.Record`."""
    weights, human, seeds = jax.vmap(lambda p: _native_inputs(keys, p, config))(cells)
    n, B, T = config.num_models, config.num_components, config.num_steps
    S, T1 = _feature_size(config), T + 1
    G, R = weights.shape[:2]
    k0, k1 = seeds[0, :, 0].astype(jnp.uint32), seeds[0, :, 1].astype(jnp.uint32)
    w0 = jnp.moveaxis(weights.astype(jnp.float32), 1, -1)  # (G, n, B, R)
    rows = max(config.num_human, 1) * S
    human_cols = jnp.moveaxis(human.astype(jnp.float32).reshape(G, R, -1)[:, :, :rows], 1, -1)  # (G, m0 S, R)
    mu, whitener = cells.mu, cells.whitener
    shift = (mu[:, :, None, :] - mu[:, None, :, :]) @ jnp.swapaxes(whitener, -1, -2)[:, None]  # C^{-1} (mu_b - mu_c)
    geom = jnp.concatenate([shift.astype(jnp.float32).reshape(G, -1), cells.eps.astype(jnp.float32).reshape(G, 1)],
                           axis=1)
    points = jnp.asarray(config.num_human + config.num_models * config.points_per_step * np.arange(T), jnp.int32)
    draws = cells.num_draws.astype(jnp.int32)
    alpha, c = cells.alpha.astype(jnp.float32), cells.c.astype(jnp.float32)
    words = max(1, -(-config.max_points // 32))
    pool_rows = max(config.pool_size * S, 1)
    cut = pl.squeezed

    def lanes(*shape):  # a cell's array with a lane axis last: one block of lanes of one cell per program
        return pl.BlockSpec((cut,) + shape + (block,), lambda g, i: (g,) + (0,) * len(shape) + (i,))

    def per_cell(x):  # a cell's whole row
        return pl.BlockSpec((cut,) + x.shape[1:], lambda g, i: (g,) + (0,) * (x.ndim - 1))

    key_lanes = pl.BlockSpec((block,), lambda g, i: (i,))
    whole = pl.BlockSpec(points.shape, lambda g, i: (0,))
    f32, i32 = jnp.float32, jnp.int32
    out_shape = [jax.ShapeDtypeStruct((G, T1, R), f32), jax.ShapeDtypeStruct((G, T1, n, R), i32),
                 jax.ShapeDtypeStruct((G, T1, R), i32)]
    out_specs = [lanes(T1), lanes(T1, n), lanes(T1)]
    if config.record_pi:
        out_shape.append(jax.ShapeDtypeStruct((G, T1, n, B, R), f32))
        out_specs.append(lanes(T1, n, B))
    if config.record_d:
        out_shape.append(jax.ShapeDtypeStruct((G, T1, n, n, R), f32))
        out_specs.append(lanes(T1, n, n))
    # scratch in device memory: the internet's features, the draws' bitmap, the weights between phases
    out_shape += [jax.ShapeDtypeStruct((G, pool_rows, R), f32), jax.ShapeDtypeStruct((G, words, R), jnp.uint32),
                  jax.ShapeDtypeStruct((G, n, B, R), f32)]
    out_specs += [lanes(pool_rows), lanes(words), lanes(n, B)]
    kernel = functools.partial(_kernel, config=config, clamp=float(_clamp(jnp.float32)))
    outs = pl.pallas_call(
        kernel, out_shape=tuple(out_shape), grid=(G, R // block),
        in_specs=[key_lanes, key_lanes, lanes(n, B), lanes(rows), whole, per_cell(draws), per_cell(alpha),
                  per_cell(c), per_cell(geom)],
        out_specs=tuple(out_specs), interpret=interpret,
        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
    )(k0, k1, w0, human_cols, points, draws, alpha, c, geom)
    last = lambda x: jnp.moveaxis(x, -1, 1)  # noqa: E731  (cell, replicate, ...)
    dnorm, alive, collapsed = (last(x) for x in outs[:3])
    extra = iter(outs[3:])
    pi = last(next(extra)) if config.record_pi else None
    dist = last(next(extra)) if config.record_d else None
    return Record(dnorm, alive.astype(jnp.int8), collapsed.astype(bool), pi, dist)


# The kernel unrolls its loops over models and components (Triton keeps each lane's weights in registers only as
# separate vectors): code grows like n^2 B (the records), B^2 (pruning) and B^2 d (the posts' features).
MAX_MODELS = 64
MAX_COMPONENTS = 32
MAX_FEATURE_TERMS = 8192  # B^2 d


def counter_words(config: StaticConfig, num_draws) -> float:
    """Expected Threefry counter words one replicate uses (its lane's uint32 counter): per step, the posts'
    ``n L (1 + ceil(d / 2))`` and the updates' ``n s (H(s) - H(s - k))`` (draws of ``k = k_t`` distinct points of
    ``s = |A(t)|`` with repeats redrawn; Lemire's rare rejections left out)."""
    from scipy.special import digamma  # (H(m) = digamma(m + 1) + gamma; imported here, as scipy.stats elsewhere)

    n, L, d = config.num_models, config.points_per_step, config.dim
    size = config.num_human + n * L * np.arange(config.num_steps, dtype=np.float64)
    k = np.minimum(np.asarray(num_draws, np.float64), size)
    draws = np.where(k > 0, size * (digamma(size + 1) - digamma(size - k + 1)), 0.0)
    return float(config.num_steps * n * L * (1 + (d + 1) // 2) + n * np.sum(draws))


MAX_COUNTER_WORDS = 0.9 * 2.0**32  # a lane's counter is uint32; the draws' count varies by far less than 10 %


def check_sizes(config: StaticConfig, replicates: int, block: int, cells=None) -> None:
    """The kernel's limits, checked before any compute: ``block`` a power of two; at most :data:`MAX_MODELS`
    models, :data:`MAX_COMPONENTS` components and ``B^2 d <=`` :data:`MAX_FEATURE_TERMS` (its unrolled code); at
    most 2^31 internet rows per lane (a draw's row index is int32); with ``cells`` (Params or a list), at most
    :data:`MAX_COUNTER_WORDS` random words expected per replicate (:func:`counter_words`: a lane's counter is
    uint32, and a counter that wrapped would repeat its draws). Larger networks: ``backend="jax"``."""
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, got {block}")
    _checks.positive_int("replicates", replicates)
    n, B, d = config.num_models, config.num_components, config.dim
    for name, value, limit in (("num_models", n, MAX_MODELS), ("num_components", B, MAX_COMPONENTS),
                               ("num_components^2 x dim", B * B * d, MAX_FEATURE_TERMS)):
        if value > limit:
            raise ValueError(f"backend='pallas' unrolls its loops over models and components: {name} must be <= "
                             f"{limit}, got {value}; use backend='jax' for larger networks")
    if config.pool_size * _feature_size(config) >= 2 ** 31:
        raise ValueError(f"the Pallas GMM kernel indexes a replicate's internet with int32 rows; this one has "
                         f"{config.pool_size} points x {_feature_size(config)} features (reduce num_steps, "
                         "num_models or points_per_step)")
    if cells is None:
        return
    for cell in [cells] if isinstance(cells, Params) else cells:
        words = counter_words(config, cell.num_draws)
        if words > MAX_COUNTER_WORDS:  # (unchecked before 2026-12-07; about 1.4e10 at n = 64, L = 10, T = 1000)
            raise ValueError(f"the Pallas GMM kernel counts each replicate's random words in 32 bits; this network "
                             f"needs about {words:.3g} per replicate (at most {MAX_COUNTER_WORDS:.3g}): reduce "
                             "num_steps, num_models, points_per_step or beta, or use backend='native' or 'jax'")


def pallas_records(keys: jax.Array, config: StaticConfig, params: Params | list[Params], *,
                   block: int | None = None, num_warps: int = 4, interpret: bool | None = None) -> Record:
    """Records (R, T + 1, ...) of the replicates with keys (R,) (float32, as
    :func:`collapse_jax.gmm_network.native_records`), or (G, R, T + 1, ...) for a list of G cells, all in one call
    (every cell runs the same replicates): ``Pi(0)`` and the human points from each key as the other kernels draw
    them (:func:`collapse_jax.gmm_network.initial`), the steps in the Pallas kernel. ``params``: validated NumPy
    :class:`~collapse_jax.gmm_network.Params` of ``config`` (or a list of them). ``block``: replicates per Pallas
    program (a power of two; default :data:`DEFAULT_BLOCK`, or :data:`INTERPRET_BLOCK` interpreted: the interpreter
    runs programs one after another, so fewer, wider ones are faster there); ``interpret``: run in Pallas's
    interpreter (default: on a CPU backend). Neither changes a replicate's records, except in the last float32 bits
    where human points meet a non-identity Sigma: their features come from one batched matmul over the padded keys,
    whose rounding depends on the batch's shape (up to 1.8e-7 in the weights between blocks of 16 and 512; an
    audit, 2026-12-04)."""
    if interpret is None:
        interpret = jax.default_backend() == "cpu"
    if block is None:
        block = INTERPRET_BLOCK if interpret else DEFAULT_BLOCK
    check_sizes(config, keys.shape[0], block, params)
    grid = not isinstance(params, Params)  # (Params is itself a tuple)
    cells = list(params) if grid else [params]
    R = keys.shape[0]
    if R % block:  # whole programs: every call of a size class compiles once (the padding lanes are dropped)
        keys = jnp.concatenate([keys, jax.random.split(jax.random.key(0), block - R % block)])
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *(cast_params(p, jnp.float32) for p in cells))
    records = _records(keys, stacked, config=config, block=block, num_warps=num_warps, interpret=interpret)
    return jax.tree_util.tree_map(lambda x: x[:, :R] if grid else x[0, :R], records)


def bytes_per_replicate(config: StaticConfig) -> int:
    """Device memory of one replicate in the kernel: its internet, bitmap, weights and records (float32)."""
    n, B, T1 = config.num_models, config.num_components, config.num_steps + 1
    rec = T1 * (4 + 4 * n + 4) + (T1 * n * B * 4 if config.record_pi else 0) + (T1 * n * n * 4 if config.record_d
                                                                                 else 0)
    return 4 * config.pool_size * _feature_size(config) + 4 * math.ceil(max(config.max_points, 1) / 32) \
        + 8 * n * B + rec


def lower_for_gpu(config: StaticConfig, params: Params, replicates: int = 256, *, block: int = DEFAULT_BLOCK) -> str:
    """The kernel lowered for CUDA (Pallas -> Triton IR, on any machine: no GPU needed): the StableHLO text of
    the call, for checking that every operation the kernel uses has a Triton lowering."""
    keys = jax.random.split(jax.random.key(0), replicates + (-replicates % block))
    cells = jax.tree_util.tree_map(lambda x: x[None], cast_params(params, jnp.float32))  # one cell
    return lower_for_cuda(lambda keys, cells: _records(keys, cells, config=config, block=block, num_warps=4,
                                                       interpret=False), keys, cells)
