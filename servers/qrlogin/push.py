"""The push hub: how a state change reaches the browser's open channel - the plug-in point of every fix.

Ticket *state* is shared by all servers through Redis (``tickets.py``). What each server keeps
to itself is the set of push channels it holds: ticket id → the open SSE streams, WebSockets and
held long polls of browsers connected *to this server*. Each app has one hub (``app.push``),
made by the :class:`Fix` it was started with (``start_qrlogin(fix="pubsub")`` looks the name up
in ``servers.qrlogin.fixes.FIXES``, which also explains how to add a fix).

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

How each fix plugs in (a subclass in ``servers/qrlogin/fixes/<name>.py``, made by a :class:`Fix` in
``fixes.FIXES``; per-fix options come from the app's settings, e.g. ``app.settings["gateway_url"]``)
-----------------------------------------------------------------------------------------------------

``ticket_hash``
    nothing on the app: the balancer routes every request carrying ticket id X to the same
    server, so the phone's confirm reaches the server that holds X's channel. Uses ``PushHub``;
    its :class:`Fix` names the ``ticket_hash`` balancer policy.
``pubsub``
    ``start()`` opens a Redis pub/sub connection (``app.redis.pubsub()``) and subscribes (one
    pattern ``<ns>:events:*``, or per ticket in ``on_first_subscriber``/``on_last_unsubscribe``);
    ``publish`` = ``PUBLISH <ns>:events:<id> <event JSON>``; the reader task calls
    ``deliver_local(event)``. At-most-once: nobody subscribed at that moment = lost.
``registry``
    ``on_first_subscriber`` writes ``SADD <ns>:where:<id> <app.url>`` (with expiry, refreshed),
    ``on_last_unsubscribe`` removes it; ``publish`` looks the ticket up: this server →
    ``deliver_local``, another → ``POST <url>/internal/deliver`` with the servers' shared secret
    (``servers.qrlogin.internal``). ``routes()`` returns that handler, which checks the secret
    (401 otherwise) and calls ``deliver_local``. A stale entry (server gone) shows up as a failed
    forward, counted in ``stats``.
``store``
    ``publish`` does nothing beyond the state already written to Redis; ``on_first_subscriber``
    starts a task per ticket that polls ``app.tickets.get(id)`` every ``store_interval`` s and
    ``offer`` s a newer version to the channels here; ``on_last_unsubscribe`` stops it.
``gateway``
    browsers' push routes go (via the balancer) to a separate push tier, itself a server whose
    hub is local (its :class:`Fix` knows how to start it); app servers' ``publish`` POSTs the
    event to the tier's ``/internal/publish`` with the shared secret.
``streams``
    ``publish`` = ``XADD <ns>:stream:<id> <version>-0 event <JSON>`` (inside the transition
    script), read by one blocking ``XREAD`` per server over every ticket subscribed there
    (``on_first_subscriber`` adds the ticket to it);
    ``history(id, after)`` returns every event with version > after from the stream, so a change
    made while the browser was reconnecting is replayed on resume; a resume the stream cannot
    honour starts with a gap notice (``{"type": "gap", ...}``, which channels send as they are).

Hooks a subclass overrides: ``start``, ``stop`` (call ``super().stop()``), ``routes``, ``publish``,
``history``, ``on_first_subscriber``, ``on_last_unsubscribe``. Shared, for every fix to use rather
than copy: ``subscribe``, ``deliver_local``, ``offer`` (deliver a re-read state), ``read_ticket``
and ``expire_if_due`` (read a ticket, expiring it if due), ``catch_up`` (read once after a
subscription took effect), ``spawn`` (a background task that ``stop`` cancels), ``wait_until`` /
``wake_waiters`` (let a lesson wait for the hub's own bookkeeping).

What a hub may use of its server is the :class:`PushApp` protocol: QRLoginApp and the gateway's
push tier both provide it, and neither module is imported here, so fixes and servers do not
import each other.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Protocol

import redis.exceptions

from servers.runtime import cancel_and_wait

if TYPE_CHECKING:  # pragma: no cover
    from servers.qrlogin.tickets import Ticket, TicketStore

__all__ = ["PushHub", "Subscription", "Event", "PushApp", "Fix"]

Event = dict[str, Any]
log = logging.getLogger("servers.qrlogin.push")


class PushApp(Protocol):
    """What a hub uses of the server it runs in (``hub.app``).

    ``name`` labels its logs and tasks, ``namespace`` prefixes its Redis keys, ``settings`` holds
    its options, ``redis`` is the shared Redis (``redis.asyncio``, replies decoded to ``str``),
    ``tickets`` the ticket store on it, ``url`` where the server listens once started.
    """

    name: str
    namespace: str
    settings: dict[str, Any]
    redis: Any
    tickets: TicketStore

    @property
    def url(self) -> str: ...


class Subscription:
    """One open push channel's interest in one ticket.

    ``deliver(event)`` passes the event to the channel's callback only if its version is newer
    than anything delivered before (returns whether it did). Calling the object unsubscribes.

    A *notice* (a dict with ``type`` and no ``version``: the ``streams`` fix's gap notice, when a
    resume cannot be honoured) always passes, and moves the channel to just before its ``first``
    version, the one that follows it: forward past what the log no longer has, or back, for a
    ``reset`` (the channel's version was never this ticket's).
    """

    def __init__(self, hub: "PushHub", ticket: str, callback: Callable[[Event], Any], after: int = 0) -> None:
        self.hub = hub
        self.ticket = ticket
        self.callback = callback
        self.last_version = int(after)
        self.closed = False

    def deliver(self, event: Event) -> bool:
        if self.closed:
            return False
        if "version" not in event:  # a notice (see above), e.g. {"type": "gap", "first": 5, ...}
            first = int(event["first"]) - 1
            self.last_version = first if event.get("reset") else max(self.last_version, first)
        elif int(event["version"]) <= self.last_version:
            return False
        else:
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

    def __init__(self, app: PushApp) -> None:
        self.app = app
        self.channels: dict[str, set[Subscription]] = {}
        self.stats: Counter = Counter()  # published, delivered, undelivered, ... (fixes add theirs)
        self.stopped = False
        self.tasks: set[asyncio.Task] = set()  # started with spawn(): cancelled by stop()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []

    # -- life cycle and routes --------------------------------------------------------------

    async def start(self) -> None:
        """Called in the app's startup, after Redis is connected (``app.redis``)."""

    async def stop(self) -> None:
        """Called in the app's shutdown (stop and crash): a stopped or crashed server must not go on
        working in the background. Cancels every task started with :meth:`spawn`; a subclass that
        closes more (connections, its own tasks) calls ``await super().stop()`` too."""
        self.stopped = True
        await self.cancel(self.tasks)

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
        current = await self.read_ticket(ticket)
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

    def offer(self, event: Event) -> int:
        """Hand a state read back from Redis to this server's channels for its ticket; returns how
        many took it (``stats["delivered"]``). Unlike :meth:`deliver_local` it is not a publish:
        no channel left here (it closed meanwhile) is not a lost event."""
        count = sum(1 for sub in list(self.channels.get(event["ticket"], ())) if sub.deliver(event))
        self.stats["delivered"] += count
        return count

    def local_tickets(self) -> list[str]:
        """Tickets with at least one open channel on this server."""
        return [ticket for ticket, subs in self.channels.items() if subs]

    async def read_ticket(self, ticket: str) -> Ticket | None:
        """The ticket now (None: unknown), read from Redis. A read past its expiry moves it to
        ``expired`` (the store expires lazily, on read), and that change is published like any other."""
        current, expired_event = await self.app.tickets.get(ticket)
        if expired_event is not None:
            await self.publish(ticket, expired_event)
        return current

    async def expire_if_due(self, ticket: str) -> None:
        """An open channel's timer fired at the ticket's expiry: read it, so the expiry happens and
        is pushed. With Redis unreachable it does nothing; the next read expires the ticket."""
        try:
            await self.read_ticket(ticket)
        except redis.exceptions.RedisError:
            pass

    async def catch_up(self, ticket: str) -> int:
        """Read ``ticket`` once and offer it to the channels here; returns how many took it.

        For a fix whose subscription takes a round trip (pubsub's ``SUBSCRIBE``, the registry's
        ``SADD``): a change published after the channel opened but before the subscription took
        effect reached nobody here. Called once Redis has acknowledged the subscription, the read
        closes that gap: subscribe, then read, and every later change arrives one way or the other.
        """
        if ticket not in self.channels:
            return 0
        current = await self.read_ticket(ticket)
        self.stats["redis_commands"] += 2  # the ticket read: the store's transition script + HGETALL
        self.stats["catch_up"] += 1
        return self.offer(current.event()) if current is not None else 0

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

    # -- background work and waiting --------------------------------------------------------

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task:
        """Run ``coro`` in the background for as long as the hub runs (``name``: the task's name,
        prefixed with the server's). The task is kept in ``self.tasks`` (the loop keeps only a weak
        reference to a task, asyncio docs), cancelled by :meth:`stop`, and a failure is logged."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.app.name}:{name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %r", task.get_name(), task.exception())

    @staticmethod
    async def cancel(tasks: Iterable[asyncio.Task], timeout: float = 5.0) -> None:
        """Cancel ``tasks`` and wait (at most ``timeout`` s) until they have ended."""
        await cancel_and_wait(tasks, timeout)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Return once ``condition()`` is true, checked now and at each :meth:`wake_waiters` (call it
        whenever the hub's bookkeeping changes); ``asyncio.TimeoutError`` after ``timeout`` s."""
        if condition():
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def wake_waiters(self) -> None:
        """Resolve every :meth:`wait_until` whose condition now holds."""
        for condition, future in list(self._waiters):
            if not future.done() and condition():
                future.set_result(None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fix={self.name} channels={sum(map(len, self.channels.values()))}>"


@dataclass(frozen=True)
class Fix:
    """One way of getting a change to the browser's channel: all that the app servers, the cluster
    and the lessons need to know of it, so none of them asks "which fix is this?" by name.

    ``name``
        what ``--fix`` and ``start_qrlogin(fix=...)`` say, and the hub's ``name``.
    ``hub``
        makes the app server's hub from the app (a :class:`PushHub` subclass, or any callable
        ``app -> PushHub``): :meth:`make_hub`.
    ``policy``
        the balancer policy the fix relies on (``ticket_hash`` *is* a policy: route by ticket id);
        ``None``: any, and a cluster uses its default (``round_robin``, the worst case for the bug).
    ``push_tier``
        for a fix whose browsers' push routes go to a separate tier (``gateway``): starts that tier
        for a cluster, ``push_tier(redis_url, processes=bool, host=str, trusted_proxies=tuple)`` → a
        handle with ``url`` and ``stop()``, which the balancer is given as its push backend.
        ``None``: the app servers hold the channels themselves.
    """

    name: str
    hub: Callable[[PushApp], PushHub]
    policy: str | None = None
    push_tier: Callable[..., Any] | None = None

    def make_hub(self, app: PushApp) -> PushHub:
        """A new hub for ``app``, named after this fix."""
        hub = self.hub(app)
        hub.name = self.name
        return hub
