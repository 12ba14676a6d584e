"""Simulated browser and phone for the QR-login app: two different clients, as in the seed's story.

A balancer must see the browser and the phone as two clients, because they are: so each has its
own cookie jar and its own loopback source address (browser 127.0.0.2, phone 127.0.0.3 by
default; all of 127/8 is loopback on Linux). That is why ``ip_hash`` and cookie stickiness
cannot send the phone's confirm to the browser's server.

- :class:`AsyncBrowser` / :class:`AsyncPhone` - Tornado clients (``HTTPRequest(network_interface=...)``),
  cheap enough to run hundreds of logins at once.
- :class:`Browser` / :class:`Phone` - the same, blocking, for a notebook cell. ``Phone`` uses
  ``requests`` with a source-address adapter; ``Browser`` runs :class:`AsyncBrowser` on the
  shared server loop (``servers.runtime``), because its push channel must stay open between
  cells (a blocking wait never stalls the kernel's own loop).
- :func:`login_once` / :func:`login_once_async` - one whole login, step by step, with which server
  served each step and the confirm → browser latency; :func:`login_many` runs many at once.

Example (a cell)::

    browser, phone = Browser(url, "sse"), Phone(url)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)      # first message: the current state
    phone.login(); phone.scan(ticket); phone.confirm(ticket)
    channel.wait_for("confirmed", timeout=2)    # TimeoutError: the bug
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import weakref
from http.cookies import SimpleCookie
from typing import Any, Iterable

import requests
import tornado.httpclient
import tornado.iostream
import tornado.tcpclient
import tornado.websocket
from requests.adapters import HTTPAdapter

from servers import runtime
from servers.wire.sse import SSEParser

__all__ = ["QRError", "AsyncBrowser", "AsyncPhone", "Browser", "Phone", "Channel", "SyncChannel",
           "login_once", "login_once_async", "login_many", "login_many_async", "TRANSPORTS",
           "BROWSER_ADDRESS", "PHONE_ADDRESS"]

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


# ----------------------------------------------------------------------------------------------
# Async clients (Tornado).

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
        response = await _http_client().fetch(request, raise_error=False)
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


class AsyncPhone(_Client):
    """The phone: logs in for a bearer token, then scans and confirms. No cookies are sent."""

    agent = PHONE_AGENT

    def __init__(self, base_url: Any, source_address: str | None = PHONE_ADDRESS, user: str = "alice",
                 password: str = "alice") -> None:
        super().__init__(base_url, source_address)
        self.user, self.password = user, password
        self.token: str | None = None

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": self.agent, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    async def login(self) -> dict[str, Any]:
        body, served_by = await self.request("POST", "/api/phone/login", {"user": self.user, "password": self.password},
                                             what="phone login: ")
        self.token = body["token"]
        return {**body, "served_by": served_by}

    async def scan(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("POST", f"/api/tickets/{ticket}/scan", what="scan: ")
        return {**body, "served_by": served_by}

    async def confirm(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("POST", f"/api/tickets/{ticket}/confirm", what="confirm: ")
        return {**body, "served_by": served_by}


class AsyncBrowser(_Client):
    """The browser: creates a ticket (gets the binding cookie), watches it, redeems it.

    Sends ``Origin`` on its POSTs and WebSocket handshake, as a real browser does.
    """

    def __init__(self, base_url: Any, transport: str = "sse", source_address: str | None = BROWSER_ADDRESS,
                 poll_interval: float = 0.2, longpoll_timeout: float = 30.0) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        super().__init__(base_url, source_address)
        self.transport = transport
        self.poll_interval = poll_interval
        self.longpoll_timeout = longpoll_timeout

    async def create_ticket(self) -> dict[str, Any]:
        body, served_by = await self.request("POST", "/api/tickets", headers={"Origin": self.origin},
                                             what="create ticket: ")
        return {**body, "served_by": served_by}

    async def state(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("GET", f"/api/tickets/{ticket}", what="state: ")
        return {**body, "served_by": served_by}

    async def redeem(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("POST", f"/api/tickets/{ticket}/redeem", headers={"Origin": self.origin},
                                             what="redeem: ")
        return {**body, "served_by": served_by}

    async def whoami(self) -> dict[str, Any]:
        body, served_by = await self.request("GET", "/api/me", what="whoami: ")
        return {**body, "served_by": served_by}

    async def open_channel(self, ticket: str, timeout: float = 10.0) -> "Channel":
        """Open this browser's push channel for ``ticket``.

        SSE and WebSocket return once the first message (the current state) has arrived, so the
        channel is known to be registered on its server; poll reads the state once; long poll
        sends its first held request at once.
        """
        channel = {"poll": PollChannel, "longpoll": LongPollChannel, "sse": SSEChannel, "ws": WSChannel}[self.transport]
        opened = channel(self, ticket)
        await asyncio.wait_for(opened.open(), timeout)
        return opened


class Channel:
    """A browser's live view of one ticket: ``await next()``, ``await wait_for(states)``, ``close()``.

    ``events`` lists every event seen (each stamped ``received_at``); ``served_by`` is the server
    holding the channel (for poll and long poll: the one that answered last).
    """

    def __init__(self, browser: AsyncBrowser, ticket: str) -> None:
        self.browser = browser
        self.ticket = ticket
        self.events: list[dict[str, Any]] = []
        self.served_by: str | None = None
        self.version = 0
        self.state: str | None = None
        self.closed = False
        self._queue: asyncio.Queue = asyncio.Queue()

    async def open(self) -> None:  # pragma: no cover - per transport
        raise NotImplementedError

    def _got(self, event: dict[str, Any] | None) -> None:
        """A message arrived (None: the channel ended); keep only newer versions, in order."""
        if event is None:
            self._queue.put_nowait(None)
            return
        if int(event.get("version", 0)) <= self.version:
            return
        event = {**event, "received_at": time.time()}
        self.version, self.state = int(event["version"]), event["state"]
        self.events.append(event)
        self._queue.put_nowait(event)

    async def _produce(self) -> None:
        """Poll-style channels fetch on demand; streaming ones push into the queue by themselves."""
        await asyncio.Event().wait()

    async def next(self, timeout: float | None = 10.0) -> dict[str, Any]:
        """The next event; ``TimeoutError`` if none within ``timeout``; ``EOFError`` if the channel ended."""

        async def get() -> dict[str, Any]:
            while self._queue.empty() and not self.closed:
                producer = asyncio.ensure_future(self._produce())
                getter = asyncio.ensure_future(self._queue.get())
                try:
                    await asyncio.wait([producer, getter], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    producer.cancel()
                    if not getter.done():
                        getter.cancel()  # an item it was about to take stays in the queue
                if getter.done() and not getter.cancelled():
                    return self._checked(getter.result())
                if producer.done() and not producer.cancelled() and producer.exception() is not None:
                    raise producer.exception()  # e.g. a poll answered 404
            return self._checked(self._queue.get_nowait() if not self._queue.empty() else None)

        return await asyncio.wait_for(get(), timeout)

    def _checked(self, event: dict[str, Any] | None) -> dict[str, Any]:
        if event is None:
            self._queue.put_nowait(None)  # stay ended for later calls
            raise EOFError(f"the {self.browser.transport} channel for ticket {self.ticket} ended")
        return event

    async def wait_for(self, states: str | Iterable[str], timeout: float = 10.0) -> dict[str, Any]:
        """Read events until one whose state is in ``states`` (or a terminal one) arrives."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event["state"] in wanted:
                return event
        while True:
            event = await self.next(max(0.0, deadline - time.monotonic()))
            if event["state"] in wanted or event["state"] in TERMINAL:
                return event

    async def close(self) -> None:
        self.closed = True


