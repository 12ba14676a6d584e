"""GET /feed/ws: events, replay, duplex publish, JSON-only frames, close codes, cleanup."""
from __future__ import annotations

import json
import socket
import struct
import urllib.parse

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from servers.clients.feed import wait_until
from servers.feed.app import start_feed
from servers.wire.websocket import parse_frame_header

from tests.conftest import fill_a_stalled_socket




@pytest.fixture
def feed():
    with start_feed(name="feed-ws") as handle:
        yield handle


def recv(ws):
    message = json.loads(ws.recv(timeout=5))
    assert isinstance(message, dict)
    assert ("seq" in message) != ("type" in message), f"a frame carries seq xor type: {message}"
    return message


def test_101_carries_served_by_and_live_events_flow(feed):
    with connect(feed.ws_url + "/feed/ws") as ws:
        assert ws.response.status_code == 101 and ws.response.headers["X-Served-By"] == "feed-ws"
        wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 1)
        feed.call(lambda app: app.publish("live"))
        event = recv(ws)
        assert event["seq"] == 1 and event["data"] == "live" and "sent_at" in event


def test_replay_with_query_and_message_without_duplicates(feed):
    for i in range(3):
        feed.call(lambda app: app.publish(i))
    with connect(feed.ws_url + "/feed/ws?after=1") as ws:
        assert [recv(ws)["seq"] for _ in range(2)] == [2, 3]
        ws.send(json.dumps({"after": 0}))
        assert [recv(ws)["seq"] for _ in range(3)] == [1, 2, 3]
        feed.call(lambda app: app.publish("new"))
        assert recv(ws)["seq"] == 4


def test_publish_over_the_socket_reaches_everyone_sender_included(feed):
    with connect(feed.ws_url + "/feed/ws") as a, connect(feed.ws_url + "/feed/ws") as b:
        wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 2)
        a.send(json.dumps({"publish": {"from": "a"}}))
        event, ack = recv(a), recv(a)
        assert event["seq"] == 1 and event["data"] == {"from": "a"}
        assert ack == {"type": "ack", "published": 1}
        assert recv(b)["data"] == {"from": "a"}
    assert requests.get(feed.url + "/feed/poll").json()["events"][0]["data"] == {"from": "a"}


@pytest.mark.parametrize("text, code", [("not json", "bad_json"), ("[1]", "bad_message"), ('{"x": 1}', "bad_message"),
                                        ('{"after": -1}', "bad_message"), ('{"after": "3"}', "bad_message")])
def test_bad_text_gets_an_error_notice_and_the_socket_stays_open(feed, text, code):
    with connect(feed.ws_url + "/feed/ws") as ws:
        ws.send(text)
        notice = recv(ws)
        assert notice["type"] == "error" and notice["error"] == code and notice["detail"]
        ws.send(json.dumps({"publish": "still open"}))
        assert recv(ws)["data"] == "still open"


def test_binary_frame_is_closed_1003(feed):
    with connect(feed.ws_url + "/feed/ws") as ws:
        ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 1003


def test_a_message_over_the_limit_gets_a_clean_1009_even_with_more_behind_it(feed):
    """Read whole and refused with a close handshake: no reset that could swallow the close frame
    (Tornado's own limit, 4x ours here, drops the connection at once with the message unread)."""
    for _ in range(10):
        with connect(feed.ws_url + "/feed/ws", max_size=None) as ws:
            ws.send("x" * 70_000)
            with pytest.raises(ConnectionClosed) as info:
                ws.send('{"after": 0}')  # on its way when the server refuses the first (or refused: closed)
                while True:
                    ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009, info.value
        assert "more than 65536 bytes" in info.value.rcvd.reason


def test_far_over_the_limit_the_connection_is_dropped_and_the_server_serves_on(feed):
    with connect(feed.ws_url + "/feed/ws", max_size=None) as ws:
        with pytest.raises(ConnectionClosed):
            ws.send("x" * 1_000_000)  # over 4 x 64 KB: Tornado stops reading it
            while True:
                ws.recv(timeout=5)
    with connect(feed.ws_url + "/feed/ws") as ws:
        ws.send(json.dumps({"publish": "after"}))
        assert recv(ws)["seq"] == 1


