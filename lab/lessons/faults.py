"""Fault injection on a QR-login cluster: what each fix loses when something breaks mid-login.

Why a module of its own: lesson 09, ``tests/test_faults.py`` and ``benchmarks/load.py`` must run
the *same* scenario and count the *same* way, or "lost" would mean three things.

A scenario runs ``n`` whole logins through the cluster's balancer. Each browser holds a
:class:`BrowserSession`: its push channel (poll, long poll, SSE or WebSocket) plus what a real
page adds around it - it notices a dropped connection and reconnects after a back-off
(:class:`Backoff`), resuming where it left off (SSE ``Last-Event-ID``, the WebSocket's
``?after=v``, the long poll's ``state=``), and it records every state that reached it on the
wire, before de-duplication. The phone retries a step that hit a dead server (502/599), as an app
would. One fault is injected at a fixed point of the logins:

===================  =======================================================================
fault                what happens
===================  =======================================================================
``crash``            the server holding most browser channels dies (in-process: every
                     connection dropped at once; ``processes=True`` cluster: SIGKILL), then
                     the balancer's health check takes it out of rotation
``redis_restart``    Redis stops and starts again on the same port, from a snapshot
``redis_lost_data``  the same without the snapshot: every ticket in flight is gone
``backend_removed``  the balancer stops sending to one server (a deploy drain); the server
                     and the browser channels it holds stay up
``slow_consumer``    one browser's page takes nothing in for ``stall_s`` (a busy tab, a tunnel)
``storm``            every connection on every server dropped at once: all browsers reconnect
===================  =======================================================================

Counted per login (one row of :attr:`FaultRun.records`):

- ``completed`` - the browser saw ``confirmed`` and redeemed the ticket;
- ``lost`` - changes of the login (scanned, confirmed) that never reached the browser
  (a login that never completed has lost at least ``confirmed``);
- ``duplicated`` - states that reached it more than once (a reconnect without resume);
- ``dropped`` - its channel ended after the fault (it had to reconnect);
- ``late`` - completed, but more than ``deadline_s`` after the phone's confirm;
- ``reconnected_s`` - from the fault until this browser's channel was back (dropped ones only);
- ``recover_s`` (per run) - from the fault until a fresh login completes again.

Determinism: in the lockstep scenarios every browser holds its channel before the fault; the
phone acts after it; browsers whose channel dropped reconnect only once the phone is done ("the
phone acted within the reconnect delay"; polling transports simply ask again at once). So which logins are hit is known from where their
channels were, and the counts are the same on every run: ``streams`` with SSE or WebSocket
resumes from its log and loses nothing; ``pubsub`` (and every fix without a log) hands a
resuming browser only the current state, so a state published while it was away is lost.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import urllib.parse
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import tornado.httpclient
import tornado.iostream
import tornado.websocket

from servers import runtime
from servers.clients.qr import (AsyncBrowser, AsyncPhone, LongPollChannel, PollChannel, QRError, SSEChannel,
                                WSChannel, login_once_async)

__all__ = ["Backoff", "EVENTSOURCE_LIKE", "JITTERED", "BrowserSession", "FaultRun", "FAULTS", "run_logins",
           "crash_browser_server", "restart_redis", "stop_backend", "slow_consumer", "reconnect_storm",
           "fault_matrix", "summarize", "plot_heatmap", "requests_per_bin", "STATES_OF_A_LOGIN"]

# What the browser must be told, in order ('pending' it knows from creating the ticket).
STATES_OF_A_LOGIN = {2: "scanned", 3: "confirmed"}
RETRYABLE = (429, 502, 503, 504, 599)  # refused for now, a dead or restarting server, or no answer: try again


# ----------------------------------------------------------------------------------------------
# Reconnecting the way a page does.


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
        from servers.clients.qr import _RawGet

        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", "Last-Event-ID": str(self.last_event_id)}
        self._request = _RawGet(self.browser, f"/api/tickets/{self.ticket}/events", headers)
        await self._request.start()
        self.status, self.served_by = self._request.status, self._request.served_by
        if self.status == 204:
            self._request.close()
            self._got(None)
            return
        if self.status != 200:
            await self._request.json("events: ")
        self._reader = asyncio.ensure_future(self._read())


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
        return PollChannel(self.browser, self.ticket)

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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.channel is not None:
            await _quietly(self.channel.close())


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


async def _retrying(step: Callable[[], Any], give_up_s: float, counter: list[int]) -> Any:
    """Call ``step`` until it answers or a non-retryable error; a dead server's 502/599 is retried."""
    deadline = time.monotonic() + give_up_s
    while True:
        try:
            return await step()
        except QRError as exc:
            if exc.status not in RETRYABLE and exc.status < 500 or time.monotonic() > deadline:
                raise
        except (OSError, tornado.iostream.StreamClosedError, tornado.httpclient.HTTPClientError):
            if time.monotonic() > deadline:  # e.g. HTTPStreamClosedError: the server died mid-request
                raise
        counter[0] += 1
        await asyncio.sleep(0.05)


