"""Imported first by the benchmark scripts: puts the root of the checkout they sit in first on ``sys.path``.

So ``python3 benchmarks/<name>.py``, run from anywhere, times this checkout's ``collapse_jax`` and ``llm_bridge``,
not an installed copy (an editable install may point at another checkout: an audit of the scripts, 2026-12-07, found
14 that needed ``PYTHONPATH=.``, which still works). The root also goes first on ``PYTHONPATH``, for the Python
processes a script starts (``python3 -m collapse_jax.cli ...``, a section in a process of its own).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))
_paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
if _paths[:1] != [str(ROOT)]:
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in _paths if p])
