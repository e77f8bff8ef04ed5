"""The OpenBLAS float32 GEMM custom call (collapse_jax/_native/gemm.cc, ``llm_bridge.nanogpt.sgemm``) and the
nanoGPT attention products that use it: equal to a float64 NumPy product for every transpose combination and odd
shapes (single pieces, shapes cut into several pieces along rows or columns, stacks of matrices, vmap), bitwise the
same whatever the thread count; the attention's products go through it on the CPU in float32 by default, through XLA's batched
dot otherwise (``use_attention_gemm("xla")``, bfloat16, native code off), with the same loss and gradients; a train
step is bitwise the same run to run.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from collapse_jax import _native
from llm_bridge import nanogpt as ng
from llm_bridge import nanogpt_train as nt

GEMM = _native.gemm_library() is not None
needs_gemm = pytest.mark.skipif(not GEMM, reason="no OpenBLAS GEMM here (no compiler, COLLAPSE_JAX_NATIVE=0, or "
                                                 "NumPy without OpenBLAS >= 0.3.27)")


@pytest.fixture(autouse=True)
def _float32():
    """The model runs without x64 (``ng.without_x64``); so do these checks."""
    with jax.enable_x64(False):
        yield


CFG = ng.GPTConfig(vocab_size=97, context_length=16, num_layers=2, num_heads=2, dim=32)


def _operands(rng, m, k, n, trans_a, trans_b, lead=()):
    a = rng.standard_normal((*lead, *((k, m) if trans_a else (m, k))), dtype=np.float32)
    b = rng.standard_normal((*lead, *((n, k) if trans_b else (k, n))), dtype=np.float32)
    return a, b


def _want(a, b, trans_a, trans_b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (np.swapaxes(a, -1, -2) if trans_a else a) @ (np.swapaxes(b, -1, -2) if trans_b else b)


def _sgemm_cases():
    rng = np.random.default_rng(4)
    return [(*_operands(rng, m, 300, n, trans_a, True), trans_a) for trans_a, m, n in
            [(False, 1100, 1030), (True, 260, 1030), (False, 77, 1030)]]  # cut by rows, by columns, one piece


@needs_gemm
def test_sgemm_is_bitwise_the_same_run_to_run_and_whatever_the_thread_count(tmp_path):
    """Twice here, and in a process whose XLA pool has one thread (pinned to one CPU): bitwise the same. The cut into
    pieces depends only on the shape (OpenBLAS's Haswell / Zen kernels round a row block computed alone differently
    from the same rows inside the whole matrix, so a cut that followed the thread count would not be)."""
    import os
    import subprocess
    import sys
    import textwrap

    here = [np.asarray(ng.sgemm(a, b, trans_a, True)) for a, b, trans_a in _sgemm_cases()]
    again = [np.asarray(ng.sgemm(a, b, trans_a, True)) for a, b, trans_a in _sgemm_cases()]
    assert all(np.array_equal(x, y) for x, y in zip(here, again))
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs and sched_setaffinity to compare thread counts")
    code = textwrap.dedent(f"""
        import os, sys
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # before JAX starts: a pool of one thread
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        from llm_bridge import nanogpt as ng
        from test_nanogpt_gemm import _sgemm_cases
        np.savez("{tmp_path}/one.npz", *[np.asarray(ng.sgemm(a, b, t, True)) for a, b, t in _sgemm_cases()])
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert run.returncode == 0, run.stderr[-3000:]
    one = np.load(tmp_path / "one.npz")
    assert all(np.array_equal(one[f"arr_{i}"], x) for i, x in enumerate(here))


@needs_gemm
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (33, 17, 65),       # one piece
                                   (301, 19, 9), (7, 23, 290), (1100, 3, 1030)])  # cut by rows / columns
def test_sgemm_equals_float64_product(trans_a, trans_b, m, k, n):
    a, b = _operands(np.random.default_rng(m * n), m, k, n, trans_a, trans_b)
    got = jax.jit(ng.sgemm, static_argnums=(2, 3))(a, b, trans_a, trans_b)
    assert got.shape == (m, n) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), _want(a, b, trans_a, trans_b), rtol=1e-5, atol=1e-5 * np.sqrt(k))


@needs_gemm
def test_sgemm_stacks_and_vmap():
    """A stack of matrices (the attention's batch rows and heads) and vmap over leading axes."""
    rng = np.random.default_rng(1)
    a, b = _operands(rng, 130, 9, 11, True, False, lead=(2, 3))
    want = _want(a, b, True, False)
    np.testing.assert_allclose(np.asarray(ng.sgemm(a, b, trans_a=True)), want, rtol=1e-5, atol=1e-5)
    got = jax.vmap(jax.vmap(lambda x, y: ng.sgemm(x, y, trans_a=True)))(a, b)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@needs_gemm
