"""Lesson 06's measurements: one point (:func:`measure_point`), the idle cost, and a sweep over a grid.

A point is one technique at one event rate with some subscribers, all through a wire tap, while
a publisher around the tap posts events at random moments; it returns one summary row (bytes,
requests and latency per event, the server's CPU, memory and descriptors) and the latency of
every delivered event.

Bytes per event mix two costs: what a connection pays once (the handshake, a subscription) and
what each event costs once the connection is open. A short run spreads the first over few events,
so the row also splits them: ``steady_bytes_per_event`` is counted on the wire between the moment
every subscriber has its first event and the moment every subscriber has its last (no handshake,
no closing inside), and ``fixed_bytes_per_connection`` is the rest, per connection, so that
``bytes per event = steady + fixed x connections / deliveries`` holds exactly. :func:`measure_idle` is the cost of connections while nothing happens.
:func:`sweep` runs both for every technique on a fresh :class:`FeedProcess`, as the benchmark
does at full size.
"""
from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.lessons.comparison.feed_process import FeedProcess
from lab.lessons.comparison.framing import wire_cost
from lab.lessons.comparison.keepalive import KeepAliveHTTP
from lab.lessons.comparison.subscribers import TECHNIQUES, _subscriber
from lab.publishing import random_moments
from lab.tap import parse_http_stream, start_tap
from servers import runtime
from servers.runtime import cancel_and_wait


CAPTURE_BYTES = 64 * 1024 * 1024  # the tap keeps every byte of a connection up to this, to parse it


def _data(i: int, payload_bytes: int) -> dict[str, Any]:
    return {"n": i, "text": ("x" * payload_bytes)}


SUMMARY_COLUMNS = [
    "technique", "rate_eps", "subscribers", "events", "delivered", "lost", "seconds",
    "bytes_down_per_event", "bytes_up_per_event", "min_bytes_down_per_event", "min_bytes_up_per_event",
    "ratio_down", "ratio_up", "framing_bytes_per_event", "framing_min_per_event", "framing_ratio",
    "event_json_bytes", "requests_per_event", "connections_per_event",
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms",
    "server_cpu_s_per_1000_events", "server_rss_mb", "server_fds", "poll_interval_s",
    "steady_bytes_per_event", "steady_deliveries", "fixed_bytes_per_connection",
]


class _Watched(list):
    """A subscriber's list of received events that tells ``on_append`` each time one arrives."""

    def __init__(self, on_append) -> None:
        super().__init__()
        self._on_append = on_append

    def append(self, item) -> None:
        super().append(item)
        self._on_append()


class _Window:
    """Tap byte totals and deliveries at two moments: every subscriber has its first event, and
    every subscriber has its last. Each is taken just after the append that completes it (in the
    loop's next step, once a poll's whole answer is appended), on the server loop, before the
    tap can relay anything a subscriber sends or closes afterwards."""

    def __init__(self, tap, subscribers: int) -> None:
        self.tap, self.subscribers = tap, subscribers
        self.lists: list[_Watched] = []
        self.last_seq: int | None = None
        self.start: tuple[int, int] | None = None
        self.end: tuple[int, int] | None = None
        self._asked: set[str] = set()

    def new_list(self) -> "_Watched":
        watched = _Watched(self._arrived)
        self.lists.append(watched)
        return watched

    def _take(self, which: str) -> None:
        wire = sum(c.bytes_up + c.bytes_down for c in self.tap.snapshot())
        setattr(self, which, (wire, sum(len(rows) for rows in self.lists)))

    def _arrived(self) -> None:
        if self.last_seq is None or len(self.lists) < self.subscribers:
            return
        due = []
        if "start" not in self._asked and all(self.lists):
            due.append("start")
        if "end" not in self._asked and all(rows and rows[-1][0] == self.last_seq for rows in self.lists):
            due.append("end")
        for which in due:
            self._asked.add(which)
            asyncio.get_running_loop().call_soon(self._take, which)

    def steady(self) -> tuple[float, int]:
        """(bytes per delivery inside the window, deliveries inside it); NaN if it holds none."""
        if self.start is None or self.end is None or self.end[1] <= self.start[1]:
            return float("nan"), 0
        deliveries = self.end[1] - self.start[1]
        return (self.end[0] - self.start[0]) / deliveries, deliveries


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
        window = _Window(tap, subscribers)
        result = runtime.run(_run_point(feed, tap.url, technique, rate, subscribers, count, payload_bytes,
                                        poll_interval, longpoll_timeout, seed, window),
                             timeout=count / rate + poll_interval + longpoll_timeout + 120)
        try:
            tap.wait_closed(timeout=5)
        except TimeoutError:
            pass  # a connection the server has not closed yet: its bytes are already counted
        conns = tap.snapshot()  # one consistent copy of every connection (counts and bytes)
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
    steady, steady_deliveries = window.steady()
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
        "steady_bytes_per_event": steady, "steady_deliveries": steady_deliveries,
        "fixed_bytes_per_connection": ((bytes_down + bytes_up - steady * delivered) / len(conns)
                                       if conns and not math.isnan(steady) else float("nan")),
    }
    latencies.insert(0, "technique", technique)
    latencies.insert(1, "rate_eps", rate)
    latencies.insert(2, "subscribers", subscribers)
    if latency_sample is not None and len(latencies) > latency_sample:
        latencies = latencies.sample(latency_sample, random_state=seed).sort_values(["client", "seq"])
    return row, latencies.reset_index(drop=True)


async def _run_point(feed: FeedProcess, url: str, technique: str, rate: float, subscribers: int, count: int,
                     payload_bytes: int, poll_interval: float, longpoll_timeout: float, seed: int,
                     window: "_Window | None" = None):
    publisher = KeepAliveHTTP(feed.url)
    try:
        warm = await publisher.json("POST", "/feed/publish", {"data": "start"})  # the cursor to start from
        after = warm["seq"]
        seqs = set(range(after + 1, after + count + 1))
        got: dict[int, list] = {i: (window.new_list() if window else []) for i in range(subscribers)}
        if window is not None:
            window.last_seq = after + count
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
        await cancel_and_wait(tasks)
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
    for conn in tap.snapshot():
        total += conn.bytes_up + conn.bytes_down
        requests += len(parse_http_stream(bytes(conn.head_up), response=False)[0])
    return total, requests


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


RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def committed_results(name: str) -> pd.DataFrame | None:
    """A CSV the full benchmarks committed under ``benchmarks/results/`` (``"fanout_summary"``,
    ``"techniques"``...), or None if it is not there."""
    path = RESULTS / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def latency_percentiles(latencies: pd.DataFrame, by: str | Sequence[str] = "technique") -> pd.DataFrame:
    """Per group: how many events were timed (``n``) and their latency percentiles and maximum (ms)."""
    grouped = latencies.groupby(by, sort=False).latency_ms
    table = grouped.quantile([0.5, 0.9, 0.99]).unstack()
    table.columns = ["p50_ms", "p90_ms", "p99_ms"]
    return pd.concat([grouped.size().rename("n"), table, grouped.max().rename("max_ms")], axis=1)
