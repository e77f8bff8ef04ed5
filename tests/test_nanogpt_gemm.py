"""The OpenBLAS float32 GEMM custom call (collapse_jax/_native/gemm.cc, ``llm_bridge.nanogpt.sgemm``) and the
nanoGPT attention products that use it: equal to a float64 NumPy product for every transpose combination and odd
shapes (single pieces, shapes cut into several pieces along rows or columns, stacks of matrices, vmap), bitwise the
same whatever the thread count; the fused causal attention kernel (``llm_bridge.nanogpt.causal_attention``, same
library) against a float64 loop, its gradient, vmap, bitwise across thread counts, bad input; which attention a model
traces (fused by default on the CPU in float32 without active dropout, else the OpenBLAS products, XLA's ops with
``use_attention_gemm("xla")``, bfloat16 or native code off), with the same loss and gradients every way; a train step
is bitwise the same run to run.
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
    here, again = _sgemm_results(), _sgemm_results()
    assert all(np.array_equal(x, y) for x, y in zip(here, again))
    one = _in_a_one_thread_process(tmp_path, "_sgemm_results")
    assert all(np.array_equal(o, x) for o, x in zip(one, here))


def _sgemm_results():
    return [np.asarray(ng.sgemm(a, b, trans_a, True)) for a, b, trans_a in _sgemm_cases()]


def _in_a_one_thread_process(tmp_path, function: str) -> list:
    """``function()`` of this module (a list of arrays) computed in a process pinned to one CPU, whose XLA pool
    then has one thread; skips where there are not two CPUs to compare with."""
    import os
    import subprocess
    import sys
    import textwrap

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs and sched_setaffinity to compare thread counts")
    code = textwrap.dedent(f"""
        import os, sys
        os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # before JAX starts: a pool of one thread
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        import test_nanogpt_gemm
        np.savez("{tmp_path}/one.npz", *test_nanogpt_gemm.{function}())
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert run.returncode == 0, run.stderr[-3000:]
    one = np.load(tmp_path / "one.npz")
    return [one[f"arr_{i}"] for i in range(len(one.files))]


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


def _calls(cfg=CFG, target=_native.SGEMM_TARGET, **train) -> int:
    """Custom calls to ``target`` in the lowered loss + gradient of a fresh model function (jit reuses an earlier
    trace of the same function, so each count traces a new one); ``train``: deterministic=False, dropout_key=..."""
    params = ng.init_params(cfg, seed=0)
    tokens = jnp.zeros((2, 9), jnp.int32)
    graphdef = ng.model_graphdef(cfg)

    def loss(p):
        return ng.mean_nll_hidden(graphdef, p, tokens[:, :-1], tokens[:, 1:], **train)

    return jax.jit(jax.value_and_grad(loss)).lower(params).as_text().count(f"@{target}(")


def _gemm_calls(cfg=CFG, **train) -> int:
    return _calls(cfg, _native.SGEMM_TARGET, **train)


def _fused_calls(cfg=CFG, **train) -> int:
    return _calls(cfg, _native.ATTENTION_TARGET, **train) + _calls(cfg, _native.ATTENTION_GRAD_TARGET, **train)


@needs_gemm
def test_attention_uses_the_gemm_on_cpu_float32_and_xla_otherwise(monkeypatch):
    monkeypatch.delenv("COLLAPSE_JAX_ATTENTION_GEMM", raising=False)
    per_layer = 6  # q k^T and p v, each with two gradient products
    layers = CFG.num_layers
    if not _native.gemm_library().cj_attention_vectorised():
        assert ng.attention_gemm() == "openblas"  # plain-float build (test_fused_attention_without_vectors)
        monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "fused")
    # the default: the fused kernel (forward and gradient) for causal attention without active dropout
    assert ng.attention_gemm() == "fused" and _fused_calls() == 2 * layers and _gemm_calls() == 0
    train = dict(deterministic=False, dropout_key=jax.random.key(0))
    assert _fused_calls(**train) == 2 * layers  # train mode, dropout 0
    dropout = replace(CFG, dropout=0.1)          # active dropout on the weights: the unfused products
    assert _fused_calls(dropout, **train) == 0 and _gemm_calls(dropout, **train) == per_layer * layers
    assert _fused_calls(dropout) == 2 * layers    # dropout off in evaluation
    assert _fused_calls(replace(CFG, dtype="bfloat16")) == _gemm_calls(replace(CFG, dtype="bfloat16")) == 0
    with ng.use_attention_gemm("xla"):
        assert _gemm_calls() == _fused_calls() == 0
        with ng.use_attention_gemm("openblas"):
            assert _gemm_calls() == per_layer * layers and _fused_calls() == 0
    monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "xla")
    assert _gemm_calls() == _fused_calls() == 0
    monkeypatch.delenv("COLLAPSE_JAX_ATTENTION_GEMM")
    monkeypatch.setitem(_native._STATE, "gemm", None)         # as with COLLAPSE_JAX_NATIVE=0 or no OpenBLAS
    assert _native.gemm_library() is None
    assert _gemm_calls() == _fused_calls() == 0
    with pytest.raises(RuntimeError, match="unavailable"):
        ng.causal_attention(jnp.ones((1, 2, 6), jnp.float32), 1)
    with pytest.raises(RuntimeError, match="unavailable"):
        ng.sgemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))
    monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "mkl")
    with pytest.raises(ValueError, match="COLLAPSE_JAX_ATTENTION_GEMM"):
        ng.attention_gemm()
    with pytest.raises(ValueError, match="choice"):
        ng.use_attention_gemm("blas").__enter__()


