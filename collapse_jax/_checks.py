"""Input validation shared by every simulator.

Every check raises ``ValueError`` with a message naming the parameter, the value received and the allowed range,
before any array is allocated or any function is compiled.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


class MissingExtraError(ImportError):
    """An optional extra (``llm``) is not installed; the message says how to install it (the command line prints it
    as one line)."""


def _integer_scalar(value: Any) -> Any:
    """A 0-d integer array (NumPy's or a concrete JAX one) as its int, anything else unchanged: ``jnp.asarray(200)``
    read "N must be an integer >= 1, got Array(200, ...)" (a user trial, 2026-12-06)."""
    if getattr(value, "shape", None) != () or is_traced(value):
        return value
    try:  # (a torch dtype or a PRNG key's is not a NumPy type: np.issubdtype raised TypeError; a user trial)
        integer = np.issubdtype(np.dtype(value.dtype), np.integer)
    except TypeError:
        return value
    return int(value) if integer else value


def not_traced(name: str, value: Any) -> None:
    """A TypeError naming ``name`` where ``value`` is a JAX tracer: the checks below read numbers on the host, and a
    function that calls them cannot run inside ``jax.jit``, ``vmap`` or ``grad`` (the messages said "alpha must be a
    number, got GradTracer(...)", which a tracer is; a user trial, 2026-12-06)."""
    if is_traced(value):
        raise TypeError(f"{name} is a traced JAX value (inside jax.jit, vmap or grad), but this function computes on "
                        "the host (NumPy) and cannot be transformed: call it outside the transformed function, on "
                        "concrete values")


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 1 (a 0-d integer array counts)."""
    not_traced(name, value)
    value = _integer_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def positive_whole(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not a whole number >= 1: an integer, or a finite float equal to
    one (``100.0``, ``np.float64(1e6)``), as sizes computed in floating point arrive (the schedules' ``n`` accept
    the same)."""
    whole = not isinstance(value, bool) and (
        isinstance(value, (int, np.integer))
        or (isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()))
    if not whole or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (an integer, or a float such as 100.0), got {value!r}")
    return int(value)


def nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= 0 (a 0-d integer array counts)."""
    not_traced(name, value)
    value = _integer_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def in_interval(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """Return ``value`` as a float, or raise if it lies outside the interval [low, high] (ends as given). Booleans
    and strings are refused (``float`` would take ``True`` as 1 and ``"0.5"`` as 0.5)."""
    not_traced(name, value)
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    ok = math.isfinite(x) or (math.isinf(x) and ((x > 0 and high == math.inf) or (x < 0 and low == -math.inf)))
    ok = ok and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value!r}")
    return x


SCALE_RANGE = (1e-150, 1e150)


def scale(name: str, value: Any) -> float:
    """A standard deviation of a scale-equivariant model (simulated at 1, its results rescaled in float64): a float in
    :data:`SCALE_RANGE`, where its square is a normal float64 (beyond, the rescaled results were inf or 0), or a
    ValueError naming it."""
    low, high = SCALE_RANGE
    try:  # one range in every message (NaN and -1 were told "(0.0, inf)", 1e-200 this range: a user trial)
        return in_interval(name, value, low, high)
    except ValueError as error:
        if "must lie in" not in str(error):
            raise
    raise ValueError(f"{name} must be in [{low:g}, {high:g}] (a positive scale whose square is a normal float64; the "
                     f"model is scale-equivariant: rescale data beyond it), got {value!r}")


def instance(name: str, value: Any, kind: type) -> None:
    """A ValueError naming ``name`` unless ``value`` is a ``kind`` (another simulator's config failed deep inside
    with an AttributeError; a user trial, 2026-12-06)."""
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}, got {value!r}")


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool, or a ValueError naming ``name`` unless it is a Python or NumPy bool (``"no"``, 0.5 or
    None would otherwise read as truthy or falsy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def is_traced(value: Any) -> bool:
    """Whether ``value`` (or any leaf of it) is a JAX tracer, i.e. an argument inside ``jit``/``vmap``/``grad``: its
    numbers are unknown there, so checks of values are skipped (checks of shapes still run)."""
    if "jax" not in sys.modules:  # (no value is a tracer before JAX is imported: no import for a parser's defaults)
        return False
    import jax

    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def under_trace() -> bool:
    """Whether JAX is staging a program here (inside a caller's ``jit``): there even an operation on constants is
    staged, so its result is a tracer. Concrete arguments do not tell (a NumPy constant inside ``jit``)."""
    import jax.numpy as jnp

    return is_traced(jnp.zeros((), jnp.int32))


def array_in_interval(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                      high_open: bool = False) -> np.ndarray:
    """Return ``value`` as a float64 NumPy array, or raise if an entry is NaN or lies outside [low, high] (ends as
    given); the message names the first such entry. A scalar is checked (and reported) as by :func:`in_interval`."""
    not_traced(name, value)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if arr.ndim == 0:
        return np.asarray(in_interval(name, value, low, high, low_open=low_open, high_open=high_open))
    ok = (arr > low if low_open else arr >= low) & (arr < high if high_open else arr <= high)
    ok &= np.isfinite(arr) | (np.isposinf(arr) & (high == math.inf)) | (np.isneginf(arr) & (low == -math.inf))
    if not np.all(ok):
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right} entrywise, got {name}{list(idx)} = "
                         f"{float(arr[idx])!r}")
    return arr


def host_array(value: Any) -> np.ndarray:
    """``value`` as a NumPy array, 16-bit floats (float16, bfloat16, from JAX, NumPy or torch) as float32 (exactly);
    a torch tensor detached and moved to the CPU first: ``np.asarray`` of a tensor that requires grad raised torch's
    RuntimeError, of a bfloat16 one a TypeError (a user trial, 2026-12-06). torch is never imported here."""
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()
        return value.numpy()
    arr = np.asarray(value)
    # (NumPy has no 16-bit float arithmetic worth the name and no bfloat16 number type: a JAX bfloat16 array read
    # "must be real numbers, got dtype bfloat16", a float16 one failed in LAPACK; a user trial, 2026-12-06)
    return arr.astype(np.float32) if arr.dtype.name in ("float16", "bfloat16") else arr


def finite_array(name: str, value: Any, *, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a float64 NumPy array; raise on NaN/inf, on a shape that does not match, or on a value
    that is not a rectangular array of real numbers (ragged rows, strings, complex numbers: their imaginary part was
    dropped with only NumPy's warning; an audit, 2026-12-04)."""
    not_traced(name, value)
    try:  # (complex refused by its dtype, not by catching NumPy's ComplexWarning: leaving warnings.catch_warnings
        # reset Python's once-per-line record of every warning, so a warning in a user's loop showed on every pass;
        # a user trial, 2026-12-06)
        raw = host_array(value)
        complex_ = np.iscomplexobj(raw) or (raw.dtype == object and any(isinstance(v, (complex, np.complexfloating))
                                                                        for v in raw.flat))
        arr = None if complex_ else np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a rectangular array of numbers ({exc})") from None
    if arr is None:
        raise ValueError(f"{name} must hold real numbers, got complex ones")
    if raw.dtype.kind in "USb" or (raw.dtype == object and any(isinstance(v, (str, bytes)) for v in raw.flat)):
        # (["1", "2"] were read as 1.0 and 2.0, where a scalar "0.5" is refused: an audit, 2026-12-07)
        raise ValueError(f"{name} must hold numbers, got {'booleans' if raw.dtype.kind == 'b' else 'strings'} "
                         f"(dtype {raw.dtype})")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite numbers (found NaN or inf)")
    return arr


def user_stacklevel() -> int:
    """``warnings.warn``'s stacklevel, from the function that calls this, of the first frame outside this library
    (``collapse_jax`` and ``llm_bridge``) and the wrappers around its functions (``functools``, ``contextlib``): the
    user's own line, whichever wrapper (``in_float64``, ``without_x64``) or helper led to the warning (a fixed
    stacklevel pointed at ``spectral.py``'s wrapper; a user trial, 2026-12-06)."""
    import os
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    roots = (str(here) + os.sep, str(here.parent / "llm_bridge") + os.sep)
    frame, level = sys._getframe(2), 2
    while frame is not None and (frame.f_code.co_filename.startswith(roots)
                                 or frame.f_code.co_filename.endswith(("functools.py", "contextlib.py"))):
        frame, level = frame.f_back, level + 1
    return level


@contextlib.contextmanager
def ignoring_warnings(category: type[Warning] = Warning, message: str = "") -> Iterator[None]:
    """Ignore warnings of ``category`` whose text starts with the regular expression ``message`` in this block,
    without forgetting which warnings were already shown. ``warnings.catch_warnings`` resets Python's record of the
    warnings each line has given (entering or leaving it counts as a change of filters), so inside a loop every
    warning seen before showed again at each pass (a review, 2026-12-07: a fine-tune's context warning once per
    LLM-web step, gmm_network's beta note once per proxy size). Here one "ignore" filter goes to the front of
    ``warnings.filters`` and is taken out again in place, which Python reads at each warning; where filters are
    per context (Python 3.14's ``context_aware_warnings``) it falls back to ``catch_warnings``."""
    import re
    import sys
    import warnings

    if getattr(sys.flags, "context_aware_warnings", False):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message, category)
            yield
        return
    item = ("ignore", re.compile(message, re.I) if message else None, category, None, 0)
    filters = warnings.filters  # (the list as this block starts: catch_warnings replaces it with a copy)
    filters.insert(0, item)
    try:
        yield
    finally:
        for i, entry in enumerate(filters):
            if entry is item:
                del filters[i]
                break


def env_int(name: str, low: int) -> int | None:
    """The environment variable ``name`` as an integer >= ``low`` (None when unset or empty), or a ValueError naming
    the variable (``int()``'s own message does not)."""
    import os

    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise ValueError(f"the environment variable {name} must be an integer >= {low}, got {text!r}")
    return value


def spd_matrix(name: str, value: Any, dim: int) -> np.ndarray:
    """Return ``value`` as a (dim, dim) symmetric positive-definite float64 matrix, or raise."""
    arr = finite_array(name, value, shape=(dim, dim))
    if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(arr).max()))):
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}^T| = {np.abs(arr - arr.T).max():.3g}")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        eig = np.linalg.eigvalsh(arr).min()
        raise ValueError(f"{name} must be positive definite; its smallest eigenvalue is {eig:.3g}") from None
    return arr


