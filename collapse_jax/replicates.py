"""Replicate keys and sharding of the replicate axis over all local devices (and hosts).

Each replicate's key is derived from its global index with ``jax.random.fold_in(root, index)``, so a replicate's
draw never depends on how replicates are chunked, padded or spread over devices and processes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from collapse_jax import _checks

AXIS = "replicas"


def is_prng_key(value) -> bool:
    """Whether ``value`` is a PRNG key: typed (``jax.random.key``) or a raw uint32 one (``jax.random.PRNGKey``)."""
    if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        return True
    return isinstance(value, (jax.Array, np.ndarray)) and value.dtype == np.uint32 and value.shape[-1:] == (2,)


def check_replicate_keys(name: str, keys):
    """``keys`` as one PRNG key per replicate (:func:`is_prng_key`): a (R,) array of ``jax.random.key``, or (R, 2)
    uint32 raw keys (``jax.random.split(key, R)`` either way); a ValueError naming ``name`` otherwise (one key gave
    an IndexError deep inside the native call, integer seeds a TypeError about key data: a user trial, 2026-12-06)."""
    typed = isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
    if is_prng_key(keys) and np.ndim(keys) == (1 if typed else 2):
        return keys
    raise ValueError(f"{name} must hold one key per replicate: a (R,) array of jax.random.key or (R, 2) uint32 raw "
                     f"keys, e.g. jax.random.split(jax.random.key(0), R); got {type(keys).__name__} of shape "
                     f"{getattr(keys, 'shape', None)} and dtype {getattr(keys, 'dtype', None)}")


def root_key(seed: int | jax.Array) -> jax.Array:
    """A typed PRNG key from an integer seed (keys pass through unchanged; an integer JAX array, e.g. traced, goes
    to ``jax.random.key``): ``jax.random.key(seed)`` as JAX makes it with x64 on, whether x64 is on or not.
    (Without x64, ``jax.random.key`` keeps a seed's low 32 bits only, so seed 2**32 drew what seed 0 draws; for the
    default threefry keys the two halves are placed here instead.)"""
    seed = _checks._integer_scalar(seed) if isinstance(seed, np.ndarray) else seed  # (np.array(3) was refused)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seed = int(seed)
        if not 0 <= seed < 2**63:  # (negative seeds ran here but were refused by every command and by the
            # language-model and metric APIs, so a run from Python could not be repeated from the command line; a
            # user trial, 2026-12-06)
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1] or a PRNG key, got {seed}")
        if 0 <= seed < 2**32 or jax.config.jax_enable_x64:
            return jax.random.key(seed)
        if jax.config.jax_default_prng_impl != "threefry2x32":
            raise ValueError(f"seed {seed} is outside [0, 2**32 - 1], which the PRNG implementation "
                             f"{jax.config.jax_default_prng_impl!r} keeps apart only with jax_enable_x64")
        words = np.asarray([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], np.uint32)
        return jax.random.wrap_key_data(jnp.asarray(words))
    if is_prng_key(seed):
        typed = jnp.issubdtype(seed.dtype, jax.dtypes.prng_key)
        if seed.shape != (() if typed else (2,)):  # (a batch of keys: JAX's fold_in error; a user trial, 2026-12-07)
            raise ValueError(f"seed must be one PRNG key, got a batch of keys of shape {seed.shape}: the run's "
                             "replicates take their own keys from it (fold_in(key, replicate index))")
        return seed
    if isinstance(seed, jax.Array) and seed.ndim == 0 and jnp.issubdtype(seed.dtype, jnp.integer):
        if not isinstance(seed, jax.core.Tracer) and int(seed) < 0:  # (as an int: refused; a user trial)
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1] or a PRNG key, got {int(seed)}")
        return jax.random.key(seed)  # an integer array, e.g. traced inside jit: jax.random.key's own rules
    raise ValueError(f"seed must be an integer or a PRNG key (jax.random.key), got {type(seed).__name__} {seed!r}")


def replicate_keys(seed: int | jax.Array, start: int, count: int) -> jax.Array:
    """Keys of replicates ``start .. start+count-1``: ``fold_in(root_key(seed), index)``. ``start`` and ``count``
    are integers >= 0 with ``start + count <= 2**32`` (replicate indices are 32-bit), else a ValueError naming them
    (an audit, 2026-12-07: ``start = 2**32`` gave replicate 0's keys again, ``count = -5`` no keys and ``count =
    2.5`` three, all without a word)."""
    count = _checks.nonnegative_int("count", count)
    return chunk_keys(seed, _checks.replicate_range(start, count, names=("start", "count")), count)


def chunk_keys(seed: int | jax.Array, start: int, count: int) -> jax.Array:
    """:func:`replicate_keys` unchecked, for the runners' chunks: a padded chunk's indices may run past 2**32 - 1
    and wrap (the runners drop those replicates)."""
    root = root_key(seed)
    # a padded chunk may run past 2**32 - 1: its indices wrap (those replicates are dropped, and
    # _checks.replicate_range keeps the others below 2**32)
    idx = jnp.asarray(np.arange(start, start + count, dtype=np.uint64).astype(np.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(root, i))(idx)


def replicate_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``replicas`` over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def check_mesh(mesh) -> Mesh:
    """A simulator's ``mesh`` argument as the mesh its replicates are sharded over: None -> :func:`replicate_mesh`
    of every device; a list or tuple of devices -> their :func:`replicate_mesh`; a one-axis ``Mesh`` whose axis is
    named ``"replicas"`` (:data:`AXIS`) as it is. Anything else is a ValueError naming ``mesh``, before any compute
    (a device list failed deep in JAX with "'list' object has no attribute 'size'", a mesh with another axis name
    with "Resource axis: replicas ... not found"; the native kernels took either without a word; a user trial,
    2026-12-06)."""
    if mesh is None:
        return replicate_mesh()
    if isinstance(mesh, Mesh):
        if tuple(mesh.axis_names) != (AXIS,):
            raise ValueError(f"mesh must have one axis named {AXIS!r} (collapse_jax.replicates.replicate_mesh("
                             f"devices) makes one), got axes {tuple(mesh.axis_names)}")
        return mesh
    if isinstance(mesh, (list, tuple)) and mesh and all(isinstance(d, jax.Device) for d in mesh):
        return replicate_mesh(list(mesh))
    raise ValueError(f"mesh must be a list of devices or a one-axis Mesh named {AXIS!r} "
                     f"(collapse_jax.replicates.replicate_mesh(devices)), got {type(mesh).__name__}")


def replicate_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Sharding that splits the leading (replicate) axis over the mesh."""
    return NamedSharding(check_mesh(mesh), PartitionSpec(AXIS))  # ("x" failed with an AttributeError; 0 or [] ran
    # as every device: an audit, 2026-12-07)


def padded_count(count: int, mesh: Mesh | None = None) -> int:
    """``count`` rounded up to a multiple of the number of devices in the mesh."""
    count = _checks.nonnegative_int("count", count)  # (-3 gave -3, 2.5 gave 3.0: an audit, 2026-12-07)
    size = check_mesh(mesh).size
    return -(-count // size) * size
