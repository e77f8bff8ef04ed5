"""Tests of collapse_jax.gmm_theory against Monte Carlo of Algorithm 2 (one step) and of the linearised network.

Statistical checks use fixed seeds and a z-score bound of 4.5; each also checks that a wrong variant of the formula
(the seed's 1 - abar^{k+1}, or the noise term without the without-replacement overlap) is rejected by the same data.
"""

from __future__ import annotations

import numpy as np
import pytest

from collapse_jax import gmm_theory as gt

Z_MAX = 4.5


# ----------------------------------------------------------------------------------------------------------------
# Monte Carlo helpers (vectorised over replicates, float64)
# ----------------------------------------------------------------------------------------------------------------


def draw_without_replacement(rng, shape, N, k):
    """Uniformly random ordered k-subsets of range(N), one per entry of ``shape``: (*shape, k)."""
    return np.argsort(rng.random((*shape, N)), axis=-1)[..., :k]


def algorithm2_step(rng, Pi, lls, *, k, alpha, c, replicates):
    """Algorithm 2 (with its pruning step, eps = 0) for every model in ``Pi`` (n, B) over ``replicates`` independent
    draws of k points from the fixed internet with log-likelihood rows ``lls`` (N, B). Returns (R, n, B)."""
    n, B = Pi.shape
    idx = draw_without_replacement(rng, (replicates, n), lls.shape[0], k)
    sel = lls[idx]  # (R, n, k, B)
    p = np.broadcast_to(Pi, (replicates, n, B)).copy()
    for s in range(k):
        with np.errstate(divide="ignore"):
            z = np.log(p) + sel[:, :, s]
        o = np.exp(z - z.max(-1, keepdims=True))
        o /= o.sum(-1, keepdims=True)
        p = (1 - alpha) * p + alpha * (o - c) / (1 - B * c)
        neg = p <= 0
        if neg.any():  # pruning is outside the theory: the tests are set up so that it never fires
            raise AssertionError("pruning fired; choose weights further from 0")
    return p


def fixed_internet(rng, labels, mu, sd=1.0):
    """Points at ``mu[labels] + sd * N(0, 1)`` (d = 1) and their log-likelihood rows (N, B) up to a constant."""
    x = mu[labels] + sd * rng.standard_normal(labels.size)
    return -0.5 * ((x[:, None] - mu[None, :]) / sd) ** 2


def linearised_network(rng, *, replicates, n, B, L, beta, T, a0, num_human=0, pi_ref=None, alpha=None, c=None):
    """Monte Carlo of the linearised network (ownership = indicator of the point's component, no pruning), tracking
    labels only. Returns (Pi history (T+1, R, n, B), composition f (T+1, R, B))."""
    sched = gt.schedule(num_models=n, num_components=B, points_per_step=L, beta=beta, num_steps=T,
                        num_human=num_human, alpha=alpha, c=c)
    R = replicates
    Pi = rng.dirichlet(np.full(B, a0), size=(R, n))
    ref = np.full(B, 1.0 / B) if pi_ref is None else np.asarray(pi_ref)
    labels = np.zeros((R, num_human + n * L * T), dtype=np.int64)
    if num_human:
        labels[:, :num_human] = rng.choice(B, size=(R, num_human), p=ref)
    hist = np.empty((T + 1, R, n, B))
    comp = np.full((T + 1, R, B), np.nan)
    eye = np.eye(B)
    for t in range(T + 1):
        N = int(sched.internet_size[t])
        hist[t] = Pi
        if N:
            comp[t] = eye[labels[:, :N]].mean(axis=1)
        if t == T:
            break
        u = rng.random((R, n, L, 1))
        posts = np.minimum((u > np.cumsum(Pi, -1)[:, :, None, :]).sum(-1), B - 1).reshape(R, n * L)
        k = int(sched.k[t])
        if k:
            a, cc = sched.alpha[t], sched.c[t]
            idx = draw_without_replacement(rng, (R, n), N, k)
            z = np.take_along_axis(labels[:, None, :N], idx, axis=-1)  # (R, n, k)
            new = Pi.copy()
            for s in range(k):
                new = (1 - a) * new + a * (eye[z[:, :, s]] - cc) / (1 - B * cc)
            Pi = new
        labels[:, N:N + n * L] = posts
    return hist, comp


