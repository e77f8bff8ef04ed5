"""The bridge into the core: per-model responses (num_models x num_samples texts) -> embeddings -> the estimators of
:mod:`collapse_jax.distance` and :mod:`collapse_jax.sigma_monitor` (seed 000, Eq. 2 and 4 and Figure 3; seed 002,
Section 3.4).

:func:`measure_responses` embeds the texts (an :class:`~llm_bridge.encoders.Encoder`, or precomputed embeddings) and
hands them to :func:`measure_embeddings`, the array-level core. The core takes any ``(num_models, num_samples, dim)``
array, so the GMM network's weight vectors ``Pi`` (``(num_models, num_components)``, read as one sample per model)
or per-sample one-hot component indicators (``(num_models, num_samples, num_components)``) go through exactly the
same code as LLM embeddings: the LLM side and the theory side are measured identically.

Sigma-UB (:class:`~collapse_jax.sigma_monitor.SigmaMonitor`): the rows are all ``N = num_models * num_samples``
responses, model-major; :func:`sigma_monitor` makes the default monitor: an observed block of ``ceil(N / 2)`` rows
drawn once from ``seed`` and kept for the run (seed 002, Appendix C.3: "observed block fixed within run"; half, so
that Track I's tail ``tau = N - n`` and Track II's size correction ``d log(N / n)`` are both at work), rows scaled to
unit norm (Track I's assumption), and ``eps = 0.01 / dim``: the rows have unit norm, so ``tr(G_1 / n) = 1`` and the
mean eigenvalue of ``G_1 / n`` is ``1 / dim``; eps floors ``U_cov``'s spectrum at 1 % of that mean (directions with
less variance count as collapsed), and is negligible beside ``G_1``'s own eigenvalues (order ``n / dim``) in
Track I and ``U_LLN`` except in directions the block does not span (``n < dim``), each of which adds ``log eps`` at
every checkpoint. Keep the returned monitor and pass it to the next step's call: drifts are against its first call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, distance, spectral
from collapse_jax.replicates import root_key
from collapse_jax.sigma_monitor import SigmaMonitor
from llm_bridge.encoders import Encoder, check_encoder
from llm_bridge.generators import check_texts


@dataclass(frozen=True)
class NetworkMetrics:
    """The core's estimators on one step of a network of ``num_models`` models with ``num_samples`` responses each.

    ``mds`` rows are model-major (row ``i * num_samples + l`` is model ``i``'s response ``l``; :attr:`model_of_row`
    gives ``i``); ``sigma`` is :meth:`SigmaMonitor.update`'s dict (tracks, and drifts against the monitor's first
    checkpoint) and ``monitor`` the monitor after this step, to pass to the next; both None when Sigma was not asked for.
    """

    embeddings: np.ndarray   # (num_models, num_samples, dim)
    means: np.ndarray        # X: (num_models, dim)
    distances: np.ndarray    # D: (num_models, num_models), D_ij = ||X_i - X_j||_2
    dnorm: float             # ||D||_F
    spread: np.ndarray       # (num_models,): mean distance of a model's embeddings to their mean
    mds: np.ndarray | None   # (num_models * num_samples, mds_components)
    sigma: dict | None
    monitor: SigmaMonitor | None

    @property
    def model_of_row(self) -> np.ndarray:
        """Model index of each row of ``mds`` (and of the flattened embeddings): ``(num_models * num_samples,)``."""
        n, L = self.embeddings.shape[:2]
        return np.repeat(np.arange(n), L)


def sigma_monitor(num_points: int, dim: int, *, block: int | None = None, eps: float | None = None,
                  seed: int = 0) -> SigmaMonitor:
    """The default Sigma monitor for ``num_points`` responses of dimension ``dim`` (see the module docstring):
    observed block ``ceil(num_points / 2)`` rows drawn from ``root_key(seed)`` (:mod:`collapse_jax.replicates`),
    ``eps = 0.01 / dim``."""
    num_points = _checks.positive_int("num_points", num_points)
    dim = _checks.positive_int("dim", dim)
    block = math.ceil(num_points / 2) if block is None else _checks.positive_int("block", block)
    if block > num_points:
        raise ValueError(f"block must be at most num_points = {num_points}, got {block}")
    # (eps = 0 refused here, taken by SigmaMonitor: both take it where the block spans d; a user trial, 2026-12-07)
    eps = 0.01 / dim if eps is None else spectral.check_eps(eps, num_points=block, dim=dim)
    seed = _checks.random_seed("seed", seed)
    return SigmaMonitor(root_key(seed), block, eps=eps, normalize=True, num_points=num_points, dim=dim)


def update_tracks(monitor: SigmaMonitor, flat: Any) -> tuple[SigmaMonitor, dict]:
    """``monitor.update(flat)`` without the monitor's note that its block is too small for a log-det interval: the
    LLM experiments report the tracks only, and their default block (half of a few dozen responses, d = 384) never
    has one, so the note repeated on every run."""
    with _checks.ignoring_warnings(UserWarning, r"n = \d+ observed rows give no log-det interval"):
        return monitor.update(flat)


def response_distances(flat: Any, *, chunk_bytes: int = 2**26) -> jnp.ndarray:
    """``||e_a - e_b||_2`` for all rows of ``flat`` (num_points, dim) -> (num_points, num_points).

    :func:`collapse_jax.distance.pairwise_distances`'s formula (differences, not the Gram trick: exact zero
    diagonal, exact symmetry; each norm scaled by a power of two, so entries near 1e20 or 1e-20 in float32 neither
    overflow nor underflow when squared), one block of rows at a time so memory stays near ``chunk_bytes`` instead of
    ``num_points^2 * dim`` numbers.
    """
    x = distance._rows("flat", flat)
    if x.ndim != 2:
        raise ValueError(f"flat must be a matrix of rows (num_points, dim), got shape {x.shape}")
    chunk_bytes = _checks.positive_int("chunk_bytes", chunk_bytes)
    m, d = x.shape
    return _row_blocks(x, max(1, min(m, chunk_bytes // max(1, m * d * x.dtype.itemsize))))


@partial(jax.jit, static_argnums=1)
def _row_blocks(x: jnp.ndarray, rows: int) -> jnp.ndarray:
    scale = distance._power_of_two_scale(x)[0, 0]  # the rows in units of a power of two: no difference overflows
    xs = x / scale
    m = x.shape[0]

    def one_row(args):
        row, i = args
        own = jnp.where(jnp.any(jnp.isnan(row)), jnp.nan, 0.0)  # (an infinite entry's inf - inf was NaN there)
        return jnp.where(jnp.arange(m) == i, own, scale * distance._norm(xs - row, -1))

    return jax.lax.map(one_row, (xs, jnp.arange(m)), batch_size=rows)


def _check_embeddings(embeddings: Any) -> np.ndarray:
    try:
        raw = _checks.host_array(embeddings)
        complex_ = np.iscomplexobj(raw)
        arr = None if complex_ else np.asarray(raw, dtype=float)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"embeddings must be a rectangular array of numbers, shape (num_models, num_samples, dim) "
                         f"or (num_models, dim) ({exc})") from None
    if complex_:  # (NumPy dropped the imaginary parts with only a ComplexWarning; a user trial, 2026-12-06)
        raise ValueError(f"embeddings must be real numbers, got dtype {raw.dtype}")
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"embeddings must have shape (num_models, num_samples, dim) or (num_models, dim), "
                         f"got {np.shape(embeddings)}")
    if arr.shape[0] < 2:
        raise ValueError(f"embeddings must hold at least 2 models (num_models >= 2) for a distance matrix, "
                         f"got {arr.shape[0]}")
    arr = _checks.finite_array("embeddings", arr)
    if not jax.config.jax_enable_x64:     # distances, spread and MDS run in float32 then
        top, f32 = float(np.max(np.abs(arr))), np.finfo(np.float32)
        if top > float(f32.max) or 0 < top < float(f32.tiny):  # (in float64: a NumPy float32 bound cast 1e39 to
            # float32 with an overflow warning beside the refusal)
            raise ValueError(f"embeddings hold values up to |{top:.3g}|, outside float32's normal range "
                             f"[{f32.tiny:.3g}, {f32.max:.3g}] in which distances are computed without x64: rescale "
                             f"them (distances scale with them) or enable x64 "
                             f"(jax.config.update('jax_enable_x64', True))")
    return arr


def _check_mds_components(mds_components: Any, num_responses: int) -> int:
    """``mds_components`` as an int in [1, num_responses]: classical MDS of the responses has at most that many
    coordinates (a larger value was cut down to it without a word; an audit, 2026-12-04)."""
    k = _checks.positive_int("mds_components", mds_components)
    if k > num_responses:
        raise ValueError(f"mds_components must be in [1, {num_responses}] (num_models x num_samples responses, the "
                         f"most coordinates classical MDS of them has), got {k}")
    return k


def _check_nonzero_rows(e: np.ndarray, two_d: bool) -> None:
    """A ValueError naming the first response of ``e`` (num_models, num_samples, dim) with zero norm: the Sigma
    tracks scale every response to unit norm, which a zero response does not have."""
    zero = np.argwhere(np.linalg.norm(e, axis=-1) == 0)   # the test normalize_rows applies, in float64
    if zero.size:
        i, l = (int(v) for v in zero[0])
        where = f"embeddings[{i}] (model {i})" if two_d else f"embeddings[{i}, {l}] (model {i}, text {l})"
        raise ValueError(f"{where} has zero norm ({len(zero)} of {e.shape[0] * e.shape[1]} responses do): the Sigma "
                         f"tracks scale every response to unit norm; pass sigma=False to skip them (D, ||D||_F, the "
                         f"spread and MDS are defined for zero rows)")


def measure_embeddings(embeddings: Any, *, sigma: bool = True, monitor: SigmaMonitor | None = None,
                       mds_components: int | None = 2, seed: int = 0) -> NetworkMetrics:
    """Every core estimator on ``embeddings`` (num_models, num_samples, dim); a 2-D (num_models, dim) array is read
    as one sample per model (e.g. the GMM network's weights ``Pi``).

    ``X_i = mean_l e_il`` (seed 000, Eq. 2); ``D = distance.pairwise_distances(X)``, ``||D||_F =
    distance.frobenius_norm(D)`` (Eq. 4); ``distance.within_model_spread``; classical MDS of the distances
    between all responses (``distance.mds_of_points``: the same coordinates as ``distance.classical_mds`` of
    :func:`response_distances`, from the responses' principal components), ``mds_components`` columns (None: skipped);
    Sigma tracks of the flattened responses from ``monitor`` (None: :func:`sigma_monitor` with ``seed``, whose eps
    0.01 / d is not :class:`~collapse_jax.sigma_monitor.SigmaMonitor`'s default 1e-6; ``sigma``
    False: skipped). Distances and MDS in float64 when JAX runs with x64, else float32; the Sigma tracks and
    interval always in float64 (:func:`collapse_jax.spectral.in_float64`). A response with zero norm is refused,
    before any compute, when Sigma scales responses to unit norm (the default monitor does); with ``sigma=False``
    it is allowed.
    """
    e = _check_embeddings(embeddings)
    n, L, d = e.shape
    if mds_components is not None:
        mds_components = _check_mds_components(mds_components, n * L)
    seed = _checks.random_seed("seed", seed)
    if sigma and monitor is not None:
        check_monitor(monitor, n * L, d)
    if sigma and (monitor is None or monitor.normalize):
        _check_nonzero_rows(e, np.ndim(embeddings) == 2)
    flat = e.reshape(n * L, d)
    x = jnp.asarray(e)
    means = distance.row_mean(x)  # (jnp.mean of float32 rows near 3e38 overflowed to inf)
    dist = distance.pairwise_distances(means)
    mds = None
    if mds_components is not None:
        mds = np.asarray(distance.mds_of_points(flat, mds_components))
    sigma_values = None
    if sigma:
        monitor = monitor if monitor is not None else sigma_monitor(n * L, d, seed=seed)
        monitor, sigma_values = update_tracks(monitor, flat)
    else:
        monitor = None
    return NetworkMetrics(embeddings=np.asarray(x), means=np.asarray(means), distances=np.asarray(dist),
                          dnorm=float(distance.frobenius_norm(dist)),
                          spread=np.asarray(distance.within_model_spread(x)), mds=mds, sigma=sigma_values,
                          monitor=monitor)


def check_monitor(monitor: Any, num_points: int, dim: int | None) -> None:
    """A ValueError, before any compute, unless ``monitor`` is a :class:`SigmaMonitor` that can take checkpoints of
    ``num_points`` rows of dimension ``dim`` (a fresh one, or one that started with those sizes; ``dim`` None: not
    checked)."""
    if not isinstance(monitor, SigmaMonitor):
        raise ValueError(f"monitor must be a collapse_jax.sigma_monitor.SigmaMonitor (or None), got "
                         f"{type(monitor).__name__}")
    state = monitor.state
    if state is not None and (state.num_points != num_points or (dim is not None and state.dim != dim)):
        raise ValueError(f"monitor started with N={state.num_points} rows of dimension d={state.dim}, but these "
                         f"embeddings give N={num_points} (num_models x num_samples) rows of dimension d={dim}")
    # a fresh monitor's own sizes too (a block larger than N, or one built for other N, d, was refused by its first
    # update, after the encoder had embedded every text: 28-45 s; a user trial, 2026-12-07)
    if state is None and ((monitor.num_points is not None and monitor.num_points != num_points)
                          or (None not in (monitor.dim, dim) and monitor.dim != dim)):
        raise ValueError(f"monitor was built for N={monitor.num_points} rows of dimension d={monitor.dim}, but these "
                         f"embeddings give N={num_points} (num_models x num_samples) rows"
                         + (f" of dimension d={dim}" if dim is not None else ""))
    if monitor.n > num_points:
        raise ValueError(f"monitor observes n={monitor.n} rows, more than the N={num_points} (num_models x "
                         "num_samples) rows of these embeddings")


def check_responses(responses: Any) -> list[list[str]]:
    """``responses`` as a rectangular list (num_models >= 2) of non-empty lists of str, or a ValueError naming the
    offending ``responses[i]``."""
    if isinstance(responses, (str, bytes)) or not isinstance(responses, Sequence):
        raise ValueError(f"responses must be a list of per-model lists of texts, got {type(responses).__name__}")
    models = [check_texts(r, f"responses[{i}]", allow_empty=False) for i, r in enumerate(responses)]
    if len(models) < 2:
        raise ValueError(f"responses must hold at least 2 models (num_models >= 2), got {len(models)}")
    L = len(models[0])
    for i, r in enumerate(models):
        if len(r) != L:
            raise ValueError(f"responses must be rectangular (num_models x num_samples): responses[0] has {L} texts "
                             f"but responses[{i}] has {len(r)}")
    return models


def encode_texts(encoder: Encoder, texts: list[str], **kwargs) -> np.ndarray:
    """``encoder.encode(texts, **kwargs)`` as a float64 array, or a ValueError naming the encoder unless it is
    ``(len(texts), dim)`` finite numbers (``dim >= 1``): a wrong number of rows would otherwise be reshaped silently."""
    out = encoder.encode(texts, **kwargs)
    name = getattr(encoder, "name", None) or type(encoder).__name__
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"encoder {name!r} must return a (num_texts, dim) array of numbers, got "
                         f"{type(out).__name__}") from None
    if arr.ndim != 2 or arr.shape[0] != len(texts) or arr.shape[1] < 1:
        raise ValueError(f"encoder {name!r} returned shape {arr.shape} for {len(texts)} texts; encode must return "
                         f"(num_texts, dim) = ({len(texts)}, dim)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"encoder {name!r} returned NaN or inf in {int(np.sum(~np.isfinite(arr).all(axis=1)))} of "
                         f"{len(texts)} rows")
    return arr


def measure_responses(responses: Sequence[Sequence[str]], encoder: Encoder | None = None, *,
                      embeddings: Any = None, sigma: bool = True, monitor: SigmaMonitor | None = None,
                      mds_components: int | None = 2, seed: int = 0, batch_size: int = 32) -> NetworkMetrics:
    """:func:`measure_embeddings` of per-model responses: ``responses[i][l]`` is model ``i``'s ``l``-th text.

    The texts are embedded by ``encoder`` (all in one :meth:`Encoder.encode` call, model-major) or ``embeddings``
    (num_models, num_samples, dim) are given (exactly one of the two). Every argument is checked before the encoder
    runs; the encoder must return ``(num_models * num_samples, dim)`` finite numbers. ``batch_size``: texts per
    encoder call (memory, not results; unused with ``embeddings``). ``sigma``, ``monitor``, ``mds_components`` and
    ``seed`` as in :func:`measure_embeddings`.
    """
    models = check_responses(responses)
    n, L = len(models), len(models[0])
    if (encoder is None) == (embeddings is None):
        raise ValueError("give exactly one of encoder and embeddings")
    if mds_components is not None:
        _check_mds_components(mds_components, n * L)
    _checks.random_seed("seed", seed)
    if embeddings is None:
        batch_size = _checks.positive_int("batch_size", batch_size)
        check_encoder(encoder)
        if sigma and monitor is not None:   # before embedding anything
            check_monitor(monitor, n * L, getattr(encoder, "dim", None))
        flat = [t for r in models for t in r]
        if isinstance(encoder, Encoder):
            encoder.check_embeddable(flat, lambda k: f"responses[{k // L}][{k % L}]")
        embeddings = encode_texts(encoder, flat, batch_size=batch_size).reshape(n, L, -1)
    else:
        embeddings = _checks.finite_array("embeddings", embeddings)
        if embeddings.ndim != 3 or embeddings.shape[:2] != (n, L):
            raise ValueError(f"embeddings must have shape (num_models, num_samples, dim) = ({n}, {L}, dim) to match "
                             f"responses, got {embeddings.shape}")
    return measure_embeddings(embeddings, sigma=sigma, monitor=monitor, mds_components=mds_components, seed=seed)
