"""Lesson 08's measurements: each fix of the QR-login bug switched on in a cluster, and what it costs.

Lesson 07 showed the bug: the phone's confirm reaches server B, the browser's push channel is on
A, and B has no way to reach it. Lesson 08 switches on each fix (``start_cluster(fix=...)``) and
measures the same things for every one, so the closing table compares like with like:

- :func:`success_matrix`: random users (lesson 07's :func:`~lab.lessons.qr_bug.traffic`)
  per fix × balancer × transport; every login must complete.
- :func:`latency_and_cost`: logins one at a time (nothing queues), confirm → browser latency per
  fix against ``none`` on one server, and per login the Redis commands (Redis's own count) and
  the messages and bytes that crossed to the server holding the channel (each hub's ``stats``).
- :func:`scaling`: the same costs as the number of servers grows.
- :func:`idle_cost`: Redis commands per second with channels open and nothing happening.
- :func:`moved_share` / :func:`in_flight_when_adding`: ``ticket_hash`` when a server is added.
- :func:`reconnect_gap`: a change made while the browser reconnects (``pubsub`` loses the live
  event, ``streams`` replays it).
- :class:`PubSubExerciseBase`, :func:`start_pair`, :func:`login_across`: the scaffolding of the exercises.

Every cluster here gets a Redis of its own (``start_cluster`` starts one), so Redis's command
count belongs to that fix alone.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Iterable, Sequence

import pandas as pd

from servers import runtime
from servers.balancer.policies import HashRing, _hash64
from servers.clients.qr import TRANSPORTS, AsyncBrowser, AsyncPhone, SSEChannel, login_once_async
from lab.lessons import qr_bug
from servers.qrlogin.push import Event, PushHub

__all__ = ["FIXES", "TRANSPORTS", "REAL_SYSTEMS", "SEMANTICS", "nginx_available", "start_fix_cluster",
           "cluster_counters", "success_matrix", "success_table", "latency_and_cost", "latency_table",
           "scaling", "idle_cost", "moved_share", "moved_table", "in_flight_when_adding", "reconnect_gap",
           "closing_table", "PubSubExerciseBase", "start_with_hub", "start_pair", "login_across"]

FIXES = ("ticket_hash", "pubsub", "registry", "store", "gateway", "streams")

# Which production systems solve the multi-node push problem the way each fix does (BRIEF §5).
REAL_SYSTEMS = {
    "none": "a Map<id, SseEmitter> in one JVM; Spring's simple broker (not for clusters)",
    "ticket_hash": "nginx `hash $ticket consistent`, HAProxy path-derived keys; Socket.IO's sticky sessions are the client-keyed cousin",
    "pubsub": "Socket.IO Redis adapter, Django Channels' Redis pub/sub layer, Spring STOMP broker relay (RabbitMQ/ActiveMQ)",
    "registry": "Django Channels (routable channel names), Spring user registry in a cluster",
    "store": "no push product: the 'just poll the database' first version",
    "gateway": "Pushpin, Centrifugo, Mercure, AWS API Gateway WebSocket API",
    "streams": "Socket.IO Redis Streams adapter (connection state recovery), Centrifugo/Mercure history and recovery",
}

SEMANTICS = {
    "none": "only when the confirm lands on the channel's server",
    "ticket_hash": "exact while the server set is fixed; logins in flight on moved tickets break",
    "pubsub": "at most once (a change while the browser reconnects: live event lost, state re-read)",
    "registry": "at most once (a stale entry: a failed forward, counted)",
    "store": "latest state within one interval (short intermediate states may be skipped)",
    "gateway": "at most once per live event (state re-read on reconnect)",
    "streams": "every event, in order, also across a reconnect (replayed from the log)",
}


def nginx_available() -> bool:
    """Is there an nginx binary to start? (``HOW_TO_GET_NGINX`` says how to get one.)"""
    from servers.balancer.nginx import NginxMissing, find_nginx

    try:
        find_nginx()
    except NginxMissing:
        return False
    return True


def start_fix_cluster(fix: str, n: int = 2, balancer: str = "python", *, name: str = "lesson08", **options: Any):
    """A cluster of ``n`` servers running ``fix`` behind ``balancer``, with a Redis of its own.

    The policy is ``round_robin`` (the worst case for the bug), except for ``ticket_hash``,
    whose fix *is* the policy. ``fix="none"`` is the baseline.
    """
    from servers.cluster import start_cluster

    return start_cluster(n, fix=fix, balancer=balancer, name=name, **options)


# ------------------------------------------------------------------------------------------------
# Counting: Redis's own command count, and what each hub counted.

def _hubs(cluster: Any) -> list[Any]:
    parts = list(cluster.servers.values())
    gateway = getattr(cluster, "gateway", None)
    if gateway is not None:
        parts.append(gateway)
    return [p for p in parts if getattr(p, "running", False) and hasattr(p, "call")]


def cluster_counters(cluster: Any) -> Counter:
    """Totals over the cluster's servers (and push tier): ``redis_total`` (Redis's
    ``total_commands_processed``, this read excluded), and the hubs' ``redis_commands``,
    ``messages_in``, ``bytes_in``, ``published``, ``published_to_nobody``, ``replayed``..."""
    import redis as redis_py

    totals: Counter = Counter()
    for handle in _hubs(cluster):
        totals.update(handle.call(lambda app: dict(app.push.stats)))
    client = redis_py.Redis.from_url(cluster.redis_url)
    try:
        totals["redis_total"] = int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()
    return totals


def _per_login(before: Counter, after: Counter, logins: int) -> dict[str, float]:
    """What one login cost, from two counter snapshots around ``logins`` logins."""
    delta = Counter({k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)})
    logins = max(1, logins)
    return {"redis_per_login": (delta["redis_total"] - 1) / logins,  # -1: the INFO that read "before"
            "fix_redis_per_login": delta["redis_commands"] / logins,
            "messages_per_login": delta["messages_in"] / logins,
            "bytes_per_login": delta["bytes_in"] / logins}


# ------------------------------------------------------------------------------------------------
# Success: random users per fix, balancer and transport.

def success_matrix(fixes: Iterable[str] = FIXES, balancers: Sequence[str] = ("python", "nginx"),
                   transports: Sequence[str] = TRANSPORTS, logins: int = 8, *, n: int = 2, seed: int = 8,
                   wait_s: float = 3.0, think_s: float = 0.2, arrivals_per_s: float = 100.0,
                   progress: bool = False) -> pd.DataFrame:
    """One row per login: ``fix``, ``balancer``, ``transport``, ``ok``, ``latency_s``, ``channel_on``,
    ``confirm_on``, ``error``. Per fix and balancer one fresh cluster of ``n`` servers; the
    transports' users arrive at the same time (as on a real site, where pages differ).

    ``wait_s`` is generous on purpose: in the steady state a fix must deliver every login, and a
    busy laptop must not turn a slow delivery into a "failure".
    """
    frames = []
    for fix in fixes:
        for kind in balancers:
            with start_fix_cluster(fix, n, kind) as cluster:

                async def all_transports() -> list[list[dict[str, Any]]]:
                    return list(await asyncio.gather(*(
                        qr_bug.traffic_async(cluster.url, transport, logins, seed=seed + i, wait_s=wait_s,
                                             think_s=think_s, arrivals_per_s=arrivals_per_s)
                        for i, transport in enumerate(transports))))

                runs = runtime.run(all_transports(), timeout=logins * (wait_s + 2) + 60)
                frame = pd.DataFrame([row for rows in runs for row in rows])
                # A long poll's channel_on is the server that answered last; the one holding the poll
                # when the confirm came is in the routing log (lesson 07's helper reads it).
                frame = qr_bug._fill_held_channels(frame, cluster)
                frames.append(frame.assign(fix=fix, balancer=kind, n_servers=n))
            if progress:
                done = frames[-1]
                print(f"{fix:>11} behind {kind:<6}: {done['ok'].mean():.0%} of {len(done)} logins", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    frame["ok"] = frame["ok"].astype(bool)
    return frame[["fix", "balancer", "transport", "n_servers", "ok", "latency_s", "channel_on", "confirm_on",
                  "error", "ticket"]]


def success_table(frame: pd.DataFrame, by: Sequence[str] = ("fix", "balancer", "transport")) -> pd.DataFrame:
    """Per group: ``logins``, ``succeeded``, ``success_pct``."""
    table = frame.groupby(list(by), sort=False)["ok"].agg(logins="count", succeeded="sum").reset_index()
    table["success_pct"] = (100 * table["succeeded"] / table["logins"]).round(1)
    return table


# ------------------------------------------------------------------------------------------------
# Latency and cost: one login at a time.

def latency_and_cost(fixes: Iterable[str] = FIXES, transports: Sequence[str] = ("sse", "ws", "longpoll"),
                     logins: int = 15, *, n: int = 2, balancer: str = "python",
                     timeout: float = 5.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Logins one after another through each fix's cluster of ``n`` servers, and the baseline
    ``none`` on **one** server behind the same balancer (the same login with nothing to fix).

    All the clusters run side by side and the logins are interleaved (fix after fix, the order
    rotating), so a busy moment of the machine hits every fix alike.

    Returns ``(logins, costs)``: one row per login (``fix``, ``transport``, ``ok``, ``latency_ms``
    = phone's confirm sent → browser saw ``confirmed``, ``crossed`` = the confirm was handled by
    another server than the one holding the channel), and one row per fix and transport with
    the per-login costs of :func:`cluster_counters`.

    Under strict round robin one isolated login sends its confirm 3 requests after its channel,
    so with 2 servers every SSE/WebSocket login crosses (lesson 07): each one exercises the fix.
    ``ticket_hash`` never crosses (that is the fix), and with ``gateway`` the channel is on the
    push tier.
    """
    from servers.cluster import server_names

    order = ["none", *[f for f in fixes if f != "none"]]
    clusters: dict[str, Any] = {}
    rows, costs = [], []
    try:
        for fix in order:
            size = 1 if fix == "none" else n
            clusters[fix] = start_fix_cluster(fix, size, balancer, name=f"lesson08-latency-{fix}",
                                              names=[f"{fix}-{s}" for s in server_names(size)])
        for transport in transports:
            before = {fix: cluster_counters(c) for fix, c in clusters.items()}
            for i in range(logins):
                for fix in order[i % len(order):] + order[:i % len(order)]:
                    r = runtime.run(login_once_async(clusters[fix].url, transport, timeout, poll_interval=0.2),
                                    timeout=timeout + 60)
                    rows.append({"fix": fix, "transport": transport, "ok": bool(r["ok"]),
                                 "latency_ms": None if r["latency_s"] is None else r["latency_s"] * 1000,
                                 "crossed": r["served_by_confirm"] != r["served_by_channel"],
                                 "channel_on": r["served_by_channel"], "confirm_on": r["served_by_confirm"],
                                 "error": r["error"]})
            for fix, cluster in clusters.items():
                costs.append({"fix": fix, "transport": transport, "n_servers": len(cluster.servers),
                              **_per_login(before[fix], cluster_counters(cluster), logins)})
    finally:
        for cluster in clusters.values():
            cluster.stop()
    return pd.DataFrame(rows), pd.DataFrame(costs)


