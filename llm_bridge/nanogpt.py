"""A GPT-2 style nanoGPT in Flax NNX: the model, batched generation with a key/value cache, and perplexity.

Architecture (fixed; a PyTorch twin follows it line by line for the speed benchmark):

* token embedding ``(vocab_size, dim)`` + learned position embedding ``(context_length, dim)``, dropout;
* ``num_layers`` pre-LayerNorm blocks ``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``; final LayerNorm;
  ``logits = x @ token_embedding^T`` (tied, no bias);
* Attn: one fused ``qkv`` Linear(dim, 3 dim) split into q, k, v (in that order), ``num_heads`` heads of
  ``head_dim = dim / num_heads``, causal ``softmax(q k^T / sqrt(head_dim))``, attention dropout, output
  Linear(dim, dim), residual dropout;
* MLP: Linear(dim, 4 dim) -> GELU (tanh approximation) -> Linear(4 dim, dim) -> dropout;
* LayerNorm eps 1e-5 with scale and bias; init normal(0.02) for Linear kernels and embeddings, zero biases, the two
  residual output projections (attention out, MLP out) normal(0.02 / sqrt(2 num_layers)).

Parameters are float32; ``dtype="bfloat16"`` runs the matmuls in bfloat16 (LayerNorm, softmax and the loss stay in
float32), an option for accelerators.

Every compiled function here is pure: it takes the model's ``graphdef`` (static) and parameter ``State`` and merges
them inside, so ``jax.jit`` sees only arrays. :class:`NanoGPT` (model + tokenizer) implements
:class:`llm_bridge.generators.Generator`; training lives in :mod:`llm_bridge.nanogpt_train`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from dataclasses import asdict
from functools import lru_cache, partial, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from collapse_jax import _checks
from collapse_jax.progress import bar
from collapse_jax.replicates import root_key
from llm_bridge.bpe import TextTokenizer
from llm_bridge.encoders import local_path
from llm_bridge.generators import (PerplexityResult, Sampling, check_texts, check_top_k, cut_at_stop,
                                   fit_prompts)
from llm_bridge.nanogpt_config import DTYPES, PRESETS, GPTConfig, preset_config  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from llm_bridge.encoders import Encoder


def without_x64(fn):
    """Run ``fn`` with ``jax_enable_x64`` off: the model, its training and its sampling give the same numbers
    whatever the global flag (the core's ``--x64`` and the test suite turn it on)."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(False):
            return fn(*args, **kwargs)
    return wrapper


LN_EPS = 1e-5
INIT_STD = 0.02


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------

KVCache = tuple  # one (k, v) pair per layer, each (batch, cache_len, num_heads, head_dim)


def _linear(cfg: GPTConfig, d_in: int, d_out: int, std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=cfg.bias, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                      kernel_init=nnx.initializers.normal(std), bias_init=nnx.initializers.zeros_init(), rngs=rngs)


def _layer_norm(cfg: GPTConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(cfg.dim, epsilon=LN_EPS, use_bias=cfg.bias, use_scale=True, param_dtype=jnp.float32,
                         rngs=rngs)


def rows(linear: nnx.Linear, x):
    """``linear`` on x (batch, T, d_in) as one (batch T, d_in) matrix: -> (batch, T, d_out). The same values as
    ``linear(x)``; XLA:CPU computes the weight gradient of a 2-d dot without first copying the activations into
    transposed order, which made the MLP's forward + backward 1.7x slower with 3-d inputs (seed003 batch, 361 ms
    against 214 ms), and :func:`matmul` fixes the gradient's layout."""
    dtype = linear.dtype or x.dtype
    y = matmul(x.reshape(-1, x.shape[-1]).astype(dtype), linear.kernel[...].astype(dtype))
    if linear.bias is not None:
        y = y + linear.bias[...].astype(dtype)
    return y.reshape(*x.shape[:-1], -1)


def _narrow_first(a, b):
    """``a^T b`` for a (n, p), b (n, q) -> (p, q), computed in whichever orientation puts the narrower side first.

    XLA:CPU's dot kernels run a (wide, narrow) product with a contraction over the rows about 1.7x slower than the
    (narrow, wide) one (seed003 shapes, one core: (1024, 256) 35 ms against 20 ms; the tied embedding's (4096, 256)
    gradient 178 ms against 100 ms). The optimisation barrier keeps XLA from folding the transpose back into the dot.
    """
    if a.shape[1] <= b.shape[1]:
        return jnp.einsum("np,nq->pq", a, b, preferred_element_type=jnp.float32)
    return jax.lax.optimization_barrier(jnp.einsum("nq,np->qp", b, a, preferred_element_type=jnp.float32)).T


@jax.custom_vjp
def matmul(x, w):
    """``x @ w``: x (n, d_in), w (d_in, d_out) -> (n, d_out); the gradient of ``w`` via :func:`_narrow_first`."""
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (x, w)


def _matmul_bwd(res, g):
    x, w = res
    return (g @ w.T).astype(x.dtype), _narrow_first(x, g.astype(x.dtype)).astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


# ---- the attention's batched products through OpenBLAS (CPU, float32) ------------------------------------------
# XLA:CPU runs a batched dot (one 128 x 128 x 64 product per batch row and head at seed003) on one thread, so the
# second core idles through the attention's 24 products per train step (docs/nanogpt.md, "Where the gap is").
# sgemm (collapse_jax/_native/gemm.cc) shares the matrices of a batch out over XLA's thread pool, one single-
# threaded OpenBLAS sgemm each (the OpenBLAS NumPy loaded).

ATTENTION_GEMMS = ("fused", "openblas", "xla")
_ATTENTION_GEMM = contextvars.ContextVar("attention_gemm", default=None)


def attention_gemm() -> str:
    """How functions traced now compute the attention on the CPU in float32: "fused" (the default where the kernel is
    available: :func:`causal_attention` for plain causal attention without a cache or active dropout, else the
    "openblas" products), "openblas" (the products by :func:`sgemm`, the rest in XLA) or "xla" (XLA's batched dot):
    the innermost :func:`use_attention_gemm`, else ``COLLAPSE_JAX_ATTENTION_GEMM``, else "fused" (where the kernel
    was built for AVX2 or AVX-512; "openblas" elsewhere, as its plain-float build is slower than the unfused path)."""
    choice = _ATTENTION_GEMM.get() or os.environ.get("COLLAPSE_JAX_ATTENTION_GEMM") or _default_attention()
    if choice not in ATTENTION_GEMMS:
        raise ValueError(f"COLLAPSE_JAX_ATTENTION_GEMM must be one of {', '.join(ATTENTION_GEMMS)}, got {choice!r}")
    return choice


def _default_attention() -> str:
    from collapse_jax import _native

    lib = _native.gemm_library()
    return "fused" if lib is not None and lib.cj_attention_vectorised() else "openblas"


@contextlib.contextmanager
def use_attention_gemm(choice: str):
    """Functions traced inside use ``choice`` (one of :data:`ATTENTION_GEMMS`) for the attention's products (A/B
    benchmarks, tests). A jitted function traced before keeps its compilation: trace a fresh one inside."""
    if choice not in ATTENTION_GEMMS:
        raise ValueError(f"choice must be one of {', '.join(ATTENTION_GEMMS)}, got {choice!r}")
    token = _ATTENTION_GEMM.set(choice)
    try:
        yield
    finally:
        _ATTENTION_GEMM.reset(token)


def _gemm_available() -> bool:
    """Whether the float32 GEMM bound to NumPy's OpenBLAS is built here (collapse_jax/_native/gemm.cc)."""
    from collapse_jax import _native

    return _native.gemm_library() is not None


def sgemm(a, b, trans_a: bool = False, trans_b: bool = False):
    """``op(a) @ op(b)`` by the OpenBLAS sgemm custom call (CPU only), op(x) = x or x^T (static flags): a (..., m,
    k) or (..., k, m), b (..., k, n) or (..., n, k), float32 -> (..., m, n); the leading axes are a batch.

    The batch's matrices (and a large matrix's pieces of 128 rows or columns along the longer side of its result)
    are shared out over XLA's CPU thread pool, each one single-threaded BLAS call. The cut depends only on the
    shapes, so the result is bitwise the same whatever the thread count (tests/test_nanogpt_gemm.py). Raises
    RuntimeError where the kernel is unavailable."""
    from collapse_jax import _native

    if not _gemm_available():
        raise RuntimeError("the OpenBLAS sgemm kernel is unavailable here (see `collapse-jax info`)")
    m = a.shape[-1] if trans_a else a.shape[-2]
    n = b.shape[-2] if trans_b else b.shape[-1]
    call = jax.ffi.ffi_call(_native.SGEMM_TARGET, jax.ShapeDtypeStruct((*a.shape[:-2], m, n), jnp.float32),
                            vmap_method="broadcast_all")
    return call(a, b, trans_a=trans_a, trans_b=trans_b)


def _attention_on_blas(*arrays) -> bool:
    """Whether the attention products traced now go through :func:`sgemm`: float32, chosen
    (:func:`attention_gemm` "fused" or "openblas"), the kernel available (native code on, a compiler, NumPy's
    OpenBLAS >= 0.3.27)."""
    return (all(a.dtype == jnp.float32 for a in arrays) and attention_gemm() != "xla"
            and _gemm_available())


def _on_cpu(blas_fn, xla_fn, *args):
    """``blas_fn`` where the computation runs on the CPU, ``xla_fn`` elsewhere (an accelerator)."""
    return jax.lax.platform_dependent(*args, cpu=blas_fn, default=xla_fn)


@jax.custom_vjp
def attention_scores(q, k):
    """``q k^T`` per batch row and head: q (batch, heads, T, hd), k (batch, heads, S, hd) -> (batch, heads, T, S),
    float32, by :func:`sgemm` on the CPU (XLA's batched dot elsewhere); used where :func:`_attention_on_blas`."""
    return _on_cpu(lambda a, b: sgemm(a, b, trans_b=True),
                   lambda a, b: jnp.einsum("bhtd,bhsd->bhts", a, b, preferred_element_type=jnp.float32), q, k)


def _scores_fwd(q, k):
    return attention_scores(q, k), (q, k)


def _scores_bwd(res, g):
    q, k = res
    return (_on_cpu(lambda g, k: sgemm(g, k), lambda g, k: jnp.einsum("bhts,bhsd->bhtd", g, k), g, k),
            _on_cpu(lambda g, q: sgemm(g, q, trans_a=True), lambda g, q: jnp.einsum("bhts,bhtd->bhsd", g, q), g, q))


attention_scores.defvjp(_scores_fwd, _scores_bwd)


@jax.custom_vjp
def attention_values(p, v):
    """``p v`` per batch row and head: p (batch, heads, T, S), v (batch, heads, S, hd) -> (batch, heads, T, hd),
    float32, by :func:`sgemm` on the CPU (XLA's batched dot elsewhere)."""
    return _on_cpu(lambda a, b: sgemm(a, b), lambda a, b: jnp.einsum("bhts,bhsd->bhtd", a, b), p, v)


def _values_fwd(p, v):
    return attention_values(p, v), (p, v)


def _values_bwd(res, g):
    p, v = res
    return (_on_cpu(lambda g, v: sgemm(g, v, trans_b=True), lambda g, v: jnp.einsum("bhtd,bhsd->bhts", g, v), g, v),
            _on_cpu(lambda p, g: sgemm(p, g, trans_a=True), lambda p, g: jnp.einsum("bhts,bhtd->bhsd", p, g), p, g))


attention_values.defvjp(_values_fwd, _values_bwd)


# ---- fused causal attention (CPU, float32) -----------------------------------------------------------------------
# As separate ops, the attention cost about 80 ms of a 595 ms seed003 train step (two cores), though its products are
# 6 % of the step's flops: each op passes over the (batch, heads, T, T) scores in memory, and the products compute the
# masked upper triangle too. The kernel (collapse_jax/_native/gemm.cc) does one (batch row, head) at a time in cache
# and skips the blocks above the diagonal: about 45 ms (docs/nanogpt.md, "Fused causal attention").

ATTENTION_BLOCK_ROWS = 32  # queries per block of the fused kernel (its products skip keys after the block)


def causal_attention_reference(qkv, num_heads: int):
    """Causal softmax attention by XLA ops: qkv (batch, T, 3 dim) as the qkv projection writes it (q, k, v side by
    side, heads inside each) -> (y (batch, T, dim), probs (batch, heads, T, T)). What :func:`causal_attention`
    computes, and its implementation off the CPU. Any leading axes (or none) in place of batch."""
    *lead, t, three_dim = qkv.shape
    dim = three_dim // 3
    hd = dim // num_heads
    q, k, v = (a.reshape(-1, t, num_heads, hd) for a in jnp.split(qkv, 3, axis=-1))
    scores = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32) * (1.0 / math.sqrt(hd))
    scores = jnp.where(jnp.tril(jnp.ones((t, t), dtype=bool)), scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    y = jnp.einsum("bhts,bshd->bthd", probs, v)
    return y.reshape(*lead, t, dim), probs.reshape(*lead, num_heads, t, t)


def _attention_kernel(qkv, num_heads: int, keep_probs: bool, block: int):
    from collapse_jax import _native

    if not _gemm_available():
        raise RuntimeError("the fused attention kernel is unavailable here (see `collapse-jax info`)")
    *lead, t, three_dim = qkv.shape
    probs = (*lead, num_heads, t, t) if keep_probs else (0,)
    call = jax.ffi.ffi_call(_native.ATTENTION_TARGET, (jax.ShapeDtypeStruct((*lead, t, three_dim // 3), jnp.float32),
                                                      jax.ShapeDtypeStruct(probs, jnp.float32)),
                            vmap_method="broadcast_all")
    return call(qkv, num_heads=np.int64(num_heads), block=np.int64(block))


def _attention_grad_kernel(qkv, y, probs, gy, num_heads: int, block: int):
    from collapse_jax import _native

    call = jax.ffi.ffi_call(_native.ATTENTION_GRAD_TARGET, jax.ShapeDtypeStruct(qkv.shape, jnp.float32),
                            vmap_method="broadcast_all")
    return call(qkv, y, probs, gy, num_heads=np.int64(num_heads), block=np.int64(block))


@partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def causal_attention(qkv, num_heads: int, block: int = ATTENTION_BLOCK_ROWS):
    """Causal softmax attention, fused: qkv (batch, T, 3 dim) float32 as the qkv projection writes it -> y (batch,
    T, dim) as the output projection reads it. On the CPU one native kernel per direction (gradient included; needs
    :func:`_gemm_available`), elsewhere :func:`causal_attention_reference`. ``block``: queries per block of the
    kernel (any value gives the same product up to float32 rounding)."""
    _check_attention(qkv, num_heads, block)
    return _on_cpu(lambda x: _attention_kernel(x, num_heads, False, block)[0],
                   lambda x: causal_attention_reference(x, num_heads)[0], qkv)


def _check_attention(qkv, num_heads, block) -> None:
    if not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        raise ValueError(f"num_heads must be an integer >= 1, got {num_heads!r}")
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    if qkv.dtype != jnp.float32:
        raise ValueError(f"qkv must be float32, got {qkv.dtype}")
    if qkv.ndim < 2 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"qkv must be (..., T, 3 * num_heads * head_dim) with num_heads = {num_heads}, got shape "
                         f"{qkv.shape}")


def _causal_attention_fwd(qkv, num_heads, block):
    _check_attention(qkv, num_heads, block)
    y, probs = _on_cpu(lambda x: _attention_kernel(x, num_heads, True, block),
                       lambda x: causal_attention_reference(x, num_heads), qkv)
    return y, (qkv, y, probs)


def causal_attention_grad_reference(qkv, y, probs, gy, num_heads: int):
    """The gradient of :func:`causal_attention_reference`'s y with respect to qkv, from its outputs (y, probs) and
    y's gradient ``gy``, by XLA ops (no second forward): what the kernel's gradient computes. Any leading axes."""
    *lead, t, three_dim = qkv.shape
    dim = three_dim // 3
    hd = dim // num_heads
    q, k, v = (a.reshape(-1, t, num_heads, hd) for a in jnp.split(qkv, 3, axis=-1))
    g = gy.reshape(-1, t, num_heads, hd)
    probs = probs.reshape(-1, num_heads, t, t)
    dv = jnp.einsum("bhts,bthd->bshd", probs, g)
    dp = jnp.einsum("bthd,bshd->bhts", g, v)
    rowdot = jnp.einsum("bthd,bthd->bht", g, y.reshape(-1, t, num_heads, hd))  # sum_s P_ts dP_ts
    ds = probs * (dp - rowdot[..., None]) * (1.0 / math.sqrt(hd))
    dq = jnp.einsum("bhts,bshd->bthd", ds, k)
    dk = jnp.einsum("bhts,bthd->bshd", ds, q)
    return jnp.concatenate([a.reshape(*lead, t, dim) for a in (dq, dk, dv)], axis=-1)


def _causal_attention_bwd(num_heads, block, res, gy):
    return (_on_cpu(lambda *a: _attention_grad_kernel(*a, num_heads, block),
                    lambda *a: causal_attention_grad_reference(*a, num_heads), *res, gy),)


causal_attention.defvjp(_causal_attention_fwd, _causal_attention_bwd)


def _fold(key, i: int):
    return None if key is None else jax.random.fold_in(key, i)


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention with one fused qkv projection and an optional key/value cache."""

    def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = _linear(cfg, cfg.dim, 3 * cfg.dim, INIT_STD, rngs)
        self.out = _linear(cfg, cfg.dim, cfg.dim, INIT_STD / math.sqrt(2 * cfg.num_layers), rngs)
        self.attn_dropout = nnx.Dropout(cfg.dropout)
        self.resid_dropout = nnx.Dropout(cfg.dropout)

    def __call__(self, x, mask, cache=None, cache_index=0, *, deterministic=True, key=None):
        """``x`` (batch, T, dim), ``mask`` bool (batch, T, S): query t may attend key s (None: causal, S = T, which
        runs :func:`causal_attention` where :func:`attention_gemm` is "fused"). Without a cache S = T;
        with ``cache`` = (k, v) of shape (batch, S, heads, head_dim), this call's keys/values are written at
        ``cache_index`` and every query attends over the whole cache. Returns (output, new cache or None)."""
        b, t, d = x.shape
        qkv = rows(self.qkv, x)
        if (mask is None and cache is None and attention_gemm() == "fused" and _attention_on_blas(qkv)
                and (deterministic or self.attn_dropout.rate == 0)):
            y = causal_attention(qkv, self.num_heads)
            return self.resid_dropout(rows(self.out, y), deterministic=deterministic, rngs=_fold(key, 1)), cache
        if mask is None:
            mask = jnp.tril(jnp.ones((t, t), dtype=bool))[None]
        q, k, v = jnp.split(qkv, 3, axis=-1)
        q, k, v = (a.reshape(b, t, self.num_heads, self.head_dim) for a in (q, k, v))
        if cache is not None:
            zero = jnp.int32(0)
            at = (zero, jnp.asarray(cache_index, jnp.int32), zero, zero)
            k = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), at)
            v = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), at)
            cache = (k, v)
        # training and scoring: the products through OpenBLAS on the CPU (notes above); cached decoding keeps XLA's
        blas = cache is None and _attention_on_blas(q, k, v)
        if blas:
            q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # (batch, heads, T, head_dim)
            scores = attention_scores(q, k)
        else:
            scores = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32)
        scores = scores * (1.0 / math.sqrt(self.head_dim))
        # finfo.min, not -inf: a row with no allowed key (a left-pad query) stays finite instead of NaN.
        scores = jnp.where(mask[:, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        probs = self.attn_dropout(probs, deterministic=deterministic, rngs=_fold(key, 0))
        if blas:
            y = attention_values(probs, v).transpose(0, 2, 1, 3).reshape(b, t, d)
        else:
            y = jnp.einsum("bhts,bshd->bthd", probs, v).reshape(b, t, d)
        return self.resid_dropout(rows(self.out, y), deterministic=deterministic, rngs=_fold(key, 1)), cache


class MLP(nnx.Module):
    """Linear(dim, 4 dim) -> GELU (tanh approximation) -> Linear(4 dim, dim) -> dropout."""

    def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
        self.fc = _linear(cfg, cfg.dim, 4 * cfg.dim, INIT_STD, rngs)
        self.proj = _linear(cfg, 4 * cfg.dim, cfg.dim, INIT_STD / math.sqrt(2 * cfg.num_layers), rngs)
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(self, x, *, deterministic=True, key=None):
        h = jax.nn.gelu(rows(self.fc, x), approximate=True)
        return self.dropout(rows(self.proj, h), deterministic=deterministic, rngs=key)


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x + Attn(LN1(x))``, then ``x + MLP(LN2(x))``."""

    def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
        self.ln1 = _layer_norm(cfg, rngs)
        self.attn = CausalSelfAttention(cfg, rngs=rngs)
        self.ln2 = _layer_norm(cfg, rngs)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x, mask, cache=None, cache_index=0, *, deterministic=True, key=None):
        a, cache = self.attn(self.ln1(x), mask, cache, cache_index, deterministic=deterministic, key=_fold(key, 0))
        x = x + a
        x = x + self.mlp(self.ln2(x), deterministic=deterministic, key=_fold(key, 1))
        return x, cache


class GPT(nnx.Module):
    """The decoder. ``GPT(cfg, rngs=nnx.Rngs(params=key))``; call it on token ids to get float32 logits."""

    def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        embed_init = nnx.initializers.normal(INIT_STD)
        self.wte = nnx.Embed(cfg.vocab_size, cfg.dim, embedding_init=embed_init, param_dtype=jnp.float32, rngs=rngs)
        self.wpe = nnx.Embed(cfg.context_length, cfg.dim, embedding_init=embed_init, param_dtype=jnp.float32,
                             rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.ln_f = _layer_norm(cfg, rngs)

    def __call__(self, tokens, positions=None, mask=None, cache: KVCache | None = None, cache_index=0, *,
                 deterministic: bool = True, dropout_key=None):
        """Logits of the next token at every position.

        tokens: int (batch, T). positions: int (batch, T), default ``0..T-1``. mask: bool (batch, T, S), query t may
        attend key s; default causal (S = T). cache: per-layer (k, v) of shape (batch, S, heads, head_dim), this
        call's keys/values written at ``cache_index`` (then ``mask`` must be given). ``dropout_key`` is needed when
        ``deterministic=False`` and dropout > 0. Returns (logits float32 (batch, T, vocab), new cache or None).
        """
        x, new_cache = self.hidden(tokens, positions, mask, cache, cache_index, deterministic=deterministic,
                                   dropout_key=dropout_key)
        cdt = self.config.compute_dtype
        return tied_logits(x, self.wte.embedding[...].astype(cdt)), new_cache

    def hidden(self, tokens, positions=None, mask=None, cache: KVCache | None = None, cache_index=0, *,
               deterministic: bool = True, dropout_key=None):
        """The final LayerNorm's output (batch, T, dim) in the compute dtype, before the tied projection
        (arguments as :meth:`__call__`); returns (hidden, new cache or None)."""
        t = tokens.shape[1]
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), tokens.shape)
        if mask is None and cache is not None:
            mask = jnp.tril(jnp.ones((t, t), dtype=bool))[None]
        x = self.wte(tokens) + self.wpe(positions)
        x = self.dropout(x, deterministic=deterministic, rngs=_fold(dropout_key, 0))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, mask, None if cache is None else cache[i], cache_index, deterministic=deterministic,
                         key=_fold(dropout_key, i + 1))
            new_cache.append(c)
        x = self.ln_f(x).astype(self.config.compute_dtype)
        return x, (tuple(new_cache) if cache is not None else None)


