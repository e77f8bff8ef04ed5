"""Commands run in a child process and stopped by a signal, as a batch scheduler or a closed terminal stops them."""

import signal
import subprocess
import time
from typing import Callable


def sigint_as_at_a_terminal() -> None:
    """A ``preexec_fn``: in a child before it starts, SIGINT's default action, unblocked, whatever the test worker left
    (an ignored or blocked signal is inherited across exec: in two full CI runs, 2026-12-07, a child of a worker that
    had run many tests took no notice of either Ctrl-C, while the test alone, or its file under xdist, passed)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_once_started(args: list[str], started: str, signum: int, env: dict | None = None,
                        until: Callable[[], bool] | None = None) -> tuple[int, str]:
    """Run ``args``, send ``signum`` once a line of its stderr contains ``started`` (a progress bar's first line:
    bars print plain lines into a pipe) and then ``until()`` holds (e.g. its first cells are written), and return
    its exit status and the rest of its stderr."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        while started not in proc.stderr.readline():
            assert time.monotonic() - start < 120 and proc.poll() is None, proc.stderr.read()
        while until is not None and not until():
            assert time.monotonic() - start < 120 and proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        proc.send_signal(signum)
        err = proc.stderr.read()
        return proc.wait(timeout=120), err
    finally:
        proc.kill()