async def _phone_step(phone: AsyncPhone, step: str, ticket: str, give_up_s: float, counter: list[int]) -> Any:
    """A phone step, retried on a dead or slow server, as a phone app would.

    A retry answered 409 means the first attempt did go through (its answer was lost): done. A
    phone whose token Redis forgot (401) logs in again.
    """
    before = counter[0]
    try:
        return await _retrying(lambda: getattr(phone, step)(ticket), give_up_s, counter)
    except QRError as exc:
        if exc.status == 409 and counter[0] > before:
            return {"served_by": exc.served_by, "retried": True}
        if exc.status != 401:
            raise
        counter[0] += 1
        await _retrying(phone.login, give_up_s, counter)
        return await _retrying(lambda: getattr(phone, step)(ticket), give_up_s, counter)


# ----------------------------------------------------------------------------------------------
# Running logins with a fault in the middle.


@dataclasses.dataclass
class FaultRun:
    """The outcome of one scenario: ``records`` (a DataFrame, one row per login), ``info`` (what
    was done, to whom, when), ``requests`` (the balancer's routing log from the fault on)."""

    records: pd.DataFrame
    info: dict[str, Any]
    requests: pd.DataFrame | None = None

    def summary(self) -> pd.DataFrame:
        return summarize(self.records)


class _Lockstep:
    """Barriers shared by the logins of one lockstep scenario."""

    def __init__(self, n: int, scan_before_fault: bool, gate_reconnects: bool) -> None:
        self.n = n
        self.scan_before_fault = scan_before_fault
        self.ready = 0
        self.all_ready = asyncio.Event()
        self.go_confirm = asyncio.Event()
        self.phone_done = 0
        self.reconnect_gate = asyncio.Event() if gate_reconnects else None

    def arrived(self) -> None:
        self.ready += 1
        if self.ready >= self.n:
            self.all_ready.set()

    def phone_finished(self) -> None:
        self.phone_done += 1
        if self.phone_done >= self.n and self.reconnect_gate is not None:
            self.reconnect_gate.set()


