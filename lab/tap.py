"""A wire tap: a loopback TCP proxy that counts, and keeps the start of, every byte it forwards.

Why a proxy and not a packet capture: a learner in a notebook has no root and no tshark, but
every lesson wants to show "these exact bytes went over the wire" and count overhead per
event. Putting a tiny TCP relay between client and server gives both, for any server (ours, or
nginx in front of ours): point the client at ``tap.url`` instead of the server's URL.

What is counted is TCP payload, the same quantity a packet capture sums (tests/test_tap.py
checks the counts against tshark). The tap relays faithfully enough for the fault lessons:

- a half-close (one side sends FIN but still reads) is forwarded as a half-close;
- a reset on one side (a crashed peer) resets the other side too, so a client behind the
  tap sees a crashed server the way it would without the tap.

The relay runs on the shared server loop (``servers.runtime``), so a blocking ``requests``
call from a notebook cell reaches it. Recording state lives on the ``Tap`` object.

Usage::

    tap = start_tap(server)                 # a ServerHandle or a URL
    requests.get(tap.url + "/hello")
    tap.show()                              # the HTTP exchange, annotated
    tap.connections()                       # a DataFrame, one row per TCP connection
"""
from __future__ import annotations

import asyncio
import itertools
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from servers import runtime

__all__ = ["Tap", "TapConnection", "start_tap", "parse_http_stream", "parse_ws_frames", "annotate"]

DEFAULT_CAPTURE_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
MAX_CHUNK_RECORDS = 200_000  # bounded memory for the per-read timeline


@dataclass
class TapConnection:
    """One TCP connection through the tap. ``up`` is client→server, ``down`` is server→client."""

    id: int
    client: str
    opened: float
    closed: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    head_up: bytearray = field(default_factory=bytearray)
    head_down: bytearray = field(default_factory=bytearray)
    ended_by: str = ""  # who ended it first: "client", "server", "client reset", ...
    transports: list = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": self.client,
            "opened": self.opened,
            "closed": self.closed,
            "duration_s": (self.closed - self.opened) if self.closed is not None else None,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "ended_by": self.ended_by,
        }


