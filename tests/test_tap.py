"""The wire tap's counts are results the lessons print, so they are checked: against payloads of
known size, and against a real packet capture (tshark on the loopback interface)."""
from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import threading

import pytest
import requests
import tornado.web
import tornado.websocket

import servers
from servers import runtime
from lab.tap import parse_http_stream, parse_ws_frames, start_tap
from servers.web import BaseHandler, BaseWebSocketHandler


# -- small servers -------------------------------------------------------------------------------

class RawServer:
    """A plain TCP server on the server loop whose behaviour per connection is a coroutine."""

    def __init__(self, behaviour):
        self.behaviour = behaviour

    def __enter__(self):
        async def start():
            return await asyncio.start_server(self.behaviour, "127.0.0.1", 0)

        self.server = runtime.run(start())
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc):
        runtime.call(self.server.close)


async def echo(reader, writer):
    """Echo everything at once; close after the client's half-close."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def count_then_answer(reader, writer):
    """Answer only after the client's FIN: works only if the tap forwards the half-close."""
    total = 0
    while data := await reader.read(65536):
        total += len(data)
    writer.write(f"got {total} bytes".encode())
    await writer.drain()
    writer.close()


async def reset_after_first_read(reader, writer):
    """Die with a TCP reset (SO_LINGER 0) after the first bytes, as a killed peer can."""
    await reader.read(1)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def connect(url: str) -> socket.socket:
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def wait_closed(tap, count: int) -> None:
    """Wait until ``count`` connections are closed on the tap (notified by the tap, no polling)."""
    tap.wait_closed(count)


class Body(BaseHandler):
    def get(self, size):
        self.write(b"x" * int(size))


class Hold(BaseHandler):
    async def get(self):
        self.write("held\n")
        await self.flush()
        self.hold = asyncio.get_running_loop().create_future()
        try:
            await self.hold
        except asyncio.CancelledError:
            pass  # the client went away

    def on_connection_close(self):
        if getattr(self, "hold", None) and not self.hold.done():
            self.hold.cancel()


