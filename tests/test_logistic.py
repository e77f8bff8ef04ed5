"""Logistic recursion: NumPy raw-draw reference (KS), Newton fit against plain NumPy Newton and the score equation,
separation handling, the first-order theory at large n, contract (jit == eager, vmap == loop, same key, chunking)
and bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import logistic_reference as ref
from collapse_jax import logistic as L
from collapse_jax import schedules as S
from collapse_jax.linear_regression import LinearRegressionConfig

BETA, B0 = np.r_[1.0, -1.0, 0.5], 0.25
THETA = np.r_[B0, BETA]
T = 3


@functools.lru_cache(maxsize=None)
def _jax_risk(regime, alpha_value):
    alpha, n = S.constant_alpha(alpha_value, T), S.linear_size(60, T)
    return L.simulate(3, BETA, B0, alpha, n, L.LogisticConfig(regime), 2000, progress=False).risk


@pytest.mark.parametrize("regime,alpha_value", [("replace", 0.3), ("accumulate", 0.0)])
def test_matches_numpy_reference(regime, alpha_value):
    alpha, n = S.constant_alpha(alpha_value, T), S.linear_size(60, T)
    np_risk = ref.simulate(np.random.default_rng(3), BETA, B0, alpha, n, regime, 300)
    risk = _jax_risk(regime, alpha_value)
    assert np.isfinite(risk).all() and np.isfinite(np_risk).all()
    for t in range(T + 1):
        assert stats.ks_2samp(risk[:, t], np_risk[:, t]).pvalue > 1e-3, (regime, t)


def test_ks_rejects_a_wrong_alpha():
    """Power: the same KS test tells alpha = 0.3 from alpha = 0 (pure synthetic) at t = T."""
    n = S.linear_size(60, T)
    np_risk = ref.simulate(np.random.default_rng(4), BETA, B0, S.pure_synthetic_alpha(T), n, "replace", 300)
    assert stats.ks_2samp(_jax_risk("replace", 0.3)[:, T], np_risk[:, T]).pvalue < 1e-4


def _data(seed, size, theta=THETA):
    rng = np.random.default_rng(seed)
    design = np.c_[np.ones(size), rng.normal(size=(size, theta.shape[0] - 1))]
    y = (rng.random(size) < 1 / (1 + np.exp(-design @ theta))).astype(float)
    return design, y


def _fit(design, y, count, start, cfg, chunk):
    return L.newton_fit((jnp.asarray(design), jnp.asarray(y)), jnp.asarray(float(count)), jnp.asarray(start), cfg,
                        chunk)


def test_newton_matches_numpy_and_solves_the_score_equation():
    design, y = _data(0, 150)
    padded = (np.r_[design, np.full((10, 4), 7.0)], np.r_[y, np.ones(10)])  # rows beyond count are ignored
    cfg = L.LogisticConfig()
    theta, steps, ok = _fit(*padded, 150, np.zeros(4), cfg, 32)
    want, want_steps, want_ok = ref.newton_fit(design, y, np.zeros(4))
    np.testing.assert_allclose(np.asarray(theta), want, rtol=1e-9)
    assert bool(ok) and want_ok and int(steps) == want_steps
    prob = 1 / (1 + np.exp(-design @ np.asarray(theta)))
    np.testing.assert_allclose(design.T @ (y - prob), cfg.ridge * np.asarray(theta), atol=1e-9)


def test_separable_data_fail_and_give_nan():
    design, y = _data(1, 40, np.r_[0.0, 60.0, 0.0, 0.0])  # labels = sign of x_1: separable
    y = (design[:, 1] > 0).astype(float)
    _, _, ok = _fit(design, y, 40, np.zeros(4), L.LogisticConfig(), 40)
    assert not bool(ok)
    alpha, n = S.constant_alpha(0.5, 2), S.constant_size(8, 2)
    with pytest.warns(RuntimeWarning, match="fits failed"):
        risk, _, ok = L.simulate(0, [30.0, 0.0, 0.0], 0.0, alpha, n, L.LogisticConfig(), 50, progress=False)
    failed_at = np.argmax(~ok, axis=1)
    rows = np.flatnonzero(~ok.all(1))
    assert rows.size > 0
    for r in rows:  # NaN from the first failed fit on, finite before
        assert np.isnan(risk[r, failed_at[r]:]).all() and np.isfinite(risk[r, :failed_at[r]]).all()


def test_fisher_information_quadrature():
    rng = np.random.default_rng(5)
    x = np.c_[np.ones(400_000), rng.normal(size=(400_000, 3))]
    prob = 1 / (1 + np.exp(-x @ THETA))
    mc = (x * (prob * (1 - prob))[:, None]).T @ x / x.shape[0]
    np.testing.assert_allclose(L.fisher_information(BETA, B0), mc, atol=3e-3)
    np.testing.assert_allclose(L.fisher_information(np.zeros(3), 0.0), np.eye(4) / 4, atol=1e-14)


@pytest.mark.parametrize("norm,b0,trace", [
    (2.0, -1.0, 26.2158996940450762950718705017),
    (20.0, 0.0, 6250.77794708647672079445366117),
    (50.0, 30.0, 155461.867013986677744265589775),
    (1000.0, 3.0, 761941687.777949548302678267277),
])
def test_fisher_information_follows_a_steep_sigmoid(norm, b0, trace):
    """A user trial (2026-12-05): Gauss-Hermite nodes cannot resolve sigmoid'(b_0 + |beta| u), a peak of width
    1 / |beta|: tr I^-1 was 33 % low at beta = 20 and 18x high at beta = 50, b_0 = 30 (the simulator's own Monte
    Carlo then sat 9 SE from first_order_risk). References: tr I^-1 = (e0 + e2) / (e0 e2 - e1^2) for d = 1, the
    e_k = E sigmoid'(b_0 + |beta| u) u^k by mpmath.quad at 30 digits, split at the peak."""
    got = np.trace(np.linalg.inv(L.fisher_information(np.array([norm]), b0)))
    assert got == pytest.approx(trace, rel=1e-11)
    # d = 3 with the same |beta|: the orthogonal directions add (d - 1) / E w to the trace
    e0 = L.fisher_information(np.array([norm]), b0)[0, 0]
    got3 = np.trace(np.linalg.inv(L.fisher_information(np.array([norm, 0.0, 0.0]) @ _rotation(), b0)))
    assert got3 == pytest.approx(trace + 2 / e0, rel=1e-10)


