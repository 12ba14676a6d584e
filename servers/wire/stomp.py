"""STOMP 1.2 frames (https://stomp.github.io/stomp-specification-1.2.html), no I/O.

A frame is a command line, header lines ``name:value``, a blank line, a body and a NULL
byte. The details this module gets right, because real clients depend on them:

- header escaping: in header names and values ``\\r \\n : \\`` travel as ``\\r \\n \\c \\\\``,
  except in CONNECT and CONNECTED frames (kept unescaped for STOMP 1.0 compatibility);
  an undefined escape such as ``\\t`` is a fatal protocol error;
- lines may end in LF or CRLF; a repeated header keeps its first value;
- ``content-length`` says how long the body is, so a body may contain NULL bytes; without it
  the body ends at the first NULL;
- between frames a peer may send bare EOLs as heart-beats.

:class:`StompParser` enforces limits (header count, header line length, body size) so that a
client cannot make the server buffer without bound; it raises :class:`StompError`, which the
broker turns into an ERROR frame and a close.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Frame", "StompError", "StompParser", "encode_frame", "escape_header", "unescape_header",
           "CLIENT_COMMANDS", "SERVER_COMMANDS", "SUPPORTED_VERSIONS", "negotiate_version",
           "parse_heart_beat", "negotiate_heart_beat", "HEARTBEAT_EOL"]

CLIENT_COMMANDS = frozenset({"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
                             "BEGIN", "COMMIT", "ABORT", "DISCONNECT"})
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
HEARTBEAT_EOL = b"\n"
_UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})
_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"}
_UNESCAPES = {"\\": "\\", "r": "\r", "n": "\n", "c": ":"}


class StompError(ValueError):
    """Malformed or oversized input; the message says what was wrong, for the ERROR frame.

    ``too_large`` is true when a limit (header count, header length, body size) was exceeded.
    """

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass
class Frame:
    """One STOMP frame. ``body`` is bytes; ``text`` decodes it as UTF-8."""

    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def escape_header(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape_header(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        nxt = next(chars, "")
        if nxt not in _UNESCAPES:
            raise StompError(f"undefined escape sequence '\\{nxt}' in a header (STOMP 1.2 allows \\r \\n \\c \\\\)")
        out.append(_UNESCAPES[nxt])
    return "".join(out)


def encode_frame(frame: Frame, escape: bool = True) -> bytes:
    """The frame's bytes, NULL-terminated, with ``content-length`` added when there is a body.

    ``escape=False`` writes headers as they are (STOMP 1.0 peers); CONNECT and CONNECTED are
    never escaped.
    """
    body = frame.body.encode("utf-8") if isinstance(frame.body, str) else bytes(frame.body)
    headers = dict(frame.headers)
    if body and "content-length" not in headers:
        headers["content-length"] = str(len(body))
    do_escape = escape and frame.command not in _UNESCAPED_COMMANDS
    lines = [frame.command]
    for name, value in headers.items():
        name, value = str(name), str(value)
        if do_escape:
            name, value = escape_header(name), escape_header(value)
        elif any(c in name + value for c in "\r\n") or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent unescaped in a {frame.command} frame")
        lines.append(f"{name}:{value}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"


class StompParser:
    """Feed it bytes as they arrive; it returns the complete frames, in order.

    Limits: ``max_headers`` header lines per frame, ``max_header_length`` bytes per header
    line (and the command line), ``max_body`` bytes of body. Exceeding one, or any malformed
    frame, raises :class:`StompError`; the parser is then unusable (close the connection).
    ``heartbeats`` counts the bare EOLs received between frames.
    """

    def __init__(self, max_headers: int = 64, max_header_length: int = 4096, max_body: int = 64 * 1024,
                 commands: frozenset[str] = CLIENT_COMMANDS | SERVER_COMMANDS, escape: bool = True) -> None:
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self.max_body = max_body
        self.commands = commands
        self.escape = escape  # False for a STOMP 1.0 session: header values taken literally
        self.heartbeats = 0
        self._buffer = bytearray()
        self._head: tuple[str, dict[str, str], int | None] | None = None  # parsed head awaiting its body

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _next_frame(self) -> Frame | None:
        buf = self._buffer
        if self._head is None:
            while buf[:1] == b"\n" or buf[:2] == b"\r\n":  # heart-beats between frames
                del buf[:1 if buf[:1] == b"\n" else 2]
                self.heartbeats += 1
            if buf[:1] == b"\r" and len(buf) == 1:
                return None
            end, sep_len = _blank_line(buf)
            if end < 0:
                head_limit = (self.max_headers + 1) * (self.max_header_length + 2)
                if len(buf) > head_limit:
                    raise StompError(f"frame headers exceed {head_limit} bytes without ending", too_large=True)
                self._check_lines(_partial_lines(bytes(buf)))  # fail early on a too-long line, ended or not
                return None
            head = bytes(buf[:end])
            del buf[:end + sep_len]
            self._head = self._parse_head(head)
        command, headers, length = self._head
        if length is not None:
            if len(buf) < length + 1:
                return None
            if buf[length] != 0:
                raise StompError("the body is longer than its content-length header says (no NULL after it)")
            body = bytes(buf[:length])
            del buf[:length + 1]
        else:
            nul = buf.find(b"\0")
            if nul < 0:
                if len(buf) > self.max_body:
                    raise StompError(f"the body exceeds the limit of {self.max_body} bytes", too_large=True)
                return None
            if nul > self.max_body:
                raise StompError(f"the body exceeds the limit of {self.max_body} bytes", too_large=True)
            body = bytes(buf[:nul])
            del buf[:nul + 1]
        self._head = None
        return Frame(command, headers, body)

    def _check_lines(self, lines: list[bytes]) -> None:
        if len(lines) > self.max_headers + 1:
            raise StompError(f"too many headers: more than {self.max_headers}", too_large=True)
        for line in lines:
            if len(line) > self.max_header_length:
                raise StompError(f"a header line is longer than {self.max_header_length} bytes", too_large=True)

    def _parse_head(self, head: bytes) -> tuple[str, dict[str, str], int | None]:
        lines = head.split(b"\n")
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        self._check_lines(lines)
        try:
            text_lines = [line.decode("utf-8") for line in lines]
        except UnicodeDecodeError:
            raise StompError("frame headers must be UTF-8") from None
        command = text_lines[0]
        if command not in self.commands:
            raise StompError(f"unknown command {command[:40]!r}")
        unescape = self.escape and command not in _UNESCAPED_COMMANDS
        headers: dict[str, str] = {}
        for line in text_lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise StompError(f"header line without a colon: {line[:40]!r}")
            if unescape:
                name, value = unescape_header(name), unescape_header(value)
            headers.setdefault(name, value)  # a repeated header keeps its first value
        length = None
        if "content-length" in headers:
            raw = headers["content-length"]
            if not _ascii_digits(raw):  # str.isdigit() also takes "²" and "٣", which int() refuses or misreads
                raise StompError(f"content-length must be a non-negative integer, not {raw[:20]!r}")
            length = int(raw)
            if length > self.max_body:
                raise StompError(f"the body ({length} bytes) exceeds the limit of {self.max_body} bytes", too_large=True)
        return command, headers, length


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _partial_lines(head: bytes) -> list[bytes]:
    """The lines of a head still arriving, counted as the whole head will be: a CR before LF is
    not part of a line, and the empty remainder after the last LF is not a line (yet)."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _blank_line(buf: bytearray) -> tuple[int, int]:
    """Index where the head ends (the EOL before the blank line) and the separator's length."""
    best = (-1, 0)
    for sep in (b"\n\n", b"\n\r\n"):
        i = buf.find(sep)
        if i >= 0 and (best[0] < 0 or i < best[0]):
            best = (i, len(sep))
    if best[0] > 0 and buf[best[0] - 1:best[0]] == b"\r":
        return best[0] - 1, best[1] + 1
    return best


