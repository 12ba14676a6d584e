"""The ``streams`` fix: a Redis Stream per ticket, and channels that resume from it.

What must hold: the browser's channel on A hears a confirm made on B, with every transport;
every login through a balanced cluster completes; and - the point of this fix - a change made
while the browser's connection is down (dropped, or its server crashed) reaches the browser when
it reconnects with its last id, every missed event once and in order, where ``pubsub`` loses it.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest
import tornado.httpclient
import tornado.websocket

from servers import runtime
from servers.clients.qr import (TRANSPORTS, AsyncBrowser, AsyncPhone, QRError, SSEChannel, WSChannel,
                                login_many)
from servers.cluster import start_cluster
from servers.clients.qr.raw import RawGet
from servers.qrlogin.app import start_qrlogin
from servers.qrlogin.fixes import streams
from servers.redisproc import start_redis

from tests.conftest import nginx_path

FIX = "streams"


@pytest.fixture
def pair(redis_url):
    """Two QR-login servers A and B sharing one Redis, both running ``fix``."""

    def start(fix: str = FIX):
        return start_qrlogin("A", fix=fix, redis_url=redis_url), start_qrlogin("B", fix=fix, redis_url=redis_url)

    return start


# -- recording what arrives on the wire ------------------------------------------------------------


def recording(channel):
    """Make ``channel`` keep every message as it arrived (``channel.raw``), before de-duplication."""
    channel.raw = []
    keep = channel._got

    def got(event):
        if event is not None:
            channel.raw.append((event["version"], event["state"]))
        keep(event)

    channel._got = got
    return channel


class ResumingWSChannel(WSChannel):
    """A WebSocket channel that reconnects with ``?after=v`` (the server replays what is newer)."""

    def __init__(self, browser, ticket, after: int) -> None:
        super().__init__(browser, ticket)
        self.after = after

    async def open(self) -> None:
        parts = urllib.parse.urlsplit(self.browser.base_url)
        request = tornado.httpclient.HTTPRequest(
            f"ws://{parts.netloc}/api/tickets/{self.ticket}/ws?after={self.after}",
            headers=self.browser.headers({"Origin": self.browser.origin}),
            network_interface=self.browser.source_address)
        self.conn = await tornado.websocket.websocket_connect(request, on_message_callback=self._on_message)
        self.served_by = self.conn.headers.get("X-Served-By")


async def open_recording(browser, ticket, transport: str, after: int = 0):
    """Open (or reopen, resuming after version ``after``) a recording SSE or WebSocket channel."""
    if transport == "sse":
        channel = recording(SSEChannel(browser, ticket, last_event_id=after))
    elif after:
        channel = recording(ResumingWSChannel(browser, ticket, after))
    else:
        channel = recording(WSChannel(browser, ticket))
    await asyncio.wait_for(channel.open(), 10)
    return channel


def channel_gone(handle, ticket) -> asyncio.Future:
    """A future that resolves when ``handle``'s server has no channel left for ``ticket``, so the
    test waits for the server to *notice* the browser left. Call it on the server loop."""
    future = asyncio.get_running_loop().create_future()
    hub = handle.app.push
    before = hub.on_last_unsubscribe

    def on_last_unsubscribe(t):
        before(t)
        if t == ticket and not future.done():
            future.set_result(True)

    hub.on_last_unsubscribe = on_last_unsubscribe
    if ticket not in hub.channels:
        future.set_result(True)
    return future


async def until_ended(channel) -> None:
    """Read the channel until it ends (EOFError); TimeoutError if it stays open."""
    with pytest.raises(EOFError):
        while True:
            await channel.next(5)


def delivered(*handles) -> int:
    """Events handed to a channel so far on these servers (read on the server loop)."""
    return sum(h.app.push.stats["delivered"] for h in handles)


# -- the generic checks every fix passes -----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_browser_on_a_hears_confirm_made_on_b(pair, transport):
    a, b = pair()

    async def scenario():
        browser, phone = AsyncBrowser(a.url, transport), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        channel = await browser.open_channel(ticket)
        await phone.login()
        await phone.scan(ticket)
        confirm = await phone.confirm(ticket)
        seen = await channel.wait_for("confirmed", timeout=5)
        await channel.close()
        return channel.served_by, confirm["served_by"], seen

    on, confirmed_on, seen = runtime.run(scenario())
    assert (on, confirmed_on) == ("A", "B"), "the browser's channel must be on A and the confirm on B"
    assert seen["state"] == "confirmed", f"the browser on A should see 'confirmed' made on B; it saw {seen}"


BALANCERS = ["python", pytest.param("nginx", marks=pytest.mark.nginx)]


@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.parametrize("n", [2, 3])
def test_every_login_completes_in_a_cluster(redis_url, n, balancer):
    if balancer == "nginx" and nginx_path() is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    with start_cluster(n, "round_robin", fix=FIX, balancer=balancer, redis_url=redis_url) as cluster:
        for transport in TRANSPORTS:
            results = login_many(cluster.url, transport, n=10, concurrency=10, timeout=5, poll_interval=0.05)
            failed = [r["error"] for r in results if not r["ok"]]
            assert not failed, f"{transport}: {len(failed)}/10 logins failed with fix={FIX}: {failed[:3]}"
            assert len({r["served_by_channel"] for r in results} | {r["served_by_confirm"] for r in results}) > 1


def test_redis_restart_then_a_login_still_completes(pair):
    redis = start_redis()
    try:
        a = start_qrlogin("A", fix=FIX, redis_url=redis.url)
        b = start_qrlogin("B", fix=FIX, redis_url=redis.url)

        async def login(transport):
            browser, phone = AsyncBrowser(a.url, transport), AsyncPhone(b.url)
            ticket = (await browser.create_ticket())["ticket"]
            channel = await browser.open_channel(ticket)
            await phone.login()
            await phone.scan(ticket)
            await phone.confirm(ticket)
            seen = await channel.wait_for("confirmed", timeout=5)
            await channel.close()
            return seen["state"]

        async def open_waiting_channel():
            browser = AsyncBrowser(a.url, "sse")
            ticket = (await browser.create_ticket())["ticket"]
            return await browser.open_channel(ticket)

        assert runtime.run(login("sse")) == "confirmed"
        waiting = runtime.run(open_waiting_channel())  # its follow loop is blocked in XREAD on A
        redis.restart()
        assert runtime.run(login("sse")) == "confirmed", "after Redis restarted, a new login must complete"
        assert runtime.run(login("ws")) == "confirmed"
        runtime.run(waiting.close())
    finally:
        runtime.stop_all()
        redis.stop()


# -- the point of this fix: nothing is lost while the browser is away -------------------------------


async def _away_during(a, b, transport: str, away_after: str):
    """The browser on A watches; it disconnects after seeing ``away_after``; the phone (on B)
    does the rest of the login; the browser reconnects to A with its last version.

    Returns what the reconnected channel received on the wire, and the events delivered live
    (to any channel) while it was away.
    """
    browser, phone = AsyncBrowser(a.url, transport), AsyncPhone(b.url)
    ticket = (await browser.create_ticket())["ticket"]
    channel = await open_recording(browser, ticket, transport)
    await phone.login()
    if away_after == "scanned":
        await phone.scan(ticket)
        await channel.wait_for("scanned", timeout=5)
    last = channel.version
    gone = channel_gone(a, ticket)
    await channel.close()
    await asyncio.wait_for(gone, 5)  # A has noticed: no channel of this ticket anywhere now
    before = delivered(a, b)
    if away_after == "pending":
        await phone.scan(ticket)
    await phone.confirm(ticket)
    live = delivered(a, b) - before
    again = await open_recording(browser, ticket, transport, after=last)
    await again.wait_for("confirmed", timeout=5)
    await again.close()
    return ticket, last, again.raw, live


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_confirm_while_browser_is_away_is_replayed_on_resume(pair, transport, redis_server):
    a, b = pair()
    ticket, last, raw, live = runtime.run(_away_during(a, b, transport, "scanned"))
    assert last == 2, "the browser saw 'scanned' (version 2) before it went away"
    assert live == 0, "no channel was open while the phone confirmed: nothing could be delivered live"
    log = redis_server.client().xrange(f"qr:stream:{ticket}")
    assert [entry_id for entry_id, _ in log] == ["2-0", "3-0"], f"the stream should log versions 2 and 3: {log}"
    assert redis_server.client().pttl(f"qr:stream:{ticket}") > 0, "the log must expire with the ticket"
    assert raw == [(3, "confirmed")], (
        f"resuming after version 2, the browser should receive exactly the missed 'confirmed', once; got {raw}")
    # The same sequence under pubsub: the confirm is published while nobody listens, and is gone.
    runtime.stop_all()
    a, b = pair("pubsub")
    ticket, last, raw, live = runtime.run(_away_during(a, b, transport, "scanned"))
    lost = b.call(lambda app: app.push.stats["published_to_nobody"])
    assert (live, lost) == (0, 1), f"pubsub: the live confirm should reach nobody (at most once); lost={lost}"
    assert not redis_server.client().exists(f"qr:stream:{ticket}"), "pubsub keeps no log"
    assert raw == [(3, "confirmed")], f"pubsub: only the current state, read from Redis on reconnect, saves it: {raw}"


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_every_missed_event_in_order_once_where_pubsub_loses_one(pair, transport):
    """Away after 'pending': the phone scans and confirms. Streams replays both; pubsub cannot."""
    a, b = pair(FIX)
    _, last, raw, _ = runtime.run(_away_during(a, b, transport, "pending"))
    assert last == 1
    assert raw == [(2, "scanned"), (3, "confirmed")], (
        f"streams: the browser should receive both missed events, in order, once; got {raw}")
    runtime.stop_all()
    a, b = pair("pubsub")
    _, last, raw, live = runtime.run(_away_during(a, b, transport, "pending"))
    assert live == 0, "pubsub: the live events reached no channel (at-most-once: nobody was listening)"
    assert raw == [(3, "confirmed")], (
        f"pubsub keeps no log: a resuming browser gets only the current state, 'scanned' is lost; got {raw}")


def test_longpoll_resumes_from_the_state_it_knew(pair):
    """Long polling resumes by its ``state`` argument: the confirm made while no poll was held arrives."""
    a, b = pair()

    async def scenario():
        browser, phone = AsyncBrowser(a.url, "longpoll"), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        await phone.login()
        await phone.scan(ticket)
        await phone.confirm(ticket)  # no long poll held anywhere now
        body, _ = await browser.request("GET", f"/api/tickets/{ticket}/longpoll?state=scanned&timeout=5")
        return body

    body = runtime.run(scenario())
    assert (body["state"], body["version"], body["timed_out"]) == ("confirmed", 3, False), body


def test_ws_after_message_replays_the_log(pair):
    """``{"after": v}`` on an open socket replays every logged change after ``v``, from the stream."""
    a, b = pair()

    async def scenario():
        browser, phone = AsyncBrowser(a.url, "ws"), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        await phone.login()
        await phone.scan(ticket)
        channel = await open_recording(browser, ticket, "ws")  # first message: the current state (scanned)
        channel.version = 0  # let the client show repeats too: the replay is what we asked for
        await channel.send_after(0 + 1)
        replayed = await channel.next(5)
        await channel.close()
        return channel.raw, replayed

    raw, replayed = runtime.run(scenario())
    assert raw == [(2, "scanned"), (2, "scanned")], f"the current state, then the replay of version 2; got {raw}"
    assert replayed["state"] == "scanned"


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_browser_server_crashes_mid_login_and_resumes_on_another(redis_url, transport):
    with start_cluster(2, "round_robin", fix=FIX, redis_url=redis_url) as cluster:

        async def scenario():
            browser, phone = AsyncBrowser(cluster.url, transport), AsyncPhone(cluster.url)
            ticket = (await browser.create_ticket())["ticket"]
            channel = await open_recording(browser, ticket, transport)
            await phone.login()
            await phone.scan(ticket)
            await channel.wait_for("scanned", timeout=5)
            return browser, phone, ticket, channel

        browser, phone, ticket, channel = runtime.run(scenario())
        crashed = channel.served_by
        cluster.crash(crashed)
        runtime.run(until_ended(channel))  # the browser sees its connection end with the server
        cluster.balancer.remove_backend(crashed)  # what the balancer's health check would do
        survivor = next(name for name in cluster.servers if name != crashed)

        async def after_crash():
            confirm = await phone.confirm(ticket)
            again = await open_recording(browser, ticket, transport, after=2)
            seen = await again.wait_for("confirmed", timeout=5)
            redeemed = await browser.redeem(ticket)
            await again.wait_for("redeemed", timeout=5)
            await again.close()
            return confirm, again, seen, redeemed

        confirm, again, seen, redeemed = runtime.run(after_crash())
        assert confirm["served_by"] == survivor and again.served_by == survivor
        assert again.raw == [(3, "confirmed"), (4, "redeemed")], (
            f"the reconnected browser should get the missed 'confirmed' once, then 'redeemed': {again.raw}")
        assert redeemed["user"] == "alice"
        followers = cluster.servers[crashed].call(lambda app: dict(app.push.followers))
        assert followers == {}, f"the crashed server must not keep following streams: {followers}"


def test_stop_ends_the_follower(pair):
    a, _ = pair()

    async def open_channels():
        browser = AsyncBrowser(a.url, "sse")
        return [await browser.open_channel((await browser.create_ticket())["ticket"]) for _ in range(3)]

    channels = runtime.run(open_channels())
    followed, follower = a.call(lambda app: (sorted(app.push.followers), app.push.follower))
    assert sorted(c.ticket for c in channels) == followed, "every ticket held on A is followed"
    assert follower is not None and not follower.done(), "by one follower task"
    a.stop()
    assert follower.done(), "stop() must end the follower"
    for channel in channels:
        runtime.run(channel.close())


def test_unknown_ticket_and_bad_resume_ids_are_clear_errors(pair):
    a, _ = pair()

    async def scenario():
        browser = AsyncBrowser(a.url, "sse")
        ticket = (await browser.create_ticket())["ticket"]
        errors = []
        for path in (f"/api/tickets/{ticket}/events?lastEventId=abc", f"/api/tickets/{ticket}/ws?after=-1",
                     "/api/tickets/nosuchticket/events"):
            try:
                await browser.request("GET", path)
            except QRError as exc:
                errors.append((exc.status, exc.error))
        return errors

    assert runtime.run(scenario()) == [(400, "bad_last_event_id"), (400, "bad_argument"), (404, "unknown_ticket")]


def test_stats_count_redis_commands_and_bytes(pair):
    a, b = pair()

    async def scenario():
        browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        channel = await browser.open_channel(ticket)
        await phone.login()
        await phone.scan(ticket)
        await phone.confirm(ticket)
        await channel.wait_for("confirmed", timeout=5)
        await channel.close()

    runtime.run(scenario())
    stats_b = b.call(lambda app: dict(app.push.stats))
    stats_a = a.call(lambda app: dict(app.push.stats))
    assert stats_b["redis_commands"] == 4, f"B: XADD + PEXPIRE for scan and for confirm: {stats_b}"
    assert stats_b["bytes_out"] > 100 and stats_b["messages_out"] == 2
    assert stats_a["messages_in"] >= 2 and stats_a["bytes_in"] >= stats_b["bytes_out"] // 2, stats_a
    assert json.dumps(stats_a)  # plain numbers: lesson 08 puts them in a DataFrame


# -- the real thing: Chromium's EventSource reconnects by itself, with Last-Event-ID ----------------


@pytest.mark.browser
def test_chromium_resumes_after_its_server_crashes(redis_url, page):
    """The page's EventSource loses its server mid-login, reconnects (``Last-Event-ID: 2``) through
    the balancer to the other server, and still hears the confirm made while it was away."""
    from servers.clients.qr import Phone

    with start_cluster(2, "round_robin", fix=FIX, redis_url=redis_url) as cluster:
        page.goto(f"{cluster.url}/login?transport=sse")
        page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
        ticket = page.text_content("#ticket")
        phone = Phone(cluster.url)
        phone.login()
        phone.scan(ticket)
        page.wait_for_function("document.getElementById('state').textContent === 'scanned'", timeout=15000)
        log = cluster.routing_log()
        holder = log[log["route"] == "/api/tickets/{id}/events"]["backend"].iloc[-1]
        cluster.crash(holder)
        cluster.balancer.remove_backend(holder)  # the health check; Chromium retries after `retry: 1000`
        page.wait_for_function("document.getElementById('log').textContent.includes('connection lost')",
                               timeout=15000)
        phone.confirm(ticket)  # lands on the survivor, while the page is (or was just) reconnecting
        page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
        assert page.text_content("#status") == "logged in as alice"
        assert "sse: confirmed (version 3)" in page.text_content("#log"), page.text_content("#log")
        log = cluster.routing_log()
        streams = log[log["route"] == "/api/tickets/{id}/events"]
        assert list(streams["backend"])[:1] == [holder] and set(streams["backend"][1:]) == {
            name for name in cluster.servers if name != holder}, streams


def test_a_change_is_logged_in_the_same_step_as_the_state(pair):
    """A server that dies right after the state change (before it could publish) leaves no hole
    in the log: the transition script appended the event itself, byte for byte as Python writes it."""
    a, _ = pair()

    async def change_and_die():
        browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(a.url)
        ticket = (await browser.create_ticket())["ticket"]
        await phone.login()
        store = a.app.tickets
        scanned, changed = await store.transition(ticket, ("pending",), "scanned", set_fields={"user": "alice"})
        # ... and no app.push.publish(): the server "died" here
        entries = await a.app.redis.xrange(a.app.push.key(ticket))
        current, _ = await store.get(ticket)  # a read that changes nothing logs nothing
        return changed, scanned.event(), entries, current, await a.app.redis.xlen(a.app.push.key(ticket))

    changed, event, entries, current, length = runtime.run(change_and_die())
    assert changed and [entry_id for entry_id, _ in entries] == ["2-0"], entries
    assert entries[0][1]["event"] == json.dumps(event, separators=(",", ":")), (entries, event)
    assert current.version == 2 and length == 1


def test_lazy_expiry_is_logged_too(redis_url):
    a = start_qrlogin("A", fix=FIX, redis_url=redis_url, ticket_ttl=0.2)

    async def expire():
        ticket = (await AsyncBrowser(a.url, "sse").create_ticket())["ticket"]
        while True:  # until the first read past expires_at moves it to 'expired'
            _, expired_event = await a.app.tickets.get(ticket)
            if expired_event is not None:
                break
            await asyncio.sleep(0.05)
        entries = await a.app.redis.xrange(a.app.push.key(ticket))
        return expired_event, entries

    expired_event, entries = runtime.run(expire())
    assert expired_event["state"] == "expired" and expired_event["version"] == 2
    assert [json.loads(fields["event"]) for _, fields in entries] == [expired_event]


def test_a_local_publish_never_skips_ahead_of_the_channel(pair):
    """The server that makes change 3 holds a channel that has only version 1 (its follow loop is
    behind, e.g. retrying after a Redis restart): handing it 3 now would make it drop 2 when the
    loop brings it. It gets 3 only once it has 2 (the loop delivers both, in order)."""
    a, _ = pair()

    async def scenario():
        ticket = (await AsyncBrowser(a.url, "sse").create_ticket())["ticket"]
        got = []
        sub = a.app.push.subscribe(ticket, lambda event: got.append(event["version"]), after=1)
        try:
            event = {"ticket": ticket, "at": 0.0}
            await a.app.push.publish(ticket, {**event, "state": "confirmed", "version": 3})
            skipped = list(got)
            await a.app.push.publish(ticket, {**event, "state": "scanned", "version": 2})
            await a.app.push.publish(ticket, {**event, "state": "confirmed", "version": 3})
            return skipped, got
        finally:
            sub.close()

    skipped, got = runtime.run(scenario())
    assert skipped == [] and got == [2, 3]


# -- one follower per server, however many tickets it follows ---------------------------------------


async def _follow_many(a, b, count: int) -> tuple[dict[str, list[int]], int, int]:
    """``count`` new tickets, each subscribed to on A (as a channel does), each scanned through B's
    store with no publish from B: only A's follower can bring the change. Returns the versions each
    subscription received, how many connections A has open to Redis once all arrived (subscriptions
    still open), and A's Redis errors."""
    store, hub = b.app.tickets, a.app.push
    tickets = [(await store.create(bind_secret="s", ip="127.0.0.1", ua="test", scan_url_for=str, created_by="B")).id
               for _ in range(count)]
    got: dict[str, list[int]] = {ticket: [] for ticket in tickets}
    everyone = asyncio.get_running_loop().create_future()

    def receiver(ticket):
        def on_event(event):
            got[ticket].append(event["version"])
            if all(got.values()) and not everyone.done():
                everyone.set_result(None)
        return on_event

    subs = [hub.subscribe(ticket, receiver(ticket), after=1) for ticket in tickets]
    try:
        assert len(hub.followers) >= count and not hub.follower.done()
        for ticket in tickets:
            await store.transition(ticket, ("pending",), "scanned", set_fields={"user": "alice"})
        await asyncio.wait([everyone], timeout=20)  # the assertions say how many got theirs
        clients = await b.app.redis.client_list()  # B's pool: counting must not open one of A's
        return got, sum(1 for c in clients if c.get("name") == "streams-scale-A"), hub.stats["redis_errors"]
    finally:
        for sub in subs:
            sub.close()


