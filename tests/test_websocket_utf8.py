"""RFC 6455 §8.1: a text message that is not valid UTF-8 fails the connection with close code 1007.

Tornado itself drops the TCP connection there (no close frame: the client sees 1006 and no
reason); ``servers.web.BaseWebSocketHandler`` answers with a close handshake instead, on every
WebSocket of both servers. Checked with a client written on a raw socket (frames from
``servers.wire.websocket``), because a WebSocket library refuses to send such a message at all.
"""
from __future__ import annotations

import os
import socket
import struct
import urllib.parse

import pytest

from servers.clients.qr import Browser
from servers.feed.app import start_feed
from servers.qrlogin.app import start_qrlogin
from servers.wire.stomp import StompParser
from servers.wire.websocket import encode_frame, parse_frame_header

NOT_UTF8 = b'{"after": "\xff\xfe"}'  # bytes that no UTF-8 decoder accepts


def handshake(url: str, extra: str = "") -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: not one byte past the 101's head
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def send(sock: socket.socket, payload: bytes, opcode: int) -> None:
    sock.sendall(encode_frame(payload, opcode=opcode, mask_key=os.urandom(4)))  # a client masks


def frames_until_close(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Frames as (opcode, payload) up to and including the server's close frame; stops early if the
    TCP connection ends without one (what Tornado alone does)."""
    data, frames = b"", []
    while True:
        header, offset = parse_frame_header(data)
        if header is not None and len(data) >= offset + header.payload_len:
            frames.append((header.opcode, data[offset:offset + header.payload_len]))
            data = data[offset + header.payload_len:]
            if header.opcode == 0x8:
                send(sock, frames[-1][1][:2], 0x8)  # answer the close, as a client must
                return frames
            continue
        chunk = sock.recv(65536)
        if not chunk:
            return frames
        data += chunk


def close_code(frames: list[tuple[int, bytes]]) -> tuple[int | None, str]:
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    if not closes:
        return None, "the TCP connection was dropped without a close frame"
    return struct.unpack("!H", closes[0][:2])[0], closes[0][2:].decode()


@pytest.fixture
def feed():
    with start_feed(name="feed-utf8") as handle:
        yield handle


def test_feed_ws_closes_1007_on_a_text_message_that_is_not_utf8(feed):
    sock = handshake(feed.ws_url + "/feed/ws")
    try:
        send(sock, NOT_UTF8, 0x1)
        code, reason = close_code(frames_until_close(sock))
    finally:
        sock.close()
    assert code == 1007 and "UTF-8" in reason, (code, reason)


def test_feed_ws_still_takes_valid_text_after_the_check(feed):
    """The check lets valid text through to the handler unchanged (here: a publish, then its ack)."""
    sock = handshake(feed.ws_url + "/feed/ws")
    try:
        send(sock, '{"publish": "héllo ✓"}'.encode(), 0x1)
        data = b""
        while b'"type": "ack"' not in data and b'"type":"ack"' not in data:
            data += sock.recv(65536)
        send(sock, b"\x03\xe8", 0x8)
    finally:
        sock.close()
    assert b'"data":"h\\u00e9llo \\u2713"' in data, data


def test_stomp_sends_error_then_closes_1007(feed):
    sock = handshake(feed.ws_url + "/stomp", "Sec-WebSocket-Protocol: v12.stomp\r\n")
    try:
        send(sock, b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00", 0x1)
        send(sock, b"SEND\ndestination:/topic/a\n\n\xff\xfe\x00", 0x1)  # a binary body, in a text message
        frames = frames_until_close(sock)
    finally:
        sock.close()
    stomp = StompParser().feed(b"".join(payload for opcode, payload in frames if opcode == 0x1))
    assert [f.command for f in stomp] == ["CONNECTED", "ERROR"], stomp
    assert stomp[1].headers["message"] == "invalid UTF-8"
    assert close_code(frames)[0] == 1007


def test_qr_ticket_socket_closes_1007(redis_url):
    handle = start_qrlogin("A", redis_url=redis_url)
    ticket = Browser(handle.url, "ws").create_ticket()["ticket"]
    sock = handshake(f"{handle.ws_url}/api/tickets/{ticket}/ws")
    try:
        send(sock, NOT_UTF8, 0x1)
        frames = frames_until_close(sock)
    finally:
        sock.close()
    assert frames[0][0] == 0x1 and b'"state":"pending"' in frames[0][1], "first the current state"
    assert close_code(frames)[0] == 1007, close_code(frames)
