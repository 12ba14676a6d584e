"""Run servers from the command line with the same code the notebooks use.

Every command prints one JSON line when it is ready (at least ``{"url": ...}``) and runs until
SIGINT or SIGTERM, then stops everything it started.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any, Callable


def announce(info: dict[str, Any]) -> None:
    """Print the one JSON readiness line (flushed: a parent process is waiting for it)."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def run_until_signal(start: Callable[[], dict[str, Any]], stop: Callable[[], None]) -> int:
    """Call ``start()`` (which returns the readiness info), print it, wait for a signal, ``stop()``."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        info = start()
    except BaseException:
        stop()
        raise
    announce(info)
    while not stopping.wait(0.5):
        pass
    stop()
    return 0
