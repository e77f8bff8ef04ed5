"""GMM network: against the NumPy reference (statistically), invariants, contracts, bad input."""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gmm_reference
from native_support import BACKENDS_HERE, NATIVE_PARAM, needs_native, skip_if_built_for_avx2
from collapse_jax import driver
from collapse_jax import gmm_network as gn

BACKENDS = BACKENDS_HERE  # loops inside a test
PARAMS = ["jax", NATIVE_PARAM]  # parametrised tests


def small_config(**kw):
    base = dict(num_steps=30)
    base.update(kw)
    return gn.paper_config(4, **base)


# ---------------------------------------------------------------------------------------------------- reference


# The Pallas kernel's interpreted compile (several seconds per configuration) is shared with tests/test_gmm_pallas.py's
# tests of the same configurations when they run in one process: one xdist group.
@pytest.mark.xdist_group("gmm-pallas")
def test_matches_numpy_reference_in_distribution():
    """Every kernel against the NumPy reference (Figure 4 setting, T = 25): KS tests on ||D(t)||_F at several t and
    on a weight, and the fraction of replicates with a dropped component; the same test rejects a wrong beta."""
    T = 25
    rng = np.random.default_rng(12345)
    runs = [gmm_reference.simulate(rng, num_steps=T) for _ in range(250)]
    ref_dnorm, ref_pi = np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs])
    for backend in [*BACKENDS, "pallas"]:  # pallas: the GPU kernel in Pallas's interpreter (float32)
        res = gn.simulate(7, small_config(num_steps=T, record_pi=True), 500, backend=backend)
        for t in (1, 2, 5, 10, 25):
            ks = stats.ks_2samp(res.dnorm[:, t], ref_dnorm[:, t])
            assert ks.pvalue > 1e-3, (backend, t, ks)
        ks = stats.ks_2samp(res.weights[:, T, 0, 0], ref_pi[:, T, 0, 0])
        assert ks.pvalue > 1e-3, (backend, ks)
        dropped_ref = (ref_pi[:, T] == 0).any(axis=(1, 2)).mean()
        dropped = (res.alive[:, T] < 2).any(axis=1).mean()
        se = np.sqrt(dropped_ref * (1 - dropped_ref) * (1 / 250 + 1 / 500))
        assert abs(dropped - dropped_ref) < 4 * se + 1e-9, (backend, dropped, dropped_ref)
    # the comparison has power: the same network reading the whole internet (beta = 1) is rejected (recording what
    # the runs above record: the same static configuration, so no kernel compiles again)
    for backend in ("auto", "pallas"):
        wrong = gn.simulate(7, small_config(num_steps=T, beta=1.0, record_pi=True), 500, backend=backend).dnorm
        assert stats.ks_2samp(wrong[:, T], ref_dnorm[:, T]).pvalue < 1e-3, backend


@pytest.mark.xdist_group("gmm-pallas")
def test_three_components_2d_with_human_data_matches_reference():
    """B = 3 (the log-space ownership path), d = 2, full covariance, human data, constant alpha and c, eps > 0."""
    mu = ((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0))
    sigma = ((1.0, 0.3), (0.3, 0.8))
    kw = dict(mu=mu, sigma=sigma, num_models=2, points_per_step=4, beta=0.4, dirichlet_a=0.7, num_steps=10,
              eps=0.05, num_human=10, pi_ref=(0.5, 0.3, 0.2), alpha=0.05, c=0.01)
    rng = np.random.default_rng(3)
    ref = np.stack([gmm_reference.simulate(rng, **kw)[0] for _ in range(250)])
    for backend in [*BACKENDS, "pallas"]:
        res = gn.simulate(11, gn.make_config(**kw, record_pi=True, record_d=True), 500, backend=backend)
        for t in (1, 4, 10):
            ks = stats.ks_2samp(res.dnorm[:, t], ref[:, t])
            assert ks.pvalue > 1e-3, (backend, t, ks)


@needs_native
def test_backends_agree_in_distribution():
    """Figure 6 setting (B = 11): the two kernels draw from the same distribution."""
    cfg = gn.paper_config(6, num_steps=25)
    a = gn.simulate(1, cfg, 400, backend="jax").dnorm
    b = gn.simulate(2, cfg, 400, backend="native").dnorm
    for t in (1, 10, 25):
        assert stats.ks_2samp(a[:, t], b[:, t]).pvalue > 1e-3


# ---------------------------------------------------------------------------------------------------- invariants


@pytest.mark.fallback
@pytest.mark.parametrize("backend", PARAMS)
def test_invariants_every_step(backend):
    cfg = gn.paper_config(6, num_steps=40, record_pi=True, record_d=True)
    res = gn.simulate(3, cfg, 32, backend=backend)
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


@pytest.mark.fallback
def test_float32_default_runs_and_stays_on_simplex():
    res = gn.simulate(0, small_config(record_pi=True), 32, dtype=jnp.float32)
    assert res.weights.dtype == np.float32
    np.testing.assert_allclose(res.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(res.dnorm))


# ---------------------------------------------------------------------------------------------------- contracts


@pytest.mark.parametrize("backend", PARAMS)
def test_same_seed_same_result_and_seeds_differ(backend):
    cfg = small_config()
    a = gn.simulate(5, cfg, 8, backend=backend).dnorm
    b = gn.simulate(5, cfg, 8, backend=backend).dnorm
    c = gn.simulate(6, cfg, 8, backend=backend).dnorm
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:, 5:], c[:, 5:])


@pytest.mark.parametrize("backend", PARAMS)
def test_vmap_equals_loop_and_chunking_is_invisible(backend):
    cfg = small_config(num_steps=12, record_pi=True)
    batched = gn.simulate(9, cfg, 5, backend=backend)
    from collapse_jax.replicates import replicate_keys

    keys = replicate_keys(9, 0, 5)
    run = jax.jit(lambda k: gn.run_network(k, cfg, dtype=jnp.float64, backend=backend))
    for r in range(5):
        np.testing.assert_allclose(np.asarray(run(keys[r]).weights), batched.weights[r], rtol=1e-12, atol=1e-14)
    if backend == "native":  # vmap of the single-network kernel: one kernel call over the batch
        mapped = jax.jit(jax.vmap(lambda k: gn.run_network(k, cfg, dtype=jnp.float64, backend=backend)))(keys)
        np.testing.assert_array_equal(np.asarray(mapped.weights), batched.weights)
    # replicates are indexed globally: a slice starting at replicate 2 reproduces replicates 2..4 (in chunks of 2, the
    # last one padded: the program compiled once for both simulate calls below)
    part = gn.simulate(9, cfg, 3, backend=backend, first_replicate=2, chunk_size=2)
    np.testing.assert_array_equal(part.weights, batched.weights[2:])
    chunked = gn.simulate(9, cfg, 5, backend=backend, chunk_size=2)  # replicates per call
    np.testing.assert_array_equal(chunked.weights, batched.weights)


