"""Run folders: every saved array set is also a labelled netCDF dataset a scientist opens without this library."""

import json
import os
import re
import sys

import numpy as np
import pytest
import xarray as xr

from collapse_jax.results import RunFolder, atomic_savez

pytestmark = pytest.mark.fallback  # also runs in the pure-JAX pass (COLLAPSE_JAX_NATIVE=0)


def test_save_arrays_writes_a_labelled_dataset(tmp_path):
    folder = RunFolder.create("t", tmp_path / "run")
    folder.write_config({"beta": 0.5, "mu": [-5, 5]})
    dnorm = np.random.default_rng(0).random((3, 4))
    folder.save_arrays(
        {"dnorm": dnorm, "collapsed": np.array([True, False, True]), "ns": np.arange(5, dtype=np.int64),
         "other_ns": np.arange(2, dtype=np.int64), "big": np.array([2**40], dtype=np.int64)},
        {"dnorm": ("replicate", "step"), "collapsed": ("replicate",), "ns": ("block_size",),
         "other_ns": ("block_size",), "big": ("one",)},
        {"dnorm": "||D(t)||_F"})
    ds = xr.open_dataset(tmp_path / "run" / "arrays.nc")
    assert ds["dnorm"].dims == ("replicate", "step") and ds["dnorm"].attrs["description"] == "||D(t)||_F"
    np.testing.assert_array_equal(ds["dnorm"].values, dnorm)
    np.testing.assert_array_equal(ds["collapsed"].values, [1, 0, 1])
    assert ds["other_ns"].dims == ("block_size_other_ns",)  # same name, another size: its own axis
    assert ds["big"].values[0] == 2**40  # beyond int32: widened to float64, exact
    assert json.loads(ds.attrs["config"]) == {"beta": 0.5, "mu": [-5, 5]}
    assert "cpu_model" in json.loads(ds.attrs["environment"])
    ds.close()
    meta = json.loads((tmp_path / "run" / "arrays.json").read_text())  # what netCDF-3 changed is stated
    assert meta["ns"]["dtype"] == "int64" and meta["ns"]["netcdf_dtype"] == "int32"
    assert meta["big"]["netcdf_dtype"] == "float64" and "netcdf_dtype" not in meta["dnorm"]


@pytest.mark.parametrize("dtype, value, stored", [(np.uint8, 200, "int16"), (np.uint16, 40000, "int32"),
                                                  (np.uint32, 3_000_000_000, "float64"), (np.uint32, 7, "int32")])
def test_unsigned_arrays_keep_their_values_in_the_netcdf_copy(tmp_path, dtype, value, stored):
    """uint8 200, uint16 40000 and uint32 3e9 (a PRNG key word) failed xarray's cast to netCDF-3's signed types."""
    folder = RunFolder.create("t", tmp_path / "run")
    folder.save_arrays({"u": np.array([1, value], dtype=dtype)}, {"u": ("i",)})
    with xr.open_dataset(tmp_path / "run" / "arrays.nc") as ds:
        assert ds["u"].dtype == stored and ds["u"].values.tolist() == [1, value]
    assert json.loads((tmp_path / "run" / "arrays.json").read_text())["u"]["netcdf_dtype"] == stored


def test_mismatched_labels_are_refused_before_writing(tmp_path):
    folder = RunFolder.create("t", tmp_path / "run")
    with pytest.raises(ValueError, match="has 2 axes but 1 labels"):
        folder.save_arrays({"x": np.zeros((2, 2))}, {"x": ("replicate",)})
    for coords, words in [({"step": [0, 1, 2]}, "has 3 values, but its dimension has 2"),
                          ({"model": [0]}, "labels no array")]:
        with pytest.raises(ValueError, match=f"coordinate .* {words}"):
            folder.save_arrays({"x": np.zeros((2, 2))}, {"x": ("replicate", "step")}, coords=coords)
    assert not (tmp_path / "run" / "arrays.nc").exists() and not (tmp_path / "run" / "arrays.npz").exists()


def test_coordinates_select_by_value(tmp_path):
    """A user trial (2026-12-05): llm-web's arrays.nc had named dimensions but no coordinates, so the proxy's
    components (B = 1, 2, ...) were selected by position, off by one."""
    folder = RunFolder.create("t", tmp_path / "run")
    band = np.arange(6.0).reshape(2, 3)
    folder.save_arrays({"band": band, "t": np.arange(3)}, {"band": ("components", "step"), "t": ("step",)},
                       coords={"components": [1, 2], "step": [0, 1, 2]})
    with xr.open_dataset(tmp_path / "run" / "arrays.nc") as ds:
        np.testing.assert_array_equal(ds["band"].sel(components=2).values, band[1])
        np.testing.assert_array_equal(ds["components"].values, [1, 2])


