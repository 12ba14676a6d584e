"""Server Push Lab: small Tornado servers that push data to browsers (the instruments are in ``lab``).

From a notebook cell::

    from servers import start_feed
    feed = start_feed()            # on a free port, in a background thread
    requests.post(feed.url + "/feed/publish", json={"data": "hi"})
    feed.stop()

Names are imported lazily, so ``import servers`` stays fast and a lesson pulls in only what it
uses.
"""
from __future__ import annotations

import importlib
from typing import Any

from servers import _moved
from servers.runtime import ServerApp, ServerHandle, call, running, serve, stop_all

_moved.install()

# public name -> module that defines it
_LAZY = {
    "start_feed": "servers.feed.app",
    "FeedApp": "servers.feed.app",
    "start_redis": "servers.redisproc",
    "start_qrlogin": "servers.qrlogin.app",
    "QRLoginApp": "servers.qrlogin.app",
    "start_balancer": "servers.balancer",
    "start_cluster": "servers.cluster",
    "start_tour": "servers.tour",
    # moved to the lab package (``lab.start_tap``, ``lab.show``); kept here for one release
    "start_tap": "lab.tap",
    "Tap": "lab.tap",
    "show": "lab.display",
    "browser_url": "lab.display",
}

__all__ = ["ServerApp", "ServerHandle", "call", "running", "serve", "stop_all", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'servers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
