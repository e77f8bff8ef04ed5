"""LLM Web Dynamics: a network of interacting Gaussian mixture models (seed 000, Section 3.2, Algorithms 2-3).

``n`` GMMs share fixed components ``N(mu_b, Sigma)`` and differ only in their weights ``Pi_i(t)``. At every step each
model posts ``L`` points drawn from itself to a shared internet ``A(t)``, then draws ``k_t = floor(beta |A(t)|)``
points uniformly without replacement from the internet as it was before this step's posts, and updates its weights
point by point with the recursive rule of Zivkovic & van der Heijden (2004) (Algorithm 2). The tracked statistic is
``||D(t)||_F`` with ``D_ij = ||Pi_i(t) - Pi_j(t)||_2``.

The simulator contract (docs/driver.md): :class:`StaticConfig` holds what the compiled kernels depend on (the sizes
n, B, d, L, m0, T, the kind of start, what is recorded); :class:`Params` every value they read (the geometry, the
per-step ``k_t``, ``alpha_t``, ``c_t``, ``eps``, the start), resolved in float64 by :func:`make_params` from a
:class:`GMMNetworkConfig`, so a grid over ``beta`` or the schedules is one compiled call. ``init``, ``step_inputs``,
``step`` and ``observe`` make one replicate's :data:`kernel`; :func:`simulate` runs it through
:func:`collapse_jax.driver.run_replicates` (a grid: a list of Params).

A point's component likelihoods never change, so they are computed once when the point is posted and stored in the
internet ("pool"): the update then costs O(B) per drawn point whatever the dimension. Three kernels, all exact in
their sampling without replacement:
- ``backend="native"`` (CPU default): whole replicates in C++ (``collapse_jax/_native/gmm_network.cc``): posts,
  draws (partial Fisher-Yates on each model's own copy of the internet, xoshiro128++ and Lemire's exact bounded
  integers), updates and records, (replicate, model) chains in SIMD lanes. XLA:CPU cannot run the per-replicate
  swap fast.
- ``backend="jax"`` (portable, any device, the reference): :data:`kernel`, ``lax.scan`` over :func:`step`; each
  model draws an index uniformly and keeps it only if unused this step (a per-model bitmap), so accepted draws form
  a uniform random ordered sample without replacement.
- ``backend="pallas"`` (for GPUs, only when asked for; :mod:`collapse_jax.gmm_pallas`): one Pallas kernel, whole
  replicates per lane with the weights in registers; interpreted on a CPU.
Replicates are sharded over all devices; replicate r's stream depends only on ``fold_in(key(seed), r)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from collapse_jax import _checks, driver, gmm_theory
from collapse_jax import progress as _progress
from collapse_jax.distance import pairwise_distances, frobenius_norm
from collapse_jax.replicates import (check_mesh, chunk_keys, is_prng_key, padded_count, replicate_sharding,
                                     root_key)


@dataclass(frozen=True)
class GMMNetworkConfig:
    """Everything that defines one GMM network (validated by :func:`make_config`, or when first used if built
    directly: :func:`checked`): the sizes and flags that :attr:`static` passes to the compiled kernels, and the
    values :func:`make_params` resolves into :class:`Params`.

    Attributes:
      mu: component means, ``num_components`` tuples of length ``dim``.
      sigma: the shared covariance, ``dim`` x ``dim`` (symmetric positive definite).
      num_models: ``n``, the number of GMMs.
      points_per_step: ``L``, points each model posts per step.
      beta: fraction of the internet each model reads per step, in (0, 1].
      dirichlet_a: ``a`` of the initial weights ``Pi_i(0) ~ Dirichlet(a, ..., a)``.
      num_steps: ``T``; ``D(t)`` is recorded for t = 0..T.
      eps: pruning threshold of Algorithm 2, in [0, 1].
      num_human: ``m0``, human points in ``A(0)`` drawn from the reference GMM with weights ``pi_ref``.
      pi_ref: reference weights of the human data (default uniform; no effect when ``num_human`` is 0).
      alpha, c: Algorithm 2's coefficients; None = the paper's ``1/k_t`` and ``1/(k_t B^2)``; a number = constant;
        a sequence = one value per step t = 0..T-1.
      record_pi, record_d: also return ``Pi(t)`` (replicate, step, model, component) and ``D(t)``.
      initial_weights: ``Pi(0)`` for every replicate, ``num_models`` rows on the simplex (None: Dirichlet draws);
        e.g. weights fitted to data (:mod:`llm_bridge.web_gmm_proxy`).
    """

    mu: tuple = ((-5.0,), (5.0,))
    sigma: tuple = ((1.0,),)
    num_models: int = 3
    points_per_step: int = 3
    beta: float = 0.5
    dirichlet_a: float = 1.0
    num_steps: int = 200
    eps: float = 0.0
    num_human: int = 0
    pi_ref: tuple | None = None
    alpha: Any = None
    c: Any = None
    record_pi: bool = False
    record_d: bool = False
    initial_weights: tuple | None = None

    @property
    def num_components(self) -> int:
        return len(self.mu)

    @property
    def dim(self) -> int:
        return len(self.mu[0])

    @property
    def fixed_start(self) -> bool:
        """Every replicate starts from ``initial_weights`` (else from Dirichlet draws)."""
        return self.initial_weights is not None

    @property
    def static(self) -> "StaticConfig":
        """The part the compiled kernels depend on: configurations that differ only in values share it."""
        return StaticConfig(self.num_models, self.num_components, self.dim, self.points_per_step, self.num_human,
                            self.num_steps, self.fixed_start, self.record_pi, self.record_d)

    @property
    def max_points(self) -> int:
        """``|A(T-1)|``: the largest internet any update reads."""
        return self.static.max_points

    @property
    def pool_size(self) -> int:
        """Stored points: ``|A(T)|`` (the last step's posts are stored but never read)."""
        return self.static.pool_size

    def replace(self, **changes) -> "GMMNetworkConfig":
        """A copy with the named fields changed, validated again as by :func:`make_config` (e.g. a grid of
        ``cfg.replace(beta=b)``); a name that is not a field is a TypeError naming it and the fields."""
        fields = _as_kwargs(self)
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise TypeError(f"GMMNetworkConfig.replace() got unknown field(s) {', '.join(map(repr, unknown))}; the "
                            f"fields are {', '.join(fields)}")
        return make_config(**{**fields, **changes})


def _as_kwargs(cfg: GMMNetworkConfig) -> dict:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def _numbers(name: str, value) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError naming ``name`` (strings, mappings, ragged nesting)."""
    if isinstance(value, (str, bytes, dict)):
        raise ValueError(f"{name} must be a number or a (nested) list of numbers, got {value!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or a rectangular (nested) list of numbers, got {value!r} "
                         f"({exc})") from None


def _tuplify(x):
    arr = np.asarray(x, dtype=np.float64)
    return tuple(map(_tuplify, arr)) if arr.ndim > 1 else tuple(float(v) for v in arr)


# 1 - B c must be at least this: below, float32 rounds it to 0 or less for c just under 1/B (an audit: c = 0.49999999
# with B = 2 gave NaN records from t = 2 in both kernels), and the gain alpha / (1 - B c) is past 1e6 anyway.
C_MARGIN = 1e-6


def make_config(*, mu=((-5.0,), (5.0,)), sigma=((1.0,),), num_models=3, points_per_step=3, beta=0.5,
                dirichlet_a=1.0, num_steps=200, eps=0.0, num_human=0, pi_ref=None, alpha=None, c=None,
                record_pi=False, record_d=False, initial_weights=None) -> GMMNetworkConfig:
    """Validate every parameter (clear ``ValueError`` naming it) and return a :class:`GMMNetworkConfig`.

    ``mu`` may be given as (B,) for d = 1 or (B, d); ``sigma`` as a number (d = 1, variance) or (d, d).
    """
    mu_arr = _numbers("mu", mu)
    if mu_arr.ndim == 1:
        mu_arr = mu_arr[:, None]
    if mu_arr.ndim != 2 or mu_arr.shape[0] < 1 or mu_arr.shape[1] < 1:
        raise ValueError(f"mu must have shape (num_components, dim), got {np.shape(mu)}")
    mu_arr = _checks.finite_array("mu", mu_arr)
    B, dim = mu_arr.shape
    if B > MAX_COMPONENTS:
        raise ValueError(f"num_components must be at most {MAX_COMPONENTS} (the alive counts are 8-bit): mu has {B} "
                         "rows")
    sig = _numbers("sigma", sigma)
    if sig.ndim == 0:
        sig = sig.reshape(1, 1)
    if sig.shape != (dim, dim):
        raise ValueError(f"sigma must have shape (dim, dim) = ({dim}, {dim}) to match mu's dim, got {sig.shape}")
    sig = _checks.spd_matrix("sigma", sig, dim)
    n = _checks.positive_int("num_models", num_models)
    L = _checks.positive_int("points_per_step", points_per_step)
    T = _checks.positive_int("num_steps", num_steps)
    if T > MAX_STEPS:  # the schedules are tuples of T floats: 10^8 steps took 14 GB before any check (a user trial)
        raise ValueError(f"num_steps must be at most {MAX_STEPS:,}, got {T:,}")
    beta = _checks.in_interval("beta", beta, 0.0, 1.0, low_open=True)
    a = _checks.in_interval("dirichlet_a", dirichlet_a, 0.0, math.inf, low_open=True, high_open=True)
    eps = _checks.in_interval("eps", eps, 0.0, 1.0)
    m0 = _checks.nonnegative_int("num_human", num_human)
    if pi_ref is not None and m0 == 0:  # (accepted with no effect, as the command refuses it; a user trial, 2026-12-07)
        raise ValueError("pi_ref weights the human points' GMM only, and num_human is 0 (no human points): give "
                         "num_human >= 1 or leave pi_ref out")
    if pi_ref is not None:
        pi_ref = tuple(float(v) for v in _checks.simplex_vector("pi_ref", pi_ref, B))
    alpha = _schedule_arg("alpha", alpha, T, 0.0, 1.0, low_open=True)
    c = _schedule_arg("c", c, T, 0.0, 1.0 / B, high_open=True)
    if np.any(1.0 - B * np.asarray(c, np.float64) < C_MARGIN):  # (float32 rounded 1 - B c to 0 or below: inf / NaN)
        raise ValueError(f"c must be below 1/B = {1.0 / B:.9g} by more than {C_MARGIN:g} / B (the update's gain "
                         f"alpha / (1 - B c) is beyond float32 there), got max c = {float(np.max(c))!r}")
    if initial_weights is not None:
        w0 = _checks.finite_array("initial_weights", initial_weights, shape=(n, B))
        initial_weights = _tuplify([_checks.simplex_vector(f"initial_weights[{i}]", w, B) for i, w in enumerate(w0)])
    max_points = m0 + n * L * max(T - 1, 0)
    if max_points >= 2**31 - 1:
        raise ValueError(f"the internet would hold {max_points} points; at most 2^31 - 2 are supported "
                         "(reduce num_steps, num_models or points_per_step)")
    cfg = GMMNetworkConfig(mu=_tuplify(mu_arr), sigma=_tuplify(sig), num_models=n, points_per_step=L, beta=beta,
                           dirichlet_a=a, num_steps=T, eps=eps, num_human=m0, pi_ref=pi_ref, alpha=alpha, c=c,
                           record_pi=_checks.flag("record_pi", record_pi), record_d=_checks.flag("record_d", record_d),
                           initial_weights=initial_weights)
    sched = step_schedule(cfg)  # B c_t < 1 at every step: refused here, before a run folder or any compute
    if T > 0 and not np.any(sched.num_draws > 0):  # (ran as a network that never moves; a user trial, 2026-12-06)
        warnings.warn(f"beta = {beta:g} reads no point at any step: k_t = floor(beta |A(t)|) = 0 for every t < T = "
                      f"{T} (|A(t)| <= {int(np.max(sched.num_points)):,}), so no model is ever updated; raise beta, "
                      "num_human (m0), points_per_step or num_steps", UserWarning,
                      stacklevel=_checks.user_stacklevel())
    if len(np.unique(mu_arr, axis=0)) < B:  # (ran to the end without a word, ||D|| growing; a user trial, 2026-12-07)
        i, j = next((i, j) for i in range(B) for j in range(i + 1, B) if np.array_equal(mu_arr[i], mu_arr[j]))
        warnings.warn(f"mu: components {i} and {j} have the same mean {mu_arr[i].tolist()} and share sigma, so they "
                      "are one Gaussian: how the models split weight between them is not identifiable from the "
                      "data, and ||D||_F then measures that drift, not collapse; give each component its own mean",
                      UserWarning, stacklevel=_checks.user_stacklevel())
    object.__setattr__(cfg, "_validated", True)  # (not a field: equality, hashing and static keys ignore it)
    return cfg


def checked(config) -> GMMNetworkConfig:
    """``config`` as :func:`make_config` validates it: a configuration built directly (``GMMNetworkConfig(...)``)
    went unchecked into the kernels (a negative variance gave numpy's LinAlgError, ``mu=[-5, 5]`` a TypeError; a user
    trial, 2026-12-06), so it is validated here once, naming the parameter."""
    if not isinstance(config, GMMNetworkConfig):
        raise ValueError(f"config must be a GMMNetworkConfig (use make_config), got {type(config).__name__}")
    return config if config.__dict__.get("_validated") else make_config(**_as_kwargs(config))


# The longest horizon a configuration takes (its schedules are stored as tuples of T floats); the theory's too.
MAX_STEPS = gmm_theory.MAX_STEPS


def _schedule_arg(name, value, T, low, high, **kw):
    if value is None:
        return None
    arr = _numbers(name, value)
    if arr.ndim == 0:
        return _checks.in_interval(name, value, low, high, **kw)
    if arr.shape != (T,):
        raise ValueError(f"{name} as a schedule must have one value per step, shape ({T},), got {arr.shape}")
    for t, v in enumerate(arr):
        _checks.in_interval(f"{name}[{t}]", v, low, high, **kw)
    return tuple(float(v) for v in arr)


def paper_config(figure: int = 4, **overrides) -> GMMNetworkConfig:
    """The seed's settings: Figure 4/5 (B = 2, mu = -5, 5) or Figure 6 (B = 11, mu_b = 5 (b - 5))."""
    if figure in (4, 5):
        base = dict(mu=((-5.0,), (5.0,)))
    elif figure == 6:
        base = dict(mu=tuple((5.0 * (b - 5),) for b in range(11)))
    else:
        raise ValueError(f"figure must be 4, 5 or 6, got {figure!r}")
    base.update(sigma=((1.0,),), num_models=3, points_per_step=3, beta=0.5, dirichlet_a=1.0, num_steps=200)
    base.update(overrides)
    return make_config(**base)


# --------------------------------------------------------------------------------------------------------------
# The contract: static configuration, parameters, one replicate
# --------------------------------------------------------------------------------------------------------------


MAX_COMPONENTS = gmm_theory.MAX_COMPONENTS  # components per model: the records' alive counts are int8


@dataclass(frozen=True)
class StaticConfig:
    """What the compiled kernels depend on (:attr:`GMMNetworkConfig.static`): configurations that differ only in
    values share one compilation.

    Attributes:
      num_models, num_components, dim, points_per_step, num_human, num_steps: ``n``, ``B``, ``d``, ``L``, ``m0``, ``T``.
      fixed_start: every replicate starts from ``Params.initial_weights`` (else ``Pi_i(0) ~ Dirichlet(a)``).
      record_pi, record_d: also record ``Pi(t)`` (step, model, component) and ``D(t)`` (step, model, model).
    """

    num_models: int
    num_components: int
    dim: int
    points_per_step: int
    num_human: int
    num_steps: int
    fixed_start: bool = False
    record_pi: bool = False
    record_d: bool = False

    def __post_init__(self):
        for name in ("num_models", "num_components", "dim", "points_per_step", "num_steps"):
            _checks.positive_int(name, getattr(self, name))
        _checks.nonnegative_int("num_human", self.num_human)
        if self.num_components > MAX_COMPONENTS:  # the records count live components in int8
            raise ValueError(f"num_components must be at most {MAX_COMPONENTS} (the alive counts are 8-bit), got "
                             f"{self.num_components}")

    @property
    def max_points(self) -> int:
        """``|A(T-1)|``: the largest internet any update reads."""
        return self.num_human + self.num_models * self.points_per_step * max(self.num_steps - 1, 0)

    @property
    def pool_size(self) -> int:
        """Stored points: ``|A(T)|`` (the last step's posts are stored but never read)."""
        return self.num_human + self.num_models * self.points_per_step * self.num_steps


def _static(config) -> StaticConfig:
    if isinstance(config, GMMNetworkConfig):
        return config.static
    if isinstance(config, StaticConfig):
        return config
    raise ValueError(f"config must be a GMMNetworkConfig (use make_config) or a StaticConfig, got "
                     f"{type(config).__name__}")


def _num_points(config) -> np.ndarray:
    """``|A(t)| = m0 + n L t`` for t = 0..T-1, (step,) int64."""
    return config.num_human + config.num_models * config.points_per_step * np.arange(config.num_steps)


class StepSchedule(NamedTuple):
    """Per-step quantities, t = 0..T-1 (NumPy, float64): internet size, draws, coefficients."""

    num_points: np.ndarray  # |A(t)|
    num_draws: np.ndarray  # k_t
    alpha: np.ndarray
    c: np.ndarray


def step_schedule(cfg: GMMNetworkConfig, num_draws=None) -> StepSchedule:
    """``|A(t)| = m0 + n L t``, ``k_t = floor(beta |A(t)|)`` and the coefficients alpha_t, c_t.

    ``num_draws``: the k_t of the steps t = 0..T-1 in place of ``floor(beta |A(t)|)`` (integers in [0, |A(t)|]; the
    default coefficients then follow them), e.g. the texts an LLM network's models actually read
    (:mod:`llm_bridge.llm_web_report`)."""
    size = _num_points(cfg)
    k = gmm_theory.num_draws(cfg.beta, size) if num_draws is None else _given_draws(num_draws, size)
    kk = np.maximum(k, 1)
    alpha = 1.0 / kk if cfg.alpha is None else np.broadcast_to(np.asarray(cfg.alpha, float), size.shape).copy()
    B = cfg.num_components
    c = 1.0 / (kk * B * B) if cfg.c is None else np.broadcast_to(np.asarray(cfg.c, float), size.shape).copy()
    bad = (k > 0) & (B * c >= 1)  # (c_t is unused where k_t = 0, as in gmm_theory.schedule: B = 1 at t = 0 was refused)
    if np.any(bad):
        t = int(np.argmax(bad))
        if cfg.c is None and num_draws is not None:  # (it said k_t = floor(beta |A(t)|); a review)
            raise ValueError(f"the default c_t = 1 / (k_t B^2) needs B c_t < 1, i.e. k_t B > 1, at every step; with "
                             f"num_components B = {B} it fails at t = {t}, where k_t = num_draws[{t}] = {int(k[t])}: "
                             "give more draws there (or none), use more components, or give c")
        if cfg.c is None:
            raise ValueError(f"the default c_t = 1 / (k_t B^2) needs B c_t < 1, i.e. k_t B > 1, at every step; with "
                             f"num_components B = {B} it fails at t = {t}, where k_t = floor(beta |A(t)|) = "
                             f"{int(k[t])} (beta = {cfg.beta}, |A(t)| = {int(size[t])}): raise beta, num_human (m0) "
                             "or points_per_step, use more components, or give c")
        raise ValueError(f"c must satisfy B * c < 1 at every step; B * c = {B * c[t]:.4g} at t = {t}")
    return StepSchedule(size, k, alpha, np.where(k > 0, c, 0.0))  # (no update's gain alpha / (1 - B c) at k_t = 0)


def _given_draws(num_draws, size: np.ndarray) -> np.ndarray:
    """``num_draws`` as int64 k_t, or a ValueError naming it and the allowed range."""
    k = _numbers("num_draws", num_draws)
    if k.shape != size.shape:
        raise ValueError(f"num_draws must hold one k_t per step t = 0..T-1 ({size.size} values), got shape {k.shape}")
    if np.any(k != np.floor(k)) or np.any(k < 0) or np.any(k > size):
        t = int(np.argmax((k != np.floor(k)) | (k < 0) | (k > size)))
        raise ValueError(f"num_draws must hold integers k_t in [0, |A(t)|], |A(t)| = m0 + n L t; got {k[t]:g} at "
                         f"t = {t}, where |A(t)| = {int(size[t])}")
    return k.astype(np.int64)


class Params(NamedTuple):
    """What a grid may vary: every value the kernels read, in the shapes the static configuration fixes.

    Rule: what changes only values is a parameter; what changes shapes, the kind of start or what is recorded is
    static (:class:`StaticConfig`). :func:`make_params` resolves a configuration's values in float64 NumPy (Sigma's
    Cholesky factor and its inverse, ``k_t = floor(beta |A(t)|)`` and the default coefficients), so the kernels do
    no parameter arithmetic: a cell computes the same whether it runs alone or in a grid. A grid is a list of
    Params (:func:`simulate`, :func:`collapse_jax.driver.stack_cells`).
    """

    mu: Any  # (component, dim): the component means mu_b
    chol: Any  # (dim, dim): the lower Cholesky factor C of Sigma = C C^T
    whitener: Any  # (dim, dim): C^{-1}
    num_draws: Any  # (step,) = (T,) int32: k_t, points each model reads at step t = 0..T-1
    alpha: Any  # (step,): Algorithm 2's alpha_t
    c: Any  # (step,): Algorithm 2's c_t, B c_t < 1
    eps: Any  # (): Algorithm 2's pruning threshold
    dirichlet_a: Any  # (): a of Pi_i(0) ~ Dirichlet(a, ..., a) (unused with a fixed start)
    pi_ref: Any  # (component,): the weights of the human data's GMM
    initial_weights: Any  # (model, component): Pi(0) with a fixed start; all 0 with a Dirichlet start (unused)


def make_params(config: GMMNetworkConfig, *, num_draws=None) -> Params:
    """A configuration's values as :class:`Params` (NumPy float64, ``num_draws`` int32), resolved in float64;
    ``num_draws``: k_t per step in place of ``floor(beta |A(t)|)`` (:func:`step_schedule`)."""
    config = checked(config)
    sched = step_schedule(config, num_draws)
    chol = np.linalg.cholesky(np.asarray(config.sigma, np.float64))
    B, n = config.num_components, config.num_models
    pi_ref = np.full(B, 1.0 / B) if config.pi_ref is None else np.asarray(config.pi_ref, np.float64)
    # a Dirichlet start's (unused) initial_weights are 0, off the simplex, so that check_params tells the two kinds
    # of start apart (Params of one kind ran silently as the other; a user trial, 2026-12-07)
    start = np.zeros((n, B)) if config.initial_weights is None else np.asarray(config.initial_weights)
    return Params(np.asarray(config.mu, np.float64), chol, np.linalg.inv(chol), sched.num_draws.astype(np.int32),
                  sched.alpha, sched.c, np.float64(config.eps), np.float64(config.dirichlet_a), pi_ref,
                  start.astype(np.float64))


def check_params(params: Params, config) -> Params:
    """Validate one cell's values against ``config``'s sizes (a ``ValueError`` naming ``params.<field>`` and its
    allowed range) and return them as NumPy (float64; ``num_draws`` int32)."""
    static = _static(config)
    if not isinstance(params, Params):
        raise ValueError(f"params must be a gmm_network.Params (see make_params), got {type(params).__name__}")
    n, B, d, T = static.num_models, static.num_components, static.dim, static.num_steps
    shapes = Params(mu=(B, d), chol=(d, d), whitener=(d, d), num_draws=(T,), alpha=(T,), c=(T,), eps=(),
                    dirichlet_a=(), pi_ref=(B,), initial_weights=(n, B))
    try:
        v = Params(*(_checks.finite_array(f"params.{name}", x, shape=shape)
                     for name, x, shape in zip(Params._fields, params, shapes)))
    except ValueError as exc:  # (params made for another configuration named a field it never set; a user trial)
        if "shape" not in str(exc):
            raise
        raise ValueError(f"{exc}: params made for another configuration? this one has num_models = {n}, "
                         f"num_components = {B}, dim = {d}, num_steps = {T} (make_params(config) builds them)"
                         ) from None
    k = v.num_draws
    if np.any(k != np.floor(k)) or np.any(k < 0) or np.any(k > _num_points(static)):
        raise ValueError("params.num_draws must hold integers k_t with 0 <= k_t <= |A(t)| = m0 + n L t")
    for name, low, high, kw in (("alpha", 0.0, 1.0, dict(low_open=True)), ("c", 0.0, 1.0 / B, dict(high_open=True)),
                                ("eps", 0.0, 1.0, {}),
                                ("dirichlet_a", 0.0, math.inf, dict(low_open=True, high_open=True))):
        values = getattr(v, name)
        for x in (values.min(), values.max()):
            _checks.in_interval(f"params.{name}", x, low, high, **kw)
    _checks.simplex_vector("params.pi_ref", v.pi_ref, B)
    if static.fixed_start and not np.any(v.initial_weights):  # (ran from uniform weights; a user trial, 2026-12-07)
        raise ValueError("params.initial_weights are all 0: params made for a configuration that draws Pi(0) from "
                         "Dirichlet(a) (initial_weights=None), but this one starts every replicate from its "
                         "initial_weights; make_params(config) builds them")
    if not static.fixed_start and np.any(v.initial_weights):  # (dropped without a word; the same trial)
        raise ValueError("params.initial_weights are set (params made for a configuration with initial_weights?), "
                         "but this configuration draws Pi(0) from Dirichlet(a) and would ignore them; give the "
                         "configuration initial_weights (config.replace(initial_weights=...)) or build the params "
                         "with make_params(config)")
    if static.fixed_start:
        for i, w in enumerate(v.initial_weights):
            _checks.simplex_vector(f"params.initial_weights[{i}]", w, B)
    if np.any(np.triu(v.chol, 1) != 0) or np.any(np.diag(v.chol) <= 0) \
            or np.abs(v.whitener @ v.chol - np.eye(d)).max() > 1e-6:
        raise ValueError("params.chol must be the lower Cholesky factor of Sigma (positive diagonal) and "
                         "params.whitener its inverse (see make_params)")
    return v._replace(num_draws=k.astype(np.int32))


def resolution_limit(dtype) -> float:
    """The largest distance ``|C^{-1} (mu_b - mu_c)|`` between two component means, in standard deviations
    (``Sigma = C C^T``), that ``dtype`` resolves with three components or more: ``sqrt(max) / 2``, so that a point's
    squared distance to every mean (its own draw's noise included) stays finite."""
    return float(np.sqrt(np.finfo(dtype).max) / 2)


def check_resolution(params: Params, config, dtype) -> None:
    """A ValueError naming mu and sigma unless ``dtype`` resolves the means' distances (:func:`resolution_limit`),
    raised before any compute. With B >= 3 a point's log-likelihoods beyond it overflow to -inf, and a model whose
    only live components are that far off owns the point 0 / 0: NaN weights and dnorm, alive counts of 0, in every
    kernel (sigma = 1e-38 with mu = -5, 0, 5 in float32; a user trial, 2026-12-07). B = 2 stores a clamped ratio and
    stays finite."""
    if _static(config).num_components < 3:
        return
    mu, whitener = np.asarray(params.mu, np.float64), np.asarray(params.whitener, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        shift = (mu[:, None, :] - mu[None, :, :]) @ whitener.T
        scale = np.max(np.abs(shift), axis=-1, keepdims=True)  # (a norm that does not overflow on the way)
        dist = scale[..., 0] * np.linalg.norm(shift / np.where(scale > 0, scale, 1.0), axis=-1)
    dist = np.where(np.isnan(dist), np.inf, dist)
    limit = resolution_limit(dtype)
    if np.max(dist) > limit:
        b, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        wider = jnp.dtype(dtype) == jnp.float32 and np.max(dist) <= resolution_limit(np.float64)
        raise ValueError(f"mu and sigma: components {b} and {c} are {float(np.max(dist)):.4g} standard deviations "
                         f"apart (|C^-1 (mu_b - mu_c)| with Sigma = C C^T), but {jnp.dtype(dtype).name} resolves at "
                         f"most {limit:.4g} with num_components >= 3 (beyond, a point's log-likelihoods overflow and "
                         "its ownership is 0 / 0: NaN weights); bring the means closer or widen sigma"
                         + (", or use float64 (--x64)" if wider else ""))


def cast_params(params: Params, dtype) -> Params:
    """``params`` as JAX arrays, the values in ``dtype`` (the kernels compute in it), ``num_draws`` int32."""
    return Params(*(jnp.asarray(x, jnp.int32 if name == "num_draws" else dtype)
                    for name, x in zip(Params._fields, params)))


class Geometry(NamedTuple):
    """The fixed components: means (component, dim), ``C`` and ``C^{-1}`` (dim, dim) for ``Sigma = C C^T``."""

    mu: jax.Array
    chol: jax.Array
    whitener: jax.Array


class State(NamedTuple):
    """One network between steps: the weights, the internet, and the values every step reads."""

    weights: jax.Array  # (model, component)
    pool: jax.Array  # (pool_size, S): stored likelihood features of every internet point, |A(T)| rows
    geometry: Geometry
    eps: jax.Array  # ()


class Record(NamedTuple):
    """What is recorded of ``Pi(t)`` at every step t = 0..T."""

    dnorm: jax.Array  # ()
    alive: jax.Array  # (num_models,) int8: components with positive weight
    collapsed: jax.Array  # () bool: every model one-hot on the same component
    weights: jax.Array | None  # (num_models, num_components)
    distances: jax.Array | None  # (num_models, num_models)


def _feature_size(cfg) -> int:
    return 1 if cfg.num_components == 2 else cfg.num_components


def _clamp(dtype) -> float:
    return 80.0 if jnp.dtype(dtype) == jnp.float32 else 700.0


def point_features(x: jax.Array, geometry: Geometry) -> jax.Array:
    """Stored likelihood features of points ``x`` (..., dim) -> (..., S).

    B = 2: ``rho = N(x; mu_1, Sigma) / N(x; mu_0, Sigma)`` (clamped to exp(+-80) in float32, which changes nothing
    for two components: a clamped ratio only matters when one weight is zero, and then the other owns the point).
    B > 2: log-likelihoods relative to their maximum (constants cancel in the ownership).
    """
    diff = x[..., None, :] - geometry.mu  # (..., B, d)
    z = diff @ geometry.whitener.T  # rows of C^{-1} (x - mu_b), Sigma = C C^T
    ll = -0.5 * jnp.sum(z * z, axis=-1)
    if geometry.mu.shape[0] == 2:
        clamp = _clamp(ll.dtype)
        return jnp.exp(jnp.clip(ll[..., 1] - ll[..., 0], -clamp, clamp))[..., None]
    return ll - jnp.max(ll, axis=-1, keepdims=True)


def draw_points(key: jax.Array, weights: jax.Array, count: int, geometry: Geometry) -> jax.Array:
    """``count`` points from each GMM with ``weights`` (..., B) -> (..., count, dim), in the geometry's dtype.

    Component by inverse CDF of one uniform (thresholds past the last positive weight are set to exactly 1, so a
    zero-weight component is never chosen), then ``x = mu_b + C z`` with ``z ~ N(0, I)``.
    """
    k_comp, k_noise = jax.random.split(key)
    dtype, dim = geometry.mu.dtype, geometry.mu.shape[1]
    w = weights / jnp.sum(weights, axis=-1, keepdims=True)
    B = w.shape[-1]
    last = B - 1 - jnp.argmax((w > 0)[..., ::-1], axis=-1)
    cum = jnp.where(jnp.arange(B) >= last[..., None], 1.0, jnp.cumsum(w, axis=-1))
    u = jax.random.uniform(k_comp, w.shape[:-1] + (count,), dtype)
    comp = jnp.sum(u[..., None] >= cum[..., None, :-1], axis=-1)
    noise = jax.random.normal(k_noise, w.shape[:-1] + (count, dim), dtype)
    return geometry.mu[comp] + noise @ geometry.chol.T


def ownership(p: jax.Array, feat: jax.Array) -> jax.Array:
    """Algorithm 2, line 3: ``o_b = p_b N(u; mu_b) / sum_l p_l N(u; mu_l)`` from a point's stored features."""
    if p.shape[-1] == 2:  # (a dropped p_0 = 0 with p_1 rho underflowing to 0 gave 0 / 0: NaN weights, an audit)
        den = p[..., 0] + p[..., 1] * feat[..., 0]
        o0 = jnp.where(den > 0, p[..., 0] / jnp.where(den > 0, den, 1.0), 0.0)
        return jnp.stack([o0, 1 - o0], axis=-1)
    z = jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)) + feat, -jnp.inf)
    return jax.nn.softmax(z, axis=-1)


