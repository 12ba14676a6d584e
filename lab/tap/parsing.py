"""Reading what the tap kept: HTTP/1.1 messages and WebSocket frames, for display and overhead counts.

Both are the lenient whole-capture views of the sans-I/O parsers in :mod:`servers.wire`: a
capture may stop anywhere (the tap keeps only the first bytes of each direction), so a message
or frame cut off at the end is flagged ``complete=False`` instead of raising.
"""
from __future__ import annotations

from dataclasses import dataclass

from servers.wire.http import HttpMessage, split_messages
from servers.wire.websocket import OPCODES, mask_payload, parse_frame_header

__all__ = ["HttpMessage", "WsFrame", "parse_http_stream", "parse_ws_frames"]


def parse_http_stream(data: bytes, response: bool,
                      methods: list[str] | None = None) -> tuple[list[HttpMessage], bytes]:
    """Split one direction of an HTTP/1.x connection into messages.

    Returns the messages and the bytes after them that are not HTTP: the WebSocket frames after
    a ``101 Switching Protocols`` (or after the upgrade request, on the client side). For the
    response side, ``methods`` (the request methods in order) tells which answers a ``HEAD``,
    whose response has headers only. See :func:`servers.wire.http.split_messages`.
    """
    return split_messages(data, response, methods)


@dataclass
class WsFrame:
    fin: bool
    opcode: int
    masked: bool
    header_bytes: int          # 2, 4 or 10 B, plus 4 B of mask key when masked
    payload: bytes             # unmasked
    payload_length: int
    complete: bool

    OPCODES = OPCODES  # RFC 6455 §11.8, from servers.wire.websocket

    @property
    def kind(self) -> str:
        return self.OPCODES.get(self.opcode, f"opcode {self.opcode}")


def parse_ws_frames(data: bytes) -> list[WsFrame]:
    """Split WebSocket bytes into frames (RFC 6455 §5.2), unmasking client payloads.

    Stops at a header cut off by the end of the capture, or one RFC 6455 forbids.
    """
    frames = []
    pos = 0
    while pos < len(data):
        try:
            header, header_len = parse_frame_header(data[pos:pos + 14])
        except ValueError:
            break
        if header is None:
            break
        payload = data[pos + header_len:pos + header_len + header.payload_len]
        if header.mask_key is not None:
            payload = mask_payload(payload, header.mask_key)
        frames.append(WsFrame(header.fin, header.opcode, header.masked, header_len, payload, header.payload_len,
                              len(payload) == header.payload_len))
        pos += header_len + header.payload_len
    return frames
