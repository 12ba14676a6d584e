"""QR logins as people make them: one user, many users arriving at random, and logins in a row.

Why not ``login_many`` in a loop: see :mod:`lab.lessons.qr_bug`; in short, only random arrivals
and think times give a round-robin balancer the random gaps real traffic gives it.
:func:`traffic` plans who arrives when with a seeded generator, runs every user at once and
returns one row per login with where each step went; :func:`isolated_logins` is the test-bench
pattern that hides the bug. A long poll's channel is re-sent after every answer, so the server
that *held* it when the confirm came is read from the balancer's routing log
(:func:`_fill_held_channels`).
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Mapping, Sequence

import pandas as pd

from lab.lessons.qr_bug.addresses import user_addresses
from servers import runtime
from servers.clients.qr import BROWSER_ADDRESS, PHONE_ADDRESS, TRANSPORTS, AsyncBrowser, AsyncPhone, QRError
from servers.runtime import cancel_and_wait


# The routes a browser's push channel uses, per transport (as the routing log names them).
CHANNEL_ROUTES = {"poll": "/api/tickets/{id}", "longpoll": "/api/tickets/{id}/longpoll",
                  "sse": "/api/tickets/{id}/events", "ws": "/api/tickets/{id}/ws"}
COLUMNS = ["transport", "ticket", "ok", "latency_s", "error", "channel_on", "confirm_on", "served_by_create",
           "served_by_scan", "served_by_redeem", "started_at"]


async def user_login_async(url: str, transport: str = "sse", *, wait_s: float = 1.0,
                           scan_think_s: float = 0.0, confirm_think_s: float = 0.0,
                           poll_interval: float = 0.2, longpoll_timeout: float = 30.0,
                           browser_address: str = BROWSER_ADDRESS, phone_address: str = PHONE_ADDRESS,
                           user: str = "alice", password: str = "alice") -> dict[str, Any]:
    """One login as a person makes it; never raises for a failed login.

    The browser creates the ticket and opens its channel; ``scan_think_s`` later the phone logs
    in and scans; ``confirm_think_s`` later it confirms; the browser then has ``wait_s`` seconds
    to hear ``confirmed`` on its channel (else ``ok`` is False: the bug), and redeems.
    ``latency_s``: confirm sent → the browser's channel received ``confirmed`` (wall clock).
    ``channel_on`` is the server the channel last came from (for long polling, the server that
    answered the last poll; :func:`traffic` fills in the held one from the routing log).
    """
    row: dict[str, Any] = {"transport": transport, "ticket": None, "ok": False, "latency_s": None, "error": None,
                           "channel_on": None, "confirm_on": None, "served_by_create": None,
                           "served_by_scan": None, "served_by_redeem": None, "started_at": time.time()}
    browser = AsyncBrowser(url, transport, browser_address, poll_interval=poll_interval,
                           longpoll_timeout=longpoll_timeout)
    phone = AsyncPhone(url, phone_address, user, password)
    channel = listening = None
    step = "create"
    try:
        created = await browser.create_ticket()
        ticket = row["ticket"] = created["ticket"]
        row["served_by_create"] = created["served_by"]
        step = "channel"
        channel = await browser.open_channel(ticket)
        row["channel_on"] = channel.served_by
        # The page listens from now on, as a real one does (a long poll is re-sent at once after
        # each answer, a short poll keeps polling), not only once the phone has confirmed.
        listening = asyncio.ensure_future(channel.wait_for("confirmed", 3600))
        await asyncio.sleep(scan_think_s)  # the person picks up the phone and points it at the QR code
        step = "scan"
        await phone.login()
        row["served_by_scan"] = (await phone.scan(ticket))["served_by"]
        await asyncio.sleep(confirm_think_s)  # reads "log in on this browser?" and taps yes
        step = "confirm"
        sent = time.time()
        row["confirm_on"] = (await phone.confirm(ticket))["served_by"]
        step = "wait"
        try:
            seen = await asyncio.wait_for(asyncio.shield(listening), max(0.0, sent + wait_s - time.time()))
        except asyncio.TimeoutError:
            row["error"] = f"the browser did not hear 'confirmed' within {wait_s} s"
            return row
        row["latency_s"] = max(0.0, seen["received_at"] - sent)
        row["channel_on"] = channel.served_by or row["channel_on"]
        if seen["state"] != "confirmed":
            row["error"] = f"the browser saw {seen['state']!r} instead of 'confirmed'"
            return row
        step = "redeem"
        redeemed = await browser.redeem(ticket)
        row["served_by_redeem"] = redeemed["served_by"]
        row["ok"] = redeemed.get("user") == user
        if not row["ok"]:
            row["error"] = f"redeemed as {redeemed.get('user')!r}, expected {user!r}"
    except (QRError, asyncio.TimeoutError, EOFError, OSError) as exc:
        row["error"] = f"{step}: {type(exc).__name__}: {exc}"
    finally:
        await cancel_and_wait([listening])
        if channel is not None:
            await channel.close()
    return row


async def traffic_async(url: str, transport: str | Sequence[str] = "sse", logins: int = 30, *,
                        arrivals_per_s: float = 20.0,
                        think_s: float = 0.2, wait_s: float | Mapping[str, float] = 1.0,
                        seed: int | None = None, **options: Any) -> list[dict[str, Any]]:
    """``logins`` users arriving at random (exponential gaps, ``arrivals_per_s`` on average), each
    waiting a random ``0..think_s`` seconds before the scan and again before the confirm.

    ``transport`` may be a list: the users then take its transports in turn (user i gets
    ``transport[i % len(transport)]``), so one run measures several transports under the same
    traffic, and the slowest part of a run - the last users' wait for a confirm that never
    comes - is paid once.

    The randomness is what real traffic gives a round-robin balancer: a random number of other
    users' requests between this user's channel and its confirm. Each user has its own browser
    and phone addresses (:func:`user_addresses`) unless ``browser_address``/``phone_address`` are
    given, so ``ip_hash`` sees many clients, as it would in real life. ``wait_s`` may be a mapping
    from transport to seconds (a polling page hears of the confirm only on its next poll).
    """
    transports = [transport] if isinstance(transport, str) else list(transport)
    unknown = [t for t in transports if t not in TRANSPORTS]
    if unknown or not transports:
        raise ValueError(f"transports must be among {TRANSPORTS}, got {transports}")
    for name in transports:
        _patience(wait_s, name)  # a mapping without this transport: fail now, not in the middle of a run
    plan = _plan(transports, logins, arrivals_per_s, think_s, seed)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(transport: str, addresses: tuple[str, str], arrive: float, scan_think: float,
                  confirm_think: float) -> dict[str, Any]:
        addresses = {"browser_address": addresses[0], "phone_address": addresses[1], **options}
        await asyncio.sleep(max(0.0, start + arrive - loop.time()))
        return await user_login_async(url, transport, wait_s=_patience(wait_s, transport), scan_think_s=scan_think,
                                      confirm_think_s=confirm_think, **addresses)

    return list(await asyncio.gather(*(one(*p) for p in plan)))


def _plan(transports: Sequence[str], logins: int, arrivals_per_s: float, think_s: float,
          seed: int | None) -> list[tuple[str, tuple[str, str], float, float, float]]:
    """Who arrives when: per user ``(transport, addresses, arrival_s, scan_think_s, confirm_think_s)``."""
    rng = random.Random(seed)
    plan = []
    at = 0.0
    for i in range(logins):
        plan.append((transports[i % len(transports)], user_addresses(rng), at, rng.uniform(0, think_s),
                     rng.uniform(0, think_s)))
        at += rng.expovariate(arrivals_per_s)
    return plan


def _patience(wait_s: float | Mapping[str, float], transport: str) -> float:
    """How long a browser using ``transport`` waits for ``confirmed`` (seconds)."""
    if isinstance(wait_s, Mapping):
        if transport not in wait_s:
            raise KeyError(f"wait_s has no entry for {transport!r}: give one per transport, "
                           f"e.g. {{'{transport}': 1.0}}")
        return float(wait_s[transport])
    return float(wait_s)


def _held_channels(log: pd.DataFrame, transport: str) -> dict[str, str]:
    """Per ticket, the server of the browser's last channel request decided before the confirm."""
    route = CHANNEL_ROUTES[transport]
    held: dict[str, str] = {}
    if log.empty:
        return held
    for ticket, rows in log.dropna(subset=["ticket"]).groupby("ticket"):
        confirms = rows[rows["route"] == "/api/tickets/{id}/confirm"]
        if confirms.empty:
            continue
        channel = rows[(rows["route"] == route) & (rows["time"] <= confirms["time"].iloc[0])]
        if not channel.empty:
            held[ticket] = channel.sort_values("time")["backend"].iloc[-1]
    return held


