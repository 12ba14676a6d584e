"""What each fix adds to a login: confirm → browser latency and the per-login costs, one login at a time.

Logins run one after another (nothing queues), interleaved across every fix's cluster so a busy
moment of the machine hits all fixes alike, and are compared with ``none`` on one server: the
same login with nothing to fix.
"""
from __future__ import annotations

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


def latency_table(logins: pd.DataFrame) -> pd.DataFrame:
    """Per fix and transport: p50 and p99 of the latency (ms), and what the fix adds to the
    baseline ``none`` (one server) of the same transport, at the median and at p99."""
    ok = logins[logins["ok"]]
    table = ok.groupby(["fix", "transport"], sort=False)["latency_ms"].agg(
        logins="count", p50_ms="median", p99_ms=lambda s: s.quantile(0.99)).reset_index()
    base = table[table["fix"] == "none"].set_index("transport")
    table["added_p50_ms"] = table["p50_ms"] - table["transport"].map(base["p50_ms"])
    table["added_p99_ms"] = table["p99_ms"] - table["transport"].map(base["p99_ms"])
    return table.round(2)
