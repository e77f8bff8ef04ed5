"""Text-diversity metrics of a list of texts (seed 004, "The Curious Decline of Linguistic Diversity"; seed 002,
Appendix C.5): one call, :func:`diversity`, returns them all in a :class:`DiversityReport`; each has its own function.

Tokens. Every lexical metric uses one tokenisation, the one sacrebleu's BLEU uses: the text is lower-cased, trailing
whitespace stripped, split by sacrebleu's ``13a`` tokenizer (mteval-v13a: punctuation split off words) and then on
whitespace. ``n``-grams never cross text boundaries. TTR, distinct-n, 1 - self-BLEU and HHI are fractions in [0, 1]
(the seed's table prints them times 100); the compression ratio is unbounded above and semantic diversity lies in
[0, 2].

* :func:`type_token_ratio`: every text cut to its first ``length`` tokens, texts with fewer tokens left out, the
  kept ones pooled: ``TTR = |distinct tokens| / (k * length)`` over the ``k`` kept texts.
* :func:`distinct_n`: ``|distinct n-grams| / |n-grams|`` over the corpus (the project's definition; Li et al.
  2016 divide by the number of tokens instead).
* :func:`self_bleu`: mean over hypotheses ``i`` of sentence BLEU(text_i; all other texts as references) / 100
  (sacrebleu: 4-gram BLEU, ``exp`` smoothing (NIST, Chen & Cherry method 3), effective order, 13a, lower-cased);
  the report holds ``1 - self-BLEU``. Exact leave-one-out against every other text, see :func:`self_bleu_scores`.
  Texts with no token (empty or whitespace only) are left out, as hypotheses and as references: sacrebleu scores
  them 0, which would make a generator that collapses to empty outputs look maximally diverse.
* :func:`ngram_hhi`: Herfindahl-Hirschman index ``sum_k (c_k / C)^2`` of n-gram counts hashed into buckets
  (``blake2b``, 64 bits, stable across runs and machines); higher = more concentrated = less diverse.
* :func:`compression_ratio`: raw bytes / zlib-compressed bytes of the sorted texts; higher = more redundant.
* :func:`semantic_diversity`: mean pairwise cosine distance ``1 - cos(e_i, e_j)`` of sentence embeddings.

:func:`ordering_violations` checks that every metric orders text sets from most to least diverse (human text,
then a low-temperature generator's text, then one text repeated; add the nanoGPT's samples as one more set);
:func:`bigram_texts` is that low-temperature generator.
sacrebleu comes from the optional ``llm`` extra and is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from bisect import bisect_left
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from collapse_jax import _checks
from llm_bridge.embedding_metrics import encode_texts
from llm_bridge.encoders import Encoder, check_encoder, require
from llm_bridge.generators import check_texts

BLEU_ORDER = 4
SMOOTH_METHODS = ("exp", "floor", "add-k", "none")
MAX_BUCKETS = 2**64   # the n-gram hash has 64 bits: more buckets than this change nothing

# --------------------------------------------------------------------------------------------------------------
# Tokens and n-grams
# --------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _bleu(smooth_method: str = "exp"):
    """The sacrebleu BLEU whose tokenizer and settings every metric here shares (sentence level: effective order)."""
    metrics = require("sacrebleu.metrics")
    return metrics.BLEU(lowercase=True, tokenize="13a", smooth_method=smooth_method, effective_order=True,
                        max_ngram_order=BLEU_ORDER)


def tokenize(text: str) -> list[str]:
    """Tokens of one text exactly as sacrebleu's BLEU sees them: lower-cased, ``rstrip``, 13a, split on spaces."""
    return _bleu().tokenizer(text.lower().rstrip()).split()


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _tokens(texts: Any) -> list[list[str]]:
    return [tokenize(t) for t in check_texts(texts, allow_empty=False)]


# --------------------------------------------------------------------------------------------------------------
# Lexical metrics (each public function takes texts; the _on_tokens cores take token lists, so diversity()
# tokenises once)
# --------------------------------------------------------------------------------------------------------------


