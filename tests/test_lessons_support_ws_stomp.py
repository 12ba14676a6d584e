"""Lessons 04 and 05's helpers (lab.lessons.websocket / .stomp) against a real feed server."""
from __future__ import annotations

import pytest

import servers
from servers.clients.feed import ConnectionClosed, StompClient, wait_until
from lab.lessons.stomp import measure_message_bytes, send_raw_stomp, stomp_conversation
from lab.lessons.websocket import (SEED_ACCEPT, SEED_KEY, RawWebSocket, describe_frame_header,
                                               measure_frame_overhead, raw_frame, raw_handshake)
from lab.tap import start_tap


@pytest.fixture
def feed():
    handle = servers.start_feed(name="test-lessons-04-05", trusted_origins=["http://localhost:8080"])
    yield handle
    handle.stop()


def test_the_seed_request_gets_the_seed_accept_and_a_stomp_subprotocol(feed):
    answer = raw_handshake(feed, "/stomp", SEED_KEY, protocols=["v10.stomp", "v11.stomp"],
                           origin="http://localhost:8080")
    assert answer["status"] == 101
    assert answer["headers"]["sec-websocket-accept"] == SEED_ACCEPT == "1qVdfYHU9hPOl4JYYNXF623Gzn0="
    # the client's first choice, as in the seed's answer from Spring (RFC 6455 §4.1: ordered by preference)
    assert answer["headers"]["sec-websocket-protocol"] == "v10.stomp"


def test_a_foreign_origin_is_refused_before_the_upgrade(feed):
    assert raw_handshake(feed, "/feed/ws", SEED_KEY, origin="http://evil.example")["status"] == 403


def test_raw_websocket_and_frame_header_description(feed):
    tap = start_tap(feed)
    with RawWebSocket(tap, "/feed/ws") as ws:
        feed.call(lambda app: app.publish("w" * 200))
        text = ws.recv()
        ws.send('{"publish":"hi"}')
        ws.recv(), ws.recv()
    down = describe_frame_header(raw_frame(tap, 0, direction="down")).set_index("field")["value"]
    assert down["opcode"] == 1 and down["MASK"] == 0 and down["payload len (7 bits)"] == 126
    assert down["extended payload len (16 bits)"] == len(text.encode())
    up = describe_frame_header(raw_frame(tap, 0, direction="up")).set_index("field")["value"]
    assert up["MASK"] == 1 and up["payload len (7 bits)"] == len('{"publish":"hi"}') and len(up["masking key"]) == 8


def test_raw_websocket_reports_the_close_code(feed):
    with RawWebSocket(feed, "/feed/ws") as ws:
        ws.send(b"\x00")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.code == 1003


def test_measured_frame_overhead_matches_rfc_6455(feed):
    frame = measure_frame_overhead(feed, down_sizes=[60, 1000, 70_000], up_sizes=[20, 126, 1000])
    assert len(frame) == 6
    assert (frame.overhead_bytes == frame.rfc6455_bytes).all(), frame
    assert sorted(set(frame.overhead_bytes)) == [2, 4, 6, 8, 10]


def test_stomp_conversation_is_in_order_with_heartbeats():
    feed = servers.start_feed(name="test-lessons-05-hb", stomp_heartbeat_ms=(200, 200))
    try:
        tap = start_tap(feed)
        with StompClient(tap, heart_beat=(0, 200)) as client:
            client.subscribe("/topic/greetings")
            client.send("/app/hello", {"name": "Ada"})
            assert client.receive_message().text == '{"content": "Hello, Ada!"}'
            wait_until(lambda: "heart-beat" in [item.command for item in stomp_conversation(tap)], timeout=10,
                       what="a server heart-beat through the tap")
            seen = [item.command for item in stomp_conversation(tap)]
        frames = [c for c in seen if c != "heart-beat"]
        assert frames == ["CONNECT", "CONNECTED", "SUBSCRIBE", "RECEIPT", "SEND", "MESSAGE"]
    finally:
        feed.stop()


def test_a_malformed_frame_gets_an_error_then_a_close(feed):
    answer = send_raw_stomp(feed, "SEND\ndestination:/topic/a\\tb\n\nhi\0")
    assert [f.command for f in answer["frames"]] == ["ERROR"]
    assert answer["frames"][0].headers["message"] == "malformed frame" and answer["close_code"] == 1002


def test_stomp_costs_a_fixed_number_of_bytes_per_message(feed):
    frame = measure_message_bytes(feed, [1, 100, 10_000])
    table = frame.pivot(index="data_bytes", columns="technique", values="wire_bytes")
    extra = table["STOMP MESSAGE (/stomp)"] - table["plain WebSocket (/feed/ws)"]
    assert extra.min() >= 50 and extra.max() - extra.min() <= 16, table