def test_attention_products_and_their_gradients_equal_einsum():
    rng = np.random.default_rng(5)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, n, 4), dtype=np.float32)) for n in (5, 6, 6))
    p = jnp.asarray(rng.random((2, 3, 5, 6), dtype=np.float32))

    def pair(fn, ref, x, y):
        np.testing.assert_allclose(np.asarray(jax.jit(fn)(x, y)), np.asarray(ref(x, y)), rtol=1e-5, atol=1e-6)
        got = jax.grad(lambda x, y: jnp.sum(jnp.sin(fn(x, y))), argnums=(0, 1))(x, y)
        want = jax.grad(lambda x, y: jnp.sum(jnp.sin(ref(x, y))), argnums=(0, 1))(x, y)
        for g, h in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-5, atol=1e-6)

    pair(ng.attention_scores, lambda x, y: jnp.einsum("bhtd,bhsd->bhts", x, y), q, k)
    pair(ng.attention_values, lambda x, y: jnp.einsum("bhts,bhsd->bhtd", x, y), p, v)


def _gemm_calls(cfg=CFG) -> int:
    """Custom calls in the lowered loss + gradient of a fresh model function (jit reuses an earlier trace of the
    same function, so each count traces a new one)."""
    params = ng.init_params(cfg, seed=0)
    tokens = jnp.zeros((2, 9), jnp.int32)
    graphdef = ng.model_graphdef(cfg)

    def loss(p):
        return ng.mean_nll_hidden(graphdef, p, tokens[:, :-1], tokens[:, 1:])

    return jax.jit(jax.value_and_grad(loss)).lower(params).as_text().count(_native.SGEMM_TARGET)


@needs_gemm
def test_attention_uses_the_gemm_on_cpu_float32_and_xla_otherwise(monkeypatch):
    monkeypatch.delenv("COLLAPSE_JAX_ATTENTION_GEMM", raising=False)
    per_layer = 6  # q k^T and p v, each with two gradient products
    assert ng.attention_gemm() == "openblas" and _gemm_calls() == per_layer * CFG.num_layers  # the default
    assert _gemm_calls(replace(CFG, dtype="bfloat16")) == 0
    with ng.use_attention_gemm("xla"):
        assert _gemm_calls() == 0
        with ng.use_attention_gemm("openblas"):
            assert _gemm_calls() == per_layer * CFG.num_layers
    monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "xla")
    assert _gemm_calls() == 0
    monkeypatch.delenv("COLLAPSE_JAX_ATTENTION_GEMM")
    monkeypatch.setitem(_native._STATE, "gemm", None)         # as with COLLAPSE_JAX_NATIVE=0 or no OpenBLAS
    assert _native.gemm_library() is None
    assert _gemm_calls() == 0
    with pytest.raises(RuntimeError, match="unavailable"):
        ng.sgemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "mkl")
    with pytest.raises(ValueError, match="COLLAPSE_JAX_ATTENTION_GEMM"):
        ng.attention_gemm()
    with pytest.raises(ValueError, match="choice"):
        ng.use_attention_gemm("blas").__enter__()


@needs_gemm
def test_gemm_and_xla_attention_give_the_same_loss_and_gradients():
    """Train mode with dropout: the same loss and parameter gradients through either attention."""
    cfg = replace(CFG, dropout=0.1)
    params = ng.init_params(cfg, seed=1)
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, cfg.vocab_size, (3, 17)), jnp.int32)
    graphdef = ng.model_graphdef(cfg)

    def loss_and_grads(p, t):
        return jax.value_and_grad(lambda p: ng.mean_nll_hidden(graphdef, p, t[:, :-1], t[:, 1:], deterministic=False,
                                                               dropout_key=jax.random.key(3)))(p)

    loss, grads = jax.jit(loss_and_grads)(params, tokens)
    with ng.use_attention_gemm("xla"):
        loss_xla, grads_xla = jax.jit(lambda p, t: loss_and_grads(p, t))(params, tokens)
    np.testing.assert_allclose(float(loss), float(loss_xla), rtol=1e-6)
    for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_xla)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-4, atol=1e-6)


def test_train_steps_are_bitwise_repeatable():
    """The same start gives bitwise the same parameters after three steps, run twice (dropout on; the attention's
    matrices are shared out over whichever pool threads are free, each one single-threaded BLAS call)."""
    cfg = replace(CFG, dropout=0.1)
    tc = nt.TrainConfig(batch_size=16)
    step = nt.train_step(ng.model_graphdef(cfg), (tc.grad_clip, tc.beta1, tc.beta2, tc.weight_decay), 16,
                         cfg.context_length)
    stream = jnp.asarray(np.random.default_rng(3).integers(0, cfg.vocab_size, 500), jnp.int32)

    def run():
        params = ng.init_params(cfg, seed=0)
        opt = nt.optimizer(tc).init(params)
        for s in range(3):
            params, opt, _ = step(params, opt, stream, 0, s, np.float32(1e-3))
        return [np.asarray(p) for p in jax.tree.leaves(nnx.to_pure_dict(params))]

    for x, y in zip(run(), run()):
        assert np.array_equal(x, y)
