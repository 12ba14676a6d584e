"""The ``store`` fix: every server polls the shared store for the tickets whose channels it holds.

Ticket state is in Redis already, so the simplest fix needs no messages between servers at all:
while server A holds a channel for ticket T, a task on A reads T from Redis every
``store_interval`` seconds (0.2 s by default) and pushes a newer version to A's channels. B
writes ``confirmed`` to Redis and is done::

    phone ─confirm─▶ B ── state → Redis
                     A ── every 0.2 s: read T ── newer? ──▶ browser's SSE/WS

It is short polling moved from the browser to the server: the browser keeps its cheap push
channel, and the servers pay instead. It is the degenerate fix, kept because it is what people
write first and because measuring it shows why the others exist:

* **Latency** added: on average half the interval (up to one interval) for a change made on
  another server. A change made on the same server is delivered at once (``publish`` delivers
  locally, as every fix does).
* **Cost**: one poll task per ticket with an open channel on a server, each sending
  ``commands_per_poll`` (2: the ticket store's expiry-checking script and ``HGETALL``) Redis
  commands every interval, whether anything changed or not; Redis executes 3 (it counts the
  ``HGETALL`` inside the script too). Redis load = open tickets × 3 / interval commands per
  second - measured: 15 per second per open channel at 0.2 s (``benchmarks/fixes.py``), so
  10,000 waiting browsers are 150,000 commands/s doing nothing. Shortening the interval buys
  latency with load, linearly.

Who does it this way: no push product we compare against, and that is the point; it
is the "just poll the database" first version. Real systems notify instead: a pub/sub backplane
(``pubsub``; Rails' ActionCable PostgreSQL adapter uses ``LISTEN/NOTIFY`` for the same reason),
a registry (``registry``) or a push tier (``gateway``).

Delivery semantics: the browser converges on the latest *state*; intermediate states that
last less than one interval can be skipped (at most once per version, newest wins). Nothing is
lost while Redis is up; while it is down the poll fails, is counted (``poll_errors``) and the
next poll catches up, so a Redis restart costs at most one interval after it is back.

Counted in ``stats``: ``polls``, ``redis_commands``, ``poll_errors``, ``poll_deliveries``
(a poll found a newer version), ``poll_tasks_started``/``poll_tasks_stopped``.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import redis.exceptions

from servers.qrlogin.push import Event, PushApp, PushHub

__all__ = ["StoreHub"]

log = logging.getLogger("servers.qrlogin.fixes.store")


class StoreHub(PushHub):
    """Poll Redis per ticket held here; ``publish`` only delivers to this server's own channels."""

    name = "store"
    commands_per_poll = 2  # TicketStore.get: the expiry-checking Lua script, then HGETALL

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        self.interval = float(app.settings.get("store_interval", 0.2))
        if not self.interval > 0:
            raise ValueError(f"store_interval must be a positive number of seconds, not {self.interval!r}")
        self.poll_tasks: dict[str, asyncio.Task] = {}  # ticket -> its poll task (one per ticket, not per channel)
        self.poll_listeners: list[Callable[[str], Any]] = []  # called with the ticket after each poll (lessons, tests)

    async def stop(self) -> None:
        await super().stop()  # cancels the poll tasks (spawned)
        self.poll_tasks.clear()

    async def publish(self, ticket: str, event: Event) -> None:
        """The change is in Redis already: the holders' polls will find it. Local channels get it now."""
        self.stats["published"] += 1
        if ticket in self.channels:
            self.deliver_local(event)

    def on_first_subscriber(self, ticket: str) -> None:
        if self.stopped or ticket in self.poll_tasks:
            return
        self.poll_tasks[ticket] = self.spawn(self._poll(ticket), f"store-poll:{ticket}")
        self.stats["poll_tasks_started"] += 1

    def on_last_unsubscribe(self, ticket: str) -> None:
        task = self.poll_tasks.pop(ticket, None)
        if task is not None:
            task.cancel()
            self.stats["poll_tasks_stopped"] += 1

    async def _poll(self, ticket: str) -> None:
        """Read the ticket every ``interval`` s while a channel for it is open here."""
        while True:
            await asyncio.sleep(self.interval)  # the technique itself: look again later
            try:
                current, expired_event = await self.app.tickets.get(ticket)
            except redis.exceptions.RedisError as exc:  # Redis down or restarting: try next time
                self.stats["poll_errors"] += 1
                log.debug("%s: poll of %s failed: %r", self.app.name, ticket, exc)
                continue
            self.stats["polls"] += 1
            self.stats["redis_commands"] += self.commands_per_poll if current is not None else 1
            for listener in list(self.poll_listeners):
                try:
                    listener(ticket)
                except Exception:  # an observer must never stop the polling
                    log.exception("%s: poll listener failed", self.app.name)
            if current is None:
                continue  # gone (Redis restarted, or long expired): nothing to push
            if self.offer(expired_event or current.event()):
                self.stats["poll_deliveries"] += 1
