"""LLM Web Dynamics with real generators (seed 000, Algorithm 1, Section 4.1, Figures 2-3).

``n`` language models with different priors share an internet ``A(t)`` of texts about one topic. At every step
t = 0..T each model ``i``

1. retrieves ``k_t = floor(beta |A(t)|)`` texts of ``A(t)`` uniformly without replacement (Algorithm 1, line 3);
2. reads them, by one of two modes:
   ``context`` (the seed): the retrieved texts, in the order drawn, then the query, joined by ``separator``, form
   the prompt; texts are added while prompt + ``max_new_tokens`` fits the model's context window and the number
   that fit is recorded; ``finetune`` (beyond the seed): ``finetune_steps`` optimiser steps on the retrieved texts
   (the literal analogue of the GMM network's weight update), carried forward from step to step, and the prompt is
   the query alone;
3. generates ``L`` answers (line 4); an answer is the first sentence of query + continuation (the seed asks its
   models for exactly one sentence; ``query_is_prefix=False``: of the continuation alone, for instruction models);
4. the answers are embedded (MiniLM by default; line 5), ``X_i(t)`` = their mean (Eq. 1), ``D_ij = ||X_i - X_j||``
   (Eq. 2) and ``||D(t)||_F`` recorded (line 8); each model's first answer is posted: ``A(t+1) = A(t) + n`` texts
   (line 9).

Default generators: nanoGPTs (:mod:`llm_bridge.nanogpt`) trained here, each on its own contiguous part of the
standard-library corpus (:mod:`llm_bridge.corpus`, topics first, then docstrings by source path), so each starts
from its own view of the language; ``hf``: Hugging Face causal LMs from local folders instead.

Run folder (everything written atomically; ``steps/step-TTTT.json`` is written last for its step, so its presence
marks the step done): ``config.json``; ``human.json`` / ``human.npz`` (A(0), the query, A(0)'s embeddings);
``base/`` (the trained nanoGPTs and their text parts, cached: a resumed run does not retrain); ``steps/step-TTTT.npz``
(embeddings, num_models x L x dim) and ``.json`` (retrieved indices, how many fit, prompts' token counts, answers,
raw continuations, posted texts, fine-tuning losses, ||D||_F, D, spread, diversity); ``state/step-TTTT/`` (finetune
mode: each model after step t); then :func:`analyse`'s outputs (:mod:`llm_bridge.llm_web_report`).

Determinism and resume: model i's retrieval at step t uses ``SeedSequence([seed, t, i, 0])``, its sampling seed
``[seed, t, i, 1]``, its fine-tuning seed ``[seed, t, i, 2]``; nothing else carries over between steps but the
internet (rebuilt from the stored posts) and, in finetune mode, the models (reloaded from ``state/``). A killed run
resumed with :func:`resume` therefore ends with the same texts, embeddings and metrics as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from collapse_jax import _checks
from collapse_jax.progress import bar
from collapse_jax.results import (RunFolder, atomic_savez, atomic_write_json, check_folder_creatable,
                                  config_differences, read_json, read_npz)
from llm_bridge import bpe
from llm_bridge.generators import Generator, Sampling

MODES = ("context", "finetune")
RETRIEVE, SAMPLE, FINETUNE = 0, 1, 2          # the last word of each step's seed sequences
STEPS, STATE, BASE = "steps", "state", "base"


HF_DTYPES = ("float32", "bfloat16", "float16", "float64", "auto")  # --hf-dtype (torch dtype names)


@dataclass(frozen=True)
class WebConfig:
    """One LLM Web Dynamics experiment; every field is validated on construction (ValueError naming it).

    Network (seed 000 Algorithm 1): ``num_models`` (n), ``samples`` (L answers per model and step), ``beta``,
    ``num_steps`` (T: steps t = 0..T), ``num_human`` (|A(0)|: standard-library sentences containing ``topic``),
    ``query``, ``mode`` (``context`` or ``finetune``), ``separator`` (joins retrieved texts and query).
    Sampling: ``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``. Finetune mode: ``finetune_steps``,
    ``finetune_lr``, ``finetune_batch``. Base nanoGPTs: ``model_*`` sizes, ``tokenizer`` / ``vocab_size``,
    ``train_steps``, ``train_batch``, ``train_lr``; ``corpus_docstrings`` False trains on the language reference
    topics only (small, for tests). ``hf``: local Hugging Face causal LM folders instead (one per model;
    ``hf_dtype`` their weights' dtype). ``encoder``: a sentence-transformers folder (None: the packaged
    all-MiniLM-L6-v2). GMM comparison: ``gmm_replicates``, ``gmm_posts`` (points each GMM posts per step: 1 matches
    Algorithm 1's internet, which grows by n per step; the seed's Algorithm 3 posts L), ``proxy_dims`` (PCA
    dimensions of the calibrated proxy), ``proxy_components`` (B = 1..this; None: min(8, n L)). ``seed``: every
    random draw.
    """

    num_models: int = field(default=3, metadata={"help": "n, models in the network, >= 2 (with --hf: one per folder)"})
    samples: int = field(default=16, metadata={"help": "L, answers per model and step, >= 2"})
    beta: float = field(default=0.5, metadata={
        "help": "fraction of the internet each model retrieves per step, k_t = floor(beta |A(t)|), in (0, 1]"})
    num_steps: int = field(default=30, metadata={"help": "T: steps t = 0..T, >= 1"})
    num_human: int = field(default=20, metadata={
        "help": "|A(0)|: standard-library sentences about --topic in the initial internet, >= 1"})
    topic: str = field(default="exception", metadata={"help": "word the human sentences of A(0) contain"})
    query: str = field(default="When an exception is raised", metadata={
        "help": "the fixed query; the answer is the first sentence of query + continuation"})
    query_is_prefix: bool = field(default=True, metadata={
        "help": "the answer continues the query (base LMs); 'false': the answer is the continuation alone "
                "(instruction models)"})
    mode: str = field(default="context", metadata={
        "help": "context: retrieved texts in the prompt (the seed); finetune: optimiser steps on them instead",
        "choices": MODES})
    separator: str = field(default=" ", metadata={
        "help": "string joining retrieved texts and the query in the prompt", "default_help": "' ' (a space)"})
    max_new_tokens: int = field(default=40, metadata={
        "help": "new tokens per answer, >= 1 (below --model-context for nanoGPTs)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature, in (0, 3.4e38]"})
    top_k: int | None = field(default=None, metadata={
        "help": "keep the k most likely tokens, >= 1", "default_help": "all"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling threshold in (0, 1]"})
    finetune_steps: int = field(default=4, metadata={"help": "finetune mode: optimiser steps per model and step, >= 1"})
    finetune_lr: float = field(default=3e-4, metadata={"help": "finetune mode: learning rate, > 0"})
    finetune_batch: int = field(default=8, metadata={
        "help": "finetune mode: windows (nanoGPT) or texts (HF) per optimiser step, >= 1"})
    model_layers: int = field(default=2, metadata={"help": "base nanoGPTs: transformer blocks, >= 1"})
    model_heads: int = field(default=4, metadata={"help": "base nanoGPTs: attention heads, >= 1, dividing --model-dim"})
    model_dim: int = field(default=128, metadata={"help": "base nanoGPTs: embedding width, >= 1"})
    model_context: int = field(default=128, metadata={
        "help": "base nanoGPTs: context window in tokens, > --max-new-tokens"})
    tokenizer: str = field(default="bpe", metadata={
        "help": "base nanoGPTs: bpe (trained on each model's part) or byte", "choices": ("bpe", "byte")})
    vocab_size: int = field(default=2048, metadata={
        "help": f"base nanoGPTs: BPE vocabulary size, 257 to {bpe.MAX_VOCAB:,}"})
    train_steps: int = field(default=400, metadata={"help": "base nanoGPTs: training steps each, >= 1"})
    train_batch: int = field(default=16, metadata={"help": "base nanoGPTs: windows per training step, >= 1"})
    train_lr: float = field(default=2e-3, metadata={"help": "base nanoGPTs: peak learning rate, > 0"})
    corpus_docstrings: bool = field(default=True, metadata={
        "help": "train on (and draw A(0) from) the docstrings too; 'false': language reference topics only"})
    hf: tuple[str, ...] = field(default=(), metadata={
        "help": "Hugging Face causal LM folders (save_pretrained), one per model, instead of nanoGPTs",
        "nargs": "+", "metavar": "PATH", "default_help": "none: nanoGPTs"})
    hf_dtype: str | None = field(default=None, metadata={
        "help": "--hf models' weight dtype: float32, bfloat16 (large models), float16, float64 or auto",
        "default_help": "float32"})
    encoder: str | None = field(default=None, metadata={
        "help": "sentence-transformers folder of the embedding model", "default_help": "the packaged all-MiniLM-L6-v2"})
    gmm_replicates: int = field(default=1000, metadata={
        "help": "GMM network replicates for each band, >= 1 (the GMM band and every calibrated proxy)"})
    gmm_posts: int = field(default=1, metadata={
        "help": "points each GMM posts per step, >= 1 (1 matches Algorithm 1's internet; the seed's Algorithm 3 "
                "posts L)"})
    proxy_dims: int = field(default=3, metadata={"help": "PCA dimensions of the calibrated GMM proxy, >= 1"})
    proxy_components: int | None = field(default=None, metadata={
        "help": "calibrated proxies with B = 1..this components, in [1, n L]", "default_help": "min(8, n L)"})
    seed: int = field(default=0, metadata={
        "help": "every draw (retrieval, sampling, fine-tuning, training, GMM replicates)"})

    def __post_init__(self) -> None:
        # absolute, so that --resume from another working directory finds the same folders (a relative one failed,
        # or found another folder of that name)
        object.__setattr__(self, "hf", tuple(_absolute(str(p)) for p in self.hf))
        if self.encoder is not None:
            object.__setattr__(self, "encoder", _absolute(self.encoder))
        for p in self.hf:  # (before the count: one missing folder was reported as num_models = 1; a user trial)
            if not Path(p).expanduser().is_dir():
                raise ValueError(f"hf model folder {p!r} does not exist")
        if isinstance(self.num_models, int) and not isinstance(self.num_models, bool) and self.num_models < 2:
            raise ValueError(f"num_models must be an integer >= 2 (a distance matrix needs two models; with --hf one "
                             f"model folder per model), got {self.num_models}")
        if isinstance(self.samples, int) and not isinstance(self.samples, bool) and self.samples < 2:
            raise ValueError(f"samples must be an integer >= 2 (the noise floor's spread needs two answers per model), "
                             f"got {self.samples}")
        if self.proxy_components is None and all(isinstance(getattr(self, name), int) and
                                                 not isinstance(getattr(self, name), bool)
                                                 for name in ("num_models", "samples")):
            # (a fixed default of 8 refused every run with n L < 8 for a flag the user never gave; a user trial,
            # 2026-12-07); resolved here, so config.json records the number
            object.__setattr__(self, "proxy_components", min(8, self.num_models * self.samples))
        for name in ("num_models", "samples", "num_steps", "num_human", "max_new_tokens", "finetune_steps",
                     "finetune_batch", "model_layers", "model_heads", "model_dim", "model_context", "train_steps",
                     "train_batch", "gmm_replicates", "gmm_posts", "proxy_dims", "proxy_components"):
            _checks.positive_int(name, getattr(self, name))
        _checks.random_seed("seed", self.seed)
        _checks.in_interval("beta", self.beta, 0.0, 1.0, low_open=True)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("topic", "query"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not isinstance(self.separator, str):
            raise ValueError(f"separator must be a string, got {self.separator!r}")
        Sampling(self.max_new_tokens, self.temperature, self.top_k, self.top_p)      # validates the sampling
        _checks.in_interval("finetune_lr", self.finetune_lr, 0.0, math.inf, low_open=True, high_open=True)
        _checks.in_interval("train_lr", self.train_lr, 0.0, math.inf, low_open=True, high_open=True)
        if self.model_dim % self.model_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be a multiple of model_heads ({self.model_heads})")
        bpe.check_vocab_size(self.vocab_size)
        if not self.hf:  # the base models' sizes, steps and memory (10**30 was taken, then hung or failed in XLA
            # after minutes; a user trial, 2026-12-06)
            from llm_bridge import nanogpt_config as nc

            for name in ("train_steps", "finetune_steps"):
                if getattr(self, name) > nc.MAX_STEPS:
                    raise ValueError(f"{name} must be at most {nc.MAX_STEPS:,} (int32 step counters), got "
                                     f"{getattr(self, name)}")
            try:
                nc.check_training_fits(nc.GPTConfig(nc.vocab_bound(self.tokenizer, self.vocab_size),
                                                    self.model_context, self.model_layers, self.model_heads,
                                                    self.model_dim),
                                       max(self.train_batch, self.finetune_batch if self.mode == "finetune" else 1))
            except ValueError as exc:  # (named as the fields that set them)
                raise ValueError(f"model_layers, model_dim, model_context, train_batch or finetune_batch too large: "
                                 f"{exc}") from None
        if self.max_new_tokens >= self.model_context and not self.hf:
            raise ValueError(f"max_new_tokens must be below model_context = {self.model_context}, got "
                             f"{self.max_new_tokens}")
        if self.tokenizer not in ("bpe", "byte"):
            raise ValueError(f"tokenizer must be 'bpe' or 'byte', got {self.tokenizer!r}")
        if self.hf_dtype is not None and self.hf_dtype not in HF_DTYPES:
            raise ValueError(f"hf_dtype must be one of {', '.join(HF_DTYPES)}, got {self.hf_dtype!r}")
        if self.hf_dtype == "float16" and self.mode == "finetune":  # (NaN weights after the first step's AdamW:
            # refused by HFCausalLM.finetune, here before any model loads; a user trial, 2026-12-06)
            raise ValueError("hf_dtype float16 cannot be fine-tuned (AdamW's epsilon is 0 in float16: every weight "
                             "turns NaN at the first step); use float32 or bfloat16 with mode finetune")
        if self.hf:
            if len(self.hf) != self.num_models:
                raise ValueError(f"hf must name one model folder per model: num_models = {self.num_models} but "
                                 f"{len(self.hf)} folders were given")
            from llm_bridge.hf_causal import checkpoint_folder

            for p in self.hf:
                try:
                    checkpoint_folder(p)
                except ValueError as exc:
                    raise ValueError(f"hf {exc}") from None
        if self.encoder is not None:  # a saved sentence-transformers folder, checked before any run folder is made
            from llm_bridge.encoders import sentence_transformer_folder

            try:
                sentence_transformer_folder(self.encoder, "encoder")
            except ValueError as exc:  # (the messages of the files inside name the folder as "path")
                raise ValueError(str(exc) if str(exc).startswith("encoder") else f"encoder: {exc}") from None
        if self.proxy_dims > self.num_models * self.samples - 1:  # was cut to that silently (config.json kept it)
            raise ValueError(f"proxy_dims must be at most num_models * samples - 1 = "
                             f"{self.num_models * self.samples - 1} (the PCA of the t = 0 answers has no more), got "
                             f"{self.proxy_dims}")
        if self.proxy_components > self.num_models * self.samples:
            raise ValueError(f"proxy_components must be at most num_models * samples = "
                             f"{self.num_models * self.samples} (the t = 0 answers it is fitted to), got "
                             f"{self.proxy_components}")
        for name in ("query_is_prefix", "corpus_docstrings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.mode == "context" and not self.hf and self.tokenizer == "byte":
            # known before any training with byte tokens (EOT + one per byte; fit_context raised it only after the
            # base models had trained, and the folder kept a configuration that could never run: a user trial)
            tokens, room = 1 + len(self.query.encode("utf-8")), self.model_context - self.max_new_tokens
            if tokens > room:
                raise ValueError(f"query: it alone takes {tokens} byte tokens, more than the {room} that "
                                 f"max_new_tokens = {self.max_new_tokens} leaves of model_context = "
                                 f"{self.model_context}; shorten the query, lower max_new_tokens or raise "
                                 "model_context")

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.max_new_tokens, self.temperature, self.top_k, self.top_p)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the form ``config.json`` stores)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "WebConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise ValueError(f"unknown configuration fields {unknown}")
        return cls(**{k: tuple(v) if k == "hf" else v for k, v in saved.items()})


def _absolute(path: Any) -> Any:
    """``path`` (a str or path) as an absolute path string, ``~`` expanded; anything else as given (refused later)."""
    if isinstance(path, (str, os.PathLike)) and str(path).strip():
        return str(Path(path).expanduser().absolute())
    return path


# Presets: the CPU default (finishes in minutes on 2 cores) and the seed's Section 4.1 network sizes.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "paper": dict(num_models=3, samples=40, beta=0.5, num_steps=60),
}


def preset(name: str, **overrides: Any) -> WebConfig:
    """:data:`PRESETS` ``[name]`` with ``overrides`` (None values ignored)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return WebConfig(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


# ----------------------------------------------------------------------------------------------------------------
# The internet, the models, the encoder
# ----------------------------------------------------------------------------------------------------------------


def step_seed(cfg: WebConfig, t: int, i: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([cfg.seed, t, i, stream])


def _check_base_model(run: Path, cfg: WebConfig, i: int, text_file: Path, text: str) -> None:
    """A ValueError unless the base nanoGPT in ``run`` (e.g. a ``base/`` folder copied from another run, as the docs
    suggest) was trained as this configuration trains model ``i``: its architecture, tokenizer, training settings and
    training text (``text_file`` against ``text``). Without the check a copied base of other sizes was used while the
    report named this run's."""
    saved = json.loads((run / "config.json").read_text())["config"]
    want = {"spec.num_layers": cfg.model_layers, "spec.num_heads": cfg.model_heads, "spec.dim": cfg.model_dim,
            "spec.context_length": cfg.model_context, "data.tokenizer": cfg.tokenizer,
            "data.vocab_size": cfg.vocab_size, "train.steps": cfg.train_steps, "train.batch_size": cfg.train_batch,
            "train.learning_rate": cfg.train_lr, "train.seed": cfg.seed + i}
    differ = [f"{k}: {saved.get(k.split('.')[0], {}).get(k.split('.')[1])!r} (this run: {v!r})"
              for k, v in want.items() if saved.get(k.split(".")[0], {}).get(k.split(".")[1]) != v]
    if not text_file.is_file() or text_file.read_text(encoding="utf-8") != text:
        differ.append(f"its training text {str(text_file)!r} (this run's differs: seed, topic or corpus)")
    if differ:
        raise ValueError(f"{str(run)!r} holds a base model trained otherwise than this run asks ({'; '.join(differ)});"
                         f" remove {str(run.parent)!r} to train the base models anew, or run with their settings")


def human_internet(cfg: WebConfig) -> list[str]:
    """``A(0)``: ``num_human`` standard-library sentences (at most 200 characters) with a word that starts with
    ``topic`` (case-insensitive: "exception" also finds "Exceptions"), drawn without replacement with ``SeedSequence([seed])``, in corpus order."""
    from llm_bridge import corpus

    pattern = re.compile(rf"\b{re.escape(cfg.topic.strip())}", re.IGNORECASE)
    texts = corpus.stdlib_corpus(corpus.CorpusConfig(docstrings=cfg.corpus_docstrings)).texts
    pool = [t for t in texts if len(t) <= 200 and pattern.search(t)]
    if not pool:
        raise ValueError(f"topic: no standard-library sentence (of at most 200 characters) has a word starting with "
                         f"{cfg.topic!r}; choose another topic")
    if len(pool) < cfg.num_human:
        raise ValueError(f"num_human must be at most {len(pool)}, the standard-library sentences about topic "
                         f"{cfg.topic!r}, got {cfg.num_human}")
    pick = np.sort(np.random.default_rng(np.random.SeedSequence([cfg.seed])).choice(len(pool), cfg.num_human,
                                                                                  replace=False))
    return [pool[j] for j in pick]


def training_parts(cfg: WebConfig) -> list[list[str]]:
    """The base nanoGPTs' texts: the stdlib paragraph corpus cut into ``num_models`` contiguous parts."""
    from llm_bridge import corpus

    docs = corpus.stdlib_corpus(corpus.CorpusConfig(unit="paragraph", max_chars=4000,
                                                    docstrings=cfg.corpus_docstrings)).texts
    if len(docs) < 2 * cfg.num_models:  # each trains on its part and holds some of it out
        raise ValueError(f"num_models must be at most {len(docs) // 2} without --hf: each base nanoGPT trains on its "
                         f"own part of the {len(docs)} standard-library paragraphs (corpus_docstrings = "
                         f"{cfg.corpus_docstrings}), at least 2 each, got {cfg.num_models}")
    cuts = np.linspace(0, len(docs), cfg.num_models + 1).round().astype(int)
    return [list(docs[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def base_generators(cfg: WebConfig, folder: Path | None, *, progress: bool | None = None) -> list[Generator]:
    """The models at t = 0: ``hf`` folders loaded, or nanoGPTs trained into ``folder/base/model-i`` (a finished
    training is loaded, an interrupted one resumed, so no model is trained twice; ``folder`` may be None with
    ``hf``)."""
    if cfg.hf:
        from llm_bridge.hf_causal import hf_causal_lm

        return [hf_causal_lm(p, dtype=cfg.hf_dtype) for p in cfg.hf]
    from llm_bridge import nanogpt_train as nt
    from llm_bridge.nanogpt import NanoGPT

    base = folder / BASE
    parts = None
    models = []
    for i in range(cfg.num_models):
        run = base / f"model-{i}"
        if (run / "manifest.json").is_file() or (run / "config.json").is_file():
            parts = parts or training_parts(cfg)
            _check_base_model(run, cfg, i, base / f"part-{i}.txt", "\n\n".join(parts[i]) + "\n")
        if (run / "manifest.json").is_file():
            models.append(NanoGPT.load(run))
        elif (run / "config.json").is_file():
            models.append(nt.resume(run, progress=progress).model)
        else:
            parts = parts or training_parts(cfg)
            text = base / f"part-{i}.txt"
            text.parent.mkdir(parents=True, exist_ok=True)
            text.write_text("\n\n".join(parts[i]) + "\n", encoding="utf-8")
            spec = nt.ModelSpec(num_layers=cfg.model_layers, num_heads=cfg.model_heads, dim=cfg.model_dim,
                                context_length=cfg.model_context)
            data = nt.DataConfig(source=str(text), tokenizer=cfg.tokenizer, vocab_size=cfg.vocab_size)
            tc = nt.TrainConfig(steps=cfg.train_steps, batch_size=cfg.train_batch, learning_rate=cfg.train_lr,
                                warmup_steps=min(30, cfg.train_steps // 10), eval_every=cfg.train_steps,
                                eval_windows=32, checkpoint_every=max(1, cfg.train_steps // 4),
                                seed=cfg.seed + i)
            models.append(nt.train(run, spec, data, tc, progress=progress).model)
    return models


def save_generator(model: Generator, folder: Path) -> None:
    """Write a model (nanoGPT or Hugging Face) to ``folder`` so :func:`load_generator` reads it back (whatever an
    interrupted earlier attempt left there is removed first)."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save(folder)


def load_generator(cfg: WebConfig, folder: Path) -> Generator:
    if cfg.hf:
        from llm_bridge.hf_causal import hf_causal_lm

        return hf_causal_lm(folder, dtype=cfg.hf_dtype)
    from llm_bridge.nanogpt import NanoGPT

    return NanoGPT.load(folder)


def load_encoder(cfg: WebConfig):
    """The run's sentence encoder (loaded once per process and folder: encoding does not change it)."""
    return _encoder(cfg.encoder)


@lru_cache(maxsize=2)
def _encoder(folder: str | None):
    from llm_bridge import encoders

    return encoders.minilm_encoder() if folder is None else encoders.sentence_transformer_encoder(folder)


# ----------------------------------------------------------------------------------------------------------------
# One step
# ----------------------------------------------------------------------------------------------------------------


def prompt_tokens(model: Generator, text: str) -> int:
    """Tokens the model's ``generate`` feeds for prompt ``text`` (its start token included)."""
    if hasattr(model, "encode_prompts"):           # nanoGPT: EOT + tokens
        return len(model.encode_prompts([text])[0])
    if hasattr(model, "encode"):                   # Hugging Face: start token + tokens
        return len(model.encode(text))
    raise ValueError(f"cannot count prompt tokens of {type(model).__name__}: it has neither encode_prompts nor "
                     "encode")


def fit_context(model: Generator, retrieved: Sequence[str], query: str, separator: str, max_new_tokens: int
                ) -> tuple[str, int]:
    """(prompt, m): the first ``m`` retrieved texts and the query joined by ``separator``, with ``m`` as large as
    keeps prompt + ``max_new_tokens`` within the model's context window."""
    room = model.context_length - max_new_tokens
    if room < 1:  # (it said "more than the -8 tokens that max_new_tokens = 40 leaves": a user trial, 2026-12-06)
        raise ValueError(f"max_new_tokens must be less than {model.name}'s context ({model.context_length} tokens), "
                         f"which must also hold the prompt; got {max_new_tokens}")

    def build(m: int) -> str:
        return separator.join([*retrieved[:m], query])

    if prompt_tokens(model, build(0)) > room:
        raise ValueError(f"the query alone takes {prompt_tokens(model, build(0))} tokens, more than the "
                         f"{room} that max_new_tokens = {max_new_tokens} leaves of {model.name}'s context "
                         f"({model.context_length}); shorten the query or lower max_new_tokens")
    m = 0
    while m < len(retrieved) and prompt_tokens(model, build(m + 1)) <= room:
        m += 1
    return build(m), m


def answer(cfg: WebConfig, continuation: str) -> str:
    """The posted/embedded answer: the first sentence of query + continuation (or of the continuation alone), without
    U+FFFD: a byte-level model's text cut inside a multi-byte character decodes to it, and it was posted to the
    internet the next step reads and embedded (14 of 15 posts of a byte-token run; a user trial, 2026-12-06), as
    recursive-train's samples were before their fix (docs/recursive_train.md, "The U+FFFD fix")."""
    from llm_bridge.corpus import sentences

    continuation = continuation.replace("\ufffd", "")
    text = " ".join(((cfg.query + continuation) if cfg.query_is_prefix else continuation).split())
    parts = sentences(text)
    return parts[0] if parts else (cfg.query if cfg.query_is_prefix else "")


def step_metrics(responses: Sequence[Sequence[str]], embeddings: np.ndarray) -> dict[str, Any]:
    """||D||_F, D, X-spread (:func:`llm_bridge.embedding_metrics.measure_embeddings`) and each model's diversity
    report (:func:`llm_bridge.diversity.diversity`) of one step: responses (n x L texts), embeddings (n, L, dim),
    in float64."""
    from llm_bridge.diversity import diversity
    from llm_bridge.embedding_metrics import measure_embeddings

    import jax

    with jax.enable_x64(True):          # float64 whatever the global flag: analyse() recomputes the same numbers
        m = measure_embeddings(embeddings, sigma=False, mds_components=None)
    return {"dnorm": m.dnorm, "distances": m.distances.tolist(), "spread": m.spread.tolist(),
            "diversity": [diversity(list(r), embeddings=e).as_dict() for r, e in zip(responses, embeddings)]}


def step_path(folder: Path, t: int, suffix: str) -> Path:
    return folder / STEPS / f"step-{t:04d}.{suffix}"


def completed_steps(folder: Path) -> int:
    """Number of consecutive finished steps from t = 0 (a step is finished when its JSON record exists)."""
    t = 0
    while step_path(folder, t, "json").is_file() and step_path(folder, t, "npz").is_file():
        t += 1
    return t


def read_step(folder: Path, t: int) -> tuple[dict[str, Any], np.ndarray]:
    """(record, embeddings (n, L, dim)) of step t."""
    record = read_json(step_path(folder, t, "json"))  # (a damaged file: a ValueError naming it)
    return record, read_npz(step_path(folder, t, "npz"), "embeddings")[0]


def run_step(cfg: WebConfig, t: int, models: list[Generator], internet: list[str], encoder) -> tuple[dict, np.ndarray]:
    """Algorithm 1, lines 2-9, for step t: (record, embeddings). ``models`` are fine-tuned in place in finetune
    mode."""
    k = int(math.floor(cfg.beta * len(internet) + 1e-9))
    sampling = cfg.sampling
    rec: dict[str, Any] = {"t": t, "models": [m.name for m in models], "internet_size": len(internet), "k": k, "retrieved": [], "fitted": [],
                           "prompt_tokens": [], "continuations": [], "responses": [], "finetune_losses": []}
    for i, model in enumerate(models):
        idx = np.random.default_rng(step_seed(cfg, t, i, RETRIEVE)).choice(len(internet), k, replace=False)
        retrieved = [internet[j] for j in idx]
        if cfg.mode == "context":
            prompt, fitted = fit_context(model, retrieved, cfg.query, cfg.separator, cfg.max_new_tokens)
            losses = []
        else:
            prompt, fitted = cfg.query, 0
            try:
                losses = [] if not retrieved else model.finetune(
                    retrieved, steps=cfg.finetune_steps, learning_rate=cfg.finetune_lr, batch_size=cfg.finetune_batch,
                    seed=int(step_seed(cfg, t, i, FINETUNE).generate_state(1)[0] >> 1), progress=False)
            except ValueError as exc:  # (named the generator's learning_rate, not this config's finetune_lr, which
                # the command line shows as --finetune-lr; a user trial, 2026-12-07)
                if not str(exc).startswith("fine-tuning diverged"):
                    raise
                raise ValueError(f"model {i} ({model.name}) at t = {t}: "
                                 + re.sub(r"\blearning_rate\b", "finetune_lr", str(exc))) from exc
        seed = int(step_seed(cfg, t, i, SAMPLE).generate_state(1)[0] >> 1)
        continuations = model.generate([prompt] * cfg.samples, sampling, seed=seed, progress=False)
        rec["retrieved"].append(idx.tolist())
        rec["fitted"].append(fitted)
        rec["prompt_tokens"].append(prompt_tokens(model, prompt))
        rec["continuations"].append(continuations)
        rec["responses"].append([answer(cfg, c) for c in continuations])
        rec["finetune_losses"].append(losses)
    if cfg.mode == "context" and k > 0 and not any(rec["fitted"]):  # (read nothing, silently; a user trial)
        warnings.warn(f"llm-web: no retrieved text fits in a prompt beside the query and max_new_tokens = "
                      f"{cfg.max_new_tokens} (context {min(m.context_length for m in models)} tokens): the models "
                      "read only the query; raise model_context or lower max_new_tokens", stacklevel=2)
    flat = [r for rows in rec["responses"] for r in rows]
    emb = encoder.encode(flat, batch_size=64, progress=False).reshape(cfg.num_models, cfg.samples, -1)
    rec["posted"] = [rows[0] for rows in rec["responses"]]
    rec["metrics"] = step_metrics(rec["responses"], emb)
    return rec, emb


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def saved_config(folder: str | Path) -> WebConfig | None:
    """The configuration an llm-web run folder was started with (None if it holds none)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} is not an llm-web configuration ({exc!r})") from None
    try:
        return WebConfig.from_dict(saved)
    except (ValueError, TypeError) as exc:  # (another command's run said only "unknown configuration fields [...]")
        what = f"a {saved['command']} run's" if isinstance(saved, dict) and "command" in saved else "another"
        raise ValueError(f"{str(path)!r} holds {what} configuration, not an llm-web run's ({exc})") from None


def run(cfg: WebConfig, folder: str | Path | None = None, *, until: int | None = None,
        progress: bool | None = None, analyse_after: bool = True) -> Path:
    """Run (or continue) the experiment in ``folder`` (default ``runs/llm-web-<time>``) and analyse it.

    A folder that already holds this configuration is continued from its last finished step; one that holds
    another configuration is refused. ``until``: stop before step ``until`` (steps 0..until-1 done, no analysis),
    as if killed there; a later call continues.
    """
    if not isinstance(cfg, WebConfig):
        raise ValueError(f"cfg must be a WebConfig, got {type(cfg).__name__}")
    if until is not None:  # (0 wrote a run of no steps, beyond T ran to the end: the nanoGPT's --until refuses
        # both; a user trial, 2026-12-06)
        if _checks.positive_int("until", until) > cfg.num_steps:
            raise ValueError(f"until must be an integer from 1 to num_steps = {cfg.num_steps} (steps 0..until-1 run, "
                             f"the rest left for a resume), got {until}")
    old = None if folder is None or not Path(folder).is_dir() else saved_config(folder)
    if folder is not None and old is None:  # before the corpus and the models (refused after minutes of work)
        check_folder_creatable(folder)
        check_new_folder(Path(folder))
    models = None
    if old is None:
        human_internet(cfg)  # topic and num_human against the corpus, before any folder is made (an empty one was left)
        if not cfg.hf:
            training_parts(cfg)  # num_models against the corpus (a folder was left, the error naming no option)
        else:  # loaded before the folder is made: a folder that is no causal LM left one that could never run
            models = base_generators(cfg, None)
            if cfg.mode == "context":  # (the query against each context: refused at step 0, after the folder, the
                # human embeddings and models.json were written; a user trial, 2026-12-06)
                for model in models:
                    fit_context(model, [], cfg.query, cfg.separator, cfg.max_new_tokens)
    out = RunFolder.create("llm-web", folder)
    path = out.path
    if old is None:
        check_new_folder(path)
        out.write_config(cfg.as_dict())
        atomic_write_json(path / MODELS_FILE, model_fingerprints(cfg))
    elif old != cfg:
        diff = "; ".join(config_differences(*(json.loads(json.dumps(c.as_dict())) for c in (old, cfg))))
        raise ValueError(f"{str(path)!r} holds an llm-web run with another configuration (differs in {diff}); "
                         "resume it with its own configuration or choose a new folder")
    else:
        check_models_unchanged(cfg, path)
    started = time.perf_counter()
    done = min(completed_steps(path), cfg.num_steps + 1)
    stop = cfg.num_steps + 1 if until is None else min(until, cfg.num_steps + 1)
    if done < stop:
        generate_steps(cfg, path, done, stop, progress, models)
    if stop <= cfg.num_steps:
        return path
    atomic_write_json(path / "timing.json", {"last_session_seconds": time.perf_counter() - started})
    if analyse_after:
        from llm_bridge.llm_web_report import analyse

        analyse(path)
    return path


def check_new_folder(path: Path) -> None:
    """A ValueError unless the folder ``path`` of a new run is missing, empty, or holds only a ``base/`` copied from
    another run (how trained base models are reused: docs/llm_web.md; checked against the configuration when
    loaded) and hidden files: other files are refused (the --help promise; it wrote beside them)."""
    if path.is_dir() and any(not p.name.startswith(".") and p.name != "base" for p in path.iterdir()):
        raise ValueError(f"out: {str(path)!r} is not empty and holds no llm-web run (no config.json); choose a "
                         "new or empty folder (or one holding only a base/ copied from another run)")


MODELS_FILE = "models.json"


def model_fingerprints(cfg: WebConfig) -> dict[str, dict[str, str]]:
    """The SHA-256 of every model folder a run reads besides its own (each ``hf`` folder, the encoder's), by the
    option that names it: ``{"hf[0]": {"path": ..., "sha256": ...}, "encoder": {...}}``."""
    from llm_bridge.encoders import minilm_path
    from llm_bridge.populations import folder_hash

    folders = {f"hf[{i}]": p for i, p in enumerate(cfg.hf)}
    folders["encoder"] = cfg.encoder if cfg.encoder is not None else str(minilm_path())
    return {name: {"path": str(p), "sha256": folder_hash(p)} for name, p in folders.items()}


def check_models_unchanged(cfg: WebConfig, path: Path) -> None:
    """A ValueError unless the model folders a continued run reads hold the files it started with
    (:data:`MODELS_FILE`): a resumed run whose encoder folder had been rewritten embedded its later steps with
    another model than its first, and said nothing (a user trial, 2026-12-05). Runs started before the file
    existed are not checked."""
    saved_file = path / MODELS_FILE
    if not saved_file.is_file():
        return
    saved, now = read_json(saved_file), model_fingerprints(cfg)
    for name, entry in now.items():
        if name in saved and saved[name]["sha256"] != entry["sha256"]:
            flag = "--encoder" if name == "encoder" else f"--hf (folder {int(name[3:-1]) + 1})"
            raise ValueError(f"{flag}: the model folder {entry['path']!r} holds other files than when the run in "
                             f"{str(path)!r} started (SHA-256 {entry['sha256'][:12]}, was "
                             f"{saved[name]['sha256'][:12]}): its finished steps came from the old model; restore "
                             "it or start a new run")


def generate_steps(cfg: WebConfig, path: Path, done: int, stop: int, progress: bool | None,
                   models: list[Generator] | None = None) -> None:
    """Steps ``done``..``stop - 1`` of the run in ``path`` (steps before ``done`` are stored); ``models``: the
    models at step ``done`` when the caller has loaded them."""
    if models is None and cfg.mode == "finetune" and done > 0:
        models = [load_generator(cfg, path / STATE / f"step-{done - 1:04d}" / f"model-{i}")
                  for i in range(cfg.num_models)]
    elif models is None:
        models = base_generators(cfg, path, progress=progress)
    encoder = load_encoder(cfg)
    human_file = path / "human.json"
    if human_file.is_file():
        human = json.loads(human_file.read_text())["texts"]
    else:
        human = human_internet(cfg)
        atomic_savez(path / "human.npz", {"embeddings": encoder.encode(human, batch_size=64, progress=False)})
        atomic_write_json(human_file, {"topic": cfg.topic, "query": cfg.query, "texts": human})
    internet = list(human)
    for t in range(done):
        internet += read_step(path, t)[0]["posted"]
    for i, model in enumerate(models):            # the same names whether loaded from base/ or state/
        model.name = f"hf:{cfg.hf[i]}" if cfg.hf else f"nanogpt:{BASE}/model-{i}"
    with bar(cfg.num_steps + 1, "llm-web", unit="step", disable=None if progress is None else not progress) as b:
        b.update(done)
        for t in range(done, stop):
            t0 = time.perf_counter()
            rec, emb = run_step(cfg, t, models, internet, encoder)
            rec["seconds"] = time.perf_counter() - t0
            atomic_savez(step_path(path, t, "npz"), {"embeddings": emb})
            if cfg.mode == "finetune":
                for i, model in enumerate(models):
                    save_generator(model, path / STATE / f"step-{t:04d}" / f"model-{i}")
            atomic_write_json(step_path(path, t, "json"), rec)         # the step's commit point
            for old_state in sorted((path / STATE).glob("step-*")) if cfg.mode == "finetune" else []:
                if old_state.name != f"step-{t:04d}":
                    shutil.rmtree(old_state, ignore_errors=True)
            internet += rec["posted"]
            b.update(1)


def resume(folder: str | Path, *, until: int | None = None, progress: bool | None = None) -> Path:
    """Continue the run in ``folder`` with its saved configuration (then analyse it)."""
    cfg = saved_config(folder)
    if cfg is None:
        raise ValueError(f"{str(folder)!r} holds no llm-web run (no config.json)")
    return run(cfg, folder, until=until, progress=progress)
