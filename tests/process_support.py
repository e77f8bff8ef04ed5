"""Commands run in a child process and stopped by a signal, as a batch scheduler or a closed terminal stops them."""

import subprocess
import time


def signal_once_started(args: list[str], started: str, signum: int, env: dict | None = None) -> tuple[int, str]:
    """Run ``args``, send ``signum`` once a line of its stderr contains ``started`` (a progress bar's first line:
    bars print plain lines into a pipe), and return its exit status and the rest of its stderr."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        while started not in proc.stderr.readline():
            assert time.monotonic() - start < 120 and proc.poll() is None, proc.stderr.read()
        proc.send_signal(signum)
        err = proc.stderr.read()
        return proc.wait(timeout=120), err
    finally:
        proc.kill()
