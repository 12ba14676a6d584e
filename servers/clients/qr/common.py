"""What the QR-login clients share: the error type, the two source addresses, a cookie-keeping client.

Each simulated device leaves from its own loopback address (browser 127.0.0.2, phone 127.0.0.3)
so that a balancer sees two clients, as it would for a real browser and a real phone.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
import weakref
from http.cookies import SimpleCookie
from typing import Any

import tornado.httpclient

__all__ = ["QRError", "TRANSPORTS", "BROWSER_ADDRESS", "PHONE_ADDRESS", "BROWSER_AGENT", "PHONE_AGENT", "TERMINAL"]

TRANSPORTS = ("poll", "longpoll", "sse", "ws")
BROWSER_ADDRESS = "127.0.0.2"
PHONE_ADDRESS = "127.0.0.3"
BROWSER_AGENT = "ServerPushLab-Browser/1.0 (simulated)"
PHONE_AGENT = "ServerPushLab-Phone/1.0 (simulated)"
TERMINAL = ("redeemed", "expired")


class QRError(Exception):
    """A 4xx/5xx answer: ``status``, ``error`` (the code), ``detail``, ``served_by``."""

    def __init__(self, status: int, body: dict[str, Any], served_by: str | None, what: str = "") -> None:
        self.status = status
        self.error = body.get("error", "error")
        self.detail = body.get("detail", "")
        self.body = body
        self.served_by = served_by
        super().__init__(f"{what}{status} {self.error}: {self.detail} (served by {served_by})")


def _base(url: Any) -> str:
    return str(getattr(url, "url", url)).rstrip("/")



_http_clients: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _http_client() -> tornado.httpclient.AsyncHTTPClient:
    """One client per event loop with no low cap on parallel requests (Tornado's default is 10)."""
    loop = asyncio.get_running_loop()
    client = _http_clients.get(loop)
    if client is None:
        client = _http_clients[loop] = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=10000)
    return client


class _Client:
    """What the async browser and phone share: a base URL, a source address, a cookie jar."""

    agent = BROWSER_AGENT

    def __init__(self, base_url: Any, source_address: str | None) -> None:
        self.base_url = _base(base_url)
        parts = urllib.parse.urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.source_address = source_address
        self.cookies: dict[str, str] = {}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": self.agent}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def keep_cookies(self, headers) -> None:
        for raw in headers.get_list("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                      timeout: float = 30, what: str = "") -> tuple[dict[str, Any], str | None]:
        """JSON in, JSON out; returns ``(body, served_by)`` or raises :class:`QRError`."""
        request = tornado.httpclient.HTTPRequest(
            self.base_url + path, method=method, headers=self.headers(headers),
            body=None if method == "GET" else json.dumps(body if body is not None else {}),
            request_timeout=timeout, connect_timeout=min(timeout, 10), network_interface=self.source_address)
        fetch = _http_client().fetch(request, raise_error=False)
        try:
            # shielded: Tornado cannot abort a request, and a cancelled fetch future whose request
            # later fails is logged as "Exception after Future was cancelled" (a page closed
            # mid-poll, a login given up). The request runs to its end; its outcome is read here.
            response = await asyncio.shield(fetch)
        except asyncio.CancelledError:
            fetch.add_done_callback(_read_outcome)
            raise
        served_by = response.headers.get("X-Served-By") if response.headers else None
        if response.code == 599:
            raise QRError(599, {"error": "no_response", "detail": str(response.error)}, served_by, what)
        self.keep_cookies(response.headers)
        try:
            data = json.loads(response.body) if response.body else {}
        except ValueError:
            data = {"error": "not_json", "detail": response.body[:200].decode(errors="replace")}
        if response.code >= 400:
            raise QRError(response.code, data, served_by, what)
        return data, served_by


def _read_outcome(future: "asyncio.Future") -> None:
    """Retrieve a finished request's error nobody waits for any more (so nothing logs it)."""
    if not future.cancelled():
        future.exception()