def test_one_follower_serves_hundreds_of_tickets_on_a_small_pool(redis_url):
    """A follows 300 tickets with a Redis pool of 8 connections: every subscription gets its change,
    and A holds as few connections at 300 tickets as at 30 (one XREAD names every stream). With a
    connection per followed ticket, 292 of them never got one ("Too many connections")."""
    pool = 8
    a = start_qrlogin("A", fix=FIX, redis_url=f"{redis_url}?max_connections={pool}&client_name=streams-scale-A")
    b = start_qrlogin("B", fix=FIX, redis_url=redis_url)
    got_few, clients_few, _ = runtime.run(_follow_many(a, b, 30), timeout=60)
    got_many, clients_many, errors = runtime.run(_follow_many(a, b, 300), timeout=60)
    for got in (got_few, got_many):
        missing = sum(1 for versions in got.values() if versions != [2])
        assert missing == 0, f"{missing} of {len(got)} subscriptions did not get version 2 (once)"
    assert errors == 0, "no Redis call of A may fail for want of a connection"
    assert clients_few <= 3 and clients_many <= 3, (
        f"A's connections to Redis (CLIENT LIST): {clients_few} at 30 tickets, {clients_many} at 300; "
        "the follower needs one, however many tickets it reads")
    assert a.call(lambda app: sum(1 for t in app.push.tasks if t.get_name().endswith("streams-follow"))) == 1