def latency_table(logins: pd.DataFrame) -> pd.DataFrame:
    """Per fix and transport: p50 and p99 of the latency (ms), and what the fix adds to the
    baseline ``none`` (one server) of the same transport, at the median and at p99."""
    ok = logins[logins["ok"]]
    table = ok.groupby(["fix", "transport"], sort=False)["latency_ms"].agg(
        logins="count", p50_ms="median", p99_ms=lambda s: s.quantile(0.99)).reset_index()
    base = table[table["fix"] == "none"].set_index("transport")
    table["added_p50_ms"] = table["p50_ms"] - table["transport"].map(base["p50_ms"])
    table["added_p99_ms"] = table["p99_ms"] - table["transport"].map(base["p99_ms"])
    return table.round(2)


# ------------------------------------------------------------------------------------------------
# Scale: the same costs for N = 2 .. 6.

def scaling(fixes: Iterable[str] = FIXES, ns: Sequence[int] = (2, 4), transport: str = "sse",
            logins: int = 12, *, balancer: str = "python", seed: int = 8, wait_s: float = 3.0,
            arrivals_per_s: float = 100.0) -> pd.DataFrame:
    """Per fix and N: random users (so the confirm crosses about (N-1)/N of the time), with the
    success rate, latency p50 and the per-login costs. One row per fix and N."""
    rows = []
    for fix in fixes:
        for n in ns:
            with start_fix_cluster(fix, n, balancer) as cluster:
                before = cluster_counters(cluster)
                frame = pd.DataFrame(runtime.run(
                    qr_bug.traffic_async(cluster.url, transport, logins, seed=seed + n, wait_s=wait_s,
                                         arrivals_per_s=arrivals_per_s),
                    timeout=logins * (wait_s + 2) + 60))
                after = cluster_counters(cluster)
            rows.append({"fix": fix, "n_servers": n, "logins": len(frame),
                         "success_pct": round(100 * frame["ok"].mean(), 1),
                         "p50_ms": frame["latency_s"].median() * 1000, **_per_login(before, after, logins)})
    return pd.DataFrame(rows)


