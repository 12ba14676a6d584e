"""Lesson 03's measurements: SSE resume after dropped streams, and the bytes an event costs.

- :class:`RawSSEConnection` - a socket that sends one ``GET /feed/sse`` and hands back the raw
  bytes, so a cell (or a tap) sees exactly what the server wrote: status line, headers, chunk
  sizes, ``retry:``, ``id:``/``data:`` lines and ``:`` heartbeats.
- :func:`resume_experiment` - a resuming client (:class:`servers.clients.sse.SSEStream`, which
  does what a browser's ``EventSource`` does) reads the feed while events keep coming and the
  server drops its stream several times; returns every event it got and the delivery counts.
  :func:`reconnect_spikes` splits each drop's latency spike into where it comes from.
- :func:`bytes_per_event` - live events of several sizes through a wire tap, split into the
  event itself, the SSE field framing and the HTTP chunk framing.
- Real Chromium (:func:`in_chromium`, skipped with a message where it is missing): the
  connections per host a browser allows (:func:`eventsource_limit`), how a page can and cannot
  authenticate an ``EventSource`` (:func:`eventsource_auth`), and the delay Chromium waits before
  it reconnects (:func:`chromium_reconnect_delay`).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Callable, Sequence

import pandas as pd

from lab.chromium import CHROMIUM_ARGS, HOW_TO_GET_CHROMIUM, find_chromium
from servers.clients.sse import SSEStream
from lab.publishing import payload, publish_at_random_times, wait_published
from lab.measure import delivery_counts
from servers.runtime import ServerHandle
from servers.wire.http import encode_request, split_chunked
from lab.tap import parse_http_stream, start_tap

__all__ = ["RawSSEConnection", "resume_experiment", "reconnect_spikes", "bytes_per_event", "split_chunks",
           "wait_for_streams", "find_chromium", "in_chromium", "eventsource_limit", "eventsource_auth",
           "chromium_reconnect_delay", "HOW_TO_GET_CHROMIUM"]


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
    connection), ``drops`` (a DataFrame: at, how), ``delivery`` (lost/duplicated counts),
    ``reconnects`` and ``opened`` (when each request of the client reached the server, as a tap in
    between saw it: the first connection, then each reconnection).
    """
    start_seq = feed.call(lambda app: app.buffer.last_seq)
    tap = start_tap(feed, name="lesson 03 resume tap", capture_bytes=4096)  # to time each (re)connection
    stream = SSEStream(tap, last_event_id=start_seq, read_timeout=duration + 30)
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
    try:
        published = wait_published(publishing, duration + 30)
        reader.join(duration + 30)
        if reader.is_alive():
            stream.close()
            raise TimeoutError(f"the SSE client got {len(received)} of {events} events")
        chunks = tap.chunks()
    finally:
        tap.stop()
    if failure:
        raise failure[0]
    frame = pd.DataFrame(received, columns=["seq", "sent_at", "received_at", "connection"])
    frame["latency_ms"] = (frame.received_at - frame.sent_at) * 1000
    # The client sends nothing but its GET requests: each upward read is one (re)connection arriving.
    opened = sorted(chunks[chunks.direction == "up"].t)
    return {"received": frame, "drops": pd.DataFrame(drop_rows, columns=["at", "how"]),
            "delivery": delivery_counts([e["seq"] for e in published], frame.seq.tolist()),
            "reconnects": stream.reconnects, "opened": opened}


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


# --- the reconnection spikes, explained --------------------------------------------------------

def reconnect_spikes(run: dict[str, Any]) -> pd.DataFrame:
    """One row per drop of :func:`resume_experiment`: where each latency spike's height comes from.

    ``away_ms``: from the drop to the moment the client's next connection reached the server (the
    tap saw it open); ``first_missed_ms``: from the drop to the publication of the first event the
    client missed; ``spike_ms``: the latency of that event. The spike is ``away_ms -
    first_missed_ms`` plus the few milliseconds of the replay: an event published later in the
    gap waits less, and the first one of the gap is rarely published at the very moment of the drop.
    """
    received, opened = run["received"], run["opened"]
    rows = []
    for k, drop in enumerate(run["drops"].itertuples()):
        if k + 1 >= len(opened):
            break
        back = opened[k + 1]
        replayed = received[(received.sent_at > drop.at) & (received.sent_at < back)]
        row = {"drop": k + 1, "how": drop.how, "away_ms": (back - drop.at) * 1000}
        if len(replayed):
            first = replayed.iloc[0]
            row.update(first_missed_seq=int(first.seq), first_missed_ms=(first.sent_at - drop.at) * 1000,
                       spike_ms=first.latency_ms)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["drop", "how", "away_ms", "first_missed_seq", "first_missed_ms", "spike_ms"])
    frame["away_minus_first_missed_ms"] = frame.away_ms - frame.first_missed_ms
    return frame.round(1)


# --- real Chromium: what a browser does that a Python client does not show ---------------------