def test_message_over_64kb_is_closed_1009(feed):
    with connect(feed.ws_url + "/feed/ws", max_size=None) as ws:
        ws.send(json.dumps({"publish": "x" * (64 * 1024)}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 1009
    assert feed.call(lambda app: app.buffer.last_seq) == 0


def test_just_under_the_limit_is_accepted(feed):
    with connect(feed.ws_url + "/feed/ws", max_size=None) as ws:
        ws.send(json.dumps({"publish": "x" * 60000}))
        assert len(recv(ws)["data"]) == 60000


def test_bad_after_in_the_url_is_400_before_the_upgrade(feed):
    with pytest.raises(InvalidStatus) as info:
        connect(feed.ws_url + "/feed/ws?after=abc")
    assert info.value.response.status_code == 400
    assert info.value.response.headers["X-Served-By"] == "feed-ws"
    assert json.loads(info.value.response.body)["error"] == "bad_argument"


def test_gap_notice_when_replay_reaches_past_the_buffer():
    with start_feed(name="feed-ws-small", buffer_size=2) as feed:
        for i in range(4):
            feed.call(lambda app: app.publish(i))
        with connect(feed.ws_url + "/feed/ws") as ws:
            ws.send(json.dumps({"after": 0}))
            epoch = feed.call(lambda app: app.buffer.epoch)
            assert recv(ws) == {"type": "gap", "missed": {"from": 1, "to": 2}, "first": 3, "epoch": epoch}
            assert [recv(ws)["seq"] for _ in range(2)] == [3, 4]


def test_replay_from_before_a_restart_is_a_reset_gap(feed):
    """``{"after": 8}`` to a feed that restarted (its seqs are at 2): a gap notice with ``reset``, then
    this run's events; and an ``epoch`` naming another run is a reset even where the seq exists."""
    for i in range(8):
        feed.call(lambda app: app.publish(i))
    feed.stop()
    with start_feed(name="feed-ws-restarted") as again:
        for i in range(2):
            again.call(lambda app: app.publish(f"new {i}"))
        epoch = again.call(lambda app: app.buffer.epoch)
        with connect(again.ws_url + "/feed/ws") as ws:
            ws.send(json.dumps({"after": 8}))
            assert recv(ws) == {"type": "gap", "missed": None, "first": 1, "epoch": epoch, "reset": True}
            assert [recv(ws)["seq"] for _ in range(2)] == [1, 2]
            ws.send(json.dumps({"after": 1, "epoch": "an-old-run"}))
            assert recv(ws)["reset"] is True and [recv(ws)["seq"] for _ in range(2)] == [1, 2]
            ws.send(json.dumps({"after": 1, "epoch": epoch}))
            assert recv(ws)["seq"] == 2, "this run's own seq: replayed, no gap"
            ws.send(json.dumps({"after": 1, "epoch": 7}))
            assert recv(ws)["error"] == "bad_message"
        with connect(again.ws_url + f"/feed/ws?after=1&epoch={epoch}x") as ws:
            assert recv(ws)["reset"] is True


def test_subscriber_removed_on_disconnect(feed):
    with connect(feed.ws_url + "/feed/ws"):
        wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 1)
    wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 0)


def stalled_websocket(url: str) -> socket.socket:
    """A WebSocket client that does the handshake and then reads nothing (a stalled tab)."""
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: not one byte past the 101's head
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every frame until the server closes the TCP connection, as (opcode, payload)."""
    data = b""
    while chunk := sock.recv(1 << 20):
        data += chunk
    frames = []
    while data:
        header, offset = parse_frame_header(data)
        frames.append((header.opcode, data[offset:offset + header.payload_len]))
        data = data[offset + header.payload_len:]
    return frames


def test_slow_consumer_is_closed_1008():
    """Once the socket takes no more (one event larger than the kernel's buffers), the next events
    wait in the outbox; past ``outbox_limit`` the connection is closed with 1008."""
    with start_feed(name="feed-ws-slow", outbox_limit=3) as feed:
        sock = stalled_websocket(feed.ws_url + "/feed/ws")
        try:
            wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 1)

            assert feed.call(fill_a_stalled_socket) == 1
            frames = read_frames(sock)  # the tab wakes up: the big event, then the close
        finally:
            sock.close()
        assert [opcode for opcode, _ in frames] == [1, 8], [(op, len(p)) for op, p in frames]
        assert json.loads(frames[0][1])["seq"] == 1
        code, reason = struct.unpack("!H", frames[1][1][:2])[0], frames[1][1][2:].decode()
        assert code == 1008 and "too slow" in reason, (code, reason)


def test_a_burst_to_a_reading_client_is_not_slowness():
    with start_feed(name="feed-ws-burst", outbox_limit=3) as feed:
        with connect(feed.ws_url + "/feed/ws") as ws:
            wait_until(lambda: feed.call(lambda app: app.stats()["ws"]) == 1)

            def burst(app):  # ten in one loop turn: each is written as it comes, nothing waits
                for i in range(10):
                    app.publish(i)
                return app.dropped_slow

            assert feed.call(burst) == 0
            assert [recv(ws)["seq"] for _ in range(10)] == list(range(1, 11))
