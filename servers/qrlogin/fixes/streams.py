"""The ``streams`` fix: a durable log per ticket in Redis Streams, and channels that resume from it.

The idea
--------
Every state change of ticket X is appended to the Redis Stream ``<ns>:stream:X`` with
``XADD``, and the entry's id *is* the ticket's version (``3-0`` for version 3). The append runs
inside the ticket's transition script (``tickets.py``), so a state and its log entry are written
in one atomic step: a server killed between "state changed" and "change logged" cannot exist,
and no browser resuming from the log can miss a change the store already has. A server holding
browser channels follows their tickets' streams - all of them with one blocking ``XREAD``, each
from the last id it has seen - and hands each entry to its local channels. Because the log is
kept (for the ticket's lifetime: the key expires with the ticket), a browser that was away - its connection dropped,
its server crashed - asks for everything after the last version it saw (SSE ``Last-Event-ID``,
the WebSocket's ``?after=v`` or ``{"after": v}``, the long poll's ``state``) and gets exactly
the events it missed, in order. That is the whole difference from the ``pubsub`` fix: a
``PUBLISH`` that nobody hears at that moment is gone; an ``XADD`` stays until it expires.

Redis commands, per state change and per channel::

    publish   XADD qr:stream:X MAXLEN ~ 32 3-0 event '{"ticket":..,"version":3,..}'  + PEXPIRE
              (inside the transition's EVALSHA: no round trip of its own)
    follow    XREAD BLOCK 5000 COUNT 100 STREAMS <wake> qr:stream:X qr:stream:Y ... <id> 2-0 1-0 ...
              (one per server, over every ticket with a channel here; re-issued after each reply)
    wake      XADD <wake> MAXLEN 1 * wake 1  + PEXPIRE   (when a ticket is first followed while
              the XREAD is blocked: at most one per XREAD in flight)
    open      XRANGE qr:stream:X 3-0 +     (history after version 2; a fresh channel: from 1-0)

Using the version as the entry id makes the mapping to SSE exact (``Last-Event-ID: 2`` →
``XRANGE key 3-0 +``), and a version is logged once: Redis refuses a second ``XADD`` of
version 3 ("equal or smaller than the top item").

Who does it this way
--------------------
Socket.IO's Redis *Streams* adapter (``@socket.io/redis-streams-adapter``: one stream, every
node ``XREAD``s it, and "connection state recovery" replays missed packets after a reconnect);
Centrifugo's and Mercure's history/recovery (a client resubscribes with its last offset or
``Last-Event-ID``); Kafka-style consumers resuming from an offset. Spring's STOMP broker relay
gets the same from a durable broker queue.

Delivery semantics
------------------
At-least-once from the log, shown to the browser exactly once and in order: the log may
hand the same version to a server twice (history and the live ``XREAD`` overlap on resume),
and each channel drops any version it already has (``Subscription`` in ``push.py``). A change
made while no channel was open anywhere is not lost; it waits in the stream until the ticket
expires.

One follower per server, however many tickets
---------------------------------------------
``XREAD`` takes many streams, each with its own last id, and returns as soon as any of them has
an entry: so each server has one follower task and one blocked Redis connection, whether it
follows one ticket or thousands (redis-py's pool holds 100 connections by default; a connection
per ticket ran out of them at a few hundred concurrent logins, and every other Redis call of
that server then failed with 503). The set of streams is fixed while an ``XREAD`` is blocked, so
a newly followed ticket must get into the next one without waiting: every ``XREAD`` also names
this server's *wake stream*, and following a new ticket while one is blocked appends an entry
to it (``_wake``), which ends the ``XREAD`` at once; the follower re-issues it with the new set.
Nothing is lost meanwhile: the new ticket's stream is read from the version its channel had
when it subscribed, so every change logged since is in the next reply; and the channel's
history (``XRANGE``) covers what came before. A ticket whose last channel closed stays followed
``streams_linger_s`` (2 s) longer, so a long poll's next request finds it still followed. The
``BLOCK`` timeout (``FOLLOW_BLOCK_MS``, 5 s) is only a safety net for a wake Redis refused. The
cost: each ``XREAD`` names every followed stream, so under load a reply costs O(followed
tickets); replies batch whatever arrived meanwhile (``COUNT`` 100 per stream), which keeps the
number of re-issues well below the number of changes.

A resume the log cannot honour: the gap notice
----------------------------------------------
A resume from version ``v`` is recovered when the log still holds every version after ``v``;
the channel then gets exactly those, as above. When it does not - the log was trimmed or expired,
or was deleted - or when ``v`` is a version this ticket never reached (an id from another store),
the channel says so before anything else, like Centrifugo's ``recovered: false``:

    SSE        event: gap
               data: {"ticket":"X","missed":{"from":3,"to":4},"first":5}
    WebSocket  {"type":"gap","ticket":"X","missed":{"from":3,"to":4},"first":5}

``missed`` is the range of versions the log no longer has (``null`` with ``"reset": true`` when
``v`` was never this ticket's), ``first`` the version the channel sends next (the oldest the log
has, else the current state). The SSE event has no ``id:`` line, so the browser's
``Last-Event-ID`` is not moved by it. A browser receiving it does not trust what it showed: it
reloads the state (``GET /api/tickets/{id}``) and goes on from ``first`` (the simulated browser in
``servers.clients.qr.browser`` and the login page do). Counted in ``stats["not_recovered"]``.
A recovered resume sends no notice, so a browser that never resumes sees no change.

Failure modes
-------------
* Redis down: nothing works (ticket state lives there too); the follower retries with a
  growing pause and resumes from its last ids when Redis is back (a restarted Redis with no
  persistence has lost the tickets as well, so only new logins matter then).
* Two servers changing one ticket at the same instant: the transition script runs one at a
  time in Redis, so the log has the versions in order, each once.
* Every server reads the streams of the tickets it holds channels for, and only those: unlike
  Socket.IO's adapter (one stream that every node reads in full), a change costs a read only on
  the servers that need it.
* A log that expired or was trimmed: resume falls back to the current state, after a gap notice.

``stats`` (per server, for lesson 08): ``redis_commands`` this fix sent, ``bytes_out`` /
``bytes_in`` (event JSON to / from Redis), ``messages_out`` / ``messages_in``,
``replayed`` (events served from the log on resume), ``not_recovered`` (resumes answered with a
gap notice), ``redis_errors``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets

import redis.exceptions

from servers.qrlogin.push import Event, PushApp, PushHub
from servers.qrlogin.tickets import ChangeLog

__all__ = ["StreamsHub", "stream_id", "gap_notice"]

log = logging.getLogger("servers.qrlogin.fixes.streams")

STREAM_MAXLEN = 32  # a login has at most 5 changes; the cap only guards against misuse
FOLLOW_BATCH = 100  # entries per stream per XREAD reply
# The follower's XREAD is woken when the followed set grows; this bound is only the safety net
# for a wake that failed (Redis refusing it): a new stream is read at the latest this much later.
FOLLOW_BLOCK_MS = 5000
WAKE_TTL_MS = 60_000


def stream_id(version: int) -> str:
    """The stream entry id of a ticket version: the version is the id's time part (``3`` → ``3-0``)."""
    return f"{int(version)}-0"