def test_an_out_that_cannot_be_a_folder_is_a_clear_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"out: cannot create the folder '.*afile': a file of that name is in the way"):
        RunFolder.create("t", afile)
    with pytest.raises(ValueError, match=r"out: cannot create the folder '.*afile/sub': Not a directory"):
        RunFolder.create("t", afile / "sub")
    with pytest.raises(ValueError, match="the run folder: cannot create the folder"):
        RunFolder.create("t", root=afile)  # the time-stamped folder under a root that is a file
    assert RunFolder.create("t", tmp_path / "new" / "run").path.is_dir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")  # (a user trial, 2026-12-05: "a file ... is in the way")
    with pytest.raises(ValueError, match=r"'.*dangling': a symbolic link to nothing is in the way \(to '.*gone'\)"):
        RunFolder.create("t", tmp_path / "dangling")
    again = RunFolder.create("t", root=tmp_path / "runs")
    assert again.path.parent == tmp_path / "runs" and again.path.is_dir()


def test_results_are_readable_by_others_as_the_umask_allows(tmp_path):
    """Written through mkstemp (mode 0600) and renamed: the files got 0600 whatever the umask, unreadable by the
    other users of a shared file system."""
    import os
    import stat

    from collapse_jax import results

    results.atomic_write_json(tmp_path / "a.json", {"x": 1})
    results.atomic_savez(tmp_path / "b.npz", {"x": np.zeros(3)})
    for name in ("a.json", "b.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~results._UMASK


def test_json_files_are_strict_json(tmp_path):
    """NaN and infinities (Python floats, NumPy scalars, inside arrays) are written as null: the files held bare
    NaN, which jq and JavaScript refuse; finite values, NumPy types and nesting are kept."""
    from collapse_jax import results

    obj = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": np.float32("nan"), "d": np.float64(2.5),
           "e": np.array([[1.0, np.nan], [np.inf, 3.0]]), "f": (np.int64(4), None, "text"), "g": {"h": np.nan}}
    results.atomic_write_json(tmp_path / "a.json", obj)

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    back = json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse)
    assert back == {"a": None, "b": [1.5, None, None], "c": None, "d": 2.5, "e": [[1.0, None], [None, 3.0]],
                    "f": [4, None, "text"], "g": {"h": None}}
    assert results.read_json(tmp_path / "a.json") == back


def test_a_run_folder_holds_one_configuration(tmp_path):
    """start(): a new folder gets config.json; the same configuration resumes and its old manifest is removed (an
    interruption then leaves the folder marked unfinished); another configuration names the fields that differ; a
    non-empty folder without a run is refused. Nothing is written by a refused start."""
    config = {"command": "demo", "seed": 0, "network": {"beta": 0.5, "mu": [-5, 5]}}
    run = RunFolder.create("demo", tmp_path / "run")
    assert run.start(config) is False
    assert json.loads((run.path / "config.json").read_text())["config"] == config
    run.finish({"a": 1})
    assert run.complete
    first = json.loads((run.path / "manifest.json").read_text())
    assert RunFolder.create("demo", run.path).start(dict(config)) is True
    assert not run.complete
    # a rerun keeps the finished run's record (a user trial, 2026-12-06: a rerun that only reloaded the results
    # replaced the run's environment with its own), hidden until it finishes, then under "earlier"
    assert sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".run")) == [
        ".manifest-earlier.json", "config.json"]
    run.finish({"a": 2})
    again = json.loads((run.path / "manifest.json").read_text())
    assert again["summary"] == {"a": 2} and again["earlier"] == [
        {"finished": first["finished"], "summary": {"a": 1}, "environment": first["environment"]}]
    assert not (run.path / ".manifest-earlier.json").exists() and ".manifest-earlier.json" not in again["files"]
    assert RunFolder.create("demo", run.path).start(dict(config)) is True
    before = (run.path / "config.json").read_bytes()
    other = {**config, "seed": 7, "network": {"beta": 1.0, "mu": [-5, 5]}}
    with pytest.raises(ValueError, match=r"another configuration \(network\.beta: 0\.5 -> 1\.0; seed: 0 -> 7\)"):
        RunFolder.create("demo", run.path).start(other)
    with pytest.raises(ValueError, match=r"command: \"demo\" -> \"other\""):
        RunFolder.create("demo", run.path).start({**config, "command": "other"})
    assert (run.path / "config.json").read_bytes() == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty and holds no run"):
        RunFolder.create("demo", foreign).start(config)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_damaged_run_files_are_named(tmp_path):
    """A third audit (2026-12-04): a truncated step JSON or npz of a run gave "Invalid control character" or a
    BadZipFile traceback, naming no file."""
    from collapse_jax.results import read_json, read_npz

    good = tmp_path / "a.npz"
    atomic_savez(good, {"embeddings": np.arange(6.0).reshape(2, 3)})
    np.testing.assert_array_equal(read_npz(good, "embeddings")[0], np.arange(6.0).reshape(2, 3))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:40])
    bad_json = tmp_path / "step.json"
    bad_json.write_text('{"responses": [\x01')
    for call, words in ((lambda: read_npz(cut, "embeddings"), "cut.npz' is damaged"),
                        (lambda: read_npz(good, "other"), "lacks the array 'other'"),
                        (lambda: read_npz(tmp_path / "none.npz", "x"), "none.npz' is missing"),
                        (lambda: read_json(bad_json), "step.json' is damaged (not valid JSON"),
                        (lambda: read_json(tmp_path / "none.json"), "none.json' is missing")):
        with pytest.raises(ValueError, match=re.escape(words)):
            call()


