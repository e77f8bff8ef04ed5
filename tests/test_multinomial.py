"""Multinomial recursion: sampler exactness, NumPy reference, exact recurrences, contract and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import collapse_jax.multinomial as M
from collapse_jax import schedules as S
import multinomial_reference as ref
from goodness_of_fit import chi2_pvalue
from native_support import NATIVE, NATIVE_PARAM, needs_native, skip_if_built_for_avx2

K, T, R, CHUNK = 6, 8, 4000, 4000  # one shape everywhere: one compilation per regime per worker
P = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])


def _grid():
    alpha = np.stack([S.constant_alpha(0.3, T), S.power_decay_alpha(0.7, T), S.pure_synthetic_alpha(T),
                      S.constant_alpha(0.9, T)])
    n = np.stack([S.constant_size(15, T), S.linear_size(8, T), S.quadratic_size(3, T), S.constant_size(4, T)])
    return alpha, n


# --- exact binomial and multinomial samplers -----------------------------------------------------------------------
CASES = [(5, 0.3), (40, 0.1), (1000, 0.004), (1000, 0.03), (10 ** 6, 0.3), (30, 0.9), (10 ** 6, 2e-6), (12, 0.5),
         (10 ** 9, 1e-3), (7, 0.0), (7, 1.0), (0, 0.4)]


def _atoms(x):
    """Losses rounded to 1e-12: small-n losses are discrete, and summation order (C++, XLA, NumPy) moves an atom by
    ~1e-17, which a two-sample KS test would read as a difference in law."""
    return np.round(x, 12)


def _native_counts(n, q, seed=0):
    """Native sampler rows: n (R,), q (R, K) -> counts (R, K)."""
    keys = jax.random.split(jax.random.key(seed), len(n))
    return np.asarray(M.sample_multinomial_native(keys, jnp.asarray(n, jnp.float64), jnp.asarray(q, jnp.float64)))


def _binomial_draws(sampler, n, p, draws, seed):
    """``draws`` Binomial(n, p) from the JAX sampler or from the native kernel (first margin of a two-category
    multinomial)."""
    if sampler == "jax":
        return np.asarray(jax.jit(M.binomial)(jax.random.key(seed), jnp.full((draws,), float(n)),
                                              jnp.full((draws,), float(p))))
    return _native_counts(np.full(draws, float(n)), np.tile([p, 1 - p], (draws, 1)), seed=seed)[:, 0]


@pytest.mark.parametrize("sampler", ["jax", NATIVE_PARAM])
def test_binomial_matches_scipy_pmf(sampler):
    """Every branch: inversion, BTRS, p > 1/2 (flip), n = 1e9, degenerate p and n."""
    draws = 40000
    for i, (nn, pp) in enumerate(CASES):
        row = _binomial_draws(sampler, nn, pp, draws, seed=11 + i)
        assert np.all(row == np.round(row)) and row.min() >= 0 and row.max() <= nn
        if pp in (0.0, 1.0) or nn == 0:
            assert np.all(row == nn * pp)
            continue
        assert chi2_pvalue(row, stats.binom(nn, pp)) > 1e-3, (nn, pp)
        z = (row.mean() - nn * pp) / np.sqrt(nn * pp * (1 - pp) / draws)
        assert abs(z) < 4.5, (nn, pp, z)


@pytest.mark.parametrize("sampler", ["jax", NATIVE_PARAM])
def test_binomial_detects_a_wrong_pmf(sampler):
    """The goodness-of-fit check above can fail: the draws reject a binomial with a slightly different p."""
    x = _binomial_draws(sampler, 1000, 0.03, 40000, seed=3)
    assert chi2_pvalue(x, stats.binom(1000, 0.0315)) < 1e-6


def test_multinomial_counts_exact_moments():
    q = jnp.asarray(np.array([0.5, 0.2, 0.15, 0.1, 0.05, 0.0]))
    draws, n = 30000, 250.0
    keys = jax.random.split(jax.random.key(5), draws)
    c = np.asarray(jax.jit(jax.vmap(M.sample_multinomial, in_axes=(0, None, None)))(keys, n, q))
    assert np.all(c.sum(1) == n) and np.all(c[:, -1] == 0)
    qq = np.asarray(q)
    cov = n * (np.diag(qq) - np.outer(qq, qq))
    emp = np.cov(c.T)
    se = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / draws) + 1e-12
    assert np.all(np.abs(emp - cov) < 5 * se)
    for j in range(5):  # each margin is exactly Binomial(n, q_j)
        assert chi2_pvalue(c[:, j], stats.binom(int(n), qq[j])) > 1e-3


@needs_native
def test_native_multinomial_counts_exact_moments():
    qq = np.array([0.5, 0.2, 0.15, 0.1, 0.05, 0.0])
    draws, n = 30000, 250.0
    c = _native_counts(np.full(draws, n), np.tile(qq, (draws, 1)), seed=5)
    assert np.all(c.sum(1) == n) and np.all(c[:, -1] == 0)
    cov = n * (np.diag(qq) - np.outer(qq, qq))
    se = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / draws) + 1e-12
    assert np.all(np.abs(np.cov(c.T) - cov) < 5 * se)
    for j in range(5):
        assert chi2_pvalue(c[:, j], stats.binom(int(n), qq[j])) > 1e-3


# --- simulator vs NumPy reference ----------------------------------------------------------------------------------
# The JAX path against the reference: the filter regime in CI (it runs the replace and accumulate steps' sampler
# too); replace and accumulate with pytest -m slow.
@pytest.mark.parametrize("backend,regime,type1,type2", [
    *(pytest.param("native", *case, marks=needs_native) for case in (("replace", 0, 0), ("accumulate", 0, 0),
                                                                      ("filter", 0.3, 0.2))),
    pytest.param("jax", "replace", 0, 0, marks=pytest.mark.slow),
    pytest.param("jax", "accumulate", 0, 0, marks=pytest.mark.slow), ("jax", "filter", 0.3, 0.2)])
def test_simulator_matches_numpy_reference(regime, type1, type2, backend):
    alpha, n = _grid()  # the grid shape shared by every simulate call here: one compilation per regime
    cfg = M.MultinomialConfig(regime, type1, type2)
    jx = M.simulate(7, P, alpha, n, cfg, R, chunk_size=CHUNK, progress=False, backend=backend)[1]
    np_ = ref.simulate(np.random.default_rng(7), P, alpha[1], n[1], regime, type1, type2, num_replicates=400)
    for t in (1, T // 2, T):
        assert stats.ks_2samp(_atoms(jx[:, t]), _atoms(np_[:, t])).pvalue > 1e-3, (regime, t)


# --- simulator vs exact recurrences (float64) ----------------------------------------------------------------------
@pytest.mark.parametrize("cfg,backend", [  # (the jax path's accumulate in the slow tier: its replace and filter here)
    *[pytest.param(M.MultinomialConfig(*cfg), "native", marks=needs_native, id=f"{cfg[0]}-native")
      for cfg in (("replace",), ("accumulate",), ("filter", 0.2, 0.3))],
    pytest.param(M.MultinomialConfig("replace"), "jax", id="replace-jax"),
    pytest.param(M.MultinomialConfig("filter", 0.2, 0.3), "jax", id="filter-jax"),
    pytest.param(M.MultinomialConfig("accumulate"), "jax", marks=pytest.mark.slow, id="accumulate-jax")])
def test_monte_carlo_matches_exact_recurrence(cfg, backend):
    alpha, n = _grid()
    losses = M.simulate(1, P, alpha, n, cfg, R, chunk_size=CHUNK, progress=False, backend=backend)
    for g in range(alpha.shape[0]):
        theory = M.theory_risk(P, alpha[g], n[g], cfg)
        mean, se = losses[g].mean(0), losses[g].std(0, ddof=1) / np.sqrt(R)
        z = (mean - theory) / se
        assert np.all(np.abs(z) < 4.0), (cfg.regime, g, z)


def test_monte_carlo_rejects_the_wrong_recurrence():
    """Power check: the same Monte Carlo tells replace from accumulate, so the agreement above is not vacuous."""
    alpha, n = _grid()
    losses = M.simulate(1, P, alpha, n, M.MultinomialConfig("replace"), R, chunk_size=CHUNK, progress=False)
    wrong = M.accumulate_risk(P, alpha[0], n[0])
    z = (losses[0].mean(0) - wrong) / (losses[0].std(0, ddof=1) / np.sqrt(R))
    assert np.max(np.abs(z)) > 10


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10 ** 6), a0=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
       gamma=st.lists(st.floats(0.0, 1.5), min_size=4, max_size=4),
       n0=st.lists(st.integers(1, 40), min_size=4, max_size=4), regime=st.sampled_from(["replace", "accumulate"]))
def test_property_random_parameters(seed, a0, gamma, n0, regime):
    """Four random (p, alpha_t = a0 t^-gamma, n_t = n0 (t+1)) settings per example, one grid call."""
    p = np.random.default_rng(seed).dirichlet(np.ones(K))
    t = np.maximum(np.arange(T + 1), 1.0)
    alpha = np.stack([np.minimum(1.0, a * t ** -g) for a, g in zip(a0, gamma)])
    n = np.stack([S.linear_size(m, T) for m in n0])
    cfg = M.MultinomialConfig(regime)
    losses = M.simulate(seed, p, alpha, n, cfg, R, chunk_size=CHUNK, progress=False)
    for g in range(4):
        theory = M.theory_risk(p, alpha[g], n[g], cfg)
        se = losses[g].std(0, ddof=1) / np.sqrt(R)
        assert np.all(np.abs(losses[g].mean(0) - theory) < 4.5 * se + 1e-15)


# --- theory identities ---------------------------------------------------------------------------------------------
def test_theory_identities():
    s = 1 - np.sum(P ** 2)
    long = 4000
    r = M.replace_risk(P, S.constant_alpha(0.2, long), S.constant_size(10, long))
    assert r[-1] == pytest.approx(M.fixed_alpha_limit(P, 0.2, 10), rel=1e-10)
    assert M.fixed_alpha_limit(P, 0.0, 10) == pytest.approx(s)
    assert M.fixed_alpha_limit(P, 1.0, 10) == pytest.approx(s / 10)
    n = S.linear_size(3, 30)
    assert np.allclose(M.replace_risk(P, S.pure_synthetic_alpha(30), n), M.pure_synthetic_limit(P, n))
    alpha = S.power_decay_alpha(0.5, 30)
    # a filter that keeps everything (a = 0, b = 1) is replace
    assert np.allclose(M.filter_risk(P, alpha, n, 0.0, 1.0), M.replace_risk(P, alpha, n), rtol=1e-12)
    # alpha = 1 everywhere: accumulate is a single sample of size S_t
    n2 = S.constant_size(7, 5)
    assert np.allclose(M.accumulate_risk(P, np.ones(6), n2), s / np.cumsum(n2))
    # exact E[1/N | N > 0] against brute force, and the mean-field form for large n
    k = np.arange(1, 51)
    brute = np.sum(stats.binom.pmf(k, 50, 0.1) / k) / (1 - 0.9 ** 50)
    assert M.expected_inverse_kept(50, 0.1) == pytest.approx(brute, rel=1e-12)
    assert M.expected_inverse_kept(10 ** 6, 0.3) == pytest.approx(1 / (3e5), rel=1e-4)
    # from a mean of 10^6 the moment series replaces the sum (whose cost grew as sqrt(n): 8.6 s at n = 10^12, out of
    # memory beyond): the pmf sum on either side of the switch, and a size the sum could not reach
    for n_t, kappa in ((10 ** 6 + 1, 0.999999), (2 * 10 ** 6, 0.5), (10 ** 7, 0.9), (10 ** 9, 0.001)):
        mean, sd = n_t * kappa, np.sqrt(n_t * kappa * (1 - kappa))
        k = np.arange(int(mean - 40 * sd), int(mean + 40 * sd) + 2, dtype=np.float64)
        assert M.expected_inverse_kept(n_t, kappa) == pytest.approx(np.sum(stats.binom.pmf(k, n_t, kappa) / k),
                                                                    rel=1e-14)
    huge = 2 ** 53
    assert M.expected_inverse_kept(huge, 0.3) == pytest.approx(1 / (0.3 * huge), rel=1e-14, abs=0)
    # sizes near float64's top: mean ** 5 overflowed (a bare OverflowError at n = 1e300; an audit, 2026-12-07)
    assert M.expected_inverse_kept(1e300, 0.5) == pytest.approx(2e-300, rel=1e-14, abs=0)
    risk = M.filter_risk(P, S.constant_alpha(0.5, 2), S.constant_size(1e300, 2), 0.1, 0.1)
    assert np.all(np.isfinite(risk)) and np.all(risk > 0)
    with pytest.raises(ValueError, match="n must be at most 1.79769e"):
        M.expected_inverse_kept(10 ** 400, 0.5)


def test_adaptive_alpha_is_a_recurrence_fixed_point():
    n = S.constant_size(20, 50)
    alpha, r = M.adaptive_alpha(P, lambda risk: float(np.exp(-20 * risk)), n)
    assert np.allclose(r, M.replace_risk(P, alpha, n))
    assert np.allclose(1 - alpha[1:], np.exp(-20 * r[:-1]))


@pytest.mark.parametrize("backend", [NATIVE_PARAM, "jax"])
def test_chunking_does_not_change_draws(backend):
    alpha, n = _grid()
    whole = M.simulate(4, P, alpha, n, M.MultinomialConfig(), R, chunk_size=CHUNK, progress=False, backend=backend)
    parts = M.simulate(4, P, alpha, n, M.MultinomialConfig(), 2 * R, chunk_size=CHUNK, progress=False,
                       backend=backend)
    np.testing.assert_array_equal(whole, parts[:, :R])
    if backend == "native":  # smaller chunks than the default
        small = M.simulate(4, P, alpha, n, M.MultinomialConfig(), R, chunk_size=999, progress=False,
                           backend=backend)
        np.testing.assert_array_equal(whole, small)


@needs_native
def test_native_calls_record_at_most_about_2_24_numbers(monkeypatch):
    """An audit (2026-12-07): the native kernel took 10,000 replicates a call whatever the grid, so 8 schedules of
    2,000 steps made calls of 1.6e8 recorded numbers (640 MB) where docs/driver.md says about 2^24."""
    from collapse_jax import driver

    seen = []

    def spy(run, num_replicates, seed, chunk, **kwargs):
        seen.append(chunk)
        raise KeyboardInterrupt  # (stop before any compute)

    monkeypatch.setattr(driver, "map_chunks", spy)
    T = 2000
    alpha, n = np.stack([S.constant_alpha(0.5, T)] * 8), np.stack([S.constant_size(100, T)] * 8)
    for R, want in ((20_000, 2 ** 24 // (8 * (T + 1))), (500, 500)):
        with pytest.raises(KeyboardInterrupt):
            M.simulate(0, P, alpha, n, M.MultinomialConfig(), R, backend="native", progress=False)
        assert seen[-1] == want
    with pytest.raises(KeyboardInterrupt):  # small grids keep 10,000 a call
        M.simulate(0, P, S.constant_alpha(0.5, 50), S.constant_size(100, 50), M.MultinomialConfig(), 20_000,
                   backend="native", progress=False)
    assert seen[-1] == 10_000


@pytest.mark.parametrize("regime,p", [  # (each p with one regime in CI: the other pair compiles as long, 18-22 s)
    pytest.param("replace", (0.25, 0.25, 0.25, 0.25), id="replace-even"),
    pytest.param("accumulate", (0.5, 0.3, 0.2), id="accumulate-uneven"),
    pytest.param("accumulate", (0.25, 0.25, 0.25, 0.25), marks=pytest.mark.slow, id="accumulate-even"),
    pytest.param("replace", (0.5, 0.3, 0.2), marks=pytest.mark.slow, id="replace-uneven")])
def test_a_replicate_draws_the_same_alone_batched_and_on_a_grid(regime, p):
    """The JAX kernel's draw of replicate r does not depend on how XLA compiled it: alone (one key), in a vmapped
    batch (the driver) or on a grid axis (simulate). Both p have tied halves in the sampler's tree; in float64
    18-54 of 200 replicates drew differently, because which half was the smaller hung on the masses' last bits
    (an audit, 2026-12-05)."""
    from collapse_jax import driver

    T, R = 8, 200
    alpha, n = S.constant_alpha(0.3, T), S.constant_size(20, T)
    params = M.Params(*(jnp.asarray(x, jnp.float64) for x in (p, alpha, n, np.ones(T + 1))))
    cfg = M.MultinomialConfig(regime)
    batched = driver.run_replicates(M.kernel, params, cfg, R, seed=0, chunk_size=R, progress=False)
    one = jax.jit(M.kernel, static_argnums=2)
    alone = np.stack([np.asarray(one(jax.random.fold_in(jax.random.key(0), r), params, cfg)) for r in range(R)])
    gridded = M.simulate(0, np.asarray(p), alpha, n, cfg, R, backend="jax", progress=False)
    np.testing.assert_allclose(alone, batched, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gridded, batched, rtol=0, atol=1e-12)


@needs_native
@pytest.mark.parametrize("regime", ["accumulate", "filter", "accumulate-subsample"])
def test_native_contract_jit_vmap_keys(regime):
    """Native kernel: batched == a loop of single-replicate calls == vmap of them == eager; keys decide the draw."""
    p = jnp.asarray(P)
    alpha, n = S.constant_alpha(0.4, 5), S.linear_size(6, 5)
    tilde, kappa = M.filter_schedules(alpha[None].copy(), 0.2, 0.3) if regime == "filter" else (alpha[None],
                                                                                               np.ones((1, 6)))
    alpha_j, n_j, kappa_j = (jnp.asarray(x, jnp.float64) for x in (tilde, n[None], kappa))
    keys = jax.random.split(jax.random.key(2), 4)
    batched = np.asarray(M.batched_risk_native(keys, p, alpha_j, n_j, kappa_j, regime))[0]
    one = lambda k: M.batched_risk_native(k[None], p, alpha_j, n_j, kappa_j, regime)[0, 0]  # noqa: E731
    loop = np.stack([np.asarray(one(k)) for k in keys])
    vmapped = np.asarray(jax.vmap(one)(keys))
    with jax.disable_jit():
        eager = np.asarray(one(keys[1]))
    np.testing.assert_array_equal(batched, loop)
    np.testing.assert_array_equal(batched, vmapped)
    np.testing.assert_array_equal(batched[1], eager)
    other = np.asarray(M.batched_risk_native(jax.random.split(jax.random.key(3), 4), p, alpha_j, n_j, kappa_j,
                                             regime))[0]
    assert not np.array_equal(batched, other)
    # 1-D schedules: an IndexError inside the call before (a user trial, 2026-12-06)
    with pytest.raises(ValueError, match=r"alpha, n and kappa must be \(G, T \+ 1\) grids of one shape"):
        M.batched_risk_native(keys, p, alpha_j[0], n_j[0], kappa_j[0], regime)


@needs_native
@pytest.mark.parametrize("regime", M.NATIVE_REGIMES)
def test_native_engines_draw_identically(regime):
    """The refill engine (AVX-512 or AVX2) and the group engine consume each replicate's stream the same way: equal losses,
    bit for bit, over every sampler path: zero and tiny probabilities (inversion, no-draw categories), moderate and
    large means (BTRS), n >= 2^20 (BTRS with the Stirling bound), the filter's kept-size draws, a grid of two
    schedules and a replicate count that is no multiple of the vector width."""
    from collapse_jax import _native

    if "refill" not in _native.multinomial_engines():
        pytest.skip(f"no refill engine in this build ({_native.multinomial_engines()})")
    p = np.r_[0.3, 0.0, 1e-4, 0.02, 0.15, 0.0, 0.2, 0.001, 0.1289, 0.1, 0.1]
    p = jnp.asarray(p / p.sum())
    n = np.array([[3, 40, 500, 2e4, 3e6, 7, 1e3], [1, 1e5, 2e5, 60, 5e3, 4e4, 2]])
    alpha = np.array([[1.0, 0.5, 0.2, 0.9, 0.0, 0.7, 0.3], [1.0, 0.0, 0.1, 1.0, 0.5, 0.5, 0.05]])
    tilde, kappa = M.filter_schedules(alpha.copy(), 0.1, 0.4) if regime == "filter" else (alpha, np.ones_like(alpha))
    args = [jnp.asarray(x, jnp.float64) for x in (tilde, n, kappa)]
    keys = jax.random.split(jax.random.key(11), 37)
    refill = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="refill"))
    group = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="group"))
    auto = np.asarray(M.batched_risk_native(keys, p, *args, regime))
    assert np.all(np.isfinite(refill)) and refill.shape == (2, 37, 7)
    np.testing.assert_array_equal(refill, group)
    np.testing.assert_array_equal(refill, auto)
    assert np.unique(refill[:, :, -1]).size > 30  # replicates differ


@needs_native
@pytest.mark.parametrize("engine", ["group", "refill"])
def test_native_loss_is_exact_when_p_hat_equals_p(engine):
    """p_hat = counts / total is correctly rounded: one category (p_hat = p = 1 always) gives losses of exactly 0."""
    from collapse_jax import _native

    if engine not in _native.multinomial_engines():
        pytest.skip(f"no {engine} engine in this build")
    sched = [jnp.asarray(x[None], jnp.float64) for x in (S.constant_alpha(0.5, 3), S.linear_size(7, 3))]
    loss = M.batched_risk_native(jax.random.split(jax.random.key(0), 9), jnp.ones(1), *sched,
                                 jnp.ones_like(sched[0]), "accumulate", engine=engine)
    assert np.all(np.asarray(loss) == 0.0)


@needs_native
def test_native_law_holds_up_to_the_largest_float64_counts():
    """BTRS's Stirling bound was grouped so that its rounding grew like 4e-16 n (1.2 nats at n = 2^53, which the
    float64 counts allow): the mean loss at n_t = 2^53 was 1.024 r_0 (8 standard errors with 2^18 replicates;
    0.994 at 1e15). Now every difference of logs is a log1p of a small ratio, and the law holds at any count."""
    p, R = np.array([0.3, 0.7]), 2**18
    for n in (1e15, 2.0**53):
        loss = np.asarray(M.simulate(11, p, np.ones(2), np.full(2, n), M.MultinomialConfig("replace"), R,
                                     backend="native", progress=False))[:, 0]
        r0 = (1 - (p ** 2).sum()) / n
        assert abs(loss.mean() - r0) < 4.5 * loss.std() / np.sqrt(R), (n, loss.mean() / r0)


@needs_native
def test_native_chain_keeps_a_tiny_remaining_mass():
    """An audit (2026-12-04): the chain drew an entry whose conditional r was above 1/2 with 1 - r, whose rounding is
    absolute (~1e-16): with p = [1 - 1e-15, 1e-15], alpha = 0.5 and n_t = 2^53 the mean loss was 1.013-1.021 x the
    exact risk (z up to 6.0 with 2e5 replicates). conditional_row now stores the complement itself."""
    p, R, n = np.array([1 - 1e-15, 1e-15]), 200_000, 2.0**53
    alpha, sizes = np.full(6, 0.5), np.full(6, n)
    loss = np.asarray(M.simulate(5, p, alpha, sizes, M.MultinomialConfig("replace"), R, backend="native",
                                 progress=False))
    z = (loss.mean(0) - M.replace_risk(p, alpha, sizes)) / (loss.std(0) / np.sqrt(R))
    assert np.all(np.abs(z) < 4.5), z


def test_p_within_the_simplex_tolerance_is_renormalised():
    """An audit (2026-12-04): p summing to 1 + 1e-7 passed the check (tolerance 1e-6), the samplers drew from
    p / sum(p), but losses and theory used the raw p: an extra (sum - 1)^2 ||p||^2, 14.8x the risk at n = 1e15."""
    raw = np.array([0.3, 0.7 + 1e-7])
    assert math.fsum(M.check_p(raw)) == 1.0
    alpha, n = np.ones(2), np.full(2, 1e15)
    R = 4000
    loss = np.asarray(M.simulate(1, raw, alpha, n, M.MultinomialConfig("replace"), R, progress=False))[:, 0]
    theory = M.replace_risk(raw, alpha, n)[0]
    assert abs(loss.mean() - theory) < 4.5 * loss.std() / np.sqrt(R)


def test_jax_multinomial_keeps_tiny_categories_after_a_large_prefix():
    """An audit (2026-12-04): node masses as differences of a running sum (cum[mid] - cum[lo]) kept only its
    rounding, so a category of mass 5e-17 after one of 0.5 drew nothing at n = 2^53 (0.45 expected per draw), and a
    tiny right half's share came from 1 - ratio near 1. Now halves are summed on their own and the smaller drawn."""
    n, draws = 2.0**53, 2000
    keys = jax.random.split(jax.random.key(1), draws)
    for q in ([0.5, 5e-17, 0.5 - 5e-17], [1 - 1e-15, 1e-15]):
        q = M.check_p(np.array(q))
        counts = np.asarray(jax.vmap(lambda k: M.sample_multinomial(k, n, jnp.asarray(q)))(keys))
        small = int(np.argmin(q))
        expected = draws * n * q[small]  # Poisson total over the draws
        assert abs(counts[:, small].sum() - expected) < 5 * np.sqrt(expected), (q, counts[:, small].sum(), expected)
        assert np.all(counts.sum(1) == n)


