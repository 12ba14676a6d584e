"""What every QR-login handler shares: loading a ticket, the Origin check, errors with distinct codes.

Each refusal has its own error code, so a learner (and a test) can tell "expired" from "not
scanned yet" from "wrong browser" without reading prose. The same function maps a refused
state change to its HTTP answer for scan, confirm and redeem.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Protocol

import redis.exceptions

from servers.limits import limits_for, refuse
from servers.qrlogin import auth
from servers.qrlogin.push import PushApp, PushHub
from servers.qrlogin.tickets import Ticket, TransitionRefused
from servers.web import ApiError, BaseHandler

if TYPE_CHECKING:  # pragma: no cover
    from servers.qrlogin.auth import Accounts

# A ticket id in a route: what new_ticket_id makes (URL-safe base64), bounded in length.
TICKET_ID = r"([A-Za-z0-9_-]{1,64})"


def unknown_ticket(ticket_id: str) -> ApiError:
    return ApiError(404, "unknown_ticket", f"No ticket {ticket_id!r} exists (never created, or long gone).")


def guessing_refused(budgets: Any, wait: float) -> ApiError:
    """429 for an address that asked for too many ticket ids that do not exist (a guesser)."""
    return ApiError(429, "too_many_unknown_tickets", f"This address asked for more than "
                    f"{budgets.budgets['unknown_tickets']} unknown ticket ids in {budgets.window_s:g} s on this site "
                    f"(all its servers); retry after {wait:.0f} s.", retry_after=max(1, math.ceil(wait)))


def expired_ticket(ticket_id: str) -> ApiError:
    return ApiError(410, "ticket_expired", f"Ticket {ticket_id!r} has expired; reload the login page for a new QR code.")


def refusal_error(exc: TransitionRefused, ticket_id: str, action: str) -> ApiError:
    """The HTTP answer to a refused state change (``action`` is scan, confirm or redeem)."""
    if exc.reason == "missing":
        return unknown_ticket(ticket_id)
    if exc.reason == "expired":
        return expired_ticket(ticket_id)
    if exc.reason == "binding":
        return ApiError(403, "binding_mismatch", "This browser did not create the ticket (its binding cookie differs); "
                                                  "only the browser that showed the QR code can redeem it.")
    if exc.reason == "user":
        return ApiError(403, "wrong_user", "Another phone user scanned this ticket; only that user can confirm it.")
    state = exc.ticket.state if exc.ticket else "unknown"
    if action == "redeem":
        if state == "redeemed":
            return ApiError(409, "already_redeemed", "This ticket was already redeemed; a ticket logs in once.", state=state)
        return ApiError(409, "not_confirmed", f"The ticket is {state}; the phone must confirm before the browser "
                                              "can redeem.", state=state)
    if state == "redeemed":
        return ApiError(409, "ticket_redeemed", "This ticket was already used to log in.", state=state)
    if action == "confirm" and state == "pending":
        return ApiError(409, "not_scanned", "Scan the ticket before confirming it.", state=state)
    if action == "scan":
        return ApiError(409, "already_scanned", f"The ticket is already {state}.", state=state)
    return ApiError(409, "bad_state", f"Cannot {action} a {state} ticket.", state=state)


class QRServer(PushApp, Protocol):
    """What the QR-login handlers use of the server they run in (``self.qr``).

    :class:`~servers.qrlogin.app.QRLoginApp` has all of it. The gateway's push tier serves only
    the push routes (``transports``), which use the :class:`~servers.qrlogin.push.PushApp` part,
    ``push``, ``public_url`` and ``allowed_origins``. Tunables are in ``settings``. A protocol
    rather than the app class, so the handlers do not import the app (which imports them).
    """

    push: PushHub
    public_url: str | None
    allowed_origins: tuple[str, ...]
    users: dict[str, str]
    accounts: Accounts

    def scan_url(self, request: Any, ticket_id: str) -> str: ...

    async def publish_refusal(self, ticket_id: str, refused: TransitionRefused) -> None: ...


class QRHandlerMixin:
    """Helpers for the HTTP and WebSocket handlers of a QR-login server (:class:`QRServer`)."""

    application: QRServer

    @property
    def qr(self) -> QRServer:
        return self.application

    @property
    def trusted_proxies(self) -> list:
        """The ``trusted_proxies`` setting, parsed: whose forwarding headers are believed."""
        return limits_for(self.qr).trusted

    def client_ip(self) -> str:
        """Who is asking, by the one rule (``servers.limits.client_address``): everything that
        records, shows or counts a client address in this app asks here."""
        return auth.client_address(self.request, self.trusted_proxies)

    async def within_budget(self, kind: str, code: str, what: str) -> bool:
        """Spend one of this address's cluster-wide ``kind`` budget (``servers.limits.SharedBudgets``);
        over it, answer 429 ``code`` with ``Retry-After`` and return False."""
        budgets = getattr(self.qr, "budgets", None)
        if budgets is None or not budgets.limited(kind):
            return True
        allowed, wait = await budgets.spend(kind, self.client_ip())
        if allowed:
            return True
        limits_for(self.qr).refused[code] += 1
        refuse(self, 429, code, f"This address has used its {budgets.budgets[kind]} {what} per "  # type: ignore[arg-type]
                                f"{budgets.window_s:g} s on this site (all its servers); retry after {wait:.0f} s.", wait)
        return False

    def origin_ok(self) -> bool:
        return auth.origin_allowed(self.request, self.qr.public_url, self.qr.allowed_origins)

    def socket_origin_refusal(self) -> str | None:
        """For WebSockets: a close reason when Origin is foreign, or missing while our cookies are sent."""
        return auth.socket_origin_refusal(self.request, self.qr.public_url, self.qr.allowed_origins)

    def require_same_site(self) -> None:
        """Refuse a cookie-authenticated request sent from another site's page (CSRF, QRLJacking)."""
        if not self.origin_ok():
            raise ApiError(403, "cross_site_origin", f"Origin {self.request.headers.get('Origin')!r} is not this "
                                                     "site; browser routes accept same-site requests only.")

    async def load_ticket(self, ticket_id: str) -> Ticket:
        """The ticket now, or a 404; expiring it here if it is due (and pushing that).

        An address that has spent its budget of unknown ids (``unknown_tickets_per_window``,
        cluster-wide) gets a 429 for *every* id, live or not, so its answers tell it nothing."""
        budgets = getattr(self.qr, "budgets", None)
        limited = budgets is not None and budgets.limited("unknown_tickets")
        if limited:
            allowed, wait = await budgets.spend("unknown_tickets", self.client_ip(), 0)  # look only
            if not allowed:
                raise guessing_refused(budgets, wait)
        ticket = await self.qr.push.read_ticket(ticket_id)
        if ticket is None:
            if limited:
                allowed, wait = await budgets.spend("unknown_tickets", self.client_ip())
                if not allowed:
                    raise guessing_refused(budgets, wait)
            raise unknown_ticket(ticket_id)
        return ticket

    def schedule_expiry(self, ticket: Ticket) -> asyncio.TimerHandle | None:
        """Wake up when the ticket expires, so the open channel hears ``expired`` on time."""
        if ticket.terminal:
            return None
        delay = max(0.0, ticket.expires_at - time.time()) + 0.05
        loop = asyncio.get_running_loop()
        return loop.call_later(delay, lambda: asyncio.ensure_future(self.qr.push.expire_if_due(ticket.id)))


