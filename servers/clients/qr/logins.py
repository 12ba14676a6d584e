"""Whole logins, QR to session, with where each step landed and how long the browser waited."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import tornado.iostream

from servers import runtime
from servers.clients.qr.browser import AsyncBrowser, Channel
from servers.clients.qr.common import BROWSER_ADDRESS, PHONE_ADDRESS, QRError
from servers.clients.qr.phone import AsyncPhone

__all__ = ["login_once", "login_once_async", "login_many", "login_many_async"]


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