@pytest.mark.parametrize("call, match", [
    (lambda k, q: M.sample_multinomial(k, -5.0, q), "n must hold whole numbers >= 0"),
    (lambda k, q: M.sample_multinomial(k, 5.5, q), "n must hold whole numbers >= 0"),
    (lambda k, q: M.sample_multinomial(k, True, q), "n must hold whole numbers >= 0, got booleans"),  # (drew 1)
    (lambda k, q: M.sample_multinomial(k, jnp.ones(2), q), "n must be one total count"),
    (lambda k, q: M.sample_multinomial(k, 10.0, jnp.asarray([1.5, -0.5])), r"q must lie in \[0.0, inf\)"),
    (lambda k, q: M.sample_multinomial(k, 10.0, jnp.asarray([jnp.nan, 0.5])), r"q must lie"),
    (lambda k, q: M.sample_multinomial(k, 10.0, jnp.zeros(3)), "q must have a positive sum"),
    (lambda k, q: M.sample_multinomial(k, 10.0, jnp.ones((2, 2))), r"q must be a \(K,\) probability vector"),
    (lambda k, q: M.sample_multinomial(0, 10.0, q), "key must be one PRNG key"),
    (lambda k, q: M.sample_multinomial(jax.random.split(k, 3), 10.0, q), "key must be one PRNG key"),
    (lambda k, q: M.binomial(k, 10.0, 1.5), r"p must lie in \[0.0, 1.0\]"),
    (lambda k, q: M.binomial(k, -10.0, 0.5), "n must hold whole numbers >= 0"),
    (lambda k, q: M.binomial(k, 10.0, jnp.nan), "p must lie in"),
])
def test_exact_samplers_refuse_bad_concrete_arguments(call, match):
    """A user trial (2026-12-06): n = -5 drew [0, -5, 0], n = 5.5 counts summing to 5.5, q = (1.5, -0.5) or a NaN
    drew counts, all without a word; an integer key failed deep inside JAX."""
    with pytest.raises(ValueError, match=match):
        call(jax.random.key(0), jnp.asarray([0.5, 0.3, 0.2]))


