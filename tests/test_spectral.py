"""Sigma spectral estimators vs the NumPy reference, vs theory (Monte Carlo, float64), contracts, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tests import spectral_reference as ref
from collapse_jax import sigma_precision as spp
from collapse_jax import spectral as sp


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- vs NumPy reference
def test_gram_streaming_matches_reference_with_uneven_chunks():
    x = rng().standard_normal((1003, 7))
    chunks = [x[:100], x[100:650], x[650:]]
    out = sp.gram_streaming(chunks, 7)
    np.testing.assert_allclose(out.gram, ref.gram(x), rtol=1e-12, atol=1e-9)
    assert out.num_points == 1003
    np.testing.assert_allclose(sp.gram_streaming(sp.array_chunks(x, 64), 7).gram, x.T @ x, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 2.5])
def test_logdet_matches_slogdet(eps):
    x = rng(1).standard_normal((40, 12)) * np.linspace(0.1, 3, 12)
    g = x.T @ x
    np.testing.assert_allclose(float(sp.logdet(g, eps)), ref.logdet(g, eps), rtol=1e-12)


def test_batched_logdet_equals_loop_of_slogdet():
    xs = rng(2).standard_normal((6, 30, 9))
    gs = np.einsum("bni,bnj->bij", xs, xs)
    np.testing.assert_allclose(np.asarray(sp.batched_logdet(jnp.asarray(gs))), [ref.logdet(g) for g in gs],
                               rtol=1e-12)


def test_mahalanobis_and_block_estimates_match_reference():
    x = rng(3).standard_normal((50, 6))
    m = np.asarray(sp.mahalanobis_insample(jnp.asarray(x)))
    np.testing.assert_allclose(m, ref.mahalanobis(x), rtol=1e-10)
    assert m.sum() == pytest.approx(50 * 6, rel=1e-12)  # sum_i M_i = n d exactly
    est = sp.block_estimates(x, 1000)
    assert float(est.l_hat) == pytest.approx(ref.l_hat(x, 1000), rel=1e-12)
    assert float(est.moments.tau2_plugin) == pytest.approx(np.mean(ref.mahalanobis(x) ** 2) - 36, rel=1e-9)


def test_prefix_block_stats_matches_reference():
    x = rng(4).standard_normal((90, 5))
    ns = (6, 11, 40, 90)
    ld, m2 = spp.jit_prefix_block_stats(jnp.asarray(x), ns)
    for k, n in enumerate(ns):
        assert float(ld[k]) == pytest.approx(ref.logdet(ref.gram(x[:n])), rel=1e-10)
        assert float(m2[k]) == pytest.approx(np.mean(ref.mahalanobis(x[:n]) ** 2), rel=1e-5)  # float32 product


def test_wishart_formulas_match_scipy_reference():
    for d, n, big in [(1, 2, 10), (5, 6, 100), (20, 200, 4000)]:
        assert float(sp.wishart_bias(d, n, big)) == pytest.approx(ref.wishart_bias(d, n, big), rel=1e-10)
        assert float(sp.wishart_variance(d, n, big)) == pytest.approx(ref.wishart_variance(d, n, big), rel=1e-10)


# ---------------------------------------------------------------- Theorem 1 (property tests)
@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 6), extra=st.integers(1, 20), rest=st.integers(1, 30), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(0.01, 100.0))
def test_theorem1_inequalities_hold(d, extra, rest, seed, scale):
    r = np.random.default_rng(seed)
    x = r.standard_normal((d + extra + rest, d)) * scale * r.uniform(0.1, 2.0, d)
    x1, x2 = x[: d + extra], x[d + extra:]
    g1, g2 = x1.T @ x1, x2.T @ x2
    lo, hi = sp.theorem1_bounds(jnp.asarray(g1), jnp.asarray(g2))
    full = ref.logdet(g1 + g2)
    tol = 1e-9 * max(1.0, abs(full))
    assert float(lo) <= full + tol
    assert full <= float(hi) + tol
    assert float(lo) == pytest.approx(ref.theorem1(g1, g2)[0], rel=1e-9, abs=1e-9)
    assert float(hi) == pytest.approx(ref.theorem1(g1, g2)[1], rel=1e-9, abs=1e-9)


def test_theorem1_upper_bound_can_be_tight_and_lower_is_not_trivially_equal():
    # G_2 = c I exactly: Weyl's bound is attained, and det G_1 < det G strictly.
    x1 = rng(5).standard_normal((10, 3))
    g1, g2 = x1.T @ x1, 2.0 * np.eye(3)
    lo, hi = sp.theorem1_bounds(jnp.asarray(g1), jnp.asarray(g2))
    assert float(hi) == pytest.approx(ref.logdet(g1 + g2), rel=1e-12)
    assert float(lo) < ref.logdet(g1 + g2) - 0.1


def test_overestimation_ratio():
    assert float(sp.log_overestimation_ratio(jnp.ones(5))) == 0.0
    lam = np.array([4.0, 2.0, 1.0])
    assert float(sp.log_overestimation_ratio(jnp.asarray(lam))) == pytest.approx(np.log(1 * 2 * 4))


def test_overestimation_ratio_matches_weyl_gap_for_large_n():
    # Theorem 2: for N >> n the Weyl upper bound exceeds log det G by about log OR + d log(n/N)... checked on the
    # population level: sum log(lambda_i(n S) + (N-n) lambda_1(S)) - sum log(N lambda_i(S)) -> log OR as n/N -> 0.
    lam = np.array([5.0, 1.0, 0.2])
    n, big = 10_000, 10_000_000
    upper = np.sum(np.log(n * lam + (big - n) * lam.max()))
    exact = np.sum(np.log(big * lam))
    assert upper - exact == pytest.approx(float(sp.log_overestimation_ratio(jnp.asarray(lam))), abs=1e-2)


# ---------------------------------------------------------------- Theorem 3 and the corrections vs theory
def _gaussian_errors(d, n, big, reps, seed):
    """Vectorised over replicates (NumPy): log det G, log det G_1 and in-sample mean(M_i^2) of Gaussian data."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((reps, big, d))
    ld_full = np.linalg.slogdet(np.einsum("rni,rnj->rij", x, x))[1]
    xb = x[:, :n]
    g1 = np.einsum("rni,rnj->rij", xb, xb)
    ld_block = np.linalg.slogdet(g1)[1]
    m = n * np.einsum("rni,rij,rnj->rn", xb, np.linalg.inv(g1), xb)
    return ld_full, ld_block, np.mean(m * m, axis=1)


