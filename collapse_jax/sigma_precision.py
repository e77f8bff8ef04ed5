"""Precision of the Sigma log-det estimators versus block size: the sweep engine behind ``sigma-precision``.

For each cell (data family, dimension d) a data set of ``N`` rows is drawn once (deterministically from the seed),
its exact ``log det G`` is computed by streaming the Gram matrix, and ``num_blocks`` random blocks (rows drawn
without replacement) are scored at every block size ``n`` of the grid. A block's rows are a random permutation
prefix, so the Gram matrices of all block sizes come from one pass of prefix sums (``G_1(n_k) = G_1(n_{k-1}) +``
rows ``n_{k-1}..n_k``); each block size is marginally a uniform random ``n``-subset, which is all the statistics
need. Per block and block size the kernel keeps nine sufficient statistics, ``log det G_1``, the in-sample
``mean(M_i^2)``, the mean and variance over rows of ``log(1 - h_i)`` (``h_i = M_i / n``, the leave-one-out
log-det steps), the variance and mean of the leave-two-out interaction over row pairs, the variance of its row
sums and their covariance with ``log(1 - h_i)``, and the kurtosis of ``log(1 - h_i)`` (:class:`spectral.LeaveOneOut`);
every estimator and interval of :mod:`collapse_jax.spectral` is a function of them.
"""

from __future__ import annotations

import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _blas, _checks, _linalg, spectral
# the configuration and what its checks need, in a module without JAX (the commands' --help); re-exported here
from collapse_jax.sigma_precision_config import (  # noqa: F401
    DEFAULT_BLOCKS, DEFAULT_DIMS, DEFAULT_RATIOS, ENGINES, FAMILIES, LLM_EXTRA_HINT, MAX_CONDITION_NUMBER, MIN_DIM,
    POPULATION_GROUP, POPULATIONS, Population, PrecisionConfig, check_min_dim, default_families, family_has_dim,
    population_available, populations)

EMBEDDINGS = "embeddings"
CHUNK_ROWS = 32768