class PollChannel(Channel):
    """Short polling: ``GET /api/tickets/{id}`` every ``poll_interval`` seconds (reads Redis)."""

    async def open(self) -> None:
        await self._poll_once()

    async def _poll_once(self) -> None:
        body, served_by = await self.browser.request("GET", f"/api/tickets/{self.ticket}", what="poll: ")
        self.served_by = served_by
        self._got(body)

    async def _produce(self) -> None:
        while True:
            await asyncio.sleep(self.browser.poll_interval)  # the technique itself: ask again later
            await self._poll_once()


class _RawGet:
    """One GET on its own TCP connection, which the client can drop at any moment (``close()``).

    Tornado's HTTP client cannot abort a request in flight; a browser closing a tab can. So the
    held requests (long poll, SSE) are sent by hand: the server sees the disconnect at once.
    """

    def __init__(self, browser: AsyncBrowser, path: str, headers: dict[str, str] | None = None) -> None:
        self.browser = browser
        self.parts = urllib.parse.urlsplit(browser.base_url)
        self.path = self.parts.path + path
        self.extra = headers or {}
        self.stream: tornado.iostream.IOStream | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.served_by: str | None = None

    async def start(self) -> None:
        """Connect, send the request, read the status line and headers."""
        host, port = self.parts.hostname, self.parts.port or 80
        self.stream = await tornado.tcpclient.TCPClient().connect(host, port, source_ip=self.browser.source_address)
        headers = self.browser.headers({"Host": self.parts.netloc, **self.extra})
        request = f"GET {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        await self.stream.write(request.encode("latin-1"))
        head = (await self.stream.read_until(b"\r\n\r\n", max_bytes=65536)).decode("latin-1")
        lines = head.split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        self.served_by = self.headers.get("x-served-by")

    async def chunks(self):
        """The body as it arrives (de-chunked); ends when the response or the connection ends."""
        assert self.stream is not None
        if "content-length" in self.headers:
            length = int(self.headers["content-length"])
            if length:
                yield await self.stream.read_bytes(length)
            return
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        try:
            while True:
                if chunked:
                    size = int((await self.stream.read_until(b"\r\n", max_bytes=100)).split(b";")[0], 16)
                    if size == 0:
                        return
                    yield (await self.stream.read_bytes(size + 2))[:-2]
                else:
                    yield await self.stream.read_bytes(65536, partial=True)
        except tornado.iostream.StreamClosedError:
            return

    async def json(self, what: str) -> dict[str, Any]:
        """The whole body as JSON, or :class:`QRError` for a 4xx/5xx."""
        body = b"".join([chunk async for chunk in self.chunks()])
        self.close()
        data = json.loads(body) if body else {}
        if self.status >= 400:
            raise QRError(self.status, data, self.served_by, what)
        return data

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


