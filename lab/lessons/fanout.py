"""Lesson 09, at scale: one event to thousands of subscribers, and what each one costs the server.

A push server's work per event is one write per open connection, so with thousands of
subscribers the per-connection cost is the whole cost. :func:`live_fanout` runs the fan-out
benchmark (``benchmarks/fanout.py``: each server in a process of its own, subscribers as raw
connections in worker processes) at a lesson's size, and :func:`committed_fanout` reads the
figures the repository committed at 10,000 subscribers. Both return the same columns:

- ``time_to_last_ms``: from the publish request until the last subscriber had the event (median
  over the events);
- ``cpu_us_per_subscriber``: the server's CPU time per event divided by the subscribers: the
  price of one delivery;
- ``kb_per_connection``: the server's resident memory per held connection;
- ``vs_floor``: how many times the floor's CPU per delivery this costs. The floor is a raw
  asyncio server making exactly one ``socket.send`` of one pre-encoded frame per subscriber: no
  Python server can do less per delivery.

The servers: ``ours`` (the course's feed, with everything the lessons need: sequence numbers,
replay buffer, slow-consumer bound), ``bare`` (the smallest Tornado broadcast), ``websockets``
(the ``websockets`` library's ``broadcast``) and ``floor``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lab.lessons import ROOT, benchmark

__all__ = ["live_fanout", "committed_fanout", "COLUMNS"]

COMMITTED = ROOT / "benchmarks" / "results" / "fanout_summary.csv"
COLUMNS = ["server", "kind", "subscribers", "time_to_last_ms", "cpu_us_per_subscriber", "kb_per_connection",
           "vs_floor"]


def _table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per server and kind from per-event rows (or a committed summary)."""
    per_event = rows.assign(cpu_us_per_subscriber=rows["server_cpu_s"] * 1e6 / rows["subscribers"])
    table = (per_event.groupby(["server", "kind"], sort=False)
             .agg(subscribers=("subscribers", "max"), time_to_last_ms=("time_to_last_ms", "median"),
                  cpu_us_per_subscriber=("cpu_us_per_subscriber", "mean"),
                  kb_per_connection=("rss_kb_per_connection", "max"))
             .reset_index())
    floor = table[table.server == "floor"].set_index("kind")["cpu_us_per_subscriber"]
    table["vs_floor"] = [c / floor.get(k, math.nan) if floor.get(k) else math.nan
                         for k, c in zip(table.kind, table.cpu_us_per_subscriber)]
    return table[COLUMNS].round({"time_to_last_ms": 0, "cpu_us_per_subscriber": 1, "kb_per_connection": 1,
                                 "vs_floor": 2})


def live_fanout(subscribers: int = 2000, *, servers=("ours", "bare", "websockets", "floor"), kinds=("ws",),
                events: int = 5, workers: int = 2) -> pd.DataFrame:
    """Fan one event out to ``subscribers`` connections of each kind, ``events`` times, per server.

    CPU is the mean over the events (the server's CPU is counted in 10 ms ticks, so a mean over
    several events is steadier than any one); time to the last subscriber is the median.
    """
    fanout = benchmark("fanout")
    rows = []
    for server in servers:
        for kind in kinds:
            if kind in fanout.SERVERS[server]["paths"]:
                rows += fanout.scenario(server, [kind], subscribers, workers, events, parallel=24, timeout=60.0,
                                        verbose=False)
    frame = pd.DataFrame(rows)
    incomplete = frame[frame.received < frame.subscribers]
    if not incomplete.empty:
        raise RuntimeError(f"some subscribers did not get an event:\n{incomplete}")
    return _table(frame)


def committed_fanout(path: Path = COMMITTED) -> pd.DataFrame | None:
    """The committed 10,000-subscriber figures (``python -m benchmarks.fanout``), or ``None``."""
    if not path.exists():
        return None
    summary = pd.read_csv(path)
    if "rss_kb_per_connection" not in summary:  # an older run
        summary["rss_kb_per_connection"] = math.nan
    return _table(summary)
