"""The ``gateway`` fix, app-server side: hold no push connection; publish every change to the push tier.

The push tier is a separate server (``gateway_tier.py`` beside this module, its own process or processes) that
holds every browser's SSE stream, WebSocket and long poll; the balancer sends those routes
there (``push_backends`` of ``servers.balancer.start_balancer``) and the rest to the app servers.
So with this fix an app server is stateless: it changes the ticket in Redis, then ``publish``
POSTs the event to the gateway's ``/internal/publish`` with the shared secret, and the gateway
delivers it to the browser's channel::

    phone ─confirm─▶ balancer ─▶ B ── POST gateway/internal/publish {"ticket":T,"state":"confirmed",...}
                                                     gateway ══SSE/WS══▶ browser

Who does it this way: Pushpin (the backend publishes over HTTP to the proxy that holds the
connections), Centrifugo and Mercure (the app calls the hub's authenticated HTTP publish API),
the AWS API Gateway WebSocket API (the backend POSTs to ``@connections/{id}``).

Which gateways: the ``gateway_url`` setting (one URL or a list), else ``QRLOGIN_GATEWAY_URL``
(comma-separated), else the URLs gateways announce in Redis (``<ns>:gateways``; re-read at most
every ``gateway_refresh_s`` seconds). With several gateways each publish goes to all of them
(the one holding the ticket's channel delivers), so the balancer may spread push routes over
them any way it likes. The secret is that of ``servers.qrlogin.internal`` (the ``internal_secret``
setting, else ``QRLOGIN_INTERNAL_SECRET``, else agreed through Redis with the gateway, first
writer wins), the same as the ``registry`` fix's.

Delivery semantics: at most once per live event - an event published while the browser is
reconnecting to the gateway reaches nobody - but every channel the gateway opens first sends
the current state from Redis, so the browser converges on the right state.

The POSTs travel on kept-alive HTTP/1.1 connections (``PeerConnections``, the registry fix's), so
a publish costs one round trip, not a TCP handshake and a round trip: the same footing as the
registry's forwards when lesson 08 compares their latency.

Failure modes: the gateway down → no live push at all (the publish fails fast, counted in
``stats["publish_failed"]``, and a gateway URL that refuses connections is dropped from the
announced set); the state is safe in Redis, short polling still works, and browsers catch up
when they reconnect. A wrong secret → 401, counted in ``stats["publish_refused"]`` (the secret
is then agreed through Redis once more, in case Redis restarted and the gateway wrote a new one).

If a browser does reach an app server's push route directly (no balancer in front), this hub
still delivers to it locally, so the app stays usable on its own.

Counted in ``stats``: ``published``, ``messages_out``/``bytes_out`` (event JSON POSTed to
gateways), ``redis_commands`` (gateway and secret look-ups), ``publish_failed``,
``publish_refused``, ``delivered_remote`` (channels the gateway reported it reached).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import tornado.iostream

from servers.qrlogin.fixes.registry import PeerConnections
from servers.qrlogin.internal import InternalSecret, secret_key
from servers.qrlogin.push import Event, PushApp, PushHub

# secret_key lives in servers.qrlogin.internal; kept importable from here.
__all__ = ["GatewayHub", "GATEWAY_ENV", "gateways_key", "secret_key"]

log = logging.getLogger("servers.qrlogin.fixes.gateway")
GATEWAY_ENV = "QRLOGIN_GATEWAY_URL"


def gateways_key(namespace: str) -> str:
    """The Redis set where gateways announce the URL app servers publish to."""
    return f"{namespace}:gateways"


class GatewayHub(PushHub):
    """Publish every change to the push tier; hold no channel (the balancer sends them there)."""

    name = "gateway"

    def __init__(self, app: PushApp) -> None:
        super().__init__(app)
        settings = app.settings
        configured = settings.get("gateway_url") or os.environ.get(GATEWAY_ENV) or ""
        if isinstance(configured, str):
            configured = [u for u in configured.split(",") if u.strip()]
        self.configured = [u.strip().rstrip("/") for u in configured]
        self.internal = InternalSecret(settings.get("internal_secret"), app.namespace)
        self.timeout = float(settings.get("gateway_timeout", 2.0))
        self.refresh_s = float(settings.get("gateway_refresh_s", 2.0))
        self._announced: list[str] = []
        self._announced_at = -1e9
        self._peers: PeerConnections | None = None  # kept-alive connections to the gateways

    @property
    def key_gateways(self) -> str:
        return gateways_key(self.app.namespace)

    @property
    def secret(self) -> str:
        """The servers' shared secret as this server has it (``""`` before the first publish)."""
        return self.internal.value

    async def start(self) -> None:
        self._peers = PeerConnections(self.timeout)

    async def stop(self) -> None:
        await super().stop()
        if self._peers is not None:
            self._peers.close()
            self._peers = None

    # -- where to publish, with what secret ------------------------------------------------------

    async def gateway_urls(self) -> list[str]:
        """The configured gateways, else those announced in Redis (cached ``gateway_refresh_s``)."""
        if self.configured:
            return self.configured
        if not self._announced or time.monotonic() - self._announced_at > self.refresh_s:
            announced = sorted(await self.app.redis.smembers(self.key_gateways))
            self._announced_at = time.monotonic()
            self.stats["redis_commands"] += 1
            if announced:  # an empty set right after a Redis restart: keep the last known gateways
                self._announced = announced
        return self._announced

    async def shared_secret(self, fresh: bool = False) -> str:
        """The secret to publish with: agreed through Redis on first use (unless configured), and
        again with ``fresh`` (after a 401)."""
        if self.internal.from_redis and (fresh or not self.internal.value):
            self.stats["redis_commands"] += await self.internal.agree(self.app.redis)
        return self.internal.value

    # -- publish: one POST per gateway -----------------------------------------------------------

    async def publish(self, ticket: str, event: Event) -> None:
        self.stats["published"] += 1
        if ticket in self.channels:
            self.deliver_local(event)  # only without a balancer in front: browsers are on the gateway
        urls = await self.gateway_urls()
        if not urls:
            self.stats["publish_failed"] += 1
            log.warning("%s: no gateway to publish %s v%s to", self.app.name, ticket, event.get("version"))
            return
        body = json.dumps(event, separators=(",", ":"))
        await asyncio.gather(*(self._post(url, body) for url in urls))

    async def _post(self, url: str, body: str, retried: bool = False) -> None:
        if self._peers is None:
            return  # stopped or crashed: a dead server sends nothing
        await self.shared_secret()
        self.stats["messages_out"] += 1
        self.stats["bytes_out"] += len(body)
        try:
            status, answer = await self._peers.post(url, "/internal/publish", body.encode(),
                                                    {"Content-Type": "application/json", **self.internal.headers()})
        except (OSError, tornado.iostream.StreamClosedError, asyncio.TimeoutError, ValueError) as exc:
            self.stats["publish_failed"] += 1  # refused, timed out, unreachable
            log.info("%s: publish to %s failed: %r", self.app.name, url, exc)
            if self._peers is not None:  # not our own stop(): nobody is there
                await self._forget(url)
            return
        if status == 200:
            self.stats["delivered_remote"] += json.loads(answer or b"{}").get("delivered", 0)
            return
        if status == 401 and self.internal.from_redis and not retried:
            self.stats["publish_refused"] += 1
            await self.shared_secret(fresh=True)  # the gateway may have restarted with a new secret
            await self._post(url, body, retried=True)
            return
        self.stats["publish_refused" if status == 401 else "publish_failed"] += 1
        log.info("%s: publish to %s failed: %s %s", self.app.name, url, status, answer[:200])

    async def _forget(self, url: str) -> None:
        """A gateway that does not answer: drop its announcement (a crashed process cannot)."""
        if self.configured:
            return  # configured by hand: keep trying it
        await self.app.redis.srem(self.key_gateways, url)
        self.stats["redis_commands"] += 1
        self._announced = [u for u in self._announced if u != url]
