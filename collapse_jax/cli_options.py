"""Options every experiment command shares, defined once (the seed, the run folder, the number of replicates), and
flags generated from an experiment's frozen config dataclass (:func:`add_config`, :func:`config_from_args`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import types
import typing
import warnings
from pathlib import Path


def _default(parser, value) -> str:
    """`` (default VALUE)`` unless the parser's formatter prints defaults itself."""
    formatter = getattr(parser, "formatter_class", None)  # None on an argument group
    shows = isinstance(formatter, type) and issubclass(formatter, argparse.ArgumentDefaultsHelpFormatter)
    return "" if shows else f" (default {value})"


def add_seed(parser, what: str = "replicate r uses fold_in(key(seed), r)", default: int = 0) -> None:
    parser.add_argument("--seed", type=int, default=default,
                        help=f"root random seed, >= 0{_default(parser, default)}: {what}")


def add_out(parser, name: str, *, what: str = "run folder", accepts: str | None = None) -> None:
    """``--out``: ``what`` (default ``runs/<name>-<time>``), then which folders it ``accepts`` (by default the rule
    of :class:`collapse_jax.results.RunFolder`)."""
    accepts = accepts or ("new or empty, or holding a run of the same configuration (resumed where the command "
                          "supports it, else rerun, leaving files of yours in it alone); a folder with another "
                          "configuration, or with files but no run, is refused")
    parser.add_argument("--out", default=None, type=folder_path, help=f"{what} (default runs/{name}-<time>): "
                                                                    f"{accepts}")


def folder_path(text: str) -> str:
    """An ``--out`` value: any non-blank path (``--out ""``, an unset shell variable, wrote into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty path (use --out . for this folder)")
    return text


def add_replicates(parser, default: int | None, what: str = "Monte Carlo replicates", minimum: int = 1,
                   default_help: str | None = None) -> None:
    """``--replicates``; ``default_help`` describes a default of None (one that depends on something else)."""
    shown = _default(parser, default) if default_help is None else f" (default {default_help})"
    parser.add_argument("--replicates", type=int, default=default, help=f"{what}, >= {minimum}{shown}")


def add_run_options(parser, *, suppress: bool = False) -> None:
    """How every command computes: ``--x64``, ``--backend``, ``--progress`` / ``--no-progress``. The top-level
    parser owns the defaults; each subcommand repeats the flags with ``suppress`` (no default of its own), so they
    may be given before or after the command name. :func:`apply_run_options` puts them into effect.

    A command for which ``--x64`` or ``--backend`` means something else sets ``run_option_notes`` (a dict from
    ``"x64"`` / ``"backend"`` to a sentence) with ``set_defaults``: its help shows that sentence instead, and a
    ``--backend`` other than auto is refused there (:func:`apply_run_options`), not silently ignored; ``"jax_only"``
    (a sentence) marks a command whose simulators have only JAX kernels: its help says so and ``--backend native``
    is refused."""
    keep = {"default": argparse.SUPPRESS} if suppress else {}
    notes = parser.get_default("run_option_notes") or {}
    g = parser.add_argument_group("computation (any command; before or after its name)")
    g.add_argument("--x64", action="store_true", help=notes.get("x64", "compute in float64 (default float32)"),
                   **keep)
    jax_only = f"{notes['jax_only']}: auto or jax runs it" if "jax_only" in notes else None
    g.add_argument("--backend", choices=["auto", "native", "jax"], **(keep or {"default": "auto"}),
                   help=notes.get("backend", jax_only or "simulator kernels: native (C++, CPU), jax (portable pure "
                                                         "JAX, any device), or auto: native on a CPU where it builds "
                                                         "(default auto; simulators with only a JAX kernel run it)"))
    g.add_argument("--progress", dest="progress", action="store_true", **(keep or {"default": None}),
                   help="show progress bars (default: shown unless COLLAPSE_JAX_PROGRESS=0)")
    g.add_argument("--no-progress", dest="progress", action="store_false", **keep, help="hide progress bars")


def apply_run_options(args: argparse.Namespace) -> None:
    """Put :func:`add_run_options`' flags into effect for this process (before anything is computed). A
    ``--backend`` the command does not use (its ``run_option_notes``) is a ValueError naming what to use instead."""
    from collapse_jax import _native, progress

    notes = getattr(args, "run_option_notes", None) or {}
    if "backend" in notes and args.backend != "auto":
        raise ValueError(f"--backend {args.backend} does not apply here: {notes['backend']}")
    if "jax_only" in notes and args.backend == "native":  # (it ran the JAX kernel and recorded "native" in
        # config.json; a user trial, 2026-12-06)
        raise ValueError(f"--backend native does not apply here: {notes['jax_only']}; --backend jax (or auto) runs it")
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    _native.prefer_backend(args.backend)
    progress.set_enabled(args.progress)


# Shared flags defined above: a config field of that name takes its flag from here (called as
# ``COMMON[name](parser, field default, field metadata)``: its ``help``, and ``minimum`` and ``default_help`` for
# replicates), not from the generator.
COMMON = {"seed": lambda parser, default, meta: add_seed(parser, *_help(meta), default=default),
          "replicates": lambda parser, default, meta: add_replicates(parser, default, *_help(meta),
                                                                     minimum=meta.get("minimum", 1),
                                                                     default_help=meta.get("default_help"))}


def _help(meta) -> list[str]:
    return [meta["help"]] if "help" in meta else []


def output_file(text: str) -> str:
    """argparse ``type`` of a results file a benchmark writes at its end: a folder, or a path through a file, is a
    usage error now, not an IsADirectoryError after minutes of timing (a user trial, 2026-12-06)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file path, e.g. {str(path / 'result.json')!r}")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {str(existing)!r} is a file, not a folder")
    return text