@jax.custom_vjp
def tied_logits(x, embedding):
    """``x @ embedding^T`` in float32: x (batch, T, dim), embedding (vocab, dim) -> (batch, T, vocab).

    The gradient is written out so that the embedding's is computed as ``(x^T g)^T`` (:func:`_narrow_first`):
    XLA:CPU's own transpose of this einsum first copies the (batch T, vocab) logit gradient into vocab-major order
    (64 MB for the seed003 batch), which made the projection and loss about 1.7x slower than with this rule.
    """
    return jnp.einsum("btd,vd->btv", x, embedding, preferred_element_type=jnp.float32)


def _tied_logits_fwd(x, embedding):
    return tied_logits(x, embedding), (x, embedding)


def _tied_logits_bwd(res, g):
    x, embedding = res
    g = g.astype(x.dtype)
    dx = jnp.einsum("btv,vd->btd", g, embedding, preferred_element_type=jnp.float32)
    dembedding = _narrow_first(g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]))
    return dx.astype(x.dtype), dembedding.astype(embedding.dtype)


tied_logits.defvjp(_tied_logits_fwd, _tied_logits_bwd)


def committed(tree):
    """``tree``'s arrays committed to the default device, as a compiled function's outputs are: a function fed
    uncommitted arrays (fresh initialisations) the first time would be compiled once more for the second call."""
    return jax.device_put(tree, jax.devices()[0])


