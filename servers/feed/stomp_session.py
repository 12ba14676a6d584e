"""One STOMP session over one WebSocket (``GET /stomp``): the protocol state machine.

Subprotocols ``v12.stomp``, ``v11.stomp``, ``v10.stomp`` are accepted (the best one offered is
chosen); a client that offers none is accepted too and spoken to as STOMP 1.2. Frames may be
split across WebSocket messages or several may share one (a streaming parser is fed every
message); text and binary messages are both accepted, since STOMP clients use either.

CONNECT/STOMP → CONNECTED with the negotiated ``version`` and ``heart-beat`` (the server offers
``stomp_heartbeat_ms``, default 10 s each way; see :func:`servers.wire.stomp.negotiate_heart_beat`).
The server then sends an EOL every negotiated period and closes a client silent for twice its
period. A frame with a ``receipt`` header gets a RECEIPT after it is processed. Anything wrong
- a malformed frame, a limit exceeded (``stomp_max_headers``, ``stomp_max_header_length``,
``stomp_max_body``), a frame before CONNECT, a missing header, an unknown destination -
gets an ERROR frame (``message`` header, detail in the body), then the connection is closed.
"""
from __future__ import annotations

import asyncio
import time

import tornado.ioloop
import tornado.web
import tornado.websocket

from servers.feed.outbox import Outbox
from servers.feed.stomp import DestinationError
from servers.limits import LimitedWebSocketMixin
from servers.web import BaseWebSocketHandler
from servers.wire.stomp import (HEARTBEAT_EOL, Frame, StompError, StompParser, encode_frame,
                                negotiate_heart_beat, negotiate_version, parse_heart_beat)

__all__ = ["StompWebSocketHandler", "SUBPROTOCOLS"]

SUBPROTOCOLS = {"v12.stomp": ("1.0", "1.1", "1.2"), "v11.stomp": ("1.0", "1.1"), "v10.stomp": ("1.0",)}
_CLOSE = object()  # outbox item: close the WebSocket after what was queued before it


class _ProtocolError(Exception):
    def __init__(self, message: str, detail: str = "", close_code: int = 1002) -> None:
        super().__init__(message)
        self.message, self.detail, self.close_code = message, detail or message, close_code


