"""The push hub: how a state change reaches the browser's open channel - the plug-in point of every fix.

Ticket *state* is shared by all servers through Redis (``tickets.py``). What each server keeps
to itself is the set of push channels it holds: ticket id → the open SSE streams, WebSockets and
held long polls of browsers connected *to this server*. Each app has one hub (``app.push``),
chosen by ``fix`` from ``servers.qrlogin.fixes.FIXES``.

The two halves
--------------

* **publish** - the server that changes a ticket's state (whichever got the phone's request)
  calls ``await app.push.publish(ticket_id, event)`` after the change is stored in Redis.
  ``event`` is ``{"ticket": id, "state": s, "version": v, "at": t}``; versions grow by one per
  change (pending = 1).
* **subscribe** - a push channel on this server calls ``app.push.subscribe(ticket_id, callback,
  after=v)`` and gets a :class:`Subscription` (call it, or ``.close()``, to unsubscribe). The
  channel then calls ``await app.push.history(ticket_id, after)`` and feeds the result to
  ``sub.deliver`` - that is how it first sends the current state, and how ``Last-Event-ID`` /
  ``{"after": v}`` resume. ``callback(event)`` runs on the server loop and must not block.
  Each subscription remembers the highest version it delivered (``sub.last_version``, also
  settable with ``sub.delivered(v)``) and drops anything not newer, so a fix may deliver the
  same event twice, or history and a live event may overlap, and the browser sees each version
  once, in order.

The ``none`` hub (this module's :class:`PushHub`) delivers a published event only to channels
on the same server: ``publish`` = ``deliver_local``. Behind a balancer the phone's confirm often
lands on B while the browser's channel is on A; B stores ``confirmed`` in Redis, finds no local
channel (counted in ``stats["undelivered"]``), and A never learns of it. That is the bug.

How each fix of issue 6 plugs in (a subclass in ``servers/qrlogin/fixes/<name>.py``, registered
in ``fixes.FIXES``; per-fix options come from the app's settings, e.g. ``app.settings["gateway_url"]``)
---------------------------------------------------------------------------------------------------

``ticket_hash``
    nothing on the app: the balancer routes every request carrying ticket id X to the same
    server, so the phone's confirm reaches the server that holds X's channel. Uses ``PushHub``.
``pubsub``
    ``start()`` opens a Redis pub/sub connection (``app.redis.pubsub()``) and subscribes (one
    pattern ``<ns>:events:*``, or per ticket in ``on_first_subscriber``/``on_last_unsubscribe``);
    ``publish`` = ``PUBLISH <ns>:events:<id> <event JSON>``; the reader task calls
    ``deliver_local(event)``. At-most-once: nobody subscribed at that moment = lost.
``registry``
    ``on_first_subscriber`` writes ``HSET <ns>:where <id> <app.url>`` (with expiry, refreshed),
    ``on_last_unsubscribe`` removes it; ``publish`` looks the ticket up: this server →
    ``deliver_local``, another → ``POST <url>/internal/deliver`` with the shared secret
    (``app.settings["internal_secret"]``). ``routes()`` returns that handler, which checks the
    secret (401 otherwise) and calls ``deliver_local``. A stale entry (server gone) shows up as a
    failed forward, counted in ``stats``.
``store``
    ``publish`` does nothing beyond the state already written to Redis; ``on_first_subscriber``
    starts a task per ticket that polls ``app.tickets.get(id)`` every ``store_interval`` s and
    ``deliver_local`` s a newer version; ``on_last_unsubscribe`` stops it.
``gateway``
    browsers' push routes go (via the balancer) to a separate push tier, itself a server whose
    hub is local; app servers' ``publish`` POSTs the event to ``app.settings["gateway_url"]``.
``streams``
    ``publish`` = ``XADD <ns>:stream:<id> * event <JSON>`` (plus a notification to the holder:
    a blocking ``XREAD`` loop per subscribed ticket, started in ``on_first_subscriber``);
    ``history(id, after)`` returns every event with version > after from the stream, so a change
    made while the browser was reconnecting is replayed on resume.

Hooks a subclass overrides: ``start``, ``stop``, ``routes``, ``publish``, ``history``,
``on_first_subscriber``, ``on_last_unsubscribe``. ``deliver_local`` and ``subscribe`` are shared.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from servers.qrlogin.app import QRLoginApp

__all__ = ["PushHub", "Subscription", "Event"]

Event = dict[str, Any]
log = logging.getLogger("servers.qrlogin.push")


class Subscription:
    """One open push channel's interest in one ticket.

    ``deliver(event)`` passes the event to the channel's callback only if its version is newer
    than anything delivered before (returns whether it did). Calling the object unsubscribes.
    """

    def __init__(self, hub: "PushHub", ticket: str, callback: Callable[[Event], Any], after: int = 0) -> None:
        self.hub = hub
        self.ticket = ticket
        self.callback = callback
        self.last_version = int(after)
        self.closed = False

    def deliver(self, event: Event) -> bool:
        if self.closed or int(event["version"]) <= self.last_version:
            return False
        self.last_version = int(event["version"])
        try:
            self.callback(event)
        except Exception:  # one broken channel must not stop delivery to the others
            log.exception("push channel callback failed for ticket %s", self.ticket)
        return True

    def delivered(self, version: int) -> None:
        """Say "this channel has the ticket up to ``version``" (e.g. after an ``{"after": v}``)."""
        self.last_version = max(self.last_version, int(version))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._remove(self)

    __call__ = close

    def __repr__(self) -> str:
        return f"<Subscription {self.ticket} v{self.last_version}{' closed' if self.closed else ''}>"


class PushHub:
    """The ``none`` fix, and the base class of every other: delivers only to this server's channels.

    State is per app (``self.channels``, ``self.stats``), so several servers in one process keep
    separate connections, as separate machines would.
    """

    name = "none"

    def __init__(self, app: "QRLoginApp") -> None:
        self.app = app
        self.channels: dict[str, set[Subscription]] = {}
        self.stats: Counter = Counter()  # published, delivered, undelivered, ... (fixes add theirs)

    # -- life cycle and routes --------------------------------------------------------------

    async def start(self) -> None:
        """Called in the app's startup, after Redis is connected (``app.redis``)."""

    async def stop(self) -> None:
        """Called in the app's shutdown (stop and crash): cancel tasks, close connections."""

    def routes(self) -> list[tuple]:
        """Extra Tornado routes this fix needs on every app server (e.g. ``/internal/deliver``)."""
        return []

    # -- the two halves ---------------------------------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        """A ticket's state changed (already stored in Redis): get the event to its channels."""
        self.stats["published"] += 1
        self.deliver_local(event)

    def subscribe(self, ticket: str, callback: Callable[[Event], Any], after: int = 0) -> Subscription:
        """Register a channel on this server; returns the :class:`Subscription` (call it to leave)."""
        sub = Subscription(self, ticket, callback, after)
        subs = self.channels.setdefault(ticket, set())
        subs.add(sub)
        if len(subs) == 1:
            self.on_first_subscriber(ticket)
        return sub

    async def history(self, ticket: str, after: int = 0) -> list[Event]:
        """Events of ``ticket`` newer than version ``after`` that a channel should send on open.

        Without a durable log the current state stands for everything before it (it *is* the
        latest event); the ``streams`` fix returns the full tail instead.
        """
        current, expired_event = await self.app.tickets.get(ticket)
        if expired_event is not None:
            await self.publish(ticket, expired_event)
        if current is None or current.version <= after:
            return []
        return [current.event()]

    # -- shared machinery -------------------------------------------------------------------

    def deliver_local(self, event: Event) -> int:
        """Hand ``event`` to this server's channels for its ticket; returns how many took it."""
        subs = list(self.channels.get(event["ticket"], ()))
        if not subs:
            self.stats["undelivered"] += 1
            return 0
        count = sum(1 for sub in subs if sub.deliver(event))
        self.stats["delivered"] += count
        return count

    def local_tickets(self) -> list[str]:
        """Tickets with at least one open channel on this server."""
        return [ticket for ticket, subs in self.channels.items() if subs]

    def on_first_subscriber(self, ticket: str) -> None:
        """The first channel for ``ticket`` opened on this server (registry: record it here)."""

    def on_last_unsubscribe(self, ticket: str) -> None:
        """The last channel for ``ticket`` on this server closed (registry: forget it)."""

    def _remove(self, sub: Subscription) -> None:
        subs = self.channels.get(sub.ticket)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self.channels[sub.ticket]
            self.on_last_unsubscribe(sub.ticket)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fix={self.name} channels={sum(map(len, self.channels.values()))}>"
