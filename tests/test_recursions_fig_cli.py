"""``recursions-fig2`` and ``recursions-fig3``: a tiny end-to-end run writes the run folder; bad options fail first."""

import json

import pytest

from collapse_jax.cli import main


@pytest.mark.parametrize("command,png", [("recursions-fig2", "fig2.png"), ("recursions-fig3", "fig3.png")])
def test_tiny_run_writes_its_folder(tmp_path, command, png):
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--replicates", "4", "--steps", "5", "--categories", "6"]) == 0
    assert (out / png).stat().st_size > 0
    assert (out / "arrays.npz").exists() and (out / "manifest.json").exists()
    assert len(json.loads((out / "config.json").read_text())["config"]["p"]) == 6
    # every stored array says what it is (a user trial, 2026-12-04: most descriptions were empty; fig3 lacked p)
    meta = json.loads((out / "arrays.json").read_text())
    assert {"p", "alpha", "n"} <= set(meta) and all(entry["description"] for entry in meta.values())
    import xarray as xr  # the settings and steps as coordinates (by position only: a user trial, 2026-12-06)

    with xr.open_dataset(out / "arrays.nc") as ds:
        assert list(ds["step"].values) == list(range(6))
        first = "alpha=0.5, n=10(t+1)" if command == "recursions-fig2" else "n=10(t+1)"
        loss = ds["losses_replace" if command == "recursions-fig2" else "losses"]
        assert list(ds["setting"].values)[1] == first and float(loss.sel(setting=first, step=0)[0]) >= 0
    from collapse_jax import multinomial as M  # the kernels that ran (config.json: the backend asked for)

    kernel = json.loads((out / "manifest.json").read_text())["summary"]["kernel"]
    assert kernel == ({"replace": M.resolve_backend("auto", "replace"), "accumulate": M.resolve_backend("auto",
                      "accumulate")} if command == "recursions-fig2" else M.resolve_backend("auto", "accumulate"))


def test_fig2_checks_the_accumulate_pool_before_anything_runs(tmp_path, capsys):
    """A third audit (2026-12-04): on the JAX path in float32 fig2 ran its whole replace grid, then refused the
    accumulate pool (3e7 > 2^24) with its folder already written."""
    import jax

    out = tmp_path / "run"
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)  # the command's float32 default (the suite may run in float64)
    try:
        code = main(["--backend", "jax", "recursions-fig2", "--out", str(out), "--steps", "100", "--replicates", "2"])
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert code == 2
    assert "accumulate pool's counts would not be exact in float32" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, most", [
    (["recursions-fig2", "--steps", "310"], "--steps: n_t up to 1.706e+07 exceeds 2**24"),
    (["recursions-fig3", "--steps", "310"], "--steps: n_t up to"),
    (["recursions-c2", "--models", "multinomial", "--base", "10000", "--steps", "200"], "--base, --steps: n_t up to"),
    (["recursions-c2", "--models", "gaussian", "--base", "10000", "--steps", "200"], "--base, --steps: n_t = "),
    (["recursions-w2", "--linear-base", "100001", "--generations", "200"], "--sizes, --linear-base: n_t = "),
])
def test_sizes_beyond_float32_name_the_flags_and_the_most_steps(tmp_path, capsys, argv, most):
    """A user trial (2026-12-07): these read "n_t up to 1.706e+07 exceeds 2**24", a size no option sets, and --help
    gives no limit; the flags that set the sizes and the most steps that hold them exactly are named now."""
    import jax

    out = tmp_path / "run"
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)  # the commands' float32 default (the suite runs in float64)
    try:
        code = main(argv + ["--replicates", "2", "--out", str(out)])
    finally:
        jax.config.update("jax_enable_x64", x64)
    err = capsys.readouterr().err
    bound = "(at most --generations " if argv[0] == "recursions-w2" else "(at most --steps "
    assert code == 2 and f"error: {most}" in err and bound in err, err
    assert not out.exists()