def _rotation():
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    return q


def test_fisher_information_is_symmetric_in_the_intercept_and_refuses_underflow():
    """Found by an audit (2026-12-04): sigmoid' as s (1 - s) lost 1 - s for b_0 + |beta| u > 36, so tr(I^-1) was
    2.8x too large at b_0 = 38 and 26x at 40 (exact at -38, -40), and a zero matrix at 800. sigmoid'(z) = sigmoid'(-z)
    and the labels' law under (b_0, beta) mirrors (-b_0, -beta): the traces must agree; an underflow is an error."""
    b = np.array([1.0, -1.0, 0.5])
    for b0 in (30.0, 38.0, 40.0):
        plus, minus = (np.trace(np.linalg.inv(L.fisher_information(b, x))) for x in (b0, -b0))
        assert plus == pytest.approx(minus, rel=1e-9)
    with pytest.raises(ValueError, match="intercept 800 .* underflows"):
        L.fisher_information(b, 800.0)


@pytest.mark.parametrize("regime,alpha_value", [("replace", 0.5), ("accumulate", 0.0)])
def test_first_order_theory_at_large_n(regime, alpha_value):
    """The first-order (delta-method) recurrence is approximate, with an O(1/n) relative error (measured with 4000
    replicates: Monte Carlo / theory = 1.13 at n = 250, 1.00-1.03 at n = 1000 and 4000). At n = 1000 it must lie
    within 4 Monte Carlo standard errors plus 5%; at n = 60 the same Monte Carlo sees it is too low."""
    alpha, n = S.constant_alpha(alpha_value, 2), S.constant_size(1000, 2)
    risk = L.simulate(1, BETA, B0, alpha, n, L.LogisticConfig(regime), 800, progress=False).risk
    theory = L.first_order_risk(BETA, B0, alpha, n, regime)
    mean, se = risk.mean(0), risk.std(0, ddof=1) / np.sqrt(risk.shape[0])
    assert np.all(np.abs(mean - theory) <= 4 * se + 0.05 * theory), (mean / theory)
    if alpha_value == 0.0:  # power: the same Monte Carlo rejects "no drift" (risk stays at r_0)
        assert mean[-1] - theory[0] > 5 * se[-1]
    else:  # power: at n_0 = 60 the first-order value is visibly too low
        small = _jax_risk("replace", 0.3)[:, 0]
        fo = L.first_order_risk(BETA, B0, S.constant_alpha(0.3, T), S.linear_size(60, T))[0]
        assert small.mean() - fo > 10 * small.std(ddof=1) / np.sqrt(small.size)