@pytest.mark.parametrize("call, match", [
    (lambda k: M.hypergeometric(k, 11.0, 3.0, 10.0), "draws must be at most total"),
    (lambda k: M.hypergeometric(k, 5.0, 11.0, 10.0), "good must be at most total"),
    (lambda k: M.hypergeometric(k, -1.0, 3.0, 10.0), "draws must hold whole numbers >= 0"),
    (lambda k: M.hypergeometric(k, 5.0, 3.5, 10.0), "good must hold whole numbers >= 0"),
    (lambda k: M.hypergeometric(k, 5.0, 3.0, jnp.nan), "total must hold whole numbers >= 0"),
    (lambda k: M.hypergeometric(0, 5.0, 3.0, 10.0), "key must be one PRNG key"),
    (lambda k: M.hypergeometric(k, jnp.ones(2), jnp.ones(3), 10.0), "must broadcast together"),
    (lambda k: M.sample_multivariate_hypergeometric(k, 8.0, jnp.asarray([3.0, 4.0])), "m must be at most sum"),
    (lambda k: M.sample_multivariate_hypergeometric(k, 2.5, jnp.asarray([3.0, 4.0])), "m must hold whole"),
    (lambda k: M.sample_multivariate_hypergeometric(k, 2.0, jnp.asarray([3.0, -1.0])), "counts must hold whole"),
    (lambda k: M.sample_multivariate_hypergeometric(k, 2.0, jnp.ones((1, 2))), r"counts must be a \(K,\)"),
])
def test_hypergeometric_samplers_refuse_bad_concrete_arguments(call, match):
    """An audit (2026-12-07): draws = 11 of total = 10 drew 3 every time and draws = -1 drew 0, without a word;
    good = 3.5 or a NaN total never returned (a while loop inside XLA, beyond Ctrl-C)."""
    with pytest.raises(ValueError, match=match):
        call(jax.random.key(0))


