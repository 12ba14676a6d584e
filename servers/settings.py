"""How every server takes its tunables: a table of defaults, keywords in, ``app.settings`` out.

The feed server, the QR-login app and the gateway's push tier have the same push knobs, so they
take them the same way and under the same names:

* each application module has a ``DEFAULT_SETTINGS`` table (every tunable with its default),
  built on :data:`PUSH_DEFAULTS` below;
* a keyword given to ``start_*``, ``make_*`` or the application's constructor overrides its
  entry (:func:`merge_settings`);
* the result is the Tornado application's ``settings`` dict, and handlers read
  ``self.settings[name]``. Tornado reads its own keys (``websocket_max_message_size``,
  ``websocket_ping_interval``) from the same dict, so those keep Tornado's names.

Named constructor parameters are for what an application *is* (its name, its Redis, its fix, its
users, its public URL), never for a knob. Our own knob names carry their unit (``_ms``, ``_s``).

A renamed knob (:data:`RENAMED`) still works under its old name for one release, with a
``DeprecationWarning`` that points at the caller's line, so notebooks and exercises written
against the old name keep running while they are updated.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

__all__ = ["SERVER_DEFAULTS", "PUSH_DEFAULTS", "QRLOGIN_DEFAULTS", "RENAMED", "merge_settings"]

#: The bounds every server started by ``servers.runtime.serve`` applies before a handler runs
#: (``servers.bounds``): apps without a table of their own (balancer, tour) get these.
SERVER_DEFAULTS: dict[str, Any] = {
    "max_body_bytes": 64 * 1024,       # a request body over this: 413 too_large, before it is buffered
    "idle_connection_timeout_s": 60.0,  # a request head not all there this long after the last answer: closed
    "body_timeout_s": 30.0,             # a request body not all there in this time: closed
    "max_connections": 25_000,          # open connections (HTTP and WebSocket) beyond this: 503 server_full
}

#: The push knobs every server shares, with the defaults the feed server uses.
PUSH_DEFAULTS: dict[str, Any] = {
    **SERVER_DEFAULTS,
    "sse_retry_ms": 1000,                     # the retry: line: the browser's reconnection delay (its own is ~3 s)
    "sse_heartbeat_s": 15.0,                  # seconds of silence before an SSE comment heartbeat
    "longpoll_max_s": 300.0,                  # the largest ?timeout= a long poll may ask for (400 above)
    "websocket_max_message_size": 64 * 1024,  # Tornado closes with 1009 above this (its default is 10 MiB)
    "websocket_ping_interval": None,          # seconds between WebSocket pings (None: no pings)
}

#: The QR-login app's table (``servers.qrlogin.app.DEFAULT_SETTINGS``), also the gateway's push
#: tier's, since it serves the same push handlers: kept here so that neither imports the other.
QRLOGIN_DEFAULTS: dict[str, Any] = {
    **PUSH_DEFAULTS,
    "websocket_ping_interval": 20,  # a login channel idles for minutes: pings keep NATs open, find dead peers
    "poll_interval_s": 0.5,         # the login page's short-poll interval (its ?interval= overrides it)
    "outbox_limit": 100,            # messages queued per push channel before it is dropped as too slow
}

#: Old knob name -> its name now (accepted, with a DeprecationWarning, for one release).
RENAMED: dict[str, str] = {
    "sse_heartbeat": "sse_heartbeat_s",  # the feed server's old name
    "heartbeat_s": "sse_heartbeat_s",    # the QR-login app's and the gateway's old name
    "longpoll_max": "longpoll_max_s",    # the QR-login app's and the gateway's old name
}


def merge_settings(defaults: dict[str, Any], given: dict[str, Any], *, owner: str) -> dict[str, Any]:
    """``defaults`` overridden by ``given`` (old names renamed), checked: the application's settings.

    ``owner`` names the application in messages. Raises ``TypeError`` when a knob is given under
    both its old and its new name, ``ValueError`` for a value no server could use.
    """
    settings = dict(given)
    for old, new in RENAMED.items():
        if old not in settings:
            continue
        if new in settings:
            raise TypeError(f"{owner}: {old}= and {new}= are the same setting; pass only {new}=")
        warnings.warn(f"{owner}: the setting {old!r} is now called {new!r}; the old name will stop working "
                      "in the next release", DeprecationWarning, stacklevel=_caller_stacklevel())
        settings[new] = settings.pop(old)
    merged = {**defaults, **settings}
    _check(merged, owner)
    return merged


def _check(settings: dict[str, Any], owner: str) -> None:
    """Refuse, at construction, values that would only fail (or hang) once a client connects."""
    for name, minimum in (("sse_retry_ms", 0), ("sse_heartbeat_s", 0.01), ("longpoll_max_s", 0),
                          ("max_body_bytes", 0), ("idle_connection_timeout_s", 0.01), ("body_timeout_s", 0.01),
                          ("max_connections", 1), ("outbox_limit", 1)):
        if name not in settings:
            continue
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise ValueError(f"{owner}: the setting {name} must be a number >= {minimum}, not {value!r}")
        settings[name] = float(value) if name.endswith("_s") else int(value)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that names the first frame outside this package (the notebook's line)."""
    level, frame = 2, sys._getframe(2)  # 1: merge_settings, 2: whoever called it
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "servers":
        frame = frame.f_back
        level += 1
    return level
