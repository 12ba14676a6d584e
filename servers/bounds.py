"""What every server refuses before any handler runs, and how it survives running out of descriptors.

Why at the server and not in handlers: Tornado reads a request's whole body into memory before a
handler sees it (up to 100 MB by default), and whatever parses it runs on the one event loop that
every client of the server shares: a 40 MB JSON array posted to the phone's login froze all other
clients for 13 s. A client that sends its request head one byte at a time held its connection
for an hour. So :class:`BoundedHTTPServer`, the HTTP server of everything ``servers.runtime.serve``
starts, applies these bounds to every request on every route, each a setting of the application
(``start_feed(max_body_bytes=...)``; defaults in ``servers.settings.SERVER_DEFAULTS``):

=========================  ====================================================================
bound (setting, default)   what the client sees
=========================  ====================================================================
request body               ``413 {"error": "too_large"}`` as soon as the head announces more
(``max_body_bytes``,       (``Content-Length``), or the moment a chunked body passes it; then
64 KiB)                    the connection closes (after a short linger). What the handler
                           parses is never bigger.
request head               the connection is closed if a request's head has not fully arrived
(``idle_connection_        this long after the connection opened or the previous answer went
timeout_s``, 60 s)         out (a slow-header client, or a keep-alive connection left idle).
request body time          the connection is closed if a body has not fully arrived in this time.
(``body_timeout_s``, 30 s)
connections per server     ``503 {"error": "server_full"}`` with ``Retry-After`` for each
(``max_connections``,      connection over it (its request head is read first, at most for a
25,000)                    few seconds, so the client reads the answer instead of a reset). Never
                           more than the descriptor limit allows, less a reserve.
=========================  ====================================================================

Descriptors: :func:`raise_open_file_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard one when
the first server starts. If they run out all the same (other servers of the process, other
resources), ``accept()`` fails with EMFILE. Tornado's accept loop would let that escape as a
traceback and be called again at once, because the waiting connection keeps the listening socket
readable: 250,000 tracebacks in 10 s. :class:`_AcceptGuard` stops watching the listening socket
for :data:`ACCEPT_PAUSE_S` (the waiting clients stay queued in the backlog), then tries again;
it says so in one warning, repeated at most every :data:`LOG_EVERY_S` while it lasts or recurs,
and counts each pause in ``app.limits.refused["descriptors_exhausted"]``.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import socket
import time
import weakref
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.ioloop
from tornado.iostream import StreamClosedError, UnsatisfiableReadError

from servers.limits import limits_for
from servers.settings import SERVER_DEFAULTS
from servers.wire.http import MAX_HEAD_BYTES, encode_response

__all__ = ["BoundedHTTPServer", "raise_open_file_limit", "server_bounds", "ACCEPT_PAUSE_S", "DESCRIPTOR_RESERVE"]

log = logging.getLogger("servers.bounds")

#: Seconds the server stops accepting after the process ran out of descriptors.
ACCEPT_PAUSE_S = 0.5
#: Running out of descriptors is logged at most once in this many seconds (each pause is counted).
LOG_EVERY_S = 60.0
#: Descriptors kept free under ``max_connections`` for everything else (Redis, logs, upstreams).
DESCRIPTOR_RESERVE = 100
#: Seconds a connection over the cap may take to send its request head before it is refused.
REFUSAL_HEAD_TIMEOUT_S = 5.0
#: After a 413, what the client still sends is read and dropped, at most this much for this long.
LINGER_BYTES = 1 << 20
LINGER_S = 2.0
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def raise_open_file_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to the hard limit (children inherit it); returns
    the soft limit now. macOS refuses "unlimited", so there it stops at ``OPEN_MAX`` (10,240)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 10240):
        if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft >= target):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_bounds(settings: dict[str, Any], max_body_size: int | None = None) -> dict[str, Any]:
    """The bounds of a server with these application settings (``max_body_size``: serve()'s override)."""
    bounds = {name: settings.get(name, default) for name, default in SERVER_DEFAULTS.items()}
    if max_body_size is not None:
        bounds["max_body_bytes"] = int(max_body_size)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        bounds["max_connections"] = max(1, min(int(bounds["max_connections"]), soft - DESCRIPTOR_RESERVE))
    return bounds


def _json_refusal(status: int, code: str, detail: str, served_by: str,
                  extra_headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"error": code, "detail": detail}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json; charset=UTF-8", "X-Served-By": served_by,
               "Connection": "close", **(extra_headers or {})}
    return headers, body


