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
    """NumPy's and SciPy's wheels bundle OpenBLAS with these functions: where one is loaded, all three calls run in
    it (a library of another ABI or naming falls back to SciPy's wrappers: the tests above)."""
    if not any(True for _ in _blas._loaded("cblas_strmm")):
        pytest.skip("no loaded BLAS exports cblas_strmm under a known name")
    assert all(_blas.library().values()), _blas.library()


def test_trmm_right_lets_other_threads_run():
    """The point of the module: while one thread multiplies, another runs Python. SciPy's ``strmm`` holds the lock for
    the whole call, so a thread stamping the clock in a loop left no stamp in the call's middle (0 in 5 of 5 calls of
    60,000 x 384, tried); here it stamps on. The margins, 25 ms at each end, are five of Python's switch intervals.
    Three tries, so that a loaded machine that happens not to schedule the other thread in one does not fail."""
    import time

    if _blas.library()["trmm"] is None:
        pytest.skip("no lock-free BLAS loaded here")
    rng = np.random.default_rng(2)
    a, b = _triangle(rng, 384), rng.standard_normal((60_000, 384)).astype(np.float32)
    margin, inside = 5 * sys.getswitchinterval(), []
    for _ in range(3):
        stop, stamps = threading.Event(), []

        def stamper():
            while not stop.is_set():
                stamps.append(time.perf_counter())

        thread = threading.Thread(target=stamper)
        thread.start()
        time.sleep(0.01)
        t0 = time.perf_counter()
        _blas.trmm_right(a, b, trans=True)
        t1 = time.perf_counter()
        stop.set()
        thread.join()
        inside.append(sum(t0 + margin < s < t1 - margin for s in stamps))
        if inside[-1] > 0:
            break
    assert max(inside) > 0, inside
