"""Run folders: every experiment writes its configuration, labelled arrays and plots here, atomically.

A run folder holds ``config.json`` (the full configuration, versions and device), ``arrays.npz`` (named arrays) with
``arrays.json`` (each array's axis labels and description), the same arrays as a labelled netCDF dataset
``arrays.nc`` (named dimensions, descriptions, configuration and environment as attributes: open it with
``xarray.open_dataset`` without this library), plots as PNG, and ``manifest.json`` written last. Every
file is written to a temporary name in the same folder and renamed into place, so an interrupted run never leaves a
file that looks complete; a folder without ``manifest.json`` is an unfinished run.

Long sweeps checkpoint finished chunks with :meth:`RunFolder.save_chunk` and pick them up with
:meth:`RunFolder.load_chunk`, so a rerun with the same folder resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

DEFAULT_ROOT = Path("runs")


# The process's umask, read once at import (os.umask can only be read by setting it): mkstemp creates files 0600,
# and results are meant to be read by others on a shared file system, as files open() creates would be.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a full disk fails in write() or fsync(), whose error names no file: the command line then said only
            # "[Errno 28] No space left on device" (a user trial, 2026-12-06)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic_write_bytes(Path(path), text.encode("utf-8"))


def hash_file(path: str | os.PathLike, digest: Any = None) -> Any:
    """``digest`` (default a new SHA-256) updated with the bytes of the file at ``path``, read in 1 MiB pieces."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (NumPy scalars and arrays are converted). The file is
    strict JSON: NaN and infinities are written as ``null`` (Python reads its own ``NaN`` back, but jq, JavaScript
    and most other parsers refuse the file)."""
    text = json.dumps(strict_json(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (Python, NumPy, inside arrays) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return strict_json(obj.tolist())
    return obj


def atomic_savez(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Save arrays to an ``.npz`` file atomically (compressed)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    _atomic_write_bytes(Path(path), buf.getvalue())


def atomic_savefig(fig, path: str | os.PathLike, **kwargs) -> None:
    """Save a Matplotlib figure atomically (format from the file suffix)."""
    path = Path(path)
    buf = io.BytesIO()
    kwargs.setdefault("dpi", 150)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **kwargs)
    _atomic_write_bytes(path, buf.getvalue())


def pyplot():
    """``matplotlib.pyplot`` for the library's figures (each saved with :func:`atomic_savefig` and closed): on the
    non-interactive Agg backend unless the caller has already chosen one (pyplot imported, or ``MPLBACKEND`` set, as
    Jupyter sets it): ``matplotlib.use("Agg")`` on every plot switched a notebook's inline backend off for the
    user's own figures too (a user trial, 2026-12-06)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path``, or a ValueError naming the file when it is missing or damaged (files here are
    written atomically, so damage means a copy or an edit went wrong)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is damaged (not valid JSON: {exc})") from None


def read_npz(path: str | os.PathLike, *names: str) -> tuple[np.ndarray, ...]:
    """Arrays ``names`` of the ``.npz`` file at ``path``, or a ValueError naming the file when it is missing,
    damaged (not a zip archive, a truncated member) or lacks one of them."""
    path = Path(path)
    try:
        with np.load(path) as z:
            files = list(z.files)
            arrays = {name: z[name] for name in names if name in files}
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} is missing") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc})") from None
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the array {missing[0]!r} (it holds {', '.join(files)})")
    return tuple(arrays[name] for name in names)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def config_differences(saved: Any, new: Any, name: str = "") -> list[str]:
    """``field: saved -> new`` for every leaf where two JSON configurations differ (nested keys dotted)."""
    if isinstance(saved, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(saved) | set(new), key=str):
            inner = f"{name}.{key}" if name else str(key)
            if key not in saved or key not in new:
                out.append(f"{inner}: {'not set' if key not in saved else _brief(saved[key])} -> "
                           f"{'not set' if key not in new else _brief(new[key])}")
            else:
                out.extend(config_differences(saved[key], new[key], inner))
        return out
    return [] if saved == new else [f"{name or 'configuration'}: {_brief(saved)} -> {_brief(new)}"]


