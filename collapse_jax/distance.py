"""Distance estimators shared by the GMM network and the LLM experiments (seed 000, Eq. 2 and 4).

The same functions take a GMM network's weight vectors ``Pi`` (num_models, num_components) and LLM mean embeddings
``X`` (num_models, dim).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks


def _array(name: str, x) -> jnp.ndarray:
    """``x`` as a JAX array; a torch tensor read as :func:`_checks.host_array` reads it (detached: one that requires
    grad raised torch's RuntimeError here, while the spectral estimators took it; a user trial, 2026-12-07). Ragged
    lists and strings are a ValueError naming ``name`` (NumPy's "inhomogeneous shape" and JAX's "not a valid JAX
    array type" named nothing; an audit, 2026-12-07)."""
    if type(x).__module__.split(".")[0] == "torch":
        x = _checks.host_array(x)
    if not isinstance(x, jax.Array):
        try:
            kind = np.asarray(x).dtype.kind
        except ValueError as exc:
            raise ValueError(f"{name} must be a rectangular array of numbers ({exc})") from None
        if kind in "USO":
            raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__} of dtype "
                             f"{np.asarray(x).dtype}")
    return jnp.asarray(x)


def _rows(name: str, x) -> jnp.ndarray:
    """``x`` as an array of rows (..., m, dim); a clear error for fewer than two axes (shapes are static, so this
    check also runs under ``jit``)."""
    x = _array(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name} must hold rows, shape (..., num_rows, dim), got shape {x.shape}")
    if jnp.iscomplexobj(x):
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    return x


def _norm_of_square(sq):
    """``sqrt(sq)`` with a zero gradient where ``sq`` is 0 (sqrt's derivative is infinite there, which would make
    gradients of ||D||_F NaN); NaN stays NaN, so a NaN input is never reported as distance 0."""
    return jnp.where(sq == 0, 0.0, jnp.sqrt(jnp.where(sq == 0, 1.0, sq)))


def _power_of_two_scale(v, axis=None):
    """The power of two ``2^k`` at or just below ``max |v|`` over ``axis`` (keepdims), ``k`` clipped to [-K, K]
    with ``K`` = the dtype's largest exponent less 3 (125 in float32, 1021 in float64); 1 where that max is 0 or not
    finite. ``|v| / scale < 8``, and dividing by it is exact (also as XLA computes it, a product with ``1 / scale``,
    which the clip keeps a normal number: near 3e38, ``1 / 2^127`` was flushed to 0 and every scaled row with it; an
    audit, 2026-12-04), so scaled sums equal unscaled ones bit for bit wherever those neither overflow nor underflow
    (and the grid and single-cell runs of a simulator stay equal, however XLA fuses the division). (A float32 clip
    in float64 left rows near 1e200 overflowing and distances near 1e-200 with a Frobenius norm of 0: a user trial,
    2026-12-05.)"""
    top = jnp.max(jnp.abs(v), axis=axis, keepdims=True, initial=0.0)  # (0 over an empty axis, not an error)
    _, exponent = jnp.frexp(top)
    dtype = top.dtype if jnp.issubdtype(top.dtype, jnp.floating) else jnp.result_type(float)
    limit = int(jnp.finfo(dtype).maxexp) - 3
    k = jnp.clip(exponent - 1, -limit, limit)
    return jnp.where((top > 0) & jnp.isfinite(top), jnp.ldexp(jnp.ones_like(top), k), 1.0)


def _norm(v, axis):
    """``||v||_2`` over ``axis`` as ``s ||v / s||``, ``s`` a power of two near ``max |v|`` there: the squares of very
    large or very small entries (1e20 or 1e-20 in float32, 1e160 / 1e-160 in float64) overflowed to inf or
    underflowed to 0 for norms that are representable (an audit, 2026-12-04; float64 near 1e200 / 1e-200 too,
    2026-12-05). 0 (with a finite gradient) for v = 0."""
    scale = _power_of_two_scale(v, axis)
    w = v / scale
    return jnp.squeeze(scale, axis=axis) * _norm_of_square(jnp.sum(w * w, axis=axis))


