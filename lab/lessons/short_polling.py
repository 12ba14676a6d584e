"""Lesson 01's measurement: short-poll the same feed at several intervals at once.

One feed, one publisher (events at random moments, :mod:`.publishing`), and one poller per
interval, each behind its own wire tap so its bytes are counted apart. Each poller asks
``GET /feed/poll?after=<last seq it saw>`` on a fixed schedule (every ``interval`` seconds, not
``interval`` after the previous answer, so the schedule does not drift) until it has every
event. Everything runs on the server loop, so the pollers' timing does not depend on the
notebook.

What comes back, as DataFrames:

- one row per (interval, event): ``latency_ms = (received_at - sent_at) * 1000``;
- one row per interval: requests, empty answers, requests per delivered event, mean and median
  latency against the ``interval / 2`` theory, and the bytes on the wire per delivered event
  (request and response headers against the event bytes themselves).

:func:`plot_delay_vs_interval` draws every measured delay against its interval, on linear axes,
with the ``interval / 2`` line. :func:`conditional_poll_bytes` measures what a conditional poll
(``If-None-Match`` answered by ``304 Not Modified``) saves on the wire, and what it does not.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import requests as http

from servers import runtime
from servers.clients.http import apoll
from lab.plots import STYLE, require_unit, technique_color
from lab.publishing import publish_at_random_times
from lab.tap import start_tap

__all__ = ["measure_short_polling", "poll_on_schedule", "plot_delay_vs_interval", "conditional_poll_bytes"]


async def poll_on_schedule(url: str, interval: float, after: int, expected: int, deadline: float) -> dict[str, Any]:
    """Poll ``url`` every ``interval`` s with a cursor until ``expected`` events came (or ``deadline``, loop time).

    Returns the received events (stamped ``received_at``), the number of requests and how many
    answers were empty.
    """
    loop = asyncio.get_running_loop()
    received: list[dict[str, Any]] = []
    requests = empty = 0
    next_at = loop.time()
    while True:
        body = await apoll(url, after)
        requests += 1
        if not body["events"]:
            empty += 1
        for event in body["events"]:
            received.append(event)
            after = event["seq"]
        if len(received) >= expected or loop.time() > deadline:
            break
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return {"events": received, "requests": requests, "empty": empty}


def measure_short_polling(feed: Any, intervals: Sequence[float], *, duration: float, events: int,
                          seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Poll ``feed`` at each of ``intervals`` (s) while ``events`` events are published over ``duration`` s.

    Returns ``(latencies, summary)``: one row per (interval, event) and one row per interval
    (see the module docstring). Takes about ``duration + max(intervals)`` seconds.
    """
    intervals = sorted(float(i) for i in intervals)
    taps = {i: start_tap(feed, name=f"lesson 01 tap, every {i} s", capture_bytes=8 * 1024 * 1024)
            for i in intervals}
    start_seq = feed.call(lambda app: app.buffer.last_seq)

    async def run() -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + duration + max(intervals) + 5
        pollers = [poll_on_schedule(taps[i].url, i, start_seq, events, deadline) for i in intervals]
        publishing = asyncio.wrap_future(publish_at_random_times(feed, events, duration, seed=seed))
        *results, _ = await asyncio.gather(*pollers, publishing)
        return results

    try:
        results = runtime.run(run(), timeout=duration + max(intervals) + 30)
        rows, frames = [], []
        for interval, result in zip(intervals, results):
            got = pd.DataFrame(result["events"], columns=["seq", "data", "sent_at", "received_at"])
            got["interval_s"] = interval
            got["latency_ms"] = (got.received_at - got.sent_at) * 1000
            frames.append(got)
            messages = taps[interval].http_messages()
            requests_ = messages[messages.kind == "request"]
            responses = messages[messages.kind == "response"]
            delivered = len(got)
            event_bytes = sum(len(json.dumps(e, separators=(",", ":"))) for e in result["events"])
            per = max(delivered, 1)
            rows.append({
                "interval_s": interval, "events": delivered, "requests": result["requests"],
                "empty_answers": result["empty"], "requests_per_event": result["requests"] / per,
                "theory_ms": interval * 1000 / 2, "mean_latency_ms": got.latency_ms.mean(),
                "median_latency_ms": got.latency_ms.median(),
                "p5_latency_ms": got.latency_ms.quantile(0.05), "p95_latency_ms": got.latency_ms.quantile(0.95),
                "max_latency_ms": got.latency_ms.max(),
                "request_header_bytes_per_event": requests_.header_bytes.sum() / per,
                "response_header_bytes_per_event": responses.header_bytes.sum() / per,
                "body_bytes_per_event": responses.body_bytes.sum() / per,
                "event_bytes_per_event": event_bytes / per,
            })
    finally:
        for tap in taps.values():
            tap.stop()
    summary = pd.DataFrame(rows)
    summary["header_bytes_per_event"] = (summary.request_header_bytes_per_event
                                         + summary.response_header_bytes_per_event)
    latencies = pd.concat(frames, ignore_index=True)[["interval_s", "seq", "sent_at", "received_at", "latency_ms"]]
    derived = [c for c in summary.columns if c.endswith(("_ms", "_bytes_per_event")) or c == "requests_per_event"]
    summary[derived] = summary[derived].round(1)
    return latencies, summary


