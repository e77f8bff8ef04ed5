"""Sigma-UB monitoring (seed 002, Section 3.4 and Appendix B; spec ``sigma_spectral.md``).

Track I (deterministic "KF" envelope): with unit-norm embeddings the unseen tail has ``tr G_2 = N - n >= rho(G_2)``,
so ``G <= G_1 + tau I`` (Loewner), ``tau = N - n``, and ``L_eps(G) <= L_eps(G_1 + tau I)``; normalised gain
``G_I = log det(G_1 + (eps + tau) I) - d log(eps + tau) = sum_i log(1 + lambda_i(G_1) / (eps + tau))``.

Track II (LLN scaling): ``U_LLN = L_eps(G_1) + d log(N / n)``; covariance-normalised ``U_cov = log det(G_1/n + eps I)``.

Drifts against a baseline checkpoint ``g0``: ``Delta U(g) = U(g) - U(g0)``, ``Delta G_I(g) = G_I(g) - G_I(g0)``.
The observed index set (n of the N rows) is drawn once per run and reused at every checkpoint.

Interval: each checkpoint also reports the leverage-jackknife interval for ``log det G`` of all ``N`` (normalised)
rows from the observed block (``spectral.jackknife_interval``, docs/sigma.md), the interval that kept its level on
real sentence embeddings; it needs ``n >= max(d + 2, 5)`` (NaN below; :func:`logdet_interval` raises instead).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, spectral
from collapse_jax.replicates import is_prng_key, root_key


class TrackValues(NamedTuple):
    envelope: jnp.ndarray  # L_eps(G_1 + tau I): Track I upper envelope of L_eps(G)
    gain: jnp.ndarray      # G_I, the normalised Track I gain
    u_lln: jnp.ndarray     # Track II, size corrected
    u_cov: jnp.ndarray     # Track II, covariance normalised


@spectral.in_float64
def tracks(g1: jnp.ndarray, n, num_points, eps: float) -> TrackValues:
    """Track I and Track II from one checkpoint's observed Gram ``G_1`` (dim, dim) of ``n`` rows out of ``N``, in
    float64 whatever ``jax_enable_x64`` (:func:`spectral.in_float64`). The gain is formed directly,
    ``log det(I + G_1 / (eps + tau)) = sum_i log1p(lambda_i / (eps + tau))`` over the eigenvalues of ``G_1``, not as
    the envelope minus ``d log(eps + tau)``: both are near ``d log(N - n)`` (thousands) while the gain is often below
    0.01, and in float32 the difference kept about three digits of it.
    ``n`` and ``N`` are counts with ``1 <= n <= N``, ``eps`` in [0, inf); checked, and ``G_1`` a real, finite,
    symmetric, positive semi-definite matrix unless traced (a non-symmetric one was read by one triangle, ``-G``
    gave NaN tracks and a gain of 0, a complex one complex tracks; a user trial, 2026-12-06)."""
    if jnp.ndim(g1) != 2 or jnp.shape(g1)[0] != jnp.shape(g1)[1]:
        raise ValueError(f"g1 must be a square (dim, dim) Gram matrix, got shape {jnp.shape(g1)}")
    if not _checks.is_traced((n, num_points, eps)):
        num_points = _checks.positive_int("num_points", num_points)
        n = _checks.positive_int("n", n)
        if n > num_points:
            raise ValueError(f"n must be at most num_points = {num_points}, got {n}")
        # (fewer rows than dim with eps = 0 gave NaN u_lln and u_cov without a word, where the monitor and logdet
        # refuse it; a user trial, 2026-12-07)
        eps = spectral.check_eps(eps, num_points=n, dim=jnp.shape(g1)[0])
    if not _checks.is_traced(g1):
        checked = spectral._check_gram("g1", g1)
        lam = np.linalg.eigvalsh(checked.astype(np.float64))  # (loose: a rank-deficient Gram rounds below 0)
        rounding = 1e-8 if checked.dtype == np.float64 else 1e-4
        if lam.size and lam[0] < -rounding * max(float(np.abs(lam).max()), np.finfo(float).tiny):
            raise ValueError(f"g1 must be positive semi-definite (a Gram matrix X^T X), got an eigenvalue of "
                             f"{lam[0]:.4g} (largest {lam[-1]:.4g})")
    d = g1.shape[-1]
    tau = jnp.asarray(num_points - n, g1.dtype)
    eye = jnp.eye(d, dtype=g1.dtype)
    scale = eps + tau
    envelope = spectral.logdet_chol(g1 + tau * eye, eps)
    # sum_i log1p(lambda_i / scale): log det(I + G_1 / scale) by Cholesky rounded each 1 + lambda / scale, a relative
    # error ~ eps (N - n) d / n that reached 2.8e-2 at N = 2^53 (an audit, 2026-12-04)
    lam = jnp.maximum(jnp.linalg.eigvalsh(g1), 0.0)
    direct = jnp.sum(jnp.log1p(lam / jnp.where(scale > 0, scale, 1.0)), axis=-1)
    gain = jnp.where(scale > 0, direct, envelope - d * jnp.log(scale))  # scale 0 (n = N, eps = 0): +inf as before
    u_lln = spectral.logdet_chol(g1, eps) + d * jnp.log(jnp.asarray(num_points, g1.dtype) / n)
    u_cov = spectral.logdet_chol(g1 / n, eps)
    return TrackValues(envelope, gain, u_lln, u_cov)


def drifts(values: TrackValues, baseline: int = 0) -> TrackValues:
    """``Delta X(g) = X(g) - X(g0)`` for each track along the leading (checkpoint) axis; ``baseline`` indexes a
    checkpoint (negative from the end)."""
    count = jnp.shape(values.envelope)[0] if jnp.ndim(values.envelope) else 0
    if count == 0:
        raise ValueError(f"values must hold at least one checkpoint along a leading axis, got envelope of shape "
                         f"{jnp.shape(values.envelope)}")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, np.integer)) or not -count <= baseline < count:
        raise ValueError(f"baseline must be a checkpoint index in [{-count}, {count - 1}], got {baseline!r}")
    return TrackValues(*(v - v[baseline] for v in values))


def observed_indices(key: jax.Array, num_points: int, n: int) -> np.ndarray:
    """The observed index set: ``n`` distinct rows of ``N``, drawn once per run from ``key``, sorted."""
    n, num_points = _checks.positive_int("n", n), _checks.positive_int("N", num_points)
    if n > num_points:
        raise ValueError(f"observed block size n={n} exceeds the number of embeddings N={num_points}")
    return np.sort(np.asarray(jax.random.choice(root_key(key), num_points, (n,), replace=False)))


def logdet_interval(block, num_points: int, level: float = 0.95) -> spectral.Interval:
    """Leverage-jackknife interval for ``log det G`` (eps = 0) of ``N`` rows from an observed ``(n, d)`` block of them.

    Raises ``ValueError`` naming ``n`` and the minimum when the block is too small for its leave-one-out sub-blocks
    (``d + 2``) or, beyond 128 rows, too close to ``d`` (``1.2 d``; :func:`spectral.check_jackknife_block`), and as
    :func:`spectral.block_estimates` for other bad input. A block of all ``N`` rows is exact: ``log det`` of its
    Gram matrix, half-width 0."""
    block = spectral.check_embeddings("block", block)
    n, d = block.shape
    spectral.check_block_sizes(n, d, num_points)
    if n < num_points:  # (a block that is the whole population is exact at any n > d)
        spectral.check_jackknife_block(n, d)
    interval = spectral.block_estimates(block, num_points, level=level).jackknife
    if not np.isfinite(float(interval.center)):  # (block_estimates gives the other intervals and a NaN jackknife)
        raise spectral.SingularBlockError(
            "block: a row alone spans a direction of the block (leverage 1), so the leave-one-out sub-blocks are "
            "singular and the leverage jackknife is undefined; spectral.block_estimates still gives the Wishart and "
            "scaled-Wishart intervals")
    return interval


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-norm rows (Track I's assumption) of a finite real ``(num_points, dim)`` array; raises on a zero row.
    (A 1-D array raised NumPy's AxisError and NaN rows came back as NaN without a word; an audit, 2026-12-07.)"""
    x = spectral.check_embeddings("embeddings", x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"embeddings[{int(np.flatnonzero(norms[:, 0] == 0)[0])}] has zero norm and cannot be "
                         "normalised to unit norm")
    return x / norms


