"""One driver for Monte Carlo replicates of any simulator: the one-replicate kernel built from a simulator's
``init``/``step`` contract, keys from global indices, vmap over replicates (and over a grid of parameters), one jit
at the outermost level, the replicate axis sharded over every device, chunks sized to a memory budget, a progress
bar in replicates.

A simulator exposes, for ONE replicate (docs/driver.md):

- ``init(key, params, config) -> state``: the state at t = 0 (the initial fit);
- ``step_inputs(params, config) -> inputs``: the per-step inputs (``alpha_t``, ``n_t``, ...) for t = 1..T, arrays
  with a leading ``step`` axis;
- ``step(key, state, inputs_t, config) -> (state, record_t)``: one update, the paper's equation;
- optionally ``observe(state, config) -> record``: the record of a state (the record at t = 0).

``params`` is a pytree of arrays (what may vary across a grid), ``config`` a frozen, hashable dataclass (static).
:func:`scan_kernel` turns these into ``kernel(key, params, config) -> records`` for one replicate; the driver calls
it for replicates ``first .. first + R - 1`` with keys ``fold_in(key(seed), index)``, so the draws never depend on
chunking, padding or the number of devices (tests/test_driver.py; results only in the last bits where XLA compiles a
reduction differently for another batch width, docs/driver.md). The driver is the only place that vmaps, jits,
shards and chunks.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from collapse_jax import _checks
from collapse_jax.progress import bar
from collapse_jax.replicates import (AXIS, check_mesh, chunk_keys, padded_count, replicate_keys, replicate_sharding,
                                     root_key)

Kernel = Callable[[jax.Array, Any, Any], Any]
_COMPILED: dict = {}
_BYTES: dict = {}


def scan_kernel(init: Callable, step: Callable, step_inputs: Callable, observe: Callable | None = None,
                check: Callable | None = None) -> Kernel:
    """The one-replicate kernel ``kernel(key, params, config) -> records`` of an ``init``/``step`` simulator.

    ``key`` splits into ``(init_key, steps_key)``; ``state_0 = init(init_key, params, config)``; step t = 1..T uses
    the t-th key of ``split(steps_key, T)`` and the t-th slice of ``step_inputs(params, config)`` (``lax.scan``).
    Records have a leading step axis: (T, ...), or (T + 1, ...) with ``observe(state_0, config)`` first.
    ``check(params, config)``: the simulator's check of one grid point's concrete values (a ValueError naming what
    is wrong), kept as ``kernel.check`` for :func:`run_replicates` (:func:`check_params`).
    """

    def kernel(key: jax.Array, params, config):
        init_key, steps_key = jax.random.split(key)
        state = init(init_key, params, config)
        inputs = _step_inputs(step_inputs, params, config)
        keys = jax.random.split(steps_key, jax.tree.leaves(inputs)[0].shape[0])
        _, records = jax.lax.scan(lambda s, x: step(x[0], s, x[1], config), state, (keys, inputs))
        if observe is None:
            return records
        first = jax.tree.map(jnp.asarray, observe(state, config))  # (a Python float failed at a[None])
        _check_first_record(first, records)
        return jax.tree.map(lambda a, rest: jnp.concatenate([a[None], rest]), first, records)

    kernel.check = check
    return kernel


def check_config_hashable(config) -> None:
    """A ValueError unless ``config`` can be jit's static argument (hashable): a plain ``TypeError: unhashable type``
    from inside the driver said nothing of what to change (a user trial, 2026-12-05)."""
    try:
        hash(config)
    except TypeError as exc:
        raise ValueError(f"config must be hashable (it is a static argument of jit): a frozen dataclass whose fields "
                         f"are hashable (tuples, not lists or arrays), or None; got {type(config).__name__} "
                         f"({exc})") from None


def _step_inputs(step_inputs: Callable, params, config):
    """``step_inputs(params, config)`` as arrays with one leading step axis of one length, or a ValueError naming the
    function (Python lists, scalars or an empty tuple failed inside the kernel with an AttributeError or an
    IndexError; a user trial)."""
    inputs = jax.tree.map(jnp.asarray, step_inputs(params, config))
    leaves = jax.tree.leaves(inputs)
    if not leaves or any(x.ndim == 0 for x in leaves) or len({x.shape[0] for x in leaves}) != 1:
        raise ValueError(f"step_inputs(params, config) must return arrays with one leading step axis of one length "
                         f"T (the steps t = 1..T), got shapes {[tuple(x.shape) for x in leaves]} (a Python list is a "
                         "tree of its items to JAX: make it an array, jnp.asarray(...))")
    return inputs


def _check_first_record(first, records) -> None:
    """``observe(state_0)`` must give what ``step`` records at each step (same structure, shapes and dtypes): a
    ValueError saying which differs (it was a concatenation error naming neither function)."""
    if jax.tree.structure(first) != jax.tree.structure(records):
        raise ValueError(f"observe(state_0, config) returned {jax.tree.structure(first)} but step records "
                         f"{jax.tree.structure(records)}; the t = 0 record must have step's record structure")
    for a, rest in zip(jax.tree.leaves(first), jax.tree.leaves(records)):
        a = jnp.asarray(a)
        if a.shape != rest.shape[1:] or a.dtype != rest.dtype:
            raise ValueError(f"observe(state_0, config) returned a record of shape {a.shape} and dtype {a.dtype} "
                             f"but step records shape {rest.shape[1:]} and dtype {rest.dtype} per step; the t = 0 "
                             "record must match step's")


class _Pair:
    """A ``grid_axes`` entry with the part of ``params`` it governs (a leaf for JAX's tree functions)."""

    def __init__(self, axis, sub):
        self.axis, self.sub = axis, sub


def check_grid_axes(params, grid_axes) -> int | None:
    """The grid size G of ``params`` under ``grid_axes`` (None without a grid), or a ValueError naming the field
    that cannot be gridded: ``grid_axes`` not a prefix of ``params``, a gridded field without a leading axis, or
    gridded fields of different lengths (an IndexError or a broadcast error inside the kernel before)."""
    if grid_axes is None:
        return None
    try:
        pairs = jax.tree.map(_Pair, grid_axes, params, is_leaf=lambda x: x is None)
    except ValueError as exc:
        raise ValueError(f"grid_axes must have the structure of params (a prefix of it, 0 or None per field): "
                         f"{exc}") from None
    sizes = {}
    for path, pair in jax.tree_util.tree_flatten_with_path(pairs, is_leaf=lambda x: isinstance(x, _Pair))[0]:
        axis, sub = pair.axis, pair.sub
        if axis is None:
            continue
        name = f"params{jax.tree_util.keystr(path)}"
        if axis != 0:
            raise ValueError(f"grid_axes entries must be 0 (gridded) or None (shared), got {axis!r} for {name}")
        for leaf in jax.tree.leaves(sub):
            if not jnp.shape(leaf):
                raise ValueError(f"grid_axes marks {name} as gridded, but it is a scalar (a gridded field has the "
                                 "grid as its leading axis)")
            sizes[name] = jnp.shape(leaf)[0]
    if not sizes:
        raise ValueError("grid_axes marks no field as gridded (0); pass grid_axes=None for no grid")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"gridded fields must have the same leading grid length, got "
                         f"{', '.join(f'{k} {v}' for k, v in sizes.items())}")
    return next(iter(sizes.values()))


