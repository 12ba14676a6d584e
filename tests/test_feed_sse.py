"""GET /feed/sse: framing, retry, heartbeats, resume by Last-Event-ID, gaps, cleanup, drop hook."""
from __future__ import annotations

import json

import pytest
import requests

from servers.clients.feed import wait_until
from servers.clients.sse import SSEStream
from servers.feed.app import make_feed_app, start_feed
from servers.runtime import serve
from servers.wire.sse import SSEParser

from tests.conftest import fill_a_stalled_socket




class Reader:
    """A raw SSE response read through our parser, keeping the bytes for byte-level checks."""

    def __init__(self, url, **kwargs):
        self.response = requests.get(url, stream=True, timeout=10, **kwargs)
        self.chunks = self.response.iter_content(chunk_size=None)
        self.parser = SSEParser()
        self.raw = b""
        self.pending = []

    def next_event(self):
        while not self.pending:
            chunk = next(self.chunks)
            self.raw += chunk
            self.pending += self.parser.feed(chunk)
        return self.pending.pop(0)

    def events(self, n):
        return [self.next_event() for _ in range(n)]

    def close(self):
        self.response.close()


@pytest.fixture
def feed():
    with start_feed(name="feed-sse", sse_retry_ms=1234) as handle:
        yield handle


def publish(feed, data):
    return feed.call(lambda app: app.publish(data))


def test_stream_headers_retry_and_event_framing(feed):
    publish(feed, "one")
    reader = Reader(feed.url + "/feed/sse?lastEventId=0")
    try:
        assert reader.response.status_code == 200
        assert reader.response.headers["Content-Type"].startswith("text/event-stream")
        assert reader.response.headers["X-Served-By"] == "feed-sse"
        assert reader.response.headers["Cache-Control"] == "no-cache"
        event = reader.next_event()
        assert reader.raw.startswith(b"retry: 1234\n\n")
        assert b"id: 1\ndata: {" in reader.raw
        assert event.id == "1" and json.loads(event.data)["data"] == "one"
        assert reader.parser.retry == 1234
    finally:
        reader.close()


def test_live_events_arrive_in_order(feed):
    reader = Reader(feed.url + "/feed/sse")
    try:
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)
        for i in range(5):
            publish(feed, i)
        assert [json.loads(e.data)["seq"] for e in reader.events(5)] == [1, 2, 3, 4, 5]
    finally:
        reader.close()


def test_without_a_resume_point_only_new_events_come(feed):
    publish(feed, "before")
    reader = Reader(feed.url + "/feed/sse")
    try:
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)
        publish(feed, "after")
        assert json.loads(reader.next_event().data)["data"] == "after"
    finally:
        reader.close()


@pytest.mark.parametrize("how", ["header", "query", "both"])
def test_replay_from_last_event_id(feed, how):
    for i in range(5):
        publish(feed, i)
    headers = {"Last-Event-ID": "3"} if how in ("header", "both") else {}
    query = "?lastEventId=1" if how == "both" else "?lastEventId=3" if how == "query" else ""
    reader = Reader(feed.url + "/feed/sse" + query, headers=headers)
    try:
        assert [e.id for e in reader.events(2)] == ["4", "5"]  # the header wins over the query
    finally:
        reader.close()


@pytest.mark.parametrize("value", ["abc", "-2", "1.5", "+5", "5_0", "\u0665", "1e3", "9" * 20, "9" * 5000])
@pytest.mark.parametrize("where", ["header", "query"])
def test_an_id_that_is_not_a_non_negative_integer_is_a_json_400(feed, value, where):
    if where == "header":  # sent as UTF-8 bytes: a header carries bytes, and str.isdigit() takes "\u0665"
        r = requests.get(feed.url + "/feed/sse", headers={"Last-Event-ID": value.encode()}, timeout=10)
    else:
        r = requests.get(feed.url + "/feed/sse", params={"lastEventId": value}, timeout=10)
    body = r.json()
    assert r.status_code == 400 and body["error"] == "bad_last_event_id" and "integer" in body["detail"]
    assert len(body["detail"]) < 200, "a huge id is not echoed back whole"
    assert r.headers["X-Served-By"] == "feed-sse"


