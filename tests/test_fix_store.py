"""The ``store`` fix: each server polls Redis for the tickets whose channels it holds.

Also shown here: its cost structure. One poll task per ticket held (not per channel, not per
server), stopped when the last channel for the ticket closes and when the server stops, each
poll a fixed number of Redis commands - so Redis load grows in proportion to open tickets.
"""
from __future__ import annotations

import asyncio

import pytest

from servers import runtime
from servers.clients.qr import TRANSPORTS, Browser
from servers.qrlogin.fixes.store import StoreHub
from test_fix_pubsub import (CLUSTERS, assert_every_cluster_login_completes,  # shared helpers
                             assert_login_completes_after_redis_restarts, login_across, start_pair)

FIX = "store"


@pytest.fixture
def pair(redis_url):
    return start_pair(FIX, redis_url)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_on_b_reaches_the_browser_on_a(pair, transport):
    a, b = pair
    login_across(a, b, transport)
    if transport in ("sse", "ws"):  # (a long poll may read the change itself when it is re-sent)
        assert a.app.push.stats["poll_deliveries"] >= 1, "A's poll of Redis found the change made on B"
    assert b.app.push.stats["polls"] == 0, "B held no channel, so it polled nothing"


@pytest.mark.parametrize("n,balancer", CLUSTERS)
def test_every_login_completes_behind_a_round_robin_balancer(redis_url, n, balancer):
    assert_every_cluster_login_completes(FIX, redis_url, n, balancer)


def poll_tasks(prefix: str) -> list[asyncio.Task]:
    """Poll tasks alive on the server loop whose name starts with ``prefix`` (e.g. ``A:store-poll``)."""
    return runtime.call(lambda: [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix) and not t.done()])


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_the_poll_task_stops_when_the_channel_closes(pair, transport):
    a, _ = pair
    browser = Browser(a.url, transport)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    second = browser.open_channel(ticket)  # a second tab: still one poll task for the ticket
    (task,) = a.call(lambda app: (app.push.poll_tasks[ticket],))  # a tuple: call() would await a bare task
    assert [t.get_name() for t in poll_tasks("A:store-poll")] == [f"A:store-poll:{ticket}"]
    channel.close()
    assert not task.done(), "one channel for the ticket is still open: keep polling"
    second.close()
    runtime.call(lambda: asyncio.wait([task], timeout=5))  # returns when the server noticed the close and cancelled
    assert task.cancelled()
    assert ticket not in a.app.push.poll_tasks and poll_tasks("A:store-poll") == [], "no leaked poll task"
    assert a.app.push.stats["poll_tasks_started"] == a.app.push.stats["poll_tasks_stopped"] == 1


def test_stopping_the_server_stops_every_poll_task(pair):
    a, _ = pair
    channels = []
    for _ in range(3):
        browser = Browser(a.url, "sse")
        channels.append(browser.open_channel(browser.create_ticket()["ticket"]))
    assert len(poll_tasks("A:store-poll")) == 3
    a.crash()  # a crashed server must not keep polling Redis
    assert poll_tasks("A:store-poll") == []


def redis_poll_commands(redis) -> int:
    """How many polls Redis itself saw (INFO commandstats): each poll runs the ticket script once.

    (``cmdstat_hgetall`` would count the HGETALL inside the script too, so it is not used.)
    """
    return redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def after_polls(a, reference: str, polls: int) -> None:
    """Return once ``reference``'s poll task has polled ``polls`` more times (a poll listener)."""

    def arm() -> asyncio.Future:
        done, seen = asyncio.get_running_loop().create_future(), [0]

        def listener(ticket: str) -> None:
            if ticket == reference:
                seen[0] += 1
                if seen[0] == polls and not done.done():
                    a.app.push.poll_listeners.remove(listener)
                    done.set_result(None)

        a.app.push.poll_listeners.append(listener)
        return done

    runtime.call(arm, timeout=10)  # call() awaits the returned future on the server loop


def commands_while_reference_polls(a, redis, reference: str, polls: int) -> tuple[int, int]:
    """(Redis poll commands, hub polls) in the window in which ``reference``'s task polls ``polls`` times."""
    after_polls(a, reference, 1)
    start = redis_poll_commands(redis), a.call(lambda app: app.push.stats["polls"])
    after_polls(a, reference, polls)
    end = redis_poll_commands(redis), a.call(lambda app: app.push.stats["polls"])
    return end[0] - start[0], end[1] - start[1]


def test_the_redis_command_rate_is_proportional_to_open_tickets(pair, redis_server):
    """Same time window (one ticket's task polling 5 times), 1 ticket open vs 4: 4x the Redis work.

    Counted twice: by the hub (``stats["polls"]``) and by Redis itself (``INFO commandstats``).
    """
    a, _ = pair
    redis = redis_server.client()
    channels, tickets = [], []

    def open_ticket() -> None:
        browser = Browser(a.url, "ws")
        ticket = browser.create_ticket()["ticket"]
        channels.append(browser.open_channel(ticket))
        tickets.append(ticket)

    open_ticket()
    one_redis, one_polls = commands_while_reference_polls(a, redis, tickets[0], polls=5)
    for _ in range(3):
        open_ticket()
    four_redis, four_polls = commands_while_reference_polls(a, redis, tickets[0], polls=5)

    assert 4 <= one_polls <= 6 and abs(one_redis - one_polls) <= 1, (one_redis, one_polls)
    assert 4 * 5 - 4 <= four_polls <= 4 * 5 + 4, f"4 tickets, each polled about 5 times: {four_polls} polls"
    assert abs(four_redis - four_polls) <= 4, f"Redis saw {four_redis} polls, the hub made {four_polls}"
    assert 3.0 <= four_redis / one_redis <= 5.0, f"1 ticket: {one_redis} polls; 4 tickets: {four_redis}"
    assert a.app.push.stats["redis_commands"] == StoreHub.commands_per_poll * a.app.push.stats["polls"]
    for channel in channels:
        channel.close()


def test_a_login_completes_after_redis_restarts(pair, redis_server):
    a, b = pair
    assert_login_completes_after_redis_restarts(a, b, redis_server)
    assert a.app.push.stats["poll_errors"] + a.app.push.stats["poll_deliveries"] >= 2
