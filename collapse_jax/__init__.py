"""collapse-jax: Monte Carlo simulators and closed-form theory for model collapse, in JAX.

The public API is what this module re-exports.

Importing it sets JAX's default precision of float32 matrix products to full float32 (``"highest"``), unless the
process already chose one (``jax_default_matmul_precision``) or ``COLLAPSE_JAX_MATMUL_PRECISION`` says otherwise
(``default`` leaves JAX's default; any other value is passed to JAX). JAX's own default lets GPUs round float32
operands to TensorFloat-32 (10-bit mantissas) in every product: a log-det of a Gram matrix, a leverage, a distance
between close points or a GMM likelihood ratio would then carry relative errors near 1e-3, far above this library's
Monte Carlo precision. On CPUs the setting changes no number (XLA:CPU computes float32 products in float32 either
way); on GPUs float32 products run on the FP32 units, as PyTorch's default does (bfloat16 runs are unaffected).

The command line (``collapse-jax``, ``python -m collapse_jax.cli``) defers that import and setting until its
arguments are parsed (:func:`import_numerical_core`), so that ``--help`` and ``--version`` answer without JAX.
"""

import os as _os
import sys as _sys


# The modules that run the command line with ``python -m`` (each goes through cli.main, which restores the hook)
_LAUNCHERS = ("collapse_jax", "collapse_jax.cli", "collapse_jax.sweep_cli", "collapse_jax.sigma_cli",
              "collapse_jax.recursions_cli")


def _command_line() -> bool:
    """Whether this process is the command line itself: `python -m collapse_jax[.cli]` (the module given after -m,
    not any package that imports this one: a review, 2026-12-07) or the console script."""
    # The interpreter's -m only: while it imports the module's packages, sys.argv[0] is "-m" (a later "-m", as in
    # `python3 script.py -m collapse_jax` or `pytest -m collapse_jax`, is the script's argument: a library user's
    # process, which then ran without the core and its float32 product precision; a review, 2026-12-07)
    argv = list(getattr(_sys, "orig_argv", ()))
    located = _sys.argv[:1] == ["-m"]
    target = argv[argv.index("-m") + 1] if located and "-m" in argv[:-1] else None
    script = _os.path.basename(_sys.argv[0] if _sys.argv else "") == "collapse-jax"
    return target in _LAUNCHERS or script