@dataclass(frozen=True)
class MonitorConfig:
    """A monitor's settings: observed block size ``n``, ridge ``eps``, unit-norm rows (Track I's assumption) and
    the interval's nominal ``level``; checked on construction."""

    n: int
    eps: float = 1e-6
    normalize: bool = True
    level: float = 0.95

    def __post_init__(self):
        _checks.positive_int("n", self.n)
        _checks.in_interval("eps", self.eps, 0.0, np.inf, high_open=True)
        _checks.flag("normalize", self.normalize)
        _checks.in_interval("level", self.level, 0.0, 1.0, low_open=True, high_open=True)


class MonitorState(NamedTuple):
    """Everything a monitor carries between checkpoints: the observed rows (drawn once) and the tracks so far."""

    indices: np.ndarray                # (n,) observed rows of the N, sorted
    num_points: int                    # N, rows of every checkpoint
    dim: int                           # d
    history: tuple[TrackValues, ...]   # one per checkpoint; history[0] is the drifts' baseline


def init(key: jax.Array, num_points: int, dim: int, config: MonitorConfig) -> MonitorState:
    """A monitor of checkpoints of ``num_points`` embeddings of dimension ``dim``: draws the observed rows from
    ``key`` (:func:`observed_indices`), checks ``eps`` against the block's rank."""
    dim = _checks.positive_int("dim", dim)
    spectral.check_eps(config.eps, num_points=config.n, dim=dim)
    indices = observed_indices(key, num_points, config.n)
    if not _has_interval(config.n, num_points, dim):  # (every record's interval was NaN without a word; a
        # user trial, 2026-12-07)
        warnings.warn(f"n = {config.n} observed rows give no log-det interval at d = {dim}: it needs n >= "
                      f"{spectral.jackknife_min_block(dim)} (max(d + 2, {spectral.PAIR_OFFSETS + 1})), and n >= 1.2 d "
                      f"beyond {spectral.JACKKNIFE_CALIBRATION_ROWS} rows (or all N > d rows: exact); every record's "
                      "logdet_low, logdet_center and logdet_high will be NaN (the tracks are computed)",
                      stacklevel=_checks.user_stacklevel())
    return MonitorState(indices, num_points, dim, ())