def simplex_vector(name: str, value: Any, size: int, *, atol: float = 1e-6) -> np.ndarray:
    """Return ``value`` as a probability vector of length ``size``, or raise if it is off the simplex."""
    arr = finite_array(name, value, shape=(size,))
    if np.any(arr < 0) or abs(arr.sum() - 1.0) > atol:
        raise ValueError(f"{name} must lie on the simplex (entries >= 0 summing to 1); "
                         f"got min {arr.min():.3g}, sum {arr.sum():.6g}")
    return arr


def random_seed(name: str, value: Any) -> int:
    """``value`` as an int seed in [0, 2**63 - 1] (JAX keys take 64-bit seeds), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63 - 1], got {value!r}")
    return int(value)


REPLICATE_INDICES = 2**32  # replicate r's key is fold_in(key(seed), r) with a 32-bit r


def replicate_range(first_replicate: Any, num_replicates: int, *,
                    names: tuple[str, str] = ("first_replicate", "num_replicates")) -> int:
    """``first_replicate`` as an int, or raise unless replicates ``first .. first + num_replicates - 1`` all have
    32-bit indices (replicate r's key is ``fold_in(key(seed), r)`` with a 32-bit r: beyond, keys would repeat);
    ``names``: the two arguments' names in the messages."""
    first = nonnegative_int(names[0], first_replicate)
    if first + num_replicates > REPLICATE_INDICES:
        raise ValueError(f"{names[0]} + {names[1]} must be at most 2**32 = {2**32} (replicate indices are "
                         f"32-bit), got {first} + {num_replicates}")
    return first


TOO_LITTLE_MEMORY = 2**30  # available memory below which no count is suggested: JAX and a run's other arrays need
# more (a review, 2026-12-06: counts offered at 297 and 519 MiB under prlimit --as failed in turn)


def fits_in_memory(name: str, count: int, bytes_each: int, *, available: int | None = None,
                   fraction: float = 0.8, remedy: str = "") -> None:
    """Raise if ``count`` items of ``bytes_each`` bytes would not fit in ``fraction`` of the available memory; the
    message ends with the largest count that fits and ``remedy`` (what else the caller can do, if anything)."""
    if available is None:
        available = available_memory_bytes()
    need = count * bytes_each
    if available and need > fraction * available:
        fit = int(fraction * available // max(bytes_each, 1))
        # (under `prlimit --as` with 11 MiB left it said "use at most 1,174", then refused 1,174 and XLA aborted at
        # 200: below TOO_LITTLE_MEMORY no count is offered; a cluster trial, 2026-12-06)
        advice = (f"use at most {fit:,}" if available >= TOO_LITTLE_MEMORY else "under 1 GiB is too little for JAX "
                  "and the run's other arrays: raise this process's memory limit (the job's memory request, ulimit -v, "
                  "prlimit --as)")
        raise ValueError(
            f"{name} = {count:,} needs about {bytes_text(need)} ({bytes_each:,} bytes each), more than "
            f"{fraction:.0%} of the {bytes_text(available)} available (the rest is left to the system and the "
            f"run's other arrays); {advice}" + (f" {remedy}" if remedy else ""))


def available_memory_bytes() -> int:
    """Best guess of the memory available to the default JAX device: a device's own limit, else
    :func:`host_memory_bytes` (which counts the process's address-space rlimit and cgroup limit: a check against
    the whole host passed under ``prlimit --as`` or a cluster job's memory limit, and the run then died of
    MemoryError or was killed: a user trial, 2026-12-06)."""
    try:
        import jax

        stats = jax.devices()[0].memory_stats()
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - memory stats are optional on some backends
        pass
    return host_memory_bytes()


def started_device_memory_bytes() -> int:
    """:func:`available_memory_bytes` once JAX's backend is up (an accelerator's own memory, where training runs),
    else :func:`host_memory_bytes`: configurations are also built at import time, where asking JAX would start its
    backend before ``jax.distributed.initialize`` (which then refused to run)."""
    started = False  # (and JAX not imported: no backend, and no import for a parser's defaults)
    if "jax" in sys.modules:
        try:
            from jax._src import xla_bridge

            started = xla_bridge.backends_are_initialized()
        except (ImportError, AttributeError):
            started = False
    return available_memory_bytes() if started else host_memory_bytes()


def host_memory_bytes() -> int:
    """The host's available RAM, lowered to what this process's limits leave (:func:`process_memory_limit`), without
    asking JAX: safe where JAX's backend must not start yet (a configuration checked at import time started it,
    and ``jax.distributed.initialize`` then refused to run)."""
    host = 0
    try:
        import psutil

        host = int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        host = int(line.split()[1]) * 1024
        except OSError:
            pass
    limit = process_memory_limit()
    return host if limit is None else max(0, min(host, limit) if host else limit)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def process_memory_limit() -> int | None:
    """Bytes this process may still take under its own limits, or None without any: the soft address-space rlimit
    less the address space in use, and a cgroup's memory limit less its usage (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``)."""
    left = []
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            left.append(soft - used)
    except (ImportError, OSError, ValueError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # (v1 says "no limit" with a huge number)
            left.append(limit - usage)
    return min(left) if left else None


def bytes_text(count: float) -> str:
    """``count`` bytes as GiB, or as MiB / KiB below one of the larger unit (a small store's refusal said "needs
    about 0.0 GiB but 0.0 GiB is free"; a user trial, 2026-12-06)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count / 2**10:.1f} KiB"


def free_disk_bytes(path) -> tuple[Any, int]:
    """``(folder, bytes free)`` for the nearest existing folder at or above ``path`` (a run folder not made yet)."""
    import shutil
    from pathlib import Path

    place = Path(path).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    return place, shutil.disk_usage(place).free
