"""The ``registry`` fix: Redis records which server holds each ticket's channel; the changer forwards.

When a browser's channel for ticket T opens on server A, A writes itself into the registry
(``SADD <ns>:where:<T> <A's internal URL>``, with an expiry it keeps refreshing while the channel
is open). When the phone's confirm lands on B, B looks T up (``SMEMBERS``) and POSTs the event
straight to A's ``/internal/deliver``, authenticated with a secret the servers share::

    phone ─confirm─▶ B ── SMEMBERS qr:where:T ──▶ Redis      (answer: http://A)
                     B ── POST http://A/internal/deliver ──▶ A ──▶ browser's SSE/WS

Who does it this way
    Django Channels: every consumer has a routable *channel name*, groups map to channel names
    in the channel layer (with ``group_expiry``), and a send goes to the process that owns the
    name. Spring's user destinations in a cluster (``UserDestinationResolver`` with a user
    registry broadcast between nodes) and SIP/XMPP "location services" are the same pattern:
    a directory of who holds which connection, then a direct hop.

Delivery semantics: **at most once**, like pub/sub, but the loss is visible where it happens:
no registry entry → ``stats["no_holder"]``; a forward that fails → ``stats["forward_failed"]``.
One message crosses between servers per change (none when the changer holds the channel
itself), whatever the number of servers, at the price of a registry read per change and a
registry write per channel open and close.

A set per ticket (not one value) because a ticket can have channels on two servers at once
(two tabs, or an SSE reconnect that landed elsewhere while the old stream lingers).

Stale entries: a server that crashes cannot clean up. Its entries stay until they expire
(``registry_ttl``, 30 s by default); a forward to it fails fast (connection refused, or the
``registry_forward_timeout``, 2 s, for a machine that vanished), is counted, and the stale
entry is removed at once so the next change does not try again.

The forward is authenticated: ``/internal/deliver`` is an ordinary route, so the balancer
would pass a browser's request to it too. Only a caller with the servers' shared secret
(``X-Internal-Secret``) is obeyed; anything else gets a JSON 401. The secret and the check are
those of ``servers.qrlogin.internal`` (the ``internal_secret`` setting, else
``QRLOGIN_INTERNAL_SECRET``, else agreed through Redis, first writer wins), the same as the
``gateway`` fix's. In production, configure it, and keep the internal route off the public listener.

The forwards travel on kept-alive HTTP/1.1 connections between the servers
(:class:`PeerConnections`): a new TCP connection per message would add a handshake to every
confirm.

The lookup, cached: a forward must not wait for the ``SMEMBERS`` round trip when this server
already knows the answer. Each server keeps the holders its last lookup of a ticket found
(``holders_cache``, bounded) and forwards to them at once, *while* the lookup runs; the lookup
still runs every time and stays the truth: a holder it names that the cache lacked (the channel
moved to another server, a second tab) gets the forward as soon as the answer is in, and the
cache is replaced by the answer. A cached holder that no longer holds the channel answers
``delivered: 0`` (``stats["forward_missed"]``), harmless; the browser's channel shows each
version once anyway. So a guess can only add a wasted forward, never lose one.

Closing the registration gap: a channel registers here synchronously, the ``SADD`` takes a
round trip. After Redis acknowledges it, this hub reads the ticket once more ("catch-up") and
delivers it if newer, so a change that raced the registration is not lost.

Counted in ``stats``: ``redis_commands`` (SADD/PEXPIRE/SREM/SMEMBERS, catch-up reads),
``forwards``, ``messages_out``/``bytes_out`` (forwarded requests), ``messages_in``/``bytes_in``
(received by ``/internal/deliver``), ``forward_failed``, ``stale_removed``, ``no_holder``,
``delivered_here`` (the changer held the channel itself), ``forwarded_before_lookup`` (sent to a
cached holder without waiting for the lookup), ``refused`` (bad secret).
"""
from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections import OrderedDict

import tornado.iostream
import tornado.tcpclient

from servers.qrlogin.internal import SECRET_ENV, SECRET_HEADER, InternalEventHandler, InternalSecret
from servers.qrlogin.push import Event, PushApp, PushHub
from servers.wire.http import Data, HttpParser, Response, encode_request, keeps_alive

# SECRET_HEADER and SECRET_ENV live in servers.qrlogin.internal; exercises import them from here.
__all__ = ["RegistryHub", "InternalDeliverHandler", "PeerConnections", "SECRET_HEADER", "SECRET_ENV"]

log = logging.getLogger("servers.qrlogin.fixes.registry")


