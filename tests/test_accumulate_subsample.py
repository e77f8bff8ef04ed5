"""Accumulate-subsample (issue 11): the exact hypergeometric samplers (JAX and native), the multinomial (both
backends) and Gaussian simulators against their raw-draw NumPy references, the multinomial against its exact
recursion, backends and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import collapse_jax.multinomial as M
import gaussian_reference as gref
import multinomial_reference as mref
from goodness_of_fit import chi2_pvalue
from native_support import NATIVE, NATIVE_PARAM
from collapse_jax import gaussian as G
from collapse_jax import schedules as S

K, T, R = 6, 8, 4000  # the grid shape of tests/test_multinomial.py: one compilation for every simulate call here
P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
SUBSAMPLE = M.MultinomialConfig("accumulate-subsample")


def _grid():
    alpha = np.stack([S.constant_alpha(0.3, T), S.power_decay_alpha(0.7, T), S.pure_synthetic_alpha(T),
                      S.constant_alpha(0.9, T)])
    n = np.stack([S.constant_size(15, T), S.linear_size(8, T), S.quadratic_size(3, T), S.constant_size(4, T)])
    return alpha, n


@pytest.fixture(scope="module", params=["jax", NATIVE_PARAM])
def losses(request):
    """Multinomial accumulate-subsample losses on the grid, (grid, replicate, step) = (4, R, T + 1), from each
    backend."""
    alpha, n = _grid()
    return M.simulate(1, P, alpha, n, SUBSAMPLE, R, chunk_size=R, progress=False, backend=request.param)


# --- exact samplers -----------------------------------------------------------------------------------------------
# (draws, good, total): every reduction (draws > total/2, good > total/2, draws > good), small and large means,
# support edges, sizes up to 10^9 (float64), and degenerate cases
HYPER_CASES = [(5, 3, 10), (1, 1, 2), (20, 2, 1000), (40, 30, 50), (66, 2, 121), (500, 300, 1000), (15, 50, 135),
               (12, 6000, 10 ** 4), (100, 10 ** 6, 2 * 10 ** 6), (10 ** 6, 3 * 10 ** 6, 10 ** 7),
               (3 * 10 ** 8, 4 * 10 ** 8, 10 ** 9), (3, 7, 7), (0, 5, 9), (9, 0, 9), (9, 9, 9)]


def _native_mvhg(pool, m, size, seed):
    """``size`` native multivariate hypergeometric draws of ``m`` items from ``pool`` (the kernel's own sampler)."""
    from collapse_jax import _native

    pool = np.ascontiguousarray(pool, np.float64)
    out = np.empty((size, len(pool)))
    _native._library("native").collapse_jax_multivariate_hypergeometric(
        pool.ctypes.data, len(pool), float(m), seed, size, out.ctypes.data)
    return out


def _hyper_draws(sampler, draws, good, total, size, seed):
    """``size`` Hypergeometric(draws; good, total) draws: the JAX sampler, or the native kernel's (one by one below
    10 items, HRUA above) as the first column of a two-colour pool."""
    if sampler == "native":
        x = _native_mvhg([good, total - good], draws, size, seed)
        assert np.all(x.sum(1) == draws)
        return x[:, 0]
    return np.asarray(jax.jit(M.hypergeometric)(jax.random.key(seed), jnp.full((size,), float(draws)),
                                                float(good), float(total)))


@pytest.mark.parametrize("sampler", ["jax", NATIVE_PARAM])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # scipy's hypergeom moments at total = 2
def test_hypergeometric_matches_scipy_pmf(sampler):
    size = 40000
    for i, (m, g, N) in enumerate(HYPER_CASES):
        x = _hyper_draws(sampler, m, g, N, size, seed=i)
        dist = stats.hypergeom(N, g, m)
        lo, hi = dist.support()
        assert np.all(x == np.round(x)) and x.min() >= lo and x.max() <= hi, (m, g, N)
        if lo == hi:
            assert np.all(x == lo)
            continue
        assert chi2_pvalue(x, dist) > 1e-3, (m, g, N)
        z = (x.mean() - dist.mean()) / np.sqrt(dist.var() / size)
        assert abs(z) < 4.5, (m, g, N, z)


@pytest.mark.parametrize("sampler", ["jax", NATIVE_PARAM])
def test_hypergeometric_detects_a_wrong_pmf(sampler):
    """Power: the same goodness-of-fit test rejects a binomial with the same mean (no finite-population factor)
    and a hypergeometric with one good item fewer."""
    x = _hyper_draws(sampler, 500, 300, 1000, 40000, seed=3)
    assert chi2_pvalue(x, stats.binom(500, 0.3)) < 1e-6
    assert chi2_pvalue(x, stats.hypergeom(1000, 299, 500)) < 1e-6


def _mvhg_draws(sampler, pool, m, size, seed):
    """``size`` multivariate hypergeometric draws of ``m`` items from ``pool``: the JAX sampler or the native one."""
    if sampler == "native":
        return _native_mvhg(pool, m, size, seed)
    keys = jax.random.split(jax.random.key(seed), size)
    return np.asarray(jax.jit(jax.vmap(M.sample_multivariate_hypergeometric, in_axes=(0, None, None)))(
        keys, m, jnp.asarray(pool)))


@pytest.mark.parametrize("sampler", ["jax", NATIVE_PARAM])
def test_multivariate_hypergeometric_exact_moments(sampler):
    """Counts sum to m, empty categories stay empty, the covariance is m (N - m)/(N - 1) (diag(pi) - pi pi^T), the
    means m pi, and each margin is Hypergeometric(m; c_k, N); the native chain also on a pool past its
    log-factorial table (HRUA with the Stirling form of the log-factorial differences)."""
    cases = [(np.array([50.0, 20.0, 15.0, 10.0, 5.0, 0.0]), 40.0)]
    if sampler == "native":
        cases.append((np.array([3e6, 0.0, 1.2e6, 4e5, 2e5, 2e5]), 2e5))
    size = 30000
    for pool, m in cases:
        c = _mvhg_draws(sampler, pool, m, size, seed=8)
        assert np.all(c.sum(1) == m) and np.all(c[:, pool == 0] == 0) and np.all(c <= pool)
        total = pool.sum()
        pi = pool / total
        cov = m * (total - m) / (total - 1) * (np.diag(pi) - np.outer(pi, pi))
        se = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / size) + 1e-12
        assert np.all(np.abs(np.cov(c.T) - cov) < 5 * se)
        assert np.all(np.abs(c.mean(0) - m * pi) < 5 * np.sqrt(np.diag(cov) / size) + 1e-12)
        for j in np.flatnonzero(pool):
            assert chi2_pvalue(c[:, j], stats.hypergeom(int(total), int(pool[j]), int(m))) > 1e-3, (m, j)


