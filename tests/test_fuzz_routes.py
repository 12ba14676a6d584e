"""Property-based tests of every input surface of the feed server, the QR-login app and our balancer.

Generated requests - methods, paths (traversal, unicode, invalid percent-escapes, very long),
query arguments (huge numbers, NaN, negative, unicode), headers (Origin, Last-Event-ID, cookies,
bearer tokens, X-Forwarded-For, content types) and bodies (invalid JSON, wrong types, NaN, deep
nesting, huge numbers, bytes) - must get, from the real servers on real sockets:

- never a 5xx and never an uncaught exception in the server's log;
- never an HTML error page: a 4xx is JSON ``{"error", "detail"}`` with ``X-Served-By``
  (HTML only as a page route's 200);
- never a hang: every request has a client timeout, and held routes are asked with short ones;
- afterwards, a well-formed client is still served (publish + poll, or full QR logins).

WebSockets and STOMP: generated messages and frames get a reply, an ERROR frame, or a clear
close code (1003, 1008, 1009, 1002), never an abnormal close (1006) or 1011; the server still
serves others afterwards.

Sizes: ``HYPOTHESIS_PROFILE=ci`` (default, about a minute for this file on 2 cores) or
``thorough`` (10,000 examples per property), see ``tests/conftest.py``.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings, strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from servers.balancer import start_balancer
from servers.clients.qr import login_once
from servers.feed.app import start_feed
from servers.qrlogin import start_qrlogin
from servers.wire.stomp import Frame, StompParser, encode_frame

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
# 10,000 examples of one property take minutes: lift pytest-timeout's 300 s for the thorough run
pytestmark = [pytest.mark.slow] + ([pytest.mark.timeout(7200)] if THOROUGH else [])
TIMEOUT = (5, 10)  # connect, read: a request that gets no answer fails the test instead of hanging it


def examples(ci: int) -> settings:
    """``ci`` examples normally, 10,000 under the thorough profile; the servers are shared by all."""
    return settings(max_examples=10_000 if THOROUGH else ci,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Servers (one set per test function, shared by its examples) and the server-side crash detector.


class ErrorLog(logging.Handler):
    """Collects ERROR records from any thread (the servers log uncaught exceptions there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self) -> None:
        assert not self.records, "the server logged errors:\n" + "\n".join(
            f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in self.records[:3])


@pytest.fixture
def error_log():
    handler = ErrorLog()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    handler.check()


@pytest.fixture
def feed(error_log):
    """The feed server of one property; after all its examples, a well-formed client is still served."""
    with start_feed(name="fuzz-feed") as handle:
        yield handle
        assert_feed_still_serves(handle)


@pytest.fixture
def qr(redis_url, error_log):
    """The QR-login app of one property; after all its examples, full logins still work.

    Long tickets (an hour) so that a thorough run's shared ticket does not expire under it.
    """
    with start_qrlogin("fuzz-qr", redis_url=redis_url, longpoll_max_s=2, ticket_ttl=3600) as handle:
        yield handle
        assert_logins_work(handle.url)


@pytest.fixture
def lb(qr):
    """Our balancer in front of the QR app; after the examples, full logins through it still work."""
    with start_balancer([qr], policy="round_robin", name="fuzz-lb") as handle:
        yield handle
        assert_logins_work(handle.url)


def assert_feed_still_serves(feed) -> None:
    r = requests.post(feed.url + "/feed/publish", json={"data": "after the fuzz"}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    seq = r.json()["seq"]
    answer = requests.get(feed.url + "/feed/poll", params={"after": 0}, timeout=TIMEOUT)
    events = strict_json(answer.content)["events"]  # everything the fuzz published is still valid JSON
    assert events[-1] == {**events[-1], "seq": seq, "data": "after the fuzz"}


def assert_logins_work(base_url: str) -> None:
    for transport in ("poll", "longpoll", "sse", "ws"):
        result = login_once(base_url, transport, timeout=10, longpoll_timeout=1)
        assert result["ok"], f"a well-formed {transport} login failed after the fuzz: {result['error']}"


# ---------------------------------------------------------------------------------------------
# What every HTTP answer must look like.

PAGE_PREFIXES = ("/pages", "/login", "/m/")


def check_answer(response: requests.Response, served_by: set[str], path: str) -> None:
    status = response.status_code
    assert status < 500, f"{status} for {response.request.method} {path}: {response.text[:300]}"
    assert response.headers.get("X-Served-By") in served_by, (status, dict(response.headers))
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("application/json") and response.request.method != "HEAD":
        strict_json(response.content)  # what a browser's JSON.parse accepts: no NaN, no Infinity
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type, response.text[:200])
        if response.request.method != "HEAD":
            body = response.json()
            assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("detail"), body
    elif "html" in content_type and response.content:  # (a redirect says text/html with no body)
        assert status < 300 and urlsplit(response.url).path.startswith(PAGE_PREFIXES), (status, path)