def zscore(samples, expected):
    return (samples.mean() - expected) / (samples.std(ddof=1) / np.sqrt(samples.size))


# ----------------------------------------------------------------------------------------------------------------
# Geometric factor and closed forms
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,alpha", [(1, 1.0), (4, 0.25), (37, 1 / 37), (900, 1 / 900), (10, 0.03), (5, 0.0)])
def test_geometric_sums_match_direct_summation(k, alpha):
    abar = 1 - alpha
    s1, s2 = gt.geometric_sums(k, alpha)
    assert np.isclose(s1, sum(abar**s for s in range(k)), rtol=1e-12)
    assert np.isclose(s2, sum(abar ** (2 * s) for s in range(k)), rtol=1e-12)
    # corrected factor: alpha * sum_{s<k} abar^s = 1 - abar^k, and not the seed's 1 - abar^{k+1}
    assert np.isclose(alpha * s1, 1 - abar**k, rtol=1e-12, atol=1e-15)
    if 0 < alpha < 1:
        assert not np.isclose(alpha * s1, 1 - abar ** (k + 1), rtol=1e-6)


def test_k_fold_one_point_update_equals_closed_form():
    """Composing Appendix A's one-point expected update (Eq. 10) k times gives r p + (1 - r) q, r = abar^k."""
    rng = np.random.default_rng(0)
    B, k = 4, 13
    alpha, c = 1 / k, 1 / (k * B * B)
    p, f = rng.dirichlet(np.ones(B)), rng.dirichlet(np.ones(B))
    q = p.copy()
    for _ in range(k):
        q = (1 - alpha) * q + alpha * (f - c) / (1 - B * c)
    assert np.allclose(q, gt.expected_update(p, f, k=k, alpha=alpha, c=c), rtol=1e-13)
    wrong = (1 - alpha) ** k * p + (1 - (1 - alpha) ** (k + 1)) * (f - c) / (1 - B * c)
    assert not np.allclose(q, wrong, rtol=1e-3)
    assert np.isclose(gt.expected_update(p, f, k=k, alpha=alpha, c=c).sum(), 1.0)


def test_dirichlet_moments_closed_form_vs_monte_carlo():
    rng = np.random.default_rng(1)
    for a, B in [(1.0, 2), (0.5, 5), (3.0, 11)]:
        mean, second = gt.dirichlet_moments(a, B)
        x = rng.dirichlet(np.full(B, a), size=100_000)
        assert np.allclose(mean, 1 / B) and np.isclose(second.sum(), 1.0)  # sum_bc E p_b p_c = 1
        prod = x[:, :, None] * x[:, None, :]
        se = prod.std(0) / np.sqrt(x.shape[0])
        assert np.all(np.abs(prod.mean(0) - second) < Z_MAX * se)
    # E||D(0)||_F^2 for n i.i.d. Dirichlet models: n (n - 1) * 2 (E||p||^2 - ||E p||^2)
    n, B, a = 3, 2, 1.0
    mom = gt.initial_moments(num_models=n, num_components=B, dirichlet_a=a)
    d2 = gt.pair_sq_distances(mom).sum()
    x = rng.dirichlet(np.full(B, a), size=(100_000, n))
    diff = x[:, :, None] - x[:, None, :]
    mc = (diff**2).sum(axis=(1, 2, 3))
    assert abs(zscore(mc, d2)) < Z_MAX
    assert np.isclose(d2, 2.0)  # B = 2, a = 1: E(p_i - p_j)^2 = 1/6, times 2 coordinates, times 6 ordered pairs


def test_schedule_matches_spec():
    s = gt.schedule(num_models=3, num_components=2, points_per_step=3, beta=0.5, num_steps=200)
    assert s.internet_size[0] == 0 and s.internet_size[200] == 1800
    assert s.k[0] == 0 and s.k[1] == 4 and s.k[199] == 895
    assert np.isclose(s.alpha[1], 0.25) and np.isclose(s.c[1], 1 / 16) and s.alpha[0] == 0
    s = gt.schedule(num_models=3, num_components=2, points_per_step=3, beta=0.5, num_steps=5, alpha=0.1,
                    c=np.linspace(0.01, 0.05, 5), num_human=4)
    assert s.k[0] == 2 and np.allclose(s.alpha, 0.1) and np.isclose(s.c[4], 0.05)
    with pytest.raises(ValueError):
        gt.schedule(num_models=3, num_components=2, points_per_step=3, beta=0.5, num_steps=5, c=0.6)