def test_an_empty_header_is_no_resume_point_so_the_query_counts(feed):
    for i in range(3):
        publish(feed, i)
    reader = Reader(feed.url + "/feed/sse?lastEventId=2", headers={"Last-Event-ID": ""})
    try:
        assert reader.next_event().id == "3", "replayed from the query's resume point"
    finally:
        reader.close()


def test_what_a_browser_sends_back_is_always_accepted(feed):
    """Read the stream as EventSource does (servers.wire.sse follows the WHATWG algorithm), then
    reconnect with its last event id, as the browser would: never a 400."""
    for i in range(3):
        publish(feed, i)
    reader = Reader(feed.url + "/feed/sse?lastEventId=0")
    try:
        reader.events(3)
        assert reader.parser.last_event_id == "3"
    finally:
        reader.close()
    again = Reader(feed.url + "/feed/sse", headers={"Last-Event-ID": reader.parser.last_event_id})
    try:
        assert again.response.status_code == 200
        publish(feed, "next")
        assert again.next_event().id == "4"
    finally:
        again.close()


def test_gap_is_a_named_event_without_id():
    with start_feed(name="feed-sse-small", buffer_size=2) as feed:
        for i in range(5):
            publish(feed, i)
        reader = Reader(feed.url + "/feed/sse", headers={"Last-Event-ID": "1"})
        try:
            gap, first, second = reader.events(3)
            epoch = feed.call(lambda app: app.buffer.epoch)
            assert gap.event == "gap" and json.loads(gap.data) == {"missed": {"from": 2, "to": 3}, "first": 4,
                                                                   "epoch": epoch}
            assert b"event: gap\ndata: " in reader.raw and gap.id == ""  # no id: line, the cursor stays
            assert (first.id, second.id) == ("4", "5")
        finally:
            reader.close()


def test_comment_heartbeats_when_idle():
    with start_feed(name="feed-sse-hb", sse_heartbeat_s=0.05) as feed:
        reader = Reader(feed.url + "/feed/sse")
        try:
            while reader.parser.comments < 2:
                reader.raw += (chunk := next(reader.chunks))
                reader.parser.feed(chunk)
            assert b": heartbeat\n" in reader.raw
        finally:
            reader.close()


def test_subscriber_removed_when_client_disconnects(feed):
    reader = Reader(feed.url + "/feed/sse")
    wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)
    reader.close()
    wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 0)


def test_drop_streams_hook_ends_the_stream(feed):
    reader = Reader(feed.url + "/feed/sse")
    try:
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)
        assert feed.call(lambda app: app.drop_streams()) == 1
        tail = b"".join(reader.chunks)  # the response ends (a hang would hit the read timeout)
        assert b"data:" not in tail
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 0)
    finally:
        reader.close()


def test_slow_consumer_is_dropped_and_can_resume():
    """A client that stops reading: once the socket takes no more (one event larger than all the
    kernel's buffers), the next events wait in its outbox; past ``outbox_limit`` it is dropped."""
    with start_feed(name="feed-sse-slow", outbox_limit=3) as feed:
        stalled = Reader(feed.url + "/feed/sse")  # reads the response head, then nothing
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)

        assert feed.call(fill_a_stalled_socket) == 1
        wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 0)
        stalled.close()
        resumed = Reader(feed.url + "/feed/sse", headers={"Last-Event-ID": "1"})
        try:
            assert [e.id for e in resumed.events(9)] == [str(i) for i in range(2, 11)]
        finally:
            resumed.close()


