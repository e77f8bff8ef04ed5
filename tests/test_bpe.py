"""llm_bridge.bpe: byte-level BPE trained here and the plain byte tokenizer (round trips, determinism, files)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_bridge import bpe

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog",
         "héllo wörld — ünïcödé 中文 😀", "tabs\tand\r\nnew lines", "the the the cat cat"] * 5
TRAINED = bpe.train_bpe(TEXTS, vocab_size=300)      # module level: hypothesis tests cannot take fixtures


@pytest.fixture(scope="module")
def trained():
    return TRAINED


def test_bpe_layout_and_determinism(trained):
    assert trained.kind == "bpe" and trained.eot_id == 0
    assert 257 < trained.vocab_size <= 300
    again = bpe.train_bpe(TEXTS, vocab_size=300)
    assert again.tokenizer.to_str() == trained.tokenizer.to_str()
    # merges learnt: a frequent word is fewer tokens than its bytes
    assert len(trained.encode("the cat")) < len("the cat".encode())


def test_byte_tokenizer_ids_are_bytes():
    tok = bpe.byte_tokenizer()
    assert tok.kind == "byte" and tok.vocab_size == 257 and tok.eot_id == 256
    text = "aé😀\x00"
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text
    # an id outside the vocabulary: dropped silently, or an OverflowError naming nothing (a user trial, 2026-12-06)
    for bad in (257, -1, 2**40):
        with pytest.raises(ValueError, match=rf"ids must lie in 0 .. vocab_size - 1 = 256, got {bad}"):
            tok.decode([65, bad])


def test_decode_refuses_ids_that_are_not_integers():
    # an audit (2026-12-07): int() read True as 1 and cut 2.9 to 2 ('\x01\x02'), and 'a' raised int()'s own error
    import jax.numpy as jnp

    tok = bpe.byte_tokenizer()
    for ids, bad in (([True, 2.9], "ids[0] must be an integer token id, got True"),
                     ([65, 1.5], "ids[1] must be an integer token id, got 1.5"), ([1.0], "ids[0] .* got 1.0"),
                     (["a"], "ids[0] .* got 'a'"), ([np.bool_(True)], "ids[0]"), ([jnp.float32(1)], "ids[0]"),
                     (np.array([1.0]), "ids must be a 1-d array of integer token ids, got float64"),
                     (np.array([[65]]), "ids must be a 1-d array"), ("AB", "ids must be a sequence")):
        with pytest.raises(ValueError, match=bad.replace("[", r"\[").replace("]", r"\]")):
            tok.decode(ids)
    # integers of every kind callers pass: lists of Python or NumPy ints, integer NumPy and JAX arrays, their items
    for ids in ([65, 66], (65, 66), np.array([65, 66], np.int32), np.array([65, 66], np.uint8), jnp.array([65, 66]),
                list(jnp.array([65, 66])), [np.int32(65), np.int64(66)]):
        assert tok.decode(ids) == "AB"
    assert tok.decode([]) == "" and tok.decode(np.zeros(0, np.int32)) == ""


def test_encode_methods_name_a_text_that_is_not_a_string_or_not_utf8():
    # an audit (2026-12-07): tokenizers raised "TextInputSequence must be str" for a lone surrogate, naming nothing
    tok = bpe.byte_tokenizer()
    with pytest.raises(ValueError, match=r"text cannot be encoded as UTF-8: '\\ud800' at character 1 is a lone"):
        tok.encode("a\ud800")
    with pytest.raises(ValueError, match="text must be a str, got int"):
        tok.encode(3)
    for method in (tok.encode_batch, tok.encode_documents):
        with pytest.raises(ValueError, match=r"texts\[1\] cannot be encoded as UTF-8"):
            method(["a", "b\udfff"])
        with pytest.raises(ValueError, match=r"texts\[0\] must be a str, got int"):
            method([3])
        with pytest.raises(ValueError, match="got a single string"):   # (encode_batch encoded each character)
            method("ab")
    assert tok.encode_batch(("a", "é")) == [[97], [195, 169]] and tok.encode("é", plain=True) == [195, 169]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_round_trips(text):
    for tok in (bpe.byte_tokenizer(), TRAINED):
        assert tok.decode(tok.encode(text)) == text


def test_documents_stream_and_eot(trained):
    stream = trained.encode_documents(["the cat", "a dog"])
    eot = trained.eot_id
    assert stream.dtype.name == "int32" and stream[0] == eot
    parts = trained.decode(stream.tolist()).split(bpe.EOT)
    assert parts == ["", "the cat", "a dog"]


def test_save_load(tmp_path, trained):
    path = trained.save(tmp_path)
    assert path.name == "tokenizer.json"
    back = bpe.TextTokenizer.load(tmp_path)
    assert back.kind == "bpe" and back.encode("the cat sat") == trained.encode("the cat sat")
    bpe.byte_tokenizer().save(tmp_path / "b")
    assert bpe.TextTokenizer.load(tmp_path / "b" / "tokenizer.json").kind == "byte"


def test_a_bpe_without_merges_reloads_as_bpe(tmp_path):
    """Too little text for any merge (min_frequency 2): the reloaded tokenizer was labelled "byte" (ids 0-255 the
    bytes, EOT 256) although its ids are the BPE's (EOT 0, 'a' 65), and a saved nanoGPT said so."""
    few = bpe.train_bpe(["ab"], vocab_size=300)
    few.save(tmp_path)
    back = bpe.TextTokenizer.load(tmp_path)
    assert back.kind == few.kind == "bpe"
    assert back.encode("ab é") == few.encode("ab é") != bpe.byte_tokenizer().encode("ab é")


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size must be in \[257, 2,097,152\]"):
        bpe.train_bpe(TEXTS, vocab_size=100)
    # a user trial (2026-12-06): 10**9 aborted the process (the trainer allocated 70 GB up front)
    with pytest.raises(ValueError, match=r"vocab_size must be in \[257, 2,097,152\] .*got 1,000,000,000"):
        bpe.train_bpe(TEXTS, vocab_size=10**9)
    with pytest.raises(ValueError, match="texts must hold at least one text"):
        bpe.train_bpe([], vocab_size=300)
    with pytest.raises(ValueError, match=r"texts\[1\] must be a str"):
        bpe.train_bpe(["a", 3], vocab_size=300)
    # a lone surrogate: refused by name (tokenizers raised an unnamed TypeError)
    with pytest.raises(ValueError, match=r"texts\[1\] cannot be encoded as UTF-8: '\\ud800' at character 2"):
        bpe.train_bpe(["a", "ab\ud800"], vocab_size=300)
    with pytest.raises(ValueError, match="does not exist"):
        bpe.TextTokenizer.load(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not be read"):
        bpe.TextTokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        bpe.make_tokenizer("wordpiece", TEXTS)


@pytest.mark.parametrize("tok", [bpe.byte_tokenizer(), TRAINED], ids=["byte", "bpe"])
def test_a_literal_endoftext_is_eot_by_default_and_bytes_when_plain(tok):
    text = "a<|endoftext|>b"
    assert tok.encode(text).count(tok.eot_id) == 1                 # tokenizers' rule for special tokens
    plain = tok.encode(text, plain=True)
    assert tok.eot_id not in plain and tok.decode(plain) == text
    assert tok.encode_batch([text, "c"], plain=True) == [plain, tok.encode("c")]
    if tok.kind == "byte":
        assert plain == list(text.encode())
