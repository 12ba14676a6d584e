"""Server-Sent Events: ``GET /feed/sse`` (``text/event-stream``).

One long HTTP response; each event is written as ``id: <seq>`` + ``data: <event JSON>`` and
flushed. The stream opens with a ``retry:`` line (the reconnection delay, in ms, the browser
should use) and sends a comment line as a heartbeat when idle, so proxies do not time it out.

Resume: a reconnecting ``EventSource`` sends the last ``id`` it saw as the ``Last-Event-ID``
header; a first connection may pass ``?lastEventId=N`` instead (the header wins when both are
present). The stream then starts with the buffered events after N; without either, it carries
only events published after it opened. If some of them are no
longer buffered, a named event says so before the rest::

    event: gap
    data: {"missed": {"from": 3, "to": 41}}

It has no ``id:`` line, so it does not move the client's Last-Event-ID.

Slow consumers: see :mod:`servers.feed.outbox` - a client more than ``outbox_limit`` events
behind is disconnected and resumes from its Last-Event-ID.
"""
from __future__ import annotations

import asyncio
import json

from tornado.iostream import StreamClosedError

from servers.feed.outbox import Outbox
from servers.limits import holds_connection
from servers.web import ApiError, BaseHandler
from servers.wire.sse import encode_comment, encode_event

__all__ = ["SSEHandler", "encode_feed_event"]


def encode_feed_event(event: dict) -> bytes:
    return encode_event(json.dumps(event, separators=(",", ":")), id=event["seq"])


class SSEHandler(BaseHandler):
    kind = "sse"
    outbox: Outbox | None = None

    def _resume_after(self) -> int | None:
        """The seq to replay after, or ``None`` for "live events only" (no resume point given)."""
        raw = self.request.headers.get("Last-Event-ID")
        source = "the Last-Event-ID header"
        if raw is None:
            raw, source = self.get_argument("lastEventId", None), "the lastEventId argument"
        if raw is None or raw.strip() == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise ApiError(400, "bad_argument", f"{source} must be a seq this server sent (an integer >= 0), not {raw!r}.")
        return value

    @holds_connection("sse")  # 429 beyond max_connections_per_address (servers.limits)
    async def get(self) -> None:
        app = self.application
        after = self._resume_after()
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer this response
        self.request.connection.stream.set_nodelay(True)
        self.outbox = Outbox(app.settings["outbox_limit"])
        events, missed = app.buffer.since(app.buffer.last_seq if after is None else after)
        app.subscribers.add(self)  # no await since since(): no event can slip between the two
        try:
            self.write(encode_event_retry(app.settings["sse_retry_ms"]))
            if missed:
                self.write(encode_event(json.dumps({"missed": missed}), event="gap"))
            for event in events:
                self.write(encode_feed_event(event))
            await self.flush()
            heartbeat = app.settings["sse_heartbeat"]
            while True:
                try:
                    event = await self.outbox.get(timeout=heartbeat)
                except asyncio.TimeoutError:
                    self.write(encode_comment("heartbeat"))
                    await self.flush()
                    continue
                if event is None:
                    break  # outbox closed: the server ends this stream (drop_streams, shutdown)
                self.write(encode_feed_event(event))
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            app.subscribers.discard(self)

    def deliver(self, event: dict) -> None:
        if not self.outbox.put(event) and not self.outbox.closed:
            self.application.count_dropped(self)
            self.abort()

    def end(self) -> None:
        """End the stream cleanly (the browser reconnects with Last-Event-ID after ``retry`` ms)."""
        self.outbox.close()

    def abort(self) -> None:
        """Drop the TCP connection at once, no final chunk (a crash, or a consumer too slow)."""
        self.outbox.close()
        self.application.subscribers.discard(self)
        self.request.connection.stream.close()

    def on_connection_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.application.subscribers.discard(self)


def encode_event_retry(retry_ms: int) -> bytes:
    """The ``retry:`` line that opens the stream (a field line alone, then a blank line)."""
    return f"retry: {int(retry_ms)}\n\n".encode("ascii")