def block_sizes(dim: int, num_points: int, ratios) -> np.ndarray:
    """Block sizes ``n = max(d + 1, round(r d))`` for each ratio, unique, sorted, at most ``N``."""
    for r in ratios:
        _checks.in_interval("ratios", r, 1.0, math.inf, high_open=True)
    ns = sorted({min(max(dim + 1, int(round(r * dim))), num_points) for r in ratios})
    ns = [n for n in ns if n > dim]
    if not ns:
        raise ValueError(f"no block size n with d={dim} < n <= N={num_points}")
    return np.asarray(ns, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------
# Data families (zero mean; second-moment matrix Sigma)
# --------------------------------------------------------------------------------------------------------------


def family_eigenvalues(family: str, dim: int, condition_number: float) -> np.ndarray:
    """Eigenvalues of ``Sigma = E[x x^T]`` for a family (diagonal in the standard basis)."""
    if family == "anisotropic":
        return condition_number ** (-np.arange(dim) / max(dim - 1, 1))
    if family == "unit_norm":
        return np.full(dim, 1.0 / dim)
    return np.ones(dim)


def sample_family(rng: np.random.Generator, num: int, dim: int, family: str, t_dof: float = 5.0,
                  condition_number: float = 1e3, *, out: np.ndarray | None = None) -> np.ndarray:
    """``num`` rows of a family, float64: ``isotropic`` N(0, I); ``anisotropic`` N(0, diag(c^{-(i-1)/(d-1)}))
    (condition number c); ``student_t`` multivariate t with ``t_dof`` degrees of freedom scaled to ``Sigma = I``
    (``x = z sqrt((nu - 2)/w)``, ``w ~ chi2_nu``); ``unit_norm`` ``z / ||z||`` (uniform on the sphere, Sigma = I/d).

    NumPy's generator (PCG64, ziggurat normals) is used for the bulk data: on this CPU it draws 10^8-10^9 normals
    several times faster than JAX's threefry; the generator comes first, as a key would. ``out``: an optional
    C-contiguous float64 ``(num, dim)`` array to fill in place (the same draws; about twice as fast as allocating).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    z = rng.standard_normal((num, dim)) if out is None else rng.standard_normal(out=out)
    if family == "anisotropic":
        z *= np.sqrt(family_eigenvalues(family, dim, condition_number))
    elif family == "student_t":
        z *= np.sqrt((t_dof - 2.0) / rng.chisquare(t_dof, (num, 1)))
    elif family == "unit_norm":
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z


def family_dataset(seed: int, cell: int, num_points: int, dim: int, family: str, cfg: PrecisionConfig,
                   threads: int | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
    """The cell's data set, drawn chunk by chunk (chunk ``k`` from seed sequence ``(seed, cell, 2**31 + k)``, so the
    result does not depend on ``threads``, the worker threads that draw chunks in parallel; default: all CPUs).
    ``out``: optional C-contiguous float64 ``(num_points, dim)`` array to fill (a new 3 GB array cost 2.5-7.5 s of
    page faults at N = 10^6, d = 384, more than drawing it). For a real-data family (:data:`POPULATIONS`): its fixed
    population instead (``seed``, ``num_points`` and ``out`` unused)."""
    from collapse_jax import _native

    if family in populations():
        return population(family, dim)
    out = np.empty((num_points, dim), dtype=np.float64) if out is None else out

    def chunk(k):
        start = k * CHUNK_ROWS
        rows = min(CHUNK_ROWS, num_points - start)
        rng = np.random.default_rng(np.random.SeedSequence([seed, cell, 2**31 + k]))
        sample_family(rng, rows, dim, family, cfg.t_dof, cfg.condition_number, out=out[start:start + rows])

    with ThreadPoolExecutor(threads or _native.spectral_threads()) as ex:
        list(ex.map(chunk, range(-(-num_points // CHUNK_ROWS))))
    return out


# --------------------------------------------------------------------------------------------------------------
# Real-data families: a fixed population of real embeddings, not a distribution; blocks are drawn from it as from a
# synthetic cell's data set, and the exact log det G is that of the whole population. Each runs only at the
# dimension of its encoder: cells at any other d are skipped (a random projection to d would mix hundreds of
# coordinates and push the rows towards Gaussian, hiding what is real about them).
# --------------------------------------------------------------------------------------------------------------


def population(family: str, dim: int) -> np.ndarray:
    """A real-data family's rows, float64 ``(N, dim)``, from its registered loader (``sentences``: registered by the
    optional ``llm_bridge``, whose heavy dependencies are imported only when the family runs)."""
    import importlib

    if not family_has_dim(family, dim):
        raise ValueError(f"family {family!r} has only d={POPULATIONS[family].dim}, got d={dim}")
    if not population_available(family):
        raise ValueError(f"family {family!r} needs the llm extra (one of {', '.join(POPULATIONS[family].modules)} "
                         f"is missing): {LLM_EXTRA_HINT}")
    loader = POPULATIONS[family].loader
    if isinstance(loader, str):
        module, func = loader.split(":")
        loader = getattr(importlib.import_module(module), func)
    rows = np.asarray(loader(), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != dim or rows.shape[0] <= dim + 1:
        raise ValueError(f"family {family!r}: loader returned shape {rows.shape}, need (N > {dim + 1}, {dim})")
    return rows


# --------------------------------------------------------------------------------------------------------------
# The per-block kernels (engines)
# --------------------------------------------------------------------------------------------------------------
#
# Every statistic a block contributes is invariant under any invertible linear map of the rows, x -> A x:
# log det G_1 - log det G shifts both terms by 2 log|det A|, and M_i = n x_i^T G_1^{-1} x_i is unchanged. The
# engines therefore work on the population whitened by its own Gram, w_i = L^{-1} x_i with G = L L^T (float64),
# stored in float32; a block's log det G_1 is recovered as log det(W_1^T W_1) + log det G. Whitening removes the
# data's conditioning (a condition number of 10^3 in Sigma makes G_1 ~10^9-conditioned at n ~ d) so that float32
# storage and the AMX kernel's 17-bit operands lose nothing measurable (tests/test_spectral.py; docs/sigma.md).

LOO_FIELDS = spectral.LeaveOneOut._fields  # mean, var, pair_var, pair_mean, kurtosis, row_var, row_cov


def mahalanobis_second_moment(m: jnp.ndarray, dim: int) -> jnp.ndarray:
    """In-sample ``mean(M_i^2)`` computed as ``d^2 + Var(M_i)``: equal in exact arithmetic (``mean(M_i) = d``), but a
    relative error common to all ``M_i`` (from a rounded factor) then cancels instead of being multiplied by ``d^2``
    (at n = d + 1 the in-sample ``Var(M_i)`` is ~2 while ``mean(M_i^2)`` is ~``d^2``)."""
    return dim * dim + jnp.var(m, axis=-1)


def prefix_block_stats(x: jnp.ndarray, ns: tuple[int, ...]) -> tuple[jnp.ndarray, ...]:
    """For one block's rows ``x`` (n_max, d) in random order: ``log det G_1(n)``, the in-sample ``mean(M_i^2)`` and
    the seven :class:`spectral.LeaveOneOut` statistics for each prefix length ``n`` in ``ns`` (static, increasing).
    Returns nine ``(len(ns),)`` arrays.

    Gram, Cholesky and log-det run in float64 (when x64 is on); ``M_i = n ||L^{-1} x_i||^2`` is formed in ``x``'s
    dtype (float32 input: the engine's whitened rows; float64 input: exact).
    """
    d = x.shape[-1]
    acc = jnp.result_type(float)
    g = jnp.zeros((d, d), acc)
    prev = 0
    lds, m2s, loos = [], [], []
    for n in ns:
        seg = x[prev:n].astype(acc)
        g = g + seg.T @ seg
        prev = n
        chol = _linalg.cholesky(g)
        lds.append(2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))))
        linv = _linalg.solve_triangular(chol, jnp.eye(d, dtype=acc), lower=True)
        w = x[:n] @ linv.T.astype(x.dtype)
        h = jnp.sum((w * w).astype(acc), axis=1)
        m2s.append(mahalanobis_second_moment(n * h, d))
        loos.append(spectral.leverage_statistics(w.astype(acc)))
    return (jnp.stack(lds), jnp.stack(m2s), *(jnp.stack([getattr(lo, f) for lo in loos]) for f in LOO_FIELDS))


# One compiled kernel per (n_max, d, ns); the "jax" engine loops blocks in Python (dispatch is asynchronous). It is
# the engine for GPUs and the float64 reference in the tests; on XLA:CPU it is the slowest (2.6-16 s per d = 384
# block in the previous sweep), so the CPU engines below are used there.
jit_prefix_block_stats = jax.jit(prefix_block_stats, static_argnums=1)

# Gathered rows per batched call of the jax engine (a batch of blocks is gathered and processed at once).
JAX_BATCH_BYTES = 1 << 30


@functools.partial(jax.jit, static_argnums=2)
def jit_batched_block_stats(w: jnp.ndarray, idx: jnp.ndarray, ns: tuple[int, ...]) -> jnp.ndarray:
    """:func:`prefix_block_stats` of the blocks ``w[idx[b]]`` for index rows ``idx`` (blocks, n_max), gathered on the
    device: the nine statistics stacked, shape (9, blocks, len(ns))."""
    return jnp.stack(jax.vmap(lambda i: prefix_block_stats(w[i], ns))(idx), axis=0)


# --------------------------------------------------------------------------------------------------------------
# One block as a replicate (the simulator contract, docs/driver.md): for driving block-study cells through
# collapse_jax.driver.run_replicates on any device. A block's rows are drawn from its key, not from the
# (seed, cell, block) seed sequences of run_cell's engines: the same law, other blocks; sigma-precision's numbers
# are unchanged (its engines do not use this path).
# --------------------------------------------------------------------------------------------------------------


class BlockParams(NamedTuple):
    """One cell's population as the block kernel reads it (:func:`block_params`): the whitened rows ``W``
    (sample, feature) and ``log det G`` of the population (), added back to every block's log det."""

    rows: jax.Array
    log_det_g: jax.Array


@dataclass(frozen=True)
class BlockConfig:
    """Static: the block sizes ``ns`` (increasing integers > 1; a block is a random ordered sample of ``ns[-1]`` rows,
    scored at each prefix length)."""

    ns: tuple[int, ...]

    def __post_init__(self):
        ns = self.ns
        if isinstance(ns, (list, range, np.ndarray, jax.Array)) and np.ndim(ns) == 1:  # (a NumPy array said "The truth
            # value of an array with more than one element is ambiguous"; a user trial, 2026-12-06): as a tuple, the
            # static (hashable) form
            ns = tuple(np.asarray(ns).tolist())
            object.__setattr__(self, "ns", ns)
        if not isinstance(ns, tuple) or not ns or any(not isinstance(n, (int, np.integer)) for n in ns) \
                or ns[0] < 2 or any(b <= a for a, b in zip(ns, ns[1:])):
            raise ValueError(f"ns must be increasing integers >= 2, got {self.ns!r}")


class BlockRecord(NamedTuple):
    """One block's statistics at every block size, each (size,) = (len(ns),) (:class:`CellResult`'s fields)."""

    logdet_g1: jax.Array
    m2_insample: jax.Array
    loo_mean: jax.Array
    loo_var: jax.Array
    loo_pair_var: jax.Array
    loo_pair_mean: jax.Array
    loo_row_var: jax.Array
    loo_row_cov: jax.Array
    loo_kurtosis: jax.Array


def sample_rows(key: jax.Array, num_points: int, size: int, *, spare: int | None = None) -> jax.Array:
    """``size`` distinct indices of ``num_points`` rows, (size,) int32: a uniform random ordered sample without
    replacement, in O(size) memory for ``size <= num_points / 2`` (else a prefix of a random permutation).

    The sequential rejection sampler, vectorised: ``size + spare`` candidates drawn uniformly (Lemire's exact
    bounded integers, :func:`collapse_jax.gmm_network.bounded_uniform`; its rejected draws are skipped), repeats
    rejected in draw order, the first ``size`` distinct candidates kept. A batch with too few (``spare`` defaults to
    the expected repeats plus eight standard deviations, so this is rare) is redrawn whole from the next key
    ``fold_in(key, attempt)``, which leaves the law unchanged: which values come out does not depend on how many
    repeats there were.
    """
    from collapse_jax.gmm_network import bounded_uniform

    num_points, size = int(num_points), int(size)
    if not 1 <= size <= num_points < 2**32:
        raise ValueError(f"need 1 <= size <= num_points < 2^32, got size={size}, num_points={num_points}")
    if 2 * size > num_points:
        return jax.random.permutation(key, num_points)[:size].astype(jnp.int32)
    if spare is None:
        repeats = size * size / (num_points - size)  # bounds the mean and half the variance of the repeats
        spare = int(math.ceil(repeats + 8.0 * math.sqrt(2.0 * repeats))) + 32
    m = size + _checks.nonnegative_int("spare", spare)

    def attempt(state):
        i, _, _ = state
        bits = jax.random.bits(jax.random.fold_in(key, i), (m,), jnp.uint32)
        c, fair = bounded_uniform(bits, jnp.uint32(num_points))
        c = jnp.where(fair, c, jnp.uint32(num_points))  # rejected draws sort last and are never kept
        order = jnp.argsort(c, stable=True)  # equal values in draw order: the first of each is kept
        s = c[order]
        first = jnp.concatenate([jnp.ones(1, bool), s[1:] != s[:-1]]) & (s < num_points)
        keep = jnp.zeros(m, bool).at[order].set(first)
        pos = jnp.nonzero(keep, size=size, fill_value=0)[0]
        return i + 1, c[pos].astype(jnp.int32), jnp.sum(keep) >= size

    return jax.lax.while_loop(lambda state: ~state[2], attempt,
                              (jnp.int32(0), jnp.zeros(size, jnp.int32), jnp.bool_(False)))[1]


def block_kernel(key: jax.Array, params: BlockParams, config: BlockConfig) -> BlockRecord:
    """One block (a replicate of :func:`collapse_jax.driver.run_replicates`): rows :func:`sample_rows` of the
    whitened population, :func:`prefix_block_stats` at every size in ``config.ns``, and ``log det G`` added back so
    that ``logdet_g1`` is the raw rows' ``log det G_1``. Computes in ``params.rows``' dtype (float64 accumulation with
    x64 on)."""
    idx = sample_rows(key, params.rows.shape[0], config.ns[-1])
    stats = prefix_block_stats(params.rows[idx], config.ns)
    return BlockRecord(stats[0] + params.log_det_g, *stats[1:])


def block_params(data: np.ndarray, threads: int | None = None) -> BlockParams:
    """:class:`BlockParams` of a data set (N, d): its whitened float32 rows and exact ``log det G`` (as run_cell)."""
    from collapse_jax import _native

    w32, truth = whitened_population(data, threads or _native.spectral_threads())
    return BlockParams(w32, np.float64(truth))


def run_blocks(seed: int | jax.Array, params: BlockParams, config: BlockConfig, num_blocks: int, *,
               first_block: int = 0, mesh=None, progress: bool | None = None) -> BlockRecord:
    """The statistics of ``num_blocks`` random blocks, each field (num_blocks, len(ns)) (NumPy): block b is
    :func:`block_kernel` at ``fold_in(key(seed), first_block + b)`` (:func:`collapse_jax.driver.run_replicates`:
    blocks sharded over the mesh's devices); a call gathers at most :data:`JAX_BATCH_BYTES` of rows."""
    from collapse_jax import driver

    num_points, dim = np.shape(params.rows)
    if config.ns[0] <= dim or config.ns[-1] > num_points:
        raise ValueError(f"ns must satisfy d < ns[0] and ns[-1] <= N (d = {dim}, N = {num_points}), got {config.ns}")
    chunk = max(1, JAX_BATCH_BYTES // (config.ns[-1] * dim * 4))  # the driver's own sizing counts only outputs
    return driver.run_replicates(block_kernel, params, config, num_blocks, seed, first_replicate=first_block,
                                 chunk_size=chunk, mesh=mesh, progress=progress, desc="blocks")


def numpy_prefix_block_stats(x: np.ndarray, ns) -> tuple[np.ndarray, ...]:
    """The "numpy" engine, one block: as :func:`prefix_block_stats` for float32 rows ``x``, with the O(n d^2) products
    in float32 BLAS (Gram chunks of <= 4096 rows added into a float64 accumulator, the first, worst-conditioned
    segment of ``ns[0]`` rows in float64; the whitening ``W = X L^{-T}`` as a triangular product, half a general
    one's work) and Cholesky / triangular inverse in float64 (LAPACK ``dpotrf`` / ``dtrtri``); leverages ``h_i``
    accumulated in float64 for the small prefixes (leverages near 1) and in float32 above them, like the cross
    leverages of the sampled pairs (relative error ~3e-7, below the ~1e-6 of the float32 whitened rows themselves,
    and far below any Monte Carlo error). Portable CPU fallback when the AMX kernel is unavailable; run one block per
    thread."""
    cholesky = _blas.cholesky_lower  # np.linalg.cholesky's error on a matrix that is not positive definite
    d = x.shape[1]
    first = np.asarray(x[:ns[0]], np.float64)
    g = first.T @ first
    w_rows = np.empty((ns[-1], d), np.float32)
    lds, m2s, loo_means, loo_vars, pair_vars, pair_means, row_vars, row_covs, kurts = ([] for _ in range(9))
    prev = ns[0]
    for n in ns:
        exact = 2 * n <= 3 * d  # small prefixes in float64 (below)
        for a in range(prev, n, 4096):
            seg = x[a:min(n, a + 4096)]
            if exact:
                seg = seg.astype(np.float64)
            g += seg.T @ seg
        prev = max(prev, n)
        chol = cholesky(g)
        lds.append(2.0 * np.sum(np.log(np.diag(chol))))
        linv = _blas.inverse_lower(chol)  # the factor of a positive definite matrix: never singular
        w = w_rows[:n]
        if exact:  # leverages near 1 amplify float32 rounding: d = 8, n = 10 gave a row-sum variance of 840, not 0.14
            w[...] = np.asarray(x[:n], np.float64) @ linv.T
        else:
            w[...] = x[:n]
            _blas.trmm_right(np.ascontiguousarray(linv, np.float32), w, trans=True)  # W := W L^{-T}
        h_cross = np.empty((spectral.PAIR_OFFSETS, n))  # h_{i, i+k mod n}, without copying rolled rows
        for k in range(1, spectral.PAIR_OFFSETS + 1):  # the pairs that wrap round, before any row is scaled
            h_cross[k - 1, n - k:] = np.einsum("ij,ij->i", w[n - k:], w[:k])
        if exact:
            h = np.einsum("ij,ij->i", w, w, dtype=np.float64)
            for k in range(1, spectral.PAIR_OFFSETS + 1):
                h_cross[k - 1, :n - k] = np.einsum("ij,ij->i", w[:n - k], w[k:])
        else:  # one pass through the cache instead of six through memory
            h = _leverages_and_scale(w, h_cross)
        partner = np.stack([np.roll(h, -k) for k in range(1, spectral.PAIR_OFFSETS + 1)])
        m2s.append(d * d + np.var(n * h))
        with np.errstate(invalid="ignore", divide="ignore"):  # n = d + 1: h_i ~ 1 (float32) -> NaN, unused there
            lg = np.log1p(-h)
            pair_x = h_cross**2 / ((1.0 - h) * (1.0 - partner))
            delta = np.log1p(-pair_x)
            a_sqrt = np.sqrt(1.0 / (1.0 - h))
        # all pairs: sum_{i != j} x_ij = ||W^T diag(a) W||_F^2 - sum_i a_i^2 h_i^2
        if exact:
            wa = w.astype(np.float64) * a_sqrt[:, None]
            ga = wa.T @ wa
        else:  # w's rows were scaled by a_sqrt in the leverage pass
            ga = (w.T @ w).astype(np.float64)
        pair_sum = np.sum(ga * ga) - np.sum((h / (1.0 - h)) ** 2)
        # row sums r_i = sum_{j != i} x_ij = v_i^T (W^T diag(a) W) v_i - a_i^2 h_i^2 (v_i = sqrt(a_i) w_i): with
        # W^T diag(a) W = C C^T, v_i^T C C^T v_i = ||C^T v_i||^2, a triangular product in place (half a general one)
        try:
            chol_a = cholesky(ga)
        except np.linalg.LinAlgError:  # n ~ d + 1: leverages ~1 in float32 round W^T diag(a) W to indefinite
            row_sums = np.full(n, np.nan)
        else:
            if exact:
                row_sums = np.sum((wa @ chol_a) ** 2, axis=1) - (h / (1.0 - h)) ** 2
            else:
                _blas.trmm_right(np.ascontiguousarray(chol_a, np.float32), w, trans=False)  # W := W C
                row_sums = np.einsum("ij,ij->i", w, w).astype(np.float64) - (h / (1.0 - h)) ** 2
        loo_means.append(lg.mean())
        loo_vars.append(lg.var())
        pair_vars.append(delta.var())
        pair_means.append(-pair_sum / (n * (n - 1.0)) + np.mean(delta + pair_x))
        centred = lg - lg.mean()
        row_vars.append(row_sums.var())
        row_covs.append(np.mean(centred * row_sums))
        squared = centred * centred  # (float ** 4 is a slow pow)
        kurts.append(np.mean(squared * squared) / np.mean(squared) ** 2)
    return tuple(np.asarray(v) for v in (lds, m2s, loo_means, loo_vars, pair_vars, pair_means, row_vars, row_covs,
                                          kurts))


# Rows per chunk of the numpy engine's leverage pass: 256 rows of d = 384 float32 are 384 KiB, inside a 512 KiB L2.
LEVERAGE_CHUNK_BYTES = 384 * 1024


def _leverages_and_scale(w: np.ndarray, h_cross: np.ndarray) -> np.ndarray:
    """The numpy engine's float32 leverage pass over whitened rows ``w`` (n, d), in place: returns ``h_i = ||w_i||^2``
    (float64 of float32 sums), writes the cross leverages ``h_{i, i+k}`` (k = 1..PAIR_OFFSETS, ``i + k < n``) into
    ``h_cross[k - 1, i]``, and scales each row by ``sqrt(1 / (1 - h_i))``. Chunks of rows that fit in a core's L2
    cache take every step while there: one pass over memory instead of six (a d = 384 block's rows are 59 MB at
    n = 100 d). A chunk's rows are scaled only after their pairs with the next chunk's first rows are formed, and
    the pairs that wrap round (``i + k >= n``) are the caller's, formed before any row is scaled."""
    n, d = w.shape
    offsets = h_cross.shape[0]
    h = np.empty(n)
    step = max(offsets, LEVERAGE_CHUNK_BYTES // (4 * d))
    for a in range(0, n, step):
        b = min(n, a + step)
        rows = w[a:b]
        h[a:b] = np.vecdot(rows, rows)
        for k in range(1, offsets + 1):
            end = min(b, n - k)
            if end > a:
                h_cross[k - 1, a:end] = np.vecdot(w[a:end], w[a + k:end + k])
        with np.errstate(invalid="ignore", divide="ignore"):  # h_i ~ 1 at n ~ d: NaN rows, as before
            rows *= np.sqrt(1.0 / (1.0 - h[a:b])).astype(np.float32)[:, None]
    return h


def numpy_batched_prefix_stats(x: np.ndarray, ns) -> tuple[np.ndarray, ...]:
    """:func:`numpy_prefix_block_stats` of many small blocks at once: float32 rows ``x`` (blocks, n_max, d) -> the
    nine statistics, each (blocks, len(ns)), with the same arithmetic done by batched NumPy calls instead of one block
    at a time: the Gram of the first ``ns[0]`` rows and of the segments of prefixes up to 1.5 d in float64, later
    segments in float32 added into it; float64 whitening for ``2 n <= 3 d``, float32 above; general products where
    the per-block engine takes triangular ones, so the float32 statistics agree with it to float32 rounding, not bit
    for bit. For small blocks, where one block's Python and call overhead is most of its time (d <= 32 in the sweep:
    4-9 ms per block one at a time, docs/benchmarks.md), and for the jackknife's Gaussian calibration
    (:func:`numpy_batched_block_stats`). Raises ``np.linalg.LinAlgError`` if a block's Gram matrix is not positive
    definite; NaN row sums in a block whose weighted Gram rounds to indefinite, as the per-block engine."""
    x = np.asarray(x, np.float32)
    nb, _, d = x.shape
    first = x[:, :ns[0]].astype(np.float64)
    g = np.matmul(first.transpose(0, 2, 1), first)
    prev = ns[0]
    out = tuple(np.empty((nb, len(ns))) for _ in range(2 + len(LOO_FIELDS)))
    for s, n in enumerate(ns):
        exact = 2 * n <= 3 * d  # as the per-block engine: small prefixes in float64
        if n > prev:
            seg = x[:, prev:n].astype(np.float64) if exact else x[:, prev:n]
            g += np.matmul(seg.transpose(0, 2, 1), seg).astype(np.float64)
            prev = n
        chol = np.linalg.cholesky(g)
        lds = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        linv = np.tril(np.linalg.solve(chol, np.broadcast_to(np.eye(d), chol.shape)))  # lower; drop the rounding above
        if exact:
            w = np.matmul(x[:, :n].astype(np.float64), linv.transpose(0, 2, 1)).astype(np.float32)
            h = np.einsum("bij,bij->bi", w, w, dtype=np.float64)
        else:
            w = np.matmul(x[:, :n], linv.transpose(0, 2, 1).astype(np.float32))
            h = np.einsum("bij,bij->bi", w, w, dtype=np.float32).astype(np.float64)
        offsets = range(1, spectral.PAIR_OFFSETS + 1)
        h_cross = np.empty((nb, spectral.PAIR_OFFSETS, n))  # h_{i, i+k mod n}, without copying rolled rows
        for k in offsets:
            h_cross[:, k - 1, :n - k] = np.einsum("bij,bij->bi", w[:, :n - k], w[:, k:])
            h_cross[:, k - 1, n - k:] = np.einsum("bij,bij->bi", w[:, n - k:], w[:, :k])
        partner = np.stack([np.roll(h, -k, axis=1) for k in offsets], axis=1)
        m2 = d * d + np.var(n * h, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            lg = np.log1p(-h)
            pair_x = h_cross**2 / ((1.0 - h[:, None]) * (1.0 - partner))
            delta = np.log1p(-pair_x)
            a_sqrt = np.sqrt(1.0 / (1.0 - h))
        wa = w.astype(np.float64) * a_sqrt[..., None] if exact else w * a_sqrt.astype(np.float32)[..., None]
        ga = np.matmul(wa.transpose(0, 2, 1), wa).astype(np.float64)
        ratio2 = (h / (1.0 - h)) ** 2
        pair_sum = np.sum(ga * ga, axis=(1, 2)) - np.sum(ratio2, axis=1)
        try:
            chol_a = np.linalg.cholesky(ga)
        except np.linalg.LinAlgError:  # NaN row sums only where W^T diag(a) W rounds to indefinite
            chol_a = np.full(ga.shape, np.nan)
            for b in range(nb):
                try:
                    chol_a[b] = np.linalg.cholesky(ga[b])
                except np.linalg.LinAlgError:
                    pass
        v = np.matmul(wa, chol_a if exact else chol_a.astype(np.float32))
        row_sums = np.einsum("bij,bij->bi", v, v).astype(np.float64) - ratio2
        centred = lg - lg.mean(axis=1, keepdims=True)
        squared = centred * centred
        for j, value in enumerate((lds, m2, lg.mean(axis=1), lg.var(axis=1), delta.reshape(nb, -1).var(axis=1),
                                   -pair_sum / (n * (n - 1.0)) + np.mean((delta + pair_x).reshape(nb, -1), axis=1),
                                   row_sums.var(axis=1), np.mean(centred * row_sums, axis=1),
                                   np.mean(squared * squared, axis=1) / np.mean(squared, axis=1) ** 2)):
            out[j][:, s] = value
    return out


# The numpy engine batches blocks of at most this many float32 values (d = 8 and 32 in the default sweep, whose
# blocks cost 4-9 ms one at a time, mostly per-call overhead) into calls of about NUMPY_BATCH_BYTES of rows; larger
# blocks go one at a time, with triangular products (general ones in a batch double their work: d = 128 blocks took
# 125 ms each in batches of 4 against 60 ms one at a time on a 2-core AMD EPYC).
NUMPY_BATCH_MAX_VALUES = 1 << 17
NUMPY_BATCH_BYTES = 4 << 20


def numpy_batch_blocks(n_max: int, dim: int) -> int:
    """Blocks per call of the numpy engine for blocks of ``n_max`` rows of dimension ``dim``: 1 (one block at a time,
    :func:`numpy_prefix_block_stats`) above :data:`NUMPY_BATCH_MAX_VALUES` values, else as many as fill
    :data:`NUMPY_BATCH_BYTES` (:func:`numpy_batched_prefix_stats`)."""
    values = n_max * dim
    return 1 if values > NUMPY_BATCH_MAX_VALUES else max(1, NUMPY_BATCH_BYTES // (4 * values))


def numpy_batched_block_stats(x: np.ndarray) -> np.ndarray:
    """:func:`numpy_batched_prefix_stats` of blocks of one size: float32 rows ``x`` (blocks, n, d) -> (blocks, 9),
    the nine statistics of ``ns = (n,)`` per block. For the small blocks of the jackknife's Gaussian calibration
    (:func:`collapse_jax.spectral.gaussian_jackknife_quantile`): thousands of blocks of at most 128 rows in a fraction
    of a second."""
    return np.stack([v[:, 0] for v in numpy_batched_prefix_stats(x, (np.shape(x)[1],))], axis=1)


def native_block_stats(w32: np.ndarray, idx: np.ndarray, ns, threads: int) -> tuple[np.ndarray, ...]:
    """The "native" engine: blocks ``idx`` (num_blocks, n_max) of rows of the float32 population ``w32``, all prefix
    sizes, on Intel AMX (``collapse_jax/_native/spectral_kernels.cc``; ``threads`` blocks at a time). Returns
    ``(log det G_1, mean(M_i^2), mean log(1 - h_i), Var log(1 - h_i), pair variance, pair mean, row-sum variance,
    row-sum covariance, kurtosis)``, each (num_blocks, len(ns)), as :func:`numpy_prefix_block_stats` (the same row
    pairs; prefixes up to 1.5 d in float64, larger ones on the tiles). Raises if a block Gram is not positive
    definite."""
    from collapse_jax import _native

    lib = _native.spectral_library()
    if lib is None or not lib.cj_amx_available():
        raise RuntimeError("the native engine needs an AMX-capable x86 CPU and a C++ compiler; use engine='numpy'")
    w32 = np.ascontiguousarray(w32, np.float32)
    idx = np.ascontiguousarray(idx, np.int64)
    ns = np.ascontiguousarray(ns, np.int64)
    nb, n_max = idx.shape
    if ns[0] <= w32.shape[1] or ns[-1] > n_max or np.any(np.diff(ns) <= 0) or idx.max(initial=0) >= w32.shape[0]:
        raise ValueError("native_block_stats: need d < ns[0] < ... < ns[-1] <= n_max and indices inside the data")
    out = tuple(np.empty((nb, len(ns))) for _ in range(2 + len(LOO_FIELDS)))
    rc = lib.cj_block_stats(w32.ctypes.data, w32.shape[0], w32.shape[1], idx.ctypes.data, nb, n_max,
                            ns.ctypes.data, len(ns), *(a.ctypes.data for a in out), threads)
    if rc == 1:
        raise RuntimeError("AMX kernel unavailable")
    if rc >= 2:
        raise FloatingPointError(f"block {rc - 2}: Gram matrix not positive definite")
    return out


def resolve_engine(engine: str) -> str:
    """``auto``: native (AMX) on a CPU that has it, numpy on other CPUs, jax on GPU/TPU."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "auto":
        return engine
    if jax.default_backend() != "cpu":
        return "jax"
    from collapse_jax import _native

    return "native" if _native.amx_available() else "numpy"


def block_indices(seed: int, cell: int, block: int, num_points: int, size: int) -> np.ndarray:
    """Row indices of one random block: ``size`` distinct rows of ``N``, from the block's own seed sequence
    ``(seed, cell, block)`` (so a block's draw does not depend on batching or on resuming). The first k rows of a
    draw do depend on ``size`` (NumPy's ``choice``): see :func:`nested_block_indices`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, cell, block]))
    return rng.choice(num_points, size=size, replace=False)


NESTED_FIRST_BATCH = 4096  # the stream of nested_block_indices: batches of 4096, 8192, ... draws


def nested_block_indices(seed: int, cell: int, block: int, num_points: int, size: int) -> np.ndarray:
    """Row indices of one random block whose first k rows are the same for every ``size >= k``, so a call's
    blocks of all its sizes are prefixes of one draw whichever largest size it has (the sweep runner's
    ``sigma-blocks`` cells, grouped into calls by chunk, process or resume). The rows are the distinct values, in
    order of first appearance, of a stream of uniform draws from ``[0, N)`` (batches of 4096, 8192, ... from the
    block's seed sequence ``(seed, cell, block, 1)``), i.e. sequential sampling without replacement: a uniformly
    random ordered sample. Expected draws ``N ln(N / (N - size))``, ``N ln N`` for the whole population."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, cell, block, 1]))
    seen = np.zeros(num_points, bool)
    rows, count, batch = [], 0, NESTED_FIRST_BATCH
    while count < size:
        draws = rng.integers(0, num_points, batch)
        firsts = np.sort(np.unique(draws, return_index=True)[1])  # each value's first place in the batch
        new = draws[firsts][~seen[draws[firsts]]]
        seen[new] = True
        rows.append(new)
        count += new.size
        batch *= 2
    return np.concatenate(rows)[:size]


def whiten(data: np.ndarray, gram: np.ndarray, threads: int, *, out: np.ndarray | None = None
           ) -> tuple[np.ndarray, float]:
    """``(W, log det G)``: float32 rows ``w_i = L^{-1} x_i`` (``G = L L^T``, Cholesky in float64; the product in
    float32, which moved a block's log det by < 1e-6 against a float64 product, far below the engines' own error).
    ``out``: an optional float32 array of ``data``'s shape to fill (reusing it saves the page faults of a new one)."""
    from scipy.linalg import solve_triangular

    from collapse_jax.spectral import one_blas_thread

    try:
        chol = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        raise ValueError("the data's Gram matrix is not positive definite (rank-deficient data?)") from None
    linv_t = np.ascontiguousarray(solve_triangular(chol, np.eye(gram.shape[0]), lower=True).T, np.float32)
    out = np.empty(data.shape, np.float32) if out is None else out

    def part(start):
        stop = min(start + CHUNK_ROWS, data.shape[0])
        np.matmul(np.asarray(data[start:stop], np.float32), linv_t, out=out[start:stop])

    with one_blas_thread(), ThreadPoolExecutor(threads) as ex:
        list(ex.map(part, range(0, data.shape[0], CHUNK_ROWS)))
    return out, float(2.0 * np.sum(np.log(np.diag(chol))))


def whitened_population(data: np.ndarray, threads: int, scratch: np.ndarray | None = None
                        ) -> tuple[np.ndarray, float]:
    """``(W, log det G)`` of a data set: its Gram matrix streamed in float64, then :func:`whiten` (into ``scratch``
    when given)."""
    streamed = spectral.gram_streaming(spectral.array_chunks(data, CHUNK_ROWS), data.shape[1], dtype=jnp.float64,
                                       threads=threads)
    return whiten(data, streamed.gram, threads, out=scratch)


# --------------------------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CellResult:
    family: str
    dim: int
    num_points: int
    ns: np.ndarray          # (num_sizes,)
    truth: float            # exact log det G
    logdet_g1: np.ndarray   # (num_blocks, num_sizes)
    m2_insample: np.ndarray  # (num_blocks, num_sizes)
    loo_mean: np.ndarray     # (num_blocks, num_sizes): mean_i log(1 - h_i)
    loo_var: np.ndarray      # (num_blocks, num_sizes): Var_i log(1 - h_i)
    loo_pair_var: np.ndarray  # (num_blocks, num_sizes): Var over sampled pairs of the leave-two-out interaction
    loo_pair_mean: np.ndarray  # (num_blocks, num_sizes): its mean over all pairs (spectral.LeaveOneOut)
    loo_row_var: np.ndarray   # (num_blocks, num_sizes): Var_i of the row sums r_i of that interaction
    loo_row_cov: np.ndarray   # (num_blocks, num_sizes): Cov_i(log(1 - h_i), r_i)
    loo_kurtosis: np.ndarray  # (num_blocks, num_sizes): kurtosis of log(1 - h_i) over the rows
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def loo(self) -> spectral.LeaveOneOut:
        """The :class:`spectral.LeaveOneOut` statistics, each (num_blocks, num_sizes), as the float64 NumPy arrays
        they are (a JAX array would round them to float32 where x64 is off, before the estimators see them)."""
        return spectral.LeaveOneOut(*(np.asarray(getattr(self, f"loo_{f}"), np.float64) for f in LOO_FIELDS))

    def to_arrays(self) -> dict:
        return dict(ns=self.ns, truth=np.float64(self.truth), logdet_g1=self.logdet_g1,
                    m2_insample=self.m2_insample, **{f"loo_{f}": getattr(self, f"loo_{f}") for f in LOO_FIELDS},
                    num_points=np.int64(self.num_points), dim=np.int64(self.dim), seconds=np.float64(self.seconds))

    @classmethod
    def from_arrays(cls, family: str, arrays: dict) -> "CellResult":
        """From :meth:`to_arrays`; chunks written before a leave-one-out statistic existed get NaN for it."""
        nan = np.full(np.shape(arrays["logdet_g1"]), np.nan)
        return cls(family, int(arrays["dim"]), int(arrays["num_points"]), arrays["ns"], float(arrays["truth"]),
                   arrays["logdet_g1"], arrays["m2_insample"], *(arrays.get(f"loo_{f}", nan) for f in LOO_FIELDS),
                   float(arrays["seconds"]))


def run_cell(data: np.ndarray, family: str, ns: np.ndarray, num_blocks: int, *, seed: int, cell: int,
             progress: Callable | None = None, engine: str = "auto", threads: int | None = None,
             scratch: np.ndarray | None = None, rows: Callable[..., np.ndarray] = block_indices) -> CellResult:
    """Exact ``log det G`` of ``data`` (streamed Gram, float64) and the statistics of ``num_blocks`` random blocks.

    ``engine`` (see :data:`ENGINES`, :func:`resolve_engine`) picks the block kernel; all engines see the whitened
    population (see above) and return ``log det G_1`` of the raw rows. ``threads``: worker threads (default: the CPUs
    available). ``progress(k)`` is called as blocks finish. ``scratch``: optional float32 array of ``data``'s shape
    for the whitened population. ``rows(seed, cell, block, N, n_max)``: a block's row indices
    (:func:`block_indices`, or :func:`nested_block_indices` where a block of size n must not depend on n_max).
    """
    from collapse_jax import _native

    t0 = time.perf_counter()
    engine = resolve_engine(engine)
    threads = _checks.positive_int("threads", threads) if threads is not None else _native.spectral_threads()
    num_points, dim = data.shape
    w32, truth = whitened_population(data, threads, scratch)
    timings = dict(prepare_seconds=time.perf_counter() - t0)
    n_max = int(ns[-1])
    ns_static = tuple(int(n) for n in ns)
    stats = np.empty((2 + len(LOO_FIELDS), num_blocks, len(ns)))  # log det G_1, mean(M_i^2), the LeaveOneOut fields

    def indices(b0, b1):
        return np.stack([rows(seed, cell, b, num_points, n_max) for b in range(b0, b1)])

    if engine == "native":
        # calls of ~0.1-1 s: small blocks are batched so the per-call set-up (buffers, threads) is amortised
        batch = max(1, min(num_blocks, max(4 * threads, min(256, int(2e7 / (n_max * dim))))))
        with ThreadPoolExecutor(1) as ahead:  # draws the next batch's indices while the kernel runs
            nxt = ahead.submit(indices, 0, min(batch, num_blocks))
            for b0 in range(0, num_blocks, batch):
                b1 = min(b0 + batch, num_blocks)
                idx = nxt.result()
                if b1 < num_blocks:
                    nxt = ahead.submit(indices, b1, min(b1 + batch, num_blocks))
                stats[:, b0:b1] = native_block_stats(w32, idx, ns_static, threads)
                if progress is not None:
                    progress(b1 - b0)
    elif engine == "numpy":
        batch = numpy_batch_blocks(n_max, dim)

        def part(b0):
            if batch == 1:
                return np.asarray(numpy_prefix_block_stats(w32[rows(seed, cell, b0, num_points, n_max)],
                                                           ns_static))[:, None]
            return np.asarray(numpy_batched_prefix_stats(w32[indices(b0, min(b0 + batch, num_blocks))], ns_static))

        starts = range(0, num_blocks, batch)
        with spectral.one_blas_thread(), ThreadPoolExecutor(threads) as ex:
            for b0, part_stats in zip(starts, ex.map(part, starts)):
                stats[:, b0:b0 + part_stats.shape[1]] = part_stats
                if progress is not None:
                    progress(part_stats.shape[1])
    else:
        # the whitened population goes to the device once; each call gathers and runs a batch of blocks there
        w_dev = jnp.asarray(w32)
        batch = max(1, min(num_blocks, JAX_BATCH_BYTES // (n_max * dim * 4)))
        for b0 in range(0, num_blocks, batch):
            b1 = min(b0 + batch, num_blocks)
            idx = indices(b0, b1)
            if b1 - b0 < batch:  # pad the last batch with its first block (one compilation per cell)
                idx = np.concatenate([idx, np.repeat(idx[:1], batch - (b1 - b0), axis=0)])
            out = np.asarray(jit_batched_block_stats(w_dev, jnp.asarray(idx, jnp.int32), ns_static))
            stats[:, b0:b1] = out[:, :b1 - b0]
            if progress is not None:
                progress(b1 - b0)
    stats[0] += truth  # log det G_1 = log det(W_1^T W_1) + log det G
    timings["blocks_seconds"] = time.perf_counter() - t0 - timings["prepare_seconds"]
    if engine == "numpy":  # whether its BLAS / LAPACK calls ran without Python's lock (collapse_jax/_blas.py)
        timings["blas_without_lock"] = all(_blas.library().values())
    return CellResult(family, dim, num_points, np.asarray(ns), truth, *stats, time.perf_counter() - t0,
                      extra=dict(engine=engine, threads=threads, **timings))


# --------------------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------------------


def summarize_cell(res: CellResult, level: float) -> list[dict]:
    """Per block size: bias, SD and RMSE of ``L_hat``, and for each interval its centre's bias, its coverage and its
    median half-width (``width_ratio_jackknife``: the jackknife's over the exact Wishart's, per block).

    A block size equal to ``N`` is the whole population: ``L_hat`` is exact there (every half-width is 0 and the error
    is rounding only), so the row is marked ``exact`` and its coverages are NaN (printed "exact"), not 0.
    """
    z = spectral.z_value(level)
    ns = res.ns.astype(np.float64)
    est = spectral.block_estimates_from_stats(res.logdet_g1, res.m2_insample, res.dim, ns[None, :], res.num_points,
                                              z, res.loo())
    rows = []
    err = np.asarray(est.l_hat) - res.truth
    tau2 = np.asarray(est.moments.tau2)
    for k, n in enumerate(res.ns):
        row = dict(family=res.family, d=res.dim, n=int(n), N=res.num_points, n_over_d=float(n / res.dim),
                   n_over_d2=float(n / res.dim**2), blocks=int(err.shape[0]),
                   # (one block: NaN, without NumPy's two warnings; a user trial, 2026-12-06)
                   bias=float(err[:, k].mean()), sd=float(err[:, k].std(ddof=1)) if len(err) > 1 else math.nan,
                   rmse=float(np.sqrt(np.mean(err[:, k] ** 2))),
                   sqrt_2d_over_n=float(np.sqrt(2 * res.dim / n)),
                   tau_hat=float(np.sqrt(np.median(tau2[:, k]))),
                   wishart_bias=float(spectral.wishart_bias(res.dim, float(n), float(res.num_points))),
                   exact=bool(n == res.num_points))
        for name in spectral.ESTIMATORS:
            iv = getattr(est, name)
            centre = np.asarray(iv.center)[:, k]
            hw = np.asarray(iv.half_width)[:, k]
            row[f"bias_{name}"] = float(centre.mean() - res.truth)
            row[f"coverage_{name}"] = (math.nan if row["exact"] or not np.all(np.isfinite(hw))
                                       else float(np.mean(np.abs(res.truth - centre) <= hw)))
            row[f"halfwidth_{name}"] = float(np.median(hw))
        hw_w = np.asarray(est.wishart.half_width)[:, k]
        row["width_ratio_jackknife"] = (float(np.median(np.asarray(est.jackknife.half_width)[:, k] / hw_w))
                                        if np.all(hw_w > 0) else math.nan)
        rows.append(row)
    return rows


TABLE_COLUMNS = [("family", "{}"), ("d", "{}"), ("n", "{}"), ("n_over_d2", "{:.3g}"), ("blocks", "{}"),
                 ("bias", "{:+.3g}"), ("sd", "{:.3g}"), ("sqrt_2d_over_n", "{:.3g}"),
                 ("coverage_seed", "{:.3f}"), ("coverage_second_order", "{:.3f}"), ("coverage_wishart", "{:.3f}"),
                 ("coverage_scaled_wishart", "{:.3f}"), ("coverage_jackknife", "{:.3f}"),
                 ("width_ratio_jackknife", "{:.3f}")]


def _cell(row: dict, column: str, fmt: str) -> str:
    value = row[column]
    if column.startswith("coverage_") and isinstance(value, float) and math.isnan(value):
        return "exact" if row.get("exact") else "n/a"  # n = N; or too small a block for this interval
    return "n/a" if isinstance(value, float) and math.isnan(value) else fmt.format(value)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(r, c, f) for c, f in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep] + body) + "\n"


def csv_table(rows: list[dict]) -> str:
    cols = list(rows[0].keys())
    return "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------------

LABELS = {"seed": "seed: L_hat ± z τ̂/√n", "second_order": "2nd-order corrected",
          "wishart": "Wishart exact (Gaussian)", "scaled_wishart": "scaled Wishart (hybrid)",
          "jackknife": "leverage jackknife"}


def _scored(rows: list[dict]) -> list[dict]:
    """The rows a figure shows: not the exact ones (n = N: no error, no coverage); a ValueError if none is left."""
    kept = [r for r in rows if not r.get("exact")]
    if not kept:
        raise ValueError("every block size equals N (exact, nothing to plot); choose ratios with n < N")
    return kept


def coverage_figure(rows: list[dict], level: float):
    from collapse_jax.results import pyplot

    plt = pyplot()

    rows = _scored(rows)
    families = list(dict.fromkeys(r["family"] for r in rows))
    dims = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(len(families), len(spectral.ESTIMATORS), figsize=(3.3 * len(spectral.ESTIMATORS), 2.6 * len(families)),
                             sharex=True, sharey=True, squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(dims), 1)))
    for i, fam in enumerate(families):
        for j, name in enumerate(spectral.ESTIMATORS):
            ax = axes[i, j]
            for c, d in zip(colors, dims):
                rr = [r for r in rows if r["family"] == fam and r["d"] == d]
                if rr:
                    ax.plot([r["n_over_d2"] for r in rr], [r[f"coverage_{name}"] for r in rr], "o-", ms=3,
                            color=c, label=f"d={d}")
            ax.axhline(level, color="k", lw=0.8, ls="--")
            _log_x(ax)
            ax.set_ylim(-0.02, 1.02)
            if i == 0:
                ax.set_title(LABELS[name], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{fam}\ncoverage")
            if i == len(families) - 1:
                ax.set_xlabel("n / d²")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Coverage of nominal {level:.0%} intervals for log det G vs n/d² (dashed: nominal)", fontsize=10)
    fig.tight_layout()
    return fig


def _log_x(ax) -> None:
    """A log x axis labelled with plain numbers (0.2, 0.5, 10): where it spans less than a decade matplotlib labels
    minor ticks in scientific notation (2×10⁻¹, 3×10⁻¹, ...), which overlapped in these narrow panels (a user trial,
    2026-12-06)."""
    from matplotlib import ticker

    class Plain(ticker.LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(Plain())
    ax.xaxis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def error_figure(rows: list[dict]):
    from collapse_jax.results import pyplot

    plt = pyplot()

    rows = _scored(rows)
    families = list(dict.fromkeys(r["family"] for r in rows))
    dims = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.4), sharey=True, squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(dims), 1)))
    for ax, fam in zip(axes[0], families):
        for c, d in zip(colors, dims):
            rr = [r for r in rows if r["family"] == fam and r["d"] == d]
            if not rr:
                continue
            n = np.array([r["n"] for r in rr])
            ax.plot(n, [abs(r["bias"]) for r in rr], "o--", ms=3, color=c, label=f"|bias| d={d}")
            ax.plot(n, [r["sd"] for r in rr], "s-", ms=3, color=c, label=f"SD d={d}")
            ax.plot(n, [abs(r["bias_scaled_wishart"]) for r in rr], ":", color=c, lw=1)
            ax.plot(n, np.sqrt(2 * d / n), color="0.6", lw=0.8)
        _log_x(ax)
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("block size n")
    axes[0, 0].set_ylabel("error of L_hat (nats)")
    axes[0, 0].legend(fontsize=6, ncol=2)
    fig.suptitle("Error of L_hat = log det G₁ + d log(N/n): |bias| (dashed), SD (solid), |bias| after scaled-"
                 "Wishart correction (dotted); grey: √(2d/n)", fontsize=9)
    fig.tight_layout()
    return fig
