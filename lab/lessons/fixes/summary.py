"""Lesson 08's closing table: one row per fix, measured costs beside stated guarantees.

It joins what the other modules measured (success, added latency, per-login and idle Redis
load) with :data:`~lab.lessons.fixes.catalogue.SEMANTICS` and
:data:`~lab.lessons.fixes.catalogue.REAL_SYSTEMS`, so the choice between fixes is made on one page.
"""
from __future__ import annotations

import pandas as pd

from lab.lessons.fixes.catalogue import (FIXES, HELD, ON_REDIS_RESTART, ON_SERVER_DEATH, OPERATIONS, REAL_SYSTEMS,
                                         SEMANTICS)


def closing_table(success: pd.DataFrame, latency: pd.DataFrame, costs: pd.DataFrame, idle: pd.DataFrame,
                  transport: str = "sse", hops: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per fix: success over every balancer and transport, the median latency of a whole
    login (for ``transport``) with its 95 % interval and what that adds to one server, the hop
    between servers alone (``hops``, :func:`~lab.lessons.fixes.latency.hop_table`, first change of a
    ticket), the per-login costs, the idle Redis load and held connections, then what is stated
    rather than measured here: delivery, held connections, a server's death and a Redis restart
    (lesson 09), what it costs to operate, real systems."""
    ok = success.groupby("fix")["ok"].mean().mul(100).round(1).rename("success_pct")
    wanted = [c for c in ("p50_ms", "p50_low_ms", "p50_high_ms", "added_p50_ms") if c in latency.columns]
    lat = latency[latency["transport"] == transport].set_index("fix")[wanted]
    if hops is not None and not hops.empty:
        first = hops[hops["change"] == "first"].set_index("fix")
        lat = lat.join(first[["p50_ms", "p50_low_ms", "p50_high_ms"]].add_prefix("hop_"), how="left")
    cost = costs[costs["transport"] == transport].set_index("fix")[
        ["redis_per_login", "messages_per_login", "bytes_per_login"]]
    base_redis = cost["redis_per_login"].get("none", 0.0)
    cost = cost.assign(added_redis_per_login=cost["redis_per_login"] - base_redis)
    idle_rate = idle.set_index("fix")["redis_per_channel_per_s"].rename("idle_redis_per_channel_per_s")
    parts = [ok, lat, cost[["added_redis_per_login", "messages_per_login", "bytes_per_login"]], idle_rate]
    if "held_per_server" in idle.columns:
        parts.append(idle.set_index("fix")["held_per_server"].rename("held_redis_connections_per_server"))
    table = pd.concat(parts, axis=1).reindex([f for f in FIXES if f in ok.index])
    table["delivery"] = [SEMANTICS[f] for f in table.index]
    table["holds"] = [HELD[f] for f in table.index]
    table["a server dies (lesson 09)"] = [ON_SERVER_DEATH[f] for f in table.index]
    table["Redis restarts (lesson 09)"] = [ON_REDIS_RESTART[f] for f in table.index]
    table["to operate"] = [OPERATIONS[f] for f in table.index]
    table["real systems"] = [REAL_SYSTEMS[f] for f in table.index]
    table.index.name = "fix"
    return table.round(2).reset_index()
