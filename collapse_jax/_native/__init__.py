"""Native CPU kernels, compiled on first use with the system C++ compiler and registered with ``jax.ffi``.

Why: exact sampling without replacement needs a per-replicate swap (a scatter), which XLA:CPU expands into a loop
costing about 1 microsecond per element; the GMM network therefore runs whole replicates in C++, several in SIMD
lanes (see docs/gmm_network.md and docs/benchmarks.md). Likewise the multinomial recursion's exact binomials are
rejection loops, which vmap runs until the slowest lane finishes; and the spectral kernels (batched log-det, the
Sigma sweep's block statistics) beat XLA:CPU's factorisations; the float32 GEMM (``gemm.cc``, :func:`gemm_library`)
calls the OpenBLAS that NumPy loaded, for ``llm_bridge.nanogpt``'s attention products on the CPU. One loader
(:func:`_library`) builds each library of :data:`_LIBRARIES` once per source version, compiler, jaxlib and CPU into
``$COLLAPSE_JAX_CACHE`` (default ``~/.cache/collapse-jax``), atomically. If no compiler is available, or
``COLLAPSE_JAX_NATIVE=0``, the libraries are None, :func:`available` returns False and the portable pure-JAX (or
NumPy) paths are used instead.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

_SOURCES = tuple(Path(__file__).with_name(name) for name in ("gmm_network.cc", "multinomial_risk.cc", "gaussian.cc"))
_HEADERS = (Path(__file__).with_name("common.h"),)  # included by the simulator kernels
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}
GMM_TARGETS = {"float32": "collapse_jax_gmm_network_f32", "float64": "collapse_jax_gmm_network_f64"}
MULTINOMIAL_TARGETS = {"float32": "collapse_jax_multinomial_risk_f32", "float64": "collapse_jax_multinomial_risk_f64"}
COUNTS_TARGETS = {"float32": "collapse_jax_multinomial_counts_f32", "float64": "collapse_jax_multinomial_counts_f64"}
GAUSSIAN_TARGETS = {"float32": "collapse_jax_gaussian_risk_f32", "float64": "collapse_jax_gaussian_risk_f64"}
_SYMBOLS = {GMM_TARGETS["float32"]: "GmmNetworkF32", GMM_TARGETS["float64"]: "GmmNetworkF64",
            MULTINOMIAL_TARGETS["float32"]: "MultinomialRiskF32", MULTINOMIAL_TARGETS["float64"]: "MultinomialRiskF64",
            COUNTS_TARGETS["float32"]: "MultinomialCountsF32", COUNTS_TARGETS["float64"]: "MultinomialCountsF64",
            GAUSSIAN_TARGETS["float32"]: "GaussianRiskF32", GAUSSIAN_TARGETS["float64"]: "GaussianRiskF64"}


SPECTRAL_SOURCE = Path(__file__).with_name("spectral_kernels.cc")
LOGDET_TARGET = "collapse_jax_batched_logdet"
GEMM_SOURCE = Path(__file__).with_name("gemm.cc")
SGEMM_TARGET = "collapse_jax_sgemm"
ATTENTION_TARGET = "collapse_jax_causal_attention"
ATTENTION_GRAD_TARGET = "collapse_jax_causal_attention_grad"
_I64, _PTR, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int


@dataclass(frozen=True)
class _Library:
    """One shared library: its sources, the jax.ffi targets it registers (target -> symbol), the ctypes signatures
    of its plain C functions (name -> (restype, argtypes)), and what runs without it."""

    sources: tuple[Path, ...]
    ffi_targets: dict[str, str]
    signatures: dict[str, tuple]
    without: str


_LIBRARIES = {
    "native": _Library(_SOURCES, _SYMBOLS,
                       {"collapse_jax_multinomial_has_refill": (_INT, []), "collapse_jax_gmm_progress": (_I64, []),
                        "collapse_jax_gmm_lanes": (_INT, [_INT]),
                        "collapse_jax_multivariate_hypergeometric": (None, [_PTR, _I64, ctypes.c_double, _I64, _I64,
                                                                            _PTR]),
                        "collapse_jax_gaussian_draws": (None, [_INT, ctypes.c_double, ctypes.c_double, _I64,
                                                               ctypes.c_uint64, _PTR])},
                       "the slower pure-JAX CPU kernels"),
    "spectral_kernels": _Library((SPECTRAL_SOURCE,), {LOGDET_TARGET: "BatchedLogdet"},
                                 {"cj_amx_available": (_INT, []),
                                  "cj_block_stats": (_I64, [_PTR, _I64, _I64, _PTR, _I64, _I64, _PTR, _I64, _PTR, _PTR,
                                                            _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _I64])},
                                 "JAX/NumPy"),
    "gemm": _Library((GEMM_SOURCE,), {SGEMM_TARGET: "Sgemm", ATTENTION_TARGET: "CausalAttention",
                                      ATTENTION_GRAD_TARGET: "CausalAttentionGrad"},
                     {"cj_gemm_set_sgemm": (None, [_PTR, _INT, _PTR]), "cj_attention_vectorised": (_INT, [])},
                     "XLA's dot"),
}


def _cache_dir() -> Path:
    """The project's cache folder (native builds, calibrations, embeddings): ``$COLLAPSE_JAX_CACHE`` if set, else
    ``$XDG_CACHE_HOME/collapse-jax``, else ``~/.cache/collapse-jax``."""
    if os.environ.get("COLLAPSE_JAX_CACHE"):
        return Path(os.environ["COLLAPSE_JAX_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "collapse-jax"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _cpu_fingerprint() -> str:
    """The CPU's feature list: a library built with ``-march=native`` is only reused on the same kind of CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


