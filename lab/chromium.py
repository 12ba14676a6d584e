"""Which Chromium the course drives, and how: one place for the lessons and the tests.

Lessons 03 (six connections per host) and 10 (SameSite across two sites) and the browser tests
run Debian's ``chromium`` (or ``CHROMIUM=/path``, or another Chrome on the PATH) through
Playwright's Python package with ``executable_path``, headless. The flags are those for root in a
container whose only network is loopback: no sandbox (it needs user namespaces root may not
have), no GPU, no QUIC, nothing that phones home.
"""
from __future__ import annotations

import os
import shutil

__all__ = ["find_chromium", "CHROMIUM_ARGS", "HOW_TO_GET_CHROMIUM"]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

HOW_TO_GET_CHROMIUM = ("Chromium was not found, so this cell is skipped (the rest of the lesson does not need it). "
                       "To run it: `apt-get install chromium` (Debian/Ubuntu) or `python -m playwright install "
                       "chromium`, or set CHROMIUM=/path/to/chrome; the Python package is `pip install playwright`.")


def find_chromium() -> str | None:
    """A Chromium to drive (``CHROMIUM=path``, else the system's), or ``None``."""
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None
