"""Gaussian recursion by sufficient statistics: NumPy raw-draw reference, exact pure-synthetic W2, contract, input."""

import warnings

import jax
import numpy as np
import pytest
from scipy import special, stats

import gaussian_reference as ref
from native_support import BACKENDS_HERE, needs_native
from collapse_jax import gaussian as G
from collapse_jax import schedules as S

T = 6


@pytest.mark.parametrize("backend", BACKENDS_HERE)
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_matches_numpy_reference(regime, backend):
    alpha, n = S.constant_alpha(0.4, T), S.linear_size(6, T)
    loss = G.simulate(3, 0.5, 1.3, alpha, n, G.GaussianConfig(regime), 6000, backend=backend)
    np_loss = ref.simulate(np.random.default_rng(3), 0.5, 1.3, alpha, n, regime, 600)
    for t in (1, T):
        assert stats.ks_2samp(loss[:, t], np_loss[:, t]).pvalue > 1e-3, (regime, t)


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_pure_synthetic_exact_w2(backend):
    n = np.stack([S.constant_size(5, T), S.linear_size(3, T)])
    alpha = np.stack([S.pure_synthetic_alpha(T)] * 2)
    loss = G.simulate(1, -1.0, 2.0, alpha, n, G.GaussianConfig(), 20000, backend=backend)
    grid = G.pure_synthetic_w2(2.0, n)     # one curve per row (the rows were summed as one schedule; a user trial)
    assert grid.shape == n.shape
    np.testing.assert_allclose(G.shumailov_first_order_w2(2.0, n)[1], G.shumailov_first_order_w2(2.0, n[1]))
    for g in range(2):
        exact = G.pure_synthetic_w2(2.0, n[g])
        np.testing.assert_array_equal(grid[g], exact)
        se = loss[g].std(0, ddof=1) / np.sqrt(loss.shape[1])
        assert np.all(np.abs(loss[g].mean(0) - exact) < 4 * se)
    # power: the same Monte Carlo rejects "no drift" (the risk stays at its t = 0 value)
    se = loss[0].std(0, ddof=1) / np.sqrt(loss.shape[1])
    assert loss[0].mean(0)[-1] - G.pure_synthetic_w2(2.0, n[0])[0] > 10 * se[-1]


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_contract_same_key(backend):
    alpha, n = S.constant_alpha(0.4, T), S.linear_size(6, T)
    a = G.simulate(5, 0.0, 1.0, alpha, n, G.GaussianConfig(), 8, backend=backend)
    b = G.simulate(5, 0.0, 1.0, alpha, n, G.GaussianConfig(), 8, backend=backend)
    c = G.simulate(6, 0.0, 1.0, alpha, n, G.GaussianConfig(), 8, backend=backend)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_contract_jit_equals_eager():
    """Slow (minutes on 2 cores): the whole recursion without jit."""
    alpha, n = S.constant_alpha(0.4, T), S.linear_size(6, T)
    a = G.simulate(5, 0.0, 1.0, alpha, n, G.GaussianConfig(), 8, backend="jax")
    with jax.disable_jit():
        eager = G.simulate(5, 0.0, 1.0, alpha, n, G.GaussianConfig(), 2, backend="jax")
    np.testing.assert_allclose(eager, a[:2], rtol=1e-10)