def _float64_attention(qkv, num_heads):
    """Causal softmax attention in float64 NumPy, loops over batch rows and heads: (y, probs)."""
    qkv = np.asarray(qkv, np.float64)
    b, t, three_dim = qkv.shape
    dim = three_dim // 3
    hd = dim // num_heads
    y, probs = np.zeros((b, t, dim)), np.zeros((b, num_heads, t, t))
    for i in range(b):
        for h in range(num_heads):
            q, k, v = (qkv[i, :, part * dim + h * hd: part * dim + (h + 1) * hd] for part in range(3))
            for r in range(t):
                s = k[: r + 1] @ q[r] / np.sqrt(hd)
                w = np.exp(s - s.max())
                probs[i, h, r, : r + 1] = w / w.sum()
            y[i, :, h * hd:(h + 1) * hd] = probs[i, h] @ v
    return y, probs


# (batch, T, heads, head_dim, block): blocks of one row, blocks that do not divide T, one block, seed003's shape
ATTENTION_CASES = [(2, 7, 1, 3, 1), (3, 13, 2, 8, 4), (2, 37, 3, 5, 7), (1, 20, 2, 16, 64), (32, 128, 4, 64, 32)]


@needs_gemm
@pytest.mark.parametrize("b,t,heads,hd,block", ATTENTION_CASES)
def test_fused_attention_and_its_gradient_equal_float64(b, t, heads, hd, block):
    """The kernel's output and softmax weights against a float64 loop; its gradient against the float64 gradient
    (``jax.grad`` of the XLA reference under x64); the XLA reference in float32 is held to the same tolerance."""
    rng = np.random.default_rng(b * t + heads * hd + block)
    qkv = rng.standard_normal((b, t, 3 * heads * hd), dtype=np.float32)
    gy = rng.standard_normal((b, t, heads * hd), dtype=np.float32)
    y64, p64 = _float64_attention(qkv, heads)
    y, probs = jax.jit(lambda x: ng._attention_kernel(x, heads, True, block))(qkv)
    assert y.shape == (b, t, heads * hd) and probs.shape == (b, heads, t, t) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(probs), p64, rtol=2e-6, atol=2e-7)   # zeros above the diagonal included
    np.testing.assert_allclose(np.asarray(ng.causal_attention(qkv, heads, block)), np.asarray(y), rtol=0, atol=0)
    with jax.enable_x64(True):
        g64 = np.asarray(jax.grad(lambda x: jnp.sum(ng.causal_attention_reference(x, heads)[0] * gy))(
            qkv.astype(np.float64)))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(ng.causal_attention(x, heads, block) * gy)))(qkv)
    grad_xla = jax.grad(lambda x: jnp.sum(ng.causal_attention_reference(x, heads)[0] * gy))(qkv)
    # the off-CPU gradient rule, from the reference's own outputs (what runs on an accelerator)
    grad_rule = ng.causal_attention_grad_reference(qkv, *ng.causal_attention_reference(qkv, heads), gy, heads)
    for got, want in ((y, y64), (grad, g64), (grad_xla, g64), (grad_rule, g64)):
        scale = np.abs(want).max()
        assert np.abs(np.asarray(got, np.float64) - want).max() <= 2e-6 * scale


