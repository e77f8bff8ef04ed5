"""Progress bars for long runs (tqdm), shown per chunk of steps or replicates, never inside a kernel.

Set ``COLLAPSE_JAX_PROGRESS=0`` to silence them (the tests do).
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def enabled() -> bool:
    return os.environ.get("COLLAPSE_JAX_PROGRESS", "1") not in ("0", "false", "no", "")


def bar(total: int, desc: str, unit: str = "it", *, disable: bool | None = None) -> tqdm:
    """A tqdm bar on stderr, disabled when progress is switched off."""
    if disable is None:
        disable = not enabled()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True,
                leave=False)
