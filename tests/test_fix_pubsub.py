"""The ``pubsub`` fix: a Redis pub/sub backplane carries a change made on B to the browser on A.

Also shown here: what pub/sub loses. Redis keeps no message, so a change published while the
browser's channel is down reaches no server, and the browser only learns the resulting *state*
when it reconnects (the channel's current-state-on-open); the intermediate event is gone.
"""
from __future__ import annotations

import asyncio

import pytest

from servers import runtime
from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing, find_nginx
from servers.clients.qr import TRANSPORTS, Browser, Phone, SSEChannel, login_many
from servers.cluster import start_cluster
from servers.qrlogin.app import start_qrlogin

FIX = "pubsub"

# -- Shared by the tests of the pubsub, registry and store fixes -----------------------------------
# (they import it as ``test_fix_pubsub``: pytest puts this folder on sys.path)


def nginx_missing() -> bool:
    try:
        find_nginx()
    except NginxMissing:
        return True
    return False


_NGINX = [pytest.mark.nginx, pytest.mark.skipif(nginx_missing(), reason=HOW_TO_GET_NGINX)]
CLUSTERS = [
    pytest.param(2, "python", id="N2-python"),
    pytest.param(3, "python", id="N3-python"),
    pytest.param(2, "nginx", id="N2-nginx", marks=_NGINX),
    pytest.param(3, "nginx", id="N3-nginx", marks=_NGINX),
]


def start_pair(fix: str, redis_url: str):
    """Two servers of one cluster: A holds the browser's channel, B gets the phone's calls."""
    return start_qrlogin("A", fix=fix, redis_url=redis_url), start_qrlogin("B", fix=fix, redis_url=redis_url)


def login_across(a, b, transport: str, ready=None, ready_for=("sse", "ws")) -> None:
    """Channel on A, scan and confirm on B; the browser must see ``confirmed`` and redeem.

    ``ready(app, ticket)`` (a coroutine function run on A) waits, for the transports in
    ``ready_for`` (by default the channels that stay open: SSE, WebSocket), until the fix knows
    where the channel is, so the phone's calls take the fix's normal path rather than the
    catch-up that closes the race.
    """
    browser = Browser(a.url, transport)
    ticket = browser.create_ticket()["ticket"]
    with browser.open_channel(ticket) as channel:
        if ready is not None and transport in ready_for:
            a.call(ready, ticket)
        phone = Phone(b.url)
        phone.login()
        phone.scan(ticket)
        assert phone.confirm(ticket)["served_by"] == "B"
        seen = channel.wait_for("confirmed", timeout=5)
        assert seen["state"] == "confirmed", f"the {transport} channel on A saw {seen}, not the confirm made on B"
        assert channel.served_by == "A"
    assert browser.redeem(ticket)["user"] == "alice"


def assert_every_cluster_login_completes(fix: str, redis_url: str, n: int, balancer: str) -> None:
    """10 logins per transport through a round-robin balancer in front of ``n`` servers: all complete."""
    with start_cluster(n, "round_robin", fix=fix, balancer=balancer, redis_url=redis_url) as cluster:
        crossed = 0
        for transport in TRANSPORTS:
            results = login_many(cluster.url, transport, n=10, concurrency=5, timeout=5)
            failed = [r["error"] for r in results if not r["ok"]]
            assert not failed, f"{len(failed)}/10 {transport} logins failed with fix={fix}: {failed[:3]}"
            crossed += sum(r["served_by_confirm"] != r["served_by_channel"] for r in results)
        assert crossed > 0, "round robin should have sent some confirms to another server than the channel's"


def assert_login_completes_after_redis_restarts(a, b, redis_server, ready=None) -> None:
    login_across(a, b, "sse", ready)
    redis_server.restart()  # every connection of both servers is dropped, and Redis comes back empty
    for transport in ("sse", "ws"):
        login_across(a, b, transport, ready)


# -- pubsub -------------------------------------------------------------------------------------------


async def subscribed(app, ticket: str) -> None:
    await app.push.wait_confirmed(ticket, True)


@pytest.fixture
def pair(redis_url):
    return start_pair(FIX, redis_url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_on_b_reaches_the_browser_on_a(pair, transport):
    a, b = pair
    login_across(a, b, transport, subscribed)
    sent, received = b.app.push.stats, a.app.push.stats
    assert sent["messages_out"] == 2, "B published the scan and the confirm on the backplane"
    if transport in ("sse", "ws"):  # subscribed before the phone acted: both changes crossed Redis to A
        assert sent["receivers"] == 2 and received["messages_in"] == 2, (dict(sent), dict(received))
    elif transport == "longpoll":  # each held request subscribes anew; a change racing it is caught up
        assert received["messages_in"] + received["catch_up"] >= 1, dict(received)


@pytest.mark.parametrize("n,balancer", CLUSTERS)
def test_every_login_completes_behind_a_round_robin_balancer(redis_url, n, balancer):
    assert_every_cluster_login_completes(FIX, redis_url, n, balancer)


def test_pubsub_is_at_most_once_a_change_published_while_the_browser_is_away_is_lost(pair, redis_server):
    """Browser on A disconnects; the phone scans and confirms on B; the browser reconnects.

    The ``scanned`` event (version 2) is published to no subscriber and is gone for good: Redis
    pub/sub stores nothing. The reconnected browser learns ``confirmed`` only from the
    current state its new channel sends on open - with ``Last-Event-ID: 1`` it still never
    receives version 2 (the ``streams`` fix replays it).
    """
    a, b = pair
    browser = Browser(a.url, "sse")
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    assert [e["version"] for e in channel.events] == [1]
    a.call(lambda app: app.push.wait_confirmed(ticket, True))  # the live path works ...
    channel.close()
    a.call(lambda app: app.push.wait_confirmed(ticket, False))  # ... and now A has left the ticket's channel
    redis = redis_server.client()
    assert redis.pubsub_numsub(f"qr:events:{ticket}") == [(f"qr:events:{ticket}", 0)]

    received_before = a.app.push.stats["messages_in"]
    nobody_before = b.app.push.stats["published_to_nobody"]
    phone = Phone(b.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    assert b.app.push.stats["published_to_nobody"] - nobody_before == 2, "both changes were published to nobody"
    assert a.app.push.stats["messages_in"] == received_before, "nothing reached A: Redis dropped the messages"

    # The browser comes back and resumes from the last event it saw.
    reconnected = SSEChannel(browser.client, ticket, last_event_id=1)
    runtime.run(reconnected.open())
    try:
        assert [(e["version"], e["state"]) for e in reconnected.events] == [(3, "confirmed")], (
            "the reconnected browser gets only the current state; the scanned event (v2) was lost")
    finally:
        runtime.run(reconnected.close())
    assert browser.redeem(ticket)["user"] == "alice", "the state still converged: the login completes"


def test_a_login_completes_after_redis_restarts(pair, redis_server):
    a, b = pair
    assert_login_completes_after_redis_restarts(a, b, redis_server, subscribed)
    assert a.app.push.stats["messages_in"] >= 2


def test_stop_ends_the_subscriber_task(pair):
    a, _ = pair
    reader = a.app.push._reader
    assert reader is not None and not reader.done()
    a.crash()  # a crashed server must not keep consuming from Redis
    assert reader.done()
    assert not any(t.get_name().startswith("A:pubsub") for t in runtime.call(lambda: list(asyncio.all_tasks())))
