"""The nanoGPT's configurations, apart from the model so that they load without Flax (the command line is built
from them): :class:`GPTConfig` and its :data:`PRESETS` (:mod:`llm_bridge.nanogpt`), and the training run's
:class:`TrainConfig`, :class:`DataConfig` and :class:`ModelSpec` (:mod:`llm_bridge.nanogpt_train`), which both
modules re-export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collapse_jax import _checks
from collapse_jax.cli_options import option
from llm_bridge import bpe

# The matmul dtypes, by name (jax.numpy's dtypes of these names: GPTConfig.compute_dtype); names, not jax.numpy's
# objects, so that this module imports no JAX (the nanogpt commands' parsers: `collapse-jax --help`)
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class GPTConfig:
    """Model sizes. ``dim`` must be a multiple of ``num_heads``; ``dropout`` in [0, 1); ``dtype`` the matmul dtype."""

    vocab_size: int
    context_length: int
    num_layers: int
    num_heads: int
    dim: int
    dropout: float = 0.0
    bias: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "num_layers", "num_heads", "dim"):
            _checks.positive_int(name, getattr(self, name))
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of num_heads ({self.num_heads})")
        object.__setattr__(self, "dropout", _checks.in_interval("dropout", self.dropout, 0.0, 1.0, high_open=True))
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        check_model_fits(self, 4 * self.num_params(), "its float32 weights")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def compute_dtype(self):
        import jax.numpy as jnp

        return getattr(jnp, self.dtype)

    def num_params(self) -> int:
        """Parameter count (tied embedding counted once)."""
        d, b = self.dim, int(self.bias)
        per_layer = 4 * d + (3 * d * d + 3 * d * b) + (d * d + d * b) + (4 * d * d + 4 * d * b) + (4 * d * d + d * b)
        return self.vocab_size * d + self.context_length * d + self.num_layers * per_layer + 2 * d


# Optimiser steps: optax's and the schedule's step counters are int32.
MAX_STEPS = 2**31 - 1


def check_model_fits(cfg: GPTConfig, need: int, what: str) -> None:
    """A ValueError naming the model's sizes unless ``need`` bytes (``what``) fit in 80 % of the memory available:
    a user trial (2026-12-06) gave --dim or --layers 10**30, which wrote a run folder and then hung, or failed in
    XLA after minutes."""
    available = _checks.started_device_memory_bytes()
    if available and need > 0.8 * available:
        raise ValueError(f"the model (num_layers = {cfg.num_layers:,}, dim = {cfg.dim:,}, context_length = "
                         f"{cfg.context_length:,}, vocab_size = {cfg.vocab_size:,}: {cfg.num_params():,} parameters) "
                         f"needs about {need / 2**30:.3g} GiB for {what}, more than 80% of the "
                         f"{available / 2**30:.1f} GiB available; choose smaller sizes")


def check_training_fits(cfg: GPTConfig, batch_size: int) -> None:
    """A ValueError (:func:`check_model_fits`) unless training ``cfg`` on ``batch_size`` windows per step fits in
    memory, estimated as float32 weights, gradients and Adam's two moments (16 bytes a parameter) and the
    activations a step keeps for the backward pass (per token and layer about 16 ``dim`` numbers and one attention
    row per head, and the logits twice), in the matmul dtype (bfloat16: 2 bytes). Checked against a peak RSS of
    11.7 GiB (12.2 estimated: context 1024, batch 64, 4 layers, dim 256, bytes; a user trial, 2026-12-06)."""
    per_token = cfg.num_layers * (16 * cfg.dim + 2 * cfg.num_heads * cfg.context_length) + 2 * cfg.vocab_size
    width = 2 if cfg.dtype == "bfloat16" else 4
    need = 16 * cfg.num_params() + width * _checks.positive_int("batch_size", batch_size) * cfg.context_length \
        * per_token
    check_model_fits(cfg, need, f"training on batches of {batch_size:,} windows")


def vocab_bound(tokenizer: str, vocab_size: int) -> int:
    """The largest vocabulary a tokenizer option can give before it is trained: ``vocab_size`` for BPE, 257 (the
    bytes and end-of-text) for bytes."""
    return vocab_size if tokenizer == "bpe" else 257


# Model sizes without the vocabulary (it comes from the tokenizer). seed003: seed 003 Section 5.2.
PRESETS: dict[str, dict[str, int]] = {
    "seed003": dict(num_layers=4, num_heads=4, dim=256, context_length=128),
    "tiny": dict(num_layers=2, num_heads=2, dim=32, context_length=32),
    # four times seed003's non-embedding parameters (12.6 M: twice the width), for accelerators
    "seed003x4": dict(num_layers=4, num_heads=8, dim=512, context_length=128),
}


def preset_config(name: str, vocab_size: int, **overrides: Any) -> GPTConfig:
    """``PRESETS[name]`` with ``vocab_size``; keyword arguments that are not None override the preset."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    sizes = dict(PRESETS[name])
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    return GPTConfig(vocab_size=vocab_size, **sizes)