def test_hypergeometric_draws_nan_for_bad_traced_arguments():
    """Traced, the values are unknown to the checks: bad lanes draw NaN (good = 3.5 hung the loop), good ones the
    same draws as eagerly."""
    key = jax.random.key(0)
    run = jax.jit(M.hypergeometric)
    out = np.asarray(run(key, jnp.asarray([5.0, 5.0, 11.0, 5.0]), jnp.asarray([3.5, 3.0, 3.0, jnp.nan]), 10.0))
    assert np.isnan(out[[0, 2, 3]]).all() and out[1] == float(M.hypergeometric(key, jnp.full(4, 5.0),
                                                                                  3.0, 10.0)[1])
    assert np.isnan(np.asarray(jax.jit(M.sample_multivariate_hypergeometric)(key, 8.0, jnp.asarray([3.0, 4.0])))).all()


def test_exact_samplers_still_run_traced():
    q = jnp.asarray([0.5, 0.3, 0.2])
    key = jax.random.key(0)
    eager = M.sample_multinomial(key, 10.0, q)
    np.testing.assert_array_equal(jax.jit(M.sample_multinomial)(key, 10.0, q), eager)
    assert float(eager.sum()) == 10.0
    # one count in a (1,) array, as before the checks (a review, 2026-12-06)
    np.testing.assert_array_equal(M.sample_multinomial(key, jnp.asarray([10.0]), q), eager)
    assert M.binomial(key, jnp.asarray([3.0, 0.0]), 0.5).shape == (2,)


@needs_native
def test_native_engine_name_is_checked():
    p = jnp.asarray(P)
    alpha, n = (jnp.asarray(x[None], jnp.float64) for x in (S.constant_alpha(0.5, 3), S.linear_size(5, 3)))
    with pytest.raises(ValueError, match="engine must be one of"):
        M.batched_risk_native(jax.random.split(jax.random.key(0), 2), p, alpha, n, jnp.ones_like(n), "replace",
                              engine="fast")


@needs_native
def test_backends_agree_in_distribution():
    alpha, n = _grid()
    cfg = M.MultinomialConfig("accumulate")
    a = M.simulate(8, P, alpha, n, cfg, R, chunk_size=CHUNK, progress=False, backend="native")
    b = M.simulate(8, P, alpha, n, cfg, R, chunk_size=CHUNK, progress=False, backend="jax")
    for g in range(alpha.shape[0]):
        assert stats.ks_2samp(_atoms(a[g, :, T]), _atoms(b[g, :, T])).pvalue > 1e-3, g
        assert not np.array_equal(a[g], b[g])  # different streams, same law


# --- bad input: clear errors before compute ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=np.r_[1.0, 0.5, 1.2]), "alpha must lie in"),
    (dict(alpha=np.r_[1.0, -0.1, 0.5]), "alpha must lie in"),
    (dict(n=np.r_[5.0, 0.0, 5.0]), "n must be >= 1"),
    (dict(n=np.r_[5.0, 2.5, 5.0]), "whole numbers"),
    (dict(n=np.r_[5.0, 5.0]), "same length"),
    (dict(p=np.r_[0.5, 0.6, -0.1]), "simplex"),
    (dict(p=np.r_[0.5, 0.4, 0.05]), "simplex"),
    (dict(config=M.MultinomialConfig("filter", 1.0 - 1e-12, 0.0), alpha=np.r_[1.0, 0.0, 0.0]), "keeps nothing"),
    (dict(p="abc"), "p must be a rectangular array of numbers"),   # (a third audit: messages without the name)
    (dict(config="replace"), "config must be a MultinomialConfig"),
])
def test_bad_input_raises_before_compute(kwargs, match):
    args = dict(p=np.r_[0.5, 0.3, 0.2], alpha=np.r_[1.0, 0.5, 0.5], n=np.r_[5.0, 5.0, 5.0],
                config=M.MultinomialConfig())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        M.simulate(0, args["p"], args["alpha"], args["n"], args["config"], 3)


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        M.simulate(0, np.r_[0.5, 0.5], np.r_[1.0, 0.5], np.r_[5.0, 5.0], M.MultinomialConfig(), 3, backend="gpu")