def plot_delay_vs_interval(latencies: pd.DataFrame, summary: pd.DataFrame, ax=None):
    """Every event's delay (a dot) against the poll interval, on linear axes, with the measured
    median per interval, the ``interval / 2`` line and the ``interval`` line (the longest wait)."""
    xlabel, ylabel = require_unit("poll interval (s)", "x"), require_unit("delivery latency (ms)", "y")
    colour = technique_color("poll")
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots()
        top = max(summary.interval_s)
        ax.plot([0, top], [0, top * 1000], ls=":", color="grey", label="interval: the longest wait")
        ax.plot([0, top], [0, top * 500], ls="--", color="black", label="interval / 2: the average wait")
        ax.scatter(latencies.interval_s, latencies.latency_ms, s=14, alpha=0.45, color=colour,
                   label="one event (measured)", zorder=3)
        ax.plot(summary.interval_s, summary.median_latency_ms, marker="_", ms=22, mew=3, ls="none",
                color=colour, label="median (measured)", zorder=4)
        ax.set_xlim(0, top * 1.05)
        ax.set_ylim(0, None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title("Short polling: an event waits for the next poll")
        ax.legend()
        ax.figure.tight_layout()
    return ax


def conditional_poll_bytes(feed: Any) -> pd.DataFrame:
    """The bytes of a poll answered in full (200) and of the same poll made conditional (304).

    Through a tap, on one keep-alive connection: for two cursors, ``after`` = the last seq (the
    usual poll: nothing new) and ``after = 0`` (every buffered event), one plain request, then
    the same request with ``If-None-Match`` set to the ETag the first answer carried. Nothing may
    be published meanwhile. One row per exchange: the request's and the response's header bytes
    (start line, headers, blank line), the response body bytes, and the response's header names.
    """
    tap = start_tap(feed, name="lesson 01 conditional tap")
    try:
        last = feed.call(lambda app: app.buffer.last_seq)
        asked = []
        with http.Session() as session:
            for cursor, after in (("nothing new (after = last seq)", last), ("every buffered event (after = 0)", 0)):
                first = session.get(tap.url + "/feed/poll", params={"after": after})
                etag = first.headers["ETag"]
                again = session.get(tap.url + "/feed/poll", params={"after": after}, headers={"If-None-Match": etag})
                asked += [(cursor, "no", ", ".join(first.headers)),
                          (cursor, f"yes: If-None-Match: {etag}", ", ".join(again.headers))]
        messages = tap.http_messages()
    finally:
        tap.stop()
    requests_ = messages[messages.kind == "request"].reset_index(drop=True)
    responses = messages[messages.kind == "response"].reset_index(drop=True)
    frame = pd.DataFrame(asked, columns=["poll", "conditional", "response_headers"])
    frame["status"] = responses.start_line.str.split(" ", n=1).str[1]
    frame["request_header_bytes"] = requests_.header_bytes
    frame["response_header_bytes"] = responses.header_bytes
    frame["response_body_bytes"] = responses.body_bytes
    frame["total_bytes"] = frame.request_header_bytes + frame.response_header_bytes + frame.response_body_bytes
    return frame[["poll", "conditional", "status", "request_header_bytes", "response_header_bytes",
                  "response_body_bytes", "total_bytes", "response_headers"]]