def _frame(rows: list[dict[str, Any]], cluster: Any, **labels: Any) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if cluster is not None:
        frame.insert(0, "n_servers", len(cluster.servers))
        frame.insert(1, "policy", cluster.policy)
        frame.insert(2, "balancer", cluster.balancer.kind)
    for key, value in labels.items():
        frame[key] = value
    frame["ok"] = frame["ok"].astype(bool)
    return frame


def _fill_held_channels(frame: pd.DataFrame, cluster: Any, timeout: float = 5.0) -> pd.DataFrame:
    """Long polls: replace ``channel_on`` by the server that held the poll when the confirm came.

    nginx writes a request to its log when the request ends, a moment after the client saw the
    answer: wait (by polling the log, up to ``timeout``) until every confirmed ticket's confirm is in it.
    """
    mask = frame["transport"] == "longpoll"
    if not mask.any():
        return frame
    wanted = set(frame.loc[mask & frame["confirm_on"].notna(), "ticket"])
    deadline = time.monotonic() + timeout
    while True:
        log = cluster.routing_log()
        logged = set(log.loc[log["route"] == "/api/tickets/{id}/confirm", "ticket"])
        if wanted <= logged or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    held = _held_channels(log, "longpoll")
    frame.loc[mask, "channel_on"] = frame.loc[mask, "ticket"].map(held).fillna(frame.loc[mask, "channel_on"])
    return frame


