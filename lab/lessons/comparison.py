"""Lesson 06 and ``benchmarks/techniques.py``: the five push techniques measured under one workload.

Why one module for both: the lesson's small fresh numbers and the committed benchmark CSV must
mean the same thing, so both call :func:`measure_point`, :func:`measure_idle` and :func:`sweep`.

The set-up of every measurement (BRIEF §5 and issue 4):

- the feed server runs in **its own process** (:class:`FeedProcess`, ``python -m servers feed
  --port 0``), so ``psutil`` reads *its* CPU time, memory and file descriptors, not ours;
- the subscribers and the publisher run here, on the shared server loop (:mod:`servers.runtime`);
  the subscribers reach the server through a wire tap (:mod:`lab.tap`), which counts every
  byte each way; the publisher goes around the tap, so its bytes are not counted;
- HTTP clients keep their connection alive between requests, as a browser does
  (:class:`KeepAliveHTTP`; Tornado's own simple client opens a connection per request).

The *protocol minimum* of an event (:func:`wire_cost`) is the framing the protocol itself
requires, computed from the event bytes the client received: for SSE ``id: n`` + ``data: ...``
+ a blank line inside one HTTP chunk (size line + CRLF); for WebSocket the RFC 6455 frame header
(2 B up to 125 B of payload, 4 B up to 64 KiB); for STOMP a ``MESSAGE`` with only
``destination``, ``message-id`` and ``subscription`` and the NULL, inside a WebSocket frame; for
polling a request with only its request line and ``Host``, and a response with only its status
line and ``Content-Length``, for every request actually made. ``framing_ratio`` is what the tap
saw for the event-carrying bytes divided by that minimum: 1.00 means the server adds nothing.
"""
from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import io
import json
import resource
import time
import tokenize
import urllib.parse
from typing import Any, Iterable, Sequence

import pandas as pd

from servers import runtime
from servers.process import ServerProcess
from lab.publishing import random_moments
from lab.tap import parse_http_stream, parse_ws_frames, start_tap
from servers.wire.sse import encode_event
from servers.wire.websocket import frame_overhead

__all__ = ["TECHNIQUES", "LABELS", "FeedProcess", "KeepAliveHTTP", "raise_open_file_limit", "measure_point",
           "measure_idle", "sweep", "sweep_points", "wire_cost", "code_lines", "ease_table", "EASE_PARTS",
           "demonstrate_duplex", "duplex_table", "behind_balancer", "SUMMARY_COLUMNS", "IDLE_COLUMNS"]

TECHNIQUES = ("poll", "longpoll", "sse", "ws", "stomp")
LABELS = {"poll": "short polling", "longpoll": "long polling", "sse": "SSE", "ws": "WebSocket",
          "stomp": "STOMP over WebSocket"}
CAPTURE_BYTES = 64 * 1024 * 1024  # the tap keeps every byte of a connection up to this, to parse it


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


# ------------------------------------------------------------------------------------------------
# The server under test, in its own process.

class FeedProcess:
    """``python -m servers feed --port 0`` as a child process: ``url``, ``pid``, ``cpu_seconds()``,
    ``rss()``, ``fds()``, ``stop()``. Registered with :func:`servers.stop_all`, so a lesson's
    clean-up cell (or the end of the kernel) stops it too."""

    def __init__(self, name: str = "bench-feed", buffer_size: int = 100_000, timeout: float = 30) -> None:
        import psutil

        raise_open_file_limit()
        self.name = name
        self._proc = ServerProcess(["feed", "--port", "0", "--name", name, "--buffer-size", str(buffer_size)],
                                   name, timeout=timeout, die_with_parent=True)
        self.process = self._proc.process
        self.info = self._proc.info
        self.url: str = self._proc.url
        self.pid = self._proc.pid
        self.ps = psutil.Process(self.pid)
        old = runtime.tracked(f"feed process {name}")
        if old is not None:
            old.stop()
        runtime.track(f"feed process {name}", self)

    def __repr__(self) -> str:
        return f"<FeedProcess {self.name} {self.url} pid={self.pid}>"

    def __enter__(self) -> "FeedProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def fds(self) -> int:
        return self.ps.num_fds()

    def stop(self) -> None:
        self._proc.stop()
        runtime.untrack(self)


