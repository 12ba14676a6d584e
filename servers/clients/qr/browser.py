"""The simulated browser: creates a ticket, watches it over one of four push channels, redeems it.

- :class:`AsyncBrowser` and the channels (:class:`PollChannel`, :class:`LongPollChannel`,
  :class:`SSEChannel`, :class:`WSChannel`), all on Tornado, cheap enough for hundreds at once;
- :class:`Browser` and :class:`SyncChannel`, the same driven from a notebook cell (they run on the
  shared server loop, so a push channel stays open between cells).
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any, Iterable

import tornado.httpclient
import tornado.websocket

from servers import runtime
from servers.clients.qr.common import BROWSER_ADDRESS, TERMINAL, TRANSPORTS, QRError, _Client
from servers.clients.qr.raw import RawGet
from servers.wire.sse import SSEParser

__all__ = ["AsyncBrowser", "Channel", "PollChannel", "LongPollChannel", "SSEChannel", "WSChannel", "SyncChannel",
           "Browser"]


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
        try:
            await asyncio.wait_for(opened.open(), timeout)
        except BaseException:  # timed out, refused or cancelled half-way: leave no reader or socket behind
            await opened.close()
            raise
        return opened


class Channel:
    """A browser's live view of one ticket: ``await next()``, ``await wait_for(states)``, ``close()``.

    ``events`` lists every event seen (each stamped ``received_at``); ``served_by`` is the server
    holding the channel (for poll and long poll: the one that answered last).

    ``gaps`` lists the gap notices received: a resume the server could not honour (the
    ``streams`` fix's log no longer had what came after our version; its module docstring). The
    channel then does what the login page does: it does not trust what it showed, reloads the
    state (``GET /api/tickets/{id}``, ``reloads`` counts them) and goes on from the notice's ``first``.
    """

    def __init__(self, browser: AsyncBrowser, ticket: str) -> None:
        self.browser = browser
        self.ticket = ticket
        self.events: list[dict[str, Any]] = []
        self.served_by: str | None = None
        self.version = 0
        self.state: str | None = None
        self.closed = False
        self.gaps: list[dict[str, Any]] = []
        self.reloads = 0
        self._reload: asyncio.Task | None = None
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

    def _gap(self, notice: dict[str, Any]) -> None:
        """A gap notice arrived: move to just before ``first`` and reload the state."""
        self.gaps.append({**notice, "received_at": time.time()})
        first = int(notice["first"]) - 1
        self.version = first if notice.get("reset") else max(self.version, first)
        if self._reload is None or self._reload.done():
            self._reload = asyncio.ensure_future(self._reload_state())
            self._reload.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failed reload stays quiet

    async def _reload_state(self) -> None:
        body = await self.browser.state(self.ticket)
        self.reloads += 1
        if not self.closed:
            self._got({k: v for k, v in body.items() if k != "served_by"})

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
        if self._reload is not None:
            self._reload.cancel()


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


class LongPollChannel(Channel):
    """Long polling: a held ``GET .../longpoll?state=<known>&timeout=S``, re-sent after each answer."""

    def __init__(self, browser: AsyncBrowser, ticket: str) -> None:
        super().__init__(browser, ticket)
        self._held: asyncio.Future | None = None
        self._request: RawGet | None = None

    async def open(self) -> None:
        self.state = "pending"
        self._hold()

    def _hold(self) -> None:
        self._held = asyncio.ensure_future(self._long_poll(self.state))
        self._held.add_done_callback(lambda f: f.cancelled() or f.exception())  # abandoned polls stay quiet

    async def _long_poll(self, known: str | None) -> tuple[dict[str, Any], str | None]:
        path = f"/api/tickets/{self.ticket}/longpoll?state={known}&timeout={self.browser.longpoll_timeout}"
        self._request = request = RawGet(self.browser, path)
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
        self._request: RawGet | None = None
        self._reader: asyncio.Task | None = None
        self.status: int | None = None

    async def open(self) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = str(self.last_event_id)
        self._request = RawGet(self.browser, f"/api/tickets/{self.ticket}/events", headers)
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
                    if event.event == "gap":  # the named SSE event's data has no "type"
                        self._gap({"type": "gap", **json.loads(event.data)})
                    else:
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
        event = None if message is None else json.loads(message)
        if isinstance(event, dict) and event.get("type") == "gap":
            self._gap(event)
        else:
            self._got(event)

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
