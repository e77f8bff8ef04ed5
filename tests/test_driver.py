"""The replicate driver: results depend only on each replicate's global index, never on chunks, padding, the number of
devices or the memory budget; grids run the same replicates at every grid point."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import _checks, driver
from collapse_jax.replicates import replicate_mesh

# every test but the sharding one (the Gaussian recursion, which has no native kernel: the same run either way) also
# runs in the pure-JAX pass (COLLAPSE_JAX_NATIVE=0)


def kernel(key, params, config):
    """A toy replicate: ``scale * normal(size)`` cumulated, plus the shift."""
    scale, shift = params
    return {"path": jnp.cumsum(scale * jax.random.normal(key, (config,))) + shift, "first": jax.random.uniform(key)}


PARAMS = (np.asarray(2.0), np.asarray(0.5))


@pytest.mark.fallback
def test_chunks_padding_and_first_replicate_are_invisible():
    whole = driver.run_replicates(kernel, PARAMS, 4, 7, seed=3)
    assert whole["path"].shape == (7, 4) and whole["first"].shape == (7,)
    for chunk in (1, 2, 3, 7, 50):
        chunked = driver.run_replicates(kernel, PARAMS, 4, 7, seed=3, chunk_size=chunk)
        jax.tree.map(np.testing.assert_array_equal, chunked, whole)
    tail = driver.run_replicates(kernel, PARAMS, 4, 3, seed=3, first_replicate=4)
    np.testing.assert_array_equal(tail["path"], whole["path"][4:])
    three = driver.call_bytes(driver.batched(kernel, 4, mesh=replicate_mesh()).lower(
        driver.replicate_keys(3, 0, 3), jax.tree.map(jnp.asarray, PARAMS)))  # a budget for 3 replicates a call
    small = driver.run_replicates(kernel, PARAMS, 4, 7, seed=3, memory_budget=three)
    np.testing.assert_array_equal(small["path"], whole["path"])
    assert not np.array_equal(driver.run_replicates(kernel, PARAMS, 4, 7, seed=4)["path"], whole["path"])


@pytest.mark.fallback
def test_grid_runs_the_same_replicates_at_every_point():
    scales = np.asarray([1.0, 2.0, 3.0])
    out = driver.run_replicates(kernel, (scales, np.asarray(0.0)), 4, 5, seed=1, grid_axes=(0, None))
    assert out["path"].shape == (3, 5, 4)
    np.testing.assert_allclose(out["path"][2], 3 * out["path"][0], rtol=1e-12)  # common random numbers
    one = driver.run_replicates(kernel, (np.asarray(2.0), np.asarray(0.0)), 4, 5, seed=1)
    np.testing.assert_allclose(out["path"][1], one["path"], rtol=1e-12)


@pytest.mark.fallback
def test_lanes_map_the_same_replicates_as_vmap():
    """``lanes``: replicates mapped k at a time (and the grid point by point) give the vmapped numbers."""
    scales = np.asarray([1.0, 2.0, 3.0])
    vmapped = driver.run_replicates(kernel, (scales, np.asarray(0.5)), 4, 5, seed=1, grid_axes=(0, None))
    for lanes in (1, 2):
        mapped = driver.run_replicates(kernel, (scales, np.asarray(0.5)), 4, 5, seed=1, grid_axes=(0, None),
                                       lanes=lanes, chunk_size=3)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), mapped, vmapped)


@pytest.mark.fallback
def test_scan_kernel_runs_init_then_steps():
    """``scan_kernel``: state_0 from the first half of the key, step t from the t-th key of the second half, the
    observed state_0 first."""

    def init(key, params, config):
        return params * jax.random.uniform(key)

    def step(key, state, x, config):
        state = state + x * jax.random.uniform(key)
        return state, state

    kern = driver.scan_kernel(init, step, lambda params, config: jnp.arange(1.0, 4.0), lambda s, c: -s)
    key = jax.random.key(2)
    init_key, steps_key = jax.random.split(key)
    state = 2.0 * jax.random.uniform(init_key)
    want = [-state]
    for x, k in zip((1.0, 2.0, 3.0), jax.random.split(steps_key, 3)):
        state = state + x * jax.random.uniform(k)
        want.append(state)
    np.testing.assert_allclose(np.asarray(kern(key, jnp.asarray(2.0), None)), np.asarray(want), rtol=1e-12)


@pytest.mark.fallback
def test_contract_violations_name_what_is_wrong():
    """A user trial (2026-12-05): an observe record unlike step's was a concatenation error naming neither
    function; a gridded scalar an IndexError deep in the kernel; grid lengths that differ a broadcast error."""
    def init(key, params, config):
        return jnp.zeros(())

    def step(key, state, x, config):
        return state + x, state

    steps = lambda params, config: jnp.ones(3)  # noqa: E731
    bad_shape = driver.scan_kernel(init, step, steps, lambda s, c: jnp.stack([s, s]))
    with pytest.raises(ValueError, match=r"observe\(state_0, config\) returned a record of shape \(2,\) .* but "
                                         r"step records shape \(\) .* per step"):
        driver.run_replicates(bad_shape, PARAMS, 4, 2)
    bad_tree = driver.scan_kernel(init, step, steps, lambda s, c: {"x": s})
    with pytest.raises(ValueError, match="observe.* must have step's record structure"):
        driver.run_replicates(bad_tree, PARAMS, 4, 2)
    with pytest.raises(ValueError, match=r"grid_axes marks params\[0\] as gridded, but it is a scalar"):
        driver.run_replicates(kernel, PARAMS, 4, 2, grid_axes=(0, None))
    with pytest.raises(ValueError, match=r"same leading grid length, got params\[0\] 3, params\[1\] 2"):
        driver.run_replicates(kernel, (np.ones(3), np.ones(2)), 4, 2, grid_axes=(0, 0))
    with pytest.raises(ValueError, match="grid_axes must have the structure of params"):
        driver.run_replicates(kernel, PARAMS, 4, 2, grid_axes=(0, None, None))
    # a user trial (2026-12-05): an observe record of Python floats failed at a[None], step inputs of Python lists or
    # none with an AttributeError or an IndexError, an unhashable config with "unhashable type" from the driver
    floats = driver.scan_kernel(init, step, steps, lambda s, c: 0.0)
    assert driver.run_replicates(floats, PARAMS, 4, 2).shape == (2, 4)
    for inputs in (lambda params, config: (), lambda params, config: jnp.ones(()),
                   lambda params, config: [1.0, 1.0, 1.0]):
        with pytest.raises(ValueError, match="step_inputs.* must return arrays with one leading step axis"):
            driver.run_replicates(driver.scan_kernel(init, step, inputs), PARAMS, 4, 2)
    with pytest.raises(ValueError, match="config must be hashable .*a frozen dataclass .*got list"):
        driver.run_replicates(kernel, PARAMS, [4], 2)
    with pytest.raises(ValueError, match="marks no field as gridded"):
        driver.run_replicates(kernel, PARAMS, 4, 2, grid_axes=(None, None))
    with pytest.raises(ValueError, match="entries must be 0 .* got 1"):
        driver.run_replicates(kernel, (np.ones((2, 3)), np.asarray(0.0)), 4, 2, grid_axes=(1, None))


@pytest.mark.fallback
def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="num_replicates"):
        driver.run_replicates(kernel, PARAMS, 4, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        driver.run_replicates(kernel, PARAMS, 4, 3, chunk_size=0)
    with pytest.raises(ValueError, match="first_replicate"):
        driver.run_replicates(kernel, PARAMS, 4, 3, first_replicate=-1)


def test_sharded_over_four_devices_equals_one():
    """A simulator through the driver (the Gaussian recursion) on 4 XLA host devices equals the 1-device run."""
    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4
        from collapse_jax import driver, gaussian as G, schedules as S
        from collapse_jax.replicates import replicate_mesh
        alpha, n = S.constant_alpha(0.5, 3), S.constant_size(5, 3)
        params = G.Params(*(np.asarray(x) for x in (0.0, 1.3, alpha[None], n[None])))  # simulate draws about 0
        args = (G.kernel, params, G.GaussianConfig(), 7, 2)
        four = driver.run_replicates(*args, grid_axes=G.Params(None, None, 0, 0))
        one = driver.run_replicates(*args, grid_axes=G.Params(None, None, 0, 0), mesh=replicate_mesh(jax.devices()[:1]))
        np.testing.assert_array_equal(four, one)
        mapped = driver.run_replicates(*args, grid_axes=G.Params(None, None, 0, 0), lanes=1)  # shard_map + lax.map
        np.testing.assert_allclose(mapped, one, rtol=1e-12)
        # any mu; simulate runs N(0, 1) and scales the losses by sigma^2 in float64: equal to the last bits
        np.testing.assert_allclose(four[0], G.simulate(2, 0.5, 1.3, alpha, n, num_replicates=7, backend="jax"),
                                   rtol=1e-13)
        print("ok")
    """)
    # the suite's XLA flags (tests/conftest.py) kept: the child compiles as fast as the tests do
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_seeds_replicate_ranges_and_host_memory_are_checked_before_most_compute(monkeypatch):
    """A second audit (2026-12-02): replicate indices wrapped at 2**32 (replicate 2**32 drew replicate 0's numbers),
    seeds of 2**63 and floats failed inside JAX, and a run whose outputs could never fit on the host computed until
    the final concatenation."""
    from collapse_jax import _checks, replicates
    from collapse_jax import gmm_network as gn

    with pytest.raises(ValueError, match=r"first_replicate \+ num_replicates must be at most 2\*\*32"):
        driver.map_chunks(lambda keys: jnp.zeros(keys.shape[0]), 3, 0, 3, first_replicate=2**32 - 2)
    with pytest.raises(ValueError, match=r"first_replicate \+ num_replicates must be at most 2\*\*32"):
        gn.simulate(0, gn.paper_config(4), 5, first_replicate=2**32, progress=False)
    last = driver.map_chunks(lambda keys: jax.random.key_data(keys), 2, 0, 4, first_replicate=2**32 - 2)
    np.testing.assert_array_equal(last, jax.random.key_data(replicates.replicate_keys(0, 2**32 - 2, 2)))
    # (negative seeds: refused as by every command and the language-model APIs; a user trial, 2026-12-06)
    for seed, message in [(2**63, r"integer in \[0, 2\*\*63 - 1\]"), (-1, r"integer in \[0, 2\*\*63 - 1\]"),
                          (jnp.asarray(-1), r"integer in \[0, 2\*\*63 - 1\]"),
                          (1.5, "integer or a PRNG key"), (True, "integer or a PRNG key")]:
        with pytest.raises(ValueError, match=message):
            replicates.root_key(seed)
    key = jax.random.key(3)
    assert replicates.root_key(key) is key
    # (a batch of keys gave JAX's fold_in error from inside the run; a user trial, 2026-12-07)
    for batch in (jax.random.split(key, 2), jax.random.split(jax.random.PRNGKey(3), 2)):
        with pytest.raises(ValueError, match=r"seed must be one PRNG key, got a batch of keys of shape \(2"):
            replicates.root_key(batch)
    # without x64, jax.random.key keeps a seed's low 32 bits (seed 2**32 drew seed 0's numbers, an audit of the
    # sweep found): root_key gives x64 JAX's key either way
    for seed in (0, 7, 2**32 - 1, 2**32, 2**32 + 7, 2**63 - 1):
        x64 = jax.random.key_data(replicates.root_key(seed))
        with jax.enable_x64(False):
            np.testing.assert_array_equal(jax.random.key_data(replicates.root_key(seed)), x64)
    with jax.enable_x64(False):
        draws = [driver.map_chunks(lambda keys: jax.random.key_data(keys), 2, seed, 2) for seed in (0, 2**32)]
    assert not np.array_equal(*draws)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got 'int32'"):
        gn.simulate(0, gn.paper_config(4), 5, dtype="int32", progress=False)
    monkeypatch.setattr(_checks, "available_memory_bytes", lambda: 10**6)
    calls = []

    def run(keys):
        calls.append(keys.shape[0])
        return np.zeros((keys.shape[0], 1000))

    with pytest.raises(ValueError, match=r"num_replicates \(outputs on the host\) = 100,000 needs about .* per "
                                         "call, and run the rest with first_replicate"):
        driver.map_chunks(run, 100_000, 0, 10)
    assert calls == [10]  # refused after the first chunk, not at the end


