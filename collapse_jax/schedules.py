"""Schedules for the real-data weight ``alpha_t`` and the sample size ``n_t`` (seed 003, Sections 3 and 5).

Every schedule is a float64 NumPy array of length ``num_steps + 1`` indexed by the generation ``t = 0 .. num_steps``.
Generation 0 is the initial fit on real data only, so ``alpha[0]`` is always 1 (it is never used as a mixture
weight). Sizes are integers >= 1 stored as floats (they feed the binomial samplers and the recurrences).

Growth conventions (documented once, used everywhere): ``linear(base)`` is ``base * (t + 1)``, ``quadratic`` is
``base * (t + 1)**2``, ``polynomial(power)`` is ``base * (t + 1)**power`` and ``geometric(rate)`` is
``round(base * rate**t)``, so that ``n_0 = base`` in every case.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from collapse_jax import _checks


def _steps(num_steps: Any) -> np.ndarray:
    """``t = 0 .. num_steps`` as float64, once ``num_steps`` is checked: 2**63 gave an empty schedule or an
    IndexError, and 2**31 asked for 16 GiB without a word (a user trial, 2026-12-06). A schedule's few float64
    temporaries must fit in memory; the simulators that run it check their own arrays."""
    num_steps = _checks.positive_int("num_steps", num_steps)
    _checks.fits_in_memory("num_steps", num_steps, 4 * 8, available=_checks.host_memory_bytes(),
                           remedy="(a schedule's float64 temporaries, in host memory)")
    return np.arange(num_steps + 1, dtype=np.float64)


# --- alpha_t: weight of fresh real data ----------------------------------------------------------------------------
def constant_alpha(value: float, num_steps: int) -> np.ndarray:
    """``alpha_t = value`` for ``t >= 1``."""
    value = _checks.in_interval("alpha", value, 0.0, 1.0)
    out = np.full(_steps(num_steps).shape, value)
    out[0] = 1.0
    return out


def power_decay_alpha(gamma: float, num_steps: int, scale: float = 1.0) -> np.ndarray:
    """``alpha_t = min(1, scale * t**-gamma)`` for ``t >= 1`` (Proposition 3.4's decaying weights; a ``scale`` above
    1 keeps ``alpha_t = 1`` until ``t = scale**(1/gamma)``)."""
    gamma = _checks.in_interval("gamma", gamma, 0.0, math.inf)
    scale = _checks.in_interval("scale", scale, 0.0, math.inf, high_open=True)
    t = np.maximum(_steps(num_steps), 1.0)
    out = np.minimum(1.0, scale * t ** (-gamma))
    out[0] = 1.0
    return out


def inverse_log_alpha(num_steps: int, offset: float = math.e) -> np.ndarray:
    """``alpha_t = 1 / log(t + offset)`` for ``t >= 1`` (a slow decay; ``offset >= e - 1`` keeps it <= 1)."""
    offset = _checks.in_interval("offset", offset, math.e - 1.0, math.inf)
    t = _steps(num_steps)
    out = np.minimum(1.0, 1.0 / np.log(t + offset))
    out[0] = 1.0
    return out


def pure_synthetic_alpha(num_steps: int) -> np.ndarray:
    """``alpha_t = 0`` for ``t >= 1``: only the initial fit ever sees real data (Corollary 3.6)."""
    return constant_alpha(0.0, num_steps)


# --- n_t: sample sizes ---------------------------------------------------------------------------------------------
def constant_size(base: int, num_steps: int) -> np.ndarray:
    """``n_t = base``."""
    base = _checks.positive_whole("n", base)  # (100.0 as array schedules take it)
    return np.full(_steps(num_steps).shape, float(base))


def polynomial_size(base: int, power: float, num_steps: int) -> np.ndarray:
    """``n_t = round(base * (t + 1)**power)``."""
    base = _checks.positive_whole("n", base)
    power = _checks.in_interval("power", power, 0.0, math.inf, high_open=True)
    with np.errstate(over="ignore"):
        return _finite_sizes(np.round(base * (_steps(num_steps) + 1.0) ** power), "power", power)


def linear_size(base: int, num_steps: int) -> np.ndarray:
    """``n_t = base * (t + 1)``."""
    return polynomial_size(base, 1.0, num_steps)


def quadratic_size(base: int, num_steps: int) -> np.ndarray:
    """``n_t = base * (t + 1)**2``."""
    return polynomial_size(base, 2.0, num_steps)


def geometric_size(base: int, rate: float, num_steps: int) -> np.ndarray:
    """``n_t = round(base * rate**t)``."""
    base = _checks.positive_whole("n", base)
    rate = _checks.in_interval("rate", rate, 1.0, math.inf, high_open=True)
    with np.errstate(over="ignore"):
        return _finite_sizes(np.round(base * rate ** _steps(num_steps)), "rate", rate)


def _finite_sizes(n: np.ndarray, name: str, value: float) -> np.ndarray:
    """``n`` if every size is finite; else a ValueError naming the growth parameter (an inf size surfaced later,
    from check_sizes, without naming it)."""
    if not np.all(np.isfinite(n)):
        raise ValueError(f"{name} = {value:g} makes n_t overflow float64 within {n.size - 1} steps")
    return n


# --- validation of user-supplied arrays ----------------------------------------------------------------------------
def _schedule_array(name: str, value: Any, num_steps: int | None) -> np.ndarray:
    """A finite float64 copy of a schedule of shape (num_steps + 1,) or (grid, num_steps + 1), or a clear error."""
    _checks.not_traced(name, value)
    try:
        raw = np.asarray(value)
    except ValueError as exc:  # (ragged rows: NumPy's message without the name; a user trial, 2026-12-07)
        raise ValueError(f"{name} must be a schedule or a grid of schedules of one length ({exc})") from None
    if raw.dtype.kind in "US":  # (np.asarray(["0.5"]) cast to 0.5 below, where a scalar "0.5" is refused)
        raise ValueError(f"{name} must hold numbers, got strings ({raw.dtype})")
    if raw.dtype == bool or np.iscomplexobj(raw):
        raise ValueError(f"{name} must hold real numbers, got dtype {raw.dtype}")
    arr = np.array(_checks.finite_array(name, value), dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be a 1-D schedule (or a 2-D grid of schedules), got shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[0] == 0:
        raise ValueError(f"{name} is a grid of no schedules (shape {arr.shape})")
    if num_steps is not None and arr.shape[-1] != num_steps + 1:
        raise ValueError(f"{name} must have length num_steps + 1 = {num_steps + 1} (t = 0..{num_steps}), "
                         f"got {arr.shape[-1]}")
    if arr.shape[-1] < 2:
        raise ValueError(f"{name} must have length >= 2 (t = 0 and at least one retraining), got {arr.shape[-1]}")
    return arr


def check_alpha(alpha: Any, num_steps: int | None = None) -> np.ndarray:
    """Validate an ``alpha`` schedule: shape (num_steps + 1,) (or (grid, num_steps + 1)), values in [0, 1].

    ``alpha[..., 0]`` is set to 1 (generation 0 is fitted on real data only).
    """
    arr = _schedule_array("alpha", alpha, num_steps)
    if np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"alpha must lie in [0, 1] for every t, got min {arr.min():.6g}, max {arr.max():.6g}")
    arr[..., 0] = 1.0
    return arr


def check_sizes(n: Any, num_steps: int | None = None) -> np.ndarray:
    """Validate a sample-size schedule: shape (num_steps + 1,) (or (grid, num_steps + 1)), integers >= 1."""
    arr = _schedule_array("n", n, num_steps)
    if np.any(arr < 1):
        raise ValueError(f"n must be >= 1 at every step, got min {arr.min():.6g}")
    if np.any(arr != np.round(arr)):
        raise ValueError("n must hold whole numbers (sample sizes)")
    return arr


def check_pair(alpha: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``alpha`` and ``n`` together (same length)."""
    alpha = check_alpha(alpha)
    n = check_sizes(n)
    if alpha.shape[-1] != n.shape[-1]:
        raise ValueError(f"alpha and n must have the same length (num_steps + 1), got {alpha.shape[-1]} "
                         f"and {n.shape[-1]}")
    if alpha.ndim == n.ndim == 2 and alpha.shape[0] != n.shape[0] and 1 not in (alpha.shape[0], n.shape[0]):
        raise ValueError(f"alpha and n are grids of {alpha.shape[0]} and {n.shape[0]} schedules; give grids of "
                         "the same size (or one schedule for all)")
    return alpha, n


def as_grid(alpha: np.ndarray, n: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
    """``(grid, alpha, n)``: whether the caller passed a grid (either schedule 2-D), and both broadcast to
    (grid, step) = (G, T + 1)."""
    alpha2, n2 = (np.array(x) for x in np.broadcast_arrays(np.atleast_2d(alpha), np.atleast_2d(n)))
    return alpha.ndim == 2 or n.ndim == 2, alpha2, n2