class Tap:
    """A running tap. Create with :func:`start_tap`; ``url``/``ws_url`` are what clients use."""

    def __init__(self, target_url: str, name: str, capture_bytes: int = DEFAULT_CAPTURE_BYTES,
                 host: str = "127.0.0.1") -> None:
        parts = urlsplit(target_url if "//" in target_url else "http://" + target_url)
        if not parts.hostname or not parts.port:
            raise ValueError(f"start_tap needs a target URL with host and port, e.g. http://127.0.0.1:8080, "
                             f"not {target_url!r}")
        self.name = name
        self.target_url = target_url
        self.target_host, self.target_port = parts.hostname, parts.port
        self.capture_bytes = capture_bytes
        self.host = host
        self.port = 0
        self.url = self.ws_url = ""
        self.running = False
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[int, TapConnection] = {}
        self._chunks: list[tuple[int, float, str, int]] = []
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Tap {self.name} {self.url} -> {self.target_host}:{self.target_port} {state}>"

    def __enter__(self) -> "Tap":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- life cycle (coroutines run on the server loop) ------------------------------------------

    async def _start(self) -> None:
        self._changed = asyncio.Condition()  # notified whenever a connection closes
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self.ws_url = f"ws://{self.host}:{self.port}"
        self.running = True

    def stop(self) -> None:
        """Stop listening and drop every connection still open through the tap."""
        if self.running:
            self.running = False
            runtime.call(self._stop)
        runtime.untrack(self)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self._connections.values():
            if conn.closed is None:
                conn.ended_by = conn.ended_by or "tap stopped"
                for transport in conn.transports:
                    transport.abort()

    # -- the relay ---------------------------------------------------------------------------------

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername") or ("?", 0)
        conn = TapConnection(next(self._ids), f"{peer[0]}:{peer[1]}", time.time())
        conn.transports.append(client_writer.transport)
        self._connections[conn.id] = conn
        _nodelay(client_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            conn.ended_by = "server refused"  # nothing listens there: refuse the client the same way
            _reset_all(conn)
            await self._closed(conn)
            return
        _nodelay(server_writer)
        conn.transports.append(server_writer.transport)
        if not self.running:  # stopped while we were connecting
            conn.ended_by = conn.ended_by or "tap stopped"
            for transport in conn.transports:
                transport.abort()
            await self._closed(conn)
            return
        await asyncio.gather(
            self._pump(conn, client_reader, server_writer, "up"),
            self._pump(conn, server_reader, client_writer, "down"),
        )
        for writer in (client_writer, server_writer):
            writer.close()
        conn.transports.clear()
        await self._closed(conn)

    async def _closed(self, conn: TapConnection) -> None:
        conn.closed = time.time()
        async with self._changed:
            self._changed.notify_all()

    async def _pump(self, conn: TapConnection, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    direction: str) -> None:
        """Copy one direction until EOF (forwarded as a half-close) or a reset (reset both sides)."""
        side = "client" if direction == "up" else "server"
        try:
            while True:
                data = await source.read(READ_CHUNK)
                if not data:
                    break
                self._record(conn, direction, data)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            conn.ended_by = conn.ended_by or f"{side} reset"
            _reset_all(conn)  # a reset on one side becomes a reset on the other
            return
        conn.ended_by = conn.ended_by or side
        try:
            if not sink.transport.is_closing() and sink.can_write_eof():
                sink.write_eof()  # forward the half-close: the other side may still answer
        except OSError:
            _reset_all(conn)

    def _record(self, conn: TapConnection, direction: str, data: bytes) -> None:
        head = conn.head_up if direction == "up" else conn.head_down
        if len(head) < self.capture_bytes:
            head += data[: self.capture_bytes - len(head)]
        if direction == "up":
            conn.bytes_up += len(data)
        else:
            conn.bytes_down += len(data)
        if len(self._chunks) < MAX_CHUNK_RECORDS:
            self._chunks.append((conn.id, time.time(), direction, len(data)))

    def wait_closed(self, count: int | None = None, timeout: float = 10.0) -> None:
        """Block until ``count`` connections (default: every one seen so far) have closed.

        Counts are final only once a connection is closed; call this before reading them.
        Raises ``TimeoutError`` if that does not happen within ``timeout`` seconds.
        """

        async def wait() -> None:
            target = len(self._connections) if count is None else count
            async with self._changed:
                await self._changed.wait_for(
                    lambda: sum(c.closed is not None for c in self._connections.values()) >= target)

        try:
            runtime.run(asyncio.wait_for(wait(), timeout), timeout=timeout + 5)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connections through {self.url} still open after {timeout} s") from None

    # -- results (read on the server loop, so a snapshot is consistent) ----------------------------

    def _snapshot(self) -> list[TapConnection]:
        def copy() -> list[TapConnection]:
            return [TapConnection(c.id, c.client, c.opened, c.closed, c.bytes_up, c.bytes_down,
                                  bytearray(c.head_up), bytearray(c.head_down), c.ended_by)
                    for c in self._connections.values()]

        return runtime.call(copy)

    def connections(self):
        """One row per TCP connection: id, client, opened, closed, duration_s, bytes_up, bytes_down, ended_by.

        ``opened``/``closed`` are ``time.time()`` stamps; ``closed`` is empty while it is open.
        """
        import pandas as pd

        columns = ["id", "client", "opened", "closed", "duration_s", "bytes_up", "bytes_down", "ended_by"]
        return pd.DataFrame([c.row() for c in self._snapshot()], columns=columns)

    def chunks(self):
        """One row per read the tap forwarded: conn, t (time.time()), direction ("up"/"down"), bytes."""
        import pandas as pd

        rows = runtime.call(lambda: list(self._chunks))
        return pd.DataFrame(rows, columns=["conn", "t", "direction", "bytes"])

    def totals(self) -> dict[str, int]:
        """Connections seen and bytes in each direction since the start (or the last ``reset``)."""
        conns = self._snapshot()
        up = sum(c.bytes_up for c in conns)
        down = sum(c.bytes_down for c in conns)
        return {"connections": len(conns), "open": sum(c.closed is None for c in conns),
                "bytes_up": up, "bytes_down": down, "bytes_total": up + down}

    def reset(self) -> None:
        """Forget closed connections; zero the counts (and kept bytes) of the open ones."""

        def clear() -> None:
            for key in [k for k, c in self._connections.items() if c.closed is not None]:
                del self._connections[key]
            for conn in self._connections.values():
                conn.bytes_up = conn.bytes_down = 0
                conn.head_up.clear()
                conn.head_down.clear()
            self._chunks.clear()

        runtime.call(clear)

    def raw(self, conn_id: int | None = None, direction: str = "up") -> bytes:
        """The kept first bytes of one direction of a connection (the latest one by default)."""
        conn = self._pick(conn_id)
        return bytes(conn.head_up if direction == "up" else conn.head_down)

    def http_messages(self, conn_id: int | None = None):
        """HTTP messages seen, one row each: conn, direction, kind, start_line, header_bytes, body_bytes.

        ``header_bytes`` counts the start line, the headers and the blank line; ``body_bytes`` the
        body as sent (chunk framing included, so the two add up to the bytes on the wire).
        With ``conn_id=None`` every connection is included.
        """
        import pandas as pd

        conns = self._snapshot() if conn_id is None else [self._pick(conn_id)]
        rows = []
        for conn in conns:
            requests, _ = parse_http_stream(bytes(conn.head_up), response=False)
            methods = [m.start_line.split(" ", 1)[0] for m in requests]
            for direction, head in (("up", conn.head_up), ("down", conn.head_down)):
                messages = requests if direction == "up" else parse_http_stream(bytes(head), True, methods)[0]
                for msg in messages:
                    rows.append({"conn": conn.id, "direction": direction,
                                 "kind": "response" if direction == "down" else "request",
                                 "start_line": msg.start_line, "header_bytes": msg.header_bytes,
                                 "body_bytes": msg.body_bytes, "complete": msg.complete})
        columns = ["conn", "direction", "kind", "start_line", "header_bytes", "body_bytes", "complete"]
        return pd.DataFrame(rows, columns=columns)

    def text(self, conn_id: int | None = None, direction: str = "both", limit: int = 4096) -> str:
        """The start of a connection as annotated text (what :meth:`show` prints)."""
        if direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be 'both', 'up' or 'down', not {direction!r}")
        conn = self._pick(conn_id)
        return annotate(bytes(conn.head_up), bytes(conn.head_down), direction=direction, limit=limit,
                        title=_title(conn, self.capture_bytes))

    def show(self, conn_id: int | None = None, direction: str = "both", limit: int = 4096) -> None:
        """Print the start of a connection (the latest by default), annotated: HTTP, WebSocket frames.

        ``limit`` is how many bytes of each direction to show; ``direction`` is "both", "up"
        (client→server) or "down" (server→client).
        """
        print(self.text(conn_id, direction, limit))

    def _pick(self, conn_id: int | None) -> TapConnection:
        conns = self._snapshot()
        if not conns:
            raise LookupError(f"no connection has gone through this tap yet; send requests to {self.url}")
        if conn_id is None:
            return conns[-1]
        for conn in conns:
            if conn.id == conn_id:
                return conn
        known = ", ".join(str(c.id) for c in conns)
        raise LookupError(f"no connection {conn_id} on this tap; known ids: {known}")


def _reset_all(conn: TapConnection) -> None:
    """Drop both sides with a TCP reset (SO_LINGER 0), as the peer that died did."""
    for transport in conn.transports:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _title(conn: TapConnection, capture_bytes: int) -> str:
    state = f"closed by {conn.ended_by}" if conn.closed is not None else "open"
    note = ""
    if conn.bytes_up > capture_bytes or conn.bytes_down > capture_bytes:
        note = f" (only the first {capture_bytes} B of each direction are kept)"
    return (f"connection {conn.id} from {conn.client}: {conn.bytes_up} B client→server, "
            f"{conn.bytes_down} B server→client, {state}{note}")


def start_tap(target: Any, name: str | None = None, capture_bytes: int = DEFAULT_CAPTURE_BYTES) -> Tap:
    """Start a tap in front of ``target`` (a ``ServerHandle``, anything with ``.url``, or a URL).

    The tap listens on a free loopback port; send clients to ``tap.url`` / ``tap.ws_url``.
    A tap started again under the same name (by default: the same target) replaces the old
    one, so re-running a notebook cell leaves no tap behind.
    """
    target_url = getattr(target, "url", target)
    if not isinstance(target_url, str):
        raise TypeError(f"start_tap needs a server handle or a URL string, not {type(target).__name__}")
    name = name or f"tap {target_url}"
    old = runtime.tracked(name)
    if old is not None:
        old.stop()
    tap = Tap(target_url, name, capture_bytes)
    runtime.run(tap._start())
    runtime.track(name, tap)
    return tap


# ------------------------------------------------------------------------------------------------
# Reading the bytes: HTTP/1.1 messages and WebSocket frames, for display and overhead counts.


@dataclass
class HttpMessage:
    start_line: str
    headers: list[tuple[str, str]]
    header_bytes: int          # start line + headers + blank line
    body: bytes                # as on the wire (chunk framing included)
    complete: bool             # False when the kept bytes end inside this message
    chunked: bool = False

    @property
    def body_bytes(self) -> int:
        return len(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def parse_http_stream(data: bytes, response: bool,
                      methods: list[str] | None = None) -> tuple[list[HttpMessage], bytes]:
    """Split one direction of an HTTP/1.x connection into messages.

    Returns the messages and the bytes after them that are not HTTP: the WebSocket frames after
    a ``101 Switching Protocols`` (or after the upgrade request, on the client side). For the
    response side, ``methods`` (the request methods in order) tells which answers a ``HEAD``,
    whose response has headers only.
    """
    messages: list[HttpMessage] = []
    pos = 0
    while pos < len(data):
        first_line = data[pos:].split(b"\r\n", 1)[0].decode("latin-1")
        if not _looks_like_http(first_line, response):
            return messages, data[pos:]
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            messages.append(HttpMessage(first_line, [], len(data) - pos, b"", False))
            return messages, b""
        head = data[pos:end].decode("latin-1").split("\r\n")
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in head[1:])]
        msg = HttpMessage(head[0], headers, end + 4 - pos, b"", True)
        pos = end + 4
        messages.append(msg)
        status = _status(msg.start_line) if response else None
        if status == 101 or (not response and (msg.header("upgrade") or "").lower() == "websocket"):
            return messages, data[pos:]  # what follows is WebSocket frames, not HTTP
        answers_head = bool(methods) and len(messages) <= len(methods) and methods[len(messages) - 1] == "HEAD"
        if response and (status in (204, 304) or (status is not None and status < 200) or answers_head):
            continue
        if (msg.header("transfer-encoding") or "").lower() == "chunked":
            msg.chunked = True
            body_end, complete = _chunked_end(data, pos)
            msg.body, msg.complete = data[pos:body_end], complete
            pos = body_end
        elif msg.header("content-length") is not None:
            length = int(msg.header("content-length") or 0)
            msg.body = data[pos:pos + length]
            msg.complete = len(msg.body) == length
            pos += len(msg.body)
        elif response:
            msg.body, pos = data[pos:], len(data)  # body runs until the connection closes
    return messages, b""


