"""What each fix adds to a login: confirm → browser latency and the per-login costs, one login at a time.

Logins run one after another (nothing queues), interleaved across every fix's cluster so a busy
moment of the machine hits all fixes alike, and are compared with ``none`` on one server: the
same login with nothing to fix. :func:`hop_latency` measures the hop between the servers alone
(publish on B → handed to the channel on A), which the whole login's latency hides in its noise.
Medians come with a distribution-free 95 % interval (:func:`median_interval`); no p99 from tens of
samples.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.lessons.fixes.catalogue import FIXES
from lab.lessons.fixes.clusters import _per_login, cluster_counters, start_fix_cluster
from servers import runtime
from servers.clients.qr import login_once_async


def latency_and_cost(fixes: Iterable[str] = FIXES, transports: Sequence[str] = ("sse", "ws", "longpoll"),
                     logins: int = 15, *, n: int = 2, balancer: str = "python",
                     timeout: float = 5.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Logins one after another through each fix's cluster of ``n`` servers, and the baseline
    ``none`` on **one** server behind the same balancer (the same login with nothing to fix).

    All the clusters run side by side and the logins are interleaved (fix after fix, the order
    rotating), so a busy moment of the machine hits every fix alike.

    Returns ``(logins, costs)``: one row per login (``fix``, ``transport``, ``ok``, ``latency_ms``
    = phone's confirm sent → browser saw ``confirmed``, ``crossed`` = the confirm was handled by
    another server than the one holding the channel), and one row per fix and transport with
    the per-login costs of :func:`cluster_counters`.

    Under strict round robin one isolated login sends its confirm 3 requests after its channel,
    so with 2 servers every SSE/WebSocket login crosses (lesson 07): each one exercises the fix.
    ``ticket_hash`` never crosses (that is the fix), and with ``gateway`` the channel is on the
    push tier.
    """
    from servers.cluster import server_names

    order = ["none", *[f for f in fixes if f != "none"]]
    clusters: dict[str, Any] = {}
    rows, costs = [], []
    try:
        for fix in order:
            size = 1 if fix == "none" else n
            clusters[fix] = start_fix_cluster(fix, size, balancer, name=f"lesson08-latency-{fix}",
                                              names=[f"{fix}-{s}" for s in server_names(size)])
        for transport in transports:
            before = {fix: cluster_counters(c) for fix, c in clusters.items()}
            for i in range(logins):
                for fix in order[i % len(order):] + order[:i % len(order)]:
                    r = runtime.run(login_once_async(clusters[fix].url, transport, timeout, poll_interval=0.2),
                                    timeout=timeout + 60)
                    rows.append({"fix": fix, "transport": transport, "ok": bool(r["ok"]),
                                 "latency_ms": None if r["latency_s"] is None else r["latency_s"] * 1000,
                                 "crossed": r["served_by_confirm"] != r["served_by_channel"],
                                 "channel_on": r["served_by_channel"], "confirm_on": r["served_by_confirm"],
                                 "error": r["error"]})
            for fix, cluster in clusters.items():
                costs.append({"fix": fix, "transport": transport, "n_servers": len(cluster.servers),
                              **_per_login(before[fix], cluster_counters(cluster), logins)})
    finally:
        for cluster in clusters.values():
            cluster.stop()
    return pd.DataFrame(rows), pd.DataFrame(costs)


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the order statistics whose ranks bracket n/2
    by ``z * sqrt(n)/2`` (the binomial's normal approximation; 95 % by default). With fewer than 6
    values there is no such interval: ``(nan, nan)``."""
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    if n < 6:
        return math.nan, math.nan
    z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}[confidence]
    low = max(0, math.floor(n / 2 - z * math.sqrt(n) / 2))
    high = min(n - 1, math.ceil(n / 2 + z * math.sqrt(n) / 2) - 1)
    return ordered[low], ordered[high]


def latency_table(logins: pd.DataFrame) -> pd.DataFrame:
    """Per fix and transport: the median latency (ms) with its 95 % interval, and what the fix adds
    to the baseline ``none`` (one server) of the same transport at the median.

    No p99: it needs hundreds of logins per cell to mean anything, and a lesson runs tens.
    """
    ok = logins[logins["ok"]]
    rows = []
    for (fix, transport), group in ok.groupby(["fix", "transport"], sort=False):
        low, high = median_interval(group["latency_ms"])
        rows.append({"fix": fix, "transport": transport, "logins": len(group), "p50_ms": group["latency_ms"].median(),
                     "p50_low_ms": low, "p50_high_ms": high})
    table = pd.DataFrame(rows)
    base = table[table["fix"] == "none"].set_index("transport")
    table["added_p50_ms"] = table["p50_ms"] - table["transport"].map(base["p50_ms"])
    return table.round(2)


def hop_latency(fixes: Sequence[str] = ("pubsub", "registry", "gateway"), tickets: int = 100, *,
                timeout: float = 5.0) -> pd.DataFrame:
    """What the fix itself adds, alone: from ``publish`` called on one server to the event handed
    to the channel on the holder (ms), measured in this process on one clock.

    One cluster of 2 servers per fix, side by side. Per ticket, the holder (server A; the push
    tier for ``gateway``) subscribes and waits until the fix has acknowledged it (pub/sub
    ``SUBSCRIBE``, registry ``SADD``), then server B publishes two changes of it: the ``first``
    (B has never looked this ticket up) and a ``later`` one (the registry's cached lookup). The
    fixes take turns event by event, so a busy moment of this machine hits each alike. No
    balancer, no browser, no HTTP request of the phone: only the hop between the servers.
    """
    from servers.cluster import server_names

    clusters: dict[str, Any] = {}

    async def run() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        rows: list[dict[str, Any]] = []
        ends = {fix: (c.gateway if c.gateway is not None else c.servers[sorted(c.servers)[0]],
                      c.servers[sorted(c.servers)[-1]]) for fix, c in clusters.items()}
        for i in range(tickets):
            for fix in list(ends)[i % len(ends):] + list(ends)[:i % len(ends)]:
                holder, sender = ends[fix][0].app.push, ends[fix][1].app.push
                ticket = f"hop-{fix}-{i}"
                arrived: list[asyncio.Future] = []
                sub = holder.subscribe(ticket, lambda event: arrived and not arrived[-1].done()
                                       and arrived[-1].set_result(time.perf_counter()))
                try:
                    for wait in ("wait_confirmed", "wait_registered"):
                        if hasattr(holder, wait):
                            await getattr(holder, wait)(ticket)
                    for version, change in ((2, "first"), (3, "later")):
                        arrived.append(loop.create_future())
                        started = time.perf_counter()
                        await sender.publish(ticket, {"ticket": ticket, "state": "scanned" if version == 2
                                                      else "confirmed", "version": version, "at": time.time()})
                        seen = await asyncio.wait_for(arrived[-1], timeout)
                        rows.append({"fix": fix, "change": change, "hop_ms": 1000 * (seen - started)})
                finally:
                    sub.close()
        return rows

    try:
        for fix in fixes:
            clusters[fix] = start_fix_cluster(fix, 2, "python", name=f"lesson08-hop-{fix}",
                                              names=[f"{fix}-hop-{s}" for s in server_names(2)])
        frame = pd.DataFrame(runtime.run(run(), timeout=tickets * len(clusters) * 2 * timeout + 60))
    finally:
        for cluster in clusters.values():
            cluster.stop()
    return frame


def hop_table(hops: pd.DataFrame) -> pd.DataFrame:
    """Per fix and change: events, the median hop (ms) with its 95 % interval, and p90."""
    rows = []
    for (fix, change), group in hops.groupby(["fix", "change"], sort=False):
        low, high = median_interval(group["hop_ms"])
        rows.append({"fix": fix, "change": change, "events": len(group), "p50_ms": group["hop_ms"].median(),
                     "p50_low_ms": low, "p50_high_ms": high, "p90_ms": group["hop_ms"].quantile(0.9)})
    return pd.DataFrame(rows).round(2)
