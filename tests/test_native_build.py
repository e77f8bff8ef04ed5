"""The native build (collapse_jax/_native/__init__.py): several sources compile side by side into one library, kept
in the cache atomically; a source that does not compile is reported with the compiler's message and leaves nothing
behind."""

import ctypes

import pytest

from collapse_jax import _native

CXX = _native._compiler()
needs_compiler = pytest.mark.skipif(CXX is None, reason="no C++ compiler")


@needs_compiler
def test_sources_compile_into_one_library_and_errors_name_the_source(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(cache))
    a, b, bad = tmp_path / "a.cc", tmp_path / "b.cc", tmp_path / "broken.cc"
    a.write_text('extern "C" int cj_test_a() { return 20; }\n')
    b.write_text('extern "C" int cj_test_b() { return 22; }\n')
    bad.write_text("this is not C++\n")

    path = _native._build(CXX, (a, b), "twosources")
    lib = ctypes.CDLL(str(path))
    assert lib.cj_test_a() + lib.cj_test_b() == 42
    assert _native._build(CXX, (a, b), "twosources") == path  # cached: no second build
    with pytest.raises(RuntimeError, match=r"broken\.cc:1:\d+: error"):  # the compiler's own message
        _native._build(CXX, (a, bad), "broken")
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no objects, partial or temporary files left


@needs_compiler
def test_cached_library_finds_an_earlier_build_without_building(tmp_path, monkeypatch):
    """``collapse-jax info --no-build`` tells a library built by an earlier process from one never built."""
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "one.cc"
    src.write_text('extern "C" int cj_test_one() { return 1; }\n')
    monkeypatch.setitem(_native._LIBRARIES, "one", _native._Library((src,), {}, {}, "nothing"))
    assert _native.cached_library("one") is None
    assert not (tmp_path / "cache").exists()  # looking built nothing
    path = _native._build(CXX, (src,), "one")
    assert _native.cached_library("one") == path
    src.write_text('extern "C" int cj_test_one() { return 2; }\n')  # another source version: not that build
    assert _native.cached_library("one") is None


def test_one_cache_folder_for_builds_and_embeddings(tmp_path, monkeypatch):
    """$COLLAPSE_JAX_CACHE, else $XDG_CACHE_HOME/collapse-jax, else ~/.cache/collapse-jax, for the native builds and
    (llm extra) the embedding cache alike."""
    monkeypatch.delenv("COLLAPSE_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _native._cache_dir() == tmp_path / "xdg" / "collapse-jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _native._cache_dir() == tmp_path / "home" / ".cache" / "collapse-jax"
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(tmp_path / "mine"))
    assert _native._cache_dir() == tmp_path / "mine"
    populations = pytest.importorskip("llm_bridge.populations")
    assert populations.cache_dir() == tmp_path / "mine"


def test_a_refused_native_backend_names_its_cause(monkeypatch):
    """A user trial (2026-12-06): with COLLAPSE_JAX_NATIVE=0 the refusal blamed a C++ compiler the machine had."""
    from collapse_jax import _native

    monkeypatch.setattr(_native, "available", lambda: False)
    monkeypatch.setenv("COLLAPSE_JAX_NATIVE", "0")
    with pytest.raises(ValueError, match=r"switched off here \(COLLAPSE_JAX_NATIVE=0; unset it to use them\)"):
        _native.resolve_backend("native")
    monkeypatch.setenv("COLLAPSE_JAX_NATIVE", "1")
    with pytest.raises(ValueError, match="did not build on this machine"):
        _native.resolve_backend("native")


@needs_compiler
def test_an_unwritable_cache_builds_in_a_private_folder(tmp_path, monkeypatch):
    """A user trial (2026-12-06): with a read-only cache folder every command ran the pure-JAX kernels, about 5x
    slower, with a warning that named no way out. Now the build goes to $TMPDIR/collapse-jax-<uid> (mode 0700)."""
    import os
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(blocker / "cache"))  # (a file in the way: root may write anywhere)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    src = tmp_path / "one.cc"
    src.write_text('extern "C" int cj_test_one() { return 7; }\n')
    monkeypatch.setitem(_native._LIBRARIES, "one",
                        _native._Library((src,), {}, {"cj_test_one": (ctypes.c_int, [])}, "nothing"))
    monkeypatch.setattr(_native, "_STATE", {})
    with pytest.warns(RuntimeWarning, match=r"cache folder .* cannot be written .*; building the one kernels "
                                            r"in '.*collapse-jax-\d+' instead \(set COLLAPSE_JAX_CACHE"):
        lib = _native._library("one")
    assert lib.cj_test_one() == 7
    folder = tmp_path / "tmp" / f"collapse-jax-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert _native.cached_library("one").parent == folder  # (collapse-jax info finds it there)


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("False", False), (" NO ", False),
                                            ("1", True), ("yes", True)])
