"""The lab bench: the instruments the lessons look at the servers with, and each lesson's workloads.

The servers themselves live in :mod:`servers`; nothing here serves a route. What is here:

- :mod:`lab.tap`: a wire tap (a loopback TCP proxy that records every byte each way);
- :mod:`lab.measure`: latency, byte and rate tables (pandas DataFrames) from what clients saw;
- :mod:`lab.plots`: the one plotting style (labelled axes with units);
- :mod:`lab.display`: show a server's page in the notebook, with the right URL on a hub;
- :mod:`lab.code`: show the real code a lesson teaches (a handler, a page's JavaScript), read from
  the package so it cannot drift;
- :mod:`lab.publishing`: publish events at random moments (the workload of lessons 01-03);
- :mod:`lab.lessons`: one module (or folder) per lesson, holding the experiments its cells run.

From a cell::

    import lab
    tap = lab.start_tap(feed)          # clients connect to tap.url; tap.connections() counts bytes
    lab.show(feed, "/pages/sse")       # the server's page, framed in the notebook
    lab.show_code(SSEHandler)          # the handler the page talks to, from the package
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "start_tap": "lab.tap",
    "Tap": "lab.tap",
    "show": "lab.display",
    "browser_url": "lab.display",
    "show_code": "lab.code",
    "show_script": "lab.code",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
