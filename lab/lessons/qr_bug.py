"""Lesson 07's pieces: QR logins through a cluster as real users make them, and what to count.

Why not just ``login_many`` in a loop: one simulated user makes the same fixed sequence of
requests every time (create, channel, phone login, scan, confirm, redeem). Under strict
``round_robin`` the number of requests between the browser's channel and the phone's confirm is
then always the same, so whether the two meet on one server is decided by that count modulo N:
every isolated login fails, or every one succeeds (with N = 3 all succeed - the bug hides on a
test bench). Starting many logins at the same instant is no better: they advance in lockstep and
the gap is again a constant. Real users arrive at random moments and take a human moment to
pick up the phone, so other users' requests fall between a user's own requests in a random
number; round robin then scatters that user's requests like a die, and the confirm meets the
channel with probability 1/N. :func:`traffic` models exactly that (random arrivals, a random
think time before the scan and before the confirm) with a seeded random generator.

- :func:`traffic` / :func:`traffic_async`: K logins as random users; one row per login with
  where each step went, ``ok``, and ``latency_s`` (confirm sent → browser saw it).
- :func:`isolated_logins`: K logins one after another, the test-bench pattern.
- :func:`success_vs_servers`: the main measurement, one cluster per N, several runs.
- :func:`success_table` / :func:`plot_success_vs_servers`: rate per group with its standard
  error, against the theory 1/N.
- :func:`meeting_table`: checks that a push login succeeds exactly when its confirm met its channel.
- :func:`login_trace`: the routing log of one login, each row labelled browser or phone.
- :func:`clients_and_servers`: which servers each client was sent to (stickiness pins clients).
- :func:`start_cluster_with_route` / :func:`use_route`: plug a plain function
  ``route(path, query, backends) -> backend`` into our balancer (the exercise's ticket_hash).
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from servers import runtime
from servers.balancer.policies import RouteRequest, Router
from servers.clients.qr import (BROWSER_ADDRESS, PHONE_ADDRESS, TRANSPORTS, AsyncBrowser, AsyncPhone, QRError)

__all__ = ["TRANSPORTS", "CHANNEL_ROUTES", "theory", "user_addresses", "who", "user_login_async", "traffic_async",
           "traffic", "isolated_logins", "open_login_page", "success_vs_servers", "success_table",
           "plot_success_vs_servers", "meeting_table", "login_trace", "browser_and_phone", "pinning",
           "clients_and_servers", "FunctionRouter", "use_route", "start_cluster_with_route"]

# The routes a browser's push channel uses, per transport (as the routing log names them).
CHANNEL_ROUTES = {"poll": "/api/tickets/{id}", "longpoll": "/api/tickets/{id}/longpoll",
                  "sse": "/api/tickets/{id}/events", "ws": "/api/tickets/{id}/ws"}
COLUMNS = ["transport", "ticket", "ok", "latency_s", "error", "channel_on", "confirm_on", "served_by_create",
           "served_by_scan", "served_by_redeem", "started_at"]


def theory(n_servers: int) -> float:
    """The chance that the confirm lands on the server holding the browser's channel: 1/N."""
    return 1.0 / n_servers


# Each simulated user of :func:`traffic` gets a browser and a phone address of its own, as real
# users have, drawn at random inside 127/8 (all of it is loopback on Linux): browsers from
# 127.100-149.x.y, phones from 127.150-199.x.y. At random, not by a pattern: nginx's ``hash``
# is CRC32, which is linear, so address pairs that differ by a fixed pattern (127.10.0.i and
# 127.20.0.i) would all land together or all apart.
BROWSER_OCTETS, PHONE_OCTETS = range(100, 150), range(150, 200)


def user_addresses(rng: random.Random) -> tuple[str, str]:
    """A random ``(browser_address, phone_address)`` pair for one simulated user."""
    def address(second: range) -> str:
        return f"127.{rng.choice(second)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    return address(BROWSER_OCTETS), address(PHONE_OCTETS)


def who(client: str) -> str:
    """``browser``, ``phone`` or the address itself, for a routing-log ``client`` address."""
    parts = str(client).split(".")
    second = int(parts[1]) if len(parts) == 4 and parts[0] == "127" and parts[1].isdigit() else -1
    if client == BROWSER_ADDRESS or second in BROWSER_OCTETS:
        return "browser"
    if client == PHONE_ADDRESS or second in PHONE_OCTETS:
        return "phone"
    return client


