"""Test configuration: float64 everywhere (tests compare with theory), CPU, quiet progress bars, and two XLA flags
that make compiling cheaper: backend optimisation level 1 instead of the default, and XLA:CPU's classic elemental
emitters instead of its newer MLIR fusion emitters (``--xla_cpu_use_fusion_emitters=false``).

Compilation is most of the suite's time (the portable GMM kernel alone takes ~7 s to compile per configuration at
the default level); level 1 compiles it in ~4.6 s, and the same programs run as fast at the tests' small sizes
(`tests/test_gmm_network.py` + `tests/test_contracts.py`: 357 s -> 268 s on 2 cores). It changes how LLVM optimises
the generated loops, so results can differ from the default level in the last bits (the portable GMM kernel's
float64 weights: 40 % of them, by at most 4e-15), never beyond rounding: the tests compare with references and theory
at tolerances far above that, and bitwise checks compare runs made under the same flags.

The classic emitters compile a small program in about 30 ms instead of 55 (a one-op jit on the 2-core AMD EPYC), which
is what the eager (``jax.disable_jit``) contract checks and the subprocess tests mostly do: the whole suite took
17 min 23 s instead of 20 min 16 s there on a fresh native cache (32.8 against 38.3 CPU-minutes, 2026-12-01), with
every test passing (a second run: 18 min 22 s). Level 0 was tried too: 13 min 3 s, but five bitwise checks failed (a
scan of train steps against a loop of them, grid cells against cells run alone, 4 devices against 1), so the
suite would no longer test what users get. Each flag is only added when ``XLA_FLAGS`` does not already set it, so
``XLA_FLAGS="--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=true" pytest`` tests the default
code generation. Subprocesses inherit the flags through the environment.

Compiled programs are also kept in JAX's persistent compilation cache, in ``xla-tests`` under the project's cache
folder (``$COLLAPSE_JAX_CACHE``, default ``~/.cache/collapse-jax``), shared by the two xdist workers, the subprocesses
the tests start and CI's second (pure-JAX) pass: the same program is often compiled by both workers, by a CLI
test's subprocess after an in-process test, or again by the second pass. On the 2-core AMD EPYC (2026-12-07, four
runs in a row, each on a fresh cache) the suite took 19 min 58 s and 19 min 56 s with it, 21 min 46 s and 22 min 6 s
without (2,201 and 2,172 CPU-s against 2,390 and 2,436), every test passing (docs/benchmarks.md, "Test suite"; tried
on 2026-12-01 with a third of today's tests, it was within that VM's spread and not kept). Every program is kept,
however short its compile (most are the eager contract checks' one-op programs, ~30 ms each); the key covers
the program, the XLA flags, the jax version and the devices, so a hit is the program a compile would give. A set
``JAX_COMPILATION_CACHE_DIR`` is used instead; ``JAX_ENABLE_COMPILATION_CACHE=false pytest`` compiles everything
afresh. The folder is pruned (oldest files first) when a run starts with it over 2 GiB. Where jaxlib cannot load
the executables it writes (Intel CPUs with AVX-512, below), the suite runs without the cache."""

import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("COLLAPSE_JAX_PROGRESS", "0")
for _flag, _value in (("xla_backend_optimization_level", "1"), ("xla_cpu_use_fusion_emitters", "false")):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()