async def _one_login(index: int, url: str, transport: str, phone: AsyncPhone, phone_ready: asyncio.Future,
                     sync: _Lockstep | None, backoff: Backoff, resume: bool, rng: random.Random, give_up_s: float,
                     deadline_s: float, sessions: list, poll_interval: float, think_s: float) -> dict[str, Any]:
    """One login (create, channel, scan, confirm, wait, redeem) as a record; never raises."""
    rec: dict[str, Any] = {"login": index, "transport": transport, "ticket": None, "channel_server": None,
                           "completed": False, "error": None, "failed_step": None, "confirm_latency_s": None,
                           "login_s": None, "phone_retries": 0}
    started = time.monotonic()
    browser = AsyncBrowser(url, transport, poll_interval=poll_interval, longpoll_timeout=30.0)
    retries = [0]
    session = None
    step = "create"
    flags = {"arrived": False, "finished": False}

    def arrive() -> None:
        if sync is not None and not flags["arrived"]:
            flags["arrived"] = True
            sync.arrived()

    def phone_done() -> None:
        if sync is not None and not flags["finished"]:
            flags["finished"] = True
            sync.phone_finished()

    try:
        created = await _retrying(browser.create_ticket, give_up_s, retries)
        ticket = rec["ticket"] = created["ticket"]
        step = "channel"
        # Push channels come back after a reconnect delay (the gate: once the phone is done);
        # polling transports simply ask again, at once.
        gate = sync.reconnect_gate if sync is not None and transport in ("sse", "ws") else None
        session = BrowserSession(browser, ticket, backoff, resume=resume, rng=rng, gate=gate,
                                 open_timeout=max(10.0, give_up_s))
        sessions.append(session)
        await session.start()
        rec["channel_server"] = session.served_by
        await phone_ready
        if sync is not None:
            if sync.scan_before_fault:
                step = "scan"
                await _phone_step(phone, "scan", ticket, give_up_s, retries)
                await session.wait_for("scanned", give_up_s)
            arrive()
            await sync.go_confirm.wait()
        if sync is None or not sync.scan_before_fault:
            step = "scan"
            await _phone_step(phone, "scan", ticket, give_up_s, retries)
            if think_s:
                await asyncio.sleep(think_s)  # the person reads the phone's page before confirming
        step = "confirm"
        confirmed_at = time.time()  # sent: the browser may hear of it before the phone has its answer
        await _phone_step(phone, "confirm", ticket, give_up_s, retries)
        phone_done()
        step = "wait"
        seen = await session.wait_for("confirmed", give_up_s)
        if seen is None:
            rec["error"] = f"the browser never saw 'confirmed' within {give_up_s} s"
            rec["failed_step"] = "wait"
        else:
            rec["confirm_latency_s"] = max(0.0, seen - confirmed_at)
            step = "redeem"
            redeemed = await _retrying(lambda: browser.redeem(ticket), give_up_s, retries)
            rec["completed"] = redeemed.get("user") == phone.user
    except (QRError, OSError, asyncio.TimeoutError, EOFError, tornado.iostream.StreamClosedError,
            tornado.httpclient.HTTPClientError, ValueError) as exc:
        rec["error"] = f"{step}: {type(exc).__name__}: {exc}"
        rec["failed_step"] = step
    finally:
        arrive()  # a login that failed early never holds the others up
        phone_done()
        if session is not None:
            await session.close()
    rec["login_s"] = time.monotonic() - started
    rec["phone_retries"] = retries[0]
    if session is not None:
        got = [v for v, _, _ in session.received]
        rec["lost"] = sum(1 for v in STATES_OF_A_LOGIN if v not in got)
        rec["missed"] = ",".join(s for v, s in STATES_OF_A_LOGIN.items() if v not in got)
        rec["duplicated"] = len(got) - len(set(got))
        rec["reconnects"] = max(0, len(session.connects) - 1)
        rec["stalled"] = session.stalled
        rec["_session"] = session
    else:
        rec.update(lost=len(STATES_OF_A_LOGIN), missed=",".join(STATES_OF_A_LOGIN.values()), duplicated=0,
                   reconnects=0, stalled=False)
    rec["late"] = bool(rec["completed"] and rec["confirm_latency_s"] is not None
                       and rec["confirm_latency_s"] > deadline_s)
    return rec


async def _recovery_time(url: str, transport: str, since: float, give_up_s: float) -> float | None:
    """Seconds from ``since`` (time.time()) until a fresh login through ``url`` completes."""
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        result = await login_once_async(url, transport, timeout=1.0)
        if result["ok"]:
            return time.time() - since
        await asyncio.sleep(0.02)
    return None


