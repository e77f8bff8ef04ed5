"""The sweep runner: specification errors, cells equal to the simulators run alone, chunking invariance, resume
after a kill, two processes under jax.distributed, and the phase-diagram command."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from collapse_jax import gaussian as G
from collapse_jax import gmm_network as GN
from collapse_jax import multinomial as M
from collapse_jax import phase, sweep, sweep_spec
from collapse_jax.cli import main as cli_main
from collapse_jax.sweep_models import MODELS, recursion_schedules
from process_support import signal_once_started

ROOT = Path(__file__).resolve().parents[1]

MULTINOMIAL = """\
simulator = "multinomial"
seed = 3
replicates = 40
keep = "replicates"
[fixed]
categories = 6
steps = 8
n0 = 20
[grid]
regime = ["replace", "accumulate"]
alpha_decay = { linspace = [0.0, 1.0, 3] }
n_growth = [0.0, 1.0]
"""


def _arrays(out):
    ds = sweep.open_dataset(out).load()
    return {name: np.asarray(ds[name].values) for name in ds.variables}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        if a[name].dtype.kind == "f":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            assert np.array_equal(a[name], b[name]), name


# --- the specification -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, field, line, words", [
    ('simulator = "multinomial"\nreplicates = 10\nbogus = 1\n', "bogus", 3, "unknown field"),
    ('simulator = "nope"\n', "simulator", 1, "must be one of"),
    ('simulator = "multinomial"\n[fixed]\ncategories = 1\n', "fixed.categories", 3, "must be in [2"),
    ('simulator = "multinomial"\n[fixed]\nsteps = 2.5\n', "fixed.steps", 3, "must be an integer"),
    ('simulator = "multinomial"\n\n[grid]\nalpha0 = [0.5, 1.5]\n', "grid.alpha0", 4, "value 1.5"),
    ('simulator = "multinomial"\n[grid]\nwhat = [1]\n', "grid.what", 3, "unknown parameter"),
    ('simulator = "multinomial"\n[grid]\nn0 = { linspace = [1, 2] }\n', "grid.n0", 3, "three numbers"),
    ('simulator = "multinomial"\n[fixed]\nn0 = 5\n[grid]\nn0 = [1, 2]\n', "grid.n0", 5, "already set"),
    ('simulator = "multinomial"\nreplicates = 0\n', "replicates", 2, "integer in [1, 4294967296]"),
    ('simulator = "multinomial"\nreplicates = 4294967297\n', "replicates", 2, "integer in [1, 4294967296]"),
    ('simulator = "multinomial"\nquantiles = [0.5, 0.5]\n', "quantiles", 2, "must be distinct"),
    ('simulator = "multinomial"\nquantiles = [0.05, 0.050000001]\n', "quantiles", 2, "q05, q05"),
    ('simulator = "multinomial"\nquantiles = []\n', "quantiles", 2, "non-empty list"),
    # a zip axis named after a parameter it does not set would label the axis with indices, not that parameter
    ('simulator = "multinomial"\n[grid]\nn0 = [10, 20]\n[[zip]]\nname = "alpha0"\nalpha_decay = [0.1, 0.2]\n'
     'n_growth = [0.0, 1.0]\n', "zip[0].name", 5, "'alpha0' is a parameter of multinomial this zip does not set"),
    ('simulator = "multinomial"\n[[zip]]\nname = "step"\nalpha0 = [0.1, 0.2]\n', "zip[0].name", 3,
     "names a variable of the dataset"),
    ('simulator = "multinomial"\n[[zip]]\nname = "loss_stats"\nalpha0 = [0.1, 0.2]\n', "zip[0].name", 3,
     "names a variable of the dataset"),
    ('simulator = "sigma-blocks"\n[grid]\ndim = [2, 8]\n', "grid.dim", 3, "value 2: must be in [3, 4096]"),
    # a constraint broken by a grid value points at that axis, not at "fixed"
    ('simulator = "linear-regression"\n[grid]\ndim = [5, 30]\n', "grid.dim", 3,
     "num_samples must be >= dim + 2 = 32, got 20 (in the cell {'dim': 30})"),
    ('simulator = "multinomial"\n[[zip]]\nalpha0 = [0.1, 0.2]\nn0 = [10]\n', "zip[0]", 2, "one length"),
    # a user trial (2026-12-07): the default name 'alpha0+n0' was documented nowhere, and ds.sel(alpha0+n0=...) fails
    ('simulator = "multinomial"\n[[zip]]\nname = "start 1"\nalpha0 = [0.1, 0.2]\n', "zip[0].name", 3,
     "must be an identifier (letters, digits and _; without a name the dimension is its parameters joined by +, "
     "e.g. 'alpha0+n0', which ds.sel takes as a dict, not as a keyword), got 'start 1'"),
    ('simulator = "gaussian"\n[fixed]\nn0 = 1\n', "fixed.n0", 3, "n0 must be >= 2"),
    ('simulator = "gmm-network"\nbackend = "triton"\n', "backend", 2, "must be one of"),
])
def test_spec_errors_name_the_field_and_the_line(text, field, line, words):
    with pytest.raises(sweep_spec.SpecError) as err:
        sweep_spec.parse(text, name="s.toml")
    message = str(err.value)
    assert message.startswith(f"s.toml line {line}: {field}: "), message
    assert words in message


@pytest.mark.parametrize("body, field", [
    ('simulator = "gaussian"\n[grid]\nmu = [1{zeros}]\n', "grid.mu"),
    ('simulator = "gaussian"\n[fixed]\nsigma = 1{zeros}\n[grid]\nn0 = [5]\n', "fixed.sigma"),
    ('simulator = "multinomial"\nquantiles = [1{zeros}]\n[grid]\nn0 = [5]\n', "quantiles"),
    ('simulator = "multinomial"\n[grid]\nalpha0 = {{ linspace = [0, 1{zeros}, 3] }}\n', "grid.alpha0"),
])
def test_spec_integer_beyond_float_range_is_a_spec_error(body, field):
    """An integer of 400 digits (TOML integers are unbounded) for a real field: math.isfinite raised OverflowError,
    a traceback on the command line instead of the field's error."""
    with pytest.raises(sweep_spec.SpecError, match=re.escape(field)):
        sweep_spec.parse(body.format(zeros="0" * 400))


def test_spec_grid_zip_and_generators():
    spec = sweep_spec.parse(textwrap.dedent("""\
        simulator = "multinomial"
        [grid]
        n_growth = { range = [0, 3, 1] }
        alpha_decay = { geomspace = [0.1, 10, 3] }
        [[zip]]
        name = "start"
        alpha0 = [0.2, 0.4]
        n0 = [10, 20]
        """))
    assert spec.shape == (3, 3, 2) and [a.name for a in spec.axes] == ["n_growth", "alpha_decay", "start"]
    np.testing.assert_allclose(spec.axes[1].values["alpha_decay"], [0.1, 1.0, 10.0])
    assert spec.cell(1 * 6 + 2 * 2 + 1) == {"n_growth": 1, "alpha_decay": spec.axes[1].values["alpha_decay"][2],
                                            "alpha0": 0.4, "n0": 20}
    # a float parameter's whole numbers are floats (alpha0 = [0, 1] was an int64 coordinate; a user trial), an
    # integer parameter's stay integers
    assert [type(v) for v in spec.axes[0].values["n_growth"]] == [float] * 3
    assert [type(v) for v in spec.axes[2].values["n0"]] == [int] * 2
    ints = sweep_spec.parse('simulator = "gaussian"\n[grid]\nalpha0 = [0, 1]\n[[zip]]\nsigma = [1, 2]\n'
                           'n0 = [5, 6]\n')
    assert ints.axes[0].values["alpha0"] == (0.0, 1.0) and type(ints.axes[1].values["sigma"][0]) is float


def test_quantile_names_sort_as_their_values():
    """A user trial (2026-12-05): 0.05 and 0.051 were named q05 and q5_1."""
    names = sweep_spec.statistic_names([0.001, 0.05, 0.051, 0.5, 0.95, 0.999])
    assert names == ["mean", "sem", "q00_1", "q05", "q05_1", "q50", "q95", "q99_9"]
    assert names[2:] == sorted(names[2:])


def test_generated_axis_values_are_the_ones_a_user_selects():
    """A user trial (2026-12-05): range [0.1, 0.4, 0.1] gave 4 cells, the stop included and the third
    0.30000000000000004 (ds.sel(alpha0=0.3) a KeyError); linspace's coordinates carried the same noise; geomspace /
    logspace could not make an integer axis (n0); a repeated value made two cells behind one coordinate."""
    def axis(values, key="alpha0"):
        return sweep_spec.parse(f'simulator = "multinomial"\n[grid]\n{key} = {values}\n').axes[0].values[key]

    assert axis("{ range = [0.1, 0.4, 0.1] }") == (0.1, 0.2, 0.3)
    assert axis("{ range = [0.4, 0.0, -0.1] }") == (0.4, 0.3, 0.2, 0.1)
    assert axis("{ range = [10, 20, 3] }", "n0") == (10, 13, 16, 19)
    assert axis("{ linspace = [0.0, 1.0, 6] }") == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert axis("{ geomspace = [10, 1000, 5] }", "n0") == (10, 32, 100, 316, 1000)
    assert axis("{ logspace = [1, 3, 3] }", "n0") == (10, 100, 1000)
    for values, key, words in [("[0.5, 0.5]", "alpha0", "got 0.5 twice"),
                               ("{ geomspace = [10, 12, 5] }", "n0", "got 10 twice \\(after rounding to integers\\)")]:
        with pytest.raises(sweep_spec.SpecError, match=f"grid.{key}: values must be distinct .*{words}"):
            axis(values, key)
    zipped = 'simulator = "multinomial"\n[[zip]]\nalpha0 = [0.2, 0.2]\nn0 = [50, {}]\n'
    assert sweep_spec.parse(zipped.format(100)).axes[0].values == {"alpha0": (0.2, 0.2), "n0": (50, 100)}
    with pytest.raises(sweep_spec.SpecError, match=r"zip\[0\]: rows must be distinct .*'alpha0': 0.2, 'n0': 50"):
        sweep_spec.parse(zipped.format(50))


# --- the runner -------------------------------------------------------------------------------------------------
def test_each_cell_equals_the_simulator_alone(tmp_path):
    import zarr

    spec = sweep_spec.parse(MULTINOMIAL)
    with warnings.catch_warnings():  # text coordinates in a type zarr format 3 specifies: no "unstable" warning
        warnings.simplefilter("error", zarr.errors.UnstableSpecificationWarning)
        report = sweep.run(spec, tmp_path, progress=False)
    assert report.cells_done == report.cells == 12
    for name in ("regime", "statistic"):
        assert zarr.open_array(str(tmp_path / sweep.STORE / name)).metadata.to_dict()["data_type"] == "string"
    ds = sweep.open_dataset(tmp_path)
    with warnings.catch_warnings():  # a finished sweep opens as users open it, without the library, and quietly
        warnings.simplefilter("error")
        xr.open_zarr(str(tmp_path / sweep.STORE)).close()
    model = MODELS["multinomial"]
    for index in (0, 5, 7, 11):
        cell = model.complete(spec.cell(index))
        alone = M.simulate(3, model.truth(cell), *recursion_schedules(cell), M.MultinomialConfig(cell["regime"]), 40)
        here = ds["loss"].sel(regime=cell["regime"], alpha_decay=cell["alpha_decay"], n_growth=cell["n_growth"])
        np.testing.assert_array_equal(here.values, alone.astype(np.float32))
        stats = ds["loss_stats"].sel(regime=cell["regime"], alpha_decay=cell["alpha_decay"],
                                     n_growth=cell["n_growth"])
        np.testing.assert_allclose(stats.sel(statistic="mean"), alone.mean(0), rtol=1e-6)
        np.testing.assert_allclose(stats.sel(statistic="q50"), np.median(alone, 0), rtol=1e-6)
        theory = M.theory_risk(model.truth(cell), *recursion_schedules(cell), M.MultinomialConfig(cell["regime"]))
        np.testing.assert_allclose(ds["loss_theory"].sel(regime=cell["regime"], alpha_decay=cell["alpha_decay"],
                                                         n_growth=cell["n_growth"]), theory)


