"""Lessons 03 and 04's support code: the claims their cells show, checked outside the notebooks."""
from __future__ import annotations

import json

import pytest

from lab.code import code_text, script_text
from lab.lessons.sse import reconnect_spikes, resume_experiment
from lab.lessons.websocket import (
    SEED_KEY,
    nginx_push_lines,
    raw_handshake,
    send_fragmented,
)
from servers.feed.app import start_feed
from servers.feed.sse import SSEHandler
from servers.feed.ws import FeedWebSocketHandler
from servers.wire.sse import SSEParser
from tests.conftest import nginx_path


@pytest.fixture
def feed():
    with start_feed(name="lessons-03-04", sse_retry_ms=200) as handle:
        yield handle


def test_the_smallest_events_the_standard_allows():
    """WHATWG "Parsing an event stream": the space after the colon is optional, and a line with no
    colon is a field with an empty value; an event is dispatched when its data buffer is not empty."""
    one_byte = SSEParser().feed(b"data:x\n\n")
    assert len(b"data:x\n\n") == 8 and [e.data for e in one_byte] == ["x"]
    assert [e.data for e in SSEParser().feed(b"data\n\n")] == [""]      # 6 bytes: an empty message event
    assert SSEParser().feed(b"id:1\n\n") == []                          # no data line: nothing dispatched
    assert [e.data for e in SSEParser().feed(b"data: x\n\n")] == ["x"]   # the optional space: same event


def test_the_pages_mark_the_lines_a_lesson_shows():
    assert "new EventSource(" in script_text("sse.html", "eventsource")[1]
    assert "new WebSocket(" in script_text("ws.html", "websocket")[1]
    assert "begin_event_stream()" in code_text(SSEHandler.get)[1]
    assert "subscribers.add(self)" in code_text(FeedWebSocketHandler.open)[1]


def test_a_fragmented_message_arrives_whole(feed):
    message = json.dumps({"publish": "split across three frames, put back together by the server"})
    frames = send_fragmented(feed, message, pieces=3)
    assert frames["sent"].FIN.tolist() == [0, 0, 1]
    assert frames["sent"].opcode.str[0].tolist() == ["1", "0", "0"]
    events = [json.loads(p) for p in frames["received"].payload if '"seq"' in p]
    assert [e["data"] for e in events] == [json.loads(message)["publish"]]


def test_the_feed_websocket_selects_no_subprotocol(feed):
    """It speaks one protocol of its own: offered subprotocols are not echoed (RFC 6455 §4.2.2: null)."""
    answer = raw_handshake(feed, "/feed/ws", SEED_KEY, protocols=["v10.stomp", "chat"])
    assert answer["status"] == 101 and "sec-websocket-protocol" not in answer["headers"]


def test_reconnect_spikes_are_bounded_by_the_time_away(feed):
    run = resume_experiment(feed, events=12, duration=1.2, drops=2, seed=3)
    spikes = reconnect_spikes(run)
    assert len(run["opened"]) == run["reconnects"] + 1 == 3
    for row in spikes.dropna().itertuples():
        # A missed event is published after the drop and received after the reconnection arrived.
        assert row.first_missed_ms > 0
        assert row.spike_ms >= row.away_minus_first_missed_ms - 0.2  # rounding to 0.1 ms
        assert row.away_ms >= 200                                     # the client waited retry: first


def test_the_nginx_lines_push_needs():
    lines = nginx_push_lines()
    for needed in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                   "proxy_set_header Connection $connection_upgrade;", "proxy_buffering off;",
                   "map $http_upgrade $connection_upgrade", "default upgrade;"):
        assert needed in lines, needed


@pytest.mark.nginx
def test_nginx_cuts_an_idle_websocket_unless_the_server_pings():
    if nginx_path() is None:
        pytest.skip("nginx not found (apt-get install nginx)")
    from lab.lessons.websocket import idle_proxy_experiment

    result = idle_proxy_experiment(idle_timeout_s=0.5, ping_interval_s=0.1)
    assert result.result.iloc[0].startswith("cut by nginx"), result
    assert result.result.iloc[1].startswith("open"), result