def check_params(kernel: Kernel, params, config, grid_axes=None) -> None:
    """The kernel's own check (``kernel.check``, :func:`scan_kernel`) of ``params`` at every grid point, where the
    values are concrete; a ValueError naming the grid point. A user trial (2026-12-06): through
    :func:`run_replicates`, the Gaussian ran ``n = 0`` (losses of exactly 1), ``sigma = -1`` and ``alpha = 1.5``
    without a word, and a wrong ``grid_axes`` failed deep inside the kernel, where each ``simulate`` refuses them."""
    check = getattr(kernel, "check", None)
    if check is None or _checks.is_traced(params):
        return
    size = check_grid_axes(params, grid_axes)
    params = jax.tree.map(_checks.host_array, params)  # (once: a JAX array indexed cell by cell cost 0.3 ms a cell)
    for i in range(1) if size is None else range(size):
        try:
            check(params if size is None else _grid_point(params, grid_axes, i), config)
        except ValueError as exc:  # (the grid's part said: "alpha must be a 1-D schedule, got shape ()" of a 1-D
            # schedule marked as gridded read as a grid of scalars; a user trial, 2026-12-07)
            where = "" if size is None else (f" (grid point {i} of {size}: grid_axes takes the leading axis of every "
                                             "field it marks 0 as the grid, and gives the kernel the rest)")
            raise ValueError(f"params{where}: {exc}") from None


