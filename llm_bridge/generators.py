"""One interface for every text generator: the Flax nanoGPT (:mod:`llm_bridge.nanogpt`) and Hugging Face causal LMs
from a local folder (:mod:`llm_bridge.hf_causal`) both implement :class:`Generator`, so every experiment takes either.

* :class:`Sampling`: how to sample (new tokens, temperature, top-k, top-p, stop string), validated before any compute.
* :class:`Generator`: ``generate(prompts, sampling, seed=...) -> list[str]`` (the continuations only, prompt removed,
  cut at the stop string), ``perplexity(texts) -> PerplexityResult`` and ``finetune(texts, ...) -> list[float]``
  (a few optimiser steps on a list of texts, for recursive training).
* :func:`check_texts`: a list of strings or a ``ValueError`` that names the parameter (empty lists refused on request).
* :func:`fit_prompts`: token prompts cut on the left to what the context leaves for the new tokens, with one
  warning that gives the count of prompts cut.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from collapse_jax import _checks
from collapse_jax.cli_options import option


def check_texts(texts: Any, name: str = "texts", *, allow_empty: bool = True) -> list[str]:
    """``texts`` as a list of str; a bare string, a set or mapping (no fixed order), a non-string item (``name[i]``),
    a string that cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"``; ``name[i]``) or, unless
    ``allow_empty``, an empty list raises a ValueError naming ``name``."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of strings, got a single string; wrap it in a list")
    if isinstance(texts, Set):  # no order: a seeded subsample of a set changed with the process's hash seed
        raise ValueError(f"{name} must be an ordered sequence of strings (a list), got a {type(texts).__name__}, "
                         f"whose order changes between processes; pass sorted(...) of it")
    if isinstance(texts, Mapping):
        raise ValueError(f"{name} must be a sequence of strings (a list), got a {type(texts).__name__} (only its keys "
                         f"would be read); pass list(...) of its keys or values")
    try:
        items = list(texts)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] must be a str, got {type(t).__name__}")
        check_utf8(f"{name}[{i}]", t)
    if not items and not allow_empty:
        raise ValueError(f"{name} must hold at least one text, got an empty list")
    return items


