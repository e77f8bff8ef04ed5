"""Native CPU kernels, compiled on first use with the system C++ compiler and registered with ``jax.ffi``.

Two sources, each built once per source version, compiler and flags into ``$COLLAPSE_JAX_CACHE`` (default
``~/.cache/collapse-jax``), atomically:

* ``gmm_update.cc`` (:func:`available`): exact sampling without replacement needs a per-replicate swap (a
  scatter), which XLA:CPU expands into a loop costing about 1 microsecond per element; the GMM network's inner update
  therefore runs ~50x faster as a small C++ loop (see docs/benchmarks.md).
* ``spectral_kernels.cc`` (:func:`spectral_library`): the batched Cholesky log-det (jax.ffi) and the AMX block
  statistics of the Sigma precision sweep (ctypes). Built with ``-march=native`` for the machine it runs on (the
  CPU model is part of the cache key).

If no compiler is available, or ``COLLAPSE_JAX_NATIVE=0``, the loaders return False / None and the portable
JAX or NumPy paths are used instead.
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


_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno"]


def _cpu_tag() -> str:
    """The CPU model and feature flags (part of the cache key of ``-march=native`` builds)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        import platform

        return platform.processor() or platform.machine()


def _build(cxx: str, source: Path = _SOURCE, extra_flags: tuple[str, ...] = ()) -> Path:
    import jax

    include = jax.ffi.include_dir()
    flags = [*_FLAGS, *extra_flags]
    key = " ".join([cxx, include, *flags]) + (_cpu_tag() if "-march=native" in flags else "")
    tag = hashlib.sha256(source.read_bytes() + key.encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{tag}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([cxx, *flags, f"-I{include}", str(source), "-o", tmp], check=True, capture_output=True,
                       text=True)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"compiling {source.name} failed:\n{exc.stderr}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _enabled() -> bool:
    return os.environ.get("COLLAPSE_JAX_NATIVE", "1") not in ("0", "false", "no")


def available() -> bool:
    """Whether the native GMM kernel is built and registered (building it on the first call)."""
    with _LOCK:
        if "ok" in _STATE:
            return bool(_STATE["ok"])
        ok = False
        if _enabled():
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


SPECTRAL_SOURCE = _SOURCE.with_name("spectral_kernels.cc")
LOGDET_TARGET = "collapse_jax_batched_logdet"


def spectral_library():
    """The spectral kernels (``ctypes.CDLL``, its batched log-det registered with jax.ffi as :data:`LOGDET_TARGET`),
    built on first use with ``-march=native``; None when native code is disabled or cannot be built."""
    with _LOCK:
        if "spectral" in _STATE:
            return _STATE["spectral"]
        lib = None
        cxx = _compiler() if _enabled() else None
        if cxx is not None:
            try:
                import jax

                lib = ctypes.CDLL(str(_build(cxx, SPECTRAL_SOURCE, ("-march=native",))))
                jax.ffi.register_ffi_target(LOGDET_TARGET, jax.ffi.pycapsule(lib.BatchedLogdet), platform="cpu")
                lib.cj_amx_available.restype = ctypes.c_int
                lib.cj_block_stats.restype = ctypes.c_int64
                lib.cj_block_stats.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                               ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            except (RuntimeError, OSError) as exc:
                warnings.warn(f"collapse_jax: native spectral kernels unavailable ({exc}); using JAX/NumPy",
                              RuntimeWarning, stacklevel=3)
                lib = None
        _STATE["spectral"] = lib
        return lib


def amx_available() -> bool:
    """Whether the AMX block-statistics kernel can run here (built for this CPU, tile state granted by the OS)."""
    lib = spectral_library()
    return bool(lib is not None and lib.cj_amx_available())


def spectral_threads() -> int:
    """Threads for the spectral kernels: ``COLLAPSE_JAX_THREADS`` or the CPUs this process may run on."""
    env = os.environ.get("COLLAPSE_JAX_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