def test_the_native_switch_reads_any_case(value, enabled, monkeypatch):
    """A user trial (2026-12-06): COLLAPSE_JAX_NATIVE=off or False left the kernels on, silently."""
    monkeypatch.setenv("COLLAPSE_JAX_NATIVE", value)
    assert _native._enabled() is enabled


def test_a_missing_compiler_is_not_blamed_on_the_cache(tmp_path, monkeypatch):
    """A review (2026-12-06): CXX naming no program fell back to a private build folder, saying the (writable)
    cache could not be written, and compiled twice before saying the kernels were unavailable."""
    import tempfile
    import warnings

    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_native, "_compiler", lambda: str(tmp_path / "no-such-compiler"))
    src = tmp_path / "one.cc"
    src.write_text('extern "C" int cj_test_one() { return 7; }\n')
    monkeypatch.setitem(_native._LIBRARIES, "one", _native._Library((src,), {}, {}, "nothing"))
    monkeypatch.setattr(_native, "_STATE", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _native._library("one") is None
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "native one kernels unavailable" in said[0] and "no-such-compiler" in said[0], said
    assert not any(p.name.startswith("collapse-jax-") for p in tmp_path.iterdir())


@needs_compiler
def test_a_refused_private_folder_builds_in_a_scratch_folder_removed_at_exit(tmp_path, monkeypatch):
    """A review (2026-12-06): where $TMPDIR/collapse-jax-<uid> could not be used, each process left its build in a
    new collapse-jax-build-* folder under $TMPDIR, never reused and never removed."""
    import atexit
    import os
    import tempfile

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(blocker / "cache"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"collapse-jax-{os.getuid()}").write_text("")  # (the private folder's name taken by a file)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    at_exit = []
    monkeypatch.setattr(atexit, "register", lambda fn, *args, **kwargs: at_exit.append((fn, args, kwargs)))
    src = tmp_path / "one.cc"
    src.write_text('extern "C" int cj_test_one() { return 7; }\n')
    monkeypatch.setitem(_native._LIBRARIES, "one",
                        _native._Library((src,), {}, {"cj_test_one": (ctypes.c_int, [])}, "nothing"))
    monkeypatch.setattr(_native, "_STATE", {})
    with pytest.warns(RuntimeWarning, match=r"building the one kernels in '.*collapse-jax-build-"):
        lib = _native._library("one")
    assert lib.cj_test_one() == 7
    scratch = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("collapse-jax-build-")]
    assert len(scratch) == 1 and any(p.suffix == ".so" for p in scratch[0].iterdir())
    for fn, args, kwargs in at_exit:
        fn(*args, **kwargs)
    assert not scratch[0].exists()
    assert lib.cj_test_one() == 7  # (the loaded library outlives its file)


def test_the_wheel_ships_the_kernel_sources_and_the_type_marker(tmp_path):
    """A non-editable install compiles the native kernels from the sources in the wheel (without them every kernel
    would fall back to JAX, silently slower), and type checkers read the hints only where ``py.typed`` ships
    (setuptools packs it without a package-data entry)."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sources = sorted(p.name for p in (root / "collapse_jax" / "_native").iterdir() if p.suffix in (".cc", ".h"))
    project = tmp_path / "project"  # a copy without build/: setuptools would pack a stale build/lib's files too
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(root / name, project / name)
    for package in ("collapse_jax", "llm_bridge"):
        shutil.copytree(root / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", str(project), "-w", str(tmp_path)], check=False, capture_output=True,
                           text=True)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("collapse_jax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sources and {f"collapse_jax/_native/{name}" for name in sources} <= names
    assert {"collapse_jax/py.typed", "llm_bridge/py.typed"} <= names
