"""``recursions-c2``: bad options fail before any compute or run folder; a tiny end-to-end run (slow)."""

import json
import re

import numpy as np
import pytest

from collapse_jax.cli import main


@pytest.mark.parametrize("extra,match", [(["--models", "gmm,nope"], "models must be"),
                                         (["--models", "gmm", "--gmm-base", "8"], r"--gmm-base must be >= 3 K = 9\b"),
                                         (["--models", "logistic", "--logistic-base", "7"],
                                          r"--logistic-base must be >= 2 \(d \+ 1\) = 8, got 7"),
                                         (["--models", "gaussian", "--base", "1"],
                                          "base must be >= 2 with the gaussian"),
                                         (["--replicates", "0"], "replicates must be"),
                                         # options of a model class not selected: refused, not ignored (a user
                                         # trial: --base was range-checked, --logistic-steps silently unused)
                                         (["--models", "gmm", "--logistic-steps", "100000"],
                                          "--logistic-steps applies to logistic only"),
                                         (["--models", "gmm,logistic", "--categories", "5"],
                                          "--categories applies to multinomial only"),
                                         (["--models", "logistic", "--base", "50"],
                                          "--base applies to multinomial and gaussian only"),
                                         # a refit's raw-sample buffer named by the command's options, not by the
                                         # API's max_points (no such flag)
                                         (["--models", "logistic", "--logistic-steps", "100000"],
                                          r"10,000,100 points, .* lower --logistic-steps or --logistic-base$"),
                                         (["--models", "gmm", "--gmm-steps", "3000"],
                                          "lower --gmm-steps or --gmm-base"),
                                         (["--models", "gmm,gmm"], "each at most once"),
                                         # an int32 loop bound: 10**30 overflowed in the jitted EM, after the
                                         # folder was made (a user trial, 2026-12-06)
                                         (["--models", "gmm", "--gmm-max-iter", str(10**30)],
                                          "--gmm-max-iter must be at most 2")])
def test_bad_options_fail_before_compute(tmp_path, capsys, extra, match):
    out = tmp_path / "run"
    assert main(["recursions-c2", "--out", str(out)] + extra) == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.slow
def test_tiny_run_all_models(tmp_path):
    """Slow (eight compilations): every model class, 3 replicates, 2 generations."""
    out = tmp_path / "run"
    argv = ["recursions-c2", "--out", str(out), "--replicates", "3", "--steps", "2", "--base", "10",
            "--gmm-steps", "2", "--gmm-base", "10", "--logistic-steps", "3", "--logistic-base", "10"]
    assert main(argv) == 0
    arrays = np.load(out / "arrays.npz")
    for model in ("multinomial", "gaussian", "gmm"):
        assert arrays[model].shape == (8, 3, 3)
    assert arrays["logistic"].shape == (8, 3, 4)
    # each theory curve on its model's generation axis (a user trial, 2026-12-05: the logistic curves, whose T
    # differed from the multinomial's, each got a dimension of their own, so a difference was an outer product)
    import xarray as xr

    with xr.open_dataset(out / "arrays.nc") as ds:
        for model in ("multinomial", "gaussian", "logistic"):            # (the mixture has no closed form)
            assert ds[f"{model}_theory_1"].dims == (ds[model].dims[-1],), model
        assert ds["logistic"].dims[-1] == "step_logistic" and ds["multinomial"].dims[-1] == "step"
        assert (ds["logistic"].mean("replicate") - ds["logistic_theory_1"]).shape == (8, 4)
    assert (out / "c2.png").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["config"]["models"] == ["multinomial", "gaussian", "gmm", "logistic"]
    meta = json.loads((out / "arrays.json").read_text())   # the theory curves described too (a user trial)
    assert any("_theory_" in k for k in meta) and all(entry["description"] for entry in meta.values())
    # the run's tallies on each risk itself (they were only on the theory curves' descriptions; a user trial)
    assert "EM fits stopped at max_iter" in meta["gmm"]["description"]
    assert "a fit failed in" in meta["logistic"]["description"]


def test_config_records_only_the_models_run(tmp_path):
    """A user trial: config.json held the multinomial's p (and every other class's truth) when only the Gaussian ran."""
    out = tmp_path / "run"
    assert main(["recursions-c2", "--out", str(out), "--models", "gaussian", "--replicates", "2", "--steps", "1",
                 "--base", "4", "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["gaussian"] == {"mu": 0.0, "sigma": 1.0}
    assert not {"p", "gmm", "gmm_max_iter", "logistic"} & set(config)
    from collapse_jax import gaussian as G  # the kernels that ran (config.json: the backend asked for)

    kernel = G.resolve_backend("auto", "replace")
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["kernel"] == {"gaussian": {"replace": kernel, "accumulate": kernel}}


def test_failed_fits_leave_their_steps_only_out_of_the_mean():
    """A user trial (2026-12-05): the figure dropped every replicate with a failed logistic fit from every step, so
    the steps before the failure were biased (t = 0 of setting 1: 5.2 against 17.8 over all replicates), and the
    title counted fits, not the replicates left out."""
    from collapse_jax.experiments import c2, runs

    rng = np.random.default_rng(0)
    losses = rng.exponential(size=(8, 50, 4))
    losses[:, :10, 2:] = np.nan  # ten replicates of each setting fail at t = 2 (NaN from then on)
    losses[0, :10, :2] *= 100.0   # ... and were large before
    mean, half = runs.mean_ci(losses[0])
    np.testing.assert_allclose(mean[:2], losses[0, :, :2].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mean[2:], losses[0, 10:, 2:].mean(axis=0), rtol=1e-12)
    assert np.all(np.isfinite(half))
    full = rng.exponential(size=(30, 4))  # no NaN: the plain formula, bit for bit
    np.testing.assert_array_equal(runs.mean_ci(full)[0], full.mean(axis=0))
    fig = c2.figure({"logistic": (losses, {}, "note")}, None, {"logistic": 100}, 50)
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    first = next(label for label in lines if label.startswith("1 "))
    assert first.endswith("(10 failed)")
    np.testing.assert_allclose(lines[first][0], losses[0, :, 0].mean(), rtol=1e-12)
