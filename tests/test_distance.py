"""Distance estimators: existing functions unchanged; within-model spread and classical MDS vs NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_jax import distance
from tests import spectral_reference as ref


def test_pairwise_and_frobenius_match_reference():
    x = np.random.default_rng(0).standard_normal((6, 4))
    d = np.asarray(distance.pairwise_distances(jnp.asarray(x)))
    np.testing.assert_allclose(d, ref.pairwise(x), rtol=1e-12, atol=1e-12)
    assert float(distance.frobenius_norm(jnp.asarray(d))) == pytest.approx(np.linalg.norm(ref.pairwise(x)))
    assert float(distance.distance_matrix_norm(jnp.asarray(x))) == pytest.approx(np.linalg.norm(ref.pairwise(x)))


def test_within_model_spread():
    x = np.random.default_rng(1).standard_normal((3, 50, 5))
    expect = [np.mean(np.linalg.norm(xi - xi.mean(0), axis=1)) for xi in x]
    np.testing.assert_allclose(np.asarray(distance.within_model_spread(jnp.asarray(x))), expect, rtol=1e-12)
    assert float(distance.within_model_spread(jnp.ones((10, 3)))) == 0.0  # point mass
    g = jax.grad(lambda a: distance.within_model_spread(a))(jnp.ones((10, 3)))
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(np.asarray(jax.vmap(distance.within_model_spread)(jnp.asarray(x))), expect, rtol=1e-12)


def test_within_model_spread_keeps_its_precision_far_from_the_origin():
    """A user trial (2026-12-05): centred on a rounded mean, rows + 1e6 in float32 gave 1.62 for 0.965 and a point
    mass 4.8e-7 (not the documented 0). Taken relative to the first row: the offset costs nothing."""
    x = np.random.default_rng(2).standard_normal((4, 30, 16)).astype(np.float32)
    expect = [np.mean(np.linalg.norm(xi - xi.mean(0), axis=1)) for xi in x.astype(np.float64)]
    with jax.enable_x64(False):
        far = np.asarray(distance.within_model_spread(x + np.float32(1e6)))
        mass = float(distance.within_model_spread(np.full((6, 4), 3.7, np.float32)))
        rows = distance.row_mean(x)
    # the offset rows themselves are rounded to 1e6's spacing (0.0625): the spread of the rounded rows is exact
    rounded = (x + np.float32(1e6)).astype(np.float64) - 1e6
    expect_far = [np.mean(np.linalg.norm(xi - xi.mean(0), axis=1)) for xi in rounded]
    np.testing.assert_allclose(far, expect_far, rtol=1e-5)
    np.testing.assert_allclose(expect_far, expect, rtol=1e-2)
    assert mass == 0.0
    np.testing.assert_allclose(np.asarray(rows), x.mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="x must hold at least one row"):
        distance.row_mean(np.ones((0, 3)))


def test_classical_mds_recovers_planar_configuration():
    r = np.random.default_rng(2)
    pts = r.standard_normal((12, 2)) * [3.0, 1.0]
    dist = ref.pairwise(pts)
    y = np.asarray(distance.classical_mds(jnp.asarray(dist), 2))
    np.testing.assert_allclose(ref.pairwise(y), dist, rtol=1e-8, atol=1e-8)  # distances reproduced exactly
    ry = ref.classical_mds(dist, 2)
    np.testing.assert_allclose(np.abs(y), np.abs(ry), rtol=1e-7, atol=1e-8)  # same axes up to sign
    np.testing.assert_allclose(np.asarray(jax.jit(distance.classical_mds, static_argnums=1)(jnp.asarray(dist), 2)),
                               y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_classical_mds_of_16_bit_distances_runs_in_float32(dtype):
    """A user trial (2026-12-04): bfloat16 distances (pairwise_distances of bfloat16 embeddings) failed in eigh
    with a NotImplementedError; they are computed in float32, to the 16-bit input's precision."""
    pts = np.random.default_rng(2).standard_normal((12, 2)) * [3.0, 1.0]
    dist = ref.pairwise(pts)
    y = distance.classical_mds(jnp.asarray(dist, dtype), 2)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(ref.pairwise(np.asarray(y, np.float64)), dist, rtol=0.02, atol=0.02)