def init_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A freshly initialised model; parameters from ``fold_in(key(seed), 2)`` (initialised in one compiled call)."""
    return nnx.merge(model_graphdef(cfg), init_params(cfg, seed))


@without_x64
def init_params(cfg: GPTConfig, seed: int = 0) -> nnx.State:
    """The parameter ``State`` of :func:`init_model`."""
    return _init_params(cfg, jax.random.fold_in(root_key(seed), 2))


@partial(jax.jit, static_argnames=("cfg",))
def _init_params(cfg: GPTConfig, key) -> nnx.State:
    return nnx.split(GPT(cfg, rngs=nnx.Rngs(params=key)))[1]


@lru_cache(maxsize=32)
def model_graphdef(cfg: GPTConfig):
    """The static structure of a :class:`GPT` with ``cfg`` (no parameters are computed)."""
    return nnx.graphdef(nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(params=0))))


def empty_cache(cfg: GPTConfig, batch: int, length: int) -> KVCache:
    """Zeros (k, v) per layer, each (batch, length, heads, head_dim) in the compute dtype."""
    shape = (batch, length, cfg.num_heads, cfg.head_dim)
    return tuple((jnp.zeros(shape, cfg.compute_dtype), jnp.zeros(shape, cfg.compute_dtype))
                 for _ in range(cfg.num_layers))


def forward(graphdef, params, tokens, positions=None, mask=None, cache=None, cache_index=0, *,
            deterministic=True, dropout_key=None):
    """:meth:`GPT.__call__` on a split model (``nnx.split``), for use inside ``jax.jit``."""
    model = nnx.merge(graphdef, params)
    return model(tokens, positions, mask, cache, cache_index, deterministic=deterministic, dropout_key=dropout_key)


forward_jit = jax.jit(forward, static_argnames=("graphdef", "deterministic"))
forward_jit.__doc__ = """:func:`forward`, compiled (one compilation per input shape)."""


def mean_nll_hidden(graphdef, params, tokens, targets, *, deterministic=True, dropout_key=None, chunks: int = 8):
    """``mean(token_nll(logits, targets))`` of the model's logits on ``tokens``, without forming the (tokens, vocab)
    logits at once: :func:`tied_mean_nll` in ``chunks`` row blocks (1 where the row count is not a multiple)."""
    model = nnx.merge(graphdef, params)
    x, _ = model.hidden(tokens, deterministic=deterministic, dropout_key=dropout_key)
    rows = x.shape[0] * x.shape[1]
    emb = model.wte.embedding[...].astype(model.config.compute_dtype)
    return tied_mean_nll(x.reshape(rows, -1), emb, targets.reshape(rows).astype(jnp.int32),
                         chunks if rows % chunks == 0 else 1)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def tied_mean_nll(x, embedding, targets, chunks: int):
    """Mean next-token NLL of the tied logits ``x @ embedding^T`` (float32): x (rows, dim), embedding (vocab, dim),
    targets int (rows,). Forward and gradient in one pass over ``chunks`` blocks of rows (a ``lax.scan``): each
    block's logits, log-sum-exp, picked logit, ``g = (softmax - onehot) / rows`` and the gradients ``g @ embedding``
    and ``(x^T g)^T`` are formed while the block is in cache, and the gradients kept for the backward pass, which
    only scales them. The (rows, vocab) logits and their gradient (64 MB each for the seed003 batch) are never
    formed whole."""
    return _tied_mean_nll_fwd(x, embedding, targets, chunks)[0]


def _tied_mean_nll_fwd(x, embedding, targets, chunks):
    rows, dim = x.shape
    xs, ts = x.reshape(chunks, rows // chunks, dim), targets.reshape(chunks, rows // chunks)

    def block(d_emb, blk):
        xi, ti = blk
        logits = jnp.einsum("nd,vd->nv", xi, embedding, preferred_element_type=jnp.float32)
        nll, res = _nll_fwd(logits, ti)  # token_nll's own forward and gradient, per block
        g = _nll_bwd(res, jnp.full(nll.shape, 1.0 / rows, logits.dtype))[0].astype(x.dtype)
        dx = jnp.einsum("nv,vd->nd", g, embedding, preferred_element_type=jnp.float32)
        return d_emb + _narrow_first(g, xi), (jnp.sum(nll), dx.astype(x.dtype))

    d_emb, (sums, dx) = jax.lax.scan(block, jnp.zeros(embedding.shape, jnp.float32), (xs, ts))
    return jnp.sum(sums) / rows, (dx.reshape(rows, dim), d_emb.astype(embedding.dtype))


def _tied_mean_nll_bwd(chunks, res, ct):
    dx, d_emb = res
    return (ct * dx).astype(dx.dtype), (ct * d_emb).astype(d_emb.dtype), None


tied_mean_nll.defvjp(_tied_mean_nll_fwd, _tied_mean_nll_bwd)


def token_nll(logits, targets):
    """-log p(target) per position, float32: logits (..., vocab), targets int (...).

    ``logsumexp(logits) - logits[target]``, with a hand-written gradient ``(softmax(logits) - onehot(target)) g``:
    one pass over the (tokens, vocab) logits each way, where autodiff of ``log_softmax`` + ``take_along_axis``
    materialises the log-probabilities, scatters into a zero array and transposes (about 20% more time in the
    loss on the seed003 batch, 4,096 x 4,096 logits, on XLA:CPU).
    """
    return _nll(logits.astype(jnp.float32), targets.astype(jnp.int32))


def _pick(logits, targets):
    return jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


@jax.custom_vjp
def _nll(logits, targets):
    return jax.nn.logsumexp(logits, axis=-1) - _pick(logits, targets)


def _nll_fwd(logits, targets):
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    lse = (jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1, keepdims=True)) + top)[..., 0]
    return lse - _pick(logits, targets), (logits, lse, targets)


def _nll_bwd(res, g):
    logits, lse, targets = res
    onehot = jnp.arange(logits.shape[-1], dtype=jnp.int32) == targets[..., None]
    return (jnp.exp(logits - lse[..., None]) - onehot) * g[..., None], None


_nll.defvjp(_nll_fwd, _nll_bwd)


@partial(jax.jit, static_argnames=("graphdef",))
def _weighted_nll(graphdef, params, inputs, targets, weights):
    """Sum over positions of ``weights * -log p(targets | inputs)`` per row: inputs/targets (batch, T)."""
    logits, _ = forward(graphdef, params, inputs)
    return jnp.sum(token_nll(logits, targets) * weights, axis=-1)


@partial(jax.jit, static_argnames=("graphdef",))
def _mean_hidden(graphdef, params, tokens, lengths):
    """Mean of the final LayerNorm's output over each row's first ``lengths`` positions, float32 (batch, dim).
    Positions after a row's length (padding) cannot change those before (causal attention)."""
    model = nnx.merge(graphdef, params)
    x, _ = model.hidden(tokens)
    keep = (jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)
    return jnp.einsum("bt,btd->bd", keep, x.astype(jnp.float32)) / lengths[:, None].astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


