"""Raw-sample buffers for the recursions whose estimator needs every sample (EM mixture fits, logistic Newton fits).

Unlike the multinomial and Gaussian models, a mixture or a logistic regression has no fixed-size sufficient
statistic: each refit reads all ``n_t`` (replace) or ``n_0 + ... + n_t`` (accumulate) training points, so memory and
time grow with the sample sizes. The buffer is a fixed-shape array (static size, padded to a whole number of chunks)
of which only the first ``count`` rows are valid; each generation writes its batch at a dynamic offset (0 for
replace, the running total for accumulate). Draws and sums over the valid rows run chunk by chunk up to
``ceil(count / chunk)`` (a ``fori_loop`` with a traced trip count), so a generation costs O(count) rather than
O(buffer size), whatever the largest ``n_t`` of the run, and the per-chunk temporaries stay small.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks

REGIMES = ("replace", "accumulate")


def check_config(config, positive_floats: tuple[str, ...]) -> None:
    """Validate the fields shared by the raw-sample configs (``regime``, ``max_iter``, ``tol``, ``chunk``,
    ``max_points``) and the named fields that must be positive numbers."""
    if config.regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {config.regime!r}")
    for name in ("max_iter", "chunk", "max_points"):
        _checks.positive_int(name, getattr(config, name))
    for name in ("tol",) + positive_floats:
        _checks.in_interval(name, getattr(config, name), 0.0, math.inf, low_open=True)


def plan(n: np.ndarray, regime: str, chunk: int, max_points: int, model: str) -> tuple[int, int]:
    """Static sizes ``(buffer, chunk)`` for a sample-size schedule (or a grid of schedules) ``n``.

    ``chunk`` is ``min(chunk, max n_t)``. ``buffer`` holds ``max n_t`` rows (replace) or ``max_t (n_0 + ... + n_t)``
    rows (accumulate), plus one chunk (batches are drawn a whole chunk at a time), rounded up to a multiple of
    ``chunk``. Raises if the rows needed exceed ``max_points`` per replicate.
    """
    n = np.atleast_2d(n)
    need = int(n.max()) if regime == "replace" else int(np.cumsum(n, axis=-1).max())
    if need > max_points:
        what = "max n_t" if regime == "replace" else "n_0 + ... + n_T"
        raise ValueError(f"{model} {regime}: the refit reads every raw sample, so each replicate needs a buffer of "
                         f"{need} points ({what}) but max_points={max_points}; lower n_t or the number of steps, "
                         "or raise max_points (time and memory grow linearly with it)")
    chunk = min(int(chunk), int(n.max()))
    return -(-(need + chunk) // chunk) * chunk, chunk


class Setup(NamedTuple):
    """What :func:`setup` derives before compute: the grids, static sizes, dtype and replicate chunking."""

    grid: bool  # the caller passed (G, T + 1) grids (else 1-D schedules)
    alpha: np.ndarray  # (G, T + 1)
    n: np.ndarray  # (G, T + 1)
    buffer: int
    chunk: int
    dtype: Any
    num_replicates: int
    chunk_size: int | None
    batch_size: int


def setup(alpha: np.ndarray, n: np.ndarray, config, model: str, numbers_per_row: int, num_replicates: int,
          chunk_size: int | None, batch_size: int) -> Setup:
    """Shared preamble of the raw-sample simulators (inputs already validated): grids, buffer sizes, memory check."""
    num_replicates = _checks.positive_int("num_replicates", num_replicates)
    if chunk_size is not None:
        chunk_size = _checks.positive_int("chunk_size", chunk_size)
    batch_size = _checks.positive_int("batch_size", batch_size)
    alpha2, n2 = (np.array(x) for x in np.broadcast_arrays(np.atleast_2d(alpha), np.atleast_2d(n)))
    buffer, chunk = plan(n2, config.regime, config.chunk, config.max_points, model)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    # lax.map keeps one raw-sample buffer per lockstep lane alive at a time
    _checks.fits_in_memory("batch_size (replicates in lockstep, each with a raw-sample buffer)", batch_size,
                           buffer * numbers_per_row * jnp.dtype(dtype).itemsize)
    return Setup(alpha.ndim == 2 or n.ndim == 2, alpha2, n2, buffer, chunk, dtype, num_replicates, chunk_size,
                 batch_size)


def write_draws(buffer: Any, key: jax.Array, offset: jax.Array, count: jax.Array, chunk: int,
                draw: Callable[[jax.Array, int], Any]) -> Any:
    """Fill rows ``offset .. offset + count - 1`` of ``buffer`` with ``draw(key_j, chunk)``, chunk ``j`` after chunk.

    ``draw`` returns a pytree shaped like ``buffer`` with ``chunk`` rows; chunk ``j`` uses ``fold_in(key, j)``. The
    last chunk may write past ``offset + count``: those rows are invalid (beyond the count) and later overwritten.
    Cost O(count), whatever the buffer size.
    """
    offset = jnp.asarray(offset).astype(jnp.int32)
    count = jnp.asarray(count).astype(jnp.int32)

    def body(j, buf):
        rows = draw(jax.random.fold_in(key, j), chunk)
        return jax.tree.map(lambda b, r: jax.lax.dynamic_update_slice_in_dim(b, r.astype(b.dtype), offset + j * chunk,
                                                                             0), buf, rows)

    return jax.lax.fori_loop(0, (count + chunk - 1) // chunk, body, buffer)


def reduce_rows(fn: Callable, data: Any, count: jax.Array, chunk: int, init: Any, combine: Any = jnp.add) -> Any:
    """Reduce ``fn(rows, valid)`` over the chunks holding the first ``count`` rows of ``data``.

    ``fn`` receives a chunk of every array in ``data`` (leading axis ``chunk``) and the boolean mask of valid rows;
    it must return a pytree shaped like ``init`` that already ignores invalid rows. ``combine`` is one binary function
    (default ``jnp.add``) or a pytree of them, a prefix of ``init`` (e.g. ``(jnp.add, jnp.minimum)``).
    """
    count = jnp.asarray(count).astype(jnp.int32)

    def body(j, acc):
        start = j * chunk
        rows = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk, 0), data)
        valid = start + jnp.arange(chunk, dtype=jnp.int32) < count
        new = fn(rows, valid)
        if callable(combine):
            return jax.tree.map(combine, acc, new)
        return jax.tree.map(lambda f, a, b: jax.tree.map(f, a, b), combine, acc, new)

    return jax.lax.fori_loop(0, (count + chunk - 1) // chunk, body, init)


def map_replicate_chunks(batched: Callable, seed, run: Setup, desc: str, progress: bool | None) -> Any:
    """Run ``batched(keys)`` over chunks of ``run.chunk_size`` replicate keys (``fold_in(seed, index)``) with a
    progress bar; returns the NumPy outputs (G, R, ...) concatenated over chunks (independent of chunking)."""
    from collapse_jax.progress import bar
    from collapse_jax.replicates import replicate_keys

    total = run.num_replicates
    chunk = run.chunk_size or total
    outs = []
    with bar(total, desc, "rep", disable=None if progress is None else not progress) as pbar:
        for start in range(0, total, chunk):
            count = min(chunk, total - start)
            outs.append(jax.tree.map(np.asarray, batched(replicate_keys(seed, start, count))))
            pbar.update(count)
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *outs)
