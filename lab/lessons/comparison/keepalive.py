"""A keep-alive HTTP/1.1 client (:class:`KeepAliveHTTP`): one connection reused, as a browser does.

Lesson 06 counts bytes and requests per event, so the polling subscribers and the publisher must
not pay for a new connection per request, which Tornado's simple client would open. It sends
nothing but what the request needs, so the bytes the tap counts are the technique's own.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from servers.wire.http import Data, HttpParser, Response, encode_request, keeps_alive


class KeepAliveHTTP:
    """One HTTP/1.1 connection reused for every request, as a browser reuses it.

    Sends only the request line, ``Host`` and, with a body, ``Content-Type`` and
    ``Content-Length`` (written and read with :mod:`servers.wire.http`, so any framing of the
    answer works: ``Content-Length``, chunked, or until the server closes).
    """

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = HttpParser(response=True)
        self.requests = 0

    async def request(self, method: str, target: str, body: Any = None) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.parser = HttpParser(response=True)  # a new connection starts a new stream of answers
        headers = {"Host": self.netloc}
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        self.writer.write(encode_request(method, target, headers, payload))
        self.parser.expect(method)
        self.requests += 1
        head, data = None, bytearray()
        while True:
            chunk = await self.reader.read(65536)
            events = self.parser.feed(chunk) if chunk else self.parser.feed_eof()
            for event in events:
                if isinstance(event, Response):
                    head = event
                elif isinstance(event, Data):
                    data += event.data
                elif head is not None:  # the end of this answer
                    if not keeps_alive(head) or not chunk:
                        await self.close()
                    return head.status, bytes(data)
            if not chunk:
                await self.close()
                raise ConnectionError(f"{method} {target}: the server closed the connection without answering")

    async def json(self, method: str, target: str, body: Any = None) -> dict[str, Any]:
        status, data = await self.request(method, target, body)
        if status >= 400:
            raise RuntimeError(f"{method} {target} -> {status}: {data[:200]!r}")
        return json.loads(data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
