"""Real human text available on every machine: the Python standard library's documentation.

Two sources, both written by people and shipped with every CPython (Python documentation is one of the sources of
the Sigma paper's TECH corpus):

* ``pydoc_data.topics.topics``: the language reference topics that ``help()`` shows (statements, operators, ...);
* the docstrings of the standard library's own source files (module, class and function docstrings), read with
  :mod:`ast` from the ``.py`` files, so no module is imported and no import side effect runs.

Text is split into paragraphs (blank lines), code blocks, doctests and reST headings are dropped, paragraphs are
split into sentences, whitespace is collapsed, and sentences are length-filtered and deduplicated (first occurrence
wins). Order is deterministic: topics sorted by name first, then source files sorted by their path relative to the
standard library folder, docstrings in ``ast.walk`` order. The corpus depends on the Python version (its stdlib);
:func:`corpus_hash` identifies it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from collapse_jax import _checks

# Folders inside stdlib packages that hold tests or test data (some with deliberately broken syntax).
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__"})

_UNDERLINE = re.compile(r"^\s*([=*\-~^#+\"'`])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z])")
_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class CorpusConfig:
    """How the corpus is cut. ``unit``: ``"sentence"`` or ``"paragraph"``; texts shorter than ``min_chars`` or
    longer than ``max_chars`` (after whitespace is collapsed) or with fewer than ``min_words`` words are dropped."""

    unit: str = "sentence"
    min_chars: int = 40
    max_chars: int = 600
    min_words: int = 6
    topics: bool = True
    docstrings: bool = True

    def validate(self) -> "CorpusConfig":
        if self.unit not in ("sentence", "paragraph"):
            raise ValueError(f"unit must be 'sentence' or 'paragraph', got {self.unit!r}")
        _checks.positive_int("min_chars", self.min_chars)
        _checks.positive_int("max_chars", self.max_chars)
        _checks.positive_int("min_words", self.min_words)
        if self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) must be >= min_chars ({self.min_chars})")
        if not (self.topics or self.docstrings):
            raise ValueError("at least one source (topics, docstrings) must be on")
        return self


# --------------------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------------------


def topic_documents() -> list[str]:
    """The ``help()`` topics of the language reference (``pydoc_data.topics``), sorted by topic name."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def stdlib_source_files(root: str | os.PathLike | None = None) -> list[Path]:
    """``.py`` files of the standard library's top-level modules and packages (``sys.stdlib_module_names``),
    test folders excluded, sorted by path relative to ``root`` (default: this interpreter's stdlib folder)."""
    if root is not None and not Path(root).expanduser().is_dir():  # (a mistyped root read no file, silently; a
        # user trial, 2026-12-06)
        raise ValueError(f"root must be a folder of Python sources, got {str(root)!r}, which is not a folder")
    root = Path(root).expanduser() if root is not None else Path(sysconfig.get_paths()["stdlib"])
    files = []
    for name in sorted(sys.stdlib_module_names):
        if name in SKIP_DIRS:
            continue
        single = root / f"{name}.py"
        if single.is_file():
            files.append(single)
        package = root / name
        if (package / "__init__.py").is_file():
            for folder, subdirs, names in os.walk(package):
                subdirs[:] = [s for s in subdirs if s not in SKIP_DIRS]
                files.extend(Path(folder) / f for f in names if f.endswith(".py"))
    return sorted(set(files), key=lambda p: p.relative_to(root).as_posix())


def docstrings(path: str | os.PathLike) -> list[str]:
    """Module, class and function docstrings of one source file, parsed (never imported); [] if it does not parse."""
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append(doc)
    return out


# --------------------------------------------------------------------------------------------------------------
# Cutting text into units
# --------------------------------------------------------------------------------------------------------------