def test_a_newly_followed_ticket_is_read_while_the_follower_is_blocked(pair, monkeypatch):
    """The follower is blocked in an XREAD that does not name the new ticket - here for ever
    (``BLOCK 0``), so no timeout can save it: following the ticket must wake that XREAD, and the
    change made right after arrives."""
    monkeypatch.setattr(streams, "FOLLOW_BLOCK_MS", 0)
    a, b = pair()

    async def scenario():
        hub = a.app.push
        browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(b.url)
        first = await browser.open_channel((await browser.create_ticket())["ticket"])
        await hub.wait_until(lambda: hub._reading)  # blocked, naming the first ticket only
        second = await browser.open_channel((await browser.create_ticket())["ticket"])
        await phone.login()
        await phone.scan(second.ticket)
        seen = await second.wait_for("scanned", timeout=5)
        await first.close()
        await second.close()
        return seen["state"], hub.stats["redis_errors"]

    assert runtime.run(scenario()) == ("scanned", 0)


# -- a resume the log cannot honour is said, never silent ---------------------------------------


async def _resume_after_loss(a, b, redis_server, transport: str, after: int, drop_log: bool):
    """A login to 'confirmed' with no channel open, the log then deleted (as if expired) or kept;
    a browser then resumes after version ``after``. Returns the resumed channel once it has
    'confirmed', and what the raw SSE wire said (for SSE)."""
    browser, phone = AsyncBrowser(a.url, transport), AsyncPhone(b.url)
    ticket = (await browser.create_ticket())["ticket"]
    await phone.login()
    await phone.scan(ticket)
    await phone.confirm(ticket)
    if drop_log:
        redis_server.client().delete(f"qr:stream:{ticket}")
    channel = await open_recording(browser, ticket, transport, after=after)
    await channel.wait_for("confirmed", timeout=5)
    if channel.gaps:
        await asyncio.wait_for(channel._reload, 5)  # the browser reloaded the state
    await channel.close()
    return channel


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_resume_the_log_no_longer_has_starts_with_a_gap_notice(pair, redis_server, transport):
    a, b = pair()
    channel = runtime.run(_resume_after_loss(a, b, redis_server, transport, after=1, drop_log=True))
    assert len(channel.gaps) == 1, f"one gap notice: {channel.gaps}"
    gap = {k: v for k, v in channel.gaps[0].items() if k != "received_at"}
    assert gap == {"type": "gap", "ticket": channel.ticket, "missed": {"from": 2, "to": 2}, "first": 3}, gap
    shown = [(event["version"], event["state"]) for event in channel.events]
    assert channel.raw[:1] == [(3, "confirmed")] and shown == [(3, "confirmed")], (channel.raw, shown)
    assert channel.reloads == 1, "the browser reloads the state once"
    assert a.call(lambda app: app.push.stats["not_recovered"]) == 1


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_a_recovered_resume_has_no_gap_notice(pair, redis_server, transport):
    a, b = pair()
    channel = runtime.run(_resume_after_loss(a, b, redis_server, transport, after=1, drop_log=False))
    assert channel.gaps == [] and channel.reloads == 0
    assert channel.raw == [(2, "scanned"), (3, "confirmed")], channel.raw


