"""The browser's four ways to learn a ticket's state: short poll, long poll, SSE, WebSocket.

Short polling reads Redis on every request, so it sees a change made on any server: it is the
one transport the bug cannot touch. The other three hold a channel on *this* server and wait
for ``app.push`` to deliver; with no fix, a change made on another server never arrives (a long
poll still answers when it times out, with the state read from Redis then).

Every channel (long poll aside) sends the current state first, then each change once, in
version order (``Subscription`` drops anything not newer). SSE uses ``id: <version>`` and
resumes after ``Last-Event-ID`` (or ``?lastEventId=``), with the feed server's ``retry:`` line,
heartbeats and resume rule (:mod:`servers.eventstream`); the WebSocket does the same with
``?after=v`` on connect (and replays on ``{"after": v}``). A channel ends after a terminal
state (``redeemed``, ``expired``); an SSE reconnect after the end gets 204, which tells the
browser to stop reconnecting. A resume the ``streams`` fix's log cannot honour starts with its
gap notice (``event: gap`` on SSE, ``{"type": "gap"}`` on the WebSocket; see that fix).
"""
from __future__ import annotations

import asyncio
import json

from servers.eventstream import HEARTBEAT_COMMENT, EventStreamMixin
from servers.qrlogin.base import TICKET_ID, QRHandler, QRHandlerMixin
from servers.qrlogin.tickets import STATES, TERMINAL
from servers.limits import LimitedWebSocketMixin, holds_connection
from servers.outbox import Outbox, Sender
from servers.web import ApiError, BaseHandler, BaseWebSocketHandler, loads_json
from servers.wire.sse import encode_event


HEARTBEAT = object()  # an SSE outbox item: a comment line, after sse_heartbeat_s of silence


def sse_message(event: dict) -> bytes:
    """One SSE message: ``id: <version>`` and the event as JSON in one ``data:`` line. A notice
    (``type``, no version: the ``streams`` fix's gap) is a named event without ``id:``, so it
    does not move the browser's Last-Event-ID."""
    if "version" not in event:
        notice = {k: v for k, v in event.items() if k != "type"}
        return encode_event(json.dumps(notice, separators=(",", ":")), event=event["type"])
    return encode_event(json.dumps(event, separators=(",", ":")), id=event["version"])


class PollHandler(QRHandler):
    """``GET /api/tickets/{id}``: the state now, straight from Redis (short polling)."""

    async def get(self, ticket_id: str) -> None:
        self.require_same_site()
        ticket = await self.load_ticket(ticket_id)
        self.set_header("Cache-Control", "no-store")
        self.write_json(ticket.public())