class LongPollChannel(Channel):
    """Long polling: a held ``GET .../longpoll?state=<known>&timeout=S``, re-sent after each answer."""

    def __init__(self, browser: AsyncBrowser, ticket: str) -> None:
        super().__init__(browser, ticket)
        self._held: asyncio.Future | None = None
        self._request: _RawGet | None = None

    async def open(self) -> None:
        self.state = "pending"
        self._hold()

    def _hold(self) -> None:
        self._held = asyncio.ensure_future(self._long_poll(self.state))
        self._held.add_done_callback(lambda f: f.cancelled() or f.exception())  # abandoned polls stay quiet

    async def _long_poll(self, known: str | None) -> tuple[dict[str, Any], str | None]:
        path = f"/api/tickets/{self.ticket}/longpoll?state={known}&timeout={self.browser.longpoll_timeout}"
        self._request = request = _RawGet(self.browser, path)
        try:
            await request.start()
            return await request.json("longpoll: "), request.served_by
        finally:
            request.close()

    async def _produce(self) -> None:
        while True:
            if self._held is None or self._held.cancelled():
                self._hold()
            body, served_by = await asyncio.shield(self._held)
            self.served_by = served_by
            self._got(body)
            self._hold()
            if not self._queue.empty():
                return

    async def close(self) -> None:
        await super().close()
        if self._request is not None:
            self._request.close()  # the server sees the browser leave
        if self._held is not None:
            self._held.cancel()
        self._held = None


class SSEChannel(Channel):
    """``GET .../events`` on its own connection, parsed by ``servers.wire.sse`` (closable at will)."""

    def __init__(self, browser: AsyncBrowser, ticket: str, last_event_id: int = 0) -> None:
        super().__init__(browser, ticket)
        self.last_event_id = last_event_id
        self._request: _RawGet | None = None
        self._reader: asyncio.Task | None = None
        self.status: int | None = None

    async def open(self) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = str(self.last_event_id)
        self._request = _RawGet(self.browser, f"/api/tickets/{self.ticket}/events", headers)
        await self._request.start()
        self.status, self.served_by = self._request.status, self._request.served_by
        if self.status == 204:  # nothing more will come for this ticket
            self._request.close()
            self._got(None)
            return
        if self.status != 200:
            await self._request.json("events: ")  # raises QRError with the server's reason
        self._reader = asyncio.ensure_future(self._read())
        await self.next(None)  # the first message: the current state

    async def _read(self) -> None:
        parser = SSEParser()
        try:
            async for data in self._request.chunks():
                for event in parser.feed(data):
                    self._got(json.loads(event.data))
        except ValueError:
            pass
        finally:
            self._got(None)

    async def close(self) -> None:
        await super().close()
        if self._request is not None:
            self._request.close()
        if self._reader is not None:
            self._reader.cancel()


