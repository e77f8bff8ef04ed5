"""Seed 004 linear regression: NumPy reference, exact error formulas, contract, bad input."""

import numpy as np
import pytest
from scipy import stats

import linear_regression_reference as ref
from collapse_jax import driver
from collapse_jax import linear_regression as LR
from collapse_jax.mixture_refit import MixtureConfig

W = np.linspace(-1.0, 1.0, 4)


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_matches_numpy_reference_and_theory(regime):
    cfg = LR.LinearRegressionConfig(4, 12, 8, regime)
    err = LR.simulate(0, W, 0.7, cfg, 6000)
    np_err = ref.simulate(np.random.default_rng(0), W, 0.7, 4, 12, 8, regime, 500)
    for i in (0, 7):
        assert stats.ks_2samp(err[:, i], np_err[:, i]).pvalue > 1e-3
    theory = (LR.replace_error if regime == "replace" else LR.accumulate_error)(0.7, 4, 12, 8)
    se = err.std(0, ddof=1) / np.sqrt(err.shape[0])
    assert np.all(np.abs(err.mean(0) - theory) < 4 * se)
    if regime == "accumulate":
        assert theory[-1] < LR.accumulate_bound(0.7, 4, 12)
        # power: the replace formula is far outside the accumulate Monte Carlo
        assert abs(err.mean(0)[-1] - LR.replace_error(0.7, 4, 12, 8)[-1]) > 10 * se[-1]


def test_contract_chunks_and_keys():
    """Replicate r's errors depend only on its index: chunked runs and a run started at a later replicate agree with
    one call; another seed differs (jit == eager and vmap == loop: tests/test_contracts.py)."""
    cfg = LR.LinearRegressionConfig(4, 12, 8, "accumulate")
    whole = LR.simulate(1, W, 0.7, cfg, 5)
    np.testing.assert_array_equal(whole, LR.simulate(1, W, 0.7, cfg, 5, chunk_size=2))
    np.testing.assert_array_equal(whole[3:], LR.simulate(1, W, 0.7, cfg, 2, first_replicate=3))
    # the kernel itself, through the driver (simulate runs it at w* = 0 and sigma = 1, then scales by sigma^2: the
    # errors do not depend on w*)
    zero = LR.Params(np.zeros_like(np.asarray(W)), np.asarray(1.0))
    np.testing.assert_array_equal(whole, 0.7 * 0.7 * driver.run_replicates(LR.kernel, zero, cfg, 5, 1, chunk_size=2))
    np.testing.assert_array_equal(whole[3:], 0.7 * 0.7 * driver.run_replicates(LR.kernel, zero, cfg, 2, 1,
                                                                                 first_replicate=3))
    at_sigma = driver.run_replicates(LR.kernel, zero._replace(sigma=np.asarray(0.7)), cfg, 5, 1)
    np.testing.assert_allclose(whole, at_sigma, rtol=1e-13)  # (the kernel at sigma: the same up to rounding)
    assert not np.array_equal(whole, LR.simulate(2, W, 0.7, cfg, 5))


def test_bad_input():
    with pytest.raises(ValueError, match="num_samples"):
        LR.LinearRegressionConfig(5, 6, 3)
    with pytest.raises(ValueError, match="regime"):
        LR.LinearRegressionConfig(2, 6, 3, "mix")
    with pytest.raises(ValueError, match="sigma"):
        LR.simulate(0, W, 0.0, LR.LinearRegressionConfig(4, 12, 3), 5)
    with pytest.raises(ValueError, match="w_star"):
        LR.simulate(0, W[:2], 1.0, LR.LinearRegressionConfig(4, 12, 3), 5)
    with pytest.raises(ValueError, match="config must be a LinearRegressionConfig, got MixtureConfig"):
        LR.simulate(0, W, 1.0, MixtureConfig(), 5)  # (an AttributeError deep inside before; a user trial)


