"""``ticket_hash`` when the server set changes: which tickets move, and what happens to logins in flight.

``ticket_hash`` fixes the bug in the balancer, by sending every request about a ticket to one
server. That holds only while the set of servers stays the same: :func:`moved_share` counts the
tickets a change moves (consistent hashing against ``hash % N``), and
:func:`in_flight_when_adding` shows the logins that hang when their confirm moves away from
their channel.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable

import pandas as pd

from lab.lessons.fixes.clusters import start_fix_cluster
from servers import runtime
from servers.balancer.policies import HashRing, _hash64
from servers.clients.qr import AsyncBrowser, AsyncPhone


def moved_share(n_before: int, n_after: int, keys: int = 10000, vnodes: int = 160) -> dict[str, float]:
    """The share of ``keys`` random ticket ids whose server changes from ``n_before`` to
    ``n_after`` servers, with consistent hashing (the balancer's ring) and with ``hash % N``."""
    from servers.cluster import server_names

    before, after = server_names(n_before), server_names(n_after)
    ring_before, ring_after = HashRing(before, vnodes), HashRing(after, vnodes)
    ids = [f"ticket-{i}" for i in range(keys)]
    ring_moved = sum(ring_before.lookup(t) != ring_after.lookup(t) for t in ids)
    modulo_moved = sum(before[_hash64(t) % n_before] != after[_hash64(t) % n_after] for t in ids)
    return {"n_before": n_before, "n_after": n_after, "keys": keys,
            "consistent_pct": 100 * ring_moved / keys, "modulo_pct": 100 * modulo_moved / keys,
            "ideal_pct": 100 * abs(n_after - n_before) / max(n_after, n_before)}


def moved_table(ns: Iterable[int] = (2, 3, 4, 5, 6), keys: int = 10000) -> pd.DataFrame:
    """:func:`moved_share` for adding one server (N → N+1) and removing one (N → N-1)."""
    rows = []
    for n in ns:
        rows.append({"change": "add one", **moved_share(n, n + 1, keys)})
        if n > 1:
            rows.append({"change": "remove one", **moved_share(n, n - 1, keys)})
    return pd.DataFrame(rows)


def in_flight_when_adding(n: int = 2, logins: int = 12, *, balancer: str = "python", wait_s: float = 1.5,
                          name: str = "lesson08-flight") -> pd.DataFrame:
    """Logins in flight while a server joins a ``ticket_hash`` cluster.

    ``logins`` browsers open their channels and their phones scan; then a server joins the
    balancer; then the phones confirm. One row per login: ``channel_on`` (where the browser's
    channel stayed), ``confirm_on`` (where the confirm went after the change), ``moved``,
    ``ok``. A confirm whose ticket moved lands where no channel for it is: the login hangs.
    """
    from servers.cluster import server_names
    from servers.qrlogin.app import start_qrlogin

    cluster = start_fix_cluster("ticket_hash", n, balancer, name=name)
    try:
        async def open_and_scan() -> list[tuple[str, Any, AsyncPhone]]:
            flows = []
            for _ in range(logins):
                browser, phone = AsyncBrowser(cluster.url, "sse"), AsyncPhone(cluster.url)
                ticket = (await browser.create_ticket())["ticket"]
                channel = await browser.open_channel(ticket)
                await phone.login()
                await phone.scan(ticket)
                await channel.wait_for("scanned", 5)
                flows.append((ticket, channel, phone))
            return flows

        flows = runtime.run(open_and_scan(), timeout=60)
        joiner = server_names(n + 1)[-1]
        cluster.servers[joiner] = start_qrlogin(joiner, fix="ticket_hash", redis_url=cluster.redis_url)
        cluster.balancer.add_backend(cluster.servers[joiner], joiner)

        async def confirm(ticket: str, channel: Any, phone: AsyncPhone) -> dict[str, Any]:
            confirm_on = (await phone.confirm(ticket))["served_by"]
            try:
                seen = await channel.wait_for("confirmed", wait_s)
                ok = seen["state"] == "confirmed"
            except asyncio.TimeoutError:
                ok = False
            await channel.close()
            return {"ticket": ticket, "channel_on": channel.served_by, "confirm_on": confirm_on,
                    "moved": confirm_on != channel.served_by, "ok": ok}

        async def confirm_all() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(confirm(*flow) for flow in flows)))

        rows = runtime.run(confirm_all(), timeout=wait_s + 60)
    finally:
        cluster.stop()
    return pd.DataFrame(rows)
