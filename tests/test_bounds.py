"""What every server refuses before a handler runs (servers.bounds), each with its clear answer,
while another client of the same server is served meanwhile.

Hostile clients are raw sockets, so each test controls exactly what reaches the server and when:
a head announcing 40 MB, a chunked body that never ends, a head that never ends, more
connections than the server takes. Each waits for an event (an answer, the server closing the
connection, the server's own count), never a sleep; the timeouts on the sockets only bound a
failure.
"""
from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import requests
from websockets.sync.client import connect

from servers import start_feed
from servers.bounds import DESCRIPTOR_RESERVE
from servers.clients._common import wait_until
from servers.qrlogin import start_qrlogin
from servers.wire.http import Data, HttpParser, Response

ROOT = Path(__file__).resolve().parents[1]


def raw(handle, timeout: float = 20) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=timeout)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read the one response the server sends before it closes: status, headers, body."""
    parser = HttpParser(response=True)
    head, body = None, b""
    while data := sock.recv(65536):
        for event in parser.feed(data):
            if isinstance(event, Response):
                head = event
            elif isinstance(event, Data):
                body += event.data
    assert head is not None, "the server closed the connection without answering"
    return head.status, {k.lower(): v for k, v in head.headers}, body


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int, code: str, served_by: str):
    assert status == expected, body
    assert headers["content-type"].startswith("application/json")
    assert headers["x-served-by"] == served_by
    error = json.loads(body)
    assert error["error"] == code and error["detail"], error


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes the connection (recv returns nothing); the socket's timeout bounds it."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------------------------------------
# Request bodies


def test_a_40_mb_login_body_is_refused_at_its_head_while_others_are_served(redis_url):
    with start_qrlogin("bound-body", redis_url=redis_url) as qr:
        hostile = raw(qr)
        hostile.sendall(b"POST /api/phone/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 40000000\r\n\r\n" + b"[" * 65536)
        other = requests.post(qr.url + "/api/phone/login", json={"user": "alice", "password": "alice"}, timeout=10)
        assert other.status_code == 200 and other.json()["token"]  # served while the 40 MB client waits
        status, headers, body = read_answer(hostile)  # and then the server closed the connection
        assert_json_error(status, headers, body, 413, "too_large", "bound-body")
        assert "40000000" in json.loads(body)["detail"]
        assert qr.call(lambda app: app.limits.refused["too_large"]) == 1


def test_a_chunked_body_is_refused_once_it_passes_the_limit():
    with start_feed(name="bound-chunked", max_body_bytes=1000) as feed:
        hostile = raw(feed)
        hostile.sendall(b"POST /feed/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 1,200 bytes in all: over the limit with the third chunk
            hostile.sendall(b"190\r\n" + b" " * 400 + b"\r\n")
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200
        status, headers, body = read_answer(hostile)
        assert_json_error(status, headers, body, 413, "too_large", "bound-chunked")
        assert feed.call(lambda app: app.buffer.last_seq) == 0  # nothing was published


def test_an_ordinary_client_reads_the_413_and_a_body_at_the_limit_is_parsed():
    with start_feed(name="bound-client", max_body_bytes=4096) as feed:
        refused = requests.post(feed.url + "/feed/publish", data=b"x" * 100_000, timeout=10)
        assert refused.status_code == 413 and refused.json()["error"] == "too_large"
        nested = b"[" * 4096  # the most a client may send, nested as deep as it goes: a 400, not a 500
        answer = requests.post(feed.url + "/feed/publish", data=nested, timeout=10)
        assert answer.status_code == 400 and answer.json()["error"] == "bad_json"
        answer = requests.post(feed.url + "/feed/publish", data=json.dumps({"data": "y" * 4000}), timeout=10)
        assert answer.status_code == 201  # 4,012 bytes: under the limit


def test_a_head_request_with_a_large_body_gets_a_bodiless_413(caplog):
    with start_feed(name="bound-head-method", max_body_bytes=1000) as feed:
        answer = requests.head(feed.url + "/feed/poll", data=b"x" * 100_000, timeout=10)
        assert answer.status_code == 413 and answer.headers["X-Served-By"] == "bound-head-method"
        assert answer.content == b""  # an answer to HEAD never has a body
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


# ---------------------------------------------------------------------------------------------
# Slow clients


def test_a_head_that_never_ends_is_closed_while_others_are_served():
    with start_feed(name="bound-head", idle_connection_timeout_s=0.5) as feed:
        hostile = raw(feed)
        hostile.sendall(b"GET /feed/poll HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200
        assert closed_by_server(hostile)  # Tornado's default would hold it for an hour


def test_a_body_that_never_ends_is_closed_while_others_are_served():
    with start_feed(name="bound-slowbody", body_timeout_s=0.5) as feed:
        hostile = raw(feed)
        hostile.sendall(b"POST /feed/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"data\"")
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200
        assert closed_by_server(hostile)
        assert feed.call(lambda app: app.buffer.last_seq) == 0


# ---------------------------------------------------------------------------------------------
# Connections


def test_a_connection_over_the_cap_gets_503_and_the_held_ones_are_still_served():
    with start_feed(name="bound-cap", max_connections=3) as feed:
        session = requests.Session()  # a keep-alive client: one of the three
        assert session.get(feed.url + "/feed/poll", timeout=10).status_code == 200
        with connect(feed.ws_url + "/feed/ws", proxy=None, open_timeout=10):  # WebSockets count too
            idle = raw(feed)
            wait_until(lambda: feed.open_connections == 3, 10, "three connections held")
            refused = requests.get(feed.url + "/feed/poll", timeout=10)
            assert refused.status_code == 503 and refused.json()["error"] == "server_full"
            assert refused.headers["Retry-After"] == "1" and refused.headers["X-Served-By"] == "bound-cap"
            assert session.get(feed.url + "/feed/poll", timeout=10).status_code == 200  # a held one: served
            idle.close()
        wait_until(lambda: feed.open_connections <= 1, 10, "the idle connections closed")
        assert requests.get(feed.url + "/feed/poll", timeout=10).status_code == 200
        assert feed.call(lambda app: app.limits.refused["server_full"]) == 1


def test_the_cap_stays_below_the_descriptor_limit():
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    with start_feed(name="bound-capped", max_connections=10 ** 9) as feed:
        assert feed.bounds["max_connections"] <= soft - DESCRIPTOR_RESERVE


SERVER_OUT_OF_DESCRIPTORS = textwrap.dedent("""
    import json, logging, os, resource, sys, time
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from servers import start_feed
    feed = start_feed(name="emfile")
    used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else len(os.listdir("/dev/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 4, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(json.dumps({"url": feed.url, "port": feed.port}), flush=True)
    time.sleep(120)
""")


def read_line(stream, timeout: float = 30) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing within {timeout} s"
    return stream.readline()


def test_out_of_descriptors_is_logged_once_and_the_server_recovers():
    server = subprocess.Popen([sys.executable, "-c", SERVER_OUT_OF_DESCRIPTORS], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        info = json.loads(read_line(server.stdout))
        keep = requests.Session()
        assert keep.get(info["url"] + "/feed/poll", timeout=10).status_code == 200
        flood = [socket.create_connection(("127.0.0.1", info["port"]), timeout=10) for _ in range(60)]
        warning = ""
        while "cannot accept connections" not in warning:  # the event: the server says it ran out
            line = read_line(server.stderr)
            assert line, f"the server ended:\n{warning}"
            warning += line
        assert "Too many open files" in warning, warning
        assert keep.get(info["url"] + "/feed/poll", timeout=10).status_code == 200  # a held client is served
        for sock in flood:
            sock.close()
        assert requests.get(info["url"] + "/feed/poll", timeout=20).status_code == 200  # accepting again
    finally:
        server.kill()
        _, stderr = server.communicate(timeout=30)
    log = warning + stderr
    assert log.count("cannot accept connections") == 1, log[-2000:]
    assert "Traceback" not in log, log[-2000:]


def test_serve_raises_the_soft_descriptor_limit_to_the_hard_one():
    script = textwrap.dedent("""
        import resource, servers
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        handle = servers.start_feed(name="nofile")
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], min(hard, 10240) if hard == resource.RLIM_INFINITY else hard)
        handle.stop()
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    soft, expected = out.stdout.split()
    assert int(soft) == int(expected), out.stderr