def _ttr_on_tokens(tokens: list[list[str]], length: int) -> tuple[float | None, int]:
    kept = [t[:length] for t in tokens if len(t) >= length]
    if not kept:
        return None, 0
    types = set().union(*kept)
    return len(types) / (len(kept) * length), len(kept)


def type_token_ratio(texts: Sequence[str], length: int = 10) -> float | None:
    """Corpus type-token ratio on texts truncated to ``length`` tokens (seed 004: "truncate texts to fixed length").

    Each text is cut to its first ``length`` tokens; texts with fewer tokens are left out (so every kept text adds
    exactly ``length`` tokens and short texts cannot inflate the ratio); the kept texts are pooled:
    ``TTR = |distinct tokens over kept texts| / (k * length)``. None when no text has ``length`` tokens.
    The value falls as the corpus grows, so compare corpora with the same number of texts.
    """
    length = _checks.positive_int("length", length)
    return _ttr_on_tokens(_tokens(texts), length)[0]


def _distinct_on_tokens(tokens: list[list[str]], n: int) -> float | None:
    grams = [g for t in tokens for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else None


def distinct_n(texts: Sequence[str], n: int = 2) -> float | None:
    """Corpus distinct-n: ``|distinct n-grams| / |n-grams|``, n-grams taken inside each text and pooled over the
    corpus. None when no text has ``n`` tokens. (Li et al. 2016, often cited for it, divide by the number of tokens:
    0.3324 against 0.3499 for distinct-2 of 10,000 standard-library sentences; this is the spec's ratio, which is 1
    when no n-gram repeats.)"""
    n = _checks.positive_int("n", n)
    return _distinct_on_tokens(_tokens(texts), n)


def _check_buckets(name: str, buckets: Any) -> int | None:
    """``buckets`` as an int in [1, 2**64], or None (exact types), else a ValueError naming ``name``."""
    if buckets is None:
        return None
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)) or not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"{name} must be None or an integer in [1, 2**64] (the n-gram hash has 64 bits), "
                         f"got {buckets!r}")
    return int(buckets)