def row_mean(x: jnp.ndarray) -> jnp.ndarray:
    """The mean of the rows of ``x`` (..., num_rows, dim) -> (..., dim), as ``s mean(x / s)`` with ``s`` a power of
    two near ``max |x|``: equal to ``jnp.mean(x, axis=-2)`` bit for bit wherever that does not overflow, and finite
    wherever the mean is (float32 rows near 3e38 summed to inf; an audit, 2026-12-04)."""
    x = _rows("x", x)
    if x.shape[-2] == 0:  # (jnp.mean of no rows is NaN)
        raise ValueError(f"x must hold at least one row, got shape {x.shape}")
    scale = _power_of_two_scale(x, axis=(-2, -1))
    return jnp.squeeze(scale, axis=-2) * jnp.mean(x / scale, axis=-2)


def _differences(x):
    """``x_i - x_j`` (..., m, m, dim) of the rows of ``x``, exactly 0 for i = j except at NaN entries (an infinite
    entry's inf - inf was NaN there; a NaN row keeps a NaN self-distance), in units of ``scale`` (..., 1, 1, 1), a
    power of two near ``max |x|``, so that no difference overflows."""
    scale = _power_of_two_scale(x, axis=(-2, -1))[..., None]
    xs = x[..., None, :] / scale
    diff = xs - jnp.swapaxes(xs, -3, -2)
    m = x.shape[-2]
    return jnp.where(jnp.eye(m, dtype=bool)[:, :, None] & ~jnp.isnan(xs), 0.0, diff), scale


def pairwise_distances(x: jnp.ndarray) -> jnp.ndarray:
    """``D_ij = ||x_i - x_j||_2`` for rows of ``x`` (..., num_models, dim) -> (..., num_models, num_models).

    Computed from differences (not the Gram trick) so the diagonal is exactly zero (also for rows with an infinite
    entry; NaN for a row with a NaN) and D exactly symmetric; finite wherever the distances are (rows are scaled by a
    power of two first). Memory: the (..., m, m, dim) differences at once (m = 1000, dim = 384: 3.8 GB); for many
    rows, e.g. classical MDS of every response, ``llm_bridge.embedding_metrics.response_distances`` gives the same
    numbers one block of rows at a time.
    """
    x = _rows("x", x)
    diff, scale = _differences(x)
    return scale[..., 0] * _norm(diff, -1)


def frobenius_norm(d: jnp.ndarray) -> jnp.ndarray:
    """``||D||_F`` over the last two axes."""
    d = _rows("d", d)
    return _norm(d, (-2, -1))  # (finite gradient at D = 0, complete collapse)


def distance_matrix_norm(x: jnp.ndarray) -> jnp.ndarray:
    """``||D||_F`` of the pairwise distance matrix of the rows of ``x``: ``sqrt(sum_ij ||x_i - x_j||^2)``."""
    x = _rows("x", x)
    diff, scale = _differences(x)
    return scale[..., 0, 0, 0] * _norm(diff, (-3, -2, -1))


def within_model_spread(x: jnp.ndarray) -> jnp.ndarray:
    """Within-model spread: mean distance of a model's L embeddings to their mean (seed 000, Figure 3).

    ``x`` (..., num_samples, dim) -> (...,): ``(1/L) sum_l ||phi_l - mean_l phi_l||_2``; exactly 0 for a point mass.
    The rows are taken relative to the first before their mean, so a common offset costs no precision (a user
    trial, 2026-12-05: MiniLM rows + 1e6 in float32 gave 1.62 for 0.965, and a point mass 4.8e-7).
    """
    x = _rows("x", x)
    if x.shape[-2] == 0:
        raise ValueError(f"x must hold at least one embedding per model, got shape {x.shape}")
    scale = _power_of_two_scale(x, axis=(-2, -1))  # (sums and differences of rows near 3e38 overflowed float32)
    xs = x / scale
    xs = xs - xs[..., :1, :]  # (|xs| < 8: no overflow)
    centred = xs - jnp.mean(xs, axis=-2, keepdims=True)
    return scale[..., 0, 0] * jnp.mean(_norm(centred, -1), axis=-1)


