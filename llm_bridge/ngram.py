"""Add-k smoothed unigram and bigram models of a token stream: the baselines a trained language model must beat.

For a training stream ``w_1 .. w_N`` over a vocabulary of ``V`` token ids and a smoothing constant ``k > 0``:

* unigram: ``p(w) = (c(w) + k) / (N + k V)``;
* bigram: ``p(w | v) = (c(v, w) + k) / (c(v, .) + k V)``, where ``c(v, .)`` counts the bigrams that start with ``v``
  (an unseen context gets the uniform ``1 / V``).

The held-out perplexity of a stream ``u_1 .. u_M`` is ``exp(-(1/m) sum log p(u_i | ...))`` over its predicted tokens:
``u_1 .. u_M`` for the unigram model, ``u_2 .. u_M`` (each given the one before) for the bigram model.
:func:`best_k` picks ``k`` from a grid by held-out perplexity itself, which makes the baseline optimistic (harder to
beat), never easier. The pair counts are sparse (sorted pair codes); the unigram and context counts are dense
arrays of ``V`` numbers, so ``V`` is at most :data:`MAX_VOCAB` (2^40 asked for 8 TiB; a user trial, 2026-12-06).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from collapse_jax import _checks

K_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def _tokens(name: str, tokens, vocab_size: int, minimum: int) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError(f"{name} is empty; it must hold at least {minimum} tokens")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D array of integer token ids, got shape {arr.shape} and dtype {arr.dtype}")
    if arr.size < minimum:
        raise ValueError(f"{name} must hold at least {minimum} tokens, got {arr.size}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{name} must hold token ids in [0, {vocab_size - 1}] (vocab_size {vocab_size}), "
                         f"got ids in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


MAX_VOCAB = 2**26  # the dense counts: 512 MiB of float64 each


def _check(train_tokens, heldout_tokens, vocab_size: int, order: int, k: float):
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    if vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size must be at most 2**26 = {MAX_VOCAB:,} (dense counts of V numbers), got "
                         f"{vocab_size:,}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in (1, 2):
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
    k = _checks.in_interval("k", k, 0.0, np.inf, low_open=True, high_open=True)
    train = _tokens("train_tokens", train_tokens, vocab_size, order)
    heldout = _tokens("heldout_tokens", heldout_tokens, vocab_size, order)
    return train, heldout, vocab_size, k


def heldout_log_probs(train_tokens, heldout_tokens, vocab_size: int, order: int = 2, k: float = 0.01) -> np.ndarray:
    """``log p(u_i | ...)`` of every predicted held-out token under the add-``k`` model of ``order`` (1 or 2) fitted
    on ``train_tokens``: shape ``(M,)`` for order 1, ``(M - 1,)`` for order 2."""
    train, heldout, v, k = _check(train_tokens, heldout_tokens, vocab_size, order, k)
    if order == 1:
        counts = np.bincount(train, minlength=v).astype(np.float64)
        return np.log((counts[heldout] + k) / (train.size + k * v))
    context_counts = np.bincount(train[:-1], minlength=v).astype(np.float64)
    pairs, pair_counts = np.unique(train[:-1] * v + train[1:], return_counts=True)
    query = heldout[:-1] * v + heldout[1:]
    pos = np.minimum(np.searchsorted(pairs, query), pairs.size - 1)
    seen = np.where(pairs[pos] == query, pair_counts[pos], 0).astype(np.float64)
    return np.log((seen + k) / (context_counts[heldout[:-1]] + k * v))


def perplexity(train_tokens, heldout_tokens, vocab_size: int, order: int = 2, k: float = 0.01) -> float:
    """Held-out perplexity of the add-``k`` model of ``order`` (1: unigram, 2: bigram) fitted on ``train_tokens``."""
    return float(np.exp(-np.mean(heldout_log_probs(train_tokens, heldout_tokens, vocab_size, order, k))))


class Baseline(NamedTuple):
    order: int
    k: float
    perplexity: float


def best_k(train_tokens, heldout_tokens, vocab_size: int, order: int = 2,
           grid: Iterable[float] = K_GRID) -> Baseline:
    """The add-``k`` model of ``order`` with the lowest held-out perplexity over ``grid`` (any iterable of smoothing
    constants ``k > 0``; read once, every value and the tokens checked before any model is fitted), an optimistic
    baseline."""
    try:
        grid = list(grid)
    except TypeError:
        raise ValueError(f"grid must be an iterable of smoothing constants k > 0, got {type(grid).__name__}") from None
    if len(grid) == 0:
        raise ValueError("grid must hold at least one smoothing constant k")
    for k in grid:
        _checks.in_interval("grid", k, 0.0, np.inf, low_open=True, high_open=True)
    _check(train_tokens, heldout_tokens, vocab_size, order, grid[0])
    scores = [Baseline(order, float(k), perplexity(train_tokens, heldout_tokens, vocab_size, order, k)) for k in grid]
    return min(scores, key=lambda b: b.perplexity)