class RegistryHub(PushHub):
    """Register the tickets held here in Redis; forward each change to the registered holders."""

    name = "registry"

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        settings = app.settings
        self.ttl = float(settings.get("registry_ttl", 30.0))
        self.forward_timeout = float(settings.get("registry_forward_timeout", 2.0))
        self.internal = InternalSecret(settings.get("internal_secret"), app.namespace)
        self.registered: set[str] = set()  # tickets whose entry Redis has acknowledged
        self._changed = asyncio.Event()
        self._registrar: asyncio.Task | None = None
        self._peers = PeerConnections(self.forward_timeout)
        # ticket -> holders (other servers) at this server's last lookup; see "The lookup, cached"
        self.holders_cache: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.cache_size = int(settings.get("registry_cache_size", 10_000))

    @property
    def secret(self) -> str:
        """The servers' shared secret (what a forward sends in ``SECRET_HEADER``)."""
        return self.internal.value

    @property
    def internal_url(self) -> str:
        """Where other servers reach this one (``internal_url`` setting, else the bound URL)."""
        return (self.app.settings.get("internal_url") or self.app.url).rstrip("/")

    def key_of(self, ticket: str) -> str:
        return f"{self.app.namespace}:where:{ticket}"

    async def wait_registered(self, ticket: str, registered: bool = True, timeout: float = 5.0) -> None:
        """Return once Redis has acknowledged this server's entry for ``ticket`` (or its removal)."""
        await self.wait_until(lambda: (ticket in self.registered) == registered, timeout)

    def routes(self) -> list[tuple]:
        return [(r"/internal/deliver", InternalDeliverHandler)]

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.stats["redis_commands"] += await self.internal.agree(self.app.redis)  # unless configured
        self._registrar = self.spawn(self._run(), "registry-registrar")

    async def stop(self) -> None:
        """Stop registering (a crashed server leaves its entries behind, as a dead machine would)."""
        await super().stop()
        self._peers.close()

    # -- the subscribe half: keep the registry in step with the channels held here ------------

    def on_first_subscriber(self, ticket: str) -> None:
        self._changed.set()

    def on_last_unsubscribe(self, ticket: str) -> None:
        self._changed.set()

    async def _run(self) -> None:
        """One task writes the registry, so writes for one ticket reach Redis in order.

        Woken by channel changes; every ``ttl / 3`` s it also refreshes every entry (and, after a
        Redis restart, writes them - and the shared secret - back).
        """
        delay = 0.05
        while not self.stopped:
            refresh = False
            try:
                await asyncio.wait_for(self._changed.wait(), self.ttl / 3)
            except asyncio.TimeoutError:
                refresh = True  # write every entry again, renewing its expiry
            self._changed.clear()
            try:
                await self._sync(refresh)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis unreachable: try again soon
                self.stats["registry_errors"] += 1
                log.warning("%s: registry write failed (%r); retrying in %.2f s", self.app.name, exc, delay)
                self.registered = set()
                self._changed.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _sync(self, refresh: bool = False) -> None:
        if self.stopped:
            return  # stopping or crashed: a dead server writes nothing more
        wanted = set(self.local_tickets())
        new, drop = wanted - self.registered, self.registered - wanted
        add = wanted if refresh else new
        if not add and not drop and not (refresh and self.internal.from_redis):
            return
        me, ttl_ms = self.internal_url, int(self.ttl * 1000)
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for ticket in add:
                pipe.sadd(self.key_of(ticket), me)
                pipe.pexpire(self.key_of(ticket), ttl_ms)
            for ticket in drop:
                pipe.srem(self.key_of(ticket), me)
            commands = 2 * len(add) + len(drop) + self.internal.rewrite(pipe)  # the secret, after a Redis restart
            await pipe.execute()
        self.stats["redis_commands"] += commands
        self.registered = wanted
        self.wake_waiters()
        for ticket in new:  # the entry is in Redis: read once, so a change that raced it is not lost
            self.spawn(self.catch_up(ticket), "registry-catch-up")

    # -- the publish half: look up, then forward ----------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        self.stats["published"] += 1
        if ticket in self.channels:  # held here (too): no lookup needed for this server
            self.stats["delivered_here"] += 1
            self.deliver_local(event)
        body = json.dumps(event, separators=(",", ":"))
        # The holders this server found last time: forward to them at once, while the lookup runs.
        guessed = self.holders_cache.get(ticket, frozenset())
        early = [asyncio.ensure_future(self._send(url, ticket, event, body)) for url in sorted(guessed)]
        self.stats["forwarded_before_lookup"] += len(early)
        try:
            holders = await self.app.redis.smembers(self.key_of(ticket))
            self.stats["redis_commands"] += 1
            others = set(holders) - {self.internal_url}
            self._remember(ticket, others)
            if not others and ticket not in self.channels:
                self.stats["no_holder"] += 1
                self.stats["undelivered"] += 1
                return
            # Holders the guess missed (the channel moved, or a second tab): forward now.
            await asyncio.gather(*(self._send(url, ticket, event, body) for url in sorted(others - guessed)))
        finally:
            await asyncio.gather(*early)

    def _remember(self, ticket: str, holders: set[str]) -> None:
        """Keep the latest lookup of ``ticket`` (bounded: the oldest entries go first)."""
        self.holders_cache.pop(ticket, None)
        if holders:
            self.holders_cache[ticket] = frozenset(holders)
            while len(self.holders_cache) > self.cache_size:
                self.holders_cache.popitem(last=False)

    async def _send(self, url: str, ticket: str, event: Event, body: str) -> None:
        self.stats["forwards"] += 1
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += len(body)
        try:
            status, answer = await self._peers.post(url, "/internal/deliver", body.encode(),
                                                    {"Content-Type": "application/json", **self.internal.headers()})
        except (OSError, tornado.iostream.StreamClosedError, asyncio.TimeoutError, ValueError) as exc:
            # Nobody there (connection refused, or no answer in time): the entry is stale.
            self.stats["forward_failed"] += 1
            log.info("%s: forward of %s v%s to %s failed: %r", self.app.name, ticket, event.get("version"), url, exc)
            self._remember(ticket, set(self.holders_cache.get(ticket, ())) - {url})
            await self.app.redis.srem(self.key_of(ticket), url)
            self.stats["redis_commands"] += 1
            self.stats["stale_removed"] += 1
            return
        if status != 200:  # e.g. 401: the servers disagree on the secret
            self.stats["forward_failed"] += 1
            log.warning("%s: forward to %s refused: %s %s", self.app.name, url, status, answer[:200])
            return
        if json.loads(answer or b"{}").get("delivered", 0) == 0:
            self.stats["forward_missed"] += 1  # the holder had no channel left for it


