"""Tokenizers for the nanoGPT that need no download: byte-level BPE trained here, or plain bytes.

Both are ``tokenizers.Tokenizer`` objects (Hugging Face's ``tokenizers`` library) with GPT-2's byte-level
pre-tokenizer and decoder, so every Unicode text maps to bytes and back exactly (``decode(encode(t)) == t``), and one
special token ``<|endoftext|>`` (EOT) that separates documents and serves as the beginning-of-sequence token.
By default the literal string ``<|endoftext|>`` inside a text is encoded as EOT (``tokenizers``' rule for special
tokens; so it splits a training document); ``plain=True`` encodes it as its 13 bytes, as the nanoGPT's prompts and
scored texts do.

* :func:`train_bpe`: byte-level BPE trained on a list of texts (vocabulary ``vocab_size`` including the 256 byte
  symbols and EOT; EOT has id 0); the same texts give the same merges.
* :func:`byte_tokenizer`: the fallback, no merges: ids 0-255 are the bytes, EOT is 256 (vocabulary 257).

:class:`TextTokenizer` wraps either and is saved as one JSON file (``tokenizer.json``) inside a model folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from collapse_jax import _checks
from llm_bridge.encoders import require
from llm_bridge.generators import check_texts, check_utf8

EOT = "<|endoftext|>"
FILENAME = "tokenizer.json"
KINDS = ("bpe", "byte")


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte 0-255 (the alphabet of the byte-level pre-tokenizer)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def _byte_level(model) -> Any:
    """A ``tokenizers.Tokenizer`` around ``model`` with the byte-level pre-tokenizer/decoder and EOT as special."""
    tk = require("tokenizers")
    tok = tk.Tokenizer(model)
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = tk.decoders.ByteLevel()
    return tok


@dataclass
class TextTokenizer:
    """Text <-> token ids. ``kind`` is ``"bpe"`` or ``"byte"``; ``eot_id`` is the id of ``<|endoftext|>``."""

    tokenizer: Any   # tokenizers.Tokenizer
    kind: str

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def eot_id(self) -> int:
        return int(self.tokenizer.token_to_id(EOT))

    @cached_property
    def _plain(self) -> Any:
        """A copy of ``tokenizer`` that encodes special tokens' strings in a text as plain text (bytes)."""
        tk = require("tokenizers")
        tok = tk.Tokenizer.from_str(self.tokenizer.to_str())
        tok.encode_special_tokens = True
        return tok

    def encode(self, text: str, *, plain: bool = False) -> list[int]:
        """Token ids of one text (no EOT added). A literal ``<|endoftext|>`` in ``text`` is EOT, or with ``plain``
        its plain bytes. A ``text`` that is not a str, or not encodable as UTF-8 (a lone surrogate), is a ValueError
        naming it (``tokenizers`` raised "TextInputSequence must be str", naming nothing; an audit, 2026-12-07)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        check_utf8("text", text)
        return (self._plain if plain else self.tokenizer).encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], *, plain: bool = False) -> list[list[int]]:
        """Token ids of each text (no EOT added), in parallel inside ``tokenizers``; ``plain`` as in :meth:`encode`.
        ``texts`` is checked as :func:`llm_bridge.generators.check_texts` checks it (a ValueError naming
        ``texts[i]`` for an item that is not a str or not UTF-8; a bare string is refused)."""
        tok = self._plain if plain else self.tokenizer
        return [e.ids for e in tok.encode_batch(check_texts(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; EOT tokens are written as ``<|endoftext|>``. An id outside ``0 .. vocab_size - 1``
        is a ValueError naming it (an unknown id was dropped silently, a negative one raised an OverflowError; a
        user trial, 2026-12-06); so is an id that is not an integer (a bool, a float, a string: ``int()`` read True as
        1 and cut 2.9 to 2; an audit, 2026-12-07). Python and NumPy integers and 1-d integer arrays (NumPy, JAX) are
        taken."""
        ids = _token_ids(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids must lie in 0 .. vocab_size - 1 = {self.vocab_size - 1}, got {bad[0]}")
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One int32 stream: EOT before every document, ``[EOT, doc0..., EOT, doc1..., ...]``; ``texts`` checked as
        in :meth:`encode_batch`."""
        eot = self.eot_id
        pieces = [np.asarray([eot] + ids, dtype=np.int32) for ids in self.encode_batch(texts)]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/tokenizer.json`` atomically and return its path."""
        from collapse_jax.results import atomic_write_text

        path = Path(folder) / FILENAME
        atomic_write_text(path, self.tokenizer.to_str(pretty=True))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextTokenizer":
        """A tokenizer saved by :meth:`save` (``path`` is the JSON file or the folder that holds it)."""
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise ValueError(f"tokenizer file {str(path)!r} does not exist")
        tk = require("tokenizers")
        try:
            tok = tk.Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type
            raise ValueError(f"tokenizer file {str(path)!r} could not be read: {exc}") from exc
        if tok.token_to_id(EOT) is None:
            raise ValueError(f"tokenizer file {str(path)!r} has no {EOT} token")
        merges = json.loads(tok.to_str())["model"].get("merges")
        # the byte tokenizer: no merges and EOT after the 256 bytes; a BPE trained on too little text for any merge
        # has none either, but its EOT is id 0 (it was labelled "byte" on reloading, with other ids than bytes)
        return cls(tok, "bpe" if merges or tok.token_to_id(EOT) != 256 else "byte")


def _token_ids(ids: Any) -> list[int]:
    """``ids`` as a list of int, or a ValueError naming ``ids`` (``ids[i]`` for an item that is not an integer)."""
    if hasattr(ids, "dtype") and hasattr(ids, "shape"):      # a NumPy, JAX or torch array: its dtype decides
        array = np.asarray(ids)
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-d array of integer token ids, got {array.dtype} of shape {array.shape}")
        return [int(i) for i in array.tolist()]
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"ids must be a sequence of integer token ids, got a {type(ids).__name__}")
    try:
        items = list(ids)
    except TypeError:
        raise ValueError(f"ids must be a sequence of integer token ids, got {type(ids).__name__}") from None
    if all(type(i) is int for i in items):                  # the common case (generate's rows), checked fast
        return items
    out = []
    for k, item in enumerate(items):
        # a 0-d array (an item of a JAX or torch array) as its NumPy scalar
        i = np.asarray(item)[()] if getattr(item, "shape", None) == () else item
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"ids[{k}] must be an integer token id, got {item!r}")
        out.append(int(i))
    return out