def _grid_point(params, grid_axes, i):
    """Grid point ``i`` of ``params``: leaves whose ``grid_axes`` entry is 0 indexed at ``i``, the others shared."""
    return jax.tree.map(lambda axis, sub: sub if axis is None else jax.tree.map(lambda x: x[i], sub),
                        grid_axes, params, is_leaf=lambda x: x is None)


def batched(kernel: Kernel, config, *, grid_axes=None, mesh=None, lanes: int | None = None) -> Callable:
    """``(keys (R,), params) -> outputs`` (R, ...) or, with a grid, (G, R, ...): jitted once per kernel, config,
    grid layout, mesh and lanes (cached), the replicate axis split over the mesh.

    ``lanes`` None: one ``vmap`` over the replicates (and over the grid). An integer: each device maps its replicates
    ``lanes`` at a time (``lax.map``) and the grid one point after the other, for kernels with data-dependent loops
    (Newton, EM), whose ``while_loop`` under a wide ``vmap`` runs until its slowest lane is done.
    """
    mesh = check_mesh(mesh)
    cache_key = (kernel, config, _grid_key(grid_axes), mesh, lanes)
    if cache_key in _COMPILED:
        return _COMPILED[cache_key]

    def one(key, params):
        return kernel(key, params, config)

    if lanes is None:
        over_replicates = jax.vmap(one, in_axes=(0, None))
        fn = over_replicates if grid_axes is None else jax.vmap(over_replicates, in_axes=(None, grid_axes))
        _COMPILED[cache_key] = jax.jit(fn, in_shardings=(replicate_sharding(mesh), None))
    else:
        lanes = _checks.positive_int("lanes", lanes)

        def over_replicates(keys, params):
            return jax.lax.map(lambda k: one(k, params), keys, batch_size=lanes)

        def local(keys, params):  # one device's replicates
            if grid_axes is None:
                return over_replicates(keys, params)
            points = jnp.arange(check_grid_axes(params, grid_axes))
            return jax.lax.map(lambda i: over_replicates(keys, _grid_point(params, grid_axes, i)), points)

        out_spec = PartitionSpec(AXIS) if grid_axes is None else PartitionSpec(None, AXIS)
        # check_vma off: kernels build their loop carries from replicated zeros, which the check would flag
        _COMPILED[cache_key] = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(AXIS), PartitionSpec()),
                                                     out_specs=out_spec, check_vma=False))
    return _COMPILED[cache_key]


def _grid_key(grid_axes):
    """A hashable description of a ``grid_axes`` prefix (None entries kept, in place: dropped from the leaves, the
    prefixes ``P(0, None)`` and ``P(None, 0)`` shared one compiled function, and the second ran the first's grid;
    a user trial, 2026-12-06)."""
    if grid_axes is None:
        return None
    is_none = lambda x: x is None  # noqa: E731
    return jax.tree.structure(grid_axes, is_leaf=is_none), tuple(jax.tree.leaves(grid_axes, is_leaf=is_none))


def replicate_bytes(kernel: Kernel, params, config, grid_axes=None) -> int:
    """Bytes of one replicate's outputs (over the whole grid), from the kernel's abstract evaluation (traced once per
    kernel, config, grid layout and parameter shapes: tracing a kernel with loops costs as much as a short run)."""
    leaves, treedef = jax.tree.flatten(jax.tree.map(jnp.asarray, params))
    cache_key = (kernel, config, _grid_key(grid_axes), treedef,
                 tuple((x.shape, x.dtype.name) for x in leaves))
    if cache_key not in _BYTES:
        key = jax.random.key(0)
        if grid_axes is None:
            out = jax.eval_shape(lambda k, p: kernel(k, p, config), key, params)
        else:
            out = jax.eval_shape(jax.vmap(lambda k, p: kernel(k, p, config), in_axes=(None, grid_axes)), key, params)
        _BYTES[cache_key] = int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(out)))
    return _BYTES[cache_key]