async def _run_async(cluster, n: int, transport: str, fault: Callable | None, *, lockstep: bool,
                     scan_before_fault: bool, gate_reconnects: bool, backoff: Backoff, resume: bool,
                     seed: int, give_up_s: float, deadline_s: float, concurrency: int, fault_after: int | None,
                     measure_recovery: bool, poll_interval: float, setup: Callable | None,
                     think_s: float) -> FaultRun:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    url = cluster.url
    phone = AsyncPhone(url)
    phone_ready = loop.create_future()
    sync = _Lockstep(n, scan_before_fault, gate_reconnects) if lockstep else None
    sessions: list[BrowserSession] = []
    gate = asyncio.Semaphore(max(1, concurrency))
    finished: list[dict] = []
    info: dict[str, Any] = {"fault": getattr(fault, "fault_name", "none"), "fix": cluster.fix, "transport": transport,
                            "logins": n, "servers": len(cluster.servers), "balancer": cluster.balancer.kind}
    half_done = asyncio.Event()

    async def login(i: int) -> dict[str, Any]:
        async with gate:
            rec = await _one_login(i, url, transport, phone, phone_ready, sync, backoff, resume, rng, give_up_s,
                                   deadline_s, sessions, poll_interval, think_s)
        finished.append(rec)
        if fault_after is not None and sum(r["completed"] for r in finished) >= fault_after:
            half_done.set()
        return rec

    tasks = [asyncio.ensure_future(login(i)) for i in range(n)]
    probe = None
    try:
        await _retrying(phone.login, give_up_s, [0])
        phone_ready.set_result(None)
        if setup is not None:
            await setup(sessions)
        if fault is not None:
            if sync is not None:
                await sync.all_ready.wait()
            elif fault_after is not None:  # free-running: once enough logins completed (or all ended)
                await asyncio.wait([asyncio.ensure_future(half_done.wait()), asyncio.gather(*tasks)],
                                   return_when=asyncio.FIRST_COMPLETED)
            injected_at = time.time()
            info.update(await fault(cluster, sessions) or {})
            info["fault_at"] = info.get("fault_started", injected_at)
            if measure_recovery:
                probe = asyncio.ensure_future(_recovery_time(url, transport, info["fault_at"], give_up_s * 3))
        if sync is not None:
            await sync.all_ready.wait()
            sync.go_confirm.set()
        records = await asyncio.gather(*tasks)
        if probe is not None:
            info["recover_s"] = await probe
        if "pending" in info:
            await info.pop("pending")
    finally:
        for task in [*tasks, *([probe] if probe is not None else [])]:
            task.cancel()
        if not phone_ready.done():
            phone_ready.cancel()
    fault_at = info.get("fault_at")
    for rec in records:
        session = rec.pop("_session", None)
        rec["dropped"] = bool(session and fault_at is not None and any(t >= fault_at for t in session.drops))
        back = [t for t, _ in (session.connects if session else []) if fault_at is not None and t >= fault_at]
        rec["reconnected_s"] = (back[0] - fault_at) if rec["dropped"] and back else None
        rec.update(fault=info["fault"], fix=cluster.fix, recover_s=info.get("recover_s"))
    return FaultRun(pd.DataFrame(records), info)


def run_logins(cluster, n: int = 4, transport: str = "sse", fault: Callable | None = None, *,
               lockstep: bool = True, scan_before_fault: bool = False, gate_reconnects: bool = True,
               backoff: Backoff = Backoff(), resume: bool = True, seed: int = 9, give_up_s: float = 3.0,
               deadline_s: float = 1.0, concurrency: int | None = None, fault_after: int | None = None,
               measure_recovery: bool = True, poll_interval: float = 0.1, setup: Callable | None = None,
               think_s: float = 0.0) -> FaultRun:
    """Run ``n`` logins through ``cluster`` with ``fault`` injected (blocking; runs on the server loop).

    Lockstep (the default): every browser opens its channel (and, with ``scan_before_fault``, has
    seen ``scanned``), then the fault, then the phone finishes each login; browsers whose channel
    dropped reconnect once the phone is done (``gate_reconnects``). Free-running
    (``lockstep=False``): logins run on their own, at most ``concurrency`` at a time, and the fault
    is injected once ``fault_after`` have completed (the load benchmark). ``fault`` is one of
    :data:`FAULTS`' values: ``async (cluster, sessions) -> info``. ``think_s``: the phone waits
    this long between scan and confirm (a person reading the page; longer than a polling
    interval, so polling can see ``scanned``). ``recover_s``: fresh logins are tried from the
    fault on, and the first that completes says when the service was back.
    """
    budget = give_up_s * 6 + n * 0.2 + 60
    return runtime.run(_run_async(cluster, n, transport, fault, lockstep=lockstep, scan_before_fault=scan_before_fault,
                                  gate_reconnects=gate_reconnects, backoff=backoff, resume=resume, seed=seed,
                                  give_up_s=give_up_s, deadline_s=deadline_s, concurrency=concurrency or n,
                                  fault_after=fault_after, measure_recovery=measure_recovery,
                                  poll_interval=poll_interval, setup=setup, think_s=think_s), timeout=budget)


# ----------------------------------------------------------------------------------------------
# The faults: async (cluster, sessions) -> info. Blocking parts run in a worker thread so the
# server loop (where the servers live) stays free meanwhile.


