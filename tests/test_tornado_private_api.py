"""The private Tornado members this project still uses, in one place, checked on the installed Tornado.

pyproject.toml and environment.yml pin ``tornado`` to the range these tests have passed on
(every member below is in Tornado 6.0 through 6.6). When a new Tornado fails one of them, the
message names the module of ours that needs it: change that module (to a public API if there is
one by then) before widening the pin.

Still used:

- ``WebSocketProtocol13._compressor`` (``None`` unless permessage-deflate was negotiated):
  ``servers/socketwrite.py`` (``can_send_frames``) writes a frame encoded once for every
  subscriber only when no compression makes each connection's bytes differ.

- ``WebSocketProtocol13._handle_message(opcode, data)``, called with each whole message (its
  ``_frame_compressed`` flag set while a compressed one is handled), and
  ``WebSocketHandler.get_websocket_protocol()`` returning a ``WebSocketProtocol13``:
  ``servers/web.py`` (``_TextCheckingProtocol``) closes with 1007 on a text message that is not
  UTF-8, where Tornado drops the connection. No public API sees a message before it is decoded.

- ``IOStream._connecting``, ``_write_buffer`` (empty: falsy), ``_total_write_index`` and
  ``_total_write_done_index``; ``HTTP1Connection._chunking_output`` and
  ``_expected_content_remaining`` (``None`` for a streamed response); ``WebSocketProtocol13.stream``
  and ``_wire_bytes_out``: ``servers/socketwrite.py`` sends a fan-out's bytes straight to the
  socket when nothing waits before them, without the future, callback and buffer entries of
  ``IOStream.write`` (with thousands of subscribers their allocations set off full garbage
  collections). It falls back to ``IOStream.write`` when a member is missing.

Not underscored but not documented either, so checked the same way:

- ``HTTP1Connection.stream`` (``handler.request.connection.stream``): ``servers/eventstream.py``,
  ``servers/feed/sse.py``, ``servers/qrlogin/transports.py`` and ``servers/balancer/proxy.py``
  read it to set TCP_NODELAY, to drop a connection at once, and to see whether the client has gone.
- ``WebSocketProtocol13.server_terminated`` (``True`` once the server sent its close frame):
  ``servers/feed/ws.py`` reads it instead of ``is_closing()`` on a fan-out's path.
- ``WebSocketHandler.ws_connection`` with its ``is_closing()``, ``None`` once ``close()`` ran:
  ``servers/feed/ws.py`` and ``servers/qrlogin/transports.py`` test it before writing.

Replaced by public API, and checked here to behave as before: ``RequestHandler._request_summary()``
(``servers/runtime.py``: the request's ``method``, ``uri`` and ``remote_ip``), ``_finished`` in the
balancer (``servers/balancer/proxy.py``: its own ``finished`` flag, set in ``on_finish``, and
``RequestHandler.detach()``) and in the SSE handler (``servers/qrlogin/transports.py``: Tornado
finishes the response itself when ``get()`` returns), ``RequestHandler._transforms`` (``servers/feed/sse.py``:
``Application.transforms``).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import re
import socket
import tomllib
import zlib
from pathlib import Path

import pytest
import requests
import tornado
import tornado.iostream
import tornado.web
import tornado.websocket
import yaml
from packaging.requirements import Requirement

from servers import serve, start_feed
from servers.balancer import start_balancer
from servers.runtime import ServerApp, call, run
from servers.web import BaseHandler, BaseWebSocketHandler

ROOT = Path(__file__).resolve().parents[1]


def needs(where: str, member: str) -> str:
    return (f"Tornado {tornado.version} changed {member}, which {where} relies on: change {where}, "
            "then widen the tornado pin in pyproject.toml and environment.yml")


# ---- the pin ------------------------------------------------------------------------------------


def test_installed_tornado_is_inside_the_pinned_range():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    pin = next(r for r in pins if r.name == "tornado")
    assert pin.specifier.contains(tornado.version), f"tornado {tornado.version} is outside the pin {pin}"
    assert any(spec.operator == "<" for spec in pin.specifier), "tornado needs an upper bound: see this module"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [Requirement(d) for d in env["dependencies"] if isinstance(d, str) and d.startswith("tornado")]
    assert [c.specifier for c in conda] == [pin.specifier], f"environment.yml must pin tornado as pyproject does: {pin}"


# ---- the members we keep --------------------------------------------------------------------------


class _Probe(BaseHandler):
    """Records, on the application, what this request's handler and connection look like."""

    async def get(self) -> None:
        seen = self.application.seen
        seen["stream"] = stream = getattr(self.request.connection, "stream", None)
        if self.get_argument("streamed", ""):  # a streamed response (SSE's shape): head out, no length
            await self.flush()
            connection = self.request.connection
            seen["chunking"] = getattr(connection, "_chunking_output", "missing")
            seen["remaining"] = getattr(connection, "_expected_content_remaining", "missing")
            seen["iostream"] = {name: getattr(stream, name, "missing") for name in (
                "_connecting", "_write_buffer", "_total_write_index", "_total_write_done_index")}
        self.finish("ok")


