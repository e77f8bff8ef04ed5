"""Text-diversity metrics (llm_bridge.diversity): hand-computed values, sacrebleu's own BLEU, properties, and a sane
ordering on real text (standard-library sentences > a low-temperature bigram sampler > one sentence repeated)."""

import math
import zlib

import numpy as np
import pytest

pytest.importorskip("sacrebleu")

from llm_bridge import corpus  # noqa: E402
from llm_bridge import diversity as dv  # noqa: E402

CAT = "The cat sat on the mat"
DOG = "the dog sat on the log"


@pytest.fixture(scope="module")
def human():
    """400 human sentences from the language reference topics (pydoc_data; fast to read, no docstring parsing)."""
    texts = corpus.stdlib_corpus(corpus.CorpusConfig(docstrings=False)).texts
    return list(texts[:400])


def test_tokenize_is_sacrebleu_13a_lowercased():
    assert dv.tokenize("Hello, World!  ") == ["hello", ",", "world", "!"]
    assert dv.tokenize(CAT) == ["the", "cat", "sat", "on", "the", "mat"]


# ----------------------------------------------------------------------------------------------------------------
# Hand-computed values on two six-word sentences:
#   the cat sat on the mat / the dog sat on the log
# ----------------------------------------------------------------------------------------------------------------


def test_ttr_by_hand():
    # first 4 tokens: "the cat sat on" + "the dog sat on" -> types {the, cat, sat, on, dog} = 5 of 8 tokens
    assert dv.type_token_ratio([CAT, DOG], length=4) == pytest.approx(5 / 8)
    # length 6: all 12 tokens, types {the, cat, sat, on, mat, dog, log} = 7
    assert dv.type_token_ratio([CAT, DOG], length=6) == pytest.approx(7 / 12)


def test_ttr_leaves_out_short_texts():
    # length 3: "a b" (2 tokens) is left out; "a b c" + "c d e" -> types {a, b, c, d, e} = 5 of 6
    assert dv.type_token_ratio(["a b c", "a b", "c d e f"], length=3) == pytest.approx(5 / 6)
    assert dv.type_token_ratio(["a b", "c"], length=3) is None
    report = dv.diversity(["a b c", "a b", "c d e f"], ttr_length=3)
    assert report.ttr_texts == 2 and report.ttr == pytest.approx(5 / 6)


def test_distinct_n_by_hand():
    # bigrams: 5 + 5 = 10; shared: "sat on", "on the" -> 8 distinct
    assert dv.distinct_n([CAT, DOG], 2) == pytest.approx(8 / 10)
    # trigrams: 4 + 4 = 8; shared: "sat on the" -> 7 distinct
    assert dv.distinct_n([CAT, DOG], 3) == pytest.approx(7 / 8)
    # unigrams: 12 tokens, 7 types; n-grams never cross texts: "a" + "b" has no bigram
    assert dv.distinct_n([CAT, DOG], 1) == pytest.approx(7 / 12)
    assert dv.distinct_n(["a", "b"], 2) is None


def test_hhi_by_hand():
    # bigram counts: "sat on" 2, "on the" 2, six others 1; C = 10 -> (4 + 4 + 6) / 100
    assert dv.ngram_hhi([CAT, DOG], n=2, buckets=None) == pytest.approx(0.14)
    # no collision among 8 types in 2^20 buckets with this hash -> the exact value
    assert dv.ngram_hhi([CAT, DOG], n=2) == pytest.approx(0.14)
    # one bucket: everything collides -> 1
    assert dv.ngram_hhi([CAT, DOG], n=2, buckets=1) == pytest.approx(1.0)
    # a single repeated trigram type
    assert dv.ngram_hhi(["x x x x"], n=3, buckets=None) == pytest.approx(1.0)


