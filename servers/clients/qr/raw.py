"""One GET on its own TCP connection, written and read by hand with :mod:`servers.wire.http`.

Tornado's HTTP client cannot abort a request in flight; a browser closing a tab can. So the
held requests (long poll, SSE) are sent by hand: closing the socket is the browser leaving, and
the server sees the disconnect at once.
"""
from __future__ import annotations

import json
import urllib.parse
from collections import deque
from typing import Any, AsyncIterator

import tornado.iostream
import tornado.tcpclient

from servers.clients.qr.common import QRError, _Client
from servers.wire.http import Data, HttpParser, ProtocolError, Response, encode_request

__all__ = ["RawGet"]

READ_SIZE = 64 * 1024


class RawGet:
    """One GET on its own TCP connection, which the client can drop at any moment (``close()``).

    ``start()`` sends the request and reads the head (``status``, ``headers`` with lower-case
    names, ``served_by``); ``chunks()`` yields the body as it arrives, chunk framing removed;
    ``json()`` reads it all.
    """

    def __init__(self, browser: _Client, path: str, headers: dict[str, str] | None = None) -> None:
        self.browser = browser
        self.parts = urllib.parse.urlsplit(browser.base_url)
        self.path = self.parts.path + path
        self.extra = headers or {}
        self.stream: tornado.iostream.IOStream | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.served_by: str | None = None
        self._parser = HttpParser(response=True)
        self._events: deque = deque()

    async def start(self) -> None:
        """Connect, send the request, read the status line and headers."""
        host, port = self.parts.hostname, self.parts.port or 80
        self.stream = await tornado.tcpclient.TCPClient().connect(host, port, source_ip=self.browser.source_address)
        headers = self.browser.headers({"Host": self.parts.netloc, **self.extra})
        await self.stream.write(encode_request("GET", self.path, headers))
        head = await self._next()
        if not isinstance(head, Response):
            raise tornado.iostream.StreamClosedError()  # closed before answering
        self.status = head.status
        self.headers = {name.lower(): value for name, value in head.headers}
        self.served_by = self.headers.get("x-served-by")

    async def _next(self):
        """The next piece of the response (head, body data, end); None once the connection closed."""
        assert self.stream is not None
        while not self._events:
            try:
                data = await self.stream.read_bytes(READ_SIZE, partial=True)
            except tornado.iostream.StreamClosedError:
                try:
                    self._events.extend(self._parser.feed_eof())
                except ProtocolError:
                    pass  # cut off inside the body: what arrived has been handed on already
                return self._events.popleft() if self._events else None
            self._events.extend(self._parser.feed(data))
        return self._events.popleft()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (de-chunked); ends when the response or the connection ends."""
        while isinstance(event := await self._next(), Data):
            yield event.data

    async def json(self, what: str) -> dict[str, Any]:
        """The whole body as JSON, or :class:`QRError` for a 4xx/5xx."""
        body = b"".join([chunk async for chunk in self.chunks()])
        self.close()
        data = json.loads(body) if body else {}
        if self.status >= 400:
            raise QRError(self.status, data, self.served_by, what)
        return data

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