def filter_logits(logits, top_k: int | None = None, top_p: float = 1.0):
    """Logits with every token outside the top-k / nucleus set at -inf. logits: (..., vocab) float.

    top-k keeps the ``top_k`` largest (ties at the k-th value kept); top-p keeps the smallest set of most likely
    tokens whose probability reaches ``top_p`` (a token is kept when the probability of the tokens strictly before
    it in descending order is < p; ties at the cut-off kept). ``top_k`` and ``top_p`` are static.
    """
    neg = jnp.asarray(-jnp.inf, logits.dtype)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if top_p < 1.0:
        desc = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(desc, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.sum(before < top_p, axis=-1, keepdims=True)           # >= 1
        cutoff = jnp.take_along_axis(desc, kept - 1, axis=-1)
        logits = jnp.where(logits < cutoff, neg, logits)
    return logits


def race_exponentials(key, n: int):
    """(n,) float32 Exp(1) variables for :func:`sample_tokens`'s races, from 32 random bits ``r`` each: ``-log(1 - v)``
    with ``v = (r + 1/2) 2^-32``, so the smallest are resolved down to ~1e-10 (a float32 uniform has 23 random bits:
    values below 1.2e-7 would come from a grid of at most a few points), and the largest too: for ``r >= 2^31``,
    ``1 - v`` is formed from the complemented bits, ``(~r + 1/2) 2^-32``, so E stays finite (at most 22.9). Formed
    as ``1 - v`` in float32, ``v`` rounded to 1 for the top 2^-25 of ``r`` and E was inf: a dominant group or token
    then lost its race, which added ~3e-8 to the tail at each level (an audit, 2026-12-04)."""
    bits = jax.random.bits(key, (n,), jnp.uint32)
    scale = jnp.float32(2.0 ** -32)
    low = bits < jnp.uint32(1 << 31)
    v = (bits.astype(jnp.float32) + 0.5) * scale                      # <= 1/2 where low: log1p is exact enough
    complement = ((~bits).astype(jnp.float32) + 0.5) * scale          # 1 - v, exactly, where not low
    return jnp.where(low, -jnp.log1p(-v), -jnp.log(complement))


def race_group_size(vocab: int) -> int:
    """Tokens per group of the two-level race: a power of two near sqrt(vocab), at least 32."""
    return max(32, 1 << math.ceil(math.log2(math.sqrt(vocab))))


def _race(weights, key):
    """``argmax_k weights_k / E_k`` over a row of non-negative weights: index k with probability ``w_k / sum w``."""
    return jnp.argmax(jnp.where(weights > 0, weights / race_exponentials(key, weights.shape[-1]), -1.0))


def sample_tokens(logits, keys, temperature, top_k: int | None, top_p: float, greedy=False):
    """One token per row: logits (batch, vocab), keys (batch,) typed keys. ``top_k == 1`` (static) or ``greedy``
    (a traced bool, so that greedy and sampled decoding share one compilation) take the argmax.

    Two exponential races: with ``w_k = exp(scaled logit_k - max)`` (0 where filtered out) in groups of
    :func:`race_group_size` consecutive tokens, a group is drawn with probability ``W_g / sum W`` (``W_g`` its sum)
    and a token in it with probability ``w_k / W_g``, each as ``argmax w / E`` with Exp(1) variables
    (:func:`race_exponentials`): token k with probability ``w_k / sum w`` up to float32's relative rounding of the
    weights and their group sums, every probability resolved down to about 1e-9 of its group's and its group's of the
    whole (ties share their probability). The inverse-CDF draw used before (one float32 uniform against a float32
    cumulative sum) rounded every probability to a multiple of 2^-23 ~ 1.2e-7 and could not draw some tokens below it
    at all (an audit, 2026-12-04: with Gaussian logits of SD 3 over 50,257 tokens, 15,308 of them), the tail that
    model collapse is about. The races draw ``vocab / group + group`` random numbers per row, not ``vocab``, and cost
    what the inverse-CDF draw cost (``benchmarks/bench_sampler.py``; one race over the whole vocabulary cost 25-36 %
    more generation time on CPU).
    """
    # NaN logits (a broken model) count as -inf: a NaN maximum made every weight 1, a uniform draw over the whole
    # vocabulary that ignored the masks (an audit, 2026-12-04); a row with no finite logit draws id 0
    logits = jnp.where(jnp.isnan(logits), -jnp.inf, logits.astype(jnp.float32))
    if top_k == 1:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    # shifted so that the largest is 0 before dividing: a tiny temperature (or one that is 0 in float32) then gives
    # -inf for the others, i.e. the argmax, not inf / inf = NaN (which sampled EOT: empty texts)
    top = jnp.max(logits, axis=-1, keepdims=True)
    shifted = jnp.where(logits == -jnp.inf, -jnp.inf, logits - top)    # -inf - (-inf) would be NaN, i.e. weight 1
    # a masked logit stays -inf at any temperature: XLA divides by a constant temperature (an eager call) as
    # shifted * (1 / temperature), and above 2^126 (8.5e37) 1 / temperature is subnormal, flushed to 0 on the CPU:
    # -inf * 0 = NaN spoilt the group's sum and no token of that group was drawn (an audit, 2026-12-07)
    scaled = jnp.where(shifted == -jnp.inf, -jnp.inf, jnp.where(shifted < 0, shifted / temperature, 0.0))
    weights = jnp.exp(filter_logits(scaled, top_k, top_p))
    batch, vocab = weights.shape
    size = race_group_size(vocab)
    groups = -(-vocab // size)
    grouped = jnp.pad(weights, ((0, 0), (0, groups * size - vocab))).reshape(batch, groups, size)
    group = jax.vmap(_race)(grouped.sum(axis=-1), jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys))
    inner = jnp.take_along_axis(grouped, group[:, None, None], axis=1)[:, 0]
    token = group * size + jax.vmap(_race)(inner, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
    return jnp.where(greedy, jnp.argmax(logits, axis=-1), token).astype(jnp.int32)


@partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "top_p", "use_cache", "eot_id",
                                   "vocab_limit"))