def _busiest(cluster, sessions: Sequence[BrowserSession]) -> str:
    """The server holding the most browser channels (ties: the first name)."""
    counts = {name: 0 for name in cluster.servers}
    for session in sessions:
        if session.served_by in counts:
            counts[session.served_by] += 1
    return max(counts, key=lambda name: (counts[name], -list(counts).index(name)))


async def _in_thread(fn: Callable, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def crash_fault(target: str | None = None) -> Callable:
    """The browser's server dies (in-process crash, or SIGKILL of a process); the balancer then
    takes it out of rotation, as its health check would."""

    async def crash(cluster, sessions):
        name = target or _busiest(cluster, sessions)
        server = cluster.servers[name]
        started = time.time()
        # An in-process crash drops every connection at once, then runs the app's shut-down hook
        # (which may take a while to cancel its Redis reads): do not let that delay the rest.
        finishing = asyncio.ensure_future(_in_thread(cluster.crash, name))
        while server.running and not finishing.done():
            await asyncio.sleep(0.001)
        await _in_thread(cluster.balancer.remove_backend, name)
        kind = "SIGKILL" if hasattr(cluster.servers[name], "pid") else "in-process crash"
        return {"target": name, "how": kind, "fault_started": started, "pending": finishing,
                "channels_on_target": sum(1 for s in sessions if s.served_by == name)}

    crash.fault_name = "crash"
    return crash


def redis_restart_fault(redis_handle, keep_data: bool = True) -> Callable:
    """Redis stops and starts again on the same port; ``keep_data``: it saved a snapshot first
    (``SAVE``; it reloads ``dump.rdb`` on start), else every ticket in flight is gone."""

    async def restart(cluster, sessions):
        started = time.time()

        def blocking() -> None:
            if keep_data:
                redis_handle.client().save()
            redis_handle.restart()

        await _in_thread(blocking)
        return {"target": "redis", "how": "restart with snapshot" if keep_data else "restart, data lost",
                "fault_started": started, "down_s": time.time() - started}

    restart.fault_name = "redis_restart" if keep_data else "redis_lost_data"
    return restart


def backend_removed_fault(target: str | None = None) -> Callable:
    """The balancer stops routing to one server (a drain); the server keeps its channels."""

    async def remove(cluster, sessions):
        name = target or _busiest(cluster, sessions)
        started = time.time()
        await _in_thread(cluster.balancer.remove_backend, name)
        return {"target": name, "how": "removed from the balancer", "fault_started": started,
                "channels_on_target": sum(1 for s in sessions if s.served_by == name)}

    remove.fault_name = "backend_removed"
    return remove


def slow_consumer_fault(count: int = 1, stall_s: float = 1.5) -> Callable:
    """``count`` browsers stop taking in messages for ``stall_s`` seconds."""

    async def stall(cluster, sessions):
        until = time.time() + stall_s
        for session in list(sessions)[:count]:
            session.stall_until = until
            session.stalled = True
        return {"target": f"{count} browser(s)", "how": f"stalled {stall_s} s", "fault_started": time.time()}

    stall.fault_name = "slow_consumer"
    return stall


def drop_all_fault() -> Callable:
    """Every connection on every server dropped at once (in-process servers keep listening)."""

    async def drop(cluster, sessions):
        started = time.time()
        dropped = 0
        for server in cluster.servers.values():
            if not hasattr(server, "drop_connections"):
                raise TypeError("the reconnect storm needs an in-process cluster (processes=False)")
            dropped += await _in_thread(server.drop_connections)
        return {"target": "every server", "how": "all connections dropped", "fault_started": started,
                "dropped_connections": dropped}

    drop.fault_name = "storm"
    return drop


def _redis_of(cluster, redis_handle):
    handle = redis_handle if redis_handle is not None else getattr(cluster, "_redis", None)
    if handle is None:
        raise ValueError("restart_redis needs the RedisHandle (redis_handle=...) when the cluster was given a redis_url")
    return handle


# ----------------------------------------------------------------------------------------------
# The scenarios as functions (each returns a FaultRun; .records is the per-login DataFrame).


def crash_browser_server(cluster, n: int = 4, transport: str = "sse", *, scan_before_fault: bool = False,
                         target: str | None = None, **options: Any) -> FaultRun:
    """The server holding most browser channels dies mid-login (before the scan, or with
    ``scan_before_fault`` between scan and confirm); the phone finishes; browsers reconnect."""
    return run_logins(cluster, n, transport, crash_fault(target), scan_before_fault=scan_before_fault, **options)


def restart_redis(cluster, n: int = 4, transport: str = "sse", *, keep_data: bool = True, redis_handle=None,
                  **options: Any) -> FaultRun:
    """Redis restarts mid-login (``keep_data``: from a snapshot; otherwise empty)."""
    return run_logins(cluster, n, transport, redis_restart_fault(_redis_of(cluster, redis_handle), keep_data), **options)


def stop_backend(cluster, n: int = 4, transport: str = "sse", *, target: str | None = None,
                 **options: Any) -> FaultRun:
    """The balancer stops sending to the server holding most channels; that server stays up."""
    return run_logins(cluster, n, transport, backend_removed_fault(target), **options)


def slow_consumer(cluster, n: int = 4, transport: str = "sse", *, count: int = 1, stall_s: float = 1.5,
                  **options: Any) -> FaultRun:
    """``count`` browsers are busy for ``stall_s`` while the phone confirms: late, not lost."""
    return run_logins(cluster, n, transport, slow_consumer_fault(count, stall_s), **options)


def reconnect_storm(cluster, n: int = 50, transport: str = "sse", *, backoff: Backoff = EVENTSOURCE_LIKE,
                    seed: int = 9, give_up_s: float = 15.0, **options: Any) -> FaultRun:
    """Every connection dropped at once while ``n`` browsers wait; they reconnect with ``backoff``.

    ``requests`` holds the balancer's routing log from the drop on; :func:`requests_per_bin` turns
    it into the load the servers saw. The phone confirms once every browser is back.
    """
    drop = drop_all_fault()
    back = {}

    async def fault(cluster_, sessions):
        info = await drop(cluster_, sessions)
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline:  # the phone waits for the storm to pass: all back
            if all(any(t >= info["fault_started"] for t, _ in s.connects) for s in sessions):
                break
            await asyncio.sleep(0.02)
        back["all_back_s"] = time.time() - info["fault_started"]
        return {**info, **back}

    fault.fault_name = "storm"
    run = run_logins(cluster, n, transport, fault, backoff=backoff, seed=seed, give_up_s=give_up_s,
                     gate_reconnects=False, measure_recovery=False, **options)
    if cluster.balancer.kind == "python":
        log = cluster.routing_log()
        since = pd.to_datetime(run.info["fault_started"], unit="s", utc=True)
        run.requests = log[log["time"] >= since].copy()
        run.requests["t_s"] = (run.requests["time"] - since).dt.total_seconds()
    run.info["backoff"] = "jittered" if backoff.jitter else "fixed"
    run.records["backoff"] = run.info["backoff"]
    return run


def requests_per_bin(requests: pd.DataFrame, bin_s: float = 0.1, until_s: float | None = None,
                     routes: Sequence[str] = ("/events", "/ws", "/longpoll")) -> pd.DataFrame:
    """The reconnects the servers received per ``bin_s`` after the fault: ``t_s`` (bin start,
    seconds after the drop), ``requests`` (count) and ``per_s`` (the same as a rate).

    Only the channel routes count (``routes``: SSE, WebSocket, long poll): the phone's calls are
    not part of the storm.
    """
    route = requests["route"].astype(str)
    frame = requests[route.str.endswith(tuple(routes))]
    end = until_s if until_s is not None else (float(frame["t_s"].max()) if len(frame) else 0.0)
    frame = frame[frame["t_s"] <= end]
    bins = int(end // bin_s) + 1
    counts = (frame["t_s"] // bin_s).astype(int).value_counts().reindex(range(bins), fill_value=0).sort_index()
    return pd.DataFrame({"t_s": counts.index * bin_s, "requests": counts.values, "per_s": counts.values / bin_s})


# ----------------------------------------------------------------------------------------------
# The matrix and its picture.


def summarize(records: pd.DataFrame, by: Sequence[str] = ("fault", "fix", "transport")) -> pd.DataFrame:
    """Per group: logins, completed, logins that lost a state, states lost, duplicated, late,
    dropped channels, median reconnect time and the run's recovery time."""
    by = [c for c in by if c in records.columns]
    grouped = records.groupby(by, sort=False)
    out = grouped.agg(logins=("login", "count"), completed=("completed", "sum"),
                      lost_logins=("lost", lambda s: int((s > 0).sum())), states_lost=("lost", "sum"),
                      duplicated=("duplicated", "sum"), late=("late", "sum"), dropped=("dropped", "sum"),
                      reconnected_s=("reconnected_s", "median"), recover_s=("recover_s", "max"))
    out["failed"] = out["logins"] - out["completed"]
    out["lost_pct"] = 100.0 * out["lost_logins"] / out["logins"]
    return out.reset_index()


FAULTS = {
    "crash": lambda cluster, redis_handle: crash_fault(),
    "redis_restart": lambda cluster, redis_handle: redis_restart_fault(_redis_of(cluster, redis_handle), True),
    "redis_lost_data": lambda cluster, redis_handle: redis_restart_fault(_redis_of(cluster, redis_handle), False),
    "backend_removed": lambda cluster, redis_handle: backend_removed_fault(),
    "slow_consumer": lambda cluster, redis_handle: slow_consumer_fault(),
}


def fault_matrix(faults: Iterable[str] = ("crash", "redis_restart", "backend_removed"),
                 fixes: Iterable[str] = ("ticket_hash", "pubsub", "store", "streams"),
                 transports: Iterable[str] = ("sse",), n: int = 4, servers: int = 2, balancer: str = "python",
                 processes: bool = False, give_up_s: float = 2.0, progress: bool = False,
                 **options: Any) -> pd.DataFrame:
    """Every fault × fix × transport on a fresh cluster (one shared Redis): the per-login records.

    ``summarize(records)`` gives the matrix; :func:`plot_heatmap` draws it.
    """
    from servers.cluster import start_cluster
    from servers.redisproc import start_redis

    combos = [(f, x, t) for f in faults for x in fixes for t in transports]
    frames = []
    redis = start_redis()
    try:
        for i, (fault_name, fix, transport) in enumerate(combos):
            if progress:
                print(f"\r{i + 1}/{len(combos)} {fault_name} × {fix} × {transport}    ", end="", flush=True)
            with start_cluster(servers, fix=fix, balancer=balancer, redis_url=redis.url, processes=processes,
                               name="faults") as cluster:
                fault = FAULTS[fault_name](cluster, redis)
                run = run_logins(cluster, n, transport, fault, give_up_s=give_up_s, **options)
            frames.append(run.records.assign(fault=fault_name, target=run.info.get("target")))
        if progress:
            print()
    finally:
        redis.stop()
    return pd.concat(frames, ignore_index=True)


def plot_heatmap(matrix: pd.DataFrame, value: str = "lost_pct", *, rows: str = "fault",
                 columns: Sequence[str] = ("fix", "transport"), label: str = "logins that lost a state (%)",
                 title: str | None = None, fmt: str = "{:.0f}", cmap: str = "Reds", vmin: float | None = 0,
                 vmax: float | None = None, ax=None):
    """A heat map of ``value`` with ``rows`` down and ``columns`` across, each cell written on.

    ``label`` names the colour scale and must carry its unit in parentheses (as every axis in
    ``lab.plots``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from lab.plots import STYLE, require_unit

    require_unit(label, "colour")
    columns = list(columns)
    table = matrix.pivot_table(index=rows, columns=columns, values=value, aggfunc="mean", sort=False)
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * table.shape[1]), max(2.5, 0.8 + 0.6 * table.shape[0])))
        data = table.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=vmin,
                          vmax=vmax if vmax is not None else max(1.0, np.nanmax(data) if data.size else 1.0))
        ax.set_xticks(range(table.shape[1]), [" · ".join(map(str, c)) if isinstance(c, tuple) else str(c)
                                              for c in table.columns], rotation=30, ha="right")
        ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
        ax.set_xlabel(" × ".join(columns) + " (setting)")
        ax.set_ylabel(f"{rows} (injected)")
        ax.grid(False)
        for (i, j), cell in np.ndenumerate(data):
            if not np.isnan(cell):
                ax.text(j, i, fmt.format(cell), ha="center", va="center", fontsize=9,
                        color="white" if cell > 0.6 * (image.get_clim()[1] or 1) else "black")
        bar = ax.figure.colorbar(image, ax=ax)
        bar.set_label(label)
        if title:
            ax.set_title(title)
        ax.figure.tight_layout()
    return ax