def _check_distance_matrix(d: np.ndarray) -> None:
    """Raise unless the square matrix ``d`` is real, finite, symmetric, >= 0 with a zero diagonal, each to within
    ``sqrt(eps) * max|d|`` (``eps`` of ``d``'s floating dtype; float64's for integers)."""
    if np.iscomplexobj(d):
        raise ValueError(f"d must be a real distance matrix, got dtype {d.dtype}")
    if not np.all(np.isfinite(d)):
        i, j = np.argwhere(~np.isfinite(d))[0]
        raise ValueError(f"d must be a distance matrix of finite numbers, got d[{i}, {j}] = {float(d[i, j])!r}")
    dtype = d.dtype if np.issubdtype(d.dtype, np.floating) else np.float64
    tol = float(np.sqrt(np.finfo(dtype).eps)) * float(np.abs(d).max(initial=0.0))
    checks = ((d < -tol, "entries >= 0"), (np.abs(d - d.T) > tol, "symmetric, d[i, j] = d[j, i]"),
              (np.diag(np.abs(np.diagonal(d)) > tol), "zero on the diagonal"))
    for bad, what in checks:
        if np.any(bad):
            i, j = np.argwhere(bad)[0]
            got = f"d[{i}, {j}] = {float(d[i, j])!r}" + (f", d[{j}, {i}] = {float(d[j, i])!r}" if i != j else "")
            raise ValueError(f"d must be a distance matrix: {what} (to within {tol:.3g}), got {got}")


def _num_components(value, m: int) -> int:
    """``value`` as an int in [1, m] (a 0-d integer array counts), or a ValueError naming ``num_components``."""
    value = _checks._integer_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= m:
        raise ValueError(f"num_components must be an integer in [1, {m}] (the number of points), got {value!r}")
    return int(value)


def classical_mds(d: jnp.ndarray, num_components: int = 2) -> jnp.ndarray:
    """Classical (Torgerson) multidimensional scaling of a distance matrix ``d`` (m, m) -> coordinates (m, k).

    ``B = -1/2 J D^2 J`` with ``J = I - 11^T/m``; coordinates are the top ``k`` eigenvectors scaled by the square roots
    of their (clipped at 0) eigenvalues. Exact (up to rotation/reflection) when ``d`` is Euclidean in ``k`` dims.
    Each column's sign is fixed so that its entry of largest magnitude is positive (deterministic output; the first
    of entries tied to ``sqrt(eps)``, so that two points or a symmetric configuration get one sign).

    ``d`` must be square (checked also under ``jit``) and, when concrete (not traced inside ``jit`` / ``vmap``),
    a real distance matrix: finite, symmetric, entries >= 0 and a zero diagonal, each to within
    ``sqrt(machine epsilon of d's dtype) * max|d|`` (3.5e-4 relative in float32); otherwise a ValueError says
    which entry fails (an asymmetric, negative or non-zero-diagonal matrix gave coordinates without a meaning).
    ``num_components`` is an integer in [1, m]. A 16-bit float ``d`` (bfloat16, float16) is computed, and returned,
    in float32.
    """
    d = _array("d", d)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"d must be a square distance matrix (m, m), got shape {d.shape}")
    if d.dtype == bool:  # (static: also under jit; NumPy's boolean subtract failed in the checks)
        raise ValueError("d must be a distance matrix of numbers (floating or integer), got dtype bool")
    m = d.shape[-1]
    if m == 0:
        raise ValueError("d must hold at least one point, got shape (0, 0)")
    num_components = _num_components(num_components, m)
    if not _checks.is_traced(d):
        _check_distance_matrix(np.asarray(d))
    if jnp.issubdtype(d.dtype, jnp.floating) and jnp.finfo(d.dtype).bits < 32:
        d = d.astype(jnp.float32)  # the eigensolvers take no 16-bit floats (eigh refused bfloat16 before 2026-12-05)
    scale = _power_of_two_scale(d)  # (d^2 of distances near 1e+-20 overflowed / underflowed float32: NaN or 0)
    ds = d / scale
    sq = ds * ds
    # J S J by row, column and grand means: O(m^2), where the two products with J were 2 m^3 multiply-adds
    row = jnp.mean(sq, axis=1, keepdims=True)
    b = -0.5 * (sq - row - row.T + jnp.mean(row))
    w, v = jnp.linalg.eigh((b + b.T) / 2)
    w, v = w[::-1][:num_components], v[:, ::-1][:, :num_components]
    return _signed(v * (jnp.sqrt(jnp.maximum(w, 0.0)) * scale))


