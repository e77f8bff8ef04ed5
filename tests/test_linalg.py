"""collapse_jax._linalg: the same values as JAX's own linear algebra, in LAPACK calls small enough that jaxlib 0.10 to
0.11.0 never splits them over XLA:CPU's thread pool (where two split calls at once can wait on each other forever)."""

import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import _linalg


def _spd(shape, d, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape + (3 * d, d))
    return np.einsum("...ni,...nj->...ij", x, x)


def _lapack_batches(fn, *args):
    """The number of problems in every LAPACK custom call of ``fn``'s compiled CPU program."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    calls = [line for line in text.splitlines() if re.search(r'custom_call_target="lapack_', line)]
    assert calls, "no LAPACK call found"
    shapes = [[int(v) for v in re.search(r"= \(?f\d+\[([\d,]+)\]", line).group(1).split(",")] for line in calls]
    return [int(np.prod(shape[:-2])) for shape in shapes]  # a call's problems: the dimensions before the matrix


def test_same_values_as_jax_explicit_batches_and_nested_vmap():
    with jax.enable_x64(True):
        g = jnp.asarray(_spd((3, 5), 6))
        b_vec = jnp.asarray(np.random.default_rng(1).standard_normal((3, 5, 6)))
        b_mat = jnp.asarray(np.random.default_rng(2).standard_normal((3, 5, 6, 4)))
        low = jnp.linalg.cholesky(g)
        up = jax.scipy.linalg.cho_factor(g, lower=False)[0]
        cases = [
            (_linalg.cholesky, jnp.linalg.cholesky, (g,)),
            (_linalg.eigvalsh, jnp.linalg.eigvalsh, (g,)),
            (lambda a: _linalg.cho_factor(a, lower=False), lambda a: jax.scipy.linalg.cho_factor(a, lower=False)[0],
             (g,)),
            (lambda a, b: _linalg.solve_triangular(a, b, lower=True),
             lambda a, b: jax.scipy.linalg.solve_triangular(a, b, lower=True), (low, b_mat)),
            (lambda a, b: _linalg.cho_solve(a, b, lower=False),
             lambda a, b: jax.scipy.linalg.cho_solve((a, False), b), (up, b_vec)),
        ]
        for ours, theirs, args in cases:
            expect = np.stack([[np.asarray(theirs(*(a[i, j] for a in args))) for j in range(5)] for i in range(3)])
            np.testing.assert_allclose(np.asarray(ours(*args)), expect, rtol=1e-13, atol=1e-13)  # leading dims
            np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(jax.vmap(ours)))(*args)), expect, rtol=1e-13,
                                       atol=1e-13)
            np.testing.assert_allclose(np.asarray(ours(*(a[1, 2] for a in args))), expect[1, 2], rtol=1e-13,
                                       atol=1e-13)  # one problem
        # an argument shared by every problem (not mapped), and the triangular solve against the inverse
        inv = jax.vmap(jax.vmap(lambda a: _linalg.solve_triangular(a, jnp.eye(6), lower=True)))(low)
        np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(np.asarray(low)), rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's LAPACK calls")
def test_lapack_batches_stay_below_jaxlibs_split_size_under_nested_vmap():
    """The property that prevents the hang: however wide the vmaps (here 4 x 3000 problems, two levels) or the
    leading dimensions, no LAPACK call carries more than CHUNK_FLOPS of estimated work (jaxlib splits from 200,000);
    without the wrappers the same programs make one call of all 12,000 problems."""
    d = 8
    with jax.enable_x64(True):
        g = jnp.broadcast_to(jnp.eye(d), (4, 3000, d, d))
        vec = g[..., 0]
        cases = [
            (_linalg.cholesky, jnp.linalg.cholesky, (g,), d**3 // 3),
            (_linalg.eigvalsh, jnp.linalg.eigvalsh, (g,), 5 * d**3),
            (lambda a: _linalg.solve_triangular(a, jnp.eye(d), lower=True),
             lambda a: jax.scipy.linalg.solve_triangular(a, jnp.eye(d), lower=True), (g,), d**3),
            (lambda a, b: _linalg.cho_solve(a, b, lower=False), lambda a, b: jax.scipy.linalg.cho_solve((a, False), b),
             (g, vec), d * d),
        ]
        for ours, theirs, args, cost in cases:
            assert max(_lapack_batches(jax.vmap(jax.vmap(theirs)), *args)) == 12000
            for fn in (jax.vmap(jax.vmap(ours)), ours if len(args) == 1 else None):
                if fn is not None:
                    batches = _lapack_batches(fn, *args)
                    assert max(batches) * cost <= _linalg.CHUNK_FLOPS, (batches, cost)
                    assert max(batches) == _linalg.CHUNK_FLOPS // cost  # as large as allowed: few loop steps


def test_programs_that_hung_finish():
    """Two programs that hung with jaxlib 0.10.2 on a 2-core CPU before the wrappers (in every run): the jax engine's
    statistics of 1000 blocks at d = 8 (ten block sizes, each size's Cholesky and triangular solve an independent
    batched LAPACK call), and linear regression over four host devices (20,000 replicates, d = 16: each device's
    batched solves at once). Run in a child process with a time limit, so a hang fails instead of stalling."""
    code = textwrap.dedent("""
        import jax, numpy as np, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4
        from collapse_jax import linear_regression as lr, sigma_precision as sp
        ns = tuple(int(n) for n in sp.block_sizes(8, 10**6, sp.PrecisionConfig().ratios))
        rng = np.random.default_rng(0)
        w = jnp.asarray(rng.standard_normal((20000, 8)).astype(np.float32))
        idx = jnp.asarray(np.stack([rng.choice(20000, ns[-1], replace=False) for _ in range(1000)]), jnp.int32)
        out = np.asarray(sp.jit_batched_block_stats(w, idx, ns))
        assert out.shape == (9, 1000, len(ns)) and np.all(np.isfinite(out[:2]))
        cfg = lr.LinearRegressionConfig(dim=16, num_samples=64, num_iterations=20)
        err = lr.simulate(0, np.ones(16), 1.0, cfg, 20_000, progress=False)
        assert err.shape == (20_000, 20) and np.all(np.isfinite(err))
        print("ok")
    """)
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("a formerly hanging program did not finish in 240 s (hung)")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