class StompWebSocketHandler(LimitedWebSocketMixin, BaseWebSocketHandler):
    kind = "stomp"
    outbox: Outbox | None = None

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        for name in SUBPROTOCOLS:
            if name in subprotocols:
                return name
        return None  # none offered (or none we speak): accepted anyway, as 1.2

    def open(self) -> None:
        settings = self.application.settings
        self.set_nodelay(True)
        self.session_id = self.application.stomp.new_session_id()
        self.version: str | None = None  # set by CONNECT
        self.subscriptions: dict[str, str] = {}  # subscription id -> destination
        self.parser = StompParser(max_headers=settings["stomp_max_headers"],
                                  max_header_length=settings["stomp_max_header_length"],
                                  max_body=settings["stomp_max_body"])
        self.outbox = Outbox(settings["outbox_limit"])
        self.last_received = time.monotonic()
        self.timers: list[tornado.ioloop.PeriodicCallback] = []
        self.sender = asyncio.ensure_future(self._send_loop())
        if not self.take_connection_slot():  # refused: closed with 1013 (servers.limits)
            self.outbox.close()

    # --- sending ------------------------------------------------------------------------------
    def subscriptions_to(self, destination: str) -> list[str]:
        return [sub_id for sub_id, dest in self.subscriptions.items() if dest == destination]

    def send_frame(self, frame: Frame) -> None:
        if not self.outbox.put(frame):
            if not self.outbox.closed:
                self.application.count_dropped(self)
                self.outbox.close()
                self.close(1008, "too slow: outbox full")

    async def _send_loop(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if item is None:
                    return
                if item is _CLOSE:
                    self.close(self._close_code, self._close_reason)
                    return
                try:
                    data = HEARTBEAT_EOL if isinstance(item, bytes) else encode_frame(item, escape=self.version != "1.0")
                except ValueError as exc:  # e.g. a newline in a header, unsendable to a STOMP 1.0 client
                    tornado.web.app_log.warning("STOMP frame not sent to %s: %s", self.session_id, exc)
                    continue
                await self.write_message(data.decode("utf-8", errors="replace"))
        except tornado.websocket.WebSocketClosedError:
            pass

    def _fail(self, message: str, detail: str, close_code: int, receipt: str | None = None) -> None:
        headers = {"message": message.replace("\n", " ")[:200], "content-type": "text/plain"}
        if receipt:
            headers["receipt-id"] = receipt
        self.send_frame(Frame("ERROR", headers, detail.encode("utf-8")))
        self._close_code, self._close_reason = close_code, message[:100]
        self.outbox.put(_CLOSE)
        self.outbox.seal()  # nothing after the ERROR frame
        self._stop_timers()

    # --- receiving ----------------------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        if self.outbox.closed or self.message_too_big(message):  # closing (with 1009 if too big)
            return
        if not self.message_allowed():
            return self._fail("rate limit exceeded", self.rate_limit_reason(), 1008)
        self.last_received = time.monotonic()
        data = message.encode("utf-8") if isinstance(message, str) else message
        try:
            frames = self.parser.feed(data)
        except StompError as exc:
            return self._fail("frame too large" if exc.too_large else "malformed frame", str(exc),
                              1009 if exc.too_large else 1002)
        for frame in frames:
            receipt = frame.headers.get("receipt")
            try:
                await self._handle(frame)
            except _ProtocolError as exc:
                return self._fail(exc.message, exc.detail, exc.close_code, receipt)
            except DestinationError as exc:
                return self._fail("unknown destination", str(exc), 1008, receipt)
            except Exception as exc:  # a mapped handler failed: tell the client, log it here
                tornado.web.app_log.exception("STOMP handler failed")
                return self._fail("handler failed", f"{type(exc).__name__}: {exc}", 1011, receipt)
            if receipt and frame.command not in ("CONNECT", "STOMP"):
                self.send_frame(Frame("RECEIPT", {"receipt-id": receipt}))
            if frame.command == "DISCONNECT":
                self._close_code, self._close_reason = 1000, "DISCONNECT"
                self.outbox.put(_CLOSE)
                self.outbox.seal()
                return

    async def _handle(self, frame: Frame) -> None:
        command, headers = frame.command, frame.headers
        if self.version is None and command not in ("CONNECT", "STOMP"):
            raise _ProtocolError("not connected", f"The first frame must be CONNECT or STOMP, not {command}.")
        if command in ("CONNECT", "STOMP"):
            return self._connect(frame)
        broker = self.application.stomp
        if command == "SUBSCRIBE":
            destination = self._require(frame, "destination")
            sub_id = headers.get("id") or (destination if self.version == "1.0" else self._require(frame, "id"))
            if not destination.startswith("/topic/") or len(destination) <= len("/topic/"):
                raise DestinationError(f"Cannot subscribe to {destination!r}: subscribe to /topic/<name>.")
            if sub_id in self.subscriptions:
                raise _ProtocolError("duplicate subscription id", f"Subscription id {sub_id!r} is already in use.")
            self.subscriptions[sub_id] = destination
        elif command == "UNSUBSCRIBE":
            sub_id = headers.get("id") or (headers.get("destination") if self.version == "1.0" else None)
            if sub_id is None:
                raise _ProtocolError("missing header", "UNSUBSCRIBE needs an 'id' header.")
            self.subscriptions.pop(sub_id, None)
            if self.version == "1.0":  # 1.0 may unsubscribe by destination
                for key in self.subscriptions_to(sub_id):
                    del self.subscriptions[key]
        elif command == "SEND":
            destination = self._require(frame, "destination")
            if destination.startswith("/app/"):
                await broker.dispatch(destination, frame)
            else:
                broker.send(destination, frame.body, headers.get("content-type"))
        elif command in ("ACK", "NACK", "DISCONNECT"):
            pass  # subscriptions are ack:auto; DISCONNECT closes after its RECEIPT
        else:
            raise _ProtocolError("not supported", f"{command} (transactions) is not supported by this broker.")

    def _connect(self, frame: Frame) -> None:
        if self.version is not None:
            raise _ProtocolError("already connected", "CONNECT was already received on this connection.")
        allowed = SUBPROTOCOLS.get(self.selected_subprotocol or "v12.stomp", SUBPROTOCOLS["v12.stomp"])
        version = negotiate_version(frame.headers.get("accept-version"), allowed)
        if version is None:
            raise _ProtocolError("version not supported",
                                 f"Supported protocol versions are {','.join(allowed)}.")
        try:
            client_hb = parse_heart_beat(frame.headers.get("heart-beat"))
        except StompError as exc:
            raise _ProtocolError("bad heart-beat", str(exc)) from None
        server_hb = tuple(self.application.settings["stomp_heartbeat_ms"])
        incoming, outgoing = negotiate_heart_beat(client_hb, server_hb)
        self.version = version
        self.parser.escape = version != "1.0"
        self.heart_beat = (incoming, outgoing)
        self.application.stomp.sessions.add(self)
        self.send_frame(Frame("CONNECTED", {"version": version, "heart-beat": f"{server_hb[0]},{server_hb[1]}",
                                            "server": "server-push-lab/0.1", "session": self.session_id}))
        if outgoing:
            self._start_timer(lambda: self.outbox.put(HEARTBEAT_EOL), outgoing)
        if incoming:
            self._start_timer(lambda: self._check_alive(incoming), incoming)

    def _check_alive(self, period_ms: int) -> None:
        if time.monotonic() - self.last_received > 2 * period_ms / 1000:
            self._fail("heart-beat timeout", f"Nothing received for over {2 * period_ms} ms.", 1001)

    def _start_timer(self, fn, period_ms: int) -> None:
        timer = tornado.ioloop.PeriodicCallback(fn, period_ms)
        timer.start()
        self.timers.append(timer)

    def _stop_timers(self) -> None:
        for timer in self.timers:
            timer.stop()
        self.timers.clear()

    @staticmethod
    def _require(frame: Frame, name: str) -> str:
        value = frame.headers.get(name)
        if not value:
            raise _ProtocolError("missing header", f"{frame.command} needs a {name!r} header.")
        return value

    def on_close(self) -> None:
        self._stop_timers()
        self.application.stomp.sessions.discard(self)
        if self.outbox is not None:
            self.outbox.close()