def _brief(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


SIMD_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile",
                 "amx_bf16", "amx_int8", "asimd", "sve")


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and which of :data:`SIMD_FEATURES` it has (Linux ``/proc/cpuinfo``), so a benchmark
    figure says which kernels could run."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())      # the first processor's lines
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name") or platform.processor() or platform.machine()
    # Family and model number: VMs often show one model name ("Intel(R) Xeon(R) Processor") for different CPU kinds
    # (family 6 model 167 / 207 here), which these tell apart.
    ident = {k: fields[f] for k, f in (("cpu_vendor", "vendor_id"), ("cpu_family", "cpu family"),
                                       ("cpu_model_number", "model")) if f in fields}
    return {"cpu_model": model, **ident, "cpu_features": [f for f in SIMD_FEATURES if f in flags]}


# Environment variables recorded with every run (their prefixes): this library's, XLA's and JAX's own settings.
_RECORDED_VARIABLES = ("COLLAPSE_JAX_", "XLA_", "JAX_", "TF_CPP_", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")


def environment_info() -> dict[str, Any]:
    """Versions, devices and host: recorded with every run and benchmark."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # the CPUs this process may run on (a batch job's affinity, taskset): what the native threads default to
        # (a cluster trial, 2026-12-06: only the machine's count was recorded)
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **cpu_info(),
        "numpy": np.__version__,
        # how this process was started (a benchmark's JSON then says which command produced its figures)
        "command": _command_line(),
        # the settings that change numbers besides the command line (XLA_FLAGS moved linreg's errors by 1e-14,
        # COLLAPSE_JAX_ATTENTION_GEMM a nanoGPT's losses by 5e-7; neither was recorded: a replay trial, 2026-12-06)
        "environment_variables": {k: v for k, v in sorted(os.environ.items())
                                  if k.startswith(_RECORDED_VARIABLES)},
    }
    try:
        import jax
        import jaxlib

        info.update(jax=jax.__version__, jaxlib=jaxlib.__version__)  # (known even where no backend starts)
        info.update(backend=jax.default_backend(),
                    devices=[str(d) for d in jax.devices()], device_kind=jax.devices()[0].device_kind,
                    x64=bool(jax.config.jax_enable_x64),
                    matmul_precision=jax.config.jax_default_matmul_precision)
    except Exception as exc:  # noqa: BLE001 - environment info must never break a run
        # (JAX_PLATFORMS=cuda on a CPU machine: a bare AssertionError, and `info` printed "jax None"; a user trial)
        platforms = os.environ.get("JAX_PLATFORMS")
        info["jax_error"] = (f"{type(exc).__name__}: {exc}".rstrip(": ")
                             + (f" (JAX_PLATFORMS={platforms!r})" if platforms else ""))
    try:   # a busy machine halves a timing (a user trial, 2026-12-05: torch's two threads at load 4.5, 30x slower)
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        pass
    info.update(_source_revision())
    from importlib import metadata

    for package in ("collapse-jax", "flax", "optax", "torch", "transformers", "sentence-transformers"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        from collapse_jax import _native

        info["native"] = _native.status()  # which native kernels this process has loaded (none built for this)
    except Exception as exc:  # noqa: BLE001
        info["native_error"] = repr(exc)
    return info


def _command_line() -> str:
    """This process's command line, shell-quoted: the program as typed (an installed command by its name)."""
    argv = list(sys.argv) or ["python"]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and argv[0] == getattr(main, "__file__", None):
        # python -m MODULE: argv[0] is the module's file, so "cli.py gmm-network ..." was recorded, which no shell
        # runs (a user audit, 2026-12-07); record the interpreter as typed and the module instead
        python = Path((getattr(sys, "orig_argv", None) or [sys.executable])[0]).name
        argv[0:1] = [python, "-m", spec.name.removesuffix(".__main__")]
    elif os.path.isabs(argv[0]):
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _source_revision() -> dict[str, Any]:
    """``git_commit`` (and ``git_dirty``: tracked files changed) of the checkout this package runs from, when it
    runs from one (an editable install); for a package pip installed from a git URL (``git+...``), the commit pip
    recorded (``direct_url.json``; a wheel or git install recorded no commit at all, so runs of different code
    were told apart by nothing: a user trial, 2026-12-06); nothing otherwise."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return _installed_revision()
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=5, check=True).stdout
        dirty = bool(run("status", "--porcelain", "--untracked-files=no").strip())
        info = {"git_commit": run("rev-parse", "HEAD").strip(), "git_dirty": dirty}
        if dirty:  # which changes: a bare flag told no two dirty runs apart (a replay trial, 2026-12-06)
            info["git_diff_sha256"] = hashlib.sha256(run("diff", "HEAD").encode()).hexdigest()
        return info
    except (OSError, subprocess.SubprocessError):
        return {}


def _installed_revision() -> dict[str, Any]:
    """The commit pip recorded when it installed this package from version control (PEP 610's ``direct_url.json``:
    ``vcs_info.commit_id``), or nothing (a wheel file, an index)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("collapse-jax")
        if Path(str(dist.locate_file("collapse_jax"))).resolve() != Path(__file__).resolve().parent:
            return {}  # (another copy than the one running)
        commit = json.loads(dist.read_text("direct_url.json") or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, OSError, ValueError, AttributeError):
        return {}
    return {"git_commit": commit} if isinstance(commit, str) and commit else {}


def netcdf_dtype(arr: np.ndarray) -> np.dtype:
    """The type netCDF-3 (signed 8/16/32-bit integers, float32, float64) stores ``arr`` as: bool -> int8, uint8 ->
    int16, uint16 -> int32, 64-bit and unsigned 32-bit integers -> int32 where the values fit, else float64 (exact
    up to 2**53), float16 -> float32; other types unchanged."""
    if arr.dtype == bool:
        return np.dtype(np.int8)
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
        return np.dtype(np.int16 if arr.dtype.itemsize == 1 else np.int32)
    if arr.dtype.kind in "iu" and (arr.dtype.itemsize > 4 or arr.dtype.kind == "u"):
        fits = arr.size == 0 or (arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max)
        return np.dtype(np.int32 if fits else np.float64)
    if arr.dtype == np.float16:
        return np.dtype(np.float32)
    return arr.dtype


def netcdf_array(value) -> np.ndarray:
    """``value`` as netCDF-3 stores it (:func:`netcdf_dtype`)."""
    arr = np.asarray(value)
    return arr.astype(netcdf_dtype(arr), copy=False)


def labelled_dataset(arrays: Mapping[str, Any], labels: Mapping[str, Sequence[str]],
                     descriptions: Mapping[str, str] | None = None, attrs: Mapping[str, Any] | None = None,
                     coords: Mapping[str, Any] | None = None):
    """An ``xarray.Dataset`` of named arrays with named dimensions (``labels[name]``: one name per axis, e.g.
    replicate, step, model), each variable's description in its ``description`` attribute and ``attrs`` (e.g. the
    run's configuration and environment, as JSON strings) on the dataset.

    A dimension name used with two sizes (e.g. ``block_size`` of cells with different block sizes) gets the
    variable's name appended for the variables where it differs from its first use, so every variable keeps its own
    axis. Types netCDF-3 lacks are converted (:func:`netcdf_array`: e.g. bool -> int8, int64 -> int32 where the
    values fit, else float64).
    ``coords``: values along a dimension (e.g. ``{"components": [1, 2, 3]}``), for ``ds.sel``; a dimension without
    one is indexed by position.
    """
    import xarray as xr

    descriptions = descriptions or {}
    sizes: dict[str, int] = {}
    variables = {}
    for key, value in arrays.items():
        arr = netcdf_array(value)
        dims = []
        for dim, size in zip(labels.get(key, ()), arr.shape):
            if sizes.setdefault(dim, size) != size:
                dim = f"{dim}_{key}"
            dims.append(dim)
        variables[key] = xr.Variable(dims, arr, attrs={"description": descriptions.get(key, "")})
    return xr.Dataset(variables, coords={dim: np.asarray(v) for dim, v in (coords or {}).items()},
                      attrs={k: v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)
                             for k, v in (attrs or {}).items()})


