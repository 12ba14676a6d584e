"""A change made while the browser reconnects: at most once (``pubsub``) against a durable log (``streams``).

The steady state hides the difference between the fixes' delivery guarantees; a reconnect shows
it. :func:`reconnect_gap` replays lesson 07's story (browser on A, phone on B) with the
browser away while the phone scans and confirms, and reports which states it never saw.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from lab.lessons.fixes.clusters import cluster_counters, start_fix_cluster
from servers import runtime
from servers.clients.qr import AsyncBrowser, AsyncPhone, SSEChannel


async def _wait_until_gone(handle: Any, ticket: str, timeout: float = 5.0) -> None:
    """Until server ``handle`` has no channel for ``ticket`` (and, for pubsub, Redis has
    confirmed the unsubscribe): the browser is really away."""
    hub = handle.app.push
    deadline = time.monotonic() + timeout
    while ticket in hub.channels:  # the server notices the closed connection on its next read
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {handle.name} still holds a channel for {ticket} after {timeout} s")
        await asyncio.sleep(0.01)
    if hasattr(hub, "wait_confirmed"):
        await hub.wait_confirmed(ticket, subscribed=False, timeout=timeout)


def reconnect_gap(fix: str, *, name: str = "lesson08-gap", timeout: float = 5.0) -> dict[str, Any]:
    """The seed's story, with a reconnect in it: browser on A (SSE), phone on B.

    The browser sees ``pending`` (version 1), then its connection drops. While it is away the
    phone scans and confirms on B (versions 2 and 3). The browser reconnects to A with
    ``Last-Event-ID: 1``. Returns what it saw before and after, which states it never saw, and
    the hub counters that explain it (``published_to_nobody`` for pubsub, ``replayed`` for
    streams).
    """
    cluster = start_fix_cluster(fix, 2, "python", name=name)
    a, b = cluster.servers["A"], cluster.servers["B"]
    try:
        async def story() -> dict[str, Any]:
            browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(b.url)
            ticket = (await browser.create_ticket())["ticket"]
            first = SSEChannel(browser, ticket)
            await first.open()
            before = [e["state"] for e in first.events]
            await first.close()
            await _wait_until_gone(a, ticket, timeout)
            await phone.login()
            await phone.scan(ticket)
            await phone.confirm(ticket)
            again = SSEChannel(browser, ticket, last_event_id=first.version)
            await again.open()
            await again.wait_for("confirmed", timeout)
            after = [e["state"] for e in again.events]
            await again.close()
            return {"ticket": ticket, "before": before, "after": after}

        seen = runtime.run(story(), timeout=timeout * 4 + 10)
        counters = cluster_counters(cluster)
    finally:
        cluster.stop()
    made = ["pending", "scanned", "confirmed"]
    missed = [s for s in made if s not in seen["before"] + seen["after"]]
    return {"fix": fix, "seen before the drop": seen["before"], "seen after reconnecting": seen["after"],
            "never seen": missed, "published_to_nobody": counters.get("published_to_nobody", 0),
            "replayed_from_log": counters.get("replayed", 0)}
