"""Your own simulator in a sweep: the mean of a unit-variance Gaussian, refitted each generation from ``n`` draws of
which a share ``alpha`` comes from the truth and the rest from the previous fit (the replace regime of seed 003 for
the simplest model). Its risk ``r_t = E (mu_hat_t - mu)^2`` has the exact recurrence ``r_0 = 1 / n`` and
``r_t = ((1 - alpha)^2 + alpha (1 - alpha) / n) r_{t-1} + 1 / n``.

Run it (docs/sweeps.md, "Your own simulator")::

    collapse-jax sweep mean.toml --import mean_sweep      # with this file in the current folder (or installed)

or from Python: ``import mean_sweep`` (it registers the model), then ``sweep.run(sweep_spec.load("mean.toml"), out)``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import driver, schedules, sweep_models


# --- the simulator, in the contract of docs/driver.md: one replicate, key first --------------------------------------
class Params(NamedTuple):
    mu: jax.Array       # () the truth
    alpha: jax.Array    # (step,) real share alpha_t, t = 0..T (alpha_0 unused: generation 0 is real)
    n: jax.Array        # (step,) draws per generation


@dataclasses.dataclass(frozen=True)
class Config:           # static settings (none needed here; a frozen dataclass, hashable, as jit requires)
    pass


class State(NamedTuple):
    mu_hat: jax.Array
    mu: jax.Array       # step and observe see the state, not the params: keep in it what the record needs


def init(key, params, config):
    n0 = params.n[0]
    return State(params.mu + jax.random.normal(key, (), n0.dtype) / jnp.sqrt(n0), params.mu)


def step_inputs(params, config):
    return params.alpha[1:], params.n[1:]


def step(key, state, inputs_t, config):
    alpha, n = inputs_t
    k_real, k_noise = jax.random.split(key)
    real = jax.random.binomial(k_real, n, alpha).astype(n.dtype)    # draws that come from the truth
    centre = (real * state.mu + (n - real) * state.mu_hat) / n
    new = State(centre + jax.random.normal(k_noise, (), n.dtype) / jnp.sqrt(n), state.mu)
    return new, observe(new, config)


def observe(state, config):
    return (state.mu_hat - state.mu) ** 2


kernel = driver.scan_kernel(init, step, step_inputs, observe)


def exact_risk(alpha: np.ndarray, n: np.ndarray) -> np.ndarray:
    r = [1.0 / n[0]]
    for a, m in zip(alpha[1:], n[1:]):
        r.append(((1 - a) ** 2 + a * (1 - a) / m) * r[-1] + 1.0 / m)
    return np.asarray(r)


# --- its sweep model: parameters, records, how a group of cells runs, theory ----------------------------------------
class MeanSweep(sweep_models.SweepModel):
    """Gaussian mean refitted on a mix of real and own draws (docs/examples/mean_sweep.py)."""

    name = "gaussian-mean"
    fields = {
        "steps": sweep_models.Field(20, "generations T", int, 1, 10_000),
        "alpha": sweep_models.Field(0.5, "real share alpha_t for t >= 1", float, 0.0, 1.0),
        "n": sweep_models.Field(10, "draws per generation", int, 1, 10**7),
        "mu": sweep_models.Field(0.0, "true mean", float),
    }
    outputs = {"loss": sweep_models.Output("real", "(mu_hat_t - mu)^2")}

    def num_steps(self, cell):
        return cell["steps"] + 1

    def group_key(self, cell, backend):       # cells with equal keys run in one call: the same T
        return (cell["steps"],)

    def run(self, cells, num_replicates, seed, *, backend, memory_budget, mesh, first_replicate=0):
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        T = cells[0]["steps"]
        params = Params(jnp.asarray([c["mu"] for c in cells], dtype),
                        jnp.asarray(np.stack([schedules.constant_alpha(c["alpha"], T) for c in cells]), dtype),
                        jnp.asarray(np.stack([schedules.constant_size(c["n"], T) for c in cells]), dtype))
        loss = driver.run_replicates(kernel, params, Config(), num_replicates, seed, grid_axes=Params(0, 0, 0),
                                     first_replicate=first_replicate, memory_budget=memory_budget, mesh=mesh,
                                     progress=False)
        return {"loss": loss}                   # name -> (grid, replicate, step)

    def theory(self, cell):
        T = cell["steps"]
        return {"loss": exact_risk(schedules.constant_alpha(cell["alpha"], T), schedules.constant_size(cell["n"], T))}


sweep_models.register(MeanSweep())