def _bucket(gram: tuple[str, ...], buckets: int) -> int:
    digest = hashlib.blake2b(" ".join(gram).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


def _hhi_on_tokens(tokens: list[list[str]], n: int, buckets: int | None) -> float | None:
    counts = Counter(g for t in tokens for g in _ngrams(t, n))
    total = sum(counts.values())
    if not total:
        return None
    c = np.fromiter(counts.values(), np.float64, len(counts))
    if buckets is not None:   # sum the counts of the types that share a bucket (cost independent of buckets)
        keys = np.fromiter((_bucket(g, buckets) for g in counts), np.uint64, len(counts))
        c = np.bincount(np.unique(keys, return_inverse=True)[1], weights=c)
    share = c / total
    return float(np.sum(share * share))


def ngram_hhi(texts: Sequence[str], n: int = 3, buckets: int | None = 2**20) -> float | None:
    """Hashed n-gram Herfindahl-Hirschman index (seed 002, Appendix C.1 "Baseline B"): ``sum_k (c_k / C)^2``.

    ``c_k``: count of the corpus's n-grams whose type hashes to bucket ``k`` (blake2b, 8-byte digest of the n-gram's
    tokens joined by a space, modulo ``buckets``); ``C = sum_k c_k``. ``buckets=None``: no hashing (exact type
    counts); ``buckets`` in [1, 2**64] (the hash has 64 bits; time and memory do not depend on it). Hash collisions
    can only raise the index (``(a + b)^2 >= a^2 + b^2``); with T types and B buckets about ``T^2 / (2 B)`` pairs
    collide. Ranges from ``1 / #types`` (all n-grams distinct, no collisions) to 1 (one n-gram type). None when no
    text has ``n`` tokens.
    """
    n = _checks.positive_int("n", n)
    buckets = _check_buckets("buckets", buckets)
    return _hhi_on_tokens(_tokens(texts), n, buckets)


def compression_ratio(texts: Sequence[str]) -> float | None:
    """``len(raw) / len(zlib.compress(raw, 9))`` with ``raw`` the texts sorted and joined by newlines (UTF-8).

    Higher = more redundant = less diverse (about 1 for incompressible text; below 1 for a few bytes, which zlib's
    6-byte header and checksum outweigh: 0.2 for ``["hi"]``). Sorting makes the value independent
    of the texts' order and puts texts with equal starts next to each other, which matters because DEFLATE only sees
    the previous 32 KiB. None when no text has a token (every text empty or whitespace only, as every other metric
    here reads them, by :func:`tokenize`: whitespace alone gave 0.385, a user trial, 2026-12-06; ``"<skipped>"``,
    which sacrebleu's 13a tokenizer erases, 0.529, a user trial, 2026-12-07).
    """
    items = check_texts(texts, allow_empty=False)
    try:
        has_token = any(tokenize(item) for item in items)
    except _checks.MissingExtraError:  # (zlib alone: usable without the llm extra, as before; a review)
        has_token = any(item.strip() for item in items)
    if not has_token:
        return None
    raw = "\n".join(sorted(items)).encode("utf-8")
    return len(raw) / len(zlib.compress(raw, 9))


# --------------------------------------------------------------------------------------------------------------
# Self-BLEU
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _LeaveOneOut:
    """Per n-gram over the corpus: the largest count in any text, how many texts have it, and the second largest.
    The largest count among the texts other than ``i`` is then ``second`` if ``i`` alone holds ``top``, else ``top``.
    """

    top: dict = field(default_factory=dict)
    holders: dict = field(default_factory=dict)
    second: dict = field(default_factory=dict)

    def add(self, counts: Mapping) -> None:
        top, holders, second = self.top, self.holders, self.second
        for g, c in counts.items():
            t = top.get(g, 0)
            if c > t:
                second[g], top[g], holders[g] = t, c, 1
            elif c == t:
                holders[g] += 1
            elif c > second.get(g, 0):
                second[g] = c

    def max_without(self, g, c: int) -> int:
        """Largest count of ``g`` among the other texts, for a text that has ``c`` of them."""
        t = self.top[g]
        return self.second.get(g, 0) if c == t and self.holders[g] == 1 else t


def _closest_other_length(h: int, lengths: list[int], counts: Counter) -> int:
    """sacrebleu's closest reference length (ties to the shorter) among all texts' lengths but one copy of ``h``."""
    if counts[h] >= 2:
        return h
    i = bisect_left(lengths, h)  # lengths: sorted distinct lengths; h is lengths[i]
    below = lengths[i - 1] if i > 0 else None
    above = lengths[i + 1] if i + 1 < len(lengths) else None
    if above is None or (below is not None and h - below <= above - h):
        return below
    return above


def self_bleu_scores(texts: Sequence[str], hypotheses: Sequence[int] | None = None, *,
                     smooth_method: str = "exp") -> np.ndarray:
    """Sentence BLEU / 100 of each text in ``hypotheses`` (indices; default all) against all the other texts.

    Identical to ``sacrebleu.metrics.BLEU(lowercase=True, tokenize="13a", smooth_method=smooth_method,
    effective_order=True).sentence_score(texts[i], texts[:i] + texts[i+1:]).score / 100`` (capped at 1; tested),
    but linear in the corpus instead of quadratic: sacrebleu merges the references' n-gram counts (per n-gram, the
    maximum over references) on every call, 1.5 s per hypothesis against 10,000 references here. Instead each text's
    n-grams (sacrebleu's ``extract_all_word_ngrams``, orders 1-4) are read once, the leave-one-out maximum comes from
    the corpus's largest and second-largest count of each n-gram, the reference length is sacrebleu's closest length
    (ties to the shorter) among the other texts, and the score is sacrebleu's own ``BLEU.compute_bleu``.
    Every text takes part as given, empty ones too (:func:`self_bleu` leaves out texts with no token).
    """
    _check_smooth_method(smooth_method)
    items = check_texts(texts, allow_empty=False)
    if len(items) < 2:
        raise ValueError(f"texts must hold at least 2 texts for self-BLEU (each is scored against the others), "
                         f"got {len(items)}")
    if hypotheses is None:
        idx = range(len(items))
    elif isinstance(hypotheses, (str, bytes)):  # (iterated, "01" read as the index "0")
        raise ValueError(f"hypotheses must be None or a sequence of indices in [0, {len(items) - 1}], "
                         f"got the string {hypotheses!r}")
    else:
        try:
            idx = [_index("hypotheses", i, len(items)) for i in hypotheses]
        except TypeError:
            raise ValueError(f"hypotheses must be None or a sequence of indices in [0, {len(items) - 1}], "
                             f"got {hypotheses!r}") from None
    helpers = require("sacrebleu.metrics.helpers")
    bleu = _bleu(smooth_method)
    grams, lens = zip(*(helpers.extract_all_word_ngrams(" ".join(tokenize(t)), 1, BLEU_ORDER) for t in items))
    loo = _LeaveOneOut()
    for g in grams:
        loo.add(g)
    length_counts = Counter(lens)
    lengths = sorted(length_counts)
    out = np.empty(len(idx))
    for k, i in enumerate(idx):
        correct, total = [0] * BLEU_ORDER, [0] * BLEU_ORDER
        for g, c in grams[i].items():
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, loo.max_without(g, c))
        ref_len = _closest_other_length(lens[i], lengths, length_counts)
        score = bleu.compute_bleu(correct, total, lens[i], ref_len, smooth_method=smooth_method,
                                  effective_order=True, max_ngram_order=BLEU_ORDER)
        out[k] = min(score.score / 100.0, 1.0)  # identical texts score 100 up to rounding (1e-16 above)
    return out


