"""The QR-login app server (lessons 07-10): ``make_qrlogin_app`` and ``start_qrlogin``.

Where state lives - the heart of the lesson:

* **Shared, in Redis** (every server of a cluster sees it): tickets with their state and
  version, phone tokens, browser sessions. So server B can check and confirm a ticket the
  browser created on server A, exactly as in the seed's story.
* **Private, on each app object**: the push channels it holds (``app.push.channels``: ticket
  id → the open SSE streams, WebSockets and long polls of browsers connected to *this* server).

With ``fix="none"`` a change made on B is published only to B's channels, so a browser waiting
on A never hears of it: that, and nothing else, is the bug. Fixes (``servers.qrlogin.fixes``)
replace ``app.push``.

Redis: ``redis_url`` if given, else ``REDIS_URL`` from the environment, else one
``redis-server`` started on a free loopback port the first time it is needed and shared by every
QR-login app of this process (so two apps started in one notebook form a cluster), stopped at
exit.

A real phone on the same network: start the server bound to the LAN (``host="0.0.0.0"``, or
``--host 0.0.0.0`` on the command line) and open the login page by the machine's LAN address
(``http://192.168.1.20:PORT/login``); the QR code encodes the phone page's URL built from the
address the browser used (its ``Host`` header, plus ``X-Forwarded-Prefix`` behind
jupyter-server-proxy), or from ``public_url`` when given, so the phone opens the same server.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from servers.qrlogin import api, auth, transports, views
from servers.qrlogin.auth import Accounts
from servers.qrlogin.fixes import make_push_hub
from servers.qrlogin.tickets import TicketStore, TransitionRefused
from servers.limits import Limits
from servers.runtime import ServerApp, ServerHandle, serve

__all__ = ["QRLoginApp", "make_qrlogin_app", "start_qrlogin", "shared_redis_url"]

PAGES = Path(__file__).parent / "pages"
_PREFIX_SHAPE = re.compile(r"^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*$")

_shared_lock = threading.Lock()
_shared_redis = None  # the process-wide embedded Redis (a resource like the server loop, not app state)


def shared_redis_url() -> str:
    """``REDIS_URL`` if set, else the URL of this process's embedded Redis (started on first use)."""
    global _shared_redis
    from servers.redisproc import redis_url_from_env, start_redis

    from_env = redis_url_from_env()
    if from_env:
        return from_env
    with _shared_lock:
        if _shared_redis is None or not _shared_redis.running:
            _shared_redis = start_redis()
        return _shared_redis.url


class QRLoginApp(ServerApp):
    """One QR-login server. Attributes: ``fix``, ``redis_url``, ``redis``, ``tickets``,
    ``accounts``, ``push`` (the hub: ``push.channels``, ``push.stats``), ``users``, ``public_url``."""

    def __init__(self, name: str = "qr", fix: str = "none", redis_url: str | None = None,
                 public_url: str | None = None, users: dict[str, str] | None = None, ticket_ttl: float = 120,
                 *, ticket_grace: float = 300, namespace: str = "qr", allowed_origins: tuple[str, ...] = (),
                 poll_interval_s: float = 0.5, longpoll_max: float = 300, sse_retry_ms: int = 1000,
                 heartbeat_s: float = 15, **settings: Any) -> None:
        settings.setdefault("template_path", str(PAGES))
        settings.setdefault("websocket_max_message_size", 64 * 1024)  # OWASP: small messages only
        settings.setdefault("websocket_ping_interval", 20)
        super().__init__(api.routes() + transports.routes() + views.routes(), name=name, **settings)
        self.fix = fix
        self.redis_url = redis_url or shared_redis_url()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.users = dict(users) if users is not None else dict(auth.DEFAULT_USERS)
        self.ticket_ttl = float(ticket_ttl)
        self.namespace = namespace
        self.allowed_origins = tuple(allowed_origins)
        self.poll_interval_s = poll_interval_s
        self.longpoll_max = float(longpoll_max)
        self.sse_retry_ms = int(sse_retry_ms)
        self.heartbeat_s = float(heartbeat_s)
        # The client connects lazily on first use, on the loop that uses it (the server loop); it
        # retries a dropped connection, so the server carries on after Redis restarts.
        self.redis = redis.asyncio.Redis.from_url(
            self.redis_url, decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 5),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        self.tickets = TicketStore(self.redis, ttl=self.ticket_ttl, grace=ticket_grace, namespace=namespace)
        self.accounts = Accounts(self.redis, self.users, namespace=namespace)
        self.push = make_push_hub(fix, self)
        self.limits = Limits(self.settings)  # per-address limits (servers.limits); a bad setting fails here
        extra = self.push.routes()
        if extra:
            self.add_handlers(r".*", extra)

    def __repr__(self) -> str:
        return f"<QRLoginApp {self.name} fix={self.fix} redis={self.redis_url}>"

    async def startup(self) -> None:
        try:
            await self.redis.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeError(f"QR-login server {self.name!r} cannot reach Redis at {self.redis_url}: {exc}") from None
        await self.push.start()

    async def shutdown(self) -> None:
        try:
            await self.push.stop()
        finally:
            await self.redis.aclose()

    # -- used by the handlers -----------------------------------------------------------------

    def scan_url(self, request, ticket_id: str) -> str:
        """The phone page's URL that the QR encodes: ``public_url`` or the request's own origin."""
        if self.public_url:
            return f"{self.public_url}/m/{ticket_id}"
        prefix = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
        if not _PREFIX_SHAPE.match(prefix):
            prefix = ""
        return f"{auth.public_origin(request)}{prefix}/m/{ticket_id}"

    async def expire_if_due(self, ticket_id: str) -> None:
        """Move a ticket past its expiry to ``expired`` and push that (timers of open channels)."""
        try:
            _, expired_event = await self.tickets.get(ticket_id)
        except redis.exceptions.RedisError:
            return  # the next read expires it
        if expired_event is not None:
            await self.push.publish(ticket_id, expired_event)

    async def publish_refusal(self, ticket_id: str, refused: TransitionRefused) -> None:
        """A refused change may still have expired the ticket: push that change."""
        if refused.expired_event is not None:
            await self.push.publish(ticket_id, refused.expired_event)


def make_qrlogin_app(name: str = "qr", fix: str = "none", redis_url: str | None = None,
                     public_url: str | None = None, users: dict[str, str] | None = None,
                     ticket_ttl: float = 120, **settings: Any) -> QRLoginApp:
    """A QR-login app, not yet listening (``serve(app)`` or a balancer test starts it)."""
    return QRLoginApp(name, fix, redis_url, public_url, users, ticket_ttl, **settings)


def start_qrlogin(name: str = "qr", fix: str = "none", redis_url: str | None = None, host: str = "127.0.0.1",
                  **settings: Any) -> ServerHandle:
    """Start a QR-login server on a free port (in the background server loop) and return its handle.

    ``start_qrlogin("A")`` and ``start_qrlogin("B")`` in one process share the embedded Redis:
    a two-server cluster (put a balancer in front with ``servers.start_balancer``).
    """
    return serve(make_qrlogin_app(name, fix, redis_url, **settings), host=host)
