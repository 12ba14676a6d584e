"""Lesson 05's pieces: a STOMP conversation as a tap saw it, bad frames on purpose, and bytes per MESSAGE.

Why here and not in the tap: the tap's own display (``tap.show()``) prints one line per
WebSocket frame, which is right for any protocol. A STOMP lesson wants each frame whole, line by
line (command, headers, blank line, body, NULL), both directions in the order they happened,
with heart-beats marked. So :func:`stomp_conversation` re-reads the tap's kept bytes: it splits
each direction into WebSocket frames, parses their payloads with the project's STOMP parser
(:class:`servers.wire.stomp.StompParser`), and orders the frames of both directions by when the
tap forwarded them (the tap's per-read timeline, ``tap.chunks()``).

- :func:`show_stomp` prints that conversation, annotated;
- :func:`send_raw_stomp` connects by hand and sends text we wrote ourselves, e.g. a malformed
  frame, and reports what came back (the ERROR frame) and how the socket was closed;
- :func:`measure_message_bytes` counts the bytes one event costs as a STOMP MESSAGE and as a
  plain ``/feed/ws`` frame, for several event sizes;
- :func:`who_got` runs one send and tells, for each of several connected clients, which
  MESSAGEs reached it (user destinations: one user, every session of that user, no one else);
- :func:`framing_bytes` splits one MESSAGE's framing into its parts (command, each header, blank
  line, NULL), marking the headers STOMP 1.2 requires on a MESSAGE.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import pandas as pd

from servers.clients.stomp import StompClient
from servers.clients.ws import ConnectionClosed
from lab.publishing import payload
from lab.lessons.websocket import RawWebSocket
from lab.tap import parse_http_stream, parse_ws_frames
from servers.wire.stomp import Frame, StompError, StompParser, encode_frame

__all__ = ["StompOnWire", "stomp_conversation", "show_stomp", "send_raw_stomp", "measure_message_bytes",
           "framing_bytes", "who_got", "HEADER_NOTES", "MESSAGE_REQUIRED"]

MARKER_TOPIC = "/topic/lesson-05-marker"

#: Headers a MESSAGE MUST carry (STOMP 1.2, "MESSAGE"): ``ack`` too, on client/client-individual subscriptions.
MESSAGE_REQUIRED = ("destination", "message-id", "subscription")

#: What each header means, for the annotated display (STOMP 1.2 and this broker's extras).
HEADER_NOTES = {
    "accept-version": "versions the client speaks",
    "host": "virtual host the client wants",
    "heart-beat": "cx,cy: can send every cx ms, wants one every cy ms (0: none)",
    "version": "version chosen by the server",
    "server": "broker name",
    "session": "session id given by the server",
    "destination": "where the frame goes / came from",
    "id": "subscription id, chosen by the client",
    "ack": "auto: no ACK frames needed",
    "receipt": "please confirm with a RECEIPT",
    "receipt-id": "confirms the frame that asked for this receipt",
    "message-id": "unique id of this MESSAGE",
    "subscription": "which of the client's subscriptions matched",
    "content-type": "MIME type of the body",
    "content-length": "body length in bytes (the body may hold NULLs)",
    "message": "short error description",
    "seq": "this broker's extra: the feed event's seq",
    "login": "who the client says it is",
    "passcode": "its password",
    "user-name": "the session's user (as Spring's CONNECTED says)",
}


@dataclass
class StompOnWire:
    """One STOMP frame (or heart-beat) seen in a WebSocket message, with where and when it went."""

    t: float                  # time.time() when the tap forwarded its first byte
    direction: str            # "up" (client→server) or "down"
    raw: bytes                # the STOMP bytes as sent (inside the WebSocket payload)
    ws_header_bytes: int      # WebSocket frame header (+ mask key) around it
    frame: Frame | None       # None for a heart-beat or an unparsable payload
    error: str = ""

    @property
    def command(self) -> str:
        if self.frame is not None:
            return self.frame.command
        return "heart-beat" if self.raw.strip(b"\r\n") == b"" else "(malformed)"


def stomp_conversation(tap: Any, conn_id: int | None = None) -> list[StompOnWire]:
    """Every STOMP frame of one tap connection (the latest by default), both directions, in time order."""
    if conn_id is None:
        conn_id = int(tap.connections().id.iloc[-1])
    chunks = tap.chunks()
    items: list[StompOnWire] = []
    for direction in ("up", "down"):
        data = tap.raw(conn_id, direction)
        messages, rest = parse_http_stream(data, response=(direction == "down"))
        offset = len(data) - len(rest)
        mine = chunks[(chunks.conn == conn_id) & (chunks.direction == direction)]
        ends = mine.bytes.cumsum().tolist()
        times = mine.t.tolist()
        parser = StompParser(max_body=16 * 1024 * 1024)
        for ws in parse_ws_frames(rest):
            i = bisect.bisect_right(ends, offset)
            t = times[min(i, len(times) - 1)] if times else 0.0
            offset += ws.header_bytes + ws.payload_length
            if ws.opcode not in (1, 2):
                continue  # close, ping, pong: not STOMP
            frame, error = None, ""
            if ws.payload.strip(b"\r\n"):
                try:
                    parsed = parser.feed(ws.payload)
                    frame = parsed[0] if parsed else None
                except StompError as exc:
                    error = str(exc)
                    parser = StompParser(max_body=16 * 1024 * 1024)
            items.append(StompOnWire(t, direction, ws.payload, ws.header_bytes, frame, error))
    return sorted(items, key=lambda item: item.t)


def _printable(raw: bytes) -> str:
    out = []
    for b in raw:
        if b == 0:
            out.append("^@")
        elif b == 13:
            out.append("\\r")
        elif b == 10:
            out.append("\\n")
        elif 32 <= b < 127 or b >= 128:
            out.append(chr(b) if b < 128 else "·")
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _annotated(item: StompOnWire, body_limit: int) -> list[str]:
    arrow = "▶ client → server" if item.direction == "up" else "◀ server → client"
    mask = " + 4 B mask key" if item.direction == "up" else ""
    ws_note = f"in a WebSocket text frame: {item.ws_header_bytes - (4 if item.direction == 'up' else 0)} B header{mask}"
    lines = [f"{arrow}  {item.command}  ({len(item.raw)} B {ws_note})"]
    if item.command == "heart-beat":
        lines.append(f"    {_printable(item.raw):<44} ← an EOL alone: 'I am alive'")
        return lines
    head, sep, rest = item.raw.partition(b"\n\n")
    for i, line in enumerate(head.split(b"\n")):
        text = _printable(line)
        if i == 0:
            note = "command"
        else:
            name = line.split(b":", 1)[0].decode("utf-8", "replace")
            note = "header: " + HEADER_NOTES.get(name, "application header")
        lines.append(f"    {text:<44} ← {note}")
    if sep:
        lines.append(f"    {'':<44} ← blank line: end of headers")
        body = rest[:-1] if rest.endswith(b"\0") else rest
        shown = _printable(body[:body_limit]) + ("…" if len(body) > body_limit else "")
        lines.append(f"    {shown + '^@':<44} ← body ({len(body)} B), then NULL (^@) ends the frame")
    if item.error:
        lines.append(f"    (the parser refused it: {item.error})")
    return lines


def show_stomp(tap: Any, conn_id: int | None = None, *, last: int | None = None, skip_heartbeats: bool = False,
               body_limit: int = 60) -> None:
    """Print the STOMP frames of a tap connection, line by line and annotated (``last``: only the last n)."""
    items = stomp_conversation(tap, conn_id)
    if skip_heartbeats:
        items = [item for item in items if item.command != "heart-beat"]
    if last is not None:
        items = items[-last:]
    for item in items:
        print("\n".join(_annotated(item, body_limit)))


def send_raw_stomp(target: Any, text: str, *, connect: bool = True, timeout: float = 10) -> dict[str, Any]:
    """Open ``/stomp``, CONNECT (if asked), send ``text`` exactly as given, and collect the answer.

    Returns ``frames`` (the frames received after CONNECTED), ``close_code`` and ``close_reason``.
    The server answers a bad frame with ERROR and then closes, so this returns once it closed
    (or raises ``TimeoutError`` if it does not within ``timeout`` s).
    """
    parser = StompParser(max_body=16 * 1024 * 1024)
    frames: list[Frame] = []
    with RawWebSocket(target, "/stomp", subprotocols=["v12.stomp"]) as ws:
        if connect:
            ws.send(encode_frame(Frame("CONNECT", {"accept-version": "1.2", "host": "/"})).decode())
            connected = parser.feed(_as_bytes(ws.recv(timeout)))
            if not connected or connected[0].command != "CONNECTED":
                raise RuntimeError(f"expected CONNECTED, got {connected!r}")
        ws.send(text)
        try:
            while True:
                frames += parser.feed(_as_bytes(ws.recv(timeout)))
        except ConnectionClosed as closed:
            return {"frames": frames, "close_code": closed.code, "close_reason": closed.reason}


def _as_bytes(message: str | bytes) -> bytes:
    return message.encode("utf-8") if isinstance(message, str) else message


def measure_message_bytes(feed: Any, data_sizes: list[int], timeout: float = 10) -> pd.DataFrame:
    """Bytes on the wire for one event, delivered as a STOMP MESSAGE and as a plain WebSocket frame.

    A ``/feed/ws`` client and a STOMP client subscribed to ``/topic/feed`` are connected through
    one tap; for each size an event whose ``data`` is a text of that many characters is
    published, both clients wait for it, and the tap's byte count of each connection (server to
    client) is read before and after. Returns one row per event and technique: ``data_bytes``,
    ``technique``, ``wire_bytes`` (WebSocket header + payload) and ``payload_bytes``.
    """
    from lab.tap import start_tap

    tap = start_tap(feed, name=f"lesson-05 bytes tap {feed.url}", capture_bytes=1024)
    rows: list[dict[str, Any]] = []
    try:
        with RawWebSocket(tap, "/feed/ws") as plain:
            plain_id = int(tap.connections().id.iloc[-1])
            with StompClient(tap) as stomp:
                stomp_id = int(tap.connections().id.iloc[-1])
                stomp.subscribe("/topic/feed")

                def down() -> dict[int, int]:
                    table = tap.connections().set_index("id")
                    return {conn: int(table.loc[conn, "bytes_down"]) for conn in (plain_id, stomp_id)}

                for size in data_sizes:
                    before = down()
                    feed.call(lambda app: app.publish(payload(size)))
                    event_text = plain.recv(timeout)
                    message = stomp.receive_message(timeout)
                    after = down()
                    event_bytes = len(_as_bytes(event_text))
                    stomp_payload = len(encode_frame(message))
                    rows.append({"data_bytes": size, "technique": "plain WebSocket (/feed/ws)",
                                 "wire_bytes": after[plain_id] - before[plain_id], "payload_bytes": event_bytes})
                    rows.append({"data_bytes": size, "technique": "STOMP MESSAGE (/stomp)",
                                 "wire_bytes": after[stomp_id] - before[stomp_id], "payload_bytes": stomp_payload})
    finally:
        tap.stop()
    return pd.DataFrame(rows)


def framing_bytes(frame: Frame) -> pd.DataFrame:
    """One frame's framing bytes, part by part (its body excluded): the command line, each header
    line, the blank line and the NULL, as :func:`servers.wire.stomp.encode_frame` writes them.
    ``required`` marks what STOMP 1.2 requires on a MESSAGE (:data:`MESSAGE_REQUIRED`)."""
    encoded = encode_frame(frame)
    head = encoded[:encoded.index(b"\n\n") + 1]
    lines = head.split(b"\n")[:-1]
    rows = [{"part": lines[0].decode(), "bytes": len(lines[0]) + 1, "required": True}]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].decode()
        rows.append({"part": line.decode(), "bytes": len(line) + 1,
                     "required": frame.command != "MESSAGE" or name in MESSAGE_REQUIRED})
    rows += [{"part": "(blank line)", "bytes": 1, "required": True}, {"part": "(NULL)", "bytes": 1, "required": True}]
    table = pd.DataFrame(rows)
    assert table.bytes.sum() == len(encoded) - len(frame.body), "every framing byte is in one row"
    return table


def who_got(feed: Any, clients: dict[str, StompClient], send: Any, timeout: float = 10) -> pd.DataFrame:
    """Call ``send()`` (a ``convert_and_send_to_user``, or a client's SEND with ``receipt=True`` so that
    it returns once the broker handled it), then report, per
    client, every MESSAGE it received because of it: one row per (client, MESSAGE), and a row with
    ``destination`` None for a client that got nothing.

    No waiting on a clock: after ``send()`` a marker is broadcast on a topic every client
    subscribes to; a connection delivers in order, so what a client has not received before the
    marker was never sent to it.
    """
    for client in clients.values():
        if not getattr(client, "_marker_subscribed", False):
            client.subscribe(MARKER_TOPIC)
            client._marker_subscribed = True  # type: ignore[attr-defined]
    send()
    feed.call(lambda app: app.stomp.broadcast(MARKER_TOPIC, b"marker"))
    rows = []
    for name, client in clients.items():
        got = []
        while (message := client.receive_message(timeout)).headers["destination"] != MARKER_TOPIC:
            got.append({"client": name, "destination": message.headers["destination"], "body": message.text})
        rows += got or [{"client": name, "destination": None, "body": None}]
    return pd.DataFrame(rows)
