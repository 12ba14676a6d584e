"""How each fix's cost grows: per-login costs as servers are added, and Redis's load while nothing happens.

A fix that is cheap on two servers may not be on six, and one that costs nothing per login may
cost something per open channel every second; :func:`scaling` and :func:`idle_cost` measure both.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.lessons import qr_bug
from lab.lessons.fixes.catalogue import FIXES
from lab.lessons.fixes.clusters import _hubs, _per_login, cluster_counters, start_fix_cluster
from lab.lessons.fixes.latency import median_interval
from servers import runtime
from servers.clients.qr import AsyncBrowser


def scaling(fixes: Iterable[str] = FIXES, ns: Sequence[int] = (2, 4), transport: str = "sse",
            logins: int = 12, *, balancer: str = "python", seed: int = 8, wait_s: float = 3.0,
            arrivals_per_s: float = 100.0) -> pd.DataFrame:
    """Per fix and N: random users (so the confirm crosses about (N-1)/N of the time), with the
    success rate, latency p50 with its 95 % interval (nan below 6 logins) and the per-login costs.
    One row per fix and N."""
    rows = []
    for fix in fixes:
        for n in ns:
            with start_fix_cluster(fix, n, balancer) as cluster:
                before = cluster_counters(cluster)
                frame = pd.DataFrame(runtime.run(
                    qr_bug.traffic_async(cluster.url, transport, logins, seed=seed + n, wait_s=wait_s,
                                         arrivals_per_s=arrivals_per_s),
                    timeout=logins * (wait_s + 2) + 60))
                after = cluster_counters(cluster)
            latency_ms = frame["latency_s"].dropna() * 1000
            low, high = median_interval(latency_ms)
            rows.append({"fix": fix, "n_servers": n, "logins": len(frame),
                         "success_pct": round(100 * frame["ok"].mean(), 1),
                         "p50_ms": latency_ms.median(), "p50_low_ms": low, "p50_high_ms": high,
                         **_per_login(before, after, logins)})
    return pd.DataFrame(rows)


async def _settled(clusters: list[Any]) -> None:
    """Until every subscription (pubsub) and registry entry (registry) the open channels caused
    has been acknowledged by Redis, so that the window counts only what idling costs."""
    for cluster in clusters:
        for handle in _hubs(cluster):
            hub = handle.app.push
            for ticket in list(hub.channels):
                if hasattr(hub, "wait_confirmed"):
                    await hub.wait_confirmed(ticket)
                if hasattr(hub, "wait_registered"):
                    await hub.wait_registered(ticket)


def held_connections(cluster: Any) -> dict[str, float]:
    """The cluster's Redis connections (``CLIENT LIST``, this one left out), per server: all of them,
    and those held by a subscription or a blocking read (flag ``P`` or ``b``), which a pool cannot
    lend to anything else."""
    import redis as redis_py

    client = redis_py.Redis.from_url(cluster.redis_url)
    try:
        me = client.client_id()
        others = [c for c in client.client_list() if int(c.get("id", -1)) != me]
    finally:
        client.close()
    servers = max(1, len(cluster.servers))
    held = sum(1 for c in others if "P" in c.get("flags", "") or "b" in c.get("flags", ""))
    return {"redis_connections_per_server": round(len(others) / servers, 1), "held_per_server": round(held / servers, 1)}


def idle_cost(fixes: Iterable[str] = FIXES, channels: int = 10, seconds: float = 1.0,
              balancer: str = "python") -> pd.DataFrame:
    """Redis commands per second with ``channels`` WebSocket channels open and nothing happening,
    and the Redis connections the servers hold meanwhile (:func:`held_connections`).

    Every fix's cluster runs at once and is measured over the same window (a fixed window is the
    measurement itself, as a stopwatch is; nothing waits on it for a result).
    """
    from servers.cluster import server_names

    # Side by side in one process: each cluster's servers need names of their own ("pubsub-A").
    clusters = {fix: start_fix_cluster(fix, 2, balancer, name=f"lesson08-idle-{fix}",
                                       names=[f"{fix}-{s}" for s in server_names(2)]) for fix in fixes}
    try:
        async def open_all() -> list[Any]:
            opened = []
            for cluster in clusters.values():
                browser = AsyncBrowser(cluster.url, "ws")
                for i in range(channels):
                    ticket = (await browser.create_ticket())["ticket"]
                    if i % 2:  # one more request: round robin puts every other channel on the other server
                        await browser.state(ticket)
                    opened.append(await browser.open_channel(ticket))
            return opened

        opened = runtime.run(open_all(), timeout=60)
        runtime.run(_settled(list(clusters.values())), timeout=30)
        held = {fix: held_connections(c) for fix, c in clusters.items()}
        before = {fix: cluster_counters(c) for fix, c in clusters.items()}
        started = time.monotonic()
        runtime.run(asyncio.sleep(seconds))  # the measurement window
        elapsed = time.monotonic() - started
        after = {fix: cluster_counters(c) for fix, c in clusters.items()}
        async def close_all() -> None:
            await asyncio.gather(*(ch.close() for ch in opened))

        runtime.run(close_all())
    finally:
        for cluster in clusters.values():
            cluster.stop()
    rows = []
    for fix in clusters:
        rate = (after[fix]["redis_total"] - before[fix]["redis_total"] - 1) / elapsed
        rows.append({"fix": fix, "open_channels": channels, "redis_per_s": round(rate, 1),
                     "redis_per_channel_per_s": round(rate / channels, 2), **held[fix]})
    return pd.DataFrame(rows)
