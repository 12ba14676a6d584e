"""The push tier of the ``gateway`` fix: one server that holds every browser push connection.

With the ``gateway`` fix the app servers (A, B, ...) hold no push connection at all. The
balancer sends the browsers' push routes - ``/api/tickets/{id}/events`` (SSE), ``/ws``
(WebSocket) and ``/longpoll`` - to this server, and everything else to the app servers. When B
changes a ticket it POSTs the event here (``/internal/publish``, with the servers' shared
secret), and the gateway hands it to the channels it holds::

    browser ══SSE/WS══▶ balancer ══▶ gateway                 (push routes)
    phone ─confirm─▶ balancer ─▶ B ── POST /internal/publish ──▶ gateway ──▶ browser

So the app tier is stateless again (any server can take any request; add or remove one at
will), and the connection-holding, long-lived, memory-hungry part is a tier of its own that
scales and restarts on its own schedule.

Who does it this way: Pushpin (a proxy that holds the connections while the backend stays
stateless; the backend publishes over HTTP or ZeroMQ), Centrifugo and Mercure (a separate hub
the app publishes to over an authenticated HTTP API), and the AWS API Gateway WebSocket API
(connections held by the gateway, the backend posts to ``@connections``).

What it reuses: the very handlers of the app servers (``servers.qrlogin.transports``), with a
local hub (``servers.qrlogin.push.PushHub``): all channels are here, so local delivery reaches
every one of them. It reads ticket state from the shared Redis, as every server does, to send
the current state when a channel opens and to answer long polls.

Delivery semantics: at most once per live event (an event POSTed while the browser is
reconnecting reaches no channel), but a reconnecting channel first gets the current state from
Redis, so the browser converges. Failure modes: the gateway down = no push at all (short polling
still works, it goes to the app servers); a gateway restart drops every connection at once (a
reconnect storm; lesson 09); a publish to a dead gateway fails fast and is counted by the app
server (``stats["publish_failed"]``).

How the app servers find it: the ``gateway_url`` setting, else ``QRLOGIN_GATEWAY_URL``
(comma-separated for several), else the Redis set ``<ns>:gateways`` where every gateway writes
its own URL at start (and refreshes it, so it comes back after a Redis restart). The shared
secret and its check are those of ``servers.qrlogin.internal``: the ``internal_secret`` setting,
else ``QRLOGIN_INTERNAL_SECRET``, else agreed through Redis (``<ns>:internal_secret``, first
writer wins, as the app servers do). Anyone who can read that Redis can read every ticket
anyway; in production, configure the secret.

The cluster starts this tier because the ``gateway`` fix's ``Fix`` (``servers.qrlogin.fixes``)
names :func:`start_push_tier` as its ``push_tier``.

From a cell: ``gw = start_gateway(redis_url=...)``; from a shell:
``python -m servers gateway --port 0 --redis URL`` prints ``{"url": ..., ...}`` when ready.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from servers.balancer.policies import PUSH_PATH
from servers.qrlogin.base import TICKET_ID
from servers.qrlogin.fixes.gateway import GATEWAY_ENV, gateways_key
from servers.qrlogin.internal import SECRET_ENV, SECRET_HEADER, InternalEventHandler, InternalSecret, secret_key
from servers.qrlogin.push import PushHub
from servers.qrlogin.tickets import TicketStore
from servers.qrlogin.transports import EventsHandler, LongPollHandler, TicketSocketHandler
from servers.process import ServerProcess
from servers.redisproc import redacted, shared_redis_url
from servers.runtime import ServerApp, ServerHandle, cancel_and_wait, serve
from servers.settings import QRLOGIN_DEFAULTS, merge_settings

__all__ = ["GatewayApp", "start_gateway", "gateway_process", "start_push_tier", "PUSH_ROUTE", "gateways_key",
           "secret_key", "SECRET_HEADER", "SECRET_ENV", "GATEWAY_ENV"]

log = logging.getLogger("servers.qrlogin.fixes.gateway_tier")
PUSH_ROUTE = PUSH_PATH  # the routes the balancer sends to the push tier (the rest: to the app servers)

#: Every tunable of the push tier, with its default (servers.settings): the app servers' own, since
#: it serves their push handlers, and how often it writes its URL into Redis again.
DEFAULT_SETTINGS: dict[str, Any] = {**QRLOGIN_DEFAULTS, "announce_every_s": 5.0}


class GatewayApp(ServerApp):
    """The push tier's server. Attributes the app's handlers use: ``redis``, ``tickets``, ``push``
    (a local :class:`PushHub`: ``push.channels``, ``push.stats``), ``namespace``, ``secret``."""

    def __init__(self, name: str = "gateway", redis_url: str | None = None, *, namespace: str = "qr",
                 internal_secret: str | None = None, internal_url: str | None = None,
                 public_url: str | None = None, allowed_origins: tuple[str, ...] = (), **settings: Any) -> None:
        settings = merge_settings(DEFAULT_SETTINGS, settings, owner=f"gateway {name!r}")
        super().__init__([
            (rf"/api/tickets/{TICKET_ID}/longpoll", LongPollHandler),
            (rf"/api/tickets/{TICKET_ID}/events", EventsHandler),
            (rf"/api/tickets/{TICKET_ID}/ws", TicketSocketHandler),
            (r"/internal/publish", PublishHandler),
        ], name=name, **settings)
        self.redis_url = redis_url or shared_redis_url()
        self.namespace = namespace
        self.public_url = public_url.rstrip("/") if public_url else None
        self.allowed_origins = tuple(allowed_origins)
        self.internal_url = internal_url
        self.internal = InternalSecret(internal_secret, namespace)
        self.redis = redis.asyncio.Redis.from_url(
            self.redis_url, decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 5),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        self.tickets = TicketStore(self.redis, namespace=namespace)  # reads only (and lazy expiry)
        self.push = PushHub(self)  # every channel is here: local delivery is complete delivery
        self.push.name = "gateway"
        self._announcer: asyncio.Task | None = None

    @property
    def secret(self) -> str:
        """The servers' shared secret (``""`` until agreed through Redis at start)."""
        return self.internal.value

    def __repr__(self) -> str:
        return f"<GatewayApp {self.name} {self.url} redis={redacted(self.redis_url)}>"

    @property
    def announced_url(self) -> str:
        return (self.internal_url or self.url).rstrip("/")

    async def startup(self) -> None:
        try:
            await self.redis.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeError(f"gateway {self.name!r} cannot reach Redis at {self.redis_url}: {exc}") from None
        await self.announce()
        self._announcer = asyncio.create_task(self._keep_announcing(), name=f"{self.name}:announce")

    async def announce(self) -> None:
        """Write this gateway's URL into Redis, and agree on the shared secret there (unless configured)."""
        await self.redis.sadd(gateways_key(self.namespace), self.announced_url)
        await self.internal.agree(self.redis)

    async def _keep_announcing(self) -> None:
        """Every few seconds: announce again, so a restarted Redis learns of this gateway anew."""
        while True:
            await asyncio.sleep(self.settings["announce_every_s"])
            try:
                await self.announce()
            except redis.exceptions.RedisError as exc:
                log.info("%s: announce failed (%r); trying again later", self.name, exc)

    async def shutdown(self) -> None:
        await cancel_and_wait([self._announcer])
        try:
            await asyncio.wait_for(self.redis.srem(gateways_key(self.namespace), self.announced_url), 1)
        except Exception:  # Redis gone: the app servers drop the stale URL when a publish fails
            pass
        await self.redis.aclose()