# ------------------------------------------------------------------------------------------------
# Clients: a keep-alive HTTP/1.1 connection, and one subscriber per technique.

class KeepAliveHTTP:
    """One HTTP/1.1 connection reused for every request, as a browser reuses it.

    Sends only the request line, ``Host`` and, with a body, ``Content-Type`` and
    ``Content-Length``; reads responses with a ``Content-Length`` (every JSON answer of the feed).
    """

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.requests = 0

    async def request(self, method: str, target: str, body: Any = None) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.netloc}\r\n"
        payload = b""
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        self.writer.write(head.encode("latin-1") + b"\r\n" + payload)
        self.requests += 1
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw.split(b" ", 2)[1])
        length = 0
        close = False
        for line in raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, data

    async def json(self, method: str, target: str, body: Any = None) -> dict[str, Any]:
        status, data = await self.request(method, target, body)
        if status >= 400:
            raise RuntimeError(f"{method} {target} -> {status}: {data[:200]!r}")
        return json.loads(data)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


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
        if not first.done():
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
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


def _data(i: int, payload_bytes: int) -> dict[str, Any]:
    return {"n": i, "text": ("x" * payload_bytes)}


# ------------------------------------------------------------------------------------------------
# What the protocol requires, and what the tap saw.

def _stomp_headers(payload: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = payload.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").lstrip("\r\n").split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    return lines[0], headers, body


# The smallest heads the protocols allow (what a minimal client and server must send once per connection).
MIN_SSE_RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
MIN_WS_REQUEST_HEADERS = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + "x" * 24
                          + "\r\nSec-WebSocket-Version: 13\r\n")  # RFC 6455 §4.1, on top of the request line + Host
MIN_WS_RESPONSE = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: " + "x" * 28 + "\r\n\r\n")  # RFC 6455 §4.2.2


