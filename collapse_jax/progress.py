"""Progress bars for long runs (tqdm), shown per chunk of steps or replicates, never inside a kernel.

Set ``COLLAPSE_JAX_PROGRESS=0`` to silence them (the tests do), or :func:`set_enabled` (the command line's
``--progress`` / ``--no-progress``), which wins over the environment.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


_OVERRIDE: list[bool | None] = [None]


def set_enabled(show: bool | None) -> None:
    """Show (True) or hide (False) every bar of this process; None: back to ``COLLAPSE_JAX_PROGRESS``."""
    _OVERRIDE[0] = show


def enabled() -> bool:
    if _OVERRIDE[0] is not None:
        return _OVERRIDE[0]
    return os.environ.get("COLLAPSE_JAX_PROGRESS", "1") not in ("0", "false", "no", "")


def bar(total: int, desc: str, unit: str = "it", *, disable: bool | None = None) -> tqdm:
    """A tqdm bar on stderr, disabled when progress is switched off."""
    if disable is None:
        disable = not enabled()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr, dynamic_ncols=True,
                leave=False)
