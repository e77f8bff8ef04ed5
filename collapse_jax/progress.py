"""Progress bars for long runs (tqdm), shown per chunk of steps or replicates, never inside a kernel.

Set ``COLLAPSE_JAX_PROGRESS=0`` (or ``false``, ``no``, ``off``, in any case) to silence them (the tests do), or
:func:`set_enabled` (the command line's ``--progress`` / ``--no-progress``), which wins over the environment. A run
made of several calls that each show a bar (a command's batches of replicates) shows one bar over all of them with
:func:`overall`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

from tqdm.auto import tqdm

# Where stderr is a file or a pipe (a batch job's log), a bar prints a plain line at most every LOG_INTERVAL seconds
# and its last state when it closes: tqdm's redraws wrote carriage returns and cursor-up codes into the log (an
# environment trial, 2026-12-06: `cat -A` of a two-bar run's log)
LOG_INTERVAL = 30.0
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


_OVERRIDE: list[bool | None] = [None]


def set_enabled(show: bool | None) -> None:
    """Show (True) or hide (False) every bar of this process; None: back to ``COLLAPSE_JAX_PROGRESS``."""
    _OVERRIDE[0] = show


def enabled() -> bool:
    if _OVERRIDE[0] is not None:
        return _OVERRIDE[0]
    # any case, and "off" too ("OFF", "False" left the bars on; a user trial, 2026-12-06)
    return os.environ.get("COLLAPSE_JAX_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off", "")


_OVERALL: list[tuple[str, tqdm | Part]] = []  # (unit, bar) of the open :func:`overall` blocks, innermost last


def bar(total: int, desc: str, unit: str = "it", *, initial: int = 0, disable: bool | None = None):
    """A tqdm bar on stderr, disabled when progress is switched off; it starts at ``initial`` of ``total``.

    Inside :func:`overall` with the same ``unit`` (and unless ``disable`` is True), a :class:`Part` of that bar
    instead: its updates move the overall bar, and no bar of its own is drawn."""
    if _OVERALL and _OVERALL[-1][0] == unit and disable is not True:
        return Part(_OVERALL[-1][1], total)
    if disable is None:
        disable = not enabled()
    # (drawn at once: tqdm's `delay` hid a bar until its first update, so a long first chunk looked hung; a review,
    # 2026-12-06. COLLAPSE_JAX_PROGRESS=0 or progress=False silences a notebook's loop of short calls.)
    if to_log():
        return _LogBar(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=_LogLines(sys.stderr),
                       mininterval=LOG_INTERVAL, ncols=100, leave=True)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def to_log() -> bool:
    """Whether bars go to a log: stderr is no terminal, and no notebook draws them (tqdm.auto's widgets, or an
    IPython kernel, whose output area handles carriage returns)."""
    if tqdm.__module__.startswith("tqdm.notebook") or "ipykernel" in sys.modules:
        return False
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # (a closed or replaced stream)
        return True


class _LogBar(tqdm):
    """A bar in a log: a new postfix or description shows at the next line (every LOG_INTERVAL seconds, and at the
    end), not at once; tqdm redraws at every ``set_postfix``, so a training loop's loss wrote a line per chunk of
    steps (10 lines in 20 s; a user trial, 2026-12-07). The update that completes the bar prints nothing: its
    close prints the last line, which a log showed twice when LOG_INTERVAL had passed before it (recursive-train's
    `100% 5/5` with two rates; a user trial, 2026-12-07)."""

    def update(self, n=1):
        if self.total is not None and not self.disable and self.n + n >= self.total:
            self.n += n  # (the count tqdm's update keeps; close draws it)
            return False
        return super().update(n)

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)

    def set_description_str(self, desc=None, refresh=True):
        super().set_description_str(desc, refresh=False)


class _LogLines:
    """The stream tqdm writes to in a log: each redraw becomes one plain line, without carriage returns, terminal
    codes, the blank redraws that clear a bar, or a repeat of the line just written (a bar redrawn unchanged when
    another opens: a trial, 2026-12-06, saw sigma-precision's first line twice)."""

    last: list[str] = [""]  # (shared: every bar of the process writes to the same log)

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        lines = [line.rstrip() for line in _TERMINAL_CODES.sub("", text).replace("\r", "\n").split("\n")]
        kept = []
        for line in lines:
            if line.strip() and line != (kept[-1] if kept else _LogLines.last[0]):
                kept.append(line)
        if kept:
            _LogLines.last[0] = kept[-1]
            self.stream.write("\n".join(kept) + "\n")

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def overall(total: int, desc: str, unit: str = "it", *, initial: int = 0, disable: bool | None = None):
    """One bar over a run made of several calls that each show a bar in ``unit``, e.g. batches of replicates: while
    the block runs, :func:`bar` in that unit returns a :class:`Part` that moves this bar, so it counts from
    ``initial`` (the units done before, e.g. by an interrupted run being resumed) to ``total`` instead of restarting
    for every call."""
    with bar(total, desc, unit, initial=initial, disable=disable) as pbar:
        entry = (unit, pbar)
        _OVERALL.append(entry)
        try:
            yield pbar
        finally:
            _OVERALL.remove(entry)


class Part:
    """What :func:`bar` returns inside :func:`overall`: a bar of ``total`` units of its own (``n`` counts them, as
    tqdm's) whose updates move the overall bar; entering and closing it leave the overall bar open."""

    def __init__(self, whole: tqdm | Part, total: int):
        self.whole, self.total, self.n, self.disable = whole, total, 0, whole.disable

    def update(self, n: int = 1) -> None:
        self.n += n
        self.whole.update(n)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Part":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