def in_chromium(work: Callable[[Any], Any], timeout: float = 60) -> Any:
    """Run ``work(page)`` in a fresh headless Chromium; returns what it returns, or ``None`` (and says why).

    Playwright's sync API refuses to run where an asyncio loop runs (a notebook cell), so the
    browser lives in a thread of its own for the call.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    path = find_chromium()
    if sync_playwright is None or path is None:
        print(HOW_TO_GET_CHROMIUM if path is None else
              "The playwright package is missing (pip install playwright), so this cell is skipped.")
        return None
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with sync_playwright() as p:
                kwargs = {"executable_path": path} if path else {}
                browser = p.chromium.launch(headless=True, args=CHROMIUM_ARGS, **kwargs)
                try:
                    result.append(work(browser.new_context().new_page()))
                finally:
                    browser.close()
        except BaseException as exc:  # surfaced in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="lesson-03-chromium", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"Chromium did not finish within {timeout} s")
    if failure:
        raise failure[0]
    return result[0]


_OPEN_SOURCES = """(count) => {
  window.sources = [];
  for (let i = 0; i < count; i++) window.sources.push(new EventSource('../feed/sse'));
}"""
_STATES = "() => window.sources.map(s => ['CONNECTING', 'OPEN', 'CLOSED'][s.readyState])"


def eventsource_limit(feed: ServerHandle, count: int = 7) -> pd.DataFrame | None:
    """Open ``count`` ``EventSource`` s to one origin in Chromium; then close the first one.

    One row per source and moment (``before`` / ``after closing #1``): its ``readyState`` in the
    page, with the number of SSE streams the server holds at that moment. ``None`` without Chromium.
    """
    def work(page) -> pd.DataFrame:
        page.goto(feed.url + "/pages/")                       # the index page opens no stream itself
        page.evaluate(_OPEN_SOURCES, count)
        limit = min(count, 6)
        page.wait_for_function(f"window.sources.filter(s => s.readyState === 1).length === {limit}")
        wait_for_streams(feed, limit)
        before = page.evaluate(_STATES), feed.call(lambda app: app.stats()["sse"])
        page.evaluate("() => window.sources[0].close()")
        page.wait_for_function("window.sources.slice(1).every(s => s.readyState === 1)")
        wait_for_streams(feed, count - 1)
        after = page.evaluate(_STATES), feed.call(lambda app: app.stats()["sse"])
        return pd.DataFrame([{"moment": moment, "source": f"#{i + 1}", "readyState": state, "server_streams": held}
                             for moment, (states, held) in (("before", before), ("after closing #1", after))
                             for i, state in enumerate(states)])

    return in_chromium(work)


def eventsource_auth(feed: ServerHandle) -> pd.DataFrame | None:
    """Three ways a page might try to authenticate an ``EventSource``; what reached the server for each.

    Through a tap (so the request is read as the server received it): a cookie set for the page's
    origin (sent by the browser by itself; ``withCredentials`` is what a cross-origin stream
    needs), a token in the query string, and an ``Authorization`` header passed in the options
    (which the constructor ignores: it takes only ``withCredentials``).
    """
    from lab.tap import start_tap

    tap = start_tap(feed, name="lesson 03 auth tap", capture_bytes=64 * 1024)
    tries = [("cookie", "document.cookie = 'session=c00k1e; Path=/; SameSite=Strict'",
              "new EventSource('../feed/sse', {withCredentials: true})"),
             ("token in the query", "document.cookie = 'session=; Path=/; Max-Age=0'",
              "new EventSource('../feed/sse?access_token=t0k3n')"),
             ("Authorization in the options", "",
              "new EventSource('../feed/sse', {headers: {Authorization: 'Bearer t0k3n'}})")]

    def work(page) -> pd.DataFrame:
        page.goto(tap.url + "/pages/")
        rows = []
        for way, setup, script in tries:
            tap.reset()                                        # keep only what this try sends
            page.evaluate(f"() => {{ {setup}; window.source = {script}; }}")
            page.wait_for_function("window.source.readyState === 1")
            page.evaluate("() => window.source.close()")
            sse = [message for conn in tap.connections().id
                   for message in parse_http_stream(tap.raw(int(conn), "up"), response=False)[0]
                   if "/feed/sse" in message.start_line][-1]
            rows.append({"tried": way, "request line": sse.start_line.rsplit(" ", 1)[0],
                         "Cookie": sse.header("Cookie"), "Authorization": sse.header("Authorization")})
        return pd.DataFrame(rows).fillna("(none)")

    try:
        return in_chromium(work)
    finally:
        tap.stop()


def chromium_reconnect_delay(feed: ServerHandle, drops: int = 2) -> pd.DataFrame | None:
    """How long Chromium's ``EventSource`` waits after a drop: from its ``error`` event to its next ``open``.

    Drops alternate between a clean end of the response and a TCP cut. ``retry_ms`` is the
    server's ``retry:`` value. ``None`` without Chromium.
    """
    retry_ms = feed.call(lambda app: app.settings["sse_retry_ms"])

    def work(page) -> pd.DataFrame:
        page.goto(feed.url + "/pages/sse")
        page.wait_for_function("window.opens === 1")
        rows = []
        for k in range(drops):
            abort = k % 2 == 1
            feed.call(lambda app: app.drop_streams(abort=abort))
            page.wait_for_function(f"window.opens === {k + 2}")
            error_at, open_at = page.evaluate(f"[window.erroredAt[{k}], window.openedAt[{k + 1}]]")
            rows.append({"drop": k + 1, "how": "TCP cut" if abort else "stream ended", "retry_ms": retry_ms,
                         "error_to_open_ms": round(open_at - error_at, 1)})
        return pd.DataFrame(rows)

    return in_chromium(work)