def generate_tokens(graphdef, params, prompts, pad, keys, temperature, greedy, *, max_new_tokens: int,
                    top_k: int | None, top_p: float, use_cache: bool, eot_id: int, vocab_limit: int | None = None):
    """New tokens for a batch of left-padded prompts, int32 (batch, max_new_tokens).

    prompts: int (batch, P), row b's prompt in its last ``P - pad[b]`` columns. keys: (batch,) typed keys; the
    token of row b at step t is drawn with ``fold_in(keys[b], t)``, so a row's draws do not depend on the rest of the
    batch; ``greedy`` (a traced bool) takes the argmax instead. A row that emits EOT keeps emitting EOT; the loop
    stops when every row has.

    Buffer of S = P + max_new_tokens columns; column i of row b has position ``max(i - pad[b], 0)`` and may attend
    columns ``pad[b] <= s <= i``. ``use_cache``: prefill the prompt once into a key/value cache of S slots, then one
    token per step; otherwise every step recomputes all S columns (the causal mask hides the unfilled ones).
    ``vocab_limit``: only ids below it are drawn (the tokenizer's vocabulary when the model's is larger), the
    softmax renormalised over them (None: every id).
    """
    cfg = nnx.merge(graphdef, params).config
    batch, p = prompts.shape
    s = p + max_new_tokens
    col = jnp.arange(s, dtype=jnp.int32)
    positions = jnp.maximum(col[None] - pad[:, None], 0)
    valid = col[None] >= pad[:, None]                                  # (batch, S)
    causal = col[:, None] >= col[None, :]                              # (S, S)
    buf = jnp.concatenate([prompts.astype(jnp.int32), jnp.zeros((batch, max_new_tokens), jnp.int32)], axis=1)

    def draw(logits, t):
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
        if vocab_limit is not None and vocab_limit < logits.shape[-1]:
            logits = jnp.where(jnp.arange(logits.shape[-1]) < vocab_limit, logits, -jnp.inf)
        return sample_tokens(logits, step_keys, temperature, top_k, top_p, greedy)

    if use_cache:
        logits, cache = forward(graphdef, params, buf[:, :p], positions[:, :p],
                                causal[None, :p, :] & valid[:, None, :], empty_cache(cfg, batch, s), 0)
    else:
        logits, cache = forward(graphdef, params, buf[:, :p], positions[:, :p], causal[None, :p, :p]
                                & valid[:, None, :p])
    last = logits[:, -1]

    def next_logits(buf, cache, i):
        """Logits after column i (whose token was just written)."""
        if use_cache:
            tok = jax.lax.dynamic_slice_in_dim(buf, i, 1, axis=1)
            pos = jax.lax.dynamic_slice_in_dim(positions, i, 1, axis=1)
            m = (jax.lax.dynamic_slice_in_dim(causal, i, 1, axis=0)[None] & valid[:, None, :])
            logits, cache = forward(graphdef, params, tok, pos, m, cache, i)
            return logits[:, 0], cache
        logits, _ = forward(graphdef, params, buf, positions, causal[None] & valid[:, None, :])
        return jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), cache

    def emit(carry):
        t, buf, cache, last, done = carry
        tok = jnp.where(done, eot_id, draw(last, t))
        buf = jax.lax.dynamic_update_slice_in_dim(buf, tok[:, None], p + t, axis=1)
        return buf, done | (tok == eot_id)

    def body(carry):
        t, buf, cache, last, done = carry
        buf, done = emit(carry)
        last, cache = next_logits(buf, cache, p + t)
        return t + 1, buf, cache, last, done

    carry = (jnp.int32(0), buf, cache, last, jnp.zeros(batch, bool))
    carry = jax.lax.while_loop(lambda c: (c[0] < max_new_tokens - 1) & ~jnp.all(c[4]), body, carry)
    buf, _ = emit(carry)
    return buf[:, p:]