def test_a_resume_id_the_ticket_never_reached_is_a_reset(pair, redis_server):
    """``Last-Event-ID: 9`` for a ticket at version 3: not one of this store's ids. The channel is
    told (``reset``) and gets the current state, though its version is below the id it sent."""
    a, b = pair()
    channel = runtime.run(_resume_after_loss(a, b, redis_server, "sse", after=9, drop_log=False))
    gap = {k: v for k, v in channel.gaps[0].items() if k != "received_at"}
    assert gap == {"type": "gap", "ticket": channel.ticket, "missed": None, "first": 3, "reset": True}, gap
    assert channel.raw[:1] == [(3, "confirmed")] and [e["version"] for e in channel.events] == [3]


def test_the_gap_notice_on_the_sse_wire_is_a_named_event_without_id(pair, redis_server):
    """Written as ``event: gap`` with no ``id:`` line, so an EventSource's Last-Event-ID stays put."""
    a, b = pair()

    async def scenario():
        browser, phone = AsyncBrowser(a.url, "sse"), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        await phone.login()
        await phone.scan(ticket)
        await phone.confirm(ticket)
        redis_server.client().delete(f"qr:stream:{ticket}")
        request = RawGet(browser, f"/api/tickets/{ticket}/events", {"Accept": "text/event-stream",
                                                                      "Last-Event-ID": "1"})
        await request.start()
        received = b""
        async for data in request.chunks():
            received += data
            if b"confirmed" in received:
                break
        request.close()
        return received.decode()

    text = runtime.run(scenario())
    gap = text.split("event: gap\n", 1)[1].split("\n\n", 1)[0]
    assert gap.startswith("data: {") and "id:" not in gap, text
    assert json.loads(gap[len("data: "):])["missed"] == {"from": 2, "to": 2}
    assert text.index("event: gap") < text.index("id: 3"), text