def test_bad_input():
    alpha, n = S.constant_alpha(0.4, T), S.linear_size(6, T)
    with pytest.raises(ValueError, match="sigma"):
        G.simulate(0, 0.0, -1.0, alpha, n)
    with pytest.raises(ValueError, match="n must be >= 2"):
        G.simulate(0, 0.0, 1.0, alpha, S.constant_size(1, T))
    with pytest.raises(ValueError, match="alpha"):
        G.simulate(0, 0.0, 1.0, alpha * 2, n)
    # an audit (2026-12-04): sigma = 1e155 gave inf / NaN losses (and an OverflowError in the theory), a regime name
    # where the config goes an AttributeError, a negative sigma passed the first-order formula
    with pytest.raises(ValueError, match=r"sigma must be in \[1e-150, 1e\+150\] \(a positive scale whose square"):
        G.simulate(0, 0.0, 1e155, alpha, n)
    with pytest.raises(ValueError, match=r"sigma must be in \[1e-150, 1e\+150\]"):
        G.simulate(0, 0.0, 1e-155, alpha, n)
    with pytest.raises(ValueError, match=r"sigma must be in \[1e-150, 1e\+150\]"):
        G.pure_synthetic_w2(1e155, n)
    # a user trial (2026-12-06): NaN and -1 were told "(0.0, inf)", 1e-200 "[1e-150, 1e+150]": one range for all
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"sigma must be in \[1e-150, 1e\+150\]"):
            G.shumailov_first_order_w2(bad, n)
    with pytest.raises(ValueError, match="config must be a GaussianConfig, got 'accumulate'"):
        G.simulate(0, 0.0, 1.0, alpha, n, "accumulate")
    assert np.isfinite(G.simulate(0, 0.0, 1e90, alpha, n, num_replicates=2, progress=False)).all()
    # a user trial (2026-12-05): a budget below one replicate's pool ran anyway (one replicate per device), where
    # docs/driver.md promises a ValueError naming memory_budget
    with pytest.raises(ValueError, match="one replicate per device needs .* more than memory_budget"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig("accumulate-subsample"), 4, memory_budget=100)


@pytest.mark.parametrize("backend", BACKENDS_HERE)
def test_sizes_beyond_exact_counts_are_refused_before_compute(backend):
    """A user trial (2026-12-06): n = 1e39 became inf in float32 and the JAX chi-square loop never ended (Ctrl-C
    could not stop it); n = 1e20 reached the native kernel's own refusal as a runtime error; n = 1e15 ran on the jax
    path in float32 at 0.83-0.88x the exact loss, 1e300 in float64 at 0.17-0.69x; 2**25 + 1 ran as 2**25."""
    alpha = S.pure_synthetic_alpha(2)
    for n in (1e39, 1e20, 2.0 ** 53 + 2):
        with pytest.raises(ValueError, match=r"n must be at most 2\*\*53 = 9007199254740992 at every step"):
            G.simulate(0, 0.0, 1.0, alpha, np.full(3, n), num_replicates=2, backend=backend, progress=False)
    assert np.isfinite(G.simulate(0, 0.0, 1.0, alpha, np.full(3, 2.0 ** 53), num_replicates=2, backend=backend,
                                  progress=False)).all()
    with jax.enable_x64(False):
        if backend == "jax":
            with pytest.raises(ValueError, match=r"n up to 1e\+15 exceeds 2\*\*24: the jax kernel in float32"):
                G.simulate(0, 0.0, 1.0, alpha, np.full(3, 1e15), num_replicates=2, backend="jax", progress=False)
        else:  # the native kernel computes in float64: any size float32 holds
            assert np.isfinite(G.simulate(0, 0.0, 1.0, alpha, np.full(3, 2.0 ** 40), num_replicates=2,
                                          backend=backend, progress=False)).all()
            with pytest.raises(ValueError, match=r"n_t = 33554433 is not a float32 number"):
                G.simulate(0, 0.0, 1.0, alpha, np.full(3, 2.0 ** 25 + 1), num_replicates=2, backend=backend,
                           progress=False)


def test_native_entry_points_check_keys_and_regimes():
    """A user trial (2026-12-06): one key gave an IndexError inside the native call, integer seeds a TypeError about
    key data, and resolve_backend("auto", "foo") answered "jax"."""
    grid = np.full((1, 3), 0.5), np.full((1, 3), 10.0)
    for keys in (jax.random.key(0), np.arange(4)):
        with pytest.raises(ValueError, match=r"keys must hold one key per replicate: a \(R,\) array of"):
            G.batched_native(keys, *grid, "replace")
    with pytest.raises(ValueError, match="regime must be one of"):
        G.resolve_backend("auto", "foo")