def wire_cost(technique: str, up: bytes, down: bytes, events: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Bytes of one connection, split by what they carry, against the protocol minimum.

    ``up``/``down`` are every byte the tap saw each way; ``events`` the events the client got on
    this connection. Returns ``requests``, ``framing_bytes`` (the bytes that carried events, as
    the tap saw them), ``framing_min`` (what the protocol requires for the same events),
    ``min_down``/``min_up`` (the protocol minimum of the whole connection) and ``event_bytes``
    (the event JSON itself).
    """
    jsons = [json.dumps({k: v for k, v in e.items() if k != "received_at"}, separators=(",", ":")).encode()
             for e in events]
    event_bytes = sum(len(j) for j in jsons)
    requests, up_rest = parse_http_stream(up, response=False)
    host = (requests[0].header("host") or "") if requests else ""
    min_request = sum(len(f"{m.start_line}\r\nHost: {host}\r\n\r\n") for m in requests)
    out = {"requests": len(requests), "event_bytes": event_bytes}
    if technique in ("poll", "longpoll"):
        responses, _ = parse_http_stream(down, response=True)
        min_down = sum(len(f"HTTP/1.1 200 OK\r\nContent-Length: {m.body_bytes}\r\n\r\n") + m.body_bytes
                       for m in responses)
        measured = sum(m.header_bytes + m.body_bytes for m in responses)
        return {**out, "framing_bytes": measured, "framing_min": min_down, "min_down": min_down, "min_up": min_request}
    responses, down_rest = parse_http_stream(down, response=True)
    head = responses[0].header_bytes if responses else 0
    if technique == "sse":
        body = down[head:]
        other = 0  # bytes of chunks that carry no event: the retry: line, heartbeats, the last chunk
        pos = 0
        while pos < len(body):
            line_end = body.find(b"\r\n", pos)
            if line_end < 0:
                other += len(body) - pos
                break
            size = int(body[pos:line_end].split(b";")[0] or b"0", 16)
            end = line_end + 2 + size + 2
            if b"\ndata: {\"seq\"" not in b"\n" + body[line_end + 2:end]:
                other += end - pos
            pos = end
        framing = len(down) - head - other
        minimum = 0 if not responses else len(MIN_SSE_RESPONSE)
        for event, raw in zip(events, jsons):
            text = encode_event(raw.decode(), id=event["seq"])
            minimum += len(text) + len(f"{len(text):x}\r\n") + 2
        framing_min = minimum - (len(MIN_SSE_RESPONSE) if responses else 0)
        return {**out, "framing_bytes": framing, "framing_min": framing_min, "min_down": minimum, "min_up": min_request}
    frames = parse_ws_frames(down_rest)
    client_frames = parse_ws_frames(up_rest)
    handshake_up = len(MIN_WS_REQUEST_HEADERS) * len(requests)
    min_up = min_request + handshake_up + sum(f.header_bytes + f.payload_length for f in client_frames
                                              if f.opcode in (1, 2))
    if technique == "ws":
        other = sum(f.header_bytes + f.payload_length for f in frames if not f.payload.startswith(b'{"seq"'))
        minimum = sum(frame_overhead(len(raw)) + len(raw) for raw in jsons)
    else:  # stomp: MESSAGE frames to /topic/feed carry the events
        other, minimum = 0, 0
        for frame in frames:
            command, headers, _ = _stomp_headers(frame.payload)
            if command == "MESSAGE" and headers.get("destination") == "/topic/feed":
                continue
            other += frame.header_bytes + frame.payload_length
        message_headers = [(h.get("message-id", ""), h.get("subscription", ""))
                           for c, h, _ in map(_stomp_headers, (f.payload for f in frames))
                           if c == "MESSAGE" and h.get("destination") == "/topic/feed"]
        for (message_id, subscription), raw in zip(message_headers, jsons):
            stomp = (f"MESSAGE\ndestination:/topic/feed\nmessage-id:{message_id}\nsubscription:{subscription}\n\n"
                     .encode() + raw + b"\0")
            minimum += frame_overhead(len(stomp)) + len(stomp)
    framing = len(down) - head - other
    min_down = minimum + (len(MIN_WS_RESPONSE) if responses else 0)
    return {**out, "framing_bytes": framing, "framing_min": minimum, "min_down": min_down, "min_up": min_up}


# ------------------------------------------------------------------------------------------------
# One measurement point: a technique, an event rate, a number of subscribers.

SUMMARY_COLUMNS = [
    "technique", "rate_eps", "subscribers", "events", "delivered", "lost", "seconds",
    "bytes_down_per_event", "bytes_up_per_event", "min_bytes_down_per_event", "min_bytes_up_per_event",
    "ratio_down", "ratio_up", "framing_bytes_per_event", "framing_min_per_event", "framing_ratio",
    "event_json_bytes", "requests_per_event", "connections_per_event",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms",
    "server_cpu_s_per_1000_events", "server_rss_mb", "server_fds", "poll_interval_s",
]


def measure_point(feed: FeedProcess, technique: str, rate: float, subscribers: int = 1, *,
                  seconds: float = 2.0, min_events: int = 5, max_events: int = 5000, payload_bytes: int = 32,
                  poll_interval: float = 1.0, longpoll_timeout: float = 30.0,
                  latency_sample: int | None = 2000, seed: int = 6) -> tuple[dict[str, Any], pd.DataFrame]:
    """``subscribers`` clients of ``technique`` through a tap while events are published at ``rate``/s.

    ``events = clamp(rate * seconds, min_events, max_events)``, one at a random moment in each
    slot of ``1/rate`` s (seeded; :func:`~lab.publishing.random_moments`), so
    no event lines up with a poll by design; published with ``POST /feed/publish`` on a
    keep-alive connection around the tap. Returns the summary row (see :data:`SUMMARY_COLUMNS`) and one row per delivered event
    (``latency_ms``; at most ``latency_sample`` rows, a seeded random sample).
    """
    if technique not in TECHNIQUES:
        raise ValueError(f"unknown technique {technique!r}; use one of {', '.join(TECHNIQUES)}")
    if rate <= 0 or subscribers < 1:
        raise ValueError("rate must be positive and subscribers at least 1")
    count = int(min(max_events, max(min_events, round(rate * seconds))))
    tap = start_tap(feed.url, name=f"comparison tap {technique}", capture_bytes=CAPTURE_BYTES)
    try:
        result = runtime.run(_run_point(feed, tap.url, technique, rate, subscribers, count, payload_bytes,
                                        poll_interval, longpoll_timeout, seed),
                             timeout=count / rate + poll_interval + longpoll_timeout + 120)
        try:
            tap.wait_closed(timeout=5)
        except TimeoutError:
            pass  # a connection the server has not closed yet: its bytes are already counted
        conns = tap._snapshot()  # one consistent copy of every connection (counts and bytes)
    finally:
        tap.stop()
    got, published, cpu, server_rss, server_fds, elapsed = result
    by_client: dict[int, list] = {}
    for client, rows in got.items():
        by_client[client] = [r[3] for r in rows]
    # event bytes and minimum: the events each connection carried, matched in connection order
    # (each subscriber has one connection; polling clients too, thanks to keep-alive).
    order = sorted(conns, key=lambda c: c.opened)
    event_lists = [by_client[k] for k in sorted(by_client)]
    costs = [wire_cost(technique, bytes(c.head_up), bytes(c.head_down), evs)
             for c, evs in zip(order, event_lists + [[]] * (len(order) - len(event_lists)))]
    delivered = sum(len(rows) for rows in got.values())
    per = max(delivered, 1)
    bytes_down = sum(c.bytes_down for c in conns)
    bytes_up = sum(c.bytes_up for c in conns)
    min_down = sum(c["min_down"] for c in costs)
    min_up = sum(c["min_up"] for c in costs)
    framing = sum(c["framing_bytes"] for c in costs)
    framing_min = sum(c["framing_min"] for c in costs)
    latencies = pd.DataFrame([{"client": client, "seq": seq, "sent_at": sent, "received_at": received}
                              for client, rows in got.items() for seq, sent, received, _ in rows],
                             columns=["client", "seq", "sent_at", "received_at"])
    latencies["latency_ms"] = (latencies.received_at - latencies.sent_at) * 1000.0
    q = latencies.latency_ms.quantile([0.5, 0.95, 0.99]) if len(latencies) else pd.Series([float("nan")] * 3,
                                                                                          index=[0.5, 0.95, 0.99])
    row = {
        "technique": technique, "rate_eps": rate, "subscribers": subscribers, "events": len(published),
        "delivered": delivered, "lost": len(published) * subscribers - delivered, "seconds": round(elapsed, 3),
        "bytes_down_per_event": bytes_down / per, "bytes_up_per_event": bytes_up / per,
        "min_bytes_down_per_event": min_down / per, "min_bytes_up_per_event": min_up / per,
        "ratio_down": bytes_down / min_down if min_down else float("nan"),
        "ratio_up": bytes_up / min_up if min_up else float("nan"),
        "framing_bytes_per_event": framing / per, "framing_min_per_event": framing_min / per,
        "framing_ratio": framing / framing_min if framing_min else float("nan"),
        "event_json_bytes": sum(c["event_bytes"] for c in costs) / per,
        "requests_per_event": sum(c["requests"] for c in costs) / per,
        "connections_per_event": len(conns) / per,
        "latency_p50_ms": q[0.5], "latency_p95_ms": q[0.95], "latency_p99_ms": q[0.99],
        "latency_mean_ms": latencies.latency_ms.mean(),
        "server_cpu_s_per_1000_events": cpu / per * 1000.0,
        "server_rss_mb": server_rss / 2**20, "server_fds": server_fds,
        "poll_interval_s": poll_interval if technique == "poll" else float("nan"),
    }
    latencies.insert(0, "technique", technique)
    latencies.insert(1, "rate_eps", rate)
    latencies.insert(2, "subscribers", subscribers)
    if latency_sample is not None and len(latencies) > latency_sample:
        latencies = latencies.sample(latency_sample, random_state=seed).sort_values(["client", "seq"])
    return row, latencies.reset_index(drop=True)


async def _run_point(feed: FeedProcess, url: str, technique: str, rate: float, subscribers: int, count: int,
                     payload_bytes: int, poll_interval: float, longpoll_timeout: float, seed: int):
    publisher = KeepAliveHTTP(feed.url)
    try:
        warm = await publisher.json("POST", "/feed/publish", {"data": "start"})  # the cursor to start from
        after = warm["seq"]
        seqs = set(range(after + 1, after + count + 1))
        got: dict[int, list] = {i: [] for i in range(subscribers)}
        readies = [asyncio.get_running_loop().create_future() for _ in range(subscribers)]
        tasks = []
        for i in range(subscribers):  # open one by one: the tap's connections come in client order
            tasks.append(asyncio.ensure_future(_subscriber(technique, url, after, seqs, got[i], readies[i],
                                                           poll_interval, longpoll_timeout)))
            await asyncio.wait([readies[i], tasks[i]], return_when=asyncio.FIRST_COMPLETED)
            if tasks[i].done():
                tasks[i].result()  # raises what went wrong
        cpu_before = feed.cpu_seconds()
        loop = asyncio.get_running_loop()
        started = loop.time()
        published = []
        # one event at a random moment in each slot of 1/rate s: no event lines up with a poll by design
        for k, moment in enumerate(random_moments(count, count / rate, seed=seed)):
            delay = started + moment - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            published.append((await publisher.json("POST", "/feed/publish", {"data": _data(k, payload_bytes)}))["seq"])
        budget = poll_interval + longpoll_timeout + 30 + count / rate
        done, pending = await asyncio.wait(tasks, timeout=budget)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                raise task.exception()
        elapsed = loop.time() - started
        cpu = feed.cpu_seconds() - cpu_before
        rss, fds = feed.rss(), feed.fds()
        return got, published, cpu, rss, fds, elapsed
    finally:
        await publisher.close()


IDLE_COLUMNS = ["technique", "connections", "seconds", "rss_bytes_per_connection", "fds_per_connection",
                "cpu_ms_per_connection_per_s", "bytes_per_connection_per_s", "requests_per_connection_per_s",
                "poll_interval_s", "longpoll_timeout_s"]


def measure_idle(feed: FeedProcess, technique: str, connections: int = 100, seconds: float = 2.0, *,
                 poll_interval: float = 1.0, longpoll_timeout: float = 30.0) -> dict[str, Any]:
    """The cost of ``connections`` subscribers while nothing happens, for ``seconds`` seconds.

    Memory and file descriptors: the server's RSS and open descriptors once every subscriber is
    connected, minus before (per connection). CPU, bytes and requests: over the idle window.
    Use a fresh :class:`FeedProcess` for the memory figure (Python rarely gives memory back).
    """
    tap = start_tap(feed.url, name=f"comparison idle tap {technique}", capture_bytes=64 * 1024)

    async def run() -> dict[str, Any]:
        rss0, fds0 = feed.rss(), feed.fds()
        seqs = {10**12}  # never published: the subscribers wait until cancelled
        readies = [asyncio.get_running_loop().create_future() for _ in range(connections)]
        after = 10**12 - 1 if technique in ("poll", "longpoll") else None  # live events only
        tasks = [asyncio.ensure_future(_subscriber(technique, tap.url, after, seqs, [], r, poll_interval,
                                                   longpoll_timeout))
                 for r in readies]
        await asyncio.wait_for(asyncio.gather(*readies), 60)
        deadline = time.monotonic() + 30  # every subscriber's connection reaches the server process
        while feed.fds() < fds0 + connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if technique in ("poll", "longpoll"):  # every client's first request has gone through
            while _tap_totals(tap)[1] < connections and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        rss1, fds1 = feed.rss(), feed.fds()
        before = _tap_totals(tap)
        cpu0 = feed.cpu_seconds()
        await asyncio.sleep(seconds)  # the measurement window itself
        cpu1 = feed.cpu_seconds()
        after = _tap_totals(tap)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"technique": technique, "connections": connections, "seconds": seconds,
                "rss_bytes_per_connection": (rss1 - rss0) / connections,
                "fds_per_connection": (fds1 - fds0) / connections,
                "cpu_ms_per_connection_per_s": (cpu1 - cpu0) * 1000 / connections / seconds,
                "bytes_per_connection_per_s": (after[0] - before[0]) / connections / seconds,
                "requests_per_connection_per_s": (after[1] - before[1]) / connections / seconds,
                "poll_interval_s": poll_interval, "longpoll_timeout_s": longpoll_timeout}

    try:
        return runtime.run(run(), timeout=seconds + 120)
    finally:
        tap.stop()


def _tap_totals(tap) -> tuple[int, int]:
    """(bytes both ways, HTTP requests seen) through ``tap`` so far; called on the server loop."""
    total = requests = 0
    for conn in tap._connections.values():
        total += conn.bytes_up + conn.bytes_down
        requests += bytes(conn.head_up).count(b" HTTP/1.1\r\n")
    return total, requests


# ------------------------------------------------------------------------------------------------
# A sweep: every technique on a grid of rates and subscriber counts, a fresh server per technique.

def sweep_points(rates: Iterable[float], subscribers: Iterable[int], *, base_subscribers: Iterable[int] = (1,),
                 base_rate: float = 10.0, max_deliveries_per_s: float = 20_000) -> list[tuple[float, int]]:
    """The (rate, subscribers) grid: every rate at each of ``base_subscribers``, every subscriber
    count at ``base_rate``; points above ``max_deliveries_per_s`` (what one Python load
    generator can receive) are left out."""
    points = {(float(r), int(s)) for r in rates for s in base_subscribers}
    points |= {(float(base_rate), int(s)) for s in subscribers}
    return sorted(p for p in points if p[0] * p[1] <= max_deliveries_per_s)


def sweep(techniques: Sequence[str] = TECHNIQUES, points: Sequence[tuple[float, int]] = ((10.0, 1),), *,
          idle_connections: int = 100, idle_seconds: float = 2.0, progress: bool = True,
          **options: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each technique on a fresh :class:`FeedProcess`: the idle cost first, then every point.

    Returns ``(summary, latencies, idle)`` DataFrames. ``options`` go to :func:`measure_point`
    (``seconds``, ``min_events``, ``payload_bytes``, ``poll_interval``...).
    """
    from lab.measure import Progress

    rows, frames, idle = [], [], []
    bar = Progress(len(techniques) * (len(points) + 1), "measurements") if progress else None
    for technique in techniques:
        with FeedProcess(name=f"comparison-{technique}") as feed:
            if idle_connections:
                idle.append(measure_idle(feed, technique, idle_connections, idle_seconds,
                                         poll_interval=options.get("poll_interval", 1.0),
                                         longpoll_timeout=options.get("longpoll_timeout", 30.0)))
            if bar:
                bar.update()
            for rate, subscribers in points:
                row, lat = measure_point(feed, technique, rate, subscribers, **options)
                rows.append(row)
                frames.append(lat)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    latencies = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return summary, latencies, pd.DataFrame(idle, columns=IDLE_COLUMNS)


# ------------------------------------------------------------------------------------------------
# "Easy / normal / hard": lines of code of our own server and client for each technique.

#: What each technique needs from our code, server side and client side ("module" or "module:Name").
#: Shared by all five and not counted: the event buffer, publish, the JSON error base, Tornado.
EASE_PARTS: dict[str, dict[str, list[str]]] = {
    "poll": {"server": ["servers.feed.polling:PollHandler", "servers.feed.polling:NoCacheMixin",
                        "servers.feed.polling:events_body"],
             "client": ["servers.clients.http:poll", "servers.clients.http:iter_poll", "servers.clients.http:_follow"]},
    "longpoll": {"server": ["servers.feed.longpoll:LongPollHandler", "servers.feed.polling:NoCacheMixin",
                            "servers.feed.polling:events_body", "servers.feed.app:FeedApp.wait_for_event"],
                 "client": ["servers.clients.http:longpoll", "servers.clients.http:iter_longpoll",
                            "servers.clients.http:_follow"]},
    "sse": {"server": ["servers.feed.sse", "servers.feed.outbox", "servers.wire.sse:encode_event",
                       "servers.wire.sse:encode_comment", "servers.wire.sse:_split_lines"],
            "client": ["servers.clients.sse:SSEStream", "servers.clients.sse:sse_message",
                       "servers.wire.sse:SSEParser", "servers.wire.sse:SSEEvent"]},
    "ws": {"server": ["servers.feed.ws", "servers.feed.outbox"],
           "client": ["servers.clients.ws"]},
    "stomp": {"server": ["servers.feed.stomp", "servers.feed.stomp_session", "servers.feed.outbox",
                         "servers.wire.stomp"],
              "client": ["servers.clients.stomp", "servers.wire.stomp"]},
}


def _resolve(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def code_lines(obj: Any) -> int:
    """Lines of code of a module, class or function: blank lines, comments and docstrings left out."""
    source = inspect.getsource(_resolve(obj) if isinstance(obj, str) else obj)
    source = inspect.cleandoc("\n" + source) if source[:1].isspace() else source
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstring_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    code: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - docstring_lines)


def ease_table(parts: dict[str, dict[str, list[str]]] | None = None) -> pd.DataFrame:
    """Lines of our server and client code per technique (counted now, from the source)."""
    rows = []
    for technique, sides in (parts or EASE_PARTS).items():
        server = sum(code_lines(s) for s in sides["server"])
        client = sum(code_lines(s) for s in sides["client"])
        rows.append({"technique": technique, "server_lines": server, "client_lines": client,
                     "total_lines": server + client})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Simplex or duplex: can the client send on the connection the server pushes on?

async def _raw_pipelined(url: str, first: bytes, second: bytes, wait: float) -> bool:
    """Send ``first`` then ``second`` on one connection; True if the second was answered within ``wait``."""
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(first)
        await reader.readuntil(b"\r\n\r\n")  # the push channel is open (SSE) or held (long poll)
        writer.write(second)
        seen = b""
        try:
            async with asyncio.timeout(wait):
                while b"HTTP/1.1 201" not in seen:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return False
                    seen += chunk
        except TimeoutError:
            return False
        return True
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
    post = (f"POST /feed/publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(publish)}\r\n\r\n").encode() + publish
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
        ok = await _raw_pipelined(url, f"GET /feed/sse HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), post, wait)
        how = f"POST pipelined behind the open event stream: {'answered' if ok else f'not answered in {wait:g} s'}"
    elif technique == "longpoll":
        http = KeepAliveHTTP(url)
        last = (await http.json("POST", "/feed/publish", {"data": "cursor"}))["seq"]
        await http.close()
        first = f"GET /feed/longpoll?after={last}&timeout={wait + 5:g} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
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
        seen = b""
        try:
            async with asyncio.timeout(wait):
                while b"HTTP/1.1 201" not in seen:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return False
                    seen += chunk
        except TimeoutError:
            return False
        return True
    finally:
        writer.close()


def duplex_table(url: str, techniques: Sequence[str] = TECHNIQUES, wait: float = 1.0) -> pd.DataFrame:
    """:func:`demonstrate_duplex` for each technique against the feed at ``url``."""
    async def run() -> list[dict[str, Any]]:
        return [await demonstrate_duplex(url, t, wait) for t in techniques]

    return pd.DataFrame(runtime.run(run(), timeout=len(techniques) * (wait + 15)))


# ------------------------------------------------------------------------------------------------
# Behind a balancer: the QR-login bug of lesson 07, per transport.

def behind_balancer(transports: Sequence[str] = ("poll", "longpoll", "sse", "ws"), logins: int = 12,
                    n_servers: int = 2, seed: int = 6, wait_s: float = 1.0) -> pd.DataFrame:
    """QR logins through ``n_servers`` app servers behind a round-robin balancer, no fix.

    One row per transport: logins, how many completed, the success rate and the theory 1/N for
    a push channel that stays on one server (lesson 07 explains why).
    """
    from servers.cluster import start_cluster
    from lab.lessons.qr_bug import theory, traffic

    rows = []
    with start_cluster(n_servers, "round_robin", name="comparison-cluster") as cluster:
        for i, transport in enumerate(transports):
            frame = traffic(cluster, transport, logins, seed=seed + i, wait_s=wait_s,
                            **({"poll_interval": 0.05} if transport == "poll" else {}))
            rows.append({"transport": transport, "logins": len(frame), "completed": int(frame.ok.sum()),
                         "success_rate": float(frame.ok.mean()), "theory_if_stuck_to_one_server": theory(n_servers)})
    return pd.DataFrame(rows)
