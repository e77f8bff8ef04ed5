"""Seed 004 linear regression: NumPy reference, exact error formulas, contract, bad input."""

import jax
import numpy as np
import pytest
from scipy import stats

import linear_regression_reference as ref
from collapse_jax import linear_regression as LR

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


def test_contract_same_key_vmap_loop():
    cfg = LR.LinearRegressionConfig(4, 12, 8, "accumulate")
    keys = jax.random.split(jax.random.key(1), 3)
    w = jax.numpy.asarray(W)
    batched = np.asarray(LR.batched_error(keys, w, 0.7, cfg))
    loop = np.stack([np.asarray(LR.batched_error(k[None], w, 0.7, cfg))[0] for k in keys])
    np.testing.assert_allclose(batched, loop, rtol=1e-10)
    np.testing.assert_array_equal(batched, np.asarray(LR.batched_error(keys, w, 0.7, cfg)))


def test_bad_input():
    with pytest.raises(ValueError, match="num_samples"):
        LR.LinearRegressionConfig(5, 6, 3)
    with pytest.raises(ValueError, match="regime"):
        LR.LinearRegressionConfig(2, 6, 3, "mix")
    with pytest.raises(ValueError, match="sigma"):
        LR.simulate(0, W, 0.0, LR.LinearRegressionConfig(4, 12, 3), 5)
    with pytest.raises(ValueError, match="w_star"):
        LR.simulate(0, W[:2], 1.0, LR.LinearRegressionConfig(4, 12, 3), 5)
