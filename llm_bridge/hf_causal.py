"""Hugging Face causal language models from a local folder, as a :class:`~llm_bridge.generators.Generator`.

:func:`hf_causal_lm` loads any ``AutoModelForCausalLM`` + ``AutoTokenizer`` folder (as written by
``save_pretrained``) with ``local_files_only=True``: nothing is downloaded, and a hub id is refused. The returned
:class:`HFCausalLM` generates, scores and fine-tunes with the same interface as the Flax nanoGPT:

* :meth:`HFCausalLM.generate`: batched sampling (left padding + attention mask) with ``Sampling``'s temperature,
  top-k and top-p; a row ends at the end-of-text token, after ``max_new_tokens`` or at ``Sampling.stop``; only the
  new tokens are decoded. Deterministic per seed: batch ``b`` samples from torch's RNG seeded with a value derived
  from ``(seed, b)`` inside ``torch.random.fork_rng``, so the global RNG state neither matters nor changes.
* :meth:`HFCausalLM.perplexity`: summed negative log-likelihood of each text's tokens, texts longer than the context
  scored in overlapping windows.
* :meth:`HFCausalLM.finetune`: AdamW steps on random batches of texts, in place (for recursive training).
* :meth:`HFCausalLM.save`: model and tokenizer written to a folder that :func:`hf_causal_lm` loads again.

Every text is tokenized without the tokenizer's own special tokens and prefixed with one start token: the
tokenizer's BOS token, else its EOS token (GPT-2's ``<|endoftext|>`` is both), else nothing. So the first word of a
text is predicted too, an empty prompt is a valid prompt, and every tokenizer (GPT-2's adds no BOS, Llama's does)
is treated alike. Fine-tuning also appends the EOS token, so that the model learns where a text ends.

torch and transformers come from the optional ``llm`` extra and are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from collapse_jax import _checks
from collapse_jax.progress import bar
from llm_bridge.encoders import (TOKENIZER_FILES, WEIGHT_FILES, Encoder, _torch_device, load_failure, local_path,
                                 mean_pool, model_folder, pretrained_model, quiet_loading, require, torch_dtype)
from llm_bridge.generators import (PerplexityResult, Sampling, check_finite_loss, check_texts, check_top_k,
                                   cut_at_stop, fit_prompts, weights_diverged)

# Streams of the seed tree: generation batch b uses (seed, GENERATE, b); fine-tuning uses (seed, FINETUNE).
GENERATE, FINETUNE = 0, 1


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder holding ``config.json``, weights and tokenizer files, or a ValueError naming the path and
    what is missing (weights: one of :data:`WEIGHT_FILES`; tokenizer: one of :data:`TOKENIZER_FILES`)."""
    if local_path("path", path).is_file():   # (before it, Path(None) raised a bare TypeError; an audit)
        raise ValueError(f"path {str(path)!r} is a file, not a model folder; pass the folder that "
                         "model.save_pretrained / tokenizer.save_pretrained wrote")
    folder = model_folder("path", path, ["config.json"],
                          saver="write one with model.save_pretrained(path) and tokenizer.save_pretrained(path)")
    missing = []
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        missing.append(f"weights (one of {', '.join(WEIGHT_FILES)})")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise ValueError(f"path {str(folder)!r} is not a saved causal LM folder: it has no {' and no '.join(missing)}; "
                         "write one with model.save_pretrained(path) and tokenizer.save_pretrained(path)")
    return folder


def context_length_of(config: Any, tokenizer: Any) -> int:
    """The number of positions the model takes: the smallest of the config's ``n_positions`` /
    ``max_position_embeddings`` and the tokenizer's ``model_max_length`` (ignored when it is transformers' "no limit"
    sentinel, about 10**30)."""
    limits = [v for k in ("n_positions", "max_position_embeddings")
              if isinstance(v := getattr(config, k, None), int) and v > 0]
    if not limits:
        raise ValueError(f"the model config ({type(config).__name__}) gives no context length "
                         "(neither n_positions nor max_position_embeddings)")
    tok = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok, int) and 0 < tok < 10**9:
        limits.append(tok)
    return min(limits)


