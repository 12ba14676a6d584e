"""The ticket API: the browser creates and redeems, the phone logs in, scans and confirms.

Every state change is written to Redis first (atomically, ``tickets.py``) and then published
through ``app.push`` - the one place where, with no fix, the change fails to reach a browser
connected to another server.
"""
from __future__ import annotations

from servers.qrlogin import auth
from servers.qrlogin.base import TICKET_ID, QRHandler, refusal_error
from servers.qrlogin.tickets import TooManyTickets, TransitionRefused, fingerprint
from servers.limits import limits_for, rate_limited, refuse
from servers.web import ApiError


class CreateTicketHandler(QRHandler):
    """``POST /api/tickets`` → 201 ``{"ticket", "scan_url", "expires_at", ...}`` + binding cookie;
    429 ``too_many_tickets`` when the address holds ``max_tickets_per_address`` live ones."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    async def post(self) -> None:
        self.require_same_site()
        bind = self.binding_cookie()  # as the server signed it; a forged one is a 400, never adopted
        fresh = bind is None
        if fresh:  # a first ticket: a new value, signed with the cluster's cookie_secret
            bind = self.create_signed_value(auth.BIND_COOKIE, auth.new_secret()).decode()
        if not await self.within_budget("ticket_creations", "too_many_ticket_creations", "ticket creations"):
            return
        limits = limits_for(self.qr)
        try:
            ticket = await self.qr.tickets.create(
                bind_secret=bind, ip=self.client_ip(), ua=self.request.headers.get("User-Agent", ""),
                scan_url_for=lambda ticket_id: self.qr.scan_url(self.request, ticket_id), created_by=self.qr.name,
                max_per_address=limits.max_tickets)
        except TooManyTickets as exc:
            limits.refused["too_many_tickets"] += 1
            refuse(self, 429, "too_many_tickets", f"This address already holds {exc.limit} login tickets that have "
                                                  "not expired; use one of them, or wait.", exc.retry_after)
            return
        if fresh:
            self.set_cookie(auth.BIND_COOKIE, bind, **auth.cookie_options(self.request, self.trusted_proxies))
        self.write_json({"ticket": ticket.id, "scan_url": ticket.fields["scan_url"], "expires_at": ticket.expires_at,
                         "state": ticket.state, "version": ticket.version}, status=201)


class PhoneLoginHandler(QRHandler):
    """``POST /api/phone/login`` body ``{"user", "password"}`` → ``{"token"}``; 401 on a wrong password."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    async def post(self) -> None:
        body = self.json_body(required=("user", "password"))
        user, password = body["user"], body["password"]
        if not isinstance(user, str) or not isinstance(password, str):
            raise ApiError(400, "bad_field", "Both 'user' and 'password' must be strings.")
        # Password guessing: attempts per address per window, counted in Redis for the whole cluster.
        if not await self.within_budget("login_attempts", "too_many_login_attempts", "password attempts"):
            return
        if not auth.password_ok(self.qr.users, user, password):
            raise ApiError(401, "bad_credentials", "Unknown user or wrong password (the demo user is alice/alice).")
        token = await self.qr.accounts.issue_token(user)
        self.write_json({"token": token, "user": user, "expires_in": self.qr.accounts.token_ttl})


class PhoneHandler(QRHandler):
    """Base of the phone's ticket calls: ``Authorization: Bearer <token>`` names the user."""

    async def phone_user(self) -> str:
        token = auth.bearer_token(self.request.headers.get("Authorization"))
        if token is None:
            raise ApiError(401, "missing_token", "Send the phone's token as 'Authorization: Bearer <token>' "
                                                 "(POST /api/phone/login gives one).")
        user = await self.qr.accounts.user_for_token(token)
        if user is None:
            raise ApiError(401, "invalid_token", "The phone token is unknown or expired; log in again.")
        return user


