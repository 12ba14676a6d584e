"""A wire tap: a loopback TCP proxy that counts, and keeps the start of, every byte it forwards.

Why a proxy and not a packet capture: a learner in a notebook has no root and no tshark, but
every lesson wants to show "these exact bytes went over the wire" and count overhead per
event. Putting a tiny TCP relay between client and server gives both, for any server (ours, or
nginx in front of ours): point the client at ``tap.url`` instead of the server's URL.

What is counted is TCP payload, the same quantity a packet capture sums (tests/test_tap.py
checks the counts against tshark). The tap relays faithfully enough for the fault lessons:

- a half-close (one side sends FIN but still reads) is forwarded as a half-close;
- a reset on one side (a crashed peer) resets the other side too, so a client behind the
  tap sees a crashed server the way it would without the tap.

The relay runs on the shared server loop (``servers.runtime``), so a blocking ``requests``
call from a notebook cell reaches it. Recording state lives on the ``Tap`` object.

Usage::

    tap = start_tap(server)                 # a ServerHandle or a URL
    requests.get(tap.url + "/hello")
    tap.show()                              # the HTTP exchange, annotated
    tap.connections()                       # a DataFrame, one row per TCP connection

The package: :mod:`lab.tap.relay` (the proxy and its records), :mod:`lab.tap.parsing` (HTTP
messages and WebSocket frames in the kept bytes, via :mod:`servers.wire`) and
:mod:`lab.tap.annotate` (the annotated text view).
"""
from __future__ import annotations

from lab.tap.annotate import annotate
from lab.tap.parsing import HttpMessage, WsFrame, parse_http_stream, parse_ws_frames
from lab.tap.relay import DEFAULT_CAPTURE_BYTES, MAX_CHUNK_RECORDS, READ_CHUNK, Tap, TapConnection, start_tap

__all__ = ["Tap", "TapConnection", "start_tap", "parse_http_stream", "parse_ws_frames", "annotate",
           "HttpMessage", "WsFrame", "DEFAULT_CAPTURE_BYTES", "READ_CHUNK", "MAX_CHUNK_RECORDS"]
