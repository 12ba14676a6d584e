"""Our own Python clients: sync for cells, async for many, each stamping received_at."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from servers import runtime
from servers.clients.feed import (AsyncFeedWebSocket, AsyncSSEStream, AsyncStompClient, ConnectionClosed,
                                  FeedWebSocket, SSEStream, StompClient, StompErrorFrame, alongpoll, apoll,
                                  apublish, iter_longpoll, iter_poll, longpoll, poll, publish)
from servers.feed.app import start_feed


@pytest.fixture
def feed():
    with start_feed(name="feed-clients", sse_retry_ms=10) as handle:
        yield handle


def test_publish_poll_longpoll_stamp_received_at(feed):
    assert publish(feed, "a") == 1
    before = time.time()
    event = poll(feed)["events"][0]
    assert event["received_at"] >= before and event["received_at"] >= event["sent_at"]
    assert longpoll(feed, after=1, timeout=0.1) == {"events": []}


def test_iter_poll_and_iter_longpoll_keep_the_cursor(feed):
    for i in range(3):
        publish(feed, i)
    assert [e["seq"] for e in iter_poll(feed, interval=0.01, max_events=3)] == [1, 2, 3]
    assert [e["seq"] for e in iter_longpoll(feed, after=1, timeout=1, max_events=2)] == [2, 3]


def test_iter_poll_counts_wasted_requests(feed):
    stats = {}
    assert list(iter_poll(feed, interval=0.01, duration=0.2, stats=stats)) == []
    assert stats["requests"] >= 2 and stats["empty"] == stats["requests"]
    stats = {}
    assert list(iter_longpoll(feed, timeout=0.05, duration=0.2, stats=stats)) == []
    assert stats["requests"] >= 1 and stats["empty"] == stats["requests"]


def test_iter_poll_reports_gaps():
    with start_feed(name="feed-clients-small", buffer_size=2) as feed:
        for i in range(4):
            publish(feed, i)
        items = list(iter_poll(feed, interval=0.01, max_events=2))
        assert items[0]["type"] == "gap" and items[0]["missed"] == {"from": 1, "to": 2}
        assert [e["seq"] for e in items[1:]] == [3, 4]


def test_sse_stream_resumes_after_the_server_drops_it(feed):
    publish(feed, "first")
    with SSEStream(feed, last_event_id=0) as stream:
        events = iter(stream)
        assert next(events)["seq"] == 1
        assert stream.retry_ms == 10 and stream.last_event_id == "1"
        feed.call(lambda app: app.drop_streams())
        publish(feed, "while away")
        assert next(events)["data"] == "while away"  # came through the reconnect with Last-Event-ID
        assert stream.reconnects == 1


def test_feed_websocket_sync(feed):
    with FeedWebSocket(feed) as ws:
        assert ws.response_headers["X-Served-By"] == "feed-clients"
        ws.publish({"k": 1})
        event = ws.recv()
        assert event["data"] == {"k": 1} and event["received_at"] >= event["sent_at"]
        assert ws.recv() == {"type": "ack", "published": 1, "received_at": pytest.approx(time.time(), abs=30)}
        ws.replay(0)
        assert ws.recv_event()["seq"] == 1
        ws.send(b"binary")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
        assert info.value.code == 1003


def test_stomp_client_sync(feed):
    with StompClient(feed) as client:
        assert client.connected.headers["version"] == "1.2"
        client.subscribe("/topic/greetings")
        client.send("/app/hello", {"name": "Ada"})
        message = client.receive_message()
        assert json.loads(message.text) == {"content": "Hello, Ada!"} and message.received_at > 0
        with pytest.raises(StompErrorFrame):
            client.send("/app/missing", {}, receipt=True)


def test_async_clients_on_many_connections(feed):
    async def scenario():
        sockets = [await AsyncFeedWebSocket.connect(feed) for _ in range(20)]
        stomp = await AsyncStompClient.connect(feed)
        await stomp.subscribe("/topic/feed")
        seq = await apublish(feed, "to all")
        got = [await ws.recv() for ws in sockets]
        message = await stomp.receive_message()
        for ws in sockets:
            ws.close()
        await stomp.disconnect()
        polled = await apoll(feed, after=0)
        held = await asyncio.gather(*[alongpoll(feed, after=seq, timeout=5) for _ in range(15)],
                                    _publish_when_waiting(feed, 15))
        return seq, got, message, polled, held

    seq, got, message, polled, held = runtime.run(scenario())
    assert all(m["seq"] == seq and m["received_at"] >= m["sent_at"] for m in got)
    assert json.loads(message.text)["seq"] == seq
    assert polled["events"][0]["data"] == "to all"
    assert all([e["data"] for e in answer["events"]] == ["later"] for answer in held[:-1])


async def _publish_when_waiting(feed, count):
    while feed.app.waiter_count < count:  # on the server loop: read state directly
        await asyncio.sleep(0.005)
    feed.app.publish("later")


def test_async_sse_stream(feed):
    for i in range(3):
        publish(feed, i)

    async def read():
        stream = AsyncSSEStream(feed, last_event_id=1)
        got = []
        async for event in stream:
            got.append(event["seq"])
            if len(got) == 2:
                await stream.close()
        return got

    assert runtime.run(read()) == [2, 3]
