"""Lesson 02's pieces: a long poll *without* a cursor, and the measurements that compare it.

The feed's ``GET /feed/longpoll?after=N`` has a cursor: an event published while the client is
between two requests (the *re-request gap*) is in the buffer, and the next request gets it at
once. :class:`NaiveLongPollHandler` is the design without one, as in many first long-poll
servers (and Tornado's early chat demo): the request waits for the *next* publish and answers
with that one event. Whatever is published while the client is not waiting is lost. The lesson
serves both on one feed (:func:`start_lesson_feed`) and counts what each client gets.

- :func:`measure_idle_cost` - idle clients with several timeouts, each behind a wire tap: what
  the empty timed-out exchanges cost per second and per hour.
- :func:`measure_cursor_vs_naive` - both clients at once against events at random moments;
  one row per answer (when asked, when answered, how many events) and the delivery counts.
- :func:`hold_long_polls` / :func:`wait_for_waiters` - held requests from raw sockets, to watch
  the server's waiter count rise and fall back to zero when the clients go away.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Sequence

import pandas as pd
import tornado.httpclient

from servers import runtime
from servers.clients.http import alongpoll
from servers.feed.app import make_feed_app
from lab.publishing import publish_at_random_times
from lab.measure import delivery_counts
from servers.runtime import ServerHandle, serve
from lab.tap import start_tap
from servers.web import BaseHandler
from servers.wire.http import encode_request

__all__ = ["NaiveLongPollHandler", "start_lesson_feed", "measure_idle_cost", "measure_cursor_vs_naive", "gap_table",
           "hold_long_polls", "wait_for_waiters"]


class NaiveLongPollHandler(BaseHandler):
    """``GET /naive/longpoll?timeout=S``: held until the next publish, answered with that one event.

    No cursor: the server cannot know what the client has seen, so events published while the
    client was not waiting here never reach it. After ``S`` seconds (default 30) with no
    publish: ``{"events": []}``. The waiter is cancelled when the client goes away.
    """

    waiter: asyncio.Future | None = None

    async def get(self) -> None:
        app = self.application
        timeout = self.float_argument("timeout", default=30.0, minimum=0.0, maximum=300.0)
        self.waiter = app.wait_for_event()
        try:
            events = [await asyncio.wait_for(self.waiter, timeout)]
        except asyncio.TimeoutError:
            events = []
        except asyncio.CancelledError:
            return  # the client went away: nobody to answer
        finally:
            app.waiters.discard(self.waiter)
        self.write_json({"events": events})

    def on_connection_close(self) -> None:
        if self.waiter is not None:
            self.waiter.cancel()


def start_lesson_feed(name: str = "lesson-02", **settings: Any) -> ServerHandle:
    """A feed server (every route of the feed) plus ``GET /naive/longpoll``, on a free port."""
    app = make_feed_app(name=name, **settings)
    app.add_handlers(r".*", [(r"/naive/longpoll", NaiveLongPollHandler)])
    return serve(app)


def measure_idle_cost(feed: ServerHandle, timeouts: Sequence[float], *, idle: float) -> pd.DataFrame:
    """Long-poll an idle feed for ``idle`` seconds with each timeout (s) at once; count requests and bytes.

    Nothing is published, so every request ends by timing out and the client asks again. Bytes
    are the TCP payload both ways through a tap (the HTTP requests and responses; each request of
    the async client opens a new connection, whose handshake packets carry no payload).
    """
    timeouts = sorted(float(t) for t in timeouts)
    taps = {t: start_tap(feed, name=f"lesson 02 idle tap, timeout {t} s") for t in timeouts}
    after = feed.call(lambda app: app.buffer.last_seq)

    async def idle_client(url: str, timeout: float) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        requests = max(1, round(idle / timeout))  # each one ends by timing out
        for _ in range(requests):
            await alongpoll(url, after, timeout)
        return requests, loop.time() - started

    async def run() -> list[tuple[int, float]]:
        return list(await asyncio.gather(*(idle_client(taps[t].url, t) for t in timeouts)))

    try:
        counts = runtime.run(run(), timeout=idle + max(timeouts) + 30)
        rows = []
        for timeout, (requests, seconds) in zip(timeouts, counts):
            totals = taps[timeout].totals()
            wire = totals["bytes_up"] + totals["bytes_down"]
            rows.append({"timeout_s": timeout, "requests": requests, "seconds": round(seconds, 2), "bytes": wire,
                         "bytes_per_exchange": round(wire / requests, 1),
                         "bytes_per_idle_hour": round(wire / seconds * 3600)})
    finally:
        for tap in taps.values():
            tap.stop()
    return pd.DataFrame(rows)


async def _naive_longpoll(url: str, timeout: float) -> dict[str, Any]:
    client = tornado.httpclient.AsyncHTTPClient()
    response = await client.fetch(f"{url}/naive/longpoll?timeout={timeout}", request_timeout=timeout + 10)
    body = json.loads(response.body)
    now = time.time()
    for event in body["events"]:
        event["received_at"] = now
    return body


async def _client_loop(kind: str, url: str, start_seq: int, timeout: float, client_work: float,
                       stop: asyncio.Event, rows: list[dict[str, Any]], received: list[dict[str, Any]]) -> None:
    """Ask, take the answer, work on it for ``client_work`` s, ask again - until ``stop`` is set."""
    after = start_seq
    while not stop.is_set():
        asked_at = time.time()
        if kind == "cursor":
            body = await alongpoll(url, after, timeout)
        else:
            body = await _naive_longpoll(url, timeout)
        answered_at = time.time()
        for event in body["events"]:
            received.append(event)
            after = max(after, event["seq"])
        rows.append({"client": kind, "asked_at": asked_at, "answered_at": answered_at,
                     "events": len(body["events"])})
        await asyncio.sleep(client_work)  # e.g. the page renders the update before asking again


def measure_cursor_vs_naive(feed: ServerHandle, *, events: int, duration: float, client_work: float,
                            timeout: float = 1.0, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Run a cursor client and a naive client side by side while ``events`` are published.

    ``feed`` must come from :func:`start_lesson_feed`. Each client takes ``client_work`` seconds
    with every answer before it asks again. Returns DataFrames: ``answers`` (one row per answer:
    client, asked_at, answered_at, events), ``received`` (one row per event a client got) and
    ``delivery`` (published, delivered, lost, duplicated per client).
    """
    start_seq = feed.call(lambda app: app.buffer.last_seq)

    async def run():
        stop = asyncio.Event()
        rows: list[dict[str, Any]] = []
        got = {"cursor": [], "naive": []}
        loops = [asyncio.ensure_future(_client_loop(kind, feed.url, start_seq, timeout, client_work, stop, rows,
                                                    got[kind])) for kind in ("cursor", "naive")]
        await asyncio.sleep(0.2)  # both clients are waiting before the first event
        published = await asyncio.wrap_future(publish_at_random_times(feed, events, duration, seed=seed))
        deadline = asyncio.get_running_loop().time() + timeout + client_work + 5
        while len(got["cursor"]) < len(published) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # the cursor client catches up on the last events
        stop.set()
        await asyncio.gather(*loops)  # each ends after its current request (at most `timeout` s)
        return published, rows, got

    published, rows, got = runtime.run(run(), timeout=duration + 4 * timeout + 30)
    seqs = [e["seq"] for e in published]
    answers = pd.DataFrame(rows).sort_values(["client", "asked_at"], ignore_index=True)
    received = pd.DataFrame([{**e, "client": kind} for kind, evs in got.items() for e in evs],
                            columns=["client", "seq", "sent_at", "received_at"])
    received["latency_ms"] = (received.received_at - received.sent_at) * 1000
    delivery = pd.DataFrame([{"client": kind, **delivery_counts(seqs, [e["seq"] for e in got[kind]])}
                             for kind in ("cursor", "naive")])
    return {"answers": answers, "received": received, "delivery": delivery,
            "published": pd.DataFrame(published)[["seq", "sent_at"]]}