def test_a_damaged_chunk_is_computed_again(tmp_path):
    """A third audit (2026-12-04): a truncated chunk raised BadZipFile in the middle of a resume, although the
    callers meant an unreadable chunk to be computed again."""
    folder = RunFolder.create("t", tmp_path / "run")
    folder.save_chunk(0, {"x": np.arange(4.0)})
    np.testing.assert_array_equal(folder.load_chunk(0)["x"], np.arange(4.0))
    path = folder.chunk_path(0)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.warns(UserWarning, match="is damaged .* computing that chunk again"):
        assert folder.load_chunk(0) is None
    assert folder.load_chunk(1) is None


def test_environment_records_the_command_line(monkeypatch):
    """A benchmark's JSON says which command produced its figures: the program as typed, arguments shell-quoted."""
    from collapse_jax.results import environment_info

    monkeypatch.setattr("sys.argv", ["benchmarks/bench_x.py", "--out", "a b.json"])
    assert environment_info()["command"] == "benchmarks/bench_x.py --out 'a b.json'"
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/collapse-jax", "sweep", "spec.toml"])
    assert environment_info()["command"] == "collapse-jax sweep spec.toml"


def test_environment_records_python_m_as_typed(monkeypatch):
    """``python3 -m collapse_jax.cli gmm-network`` was recorded as ``cli.py gmm-network`` (argv[0] is the module's
    file), a command no shell runs (a user audit, 2026-12-07): the interpreter and ``-m MODULE`` are recorded."""
    import importlib.machinery
    import types

    from collapse_jax.results import environment_info

    for module, typed in [("collapse_jax.cli", "collapse_jax.cli"), ("collapse_jax.__main__", "collapse_jax")]:
        main = types.ModuleType("__main__")
        main.__spec__ = importlib.machinery.ModuleSpec(module, None)
        main.__file__ = "/src/collapse_jax/" + module.split(".")[-1] + ".py"
        monkeypatch.setitem(sys.modules, "__main__", main)
        monkeypatch.setattr("sys.argv", [main.__file__, "gmm-network", "--out", "a b"])
        monkeypatch.setattr("sys.orig_argv", ["python3", "-m", typed, "gmm-network", "--out", "a b"])
        assert environment_info()["command"] == f"python3 -m {typed} gmm-network --out 'a b'"


