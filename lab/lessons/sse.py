"""Lesson 03's measurements: SSE resume after dropped streams, and the bytes an event costs.

- :class:`RawSSEConnection` - a socket that sends one ``GET /feed/sse`` and hands back the raw
  bytes, so a cell (or a tap) sees exactly what the server wrote: status line, headers, chunk
  sizes, ``retry:``, ``id:``/``data:`` lines and ``:`` heartbeats.
- :func:`resume_experiment` - a resuming client (:class:`servers.clients.sse.SSEStream`, which
  does what a browser's ``EventSource`` does) reads the feed while events keep coming and the
  server drops its stream several times; returns every event it got and the delivery counts.
- :func:`bytes_per_event` - live events of several sizes through a wire tap, split into the
  event itself, the SSE field framing and the HTTP chunk framing.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Sequence

import pandas as pd

from servers.clients.sse import SSEStream
from lab.publishing import payload, publish_at_random_times, wait_published
from lab.measure import delivery_counts
from servers.runtime import ServerHandle
from servers.wire.http import encode_request, split_chunked
from lab.tap import parse_http_stream, start_tap

__all__ = ["RawSSEConnection", "resume_experiment", "bytes_per_event", "split_chunks", "wait_for_streams"]


class RawSSEConnection:
    """``GET /feed/sse`` over a plain socket; :meth:`read_until` returns the raw bytes received so far."""

    def __init__(self, url: str, last_event_id: int | None = None, timeout: float = 10) -> None:
        host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        headers = {"Host": f"{host}:{port}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.sock.sendall(encode_request("GET", "/feed/sse", headers))
        self.received = b""

    def read_until(self, marker: bytes, count: int = 1, timeout: float = 10) -> bytes:
        """Read until ``marker`` occurs ``count`` times in everything received; returns all of it."""
        deadline = time.monotonic() + timeout
        while self.received.count(marker) < count:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"{marker!r} did not arrive {count} time(s) within {timeout} s") from None
            if not chunk:
                raise ConnectionError("the server closed the stream")
            self.received += chunk
        return self.received

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawSSEConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def wait_for_streams(feed: ServerHandle, count: int, timeout: float = 10) -> None:
    """Wait until the feed holds exactly ``count`` open SSE streams."""
    deadline = time.monotonic() + timeout
    while feed.call(lambda app: app.stats()["sse"]) != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the feed does not hold {count} SSE stream(s) after {timeout} s")
        time.sleep(0.005)


def resume_experiment(feed: ServerHandle, *, events: int, duration: float, drops: int,
                      seed: int | None = None) -> dict[str, Any]:
    """Read the feed with a resuming SSE client while ``events`` are published and ``drops`` drops happen.

    Drops are spread evenly over ``duration``; they alternate between ending the stream cleanly
    (the server finishes the response) and cutting the TCP connection (as a crash or a proxy
    would). After each, the client waits the server's ``retry`` delay and reconnects with
    ``Last-Event-ID``. Returns ``received`` (a DataFrame: seq, sent_at, received_at, latency_ms,
    connection), ``drops`` (a DataFrame: at, how), ``delivery`` (lost/duplicated counts) and
    ``reconnects``.
    """
    start_seq = feed.call(lambda app: app.buffer.last_seq)
    stream = SSEStream(feed, last_event_id=start_seq, read_timeout=duration + 30)
    received: list[dict[str, Any]] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for event in stream:
                if "seq" in event:
                    received.append({**event, "connection": stream.reconnects + 1})
                if len(received) >= events:
                    break
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
        finally:
            stream.close()

    reader = threading.Thread(target=read, name="sse-resume-reader", daemon=True)
    reader.start()
    wait_for_streams(feed, 1)
    started = time.time()
    publishing = publish_at_random_times(feed, events, duration, seed=seed)
    drop_rows = []
    for k in range(drops):
        target = started + (k + 0.5) * duration / drops
        time.sleep(max(0.0, target - time.time()))
        while reader.is_alive() and feed.call(lambda app: app.stats()["sse"]) != 1:
            time.sleep(0.005)  # reconnecting after the previous drop
        if not reader.is_alive():
            break  # the client already has every event: nothing left to drop
        abort = k % 2 == 1
        at = time.time()
        feed.call(lambda app: app.drop_streams(abort=abort))
        drop_rows.append({"at": at, "how": "TCP cut" if abort else "stream ended"})
    published = wait_published(publishing, duration + 30)
    reader.join(duration + 30)
    if reader.is_alive():
        stream.close()
        raise TimeoutError(f"the SSE client got {len(received)} of {events} events")
    if failure:
        raise failure[0]
    frame = pd.DataFrame(received, columns=["seq", "sent_at", "received_at", "connection"])
    frame["latency_ms"] = (frame.received_at - frame.sent_at) * 1000
    return {"received": frame, "drops": pd.DataFrame(drop_rows, columns=["at", "how"]),
            "delivery": delivery_counts([e["seq"] for e in published], frame.seq.tolist()),
            "reconnects": stream.reconnects}


def split_chunks(body: bytes) -> list[tuple[bytes, bytes]]:
    """An HTTP/1.1 chunked body as ``(size line with its CRLF, chunk data)`` pairs (complete chunks only).

    The last chunk (size 0) is left out; :func:`servers.wire.http.split_chunked` has it, and the rest.
    """
    return [(chunk.line, chunk.data) for chunk in split_chunked(body)[0] if chunk.size]


def bytes_per_event(feed: ServerHandle, sizes: Sequence[int], per_size: int = 3) -> pd.DataFrame:
    """Publish ``per_size`` live events for each data size (characters) and split their bytes on the wire.

    One row per event: ``data_bytes`` (the published string), ``event_bytes`` (the event JSON
    the server sends as ``data:``), ``sse_framing_bytes`` (``id: n``, ``data: ``, the line ends),
    ``chunk_framing_bytes`` (the chunk-size line and the CRLF after the chunk) and
    ``wire_bytes`` (all of it); ``id_line_bytes`` is the length of this event's ``id: n`` line.
    """
    tap = start_tap(feed, name="lesson 03 bytes tap", capture_bytes=8 * 1024 * 1024)
    published = []
    try:
        with RawSSEConnection(tap.url) as conn:
            conn.read_until(b"\n\n")  # headers and the opening retry: line
            count = 1
            for size in sizes:
                for i in range(per_size):
                    published.append(feed.call(lambda app: app.publish(payload(size, i))))
                    count += 1
                    conn.read_until(b"\n\n", count)
        raw = tap.raw(direction="down")
    finally:
        tap.stop()
    (response,), _ = parse_http_stream(raw, response=True)
    chunks = split_chunks(response.body)[1:]  # the first chunk is the retry: line
    rows = []
    for event, (size_line, data) in zip(published, chunks):
        event_json = json.dumps(event, separators=(",", ":")).encode()
        rows.append({"data_bytes": len(event["data"]), "event_bytes": len(event_json),
                     "sse_framing_bytes": len(data) - len(event_json),
                     "chunk_framing_bytes": len(size_line) + 2, "wire_bytes": len(size_line) + len(data) + 2,
                     "id_line_bytes": len(f"id: {event['seq']}\n")})
    return pd.DataFrame(rows)
