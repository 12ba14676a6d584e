"""Feeds side by side, re-running a cell, and stopping with connections open."""
from __future__ import annotations

import socket
import threading

import pytest
import requests

from servers.clients.feed import ConnectionClosed, FeedWebSocket, SSEStream, StompClient, publish, wait_until
from servers.feed.app import make_feed_app, start_feed
from servers.runtime import serve




def test_two_feeds_keep_separate_state():
    a, b = start_feed(name="A"), start_feed(name="B", buffer_size=5)
    publish(a, "only on A")
    assert requests.get(b.url + "/feed/poll").json() == {"events": []}
    assert requests.get(a.url + "/feed/poll").headers["X-Served-By"] == "A"
    assert b.call(lambda app: app.buffer.size) == 5 and a.call(lambda app: app.buffer.size) == 1000


def test_same_name_replaces_the_old_server():
    first = start_feed(name="again")
    second = start_feed(name="again")
    assert not first.running and second.running
    with pytest.raises(requests.ConnectionError):
        requests.get(first.url + "/feed/poll", timeout=2)
    assert requests.get(second.url + "/feed/poll").status_code == 200


def test_make_feed_app_and_serve():
    app = make_feed_app(name="made", buffer_size=2, sse_retry_ms=50)
    with serve(app) as handle:
        assert handle.app is app and app.settings["sse_retry_ms"] == 50
        assert app.settings["websocket_max_message_size"] == 64 * 1024
        assert publish(handle, 1) == 1


def test_stop_answers_long_polls_ends_streams_and_closes_sockets():
    feed = start_feed(name="stopping")
    held = socket.create_connection((feed.host, feed.port))
    held.sendall(b"GET /feed/longpoll?timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n")
    sse = SSEStream(feed, reconnect=False)
    sse_done = threading.Event()
    threading.Thread(target=lambda: (list(sse), sse_done.set()), daemon=True).start()
    ws = FeedWebSocket(feed)
    stomp = StompClient(feed)
    wait_until(lambda: feed.call(lambda app: (app.waiter_count, app.stats()["sse"])) == (1, 1))
    feed.stop()
    assert held.recv(4096).endswith(b'{"events":[]}')
    assert sse_done.wait(5)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1001
    with pytest.raises(ConnectionClosed):
        while True:
            stomp.receive(timeout=5)
    held.close()
    sse.close()


def test_publish_off_the_server_loop_is_refused_clearly():
    with start_feed(name="guarded") as feed:
        with pytest.raises(RuntimeError, match="handle.call"):
            feed.app.publish("from the wrong thread")
        assert feed.call(lambda app: app.publish("right")["seq"]) == 1


def test_publish_refuses_data_that_is_not_json():
    with start_feed(name="json-only") as feed:
        with pytest.raises(TypeError, match="JSON"):
            feed.call(lambda app: app.publish({1, 2}))
        assert feed.call(lambda app: app.buffer.last_seq) == 0


@pytest.mark.parametrize("route", ["/feed/poll?", "/feed/longpoll?timeout=5&"])
def test_a_polling_client_naming_the_old_epoch_learns_of_a_restart_at_once(route):
    """A restarted feed starts its seqs again at 1: a poller's cursor (after=3) from the old run
    would wait for seq 4 of the new one. Naming the epoch it saw (X-Feed-Epoch), it gets every
    buffered event at once with a reset notice; without the epoch, the answer is as before."""
    feed = start_feed(name="poll-restart")
    for i in range(3):
        publish(feed, i)
    first = requests.get(feed.url + "/feed/poll?after=0", timeout=10)
    old_epoch = first.headers["X-Feed-Epoch"]
    port = feed.port
    feed.stop()
    feed = serve(make_feed_app(name="poll-restart"), port=port)
    try:
        publish(feed, "new run")
        answer = requests.get(f"{feed.url}{route}after=3&epoch={old_epoch}", timeout=10)
        body = answer.json()
        assert answer.headers["X-Feed-Epoch"] != old_epoch
        assert body["reset"] == {"epoch": answer.headers["X-Feed-Epoch"], "first": 1}
        assert [(e["seq"], e["data"]) for e in body["events"]] == [(1, "new run")]
        same = requests.get(f"{feed.url}{route}after=0&epoch={answer.headers['X-Feed-Epoch']}", timeout=10).json()
        assert "reset" not in same and [e["seq"] for e in same["events"]] == [1]
        if route == "/feed/poll?":  # no epoch: the contract's answer, buffered events after 3 (none)
            assert requests.get(feed.url + "/feed/poll?after=3", timeout=10).json() == {"events": []}
    finally:
        feed.stop()
