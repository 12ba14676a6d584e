"""Limits per client address and per connection (servers.limits), each with its clear refusal.

Every test synchronises on an event: a stream's first bytes (its slot is held from then on), an
acknowledgement, a close frame, or the server's own count read on its loop - never a sleep.
Rates are tested with a refill so slow (0.001/s) that wall-clock time cannot add a token.
"""
from __future__ import annotations

import http.client
import json
from types import SimpleNamespace

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from servers.balancer import start_balancer
from servers.clients._common import wait_until
from servers.clients.qr import login_many
from servers.feed.app import start_feed
from servers.limits import DEFAULT_LIMITS, Limits, TokenBucket
from servers.qrlogin import start_qrlogin
from servers.wire.stomp import Frame, StompParser, encode_frame

SLOW = 0.001  # tokens per second: no refill during a test


def ws_connect(url: str, **kwargs):
    return connect(url, proxy=None, open_timeout=10, close_timeout=5, **kwargs)


def open_sse(url: str) -> requests.Response:
    """An SSE stream whose first bytes have arrived: from then on the server holds its slot."""
    response = requests.get(url, stream=True, timeout=10)
    assert response.status_code == 200, response.text
    response.chunks = response.iter_content(chunk_size=None)  # kept: a collected iterator closes the stream
    assert next(response.chunks)  # the retry: line
    return response


def assert_refused(response: requests.Response, code: str, served_by: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Served-By"] == served_by
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert body["error"] == code and body["detail"], body


def held(handle) -> int:
    return handle.call(lambda app: app.limits.held() if getattr(app, "limits", None) else 0)


# ---------------------------------------------------------------------------------------------
# The pieces


def test_token_bucket_allows_a_burst_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
    now[0] += 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst saved up


def test_client_address_trusts_x_forwarded_for_only_from_trusted_proxies():
    def request(peer, xff=None):
        return SimpleNamespace(remote_ip=peer, headers={"X-Forwarded-For": xff} if xff else {})

    untrusted = Limits({})
    assert untrusted.client_address(request("10.0.0.5", "1.2.3.4")) == "10.0.0.5"  # header ignored
    trusted = Limits({"trusted_proxies": ("127.0.0.1", "10.0.0.0/8")})
    assert trusted.client_address(request("10.9.9.9", "6.6.6.6, 1.2.3.4")) == "1.2.3.4"  # the hop our proxy added
    assert trusted.client_address(request("192.0.2.1", "1.2.3.4")) == "192.0.2.1"  # not a proxy of ours
    assert trusted.client_address(request("127.0.0.1", " , ,")) == "127.0.0.1"  # nothing usable: the peer
    assert Limits({"trusted_proxies": "127.0.0.1,::1"}).client_address(request("::1", "5.5.5.5")) == "5.5.5.5"


def test_the_qr_login_app_records_addresses_by_the_same_policy():
    """servers.qrlogin.auth.client_address is servers.limits.client_address: no header believed
    unless the peer is a trusted proxy (it used to believe any X-Forwarded-For)."""
    from servers.limits import client_address
    from servers.qrlogin import auth

    def request(peer, xff=None):
        return SimpleNamespace(remote_ip=peer, headers={"X-Forwarded-For": xff} if xff else {})

    cases = [request("10.0.0.5", "1.2.3.4"), request("10.9.9.9", "6.6.6.6, 1.2.3.4"), request("127.0.0.1", " , ,"),
             request("192.0.2.1"), request("::1", "5.5.5.5")]
    for trusted in ((), ("127.0.0.1", "10.0.0.0/8"), "127.0.0.1,::1"):
        limits = Limits({"trusted_proxies": trusted})
        for case in cases:
            assert auth.client_address(case, trusted) == client_address(case, trusted) == limits.client_address(case)
    assert auth.client_address(request("10.0.0.5", "1.2.3.4")) == "10.0.0.5", "by default the header is ignored"


def test_trusted_proxy_list_reads_the_command_line_and_names_a_bad_entry():
    from servers.limits import trusted_proxy_list

    assert trusted_proxy_list(["127.0.0.1", "10.0.0.0/8, ::1"]) == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert trusted_proxy_list([]) == ()
    with pytest.raises(ValueError, match="'balancer' is not an IP address or network"):
        trusted_proxy_list(["127.0.0.1,balancer"])


def test_defaults_cover_the_lessons_and_benchmarks():
    # benchmarks/techniques.py FULL: 1,000 subscribers + 500 idle connections, 1,000 events/s published;
    # 1,000 concurrent QR logins (about 5 API calls each) through one balancer address.
    assert DEFAULT_LIMITS["max_connections_per_address"] >= 1500
    assert DEFAULT_LIMITS["api_rate"] >= 1000 and DEFAULT_LIMITS["api_burst"] >= 5 * 1000
    assert DEFAULT_LIMITS["trusted_proxies"] == ()


# ---------------------------------------------------------------------------------------------
# Connections per address


def test_feed_refuses_a_connection_over_the_limit_with_429_and_1013():
    with start_feed(name="lim-feed", max_connections_per_address=2) as feed:
        first = open_sse(feed.url + "/feed/sse")
        poll = requests.Session()
        # a held long poll is the second connection; its slot is taken before it waits
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(poll.get, feed.url + "/feed/longpoll", params={"after": 0, "timeout": 30}, timeout=30)
            wait_until(lambda: feed.call(lambda app: app.waiter_count) == 1, what="the long poll to be held")
            assert_refused(requests.get(feed.url + "/feed/sse", timeout=10), "too_many_connections", "lim-feed")
            assert_refused(requests.get(feed.url + "/feed/longpoll", params={"timeout": 0}, timeout=10),
                           "too_many_connections", "lim-feed")
            with ws_connect(feed.ws_url + "/feed/ws") as ws:
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
                assert ws.close_code == 1013 and "too many connections" in ws.close_reason
            with ws_connect(feed.ws_url + "/stomp", subprotocols=["v12.stomp"]) as ws:
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=10)
                assert ws.close_code == 1013
            # short polls and publishes hold nothing: never refused for connections
            assert requests.post(feed.url + "/feed/publish", json={"data": 1}, timeout=10).status_code == 201
            assert waiting.result().json()["events"][0]["data"] == 1  # the publish answered the long poll
        wait_until(lambda: held(feed) == 1, what="the long poll's slot to be released")
        second = open_sse(feed.url + "/feed/sse")  # a freed slot is usable again
        first.close()
        second.close()
        wait_until(lambda: held(feed) == 0, what="every slot released when the streams close")


