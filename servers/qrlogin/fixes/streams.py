"""The ``streams`` fix: a durable log per ticket in Redis Streams, and channels that resume from it.

The idea
--------
Every state change of ticket X is appended to the Redis Stream ``<ns>:stream:X`` with
``XADD``, and the entry's id *is* the ticket's version (``3-0`` for version 3). The append runs
inside the ticket's transition script (``tickets.py``), so a state and its log entry are written
in one atomic step: a server killed between "state changed" and "change logged" cannot exist,
and no browser resuming from the log can miss a change the store already has. A server holding
a browser channel for X follows the stream with a blocking ``XREAD`` from the last id it has
seen, and hands each entry to its local channels. Because the log is kept (for the ticket's
lifetime: the key expires with the ticket), a browser that was away - its connection dropped,
its server crashed - asks for everything after the last version it saw (SSE ``Last-Event-ID``,
the WebSocket's ``?after=v`` or ``{"after": v}``, the long poll's ``state``) and gets exactly
the events it missed, in order. That is the whole difference from the ``pubsub`` fix: a
``PUBLISH`` that nobody hears at that moment is gone; an ``XADD`` stays until it expires.

Redis commands, per state change and per channel::

    publish   XADD qr:stream:X MAXLEN ~ 32 3-0 event '{"ticket":..,"version":3,..}'  + PEXPIRE
              (inside the transition's EVALSHA: no round trip of its own)
    follow    XREAD BLOCK 0 COUNT 100 STREAMS qr:stream:X 2-0     (a loop per ticket held here)
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

Failure modes
-------------
* Redis down: nothing works (ticket state lives there too); the follow loops retry with a
  growing pause and resume from their last id when Redis is back (a restarted Redis with no
  persistence has lost the tickets as well, so only new logins matter then).
* Two servers changing one ticket at the same instant: the transition script runs one at a
  time in Redis, so the log has the versions in order, each once.
* One blocked Redis connection per ticket followed per server: fine for logins (seconds each),
  costly for millions of idle subscriptions. Socket.IO's adapter uses one stream and one
  ``XREAD`` per node instead, at the cost of every node reading every event. A loop lingers
  ``streams_linger_s`` (2 s) after its last channel closes, so a long poll's next request finds
  it still reading instead of paying for a new connection.
* A log that expired or was trimmed: resume falls back to the current state (still correct,
  just without the intermediate events).

``stats`` (per server, for lesson 08): ``redis_commands`` this fix sent, ``bytes_out`` /
``bytes_in`` (event JSON to / from Redis), ``messages_out`` / ``messages_in``,
``replayed`` (events served from the log on resume), ``redis_errors``.
"""
from __future__ import annotations

import asyncio
import json
import logging

import redis.exceptions

from servers.qrlogin.push import Event, PushApp, PushHub
from servers.qrlogin.tickets import ChangeLog

__all__ = ["StreamsHub", "stream_id"]

log = logging.getLogger("servers.qrlogin.fixes.streams")

STREAM_MAXLEN = 32  # a login has at most 5 changes; the cap only guards against misuse
FOLLOW_BATCH = 100


def stream_id(version: int) -> str:
    """The stream entry id of a ticket version: the version is the id's time part (``3`` → ``3-0``)."""
    return f"{int(version)}-0"


class StreamsHub(PushHub):
    """Push through a Redis Stream per ticket; channels resume from their last version."""

    name = "streams"

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        self.followers: dict[str, asyncio.Task] = {}  # ticket → its XREAD loop on this server
        self.retiring: dict[str, asyncio.TimerHandle] = {}  # ticket → when its idle loop will stop
        # A loop outlives its last channel this long: a long poll re-asks at once, and a fresh
        # loop would cost a new Redis connection (the cancelled XREAD took the old one with it).
        self.linger_s = float(app.settings.get("streams_linger_s", 2.0))
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
        """Stop every follow loop: a stopped or crashed server must not keep reading streams."""
        for timer in self.retiring.values():
            timer.cancel()
        self.retiring.clear()
        self.followers.clear()
        await super().stop()  # cancels the follow loops (spawned)

    # -- publish: the log already has it -------------------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        """The transition script has appended ``event`` to the stream (with the state change);
        the follow loops of every server hand it on. Our own channels need not wait for that."""
        self.stats["published"] += 1
        self.stats["redis_commands"] += 2  # XADD + PEXPIRE, run by Redis inside the transition
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += len(json.dumps(event, separators=(",", ":")))
        # A channel here that has the change before this one gets this one now; one that lacks it
        # (the follow loop is behind, e.g. retrying after a Redis restart) waits for the loop, which
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
        follow loop, which starts from the oldest version its channels have, delivers anyway:
        with the two agreeing, what a channel shows does not depend on which reply comes first."""
        current = await self.read_ticket(ticket)
        if current is None or current.version <= after:
            return []
        entries = await self.app.redis.xrange(self.key(ticket), min=stream_id(max(after, 0) + 1), max="+")
        self.stats["redis_commands"] += 1
        events = self._decode(entries)
        self.stats["replayed"] += len(events)
        if not events or events[-1]["version"] < current.version:
            events.append(current.event())  # the log expired or was trimmed: the state is still right
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

    # -- follow: one blocking XREAD loop per ticket held on this server ---------------------------

    def on_first_subscriber(self, ticket: str) -> None:
        timer = self.retiring.pop(ticket, None)
        if timer is not None:
            timer.cancel()  # a lingering loop is still reading: keep it
        if not self.stopped and ticket not in self.followers:
            self.followers[ticket] = self.spawn(self._follow(ticket), f"streams-follow:{ticket}")

    def on_last_unsubscribe(self, ticket: str) -> None:
        if ticket in self.followers and ticket not in self.retiring:
            self.retiring[ticket] = asyncio.get_running_loop().call_later(self.linger_s, self._retire, ticket)

    def _retire(self, ticket: str) -> None:
        """Still no channel for ``ticket`` here: stop its loop."""
        self.retiring.pop(ticket, None)
        task = self.followers.pop(ticket, None)
        if task is not None and ticket not in self.channels:
            task.cancel()  # redis-py drops the blocked connection; the pool opens a new one later
        elif task is not None:
            self.followers[ticket] = task

    async def _follow(self, ticket: str) -> None:
        # Start after the oldest version any local channel already has: the log replays the rest.
        subs = self.channels.get(ticket) or ()
        last = stream_id(min((s.last_version for s in subs), default=0))
        pause = 0.05
        while True:
            try:
                reply = await self.app.redis.xread({self.key(ticket): last}, count=FOLLOW_BATCH, block=0)
            except redis.exceptions.RedisError as exc:
                # Redis restarting (or refusing): wait a little longer each time, then read from the same id.
                self.stats["redis_errors"] += 1
                log.info("streams: XREAD for %s failed (%s); retrying in %.2f s", ticket, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            self.stats["redis_commands"] += 1
            pause = 0.05
            streams = reply.items() if isinstance(reply, dict) else (reply or ())  # RESP3 / RESP2
            for _stream, entries in streams:
                if entries:
                    last = entries[-1][0]
                for event in self._decode(entries):
                    self.deliver_local(event)
