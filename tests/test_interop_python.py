"""Clients we did not write, against the feed: sseclient-py, websockets, stomp.py over WebSocket."""
from __future__ import annotations

import json
import queue

import pytest
import requests

from servers.feed.app import start_feed

sseclient = pytest.importorskip("sseclient", reason="pip install sseclient-py")
stomp = pytest.importorskip("stomp", reason="pip install stomp.py")
websockets_sync = pytest.importorskip("websockets.sync.client", reason="pip install websockets")


@pytest.fixture
def feed():
    with start_feed(name="feed-interop") as handle:
        yield handle


def publish(feed, data):
    return requests.post(feed.url + "/feed/publish", json={"data": data}).json()["seq"]


def test_sseclient_py_reads_framing_replay_and_gap():
    with start_feed(name="feed-interop-small", buffer_size=3, sse_retry_ms=777) as feed:
        for i in range(5):
            publish(feed, f"line {i}\nsecond line")
        response = requests.get(feed.url + "/feed/sse", stream=True, headers={"Last-Event-ID": "1",
                                                                              "Accept": "text/event-stream"})
        try:
            events = sseclient.SSEClient(response).events()
            gap = next(events)
            assert gap.event == "gap" and json.loads(gap.data)["missed"] == {"from": 2, "to": 2}
            received = [next(events) for _ in range(3)]
            assert [e.id for e in received] == ["3", "4", "5"]
            assert [json.loads(e.data)["data"] for e in received][0] == "line 2\nsecond line"
            assert all(e.event == "message" for e in received)
        finally:
            response.close()


def test_sseclient_py_resumes_by_last_event_id_across_a_drop(feed):
    publish(feed, "before")
    response = requests.get(feed.url + "/feed/sse?lastEventId=0", stream=True)
    client = sseclient.SSEClient(response)
    events = client.events()
    first = next(events)
    last_id = first.id
    feed.call(lambda app: app.drop_streams())
    assert list(events) == []  # the stream ended
    publish(feed, "while away")
    response = requests.get(feed.url + "/feed/sse", stream=True, headers={"Last-Event-ID": last_id})
    try:
        again = next(sseclient.SSEClient(response).events())
        assert json.loads(again.data)["data"] == "while away" and again.id == "2"
    finally:
        response.close()


def test_websockets_library_handshake_duplex_and_close_codes(feed):
    with websockets_sync.connect(feed.ws_url + "/feed/ws?after=0", max_size=None) as ws:
        assert ws.response.headers["X-Served-By"] == "feed-interop"
        ws.send(json.dumps({"publish": "from websockets"}))
        event = json.loads(ws.recv(timeout=5))
        assert event["seq"] == 1 and event["data"] == "from websockets"
        ws.ping().wait(5)  # control frames are answered
        ws.send("x" * (65 * 1024))
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=5)
        assert info.value.rcvd.code == 1009


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(("MESSAGE", frame))

    def on_error(self, frame):
        self.frames.put(("ERROR", frame))

    def on_receipt(self, frame):
        self.frames.put(("RECEIPT", frame))

    def on_heartbeat(self):
        self.frames.put(("HEARTBEAT", None))

    def next(self, kind):
        while True:
            got, frame = self.frames.get(timeout=10)
            if got == kind:
                return frame


def stomp_connection(feed, **kwargs):
    connection = stomp.WSStompConnection([(feed.host, feed.port)], ws_path="/stomp", **kwargs)
    listener = Listener()
    connection.set_listener("test", listener)
    connection.connect(wait=True)
    return connection, listener