def test_a_folder_in_use_by_another_process_is_refused(tmp_path):
    """A user trial (2026-12-05): two runs of different configurations started at once on one folder both passed
    its checks; config.json said seed 0 while the arrays held seed 1's results (and a sweep's loser deleted the
    winner's config.json). The folder is locked from start() to finish(), and by the process while it lives."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from collapse_jax.results import RunFolder
        RunFolder.create("t", {str(out)!r}).start({{"seed": 0}})
        print("started", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "started"
        with pytest.raises(ValueError, match=rf"out: .*/run' is in use by another run \(process {holder.pid}\)"):
            RunFolder.create("t", out).start({"seed": 1})
    finally:
        holder.kill()
        holder.wait()
    folder = RunFolder.create("t", out)  # the holder is gone (killed: the system released its lock)
    with pytest.raises(ValueError, match=r"another configuration \(seed: 0 -> 1\)"):
        folder.start({"seed": 1})
    assert folder.start({"seed": 0}) is True  # the same run, resumed; again in this process (re-entrant)
    assert folder.start({"seed": 0}) is True
    folder.finish()  # releases the lock: another process may start here
    probe = subprocess.run([sys.executable, "-c", f"from collapse_jax.results import RunFolder; "
                            f"RunFolder.create('t', {str(out)!r}).start({{'seed': 0}})"], capture_output=True)
    assert probe.returncode == 0, probe.stderr


def test_a_folder_that_cannot_be_made_is_known_without_making_it(tmp_path):
    """check_folder_creatable: what _make_folder would refuse, refused without making anything (llm-web refused
    --out /proc/x only after minutes of work; a user trial, 2026-12-06)."""
    from collapse_jax.results import check_folder_creatable

    (tmp_path / "file").write_text("x")
    check_folder_creatable(tmp_path / "new" / "deeper")
    check_folder_creatable(tmp_path)
    for bad, match in ((tmp_path / "file", "a file of that name is in the way"),
                       (tmp_path / "file" / "sub", "is not a folder"),
                       ("/proc/collapse-jax-x", "cannot create folders in '/proc'")):
        with pytest.raises(ValueError, match=match):
            check_folder_creatable(bad, "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _with_default_sigint(body):
    """Run ``body`` with Python's own SIGINT handler in place (a test runner may install its own)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        body()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_first_ctrl_c_is_held_until_the_batch_is_saved(capsys):
    """A user trial (2026-12-06): Ctrl-C during gmm-network's native kernel waited for the batch, then threw it away."""
    import os
    import signal

    from collapse_jax.results import saved_before_stopping

    def body():
        steps = []
        with pytest.raises(KeyboardInterrupt):
            with saved_before_stopping("the batch"):
                os.kill(os.getpid(), signal.SIGINT)  # delivered at once: held, not raised here
                steps.append("computed")
                steps.append("saved")
        assert steps == ["computed", "saved"]
        assert "saving the batch first (Ctrl-C again to stop without it)" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back

        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
            with saved_before_stopping("the batch"):
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("never")
        assert "never" not in steps and signal.getsignal(signal.SIGINT) is signal.default_int_handler

        with saved_before_stopping("the batch"):  # no Ctrl-C: nothing raised
            steps.append("quiet")
        assert steps[-1] == "quiet"

    _with_default_sigint(body)


def test_a_package_installed_from_git_records_the_commit_pip_saw(monkeypatch):
    """A user trial (2026-12-06): a wheel or git install recorded no commit (manifest, config and --version said only
    0.1.0), though pip keeps it in direct_url.json."""
    from importlib import metadata
    from pathlib import Path

    import collapse_jax
    from collapse_jax import results

    here = Path(collapse_jax.__file__).resolve().parent

    class Installed:
        def __init__(self, where, text):
            self.where, self.text = where, text

        def locate_file(self, name):
            return self.where / name

        def read_text(self, name):
            return self.text if name == "direct_url.json" else None

    commit = "0123456789abcdef0123456789abcdef01234567"
    vcs = json.dumps({"url": "git+file:///src", "vcs_info": {"vcs": "git", "commit_id": commit}})
    for where, text, expected in [(here.parent, vcs, {"git_commit": commit}),
                                  (here.parent, json.dumps({"url": "file:///x.whl", "archive_info": {}}), {}),
                                  (here.parent, None, {}),
                                  (Path("/elsewhere"), vcs, {})]:  # another copy than the one running
        monkeypatch.setattr(metadata, "distribution", lambda name, d=Installed(where, text): d)
        assert results._installed_revision() == expected