async def _settled(clusters: list[Any]) -> None:
    """Until every subscription (pubsub) and registry entry (registry) the open channels caused
    has been acknowledged by Redis, so that the window counts only what idling costs."""
    for cluster in clusters:
        for handle in _hubs(cluster):
            hub = handle.app.push
            for ticket in list(hub.channels):
                if hasattr(hub, "wait_confirmed"):
                    await hub.wait_confirmed(ticket)
                if hasattr(hub, "wait_registered"):
                    await hub.wait_registered(ticket)


def idle_cost(fixes: Iterable[str] = FIXES, channels: int = 10, seconds: float = 1.0,
              balancer: str = "python") -> pd.DataFrame:
    """Redis commands per second with ``channels`` WebSocket channels open and nothing happening.

    Every fix's cluster runs at once and is measured over the same window (a fixed window is the
    measurement itself, as a stopwatch is; nothing waits on it for a result).
    """
    from servers.cluster import server_names

    # Side by side in one process: each cluster's servers need names of their own ("pubsub-A").
    clusters = {fix: start_fix_cluster(fix, 2, balancer, name=f"lesson08-idle-{fix}",
                                       names=[f"{fix}-{s}" for s in server_names(2)]) for fix in fixes}
    try:
        async def open_all() -> list[Any]:
            opened = []
            for cluster in clusters.values():
                browser = AsyncBrowser(cluster.url, "ws")
                for _ in range(channels):
                    ticket = (await browser.create_ticket())["ticket"]
                    opened.append(await browser.open_channel(ticket))
            return opened

        opened = runtime.run(open_all(), timeout=60)
        runtime.run(_settled(list(clusters.values())), timeout=30)
        before = {fix: cluster_counters(c) for fix, c in clusters.items()}
        started = time.monotonic()
        runtime.run(asyncio.sleep(seconds))  # the measurement window
        elapsed = time.monotonic() - started
        after = {fix: cluster_counters(c) for fix, c in clusters.items()}
        async def close_all() -> None:
            await asyncio.gather(*(ch.close() for ch in opened))

        runtime.run(close_all())
    finally:
        for cluster in clusters.values():
            cluster.stop()
    rows = []
    for fix in clusters:
        rate = (after[fix]["redis_total"] - before[fix]["redis_total"] - 1) / elapsed
        rows.append({"fix": fix, "open_channels": channels, "redis_per_s": round(rate, 1),
                     "redis_per_channel_per_s": round(rate / channels, 2)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# ticket_hash: what moves when a server is added or removed.

def moved_share(n_before: int, n_after: int, keys: int = 10000, vnodes: int = 160) -> dict[str, float]:
    """The share of ``keys`` random ticket ids whose server changes from ``n_before`` to
    ``n_after`` servers, with consistent hashing (the balancer's ring) and with ``hash % N``."""
    from servers.cluster import server_names

    before, after = server_names(n_before), server_names(n_after)
    ring_before, ring_after = HashRing(before, vnodes), HashRing(after, vnodes)
    ids = [f"ticket-{i}" for i in range(keys)]
    ring_moved = sum(ring_before.lookup(t) != ring_after.lookup(t) for t in ids)
    modulo_moved = sum(before[_hash64(t) % n_before] != after[_hash64(t) % n_after] for t in ids)
    return {"n_before": n_before, "n_after": n_after, "keys": keys,
            "consistent_pct": 100 * ring_moved / keys, "modulo_pct": 100 * modulo_moved / keys,
            "ideal_pct": 100 * abs(n_after - n_before) / max(n_after, n_before)}


def moved_table(ns: Iterable[int] = (2, 3, 4, 5, 6), keys: int = 10000) -> pd.DataFrame:
    """:func:`moved_share` for adding one server (N → N+1) and removing one (N → N-1)."""
    rows = []
    for n in ns:
        rows.append({"change": "add one", **moved_share(n, n + 1, keys)})
        if n > 1:
            rows.append({"change": "remove one", **moved_share(n, n - 1, keys)})
    return pd.DataFrame(rows)


def in_flight_when_adding(n: int = 2, logins: int = 12, *, balancer: str = "python", wait_s: float = 1.5,
                          name: str = "lesson08-flight") -> pd.DataFrame:
    """Logins in flight while a server joins a ``ticket_hash`` cluster.

    ``logins`` browsers open their channels and their phones scan; then a server joins the
    balancer; then the phones confirm. One row per login: ``channel_on`` (where the browser's
    channel stayed), ``confirm_on`` (where the confirm went after the change), ``moved``,
    ``ok``. A confirm whose ticket moved lands where no channel for it is: the login hangs.
    """
    from servers.cluster import server_names
    from servers.qrlogin.app import start_qrlogin

    cluster = start_fix_cluster("ticket_hash", n, balancer, name=name)
    try:
        async def open_and_scan() -> list[tuple[str, Any, AsyncPhone]]:
            flows = []
            for _ in range(logins):
                browser, phone = AsyncBrowser(cluster.url, "sse"), AsyncPhone(cluster.url)
                ticket = (await browser.create_ticket())["ticket"]
                channel = await browser.open_channel(ticket)
                await phone.login()
                await phone.scan(ticket)
                await channel.wait_for("scanned", 5)
                flows.append((ticket, channel, phone))
            return flows

        flows = runtime.run(open_and_scan(), timeout=60)
        joiner = server_names(n + 1)[-1]
        cluster.servers[joiner] = start_qrlogin(joiner, fix="ticket_hash", redis_url=cluster.redis_url)
        cluster.balancer.add_backend(cluster.servers[joiner], joiner)

        async def confirm(ticket: str, channel: Any, phone: AsyncPhone) -> dict[str, Any]:
            confirm_on = (await phone.confirm(ticket))["served_by"]
            try:
                seen = await channel.wait_for("confirmed", wait_s)
                ok = seen["state"] == "confirmed"
            except asyncio.TimeoutError:
                ok = False
            await channel.close()
            return {"ticket": ticket, "channel_on": channel.served_by, "confirm_on": confirm_on,
                    "moved": confirm_on != channel.served_by, "ok": ok}

        async def confirm_all() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(confirm(*flow) for flow in flows)))

        rows = runtime.run(confirm_all(), timeout=wait_s + 60)
    finally:
        cluster.stop()
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# A change while the browser reconnects: at most once (pubsub) against a durable log (streams).