def atomic_write_dataset(path: str | os.PathLike, arrays: Mapping[str, Any], labels: Mapping[str, Sequence[str]],
                         descriptions: Mapping[str, str] | None = None, attrs: Mapping[str, Any] | None = None,
                         coords: Mapping[str, Any] | None = None) -> Path:
    """:func:`labelled_dataset` written as netCDF (scipy's netCDF-3 writer, no extra library), atomically: a
    scientist opens it with ``xarray.open_dataset`` (or any netCDF reader) without this library."""
    path = Path(path)
    data = labelled_dataset(arrays, labels, descriptions, attrs, coords).to_netcdf(engine="scipy")
    _atomic_write_bytes(path, bytes(data))
    return path


def _make_folder(path: Path, *, exist_ok: bool, what: str) -> None:
    """``path.mkdir(parents=True)``; a folder that cannot be made (a file in the way, no permission, a read-only
    disk) is a ValueError naming ``what`` and the path, raised before any compute. ``FileExistsError`` passes through
    when ``exist_ok`` is false and a folder is already there."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if not exist_ok and path.is_dir():
            raise
        raise ValueError(f"{what}: cannot create the folder {str(path)!r}: {_in_the_way(path)}") from None
    except OSError as exc:
        raise ValueError(f"{what}: cannot create the folder {str(path)!r}: {exc.strerror or exc}") from None


def _in_the_way(path: Path) -> str:
    """What keeps a folder from being made at ``path``, where something already is."""
    if path.is_symlink() and not path.exists():
        return f"a symbolic link to nothing is in the way (to {os.readlink(path)!r})"
    return "a file of that name is in the way"


def check_folder_creatable(path: str | os.PathLike, what: str = "out") -> None:
    """The ValueError :func:`_make_folder` would raise for ``path``, without making anything: for a command that
    does slow checks (loading a corpus or models) before it makes its folder, so that an --out that cannot be made
    is refused first (llm-web --out /proc/x was refused after minutes of work; a user trial, 2026-12-06)."""
    path = Path(path)
    if path.is_dir():
        return
    if path.exists() or path.is_symlink():
        raise ValueError(f"{what}: cannot create the folder {str(path)!r}: {_in_the_way(path)}")
    parent = path.absolute().parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what}: cannot create the folder {str(path)!r}: {str(parent)!r} is not a folder")
    try:  # (os.access says yes to root everywhere, /proc included: a folder made and removed at once is the test)
        os.rmdir(tempfile.mkdtemp(prefix=".collapse-jax-check-", dir=parent))
    except OSError as exc:
        raise ValueError(f"{what}: cannot create the folder {str(path)!r}: cannot create folders in {str(parent)!r} "
                         f"({exc.strerror or exc})") from None


LOCK_FILE = ".run.lock"
LAST_CREATED: Path | None = None  # the time-stamped folder RunFolder.create made last in this process
_held_locks: dict[str, int] = {}  # resolved folder -> descriptor of its lock file, while this process runs there


def lock_folder(path: Path) -> bool:
    """Hold an exclusive lock on ``path/.run.lock`` (``flock``; the system releases it when the process ends, even
    when killed) or raise a ValueError naming the process that holds it: two runs started at once on one folder
    both passed its checks and wrote each other's results under one config.json (a user trial, 2026-12-05).
    Re-entrant within a process; a no-op where ``fcntl`` is missing (Windows). Returns whether this call took it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux / macOS
        return False
    key = str(path.resolve())
    if key in _held_locks:
        return False
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # (a read-only folder: the first write of the run, named as the folder)
        raise ValueError(f"out: cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()  # (empty until the holder has written it)
        os.close(fd)
        raise ValueError(f"out: {str(path)!r} is in use by another run{f' (process {holder})' if holder else ''}; "
                         "wait for it to end, or choose another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[key] = fd
    return True


def _unlock_folder(path: Path, *, remove: bool = False) -> None:
    """Release this process's lock on ``path`` (:func:`lock_folder`), if it holds one; ``remove``: delete the lock
    file too (a run that left nothing else behind)."""
    fd = _held_locks.pop(str(path.resolve()), None)
    if fd is not None:
        if remove:  # (while still holding it: a process that opened it meanwhile was refused)
            (path / LOCK_FILE).unlink(missing_ok=True)
        else:  # the file stays (removing it would race with a process opening it), without a process id that ended
            os.ftruncate(fd, 0)
        os.close(fd)  # (closing the descriptor releases the flock)


def release_folder_locks() -> None:
    """Release every run folder lock this process holds (the command line does after each command: an unfinished
    run's folder is then free for a resume in another process)."""
    for key in list(_held_locks):
        _unlock_folder(Path(key))


def resend_later(signum: int, delay: float = 0.05) -> None:
    """Send ``signum`` to this process again after ``delay`` seconds, from a timer thread, if the handler installed
    now is still installed then (one restored meanwhile, after the program stopped for another reason, gets no second
    signal; a review, 2026-12-07)."""
    handler = signal.getsignal(signum)

    def again() -> None:
        if signal.getsignal(signum) is handler:
            os.kill(os.getpid(), signum)

    timer = threading.Timer(delay, again)
    timer.daemon = True
    timer.start()


def resend_dropped_stops() -> None:
    """Install a :data:`sys.unraisablehook` that sends a stop again when Python drops it: a signal handler's
    exception (a KeyboardInterrupt, or the command line's SIGTERM / SIGHUP one, a subclass) raised while a finalizer,
    a weakref callback or a gc callback runs (JAX's ``_xla_gc_callback``, tqdm's ``__del__``) is printed as "Exception
    ignored in ..." and lost, and a sweep that got SIGTERM during its plots went on to exit 0 (2 of 10 tries; an
    audit, 2026-12-07). The signal is sent again (:func:`resend_later`), to be raised where the program runs next;
    other unraisable exceptions go to the hook that was in place. The command line's; once per process."""
    previous = sys.unraisablehook
    if getattr(previous, "resends_stops", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            resend_later(getattr(unraisable.exc_value, "signum", signal.SIGINT))
            return
        previous(unraisable)

    hook.resends_stops = True
    sys.unraisablehook = hook


SECOND_PRESS = "a second Ctrl-C: stopped without saving"  # (the KeyboardInterrupt's text: nothing was let finish)


@contextlib.contextmanager
def saved_before_stopping(what: str):
    """Hold a first Ctrl-C until the block ends, then stop: the block computes a batch and saves it, and a compiled
    or native computation would otherwise be thrown away (gmm-network's native kernel, a user trial, 2026-12-06).
    A second Ctrl-C stops without saving (:data:`SECOND_PRESS`), as soon as Python runs again: also inside a native
    call that the simulators wait for (:func:`collapse_jax.driver.wait_ready`; a pure-JAX program that JAX runs on
    the calling thread finishes first). Only in the main thread (where Python delivers signals), and only while
    SIGINT has Python's default handler. Yields a list that holds the signal once a first Ctrl-C came, for a loop
    that stops at its next step (nanoGPT training: a checkpoint of the steps done, then the interrupt)."""
    pressed: list[int] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield pressed
        return
    before = signal.getsignal(signal.SIGINT)

    def hold(signum, frame):
        if pressed:
            raise KeyboardInterrupt(SECOND_PRESS)
        pressed.append(signum)
        print(f"\ninterrupted: saving {what} first (Ctrl-C again to stop without it)", file=sys.stderr,
              flush=True)

    signal.signal(signal.SIGINT, hold)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, before)
    if pressed:
        raise KeyboardInterrupt


# A finished run's manifest while a rerun of it is under way (hidden: not one of the run's files); finish() keeps its
# record under the new manifest's "earlier".
EARLIER_MANIFEST = ".manifest-earlier.json"


def _file_name(what: str, name: Any) -> str:
    """``name`` if it is a plain file name (a non-empty string without a folder: no ``/``, no ``..``), else a
    ValueError naming ``what``: ``save_text("../x.txt", ...)`` or an absolute path wrote outside the run folder,
    which ``Path / name`` allows (an audit, 2026-12-07). A ``Path`` is read as its string (as ``Path / name`` took
    it before: a review, 2026-12-07)."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"{what} must be a plain file name inside the run folder (no folder part, not '..'), "
                         f"got {name!r}")
    return name


@dataclass
class RunFolder:
    """One experiment's output folder.

    Create with :meth:`create` (a new time-stamped folder under ``runs/``) or :meth:`open` (an existing one, to resume).
    """

    path: Path
    array_labels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, out: str | os.PathLike | None = None, *, root: str | os.PathLike = DEFAULT_ROOT
               ) -> "RunFolder":
        """A folder ``out`` (if given; reused for resuming) or ``root/name-YYYYmmdd-HHMMSS[-k]`` (kept in
        :data:`LAST_CREATED`, for the command line's interrupt message)."""
        global LAST_CREATED
        if out is not None:
            path = Path(out)
            _make_folder(path, exist_ok=True, what="out")
            return cls(path)
        _file_name("name", name)  # ("../x" made its folder beside root: an audit, 2026-12-07)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(root) / f"{name}-{stamp}"
        path, k = base, 1
        while True:
            try:
                _make_folder(path, exist_ok=False, what="the run folder")
                LAST_CREATED = path
                return cls(path)
            except FileExistsError:
                k += 1
                path = base.with_name(f"{base.name}-{k}")

    @property
    def complete(self) -> bool:
        """Whether the run finished (its manifest was written)."""
        return (self.path / "manifest.json").exists()

    def start(self, config: Mapping[str, Any]) -> bool:
        """Begin or resume the run of ``config`` here, before any compute; returns whether a run was already here.

        A new (empty) folder gets ``config.json``. A folder that holds a run must hold one of the same
        configuration (else a ValueError names the fields that differ), and a non-empty folder without a run is
        refused, so results of two configurations or of another program never mix. A finished run's
        ``manifest.json`` is removed: the run writes it again when it finishes, so an interruption from here on
        leaves a folder marked unfinished.

        The folder is locked (``.run.lock``) from here until :meth:`finish` or the end of the process: another
        process starting a run in it meanwhile is refused (a refused start leaves it unlocked)."""
        path = self.path / "config.json"
        new = json.loads(json.dumps(dict(config), default=_json_default))
        if not path.is_file():  # (before the lock, whose file would be left in a folder that is not ours)
            self._check_empty()
        locked = lock_folder(self.path)
        try:
            return self._start(path, config, new)
        except BaseException:
            if locked:
                _unlock_folder(self.path)
            raise

    def abandon(self) -> None:
        """Undo :meth:`start` of a new run that wrote nothing else: remove its ``config.json`` and the lock (a
        corrected command may then use the folder as new)."""
        (self.path / "config.json").unlink(missing_ok=True)
        _unlock_folder(self.path, remove=True)

    def _check_empty(self) -> None:
        """A ValueError unless the folder holds nothing but hidden files (a run's config.json is written first, so
        a folder with other files and none is another program's, whatever runs meanwhile)."""
        if any(not p.name.startswith(".") for p in self.path.iterdir()):
            raise ValueError(f"out: {str(self.path)!r} is not empty and holds no run (no config.json); choose a "
                             "new or empty folder")

    def _start(self, path: Path, config: Mapping[str, Any], new: dict) -> bool:
        """:meth:`start` under the folder's lock."""
        if path.is_file():
            try:
                saved = json.loads(path.read_text())["config"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                why = "no 'config' entry: not a collapse-jax run's" if isinstance(exc, KeyError) else exc
                raise ValueError(f"out: {str(self.path)!r} has an unreadable config.json ({why}); choose a new "
                                 "folder") from None
            differences = config_differences(saved, new)
            if differences:
                shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6
                                                       else "")
                raise ValueError(f"out: {str(self.path)!r} holds a run with another configuration ({shown}); rerun "
                                 "it with its own options or choose a new folder")
            self.set_manifest_aside()
            return True
        self._check_empty()  # (again: another run may have written here meanwhile)
        self.write_config(config)
        return False

    def set_manifest_aside(self) -> None:
        """A finished run's ``manifest.json`` moves aside (a hidden file) until :meth:`finish` writes the new one,
        which keeps its record under ``earlier``."""
        manifest = self.path / "manifest.json"
        if manifest.exists():
            os.replace(manifest, self.path / EARLIER_MANIFEST)

    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write the full configuration with environment info to ``config.json``."""
        target = self.path / "config.json"
        atomic_write_json(target, {"config": dict(config), "environment": environment_info(),
                                   "written": _dt.datetime.now().isoformat(timespec="seconds")})
        return target

    def save_arrays(self, arrays: Mapping[str, Any], labels: Mapping[str, Sequence[str]],
                    descriptions: Mapping[str, str] | None = None, filename: str = "arrays.npz", *,
                    coords: Mapping[str, Any] | None = None) -> Path:
        """Save named arrays with their axis labels (``labels[name]`` names each axis, e.g. replicate, step), in
        ``filename`` and as a netCDF dataset beside it (``coords``: see :func:`labelled_dataset`)."""
        _file_name("filename", filename)
        descriptions = descriptions or {}
        meta = {}
        for key, value in arrays.items():
            arr = np.asarray(value)
            axes = list(labels.get(key, ()))
            if len(axes) != arr.ndim:
                raise ValueError(f"array {key!r} has {arr.ndim} axes but {len(axes)} labels {axes}")
            meta[key] = {"axes": axes, "shape": list(arr.shape), "dtype": str(arr.dtype),
                         "description": descriptions.get(key, "")}
            stored = netcdf_dtype(arr)  # (the type only: the array is converted once, in the dataset)
            if stored != arr.dtype:  # (the .npz keeps the type; the netCDF-3 copy cannot)
                meta[key]["netcdf_dtype"] = str(stored)
        sizes = {dim: size for m in reversed(meta.values()) for dim, size in zip(m["axes"], m["shape"])}
        for dim, values in (coords or {}).items():  # (checked before anything is written)
            if dim not in sizes or sizes[dim] != len(values):
                raise ValueError(f"coordinate {dim!r} has {len(values)} values, but its dimension "
                                 + (f"has {sizes[dim]}" if dim in sizes else "labels no array"))
        target = self.path / filename
        atomic_savez(target, arrays)
        self.array_labels.update(meta)
        atomic_write_json(self.path / (Path(filename).stem + ".json"), meta)
        config = self.path / "config.json"
        atomic_write_dataset(self.path / (Path(filename).stem + ".nc"), arrays, labels, descriptions,
                             json.loads(config.read_text()) if config.exists() else {}, coords)
        return target

    def save_figure(self, fig, name: str) -> Path:
        """Save a matplotlib figure as ``name`` in the run folder (atomically); its path."""
        target = self.path / _file_name("name", name)
        atomic_savefig(fig, target)
        return target

    def save_text(self, name: str, text: str) -> Path:
        """Write ``text`` to ``name`` in the run folder (atomically); its path."""
        target = self.path / _file_name("name", name)
        atomic_write_text(target, text)
        return target

    # --- resumable chunks -------------------------------------------------------------------------------------
    def chunk_path(self, index: int) -> Path:
        """Where :meth:`save_chunk` keeps chunk ``index``: ``chunks/chunk-NNNNNN.npz``."""
        from collapse_jax import _checks

        index = _checks.nonnegative_int("index", index)  # (-1 wrote chunk--00001.npz: an audit, 2026-12-07)
        return self.path / "chunks" / f"chunk-{index:06d}.npz"

    def save_chunk(self, index: int, arrays: Mapping[str, Any]) -> None:
        """Checkpoint one finished chunk of a sweep (atomic)."""
        atomic_savez(self.chunk_path(index), arrays)

    def load_chunk(self, index: int) -> dict[str, np.ndarray] | None:
        """A finished chunk's arrays, or None if that chunk has not been written or cannot be read (chunks are
        written atomically, so a damaged one comes from a copy gone wrong: it is computed again, with a warning;
        a truncated file raised BadZipFile in the middle of a resume before)."""
        path = self.chunk_path(index)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            from collapse_jax import _checks

            warnings.warn(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc}); computing that chunk again",
                          stacklevel=_checks.user_stacklevel())
            return None

    def finish(self, summary: Mapping[str, Any] | None = None) -> Path:
        """Write ``manifest.json`` last: the list of files, a summary, and the environment again, now that the run
        has loaded the kernels it used (``config.json``'s is from before they were built). Its presence marks the
        run complete. A rerun into a finished folder keeps the earlier manifests' ``finished`` times and
        environments under ``earlier`` (newest last, at most 10): a rerun that only reloaded the results recorded
        its own environment, without the kernels the run had used, in place of the run's (a user trial,
        2026-12-06)."""
        # (not zarr's temporary chunk files, "<chunk>.<uuid>.partial", which a killed write leaves; an audit)
        files = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                       if p.is_file() and not p.name.startswith(".") and p.name != "manifest.json"
                       and not p.name.endswith(".partial"))
        target, aside = self.path / "manifest.json", self.path / EARLIER_MANIFEST
        earlier = []
        try:
            old = read_json(aside) if aside.exists() else None
        except ValueError:  # (a damaged record is dropped; nothing to keep)
            old = None
        if isinstance(old, dict) and "environment" in old:
            earlier = [*old.get("earlier", []), {"finished": old.get("finished"), "summary": old.get("summary"),
                                                 "environment": old["environment"]}][-10:]
        atomic_write_json(target, {"files": files, "summary": dict(summary or {}), "environment": environment_info(),
                                   "finished": _dt.datetime.now().isoformat(timespec="seconds"),
                                   **({"earlier": earlier} if earlier else {})})
        aside.unlink(missing_ok=True)
        _unlock_folder(self.path)
        return target
