"""A small STOMP 1.2 client over WebSocket, built on :mod:`servers.wire.stomp`.

- :class:`AsyncStompClient`: ``c = await AsyncStompClient.connect(feed)`` (sends CONNECT, waits
  for CONNECTED), ``await c.subscribe("/topic/feed")``, ``await c.send("/app/hello", {...})``,
  ``await c.receive()`` (the next MESSAGE, ERROR or RECEIPT frame), ``await c.disconnect()``.
- :class:`StompClient`: the same, blocking, for a cell (runs on the shared server loop).

Frames received get a ``received_at`` attribute; ``frame.json()``-style decoding is left to the
caller (``json.loads(frame.text)``). Heart-beats from the server are counted, not returned.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import tornado.websocket

from servers import runtime
from servers.clients._common import ws_url
from servers.clients.ws import ConnectionClosed
from servers.wire.stomp import Frame, StompParser, encode_frame

__all__ = ["AsyncStompClient", "StompClient", "StompErrorFrame"]


class StompErrorFrame(Exception):
    """The broker answered ERROR; ``frame`` holds it (``message`` header, detail in the body)."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"STOMP ERROR: {frame.headers.get('message')}: {frame.text}")
        self.frame = frame


class AsyncStompClient:
    def __init__(self) -> None:
        self.conn: tornado.websocket.WebSocketClientConnection | None = None
        self.frames: asyncio.Queue = asyncio.Queue()
        self.parser = StompParser(max_body=16 * 1024 * 1024)
        self.connected: Frame | None = None
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, server: Any, path: str = "/stomp", subprotocols: list[str] | None = None,
                      heart_beat: tuple[int, int] = (0, 0), headers: dict[str, str] | None = None,
                      timeout: float = 10) -> "AsyncStompClient":
        """Open the WebSocket, send CONNECT, and return once CONNECTED arrives."""
        self = cls()
        self.conn = await tornado.websocket.websocket_connect(
            ws_url(server, path), subprotocols=subprotocols if subprotocols is not None else ["v12.stomp"],
            on_message_callback=self._on_message)
        connect_headers = {"accept-version": "1.2", "host": "/", "heart-beat": f"{heart_beat[0]},{heart_beat[1]}",
                           **(headers or {})}
        await self.send_frame(Frame("CONNECT", connect_headers))
        frame = await self.receive(timeout)
        if frame.command != "CONNECTED":
            raise StompErrorFrame(frame)
        self.connected = frame
        return self

    def _on_message(self, message: str | bytes | None) -> None:
        if message is None:
            self.frames.put_nowait(None)
            return
        now = time.time()
        for frame in self.parser.feed(message.encode("utf-8") if isinstance(message, str) else message):
            frame.received_at = now  # type: ignore[attr-defined]
            self.frames.put_nowait(frame)

    async def send_frame(self, frame: Frame) -> None:
        """One frame in one WebSocket message: text when it is UTF-8, binary otherwise (a body may
        be any bytes; a text message must be UTF-8)."""
        data = encode_frame(frame)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            await self.conn.write_message(data, binary=True)
            return
        await self.conn.write_message(text)

    async def receive(self, timeout: float | None = 10) -> Frame:
        """The next frame from the broker; raises ConnectionClosed once the socket closed."""
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        if frame is None:
            self.frames.put_nowait(None)
            raise ConnectionClosed(self.conn.close_code, self.conn.close_reason)
        return frame

    async def receive_message(self, timeout: float | None = 10) -> Frame:
        """The next MESSAGE frame (RECEIPTs skipped); an ERROR frame raises StompErrorFrame."""
        while True:
            frame = await self.receive(timeout)
            if frame.command == "ERROR":
                raise StompErrorFrame(frame)
            if frame.command == "MESSAGE":
                return frame

    async def subscribe(self, destination: str, id: str | None = None, receipt: bool = True,
                        timeout: float = 10) -> str:
        """SUBSCRIBE; with ``receipt`` waits for the RECEIPT so later SENDs are surely seen."""
        sub_id = id or f"sub-{next(self._ids)}"
        await self._send_with_receipt(Frame("SUBSCRIBE", {"destination": destination, "id": sub_id, "ack": "auto"}),
                                      receipt, timeout)
        return sub_id

    async def unsubscribe(self, id: str, receipt: bool = True, timeout: float = 10) -> None:
        await self._send_with_receipt(Frame("UNSUBSCRIBE", {"id": id}), receipt, timeout)

    async def send(self, destination: str, body: Any = b"", headers: dict[str, str] | None = None,
                   receipt: bool = False, timeout: float = 10) -> None:
        """SEND; ``body``: bytes, str, or anything JSON-encodable (sent as application/json)."""
        extra = dict(headers or {})
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")
            extra.setdefault("content-type", "text/plain")
        else:
            raw = json.dumps(body).encode("utf-8")
            extra.setdefault("content-type", "application/json")
        await self._send_with_receipt(Frame("SEND", {"destination": destination, **extra}, raw), receipt, timeout)

    async def disconnect(self, timeout: float = 10) -> None:
        """DISCONNECT with a receipt (so everything sent before was processed), then close."""
        try:
            await self._send_with_receipt(Frame("DISCONNECT", {}), True, timeout)
        finally:
            self.conn.close()

    async def _send_with_receipt(self, frame: Frame, receipt: bool, timeout: float) -> None:
        if not receipt:
            return await self.send_frame(frame)
        receipt_id = f"r-{next(self._ids)}"
        frame.headers["receipt"] = receipt_id
        await self.send_frame(frame)
        held: list[Frame] = []
        try:
            while True:
                answer = await self.receive(timeout)
                if answer.command == "RECEIPT" and answer.headers.get("receipt-id") == receipt_id:
                    return
                if answer.command == "ERROR":
                    raise StompErrorFrame(answer)
                held.append(answer)  # a MESSAGE that arrived first: give it back afterwards
        finally:
            if held:
                rest = []
                while not self.frames.empty():
                    rest.append(self.frames.get_nowait())
                for item in held + rest:
                    self.frames.put_nowait(item)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class StompClient:
    """Blocking STOMP client for a cell: ``with StompClient(feed) as c: c.subscribe(...)``."""

    def __init__(self, server: Any, **connect_kwargs: Any) -> None:
        self._client: AsyncStompClient = runtime.run(AsyncStompClient.connect(server, **connect_kwargs))
        self.connected = self._client.connected

    def __enter__(self) -> "StompClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send_frame(self, frame: Frame) -> None:
        runtime.run(self._client.send_frame(frame))

    def receive(self, timeout: float = 10) -> Frame:
        return runtime.run(self._client.receive(timeout), timeout=timeout + 5)

    def receive_message(self, timeout: float = 10) -> Frame:
        return runtime.run(self._client.receive_message(timeout), timeout=timeout + 5)

    def subscribe(self, destination: str, id: str | None = None, receipt: bool = True) -> str:
        return runtime.run(self._client.subscribe(destination, id, receipt))

    def unsubscribe(self, id: str, receipt: bool = True) -> None:
        runtime.run(self._client.unsubscribe(id, receipt))

    def send(self, destination: str, body: Any = b"", headers: dict[str, str] | None = None,
             receipt: bool = False) -> None:
        runtime.run(self._client.send(destination, body, headers, receipt))

    def disconnect(self) -> None:
        runtime.run(self._client.disconnect())

    def close(self) -> None:
        runtime.call(self._client.close)
