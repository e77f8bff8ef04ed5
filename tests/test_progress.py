"""Progress bars: one bar over a run made of several calls that each show a bar (collapse_jax.progress.overall)."""

import numpy as np
import pytest

from collapse_jax import driver, progress


def test_calls_inside_overall_move_one_bar_from_its_initial_count():
    """The driver's bar of each call (batches of 3 and 2 replicates) counts into the one overall bar, which starts
    at the replicates done before; a bar in another unit, or one its caller disabled, stays its own."""
    progress.set_enabled(True)
    try:
        with progress.overall(9, "run", "rep", initial=4) as whole:
            assert whole.n == 4 and whole.total == 9
            for start, count in ((0, 3), (3, 2)):
                out = driver.map_chunks(lambda keys: np.zeros(keys.shape[0]), count, 0, 2, first_replicate=start)
                assert out.shape == (count,)
            assert whole.n == 9
            with progress.bar(5, "inner", "rep") as part:
                assert isinstance(part, progress.Part) and part.total == 5
                part.update(2)
                assert part.n == 2 and whole.n == 11
            assert not whole.disable  # closing a part leaves the overall bar open
            with progress.bar(7, "cells", "cell") as other, progress.bar(3, "quiet", "rep", disable=True) as quiet:
                assert not isinstance(other, progress.Part) and not isinstance(quiet, progress.Part)
                other.update(7)
                quiet.update(3)
            assert whole.n == 11
        with progress.bar(2, "after", "rep") as after:  # the block closed
            assert not isinstance(after, progress.Part)
    finally:
        progress.set_enabled(None)


def test_bars_in_a_log_are_plain_lines(capsys, monkeypatch):
    """An environment trial (2026-12-06): with stderr redirected to a file, tqdm's redraws wrote carriage returns
    and cursor-up codes into the log. There a bar prints plain lines: its start, at most one per LOG_INTERVAL, and
    its last state (nested bars too)."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 3600.0)
    progress.set_enabled(True)
    try:
        with progress.bar(4, "outer", "step") as outer:
            for _ in range(4):
                with progress.bar(50, "inner", "rep") as inner:
                    for _ in range(50):
                        inner.update(1)
                outer.update(1)
    finally:
        progress.set_enabled(None)
    log = capsys.readouterr().err
    assert "\r" not in log and "\x1b" not in log
    lines = log.splitlines()
    assert lines[0].startswith("outer:   0%") and lines[-1].startswith("outer: 100%") and "4/4" in lines[-1]
    assert sum(line.startswith("inner: 100%") and "50/50" in line for line in lines) == 4
    assert len(lines) == 2 + 4 * 2                                 # no redraw between start and end


def test_a_postfix_in_a_log_waits_for_the_next_line(capsys, monkeypatch):
    """A user trial (2026-12-07): nanoGPT training's loss (``set_postfix``) redrew the bar at every chunk of steps,
    10 lines in 20 s of a log, past LOG_INTERVAL. The postfix now shows at the next line: here the last."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 3600.0)
    progress.set_enabled(True)
    try:
        with progress.bar(10, "training", "step") as b:
            for i in range(10):
                b.update(1)
                b.set_postfix(loss=f"{1.0 / (i + 1):.3f}")
                b.set_description("training")
    finally:
        progress.set_enabled(None)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("training:   0%")
    assert lines[-1].startswith("training: 100%") and "loss=0.100" in lines[-1]


def test_a_log_shows_a_finished_bar_once(capsys, monkeypatch):
    """A user trial (2026-12-07): recursive-train's log held its bar's `100% 5/5` line twice, from the last update
    (LOG_INTERVAL had passed since the line before) and from the close (with the overall rate: not the same line)."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)                  # every update past the interval
    progress.set_enabled(True)
    try:
        with progress.bar(5, "generations", "gen") as b:
            for _ in range(5):
                b.update(1)
    finally:
        progress.set_enabled(None)
    lines = capsys.readouterr().err.splitlines()
    assert sum("5/5" in line for line in lines) == 1 and "5/5" in lines[-1]
    assert any("4/5" in line for line in lines)                       # the updates before the last still print


def test_a_log_does_not_repeat_the_line_just_written(capsys):
    """A trial (2026-12-06): sigma-precision's overall bar was redrawn unchanged when a cell's bar opened, and its
    first line stood twice in the log."""
    import sys

    log = progress._LogLines(sys.stderr)
    for text in ("\rrun:   0%| 0/19", "\rrun:   0%| 0/19\x1b[A", "\rcell:   0%| 0/200", "\rrun:   0%| 0/19"):
        log.write(text)
    assert capsys.readouterr().err.splitlines() == ["run:   0%| 0/19", "cell:   0%| 0/200", "run:   0%| 0/19"]


def test_transformers_bars_are_off_while_ours_go_to_a_log(monkeypatch):
    """A user trial (2026-12-07): a Hugging Face model's "Loading weights" bar wrote carriage returns into a log
    that the library's own bars kept plain."""
    logging = pytest.importorskip("transformers").utils.logging
    from llm_bridge import encoders

    progress.set_enabled(True)
    try:
        for in_log in (True, False):
            monkeypatch.setattr(progress, "to_log", lambda: in_log)
            with encoders.quiet_loading():
                assert logging.is_progress_bar_enabled() is not in_log
            assert logging.is_progress_bar_enabled()
    finally:
        progress.set_enabled(None)