class StreamsHub(PushHub):
    """Push through a Redis Stream per ticket; channels resume from their last version."""

    name = "streams"

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        self.followers: dict[str, str] = {}  # ticket followed here → the last stream id read for it
        self.retiring: dict[str, asyncio.TimerHandle] = {}  # ticket → when it stops being followed
        self.follower: asyncio.Task | None = None  # the one XREAD loop over every followed stream
        # A ticket stays followed this long after its last channel closes: a long poll re-asks at
        # once, and re-following would cost a wake of the follower.
        self.linger_s = float(app.settings.get("streams_linger_s", 2.0))
        # This hub's own wake stream (the random part: a server restarted under the same name
        # must not read its predecessor's wakes), and the follower's state for waking it.
        self.wake_key = f"{app.namespace}:stream-wake:{app.name}:{secrets.token_hex(6)}"
        self._wake_last = "0-0"
        self._reading = False  # an XREAD is in flight, naming the followed set as it was
        self._woken = False  # ... and a wake was already sent for it
        # Every change the store makes is appended to the ticket's stream in the same script.
        app.tickets.log = ChangeLog(self.key, STREAM_MAXLEN, self.log_ttl_ms)

    def key(self, ticket: str) -> str:
        return f"{self.app.namespace}:stream:{ticket}"

    @property
    def log_ttl_ms(self) -> int:
        """The log lives as long as the ticket's key (its validity plus the tombstone grace)."""
        tickets = self.app.tickets
        return int((tickets.ttl + tickets.grace) * 1000)

    # -- life cycle -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the follower: a stopped or crashed server must not keep reading streams."""
        for timer in self.retiring.values():
            timer.cancel()
        self.retiring.clear()
        self.followers.clear()
        await super().stop()  # cancels the follower (spawned) and any wake in flight

    # -- publish: the log already has it -------------------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        """The transition script has appended ``event`` to the stream (with the state change);
        the followers of every server hand it on. Our own channels need not wait for that."""
        self.stats["published"] += 1
        self.stats["redis_commands"] += 2  # XADD + PEXPIRE, run by Redis inside the transition
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += len(json.dumps(event, separators=(",", ":")))
        # A channel here that has the change before this one gets this one now; one that lacks it
        # (the follower is behind, e.g. retrying after a Redis restart) waits for the follower, which
        # hands it both in order: delivered now, this one would make it drop the earlier one.
        version = int(event["version"])
        for sub in list(self.channels.get(ticket, ())):
            if sub.last_version == version - 1 and sub.deliver(event):
                self.stats["delivered"] += 1

    # -- history: what a (re)opening channel is owed ---------------------------------------------

    async def history(self, ticket: str, after: int = 0) -> list[Event]:
        """Every logged event with a version above ``after`` (a fresh channel, ``after`` = 0: the
        whole log), then the current state if the log lacks it (a new ticket has no log yet).

        The whole log for a fresh channel, not just the current state, because that is what the
        follower, which starts from the oldest version its channels have, delivers anyway: with
        the two agreeing, what a channel shows does not depend on which reply comes first.

        A resume (``after`` > 0) the log cannot honour starts with a gap notice
        (:func:`gap_notice`): the versions after ``after`` that the log no longer has, or, for a
        version this ticket never reached, ``reset``. The browser then reloads the state instead
        of trusting a stream with a hole in it."""
        current = await self.read_ticket(ticket)
        if current is None or current.version == after:
            return []
        if current.version < after:  # an id this ticket never reached (not one of this store's)
            self.stats["not_recovered"] += 1
            return [gap_notice(ticket, None, current.version, reset=True), current.event()]
        entries = await self.app.redis.xrange(self.key(ticket), min=stream_id(max(after, 0) + 1), max="+")
        self.stats["redis_commands"] += 1
        events = self._decode(entries)
        self.stats["replayed"] += len(events)
        if not events or events[-1]["version"] < current.version:
            events.append(current.event())  # the log expired or was trimmed: the state is still right
        first = int(events[0]["version"])
        if after > 0 and first > after + 1:  # the log no longer has after+1 .. first-1
            self.stats["not_recovered"] += 1
            events.insert(0, gap_notice(ticket, {"from": after + 1, "to": first - 1}, first))
        return events

    def _decode(self, entries) -> list[Event]:
        events = []
        for _entry_id, fields in entries:
            raw = fields.get("event", "")
            self.stats["messages_in"] += 1
            self.stats["bytes_in"] += len(raw)
            try:
                events.append(json.loads(raw))
            except ValueError:
                log.warning("ignoring a malformed stream entry: %r", raw[:100])
        return events

    # -- follow: one blocking XREAD over every stream followed on this server ----------------------

    def on_first_subscriber(self, ticket: str) -> None:
        timer = self.retiring.pop(ticket, None)
        if timer is not None:
            timer.cancel()  # still followed (lingering): keep its place in the stream
        if self.stopped or ticket in self.followers:
            return
        # Start after the oldest version a local channel already has: the log replays the rest.
        subs = self.channels.get(ticket) or ()
        self.followers[ticket] = stream_id(min((s.last_version for s in subs), default=0))
        if self.follower is None or self.follower.done():
            self.follower = self.spawn(self._follow(), "streams-follow")
        elif self._reading and not self._woken:
            self._woken = True  # one wake per XREAD in flight, however many tickets arrive meanwhile
            self.spawn(self._wake(), "streams-wake")

    def on_last_unsubscribe(self, ticket: str) -> None:
        if ticket in self.followers and ticket not in self.retiring:
            self.retiring[ticket] = asyncio.get_running_loop().call_later(self.linger_s, self._retire, ticket)

    def _retire(self, ticket: str) -> None:
        """Still no channel for ``ticket`` here: stop following it. The XREAD in flight still names
        its stream; the next one does not (nothing needs waking for a stream less)."""
        self.retiring.pop(ticket, None)
        if ticket not in self.channels:
            self.followers.pop(ticket, None)

    async def _wake(self) -> None:
        """End the follower's XREAD in flight, so that it is issued again with the new set: an
        entry in this server's own wake stream, which every XREAD of the follower also names."""
        try:
            async with self.app.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.wake_key, {"wake": "1"}, maxlen=1, approximate=False)
                pipe.pexpire(self.wake_key, WAKE_TTL_MS)  # a crashed server's wake stream goes away
                await pipe.execute()
            self.stats["redis_commands"] += 2
        except redis.exceptions.RedisError as exc:
            # The follower's XREAD fails too (then retries with the new set) or ends within
            # FOLLOW_BLOCK_MS; either way the new stream is read, just later.
            self.stats["redis_errors"] += 1
            log.info("streams: waking the follower failed (%s); it re-reads within %d ms", exc, FOLLOW_BLOCK_MS)

    async def _follow(self) -> None:
        """The one follower of this server: ``XREAD BLOCK`` over the wake stream and every followed
        ticket's stream, each from the last id read; re-issued after each reply (the followed set
        as it is then), after a wake, and after ``FOLLOW_BLOCK_MS`` at the latest."""
        prefix = self.key("")
        pause = 0.05
        while not self.stopped:
            streams = {self.wake_key: self._wake_last, **{self.key(t): last for t, last in self.followers.items()}}
            # From here until the reply, a newly followed ticket is missing from this XREAD: wake it.
            self._reading, self._woken = True, False
            self.wake_waiters()  # e.g. a lesson or test waiting for the follower to be blocked
            try:
                reply = await self.app.redis.xread(streams, count=FOLLOW_BATCH, block=FOLLOW_BLOCK_MS)
            except redis.exceptions.RedisError as exc:
                # Redis restarting (or refusing): wait a little longer each time, then read from the same ids.
                self.stats["redis_errors"] += 1
                log.info("streams: XREAD over %d streams failed (%s); retrying in %.2f s", len(streams), exc, pause)
                self._reading = False
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            self._reading = False
            self.stats["redis_commands"] += 1
            pause = 0.05
            replies = reply.items() if isinstance(reply, dict) else (reply or ())  # RESP3 / RESP2
            for key, entries in replies:
                if not entries:
                    continue
                if key == self.wake_key:
                    self._wake_last = entries[-1][0]
                    continue
                ticket = key[len(prefix):]
                if ticket not in self.followers:
                    continue  # retired while the XREAD was in flight
                self.followers[ticket] = entries[-1][0]
                for event in self._decode(entries):
                    self.deliver_local(event)


def gap_notice(ticket: str, missed: dict[str, int] | None, first: int, reset: bool = False) -> Event:
    """What a channel sends when a resume cannot be honoured (see the module's docstring): a notice
    with ``type`` and no ``version``, which ``Subscription.deliver`` passes through and which moves
    the channel to just before version ``first``, the next it sends."""
    notice: Event = {"type": "gap", "ticket": ticket, "missed": missed, "first": int(first)}
    if reset:
        notice["reset"] = True
    return notice
