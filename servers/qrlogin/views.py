"""The pages a person sees: the login page (browser), the confirm page (phone), the QR image.

Pages use relative URLs only, so they work at the server's root and under a path prefix
(jupyter-server-proxy's ``<base>/proxy/<port>/``); the WebSocket URL is built from ``location``.
"""
from __future__ import annotations

import time

from servers.qrlogin import auth
from servers.qrlogin.base import TICKET_ID, QRHandler
from servers.qrlogin.qr import qr_png
from servers.web import ApiError

TRANSPORTS = ("poll", "longpoll", "sse", "ws")


class HomeHandler(QRHandler):
    """``GET /``: to the login page (a relative redirect, so it works under a prefix too)."""

    def get(self) -> None:
        self.redirect("login?transport=sse")


class LoginPageHandler(QRHandler):
    """``GET /login?transport=poll|longpoll|sse|ws``: QR image, live state, ends logged in."""

    def get(self) -> None:
        transport = self.get_argument("transport", "sse")
        if transport not in TRANSPORTS:
            raise ApiError(400, "bad_transport", f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}.")
        interval = self.float_argument("interval", self.settings["poll_interval_s"], minimum=0.05, maximum=60)
        poll_ms = int(1000 * (interval or 1))
        longpoll_s = self.float_argument("timeout", 25.0, minimum=1, maximum=self.settings["longpoll_max_s"])
        self.set_header("Cache-Control", "no-store")
        self.render("login.html", transport=transport, transports=TRANSPORTS, server=self.qr.name,
                    poll_ms=poll_ms, longpoll_s=longpoll_s)


class PhonePageHandler(QRHandler):
    """``GET /m/{id}``: the phone's confirm page, showing which browser asked and when, and a
    warning when that browser's network is not this phone's (QRLJacking: the attacker's browser
    asked, somewhere else)."""

    async def get(self, ticket_id: str) -> None:
        ticket = await self.load_ticket(ticket_id)
        asked_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ticket.created_at))
        demo = self.qr.users == auth.DEFAULT_USERS
        # Both addresses by the one rule (client_ip): the browser's was recorded at ticket creation.
        phone_ip, browser_ip = self.client_ip(), ticket.fields.get("ip", "")
        self.set_header("Cache-Control", "no-store")
        self.render("phone.html", ticket=ticket, asked_at=asked_at, server=self.qr.name, phone_ip=phone_ip,
                    other_network=not auth.same_network(phone_ip, browser_ip),
                    default_user=next(iter(self.qr.users), ""), default_password="alice" if demo else "")


class QRImageHandler(QRHandler):
    """``GET /qr/{id}.png``: a PNG QR code of the ticket's ``scan_url`` (410 once expired)."""

    async def get(self, ticket_id: str) -> None:
        ticket = await self.load_ticket(ticket_id)
        if ticket.state == "expired":
            raise ApiError(410, "ticket_expired", f"Ticket {ticket_id!r} has expired; reload the login page.")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "no-store")
        self.finish(qr_png(ticket.fields["scan_url"]))


def routes() -> list[tuple]:
    return [
        (r"/", HomeHandler),
        (r"/login", LoginPageHandler),
        (rf"/m/{TICKET_ID}", PhonePageHandler),
        (rf"/qr/{TICKET_ID}\.png", QRImageHandler),
    ]