def strict_json(raw: bytes):
    def refuse(name):
        raise AssertionError(f"{name} in a JSON answer: every browser's JSON.parse fails on it")

    return json.loads(raw, parse_constant=refuse)


def send(method: str, url: str, **kwargs) -> requests.Response:
    """One request; streaming answers (SSE) are closed after their headers."""
    with requests.request(method, url, timeout=TIMEOUT, stream=True, allow_redirects=False, **kwargs) as response:
        if response.status_code >= 400 or "event-stream" not in response.headers.get("Content-Type", ""):
            response._content = response.raw.read(1 << 20, decode_content=True)  # bounded read
        return response


# ---------------------------------------------------------------------------------------------
# Strategies: requests that probe the edges.

NASTY_VALUES = ["", "0", "-1", "1", "1.5", "nan", "NaN", "inf", "-inf", "1e400", "9" * 30, "9" * 5000, "0x10",
                " 1", "1 ", "\u00e9", "\u2603", "%00", "null", "true", "[]", "{}", "abc", "2**64", "1_000"]
text_values = st.one_of(st.sampled_from(NASTY_VALUES), st.text(max_size=40),
                        st.integers(-2 ** 70, 2 ** 70).map(str), st.floats().map(str))
latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                 max_size=60).map(str.strip)  # (HTTP strips the whitespace around a header value anyway)
segments = st.one_of(st.sampled_from(["..", ".", "%2e%2e", "%2F", "%ff", "%00", "%", "a%zz", "\u00e9", "\u2603",
                                      "x" * 65, "x" * 4000, "A" * 22, "qr.png", "ws", "events", "longpoll"]),
                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), max_size=12))


def json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 80, 2 ** 80), st.floats(allow_nan=False,
                        allow_infinity=False), st.text(max_size=20))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                          inner, max_size=4),
                        max_leaves=12)


def nasty_bodies(fields: list[str]):
    """Bodies for the JSON routes: valid, wrongly typed, not JSON, NaN, deep, huge, binary."""
    obj = st.dictionaries(st.sampled_from(fields + ["x"]), json_values(), max_size=4)
    return st.one_of(
        st.none(),
        obj.map(lambda o: json.dumps(o).encode()),
        json_values().map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"{", b"{'data': 1}", b'{"data": NaN}', b'{"data": Infinity}', b'{"data": 1e400}',
                         b'{"data": ' + b"9" * 5000 + b"}", b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                         b'{"data": ' + b"[" * 150 + b"]" * 150 + b"}", b"\xff\xfe\x00", b"null", b"[]",
                         b'{"user": 1, "password": []}', b'{"user": "alice", "password": "\\ud800"}',
                         b'{"user": "alice", "password": "alice"}', b'{"data": "\\ud800"}', b"x" * 70000]),
        st.binary(max_size=200),
    )


header_sets = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "application/json; charset=latin-1", "*/*"]),
    "Origin": st.sampled_from(["http://[", "null", "http://evil.example", "file://", "http://127.0.0.1:1", "\u00e9"])
              | latin1,
    "Last-Event-ID": text_values.filter(lambda v: v.isprintable() and all(ord(c) < 256 for c in v)).map(str.strip),
    "Authorization": st.sampled_from(["Bearer", "Bearer ", "Basic abc", "Bearer " + "A" * 43, "bearer x y"]) | latin1,
    "Cookie": st.sampled_from(["qr_bind=" + "A" * 43, "qr_bind=", "qr_session=\u00e9", "a=b; qr_bind=x;;;"]) | latin1,
    "X-Forwarded-For": st.sampled_from(["", ",,,", "1.2.3.4, ::1", "not an address", "1.2.3.4" + ",9.9.9.9" * 100]),
    "X-Forwarded-Prefix": st.sampled_from(["/x", "//evil.example", "/\u00e9", "javascript:"]),
    "User-Agent": st.sampled_from(["", "x" * 5000]),
})
methods = st.sampled_from(["GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FOO"])


