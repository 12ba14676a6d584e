"""SSE clients that parse with :class:`servers.wire.sse.SSEParser` and resume with Last-Event-ID.

- :class:`SSEStream` (sync, ``requests``): iterate it in a cell; on a dropped connection it waits
  the server's ``retry`` delay and reconnects with ``Last-Event-ID``, as a browser does.
- :class:`AsyncSSEStream` (asyncio streams): ``async for`` over it; cheap enough to open hundreds.

Both yield feed events (dicts with ``seq``, ``data``, ``sent_at``, ``received_at``) and, for a
named ``gap`` event, ``{"type": "gap", "missed": {...}, "first": ..., "received_at": ...}``
(``"reset": true`` when the feed restarted since: seqs start again). ``reconnects`` counts
reconnections; ``last_event_id`` is what would be sent on the next one, and ``epoch`` the feed's
``X-Feed-Epoch`` from the last response, sent back (``?epoch=``) with it.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any, AsyncIterator, Iterator

import requests

from servers.clients._common import base_url, stamp
from servers.wire.http import EndOfMessage, HttpParser, Response, encode_request
from servers.wire.sse import SSEEvent, SSEParser

__all__ = ["SSEStream", "AsyncSSEStream", "sse_message"]


def sse_message(event: SSEEvent) -> dict[str, Any]:
    """An SSE event of the feed as a dict: the event JSON, or a typed notice for named events."""
    received_at = time.time()
    if event.event == "message":
        return stamp(json.loads(event.data), received_at)
    try:
        payload = json.loads(event.data)
    except ValueError:
        payload = {"data": event.data}
    if not isinstance(payload, dict):
        payload = {"data": payload}
    return stamp({"type": event.event, **payload}, received_at)


class SSEStream:
    """``for event in SSEStream(feed, last_event_id=0): ...`` - a resuming SSE reader.

    ``reconnect``: reconnect after a dropped stream (up to ``max_reconnects``, default unlimited).
    ``read_timeout``: seconds without any byte (heartbeats count) before giving up on a read.
    """

    def __init__(self, server: Any, last_event_id: int | str | None = None, reconnect: bool = True,
                 max_reconnects: int | None = None, read_timeout: float = 60.0, path: str = "/feed/sse") -> None:
        self.url = base_url(server) + path
        self.last_event_id = "" if last_event_id is None else str(last_event_id)
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.read_timeout = read_timeout
        self.reconnects = 0
        self.epoch: str | None = None  # the feed run our last_event_id came from (X-Feed-Epoch)
        self.retry_ms = 3000  # until the server says otherwise (Chromium's default is about 3 s)
        self._session = requests.Session()
        self._response: requests.Response | None = None
        self._closed = False

    def __enter__(self) -> "SSEStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.close()
        self._session.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._closed:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            params = {}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
                if self.epoch:  # a restarted feed knows then that our id is not one of its own
                    params["epoch"] = self.epoch
            try:
                self._response = self._session.get(self.url, headers=headers, params=params, stream=True,
                                                   timeout=(10, self.read_timeout))
                if self._response.status_code == 204:
                    return  # the server says: stop reconnecting
                if self._response.status_code != 200:
                    raise RuntimeError(f"GET {self.url} -> {self._response.status_code}: {self._response.text}")
                self.epoch = self._response.headers.get("X-Feed-Epoch", self.epoch)
                parser = SSEParser()
                parser.last_event_id = self.last_event_id
                for chunk in self._response.iter_content(chunk_size=None):
                    events = parser.feed(chunk)
                    if parser.retry is not None:
                        self.retry_ms = parser.retry
                    for event in events:
                        self.last_event_id = event.id
                        yield sse_message(event)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                pass  # the stream was cut: reconnect below
            finally:
                if self._response is not None:
                    self._response.close()
            if self._closed or not self.reconnect or (
                    self.max_reconnects is not None and self.reconnects >= self.max_reconnects):
                return
            self.reconnects += 1
            time.sleep(self.retry_ms / 1000)


class AsyncSSEStream:
    """``async for event in AsyncSSEStream(feed): ...`` - one SSE connection over asyncio streams.

    No reconnection (a measurement wants to see the drop); ``close()`` ends it at once.
    """

    def __init__(self, server: Any, last_event_id: int | str | None = None, path: str = "/feed/sse") -> None:
        self.url = base_url(server) + path
        self.last_event_id = "" if last_event_id is None else str(last_event_id)
        self._writer: asyncio.StreamWriter | None = None
        self.status: int | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        parts = urllib.parse.urlsplit(self.url)
        reader, self._writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc, "Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        self._writer.write(encode_request("GET", target, headers))
        http, parser = HttpParser(response=True), SSEParser()
        try:
            while data := await reader.read(65536):  # the end of the connection ends the stream
                for piece in http.feed(data):
                    if isinstance(piece, Response):
                        self.status = piece.status
                        if self.status != 200:
                            raise RuntimeError(f"GET {self.url} -> {self.status}")
                    elif isinstance(piece, EndOfMessage):
                        return
                    else:
                        for event in parser.feed(piece.data):
                            self.last_event_id = parser.last_event_id
                            yield sse_message(event)
        except ConnectionError:
            return
        finally:
            self._writer.close()