# --- multinomial simulator ----------------------------------------------------------------------------------------
def test_multinomial_matches_numpy_reference(losses):
    alpha, n = _grid()
    ref = mref.simulate(np.random.default_rng(7), P, alpha[1], n[1], "accumulate-subsample", num_replicates=400)
    for t in (1, T // 2, T):  # losses rounded to 1e-12: small-n losses are atoms, summation order moves them
        assert stats.ks_2samp(np.round(losses[1][:, t], 12), np.round(ref[:, t], 12)).pvalue > 1e-3, t


def test_multinomial_matches_exact_recursion(losses):
    alpha, n = _grid()
    for g in range(alpha.shape[0]):
        theory = M.accumulate_subsample_risk(P, alpha[g], n[g])
        z = (losses[g].mean(0) - theory) / (losses[g].std(0, ddof=1) / np.sqrt(R))
        assert np.all(np.abs(z) < 4.0), (g, z)
    np.testing.assert_allclose(M.theory_risk(P, alpha, n, SUBSAMPLE), M.accumulate_subsample_risk(P, alpha, n))


def test_multinomial_rejects_the_other_regimes_recursions(losses):
    """Power: the same Monte Carlo is far from Theorem A.1 (a fit on the whole pool) and Theorem 3.1 (replace)."""
    alpha, n = _grid()
    se = losses[0].std(0, ddof=1) / np.sqrt(R)
    for wrong in (M.accumulate_risk, M.replace_risk):
        assert np.max(np.abs((losses[0].mean(0) - wrong(P, alpha[0], n[0])) / se)) > 10, wrong.__name__


def test_recursion_identities():
    s = 1 - np.sum(P ** 2)
    n = S.linear_size(3, 20)
    # real data only: a subsample without replacement of i.i.d. draws is n_t i.i.d. draws, r_t = s / n_t
    np.testing.assert_allclose(M.accumulate_subsample_risk(P, np.ones(21), n), s / n, rtol=1e-12)
    # t = 0 is the common start; a grid is row by row
    alpha = np.stack([S.power_decay_alpha(0.5, 20), S.pure_synthetic_alpha(20)])
    grid = M.accumulate_subsample_risk(P, alpha, np.stack([n, n]))
    assert grid[1, 0] == pytest.approx(s / 3)
    np.testing.assert_allclose(grid[1], M.accumulate_subsample_risk(P, alpha[1], n))
    # the subsample's own sampling noise: never below the whole-pool fit of the same schedule
    assert np.all(grid[0, 1:] > M.accumulate_risk(P, alpha[0], n)[1:])


def test_backends():
    """The native and jax backends run the regime (auto: native on a CPU with the kernels, as for the others);
    pallas refuses it with the regime's name; the native kernel's regime index is its place in REGIMES."""
    from collapse_jax import _native

    assert M.resolve_backend("auto", "accumulate-subsample") == _native.resolve_backend("auto")
    assert M.resolve_backend("jax", "accumulate-subsample") == "jax"
    alpha, n = S.constant_alpha(0.5, 2), S.constant_size(5, 2)
    with pytest.raises(ValueError, match="accumulate-subsample"):
        M.simulate(0, P, alpha, n, SUBSAMPLE, 4, backend="pallas")
    assert M.NATIVE_REGIMES == M.REGIMES == ("replace", "accumulate", "filter", "accumulate-subsample")


def test_float32_pool_must_hold_exact_counts():
    """Without float64 the jax path's pool of 1.8e7 counts would round: refused, naming the native kernel, which
    counts in float64 whatever the precision of its outputs (and runs it)."""
    alpha, n = S.constant_alpha(0.5, 2), S.constant_size(6_000_000, 2)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="2\\*\\*24.*backend='native'"):
            M.simulate(0, P, alpha, n, SUBSAMPLE, 4, backend="jax")
        if NATIVE:
            losses = M.simulate(0, P, alpha, n, SUBSAMPLE, 4, backend="native", progress=False)
            assert losses.dtype == np.float32 and np.all(np.isfinite(losses)) and np.all(losses < 1e-5)
    finally:
        jax.config.update("jax_enable_x64", True)