def run_replicates(kernel: Kernel, params, config, num_replicates: int, seed: int | jax.Array = 0, *,
                   grid_axes=None, first_replicate: int = 0, chunk_size: int | None = None,
                   memory_budget: int | None = None, mesh=None, lanes: int | None = None,
                   progress: bool | None = None, desc: str = "replicates") -> Any:
    """Outputs of ``kernel`` for ``num_replicates`` replicates as NumPy arrays, replicate axis first ((R, ...);
    with ``grid_axes``, (G, R, ...)).

    Args:
      kernel, params, config: see the module docstring; ``config`` must be hashable (it is a static argument).
      grid_axes: None, or a pytree prefix of ``params`` giving each leaf's grid axis (0) or None (shared), as
        ``jax.vmap``'s ``in_axes``: every grid point runs the same replicates (common random numbers).
      first_replicate: global index of the first replicate (a later call continues a run exactly).
      chunk_size: replicates per compiled call; default: as many as ``memory_budget`` allows.
      memory_budget: bytes one call may take (default: half the memory of the default device, as
        :func:`collapse_jax._checks.available_memory_bytes` reports). Without ``chunk_size``, the chunk is first
        sized for eight times the outputs, then cut down (and compiled again) while XLA's memory analysis of the
        compiled call (temporaries, arguments, outputs) exceeds the budget.
      mesh: a one-axis device mesh (default: every device); each chunk is padded to a multiple of its size.
      lanes: see :func:`batched` (None: vmap).
      progress: show a bar in replicates (None: :func:`collapse_jax.progress.enabled`, i.e. ``--progress`` or
        ``COLLAPSE_JAX_PROGRESS``).
    """
    R = _checks.positive_int("num_replicates", num_replicates)
    _checks.replicate_range(first_replicate, R)  # (map_chunks checks it again; here before anything compiles)
    root_key(seed)                               # (the seed too)
    check_config_hashable(config)
    check_grid_axes(params, grid_axes)
    check_params(kernel, params, config, grid_axes)
    mesh = check_mesh(mesh)
    chunk = chunk_replicates(R, mesh, chunk_size, memory_budget,
                             lambda: max(1, 8 * replicate_bytes(kernel, params, config, grid_axes)))
    chunk = padded_count(chunk, mesh)  # every call the same shape: one compilation
    run = batched(kernel, config, grid_axes=grid_axes, mesh=mesh, lanes=lanes)
    params = jax.tree.map(jnp.asarray, params)
    if chunk_size is None:  # the guess above knows the outputs only: fit the compiled call's working memory
        chunk = fit_chunk(lambda keys: run.lower(keys, params), seed, chunk, mesh, memory_budget_bytes(memory_budget))
    return map_chunks(lambda keys: run(keys, params), R, seed, chunk, first_replicate=first_replicate,
                      replicate_axis=0 if grid_axes is None else 1, pad=True, progress=progress, desc=desc)