# jit == eager for the portable kernel is also tests/test_contracts.py's gmm_network contract: run in CI there
@pytest.mark.parametrize("backend", [pytest.param("jax", marks=pytest.mark.slow), NATIVE_PARAM])
def test_jit_equals_eager(backend):
    cfg = small_config(num_steps=4, record_pi=True)
    key = jax.random.key(4)
    jitted = jax.jit(lambda k: gn.run_network(k, cfg, dtype=jnp.float64, backend=backend))(key)
    with jax.disable_jit():
        eager = gn.run_network(key, cfg, dtype=jnp.float64, backend=backend)
    np.testing.assert_allclose(np.asarray(eager.weights), np.asarray(jitted.weights), rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # sharding over devices is checked in CI by tests/test_driver.py
def test_sharded_equals_unsharded():
    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4
        from collapse_jax import gmm_network as gn
        from collapse_jax.replicates import replicate_mesh
        cfg = gn.paper_config(4, num_steps=15, record_pi=True)
        for backend in BACKENDS_HERE:
            one = gn.simulate(3, cfg, 6, backend=backend, mesh=replicate_mesh(jax.devices()[:1]))
            four = gn.simulate(3, cfg, 6, backend=backend)
            np.testing.assert_array_equal(one.weights, four.weights)
        print("ok")
    """).replace("BACKENDS_HERE", repr(BACKENDS))
    # the suite's XLA flags (tests/conftest.py) kept: the child compiles as fast as the tests do
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


@needs_native
def test_native_scalar_engine_is_bit_identical():
    """The vector kernel (16/8 lanes with AVX-512/AVX2) against the same arithmetic one lane at a time: B = 2 (its
    own update path), B = 11, and B = 3 in d = 2 with human data, eps > 0, constant alpha and c, in float64;
    37 replicates, so the last group has padding lanes."""
    from collapse_jax.replicates import replicate_keys

    keys = replicate_keys(21, 0, 37)
    three = gn.make_config(mu=((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0)), sigma=((1.0, 0.3), (0.3, 0.8)), num_models=2,
                           points_per_step=4, beta=0.4, num_steps=12, eps=0.05, num_human=10, alpha=0.05, c=0.01,
                           record_pi=True)
    for cfg, dtype in ((small_config(num_steps=40, record_pi=True), jnp.float32),
                       (gn.paper_config(6, num_steps=25, record_pi=True), jnp.float32), (three, jnp.float64)):
        vec = gn.native_records(keys, cfg, dtype)
        one = gn.native_records(keys, cfg, dtype, engine="scalar")
        np.testing.assert_array_equal(np.asarray(vec.weights), np.asarray(one.weights))
        np.testing.assert_array_equal(np.asarray(vec.dnorm), np.asarray(one.dnorm))
        np.testing.assert_array_equal(np.asarray(vec.alive), np.asarray(one.alive))
        assert np.asarray(vec.weights).dtype == dtype


@needs_native
@pytest.mark.parametrize("march", [pytest.param("x86-64-v3", marks=skip_if_built_for_avx2),
                                   pytest.param("x86-64", marks=pytest.mark.slow)])
def test_native_avx2_and_generic_builds_draw_the_same(march, tmp_path):
    """The kernel built for AVX2 (x86-64-v3: 8 float32 lanes) and for plain x86-64 (4 lanes) gives bit-identical
    results to this machine's build (16 lanes where it has AVX-512): draws do not depend on the CPU kind. Each
    build compiles the native library once (~15 s on two cores, cached by source version)."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("x86-64 only")
    code = textwrap.dedent(f"""
        import jax, numpy as np, jax.numpy as jnp
        jax.config.update("jax_enable_x64", {bool(jax.config.jax_enable_x64)})
        from collapse_jax import _native, gmm_network as gn
        from collapse_jax.replicates import replicate_keys
        assert _native.gmm_lanes() == {{"x86-64-v3": 8, "x86-64": 4}}["{march}"], _native.gmm_lanes()
        keys = replicate_keys(21, 0, 37)
        out = {{}}
        for name, cfg in (("fig4", gn.paper_config(4, num_steps=30, record_pi=True)),
                          ("fig6", gn.paper_config(6, num_steps=15, record_pi=True))):
            out[name] = np.asarray(gn.native_records(keys, cfg, jnp.float32).weights)
        np.savez("{tmp_path}/w.npz", **out)
    """)
    env = dict(os.environ, COLLAPSE_JAX_MARCH=march, JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    other = np.load(tmp_path / "w.npz")
    from collapse_jax.replicates import replicate_keys

    keys = replicate_keys(21, 0, 37)
    for name, cfg in (("fig4", gn.paper_config(4, num_steps=30, record_pi=True)),
                      ("fig6", gn.paper_config(6, num_steps=15, record_pi=True))):
        here = np.asarray(gn.native_records(keys, cfg, jnp.float32).weights)
        np.testing.assert_array_equal(here, other[name])


@needs_native
def test_native_replicate_depends_only_on_its_index():
    """Replicates run in groups of ~32 inside the kernel and in shards over devices: a slice that starts inside a
    group and crosses into the next reproduces the whole batch's replicates exactly, and so does a single one."""
    cfg = small_config(num_steps=20, record_pi=True)
    whole = gn.simulate(4, cfg, 70, backend="native", progress=False)
    part = gn.simulate(4, cfg, 5, backend="native", first_replicate=30, progress=False)
    np.testing.assert_array_equal(part.weights, whole.weights[30:35])
    one = gn.simulate(4, cfg, 1, backend="native", first_replicate=69, progress=False)
    np.testing.assert_array_equal(one.weights, whole.weights[69:])


@needs_native
def test_native_far_components_match_reference():
    """Components 30 standard deviations apart: a point far from every component a model still has makes the
    likelihood-ratio ownership underflow, and the kernel must fall back to log space (as the reference computes)."""
    kw = dict(mu=((-30.0,), (0.0,), (30.0,)), num_models=3, points_per_step=3, beta=0.5, dirichlet_a=0.3,
              num_steps=15)
    rng = np.random.default_rng(8)
    ref = np.stack([gmm_reference.simulate(rng, **kw)[1] for _ in range(200)])
    res = gn.simulate(5, gn.make_config(**kw, record_pi=True), 400, backend="native", progress=False)
    w = res.weights
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    for t in (5, 15):
        ks = stats.ks_2samp(w[:, t, 0, 0], ref[:, t, 0, 0])
        assert ks.pvalue > 1e-3, (t, ks)


@needs_native
def test_native_progress_counts_every_update():
    """The progress bar follows the kernel's count of point updates: R n sum_t k_t for one simulation."""
    from collapse_jax import _native

    cfg = small_config(num_steps=25)
    before = _native.gmm_progress()
    gn.simulate(1, cfg, 9, backend="native", progress=True)
    assert _native.gmm_progress() - before == 9 * cfg.num_models * int(gn.step_schedule(cfg).num_draws.sum())


@pytest.mark.fallback
def test_without_native_kernels_auto_uses_jax():
    code = textwrap.dedent("""
        from collapse_jax import gmm_network as gn
        assert gn.resolve_backend("auto") == "jax"
        res = gn.simulate(0, gn.paper_config(4, num_steps=5), 2, progress=False)
        assert res.dnorm.shape == (2, 6)
        print("ok")
    """)
    env = dict(os.environ, COLLAPSE_JAX_NATIVE="0", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------- params and grids

# B = 3 in d = 2 with human data: a grid cell may change the geometry, the start and the schedules
GRID_BASE = dict(mu=((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0)), sigma=((1.0, 0.3), (0.3, 0.8)), num_models=2,
                 points_per_step=2, beta=0.5, num_steps=6, num_human=4, record_pi=True)


@pytest.mark.fallback
@pytest.mark.parametrize("backend", PARAMS)
def test_grid_cells_equal_the_cells_run_alone(backend):
    """A grid (a list of Params) over beta (so k_t and the default alpha_t, c_t), eps, Sigma, mu, a and pi_ref: the
    results have a leading grid axis, and cell g equals, bit for bit, that cell run alone with the same seed (common
    random numbers)."""
    base = gn.make_config(**GRID_BASE)
    cells = [base, base.replace(beta=0.9, eps=0.1),
             base.replace(mu=((-1.0, 0.0), (1.0, 0.0), (0.0, 2.0)), sigma=((1.5, -0.2), (-0.2, 0.6)), dirichlet_a=2.0,
                          pi_ref=(0.2, 0.2, 0.6))]
    grid = gn.simulate(4, base, 5, params=[gn.make_params(c) for c in cells], backend=backend)
    assert grid.dnorm.shape == (3, 5, 7) and grid.weights.shape == (3, 5, 7, 2, 3) and grid.distances is None
    for g, cell in enumerate(cells):
        alone = gn.simulate(4, cell, 5, backend=backend)
        for name, a, b in zip(gn.GMMNetworkResult._fields, grid, alone):
            if b is not None:
                np.testing.assert_array_equal(a[g], b, err_msg=f"{backend}: cell {g}, {name}")
    assert not np.array_equal(grid.weights[0, :, 1:], grid.weights[1, :, 1:])
    np.testing.assert_array_equal(grid.weights[0, :, 0], grid.weights[1, :, 0])  # the same Pi(0): the same draws
    one = gn.simulate(4, base, 5, params=[gn.make_params(base)], backend=backend)  # a grid of one cell
    np.testing.assert_array_equal(one.weights, grid.weights[:1])


def test_a_sweep_over_values_compiles_once():
    """Configurations that differ only in values share their static part, so the portable kernel does not recompile
    for other values of beta (k_t, alpha_t, c_t), neither run alone nor in a grid of the same layout."""
    cfg = small_config(num_steps=8)
    driver._COMPILED.clear()

    def compiled():
        return {key: fn._cache_size() for key, fn in driver._COMPILED.items() if key[0] is gn.kernel}

    sizes = []
    for betas in ((0.2, 0.6), (0.4, 1.0)):
        gn.simulate(1, cfg.replace(beta=betas[0]), 3, backend="jax")
        grid = gn.simulate(1, cfg, 3, params=[gn.make_params(cfg.replace(beta=b)) for b in betas], backend="jax")
        assert grid.dnorm.shape == (2, 3, 9)
        sizes.append(compiled())
    assert sizes[0] == sizes[1] and sorted(sizes[0].values()) == [1, 1], sizes  # one run alone, one grid layout
    grid_axes = driver.stack_cells([gn.make_params(cfg.replace(beta=b)) for b in (0.2, 0.6)])[1]
    assert grid_axes.num_draws == 0 and grid_axes.alpha == 0 and grid_axes.mu is None


def test_bad_params_name_the_field():
    cfg = small_config(num_steps=5)
    good = gn.make_params(cfg)
    cases = [(good._replace(num_draws=good.num_draws + 100), "params.num_draws must hold integers k_t with 0 <= k_t"),
             (good._replace(num_draws=good.num_draws[:4]), "params.num_draws must have shape (5)"),
             (good._replace(alpha=np.zeros(5)), "params.alpha must lie in (0.0, 1.0]"),
             (good._replace(c=np.full(5, 0.6)), "params.c must lie in [0.0, 0.5)"),
             (good._replace(eps=np.nan), "params.eps must contain only finite numbers"),
             (good._replace(mu=np.zeros((3, 1))), "params.mu must have shape (2, 1)"),
             (good._replace(pi_ref=[0.9, 0.9]), "params.pi_ref must lie on the simplex"),
             (good._replace(chol=np.array([[-1.0]])), "params.chol must be the lower Cholesky factor")]
    for params, message in cases:
        for given in (params, [good, params]):
            with pytest.raises(ValueError) as err:
                gn.simulate(0, cfg, 2, params=given)
            assert message in str(err.value)
    fixed = cfg.replace(initial_weights=((0.5, 0.5),) * 3)
    with pytest.raises(ValueError, match=r"params.initial_weights\[1\] must lie on the simplex"):
        gn.simulate(0, fixed, 2, params=gn.make_params(fixed)._replace(initial_weights=[[1, 0], [1, 1], [0, 1]]))
    for given in ([], "beta"):
        with pytest.raises(ValueError, match="params must be None, a Params or a non-empty list of Params"):
            gn.simulate(0, cfg, 2, params=given)
    # params of another configuration named a field never set (a user trial, 2026-12-05): the sizes are said too
    with pytest.raises(ValueError, match=r"params.initial_weights must have shape \(3, 2\), got \(4, 2\): params made "
                                         r"for another configuration\? this one has num_models = 3"):
        gn.simulate(0, cfg, 2, params=[gn.make_params(cfg.replace(num_models=4))])


@pytest.mark.parametrize("backend", PARAMS)
def test_a_bad_seed_is_refused_before_the_bar_opens(backend, capsys):
    """A user trial (2026-12-07): simulate(-1, cfg, 2) drew 'gmm-network: 0%| 0/2' before the seed's error."""
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
        gn.simulate(-1, small_config(num_steps=3), 2, backend=backend, progress=True)
    assert "gmm-network" not in capsys.readouterr().err


def test_pi_ref_without_human_points_is_refused():
    """A user trial (2026-12-07): make_config(pi_ref=[.2, .8]) with num_human = 0, and the theory's, were accepted
    with no effect, while the command refuses --pi-ref without --human."""
    from collapse_jax import gmm_theory as gt

    message = "pi_ref weights the human points' GMM only, and num_human is 0"
    with pytest.raises(ValueError, match=message):
        gn.make_config(pi_ref=[.2, .8])
    with pytest.raises(ValueError, match=message):
        gt.mean_field(np.full((3, 2), 0.5), points_per_step=3, beta=0.5, num_steps=4, pi_ref=[.2, .8])
    assert gn.make_config(pi_ref=[.2, .8], num_human=5).pi_ref == (.2, .8)


def test_params_of_the_other_kind_of_start_are_refused():
    """A user trial (2026-12-07): Dirichlet-start Params in a grid of a fixed-start configuration started every
    model at (0.5, 0.5), and fixed-start Params on a Dirichlet configuration dropped initial_weights, silently."""
    cfg = gn.paper_config(4, num_steps=20, record_pi=True)
    fixed = cfg.replace(initial_weights=[[.9, .1], [.1, .9], [.5, .5]])
    with pytest.raises(ValueError, match=r"params.initial_weights are all 0: params made for a configuration that "
                                         r"draws Pi\(0\) from Dirichlet\(a\)"):
        gn.simulate(0, fixed, 5, params=[gn.make_params(fixed), gn.make_params(cfg)])
    with pytest.raises(ValueError, match=r"params.initial_weights are set .* draws Pi\(0\) from Dirichlet\(a\) and "
                                         r"would ignore them"):
        gn.simulate(0, cfg, 5, params=gn.make_params(fixed))
    res = gn.simulate(0, fixed, 2, params=[gn.make_params(fixed)] * 2, backend="jax", progress=False)
    np.testing.assert_array_equal(res.weights[:, :, 0], np.broadcast_to(fixed.initial_weights, (2, 2, 3, 2)))


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
    (dict(pi_ref=(0.7, 0.7), num_human=4), "pi_ref must lie on the simplex"),
    (dict(eps=2.0), "eps must lie in [0.0, 1.0]"),
    (dict(alpha=0.0), "alpha must lie in (0.0, 1.0]"),
    (dict(c=0.5), "c must lie in [0.0, 0.5)"),
    (dict(alpha=[0.1, 0.2]), "alpha as a schedule must have one value per step"),
    (dict(mu=[[np.nan], [1.0]]), "mu must contain only finite numbers"),
    # a third audit (2026-12-04): tracebacks or NumPy's messages, and int8 alive counts wrapping at B = 128
    (dict(mu={"a": 1}), "mu must be a number or a (nested) list of numbers"),
    (dict(mu=[[0.0, 0.0], [1.0]]), "mu must be a number or a rectangular (nested) list"),
    (dict(sigma="abc"), "sigma must be a number or a (nested) list of numbers"),
    (dict(alpha=[0.5, "x", 0.5]), "alpha must be a number or a rectangular (nested) list"),
    (dict(mu=[[5.0 * b] for b in range(128)]), "num_components must be at most 127"),
    # a fourth audit (2026-12-04): float32 rounded 1 - B c to 0 and both kernels wrote NaN records from t = 2
    (dict(mu=[[-2.5], [2.5]], c=0.49999999), "c must be below 1/B = 0.5 by more than 1e-06 / B"),
])
def test_bad_input_names_the_parameter(kwargs, message):
    with pytest.raises(ValueError) as err:
        gn.make_config(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("call, message", [
    (lambda cfg: gn.run_network(jax.random.key(0), cfg, dtype=jnp.int32), "dtype must be float32 or float64"),
    (lambda cfg: gn.run_network(0, cfg), "key must be a PRNG key"),
])
def test_run_network_refuses_a_bad_dtype_or_key_before_tracing(call, message):
    """A user trial (2026-12-05): an int dtype failed after tracing with JAX's "dtype argument to `uniform`" and an
    int key with JAX's "invalid PRNG key data", neither naming run_network's parameter."""
    cfg = gn.make_config(num_models=2, points_per_step=2, num_steps=3)
    with pytest.raises(ValueError, match=message):
        call(cfg)


def test_a_dirichlet_a_whose_gamma_draws_underflow_is_refused():
    """A user trial (2026-12-04): dirichlet_a = 1e-40 in float32 gave NaN dnorm at every step (all-zero gamma draws)."""
    cfg = small_config().replace(dirichlet_a=1e-40)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"dirichlet_a must be >= 1\.175e-38 in float32 .* use float64"):
            gn.simulate(0, cfg, 4)
        assert np.all(np.isfinite(gn.simulate(0, small_config().replace(dirichlet_a=2e-38), 4).dnorm))
    assert np.all(np.isfinite(gn.simulate(0, cfg, 4, dtype=jnp.float64).dnorm))  # float64 takes it


@pytest.mark.parametrize("backend", PARAMS)
def test_means_too_far_apart_for_the_dtype_are_refused(backend):
    """A user trial (2026-12-07): B >= 3 with sigma = 1e-38 (float32) or means 1e20 apart gave NaN dnorm and alive
    counts of 0 silently (log-likelihoods overflowing, ownership 0 / 0); B = 2 stays finite. Refused before any
    compute, naming mu, sigma and the distance the dtype resolves; just inside it every record is finite."""
    def run(mu, sigma, dtype):
        return gn.simulate(0, small_config(mu=mu, sigma=sigma, num_steps=10), 20, backend=backend, dtype=dtype,
                           progress=False)

    with jax.enable_x64(True):
        for mu, sigma in (([-5, 0, 5], 1e-38), ([-5e19, 0, 5e19], 1.0)):
            with pytest.raises(ValueError, match=r"mu and sigma: components 0 and 2 are 1e\+20 standard deviations "
                                                 r"apart .* float32 resolves at most 9\.223e\+18 .* use float64"):
                run(mu, sigma, jnp.float32)
            assert np.all(np.isfinite(run(mu, sigma, jnp.float64).dnorm))
        with pytest.raises(ValueError, match=r"float64 resolves at most 6\.704e\+153 .*widen sigma$"):
            run([-5, 0, 5], 1e-320, jnp.float64)
        for dtype, spacing in ((jnp.float32, 4e18), (jnp.float64, 3e153)):  # just inside: finite, weights on simplex
            res = run([-spacing, 0, spacing], 1.0, dtype)                     # (the programs compiled above)
            assert np.all(np.isfinite(res.dnorm)) and np.all(res.alive >= 1)
        assert np.all(np.isfinite(run([-5, 5], 1e-38, jnp.float32).dnorm))  # B = 2: a clamped ratio, finite


def test_cli_refuses_means_too_far_apart_before_the_run_folder(tmp_path, capsys):
    """A user trial (2026-12-07): gmm-network --mu '[-5,0,5]' --sigma 1e-38 printed 'median nan' and exited 0."""
    from collapse_jax import cli

    out = tmp_path / "run"
    with jax.enable_x64(False):
        assert cli.main(["gmm-network", "--mu", "[-5,0,5]", "--sigma", "1e-38", "--replicates", "4", "--steps", "3",
                         "--no-plots", "--no-progress", "--out", str(out)]) == 2
    assert "float32 resolves at most" in capsys.readouterr().err and not out.exists()


def test_two_component_ownership_of_a_dropped_component_is_zero_not_nan():
    """An audit (2026-12-04): with p_0 = 0 (dropped) and p_1 rho underflowing to 0 (eps > 0 keeps p_1 near 1/k_t,
    rho clamped at exp(-80)), o_0 = 0 / 0 gave NaN weights in the JAX kernel from step 343 of a Figure-4-like run;
    the native kernel treats a dropped component on its own branch."""
    p = jnp.asarray([[0.0, 1e-20], [0.25, 0.75], [0.0, 1.0]], jnp.float32)
    feat = jnp.asarray([[1e-30], [2.0], [0.5]], jnp.float32)
    o = np.asarray(gn.ownership(p, feat))
    np.testing.assert_allclose(o, [[0.0, 1.0], [0.25 / (0.25 + 1.5), 1.5 / 1.75], [0.0, 1.0]], rtol=1e-6)


def test_an_internet_too_large_for_the_native_kernel():
    """Its 32-bit offsets were checked only inside the kernel (a JaxRuntimeError after compiling, with the run folder
    already written): auto now takes the JAX kernel, native is refused before anything runs."""
    cfg = gn.paper_config(6, num_models=100, points_per_step=100, num_steps=1300)
    assert gn.backend_for(cfg, "jax") == "jax"
    if gn.resolve_backend("auto") == "native":
        assert gn.backend_for(cfg, "auto") == "jax" and gn.backend_for(gn.paper_config(4), "auto") == "native"
        with pytest.raises(ValueError, match="the native kernel supports internets of < 2\\^27 / num_components"):
            gn.simulate(0, cfg, 1, backend="native")


def test_configs_built_directly_are_validated_when_used():
    """A user trial (2026-12-06): ``GMMNetworkConfig(...)`` skipped make_config's checks (a negative variance gave
    numpy's LinAlgError, ``mu=[-5, 5]`` a TypeError)."""
    with pytest.raises(ValueError, match="sigma must be positive definite"):
        gn.simulate(0, gn.GMMNetworkConfig(sigma=((-1.0,),), num_steps=5), 4, progress=False)
    with pytest.raises(ValueError, match="beta must lie in"):
        gn.make_params(gn.GMMNetworkConfig(beta=1.5, num_steps=5))
    with pytest.raises(ValueError, match="num_models must be"):
        gn.run_network(jax.random.key(0), gn.GMMNetworkConfig(num_models=0, num_steps=5))
    direct = gn.simulate(0, gn.GMMNetworkConfig(mu=[-5, 5], num_steps=5), 4, progress=False)  # as make_config reads it
    np.testing.assert_array_equal(direct.dnorm, gn.simulate(0, gn.make_config(num_steps=5), 4, progress=False).dnorm)


def test_bad_replicate_counts():
    cfg = small_config()
    with pytest.raises(ValueError, match="num_replicates must be an integer >= 1"):
        gn.simulate(0, cfg, 0)
    with pytest.raises(ValueError, match="num_replicates = .* needs about .* GiB"):
        gn.simulate(0, gn.paper_config(4, num_steps=2000), 10**9)
    for kwargs, name in [(dict(chunk_size=0), "chunk_size"), (dict(first_replicate=-1), "first_replicate"),
                         (dict(memory_budget=0), "memory_budget")]:
        with pytest.raises(ValueError, match=f"{name} must be an integer"):
            gn.simulate(0, cfg, 2, **kwargs)
    # below one replicate's bound (gmm_network.bytes_per_replicate) it ran anyway, one replicate per device; docs/
    # driver.md promises a ValueError naming memory_budget (a user trial, 2026-12-05)
    for backend in BACKENDS_HERE:
        with pytest.raises(ValueError, match="one replicate per device.* memory_budget"):  # (the portable kernel's
            gn.simulate(0, cfg, 2, memory_budget=100, backend=backend)                   # names the sizes too)
    with pytest.raises(ValueError, match="config must be a GMMNetworkConfig"):
        gn.simulate(cfg, 2, 5)  # the pre-issue-10 argument order (config, num_replicates, seed)


# ---------------------------------------------------------------------------------------------------- portable kernel at scale


def test_bounded_uniform_is_exact_lemire():
    """The 16-bit-limb high word equals the 64-bit product's, and the acceptance is Lemire's rule (low word of the
    product >= 2^32 mod m) computed in 64-bit NumPy, which makes accepted values exactly uniform (Lemire 2019)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**32, 200_000, dtype=np.uint64)
    m = rng.integers(1, 2**32, 200_000, dtype=np.uint64)
    m[:6] = [1, 2, 3, 65_535, 65_536, 2**32 - 1]
    hi = np.asarray(gn._mulhi(jnp.asarray(a, jnp.uint32), jnp.asarray(m, jnp.uint32)))
    np.testing.assert_array_equal(hi, (a * m) >> np.uint64(32))
    bits = jnp.arange(2**20, dtype=jnp.uint32) << 12  # 2^20 inputs spread over the 32-bit range
    for bound in (3, 7, 1000, 65_537, 1_000_003):
        r, ok = gn.bounded_uniform(bits | 0x5A5, jnp.uint32(bound))
        r, ok = np.asarray(r), np.asarray(ok)
        assert r.max() < bound
        low = (np.asarray(bits | 0x5A5, np.uint64) * bound) & np.uint64(2**32 - 1)
        np.testing.assert_array_equal(ok, low >= (2**32 % bound))


def test_scatter_and_one_hot_bitmaps_draw_the_same(monkeypatch):
    """The two forms of the bitmap update are the same arithmetic: identical records for the same seed."""
    cfg = small_config(num_steps=12)
    one_hot = gn.simulate(2, cfg, 6, backend="jax", progress=False).dnorm
    monkeypatch.setattr(gn, "SCATTER_MIN_WORDS", 0)
    driver._COMPILED.clear()  # the driver caches the compiled kernel: recompile with the scatter form
    scattered = gn.simulate(2, cfg, 6, backend="jax", progress=False).dnorm
    driver._COMPILED.clear()
    np.testing.assert_array_equal(one_hot, scattered)


@needs_native
@pytest.mark.slow  # a scale check (about 35 s on a 2-core AMD EPYC), run with pytest -m slow
def test_portable_kernel_takes_internets_beyond_65536_points():
    """An internet of 100,000 human points (beyond the old 2^16 cap): the portable kernel agrees with the native
    one in distribution."""
    cfg = gn.paper_config(4, num_human=100_000, beta=0.002, num_steps=3)
    a = gn.simulate(1, cfg, 300, backend="jax", progress=False).dnorm
    b = gn.simulate(2, cfg, 300, backend="native", progress=False).dnorm
    for t in (1, 2, 3):
        assert stats.ks_2samp(a[:, t], b[:, t]).pvalue > 1e-3, t


@needs_native
def test_gmm_network_command_runs_resumes_and_takes_the_shared_flags_anywhere(tmp_path):
    """The generated flags reach the network, the shared --backend / --no-progress work after the command name as
    before it, the manifest names the kernel that ran, and a rerun into the same folder reuses its saved batches."""
    import json

    from collapse_jax import _native, cli, progress
    from collapse_jax.results import atomic_savez

    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "6", "--paper-replicates", "1", "--steps", "4", "--models", "2",
            "--mu", "[-3, 0, 3]", "--beta", "0.75", "--replicate-batch", "4", "--no-plots", "--out", str(out)]
    try:
        assert cli.main([*argv, "--backend", "native", "--no-progress"]) == 0
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["backend"] == "native" and config["replicates"] == 6
        network = config["network"]
        assert network["num_models"] == 2 and network["beta"] == 0.75 and network["num_steps"] == 4
        assert np.asarray(network["mu"]).ravel().tolist() == [-3, 0, 3]
        assert _native.preferred_backend() == "native" and progress.enabled() is False
        native = json.loads((out / "manifest.json").read_text())["environment"]["native"]
        assert native["simulators_library"] and native["preferred_backend"] == "native"
        first = np.load(out / "arrays.npz")["dnorm"]
        assert first.shape == (6, 5)
        # summary.txt has the theory and the collapse the arrays hold, not the simulation's columns alone (a user
        # audit, 2026-12-07)
        arrays, text = np.load(out / "arrays.npz"), (out / "summary.txt").read_text()
        kept = int((arrays["alive"][:, -1] == 3).all(axis=-1).sum())
        assert f"rms of the {kept} of 6 replicates that keep every component" in text, text
        for t in (1, 4):
            assert (f"t={t:4d}  rms kept {arrays['rms_kept'][t]:.4f}  second-moment recursion "
                    f"{arrays['theory_second_moment'][t]:.4f}  mean field {arrays['theory_mean_field'][t]:.4g}"
                    in text), text
            assert f"collapsed {arrays['fraction_collapsed'][t]:.3f}" in text, text
        # mark the first saved batch (replicates 0-3): a rerun must take it from disk, not simulate it again
        batch = dict(np.load(out / "chunks" / "chunk-000000.npz"))
        batch["dnorm"] = np.full_like(batch["dnorm"], -1.0)
        atomic_savez(out / "chunks" / "chunk-000000.npz", batch)
        assert cli.main(["--backend", "native", *argv]) == 0
        again = np.load(out / "arrays.npz")["dnorm"]
        assert (again[:4] == -1.0).all() and np.array_equal(again[4:], first[4:])
    finally:
        _native.prefer_backend("auto")
        progress.set_enabled(None)


@needs_native
def test_gmm_network_command_shows_one_bar_and_the_time_of_a_resumed_run(tmp_path, capsys):
    """An audit: the bar restarted for every batch of replicates (0/2, 0/2, 0/2 for 6 replicates in batches of 2),
    and a resumed run reported only its own seconds as the time of all replicates. Now one bar counts all
    replicates (a resumed run's from those saved), each saved batch records its seconds, and a resumed run prints
    and records this run's time, the resumed batches' earlier time and the sum."""
    import json
    import re

    from collapse_jax import _native, cli, progress
    from collapse_jax.results import atomic_savez

    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "6", "--paper-replicates", "1", "--steps", "3", "--models", "2",
            "--replicate-batch", "2", "--no-plots", "--backend", "native", "--progress", "--out", str(out)]

    def bars(err):  # every frame tqdm drew: (done, total)
        return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) \[", err)]

    try:
        assert cli.main(argv) == 0
        printed, err = capsys.readouterr()
        frames = bars(err)
        assert frames and {total for _, total in frames} == {6}, frames  # one bar, not one per batch of 2
        assert frames[0][0] == 0 and [done for done, _ in frames] == sorted(done for done, _ in frames), frames
        summary = json.loads((out / "manifest.json").read_text())["summary"]
        assert summary["replicates_resumed"] == 0 and summary["seconds_resumed"] == 0
        assert summary["seconds"] == summary["seconds_this_run"] > 0
        assert re.search(r"6 replicates x 3 steps in \d+\.\d s \(native\)", printed), printed
        # the preset with the network options given (it said "(fig4)" alone; a user trial, 2026-12-07)
        assert "gmm-network (fig4 with --models of its own): 6 replicates" in printed, printed

        # an interrupted run: the last batch (replicates 4-5) never saved; the first took (say) 1000 s
        (out / "chunks" / "chunk-000002.npz").unlink()
        (out / "manifest.json").unlink()
        batch = dict(np.load(out / "chunks" / "chunk-000000.npz"))
        assert batch["seconds"] > 0
        batch["seconds"] = np.float64(1000.0)
        atomic_savez(out / "chunks" / "chunk-000000.npz", batch)
        earlier = 1000.0 + float(np.load(out / "chunks" / "chunk-000001.npz")["seconds"])
        assert cli.main(argv) == 0
        printed, err = capsys.readouterr()
        frames = bars(err)
        assert frames[0] == (4, 6) and {total for _, total in frames} == {6}, frames  # starts at the saved 4
        summary = json.loads((out / "manifest.json").read_text())["summary"]
        assert summary["replicates_resumed"] == 4 and summary["seconds_resumed"] == pytest.approx(earlier)
        assert summary["seconds"] == pytest.approx(summary["seconds_this_run"] + earlier)
        this_run = f"{summary['seconds_this_run']:.1f} s in this run, which simulated 2"
        said = f"{summary['seconds']:.1f} s in all: {this_run}, and {earlier:.1f} s earlier for the 4 resumed"
        assert said in printed and said in (out / "summary.txt").read_text(), printed

        # batches saved by an older version recorded no seconds: the earlier time is unknown, and said so
        (out / "chunks" / "chunk-000002.npz").unlink()
        del batch["seconds"]
        atomic_savez(out / "chunks" / "chunk-000000.npz", batch)
        assert cli.main(argv) == 0
        printed, _ = capsys.readouterr()
        summary = json.loads((out / "manifest.json").read_text())["summary"]
        assert summary["seconds_resumed"] is None and summary["seconds"] is None
        assert "4 more resumed from the run folder (their earlier time was not recorded)" in printed, printed
    finally:
        _native.prefer_backend("auto")
        progress.set_enabled(None)


def test_ctrl_c_during_a_batch_keeps_it(tmp_path, monkeypatch, capsys):
    """A user trial (2026-12-06): a Ctrl-C while the native kernel ran a batch took effect once the batch was done,
    and the batch was lost; now it is saved first, and the rerun resumes from it."""
    import os
    import signal
    import threading

    from collapse_jax import cli
    from collapse_jax import gmm_network as gn

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "4", "--paper-replicates", "1", "--steps", "3", "--models", "2",
            "--replicate-batch", "2", "--no-plots", "--out", str(out)]
    real = gn.simulate

    def pressed_during_the_first(*args, **kwargs):
        if kwargs.get("first_replicate") == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(gn, "simulate", pressed_during_the_first)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.main(argv) == 130
    finally:
        signal.signal(signal.SIGINT, before)
    assert "saving the 2 replicates running now first" in capsys.readouterr().err
    assert [p.name for p in sorted((out / "chunks").glob("chunk-*.npz"))] == ["chunk-000000.npz"]
    monkeypatch.setattr(gn, "simulate", real)
    assert cli.main(argv) == 0
    assert "2 of 4 replicates saved by an earlier run" in capsys.readouterr().err


def test_a_horizon_beyond_the_limit_is_refused_at_once():
    """A user trial (2026-12-04): --steps 100000000 built schedules of 10^8 Python floats (14 GB within a minute)
    before any check."""
    with pytest.raises(ValueError, match=r"num_steps must be at most 1,000,000, got 1,000,001"):
        gn.paper_config(4, num_steps=1_000_001)
    # the theory's recursions too (a user trial, 2026-12-05: second_moment_dnorm(num_steps=10**9) ran on for hours)
    from collapse_jax import gmm_theory as th

    kw = dict(num_models=3, num_components=2, points_per_step=3, beta=0.5)
    for call in (lambda: th.schedule(num_steps=10**9, **kw),
                 lambda: th.second_moment_dnorm(**kw, num_steps=10**9, dirichlet_a=1.0)):
        with pytest.raises(ValueError, match=r"num_steps must be at most 1,000,000, got 1,000,000,000"):
            call()


@pytest.mark.parametrize("extra, guide", [([], True), (["--alpha", "0.3", "--c", "0.01"], False)])
def test_dnorm_plot_draws_the_t_half_guide_for_the_papers_schedules_only(extra, guide, tmp_path, monkeypatch):
    """A user trial (2026-12-04): the t^-1/2 guide was drawn beside a constant alpha's curve, which does not follow
    it, and the title left out eps, m0 and the schedules."""
    from collapse_jax import cli
    from collapse_jax.results import RunFolder

    figures = []
    monkeypatch.setattr(RunFolder, "save_figure", lambda self, fig, name: figures.append((name, fig)) or name)
    argv = ["gmm-network", "--replicates", "4", "--paper-replicates", "1", "--steps", "6", "--models", "2",
            "--backend", "jax", "--no-progress", "--out", str(tmp_path / "run"), *extra]
    assert cli.main(argv) == 0
    fig = dict(figures)["dnorm.png"]
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert any("t^{-1/2}" in label for label in labels) == guide
    title = fig.axes[0].get_title()
    assert "eps=0" in title and "m0=0" in title and ("1/k_t" in title) == guide
    # one legend under the panels: inside them it hid the band and the y label where q95 stays high (2026-12-05)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)


def test_second_moment_curve_is_not_drawn_when_every_replicate_is_absorbed(tmp_path, monkeypatch):
    """A user trial (2026-12-07): with --beta 0.12 every replicate dropped a component, yet dnorm.png drew the
    second-moment curve (the rms of replicates that keep every component) up to 4.42, above the largest ||D||_F
    possible for 3 models, sqrt(12)."""
    from collapse_jax import cli
    from collapse_jax.results import RunFolder

    figures = []
    monkeypatch.setattr(RunFolder, "save_figure", lambda self, fig, name: figures.append((name, fig)) or name)
    argv = ["gmm-network", "--beta", "0.12", "--replicates", "20", "--paper-replicates", "1", "--steps", "40",
            "--backend", "jax", "--no-progress", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 0
    assert np.load(tmp_path / "run" / "arrays.npz")["fraction_dropped"][-1] == 1.0
    fig = dict(figures)["dnorm.png"]
    drawn = [line for ax in fig.axes for line in ax.get_lines() if "second-moment" in line.get_label()]
    assert drawn and all(len(line.get_xdata()) == 0 and "not drawn" in line.get_label() for line in drawn)


@pytest.mark.parametrize("extra, said", [(["--models", "1"], "--models 1"), (["--mu", "[-5]"], "one component")])
def test_a_network_whose_dnorm_is_always_zero_is_warned_about_and_plots_cleanly(extra, said, tmp_path):
    """A user trial (2026-12-07): --models 1 and --mu '[-5]' leaked matplotlib's "Data has no positive values"
    warnings and drew an empty log-log panel; B = 1 got no word that ||D|| is always 0."""
    from collapse_jax import cli

    argv = ["gmm-network", "--replicates", "4", "--paper-replicates", "1", "--steps", "4", "--backend", "jax",
            "--no-progress", "--out", str(tmp_path / "run"), *extra]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(argv) == 0
    texts = [str(w.message) for w in caught]
    assert any(said in t and "is 0 at every step" in t for t in texts), texts
    assert not any("positive values" in t for t in texts), texts


def test_paper_replicates_are_capped_at_the_band_replicates(tmp_path):
    """A user trial (2026-12-05): --paper-replicates 5 with --replicates 3 saved (and drew) the weights of two
    replicates that are not in the band."""
    from collapse_jax import cli

    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "3", "--paper-replicates", "5", "--steps", "3", "--models", "2",
            "--backend", "jax", "--no-progress", "--no-plots", "--out", str(out)]
    assert cli.main(argv) == 0
    arrays = np.load(out / "arrays.npz")
    assert arrays["dnorm"].shape[0] == 3 and arrays["paper_weights"].shape[0] == 3
    import xarray as xr

    with xr.open_dataset(out / "arrays.nc") as ds:  # t is the step coordinate (positions only before; a user trial)
        assert "step" in ds.coords and ds.coords["step"].values.tolist() == [0, 1, 2, 3]
        np.testing.assert_array_equal(ds.dnorm.sel(step=2).values, arrays["dnorm"][:, 2])


def test_a_run_without_a_saved_batch_resumes_with_another_batch_size(tmp_path, capsys):
    """A user trial (2026-12-06): a run killed in its first batch (too large for the memory) could not be rerun
    with a smaller --replicate-batch ("another configuration"); once a batch is saved its layout is kept."""
    import json

    from collapse_jax import cli

    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "6", "--paper-replicates", "1", "--steps", "3", "--models", "2",
            "--backend", "jax", "--no-progress", "--no-plots", "--out", str(out)]
    assert cli.main(argv + ["--replicate-batch", "4"]) == 0
    whole = np.load(out / "arrays.npz")["dnorm"]
    for chunk in (out / "chunks").iterdir():          # as if killed before its first batch was saved
        chunk.unlink()
    (out / "manifest.json").unlink()
    assert cli.main(argv + ["--replicate-batch", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["replicate_batch"] == 2
    (out / "chunks" / "chunk-000002.npz").unlink()          # a resume with batches saved says so at once
    (out / "manifest.json").unlink()
    assert cli.main(argv + ["--replicate-batch", "2"]) == 0
    assert f"gmm-network: resuming {out}: 4 of 6 replicates saved by an earlier run" in capsys.readouterr().err
    assert len(list((out / "chunks").iterdir())) == 3
    np.testing.assert_array_equal(np.load(out / "arrays.npz")["dnorm"], whole)
    assert cli.main(argv + ["--replicate-batch", "3"]) == 2   # batches saved: their layout stays


def test_the_second_moment_curve_has_its_simulated_counterpart(tmp_path, monkeypatch):
    """A user trial (2026-12-06): the second-moment theory (the rms over replicates that keep every component) was
    drawn with no simulated curve of that quantity; rms_kept is saved and drawn beside it."""
    from collapse_jax import cli
    from collapse_jax.results import RunFolder

    figures = []
    monkeypatch.setattr(RunFolder, "save_figure", lambda self, fig, name: figures.append((name, fig)) or name)
    out = tmp_path / "run"
    argv = ["gmm-network", "--replicates", "60", "--paper-replicates", "1", "--steps", "8", "--models", "3",
            "--backend", "jax", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    arrays = np.load(out / "arrays.npz")
    kept = np.all(arrays["alive"][:, -1] == 2, axis=-1)
    assert 20 <= kept.sum() < 60                              # (this seed: some replicates drop a component)
    np.testing.assert_allclose(arrays["rms_kept"], np.sqrt(np.mean(arrays["dnorm"][kept] ** 2, axis=0)), rtol=1e-12)
    labels = [line.get_label() for ax in dict(figures)["dnorm.png"].axes for line in ax.get_lines()]
    assert any(label.startswith(f"simulated rms of those replicates ({kept.sum()} of 60)") for label in labels)


def test_a_network_too_large_for_the_memory_is_refused_with_its_sizes(monkeypatch):
    """A user trial (2026-12-05): 100,000 models crashed the native kernel (a null scratch array written to); the
    portable kernel failed in XLA asking for 240 GB; --human 1e9 likewise. Refused before any compute, naming the
    sizes, whichever kernel would run it."""
    from collapse_jax import _checks

    monkeypatch.setattr(_checks, "available_memory_bytes", lambda: 8 * 2**30)
    big = gn.make_config(num_models=100_000, num_steps=3)
    for backend, words in (("native", "native kernel's copies of the internet"), ("jax", "one replicate per device")):
        with pytest.raises(ValueError, match=rf"num_models = 100,000 with points_per_step = 3, num_steps = 3 .* "
                                             rf"\|A\(T\)\| = 900,000 points.*{words}"):
            gn.check_problem_size(big.static, np.float32, backend, 1)
    with pytest.raises(ValueError, match=r"num_human = 1,000,000,000 .* needs about .* GiB"):
        gn.check_problem_size(gn.make_config(num_human=10**9, num_steps=3).static, np.float32, "jax", 1)
    gn.check_problem_size(gn.paper_config(4).static, np.float32, "native", 10_000)  # Figure 4 fits in far less
    gn.check_problem_size(gn.paper_config(6).static, np.float32, "jax", 1)


@needs_native
def test_the_native_kernel_reports_a_scratch_it_cannot_allocate(monkeypatch):
    """Past the size check (skipped here), the kernel's per-thread internet of 100,000 models x 600,000 posts (240 GB)
    cannot be allocated: an XLA error naming it, where the kernel used to write through a null pointer (exit 139)."""
    import jax

    monkeypatch.setattr(gn, "check_problem_size", lambda *args, **kwargs: None)
    with pytest.raises(jax.errors.JaxRuntimeError, match="out of memory for a worker thread's copy of the internet"):
        gn.simulate(0, gn.make_config(num_models=100_000, num_steps=2), 1, backend="native", progress=False)


def test_one_component_runs_with_the_default_coefficients():
    """A user trial (2026-12-05): B = 1 with the default c_t = 1 / (k_t B^2) was refused "at t = 0", where k_t = 0
    and c is never used (gmm_theory.schedule accepts it). Every model keeps its one weight, 1."""
    cfg = gn.make_config(mu=[0.0], num_steps=4, record_pi=True)
    assert gn.step_schedule(cfg).c[0] == 0.0 and gn.step_schedule(cfg).num_draws[0] == 0
    for backend in BACKENDS_HERE:
        res = gn.simulate(0, cfg, 8, backend=backend, progress=False)
        assert np.all(res.weights == 1.0) and np.all(res.dnorm == 0.0) and np.all(res.alive == 1)
    with pytest.raises(ValueError, match="the default c_t = 1 / \\(k_t B\\^2\\) needs B c_t < 1"):
        gn.make_config(mu=[0.0], num_steps=4, points_per_step=1, num_models=1, beta=0.5)  # k_1 = 0, k_2 = 1: B c = 1


def test_summarize_refuses_an_empty_run_and_quantiles_outside_0_1():
    """A user trial (2026-12-06): no replicates raised an IndexError, a quantile of 1.5 NumPy's message."""
    x = np.abs(np.random.default_rng(0).normal(size=(50, 4)))
    out = gn.summarize(x)
    np.testing.assert_allclose(out["q50"], np.median(x, axis=0))
    with pytest.raises(ValueError, match="at least one replicate"):
        gn.summarize(np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"quantiles must lie in \[0.0, 1.0\]"):
        gn.summarize(x, (1.5,))


def test_a_network_that_never_reads_a_point_is_warned_about():
    """A user trial (2026-12-06): beta = 1e-6 ran to the end with ||D|| 1.286 at t = 1 and t = 50, no model ever
    updated, without a word."""
    with pytest.warns(UserWarning,
                      match=r"beta = 1e-06 reads no point at any step: k_t = floor\(beta \|A\(t\)\|\) = 0"):
        gn.make_config(points_per_step=1, beta=1e-6, num_steps=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gn.make_config(points_per_step=1, beta=0.05, num_steps=50)  # (k_0 = 0 is fine: later steps read)


def test_components_with_the_same_mean_are_warned_about():
    """A user trial (2026-12-07): mu = [1, 1] ran 10,000 replicates without a word, ||D|| growing."""
    with pytest.warns(UserWarning, match=r"mu: components 0 and 2 have the same mean \[1.0, 0.0\] and share sigma"):
        gn.make_config(mu=((1.0, 0.0), (2.0, 0.0), (1.0, 0.0)), sigma=np.eye(2), num_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gn.make_config(mu=((1.0, 0.0), (1.0, 1e-9)), sigma=np.eye(2), num_steps=5)


def test_record_flags_must_be_bools():
    """A user trial (2026-12-06): record_pi="no" recorded Pi(t) (bool("no") is True)."""
    for name, value in (("record_pi", "no"), ("record_d", 0.0), ("record_pi", None)):
        with pytest.raises(ValueError, match=f"{name} must be True or False"):
            gn.paper_config(4, num_steps=5, **{name: value})
    assert gn.paper_config(4, num_steps=5, record_pi=np.True_).record_pi is True


def test_the_native_call_cache_keeps_the_most_recent_entries(monkeypatch):
    """A user trial (2026-12-06): each new beta kept its compiled native call for ever (1.3 MB a value)."""
    monkeypatch.setattr(gn, "_COMPILED", {})
    monkeypatch.setattr(gn, "_COMPILED_MAX", 2)
    built = []
    fetch = lambda key: gn._cached(key, lambda: built.append(key) or key)  # noqa: E731
    assert [fetch(k) for k in "abab"] == list("abab") and built == ["a", "b"]
    fetch("c")  # drops a, the least recently used
    assert list(gn._COMPILED) == ["b", "c"]
    fetch("b")
    fetch("a")
    assert built == ["a", "b", "c", "a"] and list(gn._COMPILED) == ["b", "a"]


@needs_native
def test_native_runs_are_cut_into_calls_a_ctrl_c_can_stop_between(monkeypatch):
    """A user trial (2026-12-06): the native kernel ran 200,000 replicates in one call of 68 s, and a notebook's
    interrupt was honoured only when it was all done. Default chunks now hold NATIVE_CALL_UPDATES point updates at
    most; the draws do not depend on the chunks."""
    cfg = gn.paper_config(4, num_steps=5)
    whole = gn.simulate(3, cfg, 40, backend="native", progress=False, chunk_size=40)
    per = int(np.sum(gn.make_params(cfg).num_draws)) * cfg.static.num_models
    monkeypatch.setattr(gn, "NATIVE_CALL_UPDATES", 15 * per)
    calls = []
    keys = gn.chunk_keys
    monkeypatch.setattr(gn, "chunk_keys", lambda seed, first, count: calls.append((first, count)) or keys(
        seed, first, count))
    cut = gn.simulate(3, cfg, 40, backend="native", progress=False)
    # at most 15 a call: three equal calls of 14, the last padded to that shape (one compilation)
    assert calls == [(0, 14), (14, 14), (28, 14)]
    np.testing.assert_array_equal(cut.dnorm, whole.dnorm)


def test_a_stopped_native_block_does_not_fill_the_bar():
    """A user trial (2026-12-06): an interrupted native run's bar read 200000/200000 100 %."""
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    with gn._follow_native_progress(bar, 10, 100, 10):  # a block that ends normally: the bar moves by its count
        pass
    assert bar.n == 10
    with pytest.raises(KeyboardInterrupt):
        with gn._follow_native_progress(bar, 10, 100, 10):
            raise KeyboardInterrupt
    assert bar.n == 10


@needs_native
def test_native_float32_runs_do_not_depend_on_the_replicates_in_a_call():
    """A review (2026-12-06): under a vmap over a call's replicates, XLA's float32 Dirichlet draws followed the
    batch's shape, so 10 of 40 replicates' initial weights (and all after) differed in the last bit from the same
    replicates run one by one; the new chunking of native calls would have made that visible in default runs. Run
    with XLA's default code generation (the suite's cheaper flags, conftest.py, vectorise otherwise and hid it)."""
    code = textwrap.dedent("""
        import numpy as np
        import collapse_jax.gmm_network as gn
        cfg = gn.make_config(num_models=3, points_per_step=20, num_steps=6, beta=0.5, record_pi=True)
        whole = gn.simulate(5, cfg, 40, backend="native", progress=False)
        alone = [gn.simulate(5, cfg, 1, backend="native", progress=False, first_replicate=r) for r in range(40)]
        assert whole.weights.dtype == np.float32
        np.testing.assert_array_equal(np.concatenate([a.weights for a in alone]), whole.weights)
        np.testing.assert_array_equal(np.concatenate([a.dnorm for a in alone]), whole.dnorm)
        """)
    env = {**os.environ, "XLA_FLAGS": "", "JAX_ENABLE_X64": "0"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_config_replace_names_an_unknown_field():
    """A docs trial (2026-12-06): ``cfg.replace(betta=0.3)`` failed with "make_config() got an unexpected keyword
    argument", naming a function the user never called; a known field is still validated as by make_config."""
    cfg = gn.make_config()
    assert cfg.replace(beta=0.3).beta == 0.3
    with pytest.raises(TypeError, match=r"GMMNetworkConfig.replace\(\) got unknown field\(s\) 'betta'; the fields "
                                        r"are mu, sigma, .*beta"):
        cfg.replace(betta=0.3)
    with pytest.raises(ValueError, match="beta"):
        cfg.replace(beta=1.5)


def test_too_few_kept_replicates_draw_no_rms_check(monkeypatch):
    """A figure trial (2026-12-06): Figure 6 with 500 replicates drew the rms of the one replicate that kept every
    component as the second-moment theory's check (one noisy path); below MIN_KEPT_DRAWN the legend says why not."""
    from collapse_jax import gmm_network_cli as gcli
    from collapse_jax.results import RunFolder

    figures = []
    monkeypatch.setattr(RunFolder, "save_figure", lambda self, fig, name: figures.append((name, fig)) or name)
    cfg = gn.make_config(num_steps=4)
    steps, R = np.arange(5), 500
    dnorm = np.abs(np.random.default_rng(0).normal(size=(R, 5))) + 0.1
    summary = {q: np.quantile(dnorm, float(q[1:]) / 100, axis=0) for q in ("q05", "q50", "q95")}
    summary["mean"] = dnorm.mean(axis=0)
    theory = {"second_moment": np.sqrt(np.mean(dnorm ** 2, axis=0))}
    paper = gn.GMMNetworkResult(dnorm[:1], None, None, np.full((1, 5, 3, 2), 0.5), None)
    for count, drawn in ((1, False), (gcli.MIN_KEPT_DRAWN, True)):
        figures.clear()
        gcli.make_plots(RunFolder.__new__(RunFolder), cfg, steps, dnorm, summary, theory, paper, 1, np.zeros(5),
                        np.zeros(5), kept=(dnorm[:count].mean(axis=0), count))
        lines = [line for ax in dict(figures)["dnorm.png"].axes for line in ax.get_lines()
                 if line.get_label().startswith("simulated rms of those replicates")]
        assert len(lines) == 2 and all((len(line.get_xdata()) == 5) == drawn for line in lines)
        if not drawn:
            assert lines[0].get_label() == "simulated rms of those replicates: not drawn (1 of 500)"


def test_a_rerun_that_only_reads_back_says_so():
    """A cluster trial (2026-12-06): a rerun that only reloaded its saved batches said "which simulated 0"."""
    from collapse_jax.gmm_network_cli import timing_text

    assert timing_text(6, 6, 3.0, 10.0) == ("13.0 s in all: 3.0 s in this run, which simulated none (it read them "
                                            "back), and 10.0 s earlier for the 6 resumed from the run folder")
    assert timing_text(6, 4, 3.0, None).startswith("3.0 s in this run, which simulated 2; 4 more resumed")
