"""The WebSocket opening handshake key and the frame header of RFC 6455, no I/O.

Lesson 04 computes ``Sec-WebSocket-Accept`` for the key in the seed notes and decodes frame
headers byte by byte; the tests and the overhead measurements use the same functions.

Frame header (RFC 6455 §5.2)::

     0                   1                   2                   3
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+

So a server-to-client frame costs 2 bytes of header up to 125 bytes of payload, 4 up to
65,535, 10 above; a client-to-server frame adds a 4-byte masking key.
"""
from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

__all__ = ["GUID", "OPCODES", "FrameHeader", "accept_key", "frame_header", "parse_frame_header",
           "frame_overhead", "mask_payload", "encode_frame"]

#: The fixed GUID of RFC 6455 §1.3, appended to the client's key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OPCODES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}


def accept_key(sec_websocket_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID)).

    >>> accept_key("Uc9l9TMkWGbHFD2qnFHltg==")
    '1qVdfYHU9hPOl4JYYNXF623Gzn0='
    """
    digest = hashlib.sha1((sec_websocket_key.strip() + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class FrameHeader:
    """A decoded frame header; ``opcode_name`` says what kind of frame it is."""

    fin: bool
    opcode: int
    masked: bool
    payload_len: int
    mask_key: bytes | None = None
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    @property
    def opcode_name(self) -> str:
        return OPCODES.get(self.opcode, f"reserved-{self.opcode:#x}")


def frame_header(payload_len: int, opcode: int = 1, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """The header bytes that precede a payload of ``payload_len`` bytes (RFC 6455 §5.2).

    ``mask_key`` (4 bytes) is given by clients, which must mask; servers send unmasked frames.
    """
    if payload_len < 0 or payload_len > 0x7FFFFFFFFFFFFFFF:
        raise ValueError("payload length must be between 0 and 2**63 - 1")
    if not 0 <= opcode <= 0xF:
        raise ValueError("opcode must fit in 4 bits")
    if mask_key is not None and len(mask_key) != 4:
        raise ValueError("a masking key is exactly 4 bytes")
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask_key is not None else 0
    if payload_len <= 125:
        header = struct.pack("!BB", first, mask_bit | payload_len)
    elif payload_len <= 0xFFFF:
        header = struct.pack("!BBH", first, mask_bit | 126, payload_len)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, payload_len)
    return header + (mask_key or b"")


def parse_frame_header(data: bytes) -> tuple[FrameHeader | None, int]:
    """Decode the header at the start of ``data``.

    Returns ``(header, header_len)``: the payload starts at ``data[header_len:]``. When ``data``
    is too short to hold the whole header, returns ``(None, n)`` where ``n`` is how many bytes
    are needed to know more (feed more bytes and call again). Raises ``ValueError`` for a
    header RFC 6455 forbids (a 64-bit length with the top bit set, or a non-minimal length).
    """
    if len(data) < 2:
        return None, 2
    b0, b1 = data[0], data[1]
    masked = bool(b1 & 0x80)
    length = b1 & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None, 4 + (4 if masked else 0)
        (length,) = struct.unpack_from("!H", data, 2)
        if length <= 125:
            raise ValueError("non-minimal payload length encoding (RFC 6455 §5.2)")
        offset = 4
    elif length == 127:
        if len(data) < 10:
            return None, 10 + (4 if masked else 0)
        (length,) = struct.unpack_from("!Q", data, 2)
        if length >> 63:
            raise ValueError("the most significant bit of a 64-bit payload length must be 0")
        if length <= 0xFFFF:
            raise ValueError("non-minimal payload length encoding (RFC 6455 §5.2)")
        offset = 10
    mask_key = None
    if masked:
        if len(data) < offset + 4:
            return None, offset + 4
        mask_key = bytes(data[offset:offset + 4])
        offset += 4
    header = FrameHeader(fin=bool(b0 & 0x80), rsv1=bool(b0 & 0x40), rsv2=bool(b0 & 0x20),
                         rsv3=bool(b0 & 0x10), opcode=b0 & 0x0F, masked=masked,
                         payload_len=length, mask_key=mask_key)
    return header, offset


def frame_overhead(payload_len: int, masked: bool = False) -> int:
    """Header bytes for one frame of ``payload_len`` bytes: 2/4/10, plus 4 when masked."""
    base = 2 if payload_len <= 125 else 4 if payload_len <= 0xFFFF else 10
    return base + (4 if masked else 0)


def mask_payload(payload: bytes, mask_key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte key (masking and unmasking are the same operation)."""
    if len(mask_key) != 4:
        raise ValueError("a masking key is exactly 4 bytes")
    if not payload:
        return b""
    key = (mask_key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


def encode_frame(payload: bytes | str, opcode: int | None = None, fin: bool = True,
                 mask_key: bytes | None = None) -> bytes:
    """A whole frame (header + payload, masked if ``mask_key``); text for ``str``, binary for ``bytes``."""
    if isinstance(payload, str):
        payload, default = payload.encode("utf-8"), 0x1
    else:
        default = 0x2
    body = mask_payload(payload, mask_key) if mask_key is not None else payload
    return frame_header(len(payload), default if opcode is None else opcode, fin, mask_key) + body