def test_a_chunk_that_exhausts_device_memory_is_a_clear_error():
    """An audit (2026-12-02): the default chunk is sized from the outputs, not the kernel's working memory, so a
    large kernel could fail in XLA with RESOURCE_EXHAUSTED; that now says which argument to lower."""
    def run(keys):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 48000800640 bytes.")

    with pytest.raises(ValueError, match="a chunk of 8 replicates needs more device memory .* chunk_size"):
        driver.map_chunks(run, 8, 0, 8)

    def other(keys):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        driver.map_chunks(other, 8, 0, 8)


def wide_kernel(key, params, config):
    """A replicate whose working memory (a (config, 256) draw) dwarfs its output (one number)."""
    return jnp.sum(jnp.cos(params * jax.random.normal(key, (config, 256))))


def test_default_chunk_fits_the_compiled_calls_working_memory(monkeypatch):
    """The first guess sizes a chunk from 8x its outputs (4 bytes a replicate here); XLA's memory analysis of the
    compiled call (about 1 MiB a replicate of temporaries) then cuts it to the budget, with the same draws."""
    whole = driver.run_replicates(wide_kernel, np.float32(1.5), 1024, 64, seed=2, chunk_size=64)
    chunks = []
    real = driver.map_chunks
    monkeypatch.setattr(driver, "map_chunks", lambda run, R, seed, chunk, **kw: chunks.append(chunk)
                        or real(run, R, seed, chunk, **kw))
    budget = 16 * 2 ** 20
    fitted = driver.run_replicates(wide_kernel, np.float32(1.5), 1024, 64, seed=2, memory_budget=budget)
    np.testing.assert_allclose(fitted, whole, rtol=1e-13)  # the same draws; the sum's last bits vary with width
    mesh = replicate_mesh()
    assert 8 * 4 * 64 < budget and mesh.size <= chunks[-1] < 64  # the outputs alone would have allowed all 64
    need = driver.call_bytes(driver.batched(wide_kernel, 1024, mesh=mesh).lower(
        driver.replicate_keys(2, 0, chunks[-1]), jnp.float32(1.5)))
    assert need <= budget < 2 * need  # as large as fits, within the scaling's slack
    # (the command-line tools have no budget flag: the message says what else to do; 2026-12-05)
    with pytest.raises(ValueError, match="one replicate per device needs .* MiB .* memory_budget = .* MiB; shrink "
                                         "the problem, or from Python pass a larger memory_budget$"):
        driver.run_replicates(wide_kernel, np.float32(1.5), 1024, 64, seed=2, memory_budget=2 ** 16)


