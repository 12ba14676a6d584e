"""The ``registry`` fix: Redis says which server holds a ticket's channel; B forwards to it.

Also shown here: the registry entry's life (written with an expiry when a channel opens, removed
when it closes), the internal route refusing callers without the shared secret, and what a stale
entry left by a crashed server costs: a failed forward, counted, never a hang.
"""
from __future__ import annotations

import pytest
import requests

from servers import start_qrlogin
from servers.clients.qr import TRANSPORTS, Browser, Phone
from servers.qrlogin.fixes.registry import SECRET_HEADER
from test_fix_pubsub import (CLUSTERS, assert_every_cluster_login_completes,  # shared helpers
                             assert_login_completes_after_redis_restarts, login_across, start_pair)

FIX = "registry"


async def registered(app, ticket: str) -> None:
    await app.push.wait_registered(ticket, True)


@pytest.fixture
def pair(redis_url):
    return start_pair(FIX, redis_url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_on_b_reaches_the_browser_on_a(pair, transport):
    a, b = pair
    login_across(a, b, transport, registered, ready_for=("sse", "ws", "longpoll"))
    sent, received = b.app.push.stats, a.app.push.stats
    if transport in ("sse", "ws"):  # registered before the phone acted: B forwards scan and confirm
        assert sent["forwards"] == 2 and received["messages_in"] == 2, (dict(sent), dict(received))
        # The scan's lookup told B where the channel is: the confirm went there without waiting
        # for a second lookup (which still ran, and found nobody new).
        assert sent["forwarded_before_lookup"] == 1 and sent["redis_commands"] >= 2, dict(sent)
    elif transport == "longpoll":
        # The held request was registered before the scan, so B forwards at least the scan; the
        # confirm may meet the gap between two requests and be caught up by the next one instead.
        assert received["messages_in"] >= 1, dict(received)


@pytest.mark.parametrize("n,balancer", CLUSTERS)
def test_every_login_completes_behind_a_round_robin_balancer(redis_url, n, balancer):
    assert_every_cluster_login_completes(FIX, redis_url, n, balancer)


def open_registered_channel(a, transport: str = "sse"):
    """A browser's channel on A, returned once Redis has acknowledged A's registry entry."""
    browser = Browser(a.url, transport)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    a.call(lambda app: app.push.wait_registered(ticket, True))
    return browser, ticket, channel


def test_the_entry_is_written_with_an_expiry_on_open_and_removed_on_disconnect(pair, redis_server):
    a, _ = pair
    redis = redis_server.client()
    browser, ticket, channel = open_registered_channel(a, "ws")
    key = f"qr:where:{ticket}"
    assert redis.smembers(key) == {a.url}, "A registered itself as the holder of the ticket's channel"
    ttl_ms = redis.pttl(key)
    assert 0 < ttl_ms <= a.app.push.ttl * 1000, f"the entry must expire on its own (PTTL {ttl_ms})"
    channel.close()
    a.call(lambda app: app.push.wait_registered(ticket, False))
    assert not redis.exists(key), "the entry is removed when the browser's channel closes"


def test_the_internal_forward_needs_the_shared_secret(pair):
    a, b = pair
    assert a.app.push.secret and a.app.push.secret == b.app.push.secret, "the servers agree on one secret"
    browser, ticket, channel = open_registered_channel(a)
    forged = {"ticket": ticket, "state": "confirmed", "version": 99, "at": 0}
    for headers in ({}, {SECRET_HEADER: "not-the-secret"}, {SECRET_HEADER: ""}):
        response = requests.post(a.url + "/internal/deliver", json=forged, headers=headers, timeout=5)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "bad_internal_secret"
    assert a.app.push.stats["refused"] == 3
    good = {SECRET_HEADER: a.app.push.secret}
    response = requests.post(a.url + "/internal/deliver", json={"ticket": ticket, "state": "hacked", "version": 2},
                             headers=good, timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "bad_event", response.text
    # Nothing forged reached the browser: the next event it sees is the real scan, version 2.
    phone = Phone(b.url)
    phone.login()
    phone.scan(ticket)
    assert (channel.next(timeout=5)["version"], channel.events[-1]["state"]) == (2, "scanned")
    channel.close()


def test_a_stale_entry_left_by_a_crashed_server_is_a_counted_failed_forward_not_a_hang(pair, redis_server):
    a, b = pair
    redis = redis_server.client()
    browser, ticket, channel = open_registered_channel(a)
    phone = Phone(b.url, timeout=5)  # a hanging forward would make the confirm time out
    phone.login()
    phone.scan(ticket)
    channel.wait_for("scanned", timeout=5)
    a.crash()  # dies without cleaning up, as a killed process would
    assert redis.smembers(f"qr:where:{ticket}") == {a.url}, "the crashed server's entry is still there: stale"

    failed_before = b.app.push.stats["forward_failed"]
    answer = phone.confirm(ticket)
    assert answer["state"] == "confirmed", "the confirm itself succeeds: the state is in Redis"
    assert b.app.push.stats["forward_failed"] == failed_before + 1, dict(b.app.push.stats)
    assert b.app.push.stats["stale_removed"] == 1
    assert not redis.exists(f"qr:where:{ticket}"), "B removed the stale entry after the failed forward"


def test_a_login_completes_after_redis_restarts(pair, redis_server):
    a, b = pair
    assert_login_completes_after_redis_restarts(a, b, redis_server, registered)
    assert b.app.push.stats["forwards"] >= 2


def test_a_channel_that_moved_gets_the_change_though_the_cached_holder_is_stale(pair, redis_url):
    """The cache only adds a guess: the lookup still runs, and a holder the guess missed gets the
    forward. Channel on A; B forwards the scan there (and remembers A); the browser's channel moves
    to C; B's confirm reaches C, and the stale guess costs one forward that delivered nothing."""
    a, b = pair
    c = start_qrlogin("C", fix=FIX, redis_url=redis_url)
    browser, ticket, channel = open_registered_channel(a)
    phone = Phone(b.url, timeout=5)
    phone.login()
    phone.scan(ticket)
    channel.wait_for("scanned", timeout=5)
    assert b.app.push.holders_cache[ticket] == {a.url}
    channel.close()
    a.call(lambda app: app.push.wait_registered(ticket, False))
    moved = Browser(c.url, "sse")
    moved.client.cookies = browser.cookies  # the same browser, reconnected through another server
    with moved.open_channel(ticket) as elsewhere:
        c.call(lambda app: app.push.wait_registered(ticket, True))
        phone.confirm(ticket)
        assert elsewhere.wait_for("confirmed", timeout=5)["state"] == "confirmed"
    stats = b.app.push.stats
    assert stats["forwarded_before_lookup"] == 1 and stats["forward_missed"] == 1, dict(stats)
    assert c.app.push.stats["messages_in"] == 1, "C got the confirm once"
    assert b.app.push.holders_cache[ticket] == {c.url}, "the cache now holds what the lookup found"
