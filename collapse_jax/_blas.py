"""The Sigma numpy engine's BLAS and LAPACK calls, made so that other Python threads run meanwhile.

SciPy's wrappers (``scipy.linalg.blas.strmm``, ``scipy.linalg.lapack.dpotrf`` / ``dtrtri``) hold Python's global
interpreter lock for the whole call, so the numpy engine, which runs one block per worker thread, ran its two
triangular products per block size (two thirds of a d = 384 block's multiply-adds) and its Cholesky factors one
thread at a time: two workers gave 1.3x one on a 2-core AMD EPYC, where two processes give 1.9x
(docs/benchmarks.md). A function called through ``ctypes.CDLL`` releases the lock, so this module calls the loaded
library's ``cblas_strmm``, ``LAPACKE_dpotrf`` and ``LAPACKE_dtrtri`` directly.

The library is found through ``threadpoolctl`` (the OpenBLAS libraries loaded in this process: SciPy's and NumPy's
wheels each bundle one whose symbols carry a ``scipy_`` prefix, NumPy's with a ``64_`` suffix for 64-bit integers; the
integer width is read from the library's own configuration string), NumPy's own first (the one ``np.matmul`` runs in),
whatever the order the libraries were loaded in. Each function is checked once against SciPy's wrapper on a small
problem (equal to rounding: OpenBLAS's own results differ in the last bits between its versions, and its Cholesky factor
between one thread and several); where none agrees, the calls below go through SciPy's wrappers as before (the lock
held). :func:`library` says which library runs each call.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import numpy as np

# CBLAS / LAPACKE enumerations (cblas.h, lapacke.h)
_ROW_MAJOR, _COL_MAJOR = 101, 102
_NO_TRANS, _TRANS, _LOWER, _NON_UNIT, _RIGHT = 111, 112, 122, 131, 142


def _loaded(name: str):
    """``(library path, function, integer type)`` for each function ``name`` (e.g. ``cblas_strmm``) in the OpenBLAS
    libraries loaded in this process, under the names their wheels give it. The integer width is OpenBLAS's own
    word (``USE64BITINT`` in its ``openblas_get_config`` under the same naming), never guessed from a name: a 64-bit
    library called with 32-bit integers crashes the process, and a comparison of results cannot catch that first.
    Other BLAS libraries (MKL, BLIS, Accelerate) are left to SciPy's wrappers."""
    try:
        import scipy.linalg  # noqa: F401 - loads SciPy's BLAS, so that threadpoolctl lists it
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - both are dependencies
        return
    numpy_dir = os.path.dirname(os.path.realpath(np.__file__))  # a wheel's libraries: numpy.libs beside it

    def numpy_first(info):
        return not os.path.realpath(info["filepath"]).startswith((numpy_dir + os.sep, numpy_dir + ".libs" + os.sep))

    openblas = (i for i in threadpool_info() if i.get("user_api") == "blas" and i.get("internal_api") == "openblas")
    for info in sorted(openblas, key=numpy_first):
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:  # pragma: no cover - listed but not loadable by its path
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("", "64_", "_64"):
                fn, config = (getattr(lib, f"{prefix}{base}{suffix}", None) for base in (name, "openblas_get_config"))
                if fn is None or config is None:
                    continue
                config.restype = ctypes.c_char_p
                config.argtypes = []
                wide = b"USE64BITINT" in (config() or b"")
                yield info["filepath"], fn, ctypes.c_int64 if wide else ctypes.c_int32


def _trmm_binding(fn, int_type):
    fn.argtypes = [ctypes.c_int] * 5 + [int_type, int_type, ctypes.c_float, ctypes.c_void_p, int_type,
                                        ctypes.c_void_p, int_type]
    fn.restype = None

    def trmm(a: np.ndarray, b: np.ndarray, trans: bool) -> None:
        m, n = b.shape
        fn(_ROW_MAJOR, _RIGHT, _LOWER, _TRANS if trans else _NO_TRANS, _NON_UNIT, m, n, 1.0, a.ctypes.data, n,
           b.ctypes.data, n)

    return trmm


def _lapack_binding(fn, int_type, *chars):
    """``call(a) -> info`` for ``LAPACKE_x(layout, *chars, n, a, lda)`` on a Fortran-ordered float64 ``a``."""
    fn.argtypes = [ctypes.c_int] + [ctypes.c_char] * len(chars) + [int_type, ctypes.c_void_p, int_type]
    fn.restype = int_type

    def call(a: np.ndarray) -> int:
        n = a.shape[0]
        return int(fn(_COL_MAJOR, *chars, n, a.ctypes.data, n))

    return call


def _scipy_trmm(a: np.ndarray, b: np.ndarray, trans: bool) -> None:
    from scipy.linalg import blas

    # B op(A) = (op(A)^T B^T)^T: the column-major view of the rows is B^T
    blas.strmm(1.0, a, b.T, side=0, lower=1, trans_a=0 if trans else 1, overwrite_b=1)


