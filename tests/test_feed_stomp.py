"""GET /stomp: the STOMP 1.2 broker, frame by frame over a plain WebSocket client."""
from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from servers.feed.app import start_feed
from servers.feed.stomp import message_mapping, send_to
from servers.wire.stomp import Frame, StompParser, encode_frame


class Echo:
    @message_mapping("/shout")
    @send_to("/topic/loud")
    def shout(self, message):
        return {"loud": message["text"].upper()}

    @message_mapping("/quiet")  # no @send_to: goes to /topic/quiet, as Spring's default
    def quiet(self, message, frame):
        return {"got": message, "dest": frame.headers["destination"]}

    @message_mapping("/nothing")
    async def nothing(self, message):
        return None

    @message_mapping("/boom")
    def boom(self, message):
        raise RuntimeError("handler exploded")


def _bytes(message: str | bytes) -> bytes:
    """A WebSocket message's bytes: a text message as UTF-8, a binary one as it is."""
    return message if isinstance(message, bytes) else message.encode()


class Stomp:
    """A raw STOMP session: frames encoded and parsed by servers.wire, sent over `websockets`."""

    def __init__(self, url, subprotocols=("v12.stomp",)):
        self.ws = connect(url, subprotocols=list(subprotocols) if subprotocols else None).__enter__()
        self.parser = StompParser()
        self.frames = []

    def send(self, command, headers=None, body=b""):
        self.ws.send(encode_frame(Frame(command, headers or {}, body)).decode())

    def send_raw(self, data):
        self.ws.send(data)

    def recv(self):
        while not self.frames:
            self.frames += self.parser.feed(_bytes(self.ws.recv(timeout=5)))
        return self.frames.pop(0)

    def connect(self, **headers):
        self.send("CONNECT", {"accept-version": "1.2", "host": "/", **headers})
        frame = self.recv()
        assert frame.command == "CONNECTED", frame
        return frame

    def expect_error_then_close(self):
        frame = self.recv()
        assert frame.command == "ERROR", frame
        with pytest.raises(ConnectionClosed) as info:
            while True:
                self.frames += self.parser.feed(_bytes(self.ws.recv(timeout=5)))
        return frame, info.value.rcvd.code

    def close(self):
        self.ws.close()


@pytest.fixture
def feed():
    with start_feed(name="feed-stomp", stomp_controllers=[Echo()]) as handle:
        yield handle


@pytest.fixture
def stomp(feed):
    session = Stomp(feed.ws_url + "/stomp")
    yield session
    session.close()


def test_connected_with_version_heart_beat_and_served_by(feed, stomp):
    assert stomp.ws.response.headers["X-Served-By"] == "feed-stomp"
    assert stomp.ws.subprotocol == "v12.stomp"
    connected = stomp.connect(**{"heart-beat": "0,0"})
    assert connected.headers["version"] == "1.2"
    assert connected.headers["heart-beat"] == "10000,10000"


@pytest.mark.parametrize("offered, chosen, version", [
    (["v12.stomp", "v11.stomp", "v10.stomp"], "v12.stomp", "1.2"),
    (["v10.stomp", "v11.stomp", "v12.stomp"], "v10.stomp", "1.2"),  # the client's order, not "the highest"
    (["v11.stomp", "v12.stomp"], "v11.stomp", "1.2"),                # the version: accept-version's
    (["mqtt", "v12.stomp"], "v12.stomp", "1.2"),                      # the first one we speak
    (["v11.stomp"], "v11.stomp", "1.2"), (None, None, "1.2")])
def test_subprotocol_is_the_clients_first_and_accept_version_picks_the_version(feed, offered, chosen, version):
    session = Stomp(feed.ws_url + "/stomp", subprotocols=offered)
    try:
        assert session.ws.subprotocol == chosen
        session.send("STOMP", {"accept-version": "1.0,1.1,1.2", "host": "/"})
        assert session.recv().headers["version"] == version
    finally:
        session.close()


def test_server_sends_heart_beats_at_the_negotiated_rate():
    with start_feed(name="feed-stomp-hb", stomp_heartbeat_ms=(50, 0)) as feed:
        session = Stomp(feed.ws_url + "/stomp")
        try:
            connected = session.connect(**{"heart-beat": "0,50"})
            assert connected.headers["heart-beat"] == "50,0"
            while session.parser.heartbeats < 2:
                session.parser.feed(session.ws.recv(timeout=5).encode())
        finally:
            session.close()