# ------------------------------------------------------------------------------------------------
# One user's login, and many users.

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
        if listening is not None:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
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


# ------------------------------------------------------------------------------------------------
# Success rate against the number of servers.

def success_vs_servers(ns: Iterable[int] = (1, 2, 3, 4, 5, 6), transports: Sequence[str] = ("sse",),
                       logins: int = 40, runs: int = 1, policy: str = "round_robin", balancer: str = "python",
                       redis_url: str | None = None, seed: int = 7, progress: bool = False,
                       name: str = "lesson07", overlap: bool = True, **options: Any) -> pd.DataFrame:
    """For each N in ``ns``: a fresh cluster of N servers, then ``runs`` runs of ``logins``
    random users per transport (the transports mixed in one run, see :func:`traffic_async`).
    One row per login, with ``n_servers`` and ``run`` columns.

    Most of a run's time is its end: the last users waiting ``wait_s`` for a confirm that never
    comes. With ``overlap`` (the default) the next run starts as soon as every user of the
    previous one has confirmed, so those waits overlap with the next run's work; the clusters
    then live side by side, so their servers are named per N (``A3``, ``B3``, ``C3`` for N = 3).
    Without it, one cluster at a time runs under ``name`` (servers ``A``, ``B``, ...).
    """
    from concurrent.futures import wait as wait_for_futures

    from servers.cluster import server_names, start_cluster

    transports = list(transports)
    options.setdefault("arrivals_per_s", 20.0)
    options.setdefault("think_s", 0.2)
    patience = options.get("wait_s", 1.0)
    longest_wait = max(patience.values()) if isinstance(patience, Mapping) else float(patience)
    frames: list[pd.DataFrame] = []
    started: list[tuple[int, int, Any, Any]] = []

    def collect(n: int, run: int, cluster: Any, future: Any) -> None:
        rows = future.result(timeout=logins * len(transports) * (longest_wait + 2) + 60)
        frame = _fill_held_channels(_frame(rows, cluster), cluster)
        frame["run"] = run
        frames.append(frame)
        cluster.stop()
        if progress:
            print(f"N={n} run {run}: {frame['ok'].mean():.0%} of {len(frame)} logins", flush=True)

    try:
        for n in ns:
            for run in range(runs):
                run_seed = seed * 1000 + n * 10 + run
                count = logins * len(transports)
                cluster = start_cluster(n, policy, balancer=balancer, redis_url=redis_url,
                                        name=f"{name}-N{n}-run{run}" if overlap else name,
                                        names=[f"{s}{n}" for s in server_names(n)] if overlap else None)
                future = asyncio.run_coroutine_threadsafe(
                    traffic_async(cluster.url, transports, count, seed=run_seed, **options), runtime.server_loop())
                started.append((n, run, cluster, future))
                if overlap:  # go on once this run's users have all confirmed (or the run ended)
                    plan = _plan(transports, count, options["arrivals_per_s"], options["think_s"], run_seed)
                    wait_for_futures([future], timeout=plan[-1][2] + 2 * options["think_s"] + 0.3)
                else:
                    collect(*started.pop())
        while started:
            collect(*started.pop(0))
    finally:
        for _, _, cluster, future in started:
            future.cancel()
            cluster.stop()
    return pd.concat(frames, ignore_index=True)


def success_table(frame: pd.DataFrame, by: Sequence[str] = ("n_servers", "transport")) -> pd.DataFrame:
    """Per group: ``logins``, ``succeeded``, ``success_pct``, its standard error ``stderr_pct``
    (binomial, sqrt(p(1-p)/K)), and, when grouped by ``n_servers``, ``theory_pct`` = 100/N."""
    by = list(by)
    table = frame.groupby(by, sort=True)["ok"].agg(logins="count", succeeded="sum").reset_index()
    p = table["succeeded"] / table["logins"]
    table["success_pct"] = (100 * p).round(1)
    table["stderr_pct"] = (100 * (p * (1 - p) / table["logins"]).map(math.sqrt)).round(1)
    if "n_servers" in by:
        table["theory_pct"] = (100 / table["n_servers"]).round(1)
    return table