class ScanHandler(PhoneHandler):
    """``POST /api/tickets/{id}/scan``: pending → scanned, remembering which user scanned."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    async def post(self, ticket_id: str) -> None:
        user = await self.phone_user()
        phone_ip = self.client_ip()
        try:
            ticket, changed = await self.qr.tickets.transition(
                ticket_id, ("pending", "scanned"), "scanned", check=None,
                set_fields={"user": user, "phone_ip": phone_ip})
        except TransitionRefused as exc:
            await self.qr.publish_refusal(ticket_id, exc)
            raise refusal_error(exc, ticket_id, "scan") from None
        if ticket.fields.get("user") != user:  # already scanned by someone else: not theirs to take
            raise ApiError(409, "already_scanned", "Another phone user already scanned this ticket.", state=ticket.state)
        if changed:
            await self.qr.push.publish(ticket_id, ticket.event())
        self.write_json({**ticket.event(), "user": user})


class ConfirmHandler(PhoneHandler):
    """``POST /api/tickets/{id}/confirm``: scanned → confirmed, only by the user who scanned."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    async def post(self, ticket_id: str) -> None:
        user = await self.phone_user()
        try:
            ticket, changed = await self.qr.tickets.transition(
                ticket_id, ("scanned", "confirmed"), "confirmed", check=("user", user))
        except TransitionRefused as exc:
            await self.qr.publish_refusal(ticket_id, exc)
            raise refusal_error(exc, ticket_id, "confirm") from None
        if changed:
            await self.qr.push.publish(ticket_id, ticket.event())
        self.write_json({**ticket.event(), "user": user})


class RedeemHandler(QRHandler):
    """``POST /api/tickets/{id}/redeem``: the binding browser turns a confirmed ticket into a session."""

    @rate_limited  # 429 + Retry-After over the address's API rate (servers.limits)
    async def post(self, ticket_id: str) -> None:
        self.require_same_site()
        bind = self.binding_cookie()  # None if absent; a cookie the server did not sign: 403
        if not bind:
            raise ApiError(403, "missing_binding", "No binding cookie: only the browser that created the ticket "
                                                   "(POST /api/tickets) can redeem it.")
        try:
            ticket, changed = await self.qr.tickets.transition(
                ticket_id, ("confirmed",), "redeemed", check=("bind", fingerprint(bind)))
        except TransitionRefused as exc:
            await self.qr.publish_refusal(ticket_id, exc)
            raise refusal_error(exc, ticket_id, "redeem") from None
        if not changed:  # defensive: the script never reports "same" for redeemed → redeemed
            raise ApiError(409, "already_redeemed", "This ticket was already redeemed; a ticket logs in once.")
        user = ticket.fields["user"]
        session = await self.qr.accounts.new_session(user, old_session=self.get_cookie(auth.SESSION_COOKIE))
        self.set_cookie(auth.SESSION_COOKIE, session, **auth.cookie_options(self.request, self.trusted_proxies))
        await self.qr.push.publish(ticket_id, ticket.event())
        self.write_json({**ticket.event(), "user": user})


class WhoAmIHandler(QRHandler):
    """``GET /api/me``: the session cookie's user, or 401 - how a test sees "logged in"."""

    async def get(self) -> None:
        self.require_same_site()
        user = await self.qr.accounts.user_for_session(self.get_cookie(auth.SESSION_COOKIE))
        if user is None:
            raise ApiError(401, "not_logged_in", "No valid session cookie; log in with the QR code first.")
        self.write_json({"user": user})


def routes() -> list[tuple]:
    return [
        (r"/api/tickets", CreateTicketHandler),
        (r"/api/phone/login", PhoneLoginHandler),
        (rf"/api/tickets/{TICKET_ID}/scan", ScanHandler),
        (rf"/api/tickets/{TICKET_ID}/confirm", ConfirmHandler),
        (rf"/api/tickets/{TICKET_ID}/redeem", RedeemHandler),
        (r"/api/me", WhoAmIHandler),
    ]
