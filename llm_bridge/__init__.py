"""llm_bridge: adapters that turn real language models' outputs into arrays for ``collapse_jax``.

Heavy dependencies (torch, transformers, sentence-transformers) come from the optional ``llm`` extra and are imported
lazily inside the functions that need them, never at import time of this package or of ``collapse_jax``.
"""
