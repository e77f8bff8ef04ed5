"""Sigma spectral estimators vs the NumPy reference, vs theory (Monte Carlo, float64), contracts, bad input."""

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from native_support import skip_if_built_for_avx2
from tests import spectral_reference as ref
from collapse_jax import _native
from collapse_jax import sigma_precision as spp
from collapse_jax import spectral as sp

NATIVE = _native.spectral_library() is not None  # native kernels need a C++ compiler (and COLLAPSE_JAX_NATIVE != 0)
AMX = _native.amx_available()  # the native sweep engine's tests run only where it can
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernels unavailable (no C++ compiler or disabled)")


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- vs NumPy reference
def test_gram_streaming_names_an_overflow_and_its_cure():
    """An audit (2026-12-04): float32 embeddings near 1e20 are finite, but their Gram overflowed to inf and the
    log-det then failed on "NaN/inf" without saying why."""
    x = (rng(0).standard_normal((100, 4)) * 1e20).astype(np.float32)
    with pytest.raises(ValueError, match="the Gram matrix overflowed float32: .* rescale them .* float64"):
        sp.gram_streaming([x[:50], x[50:]], 4, dtype=jnp.float32)
    np.testing.assert_allclose(sp.gram_streaming([x], 4, dtype=jnp.float64).gram, x.astype(np.float64).T @ x,
                               rtol=1e-12)


def test_gram_streaming_matches_reference_with_uneven_chunks():
    x = rng().standard_normal((1003, 7))
    chunks = [x[:100], x[100:650], x[650:]]
    out = sp.gram_streaming(chunks, 7)
    np.testing.assert_allclose(out.gram, ref.gram(x), rtol=1e-12, atol=1e-9)
    assert out.num_points == 1003
    np.testing.assert_allclose(sp.gram_streaming(sp.array_chunks(x, 64), 7).gram, x.T @ x, rtol=1e-12, atol=1e-9)
    # worker threads: chunk k always goes to accumulator k mod threads, so a rerun is bitwise identical
    a = sp.gram_streaming(sp.array_chunks(x, 50), 7, threads=3).gram
    np.testing.assert_array_equal(a, sp.gram_streaming(sp.array_chunks(x, 50), 7, threads=3).gram)
    np.testing.assert_allclose(a, x.T @ x, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sp.gram_streaming([jnp.asarray(x)], 7, threads=1).gram, x.T @ x, rtol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 2.5])
def test_logdet_matches_slogdet(eps):
    x = rng(1).standard_normal((40, 12)) * np.linspace(0.1, 3, 12)
    g = x.T @ x
    np.testing.assert_allclose(float(sp.logdet(g, eps)), ref.logdet(g, eps), rtol=1e-12)


@pytest.mark.parametrize("dim", [1, 9, 17, 40, 70, 100])
@pytest.mark.parametrize("backend", [pytest.param("native", marks=needs_native), "xla"])
def test_batched_logdet_equals_loop_of_slogdet(dim, backend):
    # dims around the native kernel's register tiles (8 x 16 with AVX-512, 4 x 8 with AVX2) and 32-column blocks
    # (full, half-width and ragged edges)
    xs = rng(2).standard_normal((6, 2 * dim + 3, dim)) * np.linspace(0.2, 5.0, dim)
    gs = np.einsum("bni,bnj->bij", xs, xs)
    for eps in (0.0, 0.7):
        np.testing.assert_allclose(np.asarray(sp.batched_logdet(jnp.asarray(gs), eps, backend=backend)),
                                   [ref.logdet(g, eps) for g in gs], rtol=1e-12)


@needs_native
@skip_if_built_for_avx2
def test_batched_logdet_built_for_avx2_equals_slogdet():
    """The x86-64-v3 build's Cholesky (the AVX2 register tile, 4 x 8) against slogdet, where this machine's own
    build is the AVX-512 one (elsewhere the test above already runs the AVX2 code). One build of the spectral
    library (~10 s) in a subprocess."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        pytest.skip("x86-64 only")
    code = textwrap.dedent("""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        from collapse_jax import spectral as sp
        rng = np.random.default_rng(2)
        for dim in (9, 17, 40, 70, 100):
            xs = rng.standard_normal((4, 2 * dim + 3, dim)) * np.linspace(0.2, 5.0, dim)
            gs = np.einsum("bni,bnj->bij", xs, xs)
            for eps in (0.0, 0.7):
                want = [np.linalg.slogdet(g + eps * np.eye(dim))[1] for g in gs]
                got = np.asarray(sp.batched_logdet(gs, eps, backend="native"))
                np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"d = {dim}, eps = {eps}")
    """)
    env = dict(os.environ, COLLAPSE_JAX_MARCH="x86-64-v3", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


@needs_native
def test_batched_logdet_native_contract():
    xs = rng(3).standard_normal((2, 4, 40, 12))
    gs = jnp.asarray(np.einsum("abni,abnj->abij", xs, xs))
    native = sp.batched_logdet(gs, backend="native")
    assert native.shape == (2, 4)
    np.testing.assert_allclose(np.asarray(native), np.asarray(sp.batched_logdet(gs, backend="xla")), rtol=1e-12)
    jitted = jax.jit(lambda g: sp.batched_logdet(g, backend="native"))(gs)  # an ffi call inside jit
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(native))
    looped = [float(sp.batched_logdet(gs[0, k][None], backend="native")[0]) for k in range(4)]
    np.testing.assert_array_equal(np.asarray(native[0]), looped)
    bad = np.stack([np.eye(3), -np.eye(3), np.diag([1.0, 0.0, 2.0])])
    with pytest.warns(RuntimeWarning, match="2 of 3 matrices"):
        out = np.asarray(sp.batched_logdet(jnp.asarray(bad), backend="native"))
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])  # not positive definite -> NaN, as the xla path
    with pytest.raises(ValueError, match="backend"):
        sp.batched_logdet(gs, backend="lapack")
    with pytest.raises(ValueError, match="float64"):
        sp.batched_logdet(gs.astype(jnp.float32), backend="native")
    # a user trial (2026-12-06): 1-D input gave [nan] and "1 of 1 matrices ... not positive definite"
    for wrong, hint in [(np.ones(3), r"got shape \(3,\)$"), (np.eye(3), r"pass g\[None\]"),
                        (np.ones((2, 3, 4)), r"\(2, 3, 4\)")]:
        with pytest.raises(ValueError, match=r"grams must be a stack of square Gram matrices .*" + hint):
            sp.batched_logdet(wrong)
    with pytest.raises(ValueError, match="grams must hold real numbers"):
        sp.batched_logdet(np.eye(3)[None].astype(complex))


def test_mahalanobis_and_block_estimates_match_reference():
    x = rng(3).standard_normal((50, 6))
    m = np.asarray(sp.mahalanobis_insample(jnp.asarray(x)))
    np.testing.assert_allclose(m, ref.mahalanobis(x), rtol=1e-10)
    assert m.sum() == pytest.approx(50 * 6, rel=1e-12)  # sum_i M_i = n d exactly
    est = sp.block_estimates(x, 1000)
    assert float(est.l_hat) == pytest.approx(ref.l_hat(x, 1000), rel=1e-12)
    assert float(est.moments.tau2_plugin) == pytest.approx(np.mean(ref.mahalanobis(x) ** 2) - 36, rel=1e-9)


def _reference_prefix_stats(x, ns):
    """Exact (float64 NumPy loops) log det G_1, in-sample mean(M_i^2), mean and variance of log(1 - h_i) from the n
    leave-one-out log-dets themselves (log det G_(-i) - log det G_1), and the variance over the pairs (i, i+1 mod n)
    of the second difference T - T_(-i) - T_(-j) + T_(-ij) of T = log det, for each prefix of the rows x."""
    x = np.asarray(x, np.float64)
    lds = np.array([ref.logdet(ref.gram(x[:n])) for n in ns])
    steps = [np.array([ref.logdet(ref.gram(np.delete(x[:n], i, axis=0))) for i in range(n)]) - ld
             for n, ld in zip(ns, lds)]
    pairs = [np.array([ref.logdet(ref.gram(np.delete(x[:n], [i, (i + k) % n], axis=0))) - ld - st[i]
                       - st[(i + k) % n] for k in range(1, sp.PAIR_OFFSETS + 1) for i in range(n)])
             if n >= x.shape[1] + 2 else np.full(n, np.nan)
             for n, ld, st in zip(ns, lds, steps)]  # leave-two-out blocks need n - 2 >= d rows
    rows = [_row_sums(x[:n]) for n in ns]
    return (lds, np.array([np.mean(ref.mahalanobis(x[:n]) ** 2) for n in ns]),
            np.array([st.mean() for st in steps]), np.array([st.var() for st in steps]),
            np.array([p.var() for p in pairs]),
            np.array([_pair_mean(x[:n], p) for n, p in zip(ns, pairs)]),
            np.array([r.var() for r in rows]),
            np.array([np.mean((st - st.mean()) * r) for st, r in zip(steps, rows)]),
            np.array([np.mean((st - st.mean()) ** 4) / st.var() ** 2 for st in steps]))


def _reference_first_pass(x, ns):
    """The first four of :func:`_reference_prefix_stats` in float64 from the leverages (``log det G_(-i) - log det
    G = log(1 - h_i)``, an identity), without deleting rows: cheap enough for blocks of thousands of rows."""
    x = np.asarray(x, np.float64)
    out = []
    for n in ns:
        g = ref.gram(x[:n])
        h = np.einsum("ij,jk,ik->i", x[:n], np.linalg.inv(g), x[:n])
        steps = np.log1p(-h)
        out.append((ref.logdet(g), np.mean((n * h) ** 2), steps.mean(), steps.var()))
    return tuple(np.array(v) for v in zip(*out))


def _row_sums(x):
    """``r_i = sum_{j != i} x_ij`` by definition: deleting row i moves every other row's ``1 - h_j`` by the factor
    ``1 - x_ij``, so each ``x_ij`` is read off the leverages of the explicitly deleted block (n Gram inversions)."""
    n = x.shape[0]
    h = np.diag(x @ np.linalg.inv(ref.gram(x)) @ x.T)
    out = np.empty(n)
    for i in range(n):
        rest = np.delete(x, i, axis=0)
        h_rest = np.diag(rest @ np.linalg.inv(ref.gram(rest)) @ rest.T)
        out[i] = np.sum(1.0 - (1.0 - h_rest) / (1.0 - np.delete(h, i)))
    return out


def _pair_x(x):
    """All ``x_ij = h_ij^2 / ((1 - h_i)(1 - h_j))`` from the hat matrix (n, n) and the mean over i != j."""
    n = x.shape[0]
    hat = x @ np.linalg.inv(ref.gram(x)) @ x.T
    h = np.diag(hat)
    xs = hat**2 / np.outer(1 - h, 1 - h)
    return xs, xs[~np.eye(n, dtype=bool)].mean()


def _pair_mean(x, second_differences):
    """``LeaveOneOut.pair_mean`` by its definition: minus the all-pairs mean of x_ij (brute force), plus the mean over
    the sampled pairs (i, i + k) of (second difference + x_ij), the second differences from explicit log-dets."""
    n, d = x.shape
    if n < d + 2:
        return np.nan
    xs, x_all = _pair_x(x)
    sampled = np.array([xs[i, (i + k) % n] for k in range(1, sp.PAIR_OFFSETS + 1) for i in range(n)])
    return -x_all + np.mean(second_differences + sampled)


def test_prefix_block_stats_matches_reference():
    x = rng(4).standard_normal((90, 5))
    ns = (7, 11, 40, 90)
    ref_stats = _reference_prefix_stats(x, ns)
    for got, want in zip(spp.jit_prefix_block_stats(jnp.asarray(x), ns), ref_stats):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9)  # float64 input: float64 product
    for got, want in zip(spp.numpy_prefix_block_stats(x.astype(np.float32), ns),
                         _reference_prefix_stats(x.astype(np.float32), ns)):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)  # float32 products


@pytest.mark.parametrize("rows_per_chunk", [4, 5, 13])
def test_numpy_engine_leverage_pass_is_the_same_in_any_chunks(monkeypatch, rows_per_chunk):
    """The numpy engine's leverage pass runs in cache-sized chunks of rows (6144 rows at d = 16, more than these
    blocks): chunks of 4 (the pair offsets), 5 and 13 rows, whose boundaries cut pairs (i, i + k), give the same
    statistics bit for bit (each row's sums are formed alike), and they match the float64 reference."""
    x = rng(6).standard_normal((200, 16)).astype(np.float32)
    ns = (17, 30, 57, 200)
    whole = spp.numpy_prefix_block_stats(x, ns)
    monkeypatch.setattr(spp, "LEVERAGE_CHUNK_BYTES", rows_per_chunk * 4 * 16)
    chunked = spp.numpy_prefix_block_stats(x, ns)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)
    for got, want in zip(chunked, _reference_prefix_stats(x.astype(np.float64), ns)):
        np.testing.assert_allclose(got[1:], want[1:], rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("dim, n", [(8, 10), (8, 16), (32, 48), (12, 128)])  # float64 whitening (2n <= 3d) or not
def test_batched_block_stats_equal_the_block_engine(dim, n):
    """The calibration's batched statistics are the per-block numpy engine's, block by block: the same arithmetic,
    with general instead of triangular products (float32 rounding apart), NaN row sums in the same blocks."""
    x = rng(5).standard_normal((60, n, dim)).astype(np.float32)
    x[7] *= np.float32(1e3)  # a block on another scale: nothing in the batch is shared between blocks
    one = np.array([np.asarray(spp.numpy_prefix_block_stats(b, (n,)))[:, 0] for b in x])
    batched = spp.numpy_batched_block_stats(x)
    assert batched.shape == (60, 9)
    np.testing.assert_array_equal(np.isnan(batched), np.isnan(one))
    np.testing.assert_allclose(batched[:, :6], one[:, :6], rtol=1e-5, atol=0)  # log det .. pair mean
    np.testing.assert_allclose(batched[:, 6:], one[:, 6:], rtol=1e-3, atol=0)  # row sums: differences of ~1/n terms


@pytest.mark.parametrize("dim, ns", [(8, (9, 10, 12, 16, 40, 160)), (12, (13, 30, 120))])
def test_batched_prefix_stats_equal_the_block_engine_and_the_reference(dim, ns):
    """The sweep's batched numpy path (every prefix size of many blocks in one call, float64 segments up to 1.5 d
    and float32 above, as the per-block engine) against the per-block engine, block by block, and both against
    the float64 reference loops: the batch is no less accurate."""
    x = rng(9).standard_normal((12, ns[-1], dim)).astype(np.float32)
    x[3] *= np.float32(1e-3)
    batched = spp.numpy_batched_prefix_stats(x, ns)
    assert len(batched) == 2 + len(spp.LOO_FIELDS) and all(v.shape == (12, len(ns)) for v in batched)
    for b in (0, 3, 11):
        one = spp.numpy_prefix_block_stats(x[b], ns)
        want = _reference_prefix_stats(x[b].astype(np.float64), ns) if b == 0 else None
        for k, (got, mine) in enumerate(zip(batched, one)):
            np.testing.assert_array_equal(np.isnan(got[b]), np.isnan(mine))
            np.testing.assert_allclose(got[b][1:], mine[1:], rtol=1e-5 if k < 6 else 2e-3, atol=0)
            if want is not None:
                np.testing.assert_allclose(got[b][1:], want[k][1:], rtol=2e-3, atol=2e-4)


@pytest.fixture
def amx_engine(monkeypatch):
    """The native AMX engine on this CPU's tiles ("hardware"), else the same kernel with its tile instructions
    emulated in software ("emulated", _native.emulated_amx_library: needs AVX-512 BF16), else skip."""
    if AMX:
        return "hardware"
    lib = _native.emulated_amx_library()
    if lib is None:
        pytest.skip("no AMX CPU here, and no AVX-512 BF16 (or no C++ compiler) for the emulated tiles")
    monkeypatch.setattr(_native, "spectral_library", lambda: lib)
    return "emulated"


@pytest.mark.parametrize("dim", [3, 8, 40, 96])
def test_native_block_stats_match_float64_reference(dim, amx_engine):
    # The AMX kernel on a whitened float32 population (what the sweep feeds it) against exact float64 statistics of
    # the same float32 rows. Measured errors: |d log det| <= 6e-5, relative error of Var(M_i) <= 3.3e-4 (d <= 384).
    r = rng(20 + dim)
    num_points = 40 * dim + 500
    pop = r.standard_normal((num_points, dim)).astype(np.float32)
    ns = spp.block_sizes(dim, num_points, (1.0, 1.25, 2.0, 5.0, 20.0, 40.0))
    idx = np.stack([r.choice(num_points, ns[-1], replace=False) for _ in range(3)])
    ld, m2, loo_mean, loo_var, *rest = spp.native_block_stats(pop, idx, ns, threads=2)
    assert len(rest) == len(spp.LOO_FIELDS) - 2
    for b in range(3):
        # the second- and third-pass statistics against the numpy engine (itself checked against explicit deletion
        # below); n = d + 1 (leverages ~1, NaN or noise in both engines) excluded; up to 1.5 d (the float64 rows)
        # the pairs' log(1 - x_ij) still magnify the float32 rounding of the whitened rows: d = 8, n = 10, pair
        # variance 1.230 (AMX) and 1.242 (numpy) against 1.260 by explicit deletion
        with sp.one_blas_thread():
            numpy_rest = spp.numpy_prefix_block_stats(pop[idx[b]], ns)[4:]
        rtol = np.where(2 * ns <= 3 * dim, 3e-2, 3e-3)[1:]
        for got, want in zip(rest, numpy_rest):
            np.testing.assert_array_less(np.abs(got[b][1:] - want[1:]), rtol * np.abs(want[1:]) + 1e-9)
        ref_ld, ref_m2, ref_lm, ref_lv = _reference_first_pass(pop[idx[b]], ns)
        np.testing.assert_allclose(ld[b], ref_ld, rtol=0, atol=2e-4)
        var, ref_var = m2[b] - dim * dim, ref_m2 - dim * dim  # in-sample Var(M_i), the part the intervals use
        np.testing.assert_allclose(var, ref_var, rtol=2e-3, atol=2e-3)
        # n = d + 1: h_i ~ 1, ill-posed. (Before small prefixes were done in float64, d = 8, n = 10 was 0.47 % off.)
        np.testing.assert_allclose(loo_mean[b][1:], ref_lm[1:], rtol=2e-3)
        np.testing.assert_allclose(loo_var[b][1:], ref_lv[1:], rtol=5e-3)


def test_native_block_stats_contract_and_bad_input(amx_engine):
    r = rng(30)
    pop = r.standard_normal((3000, 16)).astype(np.float32)
    ns = spp.block_sizes(16, 3000, (1.0, 3.0, 30.0))
    idx = np.stack([r.choice(3000, ns[-1], replace=False) for _ in range(5)])
    one = spp.native_block_stats(pop, idx, ns, threads=1)
    three = spp.native_block_stats(pop, idx, ns, threads=3)
    for a, b in zip(one, three):  # threads only split the blocks: bitwise equal
        np.testing.assert_array_equal(a, b)
    single = spp.native_block_stats(pop, idx[3:4], ns, threads=1)
    np.testing.assert_array_equal(single[0][0], one[0][3])  # a block's result does not depend on the batch
    shuffled = idx.copy()
    for k in range(len(ns)):  # only the set of rows in each segment matters
        lo = 0 if k == 0 else ns[k - 1]
        shuffled[:, lo:ns[k]] = shuffled[:, lo:ns[k]][:, ::-1]
    np.testing.assert_allclose(spp.native_block_stats(pop, shuffled, ns, 1)[0], one[0], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="ns"):
        spp.native_block_stats(pop, idx, (10, 40), 1)  # ns[0] <= d
    with pytest.raises(ValueError, match="indices"):
        spp.native_block_stats(pop, idx + 3000, ns, 1)
    flat = np.zeros((3000, 16), np.float32)
    flat[:, 0] = 1.0  # rank one: every block Gram is singular
    with pytest.raises(FloatingPointError, match="not positive definite"):
        spp.native_block_stats(flat, idx, ns, 1)


def test_wishart_formulas_match_scipy_reference():
    for d, n, big in [(1, 2, 10), (5, 6, 100), (20, 200, 4000)]:
        assert float(sp.wishart_bias(d, n, big)) == pytest.approx(ref.wishart_bias(d, n, big), rel=1e-10)
        assert float(sp.wishart_variance(d, n, big)) == pytest.approx(ref.wishart_variance(d, n, big), rel=1e-10)


# ---------------------------------------------------------------- Theorem 1 (property tests)
@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 6), extra=st.integers(1, 20), rest=st.integers(1, 30), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(0.01, 100.0))
def test_theorem1_inequalities_hold(d, extra, rest, seed, scale):
    r = np.random.default_rng(seed)
    x = r.standard_normal((d + extra + rest, d)) * scale * r.uniform(0.1, 2.0, d)
    x1, x2 = x[: d + extra], x[d + extra:]
    g1, g2 = x1.T @ x1, x2.T @ x2
    lo, hi = sp.theorem1_bounds(jnp.asarray(g1), jnp.asarray(g2))
    full = ref.logdet(g1 + g2)
    tol = 1e-9 * max(1.0, abs(full))
    assert float(lo) <= full + tol
    assert full <= float(hi) + tol
    assert float(lo) == pytest.approx(ref.theorem1(g1, g2)[0], rel=1e-9, abs=1e-9)
    assert float(hi) == pytest.approx(ref.theorem1(g1, g2)[1], rel=1e-9, abs=1e-9)