@pytest.mark.parametrize("kwargs", [dict(regime="nope"), dict(regime="filter", type1=1.0 + 1e-9),
                                    dict(regime="filter", type2=-0.1), dict(regime="filter", type2=1.5)])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        M.MultinomialConfig(**kwargs)


def test_bad_schedules():
    with pytest.raises(ValueError, match="num_steps"):
        S.check_alpha(np.ones(5), num_steps=5)
    with pytest.raises(ValueError, match="alpha"):
        S.constant_alpha(1.5, 4)
    with pytest.raises(ValueError, match="n must"):
        S.constant_size(0, 4)
    with pytest.raises(ValueError, match=r"scale must lie in \[0\.0, inf\)"):
        S.power_decay_alpha(0.5, 4, scale=math.inf)


def test_power_decay_takes_a_scale_above_one():
    """min(1, scale t^-gamma) is defined for any scale >= 0; an audit (2026-12-05) found scale = 2 refused."""
    np.testing.assert_array_equal(S.power_decay_alpha(1.0, 5, scale=2.0), [1.0, 1.0, 1.0, 2 / 3, 0.5, 0.4])


@needs_native
@skip_if_built_for_avx2
def test_avx2_build_draws_the_same_counts(tmp_path):
    """A CPU without AVX-512 (the library built for x86-64-v3: the group engine and the four-lane refill engine)
    draws exactly the counts this machine draws for the same keys, on every sampler path (n from 1 to 10^7: item by
    item for n <= 6 K = 120, about 30 % of the rows, then inversion and BTRS); the losses of either engine agree
    to the last bit or two (its reciprocals are true divisions), not necessarily bit for bit. docs/recursions.md
    states exactly this."""
    import os
    import subprocess
    import sys
    import textwrap

    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("x86-64 only")
    code = textwrap.dedent(f"""
        import sys, numpy as np, jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_multinomial import _cross_cpu_draws
        from collapse_jax import _native
        assert _native.multinomial_engines() == ("refill", "group"), _native.multinomial_engines()
        np.savez("{tmp_path}/avx2.npz", **_cross_cpu_draws())
    """)
    env = dict(os.environ, COLLAPSE_JAX_MARCH="x86-64-v3", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    other, here = np.load(tmp_path / "avx2.npz"), _cross_cpu_draws()
    np.testing.assert_array_equal(other["counts"], here["counts"])
    np.testing.assert_allclose(other["loss"], here["loss"], rtol=1e-13, atol=0)
    np.testing.assert_allclose(other["loss_refill"], here["loss_refill"], rtol=1e-13, atol=0)


def _cross_cpu_draws() -> dict:
    """Counts of 500 multinomial rows (n log-uniform on [1, 10^7], K = 20) and losses of 40 accumulate runs (group
    engine, the one every build has; and the refill engine where the build has one), for fixed keys."""
    from collapse_jax import _native
    from collapse_jax.replicates import replicate_keys

    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.full(20, 0.5), 500)
    n = np.exp(rng.uniform(0, np.log(1e7), 500)).round()
    counts = M.sample_multinomial_native(replicate_keys(9, 0, 500), jnp.asarray(n), jnp.asarray(q))
    alpha, sizes = (jnp.asarray(x[None], jnp.float64) for x in (S.constant_alpha(0.5, 20), S.linear_size(100, 20)))
    out = {"counts": np.asarray(counts)}
    for name, engine in (("loss", "group"), ("loss_refill", "refill")):
        if engine in _native.multinomial_engines():
            out[name] = np.asarray(M.batched_risk_native(replicate_keys(5, 0, 40), jnp.asarray(P), alpha, sizes,
                                                         jnp.ones_like(sizes), "accumulate", engine=engine))
    return out


# --- small samples: the native kernel's categorical path (n <= 6 K) ------------------------------------------------
@needs_native
def test_native_categorical_path_joint_law():
    """n <= 6 K items are drawn one by one (guide-table inverse cdf): the whole joint law, every outcome of
    Multinomial(3, q) over 4 categories (one of probability 0, never drawn), against scipy's pmf; q unnormalised."""
    q = np.array([0.5, 0.3, 0.0, 0.2])
    draws, n = 40000, 3
    c = _native_counts(np.full(draws, float(n)), np.tile(7.0 * q, (draws, 1)), seed=21)
    assert np.all(c.sum(1) == n) and np.all(c[:, 2] == 0)
    outcomes, index = np.unique(c, axis=0, return_inverse=True)
    support = [np.array([a, b, 0, n - a - b]) for a in range(n + 1) for b in range(n + 1 - a)]
    assert len(outcomes) == len(support)
    observed = np.bincount(index.ravel(), minlength=len(outcomes))
    expected = stats.multinomial.pmf(outcomes, n, q) * draws
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    wrong = stats.multinomial.pmf(outcomes, n, [0.48, 0.32, 0.0, 0.2])  # power: a nearby law is rejected
    assert stats.chisquare(observed, wrong / wrong.sum() * draws).pvalue < 1e-6


