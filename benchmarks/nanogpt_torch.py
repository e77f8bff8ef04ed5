"""The nanoGPT architecture of ``llm_bridge.nanogpt`` written again in PyTorch, for the Flax-vs-PyTorch speed benchmark.

Same layers, same order, same initialisation law: token + learned position embeddings, pre-LayerNorm blocks
(fused qkv attention with a causal mask, GELU-tanh MLP of width 4 dim), a final LayerNorm and logits tied to the token
embedding. ``tests/test_nanogpt_torch_twin.py`` copies a Flax model's weights into this one and checks that both give
the same logits, so the benchmark compares the same network. Not part of the library: benchmarks only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(dim, eps=1e-5, bias=bias)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.attn_out = nn.Linear(dim, dim, bias=bias)
        self.ln2 = nn.LayerNorm(dim, eps=1e-5, bias=bias)
        self.fc = nn.Linear(dim, 4 * dim, bias=bias)
        self.mlp_out = nn.Linear(4 * dim, dim, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.attn_out(y.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh")))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, context_length: int, num_layers: int, num_heads: int, dim: int,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(context_length, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, num_heads, dropout, bias) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(dim, eps=1e-5, bias=bias)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * num_layers) if name.endswith(("attn_out.weight", "mlp_out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok.weight.T


def adamw(model: GPT, lr: float, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW with betas (0.9, 0.95), weight decay on matrices only (as the Flax trainer)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


def train_step(model: GPT, opt: torch.optim.Optimizer, batch: torch.Tensor, clip: float = 1.0,
               autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One step on ``batch`` (batch, context + 1) token ids: next-token cross-entropy, clipping, AdamW. Returns the
    loss as a tensor (no host synchronisation; ``float()`` it to wait). ``autocast_dtype`` (e.g. bfloat16 on a GPU):
    forward and backward under ``torch.autocast`` with float32 master weights, as the Flax model's ``dtype``."""
    with torch.autocast(batch.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach()


if __name__ == "__main__":  # a module, not a script: say so instead of exiting silently
    print(__doc__.strip())
    print("\nRun the speed comparison with: python3 benchmarks/bench_nanogpt.py --help")
