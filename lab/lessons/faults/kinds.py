"""The faults lesson 09 injects: each a factory of ``async (cluster, sessions) -> info``.

A fault is a coroutine so that :func:`~lab.lessons.faults.logins.run_logins` can run it at the
exact point of the logins it chose. It returns what it did, to whom and when
(``fault_started``), which every record is measured against. Blocking parts (killing a process,
restarting Redis) run in a worker thread so the server loop, where the servers live, stays free
meanwhile. :data:`FAULTS` names the ones :func:`~lab.lessons.faults.scenarios.fault_matrix`
combines with every fix.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Sequence

from lab.lessons.faults.browser import BrowserSession


def _busiest(cluster, sessions: Sequence[BrowserSession]) -> str:
    """The server holding the most browser channels (ties: the first name)."""
    counts = {name: 0 for name in cluster.servers}
    for session in sessions:
        if session.served_by in counts:
            counts[session.served_by] += 1
    return max(counts, key=lambda name: (counts[name], -list(counts).index(name)))


async def _in_thread(fn: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def crash_fault(target: str | None = None) -> Callable:
    """The browser's server dies (in-process crash, or SIGKILL of a process). Nobody tells the
    balancer: it finds out from the requests that fail on the dead server (its passive health
    check, ``max_fails``/``fail_timeout``, as nginx does) and only then skips it."""

    async def crash(cluster, sessions):
        name = target or _busiest(cluster, sessions)
        server = cluster.servers[name]
        started = time.time()
        # An in-process crash drops every connection at once, then runs the app's shut-down hook
        # (which may take a while to cancel its Redis reads): do not let that delay the rest.
        finishing = asyncio.ensure_future(_in_thread(cluster.crash, name))
        while server.running and not finishing.done():
            await asyncio.sleep(0.001)
        kind = "SIGKILL" if hasattr(cluster.servers[name], "pid") else "in-process crash"
        return {"target": name, "how": kind, "fault_started": started, "pending": finishing,
                "channels_on_target": sum(1 for s in sessions if s.served_by == name)}

    crash.fault_name = "crash"
    return crash


def redis_restart_fault(redis_handle, keep_data: bool = True) -> Callable:
    """Redis stops and starts again on the same port. ``keep_data``: a graceful restart, a
    snapshot first (``SAVE``; it reloads ``dump.rdb`` on start). Otherwise it is killed (SIGKILL,
    no ``SAVE``) and comes back with whatever its persistence kept: with the lessons' Redis (no
    snapshots, no append-only file) nothing, so every ticket in flight is gone."""

    async def restart(cluster, sessions):
        started = time.time()

        def blocking() -> None:
            if keep_data:
                redis_handle.client().save()
                redis_handle.restart()
            else:
                redis_handle.restart(hard=True)

        await _in_thread(blocking)
        return {"target": "redis", "how": "SAVE, then restart" if keep_data else "SIGKILL, then restart",
                "fault_started": started, "down_s": time.time() - started}

    restart.fault_name = "redis_restart" if keep_data else "redis_killed"
    return restart


def backend_removed_fault(target: str | None = None) -> Callable:
    """The balancer stops routing to one server (a drain); the server keeps its channels."""

    async def remove(cluster, sessions):
        name = target or _busiest(cluster, sessions)
        started = time.time()
        await _in_thread(cluster.balancer.remove_backend, name)
        return {"target": name, "how": "removed from the balancer", "fault_started": started,
                "channels_on_target": sum(1 for s in sessions if s.served_by == name)}

    remove.fault_name = "backend_removed"
    return remove


def slow_consumer_fault(count: int = 1, stall_s: float = 1.5) -> Callable:
    """``count`` browsers stop taking in messages for ``stall_s`` seconds."""

    async def stall(cluster, sessions):
        until = time.time() + stall_s
        for session in list(sessions)[:count]:
            session.stall_until = until
            session.stalled = True
        return {"target": f"{count} browser(s)", "how": f"stalled {stall_s} s", "fault_started": time.time()}

    stall.fault_name = "slow_consumer"
    return stall


def drop_all_fault() -> Callable:
    """Every connection on every server dropped at once (in-process servers keep listening)."""

    async def drop(cluster, sessions):
        started = time.time()
        dropped = 0
        for server in cluster.servers.values():
            if not hasattr(server, "drop_connections"):
                raise TypeError("the reconnect storm needs an in-process cluster (processes=False)")
            dropped += await _in_thread(server.drop_connections)
        return {"target": "every server", "how": "all connections dropped", "fault_started": started,
                "dropped_connections": dropped}

    drop.fault_name = "storm"
    return drop


def _redis_of(cluster, redis_handle):
    handle = redis_handle if redis_handle is not None else getattr(cluster, "_redis", None)
    if handle is None:
        raise ValueError("restart_redis needs the RedisHandle (redis_handle=...) when the cluster was given a redis_url")
    return handle


FAULTS = {
    "crash": lambda cluster, redis_handle: crash_fault(),
    "redis_restart": lambda cluster, redis_handle: redis_restart_fault(_redis_of(cluster, redis_handle), True),
    "redis_killed": lambda cluster, redis_handle: redis_restart_fault(_redis_of(cluster, redis_handle), False),
    "redis_lost_data": lambda cluster, redis_handle: redis_restart_fault(_redis_of(cluster, redis_handle), False),  # old name
    "backend_removed": lambda cluster, redis_handle: backend_removed_fault(),
    "slow_consumer": lambda cluster, redis_handle: slow_consumer_fault(),
}