@pytest.mark.slow  # CI runs the same contract in tests/test_contracts.py
def test_contract_vmap_loop_keys_chunks():
    """vmap (lanes=3) == a loop of single replicates (lax.map, lanes=1); replicate i's draw depends only on
    (seed, i), not on chunking; another seed gives other draws."""
    alpha, n = S.constant_alpha(0.4, 2), S.linear_size(20, 2)
    cfg = L.LogisticConfig("accumulate")
    loop = L.simulate(5, BETA, B0, alpha, n, cfg, 6, chunk_size=3, progress=False)
    vmapped = L.simulate(5, BETA, B0, alpha, n, L.LogisticConfig("accumulate", lanes=3), 6, progress=False)
    np.testing.assert_allclose(vmapped.risk, loop.risk, rtol=1e-10)
    np.testing.assert_array_equal(vmapped.newton_steps, loop.newton_steps)
    again = L.simulate(5, BETA, B0, alpha, n, cfg, 3, progress=False)
    np.testing.assert_array_equal(again.risk, loop.risk[:3])
    later = L.simulate(5, BETA, B0, alpha, n, cfg, 3, first_replicate=3, progress=False)
    np.testing.assert_array_equal(later.risk, loop.risk[3:])
    other = L.simulate(6, BETA, B0, alpha, n, cfg, 3, progress=False)
    assert not np.array_equal(other.risk, loop.risk[:3])


@pytest.mark.slow  # CI runs the same contract in tests/test_contracts.py
def test_contract_jit_equals_eager():
    theta = jnp.asarray(THETA)
    cfg = L.LogisticConfig()

    def f():
        data = L.draw_mixed(jax.random.key(3), 30, jnp.asarray(0.5), theta, 0.5 * theta)
        return data, L.newton_fit(data, jnp.asarray(25.0), jnp.zeros(4), cfg, 16)

    jitted = jax.jit(f)()
    with jax.disable_jit():
        eager = f()
    for j, e in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-9)



@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=np.r_[1.0, 0.5, 1.2]), "alpha must lie in"),
    (dict(alpha=np.r_[1.0, -0.1, 0.5]), "alpha must lie in"),
    (dict(n=np.r_[12.0, 0.0, 12.0]), "n must be >= 1"),
    (dict(n=np.r_[12.0, 7.0, 12.0]), r"n must be >= 2 \(d \+ 1\) = 8"),
    (dict(n=np.r_[12.0, 12.0]), "same length"),
    (dict(beta=np.r_[1.0, np.nan]), "beta must contain only finite"),
    (dict(beta=np.ones((2, 2))), "beta must be a vector"),
    (dict(intercept=np.inf), "intercept"),
    (dict(config=L.LogisticConfig("accumulate", max_points=30)), "max_points=30"),
    (dict(backend="native"), "backend must be 'auto' or 'jax'"),
    (dict(config=LinearRegressionConfig(2, 6, 3)), "config must be a LogisticConfig, got LinearRegressionConfig"),
])
def test_bad_input_raises_before_compute(kwargs, match):
    args = dict(beta=BETA, intercept=B0, alpha=np.r_[1.0, 0.5, 0.5], n=np.r_[12.0, 12.0, 12.0],
                config=L.LogisticConfig(), backend="auto")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        L.simulate(0, args["beta"], args["intercept"], args["alpha"], args["n"], args["config"], 3,
                   backend=args["backend"])


@pytest.mark.parametrize("kwargs", [dict(regime="filter"), dict(max_iter=0), dict(tol=0.0), dict(ridge=0.0),
                                    dict(chunk=0), dict(lanes=0), dict(buffer=0),
                                    dict(ridge=float("inf"))])  # (a user trial: accepted, then every fit was NaN)
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        L.LogisticConfig(**kwargs)


def test_first_order_risk_refuses_sizes_the_simulator_refuses():
    """A user trial (2026-12-05): first_order_risk gave a curve for n_t < 2 (d + 1), where simulate refuses (the MLE
    mostly does not exist there)."""
    with pytest.raises(ValueError, match=r"n must be >= 2 \(d \+ 1\) = 8 at every step"):
        L.first_order_risk(BETA, B0, S.constant_alpha(0.5, 3), S.constant_size(7, 3))
    assert L.first_order_risk(BETA, B0, S.constant_alpha(0.5, 3), S.constant_size(8, 3)).shape == (4,)


def test_beta_of_strings_or_complex_numbers_is_refused_by_name():
    """An audit (2026-12-07): beta = [1 + 2j] raised float()'s TypeError naming nothing, and beta = ["1"] (or a
    mixture's means = ["-1", "1"]) ran as numbers, where a scalar "0.5" is refused."""
    from collapse_jax import mixture_refit

    alpha, n = S.constant_alpha(0.5, 2), S.constant_size(40, 2)
    with pytest.raises(ValueError, match="beta must hold real numbers"):
        L.check_inputs([1 + 2j], 0.0, alpha, n)
    with pytest.raises(ValueError, match="beta must hold numbers, got strings"):
        L.check_inputs(["1"], 0.0, alpha, n)
    with pytest.raises(ValueError, match="means must hold numbers, got strings"):
        mixture_refit.check_inputs([0.5, 0.5], ["-1", "1"], [1.0, 1.0], alpha, n)
    with pytest.raises(ValueError, match="beta must hold numbers, got booleans"):
        L.check_inputs(np.array([True]), 0.0, alpha, n)
