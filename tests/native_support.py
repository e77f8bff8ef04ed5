"""Whether the native CPU kernels can run here, and the marks that skip their tests (with the reason) where not:
no C++ compiler, a failed build, or ``COLLAPSE_JAX_NATIVE=0`` (the pure-JAX fallback pass)."""

import pytest

from collapse_jax import _native

NATIVE = _native.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernels unavailable (no C++ compiler, failed build, "
                                                      "or COLLAPSE_JAX_NATIVE=0)")
NATIVE_PARAM = pytest.param("native", marks=needs_native)
# backends a test may loop over here
BACKENDS_HERE = ["jax", "native"] if NATIVE else ["jax"]