def test_silent_client_is_dropped_after_twice_its_heart_beat():
    with start_feed(name="feed-stomp-hb2", stomp_heartbeat_ms=(0, 50)) as feed:
        session = Stomp(feed.ws_url + "/stomp")
        try:
            session.connect(**{"heart-beat": "50,0"})
            error, code = session.expect_error_then_close()
            assert error.headers["message"] == "heart-beat timeout"
        finally:
            session.close()


def test_stomp_1_0_without_accept_version_and_without_escaping(feed):
    session = Stomp(feed.ws_url + "/stomp", subprotocols=("v10.stomp",))
    try:
        session.send("CONNECT", {"login": "x"})  # no accept-version: a 1.0 client
        assert session.recv().headers["version"] == "1.0"
        session.parser.escape = False
        session.send_raw("SUBSCRIBE\ndestination:/topic/a\\cb\n\n\x00")  # 1.0: no id, taken literally
        session.send_raw("SEND\ndestination:/topic/a\\cb\nreceipt:r\n\nraw\x00")
        frames = [session.recv(), session.recv()]
        message = next(f for f in frames if f.command == "MESSAGE")
        assert message.headers["destination"] == "/topic/a\\cb" and message.body == b"raw"
    finally:
        session.close()


def test_unsupported_version_is_an_error(stomp):
    stomp.send("CONNECT", {"accept-version": "2.0"})
    error, _ = stomp.expect_error_then_close()
    assert "version" in error.headers["message"] and b"1.2" in error.body
    assert error.headers["version"] == "1.0,1.1,1.2", "the spec: the ERROR lists the versions the server speaks"


def test_frame_before_connect_is_an_error(stomp):
    stomp.send("SUBSCRIBE", {"destination": "/topic/feed", "id": "0"})
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "not connected"