def plot_success_vs_servers(frame: pd.DataFrame, title: str | None = None, ax=None):
    """Measured success per N (pooled rate with ±2 standard errors; single runs as dots when
    there are several) against the theory 1/N (dashed)."""
    from lab.plots import plot_lines

    table = success_table(frame, ["n_servers", "transport"])
    ns = sorted(table["n_servers"].unique())
    theory_frame = pd.DataFrame({"n_servers": ns, "theory 1/N": [100 / n for n in ns]})
    ax = plot_lines(theory_frame, "n_servers", "theory 1/N", xlabel="servers behind the balancer N (count)",
                    ylabel="logins that complete (%)", marker=None, title=title, ax=ax)
    ax.lines[-1].set_linestyle("--")
    ax.lines[-1].set_color("black")
    ax.lines[-1].set_label("theory 1/N")
    transports = list(table["transport"].unique())
    for i, (transport, group) in enumerate(table.groupby("transport", sort=False)):
        shift = (i - (len(transports) - 1) / 2) * 0.08
        ax.errorbar(group["n_servers"] + shift, group["success_pct"], yerr=2 * group["stderr_pct"], marker="o",
                    capsize=3, label=f"{transport}: measured (±2 s.e.)")
        if "run" in frame.columns and frame["run"].nunique() > 1:
            per_run = success_table(frame[frame["transport"] == transport], ["n_servers", "run"])
            ax.scatter(per_run["n_servers"] + shift, per_run["success_pct"], s=12, alpha=0.4,
                       color=ax.lines[-1].get_color() if ax.lines else None)
    ax.set_xticks(ns)
    ax.set_ylim(-5, 105)
    ax.legend()
    return ax


def open_login_page(cluster: Any, transport: str = "sse", source_address: str = BROWSER_ADDRESS) -> dict[str, Any]:
    """The browser's first request: ``GET /login?transport=...`` (the page with the QR code), sent
    from the browser's address. Returns ``status``, ``served_by`` and the page's size in bytes."""
    import requests

    from servers.clients.qr import SourceAddressAdapter

    with requests.Session() as session:
        session.mount("http://", SourceAddressAdapter(source_address))
        page = session.get(f"{getattr(cluster, 'url', cluster)}/login", params={"transport": transport}, timeout=10)
    return {"status": page.status_code, "served_by": page.headers.get("X-Served-By"), "bytes": len(page.content)}


def meeting_table(frame: pd.DataFrame, transports: Sequence[str] = ("sse", "ws"),
                  max_late_share: float = 0.05) -> pd.DataFrame:
    """Check the lesson's central claim on measured logins and return the counts behind it.

    For the streaming transports (SSE, WebSocket) a login completes exactly when the phone's
    confirm reached the server holding the browser's channel. One direction is strict: no login
    may complete without that meeting (``ok_without_meeting`` must be 0). The other may fail on an
    overloaded machine (a push delayed past the deadline, a request timing out), so up to
    ``max_late_share`` of the met logins may still have failed (``met_but_failed``). Raises
    AssertionError, with the rows at fault, when either is broken.
    """
    rows = frame[frame["transport"].isin(list(transports))]
    met = rows["channel_on"] == rows["confirm_on"]
    impossible = rows[rows["ok"] & ~met]
    assert impossible.empty, ("logins completed although the confirm went to another server than the channel's:\n"
                              f"{impossible[['transport', 'ticket', 'channel_on', 'confirm_on']]}")
    late = rows[~rows["ok"] & met]
    assert len(late) <= max_late_share * max(1, int(met.sum())), (
        f"{len(late)} of {int(met.sum())} logins whose confirm met the channel still failed (a very busy machine?):\n"
        f"{late[['transport', 'channel_on', 'confirm_on', 'error']]}")
    table = rows.assign(met=met, met_but_failed=~rows["ok"] & met).groupby("transport").agg(
        logins=("ok", "size"), met=("met", "sum"), ok=("ok", "sum"), met_but_failed=("met_but_failed", "sum"))
    table["ok_without_meeting"] = 0
    return table.reset_index()


# ------------------------------------------------------------------------------------------------
# Reading the routing log.