# --- Gaussian simulator -------------------------------------------------------------------------------------------
def test_gaussian_matches_numpy_reference():
    alpha, n = S.constant_alpha(0.4, 6), S.linear_size(6, 6)
    cfg = G.GaussianConfig("accumulate-subsample")
    loss = G.simulate(3, 0.5, 1.3, alpha, n, cfg, 6000)
    ref = gref.simulate(np.random.default_rng(3), 0.5, 1.3, alpha, n, "accumulate-subsample", 600)
    for t in (1, 3, 6):
        assert stats.ks_2samp(loss[:, t], ref[:, t]).pvalue > 1e-3, t
    # power: the same test tells it from a fit on the whole pool
    whole = gref.simulate(np.random.default_rng(4), 0.5, 1.3, alpha, n, "accumulate", 600)
    assert stats.ks_2samp(loss[:, 6], whole[:, 6]).pvalue < 1e-4


@pytest.mark.parametrize("x64", [True, False])
def test_gaussian_subsample_is_uniform(x64):
    """The partial Fisher-Yates shuffle: each of the first ``count`` rows is chosen with probability size / count, no
    other row ever, pairs of rows with probability size (size - 1) / (count (count - 1)), whatever order the
    permutation starts in; the pooled statistics are those of the chosen rows; float64 and float32."""
    count, size, buffer, draws = 7, 3, 10, 20000
    jax.config.update("jax_enable_x64", x64)
    try:
        dtype = jnp.float64 if x64 else jnp.float32
        pool = jnp.asarray(np.random.default_rng(1).standard_normal(buffer), dtype)
        start = jnp.asarray([4, 0, 6, 2, 1, 5, 3, 7, 8, 9], jnp.int32)  # a shuffled pool, rows from count in place
        keys = jax.random.split(jax.random.key(2), draws)
        perms, groups = jax.jit(jax.vmap(lambda k: G.subsample_fit(k, start, pool, count, size)))(keys)
    finally:
        jax.config.update("jax_enable_x64", True)
    perms = np.asarray(perms)
    assert np.all(np.sort(perms, axis=1) == np.arange(buffer)) and np.all(perms[:, count:] == np.arange(count, buffer))
    chosen = perms[:, :size]
    masks = np.zeros((draws, buffer), bool)
    np.put_along_axis(masks, chosen, True, axis=1)
    assert np.all(masks.sum(1) == size) and not masks[:, count:].any()
    freq = masks[:, :count].mean(0)
    pair = (masks[:, 0] & masks[:, 1]).mean()
    assert np.all(np.abs(freq - size / count) < 4.5 * np.sqrt(size / count * (1 - size / count) / draws))
    q = size * (size - 1) / (count * (count - 1))
    assert abs(pair - q) < 4.5 * np.sqrt(q * (1 - q) / draws)
    # every one of the C(7, 3) = 35 subsets about equally often (chi-square)
    codes = (masks[:, :count] * (1 << np.arange(count))).sum(1)
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 35 and stats.chisquare(counts).pvalue > 1e-3
    # a static bound past the size (what the simulator passes) only adds steps that change nothing
    jax.config.update("jax_enable_x64", x64)
    try:
        bounded = jax.jit(jax.vmap(lambda k: G.subsample_fit(k, start, pool, count, size, bound=70)))(keys[:50])
    finally:
        jax.config.update("jax_enable_x64", True)
    np.testing.assert_array_equal(np.asarray(bounded[0]), perms[:50])
    for got, want in zip(bounded[1], groups):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want)[:50])
    x = np.asarray(pool, np.float64)[chosen]
    tol = 1e-12 if x64 else 1e-5
    np.testing.assert_allclose(np.asarray(groups.size), size)
    np.testing.assert_allclose(np.asarray(groups.mean), x.mean(1), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(groups.ss), ((x - x.mean(1, keepdims=True)) ** 2).sum(1), rtol=tol, atol=tol)