def test_pure_synthetic_w2_keeps_its_precision_for_any_n():
    """An audit (2026-12-02): 1 - prod c(n - 1) from exp(gammaln - gammaln) cancelled, so E W2^2 was 33 % off at
    n = 1e8 and negative from n = 1e9, while the simulator accepts such n. Now from the log of the product (an
    asymptotic series for large n): E W2^2 = sigma^2 sum_s 1/n_s + 2 sigma^2 (1 - prod_s c_s) with
    1 - c = 1/(4(n-1)) - 1/(32(n-1)^2) + ..., and continuous where the series takes over (m = n - 1 = 64)."""
    for n in (1e6, 1e9, 1e14):
        m = n - 1
        one_minus_c = 1 / (4 * m) - 1 / (32 * m ** 2)  # to O(m^-3)
        steps = np.arange(1, 5)
        want = 1.3 ** 2 * (steps / n - 2 * np.expm1(steps * np.log1p(-one_minus_c)))
        np.testing.assert_allclose(G.pure_synthetic_w2(1.3, np.full(4, n)), want, rtol=1e-9)
    below, above = G.pure_synthetic_w2(1.0, np.full(2, 64.0)), G.pure_synthetic_w2(1.0, np.full(2, 65.0))
    gammaln_form = lambda n: 1 / n + 2 * (1 - np.exp(0.5 * np.log(2 / (n - 1)) + special.gammaln(n / 2)
                                                    - special.gammaln((n - 1) / 2)))
    np.testing.assert_allclose([below[0], above[0]], [gammaln_form(64.0), gammaln_form(65.0)], rtol=1e-10)
    with warnings.catch_warnings():  # (the series' m ** 7 overflowed from m ~ 1e44 with a warning; a user trial)
        warnings.simplefilter("error")
        np.testing.assert_allclose(G.pure_synthetic_w2(1.0, np.full(2, 1e300)), [1.5e-300, 3e-300], rtol=1e-12)
    for bad, message in [(dict(sigma=float("nan")), r"sigma must be in \[1e-150, 1e\+150\]"),
                         (dict(n=np.array([1.0, 5.0])), "at least 2")]:
        with pytest.raises(ValueError, match=message):
            G.pure_synthetic_w2(bad.get("sigma", 1.0), bad.get("n", np.array([3.0, 5.0])))


def test_a_location_far_from_zero_costs_no_precision_in_float32():
    """An audit (2026-12-04): in float32, mu = 1e6 with sigma = 0.01 rounded the draws to 0.06 and gave 0.34x the
    exact pure-synthetic W2 (z = 188). The model is translation-equivariant: simulated about 0, fits shifted by mu."""
    alpha, n = S.pure_synthetic_alpha(10), S.constant_size(20, 10)
    with jax.enable_x64(False):
        far = G.simulate(0, 1e6, 1e-2, alpha, n, G.GaussianConfig(), 4000)
        near = G.simulate(0, 0.0, 1e-2, alpha, n, G.GaussianConfig(), 4000)
        fits = G.simulate(0, 1e6, 1e-2, alpha, n, G.GaussianConfig(record="fit"), 200)
        centred = G.simulate(0, 0.0, 1e-2, alpha, n, G.GaussianConfig(record="fit"), 200)
    assert far.dtype == np.float64  # (mapped back from N(0, 1) in float64)
    np.testing.assert_array_equal(far, near)
    exact = G.pure_synthetic_w2(1e-2, n)
    se = far.std(axis=0, ddof=1) / np.sqrt(far.shape[0])
    assert np.all(np.abs(far.mean(axis=0) - exact) < 5 * se)
    np.testing.assert_array_equal(fits[..., 1], centred[..., 1])
    # the fits in float64: in float32 every mu_hat rounded to mu = 1e6 (a user trial, 2026-12-05: E(mu_hat - mu)^2
    # came out 0 against fit_moments' 5e-6)
    assert fits.dtype == np.float64
    np.testing.assert_array_equal(fits[..., 0], centred[..., 0].astype(np.float64) + 1e6)
    assert np.unique(fits[..., 0]).size > 100