def chunk_replicates(num_replicates: int, mesh, chunk_size: int | None, memory_budget: int | None,
                     bytes_per_replicate: Callable[[], int], *, strict: bool = False) -> int:
    """Replicates per call, at most ``num_replicates``: ``chunk_size``, or as many as ``memory_budget`` bytes hold
    at ``bytes_per_replicate()`` each (called only then; the budget defaults to half the default device's memory),
    rounded down to a multiple of the mesh size (at least one per device).

    ``strict``: ``bytes_per_replicate`` is the kernel's own bound on a call's memory (not a first guess that
    :func:`fit_chunk` refines), so one replicate per device above the budget is a ValueError naming
    ``memory_budget``, as :func:`fit_chunk` raises it."""
    if chunk_size is not None:
        return min(_checks.positive_int("chunk_size", chunk_size), num_replicates)
    budget = memory_budget_bytes(memory_budget)
    each = bytes_per_replicate()
    if strict and each * mesh.size > budget:
        raise ValueError(f"one replicate per device needs {each * mesh.size / 2 ** 20:.4g} MiB of device memory in a "
                         f"call, more than memory_budget = {budget / 2 ** 20:.4g} MiB{_budget_hint(memory_budget)}")
    return min(max(mesh.size, budget // each // mesh.size * mesh.size), num_replicates)


def _budget_hint(memory_budget: int | None) -> str:
    """What a caller refused by the memory budget can do: a smaller problem (the command-line tools have no budget
    option and use the default, half the device's memory) or, from Python, a larger ``memory_budget``."""
    default = " (the default: half the device's memory)" if memory_budget is None else ""
    return f"{default}; shrink the problem, or from Python pass a larger memory_budget"


def memory_budget_bytes(memory_budget: int | None) -> int:
    """``memory_budget``, checked, or half the memory of the default device (host RAM on a CPU)."""
    budget = memory_budget if memory_budget is not None else _checks.available_memory_bytes() // 2
    return _checks.positive_int("memory_budget", budget)


def call_bytes(lowered) -> int | None:
    """Device bytes one call of a lowered computation needs by XLA's memory analysis of its compiled program
    (temporaries, arguments and outputs, less what outputs alias), or None where the backend gives none. Compiles
    it: the same compilation as the first call's, which jit's cache then reuses."""
    stats = lowered.compile().memory_analysis()
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
               - stats.alias_size_in_bytes)


def fit_chunk(lower: Callable[[jax.Array], Any], seed: int | jax.Array, chunk: int, mesh, budget: int) -> int:
    """The replicates per call, at most ``chunk`` (a multiple of the mesh size), whose compiled call fits in
    ``budget`` bytes by :func:`call_bytes` of ``lower(keys)``: ``chunk`` when it fits (no extra compilation), else
    scaled down by the ratio and compiled again until it fits (once or twice: the need grows about linearly with
    the chunk). ValueError when one replicate per device does not fit."""
    while True:  # the chunk shrinks strictly each round, down to one replicate per device
        need = call_bytes(lower(replicate_keys(seed, 0, chunk)))
        if need is None or need <= budget:
            return chunk
        if chunk == mesh.size:
            raise ValueError(f"one replicate per device needs {need / 2 ** 20:.4g} MiB of device memory in a call "
                             f"(XLA's memory analysis), more than memory_budget = {budget / 2 ** 20:.4g} MiB"
                             + _budget_hint(budget))
        chunk = max(mesh.size, int(chunk * budget / need) // mesh.size * mesh.size)


def map_chunks(run: Callable[[jax.Array], Any], num_replicates: int, seed: int | jax.Array, chunk: int, *,
               first_replicate: int = 0, replicate_axis: int = 0, pad: bool = True, progress: bool | None = None,
               desc: str = "replicates") -> Any:
    """``run(keys)`` over chunks of ``chunk`` replicate keys ``fold_in(key(seed), index)``, with a bar in replicates;
    the NumPy outputs concatenated along ``replicate_axis``.

    ``pad``: the last chunk is padded with later replicates (dropped from the outputs) so that every call has the
    same shape (one compilation); else the last call is smaller. For batched kernels that are not a
    :func:`run_replicates` kernel (the native and Pallas multinomial kernels).
    """
    R = _checks.positive_int("num_replicates", num_replicates)
    first = _checks.replicate_range(first_replicate, R)
    chunk = _checks.positive_int("chunk_size", chunk)
    if progress is not None:  # ("no" drew a bar; a user trial, 2026-12-06)
        progress = _checks.flag("progress", progress)
    root_key(seed)  # (checked before the bar opens)
    whole, treedef = None, None
    with bar(R, desc, "rep", disable=None if progress is None else not progress) as pbar:
        for start in range(0, R, chunk):
            count = min(chunk, R - start)
            keys = chunk_keys(seed, first + start, chunk if pad else count)
            try:
                out = wait_ready(run(keys))
            except jax.errors.JaxRuntimeError as exc:  # a chunk_size given or a budget beyond what the device has
                if "RESOURCE_EXHAUSTED" not in str(exc):  # left: say what to change
                    raise
                raise ValueError(f"a chunk of {keys.shape[0]} replicates needs more device memory than is available "
                                 f"({str(exc).splitlines()[0][:200]}); pass a smaller chunk_size or memory_budget"
                                 ) from None
            leaves, treedef = jax.tree.flatten(out)
            leaves = [np.asarray(x) for x in leaves]
            if whole is None:
                if count == R:  # one chunk: one copy (a writable NumPy array; a take and a concatenation before
                    # were a third of the native Gaussian simulator's time, 2026-12-06)
                    whole = [np.array(x) if x.shape[replicate_axis] == R else
                             np.take(x, np.arange(R), axis=replicate_axis) for x in leaves]
                    pbar.update(count)
                    break
                each = sum(x.nbytes // x.shape[replicate_axis] for x in leaves)
                _checks.fits_in_memory("num_replicates (outputs on the host)", R, each,
                                       remedy="per call, and run the rest with first_replicate")
                whole = [np.empty(x.shape[:replicate_axis] + (R,) + x.shape[replicate_axis + 1:], x.dtype)
                         for x in leaves]
            for dest, x in zip(whole, leaves):  # the chunk's replicates into their place (no concatenation)
                index = (slice(None),) * replicate_axis
                dest[index + (slice(start, start + count),)] = x[index + (slice(0, count),)]
            pbar.update(count)
    return jax.tree.unflatten(treedef, whole)


def wait_ready(tree) -> Any:
    """``tree`` once its JAX arrays are computed, waiting so that a signal's Python handler runs meanwhile (SIGTERM,
    SIGHUP, Ctrl-C): ``np.asarray`` of a running computation blocks in C, where Python handles no signal, so a long
    kernel call ran past a scheduler's SIGTERM for hours (a user trial, 2026-12-07: a one-replicate GMM network of
    10^5 steps). A handler that raises leaves the computation running in the background (its result unused); errors
    of the computation itself are raised here, in the caller's thread, as before."""
    leaves = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
              for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]  # (typed keys have no is_ready: an audit)
    if not all(x.is_ready() for x in leaves):
        done = threading.Event()

        def wait() -> None:
            try:
                jax.block_until_ready(leaves)
            except Exception:  # noqa: BLE001 - raised again below, in the caller's thread
                pass
            finally:
                done.set()

        threading.Thread(target=wait, name="collapse-jax wait_ready", daemon=True).start()
        done.wait()  # (a lock wait: interrupted by a signal whose handler raises)
    jax.block_until_ready(leaves)
    return tree


def stack_cells(cells) -> tuple[Any, Any]:
    """``(params, grid_axes)`` of a grid given as a list of G parameter pytrees of one structure and shapes: leaves
    equal in every cell are shared (``grid_axes`` None), the others stacked along a leading ``grid`` axis (0).
    ``grid_axes`` is None when no leaf varies (then the cells are one point)."""
    leaves, treedef = zip(*(jax.tree.flatten(cell) for cell in cells))
    if any(t != treedef[0] for t in treedef) or not leaves:
        raise ValueError("the grid's cells must be one or more parameter sets of the same structure")
    stacked, axes = [], []
    for values in zip(*leaves):
        values = [np.asarray(v) for v in values]
        if any(v.shape != values[0].shape for v in values):
            raise ValueError(f"the grid's cells must have equal shapes, got {sorted({v.shape for v in values})}")
        same = all(np.array_equal(v, values[0]) for v in values[1:])
        stacked.append(values[0] if same else np.stack(values))
        axes.append(None if same else 0)
    if all(a is None for a in axes):
        return jax.tree.unflatten(treedef[0], stacked), None
    return jax.tree.unflatten(treedef[0], stacked), jax.tree.unflatten(treedef[0], axes)


def check_jax_backend(backend: str, model: str) -> None:
    """The ``backend`` of a simulator with only the JAX implementation: ``"auto"`` or ``"jax"``."""
    if backend not in ("auto", "jax"):
        raise ValueError(f"backend must be 'auto' or 'jax' (the {model} simulator has no native kernel), "
                         f"got {backend!r}")