def _check_smooth_method(smooth_method: Any) -> str:
    if smooth_method not in SMOOTH_METHODS:
        raise ValueError(f"smooth_method must be one of {SMOOTH_METHODS}, got {smooth_method!r}")
    return smooth_method


def _index(name: str, i: Any, size: int) -> int:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < size:
        raise ValueError(f"{name} must hold indices in [0, {size - 1}], got {i!r}")
    return int(i)


def hypothesis_sample(num_texts: int, max_hypotheses: int | None, seed: int) -> np.ndarray:
    """Which texts self-BLEU scores: all of them when ``max_hypotheses`` is None or >= ``num_texts``, else
    ``max_hypotheses`` distinct indices drawn uniformly by ``numpy.random.default_rng(seed)``, sorted."""
    num_texts = _checks.nonnegative_int("num_texts", num_texts)
    if max_hypotheses is not None:
        max_hypotheses = _checks.positive_int("max_hypotheses", max_hypotheses)
    seed = _checks.random_seed("seed", seed)
    if max_hypotheses is None or max_hypotheses >= num_texts:
        return np.arange(num_texts)
    return np.sort(np.random.default_rng(seed).choice(num_texts, max_hypotheses, replace=False))


def self_bleu(texts: Sequence[str], *, max_hypotheses: int | None = None, seed: int = 0,
              smooth_method: str = "exp") -> float | None:
    """Self-BLEU in [0, 1] of the texts that have at least one token: mean of :func:`self_bleu_scores` over the
    hypotheses of :func:`hypothesis_sample` (references are always all the other such texts). Texts with no token
    (empty, whitespace only) are left out as hypotheses and as references; None for fewer than 2 texts with tokens.
    Diversity is ``1 - self_bleu``."""
    items = check_texts(texts, allow_empty=False)
    if max_hypotheses is not None:
        max_hypotheses = _checks.positive_int("max_hypotheses", max_hypotheses)
    seed = _checks.random_seed("seed", seed)
    _check_smooth_method(smooth_method)
    return _self_bleu_on_tokens(items, [tokenize(t) for t in items], max_hypotheses, seed, smooth_method)[0]