@pytest.mark.parametrize("sigma", [1e-20, 1e20, 1e-140])
def test_any_scale_keeps_its_precision_in_float32(sigma):
    """A user trial (2026-12-05): in float32, sigma = 1e-20 gave losses of exactly 0 (the squares underflowed) while
    the printed exact value was 6.1e-41, and gaussian-fit's z-scores read 0. Simulated as N(0, 1) and scaled in
    float64, the losses are sigma^2 times those at sigma = 1 and the fits follow, at any scale in range."""
    alpha, n = S.pure_synthetic_alpha(6), S.constant_size(10, 6)
    with jax.enable_x64(False):
        unit = G.simulate(3, 0.0, 1.0, alpha, n, G.GaussianConfig(), 3000)
        scaled = G.simulate(3, 0.0, sigma, alpha, n, G.GaussianConfig(), 3000)
        fits_unit = G.simulate(3, 0.0, 1.0, alpha, n, G.GaussianConfig(record="fit"), 50)
        fits = G.simulate(3, 2.0, sigma, alpha, n, G.GaussianConfig(record="fit"), 50)
    assert unit.dtype == np.float32 and scaled.dtype == np.float64
    np.testing.assert_array_equal(scaled, unit.astype(np.float64) * (sigma * sigma))
    np.testing.assert_array_equal(fits[..., 0], 2.0 + sigma * fits_unit[..., 0].astype(np.float64))
    np.testing.assert_array_equal(fits[..., 1], fits_unit[..., 1].astype(np.float64) * (sigma * sigma))
    exact = G.pure_synthetic_w2(sigma, n) / sigma ** 2  # (compared in units of sigma^2: at 1e-140 the SE's squares
    ratio = scaled / sigma ** 2                          # underflow)
    se = ratio.std(axis=0, ddof=1) / np.sqrt(ratio.shape[0])
    assert np.all(scaled.mean(axis=0) > 0) and np.all(np.abs(ratio.mean(axis=0) - exact) < 5 * se)


@pytest.mark.parametrize("df", [1, 2, 3, 9, 50, 1000, 10**6])
def test_chi_square_draws_follow_the_chi_square_law(df):
    """The simulator's own chi-square sampler (Marsaglia-Tsang, four proposals a round; jax.random.gamma made the
    Gaussian simulator 40x slower than NumPy, a user trial, 2026-12-06): KS against scipy's chi2, mean and variance
    within their Monte Carlo error; vmap equals a loop, the same key the same draw."""
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(df), 40_000)
    draws = np.asarray(jax.jit(jax.vmap(G.chi_square, in_axes=(0, None)))(keys, jnp.float64(df)))
    assert stats.kstest(draws, stats.chi2(df).cdf).pvalue > 1e-3
    assert abs(draws.mean() - df) < 5 * np.sqrt(2 * df / draws.size)
    assert abs(draws.var() / (2 * df) - 1) < 5 * np.sqrt(2 / draws.size) * (1 + 6 / df) ** 0.5
    one = jax.jit(G.chi_square)
    np.testing.assert_array_equal(draws[:5], [float(one(k, jnp.float64(df))) for k in keys[:5]])  # vmap = a loop
    eager = [float(G.chi_square(k, jnp.float64(df))) for k in keys[:5]]      # (XLA may fuse in another order)
    np.testing.assert_allclose(draws[:5], eager, rtol=1e-14)


