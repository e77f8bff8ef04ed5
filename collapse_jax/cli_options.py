"""Options every experiment command shares, defined once (the seed, the run folder, the number of replicates), and
flags generated from an experiment's frozen config dataclass (:func:`add_config`, :func:`config_from_args`)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _default(parser, value) -> str:
    """`` (default VALUE)`` unless the parser's formatter prints defaults itself."""
    shows = isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class,
                                                                    argparse.ArgumentDefaultsHelpFormatter)
    return "" if shows else f" (default {value})"


def add_seed(parser, what: str = "replicate r uses fold_in(key(seed), r)") -> None:
    parser.add_argument("--seed", type=int, default=0, help=f"root random seed, >= 0{_default(parser, 0)}: {what}")


def add_out(parser, name: str) -> None:
    parser.add_argument("--out", default=None,
                        help=f"run folder (default runs/{name}-<time>); an existing folder of an unfinished run of the "
                             "same configuration is resumed where the command supports it")


def add_replicates(parser, default: int, what: str = "Monte Carlo replicates") -> None:
    parser.add_argument("--replicates", type=int, default=default, help=f"{what}, >= 1{_default(parser, default)}")


# Shared flags defined above: a config field of that name takes its flag from here, not from the generator.
COMMON = {"seed": add_seed}


def _sequence(item: type, what: str):
    """Parser of a comma-separated list of ``item`` (an empty string gives an empty tuple)."""
    def parse(text: str) -> tuple:
        try:
            return tuple(item(t.strip()) for t in text.split(",") if t.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    parse.__name__ = f"comma-separated {what}"
    return parse


_SEQUENCES = {int: _sequence(int, "integers"), float: _sequence(float, "numbers"), str: _sequence(str, "names")}


def _flag_type(hint) -> tuple[typing.Any, bool]:
    """(argparse ``type``, whether the field may be None) of a field annotation: int, float, str, bool,
    ``tuple[X, ...]`` (comma-separated) and ``X | None``."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return _SEQUENCES[typing.get_args(hint)[0]], optional
    if hint in (int, float, str, bool):
        return hint, optional
    raise TypeError(f"no command-line type for a config field annotated {hint!r}")


def add_config(parser, config_cls, *, exclude: tuple[str, ...] = ()) -> None:
    """One flag ``--field-name`` per field of the frozen dataclass ``config_cls``: its type from the annotation, its
    default from the class, its help from ``field(metadata={"help": ..., "choices": ..., "default_help": ...})``
    (``default_help`` describes a default that depends on other fields). Fields in :data:`COMMON` get the shared flag
    (their help, if any, says what the option drives); ``exclude`` names fields the command sets otherwise. A field
    without help text is an error here, so every option is documented in ``--help``."""
    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        meta = f.metadata
        if f.name in COMMON:
            COMMON[f.name](parser, *([meta["help"]] if "help" in meta else []))
            continue
        if "help" not in meta:
            raise TypeError(f"{config_cls.__name__}.{f.name} has no help text (field metadata 'help')")
        kind, _ = _flag_type(hints[f.name])
        default = getattr(defaults, f.name)
        shown = meta.get("default_help", ",".join(map(str, default)) if isinstance(default, tuple) else default)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{meta['help']} (default {shown})")
            continue
        parser.add_argument(flag, type=kind, default=None, choices=meta.get("choices"), metavar=meta.get("metavar"),
                            help=f"{meta['help']} (default {shown})")


def config_from_args(config_cls, args: argparse.Namespace, **overrides):
    """``config_cls`` from the parsed flags of :func:`add_config`: fields whose flag was not given keep the class
    default; ``overrides`` win over both."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
             if getattr(args, f.name, None) is not None}
    return config_cls(**{**given, **overrides})
