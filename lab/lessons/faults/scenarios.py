"""Lesson 09's scenarios as one call each, and the fault × fix × transport matrix.

Each scenario takes a running cluster, injects one fault from :mod:`~lab.lessons.faults.kinds`
through :func:`~lab.lessons.faults.logins.run_logins` and returns its
:class:`~lab.lessons.faults.logins.FaultRun` (``.records`` is the per-login DataFrame), so a
cell reads as the story it tells. :func:`reconnect_storm` also keeps the balancer's routing log
from the drop on, which :func:`requests_per_bin` turns into the load the servers saw;
:func:`fault_matrix` runs every combination on fresh clusters sharing one Redis.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.lessons.faults.browser import EVENTSOURCE_LIKE, Backoff
from lab.lessons.faults.kinds import (FAULTS, _redis_of, backend_removed_fault, crash_fault, drop_all_fault,
                                      redis_restart_fault, slow_consumer_fault)
from lab.lessons.faults.logins import FaultRun, run_logins


def crash_browser_server(cluster, n: int = 4, transport: str = "sse", *, scan_before_fault: bool = False,
                         target: str | None = None, **options: Any) -> FaultRun:
    """The server holding most browser channels dies mid-login (before the scan, or with
    ``scan_before_fault`` between scan and confirm); the phone finishes; browsers reconnect."""
    return run_logins(cluster, n, transport, crash_fault(target), scan_before_fault=scan_before_fault, **options)


def dead_server_window(cluster, run: FaultRun) -> pd.DataFrame:
    """Every request the balancer sent to the crashed server from the crash on, and what its
    passive health check made of it: ``t_ms`` (since the crash, from the routing log's and the
    health log's own timestamps), ``who`` (browser 127.0.0.2 or phone 127.0.0.3; ``probe`` for the
    recovery check's fresh logins, which come from the same addresses), ``what`` (the route, or the
    health event), ``status``. The window is up to the ``down`` row: from then on the balancer skips
    the server."""
    target, since = run.info["target"], run.info["fault_at"]
    start = pd.to_datetime(since, unit="s", utc=True)
    log = cluster.routing_log()
    hits = log[(log["backend"] == target) & (log["time"] >= start)]
    who = hits["client"].map({"127.0.0.2": "browser", "127.0.0.3": "phone"}).fillna(hits["client"])
    rows = pd.DataFrame({"time": hits["time"], "who": who, "what": hits["method"] + " " + hits["route"].astype(str),
                         "status": hits["status"]})
    if cluster.balancer.kind == "python":
        health = cluster.balancer.health_log()
        health = health[(health["backend"] == target) & (health["time"] >= start) & (health["event"] != "failed")]
        rows = pd.concat([rows, pd.DataFrame({"time": health["time"], "who": "balancer",
                                              "what": "health: " + health["event"],
                                              "status": None})])
    rows = rows.sort_values("time", kind="stable").reset_index(drop=True)
    rows.insert(0, "t_ms", ((rows["time"] - start).dt.total_seconds() * 1000).round(1))
    return rows.drop(columns="time")


def restart_redis(cluster, n: int = 4, transport: str = "sse", *, keep_data: bool = True, redis_handle=None,
                  **options: Any) -> FaultRun:
    """Redis restarts mid-login (``keep_data``: from a snapshot; otherwise empty)."""
    return run_logins(cluster, n, transport, redis_restart_fault(_redis_of(cluster, redis_handle), keep_data), **options)


def stop_backend(cluster, n: int = 4, transport: str = "sse", *, target: str | None = None,
                 **options: Any) -> FaultRun:
    """The balancer stops sending to the server holding most channels; that server stays up."""
    return run_logins(cluster, n, transport, backend_removed_fault(target), **options)


def slow_consumer(cluster, n: int = 4, transport: str = "sse", *, count: int = 1, stall_s: float = 1.5,
                  **options: Any) -> FaultRun:
    """``count`` browsers are busy for ``stall_s`` while the phone confirms: late, not lost."""
    return run_logins(cluster, n, transport, slow_consumer_fault(count, stall_s), **options)


def reconnect_storm(cluster, n: int = 50, transport: str = "sse", *, backoff: Backoff = EVENTSOURCE_LIKE,
                    seed: int = 9, give_up_s: float = 15.0, **options: Any) -> FaultRun:
    """Every connection dropped at once while ``n`` browsers wait; they reconnect with ``backoff``.

    ``requests`` holds the balancer's routing log from the drop on; :func:`requests_per_bin` turns
    it into the load the servers saw. The phone confirms once every browser is back.
    """
    drop = drop_all_fault()
    back = {}

    async def fault(cluster_, sessions):
        info = await drop(cluster_, sessions)
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline:  # the phone waits for the storm to pass: all back
            if all(any(t >= info["fault_started"] for t, _ in s.connects) for s in sessions):
                break
            await asyncio.sleep(0.02)
        back["all_back_s"] = time.time() - info["fault_started"]
        return {**info, **back}

    fault.fault_name = "storm"
    run = run_logins(cluster, n, transport, fault, backoff=backoff, seed=seed, give_up_s=give_up_s,
                     gate_reconnects=False, measure_recovery=False, **options)
    if cluster.balancer.kind == "python":
        log = cluster.routing_log()
        since = pd.to_datetime(run.info["fault_started"], unit="s", utc=True)
        run.requests = log[log["time"] >= since].copy()
        run.requests["t_s"] = (run.requests["time"] - since).dt.total_seconds()
    run.info["backoff"] = "jittered" if backoff.jitter else "fixed"
    run.records["backoff"] = run.info["backoff"]
    return run


def requests_per_bin(requests: pd.DataFrame, bin_s: float = 0.1, until_s: float | None = None,
                     routes: Sequence[str] = ("/events", "/ws", "/longpoll")) -> pd.DataFrame:
    """The reconnects the servers received per ``bin_s`` after the fault: ``t_s`` (bin start,
    seconds after the drop), ``requests`` (count) and ``per_s`` (the same as a rate).

    Only the channel routes count (``routes``: SSE, WebSocket, long poll): the phone's calls are
    not part of the storm.
    """
    route = requests["route"].astype(str)
    frame = requests[route.str.endswith(tuple(routes))]
    end = until_s if until_s is not None else (float(frame["t_s"].max()) if len(frame) else 0.0)
    frame = frame[frame["t_s"] <= end]
    bins = int(end // bin_s) + 1
    counts = (frame["t_s"] // bin_s).astype(int).value_counts().reindex(range(bins), fill_value=0).sort_index()
    return pd.DataFrame({"t_s": counts.index * bin_s, "requests": counts.values, "per_s": counts.values / bin_s})


def fault_matrix(faults: Iterable[str] = ("crash", "redis_restart", "backend_removed"),
                 fixes: Iterable[str] = ("ticket_hash", "pubsub", "store", "streams"),
                 transports: Iterable[str] = ("sse",), n: int = 4, servers: int = 2, balancer: str = "python",
                 processes: bool = False, give_up_s: float = 2.0, progress: bool = False,
                 **options: Any) -> pd.DataFrame:
    """Every fault × fix × transport on a fresh cluster (one shared Redis): the per-login records.

    ``summarize(records)`` gives the matrix; :func:`plot_heatmap` draws it.
    """
    from servers.cluster import start_cluster
    from servers.redisproc import start_redis

    combos = [(f, x, t) for f in faults for x in fixes for t in transports]
    frames = []
    redis = start_redis()
    try:
        for i, (fault_name, fix, transport) in enumerate(combos):
            if progress:
                print(f"\r{i + 1}/{len(combos)} {fault_name} × {fix} × {transport}    ", end="", flush=True)
            with start_cluster(servers, fix=fix, balancer=balancer, redis_url=redis.url, processes=processes,
                               name="faults") as cluster:
                fault = FAULTS[fault_name](cluster, redis)
                run = run_logins(cluster, n, transport, fault, give_up_s=give_up_s, **options)
            frames.append(run.records.assign(fault=fault_name, target=run.info.get("target")))
        if progress:
            print()
    finally:
        redis.stop()
    return pd.concat(frames, ignore_index=True)


def redis_survival(kill: bool, appendonly: bool = False) -> tuple[pd.DataFrame, str]:
    """What a Redis restart keeps, on a fresh Redis and a one-server ``streams`` cluster.

    Three tickets: ``old`` confirmed before a snapshot (``SAVE``), ``mid`` created before it and
    confirmed after, ``new`` created and confirmed after it. Then Redis restarts: gracefully
    (``kill=False``: ``SAVE`` again, then SIGTERM) or killed (SIGKILL, no ``SAVE``); with
    ``appendonly`` it also logs every write to its append-only file (``appendfsync everysec``).
    Returns a row per ticket (its version and state before and after, and its stream's entries
    after; ``gone`` when Redis no longer has it) and the raw answer to a browser that resumes
    ``mid`` from ``scanned``, the version it had seen before it went away (``Last-Event-ID: 2``).
    """
    import requests

    from servers.cluster import start_cluster
    from servers.redisproc import start_redis

    redis = start_redis(appendonly=appendonly)
    try:
        with start_cluster(1, fix="streams", redis_url=redis.url, name="faults-redis") as cluster:
            phone = cluster.phone()
            phone.login()

            def create() -> str:
                return requests.post(cluster.url + "/api/tickets", timeout=10).json()["ticket"]

            def confirm(ticket: str) -> None:
                phone.scan(ticket)
                phone.confirm(ticket)

            tickets = {"old": create(), "mid": create()}
            confirm(tickets["old"])
            redis.client().save()  # the snapshot: old at version 3, mid at version 1
            confirm(tickets["mid"])
            tickets["new"] = create()
            confirm(tickets["new"])
            store = redis.client()
            before = {name: store.hget(f"qr:ticket:{t}", "version") for name, t in tickets.items()}
            if kill:
                redis.restart(hard=True)
            else:
                redis.client().save()
                redis.restart()
            store = redis.client()
            rows = []
            for name, ticket in tickets.items():
                fields = store.hgetall(f"qr:ticket:{ticket}")
                rows.append({"ticket": name, "version_before": int(before[name]),
                             "version_after": int(fields["version"]) if fields else None,
                             "state_after": fields.get("state", "gone") if fields else "gone",
                             "log_entries_after": store.xlen(f"qr:stream:{ticket}")})
            with requests.get(f"{cluster.url}/api/tickets/{tickets['mid']}/events", stream=True, timeout=10,
                              headers={"Last-Event-ID": "2"}) as answer:
                wire = b""
                for chunk in answer.iter_content(chunk_size=None):
                    wire += chunk
                    if b"\nid:" in wire and wire.endswith(b"\n\n"):
                        break
    finally:
        redis.stop()
    frame = pd.DataFrame(rows).astype({"version_after": "Int64"})
    frame.insert(0, "restart", "SIGKILL" if kill else "SAVE + SIGTERM")
    frame.insert(1, "persistence", "append-only file (everysec)" if appendonly else "none")
    return frame, wire.decode()
