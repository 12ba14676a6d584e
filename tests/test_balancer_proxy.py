"""Both balancers (ours and real nginx) proxy plain requests, streams, long polls and WebSockets.

The backends are tiny ServerApps defined here, so these tests do not depend on the QR app. Every
wait is on an event (a chunk arriving, a message, a future the backend resolves), never a sleep.
"""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
import requests
import tornado.httpclient
import tornado.websocket

from servers import serve
from servers.balancer import start_balancer
from servers.runtime import ServerApp, run
from servers.web import BaseHandler, BaseWebSocketHandler
from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing, find_nginx

# ---- the test backends ------------------------------------------------------------------------


class EchoHandler(BaseHandler):
    """Says what arrived: method, body, and the headers a balancer must keep, add or drop."""

    def _echo(self) -> None:
        h = self.request.headers
        self.set_header("Set-Cookie", "from_backend=1; Path=/")
        self.write_json({"method": self.request.method, "body": self.request.body.decode(), "path": self.request.uri,
                         "host": h.get("Host"), "xff": h.get("X-Forwarded-For"), "cookie": h.get("Cookie"),
                         "keep_alive": h.get("Keep-Alive"), "te": h.get("TE")})

    get = post = put = delete = _echo


class StreamHandler(BaseHandler):
    """An SSE-like stream: one event now, the next only when the test releases it."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.write("data: first\n\n")
        await self.flush()
        await self.application.release.wait()
        self.write("data: second\n\n")


class HoldHandler(BaseHandler):
    """A held long poll: answers only when the test releases it."""

    async def get(self) -> None:
        self.application.holding.set()
        await self.application.release.wait()
        self.write_json({"released": True})


class EchoSocket(BaseWebSocketHandler):
    """Echoes frames; ``close:<code>:<reason>`` makes it close with that code."""

    def check_origin(self, origin):
        return True  # lets the test see the Origin the balancer forwarded

    def select_subprotocol(self, subprotocols):
        return subprotocols[0] if subprotocols else None

    def open(self) -> None:
        self.write_message(json.dumps({"hello": self.application.name, "origin": self.request.headers.get("Origin"),
                                       "cookie": self.request.headers.get("Cookie"),
                                       "xff": self.request.headers.get("X-Forwarded-For")}))

    def on_message(self, message) -> None:
        if isinstance(message, str) and message.startswith("close:"):
            _, code, reason = message.split(":", 2)
            self.close(int(code), reason)
        else:
            self.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        closed = self.application.closed(self.get_argument("id", ""))
        if not closed.done():
            closed.set_result((self.close_code, self.close_reason))


class BackendApp(ServerApp):
    def __init__(self, name: str) -> None:
        super().__init__([(r"/plain.*", EchoHandler), (r"/api/tickets/[^/]+/plain", EchoHandler),
                          (r"/stream", StreamHandler), (r"/hold", HoldHandler), (r"/ws", EchoSocket)], name=name)

    async def startup(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.closes: dict[str, asyncio.Future] = {}

    def closed(self, connection_id: str) -> asyncio.Future:
        """Resolves with (close code, reason) when the WebSocket opened with ?id=connection_id closes."""
        return self.closes.setdefault(connection_id, asyncio.get_running_loop().create_future())


def start_backend(name: str):
    return serve(BackendApp(name))


def dead_url() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def nginx_path():
    try:
        return find_nginx()
    except NginxMissing:
        return None


KINDS = ["python", pytest.param("nginx", marks=pytest.mark.nginx)]


@pytest.fixture(params=KINDS)
def kind(request):
    if request.param == "nginx" and nginx_path() is None:
        pytest.skip(HOW_TO_GET_NGINX)
    return request.param


@pytest.fixture
def two_backends():
    a, b = start_backend("A"), start_backend("B")
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def balancer_factory():
    started = []

    def factory(*args, **kwargs):
        lb = start_balancer(*args, **kwargs)
        started.append(lb)
        return lb

    yield factory
    for lb in started:
        lb.stop()


# ---- plain requests ---------------------------------------------------------------------------


def test_plain_request_keeps_host_adds_forwarded_for_drops_hop_by_hop(kind, two_backends, balancer_factory):
    a, b = two_backends
    lb = balancer_factory([a, b], "round_robin", kind=kind)
    r = requests.post(lb.url + "/plain?x=1", data=b"hello body", timeout=10,
                      headers={"Host": "lab.example:8080", "Keep-Alive": "timeout=5", "TE": "trailers",
                               "X-Forwarded-For": "10.0.0.9", "Cookie": "c=1"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["method"] == "POST" and seen["body"] == "hello body" and seen["path"] == "/plain?x=1"
    assert seen["host"] == "lab.example:8080", "the balancer must keep the client's Host header"
    assert seen["xff"] == "10.0.0.9, 127.0.0.1", f"X-Forwarded-For must append the client: {seen['xff']!r}"
    assert seen["cookie"] == "c=1"
    assert seen["keep_alive"] is None and seen["te"] is None, "hop-by-hop headers must not reach the backend"
    assert r.headers["X-Served-By"] in ("A", "B"), "a proxied response keeps the backend's X-Served-By"
    assert "from_backend=1" in r.headers.get("Set-Cookie", "")


def test_round_robin_alternates_and_routing_log_records_it(kind, two_backends, balancer_factory):
    a, b = two_backends
    lb = balancer_factory([a, b], "round_robin", kind=kind)
    served = [requests.get(lb.url + f"/plain/{i}", timeout=10).headers["X-Served-By"] for i in range(4)]
    assert served[0] != served[1] and served[0] == served[2] and served[1] == served[3], served
    log = lb.wait_routing_log(4)
    assert list(log["backend"]) == served, "the routing log names the backend that answered each request"
    assert list(log["path"]) == [f"/plain/{i}" for i in range(4)]
    assert set(log["status"]) == {200} and set(log["client"]) == {"127.0.0.1"} and set(log["method"]) == {"GET"}
    assert set(log["backend_url"]) <= {a.url, b.url}


def test_ticket_in_path_goes_to_the_log_and_to_one_backend(kind, two_backends, balancer_factory):
    a, b = two_backends
    lb = balancer_factory([a, b], "ticket_hash", kind=kind)
    served = {requests.get(lb.url + "/api/tickets/T123/plain", timeout=10).headers["X-Served-By"] for _ in range(6)}
    assert len(served) == 1, f"ticket_hash must send one ticket to one backend, it went to {served}"
    log = lb.wait_routing_log(6)
    assert set(log["ticket"]) == {"T123"} and set(log["route"]) == {"/api/tickets/{id}/plain"}
    # The ticket may also come as a query argument (?ticket=...): the same key, the same backend.
    by_query = {requests.get(lb.url + "/plain?ticket=T123", timeout=10).headers["X-Served-By"] for _ in range(4)}
    assert by_query == served, f"?ticket=T123 must go where /api/tickets/T123 goes: {by_query} vs {served}"
    assert set(lb.wait_routing_log(10)["ticket"]) == {"T123"}


def test_cookie_policy_sets_a_sticky_cookie_and_follows_it(kind, two_backends, balancer_factory):
    a, b = two_backends
    lb = balancer_factory([a, b], "cookie", kind=kind)
    session = requests.Session()
    first = session.get(lb.url + "/plain", timeout=10)
    assert "spl_backend=" in first.headers.get("Set-Cookie", ""), first.headers
    pinned = first.headers["X-Served-By"]
    assert session.cookies.get("spl_backend") == pinned
    assert {session.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] for _ in range(4)} == {pinned}
    # Another client (no cookie) gets the next backend in turn, and its own cookie.
    other = requests.get(lb.url + "/plain", timeout=10)
    assert other.headers["X-Served-By"] != pinned


def test_least_conn_avoids_the_backend_holding_a_request(two_backends, balancer_factory):
    a, b = two_backends
    lb = balancer_factory([a, b], "least_conn", kind="python")
    held = requests.Session()
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", held.get(lb.url + "/hold", timeout=20)))
    thread.start()
    # Wait until one backend really holds the request (an event set by the backend).
    run(_wait_any([a.app.holding, b.app.holding]))
    holder = a if a.app.holding.is_set() else b
    assert lb.open_connections()[holder.name] == 1
    others = {requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] for _ in range(3)}
    assert others == {({"A", "B"} - {holder.name}).pop()}, "least_conn must avoid the busy backend"
    holder.call(lambda app: app.release.set())
    thread.join(10)
    assert result["r"].json() == {"released": True}


async def _wait_any(events):
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()


# ---- streaming and long polls -----------------------------------------------------------------


def test_stream_chunk_arrives_before_the_response_ends(kind, balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind=kind)
    with requests.get(lb.url + "/stream", stream=True, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        chunks = r.iter_content(chunk_size=None)
        first = next(chunks)  # arrives while the backend still waits for release: not buffered
        assert first == b"data: first\n\n"
        a.call(lambda app: app.release.set())
        rest = b"".join(chunks)
    assert rest == b"data: second\n\n"


def test_long_poll_is_held_until_the_backend_answers(kind, balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind=kind)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(requests.get, lb.url + "/hold", timeout=30)
        run(asyncio.wait_for(a.app.holding.wait(), 10))
        assert not pending.done(), "the long poll must be held while the backend holds it"
        a.call(lambda app: app.release.set())
        assert pending.result(10).json() == {"released": True}


def test_client_leaving_a_stream_closes_the_upstream(balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind="python")
    with requests.get(lb.url + "/stream", stream=True, timeout=10) as r:
        chunks = r.iter_content(chunk_size=None)  # kept: closing this generator early closes the socket
        next(chunks)
        assert lb.open_connections() == {"A": 1}
    # After the client leaves, the balancer closes its upstream connection and stops counting it.
    import time

    deadline = time.monotonic() + 10
    while lb.open_connections() != {"A": 0} and time.monotonic() < deadline:
        run(asyncio.sleep(0.01))
    assert lb.open_connections() == {"A": 0}


# ---- WebSocket --------------------------------------------------------------------------------


async def _ws(url, subprotocols=None, headers=None):
    request = tornado.httpclient.HTTPRequest(url, headers=headers or {})
    return await tornado.websocket.websocket_connect(request, subprotocols=subprotocols)


def test_websocket_relays_both_ways_with_subprotocol_headers_and_close_codes(kind, balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind=kind)

    async def scenario():
        conn = await _ws(lb.ws_url + "/ws", ["v12.stomp", "v11.stomp"],
                         {"Origin": "http://lab.example", "Cookie": "session=s1"})
        assert conn.selected_subprotocol == "v12.stomp", "the backend's subprotocol choice reaches the client"
        assert conn.headers.get("X-Served-By") == "A", "the 101 keeps the backend's X-Served-By"
        hello = json.loads(await conn.read_message())
        assert hello["origin"] == "http://lab.example" and hello["cookie"] == "session=s1"
        assert hello["xff"] == "127.0.0.1"
        await conn.write_message("ping text")
        assert await conn.read_message() == "ping text"
        await conn.write_message(b"\x00\x01binary", binary=True)
        assert await conn.read_message() == b"\x00\x01binary"
        await conn.write_message("close:4001:backend says bye")
        assert await conn.read_message() is None
        assert (conn.close_code, conn.close_reason) == (4001, "backend says bye"), "backend close code relayed"

        conn2 = await _ws(lb.ws_url + "/ws?id=second")
        await conn2.read_message()
        conn2.close(4002, "client says bye")
        return await asyncio.wait_for(a.app.closed("second"), 10)

    assert run(scenario()) == (4002, "client says bye"), "the client's close code must reach the backend"


def test_websocket_backend_crash_closes_the_client_with_a_code(balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind="python")

    async def scenario():
        conn = await _ws(lb.ws_url + "/ws")
        await conn.read_message()
        return conn

    conn = run(scenario())
    a.crash()
    assert run(conn.read_message()) is None
    assert conn.close_code == 1014 and "A" in conn.close_reason


# ---- dead backends ----------------------------------------------------------------------------


def test_dead_backend_gives_json_502_naming_it(kind, balancer_factory):
    lb = balancer_factory([f"Z={dead_url()}"], kind=kind, name="front")
    r = requests.get(lb.url + "/plain", timeout=15)
    assert r.status_code == 502
    body = r.json()
    assert body["error"] == "bad_gateway" and body["backend"] == "Z" and "Z" in body["detail"], body
    assert r.headers["X-Served-By"] == "front", "the balancer's own answer carries its own name"
    log = lb.wait_routing_log(1)
    assert list(log["status"]) == [502] and list(log["backend"]) == ["Z"]


def test_websocket_to_dead_backend_is_refused_with_a_reason(kind, balancer_factory):
    lb = balancer_factory([f"Z={dead_url()}"], kind=kind)

    async def scenario():
        try:
            conn = await _ws(lb.ws_url + "/ws")
        except tornado.httpclient.HTTPClientError as exc:
            return ("http", exc.code, exc.response.body if exc.response is not None else b"")
        assert await conn.read_message() is None
        return ("close", conn.close_code, conn.close_reason)

    how, code, reason = run(scenario())
    if kind == "python":
        assert (how, code) == ("close", 1014) and "Z" in reason, (how, code, reason)
    else:  # nginx never completes the handshake: it answers the upgrade with its JSON 502
        assert (how, code) == ("http", 502) and b"bad_gateway" in reason


def test_backend_refusing_the_upgrade_is_relayed(balancer_factory):
    a = start_backend("A")
    lb = balancer_factory([a], kind="python")

    async def scenario():
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await _ws(lb.ws_url + "/no-such-socket")
        return info.value

    error = run(scenario())
    assert error.code == 404 and json.loads(error.response.body)["error"] == "not_found"


def test_no_backends_left_is_a_503(balancer_factory, two_backends):
    a, b = two_backends
    lb = balancer_factory([a, b], kind="python")
    lb.remove_backend("A")
    assert {requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] for _ in range(3)} == {"B"}
    lb.remove_backend("B")
    r = requests.get(lb.url + "/plain", timeout=10)
    assert r.status_code == 503 and r.json()["error"] == "no_backends"
    lb.add_backend(a)
    assert requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] == "A"


@pytest.mark.nginx
def test_nginx_reload_changes_backends(two_backends, balancer_factory):
    if nginx_path() is None:
        pytest.skip(HOW_TO_GET_NGINX)
    a, b = two_backends
    lb = balancer_factory([a], kind="nginx")
    assert requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] == "A"
    lb.add_backend(b)
    served = {requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] for _ in range(4)}
    assert served == {"A", "B"}
    lb.remove_backend("A")
    assert {requests.get(lb.url + "/plain", timeout=10).headers["X-Served-By"] for _ in range(3)} == {"B"}