def _signed(coords):
    """Each column's sign chosen so that its entry of largest magnitude is positive (deterministic output); entries
    within ``sqrt(eps)`` (relative) of that magnitude count as tied, and the first of them is made positive: two
    points (``+a, -a``) or a symmetric configuration let rounding pick the sign, so :func:`classical_mds` and
    :func:`mds_of_points` gave opposite signs for 107 of 200 pairs of MiniLM embeddings (a user trial, 2026-12-07)."""
    mag = jnp.abs(coords)
    tied = mag >= jnp.max(mag, axis=0, keepdims=True) * (1 - jnp.sqrt(jnp.finfo(coords.dtype).eps))
    pivot = jnp.take_along_axis(coords, jnp.argmax(tied, axis=0)[None, :], axis=0)
    return coords * jnp.where(pivot < 0, -1.0, 1.0)


def mds_of_points(x, num_components: int = 2) -> jnp.ndarray:
    """Classical MDS of the Euclidean distances between the rows of ``x`` (m, dim) -> coordinates (m, k), as
    :func:`classical_mds` of :func:`pairwise_distances` gives them, without the m x m matrix: for Euclidean distances
    ``B = -1/2 J D^2 J`` is the Gram matrix of the centred rows ``X_c X_c^T``, so the coordinates are the centred rows'
    top ``k`` principal components ``U_k S_k`` (a thin SVD, ``O(m dim^2)`` work and ``O(m dim)`` memory, where the
    eigendecomposition of ``B`` is ``O(m^3)``: about 26 s at m = 4,000 on two cores, hours for the 20,000 responses of
    a larger network; a user trial, 2026-12-06). Signs as :func:`classical_mds` fixes them; components beyond the
    rank of the centred rows are 0. ``num_components`` is an integer in [1, m]; a 16-bit float ``x`` is computed, and
    returned, in float32. ``x`` must be finite when concrete."""
    x = _rows("x", x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a matrix of rows (num_points, dim) with at least one row, got shape {x.shape}")
    m, dim = x.shape
    num_components = _num_components(num_components, m)
    if not _checks.is_traced(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x must contain only finite numbers (found NaN or inf)")
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.result_type(float) if not jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)
    scale = _power_of_two_scale(x)
    # centred from the first row: rows sharing a large offset differ exactly (Sterbenz), where a float32 mean of
    # rows near 1e4 carried 1e-3 of error into every coordinate (0.23 % at spread 0.05; a user trial, 2026-12-07)
    shifted = x / scale - x[:1] / scale
    centred = shifted - jnp.mean(shifted, axis=0, keepdims=True)
    u, s, _ = jnp.linalg.svd(centred, full_matrices=False)
    k = min(num_components, s.shape[0])
    # (u s first, then the power of two, exactly as before wherever nothing overflows: s * scale overflowed float32
    # for rows near +-3e38, whose coordinates fit, and gave inf and NaN; a user trial, 2026-12-07)
    coords = _signed((u[:, :k] * s[:k]) * scale)
    return jnp.pad(coords, ((0, 0), (0, num_components - k)))  # (k > dim: B has rank <= dim, the rest are 0)