def test_classical_mds_of_high_dimensional_points_is_a_projection():
    x = np.random.default_rng(3).standard_normal((20, 8))
    y = np.asarray(distance.classical_mds(distance.pairwise_distances(jnp.asarray(x)), 2))
    # 2-D MDS distances never exceed the originals (a projection of the centred points onto the top-2 PCs)
    assert np.all(ref.pairwise(y) <= ref.pairwise(x) + 1e-9)
    assert y.shape == (20, 2)


@pytest.mark.parametrize("m, dim, k", [(40, 6, 2), (30, 5, 5), (9, 12, 3), (25, 3, 7)])
def test_mds_of_points_equals_classical_mds_of_their_distances(m, dim, k):
    """A user trial (2026-12-06): classical MDS of 20,000 responses (the m x m eigendecomposition) did not finish in
    two minutes. For points, the centred rows' principal components give the same coordinates without the m x m
    matrix; checked against the NumPy reference (double centring + eigh), signs as classical_mds fixes them.
    Components beyond the centred rows' rank (k > dim; dim >= m) are 0 there and ~1e-7 of noise in eigh."""
    x = np.random.default_rng(m + dim).standard_normal((m, dim)) * np.linspace(3.0, 0.5, dim)
    y = np.asarray(distance.mds_of_points(jnp.asarray(x), k))
    want = np.asarray(distance.classical_mds(distance.pairwise_distances(jnp.asarray(x)), k))
    rank = min(k, dim, m - 1)
    np.testing.assert_allclose(y[:, :rank], want[:, :rank], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.abs(y[:, :rank]), np.abs(ref.classical_mds(ref.pairwise(x), k)[:, :rank]),
                               rtol=1e-9, atol=1e-9)
    assert y.shape == (m, k) and np.all(np.abs(y[:, rank:]) < 1e-9)
    np.testing.assert_allclose(np.asarray(jax.jit(distance.mds_of_points, static_argnums=1)(jnp.asarray(x), k)), y,
                               rtol=1e-10, atol=1e-10)