def test_chi_square_edges_and_the_acceptance_exponent():
    import jax.numpy as jnp

    key = jax.random.key(3)
    assert float(G.chi_square(key, jnp.float64(0.0))) == 0.0
    assert float(G.chi_square(key, jnp.float32(0.0))) == 0.0
    assert G.chi_square(key, jnp.float32(4.0)).dtype == jnp.float32
    # a user trial (2026-12-06): inf, NaN and 1e39 in float32 never returned (beyond Ctrl-C); -1 drew 0
    for bad in (np.inf, np.nan, -1.0):
        assert np.isnan(float(jax.jit(G.chi_square)(key, jnp.float32(bad))))
    assert float(G.chi_square(key, 3)) == float(G.chi_square(key, jnp.float64(3.0)))  # a Python number
    # df = 10^12 in float64: mean df, SD sqrt(2 df) (the direct exponent cancelled to nothing there)
    draws = np.asarray(jax.vmap(G.chi_square, in_axes=(0, None))(jax.random.split(key, 4000), jnp.float64(1e12)))
    z = (draws - 1e12) / np.sqrt(2e12)
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.std() - 1) < 0.1
    # h(y) = 3 (log1p(y) - y + y^2/2) - y^3, series below |y| = 0.1 and direct above, against a float128-free form:
    # h's Taylor series to high order in exact rational steps, at points where it converges fast
    y = np.array([-0.6, -0.3, -0.1, -0.05, -1e-3, 1e-4, 0.02, 0.0999, 0.1, 0.4, 2.0])
    want = np.array([3 * (np.log1p(v) - v + v * v / 2) - v ** 3 if abs(v) >= 0.1 else
                     sum(3 * (-1) ** (k + 1) * v ** k / k for k in range(4, 30)) for v in y])
    np.testing.assert_allclose(np.asarray(G._mt_exponent(jnp.asarray(y))), want, rtol=1e-6)


def _native_draws(kind: int, a: float, b: float, count: int, seed: int) -> np.ndarray:
    """``count`` draws of the native kernel's own samplers: kind 0 standard normals (ziggurat), 1 chi2_a, 2
    Binomial(a, b), 3 the same through the kernel's kept inversion table."""
    from collapse_jax import _native

    out = np.empty(count)
    _native._library("native").collapse_jax_gaussian_draws(kind, a, b, count, seed, out.ctypes.data)
    return out


@needs_native
def test_native_samplers_follow_their_laws():
    """The native kernel's samplers against scipy: the ziggurat's normals (KS on 4 million, and on the draws beyond
    3 and beyond the ziggurat's tail edge r = 3.654, drawn by the separate tail method), chi-square for df from 1 to
    10^12, and exact binomials by inversion (mean below 10), BTRS and the p > 1/2 reflection."""
    x = _native_draws(0, 0, 0, 4_000_000, 1)
    assert stats.kstest(x, "norm").pvalue > 1e-3
    tail = np.abs(x)
    for edge in (3.0, 3.6541528853610088):
        beyond = tail[tail > edge]
        assert stats.kstest(beyond, lambda t: 1 - stats.norm.sf(t) / stats.norm.sf(edge)).pvalue > 1e-3, edge
        expected = 2 * stats.norm.sf(edge) * x.size
        assert abs(beyond.size - expected) < 5 * np.sqrt(expected)
        assert stats.binomtest(int(np.sum(x < -edge)), beyond.size).pvalue > 1e-3  # both tails
    for df in (1, 2, 3, 9, 100, 10**6):
        assert stats.kstest(_native_draws(1, df, 0, 200_000, df), "chi2", args=(df,)).pvalue > 1e-3, df
    z = (_native_draws(1, 1e12, 0, 20_000, 7) - 1e12) / np.sqrt(2e12)
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.std() - 1) < 0.05
    for n, p in ((10, 0.3), (1000, 0.004), (1000, 0.3), (50, 0.999), (400, 0.97)):
        k = _native_draws(2, n, p, 200_000, 3).astype(int)
        expected = stats.binom.pmf(np.arange(n + 1), n, p) * k.size
        observed = np.bincount(k, minlength=n + 1)
        keep = expected > 5
        chi = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
        assert stats.chi2.sf(chi, keep.sum() - 1) > 1e-3, (n, p)
    for n, p in ((1e6, 0.7), (2.0 ** 40, 0.25)):  # BTRS's bound in log1p form: right where n is far past 2^24
        k = _native_draws(2, n, p, 100_000, 4)
        z = (k - n * p) / np.sqrt(n * p * (1 - p))
        assert np.all(k == np.floor(k)) and abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 0.03
    # the kernel's inversion through its kept cdf (kind 3) draws what the walk draws, number for number
    for n, p in ((10, 0.3), (3, 0.5), (1000, 0.004), (25, 0.39), (2, 0.9), (1e6, 3e-6), (50, 0.999)):
        np.testing.assert_array_equal(_native_draws(3, n, p, 200_000, 6), _native_draws(2, n, p, 200_000, 6))
    assert np.all(_native_draws(2, 7, 0.0, 10, 1) == 0) and np.all(_native_draws(2, 7, 1.0, 10, 1) == 7)
    assert np.all(_native_draws(1, 0, 0, 10, 1) == 0)