def byte_tokenizer() -> TextTokenizer:
    """Plain bytes: ids 0-255 are the UTF-8 bytes of the text, 256 is ``<|endoftext|>``."""
    tk = require("tokenizers")
    vocab = {s: b for b, s in enumerate(_byte_symbols())}
    tok = _byte_level(tk.models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([EOT])
    return TextTokenizer(tok, "byte")


# The largest vocabulary train_bpe takes: the tokenizers trainer allocates about 70 bytes per slot up front, so
# vocab_size = 10**9 aborted the process ("memory allocation of 70866960400 bytes failed"; a user trial, 2026-12-06).
MAX_VOCAB = 2**21


def check_vocab_size(vocab_size) -> int:
    """``vocab_size`` of a BPE vocabulary checked: an integer in [257, :data:`MAX_VOCAB`]."""
    vocab_size = _checks.positive_int("vocab_size", vocab_size)
    if not 257 <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"vocab_size must be in [257, {MAX_VOCAB:,}] (256 bytes + {EOT}; the trainer allocates its "
                         f"table up front), got {vocab_size:,}")
    return vocab_size


def train_bpe(texts: Sequence[str], vocab_size: int = 4096) -> TextTokenizer:
    """Byte-level BPE learnt from ``texts``: ``<|endoftext|>`` (id 0), the 256 byte symbols, then merges until
    ``vocab_size`` tokens (fewer if the texts run out of pairs), 257 to :data:`MAX_VOCAB`. Deterministic for the
    same texts."""
    items = check_texts(texts, allow_empty=False)
    vocab_size = check_vocab_size(vocab_size)
    tk = require("tokenizers")
    tok = _byte_level(tk.models.BPE())
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                     initial_alphabet=_byte_symbols(), min_frequency=2)
    tok.train_from_iterator(items, trainer, length=len(items))
    return TextTokenizer(tok, "bpe")


def make_tokenizer(kind: str, texts: Sequence[str], vocab_size: int = 4096) -> TextTokenizer:
    """``"bpe"``: :func:`train_bpe` on ``texts``; ``"byte"``: :func:`byte_tokenizer` (``texts`` unused)."""
    if kind not in KINDS:
        raise ValueError(f"tokenizer must be one of {', '.join(KINDS)}, got {kind!r}")
    return train_bpe(texts, vocab_size) if kind == "bpe" else byte_tokenizer()