def _scipy_cholesky(a: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(a, lower=1, clean=1)
    return c, int(info)


def _scipy_inverse(c: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy.linalg import lapack

    inv, info = lapack.dtrtri(c, lower=1)
    return inv, int(info)


def _test_problem():
    rng = np.random.default_rng(0)
    a = (np.tril(rng.standard_normal((67, 67))) / 8 + np.eye(67)).astype(np.float32)
    b = rng.standard_normal((301, 67)).astype(np.float32)
    spd = np.asarray(a, np.float64) @ np.asarray(a, np.float64).T
    return a, b, spd


_BINDING = threading.Lock()  # the sweep's worker threads may ask for the functions first, at the same time


def _bound() -> dict:
    """The lock-free functions that agree with SciPy's wrappers to rounding, each ``(library path, function)``."""
    with _BINDING:
        return _find()


def _first(name: str, bind, agrees):
    """``(library path, call)`` of the first loaded ``name`` whose binding (``bind(fn, int_type)``) ``agrees`` with
    SciPy's wrapper on the test problem, or None."""
    for path, fn, int_type in _loaded(name):
        call = bind(fn, int_type)
        try:
            if agrees(call):
                return path, call
        except (OSError, ctypes.ArgumentError):  # pragma: no cover - a foreign ABI
            continue
    return None


@functools.cache
def _find() -> dict:
    a, b, spd = _test_problem()

    def trmm_agrees(trmm) -> bool:
        for trans in (False, True):
            want, got = b.copy(), b.copy()
            _scipy_trmm(a, want, trans)
            trmm(a, got, trans)
            if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                return False
        return True

    def lapack_agrees(source, want):
        def agrees(call) -> bool:
            got = np.array(source, order="F")
            return call(got) == 0 and np.allclose(np.tril(got), want, rtol=1e-12, atol=1e-12)

        return agrees

    want_c, _ = _scipy_cholesky(spd)
    want_inv, _ = _scipy_inverse(want_c)
    found = {"trmm": _first("cblas_strmm", _trmm_binding, trmm_agrees),
             "cholesky": _first("LAPACKE_dpotrf", lambda fn, it: _lapack_binding(fn, it, b"L"),
                                lapack_agrees(spd, want_c)),
             "inverse": _first("LAPACKE_dtrtri", lambda fn, it: _lapack_binding(fn, it, b"L", b"N"),
                               lapack_agrees(want_c, want_inv))}
    return {key: value for key, value in found.items() if value is not None}


def library() -> dict:
    """Which library each call runs in: ``{"trmm": path or None, "cholesky": ..., "inverse": ...}`` (None: SciPy's
    wrapper, the lock held)."""
    found = _bound()
    return {key: found[key][0] if key in found else None for key in ("trmm", "cholesky", "inverse")}


def trmm_right(a: np.ndarray, b: np.ndarray, *, trans: bool) -> None:
    """In place, ``b := b @ a.T`` (``trans``) or ``b := b @ a``, for a lower-triangular float32 ``a`` (n, n) and
    float32 rows ``b`` (m, n), both C-contiguous: whitening ``w_i := L^{-1} w_i`` is ``trmm_right(linv, w,
    trans=True)``. As SciPy's ``strmm`` (module docstring)."""
    if a.dtype != np.float32 or b.dtype != np.float32 or not (a.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("trmm_right needs C-contiguous float32 arrays")
    if a.ndim != 2 or b.ndim != 2 or a.shape != (b.shape[1], b.shape[1]) or not b.flags.writeable:
        raise ValueError(f"trmm_right needs a (n, n) and writeable b (m, n), got {a.shape} and {b.shape}")
    bound = _bound().get("trmm")
    if bound is None or b.size == 0:
        _scipy_trmm(a, b, trans)
    else:
        bound[1](a, b, trans)


def _lapack(key: str, a: np.ndarray, scipy_call) -> tuple[np.ndarray, int]:
    """``(result, info)`` of the LAPACK routine ``key`` on a Fortran-ordered float64 copy of ``a``."""
    bound = _bound().get(key)
    if bound is None:
        return scipy_call(a)
    out = np.array(a, np.float64, order="F")
    return out, bound[1](out)


def cholesky_lower(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive definite float64 matrix (Fortran order, zeros above), as SciPy's
    ``lapack.dpotrf(a, lower=1, clean=1)``; ``np.linalg.LinAlgError`` if ``a`` is not positive definite."""
    c, info = _lapack("cholesky", a, _scipy_cholesky)
    if info != 0:
        raise np.linalg.LinAlgError("Matrix is not positive definite")
    return np.asfortranarray(np.tril(c))  # (LAPACK leaves a's values above: SciPy's clean=1 zeroes them)


def inverse_lower(c: np.ndarray) -> np.ndarray:
    """Inverse of a nonsingular lower-triangular float64 matrix (Fortran order), as SciPy's ``lapack.dtrtri(c,
    lower=1)``."""
    inv, info = _lapack("inverse", c, _scipy_inverse)
    if info != 0:
        raise np.linalg.LinAlgError("triangular matrix is singular")
    return inv
