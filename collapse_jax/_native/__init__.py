"""Native CPU kernels, compiled on first use with the system C++ compiler and registered with ``jax.ffi``.

Why: exact sampling without replacement needs a per-replicate swap (a scatter), which XLA:CPU expands into a loop
costing about 1 microsecond per element; the GMM network's inner update therefore runs ~50x faster as a small C++
loop (see docs/benchmarks.md). The kernel is built once per source version and compiler into
``$COLLAPSE_JAX_CACHE`` (default ``~/.cache/collapse-jax``), atomically. If no compiler is available, or
``COLLAPSE_JAX_NATIVE=0``, :func:`available` returns False and the portable pure-JAX path is used instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

_SOURCE = Path(__file__).with_name("gmm_update.cc")
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}
TARGETS = {"float32": "collapse_jax_gmm_update_f32", "float64": "collapse_jax_gmm_update_f64"}


def _cache_dir() -> Path:
    return Path(os.environ.get("COLLAPSE_JAX_CACHE", Path.home() / ".cache" / "collapse-jax"))


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _build(cxx: str) -> Path:
    import jax

    include = jax.ffi.include_dir()
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno"]
    tag = hashlib.sha256(_SOURCE.read_bytes() + " ".join([cxx, include, *flags]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"gmm_update-{tag}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([cxx, *flags, f"-I{include}", str(_SOURCE), "-o", tmp], check=True, capture_output=True,
                       text=True)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"compiling {_SOURCE.name} failed:\n{exc.stderr}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def available() -> bool:
    """Whether the native CPU kernel is built and registered (building it on the first call)."""
    with _LOCK:
        if "ok" in _STATE:
            return bool(_STATE["ok"])
        ok = False
        if os.environ.get("COLLAPSE_JAX_NATIVE", "1") not in ("0", "false", "no"):
            cxx = _compiler()
            if cxx is None:
                warnings.warn("collapse_jax: no C++ compiler found; using the slower pure-JAX CPU kernel",
                              RuntimeWarning, stacklevel=3)
            else:
                try:
                    import jax

                    lib = ctypes.cdll.LoadLibrary(str(_build(cxx)))
                    jax.ffi.register_ffi_target(TARGETS["float32"], jax.ffi.pycapsule(lib.GmmUpdateF32),
                                                platform="cpu")
                    jax.ffi.register_ffi_target(TARGETS["float64"], jax.ffi.pycapsule(lib.GmmUpdateF64),
                                                platform="cpu")
                    _STATE["lib"] = lib
                    ok = True
                except (RuntimeError, OSError) as exc:
                    warnings.warn(f"collapse_jax: native kernel unavailable ({exc}); using pure JAX",
                                  RuntimeWarning, stacklevel=3)
        _STATE["ok"] = ok
        return ok


def cpu_threads() -> int:
    """Threads the native kernel may use per CPU device."""
    import jax

    env = os.environ.get("COLLAPSE_JAX_THREADS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, len(jax.local_devices(backend="cpu"))))