class _ProbeSocket(BaseWebSocketHandler):
    def get_compression_options(self):
        return {} if self.get_argument("deflate", "") else None

    def open(self) -> None:
        seen = self.application.seen
        seen["protocol"] = type(self.ws_connection)
        if self.get_argument("close", ""):
            self.close(1000, "bye")
            seen["after_close"] = self.ws_connection
            return
        seen["closing"] = self.ws_connection.is_closing()
        seen["compressor"] = getattr(self.ws_connection, "_compressor", "missing")
        seen["wire_bytes_out"] = getattr(self.ws_connection, "_wire_bytes_out", "missing")
        seen["ws_stream"] = getattr(self.ws_connection, "stream", None)
        seen["server_terminated"] = getattr(self.ws_connection, "server_terminated", "missing")
        self.write_message("raw frame")


class _ProbeApp(ServerApp):
    def __init__(self) -> None:
        super().__init__([(r"/probe", _Probe), (r"/ws", _ProbeSocket)], name="probe")
        self.seen: dict = {}


def test_request_connection_stream_is_the_requests_iostream():
    with serve(_ProbeApp()) as h:
        requests.get(h.url + "/probe", timeout=10)
        stream = h.app.seen["stream"]
    where = "servers/eventstream.py, servers/feed/sse.py, servers/qrlogin/transports.py, servers/balancer/proxy.py"
    assert isinstance(stream, tornado.iostream.IOStream), needs(where, "HTTP1Connection.stream")


def test_stream_and_connection_members_that_socketwrite_reads():
    where = "servers/socketwrite.py"
    with serve(_ProbeApp()) as h:
        assert requests.get(h.url + "/probe?streamed=1", timeout=10).text == "ok"
        seen = h.app.seen
    assert seen["chunking"] is True, needs(where, "HTTP1Connection._chunking_output")
    assert seen["remaining"] is None, needs(where, "HTTP1Connection._expected_content_remaining")
    members = seen["iostream"]
    assert "missing" not in members.values(), needs(where, f"IOStream members {members}")
    assert members["_connecting"] is False and not members["_write_buffer"], needs(where, "IOStream._write_buffer")
    assert isinstance(members["_total_write_index"], int) and isinstance(members["_total_write_done_index"], int), \
        needs(where, "IOStream._total_write_index / _total_write_done_index")


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
def test_websocket_compressor_stream_and_wire_bytes(deflate):
    where = "servers/socketwrite.py (can_send_frames, send_websocket_frame)"
    with serve(_ProbeApp()) as h:
        async def receive() -> str:
            conn = await tornado.websocket.websocket_connect(
                h.ws_url + "/ws" + ("?deflate=1" if deflate else ""), compression_options={} if deflate else None)
            message = await conn.read_message()
            conn.close()
            return message

        assert run(receive()) == "raw frame"
        seen = h.app.seen
    assert seen["compressor"] != "missing", needs(where, "WebSocketProtocol13._compressor")
    assert (seen["compressor"] is not None) == deflate, needs(where, "WebSocketProtocol13._compressor (None: no deflate)")
    assert isinstance(seen["wire_bytes_out"], int), needs(where, "WebSocketProtocol13._wire_bytes_out")
    assert isinstance(seen["ws_stream"], tornado.iostream.IOStream), needs(where, "WebSocketProtocol13.stream")
    assert seen["server_terminated"] is False, needs("servers/feed/ws.py (_send_event)",
                                                     "WebSocketProtocol13.server_terminated (False while open)")


