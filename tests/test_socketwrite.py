"""servers.socketwrite: straight to the socket when nothing waits, Tornado's path otherwise, bytes in order."""
from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.iostream import IOStream, StreamClosedError

from servers.runtime import run
from servers.socketwrite import http_chunk, send_now


def _pair(sndbuf: int | None = None):
    a, b = socket.socketpair()
    if sndbuf:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    a.setblocking(False)
    return IOStream(a), b


async def _read_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    data = b""
    while len(data) < n:
        data += await loop.sock_recv(sock, n - len(data))
    return data


def test_a_write_the_socket_takes_needs_no_future():
    async def scenario():
        stream, peer = _pair()
        assert send_now(stream, b"hello") is None
        assert await _read_exactly(peer, 5) == b"hello"
        # Tornado's own bookkeeping still adds up: a later write's future resolves once flushed
        await asyncio.wait_for(stream.write(b" world"), 5)
        assert await _read_exactly(peer, 6) == b" world"
        stream.close()
        peer.close()

    run(scenario())  # on the server loop: a test before may have left a loop running in this thread


def test_what_the_socket_does_not_take_follows_in_order_and_nothing_overtakes_it():
    async def scenario():
        stream, peer = _pair(sndbuf=4096)
        big = bytes(range(256)) * 4096  # 1 MiB: far more than the socket takes at once
        rest = send_now(stream, big)
        assert rest is not None  # a part waits in the stream
        later = send_now(stream, b"AFTER")  # bytes already wait: this one must queue behind them
        assert later is not None
        received = await _read_exactly(peer, len(big) + 5)
        assert received == big + b"AFTER"
        await asyncio.wait_for(asyncio.gather(rest, later), 5)
        stream.close()
        peer.close()

    run(scenario())  # on the server loop: a test before may have left a loop running in this thread


def test_a_closed_stream_raises_as_tornado_does():
    async def scenario():
        stream, peer = _pair()
        stream.close()
        with pytest.raises(StreamClosedError):
            send_now(stream, b"x")
        peer.close()

    run(scenario())  # on the server loop: a test before may have left a loop running in this thread


def test_http_chunk_is_rfc_9112_chunked_framing():
    assert http_chunk(b"data: x\n\n") == b"9\r\ndata: x\n\n\r\n"
    assert http_chunk(b"a" * 255).startswith(b"ff\r\n")