def test_subscribe_feed_gets_a_message_per_event(feed, stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/feed", "id": "sub-0", "receipt": "r1"})
    assert stomp.recv() == Frame("RECEIPT", {"receipt-id": "r1"})
    feed.call(lambda app: app.publish({"n": 1}))
    message = stomp.recv()
    assert message.command == "MESSAGE"
    assert message.headers["destination"] == "/topic/feed" and message.headers["subscription"] == "sub-0"
    assert message.headers["message-id"] and message.headers["seq"] == "1"
    assert json.loads(message.body)["data"] == {"n": 1}


def test_unsubscribe_stops_messages(feed, stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/feed", "id": "a"})
    stomp.send("SUBSCRIBE", {"destination": "/topic/feed", "id": "b", "receipt": "r"})
    assert stomp.recv().command == "RECEIPT"
    feed.call(lambda app: app.publish(1))
    assert {stomp.recv().headers["subscription"] for _ in range(2)} == {"a", "b"}
    stomp.send("UNSUBSCRIBE", {"id": "a", "receipt": "u"})
    assert stomp.recv().headers["receipt-id"] == "u"
    feed.call(lambda app: app.publish(2))
    assert stomp.recv().headers["subscription"] == "b"
    stomp.send("DISCONNECT", {"receipt": "bye"})
    assert stomp.recv().headers["receipt-id"] == "bye"  # nothing for "a" came first


def test_send_to_topic_broadcasts_and_send_to_feed_publishes(feed, stomp):
    stomp.connect()
    other = Stomp(feed.ws_url + "/stomp")
    try:
        other.connect()
        other.send("SUBSCRIBE", {"destination": "/topic/chat", "id": "1", "receipt": "r"})
        assert other.recv().command == "RECEIPT"
        stomp.send("SEND", {"destination": "/topic/chat", "content-type": "text/plain"}, b"hello\x00world")
        message = other.recv()
        assert message.body == b"hello\x00world" and message.headers["content-type"] == "text/plain"
        stomp.send("SEND", {"destination": "/topic/feed", "receipt": "p"}, b'{"via": "stomp"}')
        assert stomp.recv().command == "RECEIPT"
        assert feed.call(lambda app: app.buffer.since(0)[0][-1]["data"]) == {"via": "stomp"}
    finally:
        other.close()


def test_app_destination_goes_to_message_mapping_and_send_to(feed, stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/loud", "id": "l"})
    stomp.send("SUBSCRIBE", {"destination": "/topic/quiet", "id": "q", "receipt": "r"})
    assert stomp.recv().command == "RECEIPT"
    stomp.send("SEND", {"destination": "/app/shout", "content-type": "application/json"}, b'{"text": "hi"}')
    message = stomp.recv()
    assert message.headers["destination"] == "/topic/loud" and json.loads(message.body) == {"loud": "HI"}
    stomp.send("SEND", {"destination": "/app/quiet"}, b"plain text")
    message = stomp.recv()
    assert message.headers["subscription"] == "q"
    assert json.loads(message.body) == {"got": "plain text", "dest": "/app/quiet"}
    stomp.send("SEND", {"destination": "/app/nothing", "receipt": "n"}, b"{}")
    assert stomp.recv() == Frame("RECEIPT", {"receipt-id": "n"})  # None returned: nothing sent


def test_controller_added_at_runtime(feed, stomp):
    @message_mapping("/late")
    @send_to("/topic/late")
    def late(message):
        return message * 2

    assert feed.call(lambda app: app.stomp.add_controller(late)) == ["/late"]
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/late", "id": "x"})
    stomp.send("SEND", {"destination": "/app/late"}, b"21")
    assert stomp.recv().body == b"42"


@pytest.mark.parametrize("command, headers, message", [
    ("SEND", {"destination": "/app/unknown"}, "unknown destination"),
    ("SEND", {"destination": "/queue/x"}, "unknown destination"),
    ("SUBSCRIBE", {"destination": "/app/x", "id": "1"}, "unknown destination"),
    ("SUBSCRIBE", {"destination": "/topic/x"}, "missing header"),
    ("SEND", {}, "missing header"),
    ("BEGIN", {}, "missing header"),
    ("COMMIT", {"transaction": "never-begun"}, "unknown transaction"),
    ("SEND", {"destination": "/topic/a", "transaction": "never-begun"}, "unknown transaction"),
    ("ACK", {"id": "12345"}, "unknown ack id"),
    ("NACK", {}, "missing header"),
    ("SUBSCRIBE", {"destination": "/topic/x", "id": "1", "ack": "sometimes"}, "bad ack mode"),
    ("MESSAGE", {"destination": "/topic/x"}, "not supported"),
    ("SEND", {"destination": "/app/boom"}, "handler failed"),
])
def test_bad_frames_get_error_then_close(stomp, command, headers, message):
    stomp.connect()
    stomp.send(command, {**headers, "receipt": "r9"})
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == message and error.body
    assert error.headers["receipt-id"] == "r9"


@pytest.mark.parametrize("raw, message, code", [
    ("HELLO\n\n\x00", "malformed frame", 1002),
    ("SEND\ndestination:/topic/a\\t\n\n\x00", "malformed frame", 1002),
    ("SEND\n" + "".join(f"h{i}:v\n" for i in range(40)) + "\n\x00", "frame too large", 1009),
    ("SEND\nh:" + "x" * 5000 + "\n\n\x00", "frame too large", 1009),
    ("SEND\ndestination:/topic/a\n\n" + "x" * 40000 + "\x00", "frame too large", 1009),
])
def test_malformed_or_oversized_frames_get_error_then_close(stomp, raw, message, code):
    stomp.connect()
    stomp.send_raw(raw)
    error, close_code = stomp.expect_error_then_close()
    assert error.headers["message"] == message
    assert close_code == code


def test_header_escaping_round_trips_through_the_broker(feed, stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/a:b\nc", "id": "colon:id", "receipt": "r"})
    assert stomp.recv().command == "RECEIPT"
    stomp.send_raw("SEND\ndestination:/topic/a\\cb\\nc\n\nx\x00")
    message = stomp.recv()
    assert message.headers["destination"] == "/topic/a:b\nc" and message.headers["subscription"] == "colon:id"


def test_frames_split_across_and_packed_into_websocket_messages(feed, stomp):
    stomp.connect()
    data = encode_frame(Frame("SUBSCRIBE", {"destination": "/topic/t", "id": "1"})) + b"\n" + \
        encode_frame(Frame("SEND", {"destination": "/topic/t"}, b"packed"))
    stomp.send_raw(data[:7].decode())
    stomp.send_raw(data[7:].decode())
    assert stomp.recv().body == b"packed"
    stomp.ws.send(encode_frame(Frame("SEND", {"destination": "/topic/t"}, b"binary")))  # a binary message
    assert stomp.recv().body == b"binary"


def test_sessions_cleaned_up_on_disconnect(feed):
    session = Stomp(feed.ws_url + "/stomp")
    session.connect()
    assert feed.call(lambda app: app.stats()["stomp"]) == 1
    session.send("DISCONNECT", {"receipt": "bye"})
    assert session.recv().headers["receipt-id"] == "bye"
    with pytest.raises(ConnectionClosed):
        session.ws.recv(timeout=5)
    deadline = time.monotonic() + 5
    while feed.call(lambda app: app.stats()["stomp"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert feed.call(lambda app: app.stats()["stomp"]) == 0


# -- STOMP 1.2 to the letter: bodies of any bytes, ack modes, transactions ---------------------------


BINARY = bytes(range(256)) + b"\x00\xff\xfe\x00"  # every byte value, NULs and invalid UTF-8 included


def test_a_body_of_any_bytes_travels_intact_and_the_next_frame_too(feed, stomp):
    """Not UTF-8: sent as a binary WebSocket message, byte for byte (content-length counts the NULs),
    and the frame after it arrives whole - a text message would have replaced bytes and broken it."""
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/bin", "id": "1", "receipt": "r"})
    assert stomp.recv().command == "RECEIPT"
    stomp.ws.send(encode_frame(Frame("SEND", {"destination": "/topic/bin"}, BINARY)))
    stomp.send("SEND", {"destination": "/topic/bin"}, b"after")
    raw = [stomp.ws.recv(timeout=5), stomp.ws.recv(timeout=5)]
    assert [type(m) for m in raw] == [bytes, str], "a body of other bytes in a binary message, text in a text one"
    frames = StompParser().feed(raw[0] + raw[1].encode())
    assert [f.body for f in frames] == [BINARY, b"after"]
    assert frames[0].headers["content-length"] == str(len(BINARY))


def test_the_feed_topic_refuses_a_body_that_is_not_utf8(stomp):
    stomp.connect()
    stomp.ws.send(encode_frame(Frame("SEND", {"destination": "/topic/feed"}, b"\xff\xfe")))
    error, code = stomp.expect_error_then_close()
    assert error.headers["message"] == "body not text" and code == 1003


def test_only_send_may_carry_a_body(stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/a", "id": "1"}, b"a body")
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "unexpected body"


def test_a_repeated_header_keeps_its_first_value(feed, stomp):
    stomp.connect()
    stomp.send("SUBSCRIBE", {"destination": "/topic/first", "id": "1", "receipt": "r"})
    assert stomp.recv().command == "RECEIPT"
    stomp.send_raw("SEND\ndestination:/topic/first\ndestination:/topic/second\ncontent-type:text/plain\n"
                   "content-type:application/json\n\nx\x00")
    message = stomp.recv()
    assert message.headers["destination"] == "/topic/first" and message.headers["content-type"] == "text/plain"


def test_connect_headers_are_not_unescaped(stomp):
    """In CONNECT a backslash is just a backslash: ``\\t`` there is no undefined escape (fatal
    elsewhere), and the CONNECTED frame comes back unescaped too."""
    stomp.send_raw("CONNECT\naccept-version:1.2\nhost:/\nlogin:a\\tb:c\n\n\x00")
    connected = stomp.recv()
    assert connected.command == "CONNECTED" and ":" not in connected.headers["session"]


def subscribe(stomp, destination, sub_id, ack):
    stomp.send("SUBSCRIBE", {"destination": destination, "id": sub_id, "ack": ack, "receipt": f"sub-{sub_id}"})
    assert stomp.recv().headers["receipt-id"] == f"sub-{sub_id}"


def publish_three(stomp, destination):
    for body in (b"one", b"two", b"three"):
        stomp.send("SEND", {"destination": destination}, body)
    return [stomp.recv() for _ in range(3)]


def test_auto_subscriptions_have_no_ack_header(feed, stomp):
    stomp.connect()
    subscribe(stomp, "/topic/auto", "1", "auto")
    assert all("ack" not in m.headers for m in publish_three(stomp, "/topic/auto"))


def test_client_individual_ack_and_nack_with_one_redelivery(feed, stomp):
    stomp.connect()
    subscribe(stomp, "/topic/ci", "1", "client-individual")
    one, two, three = publish_three(stomp, "/topic/ci")
    assert len({one.headers["ack"], two.headers["ack"], three.headers["ack"]}) == 3, "each MESSAGE has its ack id"
    stomp.send("ACK", {"id": two.headers["ack"]})
    stomp.send("NACK", {"id": one.headers["ack"]})  # delivered again, once
    again = stomp.recv()
    assert (again.body, again.headers["redelivered"], again.headers["message-id"]) == (
        b"one", "true", one.headers["message-id"])
    stomp.send("NACK", {"id": again.headers["ack"]})  # NACKed twice: discarded
    stomp.send("ACK", {"id": three.headers["ack"], "receipt": "done"})
    assert stomp.recv().headers["receipt-id"] == "done", "nothing more was delivered"
    assert feed.call(lambda app: dict(app.stomp.stats)) == {"acked": 2, "nacked": 2, "redelivered": 1, "discarded": 1}
    stomp.send("ACK", {"id": two.headers["ack"]})  # already acknowledged
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "unknown ack id"


def test_client_acks_are_cumulative_per_subscription(feed, stomp):
    stomp.connect()
    subscribe(stomp, "/topic/c", "c", "client")
    subscribe(stomp, "/topic/other", "o", "client")
    stomp.send("SEND", {"destination": "/topic/other"}, b"other")
    other = stomp.recv()
    one, two, three = publish_three(stomp, "/topic/c")
    stomp.send("ACK", {"id": two.headers["ack"], "receipt": "r"})
    assert stomp.recv().headers["receipt-id"] == "r"
    assert feed.call(lambda app: app.stomp.stats["acked"]) == 2, "one and two, not the other subscription's"
    stomp.send("NACK", {"id": three.headers["ack"]})
    assert stomp.recv().body == b"three", "client NACK: redelivered"
    stomp.send("ACK", {"id": other.headers["ack"], "receipt": "r2"})
    assert stomp.recv().headers["receipt-id"] == "r2"
    stomp.send("ACK", {"id": one.headers["ack"]})  # covered by the cumulative ACK of two
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "unknown ack id"


def test_unacknowledged_messages_are_discarded_when_the_client_leaves(feed):
    session = Stomp(feed.ws_url + "/stomp")
    session.connect()
    subscribe(session, "/topic/left", "1", "client")
    publish_three(session, "/topic/left")
    session.send("DISCONNECT", {"receipt": "bye"})
    assert session.recv().headers["receipt-id"] == "bye"
    assert feed.call(lambda app: app.stomp.stats["discarded"]) == 3


def test_stomp_1_1_acknowledges_by_message_id(feed):
    session = Stomp(feed.ws_url + "/stomp", subprotocols=("v11.stomp",))
    try:
        session.send("CONNECT", {"accept-version": "1.1", "host": "/"})
        assert session.recv().headers["version"] == "1.1"
        subscribe(session, "/topic/v11", "1", "client-individual")
        session.send("SEND", {"destination": "/topic/v11"}, b"x")
        message = session.recv()
        session.send("ACK", {"message-id": message.headers["message-id"], "subscription": "1", "receipt": "r"})
        assert session.recv().headers["receipt-id"] == "r"
        assert feed.call(lambda app: app.stomp.stats["acked"]) == 1
    finally:
        session.close()


def test_transactions_hold_sends_and_acks_until_commit(feed, stomp):
    stomp.connect()
    subscribe(stomp, "/topic/tx", "1", "client-individual")
    stomp.send("BEGIN", {"transaction": "t1"})
    stomp.send("SEND", {"destination": "/topic/tx", "transaction": "t1"}, b"held")
    stomp.send("SEND", {"destination": "/topic/tx"}, b"outside")
    outside = stomp.recv()
    assert outside.body == b"outside", "the transaction's SEND waits for COMMIT"
    stomp.send("ACK", {"id": outside.headers["ack"], "transaction": "t1"})
    stomp.send("COMMIT", {"transaction": "t1"})
    held = stomp.recv()
    assert held.body == b"held"
    assert feed.call(lambda app: app.stomp.stats["acked"]) == 1, "the ACK ran at COMMIT"
    stomp.send("BEGIN", {"transaction": "t2"})
    stomp.send("ACK", {"id": held.headers["ack"], "transaction": "t2"})
    stomp.send("SEND", {"destination": "/topic/tx", "transaction": "t2"}, b"aborted")
    stomp.send("ABORT", {"transaction": "t2", "receipt": "aborted"})
    assert stomp.recv().headers["receipt-id"] == "aborted", "ABORT drops the SEND"
    assert feed.call(lambda app: app.stomp.stats["acked"]) == 1, "... and the ACK"
    stomp.send("ACK", {"id": held.headers["ack"], "receipt": "r"})  # still awaiting its ACK
    assert stomp.recv().headers["receipt-id"] == "r"
    stomp.send("BEGIN", {"transaction": "t3"})
    stomp.send("BEGIN", {"transaction": "t3"})
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "duplicate transaction"


def test_a_frame_held_in_a_transaction_is_checked_when_it_arrives(stomp):
    stomp.connect()
    stomp.send("BEGIN", {"transaction": "t"})
    stomp.send("ACK", {"transaction": "t"})  # no id: refused now, not at COMMIT
    error, _ = stomp.expect_error_then_close()
    assert error.headers["message"] == "missing header" and b"'id'" in error.body