def test_hhi_buckets_up_to_the_hash_width():
    # counting needs no array of `buckets` entries: 2**40 and 2**64 buckets cost what 2**20 do (no collision here)
    for buckets in (2**40, 2**64 - 1, 2**64):
        assert dv.ngram_hhi([CAT, DOG], n=2, buckets=buckets) == pytest.approx(0.14, rel=1e-15)
    assert dv.diversity([CAT, DOG], hhi_order=2, hhi_buckets=2**64).hhi == pytest.approx(0.14, rel=1e-15)
    # few buckets: counts of the types sharing a bucket add up, as a plain loop does it
    counts = {}
    for t in (CAT, DOG):
        toks = dv.tokenize(t)
        for g in zip(toks, toks[1:]):
            counts[dv._bucket(g, 3)] = counts.get(dv._bucket(g, 3), 0) + 1
    assert dv.ngram_hhi([CAT, DOG], n=2, buckets=3) == pytest.approx(sum((c / 10) ** 2 for c in counts.values()))


def test_hashed_hhi_never_below_exact(human):
    exact = dv.ngram_hhi(human, n=2, buckets=None)
    for buckets in (7, 101, 4099):
        assert dv.ngram_hhi(human, n=2, buckets=buckets) >= exact - 1e-15
    # the bucket of an n-gram is a stable hash (blake2b), not Python's salted hash(): fixed value
    assert dv._bucket(("sat", "on"), 2**20) == int.from_bytes(
        __import__("hashlib").blake2b(b"sat on", digest_size=8).digest(), "little") % 2**20


def test_self_bleu_by_hand():
    # CAT against DOG (and vice versa): unigram matches the x2, sat, on = 4/6; bigrams "sat on", "on the" = 2/5;
    # trigram "sat on the" = 1/4; 4-grams 0/3 -> exp smoothing: 100 / (2 * 3); equal lengths -> BP = 1
    p = [100 * 4 / 6, 100 * 2 / 5, 100 * 1 / 4, 100 / (2 * 3)]
    bleu = math.exp(sum(math.log(v) for v in p) / 4) / 100
    np.testing.assert_allclose(dv.self_bleu_scores([CAT, DOG]), [bleu, bleu], rtol=1e-12)
    assert dv.self_bleu([CAT, DOG]) == pytest.approx(bleu, rel=1e-12)
    assert dv.diversity([CAT, DOG]).self_bleu_diversity == pytest.approx(1 - bleu, rel=1e-12)


def test_self_bleu_leaves_out_texts_without_tokens():
    # sacrebleu scores an empty text 0 against anything: counted, five empty outputs would make five copies of one
    # sentence look half diverse, and only empty outputs maximally diverse
    s = "The quick brown fox jumps over the lazy dog near the river bank today."
    r = dv.diversity([s] * 5 + ["", "   ", "", "\t", ""])
    assert r.self_bleu_diversity == pytest.approx(0.0, abs=1e-12)
    assert r.self_bleu_texts == 5 and r.self_bleu_hypotheses == 5
    r = dv.diversity([""] * 10)
    assert r.self_bleu_diversity is None and r.self_bleu_texts == 0 and r.self_bleu_hypotheses == 0
    assert dv.self_bleu([CAT, "", DOG, "  "]) == pytest.approx(dv.self_bleu([CAT, DOG]), rel=1e-15)
    assert dv.self_bleu([CAT, " "]) is None
    # the subsample is drawn among the texts with tokens
    texts = [CAT, "", DOG, "a cat sat", ""]
    assert dv.self_bleu(texts, max_hypotheses=2, seed=1) == pytest.approx(
        dv.self_bleu([CAT, DOG, "a cat sat"], max_hypotheses=2, seed=1), rel=1e-15)
    assert dv.diversity(texts, self_bleu_max=2).self_bleu_hypotheses == 2


def test_compression_ratio_by_hand():
    raw = (CAT + "\n" + DOG).encode()  # sorted: "The cat ..." < "the dog ..." (uppercase first)
    assert dv.compression_ratio([DOG, CAT]) == pytest.approx(len(raw) / len(zlib.compress(raw, 9)))
    assert dv.compression_ratio(["", ""]) is None
    assert dv.compression_ratio(["", "   ", "\n"]) is None  # no token, as every other metric reads it (was 0.385)
    assert dv.compression_ratio(["<skipped>"]) is None  # 13a erases it: no token for distinct-n either (was 0.529)
    assert dv.distinct_n(["<skipped>"], 1) is None