def gap_table(answers: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per re-request gap: its length and how many events were published inside it.

    A gap runs from the moment a client had its answer to the moment it asked again, as the
    client saw it (the server's view is a little wider: the network time on both sides).
    """
    rows = []
    for client, group in answers.groupby("client"):
        group = group.sort_values("asked_at")
        for answered, asked_next in zip(group.answered_at.iloc[:-1], group.asked_at.iloc[1:]):
            inside = ((published.sent_at >= answered) & (published.sent_at < asked_next)).sum()
            rows.append({"client": client, "gap_ms": (asked_next - answered) * 1000, "events_in_gap": int(inside)})
    return pd.DataFrame(rows, columns=["client", "gap_ms", "events_in_gap"])


def hold_long_polls(feed: ServerHandle, count: int, timeout: float = 60) -> list[socket.socket]:
    """Open ``count`` long polls from raw sockets (waiting for the next event); returns the sockets.

    Close the sockets to make the clients "go away" (a closed tab, a lost network).
    """
    after = feed.call(lambda app: app.buffer.last_seq)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((feed.host, feed.port), timeout=10)
        sock.sendall(encode_request("GET", f"/feed/longpoll?after={after}&timeout={timeout}",
                                    {"Host": f"{feed.host}:{feed.port}"}))
        sockets.append(sock)
    return sockets


def wait_for_waiters(feed: ServerHandle, count: int, timeout: float = 10) -> int:
    """Wait until the feed holds exactly ``count`` long-poll waiters; returns the count (raises on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        now = feed.call(lambda app: app.waiter_count)
        if now == count:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"the feed holds {now} waiters, not {count}, after {timeout} s")
        time.sleep(0.01)