@needs_native
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_native_contract_jit_vmap_keys(regime):
    """Native kernel: batched == a loop of single-replicate calls == vmap of them == eager; keys decide the draw; a
    replicate draws the same for every schedule of a grid (common random numbers) and whatever the chunking."""
    import jax.numpy as jnp

    alpha = np.stack([S.constant_alpha(0.4, 5), S.pure_synthetic_alpha(5)])
    n = np.stack([S.linear_size(6, 5), S.constant_size(4, 5)]).astype(np.float64)
    keys = jax.random.split(jax.random.key(2), 4)
    batched = np.asarray(G.batched_native(keys, alpha, n, regime))
    assert batched.shape == (2, 4, 6)
    one = lambda k: G.batched_native(k[None], alpha, n, regime)[:, 0]  # noqa: E731
    loop = np.stack([np.asarray(one(k)) for k in keys], axis=1)
    vmapped = np.moveaxis(np.asarray(jax.vmap(one)(keys)), 0, 1)
    with jax.disable_jit():
        eager = np.asarray(one(keys[1]))
    np.testing.assert_array_equal(batched, loop)
    np.testing.assert_array_equal(batched, vmapped)
    np.testing.assert_array_equal(batched[:, 1], eager)
    # common random numbers: the first row alone draws what it drew on the grid; generation 0 is the same draw
    np.testing.assert_array_equal(np.asarray(G.batched_native(keys, alpha[:1], n[:1], regime))[0], batched[0])
    fits = np.asarray(G.batched_native(keys, alpha, n, regime, "fit"))
    assert fits.shape == (2, 4, 6, 2)
    np.testing.assert_allclose(batched, fits[..., 0] ** 2 + (np.sqrt(fits[..., 1]) - 1) ** 2, rtol=1e-12)
    other = np.asarray(G.batched_native(jax.random.split(jax.random.key(3), 4), alpha, n, regime))
    assert not np.array_equal(batched, other)
    whole = G.simulate(4, 0.0, 1.0, alpha, n, G.GaussianConfig(regime), 50, backend="native", progress=False)
    parts = G.simulate(4, 0.0, 1.0, alpha, n, G.GaussianConfig(regime), 50, backend="native", chunk_size=7,
                       progress=False)
    later = G.simulate(4, 0.0, 1.0, alpha, n, G.GaussianConfig(regime), 20, backend="native", first_replicate=30,
                       progress=False)
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(whole[:, 30:], later)
    with pytest.raises(ValueError, match=r"alpha and n must be \(G, T \+ 1\) grids of one shape"):
        G.batched_native(keys, alpha[0], n[0], regime)
    # a user trial (2026-12-06): a NaN alpha hung the kernel (its binomial's rejection loop), n = 1, 0 or 2.5 ran;
    # refused by value, and by the kernel itself under jit
    for bad_alpha, bad_n, message in [(np.nan, 4.0, "alpha"), (1.5, 4.0, "alpha"), (0.5, 1.0, "n must be >= 2"),
                                      (0.5, 2.5, "n"), (0.5, np.inf, "n")]:
        a, m = alpha.copy(), n.copy()
        a[0, 2], m[0, 2] = bad_alpha, bad_n
        with pytest.raises(ValueError, match=message):
            G.batched_native(keys, a, m, regime)
        with pytest.raises(Exception, match="every alpha must lie in|every n must be a whole number"):
            jax.block_until_ready(jax.jit(G.batched_native, static_argnums=3)(keys, a, m, regime))
    assert jnp.asarray(G.batched_native(keys, alpha.astype(np.float32), n.astype(np.float32), regime)).dtype == \
        jnp.float32


