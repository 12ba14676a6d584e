"""QR logins as people make them: one user, many users arriving at random, and logins in a row.

Why not ``login_many`` in a loop: see :mod:`lab.lessons.qr_bug`; in short, only random arrivals
and think times give a round-robin balancer the random gaps real traffic gives it.
:func:`traffic` plans who arrives when with a seeded generator, runs every user at once and
returns one row per login with where each step went; :func:`isolated_logins` is the test-bench
pattern that hides the bug. A long poll's channel is re-sent after every answer, so the server
that *held* it when the confirm came is read from the balancer's routing log
(:func:`_fill_held_channels`). :func:`login_page_script` reads the login page's own JavaScript for
one transport (the page's ``// region: NAME`` if it marks one, else that transport's function in its
``channels`` object); :func:`confirm_page_ticket` plays the phone for a login page opened in a real
browser.
"""
from __future__ import annotations

import asyncio
import random
import re
import textwrap
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from lab.code import script_text
from lab.lessons.qr_bug.addresses import user_addresses
from servers import runtime
from servers.clients.qr import BROWSER_ADDRESS, PHONE_ADDRESS, TRANSPORTS, AsyncBrowser, AsyncPhone, QRError
from servers.runtime import cancel_and_wait


# The routes a browser's push channel uses, per transport (as the routing log names them).
CHANNEL_ROUTES = {"poll": "/api/tickets/{id}", "longpoll": "/api/tickets/{id}/longpoll",
                  "sse": "/api/tickets/{id}/events", "ws": "/api/tickets/{id}/ws"}
COLUMNS = ["transport", "ticket", "ok", "latency_s", "error", "channel_on", "confirm_on", "served_by_create",
           "served_by_scan", "served_by_redeem", "started_at", "one_address"]


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
                           "served_by_scan": None, "served_by_redeem": None, "started_at": time.time(),
                           "one_address": browser_address == phone_address}
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
                        seed: int | None = None, one_address_share: float = 0.0,
                        **options: Any) -> list[dict[str, Any]]:
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
    ``one_address_share``: the share of users whose phone is on the browser's home Wi-Fi, behind the
    same router (NAT), so both come from one address (``one_address`` in the row); the rest use
    mobile data, an address of its own.
    """
    transports = [transport] if isinstance(transport, str) else list(transport)
    unknown = [t for t in transports if t not in TRANSPORTS]
    if unknown or not transports:
        raise ValueError(f"transports must be among {TRANSPORTS}, got {transports}")
    for name in transports:
        _patience(wait_s, name)  # a mapping without this transport: fail now, not in the middle of a run
    plan = _plan(transports, logins, arrivals_per_s, think_s, seed, one_address_share)
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
          seed: int | None, one_address_share: float = 0.0) -> list[tuple[str, tuple[str, str], float, float, float]]:
    """Who arrives when: per user ``(transport, addresses, arrival_s, scan_think_s, confirm_think_s)``."""
    rng = random.Random(seed)
    shared = random.Random(f"{seed}-one-address")  # its own draws: the plan is the same whatever the share
    plan = []
    at = 0.0
    for i in range(logins):
        addresses = user_addresses(rng)
        if one_address_share and shared.random() < one_address_share:
            addresses = (addresses[0], addresses[0])  # one home router: the phone comes from the browser's address
        plan.append((transports[i % len(transports)], addresses, at, rng.uniform(0, think_s),
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


# -- the browser's side: the login page's own code, and a phone for a page you opened --------------

LOGIN_PAGE = Path(__file__).resolve().parents[3] / "servers" / "qrlogin" / "pages" / "login.html"


def login_page_script(name: str) -> tuple[str, str]:
    """``(where, source)`` of the login page's code for ``name`` (a transport, or any region)."""
    try:
        return script_text(LOGIN_PAGE, name)
    except LookupError:
        pass
    lines = LOGIN_PAGE.read_text(encoding="utf-8").splitlines()
    start = re.compile(rf"^(\s*)(async\s+)?{re.escape(name)}\(\)\s*{{\s*$")
    for index, line in enumerate(lines):
        match = start.match(line)
        if match:
            indent = match.group(1)
            for end in range(index + 1, len(lines)):
                if lines[end].startswith(f"{indent}}}"):
                    body = "\n".join(lines[index:end + 1])
                    return f"servers/qrlogin/pages/login.html:{index + 1}", textwrap.dedent(body) + "\n"
    raise LookupError(f"the login page has no region or function {name!r}")


def show_login_script(*names: str) -> None:
    """Show the login page's code for each of ``names`` (highlighted in a notebook)."""
    from lab.code import _display

    for name in names:
        _display(*login_page_script(name), "javascript")


def confirm_page_ticket(cluster) -> dict | None:
    """Play the phone for the login page open in *your* browser: find the ticket whose channel a
    browser other than the simulated ones opened most recently (from the routing log), then scan
    and confirm it from the simulated phone. Returns where the page's channel and the confirm went,
    or None when no page has opened a channel (nobody is looking at the page, e.g. a headless run)."""
    from lab.lessons.qr_bug.addresses import who

    log = cluster.routing_log()
    mine = log[log["route"].isin(list(CHANNEL_ROUTES.values())) & log["ticket"].notna()
               & (log["client"].map(who) != "browser") & (log["client"].map(who) != "phone")]
    if mine.empty:
        return None
    last = mine.sort_values("time").iloc[-1]
    phone = cluster.phone()
    phone.login()
    phone.scan(last["ticket"])
    confirmed = phone.confirm(last["ticket"])
    return {"ticket": last["ticket"], "page_channel_on": last["backend"], "confirm_on": confirmed["served_by"],
            "met": last["backend"] == confirmed["served_by"]}