def test_websocket_handle_message_and_get_websocket_protocol():
    where = "servers/web.py (_TextCheckingProtocol)"
    method = getattr(tornado.websocket.WebSocketProtocol13, "_handle_message", None)
    assert method is not None, needs(where, "WebSocketProtocol13._handle_message")
    assert list(inspect.signature(method).parameters)[:3] == ["self", "opcode", "data"], \
        needs(where, f"the signature of WebSocketProtocol13._handle_message{inspect.signature(method)}")
    source = inspect.getsource(tornado.websocket.WebSocketProtocol13)
    assert "self._frame_compressed" in source and "self._handle_message(" in source, \
        needs(where, "WebSocketProtocol13._frame_compressed and the call of _handle_message per message")
    assert callable(getattr(tornado.websocket.WebSocketHandler, "get_websocket_protocol", None)), \
        needs(where, "WebSocketHandler.get_websocket_protocol")
    with serve(_ProbeApp()) as h:
        async def connect() -> None:
            conn = await tornado.websocket.websocket_connect(h.ws_url + "/ws?close=1")
            await conn.read_message()

        run(connect())
        protocol = h.app.seen["protocol"]
    assert issubclass(protocol, tornado.websocket.WebSocketProtocol13) and protocol.__name__ == "_TextCheckingProtocol", \
        needs(where, f"what get_websocket_protocol() returns ({protocol})")


# ---- what replaced the others still behaves -------------------------------------------------------


class _Boom(BaseHandler):
    def get(self) -> None:
        raise RuntimeError("boom")


class _BoomApp(ServerApp):
    def __init__(self) -> None:
        super().__init__([(r"/boom", _Boom)], name="boom")


def test_a_500_is_logged_with_method_uri_and_address(caplog):
    """servers/runtime.py logs a 500 as Tornado's access log would (it used _request_summary())."""
    with caplog.at_level(logging.ERROR, logger="tornado.application"), serve(_BoomApp()) as h:
        assert requests.get(h.url + "/boom?x=1", timeout=10).status_code == 500
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.application"]
    assert "500 GET /boom?x=1 (127.0.0.1)" in lines, lines


class _HeldStream(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.write("data: first\n\n")
        await self.flush()
        await self.application.release  # until the server stops or crashes


class _StreamApp(ServerApp):
    def __init__(self) -> None:
        super().__init__([(r"/stream", _HeldStream)], name="backend")

    async def startup(self) -> None:
        self.release = asyncio.get_running_loop().create_future()

    async def shutdown(self) -> None:
        self.release.set_result(None)  # the held handler returns (to a dropped connection)


def test_balancer_drops_the_client_when_the_backend_dies_mid_response(caplog):
    """servers/balancer/proxy.py ends the client's response abruptly with detach() (it set _finished)."""
    backend = serve(_StreamApp())
    lb = start_balancer([backend.url], "round_robin")
    try:
        with caplog.at_level(logging.ERROR), socket.create_connection(("127.0.0.1", lb.port), timeout=10) as client:
            client.sendall(b"GET /stream HTTP/1.1\r\nHost: lab\r\n\r\n")
            received = b""
            while b"data: first" not in received:
                received += client.recv(4096)
            backend.crash()
            while data := client.recv(4096):  # ends when the balancer drops the connection
                received += data
            assert not received.endswith(b"0\r\n\r\n"), "the client must not see a response that looks complete"
            call(lambda: None)  # runs on the server loop once the balancer's handler has returned
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, errors
        answer = requests.get(lb.url + "/stream", timeout=10)  # the balancer itself carries on
        assert answer.status_code == 502 and answer.json()["error"] == "bad_gateway", answer.text
    finally:
        lb.stop()


def test_sse_stream_is_compressed_when_the_application_compresses():
    """servers/feed/sse.py hands chunks to Tornado's transforms when there are any (it read _transforms)."""
    feed = start_feed("gzip-feed", compress_response=True)
    with requests.get(feed.url + "/feed/sse", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10) as r:
        assert r.headers.get("Content-Encoding") == "gzip", r.headers
        assert requests.post(feed.url + "/feed/publish", json={"data": "zipped"}, timeout=10).ok
        inflate, text = zlib.decompressobj(16 + zlib.MAX_WBITS), ""
        for chunk in r.raw.stream(1024, decode_content=False):
            text += inflate.decompress(chunk).decode()
            if '"zipped"' in text:
                break
    assert re.search(r'^data: .*"zipped"', text, re.M), text


def test_websocket_connection_is_open_then_none_after_close():
    where = "servers/feed/ws.py (_send_text), servers/qrlogin/transports.py (TicketSocketHandler)"
    with serve(_ProbeApp()) as h:
        async def open_and_closed() -> None:
            for query in ("", "?close=1"):
                conn = await tornado.websocket.websocket_connect(h.ws_url + "/ws" + query)
                await conn.read_message()
                conn.close()

        run(open_and_closed())
        seen = h.app.seen
    assert seen["closing"] is False, needs(where, "WebSocketHandler.ws_connection.is_closing()")
    assert seen["after_close"] is None, needs(where, "WebSocketHandler.ws_connection (None after close())")