def zivkovic_step(p: jax.Array, o: jax.Array, alpha, c, eps) -> jax.Array:
    """Algorithm 2, lines 4-13 for one point: ``p <- (1-alpha) p + alpha (o - c)/(1 - B c)``, then drop
    non-positive weights one component at a time, dividing the others by ``1 + eps - p_b``."""
    B = p.shape[-1]
    p = (1 - alpha) * p + alpha * (o - c) / (1 - B * c)
    for b in range(B):
        pb = p[..., b:b + 1]
        drop = pb <= 0
        others = jnp.arange(B) != b
        p = jnp.where(drop & others, p / (1 + eps - pb), p)
        p = jnp.where(drop & ~others, jnp.zeros_like(p), p)
    return p


def _mulhi(a: jax.Array, m: jax.Array) -> jax.Array:
    """High word of the 64-bit product ``a * m`` of two uint32 arrays, from 16-bit limbs (no uint64 needed)."""
    a1, a0, m1, m0 = a >> 16, a & 0xFFFF, m >> 16, m & 0xFFFF
    lo, mid1, mid2 = a0 * m0, a1 * m0, a0 * m1
    carry = ((mid1 & 0xFFFF) + (mid2 & 0xFFFF) + (lo >> 16)) >> 16
    return a1 * m1 + (mid1 >> 16) + (mid2 >> 16) + carry