def paragraphs(document: str) -> Iterator[str]:
    """Prose paragraphs of a document, whitespace collapsed. Dropped: indented blocks (code, grammar, argument
    tables), doctest lines (``>>>``), reST headings (a line underlined with ``===``/``***``/``---``)."""
    lines = document.splitlines()
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if _UNDERLINE.match(line):
            keep[i] = False
            if i > 0:
                keep[i - 1] = False
    block: list[str] = []
    for line, ok in zip(lines + [""], keep + [True]):
        if ok and line.strip():
            block.append(line)
            continue
        if block and not block[0][:1].isspace() and not any(b.lstrip().startswith((">>>", "...")) for b in block):
            yield " ".join(" ".join(block).split())
        block = []


def sentences(paragraph: str) -> list[str]:
    """Split a paragraph after ``.``, ``!`` or ``?`` followed by space and a capital (optionally quoted)."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def is_prose(text: str, cfg: CorpusConfig) -> bool:
    """Length and word-count filter, plus: at least half of the characters are letters (drops code and tables)."""
    if not cfg.min_chars <= len(text) <= cfg.max_chars:
        return False
    if len(_WORD.findall(text)) < cfg.min_words:
        return False
    return sum(c.isalpha() for c in text) >= 0.5 * len(text)


def units(documents: Iterable[str], cfg: CorpusConfig) -> Iterator[str]:
    for doc in documents:
        for par in paragraphs(doc):
            yield from (sentences(par) if cfg.unit == "sentence" else [par])


# --------------------------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Texts in corpus order, with how many came from each source (after filtering and deduplication)."""

    texts: tuple[str, ...]
    from_topics: int
    from_docstrings: int
    num_files: int
    config: CorpusConfig

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def hash(self) -> str:
        return corpus_hash(self.texts)

    def describe(self) -> str:
        return (f"{len(self.texts)} {self.config.unit}s of Python {sys.version_info.major}.{sys.version_info.minor} "
                f"standard-library text ({self.from_topics} from pydoc_data.topics, {self.from_docstrings} from the "
                f"docstrings of {self.num_files} source files); hash {self.hash[:12]}")


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """A text file (``what`` names it in messages, e.g. ``"--data"``) decoded as UTF-8; bytes that are not UTF-8 are
    replaced by U+FFFD with a warning that counts them and gives the first one's offset. (Training data and
    ``--texts`` replaced them silently, a prompts file failed with the codec's message alone; a user trial,
    2026-12-06.)"""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        import warnings

        text = raw.decode("utf-8", errors="replace")
        bad = text.count("\ufffd") - raw.count("\ufffd".encode())  # (less the file's own U+FFFD characters)
        warnings.warn(f"{what} {str(path)!r}: {bad} invalid UTF-8 sequence{'s' if bad != 1 else ''} (the first at "
                      f"byte {error.start}) replaced by U+FFFD; re-encode the file as UTF-8 to keep those "
                      "characters", stacklevel=_checks.user_stacklevel())
        return text


def corpus_hash(texts: Iterable[str]) -> str:
    """SHA-256 of the texts in order (each followed by a NUL byte): identifies a corpus for caching."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def stdlib_corpus(cfg: CorpusConfig | None = None, *, root: str | os.PathLike | None = None) -> Corpus:
    """The standard library's human text, cut, filtered and deduplicated as ``cfg`` says (see the module docstring).

    ``root`` overrides the stdlib folder that docstrings are read from (tests point it at a small folder).
    """
    cfg = (cfg or CorpusConfig()).validate()
    seen: dict[str, None] = {}

    def add(documents: Iterable[str]) -> int:
        before = len(seen)
        for text in units(documents, cfg):
            if is_prose(text, cfg):
                seen.setdefault(text, None)
        return len(seen) - before

    from_topics = add(topic_documents()) if cfg.topics else 0
    files = stdlib_source_files(root) if cfg.docstrings else []
    from_docs = add(doc for f in files for doc in docstrings(f))
    return Corpus(tuple(seen), from_topics, from_docs, len(files), cfg)
