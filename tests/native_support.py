"""Whether the native CPU kernels can run here, and the marks that skip their tests (with the reason) where not:
no C++ compiler, a failed build, or ``COLLAPSE_JAX_NATIVE=0`` (the pure-JAX fallback pass)."""

import pytest

from collapse_jax import _native

NATIVE = _native.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native kernels unavailable (no C++ compiler, failed build, "
                                                      "or COLLAPSE_JAX_NATIVE=0)")
NATIVE_PARAM = pytest.param("native", marks=needs_native)
# The x86-64-v3 build's tests compare its AVX2 code with this CPU's AVX-512 code. Where this CPU has no AVX-512 its
# own build already runs the AVX2 code (8 float32 lanes), so they would compare it with itself, at the price of a
# second build of the native library (~50 s of the suite on a 2-core AMD EPYC).
skip_if_built_for_avx2 = pytest.mark.skipif(NATIVE and _native.gmm_lanes() == 8, reason=(
    "this CPU has no AVX-512: its own build is the AVX2 (x86-64-v3) code the test compares against"))
# backends a test may loop over here
BACKENDS_HERE = ["jax", "native"] if NATIVE else ["jax"]
