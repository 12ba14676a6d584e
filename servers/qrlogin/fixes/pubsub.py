"""The ``pubsub`` fix: a Redis pub/sub backplane between the app servers.

The server that changes a ticket (B, which got the phone's confirm) does not need to know who
holds the browser's channel. It publishes the event on the ticket's Redis channel
``<ns>:events:<ticket>``; every server that holds a channel for that ticket is subscribed to
exactly that Redis channel, receives the event and hands it to its local channels::

    phone ─confirm─▶ B ── PUBLISH qr:events:T ──▶ Redis ──message──▶ A ──▶ browser's SSE/WS

Who does it this way
    Socket.IO's Redis adapter (``@socket.io/redis-adapter``): the classic adapter
    ``PSUBSCRIBE``s one pattern, so every node receives every broadcast; the sharded adapter's
    default ``subscriptionMode: "dynamic"`` uses one channel per room, so only the nodes with
    members in the room are woken. We do the latter: one Redis channel per ticket, subscribed
    while this server holds a channel for it, so a message crosses to the holder only, and the
    count ``PUBLISH`` returns says how many servers heard it. Django Channels' Redis pub/sub
    layer and Spring's broker relay (STOMP to RabbitMQ) are the same idea with another broker.

Delivery semantics: **at most once**. Redis keeps nothing: a message published while no server
is subscribed to the ticket's channel (the browser was reconnecting, or its server was
restarting, or Redis itself was) is "forever lost" (Redis docs). ``stats["published_to_nobody"]``
counts those. The browser still converges on the right *state*, because every channel sends the
current state (read from Redis) when it opens; what it loses are the intermediate events.

Closing the subscribe gap: a channel registers here synchronously, but ``SUBSCRIBE`` takes a
round trip to Redis; a change published in between would be lost. So when Redis confirms a
ticket's subscription, this hub reads the ticket once more ("catch-up") and delivers it if it
is newer than what the channel has (``Subscription`` drops anything not newer). Subscribe, then
read: after that every change arrives either by the read or by a message.

Failure modes: Redis down → no event crosses (logins on a single server still work, short
polling still works); the reader task reconnects with backoff, re-subscribes every ticket held
here and catches up (``stats["reconnects"]``). A slow subscriber: Redis buffers its messages up
to ``client-output-buffer-limit pubsub`` (32 MB by default), then disconnects it.

Counted in ``stats``: ``redis_commands`` (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, catch-up reads),
``messages_out``/``bytes_out`` (published), ``receivers`` (sum of PUBLISH replies),
``published_to_nobody``, ``messages_in``/``bytes_in`` (received from another server through
Redis), ``echoes`` (our own messages coming back), ``catch_up``, ``reconnects``.
"""
from __future__ import annotations

import asyncio
import json
import logging

from servers.qrlogin.push import Event, PushApp, PushHub

__all__ = ["PubSubHub"]

log = logging.getLogger("servers.qrlogin.fixes.pubsub")