def _self_bleu_on_tokens(items: list[str], tokens: list[list[str]], max_hypotheses: int | None, seed: int,
                         smooth_method: str = "exp") -> tuple[float | None, int, int]:
    """(self-BLEU or None, number of hypotheses scored, number of texts with tokens used)."""
    kept = [t for t, tok in zip(items, tokens) if tok]
    if len(kept) < 2:
        return None, 0, len(kept)
    hyps = hypothesis_sample(len(kept), max_hypotheses, seed)
    return float(np.mean(self_bleu_scores(kept, hyps, smooth_method=smooth_method))), len(hyps), len(kept)


# --------------------------------------------------------------------------------------------------------------
# Semantic diversity
# --------------------------------------------------------------------------------------------------------------


def _unit_rows(e: np.ndarray, source: str = "embeddings has") -> np.ndarray:
    """The rows of ``e`` (num_texts, dim) scaled to unit norm, or a ValueError (starting with ``source``) if any row
    is zero (it has no direction). Each row is first divided by its largest ``|entry|``, so its norm neither
    overflows nor underflows."""
    scale = np.max(np.abs(e), axis=1, initial=0.0)
    zero = np.flatnonzero(scale == 0)
    if zero.size:
        raise ValueError(f"{source} {zero.size} zero rows (first: row {zero[0]}); cosine distance needs non-zero "
                         f"rows")
    e = e / scale[:, None]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def semantic_diversity(embeddings: Any) -> float | None:
    """Mean pairwise cosine distance (seed 004's Div_sem): ``2 / (m (m - 1)) sum_{i<j} (1 - u_i . u_j)`` with
    ``u_i = e_i / ||e_i||``, for ``embeddings`` (num_texts, dim); None for fewer than 2 rows.

    Computed exactly in O(m d) from ``sum_{i != j} u_i . u_j = ||sum_i u_i||^2 - m``; any scale of the rows (1e-200,
    1e200) gives the same value.
    """
    e = _checks.finite_array("embeddings", embeddings, shape=(None, None))
    m = e.shape[0]
    if m and e.shape[1] == 0:  # (reported as "m zero rows" before)
        raise ValueError(f"embeddings must have dim >= 1 columns, got shape {e.shape}")
    u = _unit_rows(e)
    if m < 2:
        return None
    s = u.sum(axis=0)
    return max(0.0, float(1.0 - (s @ s - m) / (m * (m - 1))))  # >= 0 exactly; rounding can give -1e-16


# --------------------------------------------------------------------------------------------------------------
# All at once
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiversityReport:
    """Every metric of :func:`diversity` for one list of texts; higher = more diverse except ``hhi`` and
    ``compression_ratio``. A metric that is undefined for these texts (too short, too few) is None; ``semantic``
    is None when neither embeddings nor an encoder was given."""

    num_texts: int
    ttr: float | None
    ttr_length: int
    ttr_texts: int                          # texts with at least ttr_length tokens (the ones TTR uses)
    distinct: Mapping[int, float | None]    # n -> distinct-n
    self_bleu_diversity: float | None       # 1 - self-BLEU (of the texts with at least one token)
    self_bleu_hypotheses: int               # texts scored as hypotheses (all others are always the references)
    self_bleu_texts: int                    # texts with at least one token (the ones self-BLEU uses)
    hhi: float | None
    hhi_order: int
    hhi_buckets: int | None
    compression_ratio: float | None
    semantic: float | None
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """Flat dict (``distinct_2``, ``distinct_3``, ...), JSON-ready."""
        d = asdict(self)
        for n, v in d.pop("distinct").items():
            d[f"distinct_{n}"] = v
        return d


# Whether a higher value of each DiversityReport.as_dict() metric means more diverse text.
HIGHER_IS_DIVERSE = {"ttr": True, "self_bleu_diversity": True, "hhi": False, "compression_ratio": False,
                     "semantic": True}


