"""The PyTorch twin used by the speed benchmark (benchmarks/nanogpt_torch.py) is the same network as the Flax
nanoGPT: with the Flax weights copied in, both give the same logits, and they count the same parameters."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import jax  # noqa: E402
import nanogpt_torch as tg  # noqa: E402
from flax import nnx  # noqa: E402

from llm_bridge import nanogpt as ng  # noqa: E402


def copy_into_torch(model: ng.GPT) -> tg.GPT:
    cfg = model.config
    twin = tg.GPT(cfg.vocab_size, cfg.context_length, cfg.num_layers, cfg.num_heads, cfg.dim)

    def put(dst, src, transpose=False):
        a = np.array(src[...], dtype=np.float32)  # a writable copy: torch.from_numpy warns on a read-only view
        dst.data.copy_(torch.from_numpy(a.T.copy() if transpose else a))

    with torch.no_grad():
        put(twin.tok.weight, model.wte.embedding)
        put(twin.pos.weight, model.wpe.embedding)
        for fb, tb in zip(model.blocks, twin.blocks):
            for f_lin, t_lin in ((fb.attn.qkv, tb.qkv), (fb.attn.out, tb.attn_out), (fb.mlp.fc, tb.fc),
                                 (fb.mlp.proj, tb.mlp_out)):
                put(t_lin.weight, f_lin.kernel, transpose=True)       # flax (in, out), torch (out, in)
                put(t_lin.bias, f_lin.bias)
            for f_ln, t_ln in ((fb.ln1, tb.ln1), (fb.ln2, tb.ln2)):
                put(t_ln.weight, f_ln.scale)
                put(t_ln.bias, f_ln.bias)
        put(twin.ln_f.weight, model.ln_f.scale)
        put(twin.ln_f.bias, model.ln_f.bias)
    return twin


def test_torch_twin_gives_the_flax_logits():
    cfg = ng.GPTConfig(vocab_size=50, context_length=16, num_layers=2, num_heads=2, dim=32)
    model = ng.init_model(cfg, seed=3)
    # move every parameter off its initial value (zero biases, unit LayerNorm scales would hide a mix-up)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    # (1.0, not 0.05: with weights near their initial scale the MLP's inputs are so small that erf and tanh GELU
    # differ by 1e-6 and the comparison could not tell them apart; a third audit, 2026-12-04)
    params = jax.tree.map(lambda p: p + 1.0 * rng.standard_normal(p.shape).astype(p.dtype), params)
    model = nnx.merge(graphdef, params)
    twin = copy_into_torch(model).eval()
    assert sum(p.numel() for p in twin.parameters()) == cfg.num_params()
    tokens = rng.integers(0, 50, (3, 16))
    want = np.asarray(model(jax.numpy.asarray(tokens))[0])
    with torch.no_grad():
        got = twin(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