def test_a_burst_to_a_reading_client_is_not_slowness():
    """Ten events in one loop turn, outbox_limit 3: each is written as it is published (the socket
    takes them), so nothing waits in the outbox and nobody is dropped."""
    with start_feed(name="feed-sse-burst", outbox_limit=3) as feed:
        reader = Reader(feed.url + "/feed/sse")
        try:
            wait_until(lambda: feed.call(lambda app: app.stats()["sse"]) == 1)

            def burst(app):
                for i in range(10):
                    app.publish(i)
                return app.dropped_slow

            assert feed.call(burst) == 0
            assert [e.id for e in reader.events(10)] == [str(i) for i in range(1, 11)]
        finally:
            reader.close()


# -- a resume point from before a restart: a reset gap, never ids silently going backwards ----------


def restarted(feed, **settings):
    """The feed run again on the same port (a new process would do the same): a new buffer, with
    another epoch, whose seqs start again at 1."""
    port, name = feed.port, feed.app.name
    feed.stop()
    return serve(make_feed_app(name=name, **settings), port=port)


def test_resume_from_before_a_restart_starts_with_a_reset_gap(feed):
    for i in range(8):
        publish(feed, f"old {i}")
    old_epoch = feed.call(lambda app: app.buffer.epoch)
    feed = restarted(feed)
    publish(feed, "new 1")
    publish(feed, "new 2")
    reader = Reader(feed.url + "/feed/sse", headers={"Last-Event-ID": "8"})
    try:
        gap, first, second = reader.events(3)
    finally:
        reader.close()
    epoch = feed.call(lambda app: app.buffer.epoch)
    assert epoch != old_epoch and reader.response.headers["X-Feed-Epoch"] == epoch
    assert (gap.event, gap.id) == ("gap", ""), "a named event without id: it does not move Last-Event-ID"
    assert json.loads(gap.data) == {"missed": None, "first": 1, "epoch": epoch, "reset": True}
    assert [(e.id, json.loads(e.data)["data"]) for e in (first, second)] == [("1", "new 1"), ("2", "new 2")]


def test_the_epoch_catches_a_restarted_feed_already_past_the_old_id(feed):
    """Ten events after the restart: id 8 exists again, but it is not the 8 the client saw. With
    ``?epoch=`` naming the old run, the server knows; with its own epoch, id 8 is honoured."""
    old_epoch = feed.call(lambda app: app.buffer.epoch)
    feed = restarted(feed, buffer_size=5)
    for i in range(10):
        publish(feed, i)
    reader = Reader(f"{feed.url}/feed/sse?epoch={old_epoch}", headers={"Last-Event-ID": "8"})
    try:
        gap, first = reader.events(2)
    finally:
        reader.close()
    notice = json.loads(gap.data)
    assert notice["reset"] is True and notice["missed"] == {"from": 1, "to": 5} and notice["first"] == 6
    assert first.id == "6"
    same = Reader(f"{feed.url}/feed/sse?epoch={notice['epoch']}", headers={"Last-Event-ID": "8"})
    try:
        assert same.next_event().id == "9", "this run's own id 8: resumed, no gap"
    finally:
        same.close()


def test_the_python_client_carries_the_epoch_across_a_restart():
    feed = start_feed(name="feed-sse-restart", sse_retry_ms=20)
    stream = SSEStream(feed, last_event_id=0, read_timeout=10)
    try:
        for i in range(3):
            publish(feed, i)
        events = iter(stream)
        assert [next(events)["seq"] for _ in range(3)] == [1, 2, 3]
        old_epoch = stream.epoch
        feed = restarted(feed, sse_retry_ms=20)
        for i in range(5):  # past id 3 before the client is back, perhaps: only the epoch tells
            publish(feed, f"new {i}")
        gap = next(events)
        assert gap["type"] == "gap" and gap["reset"] is True and gap["first"] == 1, gap
        assert [next(events)["data"] for _ in range(5)] == [f"new {i}" for i in range(5)]
        assert stream.epoch != old_epoch and stream.reconnects >= 1
    finally:
        stream.close()