# ----------------------------------------------------------------------------------------------------------------
# Perplexity windows
# ----------------------------------------------------------------------------------------------------------------


def score_windows(length: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """How a sequence of ``length`` tokens (BOS first) is scored: ``(start, first, stop)`` per window.

    The window's inputs are tokens ``[start, start + context)``; it scores target indices ``first <= i < stop``.
    Token ``i >= 1`` is scored in the first window that reaches it, ``k = max(0, ceil((i - context) / stride))``,
    from the ``i - k stride`` tokens before it (at least ``context - stride`` once the text is longer than the
    context). Every token from 1 to ``length - 1`` is scored exactly once.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < stride:
        raise ValueError(f"context must be an integer >= stride = {stride}, got {context!r}")
    out, scored = [], 1
    start = 0
    while scored < length:
        stop = min(start + context + 1, length)
        out.append((start, scored, stop))
        scored = stop
        start += stride
    return out


# ----------------------------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------------------------


class NanoGPT:
    """A nanoGPT with its tokenizer: implements :class:`llm_bridge.generators.Generator`.

    Build with :meth:`create` (fresh weights), :meth:`load` (a training run folder or a folder written by
    :meth:`save`). ``params`` is the model's parameter ``nnx.State``; ``graphdef`` its static structure.
    """

    def __init__(self, config: GPTConfig, tokenizer: TextTokenizer, params, *, name: str = "nanogpt",
                 step: int = 0):
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                             f"{config.vocab_size}")
        self.config = config
        self.tokenizer = tokenizer
        self.graphdef = model_graphdef(config)
        self.params = committed(params)
        self.name = name
        self.step = step

    @classmethod
    def create(cls, config: GPTConfig, tokenizer: TextTokenizer, seed: int = 0, **kwargs) -> "NanoGPT":
        """Fresh weights (:func:`init_model` with ``seed``)."""
        return cls(config, tokenizer, init_params(config, seed), **kwargs)

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def model(self) -> GPT:
        """The parameters as a :class:`GPT` module (a view; changing it does not change ``params``)."""
        return nnx.merge(self.graphdef, self.params)

    # --- saving -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike, *, step: int | None = None) -> "NanoGPT":
        """A model from a training run folder (``collapse-jax nanogpt train``) or a :meth:`save` folder: its
        ``config.json``, ``tokenizer.json`` and the latest checkpoint that restores (``step`` for a given one); or
        from a generation folder of a ``recursive-train`` run (:func:`llm_bridge.recursive_train.load_generation_model`).
        A path that is missing, a file, or a folder without ``config.json`` is a ValueError naming it."""
        from llm_bridge import nanogpt_train as nt

        folder = local_path("folder", folder)
        if not (folder / "config.json").exists():
            from llm_bridge import recursive_train

            if recursive_train.generation_run_folder(folder) is not None:   # a recursive-train generation
                return recursive_train.load_generation_model(folder, step=step)
        saved = nt.read_run_config(folder)
        cfg = GPTConfig(**saved["model"])
        tokenizer = TextTokenizer.load(folder / saved.get("tokenizer_file", "tokenizer.json"))
        abstract = nnx.eval_shape(lambda: init_params(cfg))
        got_step, params = nt.restore_params(folder, abstract, step=step)
        return cls(cfg, tokenizer, params, name=f"nanogpt:{folder.name}", step=got_step)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json``, ``tokenizer.json`` and the parameters (an Orbax checkpoint at ``self.step``) to
        ``folder``, loadable with :meth:`load`.

        Saving again to the same folder adds a step and keeps every step saved before, for a model of the same
        configuration and tokenizer (every step of a folder is read with its one ``config.json``). Refused before
        anything is written: a training run's folder, a folder holding a model of another configuration or
        tokenizer, one holding other files and no model, and a step it already holds (set ``step`` or save to
        another folder)."""
        from llm_bridge import nanogpt_train as nt

        folder = local_path("folder", folder)
        if folder.exists() and not folder.is_dir():  # (FileExistsError from pathlib; a user trial, 2026-12-07)
            raise ValueError(f"folder {str(folder)!r} is a file; give a folder")
        config = {"model": asdict(self.config), "tokenizer_file": "tokenizer.json",
                  "tokenizer_kind": self.tokenizer.kind}
        if (folder.is_dir() and not (folder / "config.json").is_file()
                and any(not p.name.startswith(".") for p in folder.iterdir())):
            # (config.json, tokenizer.json and checkpoints/ went in beside a user's scripts; HFCausalLM.save and
            # `nanogpt train --out` refuse such a folder; a user trial, 2026-12-07. Hidden files, such as a
            # .DS_Store, are left beside the model, as `nanogpt train --out` leaves them)
            raise ValueError(f"folder {str(folder)!r} holds files but no saved model (no config.json); save to a new "
                             "or empty folder, or to one written by save()")
        if (folder / "config.json").is_file():
            saved = nt.read_run_config(folder)
            if "train" in saved:
                raise ValueError(f"{str(folder)!r} holds a training run; save the model to another folder")
            tokenizer_file = folder / saved.get("tokenizer_file", "tokenizer.json")
            same_tokenizer = (tokenizer_file.is_file()
                              and tokenizer_file.read_text() == self.tokenizer.tokenizer.to_str(pretty=True))
            if saved["model"] != config["model"] or not same_tokenizer:
                raise ValueError(f"{str(folder)!r} holds a model of another configuration or tokenizer; save this "
                                 "one to another folder")
        if (folder / nt.CHECKPOINTS / str(self.step)).exists():
            raise ValueError(f"{str(folder)!r} already holds a checkpoint at step {self.step}; set the model's step "
                             "or save to another folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # (a file on the way: `a_file/sub`)
            raise ValueError(f"folder {str(folder)!r} cannot be made: a file stands in its path; give a "
                             "folder") from None
        self.tokenizer.save(folder)
        nt.write_run_config(folder, config)
        nt.save_params(folder, self.step, self.params)
        return folder

    # --- generation ---------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """EOT (as BOS) followed by each prompt's tokens (a literal ``<|endoftext|>`` in a prompt is plain text, its
        bytes: it neither ends the prompt nor starts a new document). Prompts checked as ``generate`` checks them (a
        lone surrogate raised tokenizers' unnamed TypeError; a user trial, 2026-12-06)."""
        eot = self.tokenizer.eot_id
        items = check_texts(prompts, "prompts", allow_empty=False)
        return [[eot] + ids for ids in self.tokenizer.encode_batch(items, plain=True)]

    def generate(self, prompts: Sequence[str], sampling: Sampling = Sampling(), *, seed: int = 0,
                 batch_size: int = 32, progress: bool | None = None, use_cache: bool = True) -> list[str]:
        """One continuation per prompt (prompt removed, ended by EOT or ``max_new_tokens``, cut at
        ``sampling.stop``).

        Each prompt is EOT + its tokens, cut on the left when prompt + ``max_new_tokens`` exceeds the context (one
        warning with the count). Prompts are run shortest first in batches of ``batch_size``, left-padded to a
        multiple of 16 tokens; prompt i draws with ``fold_in(key(seed), i)``, so its text does not depend on the
        batch it ran in. ``use_cache=False`` recomputes the whole sequence for every new token (same tokens, slower).
        A model whose ``vocab_size`` exceeds the tokenizer's draws only the tokenizer's ids (renormalised over them).
        """
        rows = self.generate_ids(prompts, sampling, seed=seed, batch_size=batch_size, progress=progress,
                                 use_cache=use_cache)
        return [cut_at_stop(self.tokenizer.decode(r), sampling.stop) for r in rows]

    @without_x64
    def generate_ids(self, prompts: Sequence[str], sampling: Sampling = Sampling(), *, seed: int = 0,
                     batch_size: int = 32, progress: bool | None = None, use_cache: bool = True) -> list[list[int]]:
        """:meth:`generate` before decoding: each prompt's new token ids up to (not including) the first EOT."""
        items = check_texts(prompts, "prompts", allow_empty=False)
        if not isinstance(sampling, Sampling):
            raise ValueError(f"sampling must be a Sampling, got {type(sampling).__name__}")
        batch_size = _checks.positive_int("batch_size", batch_size)
        seed = _checks.random_seed("seed", seed)
        check_top_k(sampling, self.tokenizer.vocab_size,   # only the tokenizer's ids are drawn (vocab_limit below)
                    whose="this model's tokenizer" if self.tokenizer.vocab_size < self.config.vocab_size
                    else "this model")
        ids = fit_prompts(self.encode_prompts(items), self.context_length, sampling.max_new_tokens)
        eot, room = self.tokenizer.eot_id, self.context_length - sampling.max_new_tokens
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        width = min(batch_size, len(ids))
        root = root_key(seed)
        greedy = sampling.top_k == 1                     # a runtime flag: greedy and sampling share a compilation
        top_k = None if greedy else sampling.top_k
        out: list[list[int]] = [[] for _ in ids]
        with bar(len(ids), f"generating ({self.name})", unit="text",
                 disable=None if progress is None else not progress) as b:
            for start in range(0, len(ids), width):
                idx = order[start:start + width]
                rows = [ids[i] for i in idx] + [[eot]] * (width - len(idx))     # filler rows keep one shape
                p = min(room, 16 * math.ceil(max(map(len, rows)) / 16))
                prompt = np.full((width, p), eot, dtype=np.int32)
                for r, row in enumerate(rows):
                    prompt[r, p - len(row):] = row
                pad = np.asarray([p - len(row) for row in rows], dtype=np.int32)
                keys = jax.vmap(jax.random.fold_in, (None, 0))(root, np.asarray(idx + [0] * (width - len(idx))))
                toks = np.asarray(generate_tokens(
                    self.graphdef, self.params, prompt, pad, keys, np.float32(sampling.temperature),
                    np.bool_(greedy), max_new_tokens=sampling.max_new_tokens, top_k=top_k,
                    top_p=1.0 if greedy else sampling.top_p, use_cache=use_cache, eot_id=eot,
                    vocab_limit=self.tokenizer.vocab_size))
                for r, i in enumerate(idx):
                    row = toks[r].tolist()
                    out[i] = row[:row.index(eot)] if eot in row else row
                b.update(len(idx))
        return out

    # --- perplexity ---------------------------------------------------------------------------------------------
    @without_x64
    def perplexity(self, texts: Sequence[str], *, batch_size: int = 32, stride: int | None = None,
                   progress: bool | None = None) -> PerplexityResult:
        """NLL (nats) of each text's tokens after an EOT (as BOS): a text of t tokens predicts t tokens (an empty
        text none: its per-text perplexity is NaN, see :class:`PerplexityResult`). A literal ``<|endoftext|>`` in
        a text is scored as plain text (its bytes), not as EOT.

        Texts longer than the context are scored in windows of ``context_length`` inputs that start every
        ``stride`` tokens (default context / 2, at least 1), each token once, from at least ``context - stride`` tokens
        before it (:func:`score_windows`). Windows run in fixed-shape batches of ``batch_size``.
        """
        items = check_texts(texts, allow_empty=False)
        batch_size = _checks.positive_int("batch_size", batch_size)
        c = self.context_length
        stride = max(c // 2, 1) if stride is None else _checks.positive_int("stride", stride)
        if stride > c:
            raise ValueError(f"stride must be at most context_length = {c}, got {stride}")
        eot = self.tokenizer.eot_id
        seqs = [[eot] + ids for ids in self.tokenizer.encode_batch(items, plain=True)]
        owners, inputs, targets, weights = [], [], [], []
        for n, seq in enumerate(seqs):
            for start, first, stop in score_windows(len(seq), c, stride):
                window = np.asarray(seq[start:start + c + 1], dtype=np.int32)
                x, y, w = (np.full(c, eot, np.int32), np.full(c, eot, np.int32), np.zeros(c, np.float32))
                x[:len(window) - 1], y[:len(window) - 1] = window[:-1], window[1:]
                w[first - start - 1:stop - start - 1] = 1.0
                owners.append(n), inputs.append(x), targets.append(y), weights.append(w)
        nll = np.zeros(len(items), dtype=np.float64)
        with bar(len(inputs), f"perplexity ({self.name})", unit="window",
                 disable=None if progress is None else not progress) as b:
            for start in range(0, len(inputs), batch_size):
                sl = slice(start, start + batch_size)
                rows = len(inputs[sl])
                fill = batch_size - rows if len(inputs) > batch_size else 0
                stack = [np.stack(a[sl] + [a[0]] * fill) for a in (inputs, targets, weights)]
                got = np.asarray(_weighted_nll(self.graphdef, self.params, *stack), dtype=np.float64)[:rows]
                np.add.at(nll, owners[sl], got)
                b.update(rows)
        return PerplexityResult(nll, np.asarray([len(s) - 1 for s in seqs], dtype=np.int64))

    # --- embeddings ---------------------------------------------------------------------------------------------
    def encoder(self, *, normalize: bool = False) -> Encoder:
        """This model as a sentence encoder (:class:`llm_bridge.encoders.Encoder`), for the Sigma and distance
        estimators: a text's embedding is the mean of the final LayerNorm's output (:meth:`GPT.hidden`, what the
        tied projection reads) over its positions, the text after an EOT as in training and :meth:`perplexity`
        (a literal ``<|endoftext|>`` as plain text). Texts longer than the context are embedded from their first
        ``context_length - 1`` tokens (``Encoder.encode`` warns with the count). ``normalize=True`` L2-normalises
        each row. The encoder reads the model's parameters when it runs, so after :meth:`finetune` it embeds with
        the fine-tuned model (as :meth:`HFCausalLM.encoder <llm_bridge.hf_causal.HFCausalLM.encoder>` does). Batches
        are padded to powers of two (rows and tokens), so there are few compiled shapes; a text's embedding depends
        on its batch only by float32 rounding (below 5e-7 in two audits, batch sizes 1-100)."""
        from llm_bridge.encoders import Encoder

        normalize = _checks.flag("normalize", normalize)
        graphdef, tokenizer, c = self.graphdef, self.tokenizer, self.context_length
        eot = tokenizer.eot_id

        def embed_batch(batch: list[str]) -> np.ndarray:
            seqs = [([eot] + ids)[:c] for ids in tokenizer.encode_batch(batch, plain=True)]
            width = min(c, max(8, 1 << (max(map(len, seqs)) - 1).bit_length()))
            rows = 1 << (len(seqs) - 1).bit_length()
            tokens = np.full((rows, width), eot, np.int32)
            lengths = np.ones(rows, np.int32)
            for i, seq in enumerate(seqs):
                tokens[i, :len(seq)], lengths[i] = seq, len(seq)
            out = np.asarray(_mean_hidden(graphdef, self.params, tokens, lengths), np.float32)[:len(seqs)]
            if normalize:
                out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))
            return out

        def count_tokens(batch: list[str]) -> list[int]:  # EOT included, as the context holds it
            return [len(ids) + 1 for ids in tokenizer.encode_batch(batch, plain=True)]

        return Encoder(self.name, self.config.dim, None, normalize, c, embed_batch, count_tokens)

    # --- fine-tuning --------------------------------------------------------------------------------------------
    def finetune(self, texts: Sequence[str], *, steps: int, learning_rate: float = 1e-4, batch_size: int = 8,
                 seed: int = 0, progress: bool | None = None) -> list[float]:
        """``steps`` AdamW steps on ``texts`` in place (fresh optimiser state; see
        :func:`llm_bridge.nanogpt_train.finetune`); returns each step's training loss."""
        from llm_bridge import nanogpt_train as nt

        return nt.finetune(self, texts, steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                           progress=progress)