def test_compression_ratio_needs_no_sacrebleu(monkeypatch):
    """A review (2026-12-07): reading tokens made compression_ratio, zlib alone before, need the llm extra's
    sacrebleu; without it, texts with no character but whitespace still read None."""
    from collapse_jax import _checks

    def missing(text):
        raise _checks.MissingExtraError("llm_bridge needs 'sacrebleu.metrics'")

    monkeypatch.setattr(dv, "tokenize", missing)
    raw = (CAT + "\n" + DOG).encode()
    assert dv.compression_ratio([DOG, CAT]) == pytest.approx(len(raw) / len(zlib.compress(raw, 9)))
    assert dv.compression_ratio([" ", "\n"]) is None


def test_semantic_diversity_by_hand():
    # cos: (e1, e2) = 0, (e1, e3) = (e2, e3) = 1/sqrt 2 -> distances 1, 1 - 1/sqrt 2 twice
    e = [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]
    assert dv.semantic_diversity(e) == pytest.approx((3 - math.sqrt(2)) / 3, rel=1e-12)
    assert dv.semantic_diversity([[1.0, 2.0]]) is None
    assert dv.semantic_diversity([[1.0, 2.0], [3.0, 6.0]]) == pytest.approx(0.0, abs=1e-15)


def test_semantic_diversity_any_scale():
    # the row norms of 1e200 overflow and of 1e-200 underflow when squared; the value does not depend on the scale
    assert dv.semantic_diversity(np.array([[1e200, 0.0], [0.0, 1e200]])) == pytest.approx(1.0, rel=1e-15)
    assert dv.semantic_diversity(np.array([[1e-200, 0.0], [0.0, 1e-200]])) == pytest.approx(1.0, rel=1e-15)
    e = np.random.default_rng(3).normal(size=(6, 4))
    want = dv.semantic_diversity(e)
    for scale in (1e-300, 1e-160, 1e160, 1e300):
        assert dv.semantic_diversity(e * scale) == pytest.approx(want, rel=1e-13)
    assert dv.diversity(["a", "b"], embeddings=[[1e-320, 0.0], [0.0, 1e300]]).semantic == pytest.approx(1.0)


def test_semantic_diversity_matches_all_pairs_loop():
    e = np.random.default_rng(0).normal(size=(9, 5))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    pairs = [1 - u[i] @ u[j] for i in range(9) for j in range(i + 1, 9)]
    assert dv.semantic_diversity(e) == pytest.approx(np.mean(pairs), rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Self-BLEU against sacrebleu's own sentence BLEU
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smooth", ["exp", "floor", "add-k", "none"])
def test_self_bleu_equals_sacrebleu_sentence_score(human, smooth):
    from sacrebleu.metrics import BLEU

    # real sentences plus duplicates (leave-one-out must still see the twin), a prefix, an empty text, and lengths
    # that tie for the closest reference length
    texts = human[:60] + [human[3], human[3][:40], "", "one two three", "one two three four five"]
    bleu = BLEU(lowercase=True, tokenize="13a", smooth_method=smooth, effective_order=True)
    want = [bleu.sentence_score(t, texts[:i] + texts[i + 1:]).score / 100 for i, t in enumerate(texts)]
    got = dv.self_bleu_scores(texts, smooth_method=smooth)
    np.testing.assert_allclose(got, np.minimum(want, 1.0), rtol=1e-13, atol=1e-15)
    assert got[3] == pytest.approx(1.0) and got[60] == pytest.approx(1.0)


def test_self_bleu_hypothesis_subsample_is_seeded(human):
    idx = dv.hypothesis_sample(len(human), 50, seed=3)
    assert len(idx) == 50 and len(set(idx)) == 50 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, dv.hypothesis_sample(len(human), 50, seed=3))
    assert not np.array_equal(idx, dv.hypothesis_sample(len(human), 50, seed=4))
    np.testing.assert_array_equal(dv.hypothesis_sample(10, 50, seed=0), np.arange(10))
    sub = dv.self_bleu(human, max_hypotheses=50, seed=3)
    assert sub == pytest.approx(np.mean(dv.self_bleu_scores(human)[idx]), rel=1e-12)
    report = dv.diversity(human, self_bleu_max=50, seed=3)
    assert report.self_bleu_hypotheses == 50 and report.self_bleu_diversity == pytest.approx(1 - sub, rel=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------------------------


def test_duplicated_corpus(human):
    texts = human[:100]
    once, twice = dv.diversity(texts), dv.diversity(texts + texts)
    for n in (2, 3):
        assert twice.distinct[n] == pytest.approx(once.distinct[n] / 2, rel=1e-12)
    assert twice.ttr == pytest.approx(once.ttr / 2, rel=1e-12)
    assert twice.self_bleu_diversity == pytest.approx(0.0, abs=1e-12)
    assert twice.hhi == pytest.approx(once.hhi, rel=1e-12)  # shares unchanged
    assert twice.compression_ratio > once.compression_ratio


def test_permutation_invariance(human):
    texts = human[:80]
    emb = np.random.default_rng(1).normal(size=(80, 6))
    perm = np.random.default_rng(2).permutation(80)
    a = dv.diversity(texts, embeddings=emb).as_dict()
    b = dv.diversity([texts[i] for i in perm], embeddings=emb[perm]).as_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12), k