@needs_native
@pytest.mark.parametrize("num_categories,n", [(1000, 10), (200, 50), (1000, 5000), (30, 180), (30, 181), (12, 1)])
def test_native_categorical_path_margins(num_categories, n):
    """Each margin of a small-sample draw is Binomial(n, q_k), at several (K, n) on both sides of the switch to the
    binomial chain (n = 6 K = 180 is the last categorical size at K = 30, 181 the first chain one, where most
    categories expect fewer than 10 items and take the chain's split), with both guide tables (up to K items, and
    beyond: (1000, 5000), (30, 180))."""
    rng = np.random.default_rng(num_categories + n)
    q = rng.dirichlet(np.full(num_categories, 0.7))
    q[rng.permutation(num_categories)[:num_categories // 10]] = 0.0
    q /= q.sum()
    draws = 20000
    c = _native_counts(np.full(draws, float(n)), np.tile(q, (draws, 1)), seed=n)
    assert np.all(c.sum(1) == n) and np.all(c[:, q == 0] == 0)
    for k in np.argsort(q)[::-1][:3].tolist() + [int(np.argsort(q)[num_categories // 2])]:
        assert chi2_pvalue(c[:, k], stats.binom(n, q[k])) > 1e-3, (k, q[k])
    cov = n * (np.diag(q) - np.outer(q, q))  # and the covariance of the largest two, within 5 standard errors
    top = np.argsort(q)[::-1][:2]
    emp = np.cov(c[:, top].T)
    se = np.sqrt((cov[np.ix_(top, top)] ** 2 + np.outer(np.diag(cov)[top], np.diag(cov)[top])) / draws)
    assert np.all(np.abs(emp - cov[np.ix_(top, top)]) < 5 * se)


@needs_native
def test_native_chain_split_joint_law():
    """A chain generation (n > 6 K) whose categories with expected count below 10 are drawn by items after the chain
    (ChainSplit in the kernel): K = 5, n = 31, q = (0.45, 0.25, 0, 0.2, 0.1), so category 0 is chained, 2 (q = 0)
    stays in the chain, and 1, 3, 4 (means 7.75, 6.2, 3.1) share the chain's last count by items. The joint law of
    two small categories (a trinomial) against scipy's pmf, every margin, and the covariance with the chained one."""
    q = np.array([0.45, 0.25, 0.0, 0.2, 0.1])
    draws, n = 40000, 31
    c = _native_counts(np.full(draws, float(n)), np.tile(3.0 * q, (draws, 1)), seed=8)
    assert np.all(c.sum(1) == n) and np.all(c[:, 2] == 0)
    pairs, index = np.unique(c[:, [1, 3]], axis=0, return_inverse=True)
    observed = np.bincount(index.ravel(), minlength=len(pairs))

    def pvalue(p1, p3):
        full = np.column_stack([pairs, n - pairs.sum(1)])
        expected = stats.multinomial.pmf(full, n, [p1, p3, 1 - p1 - p3]) * draws
        keep = expected >= 5  # rare outcomes pooled into one cell
        obs = np.append(observed[keep], observed[~keep].sum())
        exp = np.append(expected[keep], draws - expected[keep].sum())
        return stats.chisquare(obs, exp).pvalue

    assert pvalue(0.25, 0.2) > 1e-3
    assert pvalue(0.26, 0.19) < 1e-6  # power: a nearby law is rejected
    for k in (0, 1, 3, 4):
        assert chi2_pvalue(c[:, k], stats.binom(n, q[k])) > 1e-3, k
    cov = n * (np.diag(q) - np.outer(q, q))
    se = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / draws) + 1e-12
    assert np.all(np.abs(np.cov(c.T) - cov) < 5 * se)


@needs_native
def test_native_chain_split_all_small():
    """The split's edge: every category small (K = 1000, n = 6001 > 6 K, uniform q: 6 expected items each), so the
    chain is the pseudo-category alone and all n items are drawn one by one. Margins against Binomial(n, 1/K)."""
    draws, n = 20000, 6001
    c = _native_counts(np.full(draws, float(n)), np.full((draws, 1000), 1.0), seed=9)
    assert np.all(c.sum(1) == n)
    for k in (0, 500, 999):
        assert chi2_pvalue(c[:, k], stats.binom(n, 1e-3)) > 1e-3, k


@needs_native
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_native_small_samples_match_exact_recurrence(regime):
    """K = 40 categories and n_t = 5 ... 778 (categorical generations up to n_t = 203 <= 6 K, binomial-chain ones
    from 284): Monte Carlo means within 4 standard errors of Theorem 3.1 / A.1 at every generation."""
    p = np.random.default_rng(3).dirichlet(np.ones(40))
    steps, reps = 15, 4000
    alpha, n = S.constant_alpha(0.3, steps), np.round(5 * 1.4 ** np.arange(steps + 1) + 0.4)
    assert n.min() <= 240 < n.max()
    cfg = M.MultinomialConfig(regime)
    losses = M.simulate(2, p, alpha, n, cfg, reps, progress=False, backend="native")
    theory = M.theory_risk(p, alpha, n, cfg)
    z = (losses.mean(0) - theory) / (losses.std(0, ddof=1) / np.sqrt(reps))
    assert np.all(np.abs(z) < 4.0), z


@needs_native
@pytest.mark.parametrize("regime", M.NATIVE_REGIMES)
def test_native_engines_agree_across_paths(regime):
    """Generations of one run switch between the categorical path and the binomial chain (K = 300; n_t = 1, 10,
    1800 categorical; 1801, 5000 chain, where most categories expect fewer than 10 items and are split off by
    items): the refill and group engines still draw the same losses, bit for bit."""
    from collapse_jax import _native

    if "refill" not in _native.multinomial_engines():
        pytest.skip(f"no refill engine in this build ({_native.multinomial_engines()})")
    p = jnp.asarray(np.random.default_rng(4).dirichlet(np.full(300, 0.5)))
    n = np.array([[10, 1800, 1801, 5000, 1, 1800, 40]], float)
    alpha = np.array([[1.0, 0.5, 0.2, 0.9, 0.0, 0.7, 0.3]])
    tilde, kappa = M.filter_schedules(alpha.copy(), 0.1, 0.4) if regime == "filter" else (alpha, np.ones_like(alpha))
    args = [jnp.asarray(x, jnp.float64) for x in (tilde, n, kappa)]
    keys = jax.random.split(jax.random.key(12), 19)
    refill = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="refill"))
    group = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="group"))
    assert np.all(np.isfinite(refill))
    np.testing.assert_array_equal(refill, group)


@needs_native
@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_native_engines_agree_with_the_series_bound(regime):
    """Counts up to 10^7 with modes n_t / K below 2^16 select the refill engine's series variant (BTRS's bound with
    log (n - m)! - log (n - k)! as a series, rough logs, and the exact bound only for the slots it cannot decide;
    `refill_series` in multinomial_risk.cc): it draws the same losses as the group engine (table and Stirling bounds),
    bit for bit, with counts below and beyond the 2^20-entry table, zero and tiny probabilities, and the chain's
    last categories, where n - m falls below the series' range."""
    from collapse_jax import _native

    if "refill" not in _native.multinomial_engines():
        pytest.skip(f"no refill engine in this build ({_native.multinomial_engines()})")
    q = np.random.default_rng(6).dirichlet(np.full(300, 0.5))
    q[[3, 77]] = 0.0
    q[[5, 150]] = 1e-7
    p = jnp.asarray(q / q.sum())
    n = np.array([[1e3, 6e5, 2e6, 1e7, 3e6, 7e5, 4e4]])
    alpha = np.array([[1.0, 0.5, 0.2, 0.9, 0.0, 0.7, 0.3]])
    args = [jnp.asarray(x, jnp.float64) for x in (alpha, n, np.ones_like(alpha))]
    keys = jax.random.split(jax.random.key(13), 21)
    refill = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="refill"))
    group = np.asarray(M.batched_risk_native(keys, p, *args, regime, engine="group"))
    assert np.all(np.isfinite(refill)) and np.unique(refill[:, :, -1]).size > 15
    np.testing.assert_array_equal(refill, group)


def test_the_theory_refuses_what_the_simulators_refuse():
    """An audit (2026-12-02): the exact recurrences took p off the simplex (negative risks), NaN and K = 1; with x64
    on, n_t above 2**53 ran (mean losses 1.1-9x the exact risk at 1e17-1e20)."""
    alpha, n = S.constant_alpha(0.5, 3), np.full(4, 10)
    # a user trial (2026-12-06): kappa = 0 and n = 0 gave NaN, a NaN kappa a message naming nothing, n = 2.5 ran as
    # 2, a regime name for the config an AttributeError
    for args, message in [((10, 0.0), r"kappa must lie in \(0\.0, 1\.0\]"), ((10, np.nan), "kappa must"),
                          ((0, 0.5), "n must be a whole number >= 1"), ((2.5, 0.5), "n must be a whole number")]:
        with pytest.raises(ValueError, match=message):
            M.expected_inverse_kept(*args)
    assert M.expected_inverse_kept(10.0, 1.0) == 0.1
    with pytest.raises(ValueError, match="config must be a MultinomialConfig, got 'replace'"):
        M.theory_risk([0.5, 0.5], alpha, n, "replace")
    for p, message in [([0.5, 0.9], "p must lie on the simplex"), ([np.nan, 1.0], "p must contain only finite"),
                       ([1.0], "K >= 2")]:
        for fn in (lambda p: M.replace_risk(p, alpha, n), lambda p: M.accumulate_risk(p, alpha, n),
                   lambda p: M.pure_synthetic_limit(p, n), lambda p: M.fixed_alpha_limit(p, 0.5, 10)):
            with pytest.raises(ValueError, match=message):
                fn(p)
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"exceeds 2\*\*53"):
            M.simulate(0, [0.3, 0.7], alpha, np.full(4, 1e17), M.MultinomialConfig("replace"), 4)
    # a user trial (2026-12-06): in float32 the advice was "enable float64", which refused it next
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"exceeds 2\*\*53, beyond exact float64 counts .*lower n_t"):
            M.simulate(0, [0.3, 0.7], alpha, np.full(4, 1e18), M.MultinomialConfig("replace"), 4)
        with pytest.raises(ValueError, match=r"exceeds 2\*\*24.*enable float64 .*exactly up to 2\*\*53"):
            M.simulate(0, [0.3, 0.7], alpha, np.full(4, 1e8), M.MultinomialConfig("replace"), 4)


def test_theory_keeps_its_precision_when_one_category_holds_nearly_all_mass():
    """An audit (2026-12-04): ``s = 1 - ||p||^2`` cancelled when one entry is near 1 (p = [1 - 2e, e, e]: -8e-4 of s at
    e = 1e-15, all of it at [1, 1e-17], where the Monte Carlo mean was 4.5e-33 and the theory 0)."""
    from fractions import Fraction

    alpha, n = S.constant_alpha(0.5, 3), S.constant_size(2**40, 3)
    for p in ([1 - 2e-15, 1e-15, 1e-15], [1.0, 1e-17], [0.25, 0.5, 0.25], [1e-300, 1.0]):
        exact = sum(Fraction(a) * Fraction(b) for i, a in enumerate(p) for j, b in enumerate(p) if i != j)
        total = sum(Fraction(a) for a in p)
        s = float(exact / (total * total)) if float(total) != 1.0 else float(exact)
        assert M._s(np.asarray(p)) == pytest.approx(s, rel=1e-14, abs=0)
        assert M.replace_risk(p, alpha, n)[0] == pytest.approx(s / 2**40, rel=1e-14, abs=0)


