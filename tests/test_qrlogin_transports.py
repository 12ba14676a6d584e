"""The four transports of the QR-login app: first message = current state, resume, long-poll
timeout, expiry pushed on time, and WebSocket close codes."""
from __future__ import annotations

import json
import threading

import pytest
import requests
import tornado.httpclient
import tornado.websocket

from servers import runtime
from servers.clients.qr import Browser, Phone
from servers.qrlogin import start_qrlogin
from servers.wire.sse import SSEParser


@pytest.fixture
def qr(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as handle:
        yield handle


def create(qr):
    session = requests.Session()
    return session, session.post(qr.url + "/api/tickets").json()["ticket"]


def sse_events(response, count):
    """Read ``count`` SSE messages (id + parsed data) from a streaming requests response."""
    if not hasattr(response, "sse_lines"):  # one line iterator per response: it buffers
        response.sse_lines = response.iter_lines(chunk_size=1, decode_unicode=True)
    events, current = [], {}
    for line in response.sse_lines:
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "data" in current:
            events.append(current)
            current = {}
            if len(events) == count:
                return events
    return events


def first_subscriber_event(qr):
    """A threading.Event set when a push channel for some ticket opens on ``qr``."""
    opened = threading.Event()
    hub = qr.app.push
    original = hub.on_first_subscriber

    def hook(ticket):
        original(ticket)
        opened.set()

    hub.on_first_subscriber = hook
    return opened


def test_sse_sends_current_state_first_then_each_change_with_version_ids(qr):
    _, ticket = create(qr)
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)  # the channel opens on a ticket that is already version 2
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events", stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Served-By"] == "A"
        first = sse_events(response, 1)
        assert first[0]["id"] == 2 and first[0]["data"]["state"] == "scanned", "first message: the current state"
        assert set(first[0]["data"]) == {"ticket", "state", "version", "at"}
        phone.confirm(ticket)
        second = sse_events(response, 1)
        assert second[0]["id"] == 3 and second[0]["data"] == {**second[0]["data"], "ticket": ticket,
                                                               "state": "confirmed", "version": 3}


def test_sse_sends_a_retry_line(qr):
    _, ticket = create(qr)
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events", stream=True, timeout=10) as response:
        assert next(response.iter_lines(chunk_size=1, decode_unicode=True)).startswith("retry: ")


def test_sse_last_event_id_resumes_after_that_version(qr):
    owner, ticket = create(qr)
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events", headers={"Last-Event-ID": "2"}, stream=True,
                      timeout=10) as response:
        assert [e["id"] for e in sse_events(response, 1)] == [3], "only what is newer than Last-Event-ID"
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events?lastEventId=3", stream=True, timeout=10) as response:
        assert response.status_code == 200
        owner.post(f"{qr.url}/api/tickets/{ticket}/redeem").raise_for_status()
        resumed = sse_events(response, 1)
        assert [e["id"] for e in resumed] == [4], "up to date: nothing resent, the next change arrives"
        assert resumed[0]["data"]["state"] == "redeemed"
        assert sse_events(response, 1) == [], "the stream ends after a terminal state"
    again = requests.get(f"{qr.url}/api/tickets/{ticket}/events", headers={"Last-Event-ID": "4"}, timeout=10)
    assert again.status_code == 204, "nothing more will come: 204 stops the browser reconnecting"


def test_sse_retry_line_and_heartbeats_follow_the_settings(redis_url):
    """The same stream rules as the feed server (servers.eventstream), from the same settings."""
    with start_qrlogin("HB", redis_url=redis_url, sse_retry_ms=1234, sse_heartbeat_s=0.05) as qr:
        _, ticket = create(qr)
        with requests.get(f"{qr.url}/api/tickets/{ticket}/events", stream=True, timeout=10) as response:
            parser, raw, events = SSEParser(), b"", []
            chunks = response.iter_content(chunk_size=None)
            while parser.comments < 2:  # the pending ticket stays quiet: heartbeats fill the silence
                raw += (chunk := next(chunks))
                events += parser.feed(chunk)
        assert raw.startswith(b"retry: 1234\n\n") and parser.retry == 1234
        assert b": heartbeat\n" in raw and b": heartbeat\n\n" not in raw, "one comment line, as the feed sends"
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Accel-Buffering"] == "no"
        assert [json.loads(e.data)["state"] for e in events] == ["pending"]


@pytest.mark.parametrize("value", ["-1", "-5", "abc", "1.5", "+2", "2_0", "9" * 20])
@pytest.mark.parametrize("where", ["header", "query"])
def test_sse_id_that_is_not_a_non_negative_integer_is_a_json_400(qr, value, where):
    """A negative id used to be read as 0 here (and a 400 on the feed): now a 400 on both."""
    _, ticket = create(qr)
    url = f"{qr.url}/api/tickets/{ticket}/events"
    if where == "header":
        response = requests.get(url, headers={"Last-Event-ID": value}, timeout=10)
    else:
        response = requests.get(url, params={"lastEventId": value}, timeout=10)
    assert response.status_code == 400 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == "bad_last_event_id" and "integer" in body["detail"]


