"""Write bytes to a Tornado stream straight to the socket when nothing waits before them.

Why: a fan-out writes one event to thousands of connections, and almost every socket takes
the bytes at once (its kernel buffer has room). Tornado's ``IOStream.write`` is made for the
general case: each call allocates a ``Future``, registers a callback on it, appends to a
buffer and a deque of futures, and then sends. For the common case none of that is needed:
when the stream's own buffer is empty, one ``socket.send`` either takes everything (done: no
future at all) or takes part (the rest goes through ``IOStream.write``, which keeps the order
and waits for the socket as usual). Bytes never overtake bytes already queued in the stream.

:func:`send_now` returns ``None`` when the socket took every byte, else the stream's future for
the rest; it raises ``StreamClosedError`` on a closed stream, like ``IOStream.write``.

It reads private attributes of Tornado's ``IOStream`` (``_connecting``, and
``_total_write_index``/``_total_write_done_index``: equal when no byte waits), pinned by
``tests/test_tornado_private_api.py``; on a stream without them (TLS, another version) it
simply calls ``write``.
"""
from __future__ import annotations

from typing import Any

from tornado.iostream import IOStream, StreamClosedError

__all__ = ["send_now", "http_chunk", "response_framing", "send_websocket_frame", "can_send_frames"]


def send_now(stream: Any, data: bytes) -> "Any | None":
    """Send ``data`` on ``stream`` now if it can go straight out; the future of the rest, or ``None``."""
    if stream.closed():
        raise StreamClosedError(real_error=getattr(stream, "error", None))
    # Bytes already waiting in the stream: everything it was given is not yet written.
    if type(stream) is not IOStream or stream._connecting or stream._total_write_index != stream._total_write_done_index:
        return stream.write(data)  # TLS, still connecting, or bytes already waiting: the usual path
    try:
        sent = stream.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return stream.write(data)  # let Tornado close the stream and report it, as it always does
    # Tornado counts what it wrote: keep its two indexes equal, as if it had written these bytes.
    stream._total_write_index += sent
    stream._total_write_done_index += sent
    if sent == len(data):
        return None
    return stream.write(memoryview(data)[sent:])


def http_chunk(data: bytes) -> bytes:
    """``data`` in HTTP/1.1 chunked framing (RFC 9112 §7.1): the same bytes for every subscriber."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def response_framing(connection: Any) -> str | None:
    """How the body of a streamed response whose head is out goes on the wire: ``"chunked"``
    (HTTP/1.1 chunked framing), ``"raw"`` (the body runs to the close: HTTP/1.0), or ``None``
    (a ``Content-Length`` to count, or not Tornado's HTTP/1 connection: use ``connection.write``)."""
    chunked = getattr(connection, "_chunking_output", None)
    if chunked is None or getattr(connection, "_expected_content_remaining", 0) is not None:
        return None
    return "chunked" if chunked else "raw"


def send_websocket_frame(ws_connection: Any, frame: bytes) -> "Any | None":
    """Write a whole, already encoded server frame (unmasked, RFC 6455 §5.1) on a Tornado WebSocket.

    Only without per-message compression (the frame's bytes would differ per connection); the
    caller checks :func:`can_send_frames` first.
    """
    ws_connection._wire_bytes_out += len(frame)
    return send_now(ws_connection.stream, frame)


def can_send_frames(ws_connection: Any) -> bool:
    """Whether :func:`send_websocket_frame` may be used: Tornado's RFC 6455 protocol, no compression."""
    return (ws_connection is not None and getattr(ws_connection, "_compressor", True) is None
            and hasattr(ws_connection, "_wire_bytes_out") and getattr(ws_connection, "stream", None) is not None)
