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

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks

REGIMES = ("replace", "accumulate")


def check_config(config, positive_floats: tuple[str, ...]) -> None:
    """Validate the fields shared by the raw-sample configs (``regime``, ``max_iter``, ``tol``, ``chunk``,
    ``max_points``, ``lanes``, ``buffer``) and the named fields that must be positive numbers."""
    if config.regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {config.regime!r}")
    for name in ("max_iter", "chunk", "max_points", "lanes"):
        _checks.positive_int(name, getattr(config, name))
    if config.max_iter > 2**31 - 1:  # (an int32 loop bound: 10**30 overflowed in the jitted call, after the run
        # folder was made; a user trial, 2026-12-06)
        raise ValueError(f"max_iter must be at most 2**31 - 1 = {2**31 - 1:,}, got {config.max_iter}")
    if config.buffer is not None:
        _checks.positive_int("buffer", config.buffer)
    _checks.in_interval("tol", config.tol, 0.0, math.inf, low_open=True, high_open=True)  # (inf: EM never ran)
    for name in positive_floats:
        # (inf: every fit NaN)
        _checks.in_interval(name, getattr(config, name), 0.0, math.inf, low_open=True, high_open=True)


def points_needed(n: np.ndarray, pooled: bool) -> int:
    """Raw samples one replicate holds for the schedule(s) ``n``: ``max n_t``, or ``max_t (n_0 + ... + n_t)`` when
    the generations are ``pooled`` (accumulate)."""
    n = np.atleast_2d(n)
    return int(np.cumsum(n, axis=-1).max()) if pooled else int(n.max())


def plan(n: np.ndarray, regime: str, chunk: int, max_points: int, model: str) -> tuple[int, int]:
    """Static sizes ``(buffer, chunk)`` for a sample-size schedule (or a grid of schedules) ``n``.

    ``chunk`` is ``min(chunk, max n_t)``. ``buffer`` holds ``max n_t`` rows (replace) or ``max_t (n_0 + ... + n_t)``
    rows (accumulate), plus one chunk (batches are drawn a whole chunk at a time), rounded up to a multiple of
    ``chunk``. Raises if the rows needed exceed ``max_points`` per replicate.
    """
    n = np.atleast_2d(n)
    need = points_needed(n, regime != "replace")
    if need > max_points:
        what = "max n_t" if regime == "replace" else "n_0 + ... + n_T"
        raise ValueError(f"{model} {regime}: the refit reads every raw sample, so each replicate needs a buffer of "
                         f"{need} points ({what}) but max_points={max_points}; lower n_t or the number of steps, "
                         "or raise max_points (time and memory grow linearly with it)")
    chunk = min(int(chunk), int(n.max()))
    return -(-(need + chunk) // chunk) * chunk, chunk


def sized(config, n: np.ndarray, model: str, numbers_per_row: int):
    """``config`` with ``buffer`` and ``chunk`` set by :func:`plan` for the schedule(s) ``n`` (static sizes of the
    kernel), after checking that ``config.lanes`` buffers (the replicates a device runs in lockstep) fit in memory."""
    buffer, chunk = plan(n, config.regime, config.chunk, config.max_points, model)
    itemsize = 8 if jax.config.jax_enable_x64 else 4
    _checks.fits_in_memory("lanes (replicates in lockstep, each with a raw-sample buffer)", config.lanes,
                           buffer * numbers_per_row * itemsize)
    return dataclasses.replace(config, buffer=buffer, chunk=chunk)


def check_sized(config, n: np.ndarray, model: str) -> None:
    """A ValueError unless ``config`` was sized for the schedule ``n`` (its buffer at least what :func:`plan` asks
    for with the config's own chunk), as the kernels read it (a kernel's contract check)."""
    buffer, _ = plan(n, config.regime, config.chunk, config.max_points, model)
    if require_buffer(config) < buffer:
        raise ValueError(f"{type(config).__name__}.buffer = {config.buffer} is smaller than the {buffer} rows the "
                         "schedule n needs: size the config for it (sized_config(config, n))")


def require_buffer(config) -> int:
    """``config.buffer``, or a ValueError if the config was not sized for a schedule (:func:`sized`)."""
    if config.buffer is None:
        raise ValueError(f"{type(config).__name__}.buffer is None: size the config for the schedule first "
                         "(sized_config(config, n))")
    return config.buffer


def write_draws(buffer: Any, key: jax.Array, offset: jax.Array, count: jax.Array, chunk: int,
                draw: Callable[[jax.Array, int], Any], bound: int | None = None) -> Any:
    """Fill rows ``offset .. offset + count - 1`` of ``buffer`` with ``draw(key_j, chunk)``, chunk ``j`` after chunk.

    ``draw`` returns a pytree shaped like ``buffer`` with ``chunk`` rows; chunk ``j`` uses ``fold_in(key, j)``. The
    last chunk may write past ``offset + count``: those rows are invalid (beyond the count) and later overwritten.
    Cost O(count), whatever the buffer size.

    ``bound``: a static ``>= count``; the loop then runs ``ceil(bound / chunk)`` times and keeps every row beyond
    ``offset + count`` as it was (same draws). Under ``vmap`` over counts that differ, a loop of traced length
    selects the whole buffer at every chunk.
    """
    offset = jnp.asarray(offset).astype(jnp.int32)
    count = jnp.asarray(count).astype(jnp.int32)

    def body(j, buf):
        start = offset + j * chunk
        rows = draw(jax.random.fold_in(key, j), chunk)
        if bound is None:
            return jax.tree.map(lambda b, r: jax.lax.dynamic_update_slice_in_dim(b, r.astype(b.dtype), start, 0),
                                buf, rows)
        keep = start + jnp.arange(chunk) < offset + count  # all False past the count (also where start is clamped)

        def put(b, r):
            old = jax.lax.dynamic_slice_in_dim(b, start, chunk)
            mask = keep.reshape((chunk,) + (1,) * (old.ndim - 1))
            return jax.lax.dynamic_update_slice_in_dim(b, jnp.where(mask, r.astype(b.dtype), old), start, 0)

        return jax.tree.map(put, buf, rows)

    trips = (count + chunk - 1) // chunk if bound is None else -(-bound // chunk)
    return jax.lax.fori_loop(0, trips, body, buffer)


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
