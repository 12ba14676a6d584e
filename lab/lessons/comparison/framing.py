"""What the protocol requires, and what the tap saw: :func:`wire_cost` of one connection.

The *protocol minimum* of an event is the framing the protocol itself requires, computed from
the event bytes the client received:

- SSE: ``id: n`` + ``data: ...`` + a blank line (WHATWG HTML, "Server-sent events",
  https://html.spec.whatwg.org/multipage/server-sent-events.html) inside one HTTP chunk (size
  line + CRLF, RFC 9112 §7.1);
- WebSocket: the RFC 6455 §5.2 frame header (2 B up to 125 B of payload, 4 B up to 64 KiB);
- STOMP: a ``MESSAGE`` with only ``destination``, ``message-id`` and ``subscription`` and the
  NULL (STOMP 1.2, https://stomp.github.io/stomp-specification-1.2.html), inside a WebSocket frame;
- polling: a request with only its request line and ``Host``, and a response with only its
  status line and ``Content-Length``, for every request actually made.

``framing_ratio`` (in :func:`~lab.lessons.comparison.measurement.measure_point`) is what the tap
saw for the event-carrying bytes divided by that minimum: 1.00 means the server adds nothing.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from lab.tap import parse_http_stream, parse_ws_frames
from servers.wire.http import encode_chunk, encode_head, encode_response, split_chunked
from servers.wire.sse import encode_event
from servers.wire.websocket import frame_overhead


def _stomp_headers(payload: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = payload.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").lstrip("\r\n").split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    return lines[0], headers, body


# The smallest heads the protocols allow (what a minimal client and server must send once per connection).
MIN_SSE_RESPONSE = encode_response(200, {"Content-Type": "text/event-stream",
                                         "Transfer-Encoding": "chunked"}).decode("latin-1")
MIN_WS_REQUEST_HEADERS = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + "x" * 24
                          + "\r\nSec-WebSocket-Version: 13\r\n")  # RFC 6455 §4.1, on top of the request line + Host
MIN_WS_RESPONSE = encode_response(101, {"Upgrade": "websocket", "Connection": "Upgrade",
                                        "Sec-WebSocket-Accept": "x" * 28}).decode("latin-1")  # RFC 6455 §4.2.2


def wire_cost(technique: str, up: bytes, down: bytes, events: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Bytes of one connection, split by what they carry, against the protocol minimum.

    ``up``/``down`` are every byte the tap saw each way; ``events`` the events the client got on
    this connection. Returns ``requests``, ``framing_bytes`` (the bytes that carried events, as
    the tap saw them), ``framing_min`` (what the protocol requires for the same events),
    ``min_down``/``min_up`` (the protocol minimum of the whole connection) and ``event_bytes``
    (the event JSON itself).
    """
    jsons = [json.dumps({k: v for k, v in e.items() if k != "received_at"}, separators=(",", ":")).encode()
             for e in events]
    event_bytes = sum(len(j) for j in jsons)
    requests, up_rest = parse_http_stream(up, response=False)
    host = (requests[0].header("host") or "") if requests else ""
    min_request = sum(len(encode_head(m.start_line, {"Host": host})) for m in requests)
    out = {"requests": len(requests), "event_bytes": event_bytes}
    if technique in ("poll", "longpoll"):
        responses, _ = parse_http_stream(down, response=True)
        min_down = sum(len(encode_response(200, {"Content-Length": m.body_bytes})) + m.body_bytes
                       for m in responses)
        measured = sum(m.header_bytes + m.body_bytes for m in responses)
        return {**out, "framing_bytes": measured, "framing_min": min_down, "min_down": min_down, "min_up": min_request}
    responses, down_rest = parse_http_stream(down, response=True)
    head = responses[0].header_bytes if responses else 0
    if technique == "sse":
        # bytes of chunks that carry no event: the retry: line, heartbeats, the last chunk, a cut-off one
        chunks, rest = split_chunked(down[head:])
        other = len(rest) + sum(c.wire_bytes for c in chunks if b"\ndata: {\"seq\"" not in b"\n" + c.data)
        framing = len(down) - head - other
        minimum = 0 if not responses else len(MIN_SSE_RESPONSE)
        for event, raw in zip(events, jsons):
            text = encode_event(raw.decode(), id=event["seq"])
            minimum += len(encode_chunk(text))
        framing_min = minimum - (len(MIN_SSE_RESPONSE) if responses else 0)
        return {**out, "framing_bytes": framing, "framing_min": framing_min, "min_down": minimum, "min_up": min_request}
    frames = parse_ws_frames(down_rest)
    client_frames = parse_ws_frames(up_rest)
    handshake_up = len(MIN_WS_REQUEST_HEADERS) * len(requests)
    min_up = min_request + handshake_up + sum(f.header_bytes + f.payload_length for f in client_frames
                                              if f.opcode in (1, 2))
    if technique == "ws":
        other = sum(f.header_bytes + f.payload_length for f in frames if not f.payload.startswith(b'{"seq"'))
        minimum = sum(frame_overhead(len(raw)) + len(raw) for raw in jsons)
    else:  # stomp: MESSAGE frames to /topic/feed carry the events
        other, minimum = 0, 0
        for frame in frames:
            command, headers, _ = _stomp_headers(frame.payload)
            if command == "MESSAGE" and headers.get("destination") == "/topic/feed":
                continue
            other += frame.header_bytes + frame.payload_length
        message_headers = [(h.get("message-id", ""), h.get("subscription", ""))
                           for c, h, _ in map(_stomp_headers, (f.payload for f in frames))
                           if c == "MESSAGE" and h.get("destination") == "/topic/feed"]
        for (message_id, subscription), raw in zip(message_headers, jsons):
            stomp = (f"MESSAGE\ndestination:/topic/feed\nmessage-id:{message_id}\nsubscription:{subscription}\n\n"
                     .encode() + raw + b"\0")
            minimum += frame_overhead(len(stomp)) + len(stomp)
    framing = len(down) - head - other
    min_down = minimum + (len(MIN_WS_RESPONSE) if responses else 0)
    return {**out, "framing_bytes": framing, "framing_min": minimum, "min_down": min_down, "min_up": min_up}
