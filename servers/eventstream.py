"""The HTTP side of a Server-Sent Events stream, shared by the feed server and the QR-login app.

Both servers' SSE handlers (``servers.feed.sse``, ``servers.qrlogin.transports``) mix in
:class:`EventStreamMixin`, so a browser gets the same stream from either, by the same rules:

* **headers**: ``Content-Type: text/event-stream; charset=utf-8``, ``X-Accel-Buffering: no``
  (nginx must not buffer the response) and the handler's ``cache_control``; Nagle is turned off,
  so that a small event is not held back waiting for the client's delayed ACK;
* **the** ``retry:`` **line** opens the stream, from the ``sse_retry_ms`` setting: the delay
  before the browser reconnects (without it, a browser waits its own default of a few seconds);
* **heartbeats**: a comment line ``: heartbeat`` after ``sse_heartbeat_s`` seconds in which
  nothing was written (an event counts as a sign of life too), so that a proxy does not close an
  idle stream (nginx's ``proxy_read_timeout`` is 60 s by default);
* **the resume point** (:meth:`EventStreamMixin.last_event_id`): the ``Last-Event-ID`` header,
  what a reconnecting ``EventSource`` sends; else, for a first connection, the ``?lastEventId=N``
  query argument (a page cannot set headers on an ``EventSource``). The header wins when both
  are given, since it is newer: the browser updates it with each event it receives.

Why a malformed resume point is a 400 and not clamped to something: our servers only ever send
``id:`` lines holding a non-negative decimal integer (the feed's seq, a ticket's version). By
the WHATWG HTML standard ("Server-sent events": the ``id`` field sets the last event ID buffer,
dispatch copies it to the last event ID string, and a reconnect sends ``Last-Event-ID`` only when
that string is not empty), a browser sends back exactly an id it received, or no header at all.
So an id that is not a non-negative integer never comes from a browser: it was written by hand
or by a broken client, and guessing (``-5`` read as ``0`` replays everything, as if asked for)
would hide the mistake. It gets ``400 {"error": "bad_last_event_id", "detail": ...}``, on both
servers. Only ASCII digits count (``int()`` would also take ``"+5"``, ``"5_0"`` or Arabic-Indic
digits, none of which a server of ours sent), at most 2**63 - 1 (what Redis stores as an integer).
An empty value is no resume point at all, the same as a browser that sends no header.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from servers.web import ApiError
from servers.wire.sse import encode_comment

__all__ = ["EventStreamMixin", "HEARTBEAT_COMMENT", "MAX_EVENT_ID", "retry_line"]

#: What a heartbeat writes: one comment line, ignored by every client.
HEARTBEAT_COMMENT = encode_comment("heartbeat")

#: The largest resume point accepted (a signed 64-bit integer, as Redis keeps versions).
MAX_EVENT_ID = 2 ** 63 - 1


def retry_line(retry_ms: int) -> bytes:
    """The ``retry:`` field alone, then a blank line (an event with no data: nothing dispatched)."""
    return f"retry: {int(retry_ms)}\n\n".encode("ascii")


class EventStreamMixin:
    """For a :class:`~servers.web.BaseHandler` that answers with ``text/event-stream``.

    In ``get()``: ``after = self.last_event_id()`` (``None``: no resume point), then
    ``self.begin_event_stream()`` (headers and the ``retry:`` line, not yet flushed), write what is
    owed, flush, and ``self.start_heartbeats(send)``, where ``send()`` writes
    :data:`HEARTBEAT_COMMENT` in the handler's own write order. Call ``self.wrote()`` after each
    event written, and ``self.stop_heartbeats()`` when the stream ends.
    """

    #: Each server keeps its own caching rule for all its routes (the feed: ``no-cache``).
    cache_control = "no-cache"
    last_write = 0.0
    _heartbeat_timer: asyncio.TimerHandle | None = None
    _send_heartbeat: Callable[[], None] | None = None

    def last_event_id(self) -> int | None:
        """The id to resume after (header, else query argument), ``None`` if neither gives one."""
        raw = self.request.headers.get("Last-Event-ID")  # type: ignore[attr-defined]
        source = "the Last-Event-ID header"
        if raw is None or not raw.strip():
            raw = self.get_argument("lastEventId", None)  # type: ignore[attr-defined]
            source = "the lastEventId query argument"
        if raw is None or not raw.strip():
            return None
        text = raw.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_EVENT_ID):
            shown = raw if len(raw) <= 40 else raw[:40] + "..."
            raise ApiError(400, "bad_last_event_id", f"{source} must be an event id this server sent (an integer "
                                                     f"from 0 to {MAX_EVENT_ID}), not {shown!r}.")
        return int(text)

    def begin_event_stream(self) -> None:
        """The stream's headers and its ``retry:`` line (written, not flushed)."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")  # type: ignore[attr-defined]
        self.set_header("Cache-Control", self.cache_control)  # type: ignore[attr-defined]
        self.set_header("X-Accel-Buffering", "no")  # type: ignore[attr-defined]
        stream = self.request.connection.stream  # type: ignore[attr-defined]
        if stream is not None:
            stream.set_nodelay(True)
        self.write(retry_line(self.settings["sse_retry_ms"]))  # type: ignore[attr-defined]
        self.wrote()

    def wrote(self) -> None:
        """Something was written: the heartbeat clock starts again."""
        self.last_write = time.monotonic()

    def start_heartbeats(self, send: Callable[[], None]) -> None:
        """Call ``send()`` after each ``sse_heartbeat_s`` seconds with nothing written."""
        self._send_heartbeat = send
        self._schedule_heartbeat(self.settings["sse_heartbeat_s"])  # type: ignore[attr-defined]

    def stop_heartbeats(self) -> None:
        self._send_heartbeat = None
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None

    def _schedule_heartbeat(self, delay: float) -> None:
        self._heartbeat_timer = asyncio.get_running_loop().call_later(max(delay, 0.01), self._heartbeat)

    def _heartbeat(self) -> None:
        every = self.settings["sse_heartbeat_s"]  # type: ignore[attr-defined]
        if self._send_heartbeat is not None and time.monotonic() - self.last_write >= every * 0.99:
            self._send_heartbeat()
            self.wrote()  # handed over: the next one is a full interval later, even if still queued
        if self._send_heartbeat is not None:  # send() may have ended the stream
            self._schedule_heartbeat(every - (time.monotonic() - self.last_write))