_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+ HTTP/\d")


def _looks_like_http(first_line: str, response: bool) -> bool:
    return first_line.startswith("HTTP/") if response else bool(_REQUEST_LINE.match(first_line))


def _status(start_line: str) -> int | None:
    parts = start_line.split(" ", 2)
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _chunked_end(data: bytes, pos: int) -> tuple[int, bool]:
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return len(data), False
        try:
            size = int(data[pos:line_end].split(b";")[0], 16)
        except ValueError:
            return len(data), False
        pos = line_end + 2 + size + 2
        if pos > len(data):
            return len(data), False
        if size == 0:
            return pos, True


@dataclass
class WsFrame:
    fin: bool
    opcode: int
    masked: bool
    header_bytes: int          # 2, 4 or 10 B, plus 4 B of mask key when masked
    payload: bytes             # unmasked
    payload_length: int
    complete: bool

    OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}

    @property
    def kind(self) -> str:
        return self.OPCODES.get(self.opcode, f"opcode {self.opcode}")


def parse_ws_frames(data: bytes) -> list[WsFrame]:
    """Split WebSocket bytes into frames (RFC 6455 §5.2), unmasking client payloads."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        length, header = b1 & 0x7F, 2
        if length == 126:
            if pos + 4 > len(data):
                break
            length, header = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif length == 127:
            if pos + 10 > len(data):
                break
            length, header = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        masked = bool(b1 & 0x80)
        key = data[pos + header:pos + header + 4] if masked else b""
        header += 4 if masked else 0
        payload = data[pos + header:pos + header + length]
        if masked and len(key) == 4:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append(WsFrame(bool(b0 & 0x80), b0 & 0x0F, masked, header, payload, length,
                              len(payload) == length))
        pos += header + length
    return frames


# ------------------------------------------------------------------------------------------------
# Annotated text.

_WIDTH = 58


def _show_bytes(raw: bytes) -> str:
    """Bytes as a readable line: printable ASCII as is, CR/LF and the rest escaped."""
    out = []
    for b in raw:
        if b == 13:
            out.append("\\r")
        elif b == 10:
            out.append("\\n")
        elif 32 <= b < 127:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    text = "".join(out)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _line(raw: bytes, note: str) -> str:
    return f"  {_show_bytes(raw):<{_WIDTH}}  ← {note}"


def _annotate_http(msg: HttpMessage, raw: bytes, response: bool) -> list[str]:
    kind = "response" if response else "request"
    lines = [f"HTTP {kind}: {msg.header_bytes + msg.body_bytes} B = {msg.header_bytes} B start line + "
             f"headers + blank line, {msg.body_bytes} B body" + ("" if msg.complete else " (cut off)")]
    head_lines = raw[: msg.header_bytes].split(b"\r\n")
    for i, text in enumerate(head_lines[:-2]):
        note = ("status line" if response else "request line") if i == 0 else "header"
        lines.append(_line(text + b"\r\n", f"{note} ({len(text) + 2} B)"))
    lines.append(_line(b"\r\n", "blank line: end of headers"))
    body = raw[msg.header_bytes: msg.header_bytes + msg.body_bytes]
    event_stream = (msg.header("content-type") or "").startswith("text/event-stream")
    if msg.chunked:
        pos = 0
        while pos < len(body):
            line_end = body.find(b"\r\n", pos)
            if line_end < 0:
                lines.append(_line(body[pos:], "(cut off)"))
                break
            size = int(body[pos:line_end].split(b";")[0] or b"0", 16)
            lines.append(_line(body[pos:line_end + 2], f"chunk size: {size} B follow" if size else
                               "last chunk (size 0): end of body"))
            chunk = body[line_end + 2: line_end + 2 + size]
            for part in chunk.splitlines(keepends=True) or [b""]:
                if part:
                    lines.append(_line(part, _sse_note(part) if event_stream else "chunk data"))
            lines.append(_line(b"\r\n", "end of chunk"))
            pos = line_end + 2 + size + 2
    elif body:
        for i, part in enumerate(body.splitlines(keepends=True)[:20]):
            lines.append(_line(part, f"body ({len(body)} B)" if i == 0 else "body"))
    return lines


def _sse_note(line: bytes) -> str:
    """What one line of a Server-Sent Events stream is (WHATWG HTML, "event stream interpretation")."""
    if line in (b"\n", b"\r\n", b"\r"):
        return "SSE blank line: end of event"
    if line.startswith(b":"):
        return "SSE comment (heartbeat)"
    field = line.split(b":", 1)[0].decode("latin-1")
    return f"SSE field {field!r}" if field in ("id", "data", "event", "retry") else "SSE line"


def _annotate_frames(data: bytes, who: str) -> list[str]:
    frames = parse_ws_frames(data)
    if not frames:
        return []
    lines = [f"WebSocket frames {who}:"]
    for frame in frames[:30]:
        mask = " + 4 B mask key" if frame.masked else ""
        lines.append(f"  {frame.kind:<6} fin={int(frame.fin)}  {frame.header_bytes - (4 if frame.masked else 0)} B "
                     f"header{mask} + {frame.payload_length} B payload: {_show_bytes(frame.payload)}")
    if len(frames) > 30:
        lines.append(f"  … {len(frames) - 30} more frames")
    return lines


def annotate(up: bytes, down: bytes, direction: str = "both", limit: int = 4096, title: str = "") -> str:
    """Annotated text for the two directions of a connection: HTTP messages, then WebSocket frames."""
    up, down = up[:limit], down[:limit]
    requests, up_rest = parse_http_stream(up, response=False)
    responses, down_rest = parse_http_stream(down, response=True,
                                             methods=[m.start_line.split(" ", 1)[0] for m in requests])
    out = [title] if title else []
    show_up, show_down = direction in ("both", "up"), direction in ("both", "down")
    positions = {"up": 0, "down": 0}
    for i in range(max(len(requests), len(responses))):
        for who, msgs, raw, response, show in (("up", requests, up, False, show_up),
                                               ("down", responses, down, True, show_down)):
            if i < len(msgs):
                msg = msgs[i]
                start = positions[who]
                positions[who] += msg.header_bytes + msg.body_bytes
                if show:
                    arrow = "▶ client → server" if who == "up" else "◀ server → client"
                    lines = _annotate_http(msg, raw[start:], response)
                    out.append(f"{arrow}  {lines[0]}")
                    out.extend(lines[1:])
    if show_up:
        out.extend(_annotate_frames(up_rest, "client → server (masked, shown unmasked)"))
    if show_down:
        out.extend(_annotate_frames(down_rest, "server → client"))
    if not requests and not responses:
        for who, raw, show in (("client → server", up, show_up), ("server → client", down, show_down)):
            if show and raw:
                out.append(f"{who}: {len(raw)} B (not HTTP)")
                out.extend(_line(part, "raw") for part in raw.splitlines(keepends=True)[:20])
    return "\n".join(out)