@functools.lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    """First line of ``cxx --version`` (part of the build cache key)."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def _build(cxx: str, sources: tuple[Path, ...] = _SOURCES, name: str = "native", extra: tuple[str, ...] = (),
           folder: Path | None = None) -> Path:
    """Compile ``sources`` into one library for this CPU (``-march=native``: the multinomial kernel's eight-lane
    vectors become AVX-512/AVX2 instructions, the GMM network kernel's lanes AVX-512/AVX2 vectors, the spectral
    kernels use AMX where present), or for the generic target if the compiler refuses that flag.
    ``COLLAPSE_JAX_MARCH`` (e.g. ``x86-64-v3``) builds for that target instead of ``native``: how the tests run the
    AVX2 code paths on an AVX-512 machine. ``folder``: where the build goes instead of :func:`_cache_dir`."""
    errors = []
    for flags, target in _targets(cxx, sources, name, extra, folder):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if not errors:  # (a first run was silent for minutes on a loaded machine; a user trial, 2026-12-06)
            from collapse_jax import progress

            if progress.enabled():
                print(f"collapse-jax: compiling the {name.removesuffix('_kernels')} kernels for this CPU (once; about "
                      f"a minute on two cores) into {target.parent}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-build-") as work:
            tmp = os.path.join(work, target.name)
            failed = _compile_and_link(cxx, flags, sources, work, tmp)
            if failed is None:
                os.replace(tmp, target)
                return target
        errors.append(f"{' '.join(flags)}:\n{failed}")
    raise RuntimeError(f"compiling {', '.join(s.name for s in sources)} failed:\n" + "\n".join(errors))


def _targets(cxx: str, sources: tuple[Path, ...], name: str, extra: tuple[str, ...] = (),
             folder: Path | None = None):
    """The (compiler flags, cache path) :func:`_build` tries in turn: ``-march`` for this CPU, then the generic
    target. The path hashes the compiler, jaxlib, flags, CPU and sources, so any change builds anew."""
    import jax

    include = jax.ffi.include_dir()
    toolchain = f"{_compiler_version(cxx)} jaxlib {jax.__version__}"  # a new compiler or jaxlib rebuilds
    base = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math", *extra]
    march = os.environ.get("COLLAPSE_JAX_MARCH", "native")
    for flags, machine in ((base + [f"-march={march}"], _cpu_fingerprint() if march == "native" else ""), (base, "")):
        digest = hashlib.sha256(" ".join([cxx, toolchain, include, *flags, machine]).encode())
        for source in (*sources, *_HEADERS):  # (a header the sources include changes their build too)
            digest.update(source.read_bytes())
        yield [*flags, f"-I{include}"], (folder or _cache_dir()) / f"{name}-{digest.hexdigest()[:16]}.so"


def cached_library(name: str) -> Path | None:
    """The build of library ``name`` (of :data:`_LIBRARIES`) already in the cache for this compiler, jaxlib, CPU and
    source version, without building or loading it; None if there is none (or no compiler)."""
    cxx = _compiler()
    if cxx is None:
        return None
    builds = (target for folder in (None, _private_folder_path())  # (where an unwritable cache's build went)
              for _, target in _targets(cxx, _LIBRARIES[name].sources, name, folder=folder))
    return next((target for target in builds if target.exists()), None)


def _compile_and_link(cxx: str, flags: list[str], sources: tuple[Path, ...], work: str, out: str) -> str | None:
    """Compile ``sources`` into the shared library ``out``: each source to an object file in ``work``, as many at a
    time as this process has CPUs (the two simulator kernels take ~15 s each at -O3: a first use waits half as long
    on two cores), then one link. Returns None, or the compiler's error output."""
    from concurrent.futures import ThreadPoolExecutor

    objects = [os.path.join(work, f"{i}-{source.stem}.o") for i, source in enumerate(sources)]

    def compile_one(source: Path, obj: str) -> subprocess.CompletedProcess:
        return subprocess.run([cxx, *flags, "-c", str(source), "-o", obj], capture_output=True, text=True)

    with ThreadPoolExecutor(min(len(sources), _usable_cpus())) as pool:
        errors = [run.stderr for run in pool.map(compile_one, sources, objects) if run.returncode != 0]
    if errors:
        return "\n".join(errors)
    link = subprocess.run([cxx, *flags, *objects, "-o", out], capture_output=True, text=True)
    return None if link.returncode == 0 else link.stderr


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _enabled() -> bool:
    # any case, and "off" too, as COLLAPSE_JAX_PROGRESS ("off", "False" left the kernels on; a user trial, 2026-12-06)
    return os.environ.get("COLLAPSE_JAX_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _writable(folder: Path) -> bool:
    """Whether files can be made in ``folder`` (made if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _private_folder_path() -> Path:
    return Path(tempfile.gettempdir()) / f"collapse-jax-{os.getuid()}"


def _private_build_folder() -> Path:
    """A build folder for a cache that cannot be written: ``$TMPDIR/collapse-jax-<uid>``, made by and for this user
    alone (mode 0700, checked: a library is loaded from it), or else a new private temporary folder, removed when
    this process exits."""
    folder = _private_folder_path()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
        if folder.is_dir() and not folder.is_symlink() and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0:
            return folder
    except OSError:
        pass
    scratch = tempfile.mkdtemp(prefix="collapse-jax-build-")  # (one per process: removed when it exits, since
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # a loaded library's file may go on Linux)
    return Path(scratch)


def _library(name: str):
    """The shared library ``name`` of :data:`_LIBRARIES` (``ctypes.CDLL``, its ffi targets registered, its C
    functions typed), built on first use; None when native code is disabled or cannot be built (with one warning
    that says what runs instead)."""
    with _LOCK:
        if name in _STATE:
            return _STATE[name]
        spec, lib = _LIBRARIES[name], None
        if _enabled():
            cxx = _compiler()
            if cxx is None:
                warnings.warn(f"collapse_jax: no C++ compiler found; using {spec.without}", RuntimeWarning,
                              stacklevel=3)
            else:
                try:
                    import jax

                    try:
                        built = _build(cxx, spec.sources, name)
                    except OSError as exc:  # the cache cannot be written: the kernels ran 5x slower (a user trial)
                        if _writable(_cache_dir()):  # another cause (a missing compiler: a review, 2026-12-06)
                            raise
                        folder = _private_build_folder()
                        warnings.warn(f"collapse_jax: the cache folder {str(_cache_dir())!r} cannot be written "
                                      f"({exc.strerror or exc}); building the {name.removesuffix('_kernels')} "
                                      f"kernels in {str(folder)!r} instead (set COLLAPSE_JAX_CACHE to a writable "
                                      "folder to keep them there)", RuntimeWarning, stacklevel=3)
                        built = _build(cxx, spec.sources, name, folder=folder)
                    lib = ctypes.CDLL(str(built))
                    for target, symbol in spec.ffi_targets.items():
                        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
                    for fn, (restype, argtypes) in spec.signatures.items():
                        getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
                except (RuntimeError, OSError, AttributeError) as exc:
                    what = "kernels" if name == "native" else f"{name} kernels"  # (it read "native native unavailable")
                    cause = (f"{exc.strerror}: {exc.filename!r}" if isinstance(exc, OSError) and exc.filename
                             and exc.strerror else str(exc))  # (the cache folder a file: "File exists", naming it)
                    warnings.warn(f"collapse_jax: native {what} unavailable ({cause}); using {spec.without}",
                                  RuntimeWarning, stacklevel=3)
                    lib = None
        _STATE[name] = lib
        return lib


def available() -> bool:
    """Whether the native simulator kernels are built and registered (building them on the first call)."""
    return _library("native") is not None


def multinomial_engines() -> tuple[str, ...]:
    """Engines of the native multinomial kernel in this build: ``("refill", "group")`` where it was compiled with
    AVX-512 or AVX2 (eight or four lanes per vector), ``("group",)`` elsewhere, ``()`` without native kernels. Both
    draw the same numbers; "refill" is the faster (``"auto"`` picks it when present)."""
    if not available():
        return ()
    return ("refill", "group") if _library("native").collapse_jax_multinomial_has_refill() else ("group",)


def gmm_progress() -> int:
    """Point updates the native GMM network kernel has done in this process so far (for progress bars)."""
    if not available():
        return 0
    return int(_library("native").collapse_jax_gmm_progress())


def gmm_lanes(double_precision: bool = False) -> int:
    """SIMD lanes of the native GMM network kernel in this build (16 float32 lanes with AVX-512, 8 with AVX2)."""
    if not available():
        return 0
    return int(_library("native").collapse_jax_gmm_lanes(int(double_precision)))


def cpu_threads() -> int:
    """Threads the native kernel may use per CPU device."""
    import jax

    from collapse_jax import _checks

    devices = max(1, len(jax.local_devices(backend="cpu")))
    return _checks.env_int("COLLAPSE_JAX_THREADS", 1) or max(1, _usable_cpus() // devices)


def worker_threads(num_replicates: int | None = None) -> int:
    """Worker threads the native kernels run at once over all CPU devices (at most one per replicate): how many
    per-thread scratch copies the memory checks count."""
    import jax

    threads = cpu_threads() * max(1, len(jax.local_devices(backend="cpu")))
    return min(threads, num_replicates) if num_replicates else threads


BACKENDS = ("auto", "native", "jax")
_PREFERRED: list[str] = ["auto"]


def prefer_backend(backend: str) -> None:
    """What ``"auto"`` means in this process (the command line's ``--backend``): ``"auto"`` (native on CPU where it
    builds), ``"native"`` (as auto, but an error where the kernels cannot run) or ``"jax"`` (the portable kernels
    everywhere). Simulators with only a JAX implementation run it whatever is preferred."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _PREFERRED[0] = backend


def preferred_backend() -> str:
    """The backend ``"auto"`` resolves through (:func:`prefer_backend`)."""
    return _PREFERRED[0]


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> the preferred backend (:func:`prefer_backend`), by default ``"native"`` on the CPU backend when
    the kernels build, else ``"jax"`` (the portable path); ``"native"`` is checked to be usable; ``"jax"`` passes
    through."""
    import jax

    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto', 'native' or 'jax', got {backend!r}")
    if backend == "auto" and _PREFERRED[0] != "auto":
        backend = _PREFERRED[0]
    if backend == "auto":
        return "native" if jax.default_backend() == "cpu" and available() else "jax"
    if backend == "native" and (jax.default_backend() != "cpu" or not available()):
        # (the cause named: with COLLAPSE_JAX_NATIVE=0 it blamed a compiler the machine had; a user trial)
        why = (f"the native kernels are switched off here (COLLAPSE_JAX_NATIVE={os.environ['COLLAPSE_JAX_NATIVE']}; "
               "unset it to use them)" if not _enabled() else
               f"JAX's default backend here is {jax.default_backend()!r}" if jax.default_backend() != "cpu" else
               "they did not build on this machine (collapse-jax info says why)")
        raise ValueError(f"backend='native' needs the CPU backend and the native kernels, and {why}; use "
                         "backend='jax'")
    return backend


def spectral_library():
    """The spectral kernels (``ctypes.CDLL``, its batched log-det registered with jax.ffi as :data:`LOGDET_TARGET`),
    built on first use with ``-march=native``; None when native code is disabled or cannot be built."""
    return _library("spectral_kernels")


def emulated_amx_library():
    """For tests: the spectral kernels built with ``-DCJ_AMX_EMULATE`` (``ctypes.CDLL``, C functions typed, no ffi
    target registered): the AMX block-statistics kernel with its tile instructions done in software, so that it can
    be checked on CPUs without AMX. Needs AVX-512 BF16 (its bfloat16 conversions); None elsewhere, when native code
    is disabled or no compiler is found. Scalar tiles: small blocks only."""
    with _LOCK:
        if "amx_emulated" in _STATE:
            return _STATE["amx_emulated"]
        lib, cxx = None, _compiler()
        if _enabled() and cxx is not None and _may_have_bf16():
            try:
                lib = ctypes.CDLL(str(_build(cxx, (SPECTRAL_SOURCE,), "spectral_kernels_amx_emulated",
                                             ("-DCJ_AMX_EMULATE",))))
                for fn, (restype, argtypes) in _LIBRARIES["spectral_kernels"].signatures.items():
                    getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
                if not lib.cj_amx_available():  # built without AVX-512 BF16: no kernel inside
                    lib = None
            except (RuntimeError, OSError, AttributeError):
                lib = None
        _STATE["amx_emulated"] = lib
        return lib


def _may_have_bf16() -> bool:
    """False when the library would be built for this CPU (``-march=native``) and its feature list, readable, lacks
    AVX-512 BF16: the emulated-AMX build would then hold no kernel, so it is not compiled (5 s saved)."""
    if os.environ.get("COLLAPSE_JAX_MARCH", "native") != "native":
        return True
    flags = _cpu_fingerprint()
    return not flags.startswith("flags") or "avx512_bf16" in flags.split()


def amx_available() -> bool:
    """Whether the AMX block-statistics kernel can run here (built for this CPU, tile state granted by the OS)."""
    lib = spectral_library()
    return bool(lib is not None and lib.cj_amx_available())


def spectral_threads() -> int:
    """Threads for the spectral kernels: ``COLLAPSE_JAX_THREADS`` or the CPUs this process may run on."""
    from collapse_jax import _checks

    return _checks.env_int("COLLAPSE_JAX_THREADS", 1) or _usable_cpus()


# CBLAS sgemm symbols of an OpenBLAS and their integer width: NumPy's wheels bundle scipy-openblas64 (ILP64).
_SGEMM_SYMBOLS = (("scipy_cblas_sgemm64_", 64), ("cblas_sgemm64_", 64), ("scipy_cblas_sgemm", 32), ("cblas_sgemm", 32))
_THREADS_LOCAL = "openblas_set_num_threads_local"  # OpenBLAS >= 0.3.27: the calling thread's own thread count


def _numpy_openblas() -> tuple[str, str, int] | None:
    """(path, sgemm symbol, integer bits) of the OpenBLAS that NumPy has loaded into this process (read from
    ``/proc/self/maps``), or None: another BLAS, an OpenBLAS older than 0.3.27, or no ``/proc`` (not Linux)."""
    import numpy  # noqa: F401  (loads its BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split(None, 5)[-1].strip() for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol, bits in _SGEMM_SYMBOLS:
            if hasattr(lib, symbol) and hasattr(lib, _THREADS_LOCAL):
                return path, symbol, bits
    return None


def gemm_library():
    """The float32 GEMM kernel (:data:`SGEMM_TARGET`, ``gemm.cc``) bound to NumPy's OpenBLAS, built on first use;
    None when native code is disabled or cannot be built, or NumPy's BLAS is not an OpenBLAS found here (then
    ``llm_bridge.nanogpt``'s attention uses XLA's batched dot)."""
    lib = _library("gemm")
    if lib is None:
        return None
    with _LOCK:
        if "gemm_blas" not in _STATE:
            blas = _numpy_openblas()
            if blas is not None:
                path, symbol, bits = blas
                openblas = ctypes.CDLL(path)
                lib.cj_gemm_set_sgemm(ctypes.cast(getattr(openblas, symbol), ctypes.c_void_p), bits,
                                      ctypes.cast(getattr(openblas, _THREADS_LOCAL), ctypes.c_void_p))
            _STATE["gemm_blas"] = blas
        return lib if _STATE["gemm_blas"] is not None else None


def status(build: bool = False) -> dict:
    """What native code this process has (``build=True``: build and load it first): whether it is enabled, the
    compiler and target, the build cache, the loaded libraries and their engines. Recorded with every run (without
    building), printed by ``collapse-jax info`` (after building)."""
    if build:
        available()
        spectral_library()
        gemm_library()
    cxx = _compiler()
    out = {"enabled": _enabled(), "compiler": cxx, "compiler_version": _compiler_version(cxx) if cxx else None,
           "march": os.environ.get("COLLAPSE_JAX_MARCH", "native"), "cache_dir": str(_cache_dir()),
           "preferred_backend": preferred_backend()}
    lib, spectral = _STATE.get("native"), _STATE.get("spectral_kernels")
    out["simulators_library"] = getattr(lib, "_name", None)
    if not build:  # (not loaded in this process, but possibly built by an earlier one: say which)
        out["cached_libraries"] = {name: str(path) if (path := cached_library(name)) else None
                                   for name in ("native", "spectral_kernels")} if _enabled() else {}
    if lib is not None:
        out["multinomial_engines"] = list(multinomial_engines())
        out["gmm_lanes_float32"], out["gmm_lanes_float64"] = gmm_lanes(False), gmm_lanes(True)
    out["spectral_library"] = getattr(spectral, "_name", None)
    if spectral is not None:
        out["amx"] = amx_available()
    blas = _STATE.get("gemm_blas")
    out["float32_gemm"] = f"{Path(blas[0]).name} ({blas[1]})" if blas else None
    return out