def test_wishart_bias_and_variance_by_monte_carlo():
    d, n, big, reps = 6, 20, 200, 3000
    full, block, _ = _gaussian_errors(d, n, big, reps, 11)
    err = full - (block + d * np.log(big / n))
    bias, var = float(sp.wishart_bias(d, n, big)), float(sp.wishart_variance(d, n, big))
    assert abs(err.mean() - bias) < 4 * np.sqrt(var / reps)
    assert err.var(ddof=1) == pytest.approx(var, rel=0.1)
    # the first-order (seed) variance 2d(1/n - 1/N) is clearly too small here: the test can fail
    assert err.var(ddof=1) > 1.15 * 2 * d * (1 / n - 1 / big)


def test_second_order_bias_agrees_with_exact_when_d2_over_n_small():
    d, n, big = 3, 2000, 10**6
    assert float(sp.second_order_bias(d * (d + 2), d, n, big)) == pytest.approx(
        float(sp.wishart_bias(d, n, big)), rel=2e-3)


def test_gaussian_insample_variance_calibration_by_monte_carlo():
    d, n, reps = 4, 12, 20000
    r = np.random.default_rng(12)
    ms = np.concatenate([ref.mahalanobis(r.standard_normal((n, d))) for _ in range(reps // n)])
    assert ms.var() == pytest.approx(float(sp.gaussian_insample_var(d, n)), rel=0.05)
    assert ms.var() < 0.8 * 2 * d  # the population value 2d would be wrong in-sample


def test_coverage_seed_interval_fails_and_wishart_covers():
    d, n, big, reps = 20, 200, 2000, 600
    full, block, m2 = _gaussian_errors(d, n, big, reps, 13)
    z = sp.z_value(0.95)
    est = sp.block_estimates_from_stats(jnp.asarray(block), jnp.asarray(m2), d, n, big, z)
    cover = {k: float(np.mean(np.asarray(getattr(est, k).covers(jnp.asarray(full))))) for k in sp.ESTIMATORS}
    assert cover["seed"] < 0.6  # the seed's interval misses: bias ~ d(d+1)/2n = 1.05 vs SE 0.45
    assert 0.92 <= cover["wishart"] <= 0.98
    assert 0.92 <= cover["scaled_wishart"] <= 0.98
    assert 0.88 <= cover["second_order"] <= 0.98


def test_block_size_rule():
    z = sp.z_value(0.95)
    n = float(sp.block_size_rule(np.sqrt(2 * 384), 0.1, z))
    assert n == np.ceil((z * np.sqrt(768) / 0.1) ** 2)
    assert z * np.sqrt(768) / np.sqrt(n) <= 0.1 < z * np.sqrt(768) / np.sqrt(n - 1)


# ---------------------------------------------------------------- contracts
def test_jit_equals_eager_and_vmap_equals_loop():
    x = rng(6).standard_normal((5, 30, 4))
    gs = jnp.einsum("bni,bnj->bij", x, x)
    eager = [float(sp.logdet_chol(g)) for g in gs]
    np.testing.assert_allclose(np.asarray(jax.jit(sp.logdet_chol)(gs)), eager, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(sp.logdet_chol)(gs)), eager, rtol=1e-12)
    f = lambda ld, m2: sp.block_estimates_from_stats(ld, m2, 4, 30, 1000, 1.96).scaled_wishart.center  # noqa: E731
    ld = jnp.asarray(eager)
    m2 = jnp.asarray([30.0, 25.0, 28.0, 40.0, 22.0])
    np.testing.assert_allclose(np.asarray(jax.jit(f)(ld, m2)), np.asarray(f(ld, m2)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(ld, m2)), [float(f(a, b)) for a, b in zip(ld, m2)],
                               rtol=1e-12)


def test_same_seed_same_draw_and_different_seed_different_draw():
    cfg = spp.PrecisionConfig()
    a = spp.family_dataset(3, 1, 5000, 4, "student_t", cfg)
    b = spp.family_dataset(3, 1, 5000, 4, "student_t", cfg)
    c = spp.family_dataset(4, 1, 5000, 4, "student_t", cfg)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    i1 = spp.block_indices(0, 2, 7, 10**6, 100)
    np.testing.assert_array_equal(i1, spp.block_indices(0, 2, 7, 10**6, 100))
    assert len(np.unique(i1)) == 100
    assert not np.array_equal(i1, spp.block_indices(0, 2, 8, 10**6, 100))


def test_families_have_the_stated_second_moment():
    cfg = spp.PrecisionConfig(condition_number=100.0)
    for fam in spp.FAMILIES:
        x = spp.sample_family(np.random.default_rng(0), 200_000, 3, fam, 5.0, 100.0)
        np.testing.assert_allclose(np.diag(x.T @ x / len(x)), spp.family_eigenvalues(fam, 3, 100.0), rtol=0.05)
    assert cfg.condition_number == 100.0


def test_run_cell_small_end_to_end():
    cfg = spp.PrecisionConfig()
    data = spp.family_dataset(0, 0, 3000, 3, "isotropic", cfg)
    ns = spp.block_sizes(3, 3000, (1.0, 10.0, 100.0))
    assert list(ns) == [4, 30, 300]
    res = spp.run_cell(data, "isotropic", ns, 20, seed=0, cell=0)
    assert res.truth == pytest.approx(ref.logdet(data.T @ data), rel=1e-12)
    idx = spp.block_indices(0, 0, 5, 3000, 300)
    assert res.logdet_g1[5, 1] == pytest.approx(ref.logdet(ref.gram(data[idx[:30]])), rel=1e-10)
    rows = spp.summarize_cell(res, 0.95)
    assert [r["n"] for r in rows] == [4, 30, 300]


# ---------------------------------------------------------------- bad input
def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="n > d"):
        sp.check_block_sizes(5, 5, 100)
    with pytest.raises(ValueError, match="N=10 < n=20"):
        sp.check_block_sizes(20, 5, 10)
    bad = np.ones((20, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        sp.block_estimates(bad, 100)
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        sp.gram_streaming([bad], 3)
    with pytest.raises(ValueError, match="non-matching dimensions"):
        sp.gram_streaming([np.ones((5, 3)), np.ones((5, 4))], 3)
    x = rng().standard_normal((3, 5))  # 3 points in dim 5: rank deficient
    with pytest.raises(ValueError, match="eps must be > 0 for rank-deficient"):
        sp.logdet(x.T @ x, 0.0, num_points=3)
    with pytest.raises(ValueError, match="eps must lie in"):
        sp.logdet(x.T @ x, -1.0)
    with pytest.raises(ValueError, match="not positive definite"):
        sp.logdet(x.T @ x, 0.0)
    assert np.isfinite(float(sp.logdet(x.T @ x, 1e-3, num_points=3)))
    with pytest.raises(ValueError, match="n > d"):
        sp.block_estimates(rng().standard_normal((4, 4)), 100)
    with pytest.raises(ValueError, match="unknown family"):
        spp.PrecisionConfig(families=("cauchy",)).validate()
    with pytest.raises(ValueError, match="t_dof"):
        spp.PrecisionConfig(t_dof=3.0).validate()


def test_cli_embeddings_cell_runs_and_resumes(tmp_path):
    from collapse_jax import sigma_cli

    emb = np.random.default_rng(9).standard_normal((500, 3))
    np.save(tmp_path / "emb.npy", emb)
    argv = ["sigma-precision", "--families", "", "--dims", "", "--embeddings", str(tmp_path / "emb.npy"),
            "--blocks", "5", "--ratios", "1,10", "--out", str(tmp_path / "run")]
    assert sigma_cli.main(argv) == 0
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| embeddings | 3 | 4 |" in table and "| embeddings | 3 | 30 |" in table
    assert (tmp_path / "run" / "manifest.json").exists() and (tmp_path / "run" / "coverage.png").exists()
    chunk = np.load(tmp_path / "run" / "chunks" / "chunk-000000.npz")
    assert float(chunk["truth"]) == pytest.approx(ref.logdet(emb.T @ emb), rel=1e-12)
    assert sigma_cli.main(argv) == 0  # resume: the chunk is reused, same table
    assert (tmp_path / "run" / "table.md").read_text() == table
    assert sigma_cli.main(argv[:-1] + [str(tmp_path / "run"), "--seed", "1"]) == 2  # different config, same folder
