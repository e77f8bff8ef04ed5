"""The multinomial recursion as one Pallas kernel for GPUs: whole replicates per lane, exact binomials in registers.

Under ``vmap`` the portable JAX sampler (:func:`collapse_jax.multinomial.sample_multinomial`) runs each rejection or
search loop until the slowest of all R x K lanes is done, and carries every lane's state through device memory at
each iteration. Here every lane is one replicate that runs all generations itself (the same law as the native CPU
kernel: conditional binomials across categories, ``X_k ~ Binomial(n - sum_{j<k} X_j, q_k / (1 - sum_{j<k} q_j))``),
so a loop waits only for the slowest lane of its block (``block`` lanes, e.g. 128), and the state stays on chip.

Binomials are exact: sequential-search inversion for means below 10 and BTRS (Hoermann 1993) above, as in
:func:`collapse_jax.multinomial.binomial`. Uniforms come from Threefry-2x32 (20 rounds, JAX's own generator),
keyed by the replicate's key and a per-lane counter that advances only with that lane's own draws, so a replicate's
result depends only on its key, never on the block size or on which replicates share its block.

Pallas lowers the kernel with Triton on NVIDIA GPUs; on a CPU it runs in interpret mode (slow, for tests).

Not the GPU default (``multinomial.resolve_backend``): on one H200 run its mean loss at n_t = 1000 was 8-14 % off the
exact recurrence when called jitted, while its binomials and the same replicates run eagerly matched their laws on
the next call (docs/recursions.md; ``benchmarks/gpu_diag.py`` is the check to run on the next GPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from collapse_jax.multinomial import _BTRS_MIN_MEAN, _STIRLING_TAIL, btrs_constants, btrs_proposal

REGIMES = ("replace", "accumulate")
_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, r: int):
    return (x << r) | (x >> (32 - r))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011; the block function of ``jax.random``) on uint32 arrays."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROT[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def uniform24(word):
    """A uniform on (0, 1) from the top 24 bits of a uint32 word (centred: never 0 or 1)."""
    return ((word >> 8).astype(jnp.float32) + 0.5) * np.float32(2.0 ** -24)


def _uniforms(k0, k1, ctr):
    """Two uniforms on (0, 1) (24-bit, centred: never 0 or 1) per lane from counter ``ctr``."""
    b0, b1 = threefry2x32(k0, k1, ctr, jnp.zeros_like(ctr))
    return uniform24(b0), uniform24(b1)


def _stirling_tail(k):
    series_k = k + 1
    sq = series_k * series_k
    out = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / sq) / sq) / series_k
    for i, v in enumerate(_STIRLING_TAIL):
        out = jnp.where(k == i, np.float32(v), out)
    return out


def any_lane(mask):
    """Whether any lane of the program's block is set (a loop condition: the block's lanes loop together)."""
    return jnp.max(mask.astype(jnp.int32)) > 0


def lower_for_cuda(fn, *args) -> str:
    """``fn`` jitted and lowered for CUDA on any machine, no GPU needed (its Pallas calls lowered to Triton IR): the
    StableHLO text. A Pallas kernel that uses an operation without a Triton lowering fails here."""
    from jax import export

    exported = export.export(jax.jit(fn), platforms=["cuda"],
                             disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])
    return exported(*args).mlir_module()


def _binomial(n, p, k0, k1, ctr):
    """Exact Binomial(n, p) per lane (n whole, float32; p in [0, 1]); returns (draws, advanced counters)."""
    flip = p > 0.5
    pp = jnp.where(flip, 1 - p, p)
    live = (n > 0) & (pp > 0)
    big = live & (n * pp >= _BTRS_MIN_MEAN)
    small = live & ~big
    # inversion (one uniform per lane, drawn by every lane so counters stay per-lane deterministic)
    u, _ = _uniforms(k0, k1, ctr)
    ctr = ctr + jnp.uint32(1)
    ni = jnp.where(small, n, 0.0)
    pi = jnp.where(small, pp, 0.25)
    ratio = pi / (1 - pi)
    f0 = jnp.exp(ni * jnp.log1p(-pi))

    def inv_go(c):
        k, f, cdf = c
        return small & (u > cdf) & (k < ni) & (f > 0)

    def inv_body(c):
        k, f, cdf = c
        go = inv_go(c)
        k1_ = k + 1
        f1 = f * (ni - k) / k1_ * ratio
        return jnp.where(go, k1_, k), jnp.where(go, f1, f), jnp.where(go, cdf + f1, cdf)

    x_inv, _, _ = lax.while_loop(lambda c: any_lane(inv_go(c)), inv_body, (jnp.zeros_like(pi), f0, f0))

    # BTRS (two uniforms per proposal; a lane's counter advances only while it proposes)
    nb = jnp.where(big, n, 100.0)
    consts = btrs_constants(nb, jnp.where(big, pp, 0.5), _stirling_tail)

    def btrs_body(s):
        out, done, ctr_ = s
        u1, v = _uniforms(k0, k1, ctr_)
        ctr_ = jnp.where(done, ctr_, ctr_ + jnp.uint32(1))
        kk, ok = btrs_proposal(nb, consts, u1 - 0.5, v, _stirling_tail)
        accept = ok & ~done
        return jnp.where(accept, kk, out), done | accept, ctr_

    x_big, _, ctr = lax.while_loop(lambda s: any_lane(~s[1]), btrs_body, (jnp.zeros_like(nb), ~big, ctr))
    x = jnp.where(big, x_big, jnp.where(small, x_inv, 0.0))
    return jnp.where(flip, n - x, x), ctr


def _kernel(k0_ref, k1_ref, p_ref, alpha_ref, n_ref, loss_ref, phat_ref, counts_ref, tail_ref, *,
            num_categories: int, num_generations: int, accumulate: bool):
    k0, k1 = k0_ref[...], k1_ref[...]
    zeros = jnp.zeros_like(k0, dtype=jnp.float32)
    phat_ref[...] = jnp.zeros(phat_ref.shape, jnp.float32)
    counts_ref[...] = jnp.zeros(counts_ref.shape, jnp.float32)

    def generation(t, carry):
        ctr, total = carry
        a, nt = alpha_ref[t], n_ref[t]  # alpha_0 = 1: generation 0 draws from p itself

        def tail(j, acc):  # tail_ref[k] = q_k + ... + q_{K-1}, summed from the end: the mass a category's binomial
            # divides by (a running 1 - q_0 - q_1 - ... cancelled: a tail of mass m after a prefix near 1 was off by
            # up to 6e-8 / m relative, p = (1 - 2e-6, 1e-6, 1e-6) split its tail 0.4934 : 0.5066; an audit)
            k = num_categories - 1 - j
            acc = acc + (a * p_ref[k] + (1 - a) * phat_ref[k, :])
            tail_ref[k, :] = acc
            return acc

        lax.fori_loop(0, num_categories, tail, zeros)
        total = total + nt if accumulate else nt

        def category(k, c):
            rem_n, loss, ctr = c
            pk = p_ref[k]
            qk = a * pk + (1 - a) * phat_ref[k, :]
            last = k == num_categories - 1
            prob = jnp.clip(qk / jnp.maximum(tail_ref[k, :], 1e-30), 0.0, 1.0)
            x, ctr = _binomial(jnp.where(last, 0.0, rem_n), prob, k0, k1, ctr)
            x = jnp.where(last, rem_n, x)
            if accumulate:
                counts = counts_ref[k, :] + x
                counts_ref[k, :] = counts
                new = counts / total
            else:
                new = x / nt
            phat_ref[k, :] = new
            return rem_n - x, loss + (new - pk) ** 2, ctr

        _, loss, ctr = lax.fori_loop(0, num_categories, category, (zeros + nt, zeros, ctr))
        loss_ref[t, :] = loss
        return ctr, total

    lax.fori_loop(0, num_generations, generation, (jnp.zeros_like(k0), jnp.float32(0.0)))


def _pow2(x: int) -> int:
    return 1 << max(0, int(x - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("regime", "block", "num_warps", "interpret", "fits"))
def batched_risk_pallas(keys: jax.Array, p: jax.Array, alpha: jax.Array, n: jax.Array, *, regime: str = "replace",
                        block: int = 128, num_warps: int = 4, interpret: bool = False, fits: bool = False):
    """Losses ``||p_hat_t - p||^2`` (R, T + 1) for replicate keys (R,) and schedules ``alpha``, ``n`` (T + 1,)
    (float32; index 0 is the initial fit on ``n_0`` draws from ``p``; ``alpha[0]`` is ignored).

    ``regime``: ``replace`` or ``accumulate``. ``block``: lanes (replicates) per Pallas program, a power of two.
    ``num_warps``: Triton warps per program. ``interpret``: run the kernel in Pallas's interpreter (any backend; for
    tests on a CPU). ``fits``: also return the last generation's fits ``p_hat_T`` (R, K), as ``(loss, fits)``.
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES} for the Pallas kernel, got {regime!r}")
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, got {block}")
    R, K, T1 = keys.shape[0], p.shape[0], alpha.shape[0]
    if n.shape != (T1,):
        raise ValueError(f"alpha and n must have the same shape (T + 1,), got {alpha.shape} and {n.shape}")
    data = jax.random.key_data(keys).astype(jnp.uint32).reshape(R, -1)
    pad_r = -R % block
    k0 = jnp.pad(data[:, 0], (0, pad_r))
    k1 = jnp.pad(data[:, 1], (0, pad_r))
    Kp, Tp = _pow2(K), _pow2(T1)
    p32 = jnp.pad(p.astype(jnp.float32), (0, Kp - K))
    alpha32 = jnp.pad(alpha.astype(jnp.float32).at[0].set(1.0), (0, Tp - T1))
    n32 = jnp.pad(n.astype(jnp.float32), (0, Tp - T1), constant_values=1.0)
    Rp = R + pad_r
    lanes = pl.BlockSpec((block,), lambda i: (i,))
    whole_k = pl.BlockSpec((Kp,), lambda i: (0,))
    whole_t = pl.BlockSpec((Tp,), lambda i: (0,))
    kernel = functools.partial(_kernel, num_categories=K, num_generations=T1, accumulate=regime == "accumulate")
    per_category = jax.ShapeDtypeStruct((Kp, Rp), jnp.float32)
    loss, phat, _, _ = pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((Tp, Rp), jnp.float32), per_category, per_category, per_category),
        grid=(Rp // block,),
        in_specs=[lanes, lanes, whole_k, whole_t, whole_t],
        out_specs=(pl.BlockSpec((Tp, block), lambda i: (0, i)),
                   *(pl.BlockSpec((Kp, block), lambda i: (0, i)) for _ in range(3))),
        interpret=interpret,
        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
    )(k0, k1, p32, alpha32, n32)
    return (loss[:T1, :R].T, phat[:K, :R].T) if fits else loss[:T1, :R].T