def diversity(texts: Sequence[str], *, embeddings: Any = None, encoder: Encoder | None = None, ttr_length: int = 10,
              ngram_orders: Sequence[int] = (2, 3), self_bleu_max: int | None = None, hhi_order: int = 3,
              hhi_buckets: int | None = 2**20, seed: int = 0) -> DiversityReport:
    """All diversity metrics of ``texts`` (see the module docstring; one tokenisation shared by all).

    Args:
      texts: the texts (a non-empty list of str).
      embeddings: (num_texts, dim) sentence embeddings of ``texts`` for the semantic diversity; or
      encoder: an :class:`~llm_bridge.encoders.Encoder` to embed them with (not both). Neither: ``semantic`` is None.
      ttr_length: tokens each text is cut to for the TTR (shorter texts are left out of it).
      ngram_orders: the n of each distinct-n.
      self_bleu_max: score at most this many texts as self-BLEU hypotheses, drawn with ``seed``; None = all (exact,
        about 2 s for 10,000 sentences). Texts with no token are left out of self-BLEU (``self_bleu_texts`` counts
        the ones kept).
      hhi_order, hhi_buckets: n-gram order and number of hash buckets (in [1, 2**64]; None = exact types) of the HHI.
      seed: seeds only the self-BLEU hypothesis subsample.
    """
    items = check_texts(texts, allow_empty=False)
    ttr_length = _checks.positive_int("ttr_length", ttr_length)
    if isinstance(ngram_orders, (str, bytes)) or not isinstance(ngram_orders, Iterable):
        raise ValueError(f"ngram_orders must be a sequence of integers >= 1 (e.g. (2, 3)), got {ngram_orders!r}")
    orders = tuple(_checks.positive_int("ngram_orders", n) for n in ngram_orders)
    if self_bleu_max is not None:
        self_bleu_max = _checks.positive_int("self_bleu_max", self_bleu_max)
    hhi_order = _checks.positive_int("hhi_order", hhi_order)
    hhi_buckets = _check_buckets("hhi_buckets", hhi_buckets)
    seed = _checks.random_seed("seed", seed)
    if embeddings is not None and encoder is not None:
        raise ValueError("give embeddings or encoder, not both")
    if embeddings is not None:
        embeddings = _checks.finite_array("embeddings", embeddings, shape=(len(items), None))
        if embeddings.shape[1] == 0:  # (reported as "3 zero rows" before; a user trial, 2026-12-07)
            raise ValueError(f"embeddings must have dim >= 1 columns, got shape {embeddings.shape}")
        _unit_rows(embeddings)
    if encoder is not None:  # embedded first: a bad output is refused before the lexical metrics' work
        check_encoder(encoder)
        embeddings = encode_texts(encoder, items)
        _unit_rows(embeddings, f"encoder {getattr(encoder, 'name', None) or type(encoder).__name__!r} returned")

    tokens = [tokenize(t) for t in items]
    ttr, ttr_texts = _ttr_on_tokens(tokens, ttr_length)
    sb, sb_hyps, sb_texts = _self_bleu_on_tokens(items, tokens, self_bleu_max, seed)
    return DiversityReport(
        num_texts=len(items), ttr=ttr, ttr_length=ttr_length, ttr_texts=ttr_texts,
        distinct={n: _distinct_on_tokens(tokens, n) for n in orders},
        self_bleu_diversity=None if sb is None else 1.0 - sb,
        self_bleu_hypotheses=sb_hyps, self_bleu_texts=sb_texts,
        hhi=_hhi_on_tokens(tokens, hhi_order, hhi_buckets), hhi_order=hhi_order, hhi_buckets=hhi_buckets,
        compression_ratio=compression_ratio(items),
        semantic=None if embeddings is None else semantic_diversity(embeddings), seed=seed)


# --------------------------------------------------------------------------------------------------------------
# Sanity of the ordering on real text
# --------------------------------------------------------------------------------------------------------------


