"""Plain NumPy nanoGPT forward pass (float64, loops over heads): the architecture written out from the brief, to
check :mod:`llm_bridge.nanogpt` against. ``params`` is ``nnx.split(model)[1].to_pure_dict()``."""

from __future__ import annotations

import math

import numpy as np


def layer_norm(x, p, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def linear(x, p):
    return x @ p["kernel"] + p["bias"]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, p, num_heads):
    t, d = x.shape
    hd = d // num_heads
    qkv = linear(x, p["qkv"])
    q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
    out = np.zeros((t, d))
    for h in range(num_heads):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out[:, sl] = w @ v[:, sl]
    return linear(out, p["out"])


def hidden(params, tokens, num_heads):
    """The final LayerNorm's output (T, dim) of one sequence of token ids."""
    p = _float64(params)
    x = p["wte"]["embedding"][tokens] + p["wpe"]["embedding"][np.arange(len(tokens))]
    for i in sorted(p["blocks"]):
        b = p["blocks"][i]
        x = x + attention(layer_norm(x, b["ln1"]), b["attn"], num_heads)
        x = x + linear(gelu_tanh(linear(layer_norm(x, b["ln2"]), b["mlp"]["fc"])), b["mlp"]["proj"])
    return layer_norm(x, p["ln_f"])


def logits(params, tokens, num_heads):
    """Next-token logits (T, vocab) of one sequence of token ids."""
    return hidden(params, tokens, num_heads) @ _float64(params)["wte"]["embedding"].T


def _float64(tree):
    if isinstance(tree, dict):
        return {k: _float64(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float64)