class PubSubHub(PushHub):
    """Publish each change on ``<ns>:events:<ticket>``; subscribe to the tickets held here."""

    name = "pubsub"

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        self.prefix = f"{app.namespace}:events:"
        # A channel nobody publishes on, subscribed for the whole life of the server: the reader
        # always has a connection to block on, even while no ticket is held here.
        self.control_channel = f"{app.namespace}:servers:{app.name}"
        self.subscribed: set[str] = set()  # tickets whose SUBSCRIBE was sent on the current connection
        self.confirmed: set[str] = set()   # tickets whose subscription Redis has confirmed
        self.connected = asyncio.Event()   # set while the subscriber connection is up
        self._changed = asyncio.Event()    # local tickets changed: reconcile the Redis subscriptions
        self._reader: asyncio.Task | None = None

    def channel_of(self, ticket: str) -> str:
        return self.prefix + ticket

    async def wait_confirmed(self, ticket: str, subscribed: bool = True, timeout: float = 5.0) -> None:
        """Return once Redis has confirmed that this server is (or is no longer) subscribed to
        ``ticket`` - e.g. a lesson closes the browser's channel and waits for this before it
        publishes into the void."""
        await self.wait_until(lambda: (ticket in self.confirmed) == subscribed, timeout)

    def _confirmation(self, ticket: str, subscribed: bool) -> None:
        (self.confirmed.add if subscribed else self.confirmed.discard)(ticket)
        self.wake_waiters()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._reader = self.spawn(self._run(), "pubsub-reader")  # stop() cancels it
        await asyncio.wait_for(self.connected.wait(), 10)  # subscribed before the first request

    # -- the publish half ---------------------------------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        self.stats["published"] += 1
        if ticket in self.channels:  # held here as well: deliver now, the echo from Redis is dropped
            self.deliver_local(event)
        message = json.dumps({"from": self.app.name, "event": event}, separators=(",", ":"))
        receivers = await self.app.redis.publish(self.channel_of(ticket), message)
        self.stats["redis_commands"] += 1
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += len(message.encode())
        self.stats["receivers"] += receivers
        if receivers == 0:
            self.stats["published_to_nobody"] += 1  # at most once: this event is gone for good

    # -- the subscribe half -------------------------------------------------------------------

    def on_first_subscriber(self, ticket: str) -> None:
        self._changed.set()

    def on_last_unsubscribe(self, ticket: str) -> None:
        self._changed.set()

    async def _run(self) -> None:
        """Keep one subscriber connection: (re)connect, subscribe, read; back off on errors."""
        delay = 0.05
        while not self.stopped:
            pubsub = self.app.redis.pubsub()
            reconcile: asyncio.Task | None = None
            try:
                await pubsub.subscribe(self.control_channel)
                self.stats["redis_commands"] += 1
                self.subscribed, self.confirmed = set(), set()
                self._changed.set()
                reconcile = self.spawn(self._reconcile(pubsub), "pubsub-subscriber")
                async for message in pubsub.listen():
                    delay = 0.05
                    self._on_message(message)
                raise ConnectionError("subscriber connection ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: reconnect, re-subscribe, catch up
                self.connected.clear()
                if self.stopped:
                    break
                self.stats["reconnects"] += 1
                log.warning("%s: pub/sub connection lost (%r); reconnecting in %.2f s", self.app.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                self.connected.clear()
                if reconcile is not None:
                    reconcile.cancel()
                try:
                    await asyncio.wait_for(pubsub.aclose(), 2)
                except BaseException:
                    pass

    async def _reconcile(self, pubsub) -> None:
        """Make the Redis subscriptions match the tickets held here (one task: commands in order)."""
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                wanted = set(self.local_tickets())
                add, drop = wanted - self.subscribed, self.subscribed - wanted
                if add:
                    await pubsub.subscribe(*(self.channel_of(t) for t in add))
                    self.stats["redis_commands"] += 1
                if drop:
                    await pubsub.unsubscribe(*(self.channel_of(t) for t in drop))
                    self.stats["redis_commands"] += 1
                self.subscribed = wanted
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reader sees the same broken connection and reconnects
            log.info("%s: subscribing failed (%r); the reader reconnects", self.app.name, exc)

    def _on_message(self, message: dict) -> None:
        kind, channel = message.get("type"), str(message.get("channel", ""))
        if kind == "subscribe":
            if channel == self.control_channel:
                self.connected.set()
            elif channel.startswith(self.prefix):
                self._confirmation(channel[len(self.prefix):], True)
                self.spawn(self.catch_up(channel[len(self.prefix):]), "pubsub-catch-up")
            return
        if kind == "unsubscribe" and channel.startswith(self.prefix):
            self._confirmation(channel[len(self.prefix):], False)
            return
        if kind != "message" or not channel.startswith(self.prefix):
            return
        data = message["data"]
        try:
            envelope = json.loads(data)
            event = envelope["event"]
            int(event["version"]), event["state"]
            if event["ticket"] != channel[len(self.prefix):]:
                raise ValueError("the event names another ticket than its channel")
        except (ValueError, KeyError, TypeError):
            self.stats["bad_messages"] += 1
            return
        if envelope.get("from") == self.app.name:
            self.stats["echoes"] += 1  # our own publish came back: already delivered locally
            return
        self.stats["messages_in"] += 1
        self.stats["bytes_in"] += len(data.encode())
        self.deliver_local(event)