@needs_gemm
def test_fused_attention_vmap_and_leading_axes():
    """vmap and an extra leading axis are more batch rows: the same as a loop over them."""
    rng = np.random.default_rng(8)
    qkv = rng.standard_normal((3, 2, 9, 12), dtype=np.float32)
    gy = rng.standard_normal((3, 2, 9, 4), dtype=np.float32)
    loop = np.stack([np.asarray(ng.causal_attention(x, 2, 4)) for x in qkv])
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda x: ng.causal_attention(x, 2, 4))(qkv)), loop)
    np.testing.assert_array_equal(np.asarray(ng.causal_attention(qkv, 2, 4)), loop)
    grads = jax.vmap(jax.grad(lambda x, g: jnp.sum(ng.causal_attention(x, 2, 4) * g)))(qkv, gy)
    loop = np.stack([np.asarray(jax.grad(lambda x: jnp.sum(ng.causal_attention(x, 2, 4) * g))(x))
                     for x, g in zip(qkv, gy)])
    np.testing.assert_array_equal(np.asarray(grads), loop)



def test_attention_references_take_any_leading_axes():
    """The XLA reference and its gradient rule (what runs off the CPU) take no batch axis or several, like the
    kernel: the same values as a loop over 3-d slices."""
    rng = np.random.default_rng(11)
    qkv = rng.standard_normal((3, 2, 9, 12), dtype=np.float32)
    gy = rng.standard_normal((3, 2, 9, 4), dtype=np.float32)
    y, probs = ng.causal_attention_reference(qkv, 2)
    grad = ng.causal_attention_grad_reference(qkv, y, probs, gy, 2)
    assert y.shape == (3, 2, 9, 4) and probs.shape == (3, 2, 2, 9, 9) and grad.shape == qkv.shape
    for i in range(3):
        yi, pi = ng.causal_attention_reference(qkv[i], 2)
        np.testing.assert_allclose(np.asarray(y[i]), np.asarray(yi), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(probs[i]), np.asarray(pi), rtol=1e-6, atol=1e-7)
        gi = ng.causal_attention_grad_reference(qkv[i], yi, pi, gy[i], 2)
        np.testing.assert_allclose(np.asarray(grad[i]), np.asarray(gi), rtol=1e-5, atol=1e-6)
        y1, p1 = ng.causal_attention_reference(qkv[i, 0], 2)   # no batch axis
        assert y1.shape == (9, 4) and p1.shape == (2, 9, 9)
        np.testing.assert_allclose(np.asarray(y1), np.asarray(yi[0]), rtol=1e-6, atol=1e-7)
        g1 = ng.causal_attention_grad_reference(qkv[i, 0], y1, p1, gy[i, 0], 2)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(gi[0]), rtol=1e-5, atol=1e-6)
    want = jax.grad(lambda x: jnp.sum(ng.causal_attention_reference(x, 2)[0] * gy))(qkv)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(want), rtol=1e-5, atol=1e-5)

def _attention_results():
    rng = np.random.default_rng(9)
    qkv = rng.standard_normal((4, 50, 3 * 4 * 16), dtype=np.float32)
    gy = rng.standard_normal((4, 50, 4 * 16), dtype=np.float32)
    y = ng.causal_attention(qkv, 4, 16)
    grad = jax.grad(lambda x: jnp.sum(ng.causal_attention(x, 4, 16) * gy))(qkv)
    return [np.asarray(y), np.asarray(grad)]


@needs_gemm
def test_fused_attention_is_bitwise_the_same_whatever_the_thread_count(tmp_path):
    """Each (batch row, head) is one thread's work, cut into the same blocks whatever the pool's size."""
    here = _attention_results()
    assert all(np.array_equal(x, y) for x, y in zip(here, _attention_results()))
    one = _in_a_one_thread_process(tmp_path, "_attention_results")
    assert all(np.array_equal(o, x) for o, x in zip(one, here))


def _attention_against_float64():
    """The kernel's y and gradient on a seed003-like item set against float64: [max relative errors]."""
    rng = np.random.default_rng(10)
    qkv = rng.standard_normal((2, 40, 3 * 2 * 64), dtype=np.float32)
    gy = rng.standard_normal((2, 40, 2 * 64), dtype=np.float32)
    y64, _ = _float64_attention(qkv, 2)
    with jax.enable_x64(True):
        g64 = np.asarray(jax.grad(lambda x: jnp.sum(ng.causal_attention_reference(x, 2)[0] * gy))(
            qkv.astype(np.float64)))
    y = ng.causal_attention(qkv, 2, 16)
    grad = jax.grad(lambda x: jnp.sum(ng.causal_attention(x, 2, 16) * gy))(qkv)
    errors = [np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max() for a, b in ((y, y64), (grad, g64))]
    return [np.asarray(errors), np.asarray([_native.gemm_library().cj_attention_vectorised()]),
            np.asarray([ng.attention_gemm() == "fused"])]