def login_trace(log: pd.DataFrame, ticket: str) -> pd.DataFrame:
    """Where each step of one login went: the rows of ``log`` about ``ticket``, plus the requests
    that name no ticket yet (the browser's login page and ticket creation just before, the phone's
    login just before its scan), in time order, with ``who`` (browser/phone) first.

    Meant for a quiet cluster (one login by hand): with many users at once, the nearest
    ticketless request may be another user's.
    """
    labelled = log.assign(who=log["client"].map(who))
    about = labelled[labelled["ticket"] == ticket]
    parts = [about]
    if not about.empty:
        first, scans = about["time"].min(), about[about["route"] == "/api/tickets/{id}/scan"]
        for route, by, before in [("/login", "browser", first), ("/api/tickets", "browser", first),
                                  ("/api/phone/login", "phone", scans["time"].min() if not scans.empty else None)]:
            if before is None:
                continue
            earlier = labelled[(labelled["route"] == route) & (labelled["who"] == by) & (labelled["time"] <= before)]
            parts.append(earlier.sort_values("time").tail(1))
    rows = pd.concat(parts).sort_values("time", kind="stable")
    return rows[["who", "method", "route", "backend", "status"]].reset_index(drop=True)


def browser_and_phone(log: pd.DataFrame) -> pd.DataFrame:
    """One row per ticket (one user's login): the servers its browser's requests went to, the
    servers its phone's requests went to, and ``apart`` (True when the two sets do not meet)."""
    rows = log.dropna(subset=["ticket"]).assign(who=lambda f: f["client"].map(who))
    table = rows.groupby(["ticket", "who"])["backend"].agg(lambda s: ", ".join(sorted(set(s.dropna()))))
    table = table.unstack("who").reindex(columns=["browser", "phone"]).fillna("")
    table["apart"] = [not (set(b.split(", ")) & set(p.split(", "))) for b, p in zip(table["browser"], table["phone"])]
    return table.reset_index()


def pinning(log: pd.DataFrame) -> pd.DataFrame:
    """Per kind of client (browser, phone): how many clients, how many of them had every request
    sent to one server (``pinned``), and that as a share in percent."""
    per_client = log.assign(who=log["client"].map(who)).groupby(["who", "client"])["backend"].nunique()
    table = per_client.groupby("who").agg(clients="size", pinned=lambda s: int((s == 1).sum()))
    table["pinned_pct"] = (100 * table["pinned"] / table["clients"]).round(1)
    return table.reset_index()


def clients_and_servers(log: pd.DataFrame) -> pd.DataFrame:
    """One row per client (browser, phone): how many requests, and the servers they were sent to."""
    frame = log.assign(who=log["client"].map(who))
    table = frame.groupby("who").agg(requests=("backend", "size"),
                                     servers=("backend", lambda s: ", ".join(sorted(set(s.dropna())))))
    return table.reset_index()


# ------------------------------------------------------------------------------------------------
# A policy written as a plain function (the exercise's ticket_hash), plugged into our balancer.

RouteFunction = Callable[[str, str, Sequence[str]], str]


class FunctionRouter(Router):
    """A :class:`~servers.balancer.policies.Router` whose choice is ``route(path, query, backends)``.

    ``backends`` is the list of backend names (``["A", "B", ...]``); the function returns one of
    them. A wrong answer is reported clearly instead of being proxied somewhere.
    """

    def __init__(self, route: RouteFunction, names: Sequence[str]) -> None:
        self.route = route
        super().__init__("round_robin", names)
        self.policy = getattr(route, "__name__", "function")

    def choose(self, request: RouteRequest) -> tuple[str, bool]:
        self.counter += 1
        name = self.route(request.path, request.query, list(self.names))
        if name not in self.names:
            raise LookupError(f"the route function returned {name!r}, which is not one of the backends {self.names}")
        return name, False


def use_route(balancer: Any, route: RouteFunction) -> None:
    """Make our (python) ``balancer`` route every request with ``route(path, query, backends)``."""
    if getattr(balancer, "kind", "python") != "python":
        raise ValueError("only our own balancer (kind='python') can run a Python function as its policy")
    impl = getattr(balancer, "_impl", balancer)  # a BalancerHandle wraps the ServerHandle of the app

    def install(app: Any) -> None:
        app.router = FunctionRouter(route, [b.name for b in app.backends])

    impl.call(install)
    balancer.policy = getattr(route, "__name__", "function")


def start_cluster_with_route(n: int, route: RouteFunction, **options: Any):
    """A cluster of ``n`` servers behind our balancer, routed by ``route(path, query, backends)``."""
    from servers.cluster import start_cluster

    cluster = start_cluster(n, "round_robin", balancer="python", **options)
    use_route(cluster.balancer, route)
    cluster.policy = cluster.balancer.policy
    return cluster
