"""Lesson 08's closing table: one row per fix, measured costs beside stated guarantees.

It joins what the other modules measured (success, added latency, per-login and idle Redis
load) with :data:`~lab.lessons.fixes.catalogue.SEMANTICS` and
:data:`~lab.lessons.fixes.catalogue.REAL_SYSTEMS`, so the choice between fixes is made on one page.
"""
from __future__ import annotations

import pandas as pd

from lab.lessons.fixes.catalogue import FIXES, REAL_SYSTEMS, SEMANTICS


def closing_table(success: pd.DataFrame, latency: pd.DataFrame, costs: pd.DataFrame, idle: pd.DataFrame,
                  transport: str = "sse") -> pd.DataFrame:
    """One row per fix: success over every balancer and transport, the latency it adds and the
    per-login costs (for ``transport``), the idle Redis load, delivery semantics, real systems."""
    ok = success.groupby("fix")["ok"].mean().mul(100).round(1).rename("success_pct")
    lat = latency[latency["transport"] == transport].set_index("fix")[["added_p50_ms", "added_p99_ms"]]
    cost = costs[costs["transport"] == transport].set_index("fix")[
        ["redis_per_login", "messages_per_login", "bytes_per_login"]]
    base_redis = cost["redis_per_login"].get("none", 0.0)
    cost = cost.assign(added_redis_per_login=cost["redis_per_login"] - base_redis)
    idle_rate = idle.set_index("fix")["redis_per_channel_per_s"].rename("idle_redis_per_channel_per_s")
    table = pd.concat([ok, lat, cost[["added_redis_per_login", "messages_per_login", "bytes_per_login"]], idle_rate],
                      axis=1).reindex([f for f in FIXES if f in ok.index])
    table["delivery"] = [SEMANTICS[f] for f in table.index]
    table["real systems"] = [REAL_SYSTEMS[f] for f in table.index]
    table.index.name = "fix"
    return table.round(2).reset_index()