class PublishHandler(InternalEventHandler):
    """``POST /internal/publish`` (app server → gateway): deliver an event to the channels held here.

    401 unless ``X-Internal-Secret`` carries the shared secret; 400 for a malformed event.
    Answers ``{"delivered": n, "server": name}``.
    """

    callers = "Only the app servers may publish here"

    def internal_secret(self) -> InternalSecret:
        return self.application.internal  # type: ignore[attr-defined]


def make_gateway_app(name: str = "gateway", redis_url: str | None = None, **settings: Any) -> GatewayApp:
    return GatewayApp(name, redis_url, **settings)


def start_gateway(name: str = "gateway", redis_url: str | None = None, host: str = "127.0.0.1",
                  port: int = 0, **settings: Any) -> ServerHandle:
    """Start the push tier in-process (on the server loop), on a free port; returns its handle."""
    return serve(make_gateway_app(name, redis_url, **settings), host=host, port=port)


def gateway_process(name: str, redis_url: str, host: str = "127.0.0.1",
                    trusted_proxies: tuple[str, ...] = ()) -> ServerProcess:
    """The push tier as a child process (``python -m servers gateway``), what
    ``start_cluster(..., processes=True, fix="gateway")`` runs. The Redis URL (with its password)
    goes in the child's environment, not on its command line, which every local user can read."""
    return ServerProcess(["gateway", "--port", "0", "--host", host, "--name", name,
                          *[arg for proxy in trusted_proxies for arg in ("--trusted-proxy", proxy)]], name,
                         env={"REDIS_URL": redis_url})


def start_push_tier(redis_url: str, *, processes: bool = False, host: str = "127.0.0.1", name: str = "GW",
                    trusted_proxies: tuple[str, ...] = ()):
    """The push tier for a cluster: in-process (a ServerHandle) or a child process (a ServerProcess).

    ``trusted_proxies``: the balancer in front, so that per-address limits count browsers (servers.limits)."""
    if processes:
        return gateway_process(name, redis_url, host=host, trusted_proxies=trusted_proxies)
    return start_gateway(name, redis_url=redis_url, host=host, trusted_proxies=trusted_proxies)


# -- the command line: python -m servers gateway --port 0 [--redis URL] ---------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--name", default="gateway", help="server name, sent in X-Served-By")
    parser.add_argument("--redis", default=None, metavar="URL", help="the app servers' Redis (default: REDIS_URL "
                                                                      "or start one)")
    parser.add_argument("--namespace", default="qr", help="the app servers' Redis key prefix")
    parser.add_argument("--internal-url", default=None, metavar="URL",
                        help="the URL app servers publish to (default: the bound address)")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                        help="a balancer's address or network whose X-Forwarded-For is believed (repeatable)")


def main(args: argparse.Namespace) -> int:
    from servers import cli
    from servers.limits import trusted_proxy_list
    from servers.runtime import stop_all

    try:
        trusted = trusted_proxy_list(args.trusted_proxy)
    except ValueError as exc:
        raise SystemExit(f"--trusted-proxy: {exc}") from None

    def start() -> dict:
        handle = start_gateway(args.name, redis_url=args.redis, host=args.host, port=args.port,
                               namespace=args.namespace, internal_url=args.internal_url, trusted_proxies=trusted)
        return {"url": handle.url, "name": handle.name, "redis": handle.app.redis_url, "pid": os.getpid(),
                "publish": handle.url + "/internal/publish"}

    return cli.run_until_signal(start, stop_all)

