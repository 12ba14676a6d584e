"""Server-Sent Events: ``GET /feed/sse`` (``text/event-stream``).

One long HTTP response; each event is written as ``id: <seq>`` + ``data: <event JSON>`` and
flushed. The stream opens with a ``retry:`` line (``sse_retry_ms``, the reconnection delay the
browser should use) and sends a comment line as a heartbeat after ``sse_heartbeat_s`` of
silence, so proxies do not time it out: the same rules as the QR-login app's stream, from the
same code (:mod:`servers.eventstream`).

Resume: a reconnecting ``EventSource`` sends the last ``id`` it saw as the ``Last-Event-ID``
header; a first connection may pass ``?lastEventId=N`` instead (the header wins when both are
present; anything but a non-negative integer is a JSON 400 ``bad_last_event_id``). The stream
then starts with the buffered events after N; without either, it carries only events published
after it opened. If some of them are no longer buffered, a named event says so before the rest::

    event: gap
    data: {"missed": {"from": 3, "to": 41}, "first": 42, "epoch": "9f2c41d0"}

``first`` is the id of the next event sent. The same event, with ``"reset": true``, answers a
resume point this server cannot have given: an id above any it gave, or one sent with
``?epoch=E`` naming another run of the feed - after a restart, when ids start again at 1. The
stream then carries every buffered event from ``first``, ids lower than the one asked for, and
the gap event says so first: ids never silently go backwards. ``missed`` is then the range of this
run's ids no longer buffered, or ``null``. The response's ``X-Feed-Epoch`` header names this
run's buffer (:mod:`servers.feed.buffer`); a client that remembers it sends it back as
``?epoch=`` when it resumes, which catches even a restarted feed that has already passed the
old id. The gap event has no ``id:`` line, so it does not move the client's Last-Event-ID; it is
the SSE twin of the WebSocket's ``{"type": "gap", ...}`` notice.

Slow consumers: see :mod:`servers.outbox` - a client more than ``outbox_limit`` events
behind is disconnected and resumes from its Last-Event-ID.
"""
from __future__ import annotations

import asyncio
import json

from tornado.iostream import StreamClosedError

from servers.eventstream import HEARTBEAT_COMMENT, EventStreamMixin
from servers.outbox import Outbox, Sender
from servers.limits import holds_connection
from servers.socketwrite import http_chunk, response_framing, send_now
from servers.web import BaseHandler
from servers.wire.sse import encode_event

__all__ = ["SSEHandler", "encode_feed_event"]


def encode_feed_event(event: dict) -> bytes:
    return encode_event(json.dumps(event, separators=(",", ":")), id=event["seq"])


def _chunked_feed_event(event: dict) -> bytes:
    return http_chunk(encode_feed_event(event))


HEARTBEAT = object()  # outbox item: write a comment line (nothing was sent for ``sse_heartbeat_s``)
_HEARTBEAT_CHUNK = http_chunk(HEARTBEAT_COMMENT)


class SSEHandler(EventStreamMixin, BaseHandler):
    kind = "sse"
    outbox: Outbox | None = None
    sender: Sender | None = None
    framing: str | None = None  # "chunked", "raw" or "tornado": how events are written (_write)

    @holds_connection("sse")  # 429 beyond max_connections_per_address (servers.limits)
    async def get(self) -> None:
        app = self.application
        after = self.last_event_id()  # None: live events only (no resume point given)
        epoch = self.get_argument("epoch", None) if after is not None else None
        loop = asyncio.get_running_loop()
        self.ended = loop.create_future()  # done when the stream ends, whoever ends it
        self.outbox = Outbox(app.settings["outbox_limit"])
        events, gap = app.buffer.resume(app.buffer.last_seq if after is None else after, epoch)
        app.subscribers.add(self)  # no await since resume(): no event can slip between the two
        try:
            self.set_header("X-Feed-Epoch", app.buffer.epoch)
            self.begin_event_stream()  # headers and the retry: line (servers.eventstream)
            if gap:
                self.write(encode_event(json.dumps(gap), event="gap"))
            for event in events:
                self.write(self._encoded(event))
            # From here on each event is written the moment it is published (servers.outbox),
            # after what is buffered above: deliver() cannot run before the flush below yields.
            # bound methods, not closures: a lambda over self is three objects per connection
            self.sender = Sender(self.outbox, self._write, self._write_failed)
            await self.flush()
            self.wrote()
            self.start_heartbeats(self._queue_heartbeat)
            await self.ended
        except StreamClosedError:
            pass
        finally:
            self.stop_heartbeats()
            app.subscribers.discard(self)

    def _encoded(self, event: dict) -> bytes:
        return self.application.buffer.encoded(event, "sse", encode_feed_event)

    def _write(self, item) -> "asyncio.Future | None":
        self.wrote()
        if self.framing is None:  # decided once, at the first write after the head went out
            self.framing = "tornado" if self.application.transforms else \
                (response_framing(self.request.connection) or "tornado")
        if self.framing == "chunked":
            # Framed once per event for every subscriber, straight to the socket when nothing
            # waits before it (servers.socketwrite): with 10,000 subscribers, per-event work per
            # subscriber is the whole cost of a fan-out.
            return send_now(self.request.connection.stream, _HEARTBEAT_CHUNK if item is HEARTBEAT else
                            self.application.buffer.encoded(item, "sse-chunk", _chunked_feed_event))
        data = HEARTBEAT_COMMENT if item is HEARTBEAT else self._encoded(item)
        if self.framing == "raw":  # HTTP/1.0: the body runs to the close
            return send_now(self.request.connection.stream, data)
        self.write(data)  # e.g. compress_response: Tornado transforms the chunk
        return self.flush()

    def _queue_heartbeat(self) -> None:
        self.sender.send(HEARTBEAT)  # refused only when already too slow

    def _write_failed(self, error: BaseException) -> None:
        self._end()

    def deliver(self, event: dict) -> None:
        if not self.sender.send(event) and not self.outbox.closed:
            self.application.count_dropped(self)
            self.abort()

    def _end(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        if not self.ended.done():
            self.ended.set_result(None)

    def end(self) -> None:
        """End the stream cleanly (the browser reconnects with Last-Event-ID after ``retry`` ms)."""
        self._end()

    def abort(self) -> None:
        """Drop the TCP connection at once, no final chunk (a crash, or a consumer too slow)."""
        self._end()
        self.application.subscribers.discard(self)
        self.request.connection.stream.close()

    def on_connection_close(self) -> None:
        if self.outbox is not None:
            self._end()
        self.application.subscribers.discard(self)

