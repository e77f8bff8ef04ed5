"""collapse_jax._blas: the numpy engine's triangular products and factors, called without Python's lock."""

import sys
import threading

import numpy as np
import pytest
from scipy.linalg import blas, lapack

from collapse_jax import _blas


def _triangle(rng, n):
    return (np.tril(rng.standard_normal((n, n))) / np.sqrt(n) + np.eye(n)).astype(np.float32)


@pytest.mark.parametrize("lock_free", [True, False])
@pytest.mark.parametrize("trans", [True, False])
def test_trmm_right_is_the_product(monkeypatch, lock_free, trans):
    if not lock_free:  # SciPy's wrapper, as where no loaded library has the function
        monkeypatch.setattr(_blas, "_bound", dict)
    rng = np.random.default_rng(0)
    a, b = _triangle(rng, 96), rng.standard_normal((1000, 96)).astype(np.float32)
    want = b.astype(np.float64) @ (a.T if trans else a).astype(np.float64)
    got = b.copy()
    _blas.trmm_right(a, got, trans=trans)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    scipy_b = b.copy()  # and what SciPy's own call gives, to float32 rounding
    blas.strmm(1.0, a, scipy_b.T, side=0, lower=1, trans_a=0 if trans else 1, overwrite_b=1)
    np.testing.assert_allclose(got, scipy_b, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("lock_free", [True, False])
def test_cholesky_and_inverse_are_lapacks(monkeypatch, lock_free):
    if not lock_free:
        monkeypatch.setattr(_blas, "_bound", dict)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 120))
    g = x.T @ x
    c = _blas.cholesky_lower(g)
    np.testing.assert_allclose(c, np.linalg.cholesky(g), rtol=1e-10, atol=1e-10)
    assert np.all(np.triu(c, 1) == 0) and c.flags.f_contiguous
    np.testing.assert_allclose(c, lapack.dpotrf(g, lower=1, clean=1)[0], rtol=1e-12, atol=1e-12)
    inv = _blas.inverse_lower(c)
    np.testing.assert_allclose(inv @ c, np.eye(120), atol=1e-10)
    np.testing.assert_allclose(inv, lapack.dtrtri(c, lower=1)[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        _blas.cholesky_lower(g - 2 * np.trace(g) * np.eye(120))
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        _blas.inverse_lower(np.tril(np.ones((4, 4))) - np.eye(4))


def test_trmm_right_refuses_what_it_cannot_multiply():
    a, b = np.eye(4, dtype=np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="float32"):
        _blas.trmm_right(a.astype(np.float64), b, trans=True)
    with pytest.raises(ValueError, match="C-contiguous"):
        _blas.trmm_right(a, np.asfortranarray(np.ones((3, 4), np.float32)), trans=True)
    with pytest.raises(ValueError, match=r"\(n, n\)"):
        _blas.trmm_right(np.eye(3, dtype=np.float32), b, trans=True)


def test_the_wheels_libraries_are_found():
    """NumPy's and SciPy's wheels bundle OpenBLAS with these functions: each call that a loaded OpenBLAS exports runs
    in it (one without, such as a build without LAPACKE, falls back to SciPy's wrapper: the tests above)."""
    names = {"trmm": "cblas_strmm", "cholesky": "LAPACKE_dpotrf", "inverse": "LAPACKE_dtrtri"}
    exported = [key for key, name in names.items() if any(True for _ in _blas._loaded(name))]
    if not exported:
        pytest.skip("no loaded OpenBLAS exports these functions under a known name")
    assert all(_blas.library()[key] for key in exported), _blas.library()


class _FakeFunction:
    def __init__(self, value=None):
        self.value = value

    def __call__(self):
        return self.value


class _FakeOpenBLAS:
    """A library exporting plain names, with a configuration string of either integer width."""

    def __init__(self, config: bytes):
        self.cblas_strmm = _FakeFunction()
        self.openblas_get_config = _FakeFunction(config)


@pytest.mark.parametrize("config, width", [(b"OpenBLAS 0.3.31 USE64BITINT DYNAMIC_ARCH", 64),
                                           (b"OpenBLAS 0.3.31 DYNAMIC_ARCH", 32)])
def test_the_integer_width_is_the_librarys_own_word(monkeypatch, config, width):
    """A 64-bit OpenBLAS that exports plain names (an ``INTERFACE64`` build without a suffix, Debian's
    ``libopenblas64``) called with 32-bit integers crashes the process (a 64-bit library bound with 32-bit
    integers segfaulted 3 of 3 times, an audit 2026-12-07); the names alone cannot tell, so the width comes from the
    library's configuration string. Other BLAS libraries are not called directly at all."""
    import ctypes

    import threadpoolctl

    libs = [{"user_api": "blas", "internal_api": "openblas", "filepath": "/x/libopenblas.so"},
            {"user_api": "blas", "internal_api": "mkl", "filepath": "/x/libmkl_rt.so"}]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: libs)
    monkeypatch.setattr(_blas.ctypes, "CDLL", lambda path: _FakeOpenBLAS(config))
    found = list(_blas._loaded("cblas_strmm"))
    assert [(path, int_type) for path, _, int_type in found] == [
        ("/x/libopenblas.so", ctypes.c_int64 if width == 64 else ctypes.c_int32)]


def _stamped_call(call, rows, rng):
    """(call seconds, longest gap between another thread's clock stamps during the call)."""
    import time

    a, b = _triangle(rng, 384), rng.standard_normal((rows, 384)).astype(np.float32)
    stop, stamps = threading.Event(), []

    def stamper():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    thread = threading.Thread(target=stamper)
    thread.start()
    time.sleep(0.01)
    t0 = time.perf_counter()
    call(a, b)
    t1 = time.perf_counter()
    stop.set()
    thread.join()
    inside = [s for s in stamps if t0 < s < t1]
    return t1 - t0, float(np.max(np.diff([t0, *inside, t1])))


@pytest.mark.parametrize("lock_free", [True, False])
def test_trmm_right_lets_other_threads_run(monkeypatch, lock_free):
    """The point of the module: while one thread multiplies, another runs Python. With SciPy's ``strmm`` (the lock
    held) the other thread stamps only at the call's two ends, so the longest gap between its stamps is about the
    whole call; here it stamps on throughout. Scale-free: the switch interval is made short (0.1 ms), BLAS runs one
    thread, and the rows grow until a call lasts 20 ms; three tries for a loaded machine."""
    from threadpoolctl import threadpool_limits

    if _blas.library()["trmm"] is None:
        pytest.skip("no lock-free BLAS loaded here")
    if not lock_free:
        monkeypatch.setattr(_blas, "_bound", dict)
    rng, rows, results = np.random.default_rng(2), 2048, []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        with threadpool_limits(1):
            while len(results) < 3:
                duration, gap = _stamped_call(lambda a, b: _blas.trmm_right(a, b, trans=True), rows, rng)
                if duration < 0.02 and rows < 1 << 17:  # (at most 200 MB of rows)
                    rows *= 2
                    continue
                results.append((duration, gap))
                if lock_free and gap < duration / 2:
                    break
    finally:
        sys.setswitchinterval(interval)
    if lock_free:
        assert min(g / d for d, g in results) < 0.5, results
    else:
        assert min(g / d for d, g in results) > 0.5, results