def test_filter_theory_takes_grids_as_the_other_regimes_do():
    """A user trial (2026-12-04): theory_risk took (G, T + 1) grids for every regime but the filter."""
    p, n = np.array([0.2, 0.3, 0.5]), S.constant_size(10, 4)
    alpha = np.stack([S.constant_alpha(0.5, 4), S.power_decay_alpha(0.5, 4)])
    cfg = M.MultinomialConfig("filter", 0.1, 0.2)
    grid = M.theory_risk(p, alpha, n, cfg)
    assert grid.shape == (2, 5)
    for row, a in zip(grid, alpha):
        np.testing.assert_array_equal(row, M.theory_risk(p, a, n, cfg))


def test_mean_field_filter_theory_is_refused_where_it_exceeds_one():
    """A user trial (2026-12-05): at n_t kappa_t = 0.04 the mean-field E[1/N_t] ~ 1/(n_t kappa_t) = 25 gave risks of
    25 for p = (1/2, 1/2), whose loss cannot exceed 1/2; the exact form gives 0.4987."""
    alpha, n = S.constant_alpha(0.5, 3), S.constant_size(2, 3)
    exact = M.filter_risk([0.5, 0.5], alpha, n, 0.98, 0.0)
    assert np.all(exact <= 0.5)
    with pytest.raises(ValueError, match="mean_field=True .* at step 1: n_t kappa_t = 0.02; use mean_field=False"):
        M.filter_risk([0.5, 0.5], alpha, n, 0.98, 0.0, mean_field=True)


def test_filter_error_rates_are_refused_under_other_regimes():
    """A user trial (2026-12-04): MultinomialConfig("replace", 0.3, 0.2) ran plain replace, the rates ignored."""
    for regime in ("replace", "accumulate", "accumulate-subsample"):
        with pytest.raises(ValueError, match="type1 and type2 apply to the filter regime only"):
            M.MultinomialConfig(regime, 0.3, 0.0)
        with pytest.raises(ValueError, match="type1 and type2 apply to the filter regime only"):
            M.MultinomialConfig(regime, 0.0, 0.2)
        M.MultinomialConfig(regime, 0.0, 0.0)
    M.MultinomialConfig("filter", 0.3, 0.2)


# the JAX case (16-23 s, mostly three compiles) goes to the slow tier where the native one runs: the JAX filter path's
# law is checked in CI by the reference and exact-recurrence tests above
@pytest.mark.parametrize("backend", [NATIVE_PARAM, pytest.param("jax", marks=pytest.mark.slow if NATIVE else ())])
def test_filter_error_rates_of_one_are_well_defined(backend):
    """A user trial: type2 = 1 (every synthetic point kept) and type1 = 1 (every real one rejected) were refused,
    though Theorem D.2 holds there (kappa_t = 1 - alpha_t a, or (1 - alpha_t) b with alpha~_t = 0). Monte Carlo
    against the theory at both ends, 20,000 replicates."""
    alpha, n = S.constant_alpha(0.5, 4), S.constant_size(20, 4)
    for type1, type2 in ((0.0, 1.0), (1.0, 0.5), (1.0, 1.0)):
        losses = M.simulate(0, P, alpha, n, M.MultinomialConfig("filter", type1, type2), 20_000, backend=backend)
        exact = M.filter_risk(P, alpha, n, type1, type2)
        se = losses.std(axis=0, ddof=1) / np.sqrt(losses.shape[0])
        assert np.all(np.abs(losses.mean(axis=0) - exact) < 4.5 * se), (type1, type2)


