"""A Redis killed outright (SIGKILL, no SAVE) comes back with what its persistence kept, no more.

The lessons' Redis writes nothing to disk by itself (``save ""``, ``appendonly no``): after a
kill it has what the last ``SAVE`` wrote. With the append-only file on, every write it
acknowledged is replayed (a killed process has already handed its writes to the kernel; what
``appendfsync everysec`` may lose is a machine's last second, which no test here can cut). A
browser resuming from a version the restored store never reached gets the ``streams`` fix's gap
notice with ``reset``: its way of saying the history it relied on is gone (Centrifugo's epoch).
"""
from __future__ import annotations

import asyncio

import pytest
import requests

from servers.redisproc import start_redis


@pytest.fixture
def fresh_redis():
    started = []

    def factory(**kwargs):
        handle = start_redis(**kwargs)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        handle.stop()


def test_a_killed_redis_keeps_only_its_last_snapshot(fresh_redis):
    redis = fresh_redis()
    client = redis.client()
    assert redis.persistence()["appendonly"] == "no" and redis.persistence()["save"] == ""
    client.set("before", "1")
    client.xadd("history", {"v": "1"}, id="1-0")
    client.save()
    client.set("after", "2")
    client.xadd("history", {"v": "2"}, id="2-0")
    redis.restart(hard=True)
    client = redis.client()
    assert client.get("before") == "1" and client.get("after") is None, "what came after the snapshot is gone"
    assert [entry_id for entry_id, _ in client.xrange("history")] == ["1-0"], "the stream's history too"


def test_a_graceful_restart_after_save_keeps_everything(fresh_redis):
    redis = fresh_redis()
    client = redis.client()
    client.set("k", "v")
    client.xadd("history", {"v": "1"}, id="1-0")
    client.save()
    redis.restart()
    assert redis.client().get("k") == "v" and redis.client().xlen("history") == 1


def test_with_the_append_only_file_a_kill_loses_no_acknowledged_write(fresh_redis):
    redis = fresh_redis(appendonly=True, appendfsync="everysec")
    assert redis.persistence()["appendonly"] == "yes" and redis.persistence()["appendfsync"] == "everysec"
    client = redis.client()
    for i in range(50):
        client.xadd("history", {"v": str(i)}, id=f"{i + 1}-0")
    redis.restart(hard=True)
    assert redis.client().xlen("history") == 50


def test_appendfsync_must_be_one_of_redis_values(fresh_redis):
    with pytest.raises(ValueError, match="everysec"):
        fresh_redis(appendfsync="sometimes")


def test_the_browser_notices_lost_history_through_the_gap_notice(fresh_redis):
    """Snapshot at version 1, scan and confirm (version 3), kill: the ticket is back at version 1,
    and a browser resuming from 3 is told its history is gone (``reset``) before the state."""
    from servers.clients.qr import AsyncBrowser, SSEChannel
    from servers.cluster import start_cluster
    from servers.runtime import run

    redis = fresh_redis()
    with start_cluster(1, fix="streams", redis_url=redis.url, name="redis-kill-test") as cluster:
        ticket = requests.post(cluster.url + "/api/tickets", timeout=10).json()["ticket"]
        redis.client().save()
        phone = cluster.phone()
        phone.login()
        phone.scan(ticket)
        phone.confirm(ticket)
        redis.restart(hard=True)

        async def resume() -> SSEChannel:
            channel = SSEChannel(AsyncBrowser(cluster.url, "sse"), ticket, last_event_id=3)
            await asyncio.wait_for(channel.open(), 10)
            await channel.close()
            return channel

        channel = run(resume(), timeout=20)
    assert len(channel.gaps) == 1 and channel.gaps[0]["reset"] is True, channel.gaps
    assert channel.state == "pending" and channel.version == 1, (channel.state, channel.version)