class PeerConnections:
    """Keep-alive HTTP/1.1 connections to the other servers, so a forward costs one round trip.

    Tornado's ``AsyncHTTPClient`` opens a new TCP connection for every request; between servers
    that talk all the time that is a handshake per message. Idle connections are kept per peer
    and reused. A server may close an idle connection at any moment, so a request that fails on
    a reused connection is retried once on a fresh one; failing on a fresh one is the peer's fault.
    """

    max_idle_per_peer = 8

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.idle: dict[str, list[tornado.iostream.IOStream]] = {}

    async def post(self, url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body`` to ``url + path``; returns (status, response body). Raises on no answer."""
        for attempt in (1, 2):
            idle = self.idle.get(url) or []
            stream = idle.pop() if idle else None
            reused = stream is not None
            if stream is None:
                parts = urllib.parse.urlsplit(url)
                stream = await tornado.tcpclient.TCPClient().connect(parts.hostname, parts.port or 80,
                                                                     timeout=self.timeout)
                stream.set_nodelay(True)
            try:
                status, answer, keep = await asyncio.wait_for(self._exchange(stream, url, path, body, headers),
                                                              self.timeout)
            except (tornado.iostream.StreamClosedError, OSError):
                stream.close()
                if reused and attempt == 1:
                    continue  # the peer closed an idle connection: try once on a fresh one
                raise
            except BaseException:
                stream.close()
                raise
            if keep and len(self.idle.setdefault(url, [])) < self.max_idle_per_peer:
                self.idle[url].append(stream)
            else:
                stream.close()
            return status, answer
        raise tornado.iostream.StreamClosedError()  # pragma: no cover - the loop returns or raises

    @staticmethod
    async def _exchange(stream, url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, bool]:
        """One request and its whole answer: (status, body, whether the connection can be reused)."""
        await stream.write(encode_request("POST", path, {"Host": urllib.parse.urlsplit(url).netloc, **headers}, body))
        parser, answer = HttpParser(response=True), bytearray()
        head: Response | None = None
        until_close = False
        while True:
            try:
                events = parser.feed(await stream.read_bytes(64 * 1024, partial=True))
            except tornado.iostream.StreamClosedError:
                if not until_close:
                    raise  # closed before the answer was complete
                events = parser.feed_eof()
            for event in events:
                if isinstance(event, Response):
                    head, until_close = event, parser.framing == "close"
                elif isinstance(event, Data):
                    answer += event.data
                elif head is not None:  # the end of the answer; bytes after it would be unasked for
                    return head.status, bytes(answer), keeps_alive(head) and not until_close and not parser.in_message

    def close(self) -> None:
        for streams in self.idle.values():
            for stream in streams:
                stream.close()
        self.idle.clear()


class InternalDeliverHandler(InternalEventHandler):
    """``POST /internal/deliver`` (server to server): hand the event to this server's channels.

    Refused with 401 unless ``X-Internal-Secret`` carries the shared secret; a malformed event
    is a 400. Answers ``{"delivered": n, "server": name}``: how many channels here took it.
    """

    def internal_secret(self) -> InternalSecret | None:
        hub = self.application.push  # type: ignore[attr-defined]
        return hub.internal if isinstance(hub, RegistryHub) else None