class _BodyLimit(tornado.httputil.HTTPMessageDelegate):
    """Wraps the application's delegate for one request: refuses a body over ``limit`` bytes with a
    413 before the application buffers it (the pattern of Tornado's own ``_ProxyAdapter``).

    After the 413 the connection *lingers*, as nginx's does: what the client still sends is read
    and dropped (at most :data:`LINGER_BYTES`, for at most :data:`LINGER_S`), then it is closed.
    Closing a socket with unread bytes makes the kernel send a reset, and a client still sending
    would often lose the answer and see only "connection reset". A client that announced
    ``Expect: 100-continue`` sends nothing more, so it is closed at once.
    """

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, connection: Any, limit: int,
                 server: "BoundedHTTPServer") -> None:
        self.inner = inner
        self.connection = connection
        self.limit = limit
        self.server = server
        self.received = 0
        self.refused = False
        self.ended = False
        self.dropped = 0
        self.method = ""
        self._answer: Any = None  # the future of the 413's write
        self._timer: Any = None

    def headers_received(self, start_line, headers):
        self.method = start_line.method
        declared = headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            waits = headers.get("Expect", "").lower() == "100-continue"  # it sends no body unless told to
            self._refuse(f"The request body is {int(declared)} bytes; this server accepts at most {self.limit}.",
                         linger=not waits)
            return None
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        if self.refused:
            self.dropped += len(chunk)
            if self.dropped > LINGER_BYTES:
                self._end()
            return None
        self.received += len(chunk)
        if self.received > self.limit:
            self.inner.on_connection_close()  # the application drops what it buffered
            self._refuse(f"The request body is over {self.limit} bytes, the most this server accepts.", linger=True)
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if self.refused:
            self._end(whole_body_read=True)
        else:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if self.refused:
            self._stop_timer()
        else:
            self.inner.on_connection_close()

    def _refuse(self, detail: str, linger: bool) -> None:
        self.refused = True
        self.server.count_refusal("too_large")
        # Tornado's own limit must not answer too (it would add a bare 400 after ours).
        self.connection.set_max_body_size(2 ** 62)
        headers, body = _json_refusal(413, "too_large", detail, self.server.served_by)
        headers["Content-Length"] = str(len(body))
        if self.method == "HEAD":  # a HEAD answer carries the headers of the body, never the body
            body = b""
        self._answer = self.connection.write_headers(
            tornado.httputil.ResponseStartLine("HTTP/1.1", 413, "Content Too Large"),
            tornado.httputil.HTTPHeaders(headers), body)
        if linger:
            self._timer = tornado.ioloop.IOLoop.current().call_later(LINGER_S, self._end)
        else:
            self._end()

    def _end(self, whole_body_read: bool = False) -> None:
        """Close the connection once the 413 is out (Tornado does it itself while a body is still
        coming; after a whole body it would keep the connection for the next request)."""
        if self.ended:
            return
        self.ended = True
        self._stop_timer()
        self.connection.finish()
        if whole_body_read:
            self._answer.add_done_callback(lambda _: self.connection.close())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            tornado.ioloop.IOLoop.current().remove_timeout(self._timer)
            self._timer = None


class _AcceptGuard(socket.socket):
    """A listening socket whose ``accept()`` survives descriptor exhaustion (module docstring)."""

    server: "BoundedHTTPServer"

    def accept(self):  # type: ignore[override]
        try:
            accepted = super().accept()
        except OSError as exc:
            if exc.errno not in _EXHAUSTED:
                raise
            self.server.descriptors_exhausted(self, exc)
            raise BlockingIOError(errno.EAGAIN, "paused: out of descriptors") from None  # Tornado stops quietly
        if self.server.exhausted_since is not None:
            self.server.descriptors_available()
        return accepted


class BoundedHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with the bounds of the module docstring; it also remembers its open
    connections (``open_streams``), so a crash can drop them all and the cap can count them."""

    def initialize(self, request_callback, *, bounds: dict[str, Any] | None = None, **kwargs: Any) -> None:
        bounds = bounds or server_bounds({})
        self.bounds = bounds
        self.max_body_bytes = int(bounds["max_body_bytes"])
        self.max_connections = int(bounds["max_connections"])
        kwargs.setdefault("idle_connection_timeout", float(bounds["idle_connection_timeout_s"]))
        kwargs.setdefault("body_timeout", float(bounds["body_timeout_s"]))
        # Tornado's own limit only backs ours up: a chunk announcing more than this is its bare 400.
        kwargs.setdefault("max_body_size", max(16 * self.max_body_bytes, 1 << 20))
        super().initialize(request_callback, **kwargs)
        self.app = request_callback
        self.served_by = getattr(request_callback, "name", "server")
        self.open_streams: "weakref.WeakSet" = weakref.WeakSet()
        self._open_estimate = 0  # counts every accept; recounted exactly only near the cap
        self._counted_at = 0.0
        self.exhausted_since: float | None = None
        self._exhaustion_logged_at = -LOG_EVERY_S
        self._recovery_to_log = False
        self._refusals: set[asyncio.Task] = set()

    # -- the listening sockets -----------------------------------------------------------------
    def add_sockets(self, sockets) -> None:
        guarded = []
        for sock in sockets:
            guard = _AcceptGuard(sock.family, sock.type, sock.proto, fileno=sock.detach())
            guard.setblocking(False)
            guard.server = self
            guarded.append(guard)
        sockets[:] = guarded  # the caller's list now holds the sockets in use (for getsockname)
        super().add_sockets(guarded)

    def descriptors_exhausted(self, sock: _AcceptGuard, exc: OSError) -> None:
        now = time.monotonic()
        self.count_refusal("descriptors_exhausted")  # once per pause
        if self.exhausted_since is None:
            self.exhausted_since = now
        if now - self._exhaustion_logged_at >= LOG_EVERY_S:  # near the limit it comes and goes: say it once
            self._exhaustion_logged_at = now
            self._recovery_to_log = True
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.warning("%s: cannot accept connections: %s (descriptor limit %s); waiting clients stay queued, "
                        "trying again every %.1f s (said at most once every %.0f s)",
                        self.served_by, exc.strerror, soft, ACCEPT_PAUSE_S, LOG_EVERY_S)
        loop = tornado.ioloop.IOLoop.current()
        fd = sock.fileno()
        loop.update_handler(fd, 0)  # stop watching: the waiting connection keeps it readable

        def resume() -> None:
            if sock.fileno() == fd:  # not closed by stop() meanwhile
                loop.update_handler(fd, tornado.ioloop.IOLoop.READ)

        loop.call_later(ACCEPT_PAUSE_S, resume)

    def descriptors_available(self) -> None:
        if self._recovery_to_log:
            self._recovery_to_log = False
            log.info("%s: accepting connections again after %.1f s without descriptors", self.served_by,
                     time.monotonic() - (self.exhausted_since or time.monotonic()))
        self.exhausted_since = None

    # -- connections and requests --------------------------------------------------------------
    def handle_stream(self, stream, address) -> None:
        self.open_streams.add(stream)
        self._open_estimate += 1
        if self._at_capacity():
            task = asyncio.ensure_future(self._refuse_full(stream))
            self._refusals.add(task)
            task.add_done_callback(self._refusals.discard)
            return
        super().handle_stream(stream, address)

    def open_count(self) -> int:
        """Connections open now (HTTP and WebSocket), counted exactly."""
        self._open_estimate = sum(1 for s in list(self.open_streams) if not s.closed())
        self._counted_at = time.monotonic()
        return self._open_estimate

    def _at_capacity(self) -> bool:
        """Whether the connection just accepted (already counted) is one too many. O(1) until the
        estimate reaches the cap, then an exact count at most every 50 ms."""
        if self._open_estimate <= self.max_connections:
            return False
        if time.monotonic() - self._counted_at >= 0.05:
            self.open_count()
        return self._open_estimate > self.max_connections

    async def _refuse_full(self, stream) -> None:
        self.count_refusal("server_full")
        headers, body = _json_refusal(
            503, "server_full", f"This server already holds its maximum of {self.max_connections} connections; "
                                "try again in a moment.", self.served_by, {"Retry-After": "1"})
        try:
            await asyncio.wait_for(stream.read_until_regex(b"\r?\n\r?\n", max_bytes=MAX_HEAD_BYTES),
                                   REFUSAL_HEAD_TIMEOUT_S)
            await stream.write(encode_response(503, headers, body))
        except (StreamClosedError, asyncio.TimeoutError, UnsatisfiableReadError, OSError):
            pass
        finally:
            stream.close()

    def start_request(self, server_conn, request_conn):
        delegate = super().start_request(server_conn, request_conn)
        return _BodyLimit(delegate, request_conn, self.max_body_bytes, self)

    def count_refusal(self, code: str) -> None:
        """Count a refusal where the lessons and tests read every limit's: ``app.limits.refused``."""
        limits_for(self.app).refused[code] += 1