def test_a_failed_write_names_the_file(tmp_path, monkeypatch, capsys):
    """A user trial (2026-12-06): on a full disk the command line said only "[Errno 28] No space left on device"."""
    import errno
    import os

    from collapse_jax import cli, results

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        results.atomic_write_text(tmp_path / "a.txt", "x")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []  # (the temporary file removed)
    out = tmp_path / "run"
    assert cli.main(["recursions-w2", "--replicates", "20", "--generations", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot use '{out}/" in err and "No space left on device" in err, err


def test_settings_that_change_numbers_are_recorded(tmp_path, monkeypatch):
    """A replay trial (2026-12-06): XLA_FLAGS and COLLAPSE_JAX_ATTENTION_GEMM changed results in the last bits and
    were recorded nowhere; nor was which uncommitted changes a dirty checkout ran."""
    import jax

    from collapse_jax import results

    monkeypatch.setenv("COLLAPSE_JAX_ATTENTION_GEMM", "xla")
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=1")
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    info = results.environment_info()
    assert info["environment_variables"]["COLLAPSE_JAX_ATTENTION_GEMM"] == "xla"
    assert info["environment_variables"]["XLA_FLAGS"] == "--xla_backend_optimization_level=1"
    assert "UNRELATED_SECRET" not in info["environment_variables"]
    assert info["matmul_precision"] == jax.config.jax_default_matmul_precision
    if info.get("git_dirty"):
        assert len(info["git_diff_sha256"]) == 64
    folder = RunFolder.create("t", tmp_path / "run")
    folder.write_config({"a": 1})
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["environment"]["environment_variables"]["COLLAPSE_JAX_ATTENTION_GEMM"] == "xla"


def test_pyplot_keeps_a_backend_the_caller_chose(tmp_path):
    """A user trial (2026-12-06): every figure of the library called matplotlib.use("Agg"), so a notebook's inline
    backend was switched off for the user's own figures too. Run in a fresh interpreter: the backend is global."""
    import subprocess
    import sys

    code = ("import matplotlib, matplotlib.pyplot as plt\n"
            "plt.switch_backend('svg')\n"
            "from collapse_jax.results import pyplot\n"
            "assert pyplot() is plt and matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    code = ("import matplotlib\nfrom collapse_jax.results import pyplot\npyplot()\n"
            "assert matplotlib.get_backend().lower() == 'agg', matplotlib.get_backend()\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_input_checks_keep_a_users_warning_to_once_per_line():
    """A user trial (2026-12-06): finite_array (behind nearly every check) left warnings.catch_warnings on each
    call, which resets Python's once-per-line record, so a warning in a user's loop showed on every pass."""
    import subprocess
    import sys

    code = ("import warnings\nfrom collapse_jax import _checks\n"
            "for _ in range(3):\n    _checks.finite_array('x', [1.0])\n    warnings.warn('mine')\n")
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True)
    assert run.stderr.count("UserWarning: mine") == 1, run.stderr
    with pytest.raises(ValueError, match="x must hold real numbers, got complex ones"):
        from collapse_jax import _checks

        _checks.finite_array("x", [1.0, 2 + 1j])


def test_numpy_complex_scalars_in_an_object_array_are_refused():
    """A review (2026-12-06): the complex check without catch_warnings let np.complex64 / clongdouble values of an
    object array through, their imaginary parts dropped."""
    from collapse_jax import _checks

    for value in (np.complex64(1 + 2j), np.clongdouble(1 + 2j), 1 + 2j):
        with pytest.raises(ValueError, match="must hold real numbers, got complex ones"):
            _checks.finite_array("x", np.array([1.0, value], dtype=object))
    np.testing.assert_array_equal(_checks.finite_array("x", np.array([1, 2.5], dtype=object)), [1.0, 2.5])


def test_ignoring_warnings_keeps_the_record_of_warnings_already_shown():
    """A review (2026-12-07): the blocks that silence one warning (``warnings.catch_warnings``) reset Python's record
    of warnings shown, so in the LLM experiments' loops a fine-tune's context warning showed at every step and
    gmm_network's beta note once per proxy size. ``_checks.ignoring_warnings`` silences without that; the LLM
    experiments' Sigma monitor update (``update_tracks``) goes through it."""
    import subprocess
    import sys

    code = (
        "import warnings\nimport numpy as np\nfrom collapse_jax import _checks\n"
        "from llm_bridge.embedding_metrics import sigma_monitor, update_tracks\n"
        "x = np.random.default_rng(0).standard_normal((6, 16))\n"
        "update_tracks(sigma_monitor(6, 16), x)\n"      # (its first call imports SciPy, which resets the record)
        "filters = list(warnings.filters)\n"
        "for _ in range(3):\n"
        "    warnings.warn('mine')\n"
        "    with _checks.ignoring_warnings(RuntimeWarning, 'sil'):\n"
        "        warnings.warn('silenced', RuntimeWarning)\n"
        "        warnings.warn('other', RuntimeWarning)\n"
        "    update_tracks(sigma_monitor(6, 16), x)\n"     # (a block of 3 rows at d = 16: the note it silences)
        "assert warnings.filters == filters\n"
        "warnings.warn('silenced', RuntimeWarning)\n")  # (not silenced any more, and not recorded as shown)
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("UserWarning: mine") == 1, run.stderr
    assert run.stderr.count("RuntimeWarning: other") == 1, run.stderr
    assert run.stderr.count("RuntimeWarning: silenced") == 1, run.stderr
    assert "observed rows give no log-det interval" not in run.stderr


@pytest.mark.parametrize("where", ["gc-callback", "finalizer"])
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_python_drops_is_sent_again(name, where):
    """An audit (2026-12-07): a SIGTERM that arrived while JAX's _xla_gc_callback ran was raised there, where Python
    prints and drops exceptions ("Exception ignored in: <function _xla_gc_callback>"), and the sweep went on to exit
    0; a finalizer (tqdm's __del__) or a weakref callback drops it alike, and so Ctrl-C. The command line's
    sys.unraisablehook sends the signal again, to be raised where the program runs next."""
    import gc
    import signal
    import time

    from collapse_jax import cli

    signum = getattr(signal, name)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    hook = sys.unraisablehook
    sent = []

    def send():
        sent.append(True)
        os.kill(os.getpid(), signum)
        for _ in range(1000):  # the handler runs here, inside the callback or finalizer
            pass

    def callback(phase, info):
        if phase == "start" and not sent:
            send()

    class Finalized:
        def __del__(self):
            send()

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli._stop_on_termination()
        with pytest.raises(cli.Terminated if name == "SIGTERM" else KeyboardInterrupt):
            if where == "gc-callback":
                gc.callbacks.append(callback)
                gc.collect()
            else:
                Finalized()  # (dropped at once: its __del__ runs here)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
        for s, handler in before.items():
            signal.signal(s, handler)
        sys.unraisablehook = hook
    assert sent


def test_a_signal_is_not_sent_again_once_its_handler_is_gone():
    """A review (2026-12-07): a resent signal went to whatever handler was installed by then, so a program that had
    stopped for another reason and restored its handlers got a second KeyboardInterrupt (or SIGTERM's default action)
    50 ms later."""
    import signal
    import time

    from collapse_jax import results

    got = {"first": [], "second": []}
    before = signal.signal(signal.SIGUSR1, lambda signum, frame: got["first"].append(signum))
    try:
        results.resend_later(signal.SIGUSR1)
        time.sleep(0.3)
        assert got["first"] == [signal.SIGUSR1]  # sent to the handler still in place
        results.resend_later(signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, lambda signum, frame: got["second"].append(signum))
        time.sleep(0.3)
        assert got["second"] == []
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_file_names_must_stay_inside_the_run_folder(tmp_path):
    """An audit (2026-12-07): ``save_text("../evil.txt", ...)``, an absolute path or ``create("../x")`` wrote
    outside the run folder (``Path / name`` allows it), and ``chunk_path(-1)`` named ``chunk--00001.npz``."""
    run = RunFolder.create("t", root=tmp_path / "runs")
    for name in ("../evil.txt", str(tmp_path / "abs.txt"), "sub/x.txt", "", ".."):
        with pytest.raises(ValueError, match="must be a plain file name inside the run folder"):
            run.save_text(name, "x")
    with pytest.raises(ValueError, match="filename must be a plain file name"):
        run.save_arrays({"x": np.ones(2)}, {"x": ["a"]}, filename="../arrays.npz")
    with pytest.raises(ValueError, match="name must be a plain file name"):
        RunFolder.create("../x", root=tmp_path / "runs")
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        run.chunk_path(-1)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert run.save_text("summary.txt", "ok").read_text() == "ok"


def test_a_path_file_name_is_read_as_its_string(tmp_path):
    """A review (2026-12-07): the plain-name check refused a ``pathlib.Path`` file name, which ``Path / name`` took
    before; a Path with a folder part is still refused."""
    from pathlib import Path

    run = RunFolder.create("t", root=tmp_path / "runs")
    assert run.save_text(Path("summary.txt"), "ok").read_text() == "ok"
    run.save_arrays({"x": np.ones(2)}, {"x": ["a"]}, filename=Path("more.npz"))
    assert (run.path / "more.npz").exists()
    with pytest.raises(ValueError, match="must be a plain file name inside the run folder"):
        run.save_text(Path("..") / "evil.txt", "x")