def _xla_cache_folder() -> Path:
    """``xla-tests`` in the project's cache folder (the rule of ``collapse_jax._native._cache_dir``, which cannot be
    imported here: importing collapse_jax imports jax, which reads these variables once, at import)."""
    root = os.environ.get("COLLAPSE_JAX_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(root).expanduser() / ("" if os.environ.get("COLLAPSE_JAX_CACHE") else "collapse-jax") / "xla-tests"


def _prune(folder: Path, limit: int = 2 << 30, keep: int = 1 << 30) -> None:
    """Remove the oldest entries of ``folder`` when it holds more than ``limit`` bytes, down to ``keep``: JAX's
    own size cap (``jax_compilation_cache_max_size``) rescans the folder at every write, quadratic in its ~10^4
    files. Only the controlling process prunes (xdist workers start after it), so no entry goes while in use."""
    try:
        files = sorted((stat.st_mtime, stat.st_size, entry) for entry in folder.iterdir() for stat in [entry.stat()])
    except OSError:
        return
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return
    for _, size, entry in files:
        if total <= keep:
            break
        entry.unlink(missing_ok=True)
        total -= size


_PROBE = """
import jax, jax.monitoring
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
events = []
jax.monitoring.register_event_listener(lambda event, **kwargs: events.append(event))
for _ in range(2):  # written by the first compile, read back by the second
    jax.jit(lambda x: x * 2.0 + 1.0)(1.0).block_until_ready()
    jax.clear_caches()
print(events.count("/jax/compilation_cache/cache_hits"))
"""


def _cache_loads_here() -> bool:
    """Whether this jaxlib loads back the CPU executables it writes (a child process, ~3 s): jaxlib 0.9-0.10
    rejects every one on Intel CPUs with AVX-512, whose LLVM tuning flags (+prefer-no-gather) its loader takes for
    missing CPU features (jax-ml/jax#38445), so there the cache would only cost writes and a warning per load.
    The answer is kept in the cache folder for this Python, jax, jaxlib, JAX_* and XLA_FLAGS settings and CPU (a
    run of one test file would otherwise pay the probe every time)."""
    import hashlib
    import subprocess
    import sys
    import tempfile
    from importlib import metadata

    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line for line in f if line.startswith("flags")), "")
        versions = [metadata.version(name) for name in ("jax", "jaxlib")]
    except (OSError, metadata.PackageNotFoundError):
        cpu, versions = "", []
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("JAX_") or k == "XLA_FLAGS")
    key = hashlib.sha256(repr((sys.version, versions, settings, cpu)).encode()).hexdigest()[:16]
    answer = _xla_cache_folder() / f"probe-{key}.txt"
    if versions and cpu and answer.is_file() and answer.read_text() in ("on", "off"):
        return answer.read_text() == "on"
    with tempfile.TemporaryDirectory() as folder:
        try:
            run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                                 env=dict(os.environ, JAX_COMPILATION_CACHE_DIR=folder))
        except (OSError, subprocess.SubprocessError):
            return False
    loads = run.returncode == 0 and run.stdout.strip().isdigit() and int(run.stdout) > 0
    if versions and cpu:
        try:
            answer.parent.mkdir(parents=True, exist_ok=True)
            scratch = answer.with_name(f".{answer.name}.{os.getpid()}")
            scratch.write_text("on" if loads else "off")
            os.replace(scratch, answer)
        except OSError:
            pass
    return loads


# decided once, by the controlling process; xdist workers and subprocesses inherit the decision (environment)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "COLLAPSE_JAX_TEST_XLA_CACHE" not in os.environ:
    os.environ["COLLAPSE_JAX_TEST_XLA_CACHE"] = "on" if _cache_loads_here() else "off"
    if os.environ["COLLAPSE_JAX_TEST_XLA_CACHE"] == "on":
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_xla_cache_folder())
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        _prune(_xla_cache_folder())

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _atomic_cache_writes() -> None:
    """JAX writes a cache entry in place (``LRUCache.put``, without its size cap): a worker that finds the file
    while the other is still writing it reads a partial entry, warns and compiles (a warning some tests turn into an
    error). Write to a private file and rename it into place instead. A private JAX class: where it has changed,
    the writes stay as JAX makes them."""
    try:
        from jax._src import lru_cache
    except ImportError:
        return
    put = getattr(lru_cache.LRUCache, "put", None)
    suffix = getattr(lru_cache, "_CACHE_SUFFIX", None)
    if put is None or suffix is None:
        return

    def atomic_put(self, key: str, value: bytes) -> None:
        if getattr(self, "eviction_enabled", True) or not key:
            return put(self, key, value)
        target = self.path / f"{key}{suffix}"
        if target.exists():
            return None
        scratch = self.path / f".{key}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        scratch.write_bytes(value)
        os.replace(scratch, target)
        return None

    lru_cache.LRUCache.put = atomic_put


_atomic_cache_writes()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2``, with ``--dist loadgroup`` from pyproject.toml) a module's tests are spread over
    the workers, so a module-scoped fixture (a trained tiny model, a whole LLM-web run) would be built once per worker:
    the tests that use one are grouped onto one worker by their module's name. Other tests spread as before."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        module = getattr(item, "module", None)
        if info is None or module is None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(module.__name__))