def test_sse_what_a_browser_sends_back_is_always_accepted(qr):
    """Read the stream as EventSource does (servers.wire.sse follows the WHATWG algorithm), then
    reconnect with the last event id it kept, as the browser does after a drop: never a 400."""
    _, ticket = create(qr)
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    parser = SSEParser()
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events", stream=True, timeout=10) as response:
        for chunk in response.iter_content(chunk_size=None):
            if parser.feed(chunk):
                break
    assert parser.last_event_id == "2"
    with requests.get(f"{qr.url}/api/tickets/{ticket}/events", headers={"Last-Event-ID": parser.last_event_id},
                      stream=True, timeout=10) as response:
        assert response.status_code == 200
        phone.confirm(ticket)
        assert [e["id"] for e in sse_events(response, 1)] == [3]


def test_websocket_sends_current_state_first_and_a_message_per_change(qr):
    _, ticket = create(qr)
    browser = Browser(qr.url, "ws")
    channel = browser.open_channel(ticket)
    assert channel.events[0]["state"] == "pending" and channel.events[0]["version"] == 1
    assert channel.served_by == "A"
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    assert channel.next(5)["state"] == "scanned"
    phone.confirm(ticket)
    assert channel.next(5)["version"] == 3
    channel.close()


def test_websocket_after_replays_what_is_newer(qr):
    _, ticket = create(qr)

    async def scenario():
        conn = await tornado.websocket.websocket_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws")
        first = json.loads(await conn.read_message())
        await conn.write_message(json.dumps({"after": 0}))
        replayed = json.loads(await conn.read_message())
        conn.close()
        return first, replayed

    first, replayed = runtime.run(scenario())
    assert first["version"] == replayed["version"] == 1 and replayed["state"] == "pending"


@pytest.mark.parametrize("message,code", [("not json", 1003), (b"\x00\x01", 1003), ('{"hello": 1}', 1003),
                                          ("x" * (65 * 1024), 1009)])
def test_websocket_bad_messages_close_with_a_meaningful_code(qr, message, code):
    _, ticket = create(qr)

    async def scenario():
        conn = await tornado.websocket.websocket_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws")
        await conn.read_message()
        await conn.write_message(message, binary=isinstance(message, bytes))
        while await conn.read_message() is not None:
            pass
        return conn.close_code

    assert runtime.run(scenario()) == code


def test_websocket_cross_site_origin_is_closed_with_1008(qr):
    _, ticket = create(qr)

    async def connect(origin):
        request = tornado.httpclient.HTTPRequest(f"{qr.ws_url}/api/tickets/{ticket}/ws", headers={"Origin": origin})
        conn = await tornado.websocket.websocket_connect(request)
        first = await conn.read_message()
        conn.close()
        return first, conn.close_code, conn.close_reason

    first, code, reason = runtime.run(connect("http://evil.example"))
    assert first is None and code == 1008 and "Origin" in reason, "closed before any state is sent"
    first, code, _ = runtime.run(connect(qr.url))
    assert json.loads(first)["state"] == "pending", "the page's own origin is fine"


def test_websocket_unknown_ticket_is_a_json_404_before_the_upgrade(qr):
    async def connect():
        await tornado.websocket.websocket_connect(f"{qr.ws_url}/api/tickets/NoSuchTicket0000000000/ws")

    with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
        runtime.run(connect())
    assert caught.value.code == 404
    assert json.loads(caught.value.response.body)["error"] == "unknown_ticket"


def test_long_poll_times_out_with_the_current_state(qr):
    _, ticket = create(qr)
    response = requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll?state=pending&timeout=0.2", timeout=10)
    assert response.status_code == 200
    assert response.json()["state"] == "pending" and response.json()["timed_out"] is True
    assert response.headers["X-Served-By"] == "A"


def test_long_poll_answers_at_once_when_the_state_already_differs(qr):
    _, ticket = create(qr)
    answer = requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll?state=scanned&timeout=30", timeout=10).json()
    assert answer["state"] == "pending" and answer["timed_out"] is False
    assert requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll", timeout=10).json()["state"] == "pending"


def test_held_long_poll_wakes_on_a_change(qr):
    _, ticket = create(qr)
    held = first_subscriber_event(qr)
    answer = {}

    def long_poll():
        answer["body"] = requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll?state=pending&timeout=30",
                                      timeout=40).json()

    thread = threading.Thread(target=long_poll)
    thread.start()
    assert held.wait(10), "the long poll never reached the server"
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    thread.join(10)
    assert answer["body"]["state"] == "scanned" and answer["body"]["timed_out"] is False
    assert qr.call(lambda app: ticket not in app.push.channels), "the answered poll left its channel"


@pytest.mark.parametrize("transport", ["sse", "ws", "longpoll"])
def test_expiry_is_pushed_to_open_channels(redis_url, transport):
    with start_qrlogin("A", redis_url=redis_url, ticket_ttl=0.3) as qr:
        browser = Browser(qr.url, transport)
        ticket = browser.create_ticket()["ticket"]
        channel = browser.open_channel(ticket)
        event = channel.wait_for("expired", timeout=10)
        assert event["state"] == "expired" and event["version"] == 2
        channel.close()
        assert requests.get(f"{qr.url}/api/tickets/{ticket}").json()["state"] == "expired"


def test_poll_channel_sees_each_state(qr):
    browser = Browser(qr.url, "poll", poll_interval=0.05)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    assert channel.events[-1]["state"] == "pending"
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    assert channel.wait_for("confirmed", 10)["version"] == 3
    assert browser.redeem(ticket)["user"] == "alice"
    assert browser.whoami()["user"] == "alice"
    channel.close()
