"""The ``collapse-jax`` command line: one subcommand per experiment.

Each experiment module defines ``add_parser(subparsers)`` (its options, documented in ``--help``) and registers
``func`` on its parser; this file only lists the core's modules, imported when the command line is built. Other
packages add commands through the entry-point group ``collapse_jax.commands`` (each entry names such a module), so the
core never imports them: ``llm_bridge`` registers its commands there in ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

from collapse_jax import experiments

# Experiment modules, each contributing one or more subcommands.
COMMAND_MODULES = [
    "collapse_jax.gmm_network_cli",
    *experiments.COMMAND_MODULES,
    "collapse_jax.sigma_cli",
    "collapse_jax.sweep_cli",
    "collapse_jax.info_cli",
]
ENTRY_POINT_GROUP = "collapse_jax.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collapse-jax",
        description="Monte Carlo simulators and closed-form theory for model collapse (JAX).",
    )
    parser.add_argument("--x64", action="store_true", help="compute in float64 (default float32)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load().add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        result = args.func(args)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"collapse-jax {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
