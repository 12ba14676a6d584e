"""A simulated browser page that keeps its push channel: it notices a drop, waits, reconnects, resumes.

Lesson 09 counts what a login loses when something breaks, so the browser must behave like a
real page, not like a bare client that gives up at the first error. :class:`BrowserSession`
holds one ticket's channel (poll, long poll, SSE or WebSocket), reconnects after a
:class:`Backoff` delay, resumes where it left off (SSE ``Last-Event-ID``, the WebSocket's
``?after=v``, the long poll's ``state=``), and records every state that reached it on the wire,
before de-duplication: the raw material of the "lost" and "duplicated" counts.
:data:`EVENTSOURCE_LIKE` and :data:`JITTERED` are the two reconnect policies the reconnect
storm compares.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import urllib.parse

import tornado.httpclient
import tornado.websocket

from servers.clients.qr import AsyncBrowser, LongPollChannel, PollChannel, QRError, SSEChannel, WSChannel
from servers.runtime import cancel_and_wait


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Reconnect delays: ``initial_s * factor**attempt`` capped at ``cap_s``; ``jitter=True`` draws
    each delay uniformly from 0 to that value ("full jitter"), so clients dropped together do not
    come back together."""

    initial_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 2.0
    jitter: bool = True

    def delay(self, attempt: int, rng: random.Random) -> float:
        value = min(self.cap_s, self.initial_s * self.factor ** max(0, attempt))
        return rng.uniform(0.0, value) if self.jitter else value


# EventSource reconnects after the server's ``retry:`` (ours: 1000 ms), the same for every client.
EVENTSOURCE_LIKE = Backoff(initial_s=1.0, factor=1.0, cap_s=1.0, jitter=False)
# Our clients' WebSocket back-off: exponential with full jitter, the same 1 s mean for the first try.
JITTERED = Backoff(initial_s=2.0, factor=2.0, cap_s=8.0, jitter=True)


class _ResumingSSE(SSEChannel):
    """SSE that returns from ``open()`` once the headers are in when it resumes (nothing newer may
    exist yet, so there is no first message to wait for)."""

    async def open(self) -> None:
        if not self.last_event_id:
            await super().open()
            return
        from servers.clients.qr import RawGet

        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", "Last-Event-ID": str(self.last_event_id)}
        self._request = RawGet(self.browser, f"/api/tickets/{self.ticket}/events", headers)
        await self._request.start()
        self.status, self.served_by = self._request.status, self._request.served_by
        if self.status == 204:
            self._request.close()
            self._got(None)
            return
        if self.status != 200:
            await self._request.json("events: ")
        self._reader = asyncio.ensure_future(self._read())


class _Poll(PollChannel):
    """Short polling whose request in flight is never abandoned half-way.

    Closing a page cancels whatever its channel awaits. Tornado's HTTP client cannot abort a
    request: a cancelled one runs on, and if its connection then fails (the cluster is stopped,
    a server is killed) Tornado logs "Exception after Future was cancelled". So the poll is
    shielded: the page stops waiting for it at once, and it ends by itself, within its timeout,
    its outcome read and dropped."""

    async def _poll_once(self) -> None:
        request = asyncio.ensure_future(self.browser.request("GET", f"/api/tickets/{self.ticket}", what="poll: "))
        # Its outcome is read even when nobody waits any more (shield alone would not, on Python 3.11+).
        request.add_done_callback(lambda done: done.cancelled() or done.exception())
        body, served_by = await asyncio.shield(request)
        self.served_by = served_by
        self._got(body)


