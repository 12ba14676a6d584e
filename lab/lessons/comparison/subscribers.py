"""One subscriber per technique (:data:`TECHNIQUES`), all following the same event sequence numbers.

Each subscriber receives until it has seen the last of ``seqs`` and appends
``(seq, sent_at, received_at, event)`` for each event it got, so every technique is timed and
counted the same way. ``ready`` resolves once its channel is open (or its poll answered), so the
publisher starts only when every subscriber can hear the first event. Polling keeps a cursor
(``after``) on one keep-alive connection; SSE, WebSocket and STOMP use our async clients.
"""
from __future__ import annotations

import asyncio
import json
import time

from lab.lessons.comparison.keepalive import KeepAliveHTTP
from servers.runtime import cancel_and_wait


TECHNIQUES = ("poll", "longpoll", "sse", "ws", "stomp")
LABELS = {"poll": "short polling", "longpoll": "long polling", "sse": "SSE", "ws": "WebSocket",
          "stomp": "STOMP over WebSocket"}


async def _poll_subscriber(url: str, after: int, seqs: set[int], got: list, ready: asyncio.Future,
                           interval: float, longpoll_timeout: float, long: bool) -> None:
    """Short (``long=False``) or long polling with a cursor on one keep-alive connection."""
    http = KeepAliveHTTP(url)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        while True:
            target = (f"/feed/longpoll?after={after}&timeout={longpoll_timeout:g}" if long
                      else f"/feed/poll?after={after}")
            if long and not ready.done():  # held from here on; the cursor makes it lossless
                ready.set_result(None)
            body = await http.json("GET", target)
            if not ready.done():  # answered: the connection is open
                ready.set_result(None)
            now = time.time()
            for event in body["events"]:
                after = max(after, event["seq"])
                if event["seq"] in seqs:
                    got.append((event["seq"], event["sent_at"], now, event))
            if seqs and after >= max(seqs):
                return
            if not long:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        await http.close()


async def _sse_subscriber(url: str, after: int, seqs: set[int], got: list, ready: asyncio.Future) -> None:
    from servers.clients.sse import AsyncSSEStream

    stream = AsyncSSEStream(url, last_event_id=after)
    events = stream.__aiter__()
    first = asyncio.ensure_future(events.__anext__())
    try:
        while stream.status is None and not first.done():  # ready when the response head is in
            await asyncio.sleep(0.002)
        if not ready.done():
            ready.set_result(None)
        event = await first
        while True:
            if event.get("seq") in seqs:
                got.append((event["seq"], event["sent_at"], event["received_at"], event))
                if event["seq"] >= max(seqs):
                    return
            event = await events.__anext__()
    finally:
        await cancel_and_wait([first])
        await events.aclose()
        await stream.close()


async def _ws_subscriber(url: str, after: int, seqs: set[int], got: list, ready: asyncio.Future) -> None:
    from servers.clients.ws import AsyncFeedWebSocket

    ws = await AsyncFeedWebSocket.connect(url, after=after)
    ready.set_result(None)
    try:
        while True:
            event = await ws.recv_event(timeout=None)
            if event["seq"] in seqs:
                got.append((event["seq"], event["sent_at"], event["received_at"], event))
                if event["seq"] >= max(seqs):
                    return
    finally:
        ws.close()


async def _stomp_subscriber(url: str, after: int, seqs: set[int], got: list, ready: asyncio.Future) -> None:
    from servers.clients.stomp import AsyncStompClient

    client = await AsyncStompClient.connect(url)
    try:
        await client.subscribe("/topic/feed")  # waits for the RECEIPT: events after it are seen
        ready.set_result(None)
        while True:
            frame = await client.receive_message(timeout=None)
            event = json.loads(frame.body)
            if event["seq"] in seqs:
                got.append((event["seq"], event["sent_at"], frame.received_at, event))
                if event["seq"] >= max(seqs):
                    return
    finally:
        client.close()


def _subscriber(technique: str, url: str, after: int, seqs: set[int], got: list, ready: asyncio.Future,
                poll_interval: float, longpoll_timeout: float):
    if technique in ("poll", "longpoll"):
        return _poll_subscriber(url, after, seqs, got, ready, poll_interval, longpoll_timeout, technique == "longpoll")
    if technique == "sse":
        return _sse_subscriber(url, after, seqs, got, ready)
    if technique == "ws":
        return _ws_subscriber(url, after, seqs, got, ready)
    if technique == "stomp":
        return _stomp_subscriber(url, after, seqs, got, ready)
    raise ValueError(f"unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}")


def technique_key(label: str) -> str | None:
    """``"sse"`` for ``"sse"`` or ``"SSE"``: the short name behind a name or a :data:`LABELS` label."""
    for key, shown in LABELS.items():
        if str(label) in (key, shown):
            return key
    return None


def colour_by_technique(ax) -> None:
    """Give every line and bar of ``ax`` that stands for a technique the course's colour for it
    (:func:`lab.plots.technique_color`), whatever order the plot drew them in; legend included."""
    from lab.plots import technique_color

    for line in ax.get_lines():
        key = technique_key(line.get_label())
        if key:
            line.set_color(technique_color(key))
    ticks = [technique_key(t.get_text()) for t in ax.get_xticklabels()]
    for container in ax.containers:
        if hasattr(container, "patches"):
            for patch, key in zip(container.patches, ticks):
                if key:
                    patch.set_color(technique_color(key))
    if ax.get_legend() is not None:
        ax.legend()
