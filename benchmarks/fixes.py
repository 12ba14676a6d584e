"""Benchmark of the QR-login fixes (lesson 08): latency added, Redis work and traffic per login, idle cost.

Usage (from the repository root)::

    python benchmarks/fixes.py                       # small: 20 logins per fix x transport
    python benchmarks/fixes.py --logins 200 --balancer nginx --fixes pubsub registry

What it measures, for each fix on a 2-server cluster behind a round-robin balancer, against the
baseline ``none`` on a *1-server* cluster behind the same balancer (the same login with nothing
to fix, so the balancer's own hop cancels out):

* ``latency_ms``: the phone's confirm sent → the browser's channel saw ``confirmed`` (the
  client's monotonic clock), one login at a time so nothing queues. ``crossed`` says whether
  the confirm landed on another server than the browser's channel (round robin: about half);
  only crossed logins exercise the fix, so ``added_p50_ms`` compares those with the baseline.
* ``redis_commands_per_login``: Redis's own ``total_commands_processed`` (it counts commands run
  inside Lua scripts too; the benchmark's own INFO calls are subtracted) - the ticket store's
  work plus the fix's. ``fix_redis_commands_per_login``: the fix's share, from ``hub.stats``.
* ``messages_per_login``/``bytes_per_login``: what crossed between servers for delivery
  (``hub.stats`` ``messages_in``/``bytes_in`` summed over servers: pub/sub messages, forwarded
  HTTP request bodies - payload bytes, headers not included).
* idle cost (``fixes_idle_<balancer>.csv``): Redis commands per second with k browser channels open and
  nothing happening - what the ``store`` fix pays for polling, per open channel.

Outputs in ``benchmarks/results/`` (``<balancer>`` is ``python`` or ``nginx``):
``fixes_logins_<balancer>.csv`` (one row per login), ``fixes_summary_<balancer>.csv`` (per fix x
transport), ``fixes_idle_<balancer>.csv``.

Adding a fix: write a function ``rig(n_servers, balancer, redis_url) -> Rig`` (see
:func:`cluster_rig`; the ``gateway`` fix needs its own topology) and add it to :data:`RIGS`
in the section "The fixes under test" below. Everything else (rows, summary, idle) is shared.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servers import runtime  # noqa: E402
from servers.clients.qr import TRANSPORTS, AsyncBrowser, login_once  # noqa: E402
from servers.redisproc import start_redis  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Rig:
    """A running system under test: the URL clients use, its servers' hub stats, and how to stop it."""

    url: str
    n_servers: int
    stats: Callable[[], dict[str, Counter]]  # server name -> a snapshot of its hub.stats
    stop: Callable[[], None]


def cluster_rig(fix: str, n_servers: int, balancer: str, redis_url: str) -> Rig:
    """``n_servers`` in-process QR-login servers running ``fix`` behind a round-robin balancer.

    Servers are named ``<fix>-A``, ``<fix>-B``, ... so every fix's cluster runs at the same time.
    """
    from servers.cluster import server_names, start_cluster

    cluster = start_cluster(n_servers, "round_robin", fix=fix, balancer=balancer, redis_url=redis_url,
                            name=f"bench-{fix}", names=[f"{fix}-{s}" for s in server_names(n_servers)])

    def stats() -> dict[str, Counter]:
        return {name: Counter(h.call(lambda app: dict(app.push.stats))) for name, h in cluster.servers.items()}

    return Rig(cluster.url, n_servers, stats, cluster.stop)


def gateway_rig(n_servers: int, balancer: str, redis_url: str) -> Rig:
    """The ``gateway`` fix: the cluster starts its push tier (``servers/qrlogin/fixes/gateway_tier.py``) and the
    balancer sends the push routes there; the tier's counters (events it received) count too."""
    from servers.cluster import server_names, start_cluster

    cluster = start_cluster(n_servers, "round_robin", fix="gateway", balancer=balancer, redis_url=redis_url,
                            name="bench-gateway", names=[f"gateway-{s}" for s in server_names(n_servers)])

    def stats() -> dict[str, Counter]:
        parts = {**cluster.servers, cluster.gateway.name: cluster.gateway}
        return {name: Counter(h.call(lambda app: dict(app.push.stats))) for name, h in parts.items()}

    return Rig(cluster.url, n_servers, stats, cluster.stop)


# -- The fixes under test -------------------------------------------------------------------------
# name -> rig(n_servers, balancer, redis_url). "none" is the baseline and always runs on 1 server.

RIGS: dict[str, Callable[[int, str, str], Rig]] = {
    "none": lambda n, balancer, redis_url: cluster_rig("none", 1, balancer, redis_url),
    # pubsub, registry, store (this file's first author)
    "pubsub": partial(cluster_rig, "pubsub"),
    "registry": partial(cluster_rig, "registry"),
    "store": partial(cluster_rig, "store"),
    # streams, gateway: added by their engineer
    "streams": partial(cluster_rig, "streams"),
    "gateway": lambda n, balancer, redis_url: gateway_rig(n, balancer, redis_url),
}

# -- Measurement ---------------------------------------------------------------------------------


def redis_commands(redis) -> int:
    """Redis's count of processed commands, minus the INFO call that reads it."""
    return int(redis.info("stats")["total_commands_processed"]) - 1


def totals(stats: dict[str, Counter]) -> Counter:
    return sum(stats.values(), Counter())