@pytest.mark.parametrize("beta", [0.29, 0.35, 0.5, 0.7, 0.99999999999])
def test_simulator_and_theory_draw_the_same_k(beta):
    """A third audit (2026-12-04): beta |A(t)| one ulp below a whole number (0.7 * 90 = 62.99999999999999) gave the
    simulator 63 (a 1e-9 nudge) and the theory 62; both now read beta as its decimal, exactly."""
    from collapse_jax import gmm_network as gn

    cfg = gn.paper_config(4, beta=beta)
    k = gn.step_schedule(cfg).num_draws
    s = gt.schedule(num_models=cfg.num_models, num_components=cfg.num_components, points_per_step=cfg.points_per_step,
                    beta=beta, num_steps=cfg.num_steps, num_human=cfg.num_human)
    np.testing.assert_array_equal(k, s.k)
    size = np.asarray(s.internet_size[:cfg.num_steps])
    exact = [int(round(beta * 10**11)) * int(n) // 10**11 for n in size]  # integer arithmetic on the decimal
    np.testing.assert_array_equal(k, exact)


def test_mean_field_dnorm_contracts_by_abar_to_the_k():
    pi0 = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    T = 30
    dn = gt.mean_field_dnorm(pi0, points_per_step=3, beta=0.5, num_steps=T)
    s = gt.schedule(num_models=3, num_components=2, points_per_step=3, beta=0.5, num_steps=T)
    expect = dn[0] * np.concatenate([[1.0], np.cumprod(gt.contraction_factor(s.k, s.alpha))])
    assert np.allclose(dn, expect, rtol=1e-8, atol=1e-14)
    assert dn[1] == dn[0] and dn[10] < dn[0] * np.exp(-8)


def test_mean_field_equals_moment_recursion_mean():
    pi0 = np.array([[0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    kw = dict(points_per_step=2, beta=0.4, num_steps=25, num_human=7, pi_ref=[0.5, 0.3, 0.2], alpha=0.08, c=0.01)
    mf = gt.mean_field(pi0, **kw)
    sm = gt.second_moment(num_models=2, num_components=3, pi0=pi0, **kw)
    assert np.allclose(mf, sm["mean"], atol=1e-13)
    assert np.allclose(mf.sum(-1), 1.0)


# ----------------------------------------------------------------------------------------------------------------
# One step of Algorithm 2 against Monte Carlo over the draws (fixed internet, fixed Pi)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_step_sample():
    """Real Algorithm 2 on Gaussian points (B = 3, means 12 apart, Sigma = 1), N = 24 points, k = 18 draws."""
    rng = np.random.default_rng(2)
    mu = np.array([-12.0, 0.0, 12.0])
    labels = np.repeat([0, 1, 2], [12, 8, 4])
    lls = fixed_internet(rng, labels, mu)
    Pi = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.34, 0.33, 0.33]])
    k, N, B = 18, labels.size, 3
    alpha, c = 1 / k, 1 / (k * B * B)
    new = algorithm2_step(rng, Pi, lls, k=k, alpha=alpha, c=c, replicates=60_000)
    f = np.bincount(labels, minlength=B) / N
    return dict(Pi=Pi, new=new, f=f, k=k, N=N, alpha=alpha, c=c, B=B)


def test_mean_field_one_step_vs_monte_carlo(one_step_sample):
    d = one_step_sample
    expect = gt.expected_update(d["Pi"], d["f"], k=d["k"], alpha=d["alpha"], c=d["c"])
    r = (1 - d["alpha"]) ** d["k"]
    wrong = r * d["Pi"] + (1 - r * (1 - d["alpha"])) * (d["f"] - d["c"]) / (1 - d["B"] * d["c"])
    se = d["new"].std(0, ddof=1) / np.sqrt(d["new"].shape[0])
    assert np.all(np.abs(d["new"].mean(0) - expect) < Z_MAX * se)
    assert np.max(np.abs(d["new"].mean(0) - wrong) / se) > 10  # the seed's 1 - abar^{k+1} is rejected


def test_second_moment_one_step_vs_monte_carlo(one_step_sample):
    d = one_step_sample
    new, Pi = d["new"], d["Pi"]
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        sq = np.sum((new[:, i] - new[:, j]) ** 2, axis=-1)
        expect = gt.expected_pair_sq_after_step(Pi[i], Pi[j], d["f"], internet_size=d["N"], k=d["k"],
                                                alpha=d["alpha"], c=d["c"])
        assert abs(zscore(sq, expect)) < Z_MAX, (i, j)
        # without the without-replacement overlap (kappa = S2, as for draws with replacement) the noise is too large
        r = (1 - d["alpha"]) ** d["k"]
        _, s2 = gt.geometric_sums(d["k"], d["alpha"])
        gamma = d["alpha"] / (1 - d["B"] * d["c"])
        no_overlap = r * r * np.sum((Pi[i] - Pi[j]) ** 2) + 2 * gamma**2 * s2 * (1 - np.sum(d["f"] ** 2))
        assert abs(zscore(sq, no_overlap)) > 10
        # and the sampling noise is needed at all: the mean-field alone predicts r^2 ||Pi_i - Pi_j||^2
        assert abs(zscore(sq, r * r * np.sum((Pi[i] - Pi[j]) ** 2))) > 10


def test_second_moment_one_step_single_model_variance(one_step_sample):
    """Cov(Pi_i' | A) = gamma^2 kappa (diag f - f f^T): the ownership (sampling) variance of one model's draws."""
    d = one_step_sample
    s1, s2 = gt.geometric_sums(d["k"], d["alpha"])
    kappa = gt.without_replacement_factor(d["k"], d["alpha"], d["N"])
    assert np.isclose(kappa, s2 - (s1 * s1 - s2) / (d["N"] - 1))
    gamma = d["alpha"] / (1 - d["B"] * d["c"])
    cov = gamma**2 * kappa * (np.diag(d["f"]) - np.outer(d["f"], d["f"]))
    x = d["new"][:, 0]
    mc = np.cov(x.T)
    # standard error of a sample variance ~ sqrt(2 / R) var for near-Gaussian data; use 4th moments for safety
    dev = x - x.mean(0)
    se = np.sqrt(np.var(dev[:, :, None] * dev[:, None, :], axis=0) / x.shape[0])
    assert np.all(np.abs(mc - cov) < Z_MAX * se + 1e-12)


def test_ownership_matrix_well_separated_and_overlapping():
    M = gt.ownership_matrix([-5.0, 5.0], [[1.0]])
    # 10 sigma apart: a point owned by the other component needs |z| > ~5, so the leak is ~ Phi(-4.9) ~ 4e-7
    assert np.allclose(M, np.eye(2), atol=1e-6) and 1e-7 < M[1, 0] and np.allclose(M.sum(0), 1.0)
    M11 = gt.ownership_matrix(5.0 * (np.arange(11) - 5), [[1.0]])
    leak = 1 - M11[5, 5]
    assert 0.005 < leak < 0.05 and np.allclose(M11.sum(0), 1.0)
    # ownership depends on p: a component with 10x smaller weight than its neighbours loses more of its own points
    w = np.full(11, 1.0)
    w[5] = 0.1
    assert 1 - gt.ownership_matrix(5.0 * (np.arange(11) - 5), [[1.0]], w / w.sum())[5, 5] > 2 * leak


# ----------------------------------------------------------------------------------------------------------------
# The multi-step recursion against Monte Carlo of the linearised network (where it is exact)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [
    dict(n=3, B=2, L=3, beta=0.5, T=10, a0=1.0),
    dict(n=2, B=3, L=2, beta=0.7, T=8, a0=2.0, num_human=5, pi_ref=[0.6, 0.3, 0.1], alpha=0.2, c=0.02),
])
def test_second_moment_recursion_vs_linearised_network(cfg):
    rng = np.random.default_rng(3)
    cfg = dict(cfg)
    a0 = cfg.pop("a0")
    n, B, L, beta, T = (cfg.pop(x) for x in ("n", "B", "L", "beta", "T"))
    hist, comp = linearised_network(rng, replicates=12_000, n=n, B=B, L=L, beta=beta, T=T, a0=a0, **cfg)
    th = gt.second_moment(num_models=n, num_components=B, points_per_step=L, beta=beta, num_steps=T,
                          dirichlet_a=a0, **cfg)
    diff = hist[:, :, :, None, :] - hist[:, :, None, :, :]
    d2 = (diff**2).sum(axis=(2, 3, 4))  # (T+1, R)
    for t in range(T + 1):
        assert abs(zscore(d2[t], th["dnorm2"][t])) < Z_MAX, t
        for b in range(B):
            assert abs(zscore(hist[t, :, 0, b], th["mean"][t, 0, b])) < Z_MAX
        if not np.isnan(th["diversity"][t]):
            assert abs(zscore(1 - (comp[t] ** 2).sum(-1), th["diversity"][t])) < Z_MAX, t
    # the mean field alone misses the noise floor by far at the end
    s = gt.schedule(num_models=n, num_components=B, points_per_step=L, beta=beta, num_steps=T, **{
        k: v for k, v in cfg.items() if k in ("num_human", "alpha", "c")})
    mf = th["dnorm2"][0] * np.prod(gt.contraction_factor(s.k, s.alpha)) ** 2
    assert abs(zscore(d2[T], mf)) > 10