def test_qrlogin_refuses_sse_and_websocket_over_the_limit(redis_url):
    with start_qrlogin("lim-qr", redis_url=redis_url, max_connections_per_address=1) as qr:
        ticket = requests.post(qr.url + "/api/tickets", timeout=10).json()["ticket"]
        with ws_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws") as ws:
            assert json.loads(ws.recv(timeout=10))["state"] == "pending"  # the slot is held
            assert_refused(requests.get(f"{qr.url}/api/tickets/{ticket}/events", timeout=10),
                           "too_many_connections", "lim-qr")
            assert_refused(requests.get(f"{qr.url}/api/tickets/{ticket}/longpoll", params={"state": "pending",
                           "timeout": 1}, timeout=10), "too_many_connections", "lim-qr")
            with ws_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws") as second:
                with pytest.raises(ConnectionClosed):
                    second.recv(timeout=10)
                assert second.close_code == 1013
            assert requests.get(f"{qr.url}/api/tickets/{ticket}", timeout=10).status_code == 200  # short poll: fine
        wait_until(lambda: held(qr) == 0, what="the socket's slot to be released")
        stream = open_sse(f"{qr.url}/api/tickets/{ticket}/events")
        stream.close()


# ---------------------------------------------------------------------------------------------
# Messages per WebSocket / STOMP connection


def test_websocket_over_its_message_rate_is_closed_with_1008():
    with start_feed(name="lim-ws", ws_message_rate=SLOW, ws_message_burst=3) as feed:
        with ws_connect(feed.ws_url + "/feed/ws") as ws:
            for i in range(3):
                ws.send(json.dumps({"publish": i}))
            replies = [json.loads(ws.recv(timeout=10)) for _ in range(6)]  # 3 events + 3 acks
            assert sorted(r["published"] for r in replies if r.get("type") == "ack") == [1, 2, 3]
            ws.send(json.dumps({"publish": "one too many"}))
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1008 and "rate limit" in ws.close_reason
        with ws_connect(feed.ws_url + "/feed/ws") as other:  # the limit is per connection
            other.send(json.dumps({"publish": "fresh"}))
            assert json.loads(other.recv(timeout=10))["data"] == "fresh"  # served: the event, then its ack
        assert feed.call(lambda app: app.limits.refused["message_rate"]) == 1


def test_stomp_over_its_message_rate_gets_error_then_close_1008():
    with start_feed(name="lim-stomp", ws_message_rate=SLOW, ws_message_burst=2) as feed:
        with ws_connect(feed.ws_url + "/stomp", subprotocols=["v12.stomp"]) as ws:
            parser = StompParser()
            ws.send(encode_frame(Frame("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0"})))
            assert parser.feed(ws.recv(timeout=10).encode())[0].command == "CONNECTED"
            ws.send(encode_frame(Frame("SEND", {"destination": "/topic/x", "receipt": "r1"}, b"hi")))
            assert parser.feed(ws.recv(timeout=10).encode())[0].headers["receipt-id"] == "r1"
            ws.send(encode_frame(Frame("SEND", {"destination": "/topic/x", "receipt": "r2"}, b"hi")))
            error = parser.feed(ws.recv(timeout=10).encode())[0]
            assert error.command == "ERROR" and error.headers["message"] == "rate limit exceeded"
            assert "rate" in error.text
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1008