async def _wait_until_gone(handle: Any, ticket: str, timeout: float = 5.0) -> None:
    """Until server ``handle`` has no channel for ``ticket`` (and, for pubsub, Redis has
    confirmed the unsubscribe): the browser is really away."""
    hub = handle.app.push
    deadline = time.monotonic() + timeout
    while ticket in hub.channels:  # the server notices the closed connection on its next read
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {handle.name} still holds a channel for {ticket} after {timeout} s")
        await asyncio.sleep(0.01)
    if hasattr(hub, "wait_confirmed"):
        await hub.wait_confirmed(ticket, subscribed=False, timeout=timeout)


def reconnect_gap(fix: str, *, name: str = "lesson08-gap", timeout: float = 5.0) -> dict[str, Any]:
    """The seed's story, with a reconnect in it: browser on A (SSE), phone on B.

    The browser sees ``pending`` (version 1), then its connection drops. While it is away the
    phone scans and confirms on B (versions 2 and 3). The browser reconnects to A with
    ``Last-Event-ID: 1``. Returns what it saw before and after, which states it never saw, and
    the hub counters that explain it (``published_to_nobody`` for pubsub, ``replayed`` for
    streams).
    """
    cluster = start_fix_cluster(fix, 2, "python", name=name)
    a, b = cluster.servers["A"], cluster.servers["B"]
    try:
        async def story() -> dict[str, Any]:
            browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(b.url)
            ticket = (await browser.create_ticket())["ticket"]
            first = SSEChannel(browser, ticket)
            await first.open()
            before = [e["state"] for e in first.events]
            await first.close()
            await _wait_until_gone(a, ticket, timeout)
            await phone.login()
            await phone.scan(ticket)
            await phone.confirm(ticket)
            again = SSEChannel(browser, ticket, last_event_id=first.version)
            await again.open()
            await again.wait_for("confirmed", timeout)
            after = [e["state"] for e in again.events]
            await again.close()
            return {"ticket": ticket, "before": before, "after": after}

        seen = runtime.run(story(), timeout=timeout * 4 + 10)
        counters = cluster_counters(cluster)
    finally:
        cluster.stop()
    made = ["pending", "scanned", "confirmed"]
    missed = [s for s in made if s not in seen["before"] + seen["after"]]
    return {"fix": fix, "seen before the drop": seen["before"], "seen after reconnecting": seen["after"],
            "never seen": missed, "published_to_nobody": counters.get("published_to_nobody", 0),
            "replayed_from_log": counters.get("replayed", 0)}


