"""A fix's cluster (:func:`start_fix_cluster`) and what it cost: Redis's own count and each hub's.

Every measurement of lesson 08 starts a cluster per fix with a Redis of its own, so Redis's
``total_commands_processed`` belongs to that fix alone; :func:`cluster_counters` reads it and
sums what each push hub counted (messages and bytes that crossed to the server holding the
channel), and two readings around some logins give the cost of one.
"""
from __future__ import annotations

from collections import Counter
from typing import Any


def nginx_available() -> bool:
    """Is there an nginx binary to start? (``HOW_TO_GET_NGINX`` says how to get one.)"""
    from servers.balancer.nginx import NginxMissing, find_nginx

    try:
        find_nginx()
    except NginxMissing:
        return False
    return True


def start_fix_cluster(fix: str, n: int = 2, balancer: str = "python", *, name: str = "lesson08", **options: Any):
    """A cluster of ``n`` servers running ``fix`` behind ``balancer``, with a Redis of its own.

    The policy is ``round_robin`` (the worst case for the bug), except for ``ticket_hash``,
    whose fix *is* the policy. ``fix="none"`` is the baseline.
    """
    from servers.cluster import start_cluster

    return start_cluster(n, fix=fix, balancer=balancer, name=name, **options)


def _hubs(cluster: Any) -> list[Any]:
    parts = list(cluster.servers.values())
    gateway = getattr(cluster, "gateway", None)
    if gateway is not None:
        parts.append(gateway)
    return [p for p in parts if getattr(p, "running", False) and hasattr(p, "call")]


def cluster_counters(cluster: Any) -> Counter:
    """Totals over the cluster's servers (and push tier): ``redis_total`` (Redis's
    ``total_commands_processed``, this read excluded), and the hubs' ``redis_commands``,
    ``messages_in``, ``bytes_in``, ``published``, ``published_to_nobody``, ``replayed``..."""
    import redis as redis_py

    totals: Counter = Counter()
    for handle in _hubs(cluster):
        totals.update(handle.call(lambda app: dict(app.push.stats)))
    client = redis_py.Redis.from_url(cluster.redis_url)
    try:
        totals["redis_total"] = int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()
    return totals


def _per_login(before: Counter, after: Counter, logins: int) -> dict[str, float]:
    """What one login cost, from two counter snapshots around ``logins`` logins."""
    delta = Counter({k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)})
    logins = max(1, logins)
    return {"redis_per_login": (delta["redis_total"] - 1) / logins,  # -1: the INFO that read "before"
            "fix_redis_per_login": delta["redis_commands"] / logins,
            "messages_per_login": delta["messages_in"] / logins,
            "bytes_per_login": delta["bytes_in"] / logins}