def test_mds_of_points_keeps_float32_precision_under_a_shared_offset():
    """A user trial (2026-12-07): rows sharing an offset of 1e4 (spread 0.05) were centred by a float32 mean, whose
    rounding put 9.2e-4 of error into every coordinate (0.23 %; classical_mds of their distances: 2.7e-6). Against a
    float64 double-centring reference of the same float32 rows."""
    x = (np.random.default_rng(0).standard_normal((100, 64)) * 0.05 + 1e4).astype(np.float32)
    want = ref.classical_mds(ref.pairwise(x.astype(np.float64)), 2)
    with jax.enable_x64(False):
        got = np.asarray(distance.mds_of_points(jnp.asarray(x), 2), np.float64)
    got *= np.sign(np.sum(got * want, axis=0))
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_both_mds_paths_sign_two_points_alike():
    """A user trial (2026-12-07): the coordinates of two points are +-a, so "the entry of largest magnitude is
    positive" was decided by rounding, and classical_mds and mds_of_points disagreed on about half of random pairs.
    Ties within sqrt(eps) now go to the first point."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(False):
        for _ in range(40):
            x = jnp.asarray(rng.standard_normal((2, 30)), jnp.float32)
            a = np.asarray(distance.classical_mds(distance.pairwise_distances(x), 1))
            b = np.asarray(distance.mds_of_points(x, 1))
            assert a[0, 0] > 0 and b[0, 0] > 0
        # a rectangle: every coordinate ties in magnitude with three others (distinct eigenvalues: no rotation)
        rectangle = jnp.asarray([[-2.0, 1.0], [2.0, 1.0], [2.0, -1.0], [-2.0, -1.0]], jnp.float32)
        got = np.asarray(distance.mds_of_points(rectangle, 2))
        np.testing.assert_allclose(got, distance.classical_mds(distance.pairwise_distances(rectangle), 2), atol=1e-5)
        assert np.all(got[0] > 0)


def test_mds_of_points_refuses_bad_input():
    with pytest.raises(ValueError, match=r"num_components must be an integer in \[1, 3\]"):
        distance.mds_of_points(np.ones((3, 2)), 4)
    with pytest.raises(ValueError, match="x must contain only finite numbers"):
        distance.mds_of_points(np.array([[0.0, np.nan], [1.0, 2.0]]), 1)
    with pytest.raises(ValueError, match=r"x must be a matrix of rows \(num_points, dim\)"):
        distance.mds_of_points(np.ones((2, 3, 4)), 1)
    assert distance.mds_of_points(np.ones((4, 2), np.float16), 1).dtype == jnp.float32


def test_bad_shapes_are_clear_errors_also_under_jit():
    for fn in (distance.pairwise_distances, distance.distance_matrix_norm, distance.within_model_spread):
        with pytest.raises(ValueError, match=r"x must hold rows, shape \(\.\.\., num_rows, dim\), got shape \(3,\)"):
            fn(jnp.zeros(3))
        with pytest.raises(ValueError, match="x must hold rows"):
            jax.jit(fn)(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"d must be a square distance matrix \(m, m\), got shape \(3, 4\)"):
        distance.classical_mds(jnp.zeros((3, 4)))
    for k in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match=r"num_components must be an integer in \[1, 3\]"):
            distance.classical_mds(jnp.zeros((3, 3)), k)
    assert distance.classical_mds(jnp.zeros((3, 3)), np.int64(3)).shape == (3, 3)


GOOD_D = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])   # three points on a line


@pytest.mark.parametrize("change, message", [
    ({(0, 1): -1.0, (1, 0): -1.0}, r"entries >= 0 .*got d\[0, 1\] = -1\.0, d\[1, 0\] = -1\.0"),
    ({(0, 2): 5.0}, r"symmetric, d\[i, j\] = d\[j, i\] .*got d\[0, 2\] = 5\.0, d\[2, 0\] = 2\.0"),
    ({(1, 1): 3.0}, r"zero on the diagonal .*got d\[1, 1\] = 3\.0"),
    ({(0, 2): np.nan, (2, 0): np.nan}, r"finite numbers, got d\[0, 2\] = nan"),
    ({(0, 2): np.inf, (2, 0): np.inf}, r"finite numbers, got d\[0, 2\] = inf"),
])
def test_classical_mds_refuses_what_is_not_a_distance_matrix(change, message):
    """These gave coordinates (a negative, asymmetric or non-zero-diagonal matrix) or NaN coordinates."""
    d = GOOD_D.copy()
    for ij, v in change.items():
        d[ij] = v
    with pytest.raises(ValueError, match="d must be a distance matrix.*" + message):
        distance.classical_mds(jnp.asarray(d))
    with pytest.raises(ValueError, match="d must be a distance matrix"):
        distance.classical_mds(d)                                     # NumPy input alike


def test_classical_mds_tolerates_rounding_and_is_unchecked_under_jit():
    d = jnp.asarray(GOOD_D)
    y = np.asarray(distance.classical_mds(d, 1))
    tol = np.sqrt(np.finfo(d.dtype).eps) * 2.0
    wobble = jnp.asarray(GOOD_D + 0.4 * tol * np.array([[1, -1, 1], [1, -1, 0], [-1, 0, 1]]), d.dtype)
    np.testing.assert_allclose(np.asarray(distance.classical_mds(wobble, 1)), y, atol=10 * tol)
    assert distance.classical_mds(jnp.zeros((1, 1)), 1).shape == (1, 1)            # one point
    with pytest.raises(ValueError, match=r"d must be a real distance matrix, got dtype complex"):
        distance.classical_mds(np.array([[0, 1j], [1j, 0]]))
    # traced d: no value checks, the same numbers as before (shape checks still run)
    bad = jnp.asarray(GOOD_D.copy()).at[0, 1].set(-1.0)
    mds = jax.jit(distance.classical_mds, static_argnums=1)
    assert np.all(np.isfinite(np.asarray(mds(bad, 2))))
    np.testing.assert_allclose(np.asarray(mds(d, 2)), np.asarray(distance.classical_mds(d, 2)), rtol=1e-6, atol=1e-6)
    assert jax.vmap(distance.classical_mds)(jnp.stack([d, 2 * d])).shape == (2, 3, 2)


def test_nan_complex_and_empty_input_are_not_reported_as_zero_distance():
    """A second audit (2026-12-02): NaN rows gave distance 0 (a spread of 0.0 read as complete collapse), complex
    rows gave 0 for distance 1, and empty or 1-D input failed with NumPy's raw messages. The gradient of ||D||_F at
    coinciding rows stays finite."""
    x = jnp.asarray([[np.nan, 0.0], [1.0, 1.0], [2.0, 0.0]])
    d = np.asarray(distance.pairwise_distances(x))
    assert np.isnan(d[0]).all() and np.isnan(d[:, 0]).all() and np.isclose(d[1, 2], np.sqrt(2)) and d[1, 1] == 0
    assert np.isnan(distance.frobenius_norm(d)) and np.isnan(distance.within_model_spread(x))
    with pytest.raises(ValueError, match="x must be real"):
        distance.pairwise_distances(np.asarray([[1j, 0], [0, 0]]))
    with pytest.raises(ValueError, match="d must hold rows"):
        distance.frobenius_norm(np.ones(3))
    with pytest.raises(ValueError, match="at least one embedding per model"):
        distance.within_model_spread(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="at least one point"):
        distance.classical_mds(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="numbers .* got dtype bool"):  # (NumPy's boolean subtract error before)
        distance.classical_mds(~np.eye(3, dtype=bool), 1)
    grad = jax.grad(lambda y: distance.frobenius_norm(distance.pairwise_distances(y)))(jnp.ones((3, 2)))
    assert np.isfinite(np.asarray(grad)).all()
    assert np.isfinite(np.asarray(jax.grad(distance.within_model_spread)(jnp.ones((4, 2))))).all()


def test_norms_have_finite_gradients_at_complete_collapse():
    """A third audit (2026-12-04): distance_matrix_norm and frobenius_norm took a bare sqrt, NaN gradients at D = 0."""
    x = jnp.ones((3, 2))
    for g in (jax.grad(distance.distance_matrix_norm)(x), jax.grad(distance.frobenius_norm)(jnp.zeros((3, 3)))):
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e20), (np.float32, 1e-20), (np.float64, 1e160),
                                          (np.float64, 1e-160), (np.float64, 1e300), (np.float64, 1e-300)])
def test_distances_and_mds_keep_very_large_and_very_small_scales(dtype, scale):
    """An audit (2026-12-04): squares of coordinates near 1e20 / 1e-20 (float32) or 1e160 / 1e-160 (float64)
    overflowed to inf or underflowed to 0, so representable distances came out inf or exactly 0 and classical MDS
    NaN or all zeros. The norms are now taken of the rows divided by their largest entry, then scaled back. (A user
    trial, 2026-12-05: float64 still failed from about 1e190 / 1e-190, the power of two clipped at float32's range.)"""
    x = np.random.default_rng(4).standard_normal((5, 3))
    with jax.enable_x64(dtype == np.float64):
        xs = jnp.asarray(x * scale, dtype)
        d = np.asarray(distance.pairwise_distances(xs), np.float64)
        np.testing.assert_allclose(d / scale, ref.pairwise(x), rtol=1e-5)
        assert float(distance.distance_matrix_norm(xs)) / scale == pytest.approx(
            np.linalg.norm(ref.pairwise(x)), rel=1e-5)
        assert float(distance.frobenius_norm(jnp.asarray(ref.pairwise(x) * scale, dtype))) / scale == pytest.approx(
            np.linalg.norm(ref.pairwise(x)), rel=1e-5)
        spread = float(distance.within_model_spread(xs)) / scale
        assert spread == pytest.approx(np.mean(np.linalg.norm(x - x.mean(0), axis=1)), rel=1e-5)
        coords = np.asarray(distance.classical_mds(jnp.asarray(ref.pairwise(x) * scale, dtype), 3), np.float64)
        np.testing.assert_allclose(ref.pairwise(coords / scale), ref.pairwise(x), rtol=1e-3, atol=1e-4)


def test_mds_of_points_near_the_float32_limit_stays_finite():
    """A user trial (2026-12-07): rows at +-3e38, whose coordinates fit float32, gave -inf, inf and NaN (the singular
    values times the scale overflowed before the product with u)."""
    x = np.array([[3e38, 0.0], [-3e38, 0.0], [0.0, 1.0]], np.float32)
    coords = np.asarray(distance.mds_of_points(x, 1))
    assert np.all(np.isfinite(coords))
    np.testing.assert_allclose(np.sort(coords[:, 0]), [-3e38, 0.0, 3e38], rtol=1e-6, atol=1e32)


def test_extreme_float32_rows_empty_axes_and_infinite_entries():
    """A fifth audit (2026-12-04): float32 rows near 3e38 gave an infinite mean (spread inf for a true 0 and 2.5e35)
    because their sum overflowed, and so did the power of two above them (inf) by which norms were scaled, while
    XLA's product with 1 / 2^127 flushed every scaled row to 0; empty axes raised JAX's raw 'zero-size array'
    error; a row with an infinite entry had a NaN self-distance, so ||D||_F was NaN instead of inf."""
    x = jnp.asarray([[[3e38], [3e38]], [[2e38], [2e38]]], jnp.float32)
    np.testing.assert_array_equal(np.asarray(distance.row_mean(x)), np.float32([[3e38], [2e38]]))
    np.testing.assert_array_equal(np.asarray(distance.within_model_spread(x)), [0.0, 0.0])
    rng = np.random.default_rng(0)
    near = (1e36 + 3e35 * rng.standard_normal((1000, 1))).astype(np.float32)
    ref = np.mean(np.abs(near.astype(np.float64) - near.astype(np.float64).mean()))
    assert abs(float(distance.within_model_spread(jnp.asarray(near))) / ref - 1) < 1e-5
    pts = jnp.asarray([[1.2e38, 0.0], [0.5e38, 1.0], [-0.4e38, 0.0]], jnp.float32)
    np.testing.assert_allclose(np.asarray(distance.pairwise_distances(pts)),
                               [[0, 0.7e38, 1.6e38], [0.7e38, 0, 0.9e38], [1.6e38, 0.9e38, 0]], rtol=1e-6)
    np.testing.assert_allclose(float(distance.distance_matrix_norm(pts)),
                               np.sqrt(2 * (0.49 + 2.56 + 0.81)) * 1e38, rtol=1e-6)
    centred = np.array([1.2, 0.5, -0.4]) - 1.3 / 3  # classical MDS: the centred line, its largest entry positive
    np.testing.assert_allclose(np.asarray(distance.classical_mds(distance.pairwise_distances(pts[:, :1]), 1))[:, 0],
                               -centred * 1e38, rtol=1e-5)
    for r in (np.ones((7, 16)), 1e-3 * rng.standard_normal((5, 3, 8))):  # ordinary rows: bit for bit as before
        r = jnp.asarray(r, jnp.float32)
        np.testing.assert_array_equal(np.asarray(distance.row_mean(r)), np.asarray(jnp.mean(r, axis=-2)))
        direct = jnp.sqrt(jnp.sum((r[..., :, None, :] - r[..., None, :, :]) ** 2, axis=-1))
        np.testing.assert_array_equal(np.asarray(distance.pairwise_distances(r)), np.asarray(direct))
    assert distance.pairwise_distances(jnp.zeros((3, 0))).shape == (3, 3)
    assert float(distance.frobenius_norm(distance.pairwise_distances(jnp.zeros((0, 3))))) == 0.0
    assert float(distance.distance_matrix_norm(jnp.zeros((0, 3)))) == 0.0
    np.testing.assert_array_equal(np.asarray(distance.within_model_spread(jnp.zeros((2, 4, 0)))), [0.0, 0.0])
    inf_row = jnp.asarray([[np.inf, 0.0], [0.0, 0.0], [1.0, 1.0]])
    d = np.asarray(distance.pairwise_distances(inf_row))
    assert np.all(np.diagonal(d) == 0) and np.all(np.isinf(d[0, 1:])) and np.isclose(d[1, 2], np.sqrt(2))
    assert np.isinf(distance.frobenius_norm(d)) and np.isinf(distance.distance_matrix_norm(inf_row))


def test_mds_takes_a_zero_d_integer_array_for_num_components():
    """A user trial (2026-12-06): num_components=jnp.asarray(2) was refused ("got Array(2, ...)")."""
    x = np.random.default_rng(0).standard_normal((6, 3))
    assert np.array_equal(distance.mds_of_points(x, jnp.asarray(2)), distance.mds_of_points(x, 2))
    d = distance.pairwise_distances(x)
    assert np.array_equal(distance.classical_mds(d, np.array(2)), distance.classical_mds(d, 2))
    with pytest.raises(ValueError, match=r"num_components must be an integer in \[1, 6\]"):
        distance.mds_of_points(x, np.array(7))


def test_torch_tensors_that_require_grad_are_read_detached():
    """A user trial (2026-12-07): pairwise_distances and mds_of_points raised torch's "Can't call numpy() on Tensor
    that requires grad" where the spectral estimators and measure_embeddings read the same tensor."""
    torch = pytest.importorskip("torch")
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    rows = x.detach().numpy()
    np.testing.assert_array_equal(distance.pairwise_distances(x), distance.pairwise_distances(rows))
    np.testing.assert_array_equal(distance.mds_of_points(x), distance.mds_of_points(rows))
    d = torch.tensor(np.asarray(distance.pairwise_distances(rows)), requires_grad=True)
    np.testing.assert_array_equal(distance.classical_mds(d), distance.classical_mds(d.detach().numpy()))
    np.testing.assert_array_equal(distance.frobenius_norm(d), distance.frobenius_norm(d.detach().numpy()))


def test_ragged_rows_and_strings_are_refused_by_name():
    """An audit (2026-12-07): ragged rows failed with NumPy's "inhomogeneous shape" and strings with JAX's "not a
    valid JAX array type", neither naming the argument."""
    from collapse_jax import distance as dist

    for fn in (dist.pairwise_distances, dist.distance_matrix_norm, dist.within_model_spread, dist.row_mean,
               dist.mds_of_points):
        with pytest.raises(ValueError, match="x must be a rectangular array of numbers"):
            fn([[1.0, 2.0], [3.0]])
        with pytest.raises(ValueError, match="x must be an array of numbers"):
            fn([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="d must be an array of numbers"):
        dist.classical_mds([["0", "1"], ["1", "0"]])
    assert dist.pairwise_distances([[0.0, 0.0], [3.0, 4.0]])[0, 1] == 5.0