class WSChannel(Channel):
    """``GET .../ws``: a WebSocket; ``close_code``/``close_reason`` say how it ended."""

    conn: tornado.websocket.WebSocketClientConnection | None = None

    async def open(self) -> None:
        parts = urllib.parse.urlsplit(self.browser.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        request = tornado.httpclient.HTTPRequest(
            f"{scheme}://{parts.netloc}{parts.path}/api/tickets/{self.ticket}/ws",
            headers=self.browser.headers({"Origin": self.browser.origin}), network_interface=self.browser.source_address,
            connect_timeout=10, request_timeout=10)
        try:
            self.conn = await tornado.websocket.websocket_connect(request, on_message_callback=self._on_message)
        except tornado.httpclient.HTTPClientError as exc:
            body = exc.response.body if exc.response is not None else b""
            served_by = exc.response.headers.get("X-Served-By") if exc.response is not None else None
            raise QRError(exc.code, json.loads(body or b"{}"), served_by, "ws: ") from None
        self.served_by = self.conn.headers.get("X-Served-By")
        await self.next(None)  # the first message: the current state (EOFError if closed at once)

    def _on_message(self, message: str | bytes | None) -> None:
        self._got(None if message is None else json.loads(message))

    async def send_after(self, version: int) -> None:
        await self.conn.write_message(json.dumps({"after": int(version)}))

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code if self.conn else None

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason if self.conn else None

    async def close(self) -> None:
        await super().close()
        if self.conn is not None:
            self.conn.close()


# ----------------------------------------------------------------------------------------------
# Blocking clients for notebook cells.


class SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections leave from ``source_address`` (e.g. 127.0.0.3)."""

    def __init__(self, source_address: str, **kwargs: Any) -> None:
        self.source_address = (source_address, 0)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = self.source_address
        super().init_poolmanager(*args, **kwargs)


class Phone:
    """The phone, blocking (``requests``): ``login()``, ``scan(ticket)``, ``confirm(ticket)``.

    Each returns the JSON answer plus ``served_by``; an error answer raises :class:`QRError`.
    """

    def __init__(self, base_url: Any, source_address: str | None = PHONE_ADDRESS, user: str = "alice",
                 password: str = "alice", timeout: float = 10.0) -> None:
        self.base_url = _base(base_url)
        self.user, self.password, self.timeout = user, password, timeout
        self.token: str | None = None
        self.session = requests.Session()
        self.session.headers["User-Agent"] = PHONE_AGENT
        if source_address:
            adapter = SourceAddressAdapter(source_address)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

    def _post(self, path: str, body: dict | None = None, what: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.session.post(self.base_url + path, json=body or {}, headers=headers, timeout=self.timeout)
        served_by = response.headers.get("X-Served-By")
        data = response.json()
        if response.status_code >= 400:
            raise QRError(response.status_code, data, served_by, what)
        return {**data, "served_by": served_by}

    def login(self) -> dict[str, Any]:
        answer = self._post("/api/phone/login", {"user": self.user, "password": self.password}, "phone login: ")
        self.token = answer["token"]
        return answer

    def scan(self, ticket: str) -> dict[str, Any]:
        return self._post(f"/api/tickets/{ticket}/scan", what="scan: ")

    def confirm(self, ticket: str) -> dict[str, Any]:
        return self._post(f"/api/tickets/{ticket}/confirm", what="confirm: ")

    def close(self) -> None:
        self.session.close()


class SyncChannel:
    """A :class:`Channel` driven from a cell (it lives on the server loop)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return runtime.run(self.channel.next(timeout), timeout=timeout + 5)

    def wait_for(self, states: str | Iterable[str], timeout: float = 10.0) -> dict[str, Any]:
        return runtime.run(self.channel.wait_for(states, timeout), timeout=timeout + 5)

    def close(self) -> None:
        runtime.run(self.channel.close())

    def __enter__(self) -> "SyncChannel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Browser:
    """The browser, blocking: ``create_ticket()``, ``open_channel(ticket)``, ``redeem(ticket)``, ``whoami()``."""

    def __init__(self, base_url: Any, transport: str = "sse", source_address: str | None = BROWSER_ADDRESS,
                 **options: Any) -> None:
        self.client = AsyncBrowser(base_url, transport, source_address, **options)

    @property
    def cookies(self) -> dict[str, str]:
        return self.client.cookies

    def create_ticket(self) -> dict[str, Any]:
        return runtime.run(self.client.create_ticket())

    def state(self, ticket: str) -> dict[str, Any]:
        return runtime.run(self.client.state(ticket))

    def open_channel(self, ticket: str, timeout: float = 10.0) -> SyncChannel:
        return SyncChannel(runtime.run(self.client.open_channel(ticket, timeout), timeout=timeout + 5))

    def redeem(self, ticket: str) -> dict[str, Any]:
        return runtime.run(self.client.redeem(ticket))

    def whoami(self) -> dict[str, Any]:
        return runtime.run(self.client.whoami())


# ----------------------------------------------------------------------------------------------
# Whole logins.


async def login_once_async(base_url: Any, transport: str = "sse", timeout: float = 5.0, *, user: str = "alice",
                           password: str = "alice", browser_address: str | None = BROWSER_ADDRESS,
                           phone_address: str | None = PHONE_ADDRESS, poll_interval: float = 0.2,
                           longpoll_timeout: float = 30.0, phone: AsyncPhone | None = None,
                           phone_url: Any = None) -> dict[str, Any]:
    """One login from QR to session, the way the seed's story goes. Never raises for a failed login.

    Returns ``ticket, transport, ok, error, latency_s`` (phone's confirm sent → browser saw
    ``confirmed``, on this process's monotonic clock) and ``served_by_<step>`` for create,
    channel, login, scan, confirm, redeem - where each step landed behind a balancer.
    ``timeout`` bounds the wait for ``confirmed`` on the browser's channel. ``phone_url`` sends
    the phone to another address than the browser (the seed's story without a balancer: browser
    on server A, phone on server B).
    """
    result: dict[str, Any] = {"transport": transport, "ticket": None, "ok": False, "error": None, "latency_s": None,
                              "started_at": time.time(), "served_by_create": None, "served_by_channel": None,
                              "served_by_login": None, "served_by_scan": None, "served_by_confirm": None,
                              "served_by_redeem": None}
    browser = AsyncBrowser(base_url, transport, browser_address, poll_interval=poll_interval,
                           longpoll_timeout=longpoll_timeout)
    phone = phone or AsyncPhone(phone_url or base_url, phone_address, user, password)
    channel: Channel | None = None
    step = "create"
    try:
        created = await browser.create_ticket()
        ticket = result["ticket"] = created["ticket"]
        result["served_by_create"] = created["served_by"]
        step = "channel"
        channel = await browser.open_channel(ticket, timeout=max(timeout, 5.0))
        result["served_by_channel"] = channel.served_by
        if phone.token is None:
            step = "login"
            result["served_by_login"] = (await phone.login())["served_by"]
        step = "scan"
        result["served_by_scan"] = (await phone.scan(ticket))["served_by"]
        step = "confirm"
        sent = time.monotonic()
        result["served_by_confirm"] = (await phone.confirm(ticket))["served_by"]
        step = "wait"
        try:
            seen = await channel.wait_for("confirmed", timeout)
        except asyncio.TimeoutError:
            result["error"] = f"the browser never saw 'confirmed' within {timeout} s (channel on {channel.served_by})"
            return result
        result["latency_s"] = time.monotonic() - sent
        result["served_by_channel"] = channel.served_by or result["served_by_channel"]
        if seen["state"] != "confirmed":
            result["error"] = f"the browser saw {seen['state']!r} instead of 'confirmed'"
            return result
        step = "redeem"
        redeemed = await browser.redeem(ticket)
        result["served_by_redeem"] = redeemed["served_by"]
        result["ok"] = redeemed.get("user") == user
        if not result["ok"]:
            result["error"] = f"redeemed as {redeemed.get('user')!r}, expected {user!r}"
    except QRError as exc:
        result["error"] = str(exc) if str(exc).startswith(step) else f"{step}: {exc}"
    except (asyncio.TimeoutError, EOFError, OSError, tornado.iostream.StreamClosedError) as exc:
        result["error"] = f"{step}: {type(exc).__name__}: {exc}"
    finally:
        if channel is not None:
            await channel.close()
    return result


def login_once(base_url: Any, transport: str = "sse", timeout: float = 5.0, **options: Any) -> dict[str, Any]:
    """:func:`login_once_async`, blocking (runs on the shared server loop); for a cell."""
    return runtime.run(login_once_async(base_url, transport, timeout, **options), timeout=timeout + 60)


async def login_many_async(base_url: Any, transport: str = "sse", n: int = 10, concurrency: int = 10,
                           timeout: float = 5.0, **options: Any) -> list[dict[str, Any]]:
    """``n`` logins, at most ``concurrency`` at a time; a list of :func:`login_once_async` results."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> dict[str, Any]:
        async with gate:
            return await login_once_async(base_url, transport, timeout, **options)

    return list(await asyncio.gather(*(one() for _ in range(n))))


def login_many(base_url: Any, transport: str = "sse", n: int = 10, concurrency: int = 10, timeout: float = 5.0,
               **options: Any) -> list[dict[str, Any]]:
    """:func:`login_many_async`, blocking; ``pandas.DataFrame(login_many(...))`` for a table."""
    budget = (n / max(1, concurrency) + 1) * (timeout + 30)
    return runtime.run(login_many_async(base_url, transport, n, concurrency, timeout, **options), timeout=budget)