def test_stomp_py_subscribe_send_and_app_mapping(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.subscribe("/topic/feed", id="feed-sub")
        connection.subscribe("/topic/greetings", id="greet-sub", receipt="ready")
        listener.next("RECEIPT")
        publish(feed, {"from": "http"})
        frame = listener.next("MESSAGE")
        assert frame.headers["subscription"] == "feed-sub" and json.loads(frame.body)["data"] == {"from": "http"}
        connection.send("/app/hello", json.dumps({"name": "stomp.py"}), content_type="application/json")
        frame = listener.next("MESSAGE")
        assert frame.headers["destination"] == "/topic/greetings"
        assert json.loads(frame.body) == {"content": "Hello, stomp.py!"}
        connection.send("/topic/feed", json.dumps({"via": "stomp.py"}))
        frame = listener.next("MESSAGE")
        assert json.loads(frame.body)["data"] == {"via": "stomp.py"}
        connection.unsubscribe("feed-sub")
        connection.send("/topic/greetings", "a header with: colon", headers={"odd": "a:b\nc"})
        frame = listener.next("MESSAGE")
        assert frame.body == "a header with: colon" and frame.headers["subscription"] == "greet-sub"
    finally:
        connection.disconnect()


def test_stomp_py_heart_beats_both_ways():
    with start_feed(name="feed-interop-hb", stomp_heartbeat_ms=(100, 100)) as feed:
        connection, listener = stomp_connection(feed, heartbeats=(100, 100))
        try:
            agreed = connection.get_listener("protocol-listener").heartbeats
            assert tuple(agreed) == (100, 100)  # computed by stomp.py from our CONNECTED
            for _ in range(3):  # our EOLs reach stomp.py...
                listener.next("HEARTBEAT")
            # ...and stomp.py's keep the session alive past twice the period
            connection.subscribe("/topic/feed", id="1", receipt="alive")
            listener.next("RECEIPT")
            assert connection.is_connected()
        finally:
            connection.disconnect()


def test_stomp_py_gets_error_for_unknown_destination(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.send("/app/does-not-exist", "x")
        frame = listener.next("ERROR")
        assert frame.headers["message"] == "unknown destination" and "/app/does-not-exist" in frame.body
    finally:
        try:
            connection.disconnect()
        except Exception:
            pass


# -- stomp.py against STOMP 1.2 to the letter ---------------------------------------------------------

BINARY = bytes(range(256)) + b"\x00\xff"  # NULs and bytes that are not UTF-8


def test_stomp_py_sends_and_receives_a_body_of_any_bytes(feed):
    """stomp.py in binary mode: the body arrives byte for byte (content-length honoured both ways,
    a binary WebSocket message back), and the next frame is intact."""
    connection, listener = stomp_connection(feed, auto_decode=False, binary_mode=True)
    try:
        connection.subscribe("/topic/bin", id="bin", receipt="ready")
        listener.next("RECEIPT")
        connection.send("/topic/bin", BINARY, content_type="application/octet-stream")
        connection.send("/topic/bin", "after")
        first, second = listener.next("MESSAGE"), listener.next("MESSAGE")
        assert first.body == BINARY and first.headers["content-length"] == str(len(BINARY))
        assert first.headers["content-type"] == "application/octet-stream"
        assert second.body == b"after"
    finally:
        connection.disconnect()


def test_stomp_py_client_individual_ack_and_nack(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.subscribe("/topic/jobs", id="jobs", ack="client-individual", receipt="ready")
        listener.next("RECEIPT")
        connection.send("/topic/jobs", "first")
        connection.send("/topic/jobs", "second")
        first, second = listener.next("MESSAGE"), listener.next("MESSAGE")
        assert first.headers["ack"] != second.headers["ack"]
        connection.ack(second.headers["ack"])
        connection.nack(first.headers["ack"])
        again = listener.next("MESSAGE")
        assert (again.body, again.headers["redelivered"]) == ("first", "true")
        connection.ack(again.headers["ack"], receipt="acked")
        listener.next("RECEIPT")
        assert feed.call(lambda app: dict(app.stomp.stats)) == {"acked": 2, "nacked": 1, "redelivered": 1}
    finally:
        connection.disconnect()


def test_stomp_py_client_ack_is_cumulative(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.subscribe("/topic/batch", id="batch", ack="client", receipt="ready")
        listener.next("RECEIPT")
        for i in range(3):
            connection.send("/topic/batch", f"m{i}")
        last = [listener.next("MESSAGE") for _ in range(3)][-1]
        connection.ack(last.headers["ack"], receipt="all")
        listener.next("RECEIPT")
        assert feed.call(lambda app: app.stomp.stats["acked"]) == 3
    finally:
        connection.disconnect()


def test_stomp_py_transactions_commit_and_abort(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.subscribe("/topic/tx", id="tx", receipt="ready")
        listener.next("RECEIPT")
        aborted = connection.begin()
        connection.send("/topic/tx", "never", transaction=aborted)
        connection.abort(aborted)
        committed = connection.begin()
        connection.send("/topic/tx", "committed", transaction=committed)
        connection.send("/topic/tx", "outside")
        connection.commit(committed)
        assert [listener.next("MESSAGE").body for _ in range(2)] == ["outside", "committed"]
    finally:
        connection.disconnect()


def test_stomp_py_disconnect_receipt_and_unacked_discarded(feed):
    connection, listener = stomp_connection(feed)
    connection.subscribe("/topic/left", id="left", ack="client", receipt="ready")
    listener.next("RECEIPT")
    connection.send("/topic/left", "never acknowledged")
    listener.next("MESSAGE")
    connection.disconnect(receipt="bye")
    assert listener.next("RECEIPT").headers["receipt-id"] == "bye"
    assert feed.call(lambda app: app.stomp.stats["discarded"]) == 1


def test_stomp_py_error_for_an_unknown_ack_id(feed):
    connection, listener = stomp_connection(feed)
    try:
        connection.ack("no-such-message")
        frame = listener.next("ERROR")
        assert frame.headers["message"] == "unknown ack id"
    finally:
        try:
            connection.disconnect()
        except Exception:
            pass
