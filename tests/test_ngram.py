"""Add-k unigram / bigram baselines: hand-computed values, a plain loop reference, and bad input."""

import math

import numpy as np
import pytest

from llm_bridge import ngram


def loop_perplexity(train, heldout, v, order, k):
    """Plain Python counting, the obvious way."""
    if order == 1:
        counts = [0] * v
        for w in train:
            counts[w] += 1
        logs = [math.log((counts[w] + k) / (len(train) + k * v)) for w in heldout]
    else:
        pair, ctx = {}, [0] * v
        for a, b in zip(train[:-1], train[1:]):
            pair[a, b] = pair.get((a, b), 0) + 1
            ctx[a] += 1
        logs = [math.log((pair.get((a, b), 0) + k) / (ctx[a] + k * v)) for a, b in zip(heldout[:-1], heldout[1:])]
    return math.exp(-sum(logs) / len(logs))


def test_hand_computed_values():
    train = [0, 1, 0, 1, 2]
    # unigram, k = 1: p = 3/8, 3/8, 2/8; held-out [0, 2] -> exp(-(ln 3/8 + ln 1/4) / 2) = sqrt(32 / 3)
    assert ngram.perplexity(train, [0, 2], 3, order=1, k=1.0) == pytest.approx(math.sqrt(32 / 3), rel=1e-12)
    # bigram, k = 1: p(1|0) = 3/5, p(2|1) = 2/5, p(2|2) = 1/3 (context 2 never seen -> uniform)
    assert ngram.perplexity(train, [0, 1, 2, 2], 3, order=2, k=1.0) == pytest.approx(0.08 ** (-1 / 3), rel=1e-12)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("k", [1e-3, 0.5])
def test_matches_loop_reference(order, k):
    rng = np.random.default_rng(order)
    v = 37
    train = rng.integers(0, v, 2000) * (rng.random(2000) < 0.7)   # skewed: many zeros
    heldout = rng.integers(0, v, 500)
    got = ngram.perplexity(train, heldout, v, order=order, k=k)
    assert got == pytest.approx(loop_perplexity(list(train), list(heldout), v, order, k), rel=1e-10)


def test_bigram_beats_unigram_on_structured_text_and_best_k_is_best():
    rng = np.random.default_rng(0)
    v = 50
    nxt = rng.permutation(v)                        # a deterministic successor with 90% probability
    stream = [0]
    for _ in range(20_000):
        stream.append(int(nxt[stream[-1]]) if rng.random() < 0.9 else int(rng.integers(v)))
    train, heldout = np.array(stream[:15_000]), np.array(stream[15_000:])
    uni = ngram.best_k(train, heldout, v, order=1)
    bi = ngram.best_k(train, heldout, v, order=2)
    assert bi.perplexity < 0.5 * uni.perplexity
    for k in ngram.K_GRID:
        assert bi.perplexity <= ngram.perplexity(train, heldout, v, 2, k)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=0), "vocab_size"),
    (dict(vocab_size=2**40), r"vocab_size must be at most 2\*\*26"),  # (8 TiB of dense counts: a user trial)
    (dict(order=3), "order"),
    (dict(k=0.0), "k must lie"),
    (dict(train_tokens=[0.5, 1.0]), "train_tokens"),
    (dict(heldout_tokens=[0, 9]), r"heldout_tokens must hold token ids in \[0, 4\]"),
    (dict(heldout_tokens=[1]), "heldout_tokens must hold at least 2"),
    (dict(heldout_tokens=[]), "heldout_tokens is empty; it must hold at least 2 tokens"),
    (dict(train_tokens=[], order=1), "train_tokens is empty; it must hold at least 1 tokens"),
    (dict(order=True), r"order must be 1 \(unigram\) or 2 \(bigram\), got True"),
    (dict(order=2.0), r"order must be 1 \(unigram\) or 2 \(bigram\), got 2.0"),
    (dict(order=np.float64(1.0)), r"order must be 1 \(unigram\) or 2 \(bigram\)"),
])
def test_bad_input(kwargs, match):
    args = dict(train_tokens=[0, 1, 2, 3], heldout_tokens=[1, 2], vocab_size=5, order=2, k=0.1) | kwargs
    with pytest.raises(ValueError, match=match):
        ngram.perplexity(**args)


def test_best_k_takes_any_iterable_and_checks_it_first():
    train, heldout = [0, 1, 2, 1, 0, 1, 2], [0, 1, 2, 2]
    want = ngram.best_k(train, heldout, 3, grid=[0.1, 1.0])
    assert ngram.best_k(train, heldout, 3, grid=(k for k in [0.1, 1.0])) == want
    assert ngram.best_k(train, heldout, 3, grid=np.array([0.1, 1.0])) == want
    assert ngram.best_k(train, heldout, 3, order=np.int64(2), grid=iter([1.0, 0.1])) == want


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid=5), "grid must be an iterable of smoothing constants k > 0, got int"),
    (dict(grid=iter([])), "grid must hold at least one"),
    (dict(grid=(0.1, -1.0)), r"grid must lie in \(0.0, inf\), got -1.0"),
    (dict(order=True), "order must be 1"),
    (dict(heldout_tokens=[]), "heldout_tokens is empty"),
])
def test_best_k_bad_input_before_any_fit(kwargs, match, monkeypatch):
    monkeypatch.setattr(ngram, "heldout_log_probs", lambda *a: pytest.fail("fitted before the check"))
    args = dict(train_tokens=[0, 1, 2, 3], heldout_tokens=[1, 2], vocab_size=5, order=2) | kwargs
    with pytest.raises(ValueError, match=match):
        ngram.best_k(**args)
