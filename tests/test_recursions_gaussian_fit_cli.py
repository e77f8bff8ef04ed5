"""``collapse-jax recursions-gaussian-fit``: run folder, the exact fit moments against its Monte Carlo, bad input."""

import json

import numpy as np
import pytest

from collapse_jax import cli
from native_support import NATIVE
from collapse_jax import gaussian as G
from collapse_jax import schedules as S

ARGV = ["recursions-gaussian-fit", "--alpha", "0.3", "--size", "6", "--generations", "12", "--replicates", "20000",
        "--mu", "0.5", "--sigma", "1.5", "--seed", "3"]


def test_run_folder_holds_the_fits_and_their_exact_moments(tmp_path):
    out = tmp_path / "fit"
    assert cli.main(ARGV + ["--out", str(out), "--x64"]) == 0
    with np.load(out / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"gaussian_fit.png", "arrays.npz", "arrays.json", "config.json"} <= set(manifest["files"])
    assert arrays["squared_error"].shape == (3, 20000, 13) and arrays["exact_variance"].shape == (3, 13)
    alpha, n = S.constant_alpha(0.3, 12), S.constant_size(6, 12)
    for g, regime in enumerate(("replace", "accumulate", "accumulate-subsample")):
        theory = G.fit_moments(1.5, alpha, n, regime)
        np.testing.assert_allclose(arrays["exact_squared_error"][g], theory.mean_sq_error, rtol=1e-12)
        np.testing.assert_allclose(arrays["w2_lower_bound"][g], theory.w2_lower, rtol=1e-12)
        for name, exact in (("squared_error", theory.mean_sq_error), ("variance", theory.variance)):
            x = arrays[name][g]
            z = (x.mean(0) - exact) / (x.std(0, ddof=1) / np.sqrt(x.shape[0]))
            assert np.all(np.abs(z) < 4.5), (regime, name)
        assert np.all(arrays["w2"][g].mean(0) > arrays["w2_lower_bound"][g])
        s = manifest["summary"][regime]
        assert s["w2_below_bound_steps"] == 0 and s["max_abs_z_variance"] < 4.5
        assert s["last_exact_variance"] == pytest.approx(theory.variance[-1], rel=1e-12)
        # the kernels each regime ran on (config.json records only the backend asked for; a user trial, 2026-12-06)
        assert s["kernel"] == ("jax" if regime == "accumulate-subsample" or not NATIVE else "native")
    import xarray as xr  # regimes and generations as coordinates (by position only: a user trial, 2026-12-06)

    with xr.open_dataset(out / "arrays.nc") as ds:
        assert list(ds["regime"].values) == ["replace", "accumulate", "accumulate-subsample"]
        np.testing.assert_array_equal(ds["w2"].sel(regime="accumulate", generation=12), arrays["w2"][1, :, 12])
    # accumulate averages every point so far: its mean's error stays far below the fixed-budget regimes'
    assert arrays["exact_squared_error"][1, -1] < 0.5 * arrays["exact_squared_error"][[0, 2], -1].min()


def test_one_regime_and_its_default_draws_are_those_of_the_simulator(tmp_path):
    out = tmp_path / "one"
    argv = ["recursions-gaussian-fit", "--regimes", "accumulate-subsample", "--generations", "3", "--replicates", "8",
            "--size", "4", "--seed", "2", "--x64"]
    assert cli.main(argv + ["--out", str(out)]) == 0
    with np.load(out / "arrays.npz") as data:
        variance = data["variance"]
    fits = G.simulate(2, 0.0, 1.0, S.constant_alpha(0.5, 3), S.constant_size(4, 3),
                      G.GaussianConfig("accumulate-subsample", record="fit"), 8)
    np.testing.assert_array_equal(variance[0], fits[..., 1])


