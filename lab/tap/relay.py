"""The relay: a loopback TCP proxy on the server loop that forwards, counts and keeps bytes.

It relays faithfully enough for the fault lessons: a half-close is forwarded as a half-close,
and a reset on one side (a crashed peer) resets the other side too. Recording state lives on
the :class:`Tap` object; read it with :meth:`Tap.snapshot` (or the DataFrame views), which copies
it on the server loop so the counts and bytes are consistent with each other.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from servers import runtime

from lab.tap.annotate import annotate
from lab.tap.parsing import parse_http_stream

__all__ = ["Tap", "TapConnection", "start_tap", "DEFAULT_CAPTURE_BYTES", "READ_CHUNK", "MAX_CHUNK_RECORDS"]

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
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Tap {self.name} {self.url} -> {self.target_host}:{self.target_port} {state}>"

    def __enter__(self) -> "Tap":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- life cycle (coroutines run on the server loop) ------------------------------------------

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
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

    def snapshot(self) -> list[TapConnection]:
        """A copy of every connection seen (counts, kept bytes, who ended it), in order of opening.

        Copied on the server loop, where the relay updates them, so the numbers agree with each
        other; callable from a cell or from a coroutine on the server loop itself.
        """
        def copy() -> list[TapConnection]:
            return [TapConnection(c.id, c.client, c.opened, c.closed, c.bytes_up, c.bytes_down,
                                  bytearray(c.head_up), bytearray(c.head_down), c.ended_by)
                    for c in self._connections.values()]

        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        return copy() if on_loop else runtime.call(copy)

    def connections(self):
        """One row per TCP connection: id, client, opened, closed, duration_s, bytes_up, bytes_down, ended_by.

        ``opened``/``closed`` are ``time.time()`` stamps; ``closed`` is empty while it is open.
        """
        import pandas as pd

        columns = ["id", "client", "opened", "closed", "duration_s", "bytes_up", "bytes_down", "ended_by"]
        return pd.DataFrame([c.row() for c in self.snapshot()], columns=columns)

    def chunks(self):
        """One row per read the tap forwarded: conn, t (time.time()), direction ("up"/"down"), bytes."""
        import pandas as pd

        rows = runtime.call(lambda: list(self._chunks))
        return pd.DataFrame(rows, columns=["conn", "t", "direction", "bytes"])

    def totals(self) -> dict[str, int]:
        """Connections seen and bytes in each direction since the start (or the last ``reset``)."""
        conns = self.snapshot()
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

        conns = self.snapshot() if conn_id is None else [self._pick(conn_id)]
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
        conns = self.snapshot()
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