def test_qr_socket_over_its_message_rate_is_closed_with_1008(redis_url):
    with start_qrlogin("lim-qrws", redis_url=redis_url, ws_message_rate=SLOW, ws_message_burst=1) as qr:
        ticket = requests.post(qr.url + "/api/tickets", timeout=10).json()["ticket"]
        with ws_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws") as ws:
            assert json.loads(ws.recv(timeout=10))["version"] == 1
            ws.send(json.dumps({"after": 0}))
            assert json.loads(ws.recv(timeout=10))["version"] == 1  # replayed
            ws.send(json.dumps({"after": 0}))
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1008 and "rate limit" in ws.close_reason


# ---------------------------------------------------------------------------------------------
# API calls per address


def test_publish_over_the_api_rate_is_429_with_retry_after():
    with start_feed(name="lim-api", api_rate=SLOW, api_burst=2) as feed:
        for _ in range(2):
            assert requests.post(feed.url + "/feed/publish", json={"data": 1}, timeout=10).status_code == 201
        refused = requests.post(feed.url + "/feed/publish", json={"data": 1}, timeout=10)
        assert_refused(refused, "rate_limited", "lim-api")
        assert int(refused.headers["Retry-After"]) >= 999  # 1 token at 0.001/s
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200  # reads are not limited
        assert feed.call(lambda app: app.buffer.last_seq) == 2  # the refused publish published nothing


def test_phone_password_guessing_is_rate_limited(redis_url):
    with start_qrlogin("lim-login", redis_url=redis_url, api_rate=SLOW, api_burst=3) as qr:
        statuses = [requests.post(qr.url + "/api/phone/login", json={"user": "alice", "password": f"guess{i}"},
                                  timeout=10).status_code for i in range(3)]
        assert statuses == [401, 401, 401]
        refused = requests.post(qr.url + "/api/phone/login", json={"user": "alice", "password": "alice"}, timeout=10)
        assert_refused(refused, "rate_limited", "lim-login")  # even the right password: the address is over


def _post_from(source: str, url: str, path: str, headers: dict | None = None) -> int:
    """POST from a given loopback source address (Linux routes all of 127/8 to lo)."""
    parts = requests.utils.urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", path, body=b"", headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_behind_a_trusted_balancer_each_client_has_its_own_budget(redis_url):
    with start_qrlogin("lim-trust", redis_url=redis_url, api_rate=SLOW, api_burst=1,
                       trusted_proxies=("127.0.0.1",)) as qr, \
            start_balancer([qr], name="lim-lb") as lb:
        try:
            assert _post_from("127.0.0.2", lb.url, "/api/tickets") == 201
        except OSError as exc:  # pragma: no cover - a system without the 127/8 loopback range
            pytest.skip(f"cannot bind 127.0.0.2: {exc}")
        assert _post_from("127.0.0.3", lb.url, "/api/tickets") == 201  # another client, its own bucket
        # a forged X-Forwarded-For does not help: the balancer appends the real peer, which is used
        assert _post_from("127.0.0.2", lb.url, "/api/tickets", {"X-Forwarded-For": "203.0.113.9"}) == 429


def test_behind_an_untrusted_balancer_every_client_shares_its_address(redis_url):
    with start_qrlogin("lim-untrust", redis_url=redis_url, api_rate=SLOW, api_burst=1) as qr, \
            start_balancer([qr], name="lim-lb2") as lb:
        try:
            assert _post_from("127.0.0.2", lb.url, "/api/tickets") == 201
        except OSError as exc:  # pragma: no cover
            pytest.skip(f"cannot bind 127.0.0.2: {exc}")
        assert _post_from("127.0.0.3", lb.url, "/api/tickets") == 429  # both look like the balancer


# ---------------------------------------------------------------------------------------------
# Well-behaved clients at the default settings


def test_defaults_never_refuse_well_behaved_clients(redis_url):
    with start_feed(name="lim-default") as feed:
        streams = [open_sse(feed.url + "/feed/sse") for _ in range(40)]
        session = requests.Session()
        for i in range(300):  # a publisher at full speed
            assert session.post(feed.url + "/feed/publish", json={"data": i}, timeout=10).status_code == 201
        for stream in streams:
            stream.close()
        with ws_connect(feed.ws_url + "/feed/ws") as ws:
            for batch in range(10):  # a WebSocket client sending as fast as it can, and reading its replies
                for i in range(100):
                    ws.send(json.dumps({"publish": i}))
                acks = 0
                while acks < 100:
                    acks += json.loads(ws.recv(timeout=10)).get("type") == "ack"
        assert dict(feed.call(lambda app: app.limits.refused)) == {}
    with start_qrlogin("lim-default-qr", redis_url=redis_url) as qr:
        results = login_many(qr.url, "ws", n=30, concurrency=30, timeout=10)
        assert all(r["ok"] for r in results), [r["error"] for r in results if not r["ok"]]
        assert dict(qr.call(lambda app: app.limits.refused)) == {}


def test_a_bad_trusted_proxies_setting_fails_when_the_app_is_made():
    from servers.feed.app import make_feed_app

    with pytest.raises(ValueError, match="not-an-address"):
        make_feed_app(name="lim-bad", trusted_proxies=("not-an-address",))