def test_pure_synthetic_fits_are_marked_heavy_tailed(tmp_path, capsys):
    """A user trial (2026-12-07): --alpha 0 printed "max |z| 25.31 / 29757563428.33; E W2^2 7.984 < (below) bound
    40.2" of an exact law, without the heavy-tail note recursions-w2 gives (the median variance was 3e-24, the
    largest 1 % of runs held nearly all of its sum). With fresh data (the test above) nothing is marked."""
    argv = ["recursions-gaussian-fit", "--alpha", "0", "--size", "5", "--generations", "60", "--replicates", "2000",
            "--regimes", "replace", "--seed", "1", "--x64", "--out", str(tmp_path / "pure")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "[heavy tail: the largest 1% of runs hold" in out and "sum of sigma_hat^2 at t = 60" in out
    summary = json.loads((tmp_path / "pure" / "manifest.json").read_text())["summary"]["replace"]
    assert summary["ci_reliable"] is False and summary["last_top1_share"]["variance"] > 0.25
    assert cli.main(ARGV + ["--generations", "4", "--replicates", "2000", "--out", str(tmp_path / "fresh")]) == 0
    assert "heavy tail" not in capsys.readouterr().out
    summary = json.loads((tmp_path / "fresh" / "manifest.json").read_text())["summary"]
    assert all(summary[r]["ci_reliable"] for r in ("replace", "accumulate", "accumulate-subsample"))


def test_a_mean_far_from_zero_keeps_the_errors(tmp_path, capsys):
    """A user trial (2026-12-07): with --mu 1e17 (float32) every fitted mean rounded to mu, so every error was 0, z
    0 ("max |z| 0.00") and the line printed "E W2^2 0.037 >= bound 0.069". The fits are simulated centred now (they
    are location-equivariant), so the errors are those of --mu 0, and a Monte Carlo that cannot vary is no pass."""
    argv = ["recursions-gaussian-fit", "--regimes", "replace", "--generations", "4", "--replicates", "500",
            "--seed", "1"]
    arrays = []
    for mu, name in (("0", "zero"), ("1e17", "far")):
        assert cli.main(argv + ["--mu", mu, "--out", str(tmp_path / name)]) == 0
        with np.load(tmp_path / name / "arrays.npz") as data:
            arrays.append({k: data[k] for k in data.files})
    for key in ("squared_error", "variance", "w2"):
        np.testing.assert_array_equal(arrays[1][key], arrays[0][key])
    assert capsys.readouterr().out.count("max |z| over t 0.00") == 0
    from collapse_jax.experiments import gaussian_fit

    z = gaussian_fit._z(np.zeros((10, 3)), np.array([0.0, 0.1, -0.1]))
    np.testing.assert_array_equal(z, [0.0, -np.inf, np.inf])


@pytest.mark.parametrize("argv, name", [
    (["--alpha", "1.5"], "alpha"),
    (["--size", "1"], "size"),
    (["--generations", "0"], "generations"),
    (["--replicates", "1"], "replicates"),
    (["--regimes", "subsample"], "regimes"),
    (["--regimes", "replace", "replace"], "regimes"),
    (["--regimes"], "regimes"),
    (["--sigma", "0"], "sigma"),
    # a third audit (2026-12-04): refused only after the other regimes ran, and its folder then blocked the rerun
    (["--generations", "20000", "--size", "101", "--replicates", "2"], "leave out accumulate-subsample"),
    # a user trial (2026-12-05): the count said --generations x --size (6e6 for 8e6) and "raise max_points", no flag
    (["--generations", "3", "--size", "2000000"], "(--generations + 1) x --size = 8000000 points per replicate"),
    (["--sigma", "1e-200"], "--sigma must be in [1e-150, 1e+150]"),  # (its square underflows; 1e-25 now works)
])
def test_bad_parameters_fail_before_compute(tmp_path, capsys, argv, name):
    out = tmp_path / "run"
    assert cli.main(["recursions-gaussian-fit", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert name in err and "error" in err
    assert not out.exists()


@pytest.mark.skipif(not NATIVE, reason="--backend native needs the native kernels")
def test_backend_native_says_which_parts_ran_the_jax_kernel(tmp_path, capsys):
    """A user trial (2026-12-06): under --backend native the accumulate-subsample regime (JAX only) ran the JAX
    kernel without a word, where recursions-linreg refuses the flag."""
    from collapse_jax import _native

    argv = ["--backend", "native", "recursions-gaussian-fit", "--generations", "3", "--replicates", "8", "--size", "4"]
    try:
        assert cli.main(argv + ["--out", str(tmp_path / "a")]) == 0
        assert ("recursions-gaussian-fit: --backend native: accumulate-subsample ran the JAX kernel"
                in capsys.readouterr().err)
        assert cli.main(argv + ["--regimes", "replace", "--out", str(tmp_path / "b")]) == 0
        assert "ran the JAX kernel" not in capsys.readouterr().err
    finally:
        _native.prefer_backend("auto")