def test_mesh_is_a_device_list_or_a_replicas_mesh():
    """A user trial (2026-12-06): mesh=jax.devices() failed deep in JAX ("'list' object has no attribute 'size'"),
    a mesh with another axis name with "Resource axis: replicas ... not found", and the native kernels took either
    without a word."""
    from jax.sharding import Mesh

    from collapse_jax import gaussian as G
    from collapse_jax import multinomial as M
    from collapse_jax import schedules as S

    alpha, n = S.constant_alpha(0.5, 3), S.constant_size(10, 3)
    run = lambda mesh, backend: G.simulate(3, 0.0, 1.0, alpha, n, G.GaussianConfig(), 4, backend=backend,  # noqa: E731
                                           mesh=mesh, progress=False)
    np.testing.assert_array_equal(run(jax.devices(), "jax"), run(None, "jax"))
    for bad, message in [(Mesh(np.asarray(jax.devices()), ("x",)), r"mesh must have one axis named 'replicas'"),
                         ("cpu", "mesh must be a list of devices or a one-axis Mesh"),
                         ([], "mesh must be a list of devices")]:
        for backend in ("jax", "auto"):
            with pytest.raises(ValueError, match=message):
                run(bad, backend)
        with pytest.raises(ValueError, match=message):
            M.simulate(0, [0.5, 0.5], alpha, n, M.MultinomialConfig(), 4, mesh=bad, progress=False)