def _store_down(exc: BaseException | None) -> bool:
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def _store_full(exc: BaseException | None) -> bool:
    """Redis at its ``maxmemory`` refuses writes (policy ``noeviction``: it never drops another
    user's ticket or session to make room)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "maxmemory" in str(exc))


class QRHandler(QRHandlerMixin, BaseHandler):
    """Base of the app's HTTP handlers: a Redis outage or a full Redis is a JSON 503, not a traceback."""

    def log_exception(self, typ, value, tb) -> None:
        if _store_down(value) or _store_full(value):
            logging.getLogger("servers.qrlogin").warning("%s %s: Redis %s: %s", self.request.method, self.request.path,
                                                         "full" if _store_full(value) else "unreachable", value)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if _store_down(exc):
            self.set_status(503)
            kwargs["exc_info"] = (ApiError, ApiError(503, "store_unavailable", "The shared store (Redis) is not "
                                                     "reachable right now; try again."), None)
        elif _store_full(exc):
            self.set_status(503)
            kwargs["exc_info"] = (ApiError, ApiError(503, "store_full", "The shared store (Redis) is full and takes "
                                                     "no new logins right now; try again later."), None)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError) and "retry_after" in exc.extra:
            self.set_header("Retry-After", str(exc.extra["retry_after"]))
        super().write_error(status_code, **kwargs)

    def binding_cookie(self) -> str | None:
        """The browser-binding cookie exactly as sent, if the server signed it; None if absent.

        A value the server never issued (made up, planted, tampered with) is refused with a 4xx
        (``bad_binding_cookie``), never adopted, and the browser is told to drop it."""
        raw = self.get_cookie(auth.BIND_COOKIE)
        if not raw:  # absent, or emptied (how a client without expiry handling keeps a cleared cookie)
            return None
        if self.get_signed_cookie(auth.BIND_COOKIE, max_age_days=auth.BIND_MAX_AGE_DAYS) is None:
            self.clear_cookie(auth.BIND_COOKIE, path="/")
            status = 403 if self.request.path.endswith("/redeem") else 400
            raise ApiError(status, "bad_binding_cookie", "The browser-binding cookie was not issued by this site "
                                                         "(unsigned, forged or altered); it has been cleared. Reload "
                                                         "the login page for a new QR code.")
        return raw
