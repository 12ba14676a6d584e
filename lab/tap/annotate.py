"""The tap's annotated text view: each line of the bytes kept, with what it is.

HTTP messages line by line (request or status line, each header, the blank line, chunk sizes,
Server-Sent Events fields), then WebSocket frames with their header sizes. What
:meth:`lab.tap.Tap.show` prints.
"""
from __future__ import annotations

from servers.wire.http import split_chunked

from lab.tap.parsing import HttpMessage, parse_http_stream, parse_ws_frames

__all__ = ["annotate"]

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
        chunks, rest = split_chunked(body)
        for chunk in chunks:
            note = f"chunk size: {chunk.size} B follow" if chunk.size else "last chunk (size 0): end of body"
            lines.append(_line(chunk.line, note + (f", extension {chunk.extensions!r}" if chunk.extensions else "")))
            for part in chunk.data.splitlines(keepends=True):
                lines.append(_line(part, _sse_note(part) if event_stream else "chunk data"))
            if chunk.size:
                lines.append(_line(b"\r\n", "end of chunk"))
        if chunks and chunks[-1].size == 0:
            for part in rest.splitlines(keepends=True):  # trailer fields, then the blank line
                lines.append(_line(part, "blank line: end of body" if part == b"\r\n" else "trailer field"))
        elif rest:
            lines.append(_line(rest, "(cut off)"))
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
