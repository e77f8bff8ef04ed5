"""GMM network: against the NumPy reference (statistically), invariants, contracts, bad input."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gmm_reference
from collapse_jax import gmm_network as gn

BACKENDS = ["jax", "native"]


def small_config(**kw):
    base = dict(num_steps=30)
    base.update(kw)
    return gn.paper_config(4, **base)


# ---------------------------------------------------------------------------------------------------- reference


@pytest.fixture(scope="module")
def reference_fig4():
    rng = np.random.default_rng(12345)
    runs = [gmm_reference.simulate(rng, num_steps=30) for _ in range(300)]
    return np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_numpy_reference_in_distribution(reference_fig4, backend):
    ref_dnorm, ref_pi = reference_fig4
    res = gn.simulate(small_config(record_pi=True), 600, seed=7, backend=backend)
    for t in (1, 2, 5, 10, 20, 30):
        ks = stats.ks_2samp(res.dnorm[:, t], ref_dnorm[:, t])
        assert ks.pvalue > 1e-3, (t, ks)
    # the weight of component 0 of model 0, and the fraction of replicates with a dropped component
    ks = stats.ks_2samp(res.weights[:, 30, 0, 0], ref_pi[:, 30, 0, 0])
    assert ks.pvalue > 1e-3, ks
    dropped_ref = (ref_pi[:, 30] == 0).any(axis=(1, 2)).mean()
    dropped = (res.alive[:, 30] < 2).any(axis=1).mean()
    se = np.sqrt(dropped_ref * (1 - dropped_ref) * (1 / 300 + 1 / 600))
    assert abs(dropped - dropped_ref) < 4 * se + 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_three_components_2d_with_human_data_matches_reference(backend):
    """B = 3 (the log-space ownership path), d = 2, full covariance, human data, constant alpha and c, eps > 0."""
    mu = ((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0))
    sigma = ((1.0, 0.3), (0.3, 0.8))
    kw = dict(mu=mu, sigma=sigma, num_models=2, points_per_step=4, beta=0.4, dirichlet_a=0.7, num_steps=12,
              eps=0.05, num_human=10, pi_ref=(0.5, 0.3, 0.2), alpha=0.05, c=0.01)
    rng = np.random.default_rng(3)
    ref = np.stack([gmm_reference.simulate(rng, **kw)[0] for _ in range(300)])
    res = gn.simulate(gn.make_config(**kw), 600, seed=11, backend=backend)
    for t in (1, 4, 8, 12):
        ks = stats.ks_2samp(res.dnorm[:, t], ref[:, t])
        assert ks.pvalue > 1e-3, (t, ks)


def test_backends_agree_in_distribution():
    cfg = gn.paper_config(6, num_steps=40)
    a = gn.simulate(cfg, 800, seed=1, backend="jax").dnorm
    b = gn.simulate(cfg, 800, seed=2, backend="native").dnorm
    for t in (1, 10, 40):
        assert stats.ks_2samp(a[:, t], b[:, t]).pvalue > 1e-3


def test_ks_detects_a_wrong_algorithm(reference_fig4):
    """The statistical comparison has power: sampling WITH replacement-like bias (beta doubled) is rejected."""
    ref_dnorm, _ = reference_fig4
    wrong = gn.simulate(small_config(beta=1.0), 600, seed=7).dnorm
    assert stats.ks_2samp(wrong[:, 30], ref_dnorm[:, 30]).pvalue < 1e-3


# ---------------------------------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("backend", BACKENDS)
def test_invariants_every_step(backend):
    cfg = gn.paper_config(6, num_steps=60, record_pi=True, record_d=True)
    res = gn.simulate(cfg, 64, seed=3, backend=backend)
    w = res.weights
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-9)
    dropped = w == 0
    assert np.all(dropped[:, 1:] >= dropped[:, :-1]), "a dropped component came back"
    np.testing.assert_array_equal(res.alive, (w > 0).sum(-1))
    d = res.distances
    np.testing.assert_array_equal(d, np.swapaxes(d, -1, -2))
    assert np.all(np.diagonal(d, axis1=-2, axis2=-1) == 0)
    np.testing.assert_allclose(res.dnorm, np.sqrt((d**2).sum((-1, -2))), rtol=1e-12)
    brute = np.linalg.norm(w[:, :, :, None, :] - w[:, :, None, :, :], axis=-1)
    np.testing.assert_allclose(d, brute, atol=1e-12)
    np.testing.assert_array_equal(res.dnorm[:, 0], res.dnorm[:, 1])  # k_0 = 0: no update at t = 0


def test_float32_default_runs_and_stays_on_simplex():
    res = gn.simulate(small_config(record_pi=True), 32, seed=0, dtype=jnp.float32)
    assert res.weights.dtype == np.float32
    np.testing.assert_allclose(res.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(res.dnorm))


# ---------------------------------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_result_and_seeds_differ(backend):
    cfg = small_config()
    a = gn.simulate(cfg, 8, seed=5, backend=backend).dnorm
    b = gn.simulate(cfg, 8, seed=5, backend=backend).dnorm
    c = gn.simulate(cfg, 8, seed=6, backend=backend).dnorm
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, 5:], c[:, 5:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_equals_loop_and_chunking_is_invisible(backend):
    cfg = small_config(num_steps=12, record_pi=True)
    batched = gn.simulate(cfg, 5, seed=9, backend=backend, steps_per_call=5)
    whole = gn.simulate(cfg, 5, seed=9, backend=backend, steps_per_call=12)
    np.testing.assert_array_equal(batched.weights, whole.weights)
    from collapse_jax.replicates import replicate_keys

    keys = replicate_keys(9, 0, 5)
    run = jax.jit(lambda k: gn.run_network(k, cfg, dtype=jnp.float64, backend=backend))
    for r in range(5):
        np.testing.assert_allclose(np.asarray(run(keys[r]).weights), batched.weights[r], rtol=1e-12, atol=1e-14)
    # replicates are indexed globally: a slice starting at replicate 2 reproduces replicates 2..4
    part = gn.simulate(cfg, 3, seed=9, backend=backend, first_replicate=2)
    np.testing.assert_array_equal(part.weights, batched.weights[2:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_equals_eager(backend):
    cfg = small_config(num_steps=6, record_pi=True)
    key = jax.random.key(4)
    jitted = jax.jit(lambda k: gn.run_network(k, cfg, dtype=jnp.float64, backend=backend))(key)
    with jax.disable_jit():
        eager = gn.run_network(key, cfg, dtype=jnp.float64, backend=backend)
    np.testing.assert_allclose(np.asarray(eager.weights), np.asarray(jitted.weights), rtol=1e-12, atol=1e-14)


def test_sharded_equals_unsharded():
    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4
        from collapse_jax import gmm_network as gn
        from collapse_jax.replicates import replicate_mesh
        cfg = gn.paper_config(4, num_steps=25, record_pi=True)
        for backend in ("jax", "native"):
            one = gn.simulate(cfg, 6, seed=3, backend=backend, mesh=replicate_mesh(jax.devices()[:1]))
            four = gn.simulate(cfg, 6, seed=3, backend=backend)
            np.testing.assert_array_equal(one.weights, four.weights)
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta=0.0), "beta must lie in (0.0, 1.0]"),
    (dict(beta=1.5), "beta must lie in"),
    (dict(num_models=0), "num_models must be an integer >= 1"),
    (dict(points_per_step=-1), "points_per_step"),
    (dict(num_steps=0), "num_steps"),
    (dict(dirichlet_a=0.0), "dirichlet_a must lie in (0.0, inf)"),
    (dict(mu=((0.0, 1.0), (1.0, 0.0)), sigma=1.0), "sigma must have shape (dim, dim) = (2, 2)"),
    (dict(sigma=((1.0, 0.5), (0.4, 1.0)), mu=((0.0, 0.0), (1.0, 1.0))), "sigma must be symmetric"),
    (dict(sigma=-1.0), "sigma must be positive definite"),
    (dict(pi_ref=(0.7, 0.7)), "pi_ref must lie on the simplex"),
    (dict(eps=2.0), "eps must lie in [0.0, 1.0]"),
    (dict(alpha=0.0), "alpha must lie in (0.0, 1.0]"),
    (dict(c=0.5), "c must lie in [0.0, 0.5)"),
    (dict(alpha=[0.1, 0.2]), "alpha as a schedule must have one value per step"),
    (dict(mu=[[np.nan], [1.0]]), "mu must contain only finite numbers"),
])
def test_bad_input_names_the_parameter(kwargs, message):
    with pytest.raises(ValueError) as err:
        gn.make_config(**kwargs)
    assert message in str(err.value)


def test_bad_replicate_counts():
    cfg = small_config()
    with pytest.raises(ValueError, match="num_replicates must be an integer >= 1"):
        gn.simulate(cfg, 0)
    with pytest.raises(ValueError, match="num_replicates=.* needs about .* GiB"):
        gn.simulate(gn.paper_config(4, num_steps=2000), 10**9)