def _has_interval(n: int, num_points: int, dim: int) -> bool:
    """Whether a block of ``n`` of ``num_points`` rows in dimension ``dim`` gives a log-det interval: the jackknife's
    (:func:`spectral.jackknife_defined`), or the whole population of more than ``dim`` rows, exact at any size (a
    monitor of 9 rows at d = 8 recorded NaN and warned that it needed 10; a review, 2026-12-07)."""
    return n <= num_points and (n == num_points and n > dim or bool(spectral.jackknife_defined(dim, n)))


def step(state: MonitorState, embeddings, config: MonitorConfig) -> tuple[MonitorState, dict]:
    """Score one checkpoint's embeddings ``(N, d)``: Track I / Track II from the observed block's Gram (seed 002,
    Sec. 3.4), drifts against the first checkpoint, and the nominal-``level`` leverage-jackknife interval for
    ``log det G`` of the N (normalised) rows (NaN where it is not defined: ``n < max(d + 2, 5)``, or ``n < 1.2 d``
    for blocks of more than 128 rows, :func:`spectral.jackknife_defined`, unless the block is all ``N > d`` rows:
    then exact). Returns the new state and the record.
    In float64 whatever ``jax_enable_x64`` (the Gram too: with ``n < d`` and a small ``eps``, float32 rounding in
    ``G_1``'s null space decided ``u_lln``)."""
    if len(state.indices) != config.n:
        raise ValueError(f"config.n={config.n} but the monitor's state observes n={len(state.indices)} rows: step with "
                         "the MonitorConfig the state was made with")
    x = spectral.check_embeddings("embeddings", embeddings, state.dim)
    if x.shape[0] != state.num_points:
        raise ValueError(f"embeddings has N={x.shape[0]} rows but the run started with N={state.num_points}")
    if config.normalize:
        # every row, not only the observed ones: log det G of the N normalised rows, the interval's target, needs
        # each of them (a zero row outside the block passed; one inside was named by its place in the block, not in
        # the embeddings; a user trial, 2026-12-06)
        zero = np.flatnonzero(np.linalg.norm(np.asarray(x, np.float64), axis=1) == 0)  # (normalize_rows's test)
        if zero.size:
            raise ValueError(f"embeddings[{int(zero[0])}] has zero norm ({zero.size} of the {x.shape[0]} rows do) and "
                             "cannot be normalised to unit norm")
    block = np.asarray(x[state.indices], np.float64)
    if config.normalize:
        block = normalize_rows(block)  # (every row's norm was checked above)
    with jax.enable_x64(True):
        vals = tracks(spectral.gram(jnp.asarray(block, jnp.float64)), config.n, state.num_points, config.eps)
    checked = [vals.envelope, vals.u_lln, vals.u_cov]
    if not (config.n == state.num_points and config.eps == 0):  # there the gain is +inf by design (tracks)
        checked.append(vals.gain)
    if not all(np.isfinite(float(v)) for v in checked):
        raise ValueError("G_1 + eps I is not positive definite at this checkpoint; use a larger eps")
    base = state.history[0] if state.history else vals
    interval = dict(logdet_low=math.nan, logdet_center=math.nan, logdet_high=math.nan)
    if _has_interval(config.n, state.num_points, state.dim):
        try:
            iv = logdet_interval(block, state.num_points, config.level)
            interval = dict(logdet_low=float(iv.low), logdet_center=float(iv.center), logdet_high=float(iv.high))
        except spectral.SingularBlockError as exc:
            # the collapse the monitor exists to record (a generator repeating a few texts): the tracks stand (eps > 0),
            # the interval is NaN; it stopped the run with this error before (an audit, 2026-12-04)
            warnings.warn(f"checkpoint {len(state.history)}: no log-det interval, NaN in the record ({exc})",
                          stacklevel=_checks.user_stacklevel())
    record = dict(checkpoint=len(state.history), **{k: float(v) for k, v in vals._asdict().items()},
                  delta_u_lln=float(vals.u_lln) - float(base.u_lln), delta_u_cov=float(vals.u_cov) - float(base.u_cov),
                  delta_gain=float(vals.gain) - float(base.gain), **interval)
    return state._replace(history=(*state.history, vals)), record