@pytest.mark.browser
def test_chromium_login_page_reloads_the_state_after_a_gap(redis_url, redis_server, page):
    """The page's EventSource loses its server (stopped); while it is away the phone scans and
    confirms, and the ticket's log is lost. Its reconnect (``Last-Event-ID: 1``, held until then)
    reaches the restarted server, which cannot replay version 2: the page gets the gap event,
    reloads the state, and still logs in."""
    from servers.clients.qr import Phone
    from servers.qrlogin.app import make_qrlogin_app
    from servers.runtime import serve

    a = start_qrlogin("A", fix=FIX, redis_url=redis_url, sse_retry_ms=200)
    page.goto(f"{a.url}/login?transport=sse")
    page.wait_for_function("document.getElementById('log').textContent.includes('sse: pending (version 1)')",
                           timeout=15000)
    ticket = page.text_content("#ticket")
    held = []
    page.route("**/events", lambda route: held.append(route))  # the reconnect waits here
    port = a.port
    with page.expect_request("**/events", timeout=15000):
        a.stop()
    a = serve(make_qrlogin_app("A", FIX, redis_url, sse_retry_ms=200), port=port)
    phone = Phone(a.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    redis_server.client().delete(f"qr:stream:{ticket}")  # as if the log had expired
    page.unroute("**/events")
    for route in held:
        route.continue_()
    page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    log = page.text_content("#log")
    assert 'sse: gap {"from":2,"to":2}, reloading the state' in log, log
    assert "confirmed (version 3)" in log, log