def test_progress_is_true_false_or_none():
    """A user trial (2026-12-06): progress="no" read as truthy and drew a bar, on every simulator."""
    from collapse_jax import gaussian as G
    from collapse_jax import gmm_network as gn
    from collapse_jax import schedules as S

    with pytest.raises(ValueError, match="progress must be True or False, got 'no'"):
        G.simulate(3, 0.0, 1.0, S.constant_alpha(0.5, 3), S.constant_size(10, 3), num_replicates=2, progress="no")
    with pytest.raises(ValueError, match="progress must be True or False, got 'no'"):
        gn.simulate(0, gn.make_config(num_steps=3), 2, progress="no")


def test_the_memory_check_knows_the_process_limits():
    """A user trial (2026-12-06): under ``prlimit --as`` (or a cluster job's cgroup limit) the checks counted the
    whole host's free memory, passed, and the run died of MemoryError; now the address-space rlimit counts."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import resource
        from collapse_jax import _checks
        before = _checks.available_memory_bytes()
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * 4096
        resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, resource.RLIM_INFINITY))
        limit = _checks.process_memory_limit()
        assert limit is not None and 0 < limit <= 2**30 + 2**20, limit
        assert _checks.available_memory_bytes() <= min(before, limit)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_run_replicates_checks_each_grid_point_with_the_simulators_own_check():
    """A user trial (2026-12-06): through run_replicates the Gaussian ran n = 0 (losses of exactly 1), sigma = -1
    and alpha = 1.5 without a word, and a grid_axes marking the schedules of one 1-D schedule failed deep inside
    the kernel; every simulate() refuses them. Each simulator's kernel now carries its check (kernel.check)."""
    from collapse_jax import gaussian as G
    from collapse_jax import linear_regression as LR
    from collapse_jax import logistic as L
    from collapse_jax import mixture_refit as MR
    from collapse_jax import multinomial as M
    from collapse_jax import schedules as S

    a, n = S.constant_alpha(0.5, 5), S.constant_size(20, 5)
    cfg = G.GaussianConfig()
    for params, match in ((G.Params(np.asarray(0.0), np.asarray(1.0), a, n * 0), "n must be >= 1"),
                          (G.Params(np.asarray(0.0), np.asarray(-1.0), a, n), "sigma must be in"),
                          (G.Params(np.asarray(0.0), np.asarray(1.0), a * 3, n), r"alpha must lie in \[0, 1\]")):
        with pytest.raises(ValueError, match=f"^params: {match}"):
            driver.run_replicates(G.kernel, params, cfg, 4)
    # (a 1-D schedule marked as gridded: the grid's part is said; a user trial, 2026-12-07)
    with pytest.raises(ValueError, match=r"params \(grid point 0 of 6: grid_axes takes the leading axis of every "
                                         r"field it marks 0 as the grid.*\): alpha must be a 1-D schedule"):
        driver.run_replicates(G.kernel, G.Params(0.0, 1.0, a, n), cfg, 4, grid_axes=G.Params(None, None, 0, 0))
    one = np.where(np.arange(6) == 3, 1, n)
    grid = G.Params(np.asarray(0.0), np.asarray(1.0), np.stack([a, a]), np.stack([n, one]))
    with pytest.raises(ValueError, match=r"params \(grid point 1 of 2: .*\): n must be >= 2 at every step"):
        driver.run_replicates(G.kernel, grid, cfg, 4, grid_axes=G.Params(None, None, 0, 0))
    with pytest.raises(ValueError, match="not sized for the schedule"):   # (the kernel read a None buffer)
        driver.run_replicates(G.kernel, G.Params(np.asarray(0.0), np.asarray(1.0), a, n),
                              G.GaussianConfig("accumulate-subsample"), 4)
    p = np.full(4, 0.25)
    with pytest.raises(ValueError, match=r"^params: kappa must lie in \[0.0, 1.0\]"):
        driver.run_replicates(M.kernel, M.Params(p, a, n, np.full(6, 2.0)), M.MultinomialConfig(), 4)
    with pytest.raises(ValueError, match="^params: p must"):
        driver.run_replicates(M.kernel, M.Params(-p, a, n, np.ones(6)), M.MultinomialConfig(), 4)
    kept, kappa = M.filter_schedules(S.constant_alpha(0.0, 5), 0.1, 0.0)   # keeps nothing: the kernel ran for ever
    with pytest.raises(ValueError, match="^params: the filter keeps nothing"):
        driver.run_replicates(M.kernel, M.Params(p, kept, n, kappa), M.MultinomialConfig("filter", 0.1, 0.0), 4)
    with pytest.raises(ValueError, match=r"^params: sigma must be in"):
        driver.run_replicates(LR.kernel, LR.Params(np.zeros(5), np.asarray(0.0)), LR.LinearRegressionConfig(), 4)
    theta, n_l = np.array([0.5, 1.0, -1.0]), S.constant_size(40, 5)
    with pytest.raises(ValueError, match=r"LogisticConfig.buffer is None"):
        driver.run_replicates(L.kernel, L.Params(theta, a, n_l), L.LogisticConfig(), 4)
    truth = MR.Mixture(np.array([0.5, 0.5]), np.array([-1.0, 1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^params: weights must"):
        driver.run_replicates(MR.kernel, MR.Params(truth._replace(weights=np.array([0.9, 0.9])), a, n),
                              MR.sized_config(MR.MixtureConfig(), n), 4)
    # well-formed parameters still run, and the kernels stay traceable (no check on tracers)
    out = driver.run_replicates(G.kernel, G.Params(np.asarray(0.0), np.asarray(1.0), a, n), cfg, 4, progress=False)
    assert out.shape == (4, 6)
    assert jax.jit(lambda k: G.kernel(k, G.Params(jnp.asarray(0.0), jnp.asarray(1.0), jnp.asarray(a),
                                                   jnp.asarray(n)), cfg))(jax.random.key(0)).shape == (6,)


def test_two_grid_layouts_of_one_kernel_compile_apart():
    """A user trial (2026-12-06): the compiled-function cache keyed grid_axes by its leaves without the None
    entries, so P(0, None) and P(None, 0) shared one function, and the second call ran the first's grid."""
    from typing import NamedTuple

    class P(NamedTuple):
        a: jax.Array
        b: jax.Array

    def kernel(key, p, config):
        return p.a * 10 + p.b + 0 * jax.random.uniform(key)

    params = P(jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([100.0, 200.0, 300.0]))
    over_a = driver.run_replicates(kernel, params, None, 2, grid_axes=P(0, None), progress=False)
    over_b = driver.run_replicates(kernel, params, None, 2, grid_axes=P(None, 0), progress=False)
    np.testing.assert_allclose(over_a[:, 0], [[110, 210, 310], [120, 220, 320], [130, 230, 330]])
    np.testing.assert_allclose(over_b[:, 0], [[110, 120, 130], [210, 220, 230], [310, 320, 330]])


def test_too_little_memory_offers_no_count():
    """A cluster trial (2026-12-06): under `prlimit --as` with 11 MiB left, the refusal offered "use at most 1,174",
    which was refused in turn (and 200 aborted in XLA): below TOO_LITTLE_MEMORY it says to raise the limit."""
    with pytest.raises(ValueError, match=r"replicates = 40,000 needs about .* of the 11\.3 MiB available .*; under "
                                         r"1 GiB is too little for JAX .*: raise this process's memory limit"):
        _checks.fits_in_memory("replicates", 40_000, 1000, available=int(11.3 * 2**20))
    with pytest.raises(ValueError, match=r"use at most 1,717,986$"):
        _checks.fits_in_memory("replicates", 10**7, 1000, available=2**31)


def test_replicate_keys_refuse_indices_that_wrap_or_are_not_counts():
    """An audit (2026-12-07): ``replicate_keys(0, 2**32, 2)`` gave replicates 0 and 1's keys again, ``count = -5``
    no keys and ``count = 2.5`` three, without a word; ``replicate_sharding("x")`` failed with an AttributeError and
    ``padded_count(-3)`` gave -3."""
    from collapse_jax import replicates

    for args, match in [((0, 2**32, 2), r"start \+ count must be at most 2\*\*32"),
                        ((0, 2**32 - 1, 2), r"start \+ count must be at most 2\*\*32"),
                        ((0, -1, 3), "start must be an integer >= 0"), ((0, 1.5, 2), "start must be an integer"),
                        ((0, 0, -5), "count must be an integer >= 0"), ((0, 0, 2.5), "count must be an integer"),
                        ((0, 0, True), "count must be an integer")]:
        with pytest.raises(ValueError, match=match):
            replicates.replicate_keys(*args)
    last = jax.random.key_data(replicates.replicate_keys(0, 2**32 - 1, 1))
    np.testing.assert_array_equal(last, jax.random.key_data(jax.random.fold_in(jax.random.key(0), 2**32 - 1))[None])
    assert replicates.replicate_keys(0, 5, 0).shape == (0,)
    for mesh in ("x", 0, []):
        with pytest.raises(ValueError, match="mesh must be"):
            replicates.replicate_sharding(mesh)
    with pytest.raises(ValueError, match="count must be an integer >= 0"):
        replicates.padded_count(-3)


def test_a_kernel_returning_typed_keys_gets_jaxs_own_advice():
    """An audit (2026-12-07): the wait for a chunk read ``is_ready`` of every output, which typed PRNG keys lack (an
    AttributeError from inside the driver); JAX's TypeError now says what to return instead."""
    with pytest.raises(TypeError, match="key_data"):
        driver.run_replicates(lambda k, p, c: k, None, None, 4, 0, progress=False)