@needs_gemm
def test_fused_attention_without_vectors(tmp_path):
    """Built for a CPU without AVX2 (``COLLAPSE_JAX_MARCH=x86-64``): the plain-float products give the same values to
    float32 precision, and the library does not pick the kernel by default there (it is slower than unfused)."""
    import os
    import platform
    import subprocess
    import sys
    import textwrap

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("an x86-64 baseline build needs an x86-64 CPU")
    here = _attention_against_float64()
    assert here[0].max() <= 2e-6
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        import test_nanogpt_gemm
        np.savez("{tmp_path}/plain.npz", *test_nanogpt_gemm._attention_against_float64())
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, JAX_PLATFORMS="cpu", COLLAPSE_JAX_MARCH="x86-64"))
    assert run.returncode == 0, run.stderr[-3000:]
    errors, vectorised, fused_default = (np.load(tmp_path / "plain.npz")[f"arr_{i}"] for i in range(3))
    assert errors.max() <= 2e-6 and vectorised[0] == 0 and not fused_default[0]


@needs_gemm
def test_fused_attention_lowers_to_xla_ops_for_a_gpu():
    """On an accelerator the same model function runs the XLA reference and its gradient rule: lowered for CUDA (no
    GPU needed), the loss + gradient holds no CPU custom call, while the CPU lowering holds the kernel's two."""
    from collapse_jax.multinomial_pallas import lower_for_cuda

    params = ng.init_params(CFG, seed=0)
    tokens = jnp.zeros((2, 9), jnp.int32)
    graphdef = ng.model_graphdef(CFG)

    def loss_and_grad(p):
        return jax.value_and_grad(lambda p: ng.mean_nll_hidden(graphdef, p, tokens[:, :-1], tokens[:, 1:]))(p)

    assert ng.attention_gemm() == "fused" or not _native.gemm_library().cj_attention_vectorised()
    with ng.use_attention_gemm("fused"):
        cuda = lower_for_cuda(loss_and_grad, params)
        cpu = jax.jit(loss_and_grad).lower(params).as_text()
    assert "custom_call @collapse_jax" not in cuda and "stablehlo.dot_general" in cuda
    assert cpu.count(f"@{_native.ATTENTION_TARGET}(") == cpu.count(f"@{_native.ATTENTION_GRAD_TARGET}(") == 2


def test_fused_attention_bad_input():
    with pytest.raises(ValueError, match="qkv"):
        ng.causal_attention(jnp.ones((1, 4, 10), jnp.float32), 2)    # 10 is not 3 * 2 * head_dim
    with pytest.raises(ValueError, match="num_heads"):
        ng.causal_attention(jnp.ones((1, 4, 6), jnp.float32), 0)
    with pytest.raises(ValueError, match="block"):
        ng.causal_attention(jnp.ones((1, 4, 6), jnp.float32), 1, 0)
    with pytest.raises(ValueError, match="float32"):
        ng.causal_attention(jnp.ones((1, 4, 6), jnp.bfloat16), 1)


@needs_gemm
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_every_attention_gives_the_same_loss_and_gradients(dropout):
    """Train mode, with and without dropout: the same loss and parameter gradients through the fused kernel (used
    without dropout), the OpenBLAS products and XLA's ops."""
    cfg = replace(CFG, dropout=dropout)
    params = ng.init_params(cfg, seed=1)
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, cfg.vocab_size, (3, 17)), jnp.int32)
    graphdef = ng.model_graphdef(cfg)

    def loss_and_grads(p, t):
        return jax.value_and_grad(lambda p: ng.mean_nll_hidden(graphdef, p, t[:, :-1], t[:, 1:], deterministic=False,
                                                               dropout_key=jax.random.key(3)))(p)

    loss, grads = jax.jit(loss_and_grads)(params, tokens)
    for choice in ("openblas", "xla"):
        with ng.use_attention_gemm(choice):
            loss_other, grads_other = jax.jit(lambda p, t: loss_and_grads(p, t))(params, tokens)
        np.testing.assert_allclose(float(loss), float(loss_other), rtol=1e-6)
        for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_other)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_train_steps_are_bitwise_repeatable(dropout):
    """The same start gives bitwise the same parameters after three steps, run twice (without dropout through the
    fused attention, with it through the products; the work is shared out over whichever pool threads are free,
    each piece single-threaded)."""
    cfg = replace(CFG, dropout=dropout)
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