def test_flagged_steps_names_the_most_steps_that_pass():
    from collapse_jax.experiments import runs

    def check(T):
        if T > 42:
            raise ValueError(f"n_t up to {T} is too large")

    runs.flagged_steps(check, 42, "--steps")
    with pytest.raises(ValueError, match=r"^--steps: n_t up to 1000 is too large \(at most --steps 42 here\)$"):
        runs.flagged_steps(check, 1000, "--steps")
    with pytest.raises(ValueError, match=r"^--base: n_t up to 47 is too large$"):  # none passes: no bound named
        runs.flagged_steps(lambda T: check(T + 42), 5, "--base")


def test_a_rerun_with_another_precision_or_backend_is_refused(tmp_path, capsys):
    """It was accepted as the same configuration and overwrote the arrays under the old config.json."""
    out = tmp_path / "run"
    args = ["recursions-fig3", "--out", str(out), "--replicates", "4", "--steps", "3", "--categories", "4"]
    assert main(args) == 0
    assert main(["--backend", "jax", *args]) == 2
    assert 'backend: "auto" -> "jax"' in capsys.readouterr().err


@pytest.mark.parametrize("command", ["recursions-fig2", "recursions-fig3"])
def test_bad_replicates_fail_before_the_run_folder(tmp_path, capsys, command):
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--replicates", "0"]) == 2
    assert "replicates" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, flags", [
    (["recursions-fig2", "--replicates", "1000000000"], "--replicates, --steps"),
    (["recursions-fig2", "--steps", "100000000"], "--replicates, --steps"),
    (["recursions-fig3", "--steps", "100000000"], "--replicates, --steps"),
    (["recursions-w2", "--generations", "1000000000"], "--replicates, --generations"),
    (["recursions-gaussian-fit", "--generations", "100000000"], "--replicates, --generations"),
    (["recursions-linreg", "--iterations", "1000000000"], "--replicates, --iterations"),
    (["recursions-linreg", "--dim", "100000", "--num-samples", "100002"], "--dim, --num-samples"),
    (["recursions-c2", "--replicates", "1000000000"], "--replicates, --steps, --gmm-steps, --logistic-steps"),
])
def test_results_beyond_memory_are_refused_first(tmp_path, capsys, argv, flags):
    """A user trial (2026-12-05): these ran until the system killed them (9.8 GB before a word for fig2's
    --steps 1e8), or were refused after the run folder's config.json was written, which then refused the corrected
    command as "another configuration"."""
    out = tmp_path / "run"
    assert main(argv + ["--out", str(out)]) == 2
    assert f"error: {flags}: " in capsys.readouterr().err
    assert not out.exists()


def test_categories_have_one_allowed_range(capsys):
    for value in ("1", "0", "-4"):
        assert main(["recursions-fig2", "--categories", value]) == 2
        assert f"categories must be an integer >= 2 (K of the multinomial), got {value}" in capsys.readouterr().err


def test_a_band_reaching_zero_keeps_a_log_axis_readable():
    """A user trial (2026-12-04): a band whose lower edge was <= 0 (2 replicates, or one heavy-tailed replicate) was
    drawn down to 1e-300, and the log axis spanned 1e-315 ... 1e13 with every curve flattened at its top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from collapse_jax.experiments import runs

    losses = np.array([[1.0, 0.5, 0.2], [3.0, 179.0, 0.4]])   # t-interval at 2 replicates reaches far below 0
    fig, ax = plt.subplots()
    runs.band(ax, np.arange(3), losses, "C0", "x")
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    assert low > 1e-4 and high < 1e5, (low, high)
    poly = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert poly.min() == pytest.approx(np.mean(losses, 0).min() * 1e-3)
    plt.close(fig)


@pytest.mark.parametrize("command", ["recursions-fig2", "recursions-fig3"])
def test_categories_beyond_memory_are_refused_before_the_run_folder(tmp_path, capsys, monkeypatch, command):
    """A user trial (2026-12-05): ``recursions-fig3 --categories 10000000`` grew to 21 GB in the native kernel's
    per-thread scratch (about 1.4 KB per category) and was killed by the system, leaving a run folder holding a
    294 MB config.json. Here the machine is made small: 10^6 categories need more than 1 GiB on any backend."""
    from collapse_jax import _checks

    monkeypatch.setattr(_checks, "available_memory_bytes", lambda: 2**30)
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--categories", "1000000", "--replicates", "2", "--steps", "1"]) == 2
    assert "K = 1,000,000 categories (p has K entries) need about" in capsys.readouterr().err
    assert not out.exists()