def test_the_laws_refuse_what_the_simulator_refuses():
    """An audit (2026-12-02): replace_error(1, 5, 6, 3) was a ZeroDivisionError, dim = -1 gave negative errors,
    sigma = NaN NaN; logistic.fisher_information(1.0, 0) an IndexError and a NaN intercept NaN."""
    from collapse_jax import logistic

    for args, message in [((1.0, 5, 6, 3), r"num_samples T must be at least dim \+ 2 = 7, got 6"),
                          ((1.0, -1, 6, 3), "dim must be an integer >= 1"),
                          ((float("nan"), 2, 6, 3), r"sigma must be in \[1e-150, 1e\+150\]"),
                          ((1.0, 2, 6, 0), "num_iterations must be an integer >= 1")]:
        for law in (LR.replace_error, LR.accumulate_error):
            with pytest.raises(ValueError, match=message):
                law(*args)
    for args, message in [((1.0, 0.0), r"beta must have shape \(\?\)"), (([1.0], float("nan")), "intercept")]:
        with pytest.raises(ValueError, match=message):
            logistic.fisher_information(*args)
    # a user trial (2026-12-06): |beta| = 1e300 overflowed in the norm's squares and was refused as "|beta| = inf"
    info = logistic.fisher_information([1e300, 1e300], 0.5)
    assert np.all(np.isfinite(info)) and info[0, 0] > 0


def test_errors_do_not_depend_on_w_star_in_float32():
    """An audit (2026-12-04): in float32, w* = 1e5 with sigma = 0.01 lost the noise in the labels (114x the exact
    accumulate error). w_hat - w* is linear in the noise alone, so the errors are simulated at w* = 0."""
    import jax

    config = LR.LinearRegressionConfig(3, 12, 10, "accumulate")
    with jax.enable_x64(False):
        far = LR.simulate(0, np.full(3, 1e5), 1e-2, config, 4000)
        near = LR.simulate(0, np.zeros(3), 1e-2, config, 4000)
    assert far.dtype == np.float64  # (sigma != 1: scaled in float64)
    np.testing.assert_array_equal(far, near)
    se = far.std(axis=0, ddof=1) / np.sqrt(far.shape[0])
    assert np.all(np.abs(far.mean(axis=0) - LR.accumulate_error(1e-2, 3, 12, 10)) < 5 * se)


@pytest.mark.parametrize("sigma", [1e20, 1e-20, 1e140])
def test_errors_scale_as_sigma_squared_whatever_the_dtype(sigma):
    """A user trial (2026-12-05): in float32 sigma = 1e20 gave inf errors and 1e-20 gave 0 (and the theory's
    sigma ** 2 an OverflowError at 1e200). The errors are sigma^2 times those at sigma = 1, from the same draws."""
    import jax

    config = LR.LinearRegressionConfig(3, 9, 2, "replace")
    with jax.enable_x64(False):
        unit = LR.simulate(0, np.zeros(3), 1.0, config, 500)
        scaled = LR.simulate(0, np.zeros(3), sigma, config, 500)
    assert unit.dtype == np.float32 and scaled.dtype == np.float64
    np.testing.assert_allclose(scaled, unit.astype(np.float64) * (sigma * sigma), rtol=1e-15)
    assert np.all(np.isfinite(scaled) & (scaled > 0))
    ratio = scaled / sigma ** 2  # (in units of sigma^2: the SE's squares stay in range)
    se = ratio.std(axis=0, ddof=1) / np.sqrt(ratio.shape[0])
    assert np.all(np.abs(ratio.mean(axis=0) - LR.replace_error(sigma, 3, 9, 2) / sigma ** 2) < 5 * se)


@pytest.mark.parametrize("sigma", [1e200, 1e-200])
def test_a_scale_whose_square_leaves_float64_is_refused(sigma):
    """A user trial (2026-12-05): recursions-linreg --sigma 1e300 computed inf errors and theory, then failed in the
    plot and left a folder without manifest; 1e-200 gave 0 +- 0 "inside the CI"."""
    config = LR.LinearRegressionConfig(3, 9, 2, "replace")
    for call in (lambda: LR.simulate(0, np.zeros(3), sigma, config, 5), lambda: LR.replace_error(sigma, 3, 9, 2),
                 lambda: LR.accumulate_bound(sigma, 3, 9)):
        with pytest.raises(ValueError, match=r"sigma must be in \[1e-150, 1e\+150\] \(a positive scale whose square is a normal"):
            call()