def test_noise_floor_constant_and_t_minus_half_law():
    assert np.isclose(gt.noise_floor_constant(0.5), 0.5379, atol=1e-4)
    T = 3000
    th = gt.second_moment(num_models=3, num_components=2, points_per_step=3, beta=0.5, num_steps=T, dirichlet_a=1.0)
    k = th["k"][-1]
    ratio = th["dnorm2"][T] * k / (6 * th["diversity"][T])
    assert abs(ratio / gt.noise_floor_constant(0.5) - 1) < 0.01
    # ||D|| falls like t^{-1/2}: local log-log slope between t = 1000 and 3000
    slope = np.log(th["dnorm2"][3000] / th["dnorm2"][1000]) / np.log(3.0) / 2
    assert abs(slope + 0.5) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(t=0), r"t must lie in \(0\.0, inf\), got 0"),                          # gave inf (divide by zero)
    (dict(t=-1.0), r"t must lie in \(0\.0, inf\), got -1\.0"),                   # gave NaN
    (dict(t=np.array([0.0, 1.0, 2.0])), r"t must lie in \(0\.0, inf\) entrywise, got t\[0\] = 0\.0"),
    (dict(beta=1.5), r"beta must lie in \(0\.0, 1\.0\], got 1\.5"),                # C_beta < 0: gave NaN
    (dict(beta=1.05), r"beta must lie in \(0\.0, 1\.0\], got 1\.05"),              # C_beta > 0 but k_t > |A(t)|
    (dict(diversity=-0.5), r"diversity must lie in \[0\.0, 1\.0\), got -0\.5"),
    (dict(num_models=0), "num_models must be an integer >= 1"),
    (dict(points_per_step=2.5), "points_per_step must be an integer >= 1"),
])
def test_asymptotic_law_refuses_values_outside_its_domain(kwargs, message):
    args = dict(t=10.0, num_models=3, points_per_step=3, beta=0.5, diversity=0.5) | kwargs
    with pytest.raises(ValueError, match=message):
        gt.asymptotic_dnorm(args.pop("t"), **args)