def traffic(cluster: Any, transport: str | Sequence[str] = "sse", logins: int = 30, **options: Any) -> pd.DataFrame:
    """:func:`traffic_async` against ``cluster`` (blocking, for a cell): one row per login, labelled
    with the cluster's ``n_servers``, ``policy`` and ``balancer``."""
    url = getattr(cluster, "url", cluster)
    patience = options.get("wait_s", 1.0)
    wait_s = max(patience.values()) if isinstance(patience, Mapping) else float(patience)
    rows = runtime.run(traffic_async(url, transport, logins, **options), timeout=logins * (wait_s + 2) + 60)
    frame = _frame(rows, cluster if hasattr(cluster, "servers") else None)
    return _fill_held_channels(frame, cluster) if hasattr(cluster, "balancer") else frame


def isolated_logins(cluster: Any, transport: str = "sse", logins: int = 4, **options: Any) -> pd.DataFrame:
    """``logins`` logins strictly one after another, no think time: the test-bench pattern."""
    url = getattr(cluster, "url", cluster)

    async def in_a_row() -> list[dict[str, Any]]:
        return [await user_login_async(url, transport, **options) for _ in range(logins)]

    rows = runtime.run(in_a_row(), timeout=logins * (options.get("wait_s", 1.0) + 10) + 30)
    frame = _frame(rows, cluster if hasattr(cluster, "servers") else None)
    return _fill_held_channels(frame, cluster) if hasattr(cluster, "balancer") else frame


def open_login_page(cluster: Any, transport: str = "sse", source_address: str = BROWSER_ADDRESS) -> dict[str, Any]:
    """The browser's first request: ``GET /login?transport=...`` (the page with the QR code), sent
    from the browser's address. Returns ``status``, ``served_by`` and the page's size in bytes."""
    import requests

    from servers.clients.qr import SourceAddressAdapter

    with requests.Session() as session:
        session.mount("http://", SourceAddressAdapter(source_address))
        page = session.get(f"{getattr(cluster, 'url', cluster)}/login", params={"transport": transport}, timeout=10)
    return {"status": page.status_code, "served_by": page.headers.get("X-Served-By"), "bytes": len(page.content)}
