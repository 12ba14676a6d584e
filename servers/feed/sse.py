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
import time

from tornado.iostream import StreamClosedError

from servers.feed.outbox import Outbox, Sender
from servers.limits import holds_connection
from servers.web import ApiError, BaseHandler
from servers.wire.sse import encode_comment, encode_event

__all__ = ["SSEHandler", "encode_feed_event"]


def encode_feed_event(event: dict) -> bytes:
    return encode_event(json.dumps(event, separators=(",", ":")), id=event["seq"])


HEARTBEAT = object()  # outbox item: write a comment line (nothing was sent for ``sse_heartbeat`` s)


class SSEHandler(BaseHandler):
    kind = "sse"
    outbox: Outbox | None = None
    sender: Sender | None = None

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
        loop = asyncio.get_running_loop()
        self.ended = loop.create_future()  # done when the stream ends, whoever ends it
        self.outbox = Outbox(app.settings["outbox_limit"])
        events, missed = app.buffer.since(app.buffer.last_seq if after is None else after)
        app.subscribers.add(self)  # no await since since(): no event can slip between the two
        self._heartbeat_timer = None
        try:
            self.write(encode_event_retry(app.settings["sse_retry_ms"]))
            if missed:
                self.write(encode_event(json.dumps({"missed": missed}), event="gap"))
            for event in events:
                self.write(self._encoded(event))
            # From here on each event is written the moment it is published (servers.feed.outbox),
            # after what is buffered above: deliver() cannot run before the flush below yields.
            self.sender = Sender(self.outbox, self._write, lambda error: self._end())
            self.last_write = time.monotonic()
            await self.flush()
            self._heartbeat_timer = loop.call_later(app.settings["sse_heartbeat"], self._heartbeat)
            await self.ended
        except StreamClosedError:
            pass
        finally:
            if self._heartbeat_timer is not None:
                self._heartbeat_timer.cancel()
            app.subscribers.discard(self)

    def _encoded(self, event: dict) -> bytes:
        return self.application.buffer.encoded(event, "sse", encode_feed_event)

    def _write(self, item) -> "asyncio.Future":
        data = encode_comment("heartbeat") if item is HEARTBEAT else self._encoded(item)
        self.last_write = time.monotonic()  # the clock asyncio's loop uses, and cheaper to ask
        if self._transforms:  # e.g. compress_response: let Tornado transform the chunk
            self.write(data)
            return self.flush()
        # The head is out: this is what flush() does with one chunk, without copying it into and
        # out of the handler's buffer (with 10,000 subscribers, per-event work per subscriber counts).
        return self.request.connection.write(data)

    def _heartbeat(self) -> None:
        """A comment after ``sse_heartbeat`` s of silence, so proxies do not time the stream out."""
        every = self.application.settings["sse_heartbeat"]
        if time.monotonic() - self.last_write >= every * 0.99:
            self.sender.send(HEARTBEAT)  # refused only when the client is already too slow
        # next: a full interval after the last write (events count as signs of life too)
        silent = time.monotonic() - self.last_write
        self._heartbeat_timer = asyncio.get_running_loop().call_later(max(every - silent, 0.01), self._heartbeat)

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


def encode_event_retry(retry_ms: int) -> bytes:
    """The ``retry:`` line that opens the stream (a field line alone, then a blank line)."""
    return f"retry: {int(retry_ms)}\n\n".encode("ascii")
