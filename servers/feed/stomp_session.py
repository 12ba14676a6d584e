"""One STOMP session over one WebSocket (``GET /stomp``): the protocol state machine.

Subprotocols ``v12.stomp``, ``v11.stomp``, ``v10.stomp`` are accepted: the client's first one we
speak is chosen, since the client lists them "ordered by preference" (RFC 6455 §4.1; the server
picks "one of the values", §4.2.2). The version is then CONNECT's business: ``accept-version``
agrees on the highest version both speak (STOMP 1.2, "Protocol Negotiation"), whatever name the
``101`` carried. IANA's WebSocket Subprotocol Name Registry lists each name for one version, but
clients that offer several rely on ``accept-version`` (the old ``stomp.js`` of Spring's guides
offers ``v10.stomp, v11.stomp``; ``@stomp/stompjs`` offers ``v12.stomp, v11.stomp, v10.stomp``),
and Spring's server does exactly this; bounding the version by the name would speak STOMP 1.0 (no
heart-beats, no NACK) to every client of the first kind. A
client that offers no subprotocol is accepted too. Frames may be
split across WebSocket messages or several may share one (a streaming parser is fed every
message); text and binary messages are both accepted, since STOMP clients use either. A body is
any bytes (``content-length`` says how many, NULs included): a frame goes out as a text message
when it is UTF-8 and as a binary message otherwise, so that no byte is replaced on the way (a
text WebSocket message must be UTF-8: RFC 6455 §5.6; one that is not is closed with 1007).

CONNECT/STOMP → CONNECTED with the negotiated ``version``, ``heart-beat``, and ``user-name`` when
``login``/``passcode`` named a user (:mod:`servers.feed.stomp`: user destinations) (the server offers
``stomp_heartbeat_ms``, default 10 s each way; see :func:`servers.wire.stomp.negotiate_heart_beat`).
The server then sends an EOL every negotiated period and closes a client silent for twice its
period. A frame with a ``receipt`` header gets a RECEIPT after it is processed. Anything wrong
- a malformed frame, a limit exceeded (``stomp_max_headers``, ``stomp_max_header_length``,
``stomp_max_body``), a frame before CONNECT, a missing header, an unknown destination -
gets an ERROR frame (``message`` header, detail in the body), then the connection is closed.
A CONNECT offering no version we speak gets ERROR with a ``version`` header listing ours. Only
SEND may carry a body (the spec: other client frames MUST NOT); a body elsewhere is an error.

Acknowledgement (``SUBSCRIBE`` header ``ack``): ``auto`` (the default) needs nothing. With
``client`` or ``client-individual`` each MESSAGE carries an ``ack`` header, and the client answers
``ACK``/``NACK`` with ``id:<that value>`` (STOMP 1.0 and 1.1: ``message-id``, the same value).
``client`` acknowledgements are cumulative: they cover every earlier unacknowledged message of
the subscription; ``client-individual`` ones cover that message alone. An id that is not
awaiting acknowledgement (never sent, or already acknowledged) is an error. The spec leaves what
happens to a NACKed or never-acknowledged message to the server; this broker's policy:

* NACK: the message is delivered again, once, to the same subscription, with the header
  ``redelivered:true`` (and the same ``message-id`` and ``ack``); a NACK of that redelivery
  discards it. Nobody else is owed it: on a topic each subscription gets its own copy.
* still unacknowledged when the subscription ends (UNSUBSCRIBE) or the connection does
  (DISCONNECT, a drop): discarded, for the same reason (the spec: the server MAY redeliver it
  to another client). ``app.stomp.stats`` counts ``acked``, ``nacked``, ``redelivered`` and
  ``discarded``.
* a client that lets more than ``outbox_limit`` messages wait for acknowledgement is too slow:
  ERROR, then close (1008), as for a full outbox.

Transactions: ``BEGIN`` ``transaction:<t>``, then SEND, ACK and NACK frames carrying
``transaction:<t>`` are held (at most ``outbox_limit``) and run in order at ``COMMIT``, or dropped at
``ABORT``; a transaction still open when the connection ends is aborted. An unknown or repeated
transaction name is an error.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import tornado.ioloop
import tornado.web
import tornado.websocket

from servers.outbox import Outbox
from servers.feed.stomp import USER_PREFIX, AuthenticationError, DestinationError, user_queue
from servers.limits import LimitedWebSocketMixin
from servers.web import BaseWebSocketHandler
from servers.wire.stomp import (HEARTBEAT_EOL, SUPPORTED_VERSIONS, Frame, StompError, StompParser, encode_frame,
                                negotiate_heart_beat, negotiate_version, parse_heart_beat)

__all__ = ["StompWebSocketHandler", "SUBPROTOCOLS"]

SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
ACK_MODES = ("auto", "client", "client-individual")
_CLOSE = object()  # outbox item: close the WebSocket after what was queued before it


@dataclass
class _Unacked:
    """A MESSAGE sent on a ``client``/``client-individual`` subscription, awaiting ACK or NACK."""

    subscription: str
    frame: Frame
    redelivered: bool = False


class _ProtocolError(Exception):
    def __init__(self, message: str, detail: str = "", close_code: int = 1002,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message, self.detail, self.close_code = message, detail or message, close_code
        self.headers = headers or {}


class StompWebSocketHandler(LimitedWebSocketMixin, BaseWebSocketHandler):
    kind = "stomp"
    outbox: Outbox | None = None

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """The client's first choice among ours: it lists them in order of preference (RFC 6455 §4.1)."""
        return next((name for name in subprotocols if name in SUBPROTOCOLS), None)  # None: accepted, as 1.2

    def open(self) -> None:
        settings = self.application.settings
        self.set_nodelay(True)
        self.session_id = self.application.stomp.new_session_id()
        self.version: str | None = None  # set by CONNECT
        self.user: str | None = None  # set by CONNECT's login/passcode; None: anonymous
        self.subscriptions: dict[str, str] = {}  # subscription id -> destination
        self.ack_modes: dict[str, str] = {}  # subscription id -> auto, client or client-individual
        self.unacked: dict[str, _Unacked] = {}  # ack id -> message, in the order sent
        self.transactions: dict[str, list[Frame]] = {}  # name -> frames held until COMMIT
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

    def send_message(self, frame: Frame) -> None:
        """A MESSAGE for one of this session's subscriptions: with an ``ack`` header, and kept until
        acknowledged, when the subscription asked for explicit acknowledgement."""
        sub_id = frame.headers["subscription"]
        if self.ack_modes.get(sub_id, "auto") != "auto" and not self.outbox.closed:
            if len(self.unacked) >= self.outbox.limit:
                return self._fail("too many unacknowledged messages", f"More than {self.outbox.limit} messages "
                                  "await ACK or NACK on this connection.", 1008)
            ack = frame.headers.setdefault("ack", frame.headers["message-id"])
            self.unacked[ack] = _Unacked(sub_id, frame, frame.headers.get("redelivered") == "true")
        self.send_frame(frame)

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
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:  # a body of other bytes: sent as they are, in a binary message
                    await self.write_message(data, binary=True)
                else:
                    await self.write_message(text)
                item = data = text = None  # the frame is out: not kept while the next one is awaited
        except tornado.websocket.WebSocketClosedError:
            pass

    def _fail(self, message: str, detail: str, close_code: int, receipt: str | None = None,
              extra: dict[str, str] | None = None) -> None:
        if self.outbox.closed:
            return  # already failing or closed: one ERROR at most
        headers = {"message": message.replace("\n", " ")[:200], "content-type": "text/plain", **(extra or {})}
        if receipt:
            headers["receipt-id"] = receipt
        self.send_frame(Frame("ERROR", headers, detail.encode("utf-8")))
        self._close_code, self._close_reason = close_code, message[:100]
        self.outbox.put(_CLOSE)
        self.outbox.seal()  # nothing after the ERROR frame
        self._stop_timers()

    # --- receiving ----------------------------------------------------------------------------
    def refuse_invalid_text(self) -> None:
        """A text WebSocket message that is not UTF-8 (servers.web): ERROR, then close with 1007."""
        self._fail("invalid UTF-8", "A text WebSocket message must be valid UTF-8 (RFC 6455); send a frame whose "
                   "body is other bytes in a binary message.", 1007)

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
                return self._fail(exc.message, exc.detail, exc.close_code, receipt, exc.headers)
            except DestinationError as exc:
                return self._fail("unknown destination", str(exc), 1008, receipt)
            except AuthenticationError as exc:
                return self._fail("authentication failed", str(exc), 1008, receipt)
            except Exception as exc:  # a mapped handler failed: tell the client, log it here
                tornado.web.app_log.exception("STOMP handler failed")
                return self._fail("handler failed", f"{type(exc).__name__}: {exc}", 1011, receipt)
            if receipt and frame.command not in ("CONNECT", "STOMP"):
                self.send_frame(Frame("RECEIPT", {"receipt-id": receipt}))
            if frame.command == "DISCONNECT":
                self._end_session()
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
        if frame.body and command != "SEND":
            raise _ProtocolError("unexpected body", f"A {command} frame must not have a body (only SEND may).")
        if command in ("SEND", "ACK", "NACK") and "transaction" in headers:
            return self._hold(frame)
        if command == "SUBSCRIBE":
            destination = self._require(frame, "destination")
            sub_id = headers.get("id") or (destination if self.version == "1.0" else self._require(frame, "id"))
            destination = self._subscribable(destination)
            if sub_id in self.subscriptions:
                raise _ProtocolError("duplicate subscription id", f"Subscription id {sub_id!r} is already in use.")
            ack = headers.get("ack", "auto")
            if ack not in ACK_MODES:
                raise _ProtocolError("bad ack mode", f"ack must be one of {', '.join(ACK_MODES)}, not {ack[:40]!r}.")
            self.subscriptions[sub_id] = destination
            self.ack_modes[sub_id] = ack
        elif command == "UNSUBSCRIBE":
            sub_id = headers.get("id") or (headers.get("destination") if self.version == "1.0" else None)
            if sub_id is None:
                raise _ProtocolError("missing header", "UNSUBSCRIBE needs an 'id' header.")
            ended = [sub_id] if sub_id in self.subscriptions else []
            if self.version == "1.0":  # 1.0 may unsubscribe by destination
                ended += self.subscriptions_to(sub_id)
                if sub_id.startswith(USER_PREFIX + "/"):
                    ended += self.subscriptions_to(user_queue(sub_id, self.session_id))
            for key in ended:
                self._unsubscribe(key)
        elif command == "SEND":
            await self._send(frame)
        elif command in ("ACK", "NACK"):
            self._acknowledge(frame)
        elif command == "BEGIN":
            name = self._require(frame, "transaction")
            if name in self.transactions:
                raise _ProtocolError("duplicate transaction", f"Transaction {name!r} has already begun.")
            self.transactions[name] = []
        elif command in ("COMMIT", "ABORT"):
            name = self._require(frame, "transaction")
            if name not in self.transactions:
                raise _ProtocolError("unknown transaction", f"No transaction {name!r} is open on this connection.")
            held = self.transactions.pop(name)
            for each in held if command == "COMMIT" else ():  # ABORT: dropped
                if each.command == "SEND":
                    await self._send(each)
                else:
                    self._acknowledge(each)
        elif command != "DISCONNECT":  # DISCONNECT: on_message sends its RECEIPT, then closes
            raise _ProtocolError("not supported", f"{command} is a server frame; a client cannot send it.")

    async def _send(self, frame: Frame) -> None:
        broker = self.application.stomp
        destination = self._require(frame, "destination")
        if destination.startswith("/app/"):
            await broker.dispatch(destination, frame, self)
            return
        if destination == broker.FEED_TOPIC and not _is_utf8(frame.body):
            raise _ProtocolError("body not text", f"{broker.FEED_TOPIC} publishes feed events, which are JSON or UTF-8 "
                                 "text; this body is not UTF-8 (other topics take any bytes).", 1003)
        broker.send(destination, frame.body, frame.headers.get("content-type"))

    def _subscribable(self, destination: str) -> str:
        """What a SUBSCRIBE may name: ``/topic/<x>``, or ``/user/queue/<x>``, which becomes this
        session's own queue. Any other destination, a resolved ``/queue/...`` included, is refused."""
        if destination.startswith("/topic/") and len(destination) > len("/topic/"):
            return destination
        if destination.startswith(USER_PREFIX + "/queue/") and len(destination) > len(USER_PREFIX + "/queue/"):
            return user_queue(destination, self.session_id)
        raise DestinationError(f"Cannot subscribe to {destination!r}: subscribe to /topic/<name> or "
                               "/user/queue/<name>.")

    def _hold(self, frame: Frame) -> None:
        """A SEND, ACK or NACK inside a transaction: kept until COMMIT (run) or ABORT (dropped)."""
        name = frame.headers["transaction"]
        held = self.transactions.get(name)
        if held is None:
            raise _ProtocolError("unknown transaction", f"No transaction {name!r} is open on this connection.")
        if len(held) >= self.outbox.limit:
            raise _ProtocolError("transaction too large", f"More than {self.outbox.limit} frames in one transaction.",
                                 1009)
        self._require(frame, "destination" if frame.command == "SEND" else self._ack_header)  # fail now, not at COMMIT
        held.append(frame)

    @property
    def _ack_header(self) -> str:
        return "id" if self.version == "1.2" else "message-id"

    def _acknowledge(self, frame: Frame) -> None:
        """ACK or NACK: ``id`` (1.2) or ``message-id`` (1.0, 1.1) names a message awaiting it."""
        name = self._ack_header
        ack = self._require(frame, name)
        pending = self.unacked.get(ack)
        if pending is None:
            raise _ProtocolError("unknown ack id", f"{frame.command} {name}:{ack[:60]} names no message awaiting "
                                 "acknowledgement on this connection (never sent, or already acknowledged).")
        if self.ack_modes.get(pending.subscription) == "client":  # cumulative: every earlier one too
            covered = []
            for key, each in self.unacked.items():
                if each.subscription == pending.subscription:
                    covered.append(key)
                if key == ack:
                    break
        else:
            covered = [ack]
        stats = self.application.stomp.stats
        for key in covered:
            each = self.unacked.pop(key)
            if frame.command == "ACK":
                stats["acked"] += 1
            elif each.redelivered:
                stats["nacked"] += 1
                stats["discarded"] += 1  # NACKed twice: dropped
            else:
                stats["nacked"] += 1
                stats["redelivered"] += 1
                again = Frame("MESSAGE", {**each.frame.headers, "redelivered": "true"}, each.frame.body)
                self.send_message(again)

    def _unsubscribe(self, sub_id: str) -> None:
        """End a subscription; what it still had awaiting acknowledgement is discarded (module docstring)."""
        self.subscriptions.pop(sub_id, None)
        self.ack_modes.pop(sub_id, None)
        for key in [k for k, each in self.unacked.items() if each.subscription == sub_id]:
            del self.unacked[key]
            self.application.stomp.stats["discarded"] += 1

    def _end_session(self) -> None:
        """DISCONNECT or a dropped connection: open transactions are aborted, unacknowledged
        messages discarded."""
        self.transactions.clear()
        for sub_id in list(self.subscriptions):
            self._unsubscribe(sub_id)

    def _connect(self, frame: Frame) -> None:
        if self.version is not None:
            raise _ProtocolError("already connected", "CONNECT was already received on this connection.")
        allowed = SUPPORTED_VERSIONS  # whichever subprotocol the 101 named (module docstring)
        version = negotiate_version(frame.headers.get("accept-version"), allowed)
        if version is None:  # the spec: ERROR with a version header listing the versions we speak
            raise _ProtocolError("version not supported", f"Supported protocol versions are {' '.join(allowed)}.",
                                 headers={"version": ",".join(allowed)})
        try:
            client_hb = parse_heart_beat(frame.headers.get("heart-beat"))
        except StompError as exc:
            raise _ProtocolError("bad heart-beat", str(exc)) from None
        server_hb = tuple(self.application.settings["stomp_heartbeat_ms"])
        incoming, outgoing = negotiate_heart_beat(client_hb, server_hb)
        self.user = self.application.stomp.authenticate(frame.headers.get("login"), frame.headers.get("passcode"))
        self.version = version
        self.parser.escape = version != "1.0"
        self.heart_beat = (incoming, outgoing)
        self.application.stomp.sessions.add(self)
        self.send_frame(Frame("CONNECTED", {"version": version, "heart-beat": f"{server_hb[0]},{server_hb[1]}",
                                            "server": "server-push-lab/0.1", "session": self.session_id,
                                            **({"user-name": self.user} if self.user else {})}))
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
        if hasattr(self, "subscriptions"):  # opened (open() ran)
            self._end_session()
        if self.outbox is not None:
            self.outbox.close()


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
