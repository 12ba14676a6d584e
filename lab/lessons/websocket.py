"""Lesson 04's pieces: a raw handshake, a raw WebSocket client, frame headers read field by field,
and the frame-overhead measurement.

Why raw: the feed's clients (:mod:`servers.clients.ws`) decode every message as JSON, which is
what an application wants. The lesson wants the opposite: the exact request a browser sends,
the exact text of each message, and the bytes of each frame. So this module

- :func:`raw_handshake` sends an opening handshake written by hand (e.g. the seed notes' own
  request) over a plain TCP socket and returns the server's answer, without upgrading;
- :class:`RawWebSocket` is a blocking WebSocket client for a cell that hands back messages as
  they came (str or bytes), and says how the server closed (1009, 1003...); lesson 05 uses it
  to speak STOMP by hand;
- :func:`raw_frame` cuts one frame out of the bytes a tap saw after the ``101``;
  :func:`describe_frame_header` lays its header out field by field
  (with :func:`servers.wire.websocket.parse_frame_header`);
- :func:`measure_frame_overhead` sends payloads of chosen sizes both ways through a tap and
  counts the bytes on the wire, to hold them against RFC 6455 §5.2;
- :func:`send_fragmented` sends one message as several frames (FIN=0, continuation frames,
  RFC 6455 §5.4) over a plain socket and reads what the server answers;
- :func:`nginx_push_lines` picks the lines push depends on out of the nginx config our balancer
  generates, and :func:`idle_proxy_experiment` shows nginx's read timeout cutting an idle
  WebSocket that the server does not ping, and sparing one it pings (RFC 6455 §5.5.2-5.5.3).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import tornado.websocket

from servers import runtime
from servers.clients._common import ws_url
from servers.clients.ws import ConnectionClosed
from lab.tap import parse_http_stream, parse_ws_frames
from servers.wire.http import HttpParser, Response, encode_request
from servers.wire.websocket import OPCODES, encode_frame, frame_overhead, parse_frame_header

__all__ = ["raw_handshake", "RawWebSocket", "raw_frame", "describe_frame_header", "measure_frame_overhead",
           "send_fragmented", "nginx_push_lines", "idle_proxy_experiment", "SEED_KEY", "SEED_ACCEPT"]

#: The ``Sec-WebSocket-Key`` of the seed notes' handshake, and the accept value they show for it.
SEED_KEY = "Uc9l9TMkWGbHFD2qnFHltg=="
SEED_ACCEPT = "1qVdfYHU9hPOl4JYYNXF623Gzn0="


def raw_handshake(target: Any, path: str, key: str, *, protocols: list[str] | None = None,
                  origin: str | None = None, timeout: float = 10) -> dict[str, Any]:
    """Send a WebSocket opening handshake written by hand; return what the server answered.

    ``target`` is a server handle, a tap or a base URL. The request is the one of RFC 6455 §4.1
    (and of the seed notes): ``Upgrade``, ``Connection``, ``Sec-WebSocket-Key``, ``-Version: 13``,
    optional ``-Protocol`` and ``Origin``. The socket is closed right after the answer's headers,
    so nothing is upgraded for long. Returns ``request`` and ``response`` (text), ``status``
    (int) and ``headers`` (dict, names in lower case).
    """
    url = getattr(target, "url", target)
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    headers = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key}
    if protocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(protocols)
    headers["Sec-WebSocket-Version"] = "13"
    if origin:
        headers["Origin"] = origin
    request = encode_request("GET", path, headers)
    parser, answer, head = HttpParser(response=True), b"", None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        while head is None:
            chunk = sock.recv(4096)
            if not chunk:
                break  # closed before the end of the answer's head
            answer += chunk
            head = next((event for event in parser.feed(chunk) if isinstance(event, Response)), None)
    if head is None:
        return {"request": request.decode("latin-1"), "response": answer.decode("latin-1"), "status": 0,
                "headers": {}}
    return {"request": request.decode("latin-1"), "response": answer[:head.header_bytes].decode("latin-1"),
            "status": head.status, "headers": {name.lower(): value for name, value in head.headers}}


class RawWebSocket:
    """A blocking WebSocket client for a cell: messages come back exactly as sent (str or bytes).

    ``RawWebSocket(feed, "/feed/ws")`` or ``RawWebSocket(tap, "/stomp", subprotocols=["v12.stomp"])``.
    It runs on the shared server loop, so a blocking ``recv`` never stalls the kernel.
    """

    def __init__(self, target: Any, path: str, subprotocols: list[str] | None = None,
                 timeout: float = 10, **connect_kwargs: Any) -> None:
        async def connect():
            return await asyncio.wait_for(tornado.websocket.websocket_connect(
                ws_url(target, path), subprotocols=subprotocols, **connect_kwargs), timeout)

        self.conn: tornado.websocket.WebSocketClientConnection = runtime.run(connect(), timeout=timeout + 5)
        self.selected_subprotocol = self.conn.selected_subprotocol
        self.response_headers = dict(self.conn.headers)

    def __enter__(self) -> "RawWebSocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: str | bytes) -> None:
        """Send one message: a text frame for ``str``, a binary frame for ``bytes``."""
        async def write():
            await self.conn.write_message(message, binary=isinstance(message, bytes))

        runtime.run(write())

    def recv(self, timeout: float = 10) -> str | bytes:
        """The next message as it came; raises :class:`ConnectionClosed` (with the code) once closed."""
        async def read():
            return await asyncio.wait_for(self.conn.read_message(), timeout)

        message = runtime.run(read(), timeout=timeout + 5)
        if message is None:
            raise ConnectionClosed(self.conn.close_code, self.conn.close_reason)
        return message

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self.conn.close_reason

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        runtime.call(self.conn.close, code, reason)


def raw_frame(tap: Any, index: int = 0, conn_id: int | None = None, direction: str = "down") -> bytes:
    """The bytes of frame number ``index`` (header, mask key, payload as on the wire) seen by a tap."""
    raw = tap.raw(conn_id, direction)
    _, rest = parse_http_stream(raw, response=(direction == "down"))
    pos = 0
    for i, frame in enumerate(parse_ws_frames(rest)):
        end = pos + frame.header_bytes + frame.payload_length
        if i == index:
            return rest[pos:end]
        pos = end
    raise IndexError(f"the tap kept no frame number {index} in that direction")


def describe_frame_header(frame: bytes) -> pd.DataFrame:
    """One row per header field of the frame at the start of ``frame``: where it sits, its bits, its value.

    Decoded with :func:`servers.wire.websocket.parse_frame_header`, the function the tests check
    against RFC 6455 §5.2.
    """
    header, length = parse_frame_header(frame)
    if header is None:
        raise ValueError(f"{len(frame)} bytes are not a whole frame header (need {length})")
    b0, b1 = frame[0], frame[1]
    rows = [
        ("byte 0, bit 7", f"{b0 >> 7:b}", "FIN", int(header.fin), "last (here: only) frame of the message"
         if header.fin else "more fragments follow"),
        ("byte 0, bits 6-4", f"{(b0 >> 4) & 7:03b}", "RSV1-3", (b0 >> 4) & 7,
         "reserved, 0 unless an extension says so"),
        ("byte 0, bits 3-0", f"{b0 & 0xF:04b}", "opcode", header.opcode, header.opcode_name),
        ("byte 1, bit 7", f"{b1 >> 7:b}", "MASK", int(header.masked),
         "masked: a client's frame" if header.masked else "not masked: a server's frame"),
        ("byte 1, bits 6-0", f"{b1 & 0x7F:07b}", "payload len (7 bits)", b1 & 0x7F,
         "the length itself" if b1 & 0x7F <= 125 else
         "126: the length is in the next 2 bytes" if b1 & 0x7F == 126 else "127: the length is in the next 8 bytes"),
    ]
    if b1 & 0x7F == 126:
        rows.append(("bytes 2-3", frame[2:4].hex(" "), "extended payload len (16 bits)", header.payload_len,
                     "payload length in bytes, big-endian"))
    elif b1 & 0x7F == 127:
        rows.append(("bytes 2-9", frame[2:10].hex(" "), "extended payload len (64 bits)", header.payload_len,
                     "payload length in bytes, big-endian"))
    if header.masked:
        start = length - 4
        rows.append((f"bytes {start}-{start + 3}", header.mask_key.hex(" "), "masking key", header.mask_key.hex(),
                     "XORed over the payload, 4 bytes round"))
    rows.append((f"bytes {length}-", "", "payload", header.payload_len, f"{header.payload_len} B of data"))
    return pd.DataFrame(rows, columns=["where", "bits", "field", "value", "meaning"])


def measure_frame_overhead(feed: Any, *, down_sizes: list[int], up_sizes: list[int],
                           timeout: float = 10) -> pd.DataFrame:
    """Bytes on the wire per message, by payload size and direction, counted by a tap; with RFC 6455's figure.

    Server→client: an event is published on ``feed`` with a string ``data`` chosen so that the
    event's JSON text is about the size asked; the client reads it and its exact length in
    bytes is the payload. Client→server: the client sends ``{"publish": "..."}`` of exactly the
    size asked and waits for the server's ``ack`` (so the whole frame has passed the tap). Each
    size is counted as the change in the tap's byte count of that direction, which holds
    exactly one frame. Returns one row per message: ``direction``, ``payload_bytes``,
    ``wire_bytes``, ``overhead_bytes`` (measured) and ``rfc6455_bytes`` (the standard's header size).
    """
    from lab.tap import start_tap

    tap = start_tap(feed, name=f"lesson-04 overhead tap {feed.url}", capture_bytes=4096)
    rows: list[dict[str, Any]] = []
    try:
        with RawWebSocket(tap, "/feed/ws", max_message_size=64 * 1024 * 1024) as ws:
            conn_id = int(tap.connections().id.iloc[-1])

            def counted(direction: str) -> int:
                row = tap.connections().set_index("id").loc[conn_id]
                return int(row["bytes_down"] if direction == "down" else row["bytes_up"])

            for size in down_sizes:
                before = counted("down")
                envelope = len(json.dumps({"seq": 10 ** 6, "data": "", "sent_at": time.time()},
                                          separators=(",", ":")))
                text = "x" * max(0, size - envelope)
                feed.call(lambda app: app.publish(text))
                message = ws.recv(timeout)
                payload = len(message.encode("utf-8") if isinstance(message, str) else message)
                rows.append(_row("server → client", payload, counted("down") - before, masked=False))
            for size in up_sizes:
                before = counted("up")
                skeleton = '{"publish":""}'
                if size < len(skeleton):
                    raise ValueError(f"client→server sizes start at {len(skeleton)} B (an empty publish)")
                ws.send('{"publish":"' + "y" * (size - len(skeleton)) + '"}')
                while True:  # the event comes back too (the sender is a subscriber); wait for the ack
                    reply = json.loads(ws.recv(timeout))
                    if reply.get("type") == "ack":
                        break
                rows.append(_row("client → server", size, counted("up") - before, masked=True))
    finally:
        tap.stop()
    return pd.DataFrame(rows)


def _row(direction: str, payload: int, wire: int, masked: bool) -> dict[str, Any]:
    return {"direction": direction, "payload_bytes": payload, "wire_bytes": wire,
            "overhead_bytes": wire - payload, "rfc6455_bytes": frame_overhead(payload, masked=masked)}


# --- fragmentation: one message in several frames (RFC 6455 §5.4) -----------------------------

def send_fragmented(target: Any, message: str, pieces: int = 3, path: str = "/feed/ws",
                    timeout: float = 10) -> dict[str, pd.DataFrame]:
    """Send one text message as ``pieces`` frames (FIN=0 ... FIN=1) over a socket; return both directions.

    The first frame has opcode 1 (text) and FIN=0, the middle ones opcode 0 (continuation) and
    FIN=0, the last opcode 0 and FIN=1; each is masked, as a client's must be. Frames are written
    with :func:`servers.wire.websocket.encode_frame` and the server's answers read with
    :func:`~servers.wire.websocket.parse_frame_header`. Reads until the server's ``ack`` (the feed
    answers a whole ``{"publish": ...}`` message with one), then closes. Returns ``sent`` and
    ``received``: one row per frame (fin, opcode, payload bytes, the payload's text).
    """
    data = message.encode("utf-8")
    if pieces < 1 or pieces > len(data):
        raise ValueError(f"cannot cut {len(data)} bytes into {pieces} non-empty pieces")
    step = -(-len(data) // pieces)
    parts = [data[i:i + step] for i in range(0, len(data), step)]
    url = getattr(target, "url", target)
    addr = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request = encode_request("GET", path, {"Host": f"{addr.hostname}:{addr.port}", "Upgrade": "websocket",
                                           "Connection": "Upgrade", "Sec-WebSocket-Key": key,
                                           "Sec-WebSocket-Version": "13"})
    sent, received = [], []
    with socket.create_connection((addr.hostname, addr.port), timeout=timeout) as sock:
        sock.sendall(request)
        parser, buffer, head = HttpParser(response=True), b"", None
        while head is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection during the handshake")
            buffer += chunk
            head = next((event for event in parser.feed(chunk) if isinstance(event, Response)), None)
        if head.status != 101:
            raise ConnectionError(f"the server answered {head.status}, not 101")
        buffer = buffer[head.header_bytes:]
        for i, part in enumerate(parts):
            opcode, fin = (0x1 if i == 0 else 0x0), i == len(parts) - 1
            sock.sendall(encode_frame(part, opcode=opcode, fin=fin, mask_key=os.urandom(4)))
            sent.append({"frame": i + 1, "FIN": int(fin), "opcode": f"{opcode} ({OPCODES[opcode]})",
                         "payload_bytes": len(part), "payload": part.decode("utf-8", "replace")})
        while not any('"ack"' in row["payload"] for row in received):
            header, length = parse_frame_header(buffer)
            if header is None or len(buffer) < length + header.payload_len:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection before its ack")
                buffer += chunk
                continue
            payload, buffer = buffer[length:length + header.payload_len], buffer[length + header.payload_len:]
            received.append({"frame": len(received) + 1, "FIN": int(header.fin),
                             "opcode": f"{header.opcode} ({header.opcode_name})",
                             "payload_bytes": len(payload), "payload": payload.decode("utf-8", "replace")})
        sock.sendall(encode_frame(struct.pack("!H", 1000), opcode=0x8, mask_key=os.urandom(4)))
    return {"sent": pd.DataFrame(sent), "received": pd.DataFrame(received)}


# --- proxies: what nginx needs for push, and what an idle timeout does ------------------------

#: The nginx directives a push route depends on (the rest of the generated config is routing).
PUSH_DIRECTIVES = ("proxy_http_version", "Upgrade", "Connection", "$connection_upgrade", "proxy_buffering",
                   "proxy_read_timeout", "map $http_upgrade", "default upgrade", '"" close')


def nginx_push_lines(backends: list[str] | None = None) -> str:
    """The lines of the nginx config our balancer generates (:func:`servers.balancer.nginx.render_config`)
    that push depends on: the ``Upgrade``/``Connection`` map and headers, HTTP/1.1 upstream, no buffering,
    the read timeout. Each line keeps its number in the whole file."""
    from servers.balancer.backends import as_backends
    from servers.balancer.nginx import render_config

    text = render_config(as_backends(backends or ["a=http://127.0.0.1:8001", "b=http://127.0.0.1:8002"]),
                         "round_robin", directory="NGINX_DIR", host="127.0.0.1", port=8080)
    lines = text.splitlines()
    keep = [i for i, line in enumerate(lines) if any(word in line for word in PUSH_DIRECTIVES)]
    keep = sorted(set(keep) | {i + 1 for i in keep if lines[i].strip().startswith("map $http_upgrade")} |
                  {i + 3 for i in keep if lines[i].strip().startswith("map $http_upgrade")})
    return "\n".join(f"{i + 1:4}  {lines[i]}" for i in keep)


def idle_proxy_experiment(idle_timeout_s: float = 1.0, ping_interval_s: float = 0.25,
                          timeout: float = 30) -> pd.DataFrame | None:
    """Two idle WebSockets through real nginx with ``proxy_read_timeout`` = ``idle_timeout_s``:
    one to a feed that sends no pings, one to a feed that pings every ``ping_interval_s``.

    Both are opened, the pinged one first, and then neither sends a thing. The experiment waits
    until nginx cuts the unpinged one, then checks the pinged one still works (a publish and
    its ack): it was idle at least as long. Returns one row per connection; ``None`` (with the
    reason printed) where nginx is missing.
    """
    from servers import start_feed
    from servers.balancer.nginx import NginxBalancer, NginxMissing
    from servers.clients.ws import ConnectionClosed

    class IdleTimeoutNginx(NginxBalancer):
        def _write_config(self) -> None:  # our balancer's config, with a short read timeout
            super()._write_config()
            text, count = re.subn(r"proxy_read_timeout \S+;", f"proxy_read_timeout {int(idle_timeout_s * 1000)}ms;",
                                  self.config_path.read_text())
            if not count:
                raise RuntimeError("the generated nginx config has no proxy_read_timeout line to shorten")
            self.config_path.write_text(text)

    feeds = {"no pings": start_feed(name="lesson-04 no pings", websocket_ping_interval=None),
             f"ping every {ping_interval_s} s": start_feed(name="lesson-04 pings",
                                                           websocket_ping_interval=ping_interval_s)}
    proxies: list[NginxBalancer] = []
    try:
        try:
            for feed in feeds.values():
                proxies.append(IdleTimeoutNginx([feed], name=f"lesson-04 idle {len(proxies)}").start())
        except NginxMissing as exc:
            print(f"{exc}\nSo this cell is skipped.")
            return None
        unpinged_proxy, pinged_proxy = proxies
        pinged = RawWebSocket(pinged_proxy.url, "/feed/ws")
        unpinged = RawWebSocket(unpinged_proxy.url, "/feed/ws")
        opened = time.monotonic()
        try:
            unpinged.recv(timeout)
            unpinged_result = "still open?"
        except ConnectionClosed as closed:
            unpinged_result = (f"cut by nginx (no close frame: close code {closed.code})" if closed.code is None
                               else f"closed with {closed.code}")
        idle = time.monotonic() - opened
        pinged.send('{"publish": "still here"}')
        replies = [json.loads(pinged.recv(timeout)) for _ in range(2)]
        ok = any(reply.get("type") == "ack" for reply in replies)
        pinged_result = "open: published and got the ack" if ok else f"unexpected replies {replies}"
        pinged.close()
        return pd.DataFrame([
            {"server": "no pings", "proxy_read_timeout_s": idle_timeout_s, "idle_s": round(idle, 2),
             "result": unpinged_result},
            {"server": f"ping every {ping_interval_s} s", "proxy_read_timeout_s": idle_timeout_s,
             "idle_s": f">= {idle:.2f}", "result": pinged_result}])
    finally:
        for proxy in proxies:
            proxy.cleanup()
        for feed in feeds.values():
            feed.stop()
