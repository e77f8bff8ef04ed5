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
import os
import shlex
import signal
import sys

from collapse_jax import _checks, cli_options, experiments

# Experiment modules, each contributing one or more subcommands.
COMMAND_MODULES = [
    "collapse_jax.gmm_network_cli",
    *experiments.COMMAND_MODULES,
    "collapse_jax.sigma_cli",
    "collapse_jax.sweep_cli",
    "collapse_jax.info_cli",
]
ENTRY_POINT_GROUP = "collapse_jax.commands"


class _Version(argparse.Action):
    """``--version``: ``collapse-jax X.Y.Z``, and for a git checkout (an editable install) its commit and whether
    tracked files changed (a user trial: a bug report from a checkout could not say which code ran). git runs only
    when asked: the parser is built for every command."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from collapse_jax import __version__
        from collapse_jax.results import _source_revision

        rev = _source_revision()
        where = (f" (git {rev['git_commit'][:12]}{', with changes' if rev.get('git_dirty') else ''})"
                 if rev.get("git_commit") else "")
        print(f"collapse-jax {__version__}{where}")  # (on stdout, as argparse's own version action prints)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collapse-jax",
        description="Monte Carlo simulators and closed-form theory for model collapse (JAX).",
    )
    parser.add_argument("--version", action=_Version,
                        help="print the version (and the git commit of a checkout) and exit (collapse-jax info: every "
                             "version a bug report needs)")
    cli_options.add_run_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        entry.load().add_parser(sub)
    for command in _leaf_commands(parser):
        cli_options.add_run_options(command, suppress=True)
        # every option's own name too, for messages (cli_options.with_flags): "until must be ..." -> "--until ..."
        names = dict(command.get_default("config_flags") or {})
        for action in command._actions:
            flag = "--" + action.dest.replace("_", "-")
            if flag in action.option_strings:
                names.setdefault(action.dest, flag)
        command.set_defaults(config_flags=names)
    return parser


def _leaf_commands(parser):
    """Every subcommand parser without subcommands of its own (``nanogpt train``, not ``nanogpt``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                if any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
                    yield from _leaf_commands(command)
                else:
                    yield command


def main(argv: list[str] | None = None, *, launched: bool | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    ``launched``: whether this call is the process's own command line (the console script, ``python -m``), which
    installs the handlers a process needs (SIGTERM and SIGHUP stop the command with its results kept, output that
    cannot be encoded is escaped) and leaves through ``os._exit`` once stopped; by default, where ``argv`` is None.
    A launcher that puts words in front of the arguments (``python -m collapse_jax.sweep_cli``: ``sweep``) passes
    True: SIGTERM killed it without a word or a resumable ending (2026-12-07)."""
    launched = argv is None if launched is None else launched
    if launched:  # the console script: a character the console cannot encode (an --out path under
        # PYTHONIOENCODING=ascii) printed as an escape, not an error after the run's files were written (a user trial,
        # 2026-12-06: exit status 2, and a sweep left without its manifest)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    import collapse_jax

    collapse_jax.import_numerical_core()  # (deferred by the command line: --help and --version run without JAX)
    from collapse_jax import results

    results.LAST_CREATED = None  # (this command's folder only, for the interrupt message)
    if launched:  # (here, not before the parser: a signal while it was built escaped as a traceback; a review)
        _stop_on_termination()
    collapse_jax.restore_excepthook()  # (the command's own handlers from here: a later interrupt is not "starting")
    try:
        with cli_options.plain_warnings(f"collapse-jax {args.command}"):
            cli_options.apply_run_options(args)
            _warn_if_jit_disabled(args.command)
            result = args.func(args)
    except BrokenPipeError:  # the reader of the output went away (`| head`): quiet, as other tools are
        if launched:  # (and no second error when the interpreter flushes stdout at exit)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # (128 + SIGPIPE, what a shell reports for a tool the pipe stopped)
    except (ValueError, _checks.MissingExtraError) as exc:  # bad input, a missing extra: one clear line
        text = str(exc) if getattr(exc, "verbatim", False) else cli_options.with_flags(str(exc), args)
        print(f"collapse-jax {args.command}: error: {text}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written or read (a read-only --out, a full disk): one line too
        text = f"cannot use {str(exc.filename)!r}: {exc.strerror or exc}" if exc.filename else str(exc)
        print(f"collapse-jax {args.command}: error: {text}", file=sys.stderr)
        return 2
    except (AssertionError, RuntimeError) as exc:  # JAX's own, where no backend starts: JAX_PLATFORMS=cuda on a CPU
        if not _from_jax_backend_start(exc):  # machine a bare AssertionError traceback (a user trial, 2026-12-06),
            raise  # tpu or a typo a RuntimeError one (a review)
        platforms = os.environ.get("JAX_PLATFORMS")
        cause = str(exc).splitlines()[0] if str(exc) else ""
        cause = cause if len(cause) <= 300 else cause[:300] + "..."
        print(f"collapse-jax {args.command}: error: JAX could not start a backend"
              + (f" for JAX_PLATFORMS={platforms!r} (is that platform's jax plugin installed?)" if platforms else "")
              + (f" ({cause})" if cause else "") + "; `collapse-jax info` shows what JAX finds", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        hint = getattr(args, "interrupt_hint", None) or ("a command that resumes continues from them when rerun with "
                                                         "the same options and --out")
        # the folder itself, not the placeholder (a user trial, 2026-12-06), also one made with a time stamp
        folder = getattr(args, "out", None) or results.LAST_CREATED
        if folder:
            hint = hint.replace("--out RUN", f"--out {shlex.quote(str(folder))}")
        how = stopped_how(exc)
        if isinstance(exc, Terminated) or str(exc) == results.SECOND_PRESS:  # (no batch was let finish: a review,
            # 2026-12-06; a second Ctrl-C now stops inside a native call too, 2026-12-07)
            hint = hint.replace(", with the one a first Ctrl-C let finish", "")
        print(f"collapse-jax {args.command}: {how} (files written so far are complete; {hint})", file=sys.stderr)
        result = exit_status(exc)
    finally:  # (a run folder's lock, held by an unfinished run, is not kept past the command)
        from collapse_jax import results

        results.release_folder_locks()
    if result in (130, *(128 + signum for signum in _TERMINATING)) and launched:  # the console script,
        _leave_now(result)  # interrupted or stopped (here or by a command's own handler)
    return int(result or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a batch scheduler's time limit, a closed session), raised where Python runs next, as Ctrl-C
    raises KeyboardInterrupt: the commands stop and say so, as for a second Ctrl-C (the batch running is not waited
    for: a scheduler's grace period may be shorter), where the log of a job stopped this way ended at a progress line
    without a word (a user trial, 2026-12-06)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


_TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def stopped_how(exc: KeyboardInterrupt) -> str:
    """How a command was stopped, as its last line says: "interrupted" (Ctrl-C) or "stopped by SIGTERM"."""
    return f"stopped by {exc.name}" if isinstance(exc, Terminated) else "interrupted"


def exit_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``exc``: 128 + the signal's number (130 for Ctrl-C)."""
    return 128 + exc.signum if isinstance(exc, Terminated) else 130


def _stop_on_termination() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread, unless something other than the default
    action was set for them (e.g. ``nohup``'s ignored SIGHUP); a stop that Python drops (raised while a finalizer or
    a gc callback runs) is sent again (:func:`collapse_jax.results.resend_dropped_stops`)."""
    from collapse_jax.results import resend_dropped_stops

    def stop(signum, frame):
        raise Terminated(signum)

    for signum in _TERMINATING:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, stop)
    resend_dropped_stops()


def _warn_if_jit_disabled(command: str) -> None:
    """One line when JAX's jit is off (JAX_DISABLE_JIT=1): every simulator then runs op by op, and a run of seconds
    sat at 0 % for minutes without a word (a user trial, 2026-12-06)."""
    import jax

    if jax.config.jax_disable_jit:
        print(f"collapse-jax {command}: warning: JAX_DISABLE_JIT is set, so every kernel runs op by op: runs take "
              "minutes where they took seconds (unset it unless you are debugging)", file=sys.stderr)


def _from_jax_backend_start(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while JAX started its backends (``jax._src.xla_bridge``)."""
    import traceback

    return any(frame.filename.replace("\\", "/").endswith("jax/_src/xla_bridge.py")
               for frame in traceback.extract_tb(exc.__traceback__))


def _leave_now(code: int) -> None:
    """Exit with ``code`` through ``os._exit`` once the output is flushed: after an interrupt XLA's threads may still
    be running the interrupted computation (a native kernel cannot be stopped), and the interpreter's teardown under
    them crashed (SIGSEGV in 1 to 3 of about 10 interrupted GMM sweeps on a loaded 2-core machine, an audit,
    2026-12-04). What the commands wrote is complete: every file is written atomically."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # `python -m collapse_jax.cli` (the launch the docs use) runs this file as __main__, a
    # second copy beside the collapse_jax.cli the commands import: a sweep's SIGTERM, this copy's Terminated, was not
    # theirs and was reported as a Ctrl-C with exit status 130 (a user trial, 2026-12-07). The imported module runs.
    from collapse_jax.cli import main as _main

    sys.exit(_main())