def test_theorem1_upper_bound_can_be_tight_and_lower_is_not_trivially_equal():
    # G_2 = c I exactly: Weyl's bound is attained, and det G_1 < det G strictly.
    x1 = rng(5).standard_normal((10, 3))
    g1, g2 = x1.T @ x1, 2.0 * np.eye(3)
    lo, hi = sp.theorem1_bounds(jnp.asarray(g1), jnp.asarray(g2))
    assert float(hi) == pytest.approx(ref.logdet(g1 + g2), rel=1e-12)
    assert float(lo) < ref.logdet(g1 + g2) - 0.1


def test_theorem1_lower_bound_is_finite_for_nearly_dead_coordinates():
    """A user trial (2026-12-05): real MiniLM embeddings have three nearly dead coordinates; eigvalsh's absolute
    error made a tiny eigenvalue of G_1 negative and the lower bound NaN. It is now log det G_1 by Cholesky."""
    r = rng(11)
    x = r.standard_normal((400, 24)) * np.r_[np.full(21, 30.0), np.full(3, 3e-7)]
    g1, g2 = x[:200].T @ x[:200], x[200:].T @ x[200:]
    lo, hi = sp.theorem1_bounds(jnp.asarray(g1), jnp.asarray(g2))
    assert float(lo) == pytest.approx(np.linalg.slogdet(g1)[1], rel=1e-9)
    assert float(lo) <= np.linalg.slogdet(g1 + g2)[1] <= float(hi)
    # with JAX's float32 default too (a second user trial: NaN there on MiniLM Grams; now computed in float64)
    with jax.enable_x64(False):
        lo32, hi32 = sp.theorem1_bounds(g1, g2)
    assert lo32.dtype == jnp.float64 and float(lo32) == pytest.approx(np.linalg.slogdet(g1)[1], rel=1e-9)


def test_interval_covers_in_float64_with_x64_off():
    """A user trial (2026-12-05): with JAX's float32 default, ``covers`` compared a centre near 1e4 in float32 and
    missed a truth 0.9999 half-widths from it (``low`` / ``high`` were right)."""
    c, h = 10646.35979743116, 0.8997706957326594
    with jax.enable_x64(True):  # as the estimators return them: float64 JAX arrays
        interval = sp.Interval(jnp.asarray(c, jnp.float64), jnp.asarray(h, jnp.float64))
    with jax.enable_x64(False):
        assert bool(interval.covers(c + 0.9999 * h)) and bool(interval.covers(c - 0.9999 * h))
        assert not bool(interval.covers(c + 1.0001 * h))
        np.testing.assert_array_equal(interval.covers(np.array([c, c + 2 * h])), [True, False])


def test_overestimation_ratio():
    assert float(sp.log_overestimation_ratio(jnp.ones(5))) == 0.0
    # a user trial (2026-12-06): eigvalsh of real embeddings' Sigma gave -3e-17 and log OR was NaN without a word
    for bad in ([1.0, 0.5, -3e-17], [1.0, 0.0], [1.0, np.nan]):
        with pytest.raises(ValueError, match="sigma_eigenvalues must be finite and > 0"):
            sp.log_overestimation_ratio(np.asarray(bad))
    with pytest.raises(ValueError, match="sigma_eigenvalues must be a real array"):
        sp.log_overestimation_ratio(np.float64(2.0))
    lam = np.array([4.0, 2.0, 1.0])
    assert float(sp.log_overestimation_ratio(jnp.asarray(lam))) == pytest.approx(np.log(1 * 2 * 4))


def test_overestimation_ratio_matches_weyl_gap_for_large_n():
    # Theorem 2: for N >> n the Weyl upper bound exceeds log det G by about log OR + d log(n/N)... checked on the
    # population level: sum log(lambda_i(n S) + (N-n) lambda_1(S)) - sum log(N lambda_i(S)) -> log OR as n/N -> 0.
    lam = np.array([5.0, 1.0, 0.2])
    n, big = 10_000, 10_000_000
    upper = np.sum(np.log(n * lam + (big - n) * lam.max()))
    exact = np.sum(np.log(big * lam))
    assert upper - exact == pytest.approx(float(sp.log_overestimation_ratio(jnp.asarray(lam))), abs=1e-2)