@pytest.mark.parametrize("beta", [1.05, 2.0, 0.0, -0.5, np.nan])
def test_noise_floor_constant_refuses_beta_outside_0_1(beta):
    with pytest.raises(ValueError, match=r"beta must lie in \(0\.0, 1\.0\]"):
        gt.noise_floor_constant(beta)


def test_asymptotic_law_values_inside_its_domain():
    assert np.isclose(gt.noise_floor_constant(1.0), 1 - 2 * (1 - np.exp(-1)) ** 2 / (1 - np.exp(-2)))
    t = np.array([1.0, 4.0, 200.0])
    got = gt.asymptotic_dnorm(t, num_models=3, points_per_step=3, beta=0.5, diversity=0.5)
    np.testing.assert_allclose(got, np.sqrt(2 * gt.noise_floor_constant(0.5) * 0.5 / (0.5 * 3)) / np.sqrt(t))


@pytest.mark.parametrize("call, message", [   # a third audit (2026-12-04): these returned numbers or NaN
    (lambda: gt.expected_update([0.5, 0.5], [0.5, 0.5], k=-1, alpha=0.1, c=0.1), "k must be an integer >= 0"),
    (lambda: gt.expected_update([0.5, 0.5], [0.5, 0.5], k=3, alpha=2.0, c=0.1), r"alpha must lie in \[0\.0, 1\.0\]"),
    (lambda: gt.expected_update([0.5, 0.5], [0.5, 0.5], k=3, alpha=0.1, c=0.6), r"c must lie in \[0\.0, 0\.5\)"),
    (lambda: gt.second_moment(num_steps=3, ownership=np.ones((3, 3))), r"ownership must have shape \(2, 2\)"),
    (lambda: gt.second_moment(num_steps=3, ownership=[[2.0, 0.0], [-1.0, 1.0]]), "columns summing to 1"),
    (lambda: gt.ownership_matrix([-1.0, 1.0], -1.0), r"sigma must lie in \(0\.0, inf\)"),
    (lambda: gt.ownership_matrix([-1.0, 1.0], 1.0, [0.7, 0.7]), "weights must lie on the simplex"),
    # a user trial (2026-12-05): d = 2 means were flattened into six 1-D components, a (2, 2) sigma cut to [0, 0]
    (lambda: gt.ownership_matrix([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], np.eye(2)), r"d = 1 only\), got shape \(3, 2\)"),
    (lambda: gt.ownership_matrix([-5.0, 5.0], np.eye(2)), r"sigma must be one variance \(d = 1 only\)"),
    # a user trial (2026-12-05): these returned negative "expected squares", weights off the simplex, or failed in
    # NumPy (a ZeroDivisionError, a 728 TiB MemoryError) or in Fraction("nan")
    (lambda: gt.expected_pair_sq_after_step([.3, .7], [.6, .4], [.5, .5], internet_size=3, k=10, alpha=.1, c=0),
     "k must be at most internet_size"),
    (lambda: gt.without_replacement_factor(10, 0.1, 3), "k must be at most internet_size"),
    (lambda: gt.expected_pair_sq_after_step([.3, .7], [.6, .4], [3, -2], internet_size=30, k=10, alpha=.1, c=0),
     "f must lie on the simplex"),
    (lambda: gt.expected_update([2.0, 3.0], [0.5, 0.5], k=3, alpha=0.1, c=0.0), "p must lie on the simplex"),
    (lambda: gt.moment_step(gt.initial_moments(num_models=2, num_components=2, dirichlet_a=1, num_human=5),
                            points_per_step=1, k=50, alpha=.1, c=0), "k must be at most the internet's size"),
    (lambda: gt.initial_moments(num_models=2, num_components=2, dirichlet_a=1, num_human=-1), "num_human must be"),
    (lambda: gt.initial_moments(num_models=0, num_components=2, dirichlet_a=1), "num_models must be"),
    (lambda: gt.initial_moments(num_models=2, num_components=2, dirichlet_a=1, num_human=2.5), "num_human must be"),
    (lambda: gt.second_moment(num_models=100_000, num_steps=1), "num_models = 100,000 needs about"),
    (lambda: gt.num_draws(-1, [10]), r"beta must lie in \(0\.0, 1\.0\]"),
    (lambda: gt.num_draws(np.nan, [10]), "beta must"),
    # a user trial (2026-12-06): -9 gave -5, 2.5 ran as 2, a 1-D pi0 was told "shape (?, ?)"
    (lambda: gt.num_draws(0.5, [-9]), "size must hold whole numbers >= 0"),
    (lambda: gt.num_draws(0.5, [np.inf]), "size must hold whole numbers >= 0"),
    (lambda: gt.num_draws(0.5, "ab"), "size must hold whole numbers >= 0"),
    (lambda: gt.num_draws(0.5, [2.5]), "size must hold whole numbers >= 0"),
    (lambda: gt.mean_field_dnorm([0.5, 0.5], points_per_step=3, beta=0.5, num_steps=5),
     r"pi0 must hold each model's mixture weights, shape \(num_models, num_components\), got shape \(2,\)"),
    (lambda: gt.contraction_factor(3, 2.0), r"alpha must lie in \[0\.0, 1\.0\]"),
    (lambda: gt.geometric_sums(np.nan, 0.1), "k must"),
    (lambda: gt.ownership_matrix([], 1.0), "mu must hold at least one"),
    (lambda: gt.ownership_matrix([-1.0, 1.0], 1.0, num_nodes=10**7), "num_nodes must be at most 1000"),
])
def test_theory_steps_refuse_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
    assert np.allclose(gt.ownership_matrix([-1.0, 1.0], 1.0).sum(axis=0), 1.0)  # what _ownership asks of M