def test_report_fields_and_dict(human):
    r = dv.diversity(human[:50], ngram_orders=(1, 2, 3), hhi_order=2, hhi_buckets=None)
    d = r.as_dict()
    assert d["num_texts"] == 50 and d["semantic"] is None and d["hhi_buckets"] is None
    assert {"distinct_1", "distinct_2", "distinct_3"} <= d.keys() and "distinct" not in d
    assert d["hhi"] == pytest.approx(dv.ngram_hhi(human[:50], n=2, buckets=None))
    assert d["distinct_2"] == pytest.approx(dv.distinct_n(human[:50], 2))
    assert d["ttr"] == pytest.approx(dv.type_token_ratio(human[:50], length=10))
    assert d["compression_ratio"] == pytest.approx(dv.compression_ratio(human[:50]))
    single = dv.diversity(["just one text here"])
    assert single.self_bleu_diversity is None and single.self_bleu_hypotheses == 0


def test_bigram_texts_deterministic_and_length_matched(human):
    a = dv.bigram_texts(human, 30, temperature=0.7, seed=5)
    assert a == dv.bigram_texts(human, 30, temperature=0.7, seed=5)
    assert a != dv.bigram_texts(human, 30, temperature=0.7, seed=6)
    assert [len(t.split()) for t in a] == [len(dv.tokenize(t)) for t in human[:30]]


# ----------------------------------------------------------------------------------------------------------------
# Ordering on real text
# ----------------------------------------------------------------------------------------------------------------