def positive_int(text: str) -> int:
    """argparse ``type`` of a count: an integer >= 1, else a usage error naming the value (benchmark scripts met
    ``--repeats 0`` with a StatisticsError on an empty median)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_bool(text: str) -> bool:
    """``true``/``1``/``yes`` or ``false``/``0``/``no`` (any case)."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _sequence(item: type, what: str):
    """Parser of a comma-separated list of ``item`` (an empty string gives an empty tuple; a blank item, as in
    ``",gmm"`` or ``"5,,6"``, is a usage error: a user trial's ``--models ,gmm`` ran as ``gmm`` alone)."""
    def parse(text: str) -> tuple:
        if not text.strip():
            return ()
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} without blank items, got {text!r}")
        try:
            return tuple(item(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    parse.__name__ = f"comma-separated {what}"
    return parse


_SEQUENCES = {int: _sequence(int, "integers"), float: _sequence(float, "numbers"), str: _sequence(str, "names")}


def _flag_type(hint, nargs: bool = False):
    """argparse ``type`` of a field annotation: int, float, str, bool, ``X | None`` and ``tuple[X, ...]`` (parsed
    from one comma-separated value, or item by item, ``X``, when the flag takes ``nargs``); other annotations need
    a ``parse`` function in the field's metadata."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return item if nargs else _SEQUENCES[item]
    if hint in (int, float, str, bool):
        return hint
    raise TypeError(f"no command-line type for a config field annotated {hint!r}")


def option(default, help: str, **meta):
    """A config field with its command-line metadata: ``option(0.5, "fraction read per step")`` is
    ``dataclasses.field(default=0.5, metadata={"help": "fraction read per step"})``; ``meta`` as :func:`add_config`
    reads it (``flag``, ``parse``, ``choices``, ``metavar``, ``default_help``, ``nargs``)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def flag_of(config_cls, name: str) -> str:
    """The flag :func:`add_config` gives field ``name``: ``--`` and the field's metadata ``flag`` (else its name),
    underscores as dashes."""
    meta = {f.name: f.metadata for f in dataclasses.fields(config_cls)}[name]
    return "--" + meta.get("flag", name).replace("_", "-")


def _shown(value, meta) -> str:
    """A default as help text shows it: tuples joined by commas (by spaces for an ``nargs`` field)."""
    if isinstance(value, tuple):
        return (" " if "nargs" in meta else ",").join(map(str, value))
    return str(value)


def add_config(parser, config_cls, *, exclude: tuple[str, ...] = (), presets: dict[str, dict] | None = None,
               preset_help: str = "") -> None:
    """One flag per field of the frozen dataclass ``config_cls``, ``--field-name`` unless the field's metadata names
    another (``flag``; the parsed value keeps the field's name). Its type comes from the annotation, its default from
    the class, the rest from ``field(metadata={...})`` (or :func:`option`): ``help`` (required: every option is
    documented in ``--help``), ``parse`` (the flag's parser, e.g. JSON, where the annotation is not a plain type),
    ``choices``, ``metavar``, ``default_help`` (describes a default that depends on other fields) and ``nargs`` (a
    tuple field then takes space-separated values, ``--sizes 10 30``, instead of ``--sizes 10,30``). Booleans are
    ``--flag`` (true) or ``--flag true|false``. Fields in :data:`COMMON` get the shared flag (their help, if
    any, says what the option drives); ``exclude`` names fields the command sets otherwise.

    ``presets`` (name -> field overrides, the first the default) adds ``--preset NAME`` (help ``preset_help``): the
    preset's values replace the class defaults (see :func:`config_from_args`), and each field's help lists the value
    of every preset where they differ.
    """
    hints = typing.get_type_hints(config_cls)
    names = dict(parser.get_default("config_flags") or {})   # field -> flag, for messages (:func:`with_flags`)
    names.update({f.name: f"--{f.name}" if f.name in COMMON else flag_of(config_cls, f.name)  # (COMMON: --seed)
                  for f in dataclasses.fields(config_cls) if f.name not in exclude})
    parser.set_defaults(config_flags=names)
    presets = presets or {"default": {}}
    starts = {name: config_cls(**values) for name, values in presets.items()}
    first = next(iter(presets))
    if len(presets) > 1:
        parser.add_argument("--preset", choices=list(presets), default=first, help=f"{preset_help} (default {first})")
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        meta = f.metadata
        default = getattr(starts[first], f.name)
        if f.name in COMMON:
            COMMON[f.name](parser, default, meta)
            parser.set_defaults(**{f.name: None})  # not given: the class (or preset) default, as for other fields
            continue
        if "help" not in meta:
            raise TypeError(f"{config_cls.__name__}.{f.name} has no help text (field metadata 'help')")
        shown = meta.get("default_help", _shown(default, meta))
        others = "".join(f"; {name} {_shown(getattr(cfg, f.name), meta)}" for name, cfg in starts.items()
                         if getattr(cfg, f.name) != default)
        text = f"{meta['help']} (default {shown}{others})"
        kind = meta["parse"] if "parse" in meta else _flag_type(hints[f.name], "nargs" in meta)
        if kind is bool:
            parser.add_argument(flag_of(config_cls, f.name), dest=f.name, nargs="?", const=True, type=parse_bool,
                                default=None, metavar="true|false", help=text)
            continue
        extra = {"nargs": meta["nargs"]} if "nargs" in meta else {}
        parser.add_argument(flag_of(config_cls, f.name), dest=f.name, type=kind, default=None,
                            choices=meta.get("choices"), metavar=meta.get("metavar"), help=text, **extra)


@contextlib.contextmanager
def plain_warnings(prog: str):
    """While the block runs, a warning prints as one line, ``PROG: warning: MESSAGE`` (without the file, line
    number and source line of the code that raised it: a command-line user's input, not the library, is what the
    message is about)."""
    def one_line(message, category, filename, lineno, line=None) -> str:
        kind = "" if category is UserWarning else f" ({category.__name__})"
        return f"{prog}: warning{kind}: {message}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def with_flags(message: str, args: argparse.Namespace) -> str:
    """``message`` (a config's ValueError, worded for the Python API: ``learning_rate must lie in ...``) with its
    leading field name replaced by the command's flag for it (``--lr must lie in ...``): what a user typed; so is
    every other mention of a field whose name has an underscore (``lower gmm_steps`` -> ``lower --gmm-steps``: no
    English word), and ``backend='native'`` is ``--backend native`` (not for ``sweep``, whose specification's
    ``backend = "native"`` it may be). The command's fields are those
    :func:`add_config` registered on its parser; other messages are returned as given."""
    names = getattr(args, "config_flags", None) or {}
    field = message.split(" ", 1)[0].rstrip(":,")  # ("sizes: every M must be ...": a user trial, 2026-12-05)
    if field in names and " " in message:
        message = names[field] + message[len(field):]
    for name, flag in names.items():
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){re.escape(name)}(?!\w)", flag, message)
        else:  # a plain word is a field where it stands in a formula: "num_models * samples = 48", "steps = 5000"
            # (they kept the API's names; a user trial, 2026-12-06); "= " only before a number: a sweep's
            # "backend = 'native'" is the specification's, as the file spells it
            word = re.escape(name)
            message = re.sub(rf"(?<![\w-]){word}(?= [*+/<>-] | = [\d.-])|(?<=[*+/<>-] ){word}(?![\w-])", flag,
                             message)
    if getattr(args, "command", None) == "sweep":  # (its specification names a backend too: as the file spells it)
        return message
    # the API's backend='native' is every other command's --backend native (a user trial, 2026-12-05)
    return re.sub(r"\bbackend='(auto|native|jax|pallas|numpy)'", r"--backend \1", message)


def config_from_args(config_cls, args: argparse.Namespace, *, presets: dict[str, dict] | None = None, **overrides):
    """``config_cls`` from the parsed flags of :func:`add_config`: fields whose flag was not given keep the class
    default, or the value of the chosen ``--preset`` when ``presets`` is given; ``overrides`` win over all."""
    start = presets[args.preset] if presets else {}
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
             if getattr(args, f.name, None) is not None}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}  # nargs flags parse to lists
    return config_cls(**{**start, **given, **overrides})