def test_median_over_rms_two_components():
    assert np.isclose(gt.quantile_over_rms_two_components(3), np.sqrt(np.log(2)))
    for args, match in [((1,), "num_models must be at least 2"), ((3, 2.0), "q must lie in"),
                        ((3, 0.0), "q must lie in")]:  # NaN or 0 came back (a user trial, 2026-12-05)
        with pytest.raises(ValueError, match=match):
            gt.quantile_over_rms_two_components(*args)
    rng = np.random.default_rng(5)
    p = rng.standard_normal((200_000, 4))  # n = 4 models, Gaussian weights of component 1
    d = np.sqrt(4 * 4 * ((p - p.mean(1, keepdims=True)) ** 2).sum(1))
    ratio = np.median(d) / np.sqrt(np.mean(d**2))
    assert abs(ratio - gt.quantile_over_rms_two_components(4)) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(pi0=np.full((2, 3), 1 / 3)), r"pi0 must have shape \(3, 2\), got \(2, 3\)"),
    (dict(pi0=[[0.5, 0.7], [0.5, 0.5], [0.5, 0.5]]), r"pi0\[0\] must lie on the simplex"),
    (dict(dirichlet_a=-1.0), r"dirichlet_a must lie in \(0\.0, inf\)"),
    (dict(dirichlet_a=0.0), r"dirichlet_a must lie in \(0\.0, inf\)"),
    (dict(alpha=np.nan), r"alpha_t must lie in \(0, 1\]"),
    (dict(alpha=0), r"alpha_t must lie in \(0, 1\] \(the simulator's range\), got 0\.0"),  # (a user trial, 2026-12-07)
    (dict(pi_ref=[0.2, 0.8]), "pi_ref weights the human points' GMM only, and num_human is 0"),  # (the same trial)
    (dict(c=np.nan), "c_t must satisfy"),
    (dict(points_per_step=-3), "points_per_step must be an integer >= 1"),
    (dict(num_human=-5), "num_human must be an integer >= 0"),
    (dict(num_steps=2.7), "num_steps must be an integer >= 0"),
    (dict(beta=np.nan), r"beta must lie in \(0\.0, 1\.0\]"),
    (dict(num_human=4, pi_ref=[0.2, 0.3, 0.5]), r"pi_ref must have shape \(2\)"),
])
def test_the_moment_recursion_refuses_what_the_simulator_refuses(kwargs, message):
    """An audit (2026-12-02): these ran, giving E||D||^2 = -6 (Dirichlet a = -1), NaN trajectories, off-simplex rows
    from a silently reshaped pi0, a truncated T, or NumPy's own broadcast errors."""
    with pytest.raises(ValueError, match=message):
        gt.second_moment(num_steps=kwargs.pop("num_steps", 5), **kwargs)


def test_a_boolean_ownership_matrix_is_its_zero_one_matrix():
    """A review (2026-12-07): ``_checks.finite_array`` began refusing booleans, and with it a 0/1 ownership matrix
    (the identity or a permutation as ``dtype=bool``), which ran as its float matrix before."""
    for M in (np.eye(2, dtype=bool), np.array([[False, True], [True, False]])):
        got = gt.second_moment(num_steps=3, ownership=M)
        want = gt.second_moment(num_steps=3, ownership=M.astype(float))
        np.testing.assert_array_equal(got["dnorm2"], want["dnorm2"])