def _one_line_for_an_early_interrupt() -> None:
    """The command line (``python -m`` of :data:`_LAUNCHERS`, the ``collapse-jax`` script): a Ctrl-C that stops it
    before a command's own handler runs, e.g. while JAX imports, prints one line, not a traceback ending inside
    importlib (a user trial, 2026-12-07). A library user's interpreter keeps its own hook."""
    # cli.main puts the previous hook back once its own handlers are in place (`restore_excepthook`), so no later
    # interrupt reads "while starting".
    if not _COMMAND_LINE:
        return
    default = _sys.excepthook

    def one_line(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            return default(kind, value, tb)
        print("collapse-jax: interrupted while starting (nothing was run or written)", file=_sys.stderr)

    _EARLY_HOOK.extend([one_line, default])
    _sys.excepthook = one_line


_EARLY_HOOK: list = []  # (the early hook, the hook it replaced) where installed


def restore_excepthook() -> None:
    """Put back the hook that :func:`_one_line_for_an_early_interrupt` replaced, if it is still the one in place."""
    if _EARLY_HOOK and _sys.excepthook is _EARLY_HOOK[0]:
        _sys.excepthook = _EARLY_HOOK[1]


_COMMAND_LINE = _command_line()
_one_line_for_an_early_interrupt()


def _full_float32_products(_jax) -> None:
    choice = _os.environ.get("COLLAPSE_JAX_MATMUL_PRECISION", "highest").strip()
    if choice == "default" or _jax.config.jax_default_matmul_precision is not None:
        return
    try:
        _jax.config.update("jax_default_matmul_precision", choice)
    except ValueError as e:  # (raised at import: a traceback even for `collapse-jax --help`; a user trial, 2026-12-06)
        import warnings

        warnings.warn(f"COLLAPSE_JAX_MATMUL_PRECISION must be 'default' or a value of JAX's "
                      f"jax_default_matmul_precision (e.g. highest, tensorfloat32, bfloat16), got {choice!r} ({e}); "
                      "using 'highest'", RuntimeWarning, stacklevel=2)
        _jax.config.update("jax_default_matmul_precision", "highest")


__version__ = "0.1.0"

__all__ = [
    "GMMNetworkConfig",
    "gmm_network",
    "gmm_theory",
    "RunFolder",
    "driver",
    "replicate_keys",
    "replicate_mesh",
    "replicate_sharding",
]
__all__ += ["gaussian", "linear_regression", "logistic", "mixture_refit", "multinomial", "schedules",
            "LogisticConfig", "MixtureConfig", "MultinomialConfig", "sample_multinomial"]
__all__ += ["SigmaMonitor", "block_estimates", "classical_mds", "gram_streaming", "logdet", "mds_of_points",
            "sigma_monitor", "sigma_precision", "spectral", "within_model_spread"]
__all__ += ["distance", "sweep", "sweep_spec"]


def import_numerical_core() -> None:
    """Import JAX, set its float32 product precision (above) and bind the public API (:data:`__all__`) here. Runs
    when this package is imported, except in the command line, where :func:`collapse_jax.cli.main` runs it once the
    arguments are parsed: ``--help`` and ``--version`` answer without importing JAX (81 % of their 2.7 s on a 2-core
    CPU; a user's report), and every command runs with the package as imported before. Idempotent."""
    if _CORE_IMPORTED:
        return
    import jax

    _full_float32_products(jax)

    from collapse_jax import driver  # noqa: F401 (bound below)
    from collapse_jax.results import RunFolder  # noqa: F401 (bound below)
    from collapse_jax.replicates import replicate_keys, replicate_mesh, replicate_sharding  # noqa: F401 (bound below)

    # LLM Web Dynamics: the network of interacting GMMs and its theory (seed 000).
    from collapse_jax import gmm_network, gmm_theory  # noqa: F401 (bound below)
    from collapse_jax.gmm_network import GMMNetworkConfig  # noqa: F401 (bound below)

    # Iterative-training recursions (seeds 003 and 004).
    from collapse_jax import (  # noqa: F401 (bound below)
        gaussian, linear_regression, logistic, mixture_refit, multinomial, schedules)
    from collapse_jax.logistic import LogisticConfig  # noqa: F401 (bound below)
    from collapse_jax.mixture_refit import MixtureConfig  # noqa: F401 (bound below)
    from collapse_jax.multinomial import MultinomialConfig, sample_multinomial  # noqa: F401 (bound below)

    # Sigma spectral estimators (seed 002) and distance estimators shared with the GMM network and the LLM side.
    from collapse_jax import sigma_monitor, sigma_precision, spectral  # noqa: F401 (bound below)
    from collapse_jax.distance import classical_mds, mds_of_points, within_model_spread  # noqa: F401 (bound below)
    from collapse_jax.sigma_monitor import SigmaMonitor  # noqa: F401 (bound below)
    from collapse_jax.spectral import block_estimates, gram_streaming, logdet  # noqa: F401 (bound below)

    # The sweep runner (labelled zarr datasets over parameter grids) and the distance estimators' module.
    from collapse_jax import distance, sweep, sweep_spec  # noqa: F401 (bound below)

    api = locals()
    globals().update({name: api[name] for name in __all__})
    _CORE_IMPORTED.append(True)


_CORE_IMPORTED: list = []


def __getattr__(name: str):
    """The command line before :func:`import_numerical_core` ran: a public module is imported alone (``from
    collapse_jax import schedules`` while a parser is built asks for it here, and must not import JAX), any other
    public name imports the core."""
    if name in __all__:
        import importlib
        import importlib.util

        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        import_numerical_core()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not _COMMAND_LINE:
    import_numerical_core()
