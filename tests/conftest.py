"""Test configuration: float64 everywhere (tests compare with theory), CPU, quiet progress bars, and two XLA flags
that make compiling cheaper: backend optimisation level 1 instead of the default, and XLA:CPU's classic elemental
emitters instead of its newer MLIR fusion emitters (``--xla_cpu_use_fusion_emitters=false``).

Compilation is most of the suite's time (the portable GMM kernel alone takes ~7 s to compile per configuration at
the default level); level 1 compiles it in ~4.6 s, and the same programs run as fast at the tests' small sizes
(`tests/test_gmm_network.py` + `tests/test_contracts.py`: 357 s -> 268 s on 2 cores). It changes how LLVM optimises
the generated loops, so results can differ from the default level in the last bits (the portable GMM kernel's
float64 weights: 40 % of them, by at most 4e-15), never beyond rounding: the tests compare with references and theory
at tolerances far above that, and bitwise checks compare runs made under the same flags.

The classic emitters compile a small program in about 30 ms instead of 55 (a one-op jit on the 2-core AMD EPYC), which
is what the eager (``jax.disable_jit``) contract checks and the subprocess tests mostly do: the whole suite took
17 min 23 s instead of 20 min 16 s there on a fresh native cache (32.8 against 38.3 CPU-minutes, 2026-12-01), with
every test passing (a second run: 18 min 22 s). Level 0 was tried too: 13 min 3 s, but five bitwise checks failed (a
scan of train steps against a loop of them, grid cells against cells run alone, 4 devices against 1), so the
suite would no longer test what users get. Each flag is only added when ``XLA_FLAGS`` does not already set it, so
``XLA_FLAGS="--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=true" pytest`` tests the default
code generation. Subprocesses inherit the flags through the environment."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("COLLAPSE_JAX_PROGRESS", "0")
for _flag, _value in (("xla_backend_optimization_level", "1"), ("xla_cpu_use_fusion_emitters", "false")):
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --{_flag}={_value}").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 2``, with ``--dist loadgroup`` from pyproject.toml) a module's tests are spread over
    the workers, so a module-scoped fixture (a trained tiny model, a whole LLM-web run) would be built once per worker:
    the tests that use one are grouped onto one worker by their module's name. Other tests spread as before."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        module = getattr(item, "module", None)
        if info is None or module is None:
            continue
        if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(module.__name__))