def measure_logins(rigs: dict[str, "Running"], transport: str, logins: int, balancer: str
                   ) -> tuple[list[dict], list[dict]]:
    """``logins`` logins per fix, one at a time, interleaved across the fixes (the order rotating)
    so that a busy moment of the machine hits every fix alike. Per-login rows and per-fix counters."""
    fixes = list(rigs)
    before = {fix: (totals(r.rig.stats()), redis_commands(r.redis)) for fix, r in rigs.items()}
    rows = []
    for i in range(logins):
        for fix in fixes[i % len(fixes):] + fixes[:i % len(fixes)]:
            rig = rigs[fix].rig
            r = login_once(rig.url, transport, timeout=5, poll_interval=0.2)
            rows.append({"fix": fix, "transport": transport, "balancer": balancer, "n_servers": rig.n_servers,
                         "ok": r["ok"], "error": r["error"],
                         "latency_ms": None if r["latency_s"] is None else r["latency_s"] * 1000,
                         "crossed": r["served_by_confirm"] != r["served_by_channel"],
                         "served_by_channel": r["served_by_channel"], "served_by_confirm": r["served_by_confirm"]})
    counters = []
    for fix, running in rigs.items():
        after_redis, after_stats = redis_commands(running.redis), totals(running.rig.stats())
        delta = after_stats - before[fix][0]
        counters.append({"fix": fix, "transport": transport,
                         "redis_commands_per_login": (after_redis - before[fix][1]) / logins,
                         "fix_redis_commands_per_login": delta["redis_commands"] / logins,
                         "messages_per_login": delta["messages_in"] / logins,
                         "bytes_per_login": delta["bytes_in"] / logins})
    return rows, counters


@dataclass
class Running:
    """A rig with the Redis of its own (so its Redis commands are counted apart from the others')."""

    rig: Rig
    redis_handle: object
    redis: object

    def stop(self) -> None:
        try:
            self.rig.stop()
        finally:
            self.redis_handle.stop()


def measure_idle(fix: str, running: Running, channels: int, seconds: float) -> dict:
    """Redis commands per second with ``channels`` WebSocket channels open and nothing happening."""

    rig, redis = running.rig, running.redis

    async def run() -> dict:
        browser = AsyncBrowser(rig.url, "ws")
        opened = []
        for _ in range(channels):
            ticket = (await browser.create_ticket())["ticket"]
            opened.append(await browser.open_channel(ticket))
        await asyncio.sleep(0.5)  # let registrations and subscriptions settle before the window
        start, t0 = await asyncio.to_thread(redis_commands, redis), time.monotonic()
        await asyncio.sleep(seconds)  # the measurement window itself
        end, t1 = await asyncio.to_thread(redis_commands, redis), time.monotonic()
        for channel in opened:
            await channel.close()
        rate = (end - start - 1) / (t1 - t0)  # -1: the second INFO's own read is not the rig's
        return {"fix": fix, "open_channels": channels, "seconds": round(t1 - t0, 3), "redis_commands_per_s": rate,
                "per_channel_per_s": rate / channels if channels else None}

    return runtime.run(run(), timeout=seconds + 60)


def summarize(rows: pd.DataFrame, counters: pd.DataFrame) -> pd.DataFrame:
    ok = rows[rows.ok]
    summary = (ok.groupby(["fix", "transport"]).latency_ms
               .agg(p50_ms="median", p99_ms=lambda s: s.quantile(0.99), mean_ms="mean").reset_index())
    crossed = ok[ok.crossed].groupby(["fix", "transport"]).latency_ms.median().rename("p50_crossed_ms").reset_index()
    success = rows.groupby(["fix", "transport"]).ok.agg(logins="size", success_rate="mean").reset_index()
    summary = success.merge(summary, how="left").merge(crossed, how="left").merge(counters, how="left")
    base = summary[summary.fix == "none"].set_index("transport").p50_ms
    compared = summary.p50_crossed_ms.fillna(summary.p50_ms)
    summary["added_p50_ms"] = compared - summary.transport.map(base)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=30, help="logins per fix and transport")
    parser.add_argument("--fixes", nargs="+", default=[f for f in RIGS if f != "none"], choices=[f for f in RIGS if f != "none"])
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS), choices=TRANSPORTS)
    parser.add_argument("--balancer", default="python", choices=("python", "nginx"))
    parser.add_argument("--servers", type=int, default=2, help="servers per fix cluster (the baseline has 1)")
    parser.add_argument("--idle-channels", type=int, nargs="*", default=[1, 10, 50],
                        help="open channels for the idle-cost measurement (none: skip it)")
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rigs: dict[str, Running] = {}
    rows, counters, idle = [], [], []
    try:
        for fix in ["none", *args.fixes]:
            redis_handle = start_redis()
            try:
                rig = RIGS[fix](args.servers, args.balancer, redis_handle.url)
            except BaseException:
                redis_handle.stop()
                raise
            rigs[fix] = Running(rig, redis_handle, redis_handle.client())
        for transport in args.transports:
            login_rows, counted = measure_logins(rigs, transport, args.logins, args.balancer)
            rows += login_rows
            counters += counted
            done = pd.DataFrame(login_rows).groupby("fix").ok.agg(["sum", "size"])
            print(f"{transport:>8}: " + ", ".join(f"{fix} {row['sum']}/{row['size']} ok" for fix, row in done.iterrows()),
                  flush=True)
        for fix, running in rigs.items():
            for channels in args.idle_channels:
                idle.append(measure_idle(fix, running, channels, args.idle_seconds))
    finally:
        for running in rigs.values():
            running.stop()
        runtime.stop_all()

    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / f"fixes_logins_{args.balancer}.csv", index=False)
    summary = summarize(frame, pd.DataFrame(counters))
    summary.insert(2, "balancer", args.balancer)
    summary.to_csv(args.out / f"fixes_summary_{args.balancer}.csv", index=False, float_format="%.3f")
    if idle:
        pd.DataFrame(idle).to_csv(args.out / f"fixes_idle_{args.balancer}.csv", index=False, float_format="%.3f")
        print(pd.DataFrame(idle).to_string(index=False))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