class _ResumingWS(WSChannel):
    """A WebSocket that reconnects with ``?after=v``: the server replays what is newer than v."""

    def __init__(self, browser: AsyncBrowser, ticket: str, after: int = 0) -> None:
        super().__init__(browser, ticket)
        self.after = after

    async def open(self) -> None:
        if not self.after:
            await super().open()
            return
        parts = urllib.parse.urlsplit(self.browser.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        request = tornado.httpclient.HTTPRequest(
            f"{scheme}://{parts.netloc}{parts.path}/api/tickets/{self.ticket}/ws?after={self.after}",
            headers=self.browser.headers({"Origin": self.browser.origin}),
            network_interface=self.browser.source_address, connect_timeout=10, request_timeout=10)
        try:
            self.conn = await tornado.websocket.websocket_connect(request, on_message_callback=self._on_message)
        except tornado.httpclient.HTTPClientError as exc:
            raise QRError(exc.code, {"error": "ws_refused", "detail": str(exc)}, None, "ws: ") from None
        self.served_by = self.conn.headers.get("X-Served-By")


class _ResumingLongPoll(LongPollChannel):
    """A long poll that resumes from the state it knew (``state=scanned``) instead of ``pending``."""

    def __init__(self, browser: AsyncBrowser, ticket: str, state: str | None, version: int) -> None:
        super().__init__(browser, ticket)
        self._known = (state, version)

    async def open(self) -> None:
        state, version = self._known
        self.state, self.version = (state or "pending"), version
        self._hold()


class BrowserSession:
    """One browser's view of one ticket across connections: reconnects, resumes, records.

    ``received`` lists ``(version, state, at)`` for every state that reached the page (before
    de-duplication; a short poll's repeated answers are reads, not deliveries, so only a newer
    version counts there, and a long poll's time-outs do not count). ``drops`` and ``connects``
    are the times the channel ended and (re)opened, with the server that took it.
    """

    def __init__(self, browser: AsyncBrowser, ticket: str, backoff: Backoff = Backoff(), *, resume: bool = True,
                 rng: random.Random | None = None, gate: asyncio.Event | None = None,
                 open_timeout: float = 10.0) -> None:
        self.browser = browser
        self.open_timeout = open_timeout
        self.ticket = ticket
        self.transport = browser.transport
        self.backoff = backoff
        self.resume = resume
        self.rng = rng or random.Random()
        self.gate = gate  # reconnect only once this is set (lockstep scenarios)
        self.received: list[tuple[int, str, float]] = []
        self.drops: list[float] = []
        self.connects: list[tuple[float, str | None]] = []
        self.failed_attempts = 0
        self.stall_until = 0.0  # a slow consumer: nothing is taken in before this time.time()
        self.stalled = False
        self.channel = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    # -- what arrived --------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return max((v for v, _, _ in self.received), default=0)

    @property
    def state(self) -> str | None:
        return max(self.received)[1] if self.received else None

    @property
    def served_by(self) -> str | None:
        return self.connects[-1][1] if self.connects else None

    def seen_at(self, state: str) -> float | None:
        return next((at for _, s, at in self.received if s == state), None)

    # -- the channel ---------------------------------------------------------------------------
    def _make_channel(self):
        version = self.version if self.resume else 0
        kind = self.transport
        if kind == "sse":
            return _ResumingSSE(self.browser, self.ticket, last_event_id=version)
        if kind == "ws":
            return _ResumingWS(self.browser, self.ticket, after=version)
        if kind == "longpoll":
            return _ResumingLongPoll(self.browser, self.ticket, self.state if version else None, version)
        return _Poll(self.browser, self.ticket)

    def _record(self, channel) -> None:
        keep = channel._got

        def got(event):
            if event is not None and not (self.transport == "longpoll" and event.get("timed_out")):
                if self.transport != "poll" or int(event.get("version", 0)) > channel.version:
                    self._take(int(event["version"]), str(event["state"]))
            keep(event)

        channel._got = got

    def _take(self, version: int, state: str) -> None:
        now = time.time()
        if now < self.stall_until:  # the page is busy: the message waits until it is free again
            asyncio.get_running_loop().call_later(self.stall_until - now, self._take, version, state)
            return
        self.received.append((version, state, now))
        self._changed.set()

    async def _open(self) -> None:
        channel = self._make_channel()
        self._record(channel)
        if self.transport == "poll" and self.resume:
            channel.version = self.version  # the page remembers what it showed
        await asyncio.wait_for(channel.open(), self.open_timeout)
        self.channel = channel
        self.connects.append((time.time(), channel.served_by))

    async def start(self) -> "BrowserSession":
        """Open the channel (the first message has arrived for SSE and WebSocket) and keep it open."""
        await self._open()
        self._task = asyncio.ensure_future(self._keep_open())
        return self

    async def _keep_open(self) -> None:
        attempt = 0
        while not self._closing:
            channel = self.channel
            try:
                while True:
                    await channel.next(None)
            except asyncio.CancelledError:
                raise
            except Exception:  # EOFError, a 502 from the balancer, a refused connection...
                pass
            if self._closing or self.state in ("redeemed", "expired"):
                return  # the channel ended as it should after a terminal state
            self.drops.append(time.time())
            await _quietly(channel.close())
            if self.gate is not None:
                await self.gate.wait()
            while not self._closing:
                await asyncio.sleep(self.backoff.delay(attempt, self.rng))
                attempt += 1
                try:
                    await self._open()
                    attempt = 0
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failed_attempts += 1

    async def wait_for(self, state: str, timeout: float) -> float | None:
        """When ``state`` reached the page (time.time()), or None if not within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.seen_at(state) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return None
        return self.seen_at(state)

    async def close(self) -> None:
        self._closing = True
        await cancel_and_wait([self._task])
        if self.channel is not None:
            await _quietly(self.channel.close())


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass
