"""One driver for Monte Carlo replicates of any simulator kernel: keys from global indices, vmap over replicates
(and over a grid of parameters), one jit at the outermost level, the replicate axis sharded over every device,
chunks sized to a memory budget, a progress bar in replicates.

A kernel is a pure function ``kernel(key, params, config) -> pytree`` for one replicate: ``key`` a typed PRNG key,
``params`` a pytree of arrays (what may vary across a grid), ``config`` a hashable static configuration. The driver
calls it for replicates ``first .. first + R - 1`` with keys ``fold_in(key(seed), index)``, so results never depend
on chunking, padding or the number of devices (tests/test_driver.py).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks
from collapse_jax.progress import bar
from collapse_jax.replicates import padded_count, replicate_keys, replicate_mesh, replicate_sharding

Kernel = Callable[[jax.Array, Any, Any], Any]
_COMPILED: dict = {}


def _batched(kernel: Kernel, config, grid_axes, mesh):
    """``(keys (R,), params) -> outputs`` (R, ...) or, with a grid, (G, R, ...); jitted once per kernel, config,
    grid layout and mesh, keys sharded over the mesh's replicate axis."""
    key = (kernel, config, None if grid_axes is None else jax.tree.structure(grid_axes),
           None if grid_axes is None else tuple(jax.tree.leaves(grid_axes)), mesh)
    if key not in _COMPILED:
        over_replicates = jax.vmap(lambda k, p: kernel(k, p, config), in_axes=(0, None))
        fn = over_replicates if grid_axes is None else jax.vmap(over_replicates, in_axes=(None, grid_axes))
        _COMPILED[key] = jax.jit(fn, in_shardings=(replicate_sharding(mesh), None))
    return _COMPILED[key]


def replicate_bytes(kernel: Kernel, params, config, grid_axes=None) -> int:
    """Bytes of one replicate's outputs (over the whole grid), from the kernel's abstract evaluation."""
    key = jax.random.key(0)
    if grid_axes is None:
        out = jax.eval_shape(lambda k, p: kernel(k, p, config), key, params)
    else:
        out = jax.eval_shape(jax.vmap(lambda k, p: kernel(k, p, config), in_axes=(None, grid_axes)), key, params)
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(out)))


def run_replicates(kernel: Kernel, params, config, num_replicates: int, seed: int | jax.Array = 0, *,
                   grid_axes=None, first_replicate: int = 0, chunk_size: int | None = None,
                   memory_budget: int | None = None, mesh=None, progress: bool | None = None,
                   desc: str = "replicates") -> Any:
    """Outputs of ``kernel`` for ``num_replicates`` replicates as NumPy arrays, replicate axis first ((R, ...);
    with ``grid_axes``, (G, R, ...)).

    Args:
      kernel, params, config: see the module docstring; ``config`` must be hashable (it is a static argument).
      grid_axes: None, or a pytree prefix of ``params`` giving each leaf's grid axis (0) or None (shared), as
        ``jax.vmap``'s ``in_axes``: every grid point runs the same replicates (common random numbers).
      first_replicate: global index of the first replicate (a later call continues a run exactly).
      chunk_size: replicates per compiled call; default: as many as ``memory_budget`` allows.
      memory_budget: bytes the outputs of one call may take (default: half the memory of the default device, as
        :func:`collapse_jax._checks.available_memory_bytes` reports); intermediate arrays are assumed to need up to
        eight times the outputs.
      mesh: a one-axis device mesh (default: every device); each chunk is padded to a multiple of its size.
      progress: show a bar in replicates (None: the ``COLLAPSE_JAX_PROGRESS`` default).
    """
    R = _checks.positive_int("num_replicates", num_replicates)
    first = _checks.nonnegative_int("first_replicate", first_replicate)
    mesh = mesh or replicate_mesh()
    if chunk_size is None:
        budget = memory_budget if memory_budget is not None else _checks.available_memory_bytes() // 2
        budget = _checks.positive_int("memory_budget", budget)
        per = max(1, 8 * replicate_bytes(kernel, params, config, grid_axes))
        chunk = max(mesh.size, budget // per // mesh.size * mesh.size)
    else:
        chunk = _checks.positive_int("chunk_size", chunk_size)
    chunk = padded_count(min(chunk, R), mesh)  # every call the same shape: one compilation
    run = _batched(kernel, config, grid_axes, mesh)
    params = jax.tree.map(jnp.asarray, params)
    axis = 0 if grid_axes is None else 1
    outs = []
    with bar(R, desc, "rep", disable=None if progress is None else not progress) as pbar:
        for start in range(0, R, chunk):
            count = min(chunk, R - start)
            keys = replicate_keys(seed, first + start, chunk)  # the last chunk is padded with later replicates
            out = run(keys, params)
            outs.append(jax.tree.map(lambda x: np.take(np.asarray(x), np.arange(count), axis=axis), out))
            pbar.update(count)
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *outs)