class LongPollHandler(QRHandler):
    """``GET /api/tickets/{id}/longpoll?state=s&timeout=S``: answer when the state is not ``s``.

    Waits on this server's push hub; after ``timeout`` seconds it answers 200 with the state
    read from Redis then (``"timed_out": true``). Without ``state`` it answers at once.
    """

    sub = None
    waiter: asyncio.Future | None = None

    @holds_connection("longpoll")  # 429 beyond max_connections_per_address (servers.limits)
    async def get(self, ticket_id: str) -> None:
        self.require_same_site()
        known = self.get_argument("state", None)
        if known is not None and known not in STATES:
            raise ApiError(400, "bad_argument", f"Query argument 'state' must be one of {', '.join(STATES)}, not {known!r}.")
        timeout = self.float_argument("timeout", 30.0, minimum=0.0, maximum=self.settings["longpoll_max_s"])
        self.waiter = asyncio.get_running_loop().create_future()

        def on_event(event: dict) -> None:
            if event["state"] != known and not self.waiter.done():
                self.waiter.set_result(event)

        self.sub = self.qr.push.subscribe(ticket_id, on_event)  # before reading: no change slips between
        ticket = await self.load_ticket(ticket_id)
        timed_out = False
        if known is not None and ticket.state == known and not ticket.terminal:
            timer = self.schedule_expiry(ticket)
            done, _ = await asyncio.wait([self.waiter], timeout=timeout)
            if timer:
                timer.cancel()
            if self.request.connection.stream is None or self.request.connection.stream.closed():
                return  # the browser went away while we waited
            timed_out = not done
            ticket = await self.load_ticket(ticket_id)
        self.set_header("Cache-Control", "no-store")
        self.write_json({**ticket.public(), "timed_out": timed_out})

    def on_connection_close(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.on_finish()

    def on_finish(self) -> None:
        if self.sub is not None:
            self.sub.close()


class EventsHandler(EventStreamMixin, QRHandler):
    """``GET /api/tickets/{id}/events``: Server-Sent Events, one message per state change.

    Written through a bounded outbox (:mod:`servers.outbox`): a browser that reads nothing while
    more than ``outbox_limit`` messages wait is dropped (``push.stats["dropped_slow"]``) and
    resumes with ``Last-Event-ID`` when it reconnects, instead of growing the server's memory.
    """

    cache_control = "no-store"  # login state: kept out of every cache, as on all of this app's routes
    sub = None
    done: asyncio.Future | None = None
    expiry = None
    outbox: Outbox | None = None
    sender: Sender | None = None

    @holds_connection("sse")  # 429 beyond max_connections_per_address (servers.limits)
    async def get(self, ticket_id: str) -> None:
        self.require_same_site()
        last = self.last_event_id() or 0  # no resume point: from the start, the current state first
        ticket = await self.load_ticket(ticket_id)
        if ticket.terminal and ticket.version <= last:
            self.set_status(204)  # nothing more will come: 204 stops EventSource reconnecting
            self.finish()
            return
        self.done = asyncio.get_running_loop().create_future()
        self.begin_event_stream()  # headers and the retry: line (servers.eventstream)
        self.outbox = Outbox(self.settings["outbox_limit"])
        self.sender = Sender(self.outbox, self._write, lambda error: self._end(False))
        self.sub = self.qr.push.subscribe(ticket_id, self.send_event, after=last)
        for event in await self.qr.push.history(ticket_id, last):
            self.sub.deliver(event)
        if not self.done.done():
            self.flush_quietly()  # the head and the retry: line, even with nothing to send yet
            self.expiry = self.schedule_expiry(ticket)
            self.start_heartbeats(self.send_heartbeat)
        await self.done
        self.cleanup()  # Tornado finishes the response when get() returns, unless it is finished

    def send_event(self, event: dict) -> None:
        if self.done is None or self.done.done() or self.sender is None:
            return
        if not self.sender.send(event):
            self.drop_too_slow()

    def send_heartbeat(self) -> None:
        if self.done is not None and not self.done.done() and self.sender is not None:
            if not self.sender.send(HEARTBEAT):
                self.drop_too_slow()

    def _write(self, item) -> "asyncio.Future | None":
        """Write one outbox item; the future of its flush, or None for the last event (the response
        then ends, and Tornado's finish() flushes it)."""
        self.write(HEARTBEAT_COMMENT if item is HEARTBEAT else sse_message(item))
        self.wrote()
        if item is not HEARTBEAT and item.get("state") in TERMINAL:
            self._end(True)
            return None
        return self.flush()

    def drop_too_slow(self) -> None:
        """More than ``outbox_limit`` messages wait for this browser: drop the connection at once."""
        self.qr.push.stats["dropped_slow"] += 1
        self._end(False)
        stream = self.request.connection.stream
        if stream is not None:
            stream.close()

    def _end(self, finished: bool) -> None:
        if self.outbox is not None:
            self.outbox.close()
        if self.done is not None and not self.done.done():
            self.done.set_result(finished)

    def flush_quietly(self) -> None:
        future = self.flush()
        future.add_done_callback(lambda f: f.exception())  # a closed stream is handled by on_connection_close

    def on_connection_close(self) -> None:
        self._end(False)
        self.cleanup()

    def cleanup(self) -> None:
        if self.sub is not None:
            self.sub.close()
        self.stop_heartbeats()
        if self.expiry is not None:
            self.expiry.cancel()


class TicketSocketHandler(LimitedWebSocketMixin, QRHandlerMixin, BaseWebSocketHandler):
    """``GET /api/tickets/{id}/ws``: one JSON message per state change; ``{"after": v}`` replays.

    ``?after=v`` on the URL resumes a reconnecting socket (like SSE's ``Last-Event-ID``): the
    first messages are then the changes after version ``v`` instead of the current state.

    An unknown ticket is a JSON 404 before the upgrade. A cross-site Origin is accepted at the
    handshake and then closed with 1008 (policy), as the contract says, before anything is sent;
    so is a handshake that carries the app's cookies but no Origin (browsers always send one).
    Non-JSON or unknown messages close with 1003; messages over 64 KiB with 1009 (Tornado); a text
    message that is not UTF-8 with 1007 (``servers.web``).
    """

    sub = None
    expiry = None
    ticket_id = ""
    outbox: Outbox | None = None
    sender: Sender | None = None

    def check_origin(self, origin: str) -> bool:
        return True  # checked in open() so the refusal is a close 1008, not a bare 403

    async def prepare(self) -> None:
        ticket_id = self.path_args[0] if self.path_args else ""
        self.after = BaseHandler.int_argument(self, "after", 0, minimum=0)  # ?after=v resumes, like Last-Event-ID
        self.ticket = await self.load_ticket(ticket_id)

    async def open(self, ticket_id: str) -> None:
        self.ticket_id = ticket_id
        if not self.take_connection_slot():  # closed with 1013 (servers.limits)
            return
        refusal = self.socket_origin_refusal()  # foreign Origin, or cookies without an Origin
        if refusal:
            self.close(1008, refusal)
            return
        self.set_nodelay(True)
        # Through a bounded outbox (servers.outbox): a browser that reads nothing while more than
        # outbox_limit messages wait (replays it asked for included) is closed with 1008.
        self.outbox = Outbox(self.settings["outbox_limit"])
        self.sender = Sender(self.outbox, self._write, lambda error: None)  # a failed write: on_close follows
        self.sub = self.qr.push.subscribe(ticket_id, self.send_event, after=self.after)
        for event in await self.qr.push.history(ticket_id, self.after):
            self.sub.deliver(event)
        if self.ticket.terminal and self.ticket.version <= self.after and self.ws_connection is not None:
            self.close(1000, self.ticket.state)  # resumed after the end: nothing more will come
        if self.ws_connection is not None:
            self.expiry = self.schedule_expiry(self.ticket)

    def send_event(self, event: dict) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing() or self.sender is None:
            return
        if not self.sender.send(event) and not self.outbox.closed:
            self.qr.push.stats["dropped_slow"] += 1
            self.outbox.close()
            self.close(1008, f"too slow: more than {self.outbox.limit} messages waiting")

    def _write(self, event: dict) -> "asyncio.Future | None":
        """Write one message; the future of its write (the outbox holds the next ones until then)."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return None
        future = self.write_message(json.dumps(event, separators=(",", ":")))
        future.add_done_callback(lambda f: f.exception())  # a closed socket is handled by on_close
        if event.get("state") in TERMINAL:
            self.outbox.close()
            self.close(1000, event["state"])
        return future

    async def on_message(self, message) -> None:
        if self.message_too_big(message):  # closing with 1009
            return
        if not self.message_allowed():
            self.close(1008, self.rate_limit_reason())
            return
        if isinstance(message, bytes):
            self.close(1003, "binary messages are not supported; send JSON text")
            return
        try:
            request = loads_json(message)  # deep nesting would raise RecursionError
        except ValueError:
            self.close(1003, "messages must be JSON, e.g. {\"after\": 2}")
            return
        after = request.get("after") if isinstance(request, dict) else None
        if not isinstance(after, int) or isinstance(after, bool) or after < 0 or self.sub is None:
            self.close(1003, "unknown message; the only one understood is {\"after\": <version>}")
            return
        self.sub.last_version = after  # the browser says what it has; replay what is newer
        for event in await self.qr.push.history(self.ticket_id, after):
            self.sub.deliver(event)

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        if self.sub is not None:
            self.sub.close()
        if self.expiry is not None:
            self.expiry.cancel()


def routes() -> list[tuple]:
    return [
        (rf"/api/tickets/{TICKET_ID}", PollHandler),
        (rf"/api/tickets/{TICKET_ID}/longpoll", LongPollHandler),
        (rf"/api/tickets/{TICKET_ID}/events", EventsHandler),
        (rf"/api/tickets/{TICKET_ID}/ws", TicketSocketHandler),
    ]


__all__ = ["routes", "sse_message", "PollHandler", "LongPollHandler", "EventsHandler", "TicketSocketHandler"]