# ------------------------------------------------------------------------------------------------
# The closing table.

def closing_table(success: pd.DataFrame, latency: pd.DataFrame, costs: pd.DataFrame, idle: pd.DataFrame,
                  transport: str = "sse") -> pd.DataFrame:
    """One row per fix: success over every balancer and transport, the latency it adds and the
    per-login costs (for ``transport``), the idle Redis load, delivery semantics, real systems."""
    ok = success.groupby("fix")["ok"].mean().mul(100).round(1).rename("success_pct")
    lat = latency[latency["transport"] == transport].set_index("fix")[["added_p50_ms", "added_p99_ms"]]
    cost = costs[costs["transport"] == transport].set_index("fix")[
        ["redis_per_login", "messages_per_login", "bytes_per_login"]]
    base_redis = cost["redis_per_login"].get("none", 0.0)
    cost = cost.assign(added_redis_per_login=cost["redis_per_login"] - base_redis)
    idle_rate = idle.set_index("fix")["redis_per_channel_per_s"].rename("idle_redis_per_channel_per_s")
    table = pd.concat([ok, lat, cost[["added_redis_per_login", "messages_per_login", "bytes_per_login"]], idle_rate],
                      axis=1).reindex([f for f in FIXES if f in ok.index])
    table["delivery"] = [SEMANTICS[f] for f in table.index]
    table["real systems"] = [REAL_SYSTEMS[f] for f in table.index]
    table.index.name = "fix"
    return table.round(2).reset_index()


