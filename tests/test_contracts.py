"""One contract for every simulator's per-replicate kernel, in float64 and float32 (the default dtype):

- jit equals eager (``jax.disable_jit``; float64 only, where the comparison is tightest and op-by-op runs once);
- vmap over replicate keys equals a Python loop over them;
- the same key gives the same draw, another key another.

Shapes are tiny so that the eager runs stay cheap. Chunking and sharding are checked in each simulator's own tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chex

from collapse_jax import gaussian as G
from collapse_jax import gmm_network as gn
from collapse_jax import linear_regression as LR
from collapse_jax import logistic as L
from collapse_jax import mixture_refit as MR
from collapse_jax import multinomial as M
from collapse_jax import schedules as S
from collapse_jax import sigma_precision as sp


def _kernels(dtype):
    """name -> (one replicate's kernel ``key -> pytree``), inputs in ``dtype``."""
    f = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    alpha, n = S.constant_alpha(0.5, 2), S.constant_size(12, 2)
    gmm_cfg = gn.paper_config(4, num_steps=3)
    lr_cfg = LR.LinearRegressionConfig(dim=2, num_samples=5, num_iterations=2)
    log_cfg = L.LogisticConfig(max_iter=4)
    log_sizes = L._sample_buffer.plan(n, log_cfg.regime, log_cfg.chunk, log_cfg.max_points, "logistic")
    mix_cfg = MR.MixtureConfig(max_iter=3)
    mix_sizes = MR._sample_buffer.plan(n, mix_cfg.regime, mix_cfg.chunk, mix_cfg.max_points, "mixture")
    truth = MR.Mixture(f([0.3, 0.7]), f([-2.0, 2.0]), f([1.0, 1.0]))
    p = f([0.5, 0.3, 0.2])
    return {
        "gmm_network": lambda k: gn.run_network(k, gmm_cfg, dtype=dtype, backend="jax"),
        "multinomial": lambda k: M.replicate_risk(k, p, f(alpha), f(n), jnp.ones(3, dtype), M.MultinomialConfig()),
        "gaussian": lambda k: G.replicate_loss(k, f(0.5), f(1.3), f(alpha), f(n), G.GaussianConfig("accumulate")),
        "linear_regression": lambda k: LR.replicate_error(k, f([1.0, -0.5]), f(0.7), lr_cfg),
        "logistic": lambda k: L.replicate_risk(k, f([0.2, 1.0, -1.0]), f(alpha), f(n), log_cfg, *log_sizes),
        "mixture_refit": lambda k: MR.replicate_risk(k, truth, f(alpha), f(n), mix_cfg, *mix_sizes),
        "sigma_block": lambda k: sp.prefix_block_stats(jax.random.normal(k, (12, 3), dtype), (5, 8, 12)),
    }


NAMES = list(_kernels(jnp.float32))


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


@pytest.mark.parametrize("name", NAMES)
def test_kernel_contract(name, dtype):
    kernel = _kernels(dtype)[name]
    keys = jax.random.split(jax.random.key(11), 3)
    rtol = 1e-9 if dtype == jnp.float64 else 2e-4

    compiled = jax.jit(kernel)
    jitted = compiled(keys[0])
    assert all(x.dtype == dtype for x in _floats(jitted)), name  # the kernel computes in the requested dtype
    if dtype == jnp.float64:  # op-by-op execution is the slow part: once, where the comparison is tightest
        with jax.disable_jit():
            eager = kernel(keys[0])
        chex.assert_trees_all_close(jitted, eager, rtol=rtol, atol=rtol)

    mapped = jax.jit(jax.vmap(kernel))(keys)
    looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[compiled(k) for k in keys])
    chex.assert_trees_all_close(mapped, looped, rtol=rtol, atol=rtol)

    chex.assert_trees_all_equal(compiled(keys[0]), jitted)
    other = compiled(keys[1])
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(_floats(jitted), _floats(other))), f"{name}: two keys gave the same draw"