def test_a_store_of_replicates_larger_than_the_free_disk_is_refused_before_it_is_made(tmp_path, monkeypatch):
    """A user trial (2026-12-06): keep = "replicates" over a grid of about 160 GB on 66 GB free started, its bar
    at 21 hours."""
    import collections

    spec = sweep_spec.parse('simulator = "gaussian"\nreplicates = 1000\nkeep = "replicates"\n'
                            '[fixed]\nsteps = 9\nn0 = 4\n[grid]\nalpha0 = [0.5, 0.0]\n')
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(sweep.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 50_000, 50_000))
    # (in KiB: "about 0.0 GiB but 0.0 GiB is free" said nothing; a user trial, 2026-12-06)
    with pytest.raises(ValueError, match=r"records need about 78\.1 KiB \(2 cells x 1,000 replicates x 10 steps\) "
                                         r"but 48\.8 KiB is free"):
        sweep.run(spec, tmp_path / "big", progress=False)
    assert not (tmp_path / "big" / sweep.STORE).exists()
    text = tmp_path / "big.toml"  # the command line refuses it before it makes the run folder (an empty one was
    text.write_text('simulator = "gaussian"\nreplicates = 1000\nkeep = "replicates"\n'  # left; a user trial)
                    '[fixed]\nsteps = 9\nn0 = 4\n[grid]\nalpha0 = [0.5, 0.0]\n')
    assert cli_main(["sweep", str(text), "--out", str(tmp_path / "cli")]) == 2
    assert not (tmp_path / "cli").exists()
    monkeypatch.setattr(sweep.shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    sweep.run(spec, tmp_path / "big", progress=False)                     # 80 kB fit


def test_gaussian_grid_cells_equal_the_simulator_alone(tmp_path):
    spec = sweep_spec.parse('simulator = "gaussian"\nseed = 1\nreplicates = 16\nkeep = "replicates"\n'
                            '[fixed]\nsteps = 5\nn0 = 4\n[grid]\nalpha0 = [0.5, 0.0, 0.3]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    cells = [MODELS["gaussian"].complete({"alpha0": a, "steps": 5, "n0": 4}) for a in (0.5, 0.0, 0.3)]
    alpha, n = (np.stack(x) for x in zip(*map(recursion_schedules, cells)))
    direct = G.simulate(1, 0.0, 1.0, alpha, n, G.GaussianConfig(), 16)  # (grid, replicate, step), as the sweep calls
    np.testing.assert_array_equal(ds["loss"].values, direct.astype(np.float32))
    # the exact pure-synthetic W2 is stored where it applies (alpha = 0), NaN elsewhere, wherever that cell sits in
    # the grid (a user trial, 2026-12-06: with alpha0 = [0.5, 0.0, 0.3] the variable was left out without a word)
    np.testing.assert_allclose(ds["loss_theory"].sel(alpha0=0.0).values, G.pure_synthetic_w2(1.0, n[1]), rtol=1e-12)
    assert np.isnan(ds["loss_theory"].sel(alpha0=[0.5, 0.3]).values).all()
    accumulate = sweep_spec.parse('simulator = "gaussian"\nreplicates = 4\n[fixed]\nsteps = 3\nn0 = 4\n'
                                  'regime = "accumulate"\n[grid]\nalpha0 = [0.0, 0.5]\n')
    sweep.run(accumulate, tmp_path / "acc", progress=False)
    assert "loss_theory" not in sweep.open_dataset(tmp_path / "acc")  # no cell has a closed form


def test_gmm_network_cells_equal_the_simulator_alone(tmp_path):
    spec = sweep_spec.parse('simulator = "gmm-network"\nseed = 2\nreplicates = 6\nkeep = "replicates"\n'
                            '[fixed]\nnum_steps = 12\n[grid]\nbeta = [0.25]\nnum_human = [0, 5]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    for beta in (0.25,):
        for m0 in (0, 5):
            cfg = GN.paper_config(4, beta=beta, num_human=m0, num_steps=12)
            alone = GN.simulate(2, cfg, 6, progress=False)
            cell = ds.sel(beta=beta, num_human=m0)
            np.testing.assert_array_equal(cell["dnorm"].values, alone.dnorm.astype(np.float32))
            np.testing.assert_array_equal(cell["collapsed"].values, alone.collapsed)
            assert cell["fraction_collapsed"].item() == alone.collapsed[:, -1].mean()
    assert phase.plot("gmm", ds, tmp_path)[0].stat().st_size > 10_000


def test_chunking_does_not_change_the_dataset(tmp_path):
    spec = sweep_spec.parse(MULTINOMIAL)
    sweep.run(spec, tmp_path / "a", progress=False, cells_per_chunk=1)
    sweep.run(spec, tmp_path / "b", progress=False, cells_per_chunk=7)
    _assert_same(_arrays(tmp_path / "a"), _arrays(tmp_path / "b"))


def test_ctrl_c_during_a_chunk_writes_its_cells_first(tmp_path, monkeypatch, capsys):
    """A Ctrl-C while a compiled or native call runs takes effect only when the call returns: the chunk's cells are
    written before the sweep stops (they were thrown away), the bar's last line counts them, and the resume runs
    only the others."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    spec = sweep_spec.parse(MULTINOMIAL)
    model = type(MODELS[spec.simulator])  # (the class: patching the instance left a bound method on it for later tests)
    real, calls = model.run, []

    def pressed_during_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "run", pressed_during_the_first)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep.run(spec, tmp_path / "a", progress=True, cells_per_chunk=4)
    finally:
        signal.signal(signal.SIGINT, before)
    assert sweep.cells_done(tmp_path / "a").sum() == 4
    assert "4/12" in [line for line in capsys.readouterr().err.splitlines() if "/12" in line][-1]  # (it read 0/12)
    monkeypatch.setattr(model, "run", real)
    assert sweep.run(spec, tmp_path / "a", progress=False, resume=True).cells_run == 8
    sweep.run(spec, tmp_path / "b", progress=False)
    _assert_same(_arrays(tmp_path / "a"), _arrays(tmp_path / "b"))


def test_chunks_count_the_raw_samples_a_recursion_touches(tmp_path, monkeypatch):
    """A user trial (2026-12-06): a Gaussian grid with accumulate-subsample cells of n0 = 1000 ran as one chunk of
    150 s (chunks counted replicate-steps alone), its bar at 0 and a kill losing every cell. Each generation's raw
    pool counts too: the costly cells get chunks of their own."""
    spec = sweep_spec.parse('simulator = "gaussian"\nreplicates = 10\n[fixed]\nsteps = 3\nn0 = 50\n'
                            '[grid]\nregime = ["replace", "accumulate-subsample"]\nalpha0 = [0.0, 0.5]\n')
    model = MODELS["gaussian"]
    light, heavy = (model.complete(spec.cell(i)) for i in (0, spec.num_cells - 1))
    assert model.work(light) == 4 and model.work(heavy) == 4 + 50 * (1 + 2 + 3 + 4)  # (steps 0..3, pools)
    monkeypatch.setattr(sweep, "CHUNK_REPLICATE_STEPS", 10 * 500 * 2)
    chunks = []
    sweep.run(spec, tmp_path, progress=False, on_chunk=chunks.append)
    assert [len(c) for c in chunks] == [2, 2]  # one block (a row of the last axis) each; all four in one before
    # the costliest cell where the cost grows with several axes at once (regime x n0 x steps): the probe cells, one
    # axis at a time, found 66,011 of 5,151,101 (a review, 2026-12-06)
    joint = sweep_spec.parse('simulator = "gaussian"\nreplicates = 10\n[grid]\n'
                             'regime = ["replace", "accumulate-subsample"]\nn0 = [10, 1000]\nsteps = [100, 10]\n')
    every = max(model.work(model.complete(joint.cell(i))) for i in range(joint.num_cells))
    assert sweep._max_work(joint, model) == every == 101 + 1000 * sum(range(1, 102))


def test_an_existing_sweep_is_resumed_only_when_asked(tmp_path):
    spec = sweep_spec.parse(MULTINOMIAL)
    sweep.run(spec, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"holds this sweep \(12/12 cells done\); continue it with resume=True"):
        sweep.run(spec, tmp_path, progress=False)
    assert sweep.run(spec, tmp_path, progress=False, resume=True).cells_run == 0
    other = sweep_spec.parse(MULTINOMIAL.replace("seed = 3", "seed = 4"))
    with pytest.raises(ValueError, match="another sweep .*differs in seed"):
        sweep.run(other, tmp_path, progress=False, resume=True)
    # how it runs is not what it computes: a resume may change the chunking or the description
    how = sweep_spec.parse(MULTINOMIAL.replace("seed = 3", 'seed = 3\ncells_per_chunk = 5\ndescription = "x"'))
    assert sweep.run(how, tmp_path, progress=False, resume=True).cells_run == 0


def test_a_resume_is_refused_while_another_process_runs_the_sweep(tmp_path):
    """A user trial (2026-12-05): ``--resume`` skipped the folder's lock, so a second resume (or one racing with a
    fresh start) computed the same cells as the running sweep and overwrote them. The lock is released when the
    process ends: the same resume then runs."""
    spec = sweep_spec.parse(MULTINOMIAL)
    sweep.run(spec, tmp_path, progress=False)
    from collapse_jax.results import release_folder_locks

    release_folder_locks()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, os, sys, time
        fd = os.open({str(tmp_path / ".run.lock")!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242\\n", 0)
        print("locked", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=r"is in use by another run \(process 4242\)"):
            sweep.run(spec, tmp_path, progress=False, resume=True)
        # without resume too: "continue it with --resume" was said first, and then refused (a user trial, 2026-12-06)
        with pytest.raises(ValueError, match=r"is in use by another run \(process 4242\)"):
            sweep.run(spec, tmp_path, progress=False)
    finally:
        holder.communicate("")
    with pytest.raises(sweep.SweepExists, match="continue it with resume=True"):
        sweep.run(spec, tmp_path, progress=False)
    assert (tmp_path / ".run.lock").read_text() == ""        # (the refusal let its lock go)
    assert sweep.run(spec, tmp_path, progress=False, resume=True).cells_run == 0
    release_folder_locks()
    assert (tmp_path / ".run.lock").read_text() == ""        # no process id of a run that has ended


@pytest.mark.parametrize("make, message", [
    (lambda store: store.mkdir(), "is not a sweep's store"),
    (lambda store: __import__("zarr").open_group(str(store), mode="w"), "is not a collapse-jax sweep's store"),
])
def test_a_store_of_another_program_is_refused_with_a_message(make, message, tmp_path):
    """A user trial: a dataset.zarr without a sweep in it failed with a KeyError traceback or zarr's own error."""
    make(tmp_path / sweep.STORE)
    with pytest.raises(ValueError, match=message):
        sweep.run(sweep_spec.parse(MULTINOMIAL), tmp_path, progress=False, resume=True)


@pytest.mark.parametrize("text, message", [   # a third audit (2026-12-04): tracebacks, or 728 TiB asked for
    ('simulator = "multinomial"\nzip = [1, 2]\n', r"zip\[0\]: must be a table"),
    ('simulator = ["multinomial"]\n', "simulator: must be one of"),
    ('simulator = "multinomial"\n[grid]\nn0 = { range = [1, 100000000000000, 1] }\n', "gives 1e\\+14 values"),
    ('simulator = "multinomial"\n[grid]\nalpha0 = { linspace = [0, 1, 1000000000000] }\n',
     "linspace num 1,000,000,000,000 is more than"),
])
def test_malformed_specs_get_a_message(text, message):
    with pytest.raises(sweep_spec.SpecError, match=message):
        sweep_spec.parse(text, name="s.toml")


def test_a_steps_axis_pads_each_cell_and_a_one_value_axis_still_finishes_the_folder(tmp_path, capsys):
    """Cells of one block with different steps crashed np.stack (steps as the last axis); a recursion sweep whose
    plot axis has one value crashed in the contour after every cell was done, and manifest.json was never written."""
    out = tmp_path / "steps"
    spec = tmp_path / "s.toml"
    spec.write_text('simulator = "multinomial"\nreplicates = 4\n[fixed]\ncategories = 4\n[grid]\nsteps = [3, 8, 5]\n')
    assert cli_main(["sweep", str(spec), "--out", str(out), "--no-plots"]) == 0
    mean = sweep.open_dataset(out)["loss_stats"].isel(statistic=0).values
    assert np.isfinite(mean).sum(axis=1).tolist() == [4, 9, 6] and np.isnan(mean[0, 4:]).all()
    spec.write_text('simulator = "multinomial"\nreplicates = 4\n[fixed]\nsteps = 2\ncategories = 4\n[grid]\n'
                    'alpha_decay = [0.5]\nn_growth = [0.0, 0.5]\n')
    out = tmp_path / "one"
    assert cli_main(["sweep", str(spec), "--out", str(out)]) == 0
    assert "alpha_decay has one" in capsys.readouterr().out and (out / "manifest.json").exists()


def test_bad_process_environment_names_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAX_NUM_PROCESSES", "abc")
    assert _sweep_cli(tmp_path, SMALL, tmp_path / "o", "--process-id", "0") == 2
    assert "the environment variable JAX_NUM_PROCESSES must be an integer >= 1, got 'abc'" in capsys.readouterr().err


def test_bad_grids_are_refused_before_anything_runs():
    with pytest.raises(sweep_spec.SpecError, match="grid: names no parameter"):
        sweep_spec.parse('simulator = "gaussian"\nreplicates = 10\n[fixed]\nsteps = 3\n')
    with pytest.raises(sweep_spec.SpecError, match="has 10,000,000,000 cells, more than 1,000,000"):
        sweep_spec.parse('simulator = "multinomial"\nreplicates = 10\n[grid]\n'
                         'alpha0 = { linspace = [0.0, 1.0, 100000] }\nn_growth = { linspace = [0.0, 1.0, 100000] }\n')


_RUN = """
import os, sys
from collapse_jax import phase, sweep, sweep_spec
spec = sweep_spec.load(sys.argv[1])
stop = int(sys.argv[3])
calls = []
def kill(indices):
    calls.append(indices)
    if len(calls) == stop:
        os.kill(os.getpid(), 9)
report = sweep.run(spec, sys.argv[2], progress=False, cells_per_chunk=2, resume=sys.argv[4] == "1",
                   on_chunk=kill if stop else None)
print(report.cells_run)
"""


def _run(tmp_path, out: str, stop: int = 0, resume: bool = False, *, popen: bool = False):
    """The sweep ``MULTINOMIAL`` in a fresh process (the float32 a user gets), killed after chunk ``stop``."""
    (tmp_path / "s.toml").write_text(MULTINOMIAL)
    (tmp_path / "run.py").write_text(_RUN)
    args = [sys.executable, str(tmp_path / "run.py"), str(tmp_path / "s.toml"), str(tmp_path / out), str(stop),
            "1" if resume else "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLLAPSE_JAX_PROGRESS": "0"}
    if popen:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The arrays of an uninterrupted one-process float32 run of ``MULTINOMIAL``."""
    tmp = tmp_path_factory.mktemp("whole")
    done = _run(tmp, "whole")
    assert done.returncode == 0, done.stderr
    return _arrays(tmp / "whole")


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, whole):
    stop = random.Random().randint(1, 5)  # a random chunk of the six
    killed = _run(tmp_path, "cut", stop)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sweep.cells_done(tmp_path / "cut").sum() == 2 * stop
    resumed = _run(tmp_path, "cut", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert int(resumed.stdout.split()[-1]) == 12 - 2 * stop
    _assert_same(whole, _arrays(tmp_path / "cut"))


def test_resume_after_a_kill_at_a_random_moment(tmp_path, whole):
    """SIGKILL at a random time (store creation, a call, a write): the resumed dataset equals an uninterrupted one."""
    proc = _run(tmp_path, "cut", popen=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "cut" / sweep.STORE).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(random.Random().uniform(0.0, 1.5))
    proc.kill()
    proc.wait()
    done = _run(tmp_path, "cut", resume=True)
    assert done.returncode == 0, done.stderr
    _assert_same(whole, _arrays(tmp_path / "cut"))


def test_resume_needs_the_same_precision(tmp_path):
    killed = _run(tmp_path, "f32", stop=1)  # float32 in a fresh process; this one computes in float64
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with pytest.raises(ValueError, match="computed in float32"):
        sweep.run(sweep_spec.parse(MULTINOMIAL), tmp_path / "f32", resume=True, progress=False)


def test_resume_needs_the_same_kernels(tmp_path):
    """The native and JAX kernels draw different numbers: a sweep started with one is not resumed with the other
    (it was, silently, and the mixed dataset matched neither run)."""
    from collapse_jax import _native

    if _native.resolve_backend("auto") != "native":
        pytest.skip("needs the native kernels (auto resolves to jax here)")
    spec = sweep_spec.parse(MULTINOMIAL)

    def stop(indices):
        raise KeyboardInterrupt

    _native.prefer_backend("jax")
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep.run(spec, tmp_path, progress=False, cells_per_chunk=2, on_chunk=stop)
    finally:
        _native.prefer_backend("auto")
    with pytest.raises(ValueError, match=r"computed with the jax kernels \(backend = 'auto'\), this process would "
                                         "use native"):
        sweep.run(spec, tmp_path, progress=False, resume=True)


def _two_blocks(backend: str):
    """SMALL in two blocks of one cell (a chunk each), its backend written out."""
    return sweep_spec.parse(SMALL.replace("replicates = 4", f'replicates = 4\nbackend = "{backend}"')
                            .replace("n0 = [10, 20]", "n0 = [10, 20]\nalpha0 = [0.5]"))


def _stop_after_a_chunk(spec, out) -> None:
    def stop(indices):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run(spec, out, progress=False, cells_per_chunk=1, on_chunk=stop)
    assert sweep.cells_done(out).sum() == 1


@pytest.mark.parametrize("first, then", [("auto", "native"), ("native", "auto")])
def test_a_backend_that_runs_the_same_kernels_resumes(tmp_path, first, then):
    """``backend = "auto"``, which resolves to the native kernels here, runs what ``"native"`` runs: a sweep begun
    with one and resumed with the other was refused as another sweep ("its specification differs in backend: "auto"
    -> "native""; 2026-12-07). It continues, and equals an uninterrupted run."""
    from collapse_jax import _native

    if _native.resolve_backend("auto") != "native":
        pytest.skip("needs the native kernels (auto resolves to jax here)")
    _stop_after_a_chunk(_two_blocks(first), tmp_path / "cut")
    report = sweep.run(_two_blocks(then), tmp_path / "cut", progress=False, resume=True)
    assert (report.cells_run, report.cells_done) == (1, 2)
    sweep.run(_two_blocks(then), tmp_path / "whole", progress=False)
    _assert_same(_arrays(tmp_path / "whole"), _arrays(tmp_path / "cut"))


def test_a_backend_that_runs_the_same_kernels_resumes_a_run_killed_while_building_its_store(tmp_path):
    """A SIGKILL while the store was built leaves config.json alone (no kernels recorded, none ran): its resume
    with ``native`` where ``auto`` was written was refused as "another configuration (backend: ...)"."""
    from collapse_jax import _native
    from collapse_jax.results import RunFolder

    if _native.resolve_backend("auto") != "native":
        pytest.skip("needs the native kernels (auto resolves to jax here)")
    spec = _two_blocks("auto")
    RunFolder(tmp_path).start({k: v for k, v in json.loads(json.dumps(spec.to_dict())).items()
                               if k not in sweep._HOW_TO_RUN})  # what the killed run left
    assert sweep.run(_two_blocks("native"), tmp_path, progress=False, resume=True).cells_done == 2
    # config.json records the specification the store was built with, not the killed run's spelling (a review)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["backend"] == "native"


def test_a_backend_that_runs_other_kernels_is_refused_on_resume(tmp_path, monkeypatch):
    """Other kernels draw other numbers: a sweep whose ``auto`` ran the native kernels is not resumed with
    ``backend = "jax"``, ``--backend jax`` or the native kernels switched off (COLLAPSE_JAX_NATIVE=0), and the message
    says what each run asked for. A store without recorded kernels (before 2026-12-02) compares the backend as
    written."""
    import zarr

    from collapse_jax import _native

    if _native.resolve_backend("auto") != "native":
        pytest.skip("needs the native kernels (auto resolves to jax here)")
    out = tmp_path / "cut"
    _stop_after_a_chunk(_two_blocks("auto"), out)
    refused = r"computed with the native kernels \(backend = 'auto'\), this process would use jax \({}\)"
    with pytest.raises(ValueError, match=refused.format("backend = 'jax'")):
        sweep.run(_two_blocks("jax"), out, progress=False, resume=True)
    with monkeypatch.context() as m:
        m.setattr(_native, "_PREFERRED", ["jax"])
        with pytest.raises(ValueError, match=refused.format("backend = 'auto', --backend jax")):
            sweep.run(_two_blocks("auto"), out, progress=False, resume=True)
    with monkeypatch.context() as m:
        m.setenv("COLLAPSE_JAX_NATIVE", "0")
        m.setattr(_native, "available", lambda: False)  # (this process built them before)
        with pytest.raises(ValueError, match=refused.format("backend = 'auto', COLLAPSE_JAX_NATIVE=0")):
            sweep.run(_two_blocks("auto"), out, progress=False, resume=True)
    root = zarr.open_group(str(out / sweep.STORE), mode="r+")
    del root.attrs["backend"]
    with pytest.raises(ValueError, match='differs in backend: "auto" -> "native"'):
        sweep.run(_two_blocks("native"), out, progress=False, resume=True)
    assert sweep.run(_two_blocks("auto"), out, progress=False, resume=True).cells_done == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_jax_distributed_equal_one(tmp_path, whole):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(MULTINOMIAL)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLLAPSE_JAX_PROGRESS": "0"}
    procs = [subprocess.Popen([sys.executable, "-m", "collapse_jax.cli", "sweep", str(spec_path), "--out",
                               str(tmp_path / "two"), "--no-plots", "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
    assert "[process 0/2]" in outputs[0][0] and "[process 1/2]" in outputs[1][0]
    ran = [int(stdout.split("] ")[1].split(" cells run")[0]) for stdout, _ in outputs]
    assert ran[0] > 0 and ran[1] > 0 and sum(ran) == 12  # each process ran its share
    _assert_same(whole, _arrays(tmp_path / "two"))


def test_phase_command_writes_the_dataset_and_the_diagram(tmp_path, capsys):
    assert cli_main(["phase", "filter", "--replicates", "4", "--steps", "5", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "phase-filter.png").stat().st_size > 10_000
    ds = sweep.open_dataset(tmp_path)
    assert ds["cell_done"].all() and ds.sizes["type1"] == ds.sizes["type2"] == 10
    assert "100/100 cells done" in capsys.readouterr().out
    assert (tmp_path / "manifest.json").is_file()          # finished, as every command's run folder says
    # with the kernels and precision that ran (config.json keeps the backend asked for; a user trial, 2026-12-06)
    summary = json.loads((tmp_path / "manifest.json").read_text())["summary"]
    assert summary["kernel"] == ds.attrs["backend"] and summary["precision"] == ds.attrs["precision"]


def test_chunks_are_cut_by_work_without_cells_per_chunk(tmp_path, monkeypatch):
    """Records that fit in memory no longer make one chunk of a long sweep (its bar stood still and a kill lost
    everything): without cells_per_chunk a chunk holds at most CHUNK_REPLICATE_STEPS of work; the numbers are the
    same."""
    spec = sweep_spec.parse(MULTINOMIAL)  # 12 cells in blocks of 2, 40 replicates x 9 records each
    whole_run, cut_run = [], []
    sweep.run(spec, tmp_path / "one", progress=False, on_chunk=whole_run.append)
    monkeypatch.setattr(sweep, "CHUNK_REPLICATE_STEPS", 2 * 40 * 9 * (1 + 6 / 4))  # (K = 6 categories)
    sweep.run(spec, tmp_path / "cut", progress=False, on_chunk=cut_run.append)
    assert len(whole_run) == 1 and [len(c) for c in cut_run] == [2] * 6
    _assert_same(_arrays(tmp_path / "one"), _arrays(tmp_path / "cut"))


def test_multinomial_chunks_count_the_categories(tmp_path, monkeypatch):
    """A user trial (2026-12-07): chunks counted replicate-steps whatever K, so K = 10^6 made a chunk of hours that
    no signal stopped. A generation costs O(K): with K = 4000 each chunk here is one block (it was all four), and
    the numbers are the same."""
    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 4\n[fixed]\ncategories = 4000\nsteps = 10\n'
                            '[grid]\nn0 = [10, 20, 30, 40]\nn_growth = [0.0, 1.0]\n')
    assert MODELS["multinomial"].work(MODELS["multinomial"].complete(spec.cell(0))) == 11 * 1001
    whole_run, cut_run = [], []
    sweep.run(spec, tmp_path / "one", progress=False, on_chunk=whole_run.append)
    monkeypatch.setattr(sweep, "CHUNK_REPLICATE_STEPS", 2 * 4 * 11 * 1001)
    sweep.run(spec, tmp_path / "cut", progress=False, on_chunk=cut_run.append)
    assert len(whole_run) == 1 and [len(c) for c in cut_run] == [2] * 4
    _assert_same(_arrays(tmp_path / "one"), _arrays(tmp_path / "cut"))


def test_a_cell_no_signal_can_stop_for_minutes_is_warned_of_before_it_runs(tmp_path, monkeypatch):
    """A user trial (2026-12-07): one multinomial cell of K = 10^6, 50 replicates of 10^5 steps ran 12 minutes past
    a SIGTERM without a word; a chunk holds whole cells, so the sweep now says so, with an estimate, before it
    runs."""
    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 50\n[fixed]\ncategories = 1000000\n'
                            'steps = 100000\n[grid]\nn0 = [10]\n')

    def not_run(*args, **kwargs):  # (the warning comes first; the cell would take hours)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(type(MODELS["multinomial"]), "run", not_run)
        with pytest.warns(UserWarning, match=r"the costliest call is about 1.3e\+12 steps' work \(50 replicates of "
                          r"each of its cells\), roughly 34.7 hours at 10,000,000 a second, whose cells are written "
                          r"only as it ends"):
            with pytest.raises(KeyboardInterrupt):
                sweep.run(spec, tmp_path / "big", progress=False)
        # a call of several such cells where cells_per_chunk is given (a review, 2026-12-07)
        two = sweep_spec.parse('simulator = "multinomial"\nreplicates = 50\n[fixed]\ncategories = 1000000\n'
                               'steps = 100000\n[grid]\nn0 = [10, 20]\n')
        with pytest.warns(UserWarning, match=r"about 2.5e\+12 steps' work"):
            with pytest.raises(KeyboardInterrupt):
                sweep.run(two, tmp_path / "big2", progress=False, cells_per_chunk=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (none for a cell of seconds)
        sweep.run(sweep_spec.parse(SMALL), tmp_path / "small", progress=False)


def test_phase_command_keeps_each_diagrams_own_replicates(capsys):
    """Without --replicates a diagram runs its own default (the command's 1000 used to replace the subsample
    diagram's 200); with it, the number given."""
    for args, expected in [(["recursions-subsample"], 200), (["recursions"], 1000),
                           (["recursions-subsample", "--replicates", "7"], 7)]:
        assert cli_main(["phase", *args, "--print-spec"]) == 0
        assert f"replicates = {expected}\n" in capsys.readouterr().out, args


def test_sweep_command_errors_name_the_field(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('simulator = "multinomial"\n[grid]\nn0 = [0, 10]\n')
    assert cli_main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml line 3: grid.n0: value 0" in err
    assert not (tmp_path / "o" / sweep.STORE).exists()


@pytest.mark.parametrize("args, message", [
    (["--cells-per-chunk", "0"], "--cells-per-chunk must be an integer >= 1, got 0"),
    (["--memory-budget", "-5"], "--memory-budget must be an integer >= 1, got -5"),
    (["--process-id", "1"], "--process-id needs --num-processes"),
    (["--coordinator", "localhost:1234"], r"--coordinator needs --num-processes \(or JAX_NUM_PROCESSES\)"),
    (["--num-processes", "2", "--process-id", "2"], r"--process-id must be in 0 .. --num-processes - 1 = 1, got 2"),
    # a user trial (2026-12-07): JAX took these, then raised an IndexError, crashed (SIGSEGV) or aborted
    *[(["--num-processes", "2", "--process-id", "0", "--coordinator", bad],
       r"--coordinator must be HOST:PORT \(process 0's host name or address and a port from 1 to 65535")
      for bad in ("notahost", "localhost:abc", "localhost:99999", "::1:1234", ":1234")],
])
def test_sweep_run_flags_are_checked_before_anything_runs(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    spec = tmp_path / "s.toml"
    spec.write_text(MULTINOMIAL)
    assert cli_main(["sweep", str(spec), "--out", str(tmp_path / "o"), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o").exists()
    assert cli_main(["sweep", str(spec), "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--replicates", "--steps"])
def test_phase_command_refuses_zero_instead_of_taking_the_default(flag, tmp_path, capsys):
    assert cli_main(["phase", "gmm-beta-L", flag, "0", "--out", str(tmp_path / "o")]) == 2
    assert f"{flag[2:]} must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_messages_from_a_user_trial_name_the_flag_the_field_and_the_cell(tmp_path, capsys):
    """A user trial (2026-12-05): phase --steps beyond the limit was reported at "line 5: fixed.num_steps" of a
    built-in text the user never saw; a float step in an integer range read "value 10.0: must be an integer"; a
    float32 count limit named neither the cell nor its parameters; a linear-regression sweep's no-plot reason read as
    if its two axes would be plotted."""
    assert cli_main(["phase", "gmm-n-B", "--steps", "2000000", "--out", str(tmp_path / "o")]) == 2
    assert re.search(r"error: --steps must be in \[1, 1000000\], got 2000000 \(the built-in specification's "
                     r"fixed.num_steps; --print-spec shows it\)", capsys.readouterr().err)
    # --print-spec printed it as if it could run (a user trial, 2026-12-06): shown, then refused
    assert cli_main(["phase", "gmm-n-B", "--steps", "2000000", "--print-spec"]) == 2
    shown = capsys.readouterr()
    assert "num_steps = 2000000" in shown.out and "error: --steps must be in [1, 1000000]" in shown.err
    with pytest.raises(sweep_spec.SpecError, match=r"line 6: grid.n0: range of an integer parameter takes integer "
                                                   r"start, stop and step, got \[10, 20, 2.5\]"):
        sweep_spec.parse(SMALL.replace("n0 = [10, 20]", "n0 = { range = [10, 20, 2.5] }"))
    import jax

    with jax.enable_x64(False):
        spec = sweep_spec.parse(SMALL.replace("[fixed]\nsteps = 2", 'backend = "jax"\n[fixed]\nsteps = 10\n'
                                              'regime = "accumulate"').replace("n0 = [10, 20]", "n0 = [10, 2000000]"))
        with pytest.raises(ValueError, match=r"exceeds 2\*\*24.* \(in the cell \{'n0': 2000000\}\)"):
            sweep.check_plan(spec)
    # a user trial (2026-12-05): a network too large for the memory crashed the native kernel (or failed in XLA)
    # after the store was written; now refused by the plan, naming the cell
    big = sweep_spec.parse('simulator = "gmm-network"\nreplicates = 10\n[grid]\nnum_models = [3, 10000]\n')
    with pytest.raises(ValueError, match=r"num_models = 10,000 .* needs about .* GiB .* \(in the cell "
                                         r"\{'num_models': 10000\}\)"):
        sweep.check_plan(big)
    lr = sweep_spec.parse('simulator = "linear-regression"\nreplicates = 20\n[grid]\ndim = [2, 3]\n'
                          'num_samples = [10, 20]\n')
    sweep.run(lr, tmp_path / "lr", progress=False)
    with pytest.raises(ValueError, match="no phase-diagram plot for a linear-regression sweep .*: plots are drawn for "
                                         "gmm-network and sigma-blocks sweeps, and for the recursions' sweeps "
                                         r"\(multinomial, gaussian, logistic, mixture: a relative loss\)"):
        phase.plot("x", sweep.open_dataset(tmp_path / "lr"), tmp_path)
    # every axis named, regime too (it read "over ['dim']" for a regime x dim grid; a user trial, 2026-12-06)
    by_regime = sweep_spec.parse('simulator = "linear-regression"\nreplicates = 5\n[grid]\n'
                                 'regime = ["replace", "accumulate"]\ndim = [2, 5]\n')
    sweep.run(by_regime, tmp_path / "lr2", progress=False)
    with pytest.raises(ValueError, match=r"linear-regression sweep over \['regime', 'dim'\]: plots"):
        phase.plot("x", sweep.open_dataset(tmp_path / "lr2"), tmp_path)


def _plotted(spec, tmp_path, monkeypatch, plot=None) -> list:
    """Run ``spec`` into ``tmp_path`` and draw its plot (``phase.plot``, or ``plot(ds, out, name)``): the figures,
    unsaved."""
    sweep.run(spec, tmp_path, progress=False)
    figures = []
    monkeypatch.setattr(phase, "_save", lambda fig, out, name: figures.append(fig) or out / f"{name}.png")
    ds = sweep.open_dataset(tmp_path)
    phase.plot("x", ds, tmp_path) if plot is None else plot(ds, tmp_path, "x")
    return figures


def test_gmm_and_sigma_plot_titles_give_the_seed_and_the_fixed_settings(tmp_path, monkeypatch):
    """A user trial (2026-12-05): the GMM titles gave only the replicates and T (the docs promise the seed and the
    fixed settings, as the recursion plots give)."""
    spec = sweep_spec.parse('simulator = "gmm-network"\nreplicates = 4\nseed = 4\n[fixed]\nnum_steps = 6\n'
                            'num_models = 3\n[grid]\nbeta = [0.3, 0.6]\npoints_per_step = [1, 2]\n')
    figures = _plotted(spec, tmp_path, monkeypatch)
    assert "T = 6, 4 replicates per cell, seed 4; num_models = 3" in figures[0]._suptitle.get_text()


def test_sigma_plot_draws_the_block_size_each_cell_ran(tmp_path, monkeypatch):
    """Ratios 1 and 1.05 at d = 8 both run n = 9 (n / d = 1.125), and ratios beyond N / d run the whole population:
    the plot drew the requested ratios and dropped the capped cells without a word (a user trial, 2026-12-06)."""
    spec = sweep_spec.parse('simulator = "sigma-blocks"\nreplicates = 10\n[fixed]\ndim = 8\nnum_points = 100\n'
                            '[grid]\nfamily = ["isotropic", "unit_norm"]\nratio = [1.0, 1.05, 3.0, 12.5, 20.0]\n')
    figures = _plotted(spec, tmp_path, monkeypatch)
    for ax in figures[0].axes:
        np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [9 / 8, 9 / 8, 3.0, 12.5, 12.5])
        assert "ratios 1, 1.05 ran one block size, n = 9" in ax.get_title()
        assert "ratio 12.5, 20: n = N = 100, exact (no interval)" in ax.get_title()


def test_sigma_block_cells_equal_the_block_study(tmp_path):
    import jax.numpy as jnp

    from collapse_jax import sigma_precision as SP
    from collapse_jax import spectral

    spec = sweep_spec.parse('simulator = "sigma-blocks"\nseed = 5\nreplicates = 12\nkeep = "replicates"\n'
                            '[fixed]\ndim = 4\nnum_points = 3000\n[grid]\nratio = [2.0, 5.0]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    data = SP.family_dataset(5, 0, 3000, 4, "isotropic", SP.PrecisionConfig())
    res = SP.run_cell(data, "isotropic", np.array([8, 20]), 12, seed=5, cell=0, rows=SP.nested_block_indices)
    est = spectral.block_estimates_from_stats(jnp.asarray(res.logdet_g1), jnp.asarray(res.m2_insample), 4,
                                              jnp.asarray([[8.0, 20.0]]), 3000, spectral.z_value(0.95), res.loo())
    error = np.asarray(est.l_hat) - res.truth  # (block, size)
    np.testing.assert_allclose(ds["error"].values[..., 0], error.T.astype(np.float32), rtol=1e-6)
    covered = np.abs(res.truth - np.asarray(est.wishart.center)) <= np.asarray(est.wishart.half_width)
    np.testing.assert_array_equal(ds["covered_wishart"].values[..., 0], covered.T)
    assert ds["coverage_wishart"].values.tolist() == covered.mean(0).tolist()
    assert phase.plot("sigma", ds, tmp_path)[0].exists()


def test_a_block_that_is_the_whole_data_set_covers_to_rounding(tmp_path):
    """A user trial (2026-12-06): at n = N every covered_*_fraction said 0 (float32 rounding, ~3e-7, against
    zero-width intervals) where coverage_* says exact (NaN)."""
    spec = sweep_spec.parse('simulator = "sigma-blocks"\nreplicates = 6\n[fixed]\ndim = 8\nnum_points = 200\n'
                            '[grid]\nratio = [2.0, 250.0]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    for e in ("seed", "second_order", "wishart", "scaled_wishart", "jackknife"):
        assert ds[f"covered_{e}_fraction"].sel(ratio=250.0).values.ravel().tolist() == [1.0], e
        assert np.isnan(ds[f"coverage_{e}"].sel(ratio=250.0).values)
    assert float(np.abs(ds["error_stats"].sel(ratio=250.0, statistic="mean")).max()) < 1e-4


# --- checked before anything is written; the run folder; what the command says ----------------------------------
SMALL = 'simulator = "multinomial"\nreplicates = 4\n[fixed]\nsteps = 2\n[grid]\nn0 = [10, 20]\n'


def _sweep_cli(tmp_path, text: str, out, *args) -> int:
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    return cli_main(["sweep", str(spec), "--out", str(out), "--no-plots", *args])


@pytest.mark.parametrize("text, args, message", [
    (SMALL.replace("replicates = 4", "replicates = 4\nquantiles = []"), [], "quantiles: must be a non-empty list"),
    (SMALL.replace("replicates = 4", "replicates = 100000000000000"), [],
     r"replicates: must be an integer in \[1, 4294967296\]"),
    (SMALL.replace("replicates = 4", 'replicates = 4\nbackend = "pallas"').replace(
        "steps = 2", 'steps = 2\nregime = "filter"'), [], "error: backend='pallas' supports the replace and"),
    (SMALL + '[[zip]]\nname = "step"\nalpha0 = [0.1, 0.2]\n', [], "zip\\[0\\].name: 'step' names a variable"),
    (SMALL + '[[zip]]\nname = "loss_stats"\nalpha0 = [0.1, 0.2]\n', [], "'loss_stats' names a variable"),
    (SMALL, ["--memory-budget", "300"], r"--memory-budget must be >= 384 bytes \(one cell's records"),
    # a user trial (2026-12-06): the specification's own was called --memory-budget, a flag never typed
    (SMALL.replace("replicates = 4", "replicates = 4\nmemory_budget = 10"), [],
     r"error: the specification's memory_budget must be >= 384 bytes \(one cell's records: 4 replicates\), got 10$"),
    # a third audit (2026-12-04): a filter that keeps nothing was found only while running, after the store was made
    (SMALL.replace("steps = 2", 'steps = 2\nregime = "filter"\nalpha0 = 0.0').replace("n0 = [10, 20]",
                                                                                     "type2 = [0.5, 0.0]"),
     [], r"grid.type2: the filter keeps nothing"),
    # a user trial (2026-12-04): filter error rates under another regime were silently ignored
    (SMALL.replace("n0 = [10, 20]", "type1 = [0.0, 0.3]"), [],
     r"grid.type1: type1 and type2 apply to the filter regime only"),
    # a user trial (2026-12-04): the specification's backend ran, the command line's ignored without a word
    (SMALL.replace("replicates = 4", 'replicates = 4\nbackend = "native"'), ["--backend", "jax"],
     r"--backend jax conflicts with the specification's backend = 'native'"),
    # a user trial (2026-12-05): a raw-sample pool beyond the simulator's max_points was refused after the store
    # was written, naming max_points, which is no sweep parameter
    (SMALL.replace('"multinomial"', '"gaussian"').replace("steps = 2", 'steps = 2000\nregime = "accumulate-subsample"')
     .replace("n0 = [10, 20]", "n0 = [100, 1000]"), [],
     r"s.toml line 7: grid.n0: n0 1000 with steps 2000 .* 2,001,000 points per replicate .* above its limit of "
     r"2,000,000; lower n0, steps or n_growth"),
    (SMALL.replace('"multinomial"', '"logistic"').replace("steps = 2", 'steps = 100\nregime = "accumulate"')
     .replace("n0 = [10, 20]", "n0 = [100, 30000]"), [], r"grid.n0: n0 30000 with steps 100 .*the logistic refit"),
])
def test_bad_input_leaves_nothing_that_blocks_the_corrected_run(text, args, message, tmp_path, capsys):
    """Each of these once created dataset.zarr and then failed, and the store refused the corrected rerun."""
    out = tmp_path / "o"
    assert _sweep_cli(tmp_path, text, out, *args) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())
    assert _sweep_cli(tmp_path, SMALL, out) == 0
    assert sweep.cells_done(out).all()


@pytest.mark.parametrize("backend", ["native", "jax"])
def test_gaussian_sizes_float32_would_round_are_refused_before_the_store(backend, tmp_path):
    """A user trial (2026-12-06): the Gaussian ran sizes float32 rounds (100000001 as 100000000) and, on the jax
    path, sizes beyond 2**24, where its float32 fit is biased; the multinomial's cells were checked, the Gaussian's
    not."""
    import jax

    from collapse_jax import _native

    if backend == "native" and _native.resolve_backend("auto") != "native":
        pytest.skip("needs the native kernels")
    spec = sweep_spec.parse(SMALL.replace('"multinomial"', '"gaussian"').replace(
        "replicates = 4", f'replicates = 4\nbackend = "{backend}"').replace("n0 = [10, 20]", "n0 = [10, 100000001]"))
    want = "n_t = 100000001 is not a float32 number" if backend == "native" else "n up to 1e\\+08 exceeds 2\\*\\*24"
    with jax.enable_x64(False), pytest.raises(ValueError, match=want):
        sweep.check_plan(spec)
    sweep.check_plan(spec)  # float64 counts them exactly


@pytest.mark.parametrize("option", ["cells_per_chunk", "memory_budget"])
def test_run_refuses_zero_chunks_and_budgets(option, tmp_path):
    """``sweep.run(..., cells_per_chunk=0)`` ran with the specification's (``0 or spec's``), where the command line
    refuses 0 (a user trial, 2026-12-06)."""
    with pytest.raises(ValueError, match=f"^{option} must be an integer >= 1, got 0$"):
        sweep.run(sweep_spec.parse(SMALL), tmp_path, progress=False, **{option: 0})
    assert not any(tmp_path.iterdir())


def test_a_store_half_built_by_a_killed_run_is_removed(tmp_path):
    """A SIGKILL while the store was built left ``.dataset.zarr.<hex>.tmp`` for good (nothing raised to remove it),
    and manifest.json listed its files (a user trial, 2026-12-06)."""
    out = tmp_path / "o"
    stale = out / f".{sweep.STORE}.0123abcd.tmp"
    stale.mkdir(parents=True)
    (stale / "zarr.json").write_text("{}")
    assert _sweep_cli(tmp_path, SMALL, out) == 0
    assert not stale.exists()
    assert sweep.cells_done(out).all()
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert files and not [f for f in files if "tmp" in f]  # (the text as a whole may name a temporary folder)


EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mean_sweep.py"
EXAMPLE_SPEC = """simulator = "gaussian-mean"
replicates = 20000
seed = 0

[fixed]
steps = 12

[grid]
alpha = [0.1, 0.9]
n = [5, 20]
"""


def test_your_own_simulator_runs_in_a_sweep(tmp_path, monkeypatch):
    """docs/sweeps.md's example model, registered, runs through the sweep runner from Python and (--import) from the
    command line, with the same dataset, within Monte Carlo error of its exact risk. A user trial (2026-12-05) found
    no way to do it: the runner read only the built-in table (a KeyError)."""
    import importlib.util

    from collapse_jax import sweep_models

    monkeypatch.setattr(sweep_models, "MODELS", dict(sweep_models.MODELS))   # registered for this test only
    with pytest.raises(ValueError, match="simulator 'gaussian-mean' is not registered.*--import MODULE"):
        sweep_models.get("gaussian-mean")
    loader = importlib.util.spec_from_file_location("mean_sweep_example", EXAMPLE)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)                                         # registers MeanSweep
    spec = sweep_spec.parse(EXAMPLE_SPEC, name="mean.toml")
    report = sweep.run(spec, tmp_path / "py", progress=False)
    assert report.cells_done == 4
    ds = sweep.open_dataset(tmp_path / "py")
    stats, theory = ds["loss_stats"], ds["loss_theory"]
    z = (stats.sel(statistic="mean") - theory) / stats.sel(statistic="sem")
    assert float(np.abs(z).max()) < 4.0                                       # 52 comparisons, 20,000 replicates
    assert float(theory.sel(alpha=0.1, n=5)[-1]) == pytest.approx(module.exact_risk(np.r_[1.0, [0.1] * 12],
                                                                                    np.full(13, 5.0))[-1])
    # the command line: --import a module in the current folder (a subprocess, so the registry starts empty)
    work = tmp_path / "cli"
    work.mkdir()
    (work / "mean_sweep.py").write_text(EXAMPLE.read_text())
    (work / "mean.toml").write_text(EXAMPLE_SPEC)
    env = dict(os.environ, JAX_PLATFORMS="cpu", COLLAPSE_JAX_PROGRESS="0", PYTHONPATH=str(Path(sweep.__file__).parents[1]))
    run = lambda *a: subprocess.run([sys.executable, "-m", "collapse_jax.cli", "sweep", *a], cwd=work, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    got = run("mean.toml", "--out", "out", "--no-plots")
    assert got.returncode == 2 and "simulator: must be one of" in got.stderr and "--import MODULE" in got.stderr
    got = run("mean.toml", "--import", "mean_sweep", "--out", "out", "--no-plots", "--x64")   # (tests: float64)
    assert got.returncode == 0, got.stderr[-2000:]
    cli_ds = sweep.open_dataset(work / "out")
    np.testing.assert_array_equal(cli_ds["loss_stats"].values, stats.values)
    got = run("--import", "no_such_module_x", "--fields", "gaussian-mean")
    assert got.returncode == 2 and "--import no_such_module_x: No module named" in got.stderr


def test_register_refuses_what_the_runner_could_not_use(monkeypatch):
    from collapse_jax import sweep_models

    monkeypatch.setattr(sweep_models, "MODELS", dict(sweep_models.MODELS))
    base = type(MODELS["gaussian"])
    with pytest.raises(ValueError, match="is a built-in simulator"):
        sweep_models.register(base())
    with pytest.raises(ValueError, match="instance of a SweepModel subclass"):
        sweep_models.register(base)
    clash = type("Clash", (base,), {"name": "mine", "outputs": {"cell_done": sweep_models.Output("real", "x")}})
    with pytest.raises(ValueError, match="outputs may not be named cell_done"):
        sweep_models.register(clash())
    assert sweep_models.register(type("Mine", (base,), {"name": "mine"})()) is sweep_models.get("mine")


def _example_model(monkeypatch):
    """docs/sweeps.md's example model class (docs/examples/mean_sweep.py), registered for one test only."""
    import importlib.util

    from collapse_jax import sweep_models

    monkeypatch.setattr(sweep_models, "MODELS", dict(sweep_models.MODELS))
    loader = importlib.util.spec_from_file_location("mean_sweep_example", EXAMPLE)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.MeanSweep


def test_register_refuses_a_default_outside_its_range_and_unknown_output_kinds(monkeypatch):
    """A user trial (2026-12-05): a field default of 1.7 for a probability in [0, 1] registered, and every cell of a
    spec that left it out ran with it (NaN records, a negative theory, cell_done true); Output("boolean") failed
    deep in NumPy at the first summary."""
    from collapse_jax import sweep_models

    base = _example_model(monkeypatch)
    bad = type("Bad", (base,), {"name": "bad-default",
                                "fields": {**base.fields, "alpha": sweep_models.Field(1.7, "a", float, 0.0, 1.0)}})
    with pytest.raises(ValueError, match=r"the default of field 'alpha' must be in \[0.0, 1.0\], got 1.7"):
        sweep_models.register(bad())
    with pytest.raises(ValueError, match="Output kind must be 'real' or 'flag', got 'boolean'"):
        sweep_models.Output("boolean", "x")
    assert sweep_models.Field("a", "label", str).check([1, 2]) == "must be a string, got [1, 2]"
    # a model class without a docstring: --fields failed with an AttributeError
    sweep_models.register(type("NoDoc", (base,), {"name": "no-doc", "__doc__": None})())
    assert cli_main(["sweep", "--fields", "no-doc"]) == 0


@pytest.mark.parametrize("mistake, message", [
    (lambda out: {"loss": out["loss"][:, :, :-1]}, r"output 'loss' has shape \(2, 8, 4\), expected .* \(2, 8, 5\)"),
    (lambda out: {"loss": out["loss"][:, :-1]}, r"output 'loss' has shape \(2, 7, 5\), expected"),
    (lambda out: {**out, "extra": out["loss"]}, r"returned outputs \['extra', 'loss'\].*\(undeclared \['extra'\]\)"),
    (lambda out: {}, r"\(missing \['loss'\]\)"),
    (lambda out: tuple(out.values()), "must return a dict of output name -> array"),
])
def test_a_run_that_returns_the_wrong_records_is_refused_naming_the_model(mistake, message, tmp_path, monkeypatch):
    """A user trial: a run one step short was padded with NaN, one replicate short summarised over fewer
    replicates, silently; other mistakes failed deep in NumPy or zarr."""
    from collapse_jax import sweep_models

    base = _example_model(monkeypatch)
    wrong = type("Wrong", (base,), {"name": "wrong-run",
                                    "run": lambda self, *a, **k: mistake(base.run(self, *a, **k))})
    sweep_models.register(wrong())
    spec = sweep_spec.parse('simulator = "wrong-run"\nreplicates = 8\n[fixed]\nsteps = 4\n[grid]\n'
                            'alpha = [0.1, 0.9]\n')
    with pytest.raises(ValueError, match="sweep model 'wrong-run': run.*" + message):
        sweep.run(spec, tmp_path, progress=False)
    assert not sweep.cells_done(tmp_path).any()


def test_an_unhashable_group_key_is_refused_before_the_store(tmp_path, monkeypatch):
    """A user trial (2026-12-06): a group_key returning a list failed with "unhashable type: 'list'" after the store
    was written."""
    from collapse_jax import sweep_models

    base = _example_model(monkeypatch)
    sweep_models.register(type("Listy", (base,), {"name": "listy-key",
                                                  "group_key": lambda self, cell, backend: [cell["steps"]]})())
    spec = sweep_spec.parse('simulator = "listy-key"\nreplicates = 8\n[fixed]\nsteps = 4\n[grid]\nalpha = [0.1, 0.9]\n')
    with pytest.raises(ValueError, match=r"sweep model 'listy-key': group_key must return a hashable value .*\[4\]"):
        sweep.run(spec, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_theory_that_leaves_out_an_output_is_refused_before_the_store(tmp_path, monkeypatch):
    """Noticed in a user trial (2026-12-07): a model with two outputs whose theory covered one, keeping the default
    theory_outputs (every output), got an all-NaN theory variable for the other without a word. Overriding
    theory_outputs runs it."""
    from collapse_jax import sweep_models

    base = _example_model(monkeypatch)
    outputs = {**base.outputs, "twice": sweep_models.Output("real", "2 (mu_hat_t - mu)^2")}

    def run(self, *a, **k):
        loss = base.run(self, *a, **k)["loss"]
        return {"loss": loss, "twice": 2 * loss}

    partial = type("Partial", (base,), {"name": "partial-theory", "outputs": outputs, "run": run})
    sweep_models.register(partial())
    spec = sweep_spec.parse('simulator = "partial-theory"\nreplicates = 8\n[fixed]\nsteps = 4\n[grid]\n'
                            'alpha = [0.1, 0.9]\n')
    with pytest.raises(ValueError, match=r"sweep model 'partial-theory': theory gave \['loss'\] for a cell whose "
                                         r"theory_outputs are \['loss', 'twice'\].*override theory_outputs"):
        sweep.run(spec, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
    sweep_models.register(type("Declared", (partial,), {"theory_outputs": lambda self, cell: {"loss"}})())
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    assert "loss_theory" in ds and "twice_theory" not in ds and not np.isnan(ds["loss_theory"].values).any()


def test_a_resume_after_a_model_default_changed_is_refused(tmp_path, monkeypatch):
    """A user trial: a model of one's own whose default was edited between a run and its resume left cells of both
    models in one dataset, silently. Setting the old value in [fixed] resumes the same sweep."""
    from collapse_jax import sweep_models

    base = _example_model(monkeypatch)
    sweep_models.register(base())
    text = 'simulator = "gaussian-mean"\nreplicates = 8\n[grid]\nalpha = [0.1, 0.9]\n'
    sweep.run(sweep_spec.parse(text), tmp_path, progress=False)
    old = base.fields["steps"].default
    edited = type("Edited", (base,), {"fields": {**base.fields, "steps": sweep_models.Field(old + 1, "T", int, 1)}})
    sweep_models.register(edited())
    with pytest.raises(ValueError, match=rf"differs in fixed.steps: {old} -> {old + 1}"):
        sweep.run(sweep_spec.parse(text), tmp_path, progress=False, resume=True)
    fixed = text.replace("[grid]", f"[fixed]\nsteps = {old}\n[grid]")
    assert sweep.run(sweep_spec.parse(fixed), tmp_path, progress=False, resume=True).cells_run == 0


def test_a_failure_while_building_the_store_leaves_no_temporary_folder(tmp_path, monkeypatch):
    spec = sweep_spec.parse(SMALL)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sweep, "_coordinate", broken)
    with pytest.raises(ValueError, match="out: cannot write .*No space left on device"):
        sweep.run(spec, tmp_path / "o", progress=False)
    assert list((tmp_path / "o").iterdir()) == []  # neither the store, its temporary folder, nor config.json
    monkeypatch.undo()
    other = sweep_spec.parse(SMALL.replace("replicates = 4", "replicates = 5"))
    assert sweep.run(other, tmp_path / "o", progress=False).cells_done == 2


def test_a_resume_removes_chunk_files_a_killed_write_left(tmp_path):
    """An audit (2026-12-07): a SIGKILL between zarr's chunk write and its rename left "<chunk>.<uuid>.partial" in
    the store for good, and manifest.json listed it as one of the run's files. A resume removes such files once
    they are older than a minute (another process of the sweep may be writing its own), and no manifest lists one."""
    import os
    import time

    out = tmp_path / "o"
    assert _sweep_cli(tmp_path, SMALL, out) == 0
    chunks = [p for p in (out / sweep.STORE).rglob("*") if p.is_file() and p.parent.name == "c"]
    old, fresh = (c.parent / f"{c.name}.0123456789abcdef0123456789abcdef.partial" for c in chunks[:2])
    for partial in (old, fresh):
        partial.write_bytes(b"half a chunk")
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert _sweep_cli(tmp_path, SMALL, out, "--resume") == 0
    assert not old.exists() and fresh.exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert not any(name.endswith(".partial") for name in manifest["files"])


def test_a_folder_with_other_files_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _sweep_cli(tmp_path, SMALL, out) == 2
    assert "is not empty and holds no run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_an_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root: permissions are not enforced, so the first write fails as it would
        from collapse_jax import results

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(results.tempfile, "mkstemp", denied)
    try:
        assert _sweep_cli(tmp_path, SMALL, out) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.strip() == f"collapse-jax sweep: error: --out: cannot write {str(out)!r}: Permission denied"


def test_the_stored_kernels_are_the_ones_the_cells_ran(tmp_path, monkeypatch):
    """A store records the kernels its cells ran: the multinomial's accumulate-subsample regime with --backend jax
    records jax (when that regime ran on JAX only, a sweep of it recorded the native kernels and then refused a
    resume with --backend jax); the Sigma block study's auto engine is numpy on a CPU without AMX (it recorded
    native); on a GPU the multinomial's auto is the portable sampler (Pallas only when asked for)."""
    import zarr

    from collapse_jax import _native

    text = SMALL.replace("steps = 2", 'steps = 2\nregime = "accumulate-subsample"')

    def cells_not_run(*args, **kwargs):  # the store records its kernels before any cell runs (and compiling the
        raise KeyboardInterrupt          # subsample kernel would take half a minute)

    with monkeypatch.context() as m:
        m.setattr(type(MODELS["multinomial"]), "run", cells_not_run)
        with pytest.raises(KeyboardInterrupt):  # auto: the native kernel where it builds, as for the other regimes
            sweep.run(sweep_spec.parse(text), tmp_path / "auto", progress=False)
        assert zarr.open_group(str(tmp_path / "auto" / sweep.STORE)).attrs["backend"] == _native.resolve_backend("auto")
        _native.prefer_backend("jax")
        try:
            with pytest.raises(KeyboardInterrupt):
                sweep.run(sweep_spec.parse(text), tmp_path / "sub", progress=False)
            assert zarr.open_group(str(tmp_path / "sub" / sweep.STORE)).attrs["backend"] == "jax"
            with pytest.raises(KeyboardInterrupt):  # the resume's kernel check accepts it: it goes on to the cells
                sweep.run(sweep_spec.parse(text), tmp_path / "sub", progress=False, resume=True)
        finally:
            _native.prefer_backend("auto")
    mixed = SMALL.replace("n0 = [10, 20]", 'regime = ["replace", "accumulate-subsample"]')
    assert sweep.kernels(sweep_spec.parse(mixed)) == _native.resolve_backend("auto")  # one kernel for both

    monkeypatch.setattr(_native, "amx_available", lambda: False)
    sigma = sweep_spec.parse('simulator = "sigma-blocks"\nreplicates = 4\n[fixed]\ndim = 3\nnum_points = 200\n'
                             '[grid]\nratio = [2.0]\n')
    sweep.run(sigma, tmp_path / "sigma", progress=False)
    assert zarr.open_group(str(tmp_path / "sigma" / sweep.STORE)).attrs["backend"] == "numpy"
    import jax

    # on a GPU auto runs the multinomial's portable sampler for every regime (until 2026-12-04 Pallas for replace
    # and accumulate, "jax+pallas" for the mixed grid: docs/recursions.md says why no longer); Pallas when asked for
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert sweep.kernels(sweep_spec.parse(SMALL)) == "jax"
    assert sweep.kernels(sweep_spec.parse(mixed)) == "jax"
    pallas = SMALL.replace("replicates = 4\n", 'replicates = 4\nbackend = "pallas"\n')
    assert sweep.kernels(sweep_spec.parse(pallas)) == "pallas"


def test_the_last_process_to_finish_writes_the_manifest(tmp_path, monkeypatch, capsys):
    """Process 0 finishes first here, with cells left; process 1 finishes the sweep and the folder."""
    from collapse_jax import sweep_cli

    out = tmp_path / "o"
    text = SMALL.replace("[grid]\n", "[grid]\nalpha0 = [0.2, 0.5]\n")   # two blocks (rows), one per process
    monkeypatch.setattr(sweep_cli, "_process", lambda args: (0, 2))
    assert _sweep_cli(tmp_path, text, out) == 0
    assert "2 cells are left" in capsys.readouterr().out and not (out / "manifest.json").exists()
    monkeypatch.setattr(sweep_cli, "_process", lambda args: (1, 2))
    assert _sweep_cli(tmp_path, text, out) == 0
    assert sweep.cells_done(out).all() and (out / "manifest.json").is_file()
    # a resume that finds every cell done: process 0 alone finishes the folder again, keeping the record (two
    # processes setting it aside and writing it could lose it between them; a review, 2026-12-07)
    record = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert _sweep_cli(tmp_path, text, out, "--resume") == 0
    assert "process 0 writes the plots and manifest.json" in capsys.readouterr().out
    assert (out / "manifest.json").read_text() == record
    monkeypatch.setattr(sweep_cli, "_process", lambda args: (0, 2))
    assert _sweep_cli(tmp_path, text, out, "--resume") == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["summary"]["cells_run"] == 0 and again["earlier"][-1]["summary"]["cells_run"] == 2


def test_a_resume_that_ran_nothing_says_so_in_the_manifest(tmp_path):
    """A --resume of a finished sweep (a requeued batch job) wrote its own environment and time at the top of
    manifest.json with nothing saying it computed no cell (an audit, 2026-12-07): the summary counts the cells this
    run computed, and the run that computed them stays under ``earlier``."""
    out = tmp_path / "o"
    assert _sweep_cli(tmp_path, SMALL, out) == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["summary"]["cells_run"] == first["summary"]["cells"] == 2
    assert _sweep_cli(tmp_path, SMALL, out, "--resume") == 0
    again = json.loads((out / "manifest.json").read_text())
    assert again["summary"]["cells_run"] == 0
    assert [e["summary"]["cells_run"] for e in again["earlier"]] == [2]


def test_another_specification_says_which_axis_values_differ(tmp_path):
    text = SMALL.replace("n0 = [10, 20]", "alpha_decay = { linspace = [0.0, 1.0, 3] }\nn0 = [10, 20]")
    sweep.run(sweep_spec.parse(text), tmp_path, progress=False)
    other = sweep_spec.parse(text.replace("1.0, 3]", "1.0, 5]").replace("[10, 20]", "[10, 30]"))
    with pytest.raises(ValueError) as err:
        sweep.run(other, tmp_path, progress=False, resume=True)
    assert ("differs in axis alpha_decay: 3 values -> 5: alpha_decay[1] 0.5 -> 0.25, alpha_decay[2] 1.0 -> 0.5, "
            "alpha_decay[3] - -> 0.75 and 1 more; axis n0: n0[1] 20 -> 30)") in str(err.value)


def test_the_command_says_what_continues_a_sweep(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    assert _sweep_cli(tmp_path, SMALL, out) == 0
    capsys.readouterr()
    assert _sweep_cli(tmp_path, SMALL, out) == 2   # the same sweep: --resume continues it
    err = capsys.readouterr().err
    assert "already holds this sweep (2/2 cells done); continue it with --resume" in err and "resume=True" not in err
    assert _sweep_cli(tmp_path, SMALL.replace("replicates = 4", "replicates = 5"), out) == 2   # another: refused
    err = capsys.readouterr().err
    assert "holds another sweep (its specification differs in replicates: 4 -> 5)" in err and "--resume" not in err
    with pytest.raises(SystemExit):
        cli_main(["sweep", "--help"])
    assert "continued with --resume (refused without it)" in " ".join(capsys.readouterr().out.split())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run", interrupted)
    assert _sweep_cli(tmp_path, SMALL, tmp_path / "new") == 130
    assert "add --resume to the same command to run the others" in capsys.readouterr().err
    # every cell written before the interrupt: what is left is the plots (it said "to run the others" of 25/25
    # cells; a user trial, 2026-12-07)
    assert cli_main(["sweep", str(tmp_path / "s.toml"), "--out", str(out), "--resume"]) == 130
    err = capsys.readouterr().err
    assert ("every cell was written before it (in " in err and "add --resume to the same command to write the plots "
            "and manifest.json" in err and "run the others" not in err), err
    assert _sweep_cli(tmp_path, SMALL, out, "--resume") == 130      # (--no-plots: no plots to write; a review)
    assert "add --resume to the same command to write manifest.json" in capsys.readouterr().err


def test_three_axis_gmm_sweep_says_why_there_is_no_plot(tmp_path, capsys):
    text = ('simulator = "gmm-network"\nreplicates = 2\n[fixed]\nnum_steps = 2\n[grid]\nbeta = [0.2, 0.6]\n'
            'eps = [0.0, 0.05]\ndirichlet_a = [1.0]\n')
    spec = tmp_path / "g.toml"
    spec.write_text(text)
    assert cli_main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 0
    assert ("no plot: plots are drawn for sweeps over 1 or 2 axes (plus regime); this one has 3 (beta, eps, "
            "dirichlet_a)") in capsys.readouterr().out


def test_heatmap_ticks_name_text_and_zipped_cells(tmp_path, monkeypatch):
    """A sweep audit: a text axis and a zipped axis were drawn on index positions with ticks -0.5 .. 1.5."""
    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 4\n[fixed]\nsteps = 2\n[grid]\n'
                            'p = ["uniform", "zipf"]\n[[zip]]\nname = "start"\nalpha0 = [0.2, 0.5]\nn0 = [50, 100]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    assert phase._tick_labels(ds, "p") == ["uniform", "zipf"]
    assert phase._tick_labels(ds, "start") == ["alpha0=0.2, n0=50", "alpha0=0.5, n0=100"]
    drawn = []
    save = phase._save
    monkeypatch.setattr(phase, "_save", lambda fig, out, name: drawn.append(fig) or save(fig, out, name))
    paths = phase.plot("sweep", ds, tmp_path)
    assert paths and all(p.exists() for p in paths)
    # a zipped axis's parameters on the y axis one per line (side by side they ran into the panel beside; a user
    # trial, 2026-12-07)
    ticks = {tuple(t.get_text() for t in ax.get_yticklabels()) for fig in drawn for ax in fig.axes
             if "start" in ax.get_ylabel()}
    assert ticks == {("alpha0=0.2\nn0=50", "alpha0=0.5\nn0=100")}


def test_process_dependent_limits_are_refused_before_the_store_is_written(tmp_path, monkeypatch):
    """Found by an audit (2026-12-04): float32 count limits and a cell too large for the host were refused only
    after the store existed, and the corrected command (--x64, fewer replicates) was then refused in that folder as
    "another sweep". Both are checked on every cell before anything is written now."""
    import jax

    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 4\nbackend = "jax"\n[fixed]\nsteps = 2\n'
                            'categories = 4\n[grid]\nn0 = [10, 20000000]\n')  # n_t = 2e7 > 2**24
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"n_t up to 2e\+07 exceeds 2\*\*24.*enable float64"):
            sweep.run(spec, tmp_path / "f32", progress=False)
    assert not (tmp_path / "f32").exists()
    pooled = sweep_spec.parse('simulator = "multinomial"\nreplicates = 4\nbackend = "jax"\n[fixed]\nsteps = 3\n'
                              'categories = 4\nregime = "accumulate"\n[grid]\nn0 = [10, 6000000]\n')  # pool 2.4e7
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"n_0 \+ \.\.\. \+ n_T up to 2\.4e\+07 exceeds 2\*\*24"):
            sweep.run(pooled, tmp_path / "pool", progress=False)
    assert not (tmp_path / "pool").exists()
    monkeypatch.setattr(sweep._checks, "available_memory_bytes", lambda: 100)  # one cell: 384 bytes
    with pytest.raises(ValueError, match=r"replicates: one cell's records \(4 replicates\) need about"):
        sweep.run(spec, tmp_path / "big", progress=False)
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("regime, drawn", [("replace", True), ("accumulate-subsample", False)])
def test_replace_consistency_boundary_is_drawn_for_replace_only(regime, drawn, tmp_path, monkeypatch):
    """Found by an audit (2026-12-04): a sweep with its regime fixed (not an axis) got the replace regime's boundary
    n_growth = alpha_decay on its panel whatever the regime; accumulate-subsample does not follow it."""
    spec = sweep_spec.parse(f'simulator = "multinomial"\nreplicates = 3\n[fixed]\nsteps = 3\ncategories = 4\n'
                            f'regime = "{regime}"\n[grid]\nalpha_decay = [0.5, 1.0]\nn_growth = [0.0, 0.5]\n')
    figures = _plotted(spec, tmp_path, monkeypatch, phase.plot_recursions)
    labels = [line.get_label() for ax in figures[0].axes for line in ax.get_lines()]
    assert any("consistency boundary" in label for label in labels) == drawn


def test_a_grid_of_steps_is_titled_by_cell(tmp_path, monkeypatch):
    """With steps on a grid axis the title said "T = 20" (the longest) for every row (a user trial, 2026-12-06)."""
    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 3\n[fixed]\ncategories = 4\n[grid]\n'
                            'n_growth = [0.0, 1.0]\nsteps = [5, 20, 10]\n')
    figures = _plotted(spec, tmp_path, monkeypatch, phase.plot_recursions)
    assert "T = 5-20 (by cell), 3 replicates per cell, seed 0; categories = 4" in figures[0]._suptitle.get_text()


def test_phase_plots_say_what_ran_and_draw_uneven_axes_cell_by_cell(tmp_path, monkeypatch):
    """From a user trial (2026-12-04): an uneven numeric axis (L = 1, 2, 4, 32) was drawn to scale, its small values
    squeezed together and ticks at values outside the grid; a ratio map with every value above 1 was drawn in
    viridis, with 1 unmarked; the recursion plots did not say T or the replicates."""
    spec = sweep_spec.parse('simulator = "multinomial"\nreplicates = 3\n[fixed]\nsteps = 3\ncategories = 4\n'
                            'regime = "filter"\nalpha0 = 0.5\n[grid]\ntype1 = [0.0, 0.1, 0.5]\n'
                            'type2 = [0.0, 0.3]\n')
    sweep.run(spec, tmp_path, progress=False)
    ds = sweep.open_dataset(tmp_path)
    assert float(ds["theory_vs_replace"].min()) >= 1.0          # filtering never beats replace here
    figures = []
    monkeypatch.setattr(phase, "_save", lambda fig, out, name: figures.append(fig) or out / f"{name}.png")
    phase.plot_recursions(ds, tmp_path, "x")
    fig = figures[0]
    assert "T = 3, 3 replicates per cell, seed 0; alpha0 = 0.5, categories = 4" in fig._suptitle.get_text()
    ratio = next(ax for ax in fig.axes if "/ replace" in ax.get_title())
    # the docs' notation on the axes (a figure trial, 2026-12-06: "type1", "type2" alone)
    assert (ratio.get_xlabel(), ratio.get_ylabel()) == ("type-I error a (type1)", "type-II error b (type2)")
    mesh = ratio.collections[0]
    import matplotlib

    white = matplotlib.colormaps["RdBu_r"](0.5)
    np.testing.assert_allclose(mesh.get_cmap()(float(mesh.norm(1.0))), white, atol=0.01)      # 1 is white
    top = float(ds["theory_vs_replace"].max())
    assert float(mesh.norm(top)) == pytest.approx(1.0)                  # the red side reaches its full colour
    # every ratio >= 1: the red half alone, no tick below 1 (half the bar showed values no cell had, ticked 0.998;
    # a user trial, 2026-12-06)
    np.testing.assert_allclose(mesh.get_cmap()(1.0), matplotlib.colormaps["RdBu_r"](1.0), atol=0.01)
    assert min(mesh.colorbar.get_ticks()) >= 1.0
    # both sides use their half of the map whatever their ranges (a symmetric range left the smaller side pale)
    norm = phase._ratio_norm(5.0, 1.5)
    np.testing.assert_allclose(norm(np.array([1e-5, 1e-2, 1.0, 10**0.75, 10**1.5])), [0, 0.3, 0.5, 0.75, 1.0])
    assert phase._ratio_ticks(5.0, 1.5) == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    # type1 = 0, 0.1, 0.5 is uneven: one cell per value, ticks at the cells, labelled with the values
    assert [t.get_text() for t in ratio.get_xticklabels()] == ["0", "0.1", "0.5"]
    np.testing.assert_array_equal(ratio.get_xticks(), [0, 1, 2])
    # an even axis keeps its values as positions
    assert phase._cell_positions(np.array([0.0, 0.5, 1.0]))[1] == ["0", "0.5", "1"]     # ticks at the values
    assert phase._cell_positions(np.linspace(0.0, 1.5, 30))[1] is None                  # a long axis: its own ticks
    positions, labels = phase._cell_positions(np.array([1, 2, 4, 32]))
    np.testing.assert_array_equal(positions, [0, 1, 2, 3])
    assert labels == ["1", "2", "4", "32"]
    # a user trial (2026-12-06): linspace [0.0, 1.5, 8] was labelled "0.214286 0.428571 ...", running together
    assert phase._cell_positions(np.linspace(0.0, 1.5, 8))[1] == ["0", "0.214", "0.429", "0.643", "0.857", "1.07",
                                                                  "1.29", "1.5"]
    assert phase._cell_positions(np.array([100.0, 100.5, 101.0]))[1] == ["100", "100.5", "101"]  # told apart
    assert phase._cell_positions(np.array([10, 1000, 20000]))[1] == ["10", "1000", "20000"]  # (was 1e+03, 2e+04)


@pytest.mark.parametrize("simulator", sorted(MODELS))
def test_fields_listing_gives_each_simulators_whole_summary(simulator, capsys):
    """A user trial (2026-12-04): `sweep --fields sigma-blocks` printed its docstring's first line, which stopped
    mid-sentence ("...a replicate is one")."""
    assert cli_main(["sweep", "--fields", simulator]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{simulator}: ") and first.rstrip().endswith((".", ")")), first


@pytest.mark.parametrize("text, message", [
    ('simulator = "multinomial"\ncells_per_chunk = 0\n', "line 2: cells_per_chunk: must be an integer >= 1"),
    ('simulator = "multinomial"\nreplicats = 5\n', "allowed: backend, cells_per_chunk, description, fixed"),
    ('simulator = "multinomial"\ndescription = 5\n', "line 2: description: must be a string (free text), got 5"),
    ('simulator = "multinomial"\n[grid]\nn_grwth = [0.1, 0.2]\n',
     "line 3: grid.n_grwth: unknown parameter of multinomial (did you mean n_growth?); allowed"),
])
def test_spec_messages_name_the_keys_as_the_file_spells_them(text, message, tmp_path, capsys):
    """A user trial (2026-12-05): the command line rewrote spec keys into its flags ("--cells-per-chunk", a key no
    spec has); an unknown grid key was reported against its first value ("value 0.1: unknown parameter");
    ``description = 5`` was stored as "5"."""
    assert _sweep_cli(tmp_path, text, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and "--cells-per-chunk" not in err and "value 0.1" not in err
    assert not (tmp_path / "out").exists()


def test_a_parameter_set_to_its_default_resumes_the_same_sweep(tmp_path):
    """A user trial: adding ``alpha0 = 0.5`` (the default) to [fixed] refused the resume of the same computation
    ("fixed.alpha0: not set -> 0.5"); another value is still refused."""
    spec = sweep_spec.parse(SMALL)
    sweep.run(spec, tmp_path, progress=False)
    explicit = sweep_spec.parse(SMALL.replace("steps = 2", "steps = 2\nalpha0 = 0.5"))
    assert sweep.run(explicit, tmp_path, progress=False, resume=True).cells_run == 0
    with pytest.raises(ValueError, match=r"differs in fixed.alpha0: 0.5 -> 0.25"):
        sweep.run(sweep_spec.parse(SMALL.replace("steps = 2", "steps = 2\nalpha0 = 0.25")), tmp_path,
                  progress=False, resume=True)


def _disk_full_at_write(monkeypatch, call: int):
    """Make the sweep's ``call``-th block write fail as on a full disk; returns the real writer."""
    import errno

    real = sweep._write_block
    calls = []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "_write_block", full)
    return real


def test_a_default_written_out_resumes_a_run_killed_while_building_its_store(tmp_path):
    """An audit (2026-12-07): a SIGKILL while the store was built leaves config.json alone; the resume with a
    parameter set to its default was refused as "another configuration (fixed.zipf_exponent: not set -> 1.0)",
    where the resume of a built store takes it. Another value is still refused."""
    from collapse_jax.results import RunFolder

    spec = sweep_spec.parse(SMALL)
    config = {k: v for k, v in json.loads(json.dumps(spec.to_dict())).items() if k not in sweep._HOW_TO_RUN}
    RunFolder(tmp_path).start(config)  # what the killed run left
    explicit = sweep_spec.parse(SMALL.replace("steps = 2", "steps = 2\nalpha0 = 0.5"))
    assert sweep.run(explicit, tmp_path, progress=False, resume=True).cells_done == 2
    other = tmp_path / "other"
    other.mkdir()
    RunFolder(other).start(config)
    with pytest.raises(ValueError, match="another configuration"):
        sweep.run(sweep_spec.parse(SMALL.replace("steps = 2", "steps = 2\nalpha0 = 0.25")), other,
                  progress=False, resume=True)


def test_a_full_disk_mid_run_names_the_folder_and_how_to_resume(tmp_path, monkeypatch, capsys):
    """A user trial (2026-12-06): a sweep into a full tmpfs printed "[Errno 28] No space left on device" alone. The
    store itself was fine and --resume finished it; now the message names the folder and says so."""
    real = _disk_full_at_write(monkeypatch, 1)
    assert _sweep_cli(tmp_path, SMALL, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert (f"out: writing {str(tmp_path / 'run')!r} failed (No space left on device); the cells written before are "
            "kept: once it can be written, add --resume to the same command") in err
    monkeypatch.setattr(sweep, "_write_block", real)
    assert _sweep_cli(tmp_path, SMALL, tmp_path / "run", "--resume") == 0
    assert sweep.open_dataset(tmp_path / "run")["cell_done"].values.all()


def test_a_resume_says_how_many_cells_were_done_before(tmp_path, monkeypatch, capsys):
    """A cluster trial (2026-12-06): a resumed sweep's bar read 0/360 after 1440 of 1800 cells, and no line said it
    was a resume. Now the command says so first, and the bar counts from the cells done before."""
    from collapse_jax import progress

    real = _disk_full_at_write(monkeypatch, 2)
    two_blocks = SMALL + "alpha0 = [0.3, 0.5]\n"            # blocks run along the last axis: two of two cells
    assert _sweep_cli(tmp_path, two_blocks, tmp_path / "run", "--cells-per-chunk", "1") == 2
    earlier = int(sweep.cells_done(tmp_path / "run").sum())
    cells = sweep.cells_done(tmp_path / "run").size
    assert 0 < earlier < cells
    capsys.readouterr()
    monkeypatch.setattr(sweep, "_write_block", real)
    bars = []
    real_bar = progress.bar
    monkeypatch.setattr(sweep, "bar", lambda total, *a, **k: bars.append((total, k.get("initial"))) or
                        real_bar(total, *a, **k))
    assert _sweep_cli(tmp_path, two_blocks, tmp_path / "run", "--resume", "--cells-per-chunk", "1") == 0
    assert f"resuming {tmp_path / 'run'}: {earlier} of {cells} cells done by an earlier run" in capsys.readouterr().err
    assert bars == [(cells, earlier)]
    # not for a store that is then refused (a review, 2026-12-06: "resuming" came before "holds another sweep")
    other = two_blocks.replace("steps = 2", "steps = 3")
    assert _sweep_cli(tmp_path, other, tmp_path / "run", "--resume", "--cells-per-chunk", "1") == 2
    err = capsys.readouterr().err
    assert "holds another sweep" in err and "resuming" not in err


def test_gmm_network_fields_advertise_the_num_components_it_takes(capsys):
    """A user trial (2026-12-07): `sweep --fields gmm-network` advertised num_components in [2, 1000], while the
    network refuses more than 127 (its alive counts are 8-bit)."""
    from collapse_jax.gmm_network import MAX_COMPONENTS

    assert cli_main(["sweep", "--fields", "gmm-network"]) == 0
    assert f"num_components: mixture components B (int in [2, {MAX_COMPONENTS}]" in capsys.readouterr().out


def test_sigterm_to_a_sweep_run_as_python_m_collapse_jax_cli_says_so_and_exits_143(tmp_path):
    """A user trial (2026-12-07): run as ``python3 -m collapse_jax.cli sweep`` (the launch the docs use), SIGTERM was
    reported as a Ctrl-C ("interrupted", exit status 130): cli.py ran as ``__main__``, a second copy of the module
    whose Terminated the sweep's handler (which imports collapse_jax.cli) did not recognise."""
    spec = tmp_path / "long.toml"
    spec.write_text('simulator = "multinomial"\nreplicates = 400\n[fixed]\ncategories = 50\nsteps = 200\n'
                    '[grid]\nn0 = { linspace = [10, 1000, 200] }\n')
    out = tmp_path / "o"
    status, err = signal_once_started([sys.executable, "-m", "collapse_jax.cli", "sweep", str(spec), "--out", str(out),
                                       "--no-plots", "--cells-per-chunk", "1", "--progress"], "sweep multinomial",
                                      signal.SIGTERM, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert status == 128 + signal.SIGTERM, err
    assert (f"collapse-jax sweep: stopped by SIGTERM; the cells written so far are kept in {out}: add --resume to the "
            "same command to run the others") in err, err


def _some_cells_done(out) -> bool:
    try:
        return bool(sweep.cells_done(out).any())
    except Exception:  # noqa: BLE001 - no store yet
        return False


def test_sigterm_stops_a_sweep_from_sweep_cli_and_its_resume_finishes_it(tmp_path):
    """``python3 -m collapse_jax.sweep_cli`` gave cli.main its arguments with ``sweep`` in front, which turned off
    what the command line installs for a process (2026-12-07): SIGTERM killed it without a word (exit status -15).
    Now it stops with its cells kept, says so and exits 143, and a resume finishes the sweep (the other launchers,
    which pass no arguments, by the test above)."""
    launch = ["-m", "collapse_jax.sweep_cli"]
    spec = tmp_path / "s.toml"
    spec.write_text('simulator = "multinomial"\nreplicates = 200\n[fixed]\ncategories = 50\nsteps = 200\n'
                    '[grid]\nn0 = { linspace = [10, 1000, 12] }\nalpha_decay = [0.0]\n')  # blocks of one cell
    out = tmp_path / "o"
    command = [sys.executable, *launch, str(spec), "--out", str(out), "--no-plots", "--cells-per-chunk", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    status, err = signal_once_started([*command, "--progress"], "sweep multinomial", signal.SIGTERM, env=env,
                                      until=lambda: _some_cells_done(out))
    assert status == 128 + signal.SIGTERM, err
    assert (f"collapse-jax sweep: stopped by SIGTERM; the cells written so far are kept in {out}: add --resume to the "
            "same command to run the others") in err, err
    kept = int(sweep.cells_done(out).sum())
    assert kept >= 1
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{kept} of 12 cells done by an earlier run" in resumed.stderr
    assert sweep.cells_done(out).all() and (out / "manifest.json").is_file()


def test_a_log_colour_bar_over_less_than_a_decade_labels_its_ticks_plainly():
    """A user trial (2026-12-07): ratios from 1 to 7.05 had their colour bar ticked "2x10^0 3x10^0 4x10^0 6x10^0"
    beside a top label "7.05" in another style."""
    plt = phase._plt()
    ds = xr.Dataset({"relative_loss": (("b", "a"), np.array([[1.0, 2.5], [4.0, 7.05]]))},
                    coords={"a": [0.0, 1.0], "b": [0.0, 1.0]})
    fig, ax = plt.subplots()
    try:
        phase._heatmap(ax, ds, "relative_loss", "a", "b", log=True, centre_one=True)
        fig.canvas.draw()
        bar = fig.axes[-1]
        labels = [t.get_text() for t in bar.get_yticklabels()] + [t.get_text() for t in bar.get_yticklabels(minor=True)]
    finally:
        plt.close(fig)
    assert {"1", "7.05", "2", "3", "4", "6"} <= set(labels) and not any("10^" in t or "times" in t for t in labels)


def test_sweep_help_states_a_zips_default_dimension_name(capsys):
    """A user trial (2026-12-07): a [[zip]] without name is the dimension 'alpha0+n0', said nowhere; xarray's
    .sel takes it as a dict only."""
    with pytest.raises(SystemExit):
        cli_main(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "A [[zip]] without name is the dimension of its parameters joined by + ('alpha0+n0')" in out, out
