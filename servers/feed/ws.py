"""WebSocket: ``GET /feed/ws``, full duplex.

Server to client, every frame is a JSON object: an event carries ``seq``; anything else carries
``type`` and no ``seq``::

    {"seq": 7, "data": ..., "sent_at": ...}              an event
    {"type": "ack", "published": 7}                      your {"publish": ...} became event 7
    {"type": "gap", "missed": {"from": 3, "to": 41}, "first": 42, "epoch": "9f2c41d0"}
                                                         events no longer buffered (first: the next seq sent)
    {"type": "error", "error": "bad_json", "detail": "..."}

Client to server: ``{"after": N}`` replays the buffered events with seq > N, then continues live
without duplicates (``?after=N`` in the URL does the same at open); ``{"publish": <data>}``
publishes an event, delivered to every subscriber, the sender included. A replay from a seq this
run of the feed cannot have given (above its last, or with ``"epoch"``/``?epoch=`` naming another
run: the server restarted) sends every buffered event after a gap notice with ``"reset": true``,
as SSE does (:mod:`servers.feed.sse`, :meth:`servers.feed.buffer.EventBuffer.resume`).

Bad input: a text message that is not a JSON object of one of those shapes gets a
``{"type": "error"}`` reply and the connection stays open (a learner typing in the page should
not lose it); a binary message is closed with 1003 (unsupported data), a text message that is not
UTF-8 with 1007 (servers.web); a message over
``websocket_max_message_size`` (64 KB by default) is closed by Tornado with 1009 (too big).
A client more than ``outbox_limit`` messages behind is closed with 1008 (see
:mod:`servers.outbox`).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.websocket

from servers.outbox import Outbox, Sender
from servers.limits import LimitedWebSocketMixin
from servers.socketwrite import can_send_frames, send_now, send_websocket_frame
from servers.web import ApiError, BaseWebSocketHandler, loads_json
from servers.wire.websocket import encode_frame

__all__ = ["FeedWebSocketHandler"]


class _Replay:
    """An outbox item: "send the buffered events after ``after``, then go on live"."""

    def __init__(self, after: int, epoch: str | None = None) -> None:
        self.after = after
        self.epoch = epoch


class FeedWebSocketHandler(LimitedWebSocketMixin, BaseWebSocketHandler):
    kind = "ws"
    outbox: Outbox | None = None
    sender: Sender | None = None
    frame_stream: Any = None

    def prepare(self) -> None:
        # Checked here, not in an override of get(): Tornado's get() runs for as long as the
        # WebSocket is open, and an override would hold one more coroutine per connection.
        raw = self.get_argument("after", None)
        if raw is not None and not (raw.isdigit()):
            raise ApiError(400, "bad_argument", f"Query argument 'after' must be an integer >= 0, not {raw!r}.")

    def open(self) -> None:
        if not self.take_connection_slot():  # closed with 1013 (servers.limits)
            return
        self.set_nodelay(True)
        self.last_sent = 0  # highest seq sent: live events at or below it are not sent twice
        self.outbox = Outbox(self.application.settings["outbox_limit"])
        # Each message is written the moment it is queued (servers.outbox); a failed write
        # means the connection is gone, and on_close cleans up.
        self.sender = Sender(self.outbox, self._write, _ignore)
        # Frames go out as bytes encoded once per event when no compression was negotiated
        # (decided at the handshake, so once per connection): servers.socketwrite.
        self.frame_stream = self.ws_connection.stream if can_send_frames(self.ws_connection) else None
        self.application.subscribers.add(self)
        after = self.get_argument("after", None)
        if after is not None:
            self.sender.send(_Replay(int(after), self.get_argument("epoch", None)))

    def deliver(self, event: dict) -> None:
        if not self.sender.send(event) and not self.outbox.closed:
            self.application.count_dropped(self)
            self.application.subscribers.discard(self)
            self.outbox.close()
            self.close(1008, f"too slow: more than {self.outbox.limit} messages waiting")

    def notify(self, message: dict) -> None:
        """Queue a non-event message (it has ``type``, never ``seq``)."""
        self.sender.send(message)

    def _write(self, item: Any) -> "asyncio.Future | None":
        """Write one outbox item; returns the future of the last frame written (None: nothing)."""
        if type(item) is dict:
            seq = item.get("seq")
            if seq is None:  # a notice
                return self._send_text(json.dumps(item, separators=(",", ":")).encode())
            # a live event: not if a replay already sent it
            return self._send_event(item) if seq > self.last_sent else None
        events, gap = self.application.buffer.resume(item.after, item.epoch)  # a _Replay
        written = self._send_text(json.dumps({"type": "gap", **gap}).encode()) if gap else None
        for event in events:  # asked for: sent again even if sent before
            written = self._send_event(event)
        return written

    def _send_event(self, event: dict) -> "asyncio.Future | None":
        seq = event["seq"]
        if seq > self.last_sent:
            self.last_sent = seq
        if self.frame_stream is not None:
            # is_closing() without its calls: a server that sent its close frame sends nothing more
            # (RFC 6455 §5.5.1); a closed stream raises in send_now
            if self.ws_connection is None or self.ws_connection.server_terminated:
                raise tornado.websocket.WebSocketClosedError()
            # The whole frame, encoded once per event for every subscriber (server frames are
            # not masked), straight to the socket when nothing waits before it.
            return send_now(self.frame_stream, self.application.buffer.encoded(event, "ws-frame", _text_frame))
        return self._send_text(self.application.buffer.encoded(event, "ws", _utf8_json))

    def _send_text(self, payload: bytes) -> "asyncio.Future | None":
        """Write one text frame; ``None`` when the socket took it, else the future of its flush.

        Tornado's ``write_message`` wraps every write in a new Task (its "semi-synchronous"
        interface), and a Task, a future and a callback per subscriber per event were most of a
        fan-out's cost (``benchmarks/fanout.py``). Without per-message compression the frame is
        written as bytes (:mod:`servers.socketwrite`); with it, by Tornado.
        """
        conn = self.ws_connection
        if conn is None or conn.is_closing():
            raise tornado.websocket.WebSocketClosedError()
        if self.frame_stream is not None:  # no compression (decided in open())
            return send_websocket_frame(conn, encode_frame(payload, opcode=0x1))
        return self.write_message(payload.decode())

    def on_message(self, message: str | bytes) -> None:
        if self.outbox is None or self.message_too_big(message):  # refused at open, or closing with 1009
            return
        if not self.message_allowed():
            self.close(1008, self.rate_limit_reason())
            return
        if isinstance(message, bytes):
            self.close(1003, "binary frames are not accepted: send JSON text")
            return
        try:
            msg = loads_json(message)  # no NaN, no 1,000-deep nesting
        except ValueError as exc:
            return self.notify(_error("bad_json", f"Your message is not valid JSON: {exc}."))
        if isinstance(msg, dict) and "publish" in msg:
            event = self.application.publish(msg["publish"])
            self.notify({"type": "ack", "published": event["seq"]})
        elif isinstance(msg, dict) and "after" in msg:
            after = msg["after"]
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                return self.notify(_error("bad_message", f"'after' must be an integer >= 0, not {after!r}."))
            epoch = msg.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                return self.notify(_error("bad_message", f"'epoch' must be a string, not {epoch!r}."))
            self.sender.send(_Replay(after, epoch))
        else:
            self.notify(_error("bad_message", 'Send {"after": N} to replay or {"publish": <data>} to publish.'))

    def on_close(self) -> None:
        self.application.subscribers.discard(self)
        if self.outbox is not None:
            self.outbox.close()


def _utf8_json(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _text_frame(event: dict) -> bytes:
    return encode_frame(_utf8_json(event), opcode=0x1)


def _ignore(error: BaseException) -> None:
    """A failed write: nothing to do here (on_close cleans up). One function for every connection."""


def _error(code: str, detail: str) -> dict:
    return {"type": "error", "error": code, "detail": detail}