def torch_seed(*words: int) -> int:
    """A 63-bit torch seed derived from integer ``words`` (NumPy's SeedSequence: distinct words, independent
    streams)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class HFCausalLM:
    """A Hugging Face causal LM and its tokenizer, implementing :class:`~llm_bridge.generators.Generator`.

    Build it with :func:`hf_causal_lm` (from a folder) or directly from a loaded ``model`` (an
    ``AutoModelForCausalLM``) and ``tokenizer``. The model is kept in eval mode except inside :meth:`finetune`.
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str | None = None) -> None:
        self.torch = require("torch")
        # (a string or None reached model.eval() or tokenizer.eos_token_id as an AttributeError; a user trial,
        # 2026-12-07)
        if not isinstance(model, self.torch.nn.Module) or not all(
                hasattr(model, attr) for attr in ("config", "generation_config", "generate")):
            raise ValueError("model must be a loaded transformers causal LM (AutoModelForCausalLM.from_pretrained; "
                             f"to load a folder use hf_causal_lm(path)), got {type(model).__name__}")
        if not all(hasattr(tokenizer, attr) for attr in ("encode", "decode", "eos_token_id", "pad_token_id")):
            raise ValueError("tokenizer must be a loaded transformers tokenizer (AutoTokenizer.from_pretrained), got "
                             f"{type(tokenizer).__name__}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name or f"hf:{type(model).__name__}"
        self.context_length = context_length_of(model.config, tokenizer)
        eos = [tokenizer.eos_token_id, model.generation_config.eos_token_id, model.config.eos_token_id]
        flat = [i for e in eos for i in (e if isinstance(e, (list, tuple)) else [e]) if isinstance(i, int)]
        self.eos_ids: list[int] = list(dict.fromkeys(flat))                 # every token that ends a text
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix: list[int] = [] if start is None else [int(start)]    # the start token of every text
        self.suffix: list[int] = self.eos_ids[:1]                         # appended to fine-tuning texts
        pad = tokenizer.pad_token_id
        self.pad_id: int = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        self._check_special_ids()

    def _check_special_ids(self) -> None:
        """A ValueError unless the end-of-text, start and padding ids lie in the model's embedding table: a small
        config built with the defaults kept GPT-2's eos_token_id = 50256 beside a 104-token vocabulary, and
        perplexity, finetune and the encoder failed with torch's IndexError (a user trial, 2026-12-06)."""
        size = self.model.get_input_embeddings().num_embeddings
        for what, ids in (("end-of-text (eos_token_id)", self.eos_ids), ("start (bos_token_id)", self.prefix),
                          ("padding (pad_token_id, else eos)", [self.pad_id])):
            bad = [i for i in ids if not 0 <= i < size]
            if bad:
                raise ValueError(f"{self.name}: its {what} token id {bad[0]} is outside the model's {size}-token "
                                 "vocabulary (from the tokenizer, config.json or generation_config.json): set it "
                                 "to a token the tokenizer and the model share, or None")

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------------------------------------------------
    # Tokens in and out
    # ----------------------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` after the start token (:attr:`prefix`), no other special tokens."""
        return self.prefix + self.tokenizer.encode(text, add_special_tokens=False)

    def pad(self, rows: Sequence[Sequence[int]], *, left: bool) -> tuple[Any, Any]:
        """``rows`` padded to one length with :attr:`pad_id` on the left (generation) or right (scoring, training):
        ``(input_ids, attention_mask)``, each a ``(len(rows), longest)`` int64 tensor on the model's device."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            cols = slice(width - len(r), width) if left else slice(0, len(r))
            ids[i, cols] = r
            mask[i, cols] = 1
        return (self.torch.from_numpy(ids).to(self.device), self.torch.from_numpy(mask).to(self.device))

    def decode(self, new_tokens: Sequence[int], stop: str | None, before: Sequence[int] | None = None) -> str:
        """The text of generated tokens up to the first end-of-text token, cut at ``stop``, as it reads after the
        prompt's last tokens ``before`` (:func:`decode_after`)."""
        ends = [j for j, t in enumerate(new_tokens) if t in self.eos_ids]
        kept = list(new_tokens[:ends[0]] if ends else new_tokens)
        return cut_at_stop(decode_after(self.tokenizer, before, kept), stop)

    @contextmanager
    def seeded(self, *words: int) -> Iterator[None]:
        """torch's RNG seeded with :func:`torch_seed` of ``words`` inside, the caller's RNG state restored after."""
        torch = self.torch
        dev = self.device
        on_cpu = dev.type == "cpu"
        with torch.random.fork_rng(devices=[] if on_cpu else [dev.index or 0],
                                   device_type=None if on_cpu else dev.type):
            torch.manual_seed(torch_seed(*words))
            yield

    # ----------------------------------------------------------------------------------------------------------
    # Generator interface
    # ----------------------------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], sampling: Sampling = Sampling(), *, seed: int = 0,
                 batch_size: int = 32, progress: bool | None = None) -> list[str]:
        """One sampled continuation per prompt: the new tokens only, decoded, cut at ``sampling.stop``.

        Prompts run in input order, ``batch_size`` at a time, left-padded with an attention mask. Each is the start
        token + its tokens; a prompt longer than the ``context_length - max_new_tokens`` tokens the context leaves
        loses its beginning (one warning gives the count; the start token is kept). Sampling: logits / temperature
        (:func:`shifted_temperature_class`: a temperature so small that the quotient overflows, such as 1e-46, gives
        the argmax, as the Flax nanoGPT does, not torch's error on NaN probabilities), then top-k (``None``: all
        tokens), then top-p; a row ends at an end-of-text token, after ``max_new_tokens``, or once its new text
        contains ``sampling.stop`` (:func:`stop_in_new_text_class`; the text is cut there). The model's own
        generation settings (``generation_config.json``: a repetition penalty, ``min_new_tokens``, ...) are not
        applied. Batch ``b`` is sampled from torch's RNG seeded by
        ``torch_seed(seed, GENERATE, b)``: the same prompts, sampling, seed and batch size give the same texts
        whatever the global RNG state, which is left unchanged. Logits holding NaN or +inf (broken weights) are a
        ValueError naming the model (:func:`finite_logits_class`). Only ids the tokenizer has are drawn (a model padded
        beyond it: :func:`vocab_limit_class`).
        """
        items = check_texts(prompts, "prompts", allow_empty=False)
        if not isinstance(sampling, Sampling):
            raise ValueError(f"sampling must be a llm_bridge.generators.Sampling, got {type(sampling).__name__}")
        seed = _checks.random_seed("seed", seed)
        batch_size = _checks.positive_int("batch_size", batch_size)
        if not self.prefix and any(t == "" for t in items):
            raise ValueError(f"prompts[{items.index('')}] is empty and the tokenizer has no BOS or EOS token to start "
                             "a text from; give every prompt at least one token")
        rows = (getattr(self.model.get_output_embeddings(), "out_features", None)
                or self.model.config.vocab_size)  # (the logits' width; a head without out_features: the config's)
        # only the tokenizer's ids are drawn: a model padded beyond it (Pythia, Phi-2, Qwen2) drew ids that decode to
        # nothing, so tokens vanished from the text (an audit, 2026-12-07); as the nanoGPT's vocab_limit
        drawable = min(rows, len(self.tokenizer))
        check_top_k(sampling, drawable, whose="this model's tokenizer" if drawable < rows else "this model")
        full = [self.encode(t) for t in items]
        fitted = fit_prompts(full, self.context_length, sampling.max_new_tokens)
        start = len(self.prefix)
        fitted = [f if len(f) == len(p) else self.prefix + f[start:] for f, p in zip(fitted, full)]
        emptied = sum(len(p) > start and len(f) == start for f, p in zip(fitted, full))
        if emptied:     # the start token takes all the room: fit_prompts's "start was cut off" understates it
            warnings.warn(f"{emptied} of {len(items)} prompts kept none of their text: beside {sampling.max_new_tokens} "
                          f"new tokens the context ({self.context_length}) leaves room for the start token only",
                          stacklevel=_checks.user_stacklevel())

        transformers = require("transformers")
        # temperature=1.0: transformers' own warper (logits / T) is replaced by ShiftedTemperature, applied before
        # top-k and top-p as transformers applies its own (custom processors run before the sampling warpers)
        config = transformers.GenerationConfig(
            do_sample=True, temperature=1.0, top_k=sampling.top_k or 0, top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id, eos_token_id=self.eos_ids or None)
        processors = transformers.LogitsProcessorList(
            [finite_logits_class()(self.name)]
            + ([vocab_limit_class()(drawable)] if drawable < rows else [])
            + ([] if sampling.temperature == 1.0 else [shifted_temperature_class()(sampling.temperature)]))
        texts: list[str] = []
        with bar(len(items), f"generating ({self.name})", unit="text",
                 disable=None if progress is None else not progress) as b, self.torch.inference_mode(), \
                self.own_generation_config_set_aside():
            for k, lo in enumerate(range(0, len(items), batch_size)):
                ids, mask = self.pad(fitted[lo:lo + batch_size], left=True)
                stopping = None
                if sampling.stop:
                    stopping = transformers.StoppingCriteriaList([
                        stop_in_new_text_class()(self.tokenizer, sampling.stop, ids.shape[1])])
                with self.seeded(seed, GENERATE, k):
                    out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                              logits_processor=processors, stopping_criteria=stopping)
                width = ids.shape[1]  # (left-padded: a prompt's last tokens end at column width - 1; pads are
                # special tokens, which decode skips)
                texts.extend(self.decode(row[width:], sampling.stop, before=row[max(width - DECODE_CONTEXT, 0):width])
                             for row in out.tolist())
                b.update(ids.shape[0])
        return texts

    @contextmanager
    def own_generation_config_set_aside(self) -> Iterator[None]:
        """Inside, ``model.generation_config`` is a fresh ``GenerationConfig``, the model's own restored after.

        transformers fills every field that the ``GenerationConfig`` passed to ``generate`` leaves unset from the
        model's own (its ``generation_config.json``): a checkpoint's repetition penalty, ``no_repeat_ngram_size``,
        ``min_new_tokens`` or suppressed tokens would change what :meth:`generate` samples. Only how to run is kept
        (the cache implementation a model may need)."""
        transformers = require("transformers")
        own = self.model.generation_config
        fresh = transformers.GenerationConfig()
        for name in ("cache_implementation", "cache_config"):
            if getattr(own, name, None) is not None:
                setattr(fresh, name, getattr(own, name))
        self.model.generation_config = fresh
        try:
            yield
        finally:
            self.model.generation_config = own

    def windows(self, tokens: Sequence[int], stride: int) -> list[tuple[list[int], int]]:
        """The scoring windows of one token sequence: ``(window tokens, m)`` pairs whose last ``m`` tokens are
        predicted there.

        Window ``k`` covers tokens ``[k * stride, min(k * stride + C, n))`` of the ``n`` tokens (``C`` the context
        length) and predicts those the previous window did not reach, so token ``i >= 1`` is predicted once, from
        tokens ``[k * stride, i)`` with ``k = max(0, floor((i - C) / stride) + 1)``: at least ``C - stride`` tokens
        of context once the text is longer than the context.
        """
        C, n = self.context_length, len(tokens)
        out, begin, reached = [], 0, 1                      # token 0 has no context: never predicted
        while True:
            end = min(begin + C, n)
            if end > reached:
                out.append((list(tokens[begin:end]), end - reached))
                reached = end
            if end == n:
                return out
            begin += stride

    def perplexity(self, texts: Sequence[str], *, batch_size: int = 32, stride: int | None = None,
                   progress: bool | None = None) -> PerplexityResult:
        """Negative log-likelihood (nats) of each text and the number of tokens predicted.

        A text is its tokens after the start token (see the module docstring), so a text of ``t`` tokens predicts
        ``t`` (``t - 1`` for a tokenizer without BOS/EOS; a text that predicts none, such as ``""``, has per-text
        perplexity NaN and adds nothing to the corpus value); ``nll = -sum_i log p(x_i | x_<i)``, log-softmax of the
        logits in float32, summed in float64. Texts longer than the context are scored in windows that move by
        ``stride`` tokens (1 to ``context_length - 1``; default half the context; see :meth:`windows`). Windows run
        longest first, ``batch_size`` at a time, right-padded with an attention mask; the logits of a batch,
        ``batch_size x C x vocabulary`` floats, bound the memory. ``progress``: the bar over windows (None: the
        library's default, ``COLLAPSE_JAX_PROGRESS``).
        """
        items = check_texts(texts, allow_empty=False)
        batch_size = _checks.positive_int("batch_size", batch_size)
        C = self.context_length
        stride = max(C // 2, 1) if stride is None else _checks.positive_int("stride", stride)
        if stride >= C:
            raise ValueError(f"stride must be at most context_length - 1 = {C - 1} (a window's first token must "
                             f"have been predicted by the window before), got {stride}")
        work = [(i, w, m) for i, t in enumerate(items) for w, m in self.windows(self.encode(t), stride)]
        work.sort(key=lambda x: -len(x[1]))
        nll = np.zeros(len(items))
        tokens = np.zeros(len(items), dtype=np.int64)
        F = self.torch.nn.functional
        with self.torch.inference_mode(), bar(len(work), f"perplexity ({self.name})", unit="window",
                                              disable=None if progress is None else not progress) as b:
            for lo in range(0, len(work), batch_size):
                chunk = work[lo:lo + batch_size]
                ids, mask = self.pad([w for _, w, _ in chunk], left=False)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                targets = ids[:, 1:].clone()
                scored = self.torch.zeros_like(targets, dtype=self.torch.bool)
                for r, (_, w, m) in enumerate(chunk):
                    scored[r, len(w) - 1 - m:len(w) - 1] = True
                targets[~scored] = -100
                loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
                row_nll = loss.double().sum(dim=1).cpu().numpy()
                for r, (i, _, m) in enumerate(chunk):
                    nll[i] += row_nll[r]
                    tokens[i] += m
                b.update(len(chunk))
        return PerplexityResult(nll, tokens)

    def finetune(self, texts: Sequence[str], *, steps: int, learning_rate: float = 1e-4, batch_size: int = 8,
                 seed: int = 0, weight_decay: float = 0.01, progress: bool | None = None) -> list[float]:
        """``steps`` AdamW steps on ``texts``, in place; returns each step's mean token cross-entropy (nats).

        Each text becomes start token + tokens + EOS token, cut to the context length (its end and the EOS are
        then not trained on: one warning gives the count of texts cut). Step ``s`` takes
        ``min(batch_size, len(texts))`` distinct texts drawn at random (NumPy generator seeded from ``seed``),
        right-pads them and masks the padding out of the loss. A fresh ``torch.optim.AdamW`` (``learning_rate``,
        ``weight_decay``) runs in train mode (dropout on, its RNG seeded from ``seed`` and the caller's RNG state
        restored); the model is back in eval mode afterwards, also after an error. Same texts and arguments, same
        losses and weights. A step whose loss is not finite, or weights that are not finite after the last step
        (the run diverged: ``learning_rate`` too high), is a ValueError, raised after the trained weights are
        restored to those before the call (a copy is kept on the host while it runs).
        """
        items = check_texts(texts, allow_empty=False)
        steps = _checks.positive_int("steps", steps)
        learning_rate = _checks.in_interval("learning_rate", learning_rate, 0.0, np.inf, low_open=True,
                                            high_open=True)
        weights = {p.dtype for p in self.model.parameters() if p.requires_grad}
        if self.torch.float16 in weights:  # (AdamW's eps = 1e-8 is 0 in float16: every step 0/0, NaN weights, and
            # the divergence message blamed the learning rate; a user trial, 2026-12-06)
            raise ValueError("fine-tuning needs float32 (or bfloat16) weights: this model is float16, in which "
                             "AdamW's epsilon rounds to 0 and the first step makes every weight NaN; load it with "
                             "dtype='float32' to fine-tune (llm-web: --hf-dtype float32)")
        if self.torch.bfloat16 in weights:  # (5 steps at 1e-5 changed 3.7 % of the entries: a user trial)
            warnings.warn("fine-tuning bfloat16 weights: an update smaller than about 1/256 of a weight rounds away, "
                          "so most entries may not move at small learning rates; load the model with "
                          "dtype='float32' to fine-tune it exactly", stacklevel=_checks.user_stacklevel())
        batch_size = _checks.positive_int("batch_size", batch_size)
        seed = _checks.random_seed("seed", seed)
        weight_decay = _checks.in_interval("weight_decay", weight_decay, 0.0, np.inf, high_open=True)
        full = [self.encode(t) + self.suffix for t in items]
        cut = sum(len(d) > self.context_length for d in full)
        if cut:
            warnings.warn(f"{cut} of {len(items)} texts are longer than the context ({self.context_length} tokens "
                          "with the start and end tokens): each is fine-tuned on its first "
                          f"{self.context_length} tokens only, without its end", stacklevel=_checks.user_stacklevel())
        docs = [d[:self.context_length] for d in full]
        docs = [d for d in docs if len(d) >= 2]
        if not docs:
            raise ValueError("texts must give at least one text of two or more tokens (with this tokenizer's start "
                             "and end tokens, if it has them) to train on; every text has fewer")

        torch = self.torch
        picks = np.random.default_rng(np.random.SeedSequence([seed, FINETUNE]))
        opt = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=weight_decay)
        # a copy of the weights on the host, restored if the run diverges: the update before a non-finite loss is
        # usually the one that broke the model (weights of 1e6 at learning_rate = 1e6; generation then failed inside
        # torch.multinomial; a user trial, 2026-12-07), and the nanoGPT's finetune leaves its model unchanged too
        # (the trained parameters only, once each: parameters() skips tied copies)
        trained = [p for p in self.model.parameters() if p.requires_grad]
        before = [p.detach().to("cpu", copy=True) for p in trained]

        def restore() -> None:
            with torch.no_grad():
                for p, saved in zip(trained, before):
                    p.copy_(saved)

        losses: list[float] = []
        self.model.train()
        try:
            with self.seeded(seed, FINETUNE), bar(steps, f"fine-tuning ({self.name})", unit="step",
                                                 disable=None if progress is None else not progress) as b:
                for _ in range(steps):
                    idx = picks.choice(len(docs), size=min(batch_size, len(docs)), replace=False)
                    ids, mask = self.pad([docs[i] for i in idx], left=False)
                    logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
                    value = float(loss.detach())
                    if not math.isfinite(value):  # diverged: back to the weights before the call
                        restore()
                        check_finite_loss(value, len(losses), learning_rate, losses)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(value)
                    b.set_postfix(loss=f"{losses[-1]:.3f}")
                    b.update(1)
            if not all(bool(torch.isfinite(p).all()) for p in trained):  # the last update, whose loss no step reads
                restore()
                raise weights_diverged(steps, learning_rate, losses)
        finally:
            self.model.eval()
        return losses

    def encoder(self, *, normalize: bool = False) -> Encoder:
        """This model as a sentence encoder (:class:`llm_bridge.encoders.Encoder`), for the Sigma and distance
        estimators: a text's embedding is the mean over its tokens (after the start token, :meth:`encode`) of the
        model's last hidden state (``hidden_states[-1]``: after the final norm in GPT-2 and Llama), in float32.
        Texts longer than the context are embedded from their first ``context_length`` tokens (``Encoder.encode``
        warns with the count); a text with no token (``""`` with a tokenizer that has no start token) is a
        ``ValueError``. Batches are right-padded with an attention mask. ``normalize=True`` L2-normalises each
        row. The encoder runs the model as it is when called (after :meth:`finetune`, the fine-tuned one)."""
        normalize = _checks.flag("normalize", normalize)
        torch, c = self.torch, self.context_length

        def embed_batch(batch: list[str]) -> np.ndarray:
            rows = [self.encode(t)[:c] for t in batch]
            if not all(rows):
                raise ValueError(f"texts: {sum(not r for r in rows)} text(s) have no token to embed ({self.name}'s "
                                 "tokenizer adds no start token, so an empty text is empty)")
            ids, mask = self.pad(rows, left=False)
            with torch.inference_mode():
                hidden = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
                pooled = mean_pool(hidden.float(), mask)
                if normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled.cpu().numpy()

        def count_tokens(batch: list[str]) -> list[int]:
            return [len(self.encode(t)) for t in batch]

        return Encoder(self.name, int(self.model.config.hidden_size), None, normalize, c, embed_batch, count_tokens,
                       embeds_empty=bool(self.prefix))

    def save(self, path: str | os.PathLike) -> Path:
        """Write model and tokenizer (``save_pretrained``) to folder ``path``, which :func:`hf_causal_lm` loads.

        Written to a temporary folder beside ``path`` and renamed into place, so ``path`` never holds half a
        model; an existing ``path`` that is empty, or that holds a saved model and nothing else (a transformers
        ``config.json`` and files ``save_pretrained`` writes: :func:`replaceable_model_folder`), is replaced. A file,
        or a folder holding anything else, is refused before anything is written (a folder with any ``config.json``
        was replaced whole, deleting the user's other files). The folder gets the permissions of a new folder
        (the process's umask), as ``save_pretrained``'s own.
        """
        folder = local_path("path", path)
        replaceable_model_folder(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp"
        tmp.mkdir()                          # mode 0o777 minus the umask (tempfile.mkdtemp's is 0o700)
        try:
            with quiet_loading():            # (transformers' "Writing model shards" bar, as its loading bar)
                self.model.save_pretrained(str(tmp))
                self.tokenizer.save_pretrained(str(tmp))
            if folder.exists():
                old = tmp.with_suffix(".old")
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old)
            else:
                os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder


# Names of the files ``save_pretrained`` writes for a model and its tokenizer (weights, shards and their index,
# configurations, vocabularies, chat templates): a folder holding only these may be replaced by HFCausalLM.save.
SAVED_MODEL_FILES = re.compile(r".*\.(json|safetensors|bin|model|jinja|tiktoken|msgpack|h5)|merges\.txt|vocab\.txt")


def replaceable_model_folder(folder: Path) -> None:
    """A ValueError unless ``folder`` does not exist, is an empty folder, or holds a saved transformers model and
    nothing else: a ``config.json`` naming a ``model_type`` or ``architectures``, and only plain files whose names
    ``save_pretrained`` writes (:data:`SAVED_MODEL_FILES`)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"path {str(folder)!r} is a file; give a folder (one holding a saved model is replaced)")
    entries = sorted(folder.iterdir())
    if not entries:
        return
    try:
        config = json.loads((folder / "config.json").read_text())
        is_model = isinstance(config, dict) and ("model_type" in config or "architectures" in config)
    except (OSError, ValueError):
        is_model = False
    if not is_model:
        raise ValueError(f"path {str(folder)!r} holds files but no saved model (no transformers config.json); save "
                         "to a new or empty folder, or to one written by save()")
    other = [e.name + ("/" if e.is_dir() else "") for e in entries
             if not (e.is_file() and SAVED_MODEL_FILES.fullmatch(e.name))]
    if other:
        raise ValueError(f"path {str(folder)!r} holds a saved model and {len(other)} other entries ("
                         f"{', '.join(other[:3])}{', ...' if len(other) > 3 else ''}), which replacing it would "
                         "delete; save to a new or empty folder, or move them out")


@functools.cache
def shifted_temperature_class() -> type:
    """A ``transformers.LogitsProcessor`` class, ``(temperature)``: each row's logits minus its largest, divided by
    ``temperature`` where below the largest (the largest stay 0), as :func:`llm_bridge.nanogpt.sample_tokens` does.

    The same softmax as transformers' ``TemperatureLogitsWarper`` (``logits / temperature``), but that quotient
    overflows float32 once ``|logit| / temperature > 3.4e38`` (any logit for a temperature <= 1e-45, which is 0 in
    float32; logits near 30 below 1e-37): softmax of inf is NaN and torch's sampler raised "probability tensor
    contains either inf, nan or element < 0". Shifted, such a temperature gives -inf to every token below the
    largest: the argmax, deterministically (exact ties at the top stay equally likely). Built on first use, as
    transformers is imported lazily."""
    transformers = require("transformers")
    torch = require("torch")

    class ShiftedTemperature(transformers.LogitsProcessor):
        def __init__(self, temperature: float) -> None:
            self.temperature = temperature

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            shifted = scores - scores.max(dim=-1, keepdim=True).values
            return torch.where(shifted < 0, shifted / self.temperature, torch.zeros_like(shifted))

    return ShiftedTemperature


@functools.cache
def finite_logits_class() -> type:
    """A ``transformers.LogitsProcessor`` class, ``(name)``, that raises a ValueError naming the model when a step's
    logits hold NaN or +inf (-inf is a masked token): a model whose weights are broken sampled from NaN without a
    word at a temperature of 1e-46 and failed inside ``torch.multinomial`` at others (a user trial, 2026-12-07).
    Built on first use, as transformers is imported lazily."""
    transformers = require("transformers")
    torch = require("torch")

    class FiniteLogits(transformers.LogitsProcessor):
        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if bool((torch.isnan(scores) | torch.isposinf(scores)).any()):
                raise ValueError(f"{self.name}'s logits are not finite (NaN or +inf) at a sampled token: its weights "
                                 "are broken (a diverged fine-tune, or values beyond its dtype); reload the model")
            return scores

    return FiniteLogits


@functools.cache
def vocab_limit_class() -> type:
    """A ``transformers.LogitsProcessor`` class, ``(limit)``: the logits of ids ``>= limit`` set to -inf, so that a
    model whose output rows outnumber its tokenizer's tokens (a vocabulary padded to a multiple of 64 or 128) draws
    only ids the tokenizer decodes, renormalised over them (:meth:`HFCausalLM.generate`). Built on first use, as
    transformers is imported lazily."""
    transformers = require("transformers")

    class VocabLimit(transformers.LogitsProcessor):
        def __init__(self, limit: int) -> None:
            self.limit = limit

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.clone()
            scores[:, self.limit:] = -float("inf")
            return scores

    return VocabLimit


DECODE_CONTEXT = 4  # prompt tokens decoded before a continuation (decode_after)


def decode_after(tokenizer: Any, before: Sequence[int] | None, tokens: Sequence[int]) -> str:
    """The text of ``tokens`` as it reads after the tokens ``before`` (the prompt's last :data:`DECODE_CONTEXT`):
    SentencePiece-style tokenizers (Llama 2, Mistral, Gemma: a Metaspace decoder) drop the leading space of a
    decode's first word, so decoding a continuation alone glued it to its prompt ("The cat" + "sat on" read "The
    catsat on"; a user trial, 2026-12-06). Decoded after ``before``, whose own text is then taken off; several
    tokens, since a last one that decodes to nothing (an end-of-text or unknown token; a review) lost the space too.
    Byte-level BPE reads the same as a plain decode."""
    if not before:
        return tokenizer.decode(list(tokens), skip_special_tokens=True)
    head = tokenizer.decode(list(before), skip_special_tokens=True)
    whole = tokenizer.decode([*before, *tokens], skip_special_tokens=True)
    return whole[len(head):] if whole.startswith(head) else tokenizer.decode(list(tokens), skip_special_tokens=True)


@functools.cache
def stop_in_new_text_class() -> type:
    """A ``transformers.StoppingCriteria`` class, ``(tokenizer, stop, prompt_width)``: a row is done once the text of
    its new tokens (after the ``prompt_width`` prompt columns) holds ``stop``.

    transformers' own ``stop_strings`` also match an occurrence that starts in the prompt (a prompt ending in "t"
    and a new "," for the stop "t,"): the row stopped, though its new text, which :func:`cut_at_stop` cuts, does
    not hold the stop. Each call decodes only the new tokens that can end an occurrence, the last
    ``len(stop.encode()) + 2`` (a token holds at least one byte), after the tokens before them (:func:`decode_after`).
    Built on first use, as transformers is imported lazily."""
    transformers = require("transformers")
    torch = require("torch")

    class StopInNewText(transformers.StoppingCriteria):
        def __init__(self, tokenizer: Any, stop: str, prompt_width: int) -> None:
            self.tokenizer, self.stop, self.prompt_width = tokenizer, stop, prompt_width
            self.width = len(stop.encode("utf-8")) + 2

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            start = max(self.prompt_width, input_ids.shape[1] - self.width)
            lead = min(start, DECODE_CONTEXT)  # (read after the tokens before: decode_after)
            hits = [self.stop in decode_after(self.tokenizer, r[:lead], r[lead:])
                    for r in input_ids[:, start - lead:].tolist()]
            return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)

    return StopInNewText


def hf_causal_lm(path: str | os.PathLike, *, device: str | None = None, dtype: Any = None) -> HFCausalLM:
    """A causal LM + tokenizer from a local ``save_pretrained`` folder (never downloaded), in eval mode.

    ``device``: a torch device (default ``"cpu"``). ``dtype``: the weights' dtype, a ``torch.dtype`` or its name
    (``"float32"``, ``"bfloat16"``, ...) or ``"auto"`` for the checkpoint's own; default float32, so that scores
    on CPU are exact and reproducible (pass ``"bfloat16"`` for a large model). A missing folder, a hub id, or a
    folder without ``config.json``, weights or tokenizer files is a ValueError naming the path and what is missing;
    so are weights that do not load (a truncated file) and weights that lack some of the model's tensors (which
    transformers would otherwise initialise at random with only a log message).
    """
    folder = checkpoint_folder(path)
    device = _torch_device(device)
    dtype = torch_dtype(dtype)
    transformers = require("transformers")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except ImportError:
        raise
    except Exception as exc:  # noqa: BLE001 - tokenizers and transformers raise their own types
        raise load_failure(folder, "tokenizer", exc) from exc
    model = pretrained_model(transformers.AutoModelForCausalLM, folder, dtype, "causal LM")
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # (an IndexError from F.embedding at the first text with such a token, naming
        # nothing; a user trial, 2026-12-06)
        raise ValueError(f"model folder {str(folder)!r}: its tokenizer has {len(tokenizer):,} tokens but the model "
                         f"embeds only {rows:,} (config vocab_size); the tokenizer belongs to another model")
    check_causal(model, folder)
    return HFCausalLM(model.to(device), tokenizer, name=f"hf:{folder.name}")


def check_causal(model: Any, folder: Path) -> None:
    """A ValueError naming ``folder`` unless ``model``'s prediction at a position ignores the tokens after it, tried
    on two three-token inputs that differ in the last token only. A BERT folder (``BertForMaskedLM``) loaded
    through ``AutoModelForCausalLM`` as a ``BertLMHeadModel`` with bidirectional attention, and only a log line of
    transformers said so: its perplexities saw the tokens they scored (1.06 on a fine-tuned sentence) and its
    samples came from a model that is not a language model (a user trial, 2026-12-06)."""
    import torch

    rows = model.get_input_embeddings().num_embeddings
    if rows < 3:
        return
    ids = torch.tensor([[0, 1, 1], [0, 1, 2]], device=next(model.parameters()).device)
    with torch.inference_mode():
        first = model(input_ids=ids).logits[:, 0].float()
    scale = 1.0 + float(first.abs().max())
    tolerance = (1e-4 if model.dtype == torch.float32 or model.dtype == torch.float64 else 2e-2) * scale
    if float((first[0] - first[1]).abs().max()) > tolerance:
        architectures = getattr(model.config, "architectures", None) or [type(model).__name__]
        raise ValueError(f"model folder {str(folder)!r} is not a causal LM: its prediction at the first position "
                         f"changes with a later token (bidirectional attention; its config names "
                         f"{', '.join(architectures)}); save a decoder-only model (GPT-2, Llama, ...), or for an "
                         "encoder use llm_bridge.encoders")