def values(state: MonitorState) -> TrackValues:
    """All checkpoints so far, stacked: each field ``(num_checkpoints,)``."""
    if state is None or not state.history:
        raise ValueError("the monitor has scored no checkpoint yet: step (or update) it with embeddings first")
    # (NumPy float64 where x64 is off, as each checkpoint's values: jnp.stack would round them to float32 there)
    stack = jnp.stack if jax.config.jax_enable_x64 else (lambda v: np.stack([np.asarray(x, np.float64) for x in v]))
    return TrackValues(*(stack(v) for v in zip(*state.history)))


@dataclass(frozen=True)
class SigmaMonitor:
    """:func:`init` and :func:`step` behind one immutable value, for feeding checkpoints one at a time:
    ``monitor, record = monitor.update(embeddings)``. The observed rows are drawn from ``key`` on the first update
    (when N and d are known); ``state`` is None until then. ``num_points`` / ``dim``, when given, are the N and d
    every checkpoint must have, the first included (a monitor built for them, e.g. its ``eps`` from d, took other
    shapes silently; a user trial, 2026-12-05).

    Args:
      key: a PRNG key or an integer seed (``jax.random.key(seed)``); draws the observed rows.
      n: the observed block's size, 1 <= n <= N.
      eps: the tracks' ridge, >= 0 and finite; 0 only where the observed block spans the d dimensions (n >= d:
        checked here when ``dim`` is given, else at the first update). The default 1e-6 is not
        :func:`llm_bridge.embedding_metrics.sigma_monitor`'s 0.01 / d, so the same rows give other track values
        through the two (docs/diversity.md, "Sigma settings"); pass ``eps`` to compare them.
      normalize: scale rows to unit norm first (Track I's assumption).
      level: the log-det interval's nominal coverage, in (0, 1).
      num_points, dim: the N and d every checkpoint must have (None: fixed by the first).
    """

    key: jax.Array
    n: int
    eps: float = 1e-6
    normalize: bool = True
    level: float = 0.95
    state: MonitorState | None = None
    num_points: int | None = None
    dim: int | None = None

    def __post_init__(self):
        MonitorConfig(self.n, self.eps, self.normalize, self.level)  # checks the settings now, not at an update
        for name in ("num_points", "dim"):
            if getattr(self, name) is not None:
                _checks.positive_int(name, getattr(self, name))
        if self.num_points is not None and self.n > self.num_points:  # (refused only by the first update, after an
            # encoder had embedded every text; an audit, 2026-12-07)
            raise ValueError(f"n must be at most num_points = {self.num_points}, got {self.n}")
        if self.dim is not None:  # (eps = 0 at n < d was refused only at the first update; a user trial, 2026-12-07)
            spectral.check_eps(self.eps, num_points=self.n, dim=self.dim)
        # an integer seed as every simulator takes it (replicates.root_key; it was refused: a user trial, 2026-12-06)
        key = self.key
        if isinstance(key, np.ndarray) and key.ndim == 0 and np.issubdtype(key.dtype, np.integer):
            key = int(key)
        if (isinstance(key, (int, np.integer)) and not isinstance(key, bool)
                or isinstance(key, jax.Array) and key.ndim == 0 and jnp.issubdtype(key.dtype, jnp.integer)):
            object.__setattr__(self, "key", root_key(key))  # (0-d integer arrays too: root_key's rules; a review)
        if not is_prng_key(self.key):
            raise ValueError(f"key must be a PRNG key, e.g. jax.random.key(0), or an integer seed, got "
                             f"{type(self.key).__name__}")

    @property
    def config(self) -> MonitorConfig:
        """The settings ``MonitorConfig(n, eps, normalize, level)``."""
        return MonitorConfig(self.n, self.eps, self.normalize, self.level)

    @property
    def indices(self) -> np.ndarray | None:
        """The observed rows' indices (n,), sorted; None before the first update draws them."""
        return None if self.state is None else self.state.indices

    def update(self, embeddings) -> tuple[SigmaMonitor, dict]:
        """This monitor after one more checkpoint ``(N, d)``, and the checkpoint's record (see :func:`step`)."""
        state = self.state
        if state is None:
            x = spectral.check_embeddings("embeddings", embeddings)
            for name, want, got in (("num_points", self.num_points, x.shape[0]), ("dim", self.dim, x.shape[1])):
                if want is not None and got != want:
                    raise ValueError(f"embeddings must have {name} = {want} (this monitor was built for "
                                     f"N = {self.num_points}, d = {self.dim}), got shape {x.shape}")
            state = init(self.key, x.shape[0], x.shape[1], self.config)
        state, record = step(state, embeddings, self.config)
        return replace(self, state=state), record

    def values(self) -> TrackValues:
        """All checkpoints so far (see :func:`values`)."""
        return values(self.state)