def test_gaussian_grid_points_equal_their_schedules_alone():
    """Grid points with different (and growing) sizes share one pool size and one static step bound, the largest:
    each point's replicates are the same, bit for bit, as its schedule run alone (the steps and rows past its own
    sizes change nothing)."""
    steps = 5
    n = np.stack([S.constant_size(4, steps), S.linear_size(3, steps)])
    alpha = np.stack([S.constant_alpha(0.5, steps), S.constant_alpha(0.2, steps)])
    cfg = G.GaussianConfig("accumulate-subsample", record="fit")
    grid = G.simulate(4, 0.3, 1.1, alpha, n, cfg, 16)
    for g in range(2):
        np.testing.assert_array_equal(grid[g], G.simulate(4, 0.3, 1.1, alpha[g], n[g], cfg, 16))


def test_gaussian_pool_size_is_guarded():
    alpha, n = S.constant_alpha(0.5, 4), S.constant_size(100, 4)
    with pytest.raises(ValueError, match="max_points=300"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig("accumulate-subsample", max_points=300), 2)
    assert G.sized_config(G.GaussianConfig("accumulate-subsample"), n).buffer >= 500
    assert G.sized_config(G.GaussianConfig("accumulate"), n).buffer is None
    with pytest.raises(ValueError, match="buffer is None"):
        G.kernel(jax.random.key(0), G.Params(*(jnp.asarray(x) for x in (0.0, 1.0, alpha, n))),
                 G.GaussianConfig("accumulate-subsample"))
    with pytest.raises(ValueError, match="regime"):
        G.GaussianConfig("subsample")
