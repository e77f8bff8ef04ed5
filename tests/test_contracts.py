"""One contract for every simulator, in float64 and float32 (x64 off, the default dtype):

- the init/step simulators (docs/driver.md): the kernel is ``init`` followed by ``step`` over the per-step inputs
  (float64); jit equals eager (``jax.disable_jit``; float64 only, where the comparison is tightest and op-by-op runs
  once); the driver's vmap over chunks of replicate keys (2 keys a call for 3 replicates: a padded chunk) equals a
  Python loop of the jitted kernel over the same keys, so vmap, chunking and padding are invisible (float64); the
  same key gives the same draw, another key another; the kernel computes in the dtype it was given (both dtypes);
- the Sigma block study's one-block kernel: the same, minus the init/step form.

Shapes are tiny and every check reuses the one jitted kernel, so that compilation (most of the time) stays small.
Lanes and sharding are checked in tests/test_driver.py and tests/test_gmm_network.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chex

from collapse_jax import driver
from collapse_jax import gaussian as G
from collapse_jax import gmm_network as gn
from collapse_jax import linear_regression as LR
from collapse_jax import logistic as L
from collapse_jax import mixture_refit as MR
from collapse_jax import multinomial as M
from collapse_jax import schedules as S
from collapse_jax import sigma_precision as sp
from collapse_jax.replicates import replicate_keys


def _simulators(dtype):
    """name -> (module, params, config) of an init/step simulator, params in ``dtype``."""
    f = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    alpha, n = f(S.constant_alpha(0.5, 2)), f(S.constant_size(12, 2))
    return {
        "gaussian": (G, G.Params(f(0.5), f(1.3), alpha, n), G.GaussianConfig("accumulate")),
        "gaussian_subsample": (G, G.Params(f(0.5), f(1.3), alpha, n),
                               G.sized_config(G.GaussianConfig("accumulate-subsample"), n)),
        "gaussian_subsample_fit": (G, G.Params(f(0.5), f(1.3), alpha, n),
                                   G.sized_config(G.GaussianConfig("accumulate-subsample", record="fit"), n)),
        "linear_regression": (LR, LR.Params(f([1.0, -0.5]), f(0.7)), LR.LinearRegressionConfig(2, 5, 2)),
        "multinomial": (M, M.Params(f([0.5, 0.3, 0.2]), alpha, n, jnp.ones(3, dtype)),
                        M.MultinomialConfig("accumulate")),
        "multinomial_subsample": (M, M.Params(f([0.5, 0.3, 0.2]), alpha, n, jnp.ones(3, dtype)),
                                  M.MultinomialConfig("accumulate-subsample")),
        "logistic": (L, L.Params(f([0.2, 1.0, -1.0]), alpha, n), L.sized_config(L.LogisticConfig(max_iter=4), n, 2)),
        "mixture_refit": (MR, MR.Params(MR.Mixture(f([0.3, 0.7]), f([-2.0, 2.0]), f([1.0, 1.0])), alpha, n),
                          MR.sized_config(MR.MixtureConfig("accumulate", max_iter=3), n)),
        "gmm_network": (gn, gn.cast_params(gn.make_params(GMM_CONFIG), dtype), GMM_CONFIG.static),
    }


# B = 3 in d = 2 (the log-space ownership), a full covariance, human data, eps > 0: every field of gn.Params is read
GMM_CONFIG = gn.make_config(mu=((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0)), sigma=((1.0, 0.3), (0.3, 0.8)), num_models=2,
                            points_per_step=2, beta=0.5, dirichlet_a=0.7, num_steps=2, eps=0.05, num_human=3,
                            pi_ref=(0.5, 0.3, 0.2), record_pi=True, record_d=True)


def _other_kernels(dtype):
    """name -> (kernel, params, config) of the simulators with a one-replicate kernel outside the init/step form."""
    rows = jax.random.normal(jax.random.key(3), (30, 3), dtype)
    return {
        "sigma_block": (sp.block_kernel, sp.BlockParams(rows, jnp.asarray(0.25, dtype)), sp.BlockConfig((5, 8, 12))),
    }


SIMULATORS = list(_simulators(jnp.float32))
OTHERS = list(_other_kernels(jnp.float32))


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    """float64 (the test default) or float32 with x64 switched off, as a user runs by default."""
    if request.param == "float32":
        jax.config.update("jax_enable_x64", False)
        yield jnp.float32
        jax.config.update("jax_enable_x64", True)
    else:
        yield jnp.float64


def _floats(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]


def _check_kernel(name, kernel, params, config, dtype, lanes=None):
    """jit == eager (float64), dtype kept, the driver's vmap over chunks of replicates == a loop of the jitted
    kernel over the same replicate keys, same key == same draw; returns the jitted one-key kernel."""
    rtol = 1e-9 if dtype == jnp.float64 else 2e-4
    one = lambda k: kernel(k, params, config)  # noqa: E731
    compiled = jax.jit(one)
    keys = replicate_keys(3, 0, 3)  # what the driver gives replicates 0..2 of seed 3
    jitted = compiled(keys[0])
    assert all(x.dtype == dtype for x in _floats(jitted)), name  # the kernel computes in the requested dtype
    if dtype == jnp.float64:  # op-by-op execution is the slow part: once, where the comparison is tightest
        with jax.disable_jit():
            eager = one(keys[0])
        chex.assert_trees_all_close(jitted, eager, rtol=rtol, atol=rtol)

    # vmap == loop, chunking invisible: the driver vmaps chunks of 2 over 3 replicates (the last one padded). float64
    # only: the driver's batching does not depend on the dtype, and its compile is the float32 variant's main cost
    if dtype == jnp.float64:
        looped = jax.tree.map(lambda *xs: np.stack(xs), *[jax.tree.map(np.asarray, compiled(k)) for k in keys])
        run = driver.run_replicates(kernel, params, config, 3, 3, chunk_size=2, lanes=lanes)
        chex.assert_trees_all_close(run, looped, rtol=rtol, atol=rtol)

    chex.assert_trees_all_equal(compiled(keys[0]), jitted)
    other = compiled(keys[1])
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(_floats(jitted), _floats(other))), f"{name}: two keys gave the same draw"
    return compiled


@pytest.mark.parametrize("name", SIMULATORS)
def test_init_step_contract(name, dtype):
    module, params, config = _simulators(dtype)[name]
    compiled = _check_kernel(name, module.kernel, params, config, dtype)
    if dtype == jnp.float32:
        return  # the kernel is init + steps: the same code in either dtype, checked in float64 (one compile fewer)

    def by_hand(key):
        """init, then step over the per-step inputs (a Python loop) with the keys of driver.scan_kernel."""
        init_key, steps_key = jax.random.split(key)
        state = module.init(init_key, params, config)
        inputs = module.step_inputs(params, config)
        num_steps = jax.tree.leaves(inputs)[0].shape[0]
        records = [module.observe(state, config)] if hasattr(module, "observe") else []
        for t, k in enumerate(jax.random.split(steps_key, num_steps)):
            state, record = module.step(k, state, jax.tree.map(lambda x: x[t], inputs), config)
            records.append(record)
        return jax.tree.map(lambda *xs: jnp.stack(xs), *records)

    key = jax.random.key(5)
    chex.assert_trees_all_close(jax.jit(by_hand)(key), compiled(key), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", OTHERS)
def test_kernel_contract(name, dtype):
    kernel, params, config = _other_kernels(dtype)[name]
    _check_kernel(name, kernel, params, config, dtype)
