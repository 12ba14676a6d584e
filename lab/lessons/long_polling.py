"""Lesson 02's pieces: a long poll *without* a cursor, and the measurements that compare it.

The feed's ``GET /feed/longpoll?after=N`` has a cursor: an event published while the client is
between two requests (the *re-request gap*) is in the buffer, and the next request gets it at
once. :class:`NaiveLongPollHandler` is the design without one: the request waits for the
*next* publish and answers with that one event. Whatever is published while the client is not waiting is lost. The lesson
serves both on one feed (:func:`start_lesson_feed`) and counts what each client gets.

- :func:`measure_idle_cost` - idle clients with several timeouts, each behind a wire tap: what
  the empty timed-out exchanges cost per second and per hour.
- :func:`measure_cursor_vs_naive` - both clients at once against events at random moments;
  one row per answer (when asked, when answered, how many events) and the delivery counts.
- :func:`waiter_timeline` - held requests whose clients then go away one by one: the server's
  waiter count over time, and when each waiter went (:func:`plot_waiters` draws it);
  :func:`hold_long_polls` / :func:`wait_for_waiters` do the same by hand from a cell.
- :func:`plot_idle_cost` - the measured idle cost against one empty exchange per timeout.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import tornado.httpclient

from servers import runtime
from servers.clients.http import alongpoll
from servers.feed.app import make_feed_app
from lab.publishing import publish_at_random_times
from lab.measure import delivery_counts
from lab.plots import STYLE, require_unit, technique_color
from servers.runtime import ServerHandle, serve
from lab.tap import start_tap
from servers.web import BaseHandler
from servers.wire.http import encode_request

__all__ = ["NaiveLongPollHandler", "start_lesson_feed", "measure_idle_cost", "measure_cursor_vs_naive", "gap_table",
           "hold_long_polls", "wait_for_waiters", "waiter_timeline", "plot_waiters", "plot_idle_cost"]


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


def waiter_timeline(feed: ServerHandle, clients: int, *, timeout: float = 60.0, spacing: float = 0.25,
                    every: float = 0.005) -> dict[str, pd.DataFrame]:
    """Hold ``clients`` long polls (``timeout`` s), then close their connections one by one.

    Runs on the server loop, so every time is read from the server's own clock (seconds since
    the first request was sent): ``samples`` is the server's waiter count every ``every`` s;
    ``clients`` has, per client, when its connection was closed and when the server's waiter for
    it went away (the future's done-callback), ``spacing`` s apart so each drop belongs to one
    close. The feed must hold no other long poll meanwhile.
    """
    app = feed.app

    async def run() -> tuple[list[dict[str, float]], list[float], list[float]]:
        loop = asyncio.get_running_loop()
        if app.waiter_count:
            raise RuntimeError(f"the feed already holds {app.waiter_count} long polls; run this on an idle feed")
        start = loop.time()
        samples: list[dict[str, float]] = []
        closed: list[float] = []
        gone: list[float] = []
        finished = asyncio.Event()

        async def sample() -> None:
            while True:
                samples.append({"t_s": loop.time() - start, "waiters": app.waiter_count})
                if finished.is_set():
                    return
                await asyncio.sleep(every)

        async def until(count: int) -> None:
            deadline = loop.time() + 10
            while app.waiter_count != count:
                if loop.time() > deadline:
                    raise TimeoutError(f"the feed holds {app.waiter_count} waiters, not {count}, after 10 s")
                await asyncio.sleep(every)

        sampler = asyncio.ensure_future(sample())
        request = encode_request("GET", f"/feed/longpoll?after={app.buffer.last_seq}&timeout={timeout}",
                                 {"Host": f"{feed.host}:{feed.port}"})
        writers = []
        for _ in range(clients):
            _, writer = await asyncio.open_connection(feed.host, feed.port)
            writer.write(request)
            writers.append(writer)
        await until(clients)
        for waiter in list(app.waiters):
            waiter.add_done_callback(lambda _: gone.append(loop.time() - start))
        for writer in writers:
            await asyncio.sleep(spacing)
            closed.append(loop.time() - start)
            writer.close()  # the client goes away without an answer (a closed tab)
        await until(0)
        await asyncio.sleep(spacing)
        finished.set()
        await sampler
        return samples, closed, sorted(gone)

    samples, closed, gone = runtime.run(run(), timeout=clients * spacing + 30)
    table = pd.DataFrame({"client": range(1, clients + 1), "closed_at_s": closed, "waiter_gone_at_s": gone})
    table["gone_after_close_ms"] = (table.waiter_gone_at_s - table.closed_at_s) * 1000
    table["timeout_s"] = timeout
    return {"samples": pd.DataFrame(samples), "clients": table.round(4)}


def plot_waiters(timeline: dict[str, pd.DataFrame], ax=None):
    """The server's waiter count over time (a step line), a dashed line at each client's close."""
    xlabel = require_unit("time since the first request (s)", "x")
    ylabel = require_unit("waiting requests (count)", "y")
    samples, clients = timeline["samples"], timeline["clients"]
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        for i, at in enumerate(clients.closed_at_s):
            ax.axvline(at, ls="--", lw=1, color="grey", label="a client closes its connection" if i == 0 else None)
        ax.step(samples.t_s, samples.waiters, where="post", color=technique_color("longpoll"),
                label="waiters on the server")
        ax.set_ylim(0, samples.waiters.max() + 0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        timeout = clients.timeout_s.iloc[0]
        ax.set_title(f"Held long polls (timeout {timeout:g} s) let go when their clients leave")
        ax.legend(loc="upper right")
        ax.figure.tight_layout()
    return ax


def plot_idle_cost(idle: pd.DataFrame, more_timeouts: Sequence[float] = (5, 10, 30, 60), ax=None):
    """Measured bytes per idle hour (markers, drawn on top) against the model line
    ``3600 / timeout × bytes per exchange``, carried on to the longer timeouts real servers use."""
    xlabel = require_unit("long-poll timeout (s)", "x")
    ylabel = require_unit("bytes per idle hour per client (B)", "y")
    per_exchange = idle.bytes_per_exchange.mean()
    timeouts = sorted(set(idle.timeout_s) | set(more_timeouts))
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        ax.plot(timeouts, [3600 / t * per_exchange for t in timeouts], color="grey", zorder=1,
                label=f"model: 3600 / timeout × {per_exchange:.0f} B per exchange")
        ax.scatter(idle.timeout_s, idle.bytes_per_idle_hour, s=60, color=technique_color("longpoll"),
                   edgecolor="black", zorder=3, label="measured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title("The cost of idleness: one empty exchange per timeout")
        ax.legend()
        ax.figure.tight_layout()
    return ax
