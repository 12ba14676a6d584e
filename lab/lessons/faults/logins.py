"""Running ``n`` QR logins through a cluster with one fault injected at a fixed point: :func:`run_logins`.

Every login (create, channel, scan, confirm, wait, redeem) becomes one row of
:attr:`FaultRun.records`, counted the way the package docstring (:mod:`lab.lessons.faults`)
defines. The phone retries a step that met a dead, restarting or refusing server, as a phone
app would, so a login counted as lost was lost by the browser's push channel, not by the phone.
Lockstep runs hold every login at fixed points (:class:`_Lockstep`), so which logins the fault
hits, and with it every count, is the same on each run; free-running runs are the load
benchmark's.
"""
from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any, Callable

import pandas as pd
import tornado.httpclient
import tornado.iostream

from lab.lessons.faults.browser import Backoff, BrowserSession
from lab.lessons.faults.summary import summarize
from servers import runtime
from servers.clients.qr import AsyncBrowser, AsyncPhone, QRError, login_once_async


# What the browser must be told, in order ('pending' it knows from creating the ticket).
STATES_OF_A_LOGIN = {2: "scanned", 3: "confirmed"}
RETRYABLE = (429, 502, 503, 504, 599)  # refused for now, a dead or restarting server, or no answer: try again


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
                waiter = asyncio.ensure_future(half_done.wait())
                await asyncio.wait([waiter, asyncio.gather(*tasks)], return_when=asyncio.FIRST_COMPLETED)
                await runtime.cancel_and_wait([waiter])
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
    finally:  # normally all done already; after an error, none is left pending (and later destroyed)
        await runtime.cancel_and_wait([*tasks, probe, info.pop("pending", None)], 10)
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
