"""Test configuration: float64 everywhere (tests compare with theory), CPU, quiet progress bars."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("COLLAPSE_JAX_PROGRESS", "0")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
