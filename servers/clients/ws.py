"""WebSocket clients for ``/feed/ws`` (Tornado's ``websocket_connect``).

- :class:`AsyncFeedWebSocket`: ``ws = await AsyncFeedWebSocket.connect(feed)``, then
  ``await ws.recv()``, ``await ws.publish(data)``, ``await ws.replay(after)``, ``ws.close()``.
- :class:`FeedWebSocket`: the same, blocking, for a cell. It runs the async client on the
  shared server loop (:mod:`servers.runtime`), so a blocking ``recv`` never stalls the kernel's
  own loop.

Messages are dicts: events (``seq``) and notices (``type``), each stamped ``received_at`` when
the frame arrived (not when ``recv`` was called).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.websocket

from servers import runtime
from servers.clients._common import decode_json_message, stamp, ws_url

__all__ = ["AsyncFeedWebSocket", "FeedWebSocket", "ConnectionClosed"]


class ConnectionClosed(Exception):
    """The server closed the WebSocket; ``code`` and ``reason`` say why (1009 too big, ...)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"WebSocket closed: code={code} reason={reason!r}")
        self.code, self.reason = code, reason


class AsyncFeedWebSocket:
    def __init__(self) -> None:
        self.conn: tornado.websocket.WebSocketClientConnection | None = None
        self.messages: asyncio.Queue = asyncio.Queue()
        self.response_headers: dict[str, str] = {}

    @classmethod
    async def connect(cls, server: Any, after: int | None = None, path: str = "/feed/ws",
                      **connect_kwargs: Any) -> "AsyncFeedWebSocket":
        """Open ``/feed/ws`` (``after``: replay from there at once)."""
        self = cls()
        url = ws_url(server, path) + (f"?after={int(after)}" if after is not None else "")
        self.conn = await tornado.websocket.websocket_connect(url, on_message_callback=self._on_message,
                                                              **connect_kwargs)
        self.response_headers = dict(self.conn.headers)
        return self

    def _on_message(self, message: str | bytes | None) -> None:
        if message is None:
            self.messages.put_nowait(None)  # closed
        else:
            self.messages.put_nowait(stamp(decode_json_message(message)))

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code if self.conn else None

    async def recv(self, timeout: float | None = 10) -> dict[str, Any]:
        """The next message; raises :class:`ConnectionClosed` once the server closed."""
        message = await asyncio.wait_for(self.messages.get(), timeout)
        if message is None:
            self.messages.put_nowait(None)  # keep saying "closed"
            raise ConnectionClosed(self.conn.close_code, self.conn.close_reason)
        return message

    async def recv_event(self, timeout: float | None = 10) -> dict[str, Any]:
        """The next message that is an event (has ``seq``), skipping notices."""
        while True:
            message = await self.recv(timeout)
            if "seq" in message:
                return message

    async def send(self, message: Any) -> None:
        await self.conn.write_message(message if isinstance(message, (str, bytes)) else json.dumps(message),
                                      binary=isinstance(message, bytes))

    async def publish(self, data: Any) -> None:
        await self.send({"publish": data})

    async def replay(self, after: int) -> None:
        await self.send({"after": after})

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.conn is not None:
            self.conn.close(code, reason)


class FeedWebSocket:
    """Blocking WebSocket client for a cell: ``with FeedWebSocket(feed) as ws: ws.recv()``."""

    def __init__(self, server: Any, after: int | None = None, **connect_kwargs: Any) -> None:
        self._ws: AsyncFeedWebSocket = runtime.run(AsyncFeedWebSocket.connect(server, after, **connect_kwargs))
        self.response_headers = self._ws.response_headers

    def __enter__(self) -> "FeedWebSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        return runtime.run(self._ws.recv(timeout), timeout=timeout + 5)

    def recv_event(self, timeout: float = 10) -> dict[str, Any]:
        return runtime.run(self._ws.recv_event(timeout), timeout=timeout + 5)

    def send(self, message: Any) -> None:
        runtime.run(self._ws.send(message))

    def publish(self, data: Any) -> None:
        self.send({"publish": data})

    def replay(self, after: int) -> None:
        self.send({"after": after})

    def close(self) -> None:
        runtime.call(self._ws.close)
