"""Sigma spectral estimators: Gram streaming, log-det, Theorems 1-3 and bias-corrected intervals (seed 002).

Convention: embeddings are the *rows* of ``x`` with shape ``(num_points, dim)``; the Gram matrix is the
``(dim, dim)`` matrix ``G = sum_i x_i x_i^T = x^T x`` (the seed writes ``X X^T`` with embeddings as columns; it is
the same matrix). The observed block has ``n`` rows, the full data set ``N``; ``G = G_1 + G_2``.

Equation references are to ``shared/spec/sigma_spectral.md`` (which restates the seed's stripped equations):

* regularised log-det ``L_eps(M) = log det(M + eps I) = 2 sum log diag chol(M + eps I)``;
* Theorem 1: ``log det G_1 <= log det G <= sum_i log(lambda_i(G_1) + rho(G_2))``;
* Theorem 2: ``L_hat = log det G_1 + d log(N/n)``; over-estimation ratio ``OR = prod_i lambda_1(S) / lambda_i(S)``;
* Theorem 3: ``log det G in L_hat +- z tau_hat / sqrt(n)``, ``tau^2 = Var(M)``, ``M = x^T Sigma^{-1} x``;
  block-size rule ``n >= (z tau / e)^2``.

Corrections that go beyond the seed (derived in ``docs/sigma.md``):

* exact for zero-mean Gaussian data: ``det G_1 / det G`` is Wilks' Lambda, a product of independent
  ``Beta((n-i+1)/2, (N-n)/2)``, so ``log det G - log det G_1`` has mean ``sum_i psi((N-i+1)/2) - psi((n-i+1)/2)``
  and variance ``sum_i psi'((n-i+1)/2) - psi'((N-i+1)/2)`` (digamma / trigamma);
* distribution-free, second order: ``E[log det G - L_hat] ~ (E[M^2] - d)/2 * (1/n - 1/N)`` with ``E[M^2]`` estimated
  from the block's own in-sample Mahalanobis norms;
* scaled-Wishart (hybrid): the exact Gaussian bias times ``(E[M^2] - d) / (d (d + 1))``, which equals the second-order
  term to leading order but keeps the Gaussian's higher-order ``d/n`` terms;
* leverage jackknife: the block's own leave-one-out log-dets ``log det G_1 + log(1 - h_i)`` (``h_i`` the leverages)
  and leave-two-out log-dets (``+ log det(I - H_SS)``, all pairs through one weighted Gram) measure the first and
  second differences of this data's bias curve at n without a model (unbiased for any distribution); a two-parameter
  curve ``A b + kappa int log(t/n) db`` through them carries the bias to ``N``; the variance is the jackknife variance
  of ``log(1 - h_i)``, calibrated by its Gaussian expectation (Beta leverages) to the power of the block's
  second-order share relative to the Gaussian's (Efron-Stein over-statement).
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial, wraps
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, polygamma

from collapse_jax import _checks, _linalg
from collapse_jax.sigma_precision_config import PAIR_OFFSETS


def _stats():
    """``scipy.stats``, imported on first use (at import time it added about 0.4 s to every start-up)."""
    from scipy import stats

    return stats


def _to_float64(x):
    if isinstance(x, (np.ndarray, jax.Array)) and jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.asarray(x, jnp.float64)
    return x


def in_float64(fn):
    """Run ``fn`` with JAX's 64-bit types on (``jax.enable_x64``) and its floating array arguments as float64,
    whatever the caller's ``jax_enable_x64``: the jackknife's bias coefficients are differences of digamma values and
    ratios of such differences, in the thousands for small blocks, and in float32 they lost the centre (Gaussian block,
    N = 10^6: off by 0.06 nats at d = 16, n = 10 d, 1.5 nats at d = 64 and 274 nats at d = 384, against half-widths
    near 1). Traced arguments (inside the caller's ``jit``) run as they are, in the caller's precision, and so do
    concrete ones inside a caller's ``jit`` where x64 is off (traced twice there: the float64 trace is dropped). Where
    the caller's x64 is off, the 64-bit results come back as NumPy arrays: a JAX float64 array there made every
    operation a user wrote on it warn and round to float32 (``e.jackknife.center - truth``; a user trial,
    2026-12-06)."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        if _checks.is_traced((args, kwargs)):
            return fn(*args, **kwargs)
        caller_x64 = bool(jax.config.jax_enable_x64)
        with jax.enable_x64(True):
            out = fn(*jax.tree.map(_to_float64, args), **jax.tree.map(_to_float64, kwargs))
        if caller_x64:
            return out
        if _checks.is_traced(out):  # concrete arguments inside a caller's jit: the results are tracers there, which
            # cannot come back as NumPy (TracerArrayConversionError; a user trial, 2026-12-06): in its precision
            return fn(*args, **kwargs)
        return jax.tree.map(_to_host_if_wide, out)
    return wrapper


def _to_host_if_wide(x):
    """A JAX array of a 64-bit type (float64, int64, complex128) as a NumPy array; anything else as it is."""
    return np.asarray(x) if isinstance(x, jax.Array) and x.dtype.itemsize >= 8 else x


def float64_kept(fn):
    """Run ``fn`` in the precision of its first argument: float64 data (a NumPy float64 array, a list of Python
    floats, a torch float64 tensor) in float64 with JAX's 64-bit types on for the call, whatever the caller's
    ``jax_enable_x64``, the results as NumPy arrays where it is off (:func:`in_float64`'s rule); float32 data, JAX
    arrays and traced values as they are. :func:`logdet` and :func:`batched_logdet` cast float64 Grams to float32
    where x64 was off, then refused them (or gave NaN with the advice "pass float64 Grams") although float64 was
    passed, while the other estimators ran in float64 (a user trial on MiniLM Grams, 2026-12-07)."""
    @wraps(fn)
    def wrapper(x, *args, **kwargs):
        # (not inside a caller's jit, where a NumPy constant is concrete but the results would be tracers: np.asarray
        # of them failed, and the constant, converted with x64 on, stayed float64 in JAX's cache; a review)
        if (jax.config.jax_enable_x64 or isinstance(x, jax.Array) or _checks.is_traced((x, args, kwargs))
                or _checks.host_array(x).dtype != np.float64 or _checks.under_trace()):
            return fn(x, *args, **kwargs)
        with jax.enable_x64(True):
            out = fn(_checks.host_array(x), *args, **kwargs)
        return jax.tree.map(_to_host_if_wide, out)
    return wrapper


# --------------------------------------------------------------------------------------------------------------
# Input validation (raises before any compute)
# --------------------------------------------------------------------------------------------------------------


def check_embeddings(name: str, x, dim: int | None = None) -> np.ndarray:
    """Return ``x`` as a finite real ``(num_points, dim)`` array (its dtype kept: float32 embeddings stay float32)
    or raise ``ValueError`` naming the problem. A torch tensor is read as :func:`collapse_jax._checks.host_array`
    reads it. Traced values (inside ``jax.jit``/``vmap``/``grad``) are refused: these estimators work on the host
    (NumPy, the native kernels), and JAX's TracerArrayConversionError did not say so (a user trial, 2026-12-06)."""
    if _checks.is_traced(x):
        raise TypeError(f"{name} is a traced JAX value: this estimator runs on the host (NumPy and native kernels) "
                        "and cannot be called inside jax.jit, vmap or grad; call it on concrete arrays, outside "
                        "the transformed function")
    arr = _checks.host_array(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, dim), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dim {arr.shape[1]} but {dim} was expected (non-matching dimensions)")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        bad = ~np.isfinite(arr)
        rows = np.flatnonzero(bad.any(axis=1))  # (which rows: the monitor's zero-norm message names its row; an audit)
        at = f"row {rows[0]}" if rows.size == 1 else f"{rows.size} rows, the first {rows[0]}"
        raise ValueError(f"{name} contains {int(np.count_nonzero(bad))} NaN/inf entries ({at}); embeddings must be "
                         "finite")
    return arr


def check_block_sizes(n: int, dim: int, num_points: int) -> tuple[int, int, int]:
    """Check ``d < n <= N`` (Theorems 2-3 need a block with more rows than dimensions, inside the data)."""
    n = _checks.positive_int("n", n)
    dim = _checks.positive_int("dim", dim)
    num_points = _checks.positive_int("N", num_points)
    if num_points > 2**53:  # float64 counts: N and log(N / n) exact below this
        raise ValueError(f"total count N must be at most 2**53, got N={num_points}")
    if n <= dim:
        raise ValueError(f"block size n must exceed the dimension d: n >= d + 1 = {dim + 1}, got n={n} (d={dim})")
    if num_points < n:
        raise ValueError(f"total count N must be at least the block size n, got N={num_points} < n={n}")
    return n, dim, num_points


def check_eps(eps: float, *, num_points: int | None = None, dim: int | None = None) -> float:
    """``eps`` in [0, inf); ``eps > 0`` is required when the Gram matrix is rank deficient (fewer points than
    ``dim``)."""
    eps = _checks.in_interval("eps", eps, 0.0, math.inf, high_open=True)
    if num_points is not None and dim is not None and num_points < dim and eps <= 0:
        raise ValueError(f"eps must be > 0 for rank-deficient input ({num_points} points in dim {dim}); got eps={eps}")
    return eps


# --------------------------------------------------------------------------------------------------------------
# Gram matrices and log-determinants
# --------------------------------------------------------------------------------------------------------------


def gram(x: jnp.ndarray) -> jnp.ndarray:
    """``G = x^T x`` for rows ``x`` (..., num_points, dim) -> (..., dim, dim)."""
    return jnp.einsum("...ni,...nj->...ij", x, x)


@jax.jit
def _accumulate(g: jnp.ndarray, chunk: jnp.ndarray) -> jnp.ndarray:
    return g + gram(chunk.astype(g.dtype))


class StreamedGram(NamedTuple):
    gram: np.ndarray  # (dim, dim)
    num_points: int


def one_blas_thread():
    """Context manager limiting NumPy/SciPy BLAS to one thread (``threadpoolctl``), for code that runs its own
    threads: on a shared CPU a multithreaded BLAS call stalls at its barriers whenever one of its threads is
    descheduled (a d = 384 ``slogdet`` ran 3 ms single-threaded against 17 ms with 2 BLAS threads, docs/benchmarks.md).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional: threads then share BLAS's own pool
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def gram_streaming(chunks: Iterable, dim: int, *, dtype=None, progress=None, threads: int | None = None
                   ) -> StreamedGram:
    """Accumulate ``G = sum_chunks c^T c`` chunk by chunk without holding all embeddings (N can be 10^7 or more).

    ``chunks`` yields ``(rows, dim)`` arrays (NumPy or JAX); each is checked for finite values and matching ``dim``
    before it is added. ``progress`` is an optional tqdm-like bar. On a CPU backend the products run in NumPy's BLAS
    on ``threads`` worker threads (default: the CPUs available), chunk ``k`` always going to accumulator
    ``k mod threads`` so the result does not depend on timing; elsewhere (GPU) in one jitted JAX accumulate per
    chunk (chunks of equal size share one compilation).
    """
    if not isinstance(chunks, Iterable):  # ("'int' object is not iterable" named nothing: an audit, 2026-12-07)
        raise ValueError(f"chunks must be an iterable of (rows, dim) arrays, got {type(chunks).__name__}")
    dim = _checks.positive_int("dim", dim)
    dtype = dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    try:  # (int32 truncated every row silently, complex64 ran, "float8" failed in NumPy: a user trial, 2026-12-06)
        real = np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        real = False
    if not real:
        raise ValueError(f"dtype must be float32 or float64 (the Gram accumulator's precision), got {dtype!r}")
    if jax.default_backend() != "cpu":
        return _gram_streaming_jax(chunks, dim, dtype, progress)
    from collapse_jax import _native

    np_dtype = np.dtype(dtype)
    threads = _checks.positive_int("threads", threads) if threads is not None else _native.spectral_threads()
    accs = [np.zeros((dim, dim), np_dtype) for _ in range(threads)]
    workers = [ThreadPoolExecutor(1) for _ in range(threads)]
    pending: list = []

    def add(k, c):
        with np.errstate(over="ignore"):  # (an overflow is reported by _finite_gram, with its cure)
            accs[k] += c.T @ c

    count = 0
    try:
        with one_blas_thread():
            for k, c in enumerate(chunks):
                c = np.asarray(check_embeddings(f"chunk {k}", c, dim), np_dtype)
                if len(pending) >= 2 * threads:  # bounded read-ahead
                    pending.pop(0).result()
                pending.append(workers[k % threads].submit(add, k % threads, c))
                count += c.shape[0]
                if progress is not None:
                    progress.update(c.shape[0])
            for f in pending:
                f.result()
    finally:
        for w in workers:
            w.shutdown(wait=True, cancel_futures=True)
    if count == 0:
        raise ValueError("chunks yielded no embeddings")
    g = accs[0]
    with np.errstate(over="ignore", invalid="ignore"):  # (inf - inf after an overflow: _finite_gram reports it)
        for a in accs[1:]:
            g = g + a
    return StreamedGram(_finite_gram(g, np_dtype), count)


def _finite_gram(g, dtype):
    """``g`` if finite; else a ValueError saying the sums overflowed (every chunk was checked finite): an inf Gram
    went on to a log-det error about NaN / inf that named neither the cause nor the cure (an audit, 2026-12-04)."""
    if not np.all(np.isfinite(np.asarray(g))):
        raise ValueError(f"the Gram matrix overflowed {np.dtype(dtype).name}: the embeddings are finite but their "
                         "squares sum beyond its range; rescale them (log det G moves by 2 d log c for rows times c) "
                         "or accumulate in float64 (dtype=jnp.float64, or --x64)")
    return g


def _gram_streaming_jax(chunks, dim, dtype, progress) -> StreamedGram:
    g = jnp.zeros((dim, dim), dtype)
    count = 0
    for k, c in enumerate(chunks):
        c = check_embeddings(f"chunk {k}", c, dim)
        g = _accumulate(g, jnp.asarray(c))
        count += c.shape[0]
        if progress is not None:
            progress.update(c.shape[0])
    if count == 0:
        raise ValueError("chunks yielded no embeddings")
    return StreamedGram(_finite_gram(np.asarray(g), dtype), count)


def array_chunks(x, chunk_size: int):
    """Yield consecutive row chunks of an array (a memory-mapped ``.npy`` file works too)."""
    chunk_size = _checks.positive_int("chunk_size", chunk_size)
    for start in range(0, x.shape[0], chunk_size):
        yield np.asarray(x[start:start + chunk_size])


def logdet_chol(m: jnp.ndarray, eps: float = 0.0) -> jnp.ndarray:
    """``L_eps(M) = log det(M + eps I) = 2 sum_i log diag chol(M + eps I)`` (batched over leading axes).

    Returns NaN (not an error) for a matrix that is not positive definite, so it can run inside jit/vmap; use
    :func:`logdet` for checked input. On the CPU the factors come in LAPACK calls jaxlib does not split
    (``collapse_jax/_linalg.py``: several batched calls at once can hang jaxlib 0.10-0.11.0).
    """
    return _logdet_with(_linalg.cholesky, m, eps)


def _logdet_with(cholesky, m, eps):
    m = jnp.asarray(m)
    if m.dtype in (jnp.bfloat16, jnp.float16):  # (LAPACK has no 16-bit factor: "Unsupported dtype" from deep inside
        m = m.astype(jnp.float32)               # jaxlib; a user trial, 2026-12-06)
    return _logdet_of_factor(cholesky(m + eps * jnp.eye(m.shape[-1], dtype=m.dtype)))


def _logdet_of_factor(chol):
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _check_gram(name: str, g) -> np.ndarray:
    """``g`` as a NumPy array of finite real square matrices (..., dim, dim), or a ValueError naming it."""
    g = _checks.host_array(g)
    if g.ndim < 2 or g.shape[-1] != g.shape[-2]:
        raise ValueError(f"{name} must be a square Gram matrix (..., dim, dim), got shape {g.shape}")
    if not np.issubdtype(g.dtype, np.number) or np.iscomplexobj(g):
        raise ValueError(f"{name} must hold real numbers, got dtype {g.dtype}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{name} contains NaN/inf")
    # Symmetric to its precision's rounding (the Cholesky reads one triangle: a matrix that is not symmetric got the
    # log-det of another without a word; a user trial, 2026-12-06). Loose bounds: only real asymmetry is refused.
    scale = float(np.max(np.abs(g))) if g.size else 0.0
    gap = float(np.max(np.abs(g - np.swapaxes(g, -1, -2)))) if g.size else 0.0
    if gap > (1e-8 if g.dtype == np.float64 else 1e-3) * scale:
        raise ValueError(f"{name} must be symmetric (a Gram matrix X^T X), got entries differing from their "
                         f"transposes by up to {gap:.3g} (largest entry {scale:.3g})")
    return g


@float64_kept
def logdet(g, eps: float = 0.0, *, num_points: int | None = None) -> jnp.ndarray:
    """Checked :func:`logdet_chol` of a (batch of) Gram matrices; ``num_points`` (rows behind G) enables the
    rank-deficiency check on ``eps``. Raises if the shifted matrix is not positive definite. In float64 for float64
    input whatever ``jax_enable_x64`` (:func:`float64_kept`)."""
    g = _check_gram("Gram matrix", g)
    eps = check_eps(eps, num_points=num_points, dim=g.shape[-1])
    out = logdet_chol(jnp.asarray(g), eps)
    if not np.all(np.isfinite(np.asarray(out))):
        if g.dtype != np.float64:
            # a float32 Gram: one of real embeddings lost its dead coordinates' eigenvalues (their squares
            # underflow), and eps moves the value by hundreds of nats (MiniLM: log det -426.9 in float64, -122.5
            # with eps = 1e-3; a user trial, 2026-12-06)
            raise ValueError(f"Gram matrix + eps I is not positive definite in {g.dtype}: rank "
                             "deficient, or rounded there (real embeddings' near-zero coordinates underflow when "
                             "squared in float32): form the Gram matrix from float64 rows and pass it as a NumPy "
                             "float64 array (or a JAX one with float64 enabled: jax.config.update('jax_enable_x64', "
                             "True) or collapse-jax --x64); eps > 0 changes the value")
        # (said "rank deficient?; use eps > 0" also for a negative definite matrix with eps = 0.5; a user trial,
        # 2026-12-07)
        # (the first failing matrix alone, and a tolerance of its rounding: d = 4096 Grams of embedding-like rows
        # have eigenvalues of -1.9e-12 x the largest entry; a review, 2026-12-07)
        first = int(np.flatnonzero(~np.isfinite(np.asarray(out)).reshape(-1))[0])
        eig = np.linalg.eigvalsh(g.reshape(-1, *g.shape[-2:])[first])
        low = float(eig.min()) + float(eps)
        if low < -10 * g.shape[-1] * np.finfo(np.float64).eps * max(float(np.abs(eig).max()), float(eps)):
            raise ValueError(f"Gram matrix + eps I is not positive semi-definite (smallest eigenvalue {low:.3g}, "
                             f"eps = {float(eps):g}): not a Gram matrix X^T X, whose eigenvalues are >= 0")
        raise ValueError(f"Gram matrix + eps I is singular (smallest eigenvalue {low:.3g}, eps = {float(eps):g}): "
                         "rank deficient (fewer independent rows than dimensions); a ridge eps > 0 makes it "
                         "definite and changes the value")
    return out


@float64_kept
def batched_logdet(grams: jnp.ndarray, eps: float = 0.0, *, backend: str = "auto") -> jnp.ndarray:
    """Log-det :func:`logdet_chol` of a stack of Gram matrices ``(num_blocks, dim, dim)`` -> ``(num_blocks,)``
    (NaN, with a RuntimeWarning outside ``jit``, for a matrix whose Cholesky fails in the input's precision: not
    positive definite, or in float32 one whose smallest eigenvalues are below its rounding, as real embeddings' Grams
    are: pass float64). In float64 for float64 input whatever ``jax_enable_x64`` (:func:`float64_kept`).

    ``backend``: ``"native"`` (float64 on CPU: a blocked AVX-512 Cholesky in ``collapse_jax/_native``, one matrix
    per thread, registered with jax.ffi, so it also runs under ``jit``), ``"xla"`` (``jnp.linalg.cholesky``; the
    choice on GPU), or ``"auto"`` (native when the input is float64 on CPU and the kernel builds, else xla).
    On the shared 2-core CPU the native kernel ran 10,000 matrices at d = 384 several times faster than XLA's
    batched Cholesky and than a NumPy ``slogdet`` loop (docs/benchmarks.md).
    """
    if backend not in ("auto", "native", "xla"):
        raise ValueError(f"backend must be 'auto', 'native' or 'xla', got {backend!r}")
    eps = check_eps(eps)
    if not _checks.is_traced(grams):  # (1-D input gave [nan] and "1 of 1 matrices ... not positive definite"; a
        grams = _check_stack(grams)    # user trial, 2026-12-06)
    grams = jnp.asarray(grams)
    if backend == "auto":
        backend = "native" if _native_logdet_usable(grams) else "xla"
    if backend == "native":
        if not _native_logdet_usable(grams):
            raise ValueError("backend='native' needs float64 input on a CPU device and a C++ compiler")
        out = _native_batched_logdet(grams, eps)
    else:
        out = _batched_logdet(grams, eps)
    if not _checks.is_traced(grams):
        _warn_not_factored(out, grams.dtype)
    return out


def _check_stack(grams):
    """Concrete ``grams`` as a stack of real square matrices (..., num_blocks, dim, dim), or a ValueError naming it;
    NaN entries pass (their log-dets are NaN, with :func:`batched_logdet`'s warning)."""
    g = _checks.host_array(grams)
    if g.ndim < 3 or g.shape[-1] != g.shape[-2]:
        raise ValueError("grams must be a stack of square Gram matrices (..., num_blocks, dim, dim), got shape "
                         f"{g.shape}"
                         + (" (one matrix: pass g[None])" if g.ndim == 2 and g.shape[0] == g.shape[1] else ""))
    if not np.issubdtype(g.dtype, np.number) or np.iscomplexobj(g):
        raise ValueError(f"grams must hold real numbers, got dtype {g.dtype}")
    return grams


def _warn_not_factored(out, dtype) -> None:
    """A warning naming how many of :func:`batched_logdet`'s matrices gave NaN, and, in float32, the likely cause:
    positive-definite real Grams whose smallest eigenvalues are below float32's rounding gave NaN without a word
    (a user trial, 2026-12-06)."""
    bad = int(np.count_nonzero(np.isnan(np.asarray(out))))
    if bad:
        hint = (" (in float32 a positive-definite Gram whose smallest eigenvalues are below about 1e-7 of its largest "
                "fails too: pass float64 Grams formed from float64 rows)") if dtype != jnp.float64 else ""
        warnings.warn(f"batched_logdet: {bad} of {np.size(out)} matrices + eps I are not positive definite in "
                      f"{dtype}{hint}; their log-dets are NaN", RuntimeWarning, stacklevel=_checks.user_stacklevel())


# One batched Cholesky call alone (no other LAPACK call in its program): jaxlib may split it over XLA's threads, which
# cannot wait on another call here (about 2x faster than unsplit calls: 1000 float32 d = 384 matrices, 2 cores)
_batched_logdet = jax.jit(partial(_logdet_with, jnp.linalg.cholesky))


def _native_logdet_usable(grams) -> bool:
    from collapse_jax import _native

    return (grams.dtype == jnp.float64 and grams.ndim >= 2 and jax.default_backend() == "cpu"
            and _native.spectral_library() is not None)


@partial(jax.jit, static_argnums=1)
def _native_batched_logdet(grams, eps):
    from collapse_jax import _native

    call = jax.ffi.ffi_call(_native.LOGDET_TARGET, jax.ShapeDtypeStruct(grams.shape[:-2], jnp.float64),
                            vmap_method="broadcast_all")
    return call(grams, eps=np.float64(eps), num_threads=np.int64(_native.spectral_threads()))


# --------------------------------------------------------------------------------------------------------------
# Theorem 1 (deterministic bounds) and Theorem 2 (scaling, over-estimation ratio)
# --------------------------------------------------------------------------------------------------------------


class Theorem1Bounds(NamedTuple):
    lower: jnp.ndarray  # log det G_1
    upper: jnp.ndarray  # sum_i log(lambda_i(G_1) + rho(G_2))


@in_float64
def theorem1_bounds(g1: jnp.ndarray, g2: jnp.ndarray) -> Theorem1Bounds:
    """Theorem 1: ``log det G_1 <= log det(G_1 + G_2) <= sum_i log(lambda_i(G_1) + lambda_max(G_2))``, in float64
    whatever ``jax_enable_x64`` (:func:`in_float64`: in float32 the Cholesky of MiniLM Grams, whose dead coordinates
    have eigenvalues near 1e-9 of the largest, failed and the lower bound was NaN; a user trial, 2026-12-05).
    Concrete input is checked: two finite square Gram matrices (batches alike) of the same shape, ``g1`` positive
    definite (Grams of different sizes gave bounds, a singular ``g1`` a NaN lower bound, lists an AttributeError: a
    user trial, 2026-12-06)."""
    traced = _checks.is_traced((g1, g2))
    if not traced:
        g1, g2 = _check_gram("g1", g1), _check_gram("g2", g2)
        if g1.shape != g2.shape:
            raise ValueError(f"g1 and g2 must be Gram matrices of the same data dimension (and batch), got shapes "
                             f"{g1.shape} and {g2.shape}")
    if not traced:  # (g2 = -I gave a NaN upper bound without a word: an audit, 2026-12-07; in NumPy, on the host:
        # inside a caller's jit JAX's results are tracers even for concrete arguments)
        lam = np.linalg.eigvalsh(np.asarray(g2, np.float64))
        low, top = (float(lam.min()), float(np.abs(lam).max())) if lam.size else (0.0, 0.0)
        if low < -1e-6 * top:
            raise ValueError(f"g2 must be positive semidefinite (a Gram matrix X^T X), got an eigenvalue {low:.3g} "
                             f"(largest magnitude {top:.3g})")
    lam1 = _linalg.eigvalsh(g1)
    rho2 = _linalg.eigvalsh(g2)[..., -1]
    # log det G_1 from its Cholesky factor, not the eigenvalues: eigvalsh's absolute error (~eps ||G_1||) turned the
    # tiny eigenvalues of real embeddings' dead coordinates negative, a NaN bound (MiniLM; a user trial, 2026-12-05)
    chol = _linalg.cholesky(g1)
    if not traced:
        _check_regular(chol, g1, "g1", "log det G_1, Theorem 1's lower bound")
    lower = _logdet_of_factor(chol)
    return Theorem1Bounds(lower, jnp.sum(jnp.log(lam1 + rho2[..., None]), axis=-1))


def _check_regular(chol, g, name: str, what: str) -> None:
    """A ValueError naming ``name`` unless every Cholesky pivot^2 of ``g`` (its factor ``chol``) exceeds
    :data:`SINGULAR_PIVOT` of its diagonal entry, the rule :func:`block_estimates` refuses singular blocks by (a
    rank-deficient Gram may factor with rounding pivots in float64, and give a finite log-det of rounding noise; NaN
    pivots fail): ``what`` is then undefined. Not checked where ``chol`` is traced (values unknown)."""
    if _checks.is_traced(chol):
        return
    pivot = np.asarray(jnp.diagonal(chol, axis1=-2, axis2=-1)) ** 2 / np.diagonal(np.asarray(g), axis1=-2, axis2=-1)
    if not np.all(pivot > SINGULAR_PIVOT):
        raise ValueError(f"{name} is singular in float64 (a Cholesky pivot^2 at most {SINGULAR_PIVOT:g} of its "
                         f"diagonal entry: the block's rows span fewer than d = {g.shape[-1]} dimensions, or it was "
                         "formed in float32, where real embeddings' near-zero coordinates vanish when squared: form "
                         f"it from float64 rows), so {what} would be undefined")


@in_float64
def scaling_estimate(logdet_g1, n, num_points, dim):
    """Theorem 2 plug-in: ``L_hat = log det G_1 + d log(N / n)``, in float64 (:func:`in_float64`; in float32 a
    centre near 2e4 kept four decimals; a user trial, 2026-12-06). ``1 <= n <= N`` where concrete (n > N gave a
    plug-in below log det G_1, a negative n NaN, without a word; a user trial, 2026-12-07; n <= d is allowed: a
    ridged ``log det (G_1 + eps I)``)."""
    if not _checks.is_traced((n, num_points)):
        n_arr = _checks.array_in_interval("n", n, 1.0, math.inf)
        big = _checks.array_in_interval("N", num_points, 1.0, math.inf)
        if np.any(n_arr > big):
            raise ValueError(f"block size n must be at most the total count N, got n = {np.max(n_arr):g} > N = "
                             f"{np.min(big):g}")
    return logdet_g1 + dim * jnp.log(jnp.asarray(num_points, jnp.result_type(float)) / n)


@in_float64
def log_overestimation_ratio(sigma_eigenvalues: jnp.ndarray) -> jnp.ndarray:
    """Theorem 2: ``log OR = sum_i log(lambda_1(Sigma) / lambda_i(Sigma))`` (0 when Sigma is isotropic), over the
    last axis. Concrete eigenvalues must be finite and positive (a ValueError naming ``sigma_eigenvalues``: a
    singular Sigma has an infinite ratio, and ``eigvalsh`` of a real embeddings' Sigma returns ~-1e-17 for its dead
    coordinates, which gave NaN without a word; a user trial, 2026-12-06)."""
    if not _checks.is_traced(sigma_eigenvalues):
        lam = _checks.host_array(sigma_eigenvalues)
        if lam.ndim < 1 or lam.shape[-1] < 1 or not np.issubdtype(lam.dtype, np.number) or np.iscomplexobj(lam):
            raise ValueError(f"sigma_eigenvalues must be a real array of eigenvalues (..., d) with d >= 1, got shape "
                             f"{lam.shape} and dtype {lam.dtype}")
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            low = np.nanmin(np.where(np.isfinite(lam), lam, np.nan)) if np.any(np.isfinite(lam)) else np.nan
            raise ValueError(f"sigma_eigenvalues must be finite and > 0 (Sigma positive definite; the ratio is "
                             f"infinite for a singular Sigma), got {int(np.sum(~(lam > 0) | ~np.isfinite(lam)))} that "
                             f"are not, smallest {low:.3g}")
    lam = jnp.asarray(sigma_eigenvalues)
    return jnp.sum(jnp.log(jnp.max(lam, axis=-1, keepdims=True) / lam), axis=-1)


# --------------------------------------------------------------------------------------------------------------
# Theorem 3: Mahalanobis moments, the seed's interval, the block-size rule
# --------------------------------------------------------------------------------------------------------------


@in_float64
def mahalanobis_insample(x_block: jnp.ndarray, g1: jnp.ndarray | None = None) -> jnp.ndarray:
    """In-sample ``M_i = x_i^T (G_1/n)^{-1} x_i = n h_i`` (h_i the leverages) for the block's rows (n, d) -> (n,).

    ``sum_i M_i = n d`` exactly, so the mean is ``d`` and ``mean(M_i^2) - d^2`` is the plug-in ``tau_hat^2``.
    In float64 whatever ``jax_enable_x64`` (:func:`in_float64`): in float32 the Gram of 600 MiniLM rows, whose
    dead coordinates' squares underflow, had no Cholesky factor and every ``M_i`` was NaN (a user trial,
    2026-12-06). Concrete rows are checked (finite, n > d); a block whose Gram is singular is a ValueError.
    """
    if _checks.is_traced((x_block, g1)):
        return _mahalanobis_of_whitened(_whitened(x_block, gram(x_block) if g1 is None else g1)[1])
    x_block = jnp.asarray(check_embeddings("x_block", x_block), jnp.float64)
    n, dim = x_block.shape
    if n <= dim:
        raise ValueError(f"x_block must have more rows than dimensions (n >= d + 1 = {dim + 1}), got n = {n}")
    g1 = gram(x_block) if g1 is None else jnp.asarray(_check_gram("g1", g1), jnp.float64)
    if g1.shape != (dim, dim):
        raise ValueError(f"g1 must be the block's ({dim}, {dim}) Gram matrix, got shape {g1.shape}")
    chol, w = _whitened(x_block, g1)
    _check_regular(chol, g1, "x_block: the block's Gram matrix", "its Mahalanobis norms")
    return _mahalanobis_of_whitened(w)


def _whitened(x_block, g1):
    """``(L, W)``: the Cholesky factor of ``G_1`` and the whitened rows ``W = L^{-1} X^T`` (..., d, n)."""
    chol = _linalg.cholesky(g1)
    return chol, _linalg.solve_triangular(chol, jnp.swapaxes(x_block, -1, -2), lower=True)


def _mahalanobis_of_whitened(w):
    return w.shape[-1] * jnp.sum(w * w, axis=-2)


@in_float64
def gaussian_insample_var(dim, n):
    """``Var(M_i)`` of in-sample Mahalanobis norms for Gaussian data: ``n h_i``, ``h_i ~ Beta(d/2, (n-d)/2)``,
    gives ``2 d (n - d) / (n + 2)`` (vs the population ``2 d``); ``n >= d + 1`` (checked unless traced: below, a
    negative variance)."""
    _check_above_dim(dim, n)
    return 2.0 * dim * (n - dim) / (n + 2.0)


class MahalanobisMoments(NamedTuple):
    tau2_plugin: jnp.ndarray  # in-sample Var(M): the seed's tau_hat^2
    tau2: jnp.ndarray         # calibrated estimate of the population Var(M)
    m2: jnp.ndarray           # calibrated estimate of E[M^2] = d^2 + Var(M)


@in_float64
def mahalanobis_moments(m2_insample, dim, n) -> MahalanobisMoments:
    """From the block's in-sample ``mean(M_i^2)``: the seed's plug-in ``tau_hat^2 = mean(M_i^2) - d^2`` and a
    calibrated ``tau^2 = tau_hat^2 * 2d / (2d(n-d)/(n+2))`` (unbiased for Gaussian data: in-sample leverages shrink
    ``Var(M)`` by ``(n-d)/(n+2)``), with ``E[M^2] = d^2 + tau^2``; ``n >= d + 1`` (checked unless traced: below,
    negative or infinite moments)."""
    _check_above_dim(dim, n)
    tau2_plugin = jnp.maximum(m2_insample - dim * dim, 0.0)
    tau2 = tau2_plugin * (n + 2.0) / (n - dim)
    return MahalanobisMoments(tau2_plugin, tau2, dim * dim + tau2)


def z_value(level: float) -> float:
    """Two-sided normal quantile ``z_{1 - a/2}`` for coverage ``level = 1 - a``."""
    level = _checks.in_interval("level", level, 0.0, 1.0, low_open=True, high_open=True)
    return float(_stats().norm.ppf(0.5 + level / 2.0))


COVER_ROUNDING = 1e-10  # relative: :meth:`Interval.covers`'s allowance for rounding (measured: 4e-13 at d = 384)


class Interval(NamedTuple):
    """A symmetric interval ``center +- half_width`` for ``log det G`` (arrays of the estimate's shape)."""

    center: jnp.ndarray
    half_width: jnp.ndarray

    @property
    def low(self):
        """``center - half_width``."""
        return self.center - self.half_width

    @property
    def high(self):
        """``center + half_width``."""
        return self.center + self.half_width

    def covers(self, truth):
        """Whether ``truth`` lies in the interval, widened by ``COVER_ROUNDING`` times ``max(1, |center|)`` for the
        rounding of two float64 log dets of one matrix (a block of all N rows is exact, half-width 0, and its centre
        differed from NumPy's ``slogdet`` by 4e-13, so it "missed": 0 % coverage at n = N; a user trial,
        2026-12-07): in float64 NumPy outside ``jit`` (JAX's float32 default rounded a centre near 1e4 to ~1e-3 and
        missed truths just inside the interval; a user trial, 2026-12-05), in the caller's precision on traced
        values."""
        if _checks.is_traced((truth, self.center, self.half_width)):
            slack = jnp.where(jnp.isfinite(self.center), COVER_ROUNDING * jnp.maximum(1.0, jnp.abs(self.center)), 0.0)
            return jnp.abs(truth - self.center) <= self.half_width + slack
        f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
        center = f64(self.center)
        # (none for an infinite centre: it covered every finite truth; a review, 2026-12-07)
        slack = np.where(np.isfinite(center), COVER_ROUNDING * np.maximum(1.0, np.abs(center)), 0.0)
        return np.abs(f64(truth) - center) <= f64(self.half_width) + slack


def _check_z(z) -> None:
    """The intervals' ``z`` (:func:`z_value`): finite and > 0 unless traced (a negative one gave negative
    half-widths that never cover, NaN a NaN width; a user trial, 2026-12-06)."""
    if not _checks.is_traced(z):
        _checks.array_in_interval("z", z, 0.0, math.inf, low_open=True, high_open=True)


@in_float64
def seed_interval(l_hat, tau2_plugin, n, z) -> Interval:
    """Theorem 3 as the seed states it (``N >> n``): ``L_hat +- z tau_hat / sqrt(n)``; ``n >= 1`` (checked unless
    traced)."""
    _check_z(z)
    if not _checks.is_traced(n):
        _checks.array_in_interval("n", n, 1.0, math.inf)
    return Interval(l_hat, z * jnp.sqrt(tau2_plugin / n))


def block_size_rule(tau, precision, z) -> jnp.ndarray:
    """Theorem 3 block-size rule: the smallest ``n`` with ``z tau / sqrt(n) <= e``, i.e. ``ceil((z tau / e)^2)``.

    ``tau`` (the standard deviation of ``M``, a float or an array) must be finite and >= 0, the precision ``e``
    finite and > 0, ``z`` (from :func:`z_value`) finite and > 0; a ValueError names the first that is not (a
    negative precision gave the block size of ``|e|``, a zero one inf). Traced values (inside ``jit`` / ``vmap``)
    are not checked."""
    for name, value, low_open in (("tau", tau, False), ("precision", precision, True)):
        if not _checks.is_traced(value):
            _checks.array_in_interval(name, value, 0.0, math.inf, low_open=low_open, high_open=True)
    _check_z(z)
    return jnp.ceil((z * jnp.asarray(tau) / precision) ** 2)


# --------------------------------------------------------------------------------------------------------------
# Bias corrections and corrected intervals
# --------------------------------------------------------------------------------------------------------------


def _check_counts(dim, n, num_points=None, *, n_low: str = "d + 1", name: str = "n"):
    """Untraced arguments of the Wishart formulas: ``dim`` an integer >= 1, ``n`` (a number or an array, called
    ``name`` in messages) at least ``d`` or ``d + 1`` (``n_low``; the digamma and trigamma terms have poles below) and
    at most ``N`` entrywise where ``num_points`` is given; a ValueError names the first that is not (``n > N`` gave a
    negative variance, a NaN half-width)."""
    if _checks.is_traced((n, num_points)):
        return
    dim = _checks.positive_int("dim", dim)
    low = dim + 1 if n_low == "d + 1" else dim
    try:
        n_arr = _checks.array_in_interval(name, n, low, math.inf)
    except ValueError as err:
        raise ValueError(f"{err} ({name} must be at least {n_low} = {low} for d = {dim})") from None
    if num_points is None:
        return
    big = _checks.array_in_interval("N", num_points, low, math.inf)
    over = n_arr > big  # (of the broadcast shape)
    if np.any(over):
        idx = tuple(np.argwhere(over)[0]) if over.ndim else ()
        n_bad, big_bad = np.broadcast_to(n_arr, over.shape)[idx], np.broadcast_to(big, over.shape)[idx]
        raise ValueError(f"block size n must be at most the total count N, got n = {n_bad:g} > N = {big_bad:g}"
                         + (f" at index {list(map(int, idx))}" if over.ndim else ""))


def _check_above_dim(dim, n, num_points=None) -> None:
    """``d + 1 <= n`` (and ``n <= N`` where ``num_points`` is given) entrywise for the closed forms that take any
    real ``d`` (a float, an array, traced inside ``jit`` / ``vmap``): checked only where all are concrete, unlike
    :func:`_check_counts`, which also wants an integer ``d`` (a review, 2026-12-06: ``gaussian_insample_var(16.0,
    160.0)`` and a vmapped ``d`` were refused)."""
    if _checks.is_traced((dim, n, num_points)):
        return
    d, n_arr = np.asarray(dim, np.float64), _checks.array_in_interval("n", n, 1.0, math.inf)
    low = np.broadcast_to(d + 1, np.broadcast_shapes(d.shape, n_arr.shape))
    if np.any(np.broadcast_to(n_arr, low.shape) < low):
        raise ValueError(f"n must be at least d + 1 (the in-sample moments' denominators vanish or turn negative "
                         f"below), got n = {np.min(n_arr):g} with d = {np.max(d):g}")
    if num_points is not None:
        big = np.asarray(num_points, np.float64)
        if np.any(n_arr > big):
            raise ValueError(f"block size n must be at most the total count N, got n = {np.max(n_arr):g} > N = "
                             f"{np.min(big):g}")


def _halves(dim: int, m):
    i = jnp.arange(1, dim + 1, dtype=jnp.result_type(float))
    return (jnp.asarray(m, i.dtype)[..., None] - i + 1.0) / 2.0


@in_float64
def wishart_logdet_bias(dim: int, m):
    """``E[log det(G_m / m)] - log det Sigma = sum_{i=1}^d [psi((m-i+1)/2) + log(2/m)]`` for Gaussian rows; ``m``
    (a number or an array) at least ``d`` (checked unless traced)."""
    _check_counts(dim, m, n_low="d", name="m")
    a = _halves(dim, m)
    return jnp.sum(digamma(a), axis=-1) + dim * jnp.log(2.0 / jnp.asarray(m, a.dtype))


@in_float64
def wishart_bias(dim: int, n, num_points):
    """Exact Gaussian bias ``E[log det G - L_hat] = b(N) - b(n)`` with ``b`` = :func:`wishart_logdet_bias` (> 0);
    ``d + 1 <= n <= N`` (checked unless traced)."""
    _check_counts(dim, n, num_points)
    return wishart_logdet_bias(dim, num_points) - wishart_logdet_bias(dim, n)


@in_float64
def wishart_variance(dim: int, n, num_points):
    """Exact Gaussian ``Var(log det G - log det G_1) = sum_i psi'((n-i+1)/2) - psi'((N-i+1)/2)`` (Wilks' Lambda);
    ``d + 1 <= n <= N`` (checked unless traced)."""
    _check_counts(dim, n, num_points)
    a_n, a_big = _halves(dim, n), _halves(dim, num_points)
    return jnp.sum(polygamma(1, a_n) - polygamma(1, a_big), axis=-1)


@in_float64
def second_order_bias(m2, dim, n, num_points):
    """Distribution-free second-order bias ``(E[M^2] - d)/2 * (1/n - 1/N)`` (= ``d(d+1)/2 (1/n - 1/N)`` Gaussian);
    ``d + 1 <= n <= N`` (checked unless traced: ``n > N`` gave a negative bias, ``n = 0`` a ZeroDivisionError)."""
    _check_above_dim(dim, n, num_points)
    return 0.5 * (m2 - dim) * (1.0 / n - 1.0 / num_points)


@in_float64
def second_order_interval(l_hat, moments: MahalanobisMoments, dim, n, num_points, z) -> Interval:
    """``L_hat + (E[M^2]-d)/2 (1/n - 1/N) +- z sqrt(tau^2 (1/n - 1/N))`` with the block's calibrated moments."""
    _check_z(z)
    c = 1.0 / n - 1.0 / num_points
    return Interval(l_hat + second_order_bias(moments.m2, dim, n, num_points), z * jnp.sqrt(moments.tau2 * c))


@in_float64
def wishart_interval(l_hat, dim: int, n, num_points, z) -> Interval:
    """Exact for zero-mean Gaussian rows: ``L_hat + wishart_bias +- z sqrt(wishart_variance)``."""
    _check_z(z)
    return Interval(l_hat + wishart_bias(dim, n, num_points), z * jnp.sqrt(wishart_variance(dim, n, num_points)))


@in_float64
def scaled_wishart_interval(l_hat, moments: MahalanobisMoments, dim: int, n, num_points, z) -> Interval:
    """Hybrid, distribution-free in its leading terms: with ``r = (E[M^2] - d) / (d (d + 1))`` (1 for Gaussian),
    centre ``L_hat + r * wishart_bias``; variance ``tau^2 (1/n - 1/N) + r^2 (wishart_variance - 2d (1/n - 1/N))``
    (the Gaussian's higher-order variance scaled like the second-order term). Exact for Gaussian data."""
    _check_z(z)
    c = 1.0 / n - 1.0 / num_points
    r = (moments.m2 - dim) / (dim * (dim + 1.0))
    higher = jnp.maximum(wishart_variance(dim, n, num_points) - 2.0 * dim * c, 0.0)
    return Interval(l_hat + r * wishart_bias(dim, n, num_points), z * jnp.sqrt(moments.tau2 * c + r * r * higher))


def jackknife_min_block(dim: int) -> int:
    """Smallest block for :func:`jackknife_interval`: ``n = d + 2``, so that every leave-one-out block has
    ``n - 1 > d`` rows (the condition any block must meet, :func:`check_block_sizes`), and at least
    ``PAIR_OFFSETS + 1`` rows, so that the sampled pairs ``(i, i + k mod n)``, ``k = 1 .. PAIR_OFFSETS``, are distinct
    rows (at d = 2, n = 4 the last offset paired every row with itself); the second bound binds only for d <= 2."""
    return max(dim + 2, PAIR_OFFSETS + 1)


# Blocks of more than JACKKNIFE_CALIBRATION_ROWS rows take the two-step centre, whose second difference D_2 is
# multiplied by a coefficient that grows without bound as n falls to d: there the interval needs n >= 1.2 d
# (n / d >= JACKKNIFE_TWO_STEP_RATIO). Nearer d its centre's error SD was 20-500 nats against 2-4 for the one-step
# centre (Gaussian and unit-norm rows, d = 130 and 384) and coverage fell to 0-87 %; from 1.15-1.2 d it covers
# 92-100 % (docs/sigma.md, "Edges"). Smaller blocks take the calibrated one-step centre down to d + 2.
JACKKNIFE_TWO_STEP_RATIO = 1.2


def jackknife_defined(dim: int, n):
    """Where :func:`jackknife_interval` gives an interval (elsewhere NaN): ``n >=`` :func:`jackknife_min_block`, and
    either a small block (:func:`jackknife_small_block`'s rule: at most :data:`JACKKNIFE_CALIBRATION_ROWS` rows and
    ``n < 10 d``) or ``n >= 1.2 d`` (:data:`JACKKNIFE_TWO_STEP_RATIO`). Works on traced ``n``."""
    xp = jnp if _checks.is_traced(n) else np
    n = xp.asarray(n)
    small = (n <= JACKKNIFE_CALIBRATION_ROWS) & (n < 10 * dim)
    return (n >= jackknife_min_block(dim)) & (small | (n >= JACKKNIFE_TWO_STEP_RATIO * dim - 1e-9))


def check_jackknife_block(n: int, dim: int) -> int:
    """Raise ``ValueError`` naming ``n`` and the minimum when a block is too small for its sub-blocks (``d + 2``) or,
    beyond :data:`JACKKNIFE_CALIBRATION_ROWS` rows, too close to ``d`` for the two-step centre (``1.2 d``)."""
    n = _checks.positive_int("n", n)
    if n < jackknife_min_block(dim):
        raise ValueError("the leverage-jackknife interval needs leave-one-out sub-blocks with more rows than "
                         f"dimensions and {PAIR_OFFSETS} distinct pair partners per row: n >= max(d + 2, "
                         f"{PAIR_OFFSETS + 1}) = {jackknife_min_block(dim)}, got n={n} (d={dim})")
    if not jackknife_defined(dim, n):
        least = math.ceil(JACKKNIFE_TWO_STEP_RATIO * dim - 1e-9)
        raise ValueError(f"the leverage-jackknife interval of a block of more than {JACKKNIFE_CALIBRATION_ROWS} rows "
                         f"needs n >= {JACKKNIFE_TWO_STEP_RATIO} d = {least} (nearer d its two-step centre is too "
                         f"noisy: docs/sigma.md, \"Edges\"), got n={n} (d={dim})")
    return n


class LeaveOneOut(NamedTuple):
    """A block's leave-one-out and leave-two-out statistics (``h_ij = x_i^T G_1^{-1} x_j``, ``h_i = h_ii = M_i / n``):

    * ``mean``, ``var``: mean and variance over the n rows of ``log(1 - h_i)``, where
      ``log det(G_1 - x_i x_i^T) = log det G_1 + log(1 - h_i)``;
    * ``pair_var``: variance over the ``PAIR_OFFSETS * n`` cyclic pairs ``(i, i + k)``, ``k = 1..PAIR_OFFSETS``, of
      the leave-two-out interaction ``delta_ij = log(1 - x_ij)``, ``x_ij = h_ij^2 / ((1 - h_i)(1 - h_j))``, the second
      difference ``T - T_(-i) - T_(-j) + T_(-ij)`` of ``T = log det G_1``;
    * ``pair_mean``: mean of ``delta_ij`` over all ``n (n - 1)`` ordered pairs: ``-mean x_ij`` exactly from
      ``sum_{i != j} x_ij = ||W^T diag(a) W||_F^2 - sum_i a_i^2 h_i^2`` (``a_i = 1/(1 - h_i)``, ``W`` the whitened
      rows), plus the sampled pairs' mean of ``delta_ij + x_ij`` (the small ``-x^2/2 - ...`` remainder).

    * ``row_var``, ``row_cov``: variance over the n rows of the row sums ``r_i = sum_{j != i} x_ij =
      a_i (w_i^T (W^T diag(a) W) w_i - a_i h_i^2)`` and their covariance with ``log(1 - h_i)``. Deleting row i moves
      every other leverage, ``log(1 - h_j^(-i)) = log(1 - h_j) + delta_ij``, so the first difference of the block
      without row i is ``D_1^(-i) = -(sum_j log(1 - h_j) - log(1 - h_i) - r_i) / (n - 1) + const`` (to first order in
      ``x``): these two moments give the jackknife variance of the bias-corrected centre (:func:`jackknife_interval`).

    * ``kurtosis``: ``m_4 / m_2^2`` of ``log(1 - h_i)`` over the rows: the jackknife variance is an average of n
      squared leave-one-out steps, so its relative variance is about ``(kurtosis - 1) / n`` (Satterthwaite degrees of
      freedom ``2 n / (kurtosis - 1)``, :func:`jackknife_interval`).

    ``pair_var`` / ``pair_mean`` / ``row_var`` / ``row_cov`` / ``kurtosis`` are ``None`` where they were not
    computed."""

    mean: jnp.ndarray
    var: jnp.ndarray
    pair_var: jnp.ndarray | None = None
    pair_mean: jnp.ndarray | None = None
    row_var: jnp.ndarray | None = None
    row_cov: jnp.ndarray | None = None
    kurtosis: jnp.ndarray | None = None


# PAIR_OFFSETS: row pairs (i, i + k mod n), k = 1..4 (collapse_jax.sigma_precision_config, without JAX)


def leave_one_out_stats(h, h_cross=None, pair_sum=None, row_sums=None) -> LeaveOneOut:
    """:class:`LeaveOneOut` from leverages ``h`` (..., n) (``M_i / n`` of :func:`mahalanobis_insample`) and, if given,
    the cross leverages ``h_cross`` (..., K, n), row ``k - 1`` holding ``h_{i, i+k mod n}`` (:func:`cross_leverages`),
    ``pair_sum = sum_{i != j} x_ij`` (..., ) over all ordered pairs and the row sums ``r_i = sum_{j != i} x_ij``
    (..., n) (:func:`leverage_statistics`)."""
    lg = jnp.log1p(-h)
    if h_cross is None:
        return LeaveOneOut(jnp.mean(lg, axis=-1), jnp.var(lg, axis=-1))
    centred = lg - jnp.mean(lg, axis=-1, keepdims=True)
    kurtosis = jnp.mean(centred**4, axis=-1) / jnp.mean(centred**2, axis=-1) ** 2
    row_var = row_cov = None
    if row_sums is not None:
        row_var = jnp.var(row_sums, axis=-1)
        row_cov = jnp.mean(centred * row_sums, axis=-1)
    partner = jnp.stack([jnp.roll(h, -k, axis=-1) for k in range(1, h_cross.shape[-2] + 1)], axis=-2)
    x = h_cross**2 / ((1.0 - h[..., None, :]) * (1.0 - partner))
    delta = jnp.log1p(-x)
    pair_mean = None
    if pair_sum is not None:
        n = h.shape[-1]
        pair_mean = -pair_sum / (n * (n - 1.0)) + jnp.mean(delta + x, axis=(-2, -1))
    return LeaveOneOut(jnp.mean(lg, axis=-1), jnp.var(lg, axis=-1), jnp.var(delta, axis=(-2, -1)), pair_mean,
                       row_var, row_cov, kurtosis)


def cross_leverages(w, offsets: int = PAIR_OFFSETS):
    """``h_{i, i+k mod n} = w_i . w_{i+k}``, ``k = 1..offsets``, for whitened rows ``w = x L^{-T}`` (``G_1 = L L^T``):
    (..., n, d) -> (..., offsets, n)."""
    return jnp.stack([jnp.sum(w * jnp.roll(w, -k, axis=-2), axis=-1) for k in range(1, offsets + 1)], axis=-2)


def leverage_statistics(w) -> LeaveOneOut:
    """All of :class:`LeaveOneOut` from one block's whitened rows ``w = x L^{-T}`` (n, d), ``G_1 = L L^T``: leverages,
    cross leverages, the all-pairs sum ``||W^T diag(a) W||_F^2 - sum_i a_i^2 h_i^2`` (one more d x d Gram) and the row
    sums ``r_i = v_i^T (W^T diag(a) W) v_i - a_i^2 h_i^2``, ``v_i = sqrt(a_i) w_i`` (one more n x d x d product)."""
    h = jnp.sum(w * w, axis=-1)
    a = 1.0 / (1.0 - h)
    wa = w * jnp.sqrt(a)[..., None]
    ga = jnp.swapaxes(wa, -1, -2) @ wa
    pair_sum = jnp.sum(ga * ga, axis=(-2, -1)) - jnp.sum((a * h) ** 2, axis=-1)
    row_sums = jnp.sum((wa @ ga) * wa, axis=-1) - (a * h) ** 2
    return leave_one_out_stats(h, cross_leverages(w), pair_sum, row_sums)


@in_float64
def gaussian_loo_moments(dim: int, n):
    """For zero-mean Gaussian rows ``h_i ~ Beta(d/2, (n-d)/2)``, so ``E log(1 - h_i) = psi((n-d)/2) - psi(n/2)`` and
    ``Var log(1 - h_i) = psi'((n-d)/2) - psi'(n/2)``. Returns ``(mean, var)``."""
    n = jnp.asarray(n, jnp.result_type(float))
    a, c = (n - dim) / 2.0, n / 2.0
    return digamma(a) - digamma(c), polygamma(1, a) - polygamma(1, c)


PAIR_DRAWS = 20_000


@lru_cache(maxsize=4096)
def _gaussian_pair_var(dim: int, n: int) -> float:
    rng = np.random.default_rng(np.random.SeedSequence([20261129, dim, n]))

    def wishart2(dof):  # 2 x 2 Wishart(dof, I) by Bartlett: T lower triangular, W = T T^T
        t11 = np.sqrt(rng.chisquare(dof, PAIR_DRAWS))
        # dof = 1 (d = 1): the singular Wishart, t22 ~ chi2 with 0 degrees of freedom, i.e. 0 (NumPy refuses df = 0)
        t22 = np.sqrt(rng.chisquare(dof - 1, PAIR_DRAWS)) if dof > 1 else np.zeros(PAIR_DRAWS)
        t21 = rng.standard_normal(PAIR_DRAWS)
        return np.stack([np.stack([t11 * t11, t11 * t21], -1), np.stack([t11 * t21, t21 * t21 + t22 * t22], -1)], -2)

    w1, w2 = wishart2(dim), wishart2(n - dim)
    ev, vec = np.linalg.eigh(w1)
    root = (vec * np.sqrt(np.maximum(ev, 0.0))[..., None, :]) @ np.swapaxes(vec, -1, -2)  # (d = 1: ev ~ -1e-17)
    u = np.linalg.inv(np.eye(2) + root @ np.linalg.inv(w2) @ root)  # I - H_SS, H_SS ~ matrix Beta(d/2, (n-d)/2)
    delta = np.log(np.linalg.det(u)) - np.log(u[:, 0, 0]) - np.log(u[:, 1, 1])
    return float(np.var(delta))


def gaussian_pair_var(dim: int, n) -> np.ndarray:
    """``Var delta_ij`` of :class:`LeaveOneOut` for zero-mean Gaussian rows (needs concrete ``n``, >= d + 2).

    For Gaussian rows the hat matrix ``H = X G_1^{-1} X^T`` is a uniformly random rank-d projection, so its 2 x 2
    principal block is matrix Beta: ``H_SS = C (I + C)^{-1}``, ``C = W_1^{1/2} W_2^{-1} W_1^{1/2}`` with independent
    ``W_1 ~ W_2(d, I)``, ``W_2 ~ W_2(n - d, I)``; no closed form is used for ``Var log det(I - H_SS)`` minus its
    diagonal terms: it is the variance over :data:`PAIR_DRAWS` fixed-seed draws of these 2 x 2 matrices (relative
    error ~1 %, deterministic, cached per (d, n))."""
    n = np.asarray(n)
    return np.vectorize(lambda m: _gaussian_pair_var(int(dim), int(m)), otypes=[np.float64])(n)


@in_float64
def jackknife_overstatement(dim: int, n):
    """Efron-Stein factor of Gaussian rows: ``rho = E[v_J] / Var log det G_1``, ``v_J = (n - 1) Var_i log(1 - h_i)``:
    ``(n - 1)(psi'((n-d)/2) - psi'(n/2)) / sum_i psi'((n-i+1)/2)`` (d = 384: 1.83 at n = 1.5 d, 1.06 at 10 d, -> 1)."""
    n = jnp.asarray(n, jnp.result_type(float))
    _, var_g = gaussian_loo_moments(dim, n)
    return (n - 1.0) * var_g / jnp.sum(polygamma(1, _halves(dim, n)), axis=-1)


@in_float64
def jackknife_bias_ratio(loo_mean, dim: int, n):
    """``r = D / E_Gauss[D]`` with ``D = theta(n) - mean_i theta_(-i) = -mean_i log(1 - h_i) - d log(n / (n-1))``,
    ``theta(m) = log det(G_m / m)``: the block's own estimate of the bias step ``beta(n) - beta(n-1)`` over the exact
    Gaussian step ``b(n) - b(n-1) = psi(n/2) - psi((n-d)/2) - d log(n/(n-1))`` (1 in expectation for Gaussian rows)."""
    n = jnp.asarray(n, jnp.result_type(float))
    mean_g, _ = gaussian_loo_moments(dim, n)
    shift = dim * jnp.log(n / (n - 1.0))
    return (-loo_mean - shift) / (-mean_g - shift)


# n - d from which gaussian_bias_step uses its series form (every digamma argument >= 50: the asymptotic series to
# x^-6 is within ~1e-16 there).
BIAS_STEP_SERIES_FROM = 100


@in_float64
def gaussian_bias_step(dim: int, n):
    """``b(n) - b(n - 1) = psi(n/2) - psi((n - d)/2) - d log(n / (n - 1))`` (the digamma sum of
    :func:`wishart_logdet_bias` telescopes): the Gaussian bias step of one row, about ``d (d + 1) / (2 n^2)``.

    For ``n - d >= BIAS_STEP_SERIES_FROM`` it is summed row by row with no difference of large numbers: with
    ``m = n - i + 1`` (``i = 1..d``), ``psi(m/2) - log(n/2) = log1p(-(i-1)/n) + R(m)``, ``R(m) = -1/m - 1/(3 m^2)
    + 2/(15 m^4) - 16/(63 m^6)`` (the asymptotic series), so the step is ``sum_i log1p((i-1)/(n (n-i))) + R(m) -
    R(m-1)``, each difference ``1/(m-1)^k - 1/m^k`` formed from ``u = 1/m, v = 1/(m-1)`` as products. (The digamma
    form is a difference of terms of size log n: an absolute error ~1e-15 against a step of d^2 / n^2, and the
    leverage jackknife's curvature ``step(n) - step(n-1)`` ~ d^2 / n^3 was noise from n ~ 1e5-1e6; an audit found
    its centre 50x the true bias with the wrong sign at d = 8, n = 1e6, 27 half-widths off at d = 768, n = 1e7.)"""
    f = jnp.result_type(float)
    n = jnp.asarray(n, f)
    exact = digamma(n / 2.0) - digamma((n - dim) / 2.0) - dim * jnp.log(n / (n - 1.0))
    i = jnp.arange(1, dim + 1, dtype=f)
    big = n - dim >= BIAS_STEP_SERIES_FROM
    nn = jnp.where(big, n, float(dim + BIAS_STEP_SERIES_FROM))[..., None]  # (the other branch's inputs stay finite)
    m = nn - i + 1.0
    u, v = 1.0 / m, 1.0 / (m - 1.0)
    d1, s2 = u * v, u * u + v * v
    d2 = d1 * (u + v)                     # v^2 - u^2
    d4 = d2 * s2                          # v^4 - u^4
    d6 = d2 * (s2 * s2 - u * u * v * v)  # v^6 - u^6
    rows = jnp.log1p((i - 1.0) / (nn * (nn - i))) + d1 + d2 / 3.0 - 2.0 * d4 / 15.0 + 16.0 * d6 / 63.0
    return jnp.where(big, jnp.sum(rows, axis=-1), exact)


@in_float64
def log_weighted_bias(dim: int, low, high, n, num_nodes: int = 256):
    """``J(low, high) = int_low^high log(t / n) db(t)`` for the Gaussian curve ``b`` (:func:`wishart_logdet_bias`):
    midpoint rule on ``num_nodes`` geometric intervals (exact ``b`` at the nodes)."""
    f = jnp.result_type(float)
    low, high, n = (jnp.asarray(v, f)[..., None] for v in (low, high, n))
    t = low * (high / low) ** (jnp.arange(num_nodes + 1, dtype=f) / num_nodes)
    mid = jnp.sqrt(t[..., 1:] * t[..., :-1])
    return jnp.sum(jnp.log(mid / n) * jnp.diff(wishart_logdet_bias(dim, t), axis=-1), axis=-1)


@in_float64
def jackknife_bias_coefficients(dim: int, n, num_points):
    """``(c1, c2)`` with ``E[c1 D_1 + c2 D_2] = beta(N) - beta(n)`` whenever the data's bias curve is
    ``beta(m) = A b(m) + kappa int^m log(t / n) db(t)`` (any ``A``, ``kappa``; Gaussian rows: ``A = 1``, ``kappa = 0``).

    ``D_1`` (first difference, :func:`jackknife_bias_ratio`) and ``D_2`` (second difference, from
    ``LeaveOneOut.pair_mean``) of the block's own leave-one-out / leave-two-out log-dets have
    ``E D_1 = A (b(n) - b(n-1)) + kappa Phi_1``, ``E D_2 = A (b(n) - 2 b(n-1) + b(n-2)) + kappa (Phi_1 - Phi_0)``, with
    ``Phi_1 = log((n - 1/2)/n) (b(n) - b(n-1))``, ``Phi_0 = log((n - 3/2)/n) (b(n-1) - b(n-2))`` (midpoint rule over one
    row); the target is ``A (b(N) - b(n)) + kappa J(n, N)`` (:func:`log_weighted_bias`). Solving the 2 x 2 system
    gives the coefficients; at ``n = N`` both are 0."""
    n = jnp.asarray(n, jnp.result_type(float))
    step1, step0 = gaussian_bias_step(dim, n), gaussian_bias_step(dim, n - 1.0)
    phi1, phi0 = jnp.log1p(-0.5 / n) * step1, jnp.log1p(-1.5 / n) * step0
    curv_b, curv_phi = step1 - step0, phi1 - phi0
    target_b = wishart_bias(dim, n, num_points)
    target_phi = log_weighted_bias(dim, n, num_points, n)
    det = step1 * curv_phi - phi1 * curv_b
    return (target_b * curv_phi - target_phi * curv_b) / det, (target_phi * step1 - target_b * phi1) / det


@in_float64
def jackknife_bias(loo: LeaveOneOut, dim: int, n, num_points):
    """The leverage jackknife's estimate of ``E[log det G - L_hat] = beta(N) - beta(n)`` (``beta`` the data's bias
    curve of ``log det(G_m / m)``): ``c1 D_1 + c2 D_2`` (:func:`jackknife_bias_coefficients`), with the block's
    first difference ``D_1 = -mean_i log(1 - h_i) - d log(n/(n-1))`` and second difference
    ``D_2 = mean_{i != j} delta_ij - d log(n (n-2) / (n-1)^2)``; both are unbiased for the data's ``beta`` steps at n
    (for any distribution and N), so the estimate is unbiased whenever the curve has the two-parameter shape above,
    and exactly for Gaussian rows. Without ``loo.pair_mean`` (or where it is NaN): ``r * wishart_bias``, the
    one-parameter version (``kappa = 0``)."""
    n = jnp.asarray(n, jnp.result_type(float))
    one_step = jackknife_bias_ratio(loo.mean, dim, n) * wishart_bias(dim, n, num_points)
    if loo.pair_mean is None:
        return one_step
    d1 = -loo.mean - dim * jnp.log(n / (n - 1.0))
    d2 = loo.pair_mean - dim * jnp.log1p(-1.0 / (n - 1.0) ** 2)
    c1, c2 = jackknife_bias_coefficients(dim, n, num_points)
    two_step = c1 * d1 + c2 * d2
    return jnp.where(jnp.isfinite(two_step), two_step, one_step)


@in_float64
def jackknife_centre_factor(loo: LeaveOneOut, dim: int, n, num_points):
    """``Var_i v_i / Var_i log(1 - h_i)``: how much more the bias-corrected centre moves than ``L_hat`` when one row
    is deleted (1 where ``loo.row_var`` is missing or NaN).

    Deleting row i moves ``L_hat`` by ``log(1 - h_i)`` (plus a constant) and the first difference ``D_1`` by
    ``(log(1 - h_i) + r_i) / (n - 1)`` (:class:`LeaveOneOut`), so the centre ``L_hat + c_1 D_1 + c_2 D_2`` of the
    block without row i varies over i as ``v_i = (1 + c_1/(n-1)) log(1 - h_i) + c_1/(n-1) r_i``, ``c_1`` the centre's
    coefficient on ``D_1`` at ``n - 1`` (:func:`jackknife_bias_coefficients`; ``r * wishart_bias`` without the second
    difference). The second difference ``D_2`` is held at the block's value (its leave-one-out change needs
    leave-three-out statistics): this over-states the centre's jackknife variance (a t (nu = 5) prototype, d = 8,
    n = 10 d: by a median 1.3x against brute-force deletion), which is kept on purpose, because the heavy-tailed
    error is skewed and the brute-force variance still covered only 90 % there (docs/sigma.md). For Gaussian rows
    ``r_i`` and ``log(1 - h_i)`` nearly cancel: the factor averages 1.00-1.06 from n = 10 d, more as n falls towards d
    (1.25 at d = 8, n = 5 d; 2.7 at d = 128, n = 1.25 d)."""
    if loo.row_var is None:
        return jnp.ones_like(loo.var)
    m = jnp.asarray(n, jnp.result_type(float)) - 1.0
    one_step = wishart_bias(dim, m, num_points) / gaussian_bias_step(dim, m)
    c1 = one_step
    if loo.pair_mean is not None:
        c1 = jnp.where(jnp.isfinite(loo.pair_mean), jackknife_bias_coefficients(dim, m, num_points)[0], one_step)
    beta = c1 / m
    alpha = 1.0 + beta
    factor = (alpha * alpha * loo.var + 2.0 * alpha * beta * loo.row_cov + beta * beta * loo.row_var) / loo.var
    return jnp.where(jnp.isfinite(factor) & (factor > 0), factor, 1.0)


@in_float64
def jackknife_interval(l_hat, loo: LeaveOneOut, dim: int, n, num_points, z, *, calibrate: bool = True) -> Interval:
    """Leverage-jackknife interval: centre ``L_hat + jackknife_bias`` (:func:`jackknife_bias`); variance
    ``Var_i log(1 - h_i) / E_Gauss[Var log(1 - h)] * wishart_variance * rho^((1 - q / q_G)(1 - n / N))``.

    The first factor is the delete-one jackknife variance of ``log det(G_1/n)`` scaled so that its Gaussian expectation
    is the exact Wilks variance (finite-population factor included through ``wishart_variance``). The jackknife
    over-states the pair (second-order) part of the variance (Efron-Stein; ``rho`` = :func:`jackknife_overstatement`
    for Gaussian rows); ``q = n Var(delta) / (2 Var log(1 - h))`` measures that part's share in this block (from
    ``loo.pair_var``) and ``q_G`` the Gaussian share (:func:`gaussian_pair_var`), so the Gaussian calibration ``1/rho``
    is applied as ``rho^(-q/q_G)``: in full for a Gaussian share, not at all for a linear statistic (q = 0: Efron-
    Stein holds with equality), more for a larger pair share (vectors uniform on the sphere); damped towards n = N.
    Without ``loo.pair_var`` the factor is 1. The last factor, :func:`jackknife_centre_factor`, turns the variance
    of ``L_hat`` into that of the bias-corrected centre (a block holding an extreme row has a larger ``log det G_1``
    *and* a larger bias estimate; 1 without ``loo.row_var``), floored at 1: the interval is never narrower than
    the jackknife of ``L_hat`` alone (that factor is first order with ``D_2`` held, and the blocks where it fell
    below 1, templated real text, under-covered). Needs ``n >= max(d + 2, 5)``, and ``n >= 1.2 d`` for blocks of
    more than :data:`JACKKNIFE_CALIBRATION_ROWS` rows (NaN elsewhere; :func:`jackknife_defined`,
    :func:`check_jackknife_block`).
    Exact (centre ``L_hat``, half-width 0) at ``n = N``, whatever ``n``. ``n`` must be concrete when
    ``loo.pair_var`` is given (NumPy draws) and for the calibration below (a traced ``n`` gets ``z`` and the two-step
    centre); traced statistics are calibrated as eager ones.

    Small blocks (``calibrate``; at most :data:`JACKKNIFE_CALIBRATION_ROWS` rows and n < 10 d,
    :func:`jackknife_small_block`): the second difference ``D_2`` of so few rows is too noisy to help (unit-norm rows,
    d = 8, n = 16: centre SD 0.79 with it, 0.57 without), so these blocks take the one-step centre (``r *
    wishart_bias``), and, because the studentised error has heavier tails than the normal one with few rows, the
    Gaussian-calibrated critical value :func:`jackknife_critical_value` of that construction instead of ``z``. Every
    other block takes the Student-t quantile with Satterthwaite's degrees of freedom from the block's own kurtosis
    of ``log(1 - h_i)`` (:func:`satterthwaite_critical_value`; ``z`` without ``loo.kurtosis``): heavy tails make the
    variance estimate itself noisy. ``calibrate=False``: the given statistics as they are, with ``z``."""
    _check_z(z)
    centre, sd, ok = _jackknife_centre_sd(l_hat, loo, dim, n, num_points)
    crit = z
    try:
        n_np = np.asarray(n) if calibrate else None
    except jax.errors.TracerArrayConversionError:  # a traced n: no table lookup inside a trace
        n_np = None
    if n_np is not None:
        small = jackknife_small_block(dim, n_np)
        if loo.kurtosis is not None:
            crit = _satterthwaite_traceable(loo.kurtosis, n_np, z)
        if np.any(small):
            centre_1, sd_1, _ = _jackknife_centre_sd(l_hat, loo._replace(pair_mean=None), dim, n, num_points)
            centre, sd = jnp.where(small, centre_1, centre), jnp.where(small, sd_1, sd)
            where = jnp.where if _checks.is_traced(crit) else np.where  # NumPy stays NumPy (float64)
            crit = where(small, jackknife_critical_value(dim, n_np, z), crit)
    nan = jnp.asarray(jnp.nan, jnp.result_type(centre, sd))
    centre, half_width = jnp.where(ok, centre, nan), jnp.where(ok, crit * sd, nan)
    # a block that is the whole population is exact (L_hat = log det G), also where the jackknife is undefined
    # (n = N = d + 1, or d + 2 <= N < 1.2 d beyond the small blocks: it gave NaN there)
    whole = jnp.asarray(n) == jnp.asarray(num_points)
    return Interval(jnp.where(whole, jnp.asarray(l_hat, centre.dtype), centre), jnp.where(whole, 0.0, half_width))


def _jackknife_centre_sd(l_hat, loo: LeaveOneOut, dim: int, n, num_points):
    """Centre, standard deviation (all variance factors, no critical value) and validity
    (:func:`jackknife_defined`)."""
    n_arr = jnp.asarray(n, jnp.result_type(float))
    ok = jackknife_defined(dim, n_arr)
    n_safe = jnp.where(ok, n_arr, jackknife_min_block(dim))
    # (where the jackknife is undefined its values are dropped; there N may be below the stand-in n, as at N = d + 1)
    num_points = jnp.where(ok, num_points, jnp.maximum(jnp.asarray(num_points, n_safe.dtype), n_safe))
    bias = jackknife_bias(loo, dim, n_safe, num_points)
    _, var_g = gaussian_loo_moments(dim, n_safe)
    var = loo.var / var_g * wishart_variance(dim, n_safe, num_points)
    if loo.pair_var is not None:
        n_np = np.maximum(np.asarray(n, np.float64), jackknife_min_block(dim))
        share = (loo.pair_var / loo.var) / (gaussian_pair_var(dim, n_np) / var_g)  # q / q_G
        exponent = (1.0 - share) * (1.0 - n_safe / num_points)
        var = var * jnp.where(jnp.isfinite(exponent), jackknife_overstatement(dim, n_safe) ** exponent, 1.0)
    # Never below 1: a factor under 1 says that the bias estimate's leave-one-out moves cancel part of L_hat's, a
    # first-order figure with D_2 held; on templated text (near-duplicate sentences) it fell to 0.83 and the
    # interval to 91.8 % at n = 2 d, 94.8 % with the floor (docs/sigma.md, "Other real corpora").
    var = var * jnp.maximum(jackknife_centre_factor(loo, dim, n_safe, num_points), 1.0)
    return l_hat + bias, jnp.sqrt(var), ok


JACKKNIFE_CALIBRATION_ROWS = 128  # blocks of at most this many rows (and n < 10 d) get a calibrated critical value
JACKKNIFE_CALIBRATION_REPS = 4000


def _satterthwaite_traceable(kurtosis, n, z: float):
    """:func:`satterthwaite_critical_value` also for traced statistics (``jit`` / ``vmap``): the Student-t quantile
    is SciPy's, so a traced kurtosis goes through a host callback and the interval is the same as eager."""
    if not _checks.is_traced(kurtosis):
        return satterthwaite_critical_value(np.asarray(kurtosis), n, z)
    dtype = jnp.result_type(kurtosis, float)
    shape = jnp.broadcast_shapes(jnp.shape(kurtosis), np.shape(n))
    return jax.pure_callback(lambda k: satterthwaite_critical_value(k, n, z).astype(dtype),
                             jax.ShapeDtypeStruct(shape, dtype), kurtosis, vmap_method="expand_dims")


def satterthwaite_critical_value(kurtosis, n, z: float) -> np.ndarray:
    """Student-t quantile (at the level of ``z``) with Satterthwaite's ``nu = 2 n / (kurtosis - 1)`` degrees of freedom:
    the jackknife variance averages n squared leave-one-out steps whose kurtosis is ``kurtosis`` (from the block's own
    rows, :class:`LeaveOneOut`), so its relative variance is ``2 / nu``. ``z`` where the kurtosis is missing (NaN);
    never below ``z``."""
    kurtosis, n = np.asarray(kurtosis, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        nu = 2.0 * n / np.maximum(kurtosis - 1.0, 1e-12)
        q = _stats().t.ppf(_stats().norm.cdf(z), nu)
    return np.where(np.isfinite(q), np.maximum(q, z), z)


def jackknife_small_block(dim: int, n) -> np.ndarray:
    """Where the small-block critical value applies: ``d + 2 <= n <=`` :data:`JACKKNIFE_CALIBRATION_ROWS` and
    ``n < 10 d`` (concrete ``n``, array)."""
    n = np.asarray(n)
    return (n >= jackknife_min_block(dim)) & (n <= JACKKNIFE_CALIBRATION_ROWS) & (n < 10 * dim)


def jackknife_critical_value(dim: int, n, z: float) -> np.ndarray:
    """Critical value of the jackknife interval for blocks of ``n`` rows (array): where ``d + 2 <= n <=``
    :data:`JACKKNIFE_CALIBRATION_ROWS` and ``n < 10 d``, ``max(z, q)`` with ``q`` the two-sided quantile (the level
    of ``z``) of the jackknife's studentised error ``|log det G - centre| / sd`` over
    :data:`JACKKNIFE_CALIBRATION_REPS` blocks of Gaussian rows (:func:`gaussian_jackknife_quantile`); ``z``
    elsewhere, where the studentised error is normal to Monte Carlo precision (docs/sigma.md, "Small blocks")."""
    n = np.asarray(n)
    out = np.full(n.shape, float(z))
    for idx, m in np.ndenumerate(n):
        if jackknife_small_block(dim, m):
            out[idx] = max(float(z), gaussian_jackknife_quantile(int(dim), int(m), float(z)))
    return out if out.ndim else out[()]


def _quantile_cache_path(dim: int, n: int, z: float, reps: int):
    """Where :func:`gaussian_jackknife_quantile` keeps a computed quantile: in the native build cache's folder
    (``$COLLAPSE_JAX_CACHE``, default ``~/.cache/collapse-jax``), named by the arguments and by a digest of the code
    that computes it (this module, the numpy engine's and its constants') and NumPy's version, so an edit never
    reads a stale value."""
    import hashlib
    from pathlib import Path

    from collapse_jax import _native, sigma_precision, sigma_precision_config

    digest = hashlib.sha256(np.__version__.encode())
    for module_file in (__file__, sigma_precision.__file__, sigma_precision_config.__file__):  # (PAIR_OFFSETS there)
        digest.update(Path(module_file).read_bytes())
    return _native._cache_dir() / "jackknife-quantiles" / f"{dim}-{n}-{z!r}-{reps}-{digest.hexdigest()[:16]}.json"


@lru_cache(maxsize=None)
def gaussian_jackknife_quantile(dim: int, n: int, z: float, reps: int = JACKKNIFE_CALIBRATION_REPS) -> float:
    """Quantile at level ``2 Phi(z) - 1`` of ``|log det G - centre| / sd`` of the small-block jackknife interval
    (one-step centre, every variance factor; :func:`jackknife_interval`) over ``reps`` blocks of ``n`` rows from
    ``N(0, I_d)``, the population ``N`` taken as 10^12 (so ``log det G = d
    log N`` to within 1e-5; for ``n << N`` the finite-population terms vanish). The block statistics are the
    sweep's numpy engine's, all blocks at once (float32 rows, as in the sweep;
    :func:`collapse_jax.sigma_precision.numpy_batched_block_stats`). Deterministic: the draws are seeded by
    ``(dim, n)``; cached per process and on disk (:func:`_quantile_cache_path`; an unreadable file is recomputed and
    rewritten atomically): about 0.1 s at d = 8 and 1 s at d = 32 per size, once per machine, 15-25 s at d = 50-120
    (said on standard error where progress bars show: those first calls stalled without a word; a user trial)."""
    import json
    import sys

    from collapse_jax import progress
    from collapse_jax.results import atomic_write_json

    # (n = d computed NaN and cached it on disk, for every later call: an audit, 2026-12-07)
    dim = _checks.positive_int("dim", dim)
    n = check_jackknife_block(n, dim)
    z = _checks.in_interval("z", z, 0.0, math.inf, low_open=True, high_open=True)
    reps = _checks.positive_int("reps", reps)
    path = _quantile_cache_path(dim, n, z, reps)
    try:
        return float(json.loads(path.read_text())["quantile"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if progress.enabled() and dim >= 32:
        print(f"collapse-jax: calibrating the small-block jackknife interval for d = {dim}, n = {n} (once per "
              f"machine, seconds to tens of seconds; cached in {path.parent})", file=sys.stderr, flush=True)
    q = _gaussian_jackknife_quantile(dim, n, z, reps)
    try:
        atomic_write_json(path, dict(dim=dim, n=n, z=z, reps=reps, quantile=q))  # makes the folder
    except OSError:  # a read-only cache folder: the value is still right, only not kept
        pass
    return q


def _gaussian_jackknife_quantile(dim: int, n: int, z: float, reps: int) -> float:
    """:func:`gaussian_jackknife_quantile`, computed."""
    from collapse_jax.sigma_precision import numpy_batched_block_stats  # the sweep's engine (it imports this module)

    rng = np.random.default_rng([dim, n, 20261130])
    big_n = 1e12
    with one_blas_thread():  # every block at once (the same draws, block after block, as one block at a time)
        stats = numpy_batched_block_stats(rng.standard_normal((reps, n, dim)).astype(np.float32))  # (reps, 9)
    with jax.ensure_compile_time_eval():  # computed now even when a jit trace asks for it (its operands are constants)
        loo = LeaveOneOut(*(jnp.asarray(stats[:, k]) for k in range(2, stats.shape[1])))._replace(pair_mean=None)
        iv = jackknife_interval(jnp.asarray(stats[:, 0] + dim * math.log(big_n / n)), loo, dim, n, big_n, 1.0,
                                calibrate=False)  # the small-block construction: one-step centre, every variance factor
    pivots = np.abs(dim * math.log(big_n) - np.asarray(iv.center)) / np.asarray(iv.half_width)
    return float(np.quantile(pivots, 2.0 * _stats().norm.cdf(z) - 1.0))


# --------------------------------------------------------------------------------------------------------------
# One block, end to end
# --------------------------------------------------------------------------------------------------------------


class BlockEstimates(NamedTuple):
    """Every estimator of ``log det G`` from one block (:func:`block_estimates`). ``logdet_g1``: ``log det G_1`` of
    the block's Gram; ``l_hat``: the Theorem 2 plug-in ``log det G_1 + d log(N / n)``; ``moments``: the Mahalanobis
    moments (:class:`MahalanobisMoments`); then five :class:`Interval` s, each ``(center, half_width)`` (not low,
    high: ``.low`` / ``.high`` / ``.covers(truth)``): ``seed`` (Theorem 3 as the seed states it), ``second_order``,
    ``wishart`` (exact for Gaussian rows), ``scaled_wishart`` and ``jackknife`` (the leverage jackknife, the one
    that holds beyond Gaussian rows: docs/sigma.md). NumPy float64 where the caller's x64 is off."""

    logdet_g1: jnp.ndarray
    l_hat: jnp.ndarray
    moments: MahalanobisMoments
    seed: Interval
    second_order: Interval
    wishart: Interval
    scaled_wishart: Interval
    # NaN where jackknife_defined(d, n) is False (n < d + 2; or n < 1.2 d in a block of more than 128 rows, below
    # the calibrated range: a user trial, 2026-12-07, found this comment naming only n < d + 2), or where the
    # leave-one-out statistics were not given
    jackknife: Interval


@in_float64
def block_estimates_from_stats(logdet_g1, m2_insample, dim: int, n, num_points, z,
                               loo: LeaveOneOut | None = None) -> BlockEstimates:
    """All estimators from a block's sufficient statistics: ``log det G_1``, in-sample ``mean(M_i^2)`` and (for the
    leverage jackknife) the leave-one-out :class:`LeaveOneOut` statistics; without ``loo`` that interval is NaN."""
    l_hat = scaling_estimate(logdet_g1, n, num_points, dim)
    mom = mahalanobis_moments(m2_insample, dim, n)
    if loo is None:
        nan = jnp.full(jnp.shape(l_hat), jnp.nan, jnp.result_type(l_hat, float))
        loo = LeaveOneOut(nan, nan)
    seed = seed_interval(l_hat, mom.tau2_plugin, n, z)
    # (a block of all N rows is exact: the seed's formula, for N >> n, kept its width there while every other
    # interval and the sweep's table said "exact"; a user trial, 2026-12-07)
    seed = Interval(seed.center, jnp.where(jnp.asarray(n) == jnp.asarray(num_points), 0.0, seed.half_width))
    return BlockEstimates(logdet_g1, l_hat, mom, seed,
                          second_order_interval(l_hat, mom, dim, n, num_points, z),
                          wishart_interval(l_hat, dim, n, num_points, z),
                          scaled_wishart_interval(l_hat, mom, dim, n, num_points, z),
                          jackknife_interval(l_hat, loo, dim, n, num_points, z))


# Seed of the fixed projection and permutation of :func:`pair_order`.
PAIR_ORDER_SEED = 20261204


def pair_order(x: np.ndarray) -> np.ndarray:
    """A row order for the leverage jackknife's sampled pairs ``(i, i + k)`` (:func:`cross_leverages`) that does not
    depend on the order the rows came in: the rows sorted by their projection on a fixed random direction (a
    canonical order of the set), then a fixed pseudo-random permutation of ``n``. The pairs are then random pairs of
    the block's rows. Every other statistic is a symmetric function of the rows. Without this, a block in a
    meaningful order (sorted indices into a corpus whose neighbouring rows are similar sentences, as the Sigma
    monitor drew them) biased the sampled pairs: the interval covered in 0 of 60 monitor runs on MiniLM embeddings
    (an audit, 2026-12-04)."""
    n, dim = x.shape
    direction = np.random.default_rng(np.random.SeedSequence([PAIR_ORDER_SEED, dim])).standard_normal(dim)
    canonical = np.argsort(np.asarray(x, np.float64) @ direction, kind="stable")  # ties: equal rows only
    return canonical[np.random.default_rng(np.random.SeedSequence([PAIR_ORDER_SEED, n])).permutation(n)]


@in_float64
def block_estimates(x_block, num_points: int, *, level: float = 0.95) -> BlockEstimates:
    """Estimate ``log det G`` of an ``N``-point data set from an observed block of ``n`` rows (checked input), in
    float64 whatever ``jax_enable_x64`` (:func:`in_float64`). The result depends on the block's rows, not on their
    order (to rounding; :func:`pair_order`). Returns a :class:`BlockEstimates`: the plug-in and five intervals, each
    ``(center, half_width)``; ``level`` is their nominal coverage."""
    x_block = check_embeddings("x_block", x_block)
    n, dim = x_block.shape
    check_block_sizes(n, dim, num_points)
    x_block = x_block[pair_order(x_block)]
    z = z_value(level)
    logdet_g1, m2, loo, pivot, top = _block_statistics(jnp.asarray(x_block, jnp.float64))  # in_float64: x64 on here
    if not float(pivot) > SINGULAR_PIVOT:  # (NaN fails too)
        size = float(np.max(np.abs(x_block)))
        if not 1e-150 <= size <= 1e150:  # (said "they span 0 of 8 dimensions" of X * 1e-170; a user trial)
            raise SingularBlockError(f"x_block: its entries are of order {size:.3g}, whose squares leave float64's "
                                     "range, so its Gram matrix under- or overflows; rescale the rows (x -> c x "
                                     "shifts log det G by 2 d log c and moves no interval's width)")
        zero = np.flatnonzero(~np.any(x_block != 0, axis=0))
        why = (f"{zero.size} of its {dim} columns are 0 in every row (column{'s' if zero.size > 1 else ''} "
               f"{', '.join(map(str, zero[:5]))}{', ...' if zero.size > 5 else ''}; coordinates near 0 become "
               "exactly 0 in float16 or integers)" if zero.size else _span_text(x_block, pivot))
        raise SingularBlockError(f"x_block: the block's Gram matrix G_1 is singular (its rows do not span {dim} "
                                 f"dimensions: {why}); log det G_1 and every interval would be meaningless")
    if n < num_points and not jackknife_defined(dim, n):  # (n = N: exact. NaN without a word, where the Sigma
        # monitor warns; a user trial, 2026-12-07)
        warnings.warn(f"x_block: the leverage-jackknife interval is NaN at n = {n} rows, d = {dim}: it needs n >= "
                      f"{jackknife_min_block(dim)} (max(d + 2, {PAIR_OFFSETS + 1})), and n >= "
                      f"{JACKKNIFE_TWO_STEP_RATIO:g} d = {JACKKNIFE_TWO_STEP_RATIO * dim:g} beyond "
                      f"{JACKKNIFE_CALIBRATION_ROWS} rows (docs/sigma.md); the other intervals are computed",
                      stacklevel=_checks.user_stacklevel())
    repeated = repeated_rows(x_block)
    if repeated:
        warnings.warn(f"x_block: {repeated} of its {n} rows repeat another row exactly; the intervals assume "
                      "distinct rows, and with repeats (a generator that repeats itself) they under-cover, the "
                      "leverage jackknife's width falling towards 0 with many: docs/sigma.md, 'Repeated rows'",
                      RepeatedRowsWarning, stacklevel=_checks.user_stacklevel())
    if not float(top) < 1.0 - 1e-12:
        # One row alone spans a direction (leverage 1): G_1 is regular, so log det G_1 and the seed, second-order,
        # Wishart and scaled-Wishart intervals stand; only the leave-one-out statistics are undefined (without that
        # row G_1 is singular), so the leverage jackknife is NaN. (It was refused as "singular", an audit.)
        loo = LeaveOneOut(*(None if v is None else jnp.full_like(v, jnp.nan) for v in loo))
    return block_estimates_from_stats(logdet_g1, m2, dim, n, num_points, z, loo)


def _span_text(x_block: np.ndarray, pivot) -> str:
    """Why a block's rows do not span its dimensions, in words a user can act on: their numerical rank, and how many
    rows are distinct when some repeat (a collapsed generator's). Only on the refusal's path: ``O(n d^2)``. (The
    message said "smallest Cholesky pivot^2 / diagonal nan, largest leverage nan" for 500 copies of one row; a user
    trial, 2026-12-06.)"""
    singular = np.linalg.svd(np.asarray(x_block, np.float64), compute_uv=False)
    rank = int(np.count_nonzero(singular**2 > SINGULAR_PIVOT * singular[0]**2))  # (the refusal's own scale)
    distinct = len(np.unique(x_block, axis=0))
    rows = f"; only {distinct} of its {len(x_block)} rows are distinct" if distinct < len(x_block) else ""
    ratio = f"; smallest Cholesky pivot^2 / diagonal {float(pivot):.3g}" if np.isfinite(float(pivot)) else ""
    return (f"they span {rank} of {x_block.shape[1]} dimensions, counting singular values whose square exceeds "
            f"{SINGULAR_PIVOT:g} of the largest's{rows}{ratio}")


# A block whose Gram matrix has a Cholesky pivot below this share of its diagonal entry (squared) is refused as
# singular: the rows are (numerically) confined to fewer than d dimensions, e.g. two equal columns.
SINGULAR_PIVOT = 1e-12


class SingularBlockError(ValueError):
    """The observed block spans fewer than d dimensions (or one row alone spans a direction, so that its
    leave-one-out sub-blocks do): no log-det interval exists for it. The Sigma monitor reports NaN intervals
    for such a checkpoint instead of stopping."""


class RepeatedRowsWarning(UserWarning):
    """The observed block holds rows that repeat exactly: the intervals under-cover (docs/sigma.md)."""


def repeated_rows(x: np.ndarray) -> int:
    """How many rows of ``x`` (n, d) equal an earlier row exactly (bit for bit, -0.0 and 0.0 alike)."""
    rows = np.ascontiguousarray(np.asarray(x, np.float64) + 0.0)          # + 0.0: -0.0 -> 0.0
    return int(rows.shape[0] - np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))),
                                         axis=0).shape[0]) if rows.shape[0] > 1 and rows.shape[1] > 0 else 0


@jax.jit
def _block_statistics(xb: jnp.ndarray):
    """``(log det G_1, mean(M_i^2), LeaveOneOut or None, min_j L_jj^2 / G_jj, max_i h_i)`` of one block's rows
    (n, d): one compiled program per block shape (run op by op, a block of a new size compiled some fifty
    primitives, ~3 s on a 2-core CPU). The last two tell a singular block (:data:`SINGULAR_PIVOT`)."""
    n, dim = xb.shape
    g1 = gram(xb)
    chol, w = _whitened(xb, g1)  # one factor and one whitening serve all three statistics
    m = _mahalanobis_of_whitened(w)
    loo = leverage_statistics(w.T) if n >= jackknife_min_block(dim) else None
    pivot = jnp.min(jnp.diagonal(chol) ** 2 / jnp.diagonal(g1))
    return _logdet_of_factor(chol), jnp.mean(m * m), loo, pivot, jnp.max(m) / n


ESTIMATORS = ("seed", "second_order", "wishart", "scaled_wishart", "jackknife")

__all__ = [
    "array_chunks", "batched_logdet", "block_estimates", "block_estimates_from_stats", "block_size_rule",
    "BlockEstimates", "check_block_sizes", "check_embeddings", "check_eps", "check_jackknife_block", "cross_leverages",
    "ESTIMATORS", "gaussian_bias_step", "gaussian_insample_var", "gaussian_jackknife_quantile", "gaussian_loo_moments",
    "gaussian_pair_var", "gram", "gram_streaming", "Interval", "jackknife_bias", "jackknife_bias_coefficients",
    "jackknife_bias_ratio", "jackknife_centre_factor", "jackknife_critical_value", "jackknife_interval",
    "jackknife_defined", "jackknife_min_block", "jackknife_small_block", "satterthwaite_critical_value",
    "jackknife_overstatement", "leave_one_out_stats", "LeaveOneOut", "leverage_statistics", "log_overestimation_ratio",
    "log_weighted_bias", "logdet", "logdet_chol", "mahalanobis_insample", "mahalanobis_moments", "MahalanobisMoments",
    "one_blas_thread", "PAIR_OFFSETS", "scaled_wishart_interval", "scaling_estimate", "second_order_bias",
    "second_order_interval", "seed_interval", "StreamedGram", "theorem1_bounds", "Theorem1Bounds", "wishart_bias",
    "wishart_interval", "wishart_logdet_bias", "wishart_variance", "z_value",
]
