"""The QR-login app server (lessons 07-10): ``make_qrlogin_app`` and ``start_qrlogin``.

Where state lives - the heart of the lesson:

* **Shared, in Redis** (every server of a cluster sees it): tickets with their state and
  version, phone tokens, browser sessions. So server B can check and confirm a ticket the
  browser created on server A, exactly as in the seed's story.
* **Private, on each app object**: the push channels it holds (``app.push.channels``: ticket
  id → the open SSE streams, WebSockets and long polls of browsers connected to *this* server).

With ``fix="none"`` a change made on B is published only to B's channels, so a browser waiting
on A never hears of it: that, and nothing else, is the bug. A fix is handed to the app as a
:class:`~servers.qrlogin.push.Fix` (``make_qrlogin_app``/``start_qrlogin`` look a name up in
``servers.qrlogin.fixes.FIXES``), and the app takes its hub, ``app.push``, from it.

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
from pathlib import Path
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from servers.qrlogin import api, auth, transports, views
from servers.qrlogin.auth import Accounts
from servers.qrlogin.fixes import BUG, get_fix
from servers.qrlogin.push import Fix
from servers.qrlogin.tickets import TicketStore, TransitionRefused
from servers.limits import Limits, SharedBudgets
from servers.redisproc import redacted, shared_redis_url
from servers.runtime import ServerApp, ServerHandle, serve
from servers.settings import QRLOGIN_DEFAULTS, merge_settings

__all__ = ["QRLoginApp", "make_qrlogin_app", "start_qrlogin", "shared_redis_url", "DEFAULT_SETTINGS"]

PAGES = Path(__file__).parent / "pages"
_PREFIX_SHAPE = re.compile(r"^(/[A-Za-z0-9._~%!$&'()*+,;=:@-]+)*$")

#: Every tunable of a QR-login server (and of the gateway's push tier), with its default. Pass any
#: of them to start_qrlogin / make_qrlogin_app; handlers read ``self.settings[name]`` (the style of
#: every server: servers.settings). Fix options (``gateway_url``, ...) and the per-address limits
#: (servers.limits, ``trusted_proxies`` among them) are settings too.
DEFAULT_SETTINGS: dict[str, Any] = QRLOGIN_DEFAULTS


REDIS_POOL_SIZE = 100  # redis-py's default pool size; a URL's ?max_connections=N wins
REDIS_POOL_WAIT_S = 10.0  # how long a Redis call waits for a pooled connection before a 503


class QRLoginApp(ServerApp):
    """One QR-login server. Attributes: ``fix`` (its name), ``redis_url``, ``redis``, ``tickets``,
    ``accounts``, ``push`` (the hub: ``push.channels``, ``push.stats``), ``users``, ``public_url``.

    ``fix`` is a :class:`~servers.qrlogin.push.Fix`, which makes the hub; the app never looks a
    fix up by name (:func:`make_qrlogin_app` does), so no fix depends on this module."""

    def __init__(self, name: str = "qr", fix: Fix = BUG, redis_url: str | None = None,
                 public_url: str | None = None, users: dict[str, str] | None = None, ticket_ttl: float = 120,
                 *, ticket_grace: float = 300, namespace: str = "qr", allowed_origins: tuple[str, ...] = (),
                 **settings: Any) -> None:
        settings.setdefault("template_path", str(PAGES))
        settings = merge_settings(DEFAULT_SETTINGS, settings, owner=f"QR-login server {name!r}")
        super().__init__(api.routes() + transports.routes() + views.routes(), name=name, **settings)
        if not isinstance(fix, Fix):
            raise TypeError(f"fix must be a Fix (make_qrlogin_app and start_qrlogin take a name), not {fix!r}")
        self.fix = fix.name
        self.redis_url = redis_url or shared_redis_url()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.users = dict(users) if users is not None else dict(auth.DEFAULT_USERS)
        self.ticket_ttl = float(ticket_ttl)
        self.namespace = namespace
        self.allowed_origins = tuple(allowed_origins)
        # The client connects lazily on first use, on the loop that uses it (the server loop); it
        # retries a dropped connection, so the server carries on after Redis restarts. Its pool
        # has redis-py's default size (100, or the URL's ?max_connections=) but *waits* up to
        # REDIS_POOL_WAIT_S for a free connection where redis-py's default pool fails at once: a
        # burst of 1,000 concurrent requests then queues for a moment instead of getting 503s.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT_S, decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 5),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
        self.redis = redis.asyncio.Redis.from_pool(pool)  # closing the client closes its pool
        self.tickets = TicketStore(self.redis, ttl=self.ticket_ttl, grace=ticket_grace, namespace=namespace)
        self.accounts = Accounts(self.redis, self.users, namespace=namespace)
        self.push = fix.make_hub(self)
        self.limits = Limits(self.settings)  # per-address limits (servers.limits); a bad setting fails here
        self.budgets = SharedBudgets(self.redis, self.settings, namespace)  # cluster-wide, in Redis
        extra = self.push.routes()
        if extra:
            self.add_handlers(r".*", extra)

    def __repr__(self) -> str:
        return f"<QRLoginApp {self.name} fix={self.fix} redis={redacted(self.redis_url)}>"

    async def startup(self) -> None:
        try:
            await self.redis.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RuntimeError(f"QR-login server {self.name!r} cannot reach Redis at {self.redis_url}: {exc}") from None
        if not self.settings.get("cookie_secret"):
            # One secret for the whole cluster: the first server makes it, the others read it, so a
            # binding cookie signed by A is accepted by B.
            key = f"{self.namespace}:cookie_secret"
            await self.redis.set(key, auth.new_secret(), nx=True)
            self.settings["cookie_secret"] = await self.redis.get(key)
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
        return f"{auth.public_origin(request, self.limits.trusted)}{prefix}/m/{ticket_id}"

    async def publish_refusal(self, ticket_id: str, refused: TransitionRefused) -> None:
        """A refused change may still have expired the ticket: push that change."""
        if refused.expired_event is not None:
            await self.push.publish(ticket_id, refused.expired_event)


def make_qrlogin_app(name: str = "qr", fix: str | Fix = "none", redis_url: str | None = None,
                     public_url: str | None = None, users: dict[str, str] | None = None,
                     ticket_ttl: float = 120, **settings: Any) -> QRLoginApp:
    """A QR-login app, not yet listening (``serve(app)`` or a balancer test starts it).

    ``fix``: a name from ``servers.qrlogin.fixes.FIXES`` (a ValueError lists them) or a
    :class:`~servers.qrlogin.push.Fix` of your own, e.g. ``Fix("mine", MyHub)``."""
    return QRLoginApp(name, get_fix(fix), redis_url, public_url, users, ticket_ttl, **settings)


def start_qrlogin(name: str = "qr", fix: str | Fix = "none", redis_url: str | None = None, host: str = "127.0.0.1",
                  **settings: Any) -> ServerHandle:
    """Start a QR-login server on a free port (in the background server loop) and return its handle.

    ``start_qrlogin("A")`` and ``start_qrlogin("B")`` in one process share the embedded Redis:
    a two-server cluster (put a balancer in front with ``servers.start_balancer``).
    """
    return serve(make_qrlogin_app(name, fix, redis_url, **settings), host=host)