def test_a_filter_that_keeps_everything_warns_of_nothing():
    """kappa_t = 1 (alpha_t = 1, type1 = 0): P(N_t = 0) = 0 without a divide-by-zero warning from log1p(-1)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.check_filter_keeps(S.constant_alpha(1.0, 3), S.constant_size(5, 3), 0.0, 0.3)


def test_a_filter_that_keeps_nothing_names_the_step_and_its_alpha():
    """A user trial (2026-12-04): alpha0 = 0 with type2 = 0 was reported against type1 alone; the message now gives
    the step, its alpha_t and what the filter would need."""
    zero = np.r_[1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"is 0 at step t = 1 \(alpha_t = 0, .*it needs type2 > 0"):
        M.check_filter_keeps(zero, S.constant_size(5, 2), 0.0, 0.0)
    with pytest.raises(ValueError, match=r"at step t = 1 \(alpha_t = 1, .*it needs type1 < 1"):
        M.check_filter_keeps(np.r_[1.0, 1.0, 0.5], S.constant_size(5, 2), 1.0, 0.0)


def test_accumulate_pool_must_hold_exact_counts_where_it_is_counted():
    """An audit: with x64 off the jax path kept the accumulate regime's pooled counts in float32, so once
    n_0 + ... + n_T passed 2**24 they were rounded (pool 3.6e7: 101 of 200 replicates' counts did not sum to it);
    the Pallas kernel counts in float32 in either precision. Both are refused before compute, a pool of 2**24 or
    less still runs, replace pools nothing, and the native kernel (float64 counts) runs the larger pool. Beyond
    2**53 no backend counts exactly."""
    alpha, big, small = S.constant_alpha(0.5, 5), S.constant_size(6_000_000, 5), S.constant_size(2_796_202, 5)
    acc = M.MultinomialConfig("accumulate")
    pool = r"n_0 \+ \.\.\. \+ n_T up to 3\.6e\+07 exceeds 2\*\*24"
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match=pool + ": the accumulate pool's counts would not be exact in float32; "
                           "enable float64"):
            M.simulate(0, P, alpha, big, acc, 4, backend="jax")
        with pytest.raises(ValueError, match=pool + ": the Pallas kernel"):
            M.simulate(0, P, alpha, big, acc, 4, backend="pallas")
        with pytest.raises(ValueError, match=pool):  # the experiments' check before their run folder
            M.check_inputs(P, alpha, big, acc, "jax")
        M.check_inputs(P, alpha, small, acc, "jax")  # 6 x 2,796,202 = 2**24 - 4
        M.check_inputs(P, alpha, big, M.MultinomialConfig("replace"), "jax")
        if NATIVE:
            losses = M.simulate(0, P, alpha, big, acc, 4, backend="native")
            assert losses.shape == (4, 6) and losses.dtype == np.float32 and np.all(np.isfinite(losses))
    finally:
        jax.config.update("jax_enable_x64", True)
    M.check_inputs(P, alpha, big, acc, "jax")  # float64 counts
    with pytest.raises(ValueError, match=pool + ": the Pallas kernel"):
        M.check_inputs(P, alpha, big, acc, "pallas")
    huge = np.full(6, 2.0 ** 51)
    for backend in ("jax", *(["native"] if NATIVE else [])):
        with pytest.raises(ValueError, match=r"exceeds 2\*\*53: the accumulate pool's counts would not be exact"):
            M.simulate(0, P, alpha, huge, acc, 4, backend=backend)


def test_the_limits_keep_their_digits_at_huge_sizes():
    """A user trial (2026-12-06): ``1 - (1 - alpha)^2 (1 - 1/n)`` and ``1 - prod(1 - 1/n_i)`` lost their digits at
    token-count sizes (alpha = 0, n = 1e16: 0.56 s instead of s; n = 1e15: 8e-4 off the replace recursion)."""
    s = 1 - np.sum(P ** 2)
    for n in (1e12, 1e16):
        assert M.fixed_alpha_limit(P, 0.0, n) == pytest.approx(s, rel=1e-14)
        assert M.fixed_alpha_limit(P, 1e-12, n) == pytest.approx(s / (n * 1e-12 * (2 - 1e-12) + (1 - 1e-12) ** 2),
                                                                 rel=1e-14)
        sizes = np.full(5, n)
        # 1 - (1 - 1/n)^k by the binomial theorem, without the cancellation
        exact = [s * sum((-1) ** (j + 1) * math.comb(k, j) / n ** j for j in range(1, k + 1)) for k in range(1, 6)]
        np.testing.assert_allclose(M.pure_synthetic_limit(P, sizes), exact, rtol=1e-13)
        np.testing.assert_allclose(M.pure_synthetic_limit(P, sizes), M.replace_risk(P, np.zeros(5), sizes),
                                   rtol=1e-12)


def test_fixed_alpha_limit_takes_whole_floats_and_refuses_the_rest():
    """An audit: ``fixed_alpha_limit(p, alpha, 100.0)`` was refused (n must be an integer) while the schedules
    take whole floats as sample sizes."""
    expected = M.fixed_alpha_limit(P, 0.2, 100)
    for n in (100.0, np.float64(100.0), np.float32(100.0), np.int32(100)):
        assert M.fixed_alpha_limit(P, 0.2, n) == expected, n
    assert M.fixed_alpha_limit(P, 0.2, 1.0) == pytest.approx(1 - np.sum(P ** 2))
    for n in (100.5, 0.0, -3.0, 0, np.nan, np.inf, True, "100", None):
        with pytest.raises(ValueError, match=r"n must be a whole number >= 1 \(an integer, or a float"):
            M.fixed_alpha_limit(P, 0.2, n)


def test_schedules_refuse_bools_mismatched_and_empty_grids():
    """An audit (2026-12-02): n = [True] * 4 ran as n = 1, grids of 2 and 3 schedules failed in NumPy's broadcast
    naming neither, a grid of no schedules returned an empty array, memory_budget = -5 was ignored natively."""
    alpha, n = S.constant_alpha(0.5, 3), np.full(4, 10)
    for a, m, message in [(alpha, [True] * 4, "n must hold real numbers, got dtype bool"),
                          (np.tile(alpha, (2, 1)), np.tile(n, (3, 1)), "grids of 2 and 3 schedules"),
                          (np.zeros((0, 4)), n, "a grid of no schedules")]:
        with pytest.raises(ValueError, match=message):
            M.replace_risk([0.3, 0.7], a, m)
    with pytest.raises(ValueError, match="memory_budget must be an integer >= 1"):
        M.simulate(0, [0.3, 0.7], alpha, n, M.MultinomialConfig("replace"), 4, memory_budget=-5)


def test_schedule_builders_take_whole_floats_and_refuse_strings_and_overflow():
    """An audit (2026-12-04): constant_size(10.0, 3) was refused although array schedules take 100.0; alpha given
    as strings passed (a scalar "0.5" is refused); power = inf and rate = 1e10 gave inf sizes named nowhere."""
    np.testing.assert_array_equal(S.constant_size(10.0, 3), S.constant_size(10, 3))
    with pytest.raises(ValueError, match="alpha must hold numbers, got strings"):
        S.check_alpha(["1", "0.5"])
    with pytest.raises(ValueError, match="alpha must be a schedule or a grid of schedules of one length"):
        S.check_alpha([[1, 0.5], [1]])                # (NumPy's "inhomogeneous shape", unnamed; a user trial)
    with pytest.raises(ValueError, match="n must be a schedule or a grid of schedules of one length"):
        S.check_sizes([[10, 10, 10], [10, 10]])
    with pytest.raises(ValueError, match=r"power must lie in \[0\.0, inf\)"):
        S.polynomial_size(2, math.inf, 3)
    with pytest.raises(ValueError, match=r"rate = 1e\+10 makes n_t overflow float64 within 40 steps"):
        S.geometric_size(2, 1e10, 40)


def test_schedules_refuse_more_steps_than_memory_holds():
    """A user trial (2026-12-06): num_steps = 2**63 gave an empty schedule (constant_size) or an IndexError
    (constant_alpha), and 2**31 asked for 16 GiB without a word."""
    for make in (lambda t: S.constant_size(10, t), lambda t: S.linear_size(10, t), S.pure_synthetic_alpha,
                 lambda t: S.power_decay_alpha(1.0, t)):
        for steps in (2**31, 2**63):
            with pytest.raises(ValueError, match=r"num_steps = [\d,]+ needs about .* use at most"):
                make(steps)
        assert make(3).shape == (4,)


def test_float32_samplers_refuse_counts_they_cannot_hold():
    """A user trial (2026-12-06): with x64 off, sample_multinomial's counts for n = 2**24 + 1 summed to n - 1."""
    key = jax.random.key(0)
    with jax.enable_x64(False):
        for sampler, probs in ((M.sample_multinomial, [0.5, 0.3, 0.2]), (M.binomial, 0.5)):
            with pytest.raises(ValueError, match=r"n = 16777217 exceeds 2\*\*24, beyond exact float32 counts"):
                sampler(key, 2**24 + 1, probs)
        assert float(M.sample_multinomial(key, 2**24, [0.5, 0.3, 0.2]).sum()) == 2**24
    with jax.enable_x64(True):
        assert float(M.sample_multinomial(key, 2**24 + 1, [0.5, 0.3, 0.2]).sum()) == 2**24 + 1


def test_traced_bad_sampler_parameters_draw_nan():
    """A user trial (2026-12-06): inside jit (no checks possible), p = NaN or 1.5 drew 0 or n, n = -3 drew
    [0, -3, 0]: plausible numbers from impossible parameters."""
    key = jax.random.key(0)
    binomial, multinomial = jax.jit(M.binomial), jax.jit(M.sample_multinomial)
    assert np.all(np.isnan([binomial(key, 10.0, jnp.nan), binomial(key, 10.0, 1.5), binomial(key, -3.0, 0.5),
                            binomial(key, 2.5, 0.5)]))
    q = jnp.array([0.5, 0.3, 0.2])
    for n, probs in ((-3.0, q), (10.0, q.at[1].set(jnp.nan)), (10.0, q.at[1].set(-0.1)), (2.5, q)):
        assert np.all(np.isnan(multinomial(key, n, probs))), (n, probs)
    good = multinomial(key, 10.0, q)
    assert float(good.sum()) == 10.0 and np.array_equal(good, M.sample_multinomial(key, 10.0, q))
    assert float(binomial(key, 10.0, 0.5)) == float(M.binomial(key, 10.0, 0.5))


def test_a_zero_d_integer_array_seed_is_the_integer():
    """A user trial (2026-12-06): simulate(seed=np.array(3)) was refused ("got ndarray array(3)")."""
    p, alpha, n = [0.5, 0.5], S.constant_alpha(0.5, 3), S.constant_size(10, 3)
    cfg = M.MultinomialConfig("replace")
    a = M.simulate(np.array(3), p, alpha, n, cfg, 4, backend="jax")
    assert np.array_equal(a, M.simulate(3, p, alpha, n, cfg, 4, backend="jax"))


def test_theory_helpers_name_a_bad_argument_and_keep_numpy_quiet():
    """A user trial (2026-12-06): adaptive_alpha with a number for f failed with "'float' object is not callable",
    and pure_synthetic_limit with n_t = 1 leaked NumPy's divide-by-zero warning (its result is right: s)."""
    with pytest.raises(ValueError, match=r"f must be a function of the risk .* got float 0.5"):
        M.adaptive_alpha([0.5, 0.5], 0.5, [10, 10])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(M.pure_synthetic_limit([0.5, 0.5], [20, 1, 20]), [0.025, 0.5, 0.5])


def test_the_count_limit_follows_the_probabilities_dtype_and_traced_inf_draws_nan():
    """A review (2026-12-06): with x64 on, a float32 q counts in float32 (2**30 + 1 summed to 2**30) but passed the
    float64 limit; a traced n = inf drew inf / [inf, nan], not NaN."""
    key = jax.random.key(0)
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"exceeds 2\*\*24, beyond exact float32 counts"):
            M.sample_multinomial(key, 2**30 + 1, jnp.asarray([0.5, 0.5], jnp.float32))
        assert float(M.sample_multinomial(key, 2**30 + 1, np.array([0.5, 0.5])).sum()) == 2**30 + 1
    assert np.isnan(jax.jit(M.binomial)(key, jnp.inf, 0.5))
    assert np.all(np.isnan(jax.jit(M.sample_multinomial)(key, jnp.inf, jnp.array([0.5, 0.5]))))
