"""The in-process runtime in a plain Python process (tests/test_runtime_kernel.py does the same
inside a real Jupyter kernel, where the pitfalls of a running kernel loop actually bite)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import socket
import threading

import pytest
import requests
import tornado.httpclient
import tornado.websocket

import servers
from servers import runtime
from servers.web import BaseHandler, BaseWebSocketHandler


class Count(BaseHandler):
    def get(self):
        self.application.hits += 1
        self.write_json({"name": self.application.name, "hits": self.application.hits})


class Hold(BaseHandler):
    """Sends a first line at once, then holds the response open until the client goes away."""

    async def get(self):
        self.write("held\n")
        await self.flush()
        self.application.held.set()
        self.wait = asyncio.get_running_loop().create_future()
        try:
            await self.wait
        except asyncio.CancelledError:
            pass

    def on_connection_close(self):
        if not self.wait.done():
            self.wait.cancel()


class Echo(BaseWebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


class TinyApp(servers.ServerApp):
    """Its state (hits, held) lives on the application object, one per server."""

    def __init__(self, name: str):
        super().__init__([(r"/count", Count), (r"/hold", Hold), (r"/ws", Echo)], name=name)
        self.hits = 0
        self.held = asyncio.Event()
        self.shutdowns = 0

    async def shutdown(self):
        self.shutdowns += 1


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def open_held_request(handle) -> socket.socket:
    """A raw HTTP request the server holds open; returns once the server has sent its first line."""
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
    sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"held" not in received:
        received += sock.recv(4096)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything until the server ends the connection (EOF or reset); a hang fails on the timeout."""
    chunks = []
    try:
        while data := sock.recv(4096):
            chunks.append(data)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def open_websocket(url: str):
    ws = await tornado.websocket.websocket_connect(url + "/ws")
    await ws.write_message("ping")
    assert await ws.read_message() == "ping"
    return ws


def test_blocking_requests_gets_an_answer():
    handle = servers.serve(TinyApp("plain"))
    response = requests.get(handle.url + "/count", timeout=10)
    assert response.json() == {"name": "plain", "hits": 1}
    assert response.headers["X-Served-By"] == "plain"


def test_async_client_from_another_loop_gets_an_answer():
    handle = servers.serve(TinyApp("async"))

    async def fetch():
        return await tornado.httpclient.AsyncHTTPClient().fetch(handle.url + "/count")

    # A loop of its own, as a kernel has. In a thread of its own too: Playwright's sync API (the
    # session's browser fixture) may already run a loop in this thread, and asyncio.run refuses that.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        response = pool.submit(asyncio.run, fetch()).result(timeout=30)
    assert response.code == 200 and b'"hits":1' in response.body


def test_same_name_replaces_the_old_server():
    first = servers.serve(TinyApp("again"))
    second = servers.serve(TinyApp("again"))
    assert first.state == "stopped" and second.running
    assert first.app.shutdowns == 1
    if second.port != first.port:  # the OS may hand the same free port out again
        assert refused(first.port)
    assert requests.get(second.url + "/count").json()["hits"] == 1
    assert servers.running() == {"again": second}


def test_replace_false_refuses_a_second_server_with_that_name():
    servers.serve(TinyApp("only"))
    with pytest.raises(RuntimeError, match="already running"):
        servers.serve(TinyApp("only"), replace=False)


def test_servers_side_by_side_keep_separate_state():
    a = servers.serve(TinyApp("a"))
    b = servers.serve(TinyApp("b"))
    for _ in range(3):
        requests.get(a.url + "/count")
    assert requests.get(b.url + "/count").json() == {"name": "b", "hits": 1}
    assert a.call(lambda app: app.hits) == 3
    assert set(servers.running()) == {"a", "b"}


def test_stop_closes_held_requests_and_websockets_and_frees_the_port():
    handle = servers.serve(TinyApp("stopping"))
    held = open_held_request(handle)
    ws = runtime.run(open_websocket(handle.ws_url))
    with handle:
        pass  # leaving the with block stops it
    assert handle.state == "stopped"
    read_to_end(held)
    assert runtime.call(ws.read_message) is None
    assert refused(handle.port)


def test_crash_drops_listener_and_every_connection_at_once():
    handle = servers.serve(TinyApp("crashing"))
    held = open_held_request(handle)
    ws = runtime.run(open_websocket(handle.ws_url))
    assert handle.open_connections == 2
    handle.crash()
    assert handle.state == "crashed"
    rest = read_to_end(held)
    assert b"0\r\n\r\n" not in rest  # no final chunk: the response just stops
    assert runtime.call(ws.read_message) is None
    assert runtime.call(lambda: ws.close_code) is None  # no close frame was sent: the TCP connection ended
    assert refused(handle.port)
    assert handle.open_connections == 0
    assert handle.app.shutdowns == 1
    assert "crashing" not in servers.running()


def test_stop_all_stops_everything():
    handles = [servers.serve(TinyApp(f"n{i}")) for i in range(3)]
    servers.stop_all()
    assert servers.running() == {}
    assert all(refused(h.port) for h in handles)


def test_call_and_run_reach_the_server_loop_and_refuse_to_deadlock():
    assert servers.call(lambda: threading.current_thread().name) == "server-loop"

    async def nested():
        runtime.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="deadlock"):
        runtime.run(nested())


def test_startup_failure_frees_the_port_and_raises():
    class Broken(TinyApp):
        async def startup(self):
            raise ValueError("cannot start")

    with pytest.raises(ValueError, match="cannot start"):
        servers.serve(Broken("broken"))
    assert "broken" not in servers.running()


def test_unknown_route_is_a_json_404():
    handle = servers.serve(TinyApp("routes"))
    response = requests.get(handle.url + "/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_cancel_and_wait_ends_a_task_whose_cancellation_wait_for_lost():
    """On Python 3.11, a cancel that arrives in the loop step where ``wait_for``'s result is set is
    lost (cpython#86296) and the task runs into its next wait; cancel_and_wait cancels it again."""

    async def scenario() -> tuple[bool, bool]:
        result = asyncio.get_running_loop().create_future()
        reached_next_wait = asyncio.Event()

        async def watcher() -> None:
            await asyncio.wait_for(result, 10)
            reached_next_wait.set()
            await asyncio.sleep(3600)  # the watcher's next wait: an hour

        task = asyncio.ensure_future(watcher())
        await asyncio.sleep(0)  # the watcher now waits in wait_for
        result.set_result("confirmed")
        ended = await runtime.cancel_and_wait([task, None], timeout=5)
        return ended, task.cancelled()

    ended, cancelled = runtime.run(scenario())
    assert ended and cancelled


def test_cancel_and_wait_gives_up_at_its_timeout_and_retrieves_exceptions(caplog):
    async def scenario() -> tuple[bool, bool]:
        refusing = True

        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if not refusing:
                        raise

        async def failing() -> None:
            raise ValueError("ended with an error before the cancel")

        stuck, failed = asyncio.ensure_future(stubborn()), asyncio.ensure_future(failing())
        await asyncio.sleep(0)
        ended = await runtime.cancel_and_wait([stuck, failed], timeout=0.3)
        stuck_running = not stuck.done()
        refusing = False
        assert await runtime.cancel_and_wait([stuck], timeout=5)
        return ended, stuck_running

    ended, stuck_running = runtime.run(scenario())
    assert not ended and stuck_running
    gc.collect()  # a failed task nobody retrieved would log "exception was never retrieved" now
    assert "never retrieved" not in caplog.text
