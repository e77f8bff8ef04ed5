"""The recursive-training run's configuration (:class:`RecursiveConfig`, its settings and presets), apart from the
run so that it loads without Flax (the command line is built from it); :mod:`llm_bridge.recursive_train` re-exports
it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collapse_jax import _checks, schedules
from llm_bridge import bpe
from llm_bridge.generators import check_temperature
from llm_bridge.nanogpt_config import GPTConfig, TrainConfig, check_training_fits


@dataclass(frozen=True)
class Setting:
    """One recursion: where fresh data come from (``fresh``: none, fixed or decaying ``alpha_t``), whether the
    training set accumulates, whether a classifier filters it, and where each generation's weights start
    (``init``: scratch = the same fresh initialisation, base = generation 0's weights, carry = generation t-1's)."""

    fresh: str
    accumulate: bool = False
    filtered: bool = False
    init: str = "scratch"
    source: str = ""


SETTINGS: dict[str, Setting] = {
    "synthetic": Setting("none", source="seed 003 setting 0"),
    "accumulate": Setting("none", accumulate=True, source="seed 003 setting 1"),
    "fixed": Setting("fixed", source="seed 003 setting 2"),
    "decaying": Setting("decaying", source="seed 003 setting 3"),
    "filtered": Setting("fixed", filtered=True, source="seed 003 Appendix D"),
    "s1-base": Setting("none", init="base", source="seed 002 S1"),
    "s2-carry": Setting("none", init="carry", source="seed 002 S2"),
}
N_GROWTH = ("constant", "linear")


@dataclass(frozen=True)
class RecursiveConfig:
    """Every choice of a run (the CPU default; :data:`PRESETS` holds the larger GPU one). Validated on creation.

    Data: ``source`` ("stdlib" or a .txt file/folder of blank-line separated documents) cut to ``doc_words`` words
    per document; per repetition the documents are permuted, then ``held_out_docs`` (perplexity, prompt bank),
    ``classifier_docs`` real documents (half to fit the filter, half to measure its errors) and the fresh pool.
    Sizes: ``n0`` documents at generation 0, then ``n_t = n`` (constant) or ``n t`` (linear).
    """

    settings: tuple[str, ...] = field(default=tuple(SETTINGS), metadata={
        "help": "comma-separated settings to run: " + "; ".join(
            f"{k} ({v.source}: fresh data {v.fresh}{', accumulate' if v.accumulate else ''}"
            f"{', classifier filter' if v.filtered else ''}, init {v.init})" for k, v in SETTINGS.items())})
    generations: int = field(default=3, metadata={"help": "recursive generations after generation 0, >= 1"})
    repetitions: int = field(default=3, metadata={
        "help": "repetitions, >= 1 (each permutes the documents anew and reseeds everything)"})
    seed: int = field(default=0, metadata={
        "help": "splits, initialisations, batches, samples, prompt-bank responses, Sigma block"})
    source: str = field(default="stdlib", metadata={
        "help": "real text: 'stdlib' (Python standard-library documentation) or a .txt file or folder of them "
                "(documents: blank-line separated paragraphs)"})
    doc_words: int = field(default=48, metadata={
        "help": "each real document is cut to its first this many words, >= 1"})
    n0: int = field(default=400, metadata={"help": "real documents generation 0 is trained on, >= 1"})
    n: int = field(default=400, metadata={
        "help": "new documents per later generation, >= 1 (n_t = n, or n t with --n-growth linear)"})
    n_growth: str = field(default="constant", metadata={"help": "growth of n_t: constant or linear"})
    alpha: float = field(default=0.5, metadata={
        "help": "fresh real fraction alpha in [0, 1] of the fixed and filtered settings; the decaying one uses "
                "alpha t^-gamma"})
    gamma: float = field(default=1.0, metadata={"help": "decay exponent of the decaying setting, >= 0"})
    held_out_docs: int = field(default=200, metadata={
        "help": "real documents held out for perplexity, >= prompts (the prompt bank takes its prompts from them)"})
    classifier_docs: int = field(default=100, metadata={
        "help": "real documents for the filter's classifier, >= 4 (half fit, half measure type-I), and as many "
                "synthetic ones (type-II)"})
    vocab_size: int = field(default=512, metadata={
        "help": f"BPE vocabulary, 257 to {bpe.MAX_VOCAB:,} (trained on generation 0's documents; the multinomial K)"})
    num_layers: int = field(default=2, metadata={"help": "transformer blocks, >= 1", "flag": "layers"})
    num_heads: int = field(default=2, metadata={"help": "attention heads, >= 1, dividing --dim", "flag": "heads"})
    dim: int = field(default=64, metadata={"help": "embedding width, >= 1, a multiple of --heads"})
    context_length: int = field(default=64, metadata={
        "help": "context in tokens, > --sample-tokens and --response-tokens", "flag": "context"})
    dropout: float = field(default=0.0, metadata={"help": "dropout rate in [0, 1)"})
    dtype: str = field(default="float32", metadata={"help": "matmul dtype (float32, or bfloat16 on accelerators)"})
    steps: int = field(default=200, metadata={"help": "AdamW steps per generation, >= 1 (warm-up then cosine)"})
    batch_size: int = field(default=16, metadata={"help": "windows per step, >= 1"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate, > 0", "flag": "lr"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps, >= 0", "flag": "warmup"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final learning rate / peak, in [0, 1]"})
    weight_decay: float = field(default=0.1, metadata={"help": "decoupled weight decay on matrices, >= 0"})
    sample_tokens: int = field(default=60, metadata={
        "help": "new tokens per synthetic document, in [1, context - 1] (unconditional samples, cut at EOT)"})
    temperature: float = field(default=1.0, metadata={
        "help": "sampling temperature of synthetic documents and prompt-bank responses, in (0, 3.4e38]"})
    prompts: int = field(default=16, metadata={
        "help": "prompts in the frozen prompt bank, in [1, held-out-docs] (first words of held-out documents)"})
    responses: int = field(default=4, metadata={
        "help": "responses per prompt, >= 1, prompts x responses >= 2 (Sigma uses all their embeddings)"})
    prompt_words: int = field(default=4, metadata={"help": "words of a held-out document that make a prompt, >= 1"})
    response_tokens: int = field(default=32, metadata={"help": "new tokens per response, in [1, context - 1]"})
    ridge: float = field(default=1.0, metadata={"help": "L2 penalty of the real-vs-synthetic logistic regression, > 0"})

    def __post_init__(self) -> None:
        names = tuple(self.settings)
        object.__setattr__(self, "settings", names)
        if not names:
            raise ValueError("settings must name at least one setting")
        for name in names:
            if name not in SETTINGS:
                raise ValueError(f"settings: unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"settings must not repeat a setting, got {', '.join(names)}")
        for name in ("generations", "repetitions", "doc_words", "n0", "n", "held_out_docs", "sample_tokens",
                     "prompts", "responses", "prompt_words", "response_tokens"):
            _checks.positive_int(name, getattr(self, name))
        if _checks.positive_int("classifier_docs", self.classifier_docs) < 4:
            raise ValueError(f"classifier_docs must be >= 4 (half fit, half measure), got {self.classifier_docs}")
        if self.n_growth not in N_GROWTH:
            raise ValueError(f"n_growth must be one of {', '.join(N_GROWTH)}, got {self.n_growth!r}")
        _checks.in_interval("alpha", self.alpha, 0.0, 1.0)
        _checks.in_interval("gamma", self.gamma, 0.0, math.inf, high_open=True)
        bpe.check_vocab_size(self.vocab_size)
        check_training_fits(self.gpt_config(self.vocab_size), self.batch_size)  # sizes, dropout, dtype, memory
        self.train_config(self.seed)                # steps, batch, learning rate, warm-up, decay, seed
        check_temperature(self.temperature)         # Sampling's range, checked before any training
        _checks.in_interval("ridge", self.ridge, 0.0, math.inf, low_open=True, high_open=True)
        for name in ("sample_tokens", "response_tokens"):
            if getattr(self, name) > self.context_length - 1:
                raise ValueError(f"{name} must be at most context_length - 1 = {self.context_length - 1}, "
                                 f"got {getattr(self, name)}")
        if self.prompts * self.responses < 2:
            raise ValueError("prompts * responses must be >= 2 (self-BLEU and Sigma need two responses)")
        if self.prompts > self.held_out_docs:
            raise ValueError(f"prompts must be at most held_out_docs = {self.held_out_docs} (one held-out "
                             f"document per prompt), got {self.prompts}")
        if self.source != "stdlib" and not Path(self.source).exists():
            raise ValueError(f"source: data path {self.source!r} does not exist")

    # --- schedules ----------------------------------------------------------------------------------------------
    def sizes(self) -> np.ndarray:
        """``n_t`` in documents, (generations + 1,): ``n0``, then ``n`` or ``n t``."""
        t = np.arange(self.generations + 1)
        n = np.full(t.shape, self.n) if self.n_growth == "constant" else self.n * np.maximum(t, 1)
        n[0] = self.n0
        return n.astype(np.int64)

    def alpha_schedule(self, setting: str) -> np.ndarray:
        """``alpha_t`` (generations + 1,), ``alpha_0 = 1``."""
        fresh = SETTINGS[setting].fresh
        if fresh == "none":
            return schedules.pure_synthetic_alpha(self.generations)
        if fresh == "fixed":
            return schedules.constant_alpha(self.alpha, self.generations)
        return schedules.power_decay_alpha(self.gamma, self.generations, scale=self.alpha)

    def fresh_counts(self, setting: str) -> np.ndarray:
        """Fresh real documents of each generation: ``n0``, then ``round(alpha_t n_t)``."""
        return np.rint(self.alpha_schedule(setting) * self.sizes()).astype(np.int64)

    @property
    def num_samples(self) -> int:
        """Unconditional samples per generation: the most synthetic documents a next generation takes, plus the
        classifier's synthetic documents when a setting filters."""
        extra = self.classifier_docs if any(SETTINGS[s].filtered for s in self.settings) else 0
        return int(self.sizes()[1:].max()) + extra

    @property
    def reserved_classifier_docs(self) -> int:
        """Real documents set aside for the classifier: ``classifier_docs`` when a setting filters, else none."""
        return self.classifier_docs if any(SETTINGS[s].filtered for s in self.settings) else 0

    def documents_needed(self) -> int:
        """Real documents a repetition needs: held-out, the classifier's (when a setting filters) and the largest
        fresh-pool demand."""
        pool = max(int(self.fresh_counts(s).sum()) for s in self.settings)
        return self.held_out_docs + self.reserved_classifier_docs + pool

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, context_length=self.context_length, num_layers=self.num_layers,
                         num_heads=self.num_heads, dim=self.dim, dropout=self.dropout, dtype=self.dtype)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, learning_rate=self.learning_rate,
                              min_lr_ratio=self.min_lr_ratio, warmup_steps=self.warmup_steps,
                              weight_decay=self.weight_decay, seed=seed)


# The GPU preset: seed 003 Appendix C.3's model (4 layers, 4 heads, 256-d, 128-token context, batch 32), 10
# generations and 5 repetitions on longer documents.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": dict(generations=10, repetitions=5, n0=1500, n=1500, doc_words=100, held_out_docs=500,
                classifier_docs=400, vocab_size=2048, num_layers=4, num_heads=4, dim=256, context_length=128,
                steps=1500, batch_size=32, learning_rate=1e-3, warmup_steps=100, sample_tokens=127, prompts=64,
                responses=8, response_tokens=48, dtype="bfloat16"),
}


def preset(name: str, **overrides: Any) -> RecursiveConfig:
    """``RecursiveConfig`` of preset ``name`` (cpu or gpu) with keyword overrides (None values ignored)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return RecursiveConfig(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})
