"""The QR-login app's own bounds: push channels that never grow without limit, tickets per client
address, and an embedded Redis that is private, bounded, and says so when full.

Slow consumers are made the way tests/conftest.py's ``fill_a_stalled_socket`` makes them for the
feed: in one turn of the server loop, one message bigger than every socket buffer (its write
cannot finish), then a few small ones, which wait in the channel's outbox until it is full. No
timing is involved: nothing can drain between the writes.
"""
from __future__ import annotations

import json
import socket

import psutil
import pytest
import redis
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from servers.clients._common import wait_until
from servers.qrlogin import start_qrlogin
from servers.redisproc import start_redis

BIG = "x" * 16_000_000  # more than the kernel's socket buffers take at once


def create_ticket(url: str, address: str | None = None) -> requests.Response:
    headers = {"X-Forwarded-For": address} if address else {}
    return requests.post(url + "/api/tickets", headers=headers, timeout=10)


def stall_and_overflow(stalled: str, other: str):
    """On the server loop: one huge event to ``stalled``'s channel, then 4 small ones (outbox_limit=3),
    and one small event to ``other``'s. Returns the server's dropped-slow count."""

    def run(app) -> int:
        app.push.deliver_local({"ticket": stalled, "state": "scanned", "version": 10, "at": 0.0, "pad": BIG})
        for version in range(11, 15):
            app.push.deliver_local({"ticket": stalled, "state": "scanned", "version": version, "at": 0.0})
        app.push.deliver_local({"ticket": other, "state": "scanned", "version": 2, "at": 0.0})
        return app.push.stats["dropped_slow"]

    return run


def subscribed(qr, ticket: str) -> bool:
    return qr.call(lambda app: ticket in app.push.channels)


def test_an_sse_browser_that_reads_nothing_is_dropped_and_another_is_served(redis_url):
    with start_qrlogin("qb-sse", redis_url=redis_url, outbox_limit=3) as qr:
        stalled, other = create_ticket(qr.url).json()["ticket"], create_ticket(qr.url).json()["ticket"]
        hostile = socket.create_connection(("127.0.0.1", qr.port), timeout=20)
        hostile.sendall(f"GET /api/tickets/{stalled}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stream = requests.get(f"{qr.url}/api/tickets/{other}/events", stream=True, timeout=20)
        lines = stream.iter_lines()
        assert json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])["state"] == "pending"
        wait_until(lambda: subscribed(qr, stalled), 10, "the stalled channel subscribed")
        assert qr.call(stall_and_overflow(stalled, other)) == 1
        assert json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])["version"] == 2
        received = 0
        while data := hostile.recv(1 << 20):  # the server dropped it: it ends after what was in flight
            received += len(data)
        assert received < len(BIG) + 10_000  # the small events that waited were never written
        assert not subscribed(qr, stalled)
        stream.close()


def test_a_websocket_that_reads_nothing_is_closed_with_1008_and_another_is_served(redis_url):
    with start_qrlogin("qb-ws", redis_url=redis_url, outbox_limit=3) as qr:
        stalled, other = create_ticket(qr.url).json()["ticket"], create_ticket(qr.url).json()["ticket"]
        with connect(f"{qr.ws_url}/api/tickets/{stalled}/ws", proxy=None, max_size=None, open_timeout=10) as slow, \
                connect(f"{qr.ws_url}/api/tickets/{other}/ws", proxy=None, open_timeout=10) as fine:
            assert json.loads(slow.recv(timeout=10))["state"] == "pending"
            assert json.loads(fine.recv(timeout=10))["state"] == "pending"
            assert qr.call(stall_and_overflow(stalled, other)) == 1
            assert json.loads(fine.recv(timeout=10))["version"] == 2  # served, while the other is closed
            assert len(json.loads(slow.recv(timeout=20))["pad"]) == len(BIG)  # what was in flight
            with pytest.raises(ConnectionClosed) as closed:
                slow.recv(timeout=20)  # the three that waited were dropped with the connection
            assert closed.value.rcvd.code == 1008 and "too slow" in closed.value.rcvd.reason


def test_tickets_per_address_are_capped_across_the_cluster(redis_url):
    settings = dict(redis_url=redis_url, trusted_proxies=("127.0.0.1",), max_tickets_per_address=2)
    with start_qrlogin("qb-A", **settings) as a, start_qrlogin("qb-B", **settings) as b:
        assert create_ticket(a.url, "203.0.113.7").status_code == 201
        assert create_ticket(b.url, "203.0.113.7").status_code == 201
        refused = create_ticket(a.url, "203.0.113.7")  # a third live ticket, on either server
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_tickets" and refused.json()["detail"]
        assert 100 <= int(refused.headers["Retry-After"]) <= 121  # when its first ticket expires (ttl 120 s)
        assert create_ticket(b.url, "203.0.113.8").status_code == 201  # another client meanwhile
        store = redis.Redis.from_url(redis_url, decode_responses=True)
        assert len(store.keys("qr:ticket:*")) == 3  # the refused one was not kept
        assert a.call(lambda app: app.limits.refused["too_many_tickets"]) == 1


def test_the_embedded_redis_is_private_and_bounded(redis_server):
    assert redis_server.url == f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0"
    assert redis_server.password not in repr(redis_server)
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=10).set("session", "mine")
    config = redis_server.client().config_get("*")
    assert config["bind"] == "127.0.0.1"
    assert config["maxmemory"] == str(256 * 1024 * 1024) and config["maxmemory-policy"] == "noeviction"
    for child in psutil.Process().children(recursive=True):  # nobody can read it off `ps`
        assert redis_server.password not in " ".join(child.cmdline())


def test_a_full_redis_is_a_503_and_evicts_nobody(redis_server):  # (skipped where there is no Redis)
    with start_redis(maxmemory="4mb") as store:
        with start_qrlogin("qb-full", redis_url=store.url) as qr:
            kept = create_ticket(qr.url).json()["ticket"]
            client = store.client()
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                for i in range(10_000):
                    client.set(f"filler:{i}", "f" * 10_000)
            client.config_set("maxmemory", "1mb")  # stays full, whatever Redis frees of its own buffers
            full = create_ticket(qr.url)
            assert full.status_code == 503 and full.json()["error"] == "store_full", full.text
            assert full.headers["X-Served-By"] == "qb-full"
            poll = requests.get(f"{qr.url}/api/tickets/{kept}", timeout=10)  # the ticket already made is kept
            assert poll.status_code == 200 and poll.json()["state"] == "pending"
            assert client.exists("filler:0")  # noeviction: nothing was dropped to make room