def check_utf8(name: str, text: str) -> None:
    """A ValueError naming ``name`` when ``text`` cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"``)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{name} cannot be encoded as UTF-8: {text[exc.start]!r} at character {exc.start} is a "
                             "lone surrogate (not a Unicode character); decode the text with errors='replace' or "
                             "remove it") from None


# The largest temperature: the samplers divide in float32 (the nanoGPT's, and transformers' float32 logits), where a
# larger one is inf and a masked token's -inf / inf is NaN: the nanoGPT's two-level draw then never drew that token's
# group of 32 tokens (at 1e39, 0 EOTs in 5,140 uniform draws, about 20 expected; an audit, 2026-12-07)
MAX_TEMPERATURE = float(np.finfo(np.float32).max)


def check_temperature(value: Any) -> float:
    """``value`` as a float in (0, :data:`MAX_TEMPERATURE`], or a ValueError naming ``temperature`` and that range."""
    try:
        return _checks.in_interval("temperature", value, 0.0, MAX_TEMPERATURE, low_open=True)
    except ValueError as error:
        if "must lie in" not in str(error):
            raise
    raise ValueError(f"temperature must lie in (0, {MAX_TEMPERATURE}] (the largest float32, in which the samplers "
                     f"divide: a larger temperature is inf there), got {value!r}")


@dataclass(frozen=True)
class Sampling:
    """How :meth:`Generator.generate` samples.

    ``temperature`` in (0, :data:`MAX_TEMPERATURE`] divides the logits; ``top_k`` (>= 1, or None for all) keeps the
    k most likely tokens; ``top_p`` in (0, 1] keeps the smallest set of most likely tokens whose probability reaches p
    (nucleus; 1 keeps all); ``stop``: generation of a text ends at the first occurrence of this string, which is cut off
    (None: only ``max_new_tokens`` or the model's end-of-text token end it). The fields' metadata holds their
    command-line help (:func:`collapse_jax.cli_options.option`).
    """

    max_new_tokens: int = option(64, "new tokens per sample, >= 1")
    temperature: float = option(1.0, "softmax temperature, in (0, 3.4e38] (float32)")
    top_k: int | None = option(None, "keep the k most likely tokens, >= 1 (1: greedy)", default_help="all")
    top_p: float = option(1.0, "nucleus: smallest set reaching this probability, in (0, 1]")
    stop: str | None = option(None, "cut each sample at the first occurrence of this string", default_help="none")

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_new_tokens", _checks.positive_int("max_new_tokens", self.max_new_tokens))
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        if self.top_k is not None:  # stored as int: transformers refused a NumPy integer, late and misleadingly
            object.__setattr__(self, "top_k", _checks.positive_int("top_k", self.top_k))
        object.__setattr__(self, "top_p", _checks.in_interval("top_p", self.top_p, 0.0, 1.0, low_open=True))
        if self.stop is not None and (not isinstance(self.stop, str) or not self.stop):
            raise ValueError(f"stop must be a non-empty string or None, got {self.stop!r}")
        if self.stop is not None:     # a lone surrogate never matched the nanoGPT's text and crashed the HF one
            check_utf8("stop", self.stop)


class PerplexityResult(NamedTuple):
    """Per-text negative log-likelihood (nats, summed over the text's predicted tokens) and token counts; a text's
    perplexity is ``exp(nll / tokens)`` (NaN for a text with no predicted token, e.g. an empty one: it has no
    perplexity), the corpus's ``exp(sum nll / sum tokens)`` over every predicted token (texts without one add
    nothing; NaN when no text has one)."""

    nll: np.ndarray        # (num_texts,) float64
    tokens: np.ndarray     # (num_texts,) int64: tokens predicted (a text of t tokens predicts t - 1, or t after BOS)

    @property
    def per_text(self) -> np.ndarray:
        """(num_texts,) float64: each text's perplexity ``exp(nll / tokens)``, NaN where it predicted no token."""
        tokens = np.asarray(self.tokens)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(tokens > 0, np.exp(np.asarray(self.nll, np.float64) / np.maximum(tokens, 1)), np.nan)

    @property
    def corpus(self) -> float:
        """The corpus perplexity ``exp(sum nll / sum tokens)`` over every predicted token (NaN when there is none)."""
        total = int(np.sum(self.tokens))
        return float(np.exp(np.sum(self.nll) / total)) if total > 0 else math.nan


@runtime_checkable
class Generator(Protocol):
    """What every experiment needs of a language model."""

    name: str
    context_length: int

    def generate(self, prompts: Sequence[str], sampling: Sampling = Sampling(), *, seed: int = 0,
                 batch_size: int = 32, progress: bool | None = None) -> list[str]:
        """One continuation per prompt (prompt not included, cut at ``sampling.stop``); deterministic per seed."""
        ...

    def perplexity(self, texts: Sequence[str], *, batch_size: int = 32,
                   progress: bool | None = None) -> PerplexityResult:
        """Negative log-likelihood of each text under the model (texts longer than the context are scored in
        windows)."""
        ...

    def finetune(self, texts: Sequence[str], *, steps: int, learning_rate: float = 1e-4, batch_size: int = 8,
                 seed: int = 0, progress: bool | None = None) -> list[float]:
        """``steps`` optimiser steps on ``texts`` in place; returns the training loss of each step."""
        ...


def fit_prompts(prompts: list[list[int]], context_length: int, max_new_tokens: int) -> list[list[int]]:
    """Cut each token prompt on the left so that prompt + ``max_new_tokens`` fits ``context_length``; warn once with
    the count of prompts cut. ``max_new_tokens`` must leave room for at least one prompt token."""
    room = context_length - max_new_tokens
    if context_length < 2:  # (it asked for max_new_tokens <= 0, an option the user may never have typed)
        raise ValueError(f"this model's context holds {context_length} token, the start token alone: it cannot "
                         "sample (a context of at least 2 tokens can)")
    if room < 1:
        raise ValueError(f"max_new_tokens must be at most context_length - 1 = {context_length - 1} for this model, "
                         f"got {max_new_tokens}")
    distinct = {tuple(p) for p in prompts}  # (a prompt asked for several responses is one prompt: "4 of 64" were 16)
    cut = sum(len(p) > room for p in distinct)
    if cut:
        warnings.warn(f"{cut} of {len(distinct)} {'distinct ' if len(distinct) < len(prompts) else ''}prompts are "
                      f"longer than the {room} tokens the context ({context_length}) leaves beside {max_new_tokens} "
                      "new tokens; their start was cut off", stacklevel=_checks.user_stacklevel())
    return [p[-room:] if len(p) > room else p for p in prompts]


def check_top_k(sampling: Sampling, vocab_size: int, *, whose: str = "this model") -> None:
    """A ValueError when ``sampling.top_k`` exceeds the ``vocab_size`` tokens the model can draw (it was taken, every
    token kept, while every other sampling setting is checked against the model; a user trial, 2026-12-07).
    ``whose`` names them in the message ("this model", or the tokenizer's where the model's rows are padded)."""
    if sampling.top_k is not None and sampling.top_k > vocab_size:
        raise ValueError(f"top_k must be at most the vocabulary size {vocab_size:,} of {whose} (None keeps every "
                         f"token), got {sampling.top_k:,}")


def check_finite_loss(loss: float, step: int, learning_rate: float, losses: Sequence[float]) -> None:
    """A ValueError when a fine-tuning step's ``loss`` is not finite: the run diverged (``learning_rate`` too high),
    and going on set every weight to NaN, after which generation failed inside ``torch.multinomial`` and
    perplexities were NaN without a word (a user trial, 2026-12-06: losses 5.99, 1.2e9, nan, nan, nan at
    ``learning_rate = 1e4``). ``step``: its index from 0; ``losses``: the steps' before it. The callers leave the
    model as it was before the call (the nanoGPT applies its updates only at the end; the Hugging Face model's
    weights are restored first), as the message says."""
    if not math.isfinite(loss):
        raise diverged(f"the loss at step {step + 1} is {loss} (before: {_last_losses(losses) or 'none'})",
                       learning_rate)


def weights_diverged(steps: int, learning_rate: float, losses: Sequence[float]) -> ValueError:
    """The error for weights that are not finite after the last of ``steps`` steps: that update has no later loss to
    show it (see :func:`check_finite_loss`)."""
    return diverged(f"the weights after step {steps} are not finite (losses: {_last_losses(losses)})", learning_rate)


def diverged(what: str, learning_rate: float) -> ValueError:
    """The fine-tuning divergence error: ``what`` went wrong; the model is unchanged (see :func:`check_finite_loss`)."""
    return ValueError(f"fine-tuning diverged: {what}; the model is unchanged: lower learning_rate (got "
                      f"{learning_rate:g})")


def _last_losses(losses: Sequence[float]) -> str:
    return ", ".join(f"{x:.4g}" for x in losses[-5:])


def cut_at_stop(text: str, stop: str | None) -> str:
    """``text`` up to the first occurrence of ``stop`` (all of it when ``stop`` is None or absent)."""
    if stop is None:
        return text
    i = text.find(stop)
    return text if i < 0 else text[:i]