def paths_for(templates: list[str]):
    """A route template with its ``{}`` filled by nasty segments, or a random path."""
    filled = st.tuples(st.sampled_from(templates), st.lists(segments, min_size=3, max_size=3)).map(
        lambda t: t[0].format(*t[1]) if "{}" in t[0] else t[0])
    random_path = st.lists(segments, max_size=6).map(lambda parts: "/" + "/".join(parts))
    return st.one_of(filled, filled, random_path, st.sampled_from(["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                                                   "//", "/" + "a/" * 2000, "/\u2603"]))


def queries(names: list[str]):
    return st.dictionaries(st.sampled_from(names + ["x", "\u00e9"]), text_values, max_size=4)


def bounded_holds(path: str, params: dict) -> dict:
    """Held routes (long polls) are asked to give up quickly unless the fuzz chose a timeout."""
    if path.endswith("longpoll") and _holds_long(params.get("timeout")):
        params = {**params, "timeout": "0.05"}
    return params


def _holds_long(raw) -> bool:
    """Would this ``timeout`` argument be accepted and hold the request for more than 0.1 s?"""
    if raw is None:
        return True  # the default is 30 s
    try:
        value = float(raw)
    except ValueError:
        return False  # not a number: refused at once with a 400
    return 0.1 < value <= 300


FEED_ROUTES = ["/feed/publish", "/feed/poll", "/feed/longpoll", "/feed/sse", "/feed/ws", "/stomp", "/pages/{}",
               "/pages", "/", "/feed/{}", "/{}"]
QR_ROUTES = ["/api/tickets", "/api/tickets/{}", "/api/tickets/{}/longpoll", "/api/tickets/{}/events",
             "/api/tickets/{}/ws", "/api/tickets/{}/scan", "/api/tickets/{}/confirm", "/api/tickets/{}/redeem",
             "/api/phone/login", "/api/me", "/login", "/m/{}", "/qr/{}.png", "/qr/{}", "/", "/api/{}"]


def http_requests(templates: list[str], arg_names: list[str], fields: list[str]):
    """Whole requests. (Built once per test: making strategies inside a draw costs more than the request.)"""
    parts = st.fixed_dictionaries({"method": methods, "path": paths_for(templates), "params": queries(arg_names),
                                   "headers": header_sets, "body": nasty_bodies(fields)})
    return parts.map(lambda r: {**r, "params": bounded_holds(r["path"], r["params"])})


def fire(base_url: str, request: dict, served_by: set[str]) -> requests.Response:
    response = send(request["method"], base_url + request["path"], params=request["params"],
                    headers=request["headers"], data=request["body"])
    check_answer(response, served_by, request["path"])
    return response


# ---------------------------------------------------------------------------------------------
# HTTP routes


@examples(250)
@given(request=http_requests(FEED_ROUTES, ["after", "timeout", "lastEventId"], ["data"]))
@example(request={"method": "POST", "path": "/feed/publish", "params": {}, "headers": {},
                  "body": b'{"data": ' + b"[" * 900 + b"]" * 900 + b"}"})
@example(request={"method": "POST", "path": "/feed/publish", "params": {}, "headers": {}, "body": b'{"data": NaN}'})
@example(request={"method": "POST", "path": "/feed/publish", "params": {}, "headers": {},
                  "body": b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}"})
@example(request={"method": "GET", "path": "/pages/../../pyproject.toml", "params": {}, "headers": {}, "body": None})
@example(request={"method": "GET", "path": "/feed/sse", "params": {}, "headers": {"Last-Event-ID": "9" * 5000},
                  "body": None})
def test_feed_routes_answer_json_errors_never_5xx(feed, request):
    fire(feed.url, request, {"fuzz-feed"})


@examples(250)
@given(request=http_requests(QR_ROUTES, ["state", "timeout", "after", "lastEventId", "transport", "interval"],
                             ["user", "password"]))
@example(request={"method": "POST", "path": "/api/phone/login", "params": {}, "headers": {},
                  "body": b'{"user": "alice", "password": "\\ud800"}'})
@example(request={"method": "POST", "path": "/api/tickets", "params": {}, "headers": {"Origin": "http://["},
                  "body": None})
@example(request={"method": "GET", "path": "/api/tickets/%ff", "params": {}, "headers": {}, "body": None})
def test_qrlogin_routes_answer_json_errors_never_5xx(qr, request):
    fire(qr.url, request, {"fuzz-qr"})


@pytest.fixture
def qr_with_ticket(qr):
    """The QR app plus a live ticket id, so the fuzz also reaches the routes' inner checks."""
    r = requests.post(qr.url + "/api/tickets", timeout=TIMEOUT)
    assert r.status_code == 201
    return qr, r.json()["ticket"]


LIVE = "LIVE-TICKET"  # replaced by the live ticket's id when the request is sent


@examples(200)
@given(request=http_requests([t.replace("{}", LIVE, 1) for t in QR_ROUTES if "{}" in t],
                             ["state", "timeout", "after", "lastEventId"], ["user", "password"]))
def test_qrlogin_routes_of_a_live_ticket(qr_with_ticket, request):
    qr, ticket = qr_with_ticket
    fire(qr.url, {**request, "path": request["path"].replace(LIVE, ticket)}, {"fuzz-qr"})


@examples(200)
@given(request=http_requests(QR_ROUTES, ["state", "timeout", "after", "transport"], ["user", "password"]))
@example(request={"method": "FOO", "path": "/api/tickets/../x", "params": {"timeout": "nan"}, "headers": {},
                  "body": b"{"})
def test_balancer_in_front_of_qrlogin_never_5xx(lb, request):
    fire(lb.url, request, {"fuzz-qr", "fuzz-lb"})


# Raw bytes on the request line: what requests would refuse to send.
raw_targets = st.lists(st.one_of(st.sampled_from([b"/feed/poll", b"/api/tickets/", b"%ff", b"%00", b"%", b"..",
                                                  b"/", b"?after=", b"&", b"=", b"\xff", b"\xc3\xa9", b"#", b";"]),
                                 st.binary(max_size=6).map(lambda b: bytes(c for c in b if c > 0x20 and c != 0x7f))),
                       max_size=10).map(lambda parts: b"/" + b"".join(parts))


@examples(100)
@given(target=raw_targets, method=st.sampled_from([b"GET", b"POST", b"DELETE"]))
def test_raw_request_targets_get_json_answers(feed, qr, target, method):
    for handle, name in ((feed, "fuzz-feed"), (qr, "fuzz-qr")):
        status, headers, body = raw_request(handle.url, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        if status == 400 and "x-served-by" not in headers:
            continue  # Tornado's HTTP layer refused the request line itself (below any application)
        assert status < 500, (target, status, body[:200])
        assert headers.get("x-served-by") == name, (target, status, headers)
        if status >= 400:
            assert json.loads(body)["error"], body


def raw_request(base_url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer (the server closes: Connection: close)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"no HTTP answer to {data[:80]!r}: {raw[:80]!r}"
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------------------------------------
# WebSockets: the feed's /feed/ws, the STOMP broker, the QR ticket socket.

CLEAR_CLOSES = {1000, 1002, 1003, 1008, 1009}
ws_messages = st.one_of(
    st.text(max_size=60), st.binary(max_size=60), json_values().map(json.dumps),
    st.sampled_from(['{"after": -1}', '{"after": true}', '{"after": 1e400}', '{"after": ' + "9" * 5000 + "}",
                     '{"publish": NaN}', '{"publish": ' + "[" * 2000 + "]" * 2000 + "}", '{"after": 0}',
                     '{"publish": {"ok": 1}}', "[]", "null", "x" * 70000]))


def ws_connect(url: str, **kwargs):
    return connect(url, proxy=None, compression=None, max_size=None, open_timeout=10, close_timeout=5, **kwargs)


@examples(100)
@given(messages=st.lists(ws_messages, min_size=1, max_size=4))
@example(messages=['{"publish": ' + "[" * 2000 + "]" * 2000 + "}", '{"publish": NaN}'])
def test_feed_websocket_answers_or_closes_clearly(feed, messages):
    with ws_connect(feed.ws_url + "/feed/ws") as ws:
        for message in messages:
            try:
                ws.send(message)
                if _replay_request(message):
                    continue  # {"after": n} replays events (maybe none): no reply of its own
                while True:  # any other text message gets an ack or an error (events may come first)
                    reply = json.loads(ws.recv(timeout=10))
                    if "seq" not in reply:
                        break
            except ConnectionClosed:
                assert ws.close_code in CLEAR_CLOSES, (message[:80], ws.close_code, ws.close_reason)
                assert ws.close_code != 1000
                return
            assert reply.get("type") in ("ack", "error"), reply


def _replay_request(message) -> bool:
    if isinstance(message, bytes):
        return False
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict) or "publish" in value or "after" not in value:
        return False
    after = value["after"]
    return isinstance(after, int) and not isinstance(after, bool) and after >= 0


stomp_commands = st.sampled_from(["CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN",
                                  "COMMIT", "ABORT", "DISCONNECT", "MESSAGE", "ERROR", "connect", ""])
stomp_headers = st.dictionaries(st.sampled_from(["destination", "id", "receipt", "accept-version", "heart-beat",
                                                 "content-type", "content-length", "host", "x"]),
                                st.one_of(text_values, st.sampled_from(["/topic/feed", "/topic/x", "/app/hello",
                                                                        "/app/nope", "/queue/a", "1.2", "1.0,9.9",
                                                                        "10,10", "-1,5", "0,0"])), max_size=4)


def frame_bytes(command: str, headers: dict, body: bytes) -> bytes:
    """An encoded frame; CONNECT cannot carry CR/LF unescaped, so such a header is written raw."""
    frame = Frame(command or "SEND", {k: v for k, v in headers.items() if k != "content-length"}, body)
    try:
        return encode_frame(frame)
    except ValueError:
        return (frame.command + "\n" + "".join(f"{k}:{v}\n" for k, v in frame.headers.items()) + "\n").encode(
            "utf-8", "replace") + body + b"\0"


def raw_frame_bytes(command: str, headers: dict, body: bytes) -> bytes:
    """A frame written without escaping. A content-length beyond the body is left out: the frame
    would be unfinished, and the broker rightly waits for the rest (that is no error to answer)."""
    length = headers.get("content-length", "")
    if length.isascii() and length.isdigit() and (len(length) > 6 or int(length) > len(body)):
        headers = {k: v for k, v in headers.items() if k != "content-length"}
    head = command + "\n" + "".join(f"{k}:{v}\n" for k, v in headers.items()) + "\n"
    return head.encode("utf-8", "replace") + body + b"\0"


stomp_messages = st.one_of(
    st.builds(frame_bytes, stomp_commands, stomp_headers, st.binary(max_size=40)),
    st.builds(raw_frame_bytes, stomp_commands, stomp_headers, st.binary(max_size=40)),
    st.binary(max_size=80), st.sampled_from([b"\n", b"\r\n", b"SEND\ndestination:/a\\t\n\n\0", b"x" * 70000,
                                             b"SEND\ncontent-length:5\n\nab\0"]))


@examples(100)
@given(connect_first=st.booleans(), frames=st.lists(stomp_messages, max_size=4), as_text=st.booleans())
def test_stomp_answers_error_then_close_or_keeps_serving(feed, connect_first, frames, as_text):
    with ws_connect(feed.ws_url + "/stomp", subprotocols=["v12.stomp"]) as ws:
        sent = [encode_frame(Frame("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0"}))] if connect_first else []
        sent += frames + [encode_frame(Frame("SEND", {"destination": "/topic/probe", "receipt": "probe"}))]
        parser = StompParser(max_body=1 << 20)
        try:
            for data in sent:
                ws.send(data.decode("utf-8", "replace") if as_text else data)
                if len(data) > 64 * 1024:  # Tornado answers 1009 and drops the TCP connection at once:
                    break                  # anything sent after it would reset the connection (1006)
            while True:  # until our probe's RECEIPT, or an ERROR and the close
                message = ws.recv(timeout=10)
                for frame in parser.feed(message.encode() if isinstance(message, str) else message):
                    if frame.command == "RECEIPT" and frame.headers.get("receipt-id") == "probe":
                        return  # the session survived every frame, and still answers
                    if frame.command == "ERROR":
                        assert frame.headers.get("message"), frame
        except ConnectionClosed:
            assert ws.close_code in CLEAR_CLOSES, (frames, ws.close_code, ws.close_reason)


@examples(100)
@given(messages=st.lists(ws_messages, min_size=1, max_size=3))
@example(messages=['{"after": ' + "[" * 2000 + "]" * 2000 + "}"])
def test_qr_ticket_socket_closes_clearly_on_bad_messages(qr_with_ticket, messages):
    qr, ticket = qr_with_ticket
    with ws_connect(f"{qr.ws_url}/api/tickets/{ticket}/ws") as ws:
        assert json.loads(ws.recv(timeout=10))["state"] == "pending"  # the current state first
        for message in messages:
            try:
                ws.send(message)
            except ConnectionClosed:
                break
            if not _valid_after(message):
                break
        else:
            return  # only valid {"after": v} messages: the socket stays open, nothing to check
        try:
            while True:
                ws.recv(timeout=10)
        except ConnectionClosed:
            assert ws.close_code in {1003, 1008, 1009}, (messages, ws.close_code, ws.close_reason)


def _valid_after(message) -> bool:
    if isinstance(message, bytes):
        return False  # binary: closed with 1003 whatever it holds
    try:
        value = json.loads(message)
    except (TypeError, ValueError, RecursionError):
        return False
    after = value.get("after") if isinstance(value, dict) else None
    return isinstance(after, int) and not isinstance(after, bool) and after >= 0 and len(message) <= 65536


def test_websockets_still_serve_after_bad_input(feed):
    """After a too-big message and a broken STOMP frame, a well-formed WebSocket client is served."""
    with ws_connect(feed.ws_url + "/feed/ws") as ws:
        ws.send("x" * 70000)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009
    with ws_connect(feed.ws_url + "/stomp", subprotocols=["v12.stomp"]) as ws:
        ws.send(b"SEND\ndestination:/a\\t\n\n\0")
        frames = StompParser().feed(ws.recv(timeout=10).encode())
        assert frames[0].command == "ERROR" and "undefined escape" in frames[0].text
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1002
    with ws_connect(feed.ws_url + "/feed/ws") as ws:
        ws.send(json.dumps({"publish": "still here"}))
        got = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
        assert {"type": "ack", "published": 1} in got and any(m.get("data") == "still here" for m in got)
    assert_feed_still_serves(feed)


# Raw frames below the WebSocket library: unmasked frames, reserved bits and opcodes, invalid
# UTF-8, lengths that lie. Tornado ends such a connection itself (a close frame where RFC 6455
# gives a code, else by closing TCP); what must hold is that nothing is logged as a server error
# and that the next, well-formed client is served (the ``feed`` fixture checks that at the end).
raw_frames = st.one_of(
    st.binary(max_size=40),
    st.tuples(st.integers(0, 255), st.booleans(), st.binary(max_size=30), st.binary(min_size=4, max_size=4)).map(
        lambda t: bytes([t[0], (0x80 if t[1] else 0) | len(t[2])]) + (t[3] if t[1] else b"") + t[2]),
    st.sampled_from([b"\x81\x85abcd" + bytes(a ^ b for a, b in zip(b"\xff\xfe\xfd\xfc\xfb", b"abcdabcd")),  # bad UTF-8
                     b"\x81\x05hello",  # unmasked client frame
                     b"\x89\xfe\x01\x00abcd" + b"x" * 256,  # a ping longer than 125 bytes
                     b"\x88\x82abcd" + bytes(a ^ b for a, b in zip(b"\x03\xe7", b"ab")),  # close with code 999
                     b"\x81\xff\x7f\xff\xff\xff\xff\xff\xff\xffabcd"]))  # 2**63-1 bytes announced


@examples(100)
@given(frames=st.lists(raw_frames, min_size=1, max_size=3), path=st.sampled_from(["/feed/ws", "/stomp"]))
def test_raw_websocket_frames_never_crash_the_server(feed, frames, path):
    parts = urlsplit(feed.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the connection during the handshake"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 101"), answer[:100]
        try:
            for frame in frames:
                sock.sendall(frame)
            sock.settimeout(0.05)  # an incomplete frame is simply waited for; do not wait long
            while sock.recv(65536):
                pass
        except (socket.timeout, ConnectionError):
            pass