def bounded_uniform(bits: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Lemire's (2019) exact bounded integers: ``r = floor(bits m / 2^32)`` is uniform on [0, m) given ``ok``.

    ``ok`` is False for the ``2^32 mod m`` values of ``bits`` whose ``r`` would be drawn once too often; the caller
    treats them as rejected draws (here: like a repeat of an index already used), so accepted indices are exactly
    uniform for every ``m`` < 2^32.
    """
    m = m.astype(jnp.uint32)
    low = bits * m  # the low word of the product (uint32 arithmetic wraps)
    return _mulhi(bits, m), low >= (jnp.uint32(0) - m) % m


SCATTER_MIN_WORDS = 64  # bitmaps wider than this (internets over 2,048 points) are updated by scatter on a CPU too


def _update_jax(p, pool, num_points, num_draws, alpha, c, eps, key, *, block: int = 32):
    """Portable update: every model accepts ``num_draws`` distinct uniform indices (rejecting repeats with a
    per-model bitmap), applying the weight update at each acceptance, in the order accepted.

    The bitmap is updated with a one-hot mask over its words while it is small (vectorises well on a CPU) and by a
    scatter of one word per model otherwise (O(1) per draw whatever the internet's size; the GPU form)."""
    n, B = p.shape
    max_points = pool.shape[0]
    words = max(1, -(-max_points // 32))
    word_ids = jnp.arange(words, dtype=jnp.uint32)
    size = jnp.maximum(num_points, 1).astype(jnp.uint32)
    scatter = words > SCATTER_MIN_WORDS or jax.default_backend() != "cpu"
    models = jnp.arange(n)

    def cond(state):
        return jnp.any(state[2] < num_draws)

    def one_block(state):
        p, used, count, it = state
        bits = jax.random.bits(jax.random.fold_in(key, it), (block, n), jnp.uint32)

        def body(j, inner):
            p, used, count = inner
            r, fair = bounded_uniform(bits[j], size)
            w = (r >> 5).astype(jnp.int32)
            word = jnp.take_along_axis(used, w[:, None], axis=1)[:, 0]
            accept = fair & (((word >> (r & 31)) & 1) == 0) & (count < num_draws)
            flag = jnp.where(accept, jnp.uint32(1) << (r & 31), jnp.uint32(0))
            if scatter:
                used = used.at[models, w].set(word | flag)
            else:
                used = used | jnp.where(word_ids[None, :] == (r >> 5)[:, None], flag[:, None], jnp.uint32(0))
            feat = pool[r.astype(jnp.int32)]
            p_new = zivkovic_step(p, ownership(p, feat), alpha, c, eps)
            p = jnp.where(accept[:, None], p_new, p)
            return p, used, count + accept.astype(count.dtype)

        p, used, count = lax.fori_loop(0, block, body, (p, used, count))
        return p, used, count, it + 1

    init = (p, jnp.zeros((n, words), jnp.uint32), jnp.zeros((n,), jnp.int32), jnp.int32(0))
    return lax.while_loop(cond, one_block, init)[0]


def _record(p: jax.Array, cfg) -> Record:
    # max(p, 0) = p (weights are never negative), but it keeps XLA from contracting the multiply of a producer fused
    # into this computation (Pi(0) = softmax of the Dirichlet's log-gammas) with p_i - p_j into a fused
    # multiply-add: D(0) stays exactly symmetric, zero on its diagonal and equal to the D(1) of an update-free step
    p = jnp.maximum(p, 0)
    d = pairwise_distances(p)
    alive = jnp.sum(p > 0, axis=-1).astype(jnp.int8)
    top = jnp.argmax(p, axis=-1)
    collapsed = jnp.all(alive == 1) & jnp.all(top == top[0])
    return Record(frobenius_norm(d), alive, collapsed, p if cfg.record_pi else None,
                  d if cfg.record_d else None)


def initial(key: jax.Array, params: Params, config) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``Pi(0)`` (model, component) with rows ``~ Dirichlet(a)`` (or ``params.initial_weights`` with a fixed
    start), the features (m0, S) of the ``m0`` human points of ``A(0)`` drawn from the GMM with weights
    ``params.pi_ref``, and the key left for the steps (the native kernel's seeds); in ``params``' dtype."""
    k_pi, k_human, key = jax.random.split(key, 3)
    dtype = params.alpha.dtype
    B, geometry = config.num_components, Geometry(params.mu, params.chol, params.whitener)
    if config.fixed_start:
        weights = params.initial_weights
    else:
        weights = jax.random.dirichlet(k_pi, jnp.broadcast_to(params.dirichlet_a, (B,)), (config.num_models,))
    human = jnp.zeros((0, _feature_size(config)), dtype)
    if config.num_human > 0:
        human = point_features(draw_points(k_human, params.pi_ref, config.num_human, geometry), geometry)
    return weights.astype(dtype), human, key


def init(key: jax.Array, params: Params, config) -> State:
    """t = 0: :func:`initial`'s ``Pi(0)``, and the internet ``A(0)`` (the human points) stored in a pool with room
    for every later post."""
    weights, human, _ = initial(key, params, config)
    pool = jnp.zeros((config.pool_size, _feature_size(config)), weights.dtype)
    pool = lax.dynamic_update_slice_in_dim(pool, human, 0, axis=0)
    return State(weights, pool, Geometry(params.mu, params.chol, params.whitener), params.eps)


def step_inputs(params: Params, config) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(|A(t)|, k_t, alpha_t, c_t)`` for the steps t -> t + 1, t = 0..T-1, each (step,) = (T,)."""
    return jnp.asarray(_num_points(config), jnp.int32), params.num_draws, params.alpha, params.c


def step(key: jax.Array, state: State, inputs, config) -> tuple[State, Record]:
    """One step t -> t + 1 (seed 000, Algorithm 3): every model posts ``L`` points drawn from its GMM ``Pi_i(t)``
    (stored at ``|A(t)|..`` of the pool), then draws ``k_t`` distinct points of ``A(t)`` uniformly and updates its
    weights point by point with Algorithm 2 (Zivkovic & van der Heijden 2004):
    ``p <- (1 - alpha_t) p + alpha_t (o(u) - c_t) / (1 - B c_t)``, then prunes ``p_b <= 0``. Record: ``Pi(t + 1)``'s.
    """
    num_points, num_draws, alpha, c = inputs
    k_post, k_draw = jax.random.split(key)
    n, L = config.num_models, config.points_per_step
    posts = draw_points(k_post, state.weights, L, state.geometry)  # (model, L, dim)
    feats = point_features(posts.reshape(n * L, config.dim), state.geometry)
    weights = _update_jax(state.weights, state.pool, num_points, num_draws, alpha, c, state.eps, k_draw)
    # the pool has room for the last step's posts too, so this write never clips
    pool = lax.dynamic_update_slice_in_dim(state.pool, feats, num_points, axis=0)
    state = state._replace(weights=weights, pool=pool)
    return state, observe(state, config)


def observe(state: State, config) -> Record:
    """``||D||_F``, the live components per model, whether the network has collapsed onto one component, and (as
    the static config asks) ``Pi`` and ``D``."""
    return _record(state.weights, config)


kernel = driver.scan_kernel(init, step, step_inputs, observe, check_params)
kernel.__doc__ = """One replicate on the portable path: ``kernel(key, params, config)`` -> :class:`Record`, each field
(step, ...) = (T + 1, ...) for t = 0..T (:func:`driver.scan_kernel`); ``params`` from :func:`cast_params`,
``config`` a :class:`StaticConfig` (or a GMMNetworkConfig, of which only the static part is read)."""


def run_network(key: jax.Array, cfg: GMMNetworkConfig, *, params: Params | None = None, dtype=jnp.float32,
                backend: str = "auto") -> Record:
    """Simulate one network for all steps; records for t = 0..T (leading axis T+1). Pure, jit- and vmap-able in
    ``key``; ``params`` (NumPy, default :func:`make_params` of ``cfg``) are constants."""
    cfg = checked(cfg)
    backend = resolve_backend(backend)
    if not is_prng_key(key):  # (an int gave JAX's "invalid PRNG key data"; an int dtype failed after tracing)
        raise ValueError(f"key must be a PRNG key, e.g. jax.random.key(0), got {type(key).__name__}")
    dtype = _check_dtype(dtype)
    params = make_params(cfg) if params is None else check_params(params, cfg)
    check_resolution(params, cfg, dtype)
    if backend == "native":
        return jax.tree_util.tree_map(lambda r: r[0], native_records(key[None], cfg, dtype, params=params))
    if backend == "pallas":
        from collapse_jax import gmm_pallas

        _pallas_dtype(dtype)
        return jax.tree_util.tree_map(lambda r: r[0], gmm_pallas.pallas_records(key[None], _static(cfg), params))
    return kernel(key, cast_params(params, dtype), _static(cfg))


def _check_dtype(dtype) -> np.dtype:
    """``dtype`` (None: float64 with x64 on, else float32) as float32 or float64, or a ValueError naming it."""
    requested = dtype
    try:
        dtype = jnp.dtype(dtype or (jnp.float64 if jax.config.jax_enable_x64 else jnp.float32))
    except TypeError:
        dtype = None
    if dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"dtype must be float32 or float64, got {requested!r}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax_enable_x64 (jax.config.update('jax_enable_x64', True) or --x64)")
    return dtype


def _pallas_dtype(dtype):
    if dtype is not None and jnp.dtype(dtype) != jnp.float32:
        raise ValueError(f"backend='pallas' computes in float32; pass dtype=jnp.float32 (or None), got {dtype}")
    return jnp.dtype(jnp.float32)


# --------------------------------------------------------------------------------------------------------------
# The native kernel
# --------------------------------------------------------------------------------------------------------------


def native_records(keys: jax.Array, cfg, dtype=jnp.float32, *, params: Params | None = None,
                   engine: str = "vector") -> Record:
    """Whole replicates in the native kernel: records (num_replicates, T+1, ...) for replicate keys (num_replicates,).

    Replicate r draws Pi(0) and the human points with :func:`initial` on its key itself (the portable kernel: on the
    first half of it, :func:`driver.scan_kernel`), then four seed words from the key left: one SplitMix64 stream for
    its posts and one xoshiro128++ stream per model for its draws. ``params``: NumPy (default :func:`make_params`
    of ``cfg``), passed in float64 as the kernel's attributes. ``engine="scalar"`` runs the same arithmetic one lane
    at a time (a check of the vector code: the results are bit-identical).
    """
    from collapse_jax import _native

    if not _native.available():
        raise RuntimeError("the native GMM kernel is unavailable (no C++ compiler?); use backend='jax'")
    if engine not in ("vector", "scalar"):
        raise ValueError(f"engine must be 'vector' or 'scalar', got {engine!r}")
    static = _static(cfg)
    if not _native_fits(static):
        raise ValueError(_native_too_large(static))
    params = make_params(cfg) if params is None else check_params(params, static)
    dtype = jnp.dtype(dtype)
    check_resolution(params, static, dtype)
    inputs = _native_inputs(keys, cast_params(params, dtype), static)
    return _native_call(*inputs, _native_attributes(params, static), static, engine)


def _native_inputs(keys: jax.Array, params: Params, config: StaticConfig):
    """What the native kernel takes from JAX for replicate keys (R,): ``Pi(0)`` (R, n, B), the human points'
    features (R, max(m0, 1), S) and four seed words (R, 4) (:func:`native_records`). One replicate at a time
    (``lax.map``): under a ``vmap`` over the call's replicates XLA's float32 code for the Dirichlet draws followed
    the batch's shape, so a replicate's initial weights, and all after them, could differ in the last bit with the
    number of replicates in a call (a review, 2026-12-06: 10 of 40; float64 was unaffected). Figure 4's 20,000
    starts took 0.46 s against 0.25 s (about 5 % of its run), Figure 6's 1.1 s against 2.3 s."""
    def one(key):  # (a batch of one, as a run of one replicate computed it before)
        return jax.tree.map(lambda x: x[0], jax.vmap(lambda k: initial(k, params, config))(key[None]))

    weights, human, rest = jax.lax.map(one, keys)
    if config.num_human == 0:  # the kernel takes at least one (unused) human row
        human = jnp.zeros(weights.shape[:1] + (1, _feature_size(config)), weights.dtype)
    seeds = jax.vmap(lambda k: jax.random.bits(k, (4,), jnp.uint32))(rest)
    return weights, human, seeds


def _native_attributes(params: Params, config: StaticConfig) -> dict:
    """One cell's values as the native kernel's attributes (float64 from NumPy ``params``): ``|A(t)|``, ``k_t``,
    ``alpha_t``, ``c_t``, ``eps`` and the geometry ``mu``, ``C``, ``shift[c, b] = C^{-1} (mu_c - mu_b)``."""
    mu, chol, whitener = (np.asarray(x, np.float64) for x in (params.mu, params.chol, params.whitener))
    shift = (mu[:, None, :] - mu[None, :, :]) @ whitener.T
    return dict(points=_num_points(config).astype(np.int32), draws=np.asarray(params.num_draws, np.int32),
                alpha=np.asarray(params.alpha, np.float64), c=np.asarray(params.c, np.float64),
                geometry=np.concatenate([mu.ravel(), chol.ravel(), shift.ravel()]).astype(np.float64),
                eps=np.float64(params.eps))


def _native_call(weights, human, seeds, attributes: dict, config: StaticConfig, engine: str = "vector") -> Record:
    """The native kernel's call on :func:`_native_inputs` (jit- and shard_map-able; the attributes are constants)."""
    from collapse_jax import _native

    dtype = weights.dtype
    R, T1, n, B = weights.shape[0], config.num_steps + 1, config.num_models, config.num_components
    shapes = (jax.ShapeDtypeStruct((R, T1), dtype), jax.ShapeDtypeStruct((R, T1, n), jnp.int8),
              jax.ShapeDtypeStruct((R, T1), jnp.int8),
              jax.ShapeDtypeStruct((R, T1 if config.record_pi else 0, n, B), dtype),
              jax.ShapeDtypeStruct((R, T1 if config.record_d else 0, n, n), dtype))
    call = jax.ffi.ffi_call(_native.GMM_TARGETS[dtype.name], shapes, vmap_method="broadcast_all")
    dnorm, alive, collapsed, pi, dist = call(
        weights, human, seeds, **attributes, clamp=np.float64(_clamp(dtype)), num_human=np.int64(config.num_human),
        points_per_step=np.int64(config.points_per_step), dim=np.int64(config.dim),
        num_threads=np.int64(_native.cpu_threads()), engine=np.int64(engine == "scalar"))
    return Record(dnorm, alive, collapsed.astype(bool), pi if config.record_pi else None,
                  dist if config.record_d else None)


BACKENDS = ("auto", "native", "jax", "pallas")


def _native_fits(static: StaticConfig) -> bool:
    """Whether the native kernel can run this network: its gathers use 32-bit offsets into the internet."""
    return static.pool_size * static.num_components * 16 < 2**31


def _native_too_large(static: StaticConfig) -> str:
    return (f"the native kernel supports internets of < 2^27 / num_components points; this one holds "
            f"{static.pool_size} (num_human + num_models x points_per_step x num_steps): reduce num_steps, "
            "num_models or points_per_step, or use backend='jax'")


def backend_for(config: "GMMNetworkConfig", backend: str = "auto") -> str:
    """The backend that runs ``config``: :func:`resolve_backend`'s, except that an internet beyond the native
    kernel's 32-bit offsets takes the portable JAX kernel under ``auto`` and is refused under ``native`` (a
    ValueError naming the sizes), before anything is compiled or written."""
    from collapse_jax import _native

    resolved = resolve_backend(backend)
    if resolved == "native" and not _native_fits(config.static):
        if backend == "auto" and _native.preferred_backend() == "auto":  # (not: collapse-jax --backend native)
            return "jax"
        raise ValueError(_native_too_large(config.static))
    return resolved


def resolve_backend(backend: str) -> str:
    """``auto``: the native kernel on CPU when it builds, else the portable JAX kernel. ``pallas``
    (:mod:`collapse_jax.gmm_pallas`, written for GPUs) only when asked for: on an H200 it ran 10^6 Figure-4
    replicates in 24.5 s, 3.8x the portable kernel, with its law on a 10^4-replicate check (docs/gmm_network.md,
    "On an H200"), a check too small yet to make it the default; on a CPU it runs interpreted (slow, for tests)."""
    from collapse_jax import _native

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend if backend == "pallas" else _native.resolve_backend(backend)


# --------------------------------------------------------------------------------------------------------------
# Many replicates
# --------------------------------------------------------------------------------------------------------------


class GMMNetworkResult(NamedTuple):
    """Per replicate and step t = 0..T (NumPy arrays, replicate axis first; with a grid, a grid axis before it).

    Attributes:
      dnorm: (num_replicates, T+1), ``||D(t)||_F`` of the models' pairwise weight distances.
      alive: (num_replicates, T+1, num_models), each model's number of components with positive weight.
      collapsed: (num_replicates, T+1), True where every model is one-hot on the same component.
      weights: (num_replicates, T+1, num_models, num_components), ``Pi(t)``; None unless ``record_pi``.
      distances: (num_replicates, T+1, num_models, num_models), ``D(t)``; None unless ``record_d``.
    """

    dnorm: np.ndarray
    alive: np.ndarray
    collapsed: np.ndarray
    weights: np.ndarray | None
    distances: np.ndarray | None


def record_bytes(cfg: GMMNetworkConfig, dtype=jnp.float32) -> int:
    """Memory of one replicate's records (what :func:`simulate` returns for it)."""
    item = jnp.dtype(dtype).itemsize
    T1, n, B = cfg.num_steps + 1, cfg.num_models, cfg.num_components
    rec = T1 * (item + n + 1)
    rec += T1 * n * B * item if cfg.record_pi else 0
    rec += T1 * n * n * item if cfg.record_d else 0
    return rec


def bytes_per_replicate(cfg: GMMNetworkConfig, dtype=jnp.float32, backend: str = "native") -> int:
    """Device memory one replicate needs (state, records, the kernel's scratch)."""
    item = jnp.dtype(dtype).itemsize
    n, B = cfg.num_models, cfg.num_components
    rec = record_bytes(cfg, dtype)
    # the human points' draws (components, normals, features: XLA asked for 28 bytes a point at d = 1, a user trial)
    human = max(cfg.num_human, 1) * (_feature_size(cfg) + 3 * cfg.dim + 4) * item
    if backend == "native":  # inputs and records; the internet lives in per-thread scratch of a few replicates
        return rec + n * B * item + human + 16
    if backend == "pallas":  # records, the internet and bitmap in device memory, and the host copy of the records
        from collapse_jax import gmm_pallas

        return gmm_pallas.bytes_per_replicate(_static(cfg)) + rec
    pool = cfg.pool_size * _feature_size(cfg) * item
    scratch = n * (-(-max(cfg.max_points, 1) // 32)) * 4
    # the scan keeps the pool twice (input and output buffers) in the worst case; a step's posts and their features
    # (draws, likelihoods: about 6 arrays of n L numbers, measured: 160 MB above the estimate without them at n = 3,
    # L = 10^6) and D(t)'s pairwise differences (3 n^2 B numbers: XLA asked for 240 GB at n = 10^5, a user trial)
    posts = 6 * n * cfg.points_per_step * max(cfg.dim, _feature_size(cfg)) * item
    return 2 * pool + rec + 2 * n * B * item + scratch + posts + human + 3 * n * n * B * item


def native_thread_bytes(cfg: GMMNetworkConfig, dtype=jnp.float32) -> int:
    """Memory of one native worker thread's copy of the internet (allocated per thread, whatever the replicate
    count): at least one vector of lanes of chains (models of its replicates), each with a value (B = 2) or a
    32-bit index (B > 2) per stored point, and for B > 2 each replicate's likelihood pool and its logarithms. At
    100,000 models this is 10^11 numbers: the kernel then wrote through a null pointer (a user trial)."""
    cfg = _static(cfg)
    item = jnp.dtype(dtype).itemsize
    n, B, P = cfg.num_models, cfg.num_components, max(cfg.pool_size, 1)
    lanes = 64 // item  # (the widest vector the kernel uses: AVX-512)
    group = -(-lanes // n)  # replicates per group, at least one vector of chains
    chains = -(-group * n // lanes) * lanes
    if B == 2:
        return chains * P * item
    return chains * P * 4 + 2 * group * P * B * item


def check_problem_size(cfg: GMMNetworkConfig, dtype=jnp.float32, backend: str = "native",
                       num_replicates: int = 1, *, num_cells: int = 1, memory_budget: int | None = None,
                       mesh=None) -> None:
    """A ValueError naming the network's sizes unless it fits, raised before anything is compiled or written: the
    native kernel's copies of the internet (one per worker thread) in 80 % of the memory available, or, for the
    portable kernels, one replicate per device (of each of ``num_cells`` grid cells) in ``memory_budget`` (default:
    half the device's memory, as :func:`simulate` chunks its calls). A network too large was killed by the system,
    crashed (the native kernel at 100,000 models) or failed in XLA, after its run folder was written (a user trial)."""
    from collapse_jax import _native

    cfg = _static(cfg)
    if backend == "native":
        threads = _native.worker_threads(num_replicates)
        need, limit = threads * native_thread_bytes(cfg, dtype), 0.8 * _checks.available_memory_bytes()
        what = f"the native kernel's copies of the internet (one per worker thread, {threads} here)"
        room, also = f"only {_checks.bytes_text(limit / 0.8)} is available", ""
    else:
        size = check_mesh(mesh).size
        need = bytes_per_replicate(cfg, dtype, backend) * num_cells * size
        limit = driver.memory_budget_bytes(memory_budget)
        what = "one replicate per device (its internet, a step's posts, D(t)'s pairwise differences)"
        room = f"memory_budget is {_checks.bytes_text(limit)}" + (" (half the device's memory)" if memory_budget is None
                                                          else "")
        also = " (from Python, or pass a larger memory_budget)"
    if limit and need > limit:
        raise ValueError(f"num_models = {cfg.num_models:,} with points_per_step = {cfg.points_per_step:,}, "
                         f"num_steps = {cfg.num_steps:,} and num_human = {cfg.num_human:,} (an internet of "
                         f"|A(T)| = {cfg.pool_size:,} points) needs about {_checks.bytes_text(need)} for {what}, but "
                         f"{room}; lower num_models, points_per_step, num_steps or num_human{also}")


def simulate(seed: int | jax.Array, config: GMMNetworkConfig, num_replicates: int, *,
             params: Params | Sequence[Params] | None = None, dtype=None, backend: str = "auto",
             first_replicate: int = 0, chunk_size: int | None = None, memory_budget: int | None = None, mesh=None,
             progress: bool | None = None) -> GMMNetworkResult:
    """Simulate ``num_replicates`` independent networks; replicate r uses ``fold_in(key(seed), first_replicate+r)``.

    ``params``: None (the config's own values, :func:`make_params`), one :class:`Params`, or a list of G Params of
    the config's sizes (a grid, e.g. ``[make_params(config.replace(beta=b)) for b in betas]``): every result then
    has a leading grid axis (G, R, T + 1, ...) and every cell runs the same replicates (common random numbers), so
    cell g equals, bit for bit, a run of that cell alone. The portable kernel runs the whole grid in one compiled
    call per chunk of replicates (:func:`collapse_jax.driver.run_replicates`, a bar in replicates; on a CPU each
    device maps its replicates at once and the grid cell after cell, its ``lanes``); the native one runs cell after
    cell, one kernel call per chunk (its bar follows the kernel's count of point updates).

    The replicate axis is sharded over all devices of ``mesh`` (default: ``jax.devices()``); results do not depend
    on the number of devices nor on ``chunk_size`` (replicates per call; default: as many as ``memory_budget``
    bytes hold, by :func:`bytes_per_replicate`; the budget defaults to half the device's memory; the native kernel
    also at most :data:`NATIVE_CALL_UPDATES` point updates a call, so that a Ctrl-C stops it soon). ``dtype``: float32
    or float64 (default: float64 with x64 on). ``backend``: ``auto``, ``native``, ``jax`` or ``pallas``
    (:func:`resolve_backend`); ``pallas`` computes in float32 (the default dtype there), on the default device, every
    cell of a grid in the same call.
    """
    R = _checks.positive_int("num_replicates", num_replicates)
    first = _checks.replicate_range(first_replicate, R)
    config = checked(config)  # (first: its message explains the old argument order, simulate(config, R, seed))
    root_key(seed)  # (checked before the bar opens: seed -1 drew 'gmm-network: 0%' first; a user trial, 2026-12-07)
    cells, grid = _cells(params, config)
    backend = backend_for(config, backend)
    if backend == "pallas":
        dtype = _pallas_dtype(dtype)
    dtype = _check_dtype(dtype)
    smallest, tiny = min(float(np.min(cell.dirichlet_a)) for cell in cells), float(np.finfo(dtype).tiny)
    if not config.static.fixed_start and smallest < tiny:  # Gamma(a) draws underflow to 0: 0/0 weights, NaN dnorm
        raise ValueError(f"dirichlet_a must be >= {tiny:.4g} in {jnp.dtype(dtype).name} (the initial weights' gamma "
                         f"draws underflow to 0 below it), got {smallest:g}"
                         + ("; use float64 (--x64)" if dtype == jnp.float32 else ""))
    for cell in cells:
        check_resolution(cell, config.static, dtype)
    mesh = check_mesh(mesh)
    static = config.static
    _checks.fits_in_memory("num_replicates", R, len(cells) * record_bytes(static, dtype),  # all come to the host
                           remedy="per call, and run the rest with first_replicate")
    check_problem_size(static, dtype, backend, R, num_cells=len(cells), memory_budget=memory_budget, mesh=mesh)
    per = bytes_per_replicate(static, dtype, backend) * (1 if backend == "native" else len(cells))
    chunk = driver.chunk_replicates(R, mesh, chunk_size, memory_budget, lambda: per, strict=True)
    equal_calls = False
    if backend == "native" and chunk_size is None:  # a Ctrl-C waits for the call: about 2 s of work a call (a user
        # trial, 2026-12-06: the whole run in one call of 68 s, a notebook's interrupt honoured only at its end)
        updates = max(int(np.sum(cell.num_draws)) for cell in cells) * static.num_models
        fits = NATIVE_CALL_UPDATES // max(updates, 1)
        cap = max(mesh.size, fits - fits % mesh.size)  # (whole rounds of devices: no padding)
        if chunk > cap:  # equal calls, the last padded to the same shape: one compilation (a 10,000-replicate run
            calls = -(-R // cap)  # cut as 8,043 + 1,957 compiled twice, +1.1 s; a timing check, 2026-12-06)
            chunk = padded_count(-(-R // calls), mesh)
            equal_calls = True
    _checks.fits_in_memory("chunk_size (replicates per call)", padded_count(chunk, mesh), per)
    show = _progress.enabled() if progress is None else _checks.flag("progress", progress)
    if backend == "native":
        outs = [_simulate_native(seed, cell, static, first, R, chunk, dtype, mesh, show, equal_calls)
                for cell in cells]
        out = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *outs)
    elif backend == "pallas":  # every cell in one call per chunk of replicates, on the default device
        from collapse_jax import gmm_pallas

        gmm_pallas.check_sizes(static, chunk, gmm_pallas.DEFAULT_BLOCK, cells)  # before any compute
        out = driver.map_chunks(lambda keys: gmm_pallas.pallas_records(keys, static, cells), R, seed, chunk,
                                first_replicate=first, replicate_axis=1, progress=show,
                                desc="gmm-network replicates")
    else:
        stacked, grid_axes = driver.stack_cells(cells)
        # A step's draws are a while loop, which a vmap runs until its costliest lane is done: over a grid, G times
        # the costliest cell (beta = 1 needs ~log|A(t)| times the draws of beta = 1/2), and over replicates sharded
        # by jit, in lockstep across devices. On a CPU (nothing to gain from wider vmaps) each device runs its own
        # replicates, vmapped together, and the grid one cell after the other (the driver's lanes).
        lanes = padded_count(chunk, mesh) // mesh.size if jax.default_backend() == "cpu" else None
        out = driver.run_replicates(kernel, cast_params(stacked, dtype), static, R, seed, grid_axes=grid_axes,
                                    first_replicate=first, chunk_size=chunk, mesh=mesh, lanes=lanes, progress=show,
                                    desc="gmm-network replicates")
        if grid_axes is None:  # every cell the same values: one run serves them all
            out = jax.tree_util.tree_map(lambda x: np.repeat(x[None], len(cells), axis=0), out)
    return GMMNetworkResult(*(x if x is None else (x if grid else x[0]) for x in out))


def _cells(params, config: GMMNetworkConfig) -> tuple[list[Params], bool]:
    """The cells of :func:`simulate`'s ``params`` as validated NumPy Params, and whether a grid was given."""
    if params is None:
        return [make_params(config)], False
    if isinstance(params, Params):
        return [check_params(params, config)], False
    cells = list(params) if isinstance(params, (list, tuple)) else []
    if not cells:
        raise ValueError(f"params must be None, a Params or a non-empty list of Params (a grid), got {params!r}")
    return [check_params(cell, config) for cell in cells], True


def _simulate_native(seed, params: Params, static: StaticConfig, first_replicate: int, R: int, chunk: int, dtype,
                     mesh, show: bool, equal_calls: bool = False) -> Record:
    """One cell's replicates ``first_replicate .. first_replicate + R - 1`` in the native kernel, one sharded call
    per chunk, padded to a multiple of the mesh size (``equal_calls``: the last one to the chunk, so that every call
    has one shape; a replicate's numbers do not depend on its call); records (R, T + 1, ...) as NumPy."""
    inputs = _compiled_native_inputs(static, mesh, dtype, params)
    call = _compiled_native_call(static, mesh, _native_attributes(params, static))
    per_replicate = int(np.sum(params.num_draws)) * static.num_models  # point updates of one replicate
    parts = []
    with _progress.bar(R, "gmm-network", unit="rep", disable=not show) as pbar:  # one bar for every chunk
        for start in range(0, R, chunk):  # whole replicates run one after another in each thread
            count = min(chunk, R - start)
            total = padded_count(count, mesh)  # padding replicates (dropped) keep every device's shard the same size
            if equal_calls and first_replicate + start + chunk <= _checks.REPLICATE_INDICES:
                total = chunk
            keys = jax.device_put(chunk_keys(seed, first_replicate + start, total), replicate_sharding(mesh))
            with _follow_native_progress(pbar if show else None, count, per_replicate * total, per_replicate):
                out = driver.wait_ready(call(*inputs(keys)))  # (a signal is handled while it runs)
                parts.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:count], out))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)


@contextlib.contextmanager
def _follow_native_progress(pbar, count: int, total_updates: int, per_replicate: int, interval: float = 0.25):
    """While the block (``count`` replicates) runs, move ``pbar`` (in replicates) with the native kernel's count of
    point updates divided by one replicate's updates (polled from a thread; the count is per process, so
    simultaneous simulations in threads would share one bar's count); by the rest of ``count`` once it is done."""
    if pbar is None:
        yield
        return
    from collapse_jax import _native

    start, done, base = _native.gmm_progress(), threading.Event(), pbar.n

    def poll():
        shown = 0
        while not done.wait(interval):
            now = min(_native.gmm_progress() - start, total_updates) // per_replicate
            if now > shown:
                pbar.update(min(now, count) - shown)
                shown = min(now, count)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    pbar.update(max(base + count - pbar.n, 0))  # (not on an exception: a stopped run's bar read 100 %; a user trial)


# Point updates in one native call at most (default chunks): about 2 s on 2 cores; Figure 4's 20,000 replicates in
# 5 calls took 3.91-4.06 s against 3.90-3.98 s in one (2**29: 4.35-4.41 s against 4.10-4.11; 2026-12-06).
NATIVE_CALL_UPDATES = 2**30
_COMPILED: dict = {}  # key -> jitted function, least recently used first
_COMPILED_MAX = 64  # (kept for ever, a notebook's loop over 200 betas grew by 1.3 MB a value: a user trial, 2026-12-06)


def _cached(key, build: Callable):
    """``_COMPILED[key]``, built by ``build()`` the first time, the least recently used entries dropped beyond
    :data:`_COMPILED_MAX` (a dropped one is compiled again if it comes back: cheap for one custom call)."""
    fn = _COMPILED.pop(key, None)
    _COMPILED[key] = fn = build() if fn is None else fn
    while len(_COMPILED) > _COMPILED_MAX:
        del _COMPILED[next(iter(_COMPILED))]
    return fn


START_FIELDS = ("mu", "chol", "whitener", "dirichlet_a", "pi_ref", "initial_weights")  # what :func:`initial` reads


def _compiled_native_inputs(static: StaticConfig, mesh, dtype, params: Params):
    """``keys -> (weights, human, seeds)`` for keys sharded over ``mesh``, with the cell's start values as constants
    (as the native path has always computed them, so its draws stay bit for bit those of earlier versions: XLA
    folds constants differently from traced values); compiled once per static configuration, mesh, dtype and start
    values, so a grid over the schedules compiles it once."""
    key = ("inputs", static, mesh, jnp.dtype(dtype).name,
           tuple(np.asarray(getattr(params, name)).tobytes() for name in START_FIELDS))
    spec = replicate_sharding(mesh).spec
    return _cached(key, lambda: jax.jit(jax.shard_map(lambda k: _native_inputs(k, cast_params(params, dtype), static),
                                                      mesh=mesh, in_specs=spec, out_specs=spec)))


def _compiled_native_call(static: StaticConfig, mesh, attributes: dict):
    """The native kernel on inputs sharded over ``mesh``, each device running its shard in one call: compiled once
    per static configuration, mesh and cell (its values are the call's attributes; compiling one custom call is
    cheap)."""
    key = ("native", static, mesh, tuple((name, np.asarray(v).tobytes()) for name, v in attributes.items()))
    spec = replicate_sharding(mesh).spec
    return _cached(key, lambda: jax.jit(jax.shard_map(lambda w, h, s: _native_call(w, h, s, attributes, static),
                                                      mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec)))


def summarize(dnorm: np.ndarray, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> dict[str, np.ndarray]:
    """Mean, root-mean-square and quantiles of ``||D(t)||_F`` over replicates, per step: ``dnorm`` (replicate, step)
    with at least one replicate, ``quantiles`` in [0, 1] (an empty array raised an IndexError, a quantile of 1.5
    NumPy's message naming no argument; a user trial, 2026-12-06)."""
    dnorm = np.asarray(dnorm, dtype=np.float64)
    if dnorm.ndim != 2 or dnorm.shape[0] == 0:
        raise ValueError(f"dnorm must be a (replicate, step) array with at least one replicate, got shape "
                         f"{dnorm.shape}")
    _checks.array_in_interval("quantiles", np.asarray(quantiles, dtype=np.float64).reshape(-1), 0.0, 1.0)
    out = {"mean": dnorm.mean(0), "rms": np.sqrt((dnorm**2).mean(0))}
    for q in quantiles:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(dnorm, q, axis=0)
    return out