# ------------------------------------------------------------------------------------------------
# Exercise scaffolding: a hub of your own, on servers sharing one Redis.

class PubSubExerciseBase(PushHub):
    """The plumbing of a pattern-subscribed pub/sub backplane (Socket.IO's classic Redis adapter
    shape): ``start`` ``PSUBSCRIBE``s ``<ns>:events:*`` and a reader task hands every message's
    data to :meth:`on_message`. A subclass writes the two halves: :meth:`publish` and
    :meth:`on_message`.
    """

    name = "exercise_pubsub"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.pattern = f"{app.namespace}:events:*"
        self._pubsub = None
        self._reader: asyncio.Task | None = None

    def channel_of(self, ticket: str) -> str:
        """The Redis channel of one ticket's events: ``<ns>:events:<ticket>`` (matched by the pattern)."""
        return f"{self.app.namespace}:events:{ticket}"

    async def start(self) -> None:
        self._pubsub = self.app.redis.pubsub()
        await self._pubsub.psubscribe(self.pattern)
        while True:  # subscribed for real (Redis confirmed it) before the first request
            message = await self._pubsub.get_message(timeout=5)
            if message is None:
                raise RuntimeError(f"Redis did not confirm PSUBSCRIBE {self.pattern} within 5 s")
            if message["type"] == "psubscribe":
                break
        self._reader = asyncio.create_task(self._read(), name=f"{self.app.name}:exercise-reader")

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") == "pmessage":
                self.stats["messages_in"] += 1
                try:
                    self.on_message(message["data"])
                except Exception as exc:  # a learner's bug must show, not kill the reader
                    self.stats["on_message_errors"] += 1
                    self.stats[f"error: {exc!r}"[:120]] += 1

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            try:
                await asyncio.wait_for(self._pubsub.aclose(), 2)
            except Exception:
                pass

    async def publish(self, ticket: str, event: Event) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("publish the event on the ticket's Redis channel")

    def on_message(self, data: str) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("hand the event in data to this server's channels")