def test_backend_names_are_checked():
    alpha, n = S.constant_alpha(0.4, T), S.linear_size(6, T)
    with pytest.raises(ValueError, match="backend='native' runs the Gaussian regimes"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig("accumulate-subsample"), 2, backend="native")
    with pytest.raises(ValueError, match="backend must be"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig(), 2, backend="pallas")
    with pytest.raises(ValueError, match="backend must be"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig("accumulate-subsample"), 2, backend="gpu")
    with pytest.raises(ValueError, match="chunk_size"):
        G.simulate(0, 0.0, 1.0, alpha, n, G.GaussianConfig(), 2, chunk_size=0)


def test_float32_underflow_of_the_fits_is_warned_about():
    """A user trial (2026-12-06): a long pure-synthetic run at n = 2 in float32 recorded 2,979,154 of 3,000,300
    fitted variances as exactly 0 (median 3e-56 in float64) and a mean far from the theory, without a word."""
    config = G.GaussianConfig("replace", record="fit")
    with jax.enable_x64(False):
        with pytest.warns(RuntimeWarning, match=r"gaussian: [\d,]+ of 30,300 recorded fitted variances are exactly 0 "
                                                 r"in float32"):
            G.simulate(0, 0.0, 1.0, np.zeros(101), np.full(101, 2), config, 300, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            G.simulate(0, 0.0, 1.0, np.zeros(11), np.full(11, 2), config, 300, progress=False)
    with jax.enable_x64(True):  # float64 keeps them
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = G.simulate(0, 0.0, 1.0, np.zeros(101), np.full(101, 2), config, 300, progress=False)
    assert np.all(out[..., 1] > 0)


def test_first_order_w2_needs_two_points_a_fit_as_the_exact_law_does():
    """A user trial (2026-12-06): shumailov_first_order_w2 took M = 1, which pure_synthetic_w2 refuses."""
    for law in (G.shumailov_first_order_w2, G.pure_synthetic_w2):
        with pytest.raises(ValueError, match="n must be at least 2 in every generation"):
            law(1.0, [10, 1, 10])
    np.testing.assert_allclose(G.shumailov_first_order_w2(1.0, [10, 10]), [0.15, 0.3])


def test_kernel_keeps_float32_params_under_x64():
    """A user trial (2026-12-06): with x64 on, float32 params failed in replace and accumulate ("scan body function
    carry input and carry output must have equal types"): the binomial split drew in the default float64."""
    import jax
    import jax.numpy as jnp

    from collapse_jax import gaussian as G

    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    with jax.enable_x64(True):
        for regime in ("replace", "accumulate"):
            out = G.kernel(jax.random.key(0), G.Params(f32(0.0), f32(1.0), jnp.full(9, 0.5, jnp.float32),
                                                        jnp.full(9, 50.0, jnp.float32)), G.GaussianConfig(regime))
            assert out.dtype == jnp.float32 and out.shape == (9,) and bool(jnp.all(jnp.isfinite(out)))