def repeated_median(texts):
    """The text of median token length, repeated len(texts) times."""
    lengths = [len(dv.tokenize(t)) for t in texts]
    return [texts[int(np.argsort(lengths, kind="stable")[len(texts) // 2])]] * len(texts)


def test_ordering_human_bigram_repeated(human):
    sets = {"human": human, "bigram T=0.7": dv.bigram_texts(human, len(human), temperature=0.7),
            "one text repeated": repeated_median(human)}
    assert dv.ordering_violations(sets) == []
    # the check can fail: in reverse order every metric is violated
    reverse = dict(reversed(list(sets.items())))
    assert len(dv.ordering_violations(reverse)) == 2 * 6


def test_semantic_ordering_with_minilm(human):
    enc = pytest.importorskip("llm_bridge.encoders").minilm_encoder()
    texts = human[:40]
    sets = {"human": texts, "bigram T=0.7": dv.bigram_texts(texts, len(texts), temperature=0.7),
            "one text repeated": repeated_median(texts)}
    reports = {k: dv.diversity(v, encoder=enc) for k, v in sets.items()}
    assert reports["human"].semantic > reports["bigram T=0.7"].semantic > reports["one text repeated"].semantic
    assert reports["one text repeated"].semantic == pytest.approx(0.0, abs=1e-6)
    assert dv.report_violations({k: r.as_dict() for k, r in reports.items()}) == []


# ----------------------------------------------------------------------------------------------------------------
# Bad input: clear messages before any compute
# ----------------------------------------------------------------------------------------------------------------


class ExtraRowEncoder:
    """An encoder that returns one row too many."""

    def encode(self, texts, batch_size=32):
        return np.arange(1.0, 1 + 6 * (len(texts) + 1)).reshape(len(texts) + 1, 6)


class ZeroRowEncoder:
    """An encoder that returns rows of zeros (a user trial: its error named "embeddings", not the encoder, and came
    after the lexical metrics)."""

    def encode(self, texts, batch_size=32):
        return np.zeros((len(texts), 4))


SEED_RANGE = r"seed must be an integer in \[0, 2\*\*63 - 1\]"


@pytest.mark.parametrize("call, match", [
    (lambda: dv.diversity([]), "texts must hold at least one text"),
    (lambda: dv.diversity("a text"), "single string"),
    (lambda: dv.diversity(["a", 3]), r"texts\[1\] must be a str"),
    (lambda: dv.diversity(["a b"], ttr_length=0), "ttr_length must be an integer >= 1"),
    (lambda: dv.diversity(["a b"], ngram_orders=(2, 0)), "ngram_orders must be an integer >= 1"),
    (lambda: dv.diversity(["a b"], hhi_buckets=0), r"hhi_buckets must be None or an integer in \[1, 2\*\*64\]"),
    (lambda: dv.diversity(["a b"], hhi_buckets=2**64 + 1), r"hhi_buckets must be None or an integer in \[1, 2\*\*64\]"),
    (lambda: dv.ngram_hhi(["a b c"], 3, 2**64 + 1), r"buckets must be None or an integer in \[1, 2\*\*64\]"),
    (lambda: dv.ngram_hhi(["a b c"], 3, 2.0), r"buckets must be None or an integer in \[1, 2\*\*64\]"),
    (lambda: dv.diversity(["a b"], self_bleu_max=0), "self_bleu_max must be an integer >= 1"),
    (lambda: dv.diversity(["a b"], seed=-1), SEED_RANGE),
    (lambda: dv.diversity(["a", "b"], embeddings=np.ones((3, 2))), r"embeddings must have shape \(2, \?\)"),
    (lambda: dv.diversity(["a", "b"], embeddings=[[1.0, np.nan], [1.0, 1.0]]), "finite"),
    (lambda: dv.diversity(["a", "b"], embeddings=np.ones((2, 2)), encoder=object()), "not both"),
    (lambda: dv.diversity(["a b"], ngram_orders=2), r"ngram_orders must be a sequence of integers"),
    (lambda: dv.diversity(["a", "b"], encoder="minilm"), "encoder must be an llm_bridge.encoders.Encoder"),
    (lambda: dv.diversity(["a", "b"], embeddings=[[0.0, 0.0], [1.0, 0.0]]), "zero rows"),
    (lambda: dv.semantic_diversity([[0.0, 0.0], [1.0, 0.0]]), "zero rows"),
    (lambda: dv.self_bleu_scores(["only one"]), "at least 2 texts"),
    (lambda: dv.self_bleu_scores(["a", "b"], [2]), r"hypotheses must hold indices in \[0, 1\]"),
    (lambda: dv.self_bleu_scores(["a", "b"], smooth_method="add-one"), "smooth_method must be one of"),
    (lambda: dv.self_bleu_scores(["a b", "c"], 3), r"hypotheses must be None or a sequence of indices in \[0, 1\]"),
    (lambda: dv.self_bleu(["a b"], smooth_method="bad"), "smooth_method must be one of"),
    (lambda: dv.self_bleu_scores(["a b", "c"], "01"), r"hypotheses must be .* got the string '01'"),  # (read as 0)
    (lambda: dv.diversity(["a b", "c d"], encoder=ZeroRowEncoder()),
     r"encoder 'ZeroRowEncoder' returned 2 zero rows \(first: row 0\)"),
    (lambda: dv.self_bleu(["a b", "c d", "e f"], max_hypotheses=1, seed=-1), SEED_RANGE),
    (lambda: dv.self_bleu(["a b", "c d", "e f"], max_hypotheses=1, seed=1.5), SEED_RANGE),
    (lambda: dv.self_bleu(["a b", "c d"], seed=2**63), SEED_RANGE),
    (lambda: dv.hypothesis_sample(3, 1, seed=-1), SEED_RANGE),
    (lambda: dv.bigram_texts(["a b"], 2, seed=-1), SEED_RANGE),
    (lambda: dv.bigram_texts(["a b"], 2, seed="0"), SEED_RANGE),
    (lambda: dv.diversity(["a b", "c d"], encoder=ExtraRowEncoder()),
     r"encoder 'ExtraRowEncoder' returned shape \(3, 6\) for 2 texts; encode must return .* = \(2, dim\)"),
    (lambda: dv.type_token_ratio(["a"], length=-2), "length must be an integer >= 1"),
    (lambda: dv.distinct_n(["a"], 0), "n must be an integer >= 1"),
    (lambda: dv.bigram_texts(["a b"], 3, temperature=0), r"temperature must lie in \(0.0, inf\)"),
    (lambda: dv.ordering_violations({"one": ["a"]}), "at least 2 named sets"),
    (lambda: dv.report_violations({"one": {}}), "at least 2 named reports"),
    (lambda: dv.ordering_violations([["a b"], ["c d"]]), "text_sets must be a mapping"),
    (lambda: dv.report_violations([{}, {}]), "reports must be a mapping"),
    (lambda: dv.report_violations({"a": dv.diversity(["a b"]).as_dict(),
                                   "b": dv.diversity(["a b"], ngram_orders=(3,)).as_dict()}),
     r"reports\['b'\] lacks distinct_2"),
    (lambda: dv.diversity(["a", "b"], embeddings=[[1.0, 2.0], [3.0]]), "embeddings must be a rectangular array"),
    # an audit (2026-12-04): a set gave a self-BLEU that changed with the process's hash seed, a dict its keys,
    # complex embeddings lost their imaginary part with only NumPy's warning, zero columns read as "2 zero rows"
    (lambda: dv.diversity({"a b", "c d"}), "texts must be an ordered sequence of strings .* got a set"),
    (lambda: dv.self_bleu(frozenset(["a b", "c d"])), "got a frozenset"),
    (lambda: dv.diversity({"a b": 1, "c d": 2}), "got a dict"),
    (lambda: dv.semantic_diversity(np.array([[1 + 5j, 1], [1, 1 + 5j]])), "embeddings must hold real numbers"),
    (lambda: dv.semantic_diversity([[1 + 5j, 1], [1, 1 + 5j]]), "embeddings must hold real numbers, got complex"),
    (lambda: dv.semantic_diversity(np.ones((2, 0))), r"embeddings must have dim >= 1 columns, got shape \(2, 0\)"),
    (lambda: dv.diversity(["a b", "c d", "e f"], embeddings=np.zeros((3, 0))),
     r"embeddings must have dim >= 1 columns, got shape \(3, 0\)"),  # (was "3 zero rows"; a user trial)
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ordering_checks_every_set_before_scoring_any():
    class CountingEncoder:
        """Counts encode calls; a bad later set must be refused before the first set is embedded."""
        dim = 4
        calls = 0

        def encode(self, texts, batch_size=64):
            CountingEncoder.calls += 1
            return np.ones((len(texts), 4))

    with pytest.raises(ValueError, match=r"text_sets\['bad'\]\[1\] must be a str"):
        dv.ordering_violations({"good": ["a b", "c d"], "bad": ["a b", 3]}, encoder=CountingEncoder())
    assert CountingEncoder.calls == 0



def test_bigram_texts_greedy_at_the_smallest_temperatures():
    """An audit (2026-12-04): at T = 1e-310 log(count) / T overflowed to inf, inf - inf = NaN, and the sampler
    picked the rarest successor; the limit T -> 0 is the most frequent one."""
    texts = ["a b", "a c", "a c", "a d", "a d", "a d"]
    for t in (1e-3, 1e-300, 1e-310, 5e-324):
        assert set(dv.bigram_texts(texts, 20, temperature=t)) == {"a d"}, t
