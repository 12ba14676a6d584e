"""Simplex or duplex: can the client send on the connection the server pushes on?

Lesson 06 tries it for real on each technique: WebSocket and STOMP send on the open connection
and get the answer back on it; for SSE and long polling a request pipelined behind the open
stream or the held poll waits (HTTP/1.1 answers in order); short polling holds no connection at all.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any, Sequence

import pandas as pd

from lab.lessons.comparison.keepalive import KeepAliveHTTP
from lab.lessons.comparison.subscribers import TECHNIQUES
from servers import runtime
from servers.wire.http import HttpParser, Response, encode_request


async def _answer_head(reader: asyncio.StreamReader, parser: HttpParser, status: int | None = None) -> Response | None:
    """Read until the head of an answer (with ``status``, if given) arrives; None if the connection ends first."""
    while chunk := await reader.read(65536):
        for event in parser.feed(chunk):
            if isinstance(event, Response) and status in (None, event.status):
                return event
    return None


async def _raw_pipelined(url: str, first: bytes, second: bytes, wait: float) -> bool:
    """Send ``first`` then ``second`` on one connection; True if the second was answered within ``wait``."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    parser = HttpParser(response=True)
    try:
        writer.write(first)
        if await _answer_head(reader, parser) is None:  # the push channel is open (SSE) or held (long poll)
            raise ConnectionError(f"{url} closed the connection before answering")
        writer.write(second)
        try:
            async with asyncio.timeout(wait):
                return await _answer_head(reader, parser, 201) is not None
        except TimeoutError:
            return False
    finally:
        writer.close()


async def demonstrate_duplex(url: str, technique: str, wait: float = 1.0) -> dict[str, Any]:
    """Try to send a client→server message on the open push connection; return what happened.

    ``same_connection``: True if the message went on that connection and was handled while the
    server could still push on it. For SSE and long polling the message (``POST /feed/publish``)
    is pipelined behind the streaming or held request: HTTP/1.1 answers requests in order, so it
    waits. Short polling has no open push channel at all: every message is a new request.
    """
    from servers.clients.stomp import AsyncStompClient
    from servers.clients.ws import AsyncFeedWebSocket

    host = urllib.parse.urlsplit(url).netloc
    publish = json.dumps({"data": "from the client"}).encode()
    post = encode_request("POST", "/feed/publish", {"Host": host, "Content-Type": "application/json"}, publish)
    if technique == "ws":
        ws = await AsyncFeedWebSocket.connect(url)
        try:
            await ws.publish({"duplex": True})
            event = await ws.recv_event(timeout=wait + 5)
            ok = event["data"] == {"duplex": True}
        finally:
            ws.close()
        how = "sent {\"publish\": ...} on the open WebSocket, got the event back on it"
    elif technique == "stomp":
        client = await AsyncStompClient.connect(url)
        try:
            await client.subscribe("/topic/duplex")
            await client.send("/topic/duplex", {"duplex": True})
            frame = await client.receive_message(timeout=wait + 5)
            ok = json.loads(frame.body) == {"duplex": True}
        finally:
            client.close()
        how = "SEND to /topic/duplex on the open STOMP session, got the MESSAGE back on it"
    elif technique == "sse":
        ok = await _raw_pipelined(url, encode_request("GET", "/feed/sse", {"Host": host}), post, wait)
        how = f"POST pipelined behind the open event stream: {'answered' if ok else f'not answered in {wait:g} s'}"
    elif technique == "longpoll":
        http = KeepAliveHTTP(url)
        last = (await http.json("POST", "/feed/publish", {"data": "cursor"}))["seq"]
        await http.close()
        first = encode_request("GET", f"/feed/longpoll?after={last}&timeout={wait + 5:g}", {"Host": host})
        ok = await _raw_pipelined_held(url, first, post, wait)
        how = f"POST pipelined behind the held long poll: {'answered' if ok else f'not answered in {wait:g} s'}"
    elif technique == "poll":
        ok = False
        how = "no connection is held open for the server to push on: each message is a new request"
    else:
        raise ValueError(f"unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}")
    return {"technique": technique, "same_connection": ok, "how": how}


async def _raw_pipelined_held(url: str, first: bytes, second: bytes, wait: float) -> bool:
    """Like :func:`_raw_pipelined`, but the first request gets no answer yet (it is held)."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(first + second)
        try:
            async with asyncio.timeout(wait):
                return await _answer_head(reader, HttpParser(response=True), 201) is not None
        except TimeoutError:
            return False
    finally:
        writer.close()


def duplex_table(url: str, techniques: Sequence[str] = TECHNIQUES, wait: float = 1.0) -> pd.DataFrame:
    """:func:`demonstrate_duplex` for each technique against the feed at ``url``."""
    async def run() -> list[dict[str, Any]]:
        return [await demonstrate_duplex(url, t, wait) for t in techniques]

    return pd.DataFrame(runtime.run(run(), timeout=len(techniques) * (wait + 15)))