def start_with_hub(name: str, hub_class: type, redis_url: str, **settings: Any):
    """A QR-login server whose push hub is ``hub_class(app)`` (a fix of your own), on a free port."""
    from servers.qrlogin.app import make_qrlogin_app
    from servers.runtime import serve

    app = make_qrlogin_app(name, "none", redis_url, **settings)
    app.push = hub_class(app)
    app.fix = getattr(app.push, "name", hub_class.__name__)
    extra = app.push.routes()
    if extra:
        app.add_handlers(r".*", extra)
    return serve(app)


def start_pair(hub_class: type, redis_url: str, names: Sequence[str] = ("A", "B"), **settings: Any) -> list[Any]:
    """Servers (A and B) with the same hub class on one Redis: a two-server cluster without a balancer."""
    return [start_with_hub(name, hub_class, redis_url, **settings) for name in names]


def login_across(a: Any, b: Any, transport: str = "sse", timeout: float = 3.0) -> dict[str, Any]:
    """The seed's story exactly: the browser on server ``a``, the phone on server ``b``.
    A :func:`~servers.clients.qr.login_once` result (``ok``, ``latency_s``, ``error``, ...)."""
    return runtime.run(login_once_async(getattr(a, "url", a), transport, timeout, phone_url=getattr(b, "url", b)),
                       timeout=timeout + 60)
