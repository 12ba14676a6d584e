"""The runtime inside a real Jupyter kernel (nbclient), where the known pitfalls bite: the kernel
runs its own asyncio loop, and a blocking call in a cell blocks that loop.

Each test builds a notebook in memory whose cells assert the behaviour; a failing assert fails the
cell, and the test reports the cell's traceback. The tiny app is defined in the cells themselves.
"""
from __future__ import annotations

import nbformat
import pytest

from grading.lessons import execute

pytestmark = pytest.mark.notebook

TINY_APP = '''
import asyncio, socket
import requests, tornado.httpclient, tornado.websocket
import servers
from servers.web import BaseHandler, BaseWebSocketHandler

class Count(BaseHandler):
    def get(self):
        self.application.hits += 1
        self.write_json({"name": self.application.name, "hits": self.application.hits})

class Hold(BaseHandler):
    async def get(self):
        self.write("held\\n")
        await self.flush()
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
    def __init__(self, name):
        super().__init__([(r"/count", Count), (r"/hold", Hold), (r"/ws", Echo)], name=name)
        self.hits = 0

def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
'''


def run_cells(*sources: str, timeout: int = 60):
    """Run the cells in a fresh kernel; fail the test with the kernel's traceback on any error."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TINY_APP)] +
                                  [nbformat.v4.new_code_cell(s) for s in sources])
    result = execute(nb, budget=timeout)
    if result.error is not None:
        pytest.fail(f"a cell failed in the kernel:\n{result.error}", pytrace=False)
    return result.nb


def outputs_text(nb) -> str:
    return "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))


def test_blocking_requests_and_await_in_cells_get_answers():
    nb = run_cells(
        'h = servers.serve(TinyApp("tour"))',
        # A plain blocking call from a cell: the kernel's loop is blocked, the server loop is not.
        'r = requests.get(h.url + "/count", timeout=10)\n'
        'assert r.json() == {"name": "tour", "hits": 1}, r.text\n'
        'print("blocking ok")',
        # An await on an async client, on the kernel's own loop.
        'r = await tornado.httpclient.AsyncHTTPClient().fetch(h.url + "/count")\n'
        'assert r.code == 200 and b\'"hits":2\' in r.body, r.body\n'
        'ws = await tornado.websocket.websocket_connect(h.ws_url + "/ws")\n'
        'await ws.write_message("ping")\n'
        'assert await ws.read_message() == "ping"\n'
        'ws.close()\n'
        'print("await ok")',
        'h.stop()',
    )
    assert "blocking ok" in outputs_text(nb) and "await ok" in outputs_text(nb)


def test_rerunning_the_start_cell_replaces_the_server():
    start_cell = ('h = servers.serve(TinyApp("demo"))\n'
                  'handles = globals().setdefault("handles", [])\n'
                  'handles.append(h)')
    run_cells(
        start_cell, start_cell, start_cell,  # the learner runs the same cell three times
        'old, new = handles[0], handles[-1]\n'
        'assert [x.state for x in handles] == ["stopped", "stopped", "running"], handles\n'
        'assert list(servers.running()) == ["demo"]\n'
        'for x in handles[:-1]:\n'
        '    assert x.port == new.port or refused(x.port), f"old server on {x.port} still accepts"\n'
        'assert requests.get(new.url + "/count").json()["hits"] == 1',
        'servers.stop_all()\n'
        'assert refused(new.port)',
    )


def test_servers_side_by_side_have_separate_state():
    run_cells(
        'a = servers.serve(TinyApp("a"))\n'
        'b = servers.serve(TinyApp("b"))',
        'for _ in range(3):\n'
        '    requests.get(a.url + "/count")\n'
        'assert requests.get(b.url + "/count").json() == {"name": "b", "hits": 1}\n'
        'assert a.call(lambda app: app.hits) == 3 and b.call(lambda app: app.hits) == 1\n'
        'assert requests.get(a.url + "/count").headers["X-Served-By"] == "a"',
        'servers.stop_all()',
    )


def test_crash_drops_the_listener_and_every_connection_at_once():
    nb = run_cells(
        'h = servers.serve(TinyApp("victim"))\n'
        # a held long request: read until the server has sent its first line
        'held = socket.create_connection(("127.0.0.1", h.port), timeout=10)\n'
        'held.sendall(b"GET /hold HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")\n'
        'first = b""\n'
        'while b"held" not in first:\n'
        '    first += held.recv(4096)\n'
        # and a WebSocket, from the kernel's loop
        'ws = await tornado.websocket.websocket_connect(h.ws_url + "/ws")\n'
        'await ws.write_message("ping")\n'
        'assert await ws.read_message() == "ping"\n'
        'assert h.open_connections == 2',
        'h.crash()',
        'rest = b""\n'
        'try:\n'
        '    while data := held.recv(4096):\n'
        '        rest += data\n'
        'except ConnectionResetError:\n'
        '    pass\n'
        'assert b"0\\r\\n\\r\\n" not in rest, "a crash sends no last chunk"\n'
        'assert await ws.read_message() is None, "the WebSocket client must see the connection end"\n'
        'assert ws.close_code is None, "a crash sends no close frame"\n'
        'assert refused(h.port) and h.open_connections == 0\n'
        'print("crash ok")',
    )
    assert "crash ok" in outputs_text(nb)


def test_a_server_on_the_kernels_own_loop_cannot_answer_a_blocking_call():
    """The fact lesson 00 shows: why servers run on a loop of their own."""
    nb = run_cells(
        'from servers.tour import TourApp, start_on_kernel_loop\n'
        'naive = start_on_kernel_loop(TourApp(name="naive"))\n'
        'try:\n'
        '    requests.get(naive.url + "/hello", timeout=1)\n'
        '    print("answered")\n'
        'except requests.exceptions.ReadTimeout:\n'
        '    print("timed out")',
        'r = await tornado.httpclient.AsyncHTTPClient().fetch(naive.url + "/hello")\n'
        'assert r.code == 200\n'
        'naive.stop()\n'
        'assert refused(naive.port)',
    )
    assert "timed out" in outputs_text(nb) and "answered" not in outputs_text(nb)