def ordering_violations(text_sets: Mapping[str, Sequence[str]], **diversity_kwargs) -> list[str]:
    """Check that every metric ranks ``text_sets`` (name -> texts, given from most to least diverse) in that order.

    Each set is scored with :func:`diversity` (``diversity_kwargs`` passed on; give sets of the same size, since TTR
    and distinct-n fall with corpus size) and the reports go to :func:`report_violations`.
    """
    if not isinstance(text_sets, Mapping):
        raise ValueError(f"text_sets must be a mapping of name -> texts (most diverse first), got "
                         f"{type(text_sets).__name__}")
    if len(text_sets) < 2:
        raise ValueError(f"text_sets must hold at least 2 named sets to order, got {len(text_sets)}")
    sets = {name: check_texts(texts, f"text_sets[{name!r}]", allow_empty=False) for name, texts in text_sets.items()}
    return report_violations({name: diversity(texts, **diversity_kwargs).as_dict() for name, texts in sets.items()})


def report_violations(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One message per metric and adjacent pair of ``reports`` (name -> :meth:`DiversityReport.as_dict`, from most
    to least diverse) that the metric does not strictly order that way; an empty list means every metric agrees.
    Metrics that are None for any report are skipped."""
    if not isinstance(reports, Mapping):
        raise ValueError(f"reports must be a mapping of name -> report dict, got {type(reports).__name__}")
    if len(reports) < 2:
        raise ValueError(f"reports must hold at least 2 named reports to order, got {len(reports)}")
    names = list(reports)
    keys = [k for k in reports[names[0]] if k.startswith("distinct_")] + list(HIGHER_IS_DIVERSE)
    for name in names:
        missing = [k for k in keys if k not in reports[name]]
        if missing:
            raise ValueError(f"reports[{name!r}] lacks {', '.join(missing)} (reports to compare need the same "
                             f"metrics, e.g. the same ngram_orders)")
    out = []
    for key in keys:
        vals = [reports[n][key] for n in names]
        if any(v is None for v in vals):
            continue
        sign = 1.0 if HIGHER_IS_DIVERSE.get(key, True) else -1.0
        for (a, va), (b, vb) in zip(zip(names, vals), zip(names[1:], vals[1:])):
            if not sign * va > sign * vb:
                out.append(f"{key}: {a} = {va:.6g} should be {'above' if sign > 0 else 'below'} {b} = {vb:.6g}")
    return out


def bigram_texts(texts: Sequence[str], num_texts: int, *, temperature: float = 0.7, seed: int = 0) -> list[str]:
    """Texts from a word-level bigram model fitted to ``texts``, sampled at ``temperature``: a tiny, repetitive
    generator for the ordering check (low temperature = low diversity).

    Fit: bigram counts of :func:`tokenize`'s tokens with a start symbol before each text. Sampling: text ``j`` starts
    after the start symbol and draws ``len(tokens of texts[j mod len(texts)])`` tokens (so lengths match the
    source), each from ``p(w | previous) ∝ count^(1 / temperature)``; a token with no successor restarts from the
    start symbol. Tokens are joined by spaces. Deterministic for a given ``seed``.
    """
    items = check_texts(texts, allow_empty=False)
    num_texts = _checks.positive_int("num_texts", num_texts)
    temperature = _checks.in_interval("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True)
    seed = _checks.random_seed("seed", seed)
    tokens = [tokenize(t) for t in items]
    start = ""
    follow: dict[str, Counter] = {}
    for t in tokens:
        for a, b in zip([start] + t, t):
            follow.setdefault(a, Counter())[b] += 1
    table = {}
    for a, nexts in follow.items():
        words = sorted(nexts)
        logc = np.log([nexts[w] for w in words])
        with np.errstate(over="ignore"):  # -inf below the most frequent word at tiny T: exp gives 0 (greedy)
            p = np.exp((logc - logc.max()) / temperature)  # (dividing first: inf - inf = NaN at T ~ 1e-310)
        table[a] = (words, np.cumsum(p / p.sum()))
    rng = np.random.default_rng(seed)
    out = []
    for j in range(num_texts):
        prev, words_out = start, []
        for u in rng.random(len(tokens[j % len(tokens)])):
            if prev not in table:
                prev = start
            words, cdf = table[prev]
            prev = words[min(int(np.searchsorted(cdf, u, side="right")), len(words) - 1)]
            words_out.append(prev)
        out.append(" ".join(words_out))
    return out