# ---------------------------------------------------------------- Theorem 3 and the corrections vs theory
def _gaussian_errors(d, n, big, reps, seed):
    """Vectorised over replicates (NumPy): log det G, log det G_1 and in-sample mean(M_i^2) of Gaussian data."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((reps, big, d))
    ld_full = np.linalg.slogdet(np.einsum("rni,rnj->rij", x, x))[1]
    xb = x[:, :n]
    g1 = np.einsum("rni,rnj->rij", xb, xb)
    ld_block = np.linalg.slogdet(g1)[1]
    m = n * np.einsum("rni,rij,rnj->rn", xb, np.linalg.inv(g1), xb)
    return ld_full, ld_block, np.mean(m * m, axis=1)


def test_wishart_bias_and_variance_by_monte_carlo():
    d, n, big, reps = 6, 20, 200, 3000
    full, block, _ = _gaussian_errors(d, n, big, reps, 11)
    err = full - (block + d * np.log(big / n))
    bias, var = float(sp.wishart_bias(d, n, big)), float(sp.wishart_variance(d, n, big))
    assert abs(err.mean() - bias) < 4 * np.sqrt(var / reps)
    assert err.var(ddof=1) == pytest.approx(var, rel=0.1)
    # the first-order (seed) variance 2d(1/n - 1/N) is clearly too small here: the test can fail
    assert err.var(ddof=1) > 1.15 * 2 * d * (1 / n - 1 / big)


@pytest.mark.parametrize("call, match", [
    (lambda: sp.wishart_variance(10, 50, 20), r"n must be at most the total count N, got n = 50 > N = 20"),
    (lambda: sp.wishart_bias(10, np.array([20, 300]), 100), r"got n = 300 > N = 100 at index \[1\]"),
    (lambda: sp.wishart_interval(0.0, 10, 200, 100, 1.96), r"got n = 200 > N = 100"),
    (lambda: sp.wishart_bias(10, 5, 100), r"n must be at least d \+ 1 = 11 for d = 10"),
    (lambda: sp.wishart_logdet_bias(10, 9.5),
     r"m must lie in \[10, inf\], got 9.5 \(m must be at least d = 10 for d = 10\)"),
    (lambda: sp.wishart_variance(0, 5, 100), "dim must be an integer >= 1"),
])
def test_wishart_formulas_refuse_counts_outside_their_range(call, match):
    """Found in session 50's review: n > N gave a negative variance (a NaN half-width), n < d a digamma pole, with
    no error."""
    with pytest.raises(ValueError, match=match):
        call()


def test_second_order_bias_agrees_with_exact_when_d2_over_n_small():
    d, n, big = 3, 2000, 10**6
    assert float(sp.second_order_bias(d * (d + 2), d, n, big)) == pytest.approx(
        float(sp.wishart_bias(d, n, big)), rel=2e-3)


def test_gaussian_insample_variance_calibration_by_monte_carlo():
    d, n, reps = 4, 12, 20000
    r = np.random.default_rng(12)
    ms = np.concatenate([ref.mahalanobis(r.standard_normal((n, d))) for _ in range(reps // n)])
    assert ms.var() == pytest.approx(float(sp.gaussian_insample_var(d, n)), rel=0.05)
    assert ms.var() < 0.8 * 2 * d  # the population value 2d would be wrong in-sample


def test_coverage_seed_interval_fails_and_wishart_covers():
    d, n, big, reps = 20, 200, 2000, 600
    full, block, m2 = _gaussian_errors(d, n, big, reps, 13)
    z = sp.z_value(0.95)
    est = sp.block_estimates_from_stats(jnp.asarray(block), jnp.asarray(m2), d, n, big, z)
    cover = {k: float(np.mean(np.asarray(getattr(est, k).covers(jnp.asarray(full))))) for k in sp.ESTIMATORS}
    assert cover["seed"] < 0.6  # the seed's interval misses: bias ~ d(d+1)/2n = 1.05 vs SE 0.45
    assert 0.92 <= cover["wishart"] <= 0.98
    assert 0.92 <= cover["scaled_wishart"] <= 0.98
    assert 0.88 <= cover["second_order"] <= 0.98


def test_block_size_rule():
    z = sp.z_value(0.95)
    n = float(sp.block_size_rule(np.sqrt(2 * 384), 0.1, z))
    assert n == np.ceil((z * np.sqrt(768) / 0.1) ** 2)
    assert z * np.sqrt(768) / np.sqrt(n) <= 0.1 < z * np.sqrt(768) / np.sqrt(n - 1)


@pytest.mark.parametrize("tau, precision, z, message", [
    (1.0, -0.1, 1.96, r"precision must lie in \(0\.0, inf\), got -0\.1"),   # gave the block size of e = 0.1
    (1.0, 0.0, 1.96, r"precision must lie in \(0\.0, inf\), got 0\.0"),    # gave inf
    (1.0, np.nan, 1.96, r"precision must lie in \(0\.0, inf\), got nan"),
    (1.0, np.inf, 1.96, r"precision must lie in \(0\.0, inf\), got inf"),  # gave 0
    (-1.0, 0.1, 1.96, r"tau must lie in \[0\.0, inf\), got -1\.0"),
    (np.array([1.0, -2.0]), 0.1, 1.96, r"tau must lie in \[0\.0, inf\) entrywise, got tau\[1\] = -2\.0"),
    (1.0, 0.1, -1.96, r"z must lie in \(0\.0, inf\), got -1\.96"),
    (1.0, 0.1, 0.0, r"z must lie in \(0\.0, inf\), got 0\.0"),
])
def test_block_size_rule_refuses_what_has_no_block_size(tau, precision, z, message):
    with pytest.raises(ValueError, match=message):
        sp.block_size_rule(tau, precision, z)


@pytest.mark.parametrize("z", [-1.96, 0.0, np.nan])
def test_intervals_refuse_a_z_that_is_not_positive(z):
    """A user trial (2026-12-06): z = -1.96 gave negative half-widths (never covering), NaN a NaN width."""
    with pytest.raises(ValueError, match=r"z must lie in \(0\.0, inf\)"):
        sp.wishart_interval(0.0, 8, 10, 50, z)
    with pytest.raises(ValueError, match=r"z must lie in \(0\.0, inf\)"):
        sp.seed_interval(0.0, 1.0, 10, z)


def test_block_size_rule_under_jit_and_for_arrays():
    z = sp.z_value(0.95)
    expect = np.ceil((z * np.array([0.0, 1.0, 2.0]) / 0.1) ** 2)
    np.testing.assert_array_equal(np.asarray(sp.block_size_rule(np.array([0.0, 1.0, 2.0]), 0.1, z)), expect)
    np.testing.assert_array_equal(np.asarray(jax.jit(sp.block_size_rule)(jnp.asarray([0.0, 1.0, 2.0]), 0.1, z)),
                                  expect)   # traced: not checked, computed as before


# ---------------------------------------------------------------- contracts
def test_jit_equals_eager_and_vmap_equals_loop():
    x = rng(6).standard_normal((5, 30, 4))
    gs = jnp.einsum("bni,bnj->bij", x, x)
    eager = [float(sp.logdet_chol(g)) for g in gs]
    np.testing.assert_allclose(np.asarray(jax.jit(sp.logdet_chol)(gs)), eager, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(sp.logdet_chol)(gs)), eager, rtol=1e-12)
    f = lambda ld, m2: sp.block_estimates_from_stats(ld, m2, 4, 30, 1000, 1.96).scaled_wishart.center  # noqa: E731
    ld = jnp.asarray(eager)
    m2 = jnp.asarray([30.0, 25.0, 28.0, 40.0, 22.0])
    np.testing.assert_allclose(np.asarray(jax.jit(f)(ld, m2)), np.asarray(f(ld, m2)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(ld, m2)), [float(f(a, b)) for a, b in zip(ld, m2)],
                               rtol=1e-12)
    # block_estimates' block statistics run as one compiled program: the same values as op by op
    for n in (5, 6, 30):  # below the jackknife's minimum block (d + 2: no leave-one-out statistics) and above
        xb = jnp.asarray(x[0, :n])
        compiled = sp._block_statistics(xb)
        with jax.disable_jit():
            eager = sp._block_statistics(xb)
        assert (compiled[2] is None) == (eager[2] is None) == (n < sp.jackknife_min_block(4))
        for got, want in zip(jax.tree_util.tree_leaves(compiled), jax.tree_util.tree_leaves(eager), strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10)


def test_same_seed_same_draw_and_different_seed_different_draw():
    cfg = spp.PrecisionConfig()
    a = spp.family_dataset(3, 1, 5000, 4, "student_t", cfg)
    b = spp.family_dataset(3, 1, 5000, 4, "student_t", cfg)
    c = spp.family_dataset(4, 1, 5000, 4, "student_t", cfg)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    i1 = spp.block_indices(0, 2, 7, 10**6, 100)
    np.testing.assert_array_equal(i1, spp.block_indices(0, 2, 7, 10**6, 100))
    assert len(np.unique(i1)) == 100
    assert not np.array_equal(i1, spp.block_indices(0, 2, 8, 10**6, 100))


def test_nested_block_indices_are_prefixes_of_one_uniform_ordered_sample():
    """The sweep's sigma-blocks cells draw blocks whose first k rows do not depend on the largest size of the call
    (NumPy's choice does: an audit found a cell's coverage moved with the cells sharing its call)."""
    whole = spp.nested_block_indices(3, 0, 7, 1000, 1000)
    assert sorted(whole) == list(range(1000))
    for k in (1, 5, 100, 4097, 999):
        np.testing.assert_array_equal(spp.nested_block_indices(3, 0, 7, 10**4, k),
                                      spp.nested_block_indices(3, 0, 7, 10**4, 5000)[:k])
    assert not np.array_equal(spp.block_indices(3, 0, 7, 10**4, 10), spp.block_indices(3, 0, 7, 10**4, 5000)[:10])
    # uniform over the 5 * 4 * 3 = 60 ordered triples of 5 rows (chi-square, 6000 blocks)
    triples = [tuple(spp.nested_block_indices(1, 2, b, 5, 3)) for b in range(6000)]
    _, counts = np.unique(np.asarray(triples), axis=0, return_counts=True)
    from scipy import stats
    assert counts.size == 60 and stats.chisquare(counts).pvalue > 1e-4


def test_sweep_sigma_cell_does_not_depend_on_the_cells_sharing_its_call():
    """Before: errors 0.1-0.3 apart and coverage flags flipped (other rows); now the last float32 bits only."""
    from collapse_jax.sweep_models import MODELS

    model = MODELS["sigma-blocks"]
    base = {"family": "isotropic", "dim": 4, "num_points": 400, "condition_number": 1e3, "t_dof": 5.0, "level": 0.95}
    cells = [dict(base, ratio=r) for r in (2.0, 5.0, 20.0)]
    together = model.run(cells, 16, 3, backend="numpy", memory_budget=None, mesh=None)
    for i, cell in enumerate(cells):
        alone = model.run([cell], 16, 3, backend="numpy", memory_budget=None, mesh=None)
        for name, value in alone.items():  # the same blocks; the float32 prefix Grams summed in other steps
            np.testing.assert_allclose(value[0], together[name][i], rtol=0, atol=1e-5,
                                       err_msg=f"{name} of ratio {cell['ratio']}")


def test_families_have_the_stated_second_moment():
    cfg = spp.PrecisionConfig(condition_number=100.0)
    for fam in spp.FAMILIES:
        x = spp.sample_family(np.random.default_rng(0), 200_000, 3, fam, 5.0, 100.0)
        np.testing.assert_allclose(np.diag(x.T @ x / len(x)), spp.family_eigenvalues(fam, 3, 100.0), rtol=0.05)
    assert cfg.condition_number == 100.0


ENGINES_HERE = ["numpy", "jax"] + (["native"] if AMX else [])


@pytest.fixture(scope="module")
def small_cell():
    """Raw (not whitened) anisotropic data, its block sizes, and blocks 0 and 5's exact statistics: the float64
    reference loops (leave-one-out and leave-two-out Grams) take ~14 s a block, so every engine shares them."""
    cfg = spp.PrecisionConfig(condition_number=1e3)
    data = spp.family_dataset(0, 0, 3000, 5, "anisotropic", cfg)
    ns = spp.block_sizes(5, 3000, (1.0, 10.0, 100.0))
    return data, ns, {b: _reference_prefix_stats(data[spp.block_indices(0, 0, b, 3000, 500)], ns) for b in (0, 5)}


@pytest.mark.fallback
@pytest.mark.parametrize("engine", ["numpy", "numpy-one-block-a-call", "jax", "native"])
def test_run_cell_small_end_to_end(engine, small_cell, request, monkeypatch):
    # Every engine works on the whitened float32 population and must return the raw blocks' exact statistics
    # (log det G_1 - log det G and M_i are invariant under x -> A x). The numpy engine batches blocks this small;
    # "numpy-one-block-a-call" is its per-block path, which larger blocks take.
    data, ns, refs = small_cell
    assert list(ns) == [6, 50, 500]
    if engine == "native":
        request.getfixturevalue("amx_engine")  # the AMX kernel, on emulated tiles where the CPU has none
    if engine == "numpy":
        assert spp.numpy_batch_blocks(500, 5) == spp.NUMPY_BATCH_BYTES // (4 * 500 * 5)  # all six blocks in one call
    if engine == "numpy-one-block-a-call":
        monkeypatch.setattr(spp, "NUMPY_BATCH_MAX_VALUES", 0)
        assert spp.numpy_batch_blocks(500, 5) == 1
        engine = "numpy"
    res = spp.run_cell(data, "anisotropic", ns, 6, seed=0, cell=0, engine=engine, threads=2)
    assert res.extra["engine"] == engine
    assert res.truth == pytest.approx(ref.logdet(data.T @ data), rel=1e-12)
    for b in (0, 5):
        ref_ld, ref_m2, ref_lm, ref_lv, ref_pv, ref_pm, ref_rv, ref_rc, ref_k = refs[b]
        np.testing.assert_allclose(res.logdet_g1[b], ref_ld, rtol=0, atol=2e-4)
        np.testing.assert_allclose(res.m2_insample[b] - 25, ref_m2 - 25, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(res.loo_mean[b][1:], ref_lm[1:], rtol=2e-3)
        np.testing.assert_allclose(res.loo_var[b][1:], ref_lv[1:], rtol=5e-3)
        np.testing.assert_allclose(res.loo_pair_var[b][1:], ref_pv[1:], rtol=2e-2)
        np.testing.assert_allclose(res.loo_pair_mean[b][1:], ref_pm[1:], rtol=2e-3)
        np.testing.assert_allclose(res.loo_row_var[b][1:], ref_rv[1:], rtol=2e-2)
        np.testing.assert_allclose(res.loo_row_cov[b][1:], ref_rc[1:], rtol=2e-2)
        np.testing.assert_allclose(res.loo_kurtosis[b][1:], ref_k[1:], rtol=1e-2)
    rows = spp.summarize_cell(res, 0.95)
    assert [r["n"] for r in rows] == [6, 50, 500]


@pytest.mark.fallback
def test_run_cell_is_affine_invariant_and_engines_agree():
    # x -> A x changes log det G_1 and log det G by the same 2 log|det A| and leaves M_i alone: the errors of L_hat
    # and the Mahalanobis moments must not move (a wrong whitening or a lost log det G term would show here).
    cfg = spp.PrecisionConfig()
    data = spp.family_dataset(1, 2, 4000, 6, "student_t", cfg)
    a = rng(8).standard_normal((6, 6)) * 3.0
    ns = spp.block_sizes(6, 4000, (1.0, 4.0, 50.0))
    base = spp.run_cell(data, "student_t", ns, 8, seed=1, cell=2, engine="jax")
    moved = spp.run_cell(data @ a.T, "student_t", ns, 8, seed=1, cell=2, engine="jax")
    np.testing.assert_allclose(moved.logdet_g1 - moved.truth, base.logdet_g1 - base.truth, rtol=0, atol=1e-5)
    np.testing.assert_allclose(moved.m2_insample, base.m2_insample, rtol=1e-6)
    assert moved.truth - base.truth == pytest.approx(2 * np.log(abs(np.linalg.det(a))) , rel=1e-9)
    for engine in ENGINES_HERE:
        other = spp.run_cell(data, "student_t", ns, 8, seed=1, cell=2, engine=engine)
        np.testing.assert_allclose(other.logdet_g1, base.logdet_g1, rtol=0, atol=2e-4)
        np.testing.assert_allclose(other.m2_insample, base.m2_insample, rtol=1e-4)


def test_jax_engine_batches_are_invisible(monkeypatch):
    # 8 blocks in batches of 3 (the last one padded) give exactly the statistics of one batch of 8.
    cfg = spp.PrecisionConfig()
    data = spp.family_dataset(2, 1, 2000, 4, "isotropic", cfg)
    ns = spp.block_sizes(4, 2000, (1.0, 5.0, 20.0))
    whole = spp.run_cell(data, "isotropic", ns, 8, seed=3, cell=1, engine="jax")
    monkeypatch.setattr(spp, "JAX_BATCH_BYTES", 3 * int(ns[-1]) * 4 * 4)
    batched = spp.run_cell(data, "isotropic", ns, 8, seed=3, cell=1, engine="jax")
    for field in ("logdet_g1", "m2_insample", *(f"loo_{f}" for f in spp.LOO_FIELDS)):
        np.testing.assert_allclose(getattr(batched, field), getattr(whole, field), rtol=1e-12, atol=1e-12)


def test_numpy_engine_batches_are_invisible(monkeypatch):
    # The numpy engine's batched calls: 8 blocks in batches of 3 (the last one short) and in one batch give the same
    # statistics bit for bit (a block's numbers do not depend on the blocks beside it, so resumed or re-chunked runs
    # agree), and progress counts every block once.
    cfg = spp.PrecisionConfig()
    data = spp.family_dataset(2, 1, 2000, 4, "student_t", cfg)
    ns = spp.block_sizes(4, 2000, (1.0, 1.5, 5.0, 20.0))
    assert spp.numpy_batch_blocks(int(ns[-1]), 4) >= 8
    whole = spp.run_cell(data, "student_t", ns, 8, seed=3, cell=1, engine="numpy")
    monkeypatch.setattr(spp, "NUMPY_BATCH_BYTES", 3 * int(ns[-1]) * 4 * 4)
    assert spp.numpy_batch_blocks(int(ns[-1]), 4) == 3
    counted = []
    batched = spp.run_cell(data, "student_t", ns, 8, seed=3, cell=1, engine="numpy", progress=counted.append)
    assert counted == [3, 3, 2]
    for field in ("logdet_g1", "m2_insample", *(f"loo_{f}" for f in spp.LOO_FIELDS)):
        np.testing.assert_array_equal(getattr(batched, field), getattr(whole, field))


def test_family_dataset_does_not_depend_on_threads_and_fills_out():
    cfg = spp.PrecisionConfig()
    one = spp.family_dataset(5, 3, 70_000, 4, "unit_norm", cfg, threads=1)
    out = np.empty((70_000, 4))
    two = spp.family_dataset(5, 3, 70_000, 4, "unit_norm", cfg, threads=3, out=out)
    assert two is out
    np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------- bad input
def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"n >= d \+ 1 = 6, got n=5 \(d=5\)"):  # the minimum as a number
        sp.check_block_sizes(5, 5, 100)
    with pytest.raises(ValueError, match="N=10 < n=20"):
        sp.check_block_sizes(20, 5, 10)
    bad = np.ones((20, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf entries \(row 4\)"):  # which row (an audit, 2026-12-07)
        sp.block_estimates(bad, 100)
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match="NaN/inf"):
        sp.gram_streaming([bad], 3)
    with pytest.raises(ValueError, match="non-matching dimensions"):
        sp.gram_streaming([np.ones((5, 3)), np.ones((5, 4))], 3)
    x = rng().standard_normal((3, 5))  # 3 points in dim 5: rank deficient
    with pytest.raises(ValueError, match="eps must be > 0 for rank-deficient"):
        sp.logdet(x.T @ x, 0.0, num_points=3)
    with pytest.raises(ValueError, match="eps must lie in"):
        sp.logdet(x.T @ x, -1.0)
    with pytest.raises(ValueError, match=r"singular \(smallest eigenvalue .*, eps = 0\): rank deficient"):
        sp.logdet(x.T @ x, 0.0)
    # (a negative definite matrix was said to be rank deficient, with eps > 0 advised where eps = 0.5 was given;
    # a user trial, 2026-12-07)
    with pytest.raises(ValueError, match=r"not positive semi-definite \(smallest eigenvalue -0.5, eps = 0.5\)"):
        sp.logdet(-np.eye(3), 0.5)
    # ... while a singular Gram whose smallest eigenvalue is negative by rounding (d eps of the largest) is singular
    # (a review, 2026-12-07: at d = 4096 embedding-like Grams read "not a Gram matrix")
    d = 50
    q = np.linalg.qr(np.column_stack([np.ones(d), rng().standard_normal((d, d - 1))]))[0]
    g = (q * np.concatenate([[1e6], np.linspace(1.0, 10.0, d - 2), [-5e-8]])) @ q.T
    with pytest.raises(ValueError, match=r"singular \(smallest eigenvalue -5e-08, eps = 0\): rank deficient"):
        sp.logdet((g + g.T) / 2, 0.0)
    assert np.isfinite(float(sp.logdet(x.T @ x, 1e-3, num_points=3)))
    with pytest.raises(ValueError, match="block size n must exceed the dimension d"):
        sp.block_estimates(rng().standard_normal((4, 4)), 100)
    with pytest.raises(ValueError, match="families must be among .*; got unknown family 'cauchy'"):
        spp.PrecisionConfig(families=("cauchy",)).validate()
    with pytest.raises(ValueError, match="t_dof"):
        spp.PrecisionConfig(t_dof=3.0).validate()
    # inf passed and drew NaN rows mid-run, after the run folder was written (a user trial, 2026-12-06)
    with pytest.raises(ValueError, match=r"t_dof must lie in \(4\.0, inf\), got inf"):
        spp.PrecisionConfig(t_dof=math.inf).validate()
    for d in (1, 2):  # before any compute (d = 1 and 2 crashed mid-sweep); d = 3 is the smallest that runs
        with pytest.raises(ValueError, match=f"dims: the dimension d must be at least 3, got {d}"):
            spp.PrecisionConfig(dims=(8, d), blocks=(10,)).validate()
    spp.PrecisionConfig(dims=(3,), blocks=(10,)).validate()


@pytest.mark.fallback
def test_cli_embeddings_cell_runs_and_resumes(tmp_path, capsys):
    from collapse_jax import sigma_cli

    emb = np.random.default_rng(9).standard_normal((500, 3))
    np.save(tmp_path / "emb.npy", emb)
    argv = ["sigma-precision", "--families", "", "--dims", "", "--embeddings", str(tmp_path / "emb.npy"),
            "--blocks", "5", "--ratios", "1,10", "--out", str(tmp_path / "run")]
    assert sigma_cli.main(argv) == 0
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| embeddings | 3 | 4 |" in table and "| embeddings | 3 | 30 |" in table
    assert (tmp_path / "run" / "manifest.json").exists() and (tmp_path / "run" / "coverage.png").exists()
    chunk = np.load(tmp_path / "run" / "chunks" / "chunk-000000.npz")
    assert float(chunk["truth"]) == pytest.approx(ref.logdet(emb.T @ emb), rel=1e-12)
    capsys.readouterr()
    assert sigma_cli.main(argv) == 0  # resume: the chunk is reused, same table
    assert (tmp_path / "run" / "table.md").read_text() == table
    # and says it resumes, at once (a user trial, 2026-12-06)
    assert "1 of 1 cells saved by an earlier run" in capsys.readouterr().err
    assert sigma_cli.main(argv[:-1] + [str(tmp_path / "run"), "--seed", "1"]) == 2  # different config, same folder
    # a user trial (2026-12-04): the same path holding other embeddings resumed with the old file's results (its
    # truth, its N); the file's content is part of the configuration now
    np.save(tmp_path / "emb.npy", 3 * emb)
    assert sigma_cli.main(argv) == 2
    assert (tmp_path / "run" / "table.md").read_text() == table


@pytest.mark.fallback
@pytest.mark.parametrize("defect, message", [("copy", "span fewer than d = 6 dimensions"),
                                             ("zero", "1 column is all zeros (2)"),
                                             ("zeros", "2 columns are all zeros (2, 5)")])
def test_cli_refuses_embeddings_whose_gram_is_singular(defect, message, tmp_path, capsys):
    """Found by an audit (2026-12-04): a column that is twice another (exact in float32) ran the sweep on a singular
    Gram matrix and reported rounding noise as +1.0 nats of bias and 0 % coverage. Now refused before any folder is
    written; real MiniLM embeddings (smallest Cholesky pivot^2 / diagonal 0.044) pass (sentences cells)."""
    from collapse_jax import sigma_cli

    emb = np.random.default_rng(3).standard_normal((400, 6)).astype(np.float32)
    emb[:, 2] = 2 * emb[:, 4] if defect == "copy" else 0
    if defect == "zeros":  # every zero column named (only the first was: dropping it failed again; a user trial)
        emb[:, 5] = 0
    np.save(tmp_path / "emb.npy", emb)
    argv = ["sigma-precision", "--families", "", "--dims", "", "--embeddings", str(tmp_path / "emb.npy"),
            "--blocks", "5", "--out", str(tmp_path / "run")]
    assert sigma_cli.main(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()
    emb[:, [2, 5]] += np.float32(1e-3) * np.random.default_rng(4).standard_normal((400, 2)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)  # dependent up to a small independent part: a full-rank population
    sigma_cli.check_full_rank("ok", emb.astype(np.float64))


def test_cli_warns_of_repeated_embedding_rows(tmp_path):
    """A user trial (2026-12-06): 1,500 rows plus 300 exact copies ran without a word (the API's block_estimates
    warns), and the jackknife covered 0.50 at n = 480."""
    from collapse_jax import sigma_cli, spectral

    emb = np.random.default_rng(3).standard_normal((400, 6))
    np.save(tmp_path / "emb.npy", np.concatenate([emb, emb[:30]]))
    with pytest.warns(spectral.RepeatedRowsWarning, match=r"emb.npy: 30 of its 430 rows repeat another row"):
        sigma_cli.load_embeddings(str(tmp_path / "emb.npy"))
    np.save(tmp_path / "emb.npy", emb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sigma_cli.load_embeddings(str(tmp_path / "emb.npy"))


@pytest.mark.fallback
def test_cli_sweep_of_exact_rows_only_finishes_without_plots(tmp_path, capsys):
    """Found by an audit (2026-12-02): every block size equal to N wrote the table, then matplotlib's "Data cannot
    be log-scaled" came out as a bad-input error, with no manifest. Its last line names the engine that ran (it was
    only in manifest.json; a user trial on a CPU without AMX, 2026-12-06)."""
    from collapse_jax import sigma_cli

    argv = ["sigma-precision", "--dims", "4", "--blocks", "5", "--num-points", "5", "--ratios", "1,2", "--families",
            "isotropic", "--engine", "numpy", "--out", str(tmp_path / "run")]
    assert sigma_cli.main(argv) == 0
    assert capsys.readouterr().out.rstrip().endswith("; numpy engine)")
    assert "exact" in (tmp_path / "run" / "table.md").read_text() and (tmp_path / "run" / "manifest.json").exists()
    assert not (tmp_path / "run" / "coverage.png").exists()


def test_cli_progress_weighs_cells_by_work_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    """The sweep's one bar moves by each block's estimated work (a d = 384 block costs about 1000 d = 8 ones, so
    counting cells made the remaining time meaningless), ends at its total, and a resumed run starts from the work
    of the cells already saved."""
    from collapse_jax import sigma_cli

    bars = []

    class Recorder:
        def __init__(self, total, desc, unit="it", *, initial=0, disable=None):
            self.total, self.desc, self.initial, self.n, self.steps = total, desc, initial, initial, []
            bars.append(self)

        def update(self, k=1):
            self.n += k
            self.steps.append(k)

        def refresh(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    # the weights against the numpy engine's measured block times (2-core AMD EPYC: 0.70 s at d = 384, 0.57 ms at 8)
    ratio = sigma_cli.block_work(384, 10**6, spp.DEFAULT_RATIOS) / sigma_cli.block_work(8, 10**6, spp.DEFAULT_RATIOS)
    assert 600 < ratio < 2500
    monkeypatch.setattr(sigma_cli, "bar", Recorder)
    monkeypatch.setattr(sigma_cli, "block_work", lambda d, n, ratios: d * 1e9)  # d G multiply-adds per block
    argv = ["sigma-precision", "--dims", "4,12", "--blocks", "6", "--num-points", "3000", "--ratios", "1,5",
            "--families", "isotropic", "--out", str(tmp_path / "run")]
    assert sigma_cli.main(argv) == 0
    whole = bars[0]
    assert whole.desc.startswith("sigma-precision") and (whole.initial, whole.total) == (0, 6 * 4 + 6 * 12)
    assert whole.n == whole.total and set(whole.steps) <= {4 * k for k in range(1, 7)} | {12 * k for k in range(1, 7)}
    (tmp_path / "run" / "chunks" / "chunk-000001.npz").unlink()  # the d = 12 cell to do again
    (tmp_path / "run" / "manifest.json").unlink()
    bars.clear()
    assert sigma_cli.main(argv) == 0
    assert (bars[0].initial, bars[0].n, bars[0].total) == (24, 96, 96)


def test_auto_engine_is_amx_where_present(monkeypatch):
    monkeypatch.setattr(_native, "amx_available", lambda: True)
    assert spp.resolve_engine("auto") == "native"
    monkeypatch.setattr(_native, "amx_available", lambda: False)
    assert spp.resolve_engine("auto") == "numpy"
    assert spp.resolve_engine("numpy") == "numpy"
    with pytest.raises(ValueError, match="engine must be one of"):
        spp.resolve_engine("amx")


# ---------------------------------------------------------------- leverage jackknife (issue 13)
def _leverage_blocks(family, d, n, reps, seed, big=None):
    """Per replicate: log det G_1 of n i.i.d. rows, their leave-one-out stats and in-sample mean(M_i^2); with
    ``big`` also log det G of ``big`` rows whose first n are the block (float64, vectorised NumPy)."""
    cfg = spp.PrecisionConfig(condition_number=50.0, t_dof=9.0)
    r = np.random.default_rng(seed)
    x = spp.sample_family(r, reps * (big or n), d, family, cfg.t_dof, cfg.condition_number).reshape(reps, -1, d)
    xb = x[:, :n]
    g1 = np.einsum("rni,rnj->rij", xb, xb)
    hat = np.einsum("rni,rij,rmj->rnm", xb, np.linalg.inv(g1), xb)
    h = np.diagonal(hat, axis1=1, axis2=2)
    h_cross = np.stack([np.roll(hat, -k, axis=2).diagonal(axis1=1, axis2=2) for k in range(1, sp.PAIR_OFFSETS + 1)], 1)
    a = 1 / (1 - h)
    pair_sum = np.einsum("rn,rm,rnm->r", a, a, hat**2) - np.sum((a * h) ** 2, axis=1)
    full = np.linalg.slogdet(np.einsum("rni,rnj->rij", x, x))[1] if big else None
    loo = sp.leave_one_out_stats(jnp.asarray(h), jnp.asarray(h_cross), jnp.asarray(pair_sum))
    return np.linalg.slogdet(g1)[1], loo, np.mean((n * h) ** 2, axis=1), full


def test_leave_one_out_stats_are_the_leave_one_out_logdets():
    x = rng(40).standard_normal((30, 4)) * [1.0, 3.0, 0.2, 1.0]
    h = np.asarray(sp.mahalanobis_insample(jnp.asarray(x))) / 30
    steps = np.array([ref.logdet(ref.gram(np.delete(x, i, 0))) for i in range(30)]) - ref.logdet(ref.gram(x))
    loo = sp.leave_one_out_stats(jnp.asarray(h))
    assert float(loo.mean) == pytest.approx(steps.mean(), rel=1e-10)
    assert float(loo.var) == pytest.approx(steps.var(), rel=1e-8)
    mean_g, var_g = sp.gaussian_loo_moments(4, 30)  # Beta(d/2, (n-d)/2) leverages, checked by Monte Carlo
    _, loo_mc, _, _ = _leverage_blocks("isotropic", 4, 30, 3000, 41)
    assert float(np.mean(loo_mc.mean)) == pytest.approx(float(mean_g), rel=5e-3)
    assert float(np.mean(loo_mc.var)) == pytest.approx(float(var_g) * 29 / 30, rel=0.05)


def test_jackknife_agrees_with_exact_wishart_on_gaussian_data():
    # Gaussian rows: the bias ratio r is 1 in expectation, the centre and the variance (pair-share factor included)
    # are the Wishart ones to Monte Carlo precision, and the coverage is nominal (float64; d = 12, n = 40: d/n large
    # enough to matter; at d = 6, n = 20 the 80 row pairs make the pair share too noisy and coverage is 93.3 %).
    d, n, big, reps = 12, 40, 400, 3000
    ld, loo, m2, full = _leverage_blocks("isotropic", d, n, reps, 42, big)
    z = sp.z_value(0.95)
    est = sp.block_estimates_from_stats(jnp.asarray(ld), jnp.asarray(m2), d, n, big, z, loo)
    r = np.asarray(sp.jackknife_bias_ratio(loo.mean, d, n))
    assert abs(r.mean() - 1.0) < 4 * r.std() / np.sqrt(reps)
    jk, wi = est.jackknife, est.wishart
    raw = sp.jackknife_interval(est.l_hat, loo, d, n, big, z, calibrate=False)  # with z: the variance itself
    shift = np.asarray(jk.center - wi.center)
    assert abs(shift.mean()) < 4 * shift.std() / np.sqrt(reps) + 1e-12
    assert float(np.mean(np.asarray(raw.half_width) ** 2)) == pytest.approx(float(wi.half_width) ** 2, rel=0.05)
    crit = sp.jackknife_critical_value(d, n, z)  # n = 40 rows: the small-block critical value applies
    assert z < crit < 1.2 * z
    np.testing.assert_allclose(np.asarray(jk.half_width), np.asarray(raw.half_width) * crit / z)
    for interval in (raw, jk):
        cover = float(np.mean(np.asarray(interval.covers(jnp.asarray(full)))))
        assert 0.935 <= cover <= 0.97, cover  # SE 0.4 pp at 3000 blocks


def test_pair_interactions_are_the_leave_two_out_logdets_and_gaussian_pair_var_is_right():
    x = rng(46).standard_normal((25, 4)) * [1.0, 3.0, 0.2, 1.0]
    pair_var, pair_mean = _reference_prefix_stats(x, (25,))[4:6]
    loo = sp.leverage_statistics(jnp.asarray(_whitened(x)))
    assert float(loo.pair_var) == pytest.approx(pair_var[0], rel=1e-8)
    assert float(loo.pair_mean) == pytest.approx(pair_mean[0], rel=1e-8)
    y = x[:9]  # all ordered pairs, explicit leave-two-out log-dets T - T_(-i) - T_(-j) + T_(-ij) = log(1 - x_ij)
    t = ref.logdet(ref.gram(y))
    t1 = [ref.logdet(ref.gram(np.delete(y, i, 0))) for i in range(9)]
    second = np.array([[t - t1[i] - t1[j] + ref.logdet(ref.gram(np.delete(y, [i, j], 0))) if i != j else 0.0
                        for j in range(9)] for i in range(9)])
    xs, _ = _pair_x(y)
    off = ~np.eye(9, dtype=bool)
    np.testing.assert_allclose(second[off], np.log1p(-xs[off]), rtol=1e-8)
    # the 2 x 2 matrix-Beta draws against whole Gaussian blocks (within-block pair variance, 3000 blocks)
    _, loo_mc, _, _ = _leverage_blocks("isotropic", 6, 30, 3000, 47)
    assert float(np.mean(loo_mc.pair_var)) == pytest.approx(float(sp.gaussian_pair_var(6, 30)), rel=0.05)
    assert sp.gaussian_pair_var(6, np.array([30, 30]))[1] == sp.gaussian_pair_var(6, 30)  # fixed seed: deterministic
    rho = np.asarray(sp.jackknife_overstatement(6, np.array([9.0, 12.0, 30.0, 600.0])))
    assert np.all(np.diff(rho) < 0) and rho[0] > 1.5 and abs(rho[-1] - 1) < 0.01  # Efron-Stein: >= 1, -> 1


@pytest.mark.parametrize("family", ["isotropic", "unit_norm", "student_t"])
def test_jackknife_variance_follows_the_pair_share(family):
    # The plain Gaussian calibration of the jackknife variance over-states it when the pair (second-order) share is
    # larger than the Gaussian's (uniform on the sphere: M = d, all second order) and under-states it when smaller
    # (t, nu = 9). The pair-share factor must move the mean variance towards the Monte Carlo variance of the error
    # and leave Gaussian data alone. Measured (d = 12, n = 40, N = 400): unit norm truth 0.096, old 0.174, new
    # 0.127; t truth 2.13, old 1.60, new 1.73; isotropic 0.688 / 0.661 / 0.665.
    d, n, big, reps = 12, 40, 400, 2000
    ld, loo, m2, full = _leverage_blocks(family, d, n, reps, 48, big)
    z = sp.z_value(0.95)
    new = sp.block_estimates_from_stats(jnp.asarray(ld), jnp.asarray(m2), d, n, big, z, loo).jackknife
    old = sp.jackknife_interval(jnp.asarray(ld), sp.LeaveOneOut(loo.mean, loo.var), d, n, big, z)
    truth = np.var(full - np.asarray(new.center))
    crit = sp.jackknife_critical_value(d, n, z)  # both intervals use the small-block critical value
    v_new, v_old = (float(np.mean((np.asarray(iv.half_width) / crit) ** 2)) for iv in (new, old))
    if family == "isotropic":
        assert v_new == pytest.approx(v_old, rel=0.02)
    else:
        assert abs(v_new - truth) < (0.5 if family == "unit_norm" else 0.9) * abs(v_old - truth), (truth, v_old, v_new)
        assert (v_new < v_old) == (family == "unit_norm")


@pytest.mark.parametrize("a_coef, kappa", [(1.0, 0.0), (1.7, 0.3), (0.9, -0.2)])
def test_two_step_bias_extrapolates_every_curve_of_its_family(a_coef, kappa):
    # beta(m) = A b(m) + kappa int_{m0}^m log(t/n) db(t): the first and second differences at n determine A and kappa,
    # and c1 D_1 + c2 D_2 must equal beta(N) - beta(n) (midpoint rule over one row: ~1e-4 relative).
    d, n, big = 10, 35, 700
    f = lambda m: a_coef * float(sp.wishart_logdet_bias(d, m)) + kappa * float(  # noqa: E731
        sp.log_weighted_bias(d, 20.0, m, n, num_nodes=4096))
    d1, d2 = f(n) - f(n - 1), f(n) - 2 * f(n - 1) + f(n - 2)
    c1, c2 = (float(c) for c in sp.jackknife_bias_coefficients(d, n, big))
    assert c1 * d1 + c2 * d2 == pytest.approx(f(big) - f(n), rel=2e-3)
    assert [float(c) for c in sp.jackknife_bias_coefficients(d, big, big)] == [0.0, 0.0]  # n = N: nothing to add
    assert float(sp.gaussian_bias_step(d, n)) == pytest.approx(float(sp.wishart_logdet_bias(d, n))
                                                               - float(sp.wishart_logdet_bias(d, n - 1)), rel=1e-10)


@pytest.mark.parametrize("family", ["student_t", "unit_norm", "anisotropic"])
def test_jackknife_bias_correction_is_unbiased_to_leading_order(family):
    # Known truth: i.i.d. rows with Sigma = E[x x^T] of the family (N -> infinity). The plug-in log det(G_1/n) is
    # biased by ~(E[M^2] - d)/(2n), which differs by family (t with nu = 9: kurtosis; unit norm: M = d exactly);
    # the jackknife centre must remove the leading term: its remaining bias is a small fraction of the plug-in's.
    d, n, reps = 4, 60, 4000
    ld, loo, m2, _ = _leverage_blocks(family, d, n, reps, 43)
    truth = np.sum(np.log(spp.family_eigenvalues(family, d, 50.0)))
    plug_in = ld - d * np.log(n)
    centre = plug_in + np.asarray(sp.jackknife_bias(loo, d, n, 1e15))  # two-step (first and second differences)
    one_step = plug_in + np.asarray(sp.jackknife_bias(loo._replace(pair_mean=None), d, n, 1e15))
    assert abs(one_step.mean() - truth) < max(0.1 * abs(plug_in.mean() - truth), 3 * one_step.std() / np.sqrt(reps))
    bias_plug, bias_jk = plug_in.mean() - truth, centre.mean() - truth
    se = centre.std() / np.sqrt(reps)
    assert abs(bias_plug) > 10 * se  # the bias is there to be removed (the test can fail)
    assert abs(bias_jk) < max(0.1 * abs(bias_plug), 3 * se), (bias_plug, bias_jk, se)
    gaussian_bias = -float(sp.wishart_bias(d, n, 1e15))  # and the data's bias is not the Gaussian one
    assert abs(bias_plug - gaussian_bias) > 0.1 * abs(gaussian_bias) or family == "anisotropic"


def test_jackknife_small_blocks_and_exact_edge():
    x = rng(44).standard_normal((6, 5))  # n = d + 1: leave-one-out blocks would have n - 1 = d rows
    with pytest.raises(ValueError, match=r"n >= max\(d \+ 2, 5\) = 7, got n=6"):
        sp.check_jackknife_block(6, 5)
    from collapse_jax import sigma_monitor as sm

    with pytest.raises(ValueError, match=r"n >= max\(d \+ 2, 5\) = 7, got n=6"):
        sm.logdet_interval(x, 100)
    # d <= 2: the four sampled pair partners must be distinct rows (at d = 2, n = 4 the last was the row itself)
    with pytest.raises(ValueError, match=r"n >= max\(d \+ 2, 5\) = 5, got n=4 \(d=2\)"):
        sp.check_jackknife_block(4, 2)
    with pytest.warns(UserWarning, match="jackknife interval is NaN at n = 4 rows, d = 2"):
        assert np.isnan(float(sp.block_estimates(rng(46).standard_normal((4, 2)), 100).jackknife.center))
    # d = 1: the pairs' Gaussian reference uses a singular 2 x 2 Wishart (it raised "df <= 0" before)
    assert np.isfinite(sp.gaussian_pair_var(1, np.array([5, 50]))).all()
    one = sp.block_estimates(rng(47).standard_normal((30, 1)), 1000).jackknife
    assert np.isfinite(float(one.center)) and float(one.half_width) > 0
    with pytest.warns(UserWarning, match="jackknife interval is NaN at n = 6 rows, d = 5"):
        est = sp.block_estimates(x, 100)  # block_estimates still gives the other intervals there
    assert np.isnan(float(est.jackknife.center)) and np.isfinite(float(est.wishart.center))
    y = rng(45).standard_normal((40, 5))
    whole = sm.logdet_interval(y, 40)  # n = N: the block is the population; exact, half-width 0
    assert float(whole.half_width) == 0.0
    assert float(whole.center) == pytest.approx(ref.logdet(ref.gram(y)), rel=1e-12)
    # ... also where the jackknife itself is undefined (an audit, 2026-12-05: n = N = d + 1 gave NaN, the monitor
    # refused it; n = N = 140 at d = 128 too, below 1.2 d beyond the small blocks)
    for n, d in ((6, 5), (140, 128)):
        z = rng(49).standard_normal((n, d))
        for whole in (sp.block_estimates(z, n).jackknife, sm.logdet_interval(z, n)):
            assert float(whole.half_width) == 0.0
            assert float(whole.center) == pytest.approx(ref.logdet(ref.gram(z)), rel=1e-10)


def test_a_block_of_the_whole_population_covers_the_log_det_computed_elsewhere():
    """A user trial (2026-12-07): at n = N every interval's half-width is 0, and the centre differed from NumPy's
    ``slogdet`` by 4e-13, so ``covers`` said False (0 % coverage where the sweep says "exact"); and the seed interval
    (Theorem 3's formula, for N >> n) kept a width there. Now ``covers`` allows for rounding (``COVER_ROUNDING``,
    relative), and every interval at n = N has width 0."""
    x = rng(50).standard_normal((300, 64)) * np.geomspace(1.0, 1e-3, 64)  # (anisotropic: a ragged spectrum)
    truth = np.linalg.slogdet(x.T @ x)[1]
    est = sp.block_estimates(x, 300)
    for name in ("seed", "second_order", "wishart", "scaled_wishart", "jackknife"):
        interval = getattr(est, name)
        assert float(interval.half_width) == 0.0, name
        assert interval.covers(truth) and interval.covers(truth * (1 + 0.5 * sp.COVER_ROUNDING)), name
        assert not interval.covers(truth + 1e-6), name          # (rounding only: 1e-6 nats is a miss)
        assert bool(jax.jit(interval.covers)(truth)), name
    for center in (-np.inf, np.inf, np.nan):  # (no slack for an infinite centre: it covered everything; a review)
        assert not sp.Interval(np.float64(center), np.float64(0.0)).covers(5.0)
        assert not bool(jax.jit(sp.Interval(jnp.float32(center), jnp.float32(0.0)).covers)(5.0))
    assert float(sp.block_estimates(x[:200], 300).seed.half_width) > 0   # (n < N: the seed's width, unchanged)


def test_scaling_estimate_checks_its_sizes():
    """A user trial (2026-12-07): n > N gave a plug-in below log det G_1 and a negative n NaN, without a word."""
    with pytest.raises(ValueError, match=r"block size n must be at most the total count N, got n = 500 > N = 100"):
        sp.scaling_estimate(10.0, 500, 100, 32)
    with pytest.raises(ValueError, match=r"n must lie in \[1.0, inf\], got -5"):
        sp.scaling_estimate(10.0, -5, 100, 32)
    assert float(sp.scaling_estimate(10.0, 50, 100, 32)) == pytest.approx(10.0 + 32 * math.log(2.0), rel=1e-15)


@pytest.mark.filterwarnings("ignore:n = 140 observed rows give no log-det interval:UserWarning")
def test_jackknife_is_not_defined_near_d_beyond_the_small_blocks():
    """A third audit (2026-12-04): beyond 128 rows the two-step centre near n = d had an error SD of 124-510 nats on
    Gaussian rows (d = 130 / 384, n = d + 2) and the interval covered 0-5 %; it is now NaN below 1.2 d there, and
    the checks name the minimum."""
    d = 130
    x = rng(48).standard_normal((2000, d))
    assert not sp.jackknife_defined(d, 140) and sp.jackknife_defined(d, 156) and sp.jackknife_defined(120, 125)
    with pytest.raises(ValueError, match=r"more than 128 rows needs n >= 1.2 d = 156 .*got n=140 \(d=130\)"):
        sp.check_jackknife_block(140, d)
    with pytest.warns(UserWarning, match="jackknife interval is NaN at n = 140 rows, d = 130"):
        near = sp.block_estimates(x[:140], 2000)
    assert np.isnan(float(near.jackknife.center)) and np.isfinite(float(near.wishart.center))
    assert np.isfinite(float(sp.block_estimates(x[:156], 2000).jackknife.half_width))
    from collapse_jax import sigma_monitor as sm

    with pytest.raises(ValueError, match=r"needs n >= 1.2 d = 156"):
        sm.logdet_interval(x[:140], 2000)
    _, record = sm.SigmaMonitor(jax.random.key(0), n=140, eps=1e-6).update(x)  # the tracks, no interval
    assert np.isnan(record["logdet_center"]) and np.isfinite(record["u_cov"])


def test_summary_reports_the_whole_population_as_exact():
    data = spp.family_dataset(0, 0, 400, 4, "isotropic", spp.PrecisionConfig())
    ns = spp.block_sizes(4, 400, (2.0, 100.0, 200.0))
    assert list(ns) == [8, 400]
    rows = spp.summarize_cell(spp.run_cell(data, "isotropic", ns, 30, seed=0, cell=0, engine="numpy"), 0.95)
    assert rows[1]["exact"] and not rows[0]["exact"]
    assert abs(rows[1]["bias"]) < 1e-3 and np.isnan(rows[1]["coverage_jackknife"])
    assert 0.0 < rows[0]["coverage_jackknife"] <= 1.0 and rows[0]["width_ratio_jackknife"] > 0
    table = spp.markdown_table(rows)
    assert "| exact |" in table and "nan" not in table


def _whitened(x):
    return np.linalg.solve(np.linalg.cholesky(x.T @ x), x.T).T


def test_gaussian_bias_step_and_its_curvature_hold_at_large_blocks():
    """An audit (2026-12-04): the step psi(n/2) - psi((n-d)/2) - d log(n/(n-1)) ~ d(d+1)/(2n^2) was a difference of
    terms of size log n (absolute error ~1e-15), so the jackknife's curvature step(n) - step(n-1) ~ -d(d+1)/n^3 was
    noise from n ~ 1e5-1e6 and the two-step centre's c1 garbage (50x the bias, wrong sign, at d = 8, n = 1e6).
    Leading orders checked here without a high-precision library; mpmath below where installed."""
    for dim in (2, 8, 384):
        for n in (1e6, 1e7, 1e9):
            step, before = (float(sp.gaussian_bias_step(dim, m)) for m in (n, n - 1))
            lead = dim * (dim + 1) / (2 * n * n)
            assert step == pytest.approx(lead, rel=2 * dim / n + 1e-12, abs=0)  # (approx's default abs is 1e-12)
            assert step - before == pytest.approx(-2 * lead / n, rel=3 * dim / n + 1e-6, abs=0)
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50

    def exact_step(dim, n):
        n = mp.mpf(n)
        return mp.digamma(n / 2) - mp.digamma((n - dim) / 2) - dim * mp.log(n / (n - 1))

    for dim, n in ((2, 103), (8, 107), (8, 108), (384, 484), (384, 4e4), (768, 1e6), (768, 2.0**40)):
        assert float(sp.gaussian_bias_step(dim, n)) == pytest.approx(float(exact_step(dim, n)), rel=1e-12, abs=0)
    n, N, dim = 1e6, 1e9, 8  # the two-step centre's coefficients, solved in 50 digits
    s1, s0 = exact_step(dim, n), exact_step(dim, n - 1)
    p1, p0 = mp.log((n - mp.mpf(0.5)) / n) * s1, mp.log((n - mp.mpf(1.5)) / n) * s0
    c1 = float(sp.jackknife_bias_coefficients(dim, n, N)[0])
    bias = float(sp.wishart_bias(dim, n, N))
    target_phi = float(sp.log_weighted_bias(dim, n, N, n))
    want = (bias * (p1 - p0) - target_phi * (s1 - s0)) / (s1 * (p1 - p0) - p1 * (s1 - s0))
    assert c1 == pytest.approx(float(want), rel=1e-6)


def test_centre_factor_is_the_jackknife_of_the_corrected_centre():
    # Delete each row explicitly: the centre L_hat + c1 D_1 (D_2 held at the block's value) of the n - 1 remaining
    # rows, from their own leverages, varies over the deleted row as the factor says (first order in x_ij).
    d, n, big = 4, 60, 10_000
    x = spp.sample_family(rng(50), n, d, "student_t", 5.0)
    loo = sp.leverage_statistics(jnp.asarray(_whitened(x)))
    factor = float(sp.jackknife_centre_factor(loo, d, n, big))
    c1 = float(sp.jackknife_bias_coefficients(d, n - 1, big)[0])
    t_full = ref.logdet(ref.gram(x))
    h = np.diag(x @ np.linalg.inv(ref.gram(x)) @ x.T)
    centres, linear, steps = [], [], []
    for i in range(n):
        rest = np.delete(x, i, axis=0)
        h_rest = np.diag(rest @ np.linalg.inv(ref.gram(rest)) @ rest.T)
        x_i = 1.0 - (1.0 - h_rest) / (1.0 - np.delete(h, i))  # log(1 - h_j^(-i)) = log(1 - h_j) + log(1 - x_ij)
        t_rest = ref.logdet(ref.gram(rest))
        steps.append(t_rest - t_full)
        d1 = -np.mean(np.log1p(-h_rest)) - d * np.log((n - 1) / (n - 2))
        centres.append(t_rest + d * np.log(big / (n - 1)) + c1 * d1)
        d1_linear = -np.mean(np.log1p(-np.delete(h, i)) - x_i) - d * np.log((n - 1) / (n - 2))
        linear.append(t_rest + d * np.log(big / (n - 1)) + c1 * d1_linear)
    assert factor > 1.1  # heavy tails: the corrected centre moves more than L_hat (this block: 1.17)
    assert factor == pytest.approx(np.var(linear) / np.var(steps), rel=1e-8)  # log(1 - x) -> -x: exact algebra
    assert factor == pytest.approx(np.var(centres) / np.var(steps), rel=0.1)  # exact deletion: 1.08 (max x 0.11)
    assert float(sp.jackknife_centre_factor(loo._replace(row_var=None, row_cov=None), d, n, big)) == 1.0


def test_centre_factor_is_near_one_for_gaussian_rows_and_not_for_heavy_tails():
    # Measured (d = 8, n = 80, N = 10^6, 2000 blocks): Gaussian mean 1.055 (the held D_2 over-states a little),
    # t (nu = 5) 1.8; a block that is the whole population keeps half-width 0.
    d, n, big, reps = 8, 80, 10**6, 300
    means = {}
    for family in ("isotropic", "student_t"):
        x = spp.sample_family(rng(51), reps * n, d, family, 5.0).reshape(reps, n, d)
        w = np.stack([_whitened(b) for b in x])
        means[family] = float(np.mean(sp.jackknife_centre_factor(sp.leverage_statistics(jnp.asarray(w)), d, n, big)))
    assert 1.0 <= means["isotropic"] <= 1.12, means
    assert means["student_t"] > 1.3, means
    y = rng(52).standard_normal((90, 8))
    assert float(sp.block_estimates(y, 90).jackknife.half_width) == 0.0


def test_centre_factor_below_one_leaves_the_interval_as_wide_as_without_it():
    # Near-duplicate pairs of rows (as in templated text) give a factor below 1; the interval keeps the jackknife
    # variance of L_hat there, and takes the factor where it is above 1 (heavy tails).
    d, n, big = 8, 200, 10**6
    y = rng(53).standard_normal((n // 2, d))
    pairs = np.concatenate([y, y + 0.1 * rng(54).standard_normal(y.shape)])
    heavy = spp.sample_family(rng(50), n, d, "student_t", 5.0)

    def half_width(stats):
        return float(sp.jackknife_interval(0.0, stats, d, n, big, 1.96).half_width)

    for x, below in ((pairs, True), (heavy, False)):
        loo = sp.leverage_statistics(jnp.asarray(_whitened(x)))
        factor = float(sp.jackknife_centre_factor(loo, d, n, big))
        assert (factor < 0.999) if below else (factor > 1.1), factor
        plain = half_width(loo._replace(row_var=None, row_cov=None))  # the factor left out: 1
        assert half_width(loo) == pytest.approx(plain * max(factor, 1.0) ** 0.5, rel=1e-12)


def test_satterthwaite_critical_value():
    z = sp.z_value(0.95)
    crit = sp.satterthwaite_critical_value(np.array([21.0, 3.0, np.nan, 0.5]), np.array([80, 10**6, 80, 80]), z)
    assert crit[0] == pytest.approx(2.306004, rel=1e-6)  # nu = 2 * 80 / 20 = 8: Student t_8's 97.5 % point
    assert crit[1] == pytest.approx(z, rel=1e-5) and crit[2] == z and crit[3] >= z
    # in the interval: a block of heavy-tailed rows (n = 10 d, outside the small-block calibration) gets it
    d, n, big = 8, 80, 10**6
    x = spp.sample_family(rng(53), n, d, "student_t", 5.0)
    loo = sp.leverage_statistics(jnp.asarray(_whitened(x)))
    lh = jnp.asarray(ref.logdet(ref.gram(x)) + d * np.log(big / n))
    iv = sp.jackknife_interval(lh, loo, d, n, big, z)
    plain = sp.jackknife_interval(lh, loo._replace(kurtosis=None), d, n, big, z)
    want = sp.satterthwaite_critical_value(float(loo.kurtosis), n, z) / z
    assert want > 1.01
    assert float(iv.half_width) == pytest.approx(float(plain.half_width) * want, rel=1e-12)


def test_numpy_engine_survives_blocks_of_d_plus_one_rows():
    # n = d + 1: leverages ~1 in float32, the weighted Gram may round to indefinite; the row statistics are then NaN
    # (the interval needs n >= d + 2 anyway), never an exception, and the other statistics are unaffected.
    for seed in range(40):
        x = spp.sample_family(rng(seed), 9, 8, "student_t", 5.0).astype(np.float32)
        stats = spp.numpy_prefix_block_stats(x, (9,))
        assert len(stats) == 2 + len(spp.LOO_FIELDS) and np.isfinite(stats[0]).all()


def test_small_block_quantile_is_kept_on_disk_and_a_bad_file_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(tmp_path))
    real = sp._gaussian_jackknife_quantile
    sp.gaussian_jackknife_quantile.cache_clear()
    q = sp.gaussian_jackknife_quantile(3, 7, 1.96, 200)
    path = sp._quantile_cache_path(3, 7, 1.96, 200)
    assert path.is_file() and tmp_path in path.parents
    sp.gaussian_jackknife_quantile.cache_clear()
    monkeypatch.setattr(sp, "_gaussian_jackknife_quantile", lambda *a: pytest.fail("recomputed despite the file"))
    assert sp.gaussian_jackknife_quantile(3, 7, 1.96, 200) == q  # read back bit for bit, in a "new process"
    path.write_text("{truncated")
    sp.gaussian_jackknife_quantile.cache_clear()
    monkeypatch.setattr(sp, "_gaussian_jackknife_quantile", real)
    assert sp.gaussian_jackknife_quantile(3, 7, 1.96, 200) == q == real(3, 7, 1.96, 200)
    assert json.loads(path.read_text())["quantile"] == q  # rewritten whole
    sp.gaussian_jackknife_quantile.cache_clear()


def test_small_block_quantile_refuses_blocks_it_is_not_defined_for(tmp_path, monkeypatch):
    """An audit (2026-12-07): n = d computed NaN and cached it on disk for every later call."""
    monkeypatch.setenv("COLLAPSE_JAX_CACHE", str(tmp_path))
    sp.gaussian_jackknife_quantile.cache_clear()
    for args, match in [((4, 4, 1.96), "needs leave-one-out sub-blocks"), ((4, 8, -1.0), "z must lie in"),
                        ((0, 8, 1.96), "dim must be an integer >= 1"), ((4, 8, 1.96, 0), "reps must be")]:
        with pytest.raises(ValueError, match=match):
            sp.gaussian_jackknife_quantile(*args)
    assert not any(tmp_path.rglob("*.json"))
    sp.gaussian_jackknife_quantile.cache_clear()


def test_small_blocks_take_the_one_step_centre_and_its_calibrated_critical_value():
    # <= 128 rows and n < 10 d: the second difference is left out of the centre (too noisy with few rows) and the
    # critical value is the Gaussian-calibrated one of that construction; from 10 d the two-step centre is back.
    d, big = 8, 10**6
    z = sp.z_value(0.95)
    for n, small in ((16, True), (80, False)):
        x = spp.sample_family(rng(54), n, d, "unit_norm")
        loo = sp.leverage_statistics(jnp.asarray(_whitened(x)))
        lh = jnp.asarray(ref.logdet(ref.gram(x)) + d * np.log(big / n))
        iv = sp.jackknife_interval(lh, loo, d, n, big, z)
        one_step = sp.jackknife_interval(lh, loo._replace(pair_mean=None), d, n, big, z, calibrate=False)
        two_step = sp.jackknife_interval(lh, loo, d, n, big, z, calibrate=False)
        assert sp.jackknife_small_block(d, n) == small
        if small:
            assert float(iv.center) == pytest.approx(float(one_step.center), rel=1e-12)
            q = sp.jackknife_critical_value(d, n, z)
            assert q > z and float(iv.half_width) == pytest.approx(float(one_step.half_width) * q / z, rel=1e-12)
        else:
            assert float(iv.center) == pytest.approx(float(two_step.center), rel=1e-12)
        assert float(one_step.center) != pytest.approx(float(two_step.center), rel=1e-6)  # the test can tell them apart


def test_estimators_run_in_float64_whatever_the_callers_x64():
    # JAX's default is float32; the jackknife's bias coefficients (ratios of digamma differences, in the thousands)
    # lost its centre there: a Gaussian block, d = 64, n = 10 d, N = 10^6, was off by about 1.5 nats against a
    # half-width of 0.9. Every estimator now runs in float64 whatever jax_enable_x64 says.
    from collapse_jax import sigma_monitor

    x = rng(71).standard_normal((640, 64)).astype(np.float32)
    big, z = 10**6, sp.z_value(0.95)
    with jax.enable_x64(True):
        want = sp.block_estimates(x, big)
        stats = sp._block_statistics(jnp.asarray(x, jnp.float64))
    with jax.enable_x64(False):
        got = sp.block_estimates(x, big)
        monitor = sigma_monitor.logdet_interval(x, big)
        lg, m2, loo = (np.asarray(stats[0]), np.asarray(stats[1]),
                       sp.LeaveOneOut(*(np.asarray(v, np.float32) for v in stats[2])))  # float32 statistics
        from_stats = sp.block_estimates_from_stats(lg, m2, 64, 640, big, z, loo)
        coefficients = sp.jackknife_bias_coefficients(64, 640, big)
    for name in sp.ESTIMATORS:
        for field in ("center", "half_width"):
            a, b = np.asarray(getattr(getattr(got, name), field)), np.asarray(getattr(getattr(want, name), field))
            assert a.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=f"{name}.{field}")
    np.testing.assert_allclose(float(monitor.center), float(want.jackknife.center), rtol=1e-12)
    # float32 statistics cost only their own rounding, not the coefficients' (5e-7 nats here, half-width 0.9)
    assert abs(float(from_stats.jackknife.center) - float(want.jackknife.center)) < 0.01
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(coefficients), np.asarray(sp.jackknife_bias_coefficients(64, 640, big)),
                                   rtol=1e-12)


def test_closed_forms_run_in_float64_whatever_the_callers_x64():
    # Digamma differences that cancel for n >> d: in float32 the Gaussian bias step at d = 384, n = 10^5 was
    # 1.9e-6 against 7.4e-6, and the bias ratio of the exact Gaussian leave-one-out mean (1 by construction) -252 at
    # d = 16, n = 10^5.
    cases = [(sp.gaussian_bias_step, (384, 1e5)), (sp.gaussian_bias_step, (16, 2e4)),
             (sp.wishart_bias, (384, 9e7, 1e8)), (sp.log_weighted_bias, (384, 5e5, 1e6, 5e5)),
             (sp.wishart_interval, (100.0, 64, 9e7, 1e8, 1.96))]
    for fn, args in cases:
        with jax.enable_x64(True):
            want = jax.tree.map(np.asarray, fn(*args))
        with jax.enable_x64(False):
            got = jax.tree.map(np.asarray, fn(*args))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert a.dtype == np.float64
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=fn.__name__)
    for d, n in ((16, 1e5), (64, 1e5), (384, 1e5)):
        with jax.enable_x64(True):
            mean_g, _ = sp.gaussian_loo_moments(d, n)
        with jax.enable_x64(False):
            assert float(sp.jackknife_bias_ratio(np.asarray(mean_g), d, n)) == pytest.approx(1.0, rel=1e-9)


def test_a_singular_block_and_complex_rows_are_refused_not_estimated():
    """A second audit (2026-12-02): two equal columns gave log det G_1 = -7.5 and finite intervals (NumPy's slogdet
    says -inf), a zero column NaN everywhere, a row of leverage 1 an infinite centre, and complex rows lost their
    imaginary part with only a warning. Each is now a ValueError; a well-conditioned block still estimates."""
    from collapse_jax import sigma_monitor

    x = rng(5).standard_normal((40, 8))
    equal, zero, lever = x.copy(), x.copy(), x.copy()
    equal[:, 3] = equal[:, 2]
    zero[:, 5] = 0.0
    lever[:, 0] = 0.0
    lever[7, 0] = 1.0  # row 7 alone spans the first coordinate: h_7 = 1
    for bad in (equal, zero):
        with pytest.raises(ValueError, match="Gram matrix G_1 is singular"):
            sp.block_estimates(bad, 1000)
        with pytest.raises(ValueError, match="Gram matrix G_1 is singular"):
            sigma_monitor.logdet_interval(bad, 1000)
    # a fourth audit (2026-12-04): a row of leverage 1 leaves G_1 regular, so it was wrongly called singular; the
    # intervals that need no leave-one-out block stand, the jackknife is NaN, and the monitor says why it has none
    est = sp.block_estimates(lever, 1000)
    assert np.isnan(est.jackknife.center) and np.isnan(est.jackknife.half_width)
    assert np.isfinite(est.logdet_g1) and all(np.isfinite(getattr(est, f).center) and
                                              np.isfinite(getattr(est, f).half_width)
                                              for f in ("seed", "second_order", "wishart", "scaled_wishart"))
    with pytest.raises(ValueError, match="leverage 1.*leverage jackknife is undefined"):
        sigma_monitor.logdet_interval(lever, 1000)
    with pytest.raises(ValueError, match="x_block must be real numbers, got dtype complex128"):
        sp.block_estimates(x + 1j, 1000)
    assert np.isfinite(sp.block_estimates(x, 1000).jackknife.center)
    # the zero column is named (the message gave "pivot^2 / diagonal nan, largest leverage nan"), and both singular
    # cases are a SingularBlockError, which the monitor records as a NaN interval
    with pytest.raises(sp.SingularBlockError, match=r"1 of its 8 columns are 0 in every row \(column 5;"):
        sp.block_estimates(zero, 1000)
    with pytest.raises(sp.SingularBlockError, match="they span 7 of 8 dimensions"):
        sp.block_estimates(equal, 1000)
    with pytest.raises(sp.SingularBlockError, match="leverage 1"):
        sigma_monitor.logdet_interval(lever, 1000)
    # rows whose squares leave float64's range span every dimension: said so (it read "they span 0 of 8 dimensions";
    # a user trial, 2026-12-06)
    for scale in (1e-170, 1e200):
        with pytest.raises(sp.SingularBlockError, match=r"whose squares leave float64's range, .*rescale the rows"):
            sp.block_estimates(x * scale, 1000)


def test_repeated_rows_are_counted_and_warned_about():
    """From an audit on MiniLM embeddings (2026-12-04): with rows that repeat (a quarter of the rows copies, or
    templated text drawn with replacement) the intervals under-cover (88 % and 49 % at n = 2 d); block_estimates
    now says so."""
    x = rng(6).standard_normal((60, 5))
    assert sp.repeated_rows(x) == 0
    y = np.concatenate([x, x[:7], x[:2]])
    assert sp.repeated_rows(y) == 9
    z = x.copy()
    z[1], z[2] = 0.0, -0.0          # equal values with different bits count as repeats
    assert sp.repeated_rows(z) == 1
    with pytest.warns(sp.RepeatedRowsWarning, match="7 of its 67 rows repeat another row exactly"):
        est = sp.block_estimates(np.concatenate([x, x[:7]]), 1000)
    assert np.isfinite(est.jackknife.center)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp.block_estimates(x, 1000)


def test_the_jackknife_interval_is_calibrated_the_same_under_jit_and_vmap():
    """A second audit (2026-12-02): with traced statistics the whole calibration (small-block centre and critical
    value, Satterthwaite's quantile) was silently skipped, so jit gave another interval than eager."""
    with jax.enable_x64(True):
        pop = rng(8).standard_t(5, (1000, 4))
        z = sp.z_value(0.95)
        for n in (30, 200):  # a small block (one-step centre, calibrated quantile) and a Satterthwaite one
            lg, _, loo, *_ = sp._block_statistics(jnp.asarray(pop[:n]))
            l_hat = sp.scaling_estimate(lg, n, 1000, 4)
            eager = sp.jackknife_interval(l_hat, loo, 4, n, 1000, z)
            traced = jax.jit(lambda l, s: sp.jackknife_interval(l, s, 4, n, 1000, z))(l_hat, loo)
            np.testing.assert_allclose(np.asarray(traced), np.asarray(eager), rtol=1e-12)
            other = jax.tree.map(lambda a: a * 1.01, loo)
            both = jax.vmap(lambda l, s: sp.jackknife_interval(l, s, 4, n, 1000, z))(
                jnp.stack([l_hat, l_hat]), jax.tree.map(lambda a, b: jnp.stack([a, b]), loo, other))
            np.testing.assert_allclose(np.asarray(both)[:, 1], np.asarray(sp.jackknife_interval(l_hat, other, 4, n,
                                                                                                1000, z)), rtol=1e-12)
            assert not np.allclose(np.asarray(eager), np.asarray(sp.jackknife_interval(l_hat, loo, 4, n, 1000, z,
                                                                                      calibrate=False)))


def test_batched_logdet_eps_and_a_huge_n_are_checked():
    """A second audit (2026-12-02): batched_logdet took eps = NaN or -1e9 (NaN results), and block_estimates with
    N = 10^20 failed in JAX after computing the block's statistics."""
    for eps in (float("nan"), -1e9, float("inf")):   # inf (a third audit, 2026-12-04) gave [inf]
        with pytest.raises(ValueError, match=r"eps must lie in \[0\.0, inf\)"):
            sp.batched_logdet(np.eye(3)[None], eps=eps)
    with pytest.raises(ValueError, match=r"N must be at most 2\*\*53"):
        sp.block_estimates(rng(2).standard_normal((20, 3)), 10**20)


def test_gram_matrices_must_be_symmetric():
    """A user trial (2026-12-06): logdet and theorem1_bounds of a matrix that is not symmetric returned the log-det
    of another (the Cholesky reads one triangle) without a word. Rounding-level asymmetry still passes."""
    a = np.array([[2.0, 0.3], [0.1, 1.0]])
    for call in (lambda: sp.logdet(a), lambda: sp.theorem1_bounds(a, np.eye(2))):
        with pytest.raises(ValueError, match=r"must be symmetric .* up to 0\.2 \(largest entry 2\)"):
            call()
    x = rng(5).standard_normal((4000, 6))
    g = x.T @ x
    g[0, 1] *= 1 + 1e-14                     # a last-bits difference, as a product's rounding leaves
    np.testing.assert_allclose(float(sp.logdet(g)), np.linalg.slogdet(g)[1], rtol=1e-12)


def test_logdet_of_float64_input_is_float64_whatever_x64():
    """A user trial (2026-12-05): with x64 off, a singular float64 Gram (zeros) was said to fail 'in float32, the
    precision it was computed in', advice that cannot help. Another (2026-12-07): with x64 off, logdet and
    batched_logdet cast float64 MiniLM Grams to float32 and refused them (or gave NaN, advising "pass float64
    Grams"), while block_estimates and theorem1_bounds ran in float64. Float64 input now runs in float64."""
    near = np.array([[1.0, 1.0 - 1e-9], [1.0 - 1e-9, 1.0]])  # float32 rounds it to a singular matrix
    want = np.log(1 - (1 - 1e-9) ** 2)
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"singular \(smallest eigenvalue 0, eps = 0\): rank deficient"):
            sp.logdet(np.zeros((3, 3)))
        got = sp.logdet(near)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-6)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            both = sp.batched_logdet(np.stack([near, np.eye(2)]))
        assert isinstance(both, np.ndarray) and both.dtype == np.float64
        np.testing.assert_allclose(both, [want, 0.0], rtol=1e-6, atol=0)
        with pytest.raises(ValueError, match="not positive definite in float32: .* from float64 rows"):
            sp.logdet(near.astype(np.float32))           # float32 input stays float32
        with pytest.warns(RuntimeWarning, match="1 of 1 matrices"):
            assert sp.batched_logdet(jnp.asarray(near)[None]).dtype == jnp.float32   # (a JAX float32 array)
        # inside a caller's jit, a NumPy float64 constant runs in the caller's precision (np.asarray of the tracers
        # failed, and JAX's cache then held the constant as float64; a review, 2026-12-07)
        stack = np.stack([np.eye(2) * 2.0, np.eye(2)])
        jitted = jax.jit(lambda: sp.batched_logdet(stack))()
        assert jitted.dtype == jnp.float32 and jnp.asarray(stack).dtype == jnp.float32
        np.testing.assert_allclose(jitted, [2 * np.log(2.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(sp.logdet(near), want, rtol=1e-6)  # float64 (x64 on here)


def test_unchecked_float32_paths_are_named_or_run_in_float64():
    """A user trial (2026-12-06) on MiniLM rows, three of whose coordinates are near 1e-32 (their squares underflow
    in float32): mahalanobis_insample gave 600 NaN, batched_logdet NaN without a word, and logdet of the float32
    Gram advised eps > 0, which moves the value by hundreds of nats."""
    x = rng(12).standard_normal((300, 12))
    x[:, 3] *= 1e-33
    m = sp.mahalanobis_insample(x.astype(np.float32))
    assert m.dtype == jnp.float64 and np.all(np.isfinite(np.asarray(m)))
    np.testing.assert_allclose(np.asarray(m), ref.mahalanobis(x.astype(np.float32).astype(np.float64)),
                               rtol=1e-9)
    with pytest.warns(RuntimeWarning, match=r"1 of 2 matrices \+ eps I are not positive definite in float32 .*pass "
                                            r"float64"):
        out = sp.batched_logdet(np.stack([sp.gram(x.astype(np.float32)), np.eye(12, dtype=np.float32)]))
    assert np.isnan(out[0]) and out[1] == 0
    with pytest.raises(ValueError, match=r"not positive definite in float32: rank deficient, or rounded there .*"
                                         r"from float64 rows"):
        sp.logdet(np.asarray(sp.gram(x.astype(np.float32))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp.batched_logdet(np.eye(3)[None])                       # nothing said when every matrix factors


def test_theorem1_bounds_and_mahalanobis_check_their_input():
    """A user trial (2026-12-06): Grams of different sizes gave bounds (lower 0, upper 5.375), a singular g1 a NaN
    lower bound, lists an AttributeError; a singular block gave NaN Mahalanobis norms."""
    x = rng(13).standard_normal((40, 5))
    with pytest.raises(ValueError, match=r"g1 and g2 must be Gram matrices of the same data dimension"):
        sp.theorem1_bounds(np.eye(3), 5 * np.eye(7))
    for rows in (3, 4):  # (rank 3 factored with rounding pivots, 4 did not: both refused)
        with pytest.raises(ValueError, match=r"g1 is singular in float64 \(a Cholesky pivot\^2 at most 1e-12"):
            sp.theorem1_bounds(x[:rows].T @ x[:rows], x.T @ x)
    with pytest.raises(ValueError, match="g2 contains NaN/inf"):
        sp.theorem1_bounds(np.eye(2), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"g1 must be a square Gram matrix"):
        sp.theorem1_bounds(np.ones((2, 3)), np.eye(2))
    lo, hi = sp.theorem1_bounds([[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 2.0]])   # lists are matrices too
    assert float(lo) == 0.0 and float(hi) == pytest.approx(2 * np.log(3.0))
    with pytest.raises(ValueError, match=r"x_block must have more rows than dimensions \(n >= d \+ 1 = 6\)"):
        sp.mahalanobis_insample(x[:5])
    with pytest.raises(ValueError, match="singular in float64 .*Mahalanobis norms would be undefined"):
        sp.mahalanobis_insample(np.c_[x[:, :4], x[:, :1]])
    with pytest.raises(ValueError, match=r"g1 must be the block's \(5, 5\) Gram matrix"):
        sp.mahalanobis_insample(x, np.eye(4))
    jitted = jax.jit(sp.mahalanobis_insample)(jnp.asarray(x))             # traced: unchecked, as before
    np.testing.assert_allclose(np.asarray(jitted), ref.mahalanobis(x), rtol=1e-9)


def test_a_singular_block_says_what_its_rows_span():
    """A user trial (2026-12-06): 500 copies of one row were refused with "smallest Cholesky pivot^2 / diagonal nan,
    largest leverage nan"; the message now counts the dimensions they span and the distinct rows."""
    x = rng(14).standard_normal((60, 6))
    with pytest.raises(sp.SingularBlockError, match=r"they span 1 of 6 dimensions.*only 1 of its 500 rows are "
                                                    r"distinct"):
        sp.block_estimates(np.tile(x[:1], (500, 1)), 1000)
    with pytest.raises(sp.SingularBlockError, match=r"they span 5 of 6 dimensions, counting singular values"):
        sp.block_estimates(np.c_[x[:, :5], x[:, :1]], 1000)


def test_warnings_point_at_the_callers_line():
    """A user trial (2026-12-06): RepeatedRowsWarning was reported at spectral.py's in_float64 wrapper, the monitor's
    missing-interval warning at sigma_monitor.py; both now name the line that called the library."""
    from collapse_jax import sigma_monitor as sm

    x = rng(16).standard_normal((40, 4))
    x[1] = x[0]
    with pytest.warns(sp.RepeatedRowsWarning) as caught:
        sp.block_estimates(x, 400)
    assert caught[0].filename == __file__
    with pytest.warns(UserWarning, match="no log-det interval") as caught:
        sm.SigmaMonitor(jax.random.key(0), 30).update(np.tile(x[:3], (20, 1)))
    assert {w.filename for w in caught} == {__file__}


def test_torch_tensors_are_read_detached_and_16_bit_ones_in_float32():
    """A user trial (2026-12-06): a tensor that requires grad gave torch's RuntimeError, a bfloat16 one "must be a
    rectangular array of numbers (Got unsupported ScalarType BFloat16)"."""
    torch = pytest.importorskip("torch")
    x = rng(15).standard_normal((40, 4))
    got = sp.block_estimates(torch.tensor(x, requires_grad=True), 400)
    assert float(got.l_hat) == float(sp.block_estimates(x, 400).l_hat)
    half = torch.tensor(x).bfloat16()
    np.testing.assert_array_equal(sp.check_embeddings("x", half), half.float().numpy())


def test_block_estimates_depend_on_the_rows_not_their_order():
    """An audit (2026-12-04): the jackknife's sampled pairs (i, i + k) followed the block's row order, and the Sigma
    monitor passed sorted indices into a corpus whose neighbours are similar sentences: centre ~15 nats low, 0 of 60
    runs covered on MiniLM embeddings. On clustered rows in sorted order 61 % of 200 blocks covered, 95.5 % shuffled;
    the rows now go through a canonical order and a fixed permutation (spectral.pair_order)."""
    rng = np.random.default_rng(0)
    num_points, d, n = 4000, 32, 256
    x = np.repeat(rng.standard_normal((num_points // 8, d)), 8, axis=0) + 0.3 * rng.standard_normal((num_points, d))
    rows = np.sort(rng.choice(num_points, n, replace=False))  # neighbours are near-copies of each other
    ordered = sp.block_estimates(x[rows], num_points)
    for order in (rng.permutation(n), np.arange(n)[::-1]):
        other = sp.block_estimates(x[rows[order]], num_points)
        for name in sp.ESTIMATORS:
            a, b = getattr(ordered, name), getattr(other, name)
            np.testing.assert_allclose(float(a.center), float(b.center), rtol=1e-10, err_msg=name)
            np.testing.assert_allclose(float(a.half_width), float(b.half_width), rtol=1e-8, err_msg=name)
    # the order that pairs the rows is a permutation, the same for the same rows in any order
    perm = sp.pair_order(x[rows])
    assert sorted(perm.tolist()) == list(range(n))
    np.testing.assert_array_equal(x[rows][perm], x[rows[::-1]][sp.pair_order(x[rows[::-1]])])


def test_a_resumed_sweep_refuses_another_engine(tmp_path, capsys, monkeypatch):
    """A user trial (2026-12-05): a sweep interrupted on the AMX engine and resumed where the native kernels could
    not load (or on a CPU without AMX) ran its other cells on the numpy engine under the same config.json ("auto"),
    up to 4.1 relative apart. The engine "auto" resolved to is part of the run's configuration."""
    from collapse_jax import sigma_cli
    from collapse_jax import sigma_precision as SP

    argv = ["sigma-precision", "--dims", "8", "--blocks", "3", "--num-points", "200", "--ratios", "2",
            "--families", "isotropic", "--out", str(tmp_path / "run"), "--no-progress"]
    assert sigma_cli.main(argv) == 0
    used = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["engine_resolved"]
    assert used == SP.resolve_engine("auto")
    other = "numpy" if used != "numpy" else "native"
    monkeypatch.setattr(SP, "resolve_engine", lambda engine: other)
    assert sigma_cli.main(argv) == 2
    assert f'engine_resolved: "{used}" -> "{other}"' in capsys.readouterr().err


def test_an_hour_long_sweep_on_the_numpy_engine_says_so_first(monkeypatch, tmp_path, capsys):
    """A user trial on a CPU without AMX (2026-12-06): the full default sweep ran about an hour on the numpy engine
    without a word before its progress bar, whose first rate overstated the time ~2.5x. Before any cell, one line
    gives the expected minutes where they are over ten, from this CPU's measured rate: with the rate probed on the
    2-core AMD EPYC Zen 4 where the default sweep took 24 minutes of cell compute (28 with the sentences cell and its
    embedding), that is what it says."""
    import re

    from collapse_jax import sigma_cli
    from collapse_jax import sigma_precision as SP

    cfg = SP.PrecisionConfig()
    gmac = sum(blocks * sigma_cli.block_work(d, cfg.num_points, cfg.ratios) for _, d, blocks in sigma_cli.cells(cfg))
    monkeypatch.setattr(sigma_cli, "numpy_probe_gmac", lambda: 50.2)  # that CPU's probe (2026-12-07)
    note = sigma_cli.slow_engine_note("numpy", gmac / 1e9, 2)
    assert 22 <= int(re.search(r"roughly (\d+) minutes", note).group(1)) <= 32, note
    assert "~17 G/s per thread on this CPU, 2 threads" in sigma_cli.slow_engine_note("numpy", gmac / 1e9, 2, rate=16.6)
    assert sigma_cli.slow_engine_note("native", gmac / 1e9, 2) is None
    quick = SP.PrecisionConfig(**sigma_cli.QUICK)
    small = sum(b * sigma_cli.block_work(d, quick.num_points, quick.ratios) for _, d, b in sigma_cli.cells(quick))
    assert sigma_cli.slow_engine_note("numpy", small / 1e9, 2) is None
    # the sweep prints it before its first cell (here a tiny one, at a rate made tiny)
    monkeypatch.setattr(sigma_cli, "NUMPY_RATE_PER_PROBE", 1e-12)
    monkeypatch.setattr(sigma_cli, "NUMPY_SLOWEST_RATE", 1e-12)
    argv = ["sigma-precision", "--dims", "8", "--blocks", "3", "--num-points", "200", "--ratios", "2",
            "--families", "isotropic", "--engine", "numpy", "--threads", "1", "--out", str(tmp_path / "run"),
            "--no-progress"]
    assert sigma_cli.main(argv) == 0
    assert re.search(r"the numpy engine .* will take roughly \d+ minutes .* 1 thread\)", capsys.readouterr().err)


def test_the_numpy_engines_rate_probe_is_a_rate():
    """The probe behind that estimate times the engine's own product: a positive, finite rate in G multiply-adds a
    second, within what CPUs do on one core (a Zen 3 measured 33, a Zen 4 50; not a timing check)."""
    from collapse_jax import sigma_cli

    rate = sigma_cli.numpy_probe_gmac()
    assert 0.1 < rate < 10_000


def test_a_slow_first_calibration_says_so(monkeypatch, tmp_path, capsys):
    """A user trial (2026-12-06): the first block of a new small size at d = 50-120 stalled 14-23 s without a word;
    where progress bars show, one line says what runs and where it is kept."""
    from collapse_jax import progress

    monkeypatch.setattr(sp, "_quantile_cache_path", lambda dim, n, z, reps: tmp_path / f"q-{dim}-{n}.json")
    monkeypatch.setattr(sp, "_gaussian_jackknife_quantile", lambda dim, n, z, reps: 2.5)
    progress.set_enabled(True)
    try:
        assert sp.gaussian_jackknife_quantile(97, 120, 1.2345) == 2.5
        assert "calibrating the small-block jackknife interval for d = 97, n = 120" in capsys.readouterr().err
        assert sp.gaussian_jackknife_quantile.__wrapped__(97, 120, 1.2345) == 2.5  # from the file: no line
        assert capsys.readouterr().err == ""
    finally:
        progress.set_enabled(None)


def test_sixteen_bit_inputs_and_integer_array_counts_are_read():
    """A user trial (2026-12-06): a bfloat16 Gram read "must hold real numbers, got dtype bfloat16", a float16 one
    failed in jaxlib ("Unsupported dtype"), and N = jnp.asarray(200) read "N must be an integer >= 1"."""
    x = np.random.default_rng(0).normal(size=(200, 8))
    g = x.T @ x
    exact = float(sp.logdet(g))
    for low in (jnp.asarray(g, jnp.bfloat16), g.astype(np.float16)):
        assert abs(float(sp.logdet(low)) - exact) < 0.05
        assert abs(float(sp.logdet_chol(low, 0.0)) - exact) < 0.05
    from collapse_jax import _checks

    for odd in (jax.random.key(0), jnp.asarray(2.0)):   # (a key's dtype raised a TypeError in np.issubdtype)
        with pytest.raises(ValueError, match="N must be an integer >= 1"):
            _checks.positive_int("N", odd)
    a = sp.block_estimates(x[:100], jnp.asarray(200))
    b = sp.block_estimates(x[:100], 200)
    assert float(a.l_hat) == float(b.l_hat)


@pytest.mark.parametrize("call, match", [
    (lambda: sp.gaussian_insample_var(5, 3), r"n must be at least d \+ 1 .*got n = 3 with d = 5"),
    (lambda: sp.mahalanobis_moments(40.0, 5, 3), r"n must be at least d \+ 1"),
    (lambda: sp.mahalanobis_moments(40.0, 5, 5), r"n must be at least d \+ 1"),
    (lambda: sp.second_order_bias(40.0, 5, 200, 100), "block size n must be at most the total count N"),
    (lambda: sp.second_order_bias(40.0, 5, 0, 100), r"n must lie in \[1"),
    (lambda: sp.seed_interval(1.0, 10.0, 0, 1.96), r"n must lie in \[1"),
])
def test_theory_helpers_refuse_block_sizes_out_of_range(call, match):
    """A user trial (2026-12-06): these returned a negative variance (-4.0), moments of -37.5 or inf, a negative
    bias, or raised a bare ZeroDivisionError, where the Wishart formulas beside them refuse with a message."""
    with pytest.raises(ValueError, match=match):
        call()


def test_theory_helpers_still_take_a_real_or_traced_dimension():
    """A review (2026-12-06): the checks above first wanted an integer d, and refused d = 16.0, an array of d and a
    d traced inside jit / vmap, all of which these closed forms compute."""
    assert sp.gaussian_insample_var(16.0, 160.0) == pytest.approx(2 * 16 * 144 / 162)
    np.testing.assert_allclose(sp.gaussian_insample_var(np.array([4, 8]), 100.0), [2 * 4 * 96 / 102, 2 * 8 * 92 / 102])
    np.testing.assert_allclose(jax.vmap(lambda d: sp.gaussian_insample_var(d, 100.0))(jnp.arange(1.0, 3.0)),
                               [2 * 1 * 99 / 102, 2 * 2 * 98 / 102], rtol=1e-6)
    assert float(jax.jit(lambda d: sp.mahalanobis_moments(300.0, d, 160).tau2)(16.0)) == pytest.approx(49.5)


def test_the_plug_in_and_the_overestimation_ratio_are_float64_whatever_x64():
    """A user trial (2026-12-06): with x64 off they returned float32 (18183.171875 for 18183.171990)."""
    with jax.enable_x64(False):
        l_hat = sp.scaling_estimate(np.float64(12345.678901234), 500, 10**6, 768)
        ratio = sp.log_overestimation_ratio(np.geomspace(1, 1e-6, 768))
    assert l_hat.dtype == np.float64 and float(l_hat) == pytest.approx(12345.678901234 + 768 * np.log(2000), rel=1e-15)
    assert ratio.dtype == np.float64
    assert float(ratio) == pytest.approx(np.sum(np.log(1.0 / np.geomspace(1, 1e-6, 768))), rel=1e-13)


def test_results_are_numpy_float64_where_the_callers_x64_is_off():
    """A user trial (2026-12-06): block_estimates returned JAX float64 arrays in a float32 session, so every
    operation on them (``e.jackknife.center - truth``) warned and rounded to float32."""
    x = np.random.default_rng(0).standard_normal((64, 6))
    with jax.enable_x64(False):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            e = sp.block_estimates(x, 20_000)
            diff = e.jackknife.center - np.float64(168.94)
    assert isinstance(e.jackknife.center, np.ndarray) and diff.dtype == np.float64
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in jax.tree.leaves(e))
    with jax.enable_x64(True):  # there, JAX arrays as before
        assert isinstance(sp.block_estimates(x, 20_000).l_hat, jax.Array)


def test_host_estimators_refuse_traced_input_by_name():
    """A user trial (2026-12-06): block_estimates inside jax.jit failed with JAX's TracerArrayConversionError."""
    x = np.random.default_rng(0).standard_normal((40, 3))
    with pytest.raises(TypeError, match=r"x_block is a traced JAX value: .* cannot be called inside jax.jit"):
        jax.jit(lambda v: sp.block_estimates(v, 100).jackknife)(x)


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, "float8", "float16"])
def test_gram_streaming_refuses_a_dtype_that_is_not_float32_or_float64(dtype):
    """A user trial (2026-12-06): dtype=np.int32 truncated every row (a Gram of 13 for 19.97), complex64 ran."""
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64"):
        sp.gram_streaming([np.full((4, 3), 1.5)], 3, dtype=dtype)
    assert sp.gram_streaming([np.full((4, 3), 1.5)], 3, dtype="float64").gram[0, 0] == 9.0


def test_float64_functions_run_inside_a_callers_jit_with_x64_off():
    """A user trial (2026-12-06): with x64 off (the default), the float64-forcing functions raised
    TracerArrayConversionError inside a caller's jit when their own arguments were concrete (their results are
    tracers there and cannot come back as NumPy); they now run in the caller's precision there, as with traced
    arguments, and the same call outside jit still returns NumPy float64."""
    import jax

    from collapse_jax import sigma_monitor as sm

    with jax.enable_x64(False):
        inside = float(jax.jit(lambda y: y + sp.wishart_bias(6, 40, 10000))(1.0))
        traced_n = float(jax.jit(lambda n: sp.wishart_bias(6, n, 10000))(40))
        bounds = float(jax.jit(lambda y: y * sp.theorem1_bounds(np.eye(3) * 2, np.eye(3)).upper)(1.0))
        gain = float(jax.jit(lambda y: y + sm.tracks(jnp.eye(4) * 3.0, 40, 1000, 1e-3).gain)(0.0))
        outside = sp.wishart_bias(6, 40, 10000)
        assert isinstance(outside, np.ndarray) and outside.dtype == np.float64
    assert inside - 1.0 == pytest.approx(float(outside), rel=1e-5)
    assert traced_n == pytest.approx(float(outside), rel=1e-5)
    assert bounds == pytest.approx(float(sp.theorem1_bounds(np.eye(3) * 2, np.eye(3)).upper), rel=1e-6)
    assert gain == pytest.approx(float(sm.tracks(np.eye(4) * 3.0, 40, 1000, 1e-3).gain), rel=1e-5)


def test_host_only_theory_names_the_traced_argument():
    """A user trial (2026-12-06): the closed forms under jax.grad / vmap said "alpha must be a number, got
    GradTracer(...)" (a tracer is one) or raised TracerArrayConversionError; now a TypeError says why."""
    import jax

    from collapse_jax import gmm_theory, multinomial

    host = r"is a traced JAX value \(inside jax.jit, vmap or grad\), but this function computes on the host"
    with pytest.raises(TypeError, match="alpha " + host):
        jax.grad(lambda a: multinomial.fixed_alpha_limit(np.full(10, 0.1), a, 100))(0.3)
    with pytest.raises(TypeError, match="alpha " + host):
        jax.grad(lambda a: multinomial.replace_risk(np.full(10, 0.1), a, np.full(21, 100.0))[-1])(jnp.full(21, 0.3))
    with pytest.raises(TypeError, match="beta " + host):
        jax.vmap(lambda b: gmm_theory.asymptotic_dnorm(10.0, num_models=3, points_per_step=3, beta=b,
                                                       diversity=0.5))(jnp.array([0.3, 0.5]))


@pytest.mark.parametrize("built", [True, False])
def test_native_engine_refusal_says_what_is_missing(built, monkeypatch):
    """A user trial on an AVX2-only AMD EPYC (2026-12-06): engine 'native' was refused with "(here: none)" although
    the native spectral library was built there; only AMX was missing."""
    monkeypatch.setattr(_native, "amx_available", lambda: False)
    monkeypatch.setattr(_native, "spectral_library", lambda: object() if built else None)
    want = "this CPU has no AMX" if built else "the native kernels are unavailable here"
    with pytest.raises(ValueError, match=f"needs an AMX-capable x86 CPU and the native kernels: {want}"):
        spp.PrecisionConfig(engine="native").validate()


def test_block_estimates_warns_where_the_jackknife_is_nan():
    """A user trial (2026-12-07): block_estimates of 140 rows at d = 128 gave a NaN jackknife without a word (below
    1.2 d beyond 128 rows), where the Sigma monitor warns; the field's comment named only n < d + 2."""
    x = np.random.default_rng(0).standard_normal((140, 128))
    with pytest.warns(UserWarning, match=r"jackknife interval is NaN at n = 140 rows, d = 128: .*n >= 1.2 d = 153.6"):
        est = sp.block_estimates(x, 10_000)
    assert np.isnan(est.jackknife.center) and np.isfinite(est.wishart.center)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(sp.block_estimates(x[:, :100], 10_000).jackknife.center)    # 140 >= 1.2 x 100


def test_gram_streaming_and_theorem1_name_bad_arguments():
    """An audit (2026-12-07): gram_streaming(5, 4) raised "'int' object is not iterable", naming nothing, and
    theorem1_bounds with a g2 that is no Gram matrix (-I) returned a NaN bound without a word."""
    with pytest.raises(ValueError, match="chunks must be an iterable of"):
        sp.gram_streaming(5, 4)
    with pytest.raises(ValueError, match="g2 must be positive semidefinite"):
        sp.theorem1_bounds(jnp.eye(3), -jnp.eye(3))
    g = np.diag([3.0, 2.0, 1.0])
    bounds = sp.theorem1_bounds(g, np.zeros((3, 3)))  # G_2 = 0: both bounds are log det G_1
    np.testing.assert_allclose([float(bounds.lower), float(bounds.upper)], [np.log(6.0)] * 2, rtol=1e-12)