def negotiate_version(accept_version: str | None, supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str | None:
    """The highest version both sides speak; a CONNECT without ``accept-version`` means 1.0."""
    if accept_version is None:
        return "1.0" if "1.0" in supported else None
    offered = {v.strip() for v in accept_version.split(",")}
    common = [v for v in supported if v in offered]
    return max(common, key=lambda v: tuple(map(int, v.split(".")))) if common else None


def parse_heart_beat(value: str | None) -> tuple[int, int]:
    """``"cx,cy"`` to ``(cx, cy)`` in milliseconds; missing means ``(0, 0)`` (no heart-beats)."""
    if value is None or value == "":
        return 0, 0
    parts = value.split(",")
    if len(parts) != 2 or not all(_ascii_digits(p.strip()) for p in parts):
        raise StompError(f"heart-beat must be two non-negative integers 'cx,cy', not {value[:40]!r}")
    return int(parts[0]), int(parts[1])


def negotiate_heart_beat(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """Heart-beat periods in ms as ``(client_to_server, server_to_client)``; 0 means none.

    The client's ``(cx, cy)`` says "I can send every cx ms, I want one every cy ms"; the
    server's ``(sx, sy)`` the same for it. Client to server: 0 if ``cx`` or ``sy`` is 0, else
    ``max(cx, sy)``; server to client: 0 if ``sx`` or ``cy`` is 0, else ``max(sx, cy)``.
    """
    (cx, cy), (sx, sy) = client, server
    return (0 if cx == 0 or sy == 0 else max(cx, sy)), (0 if sx == 0 or cy == 0 else max(sx, cy))
