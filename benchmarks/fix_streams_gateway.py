"""What do the ``streams`` and ``gateway`` fixes cost per login? Writes benchmarks/results/fix_streams_gateway.csv.

For each fix and transport: whole QR logins through a 2-server cluster behind our balancer
(in-process servers, a real redis-server), one at a time so the latency is the fix's and not a
queue's. Measured per row:

* confirm → browser latency p50/p99 (ms): the phone's confirm sent → the browser's channel shows
  ``confirmed`` (``servers.clients.qr.login_once``); ``added_p50_ms`` is the difference to the
  baseline, the same login on a 1-server cluster with ``fix="none"`` and the same balancer;
* per login: the Redis commands the fix sent, and the messages and bytes (event JSON) it moved
  between servers or between a server and Redis, summed over every server's ``push.stats``
  (the gateway's too).

Short polling is listed for completeness: its latency is the poll interval's, whatever the fix.

Run from the project root (small by default; the issue's goal is ≤ 1 ms added at the median
on loopback for pubsub and registry - these two fixes are measured against the same baseline):

    python benchmarks/fix_streams_gateway.py [--logins 40] [--fixes streams,gateway] [--balancer python]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from servers import runtime  # noqa: E402
from servers.clients.qr import TRANSPORTS, login_many  # noqa: E402
from servers.cluster import start_cluster  # noqa: E402
from servers.redisproc import start_redis  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fix_streams_gateway.csv"
COLUMNS = ["date_utc", "fix", "transport", "servers", "balancer", "logins", "ok", "p50_ms", "p99_ms",
           "added_p50_ms", "redis_commands_per_login", "messages_per_login", "bytes_per_login", "cpus", "python"]
POLL_INTERVAL = 0.05


def hub_totals(cluster) -> Counter:
    """The fix's counters summed over every app server (and the gateway, if any)."""
    parts = list(cluster.servers.values()) + ([cluster.gateway] if getattr(cluster, "gateway", None) else [])
    total: Counter = Counter()
    for handle in parts:
        total.update(handle.call(lambda app: dict(app.push.stats)))
    return total


def measure(redis_url: str, fix: str, n: int, balancer: str, logins: int) -> list[dict]:
    rows = []
    with start_cluster(n, "round_robin", fix=fix, balancer=balancer, redis_url=redis_url) as cluster:
        login_many(cluster.url, "sse", n=3, concurrency=1, timeout=5)  # warm up: connections, scripts, imports
        for transport in TRANSPORTS:
            before = hub_totals(cluster)
            results = login_many(cluster.url, transport, n=logins, concurrency=1, timeout=5,
                                 poll_interval=POLL_INTERVAL)
            after = hub_totals(cluster)
            delta = {k: after[k] - before.get(k, 0) for k in after}
            latencies = pd.Series([r["latency_s"] * 1000 for r in results if r["ok"]], dtype=float)
            ok = sum(r["ok"] for r in results)
            rows.append({
                "fix": fix, "transport": transport, "servers": n, "balancer": balancer, "logins": logins, "ok": ok,
                "p50_ms": round(latencies.quantile(0.5), 3), "p99_ms": round(latencies.quantile(0.99), 3),
                "redis_commands_per_login": round(delta.get("redis_commands", 0) / logins, 2),
                "messages_per_login": round((delta.get("messages_out", 0) + delta.get("messages_in", 0)) / logins, 2),
                "bytes_per_login": round((delta.get("bytes_out", 0) + delta.get("bytes_in", 0)) / logins, 1),
            })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=40, help="logins per fix and transport")
    parser.add_argument("--fixes", default="streams,gateway", help="comma-separated fixes to measure")
    parser.add_argument("--balancer", default="python", choices=("python", "nginx"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    redis = start_redis()
    try:
        rows = measure(redis.url, "none", 1, args.balancer, args.logins)
        baseline = {r["transport"]: r["p50_ms"] for r in rows}
        for fix in [f.strip() for f in args.fixes.split(",") if f.strip()]:
            rows += measure(redis.url, fix, 2, args.balancer, args.logins)
    finally:
        runtime.stop_all()
        redis.stop()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for row in rows:
        row.update(date_utc=stamp, added_p50_ms=round(row["p50_ms"] - baseline[row["transport"]], 3),
                   cpus=os.cpu_count(), python=platform.python_version())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    frame = pd.DataFrame(rows, columns=COLUMNS).drop(columns=["date_utc", "cpus", "python"])
    print(frame.to_string(index=False))
    print(f"appended {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