# ----------------------------------------------------------------------------------------------------------------
# Configuration (each field's metadata holds its ``nanogpt train`` flag and help: cli_options.add_config)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. ``steps``: schedule length and stop (None with ``minutes``: as many steps as
    the time budget allows, measured before training starts); ``minutes``: stop when this much wall time has
    passed (checkpoint and final evaluation follow)."""

    steps: int | None = option(5000, "optimiser steps = schedule length, >= 1 (with --minutes alone: as many as the "
                                     "budget allows, measured before training)")
    minutes: float | None = option(None, "wall-time budget, > 0: stop when it is spent, then checkpoint and evaluate",
                                   default_help="none")
    batch_size: int = option(32, "windows per step, >= 1")
    steps_per_call: int = option(8, "optimiser steps per compiled call, >= 1 (a lax.scan; the same numbers as one step "
                                    "per call, with fewer buffer allocations)")
    learning_rate: float = option(1e-3, "peak learning rate, > 0", flag="lr")
    min_lr_ratio: float = option(0.1, "final learning rate / peak, end of the cosine, in [0, 1]")
    warmup_steps: int = option(100, "linear warm-up steps, >= 0", flag="warmup")
    weight_decay: float = option(0.1, "AdamW decoupled weight decay on matrices, >= 0")
    grad_clip: float = option(1.0, "global gradient-norm clip, > 0")
    beta1: float = option(0.9, "Adam beta1, in [0, 1)")
    beta2: float = option(0.95, "Adam beta2, in [0, 1)")
    eval_every: int = option(250, "held-out loss and perplexity every this many steps, >= 1")
    eval_windows: int = option(64, "held-out windows of context+1 tokens, fixed for the run, >= 1")
    checkpoint_every: int = option(250, "Orbax checkpoint every this many steps, >= 1")
    keep_checkpoints: int = option(2, "newest checkpoints kept, >= 2")
    held_out_fraction: float = option(0.05, "fraction of documents held out for evaluation, in (0, 1)", flag="held-out")
    seed: int = option(0, "data split, initialisation, batches and dropout")

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps, minutes or both")
        if self.steps is not None and _checks.positive_int("steps", self.steps) > MAX_STEPS:
            raise ValueError(f"steps must be at most {MAX_STEPS:,} (int32 step counters), got {self.steps}")
        if _checks.nonnegative_int("warmup_steps", self.warmup_steps) > MAX_STEPS:
            raise ValueError(f"warmup_steps must be at most {MAX_STEPS:,}, got {self.warmup_steps}")
        if self.minutes is not None:
            _checks.in_interval("minutes", self.minutes, 0.0, math.inf, low_open=True, high_open=True)
        for name in ("batch_size", "steps_per_call", "eval_every", "eval_windows", "checkpoint_every"):
            _checks.positive_int(name, getattr(self, name))
        _checks.random_seed("seed", self.seed)
        if _checks.positive_int("keep_checkpoints", self.keep_checkpoints) < 2:
            raise ValueError(f"keep_checkpoints must be >= 2 (a corrupt latest step falls back to the previous "
                             f"one), got {self.keep_checkpoints}")
        _checks.in_interval("learning_rate", self.learning_rate, 0.0, math.inf, low_open=True, high_open=True)
        _checks.in_interval("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _checks.in_interval("weight_decay", self.weight_decay, 0.0, math.inf, high_open=True)
        _checks.in_interval("grad_clip", self.grad_clip, 0.0, math.inf, low_open=True, high_open=True)
        _checks.in_interval("beta1", self.beta1, 0.0, 1.0, high_open=True)
        _checks.in_interval("beta2", self.beta2, 0.0, 1.0, high_open=True)
        _checks.in_interval("held_out_fraction", self.held_out_fraction, 0.0, 1.0, low_open=True, high_open=True)


@dataclass(frozen=True)
class DataConfig:
    """The training text: ``source`` is ``"stdlib"`` (:func:`llm_bridge.corpus.stdlib_corpus`, cut into ``unit``
    s) or a ``.txt`` file or a folder of them (documents: blank-line separated paragraphs); ``tokenizer`` ``"bpe"``
    (trained on the training documents, ``vocab_size`` tokens) or ``"byte"``."""

    source: str = option("stdlib", "'stdlib' (the Python standard library's documentation) or a .txt file or folder "
                                   "of .txt files (documents: blank-line separated paragraphs)", flag="data")
    unit: str = option("paragraph", "document unit of the stdlib corpus", choices=("paragraph", "sentence"))
    tokenizer: str = option("bpe", "byte-level BPE trained on the training documents, or plain bytes",
                            choices=bpe.KINDS)
    vocab_size: int = option(4096, f"BPE vocabulary size, 257 to {bpe.MAX_VOCAB:,}")

    def __post_init__(self) -> None:
        if self.unit not in ("sentence", "paragraph"):
            raise ValueError(f"unit must be 'sentence' or 'paragraph', got {self.unit!r}")
        if self.tokenizer not in bpe.KINDS:
            raise ValueError(f"tokenizer must be one of {', '.join(bpe.KINDS)}, got {self.tokenizer!r}")
        bpe.check_vocab_size(self.vocab_size)
        if self.source != "stdlib":
            if not str(self.source).strip():  # (Path("") is the working folder, read as the training text)
                raise ValueError("source must be 'stdlib' or a .txt file or folder, got an empty string")
            if not Path(self.source).expanduser().exists():
                raise ValueError(f"source path {self.source!r} does not exist")  # (the CLI: --data path ...)
            # stored absolute, so that eval and --resume find the text from any working directory
            object.__setattr__(self, "source", str(Path(self.source).expanduser().resolve()))


@dataclass(frozen=True)
class ModelSpec:
    """Model sizes before the vocabulary is known: a preset (:data:`llm_bridge.nanogpt.PRESETS`) and overrides."""

    preset: str = option("seed003", "model sizes to start from: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
                         choices=tuple(PRESETS))
    num_layers: int | None = option(None, "number of transformer blocks, >= 1 (overrides the preset)", flag="layers",
                                    default_help="the preset's")
    num_heads: int | None = option(None, "attention heads, >= 1 (dim must be a multiple)", flag="heads",
                                   default_help="the preset's")
    dim: int | None = option(None, "embedding width, >= 1", default_help="the preset's")
    context_length: int | None = option(None, "context length in tokens, >= 1", flag="context",
                                        default_help="the preset's")
    dropout: float = option(0.0, "dropout rate in [0, 1)")
    dtype: str = option("float32", "matmul dtype; parameters stay float32 (bfloat16 for accelerators)",
                        choices=("float32", "bfloat16"))

    def resolve(self, vocab_size: int) -> GPTConfig:
        return preset_config(self.preset, vocab_size, num_layers=self.num_layers, num_heads=self.num_heads,
                             dim=self.dim, context_length=self.context_length, dropout=self.dropout,
                             dtype=self.dtype)