class Echo(BaseWebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


def web_app(name="tapped"):
    return servers.ServerApp([(r"/body/(\d+)", Body), (r"/hold", Hold), (r"/ws", Echo)], name=name)


# -- exact counts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 1000, 200_000])
def test_echo_counts_exactly_k_bytes_each_way(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with RawServer(echo) as target, start_tap(target.url) as tap:
        sock = connect(tap.url)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == payload
        sock.close()
        wait_closed(tap, 1)
        row = tap.connections().iloc[0]
        assert (row.bytes_up, row.bytes_down) == (size, size)
        assert tap.totals()["bytes_total"] == 2 * size


def test_half_close_is_forwarded():
    with RawServer(count_then_answer) as target, start_tap(target.url) as tap:
        sock = connect(tap.url)
        sock.sendall(b"a" * 12345)
        sock.shutdown(socket.SHUT_WR)  # the server answers only once it sees this FIN
        assert recv_all(sock) == b"got 12345 bytes"
        sock.close()
        wait_closed(tap, 1)
        row = tap.connections().iloc[0]
        assert (row.bytes_up, row.bytes_down, row.ended_by) == (12345, 15, "client")


def test_http_counts_match_what_the_client_sent_and_received():
    with servers.serve(web_app()) as server, start_tap(server) as tap:
        request = b"GET /body/5000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        sock = connect(tap.url)
        sock.sendall(request)
        response = recv_all(sock)
        sock.close()
        wait_closed(tap, 1)
        row = tap.connections().iloc[0]
        assert row.bytes_up == len(request)
        assert row.bytes_down == len(response)
        messages = tap.http_messages()
        down = messages[messages.direction == "down"].iloc[0]
        assert down.body_bytes == 5000
        assert down.header_bytes + down.body_bytes == len(response)
        assert messages[messages.direction == "up"].iloc[0].header_bytes == len(request)


def test_a_reset_on_the_server_side_resets_the_client():
    with RawServer(reset_after_first_read) as target, start_tap(target.url) as tap:
        sock = connect(tap.url)
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            recv_all(sock)
        sock.close()
        wait_closed(tap, 1)
        assert tap.connections().iloc[0].ended_by == "server reset"


def test_server_crash_drops_held_request_and_websocket_through_the_tap():
    server = servers.serve(web_app())
    tap = start_tap(server)
    held = connect(tap.url)
    held.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while b"held" not in first:
        first += held.recv(4096)

    async def open_ws():
        ws = await tornado.websocket.websocket_connect(tap.ws_url + "/ws")
        await ws.write_message("ping")
        assert await ws.read_message() == "ping"
        return ws

    ws = runtime.run(open_ws())
    server.crash()
    rest = recv_all(held)  # returns: the stream ends (EOF) instead of hanging
    assert b"0\r\n\r\n" not in first + rest  # and it ends without the last chunk: no goodbye
    assert runtime.call(ws.read_message) is None  # the WebSocket client sees the connection end
    held.close()
    wait_closed(tap, 2)
    assert set(tap.connections().ended_by) == {"server"}
    tap.stop()


def test_unreachable_target_drops_the_client_at_once():
    with RawServer(echo) as target:
        url = target.url
    with start_tap(url) as tap:  # nothing listens at url any more
        with _ends():  # the reset may come before connect() returns, or at the first read
            sock = connect(tap.url)
            try:
                assert recv_all(sock) == b""
            finally:
                sock.close()
        tap.wait_closed(1)
        assert tap.connections().iloc[0].ended_by == "server refused"
        assert tap.connections().iloc[0].ended_by == "server refused"


class _ends:
    """Either an EOF or a reset counts as 'the connection ended'."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is None or issubclass(exc_type, ConnectionError)


def test_stop_drops_open_connections_and_frees_the_port():
    with RawServer(echo) as target:
        tap = start_tap(target.url)
        sock = connect(tap.url)
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        tap.stop()
        with _ends():
            assert recv_all(sock) == b""
        sock.close()
        with pytest.raises(ConnectionRefusedError):
            connect(tap.url)


def test_same_name_replaces_the_old_tap_and_stop_all_stops_taps():
    with RawServer(echo) as target:
        first = start_tap(target.url)
        second = start_tap(target.url)
        assert not first.running and second.running
        with pytest.raises(ConnectionRefusedError):
            connect(first.url)
        servers.stop_all()
        assert not second.running


# -- showing the bytes ------------------------------------------------------------------------------

def test_show_annotates_an_http_exchange(capsys):
    with servers.serve(web_app()) as server, start_tap(server) as tap:
        requests.get(tap.url + "/body/3", headers={"Connection": "close"})
        tap.show()
        text = capsys.readouterr().out
        assert "GET /body/3 HTTP/1.1\\r\\n" in text and "request line" in text
        assert "HTTP/1.1 200 OK\\r\\n" in text and "status line" in text
        assert "X-Served-By: tapped" in text
        assert "blank line: end of headers" in text
        assert "xxx" in text and "body (3 B)" in text


def test_show_annotates_a_websocket_handshake_and_frames():
    with servers.serve(web_app()) as server, start_tap(server) as tap:
        async def talk():
            ws = await tornado.websocket.websocket_connect(tap.ws_url + "/ws")
            await ws.write_message("hello frames")
            assert await ws.read_message() == "hello frames"
            ws.close()

        runtime.run(talk())
        text = tap.text()
        assert "Upgrade: websocket" in text and "sec-websocket-key" in text.lower()
        assert "HTTP/1.1 101 Switching Protocols" in text and "sec-websocket-accept" in text.lower()
        assert "4 B mask key + 12 B payload: hello frames" in text  # client→server, unmasked for display
        assert "2 B header + 12 B payload: hello frames" in text


def test_text_of_non_http_bytes_and_errors():
    with RawServer(echo) as target, start_tap(target.url) as tap:
        with pytest.raises(LookupError, match="no connection"):
            tap.show()
        sock = connect(tap.url)
        sock.sendall(b"plain bytes\n")
        sock.shutdown(socket.SHUT_WR)
        recv_all(sock)
        sock.close()
        assert "not HTTP" in tap.text() and "plain bytes" in tap.text()
        with pytest.raises(LookupError, match="known ids: 1"):
            tap.text(99)
        with pytest.raises(ValueError, match="direction"):
            tap.text(direction="sideways")
        tap.reset()
        assert tap.totals()["bytes_total"] == 0
        with pytest.raises(TimeoutError, match="still open"):
            tap.wait_closed(1, timeout=0.1)  # reset forgot the closed one; nothing else will close


def test_capture_limit_keeps_only_the_first_bytes_but_counts_all():
    with RawServer(echo) as target, start_tap(target.url, capture_bytes=100) as tap:
        sock = connect(tap.url)
        sock.sendall(b"y" * 5000)
        sock.shutdown(socket.SHUT_WR)
        assert len(recv_all(sock)) == 5000
        sock.close()
        wait_closed(tap, 1)
        assert len(tap.raw(direction="up")) == 100 and tap.totals()["bytes_up"] == 5000


def test_start_tap_rejects_a_bad_target():
    with pytest.raises(ValueError, match="host and port"):
        start_tap("http://localhost/")
    with pytest.raises(TypeError):
        start_tap(42)


def test_parsers_on_known_bytes():
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    messages, rest = parse_http_stream(data, response=True)
    assert [(m.header_bytes, m.body_bytes, m.complete) for m in messages] == [(38, 2, True), (27, 0, True),
                                                                              (47, 13, True)]
    assert rest == b""
    head_then_get = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    messages, _ = parse_http_stream(head_then_get, response=True, methods=["HEAD", "GET"])
    assert [m.body for m in messages] == [b"", b"hello"]
    # RFC 6455 §5.7: a single-frame masked text message "Hello"
    frames = parse_ws_frames(bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]))
    assert [(f.kind, f.header_bytes, f.payload) for f in frames] == [("text", 6, b"Hello")]


@pytest.mark.nginx
def test_tap_in_front_of_a_real_nginx():
    try:
        from servers.balancer.nginx import NginxBalancer, NginxMissing
    except ImportError as exc:  # the balancer package is optional for the tap
        pytest.skip(f"servers.balancer.nginx not available: {exc}")
    server = servers.serve(web_app("behind-nginx"))
    try:
        nginx = NginxBalancer([server], "round_robin").start()
    except NginxMissing as exc:
        pytest.skip(str(exc))
    try:
        with start_tap(nginx) as tap:
            request = b"GET /body/777 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            sock = connect(tap.url)
            sock.sendall(request)
            response = recv_all(sock)
            sock.close()
            assert b"X-Served-By: behind-nginx" in response and response.endswith(b"x" * 777)

            async def talk():
                ws = await tornado.websocket.websocket_connect(tap.ws_url + "/ws")
                await ws.write_message("through nginx")
                assert await ws.read_message() == "through nginx"
                ws.close()

            runtime.run(talk())
            wait_closed(tap, 2)
            first = tap.connections().iloc[0]
            assert (first.bytes_up, first.bytes_down) == (len(request), len(response))
            assert "nginx" in tap.text(1).lower()  # nginx's own Server header, annotated
            assert "101 Switching Protocols" in tap.text(2)
    finally:
        nginx.cleanup()


# -- against a real capture --------------------------------------------------------------------------

@pytest.mark.slow
def test_counts_agree_with_a_tshark_capture():
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (Debian: apt-get install tshark; .ci/run installs it)")
    with servers.serve(web_app()) as server, start_tap(server) as tap:
        capture = subprocess.Popen(
            [tshark, "-i", "lo", "-f", f"tcp port {tap.port}", "-l", "-n", "-T", "fields",
             "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.len", "-e", "tcp.flags.fin", "-e", "tcp.seq"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            packets = Packets(capture.stdout)
            started = _wait_for_capture(capture.stderr)
            if not started:
                pytest.skip("tshark could not capture on lo: " + started.text)
            packets.wait_until_live(tap)
            tap.reset()

            session = requests.Session()
            for size in (0, 10, 1500, 70_000):
                assert len(session.get(tap.url + f"/body/{size}").content) == size
            session.close()
            for size in (5, 300_000):
                requests.get(tap.url + f"/body/{size}", headers={"Connection": "close"}).close()

            async def talk():
                ws = await tornado.websocket.websocket_connect(tap.ws_url + "/ws")
                for message in ("a", "b" * 200, "c" * 70_000):
                    await ws.write_message(message)
                    assert await ws.read_message() == message
                ws.close()

            runtime.run(talk())
            wait_closed(tap, 4)
            client_ports = [int(c.rsplit(":", 1)[1]) for c in tap.connections().client]
            assert len(client_ports) == 4
            # Synchronise on the capture itself: every connection's FIN seen in both directions.
            packets.wait_for_fins(client_ports, tap.port)
        finally:
            capture.terminate()
            capture.wait(10)
        up = sum(packets.payload_bytes(port, tap.port) for port in client_ports)
        down = sum(packets.payload_bytes(tap.port, port) for port in client_ports)
        totals = tap.totals()
        print(f"tap: {totals['bytes_up']} B up, {totals['bytes_down']} B down; tshark: {up} B up, {down} B down")
        assert up > 0 and down > 370_000
        assert abs(totals["bytes_up"] - up) <= 0.01 * up, (totals, up, down)
        assert abs(totals["bytes_down"] - down) <= 0.01 * down, (totals, up, down)


class _Started:
    def __init__(self, ok: bool, text: str):
        self.ok, self.text = ok, text

    def __bool__(self):
        return self.ok


def _wait_for_capture(stream) -> _Started:
    """Read tshark's stderr up to its "Capturing on ..." line. That line comes slightly before the
    capture is live, so Packets.wait_until_live then waits for a probe connection to show up."""
    seen = []
    for line in stream:
        seen.append(line)
        if "Capturing on" in line:
            threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
            return _Started(True, line)
    return _Started(False, "".join(seen))


class Packets:
    """tshark's field lines (src port, dst port, TCP payload length, FIN, relative seq), read in a thread."""

    def __init__(self, stream):
        self.rows: list[tuple[int, int, int, bool, int]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5 or not fields[0]:
                continue
            row = (int(fields[0]), int(fields[1]), int(fields[2] or 0), fields[3] in ("1", "True"), int(fields[4] or 0))
            with self.changed:
                self.rows.append(row)
                self.changed.notify_all()

    def _wait(self, predicate, timeout: float = 20) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def wait_until_live(self, tap) -> None:
        """Open empty probe connections to the tap until tshark reports one of them."""
        for _ in range(20):
            probe = connect(tap.url)
            port = probe.getsockname()[1]
            probe.close()
            if self._wait(lambda: any(port in row[:2] for row in self.rows), timeout=1):
                wait_closed(tap, len(tap._connections))
                return
        pytest.fail("tshark never reported a probe connection on the loopback interface")

    def payload_bytes(self, src: int, dst: int) -> int:
        """Distinct TCP payload bytes sent from ``src`` to ``dst``: the highest byte acknowledged
        by sequence number, so a segment that a loaded machine retransmits is counted once."""
        ends = [seq + length for s, d, length, _, seq in self.rows if (s, d) == (src, dst) and length]
        return max(ends) - 1 if ends else 0  # relative sequence numbers: the first byte is 1

    def wait_for_fins(self, client_ports: list[int], tap_port: int) -> None:
        def all_fins() -> bool:
            fins = {(src, dst) for src, dst, _, fin, _ in self.rows if fin}
            return all((p, tap_port) in fins and (tap_port, p) in fins for p in client_ports)

        assert self._wait(all_fins), f"tshark did not report every FIN; last rows: {self.rows[-5:]}"


def test_show_labels_server_sent_event_lines():
    class Stream(BaseHandler):
        async def get(self):
            self.set_header("Content-Type", "text/event-stream")
            self.write("retry: 1000\n\n: heartbeat\n\nid: 1\ndata: {\"seq\": 1}\n\n")
            await self.flush()

    app = servers.ServerApp([(r"/sse", Stream)], name="sse")
    with servers.serve(app) as server, start_tap(server) as tap:
        requests.get(tap.url + "/sse", headers={"Connection": "close"})
        text = tap.text()
    for expected in ("SSE field 'retry'", "SSE comment (heartbeat)", "SSE field 'id'", "SSE field 'data'",
                     "SSE blank line: end of event", "chunk size"):
        assert expected in text, text
