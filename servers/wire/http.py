"""HTTP/1.1 messages (RFC 9112) as bytes, both directions, no I/O.

Why one small parser of our own: the lessons write requests by hand (a held long poll, a raw
SSE stream, a WebSocket handshake, pipelined guesses), the clients read answers as they arrive
(a chunked SSE body is never "done"), and the wire tap splits captured bytes into messages to
count what each costs. They all need the same rules, and a learner reads them in one place:

- a message is a head (start line, header fields, blank line; CRLF line ends) and a body;
- the body's length comes from ``Transfer-Encoding: chunked`` (size lines in hex, optional
  ``;extensions``, a last chunk of size 0, optional trailer fields), else ``Content-Length``,
  else a request has none and a response runs until the connection closes (RFC 9112 §6.3);
- an answer to ``HEAD``, and every ``1xx``, ``204`` and ``304``, has no body whatever its
  headers say;
- after ``101 Switching Protocols`` (or a request asking to ``Upgrade``) the bytes that follow
  are another protocol: the parser stops and hands them back (:meth:`HttpParser.rest`).

:class:`HttpParser` is fed bytes in any pieces (one at a time if you like) and gives back
events: :class:`Request` or :class:`Response` (the head), :class:`Data` (body bytes, chunk framing
removed) and :class:`EndOfMessage`. Nothing here reads a socket: the caller reads, feeds, and
acts on the events, as with h11 or the ``websockets`` library's ``http11`` module. Bytes that are
not HTTP raise :class:`ProtocolError` as soon as they are seen. :func:`split_messages` is the
lenient whole-capture view the tap uses: cut-off messages are flagged, not errors.

Why this is one module: reading, writing and splitting a capture share the grammar (the token,
start-line, field and chunk-line patterns) and the body-length rules above; split apart, a
reader would have to hold three files to check that what we write is what we accept.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = ["ProtocolError", "Request", "Response", "Data", "EndOfMessage", "HttpParser", "HttpMessage", "Chunk",
           "encode_request", "encode_response", "encode_head", "encode_chunk", "LAST_CHUNK", "split_messages",
           "split_chunked", "get_header", "keeps_alive"]

HeaderPairs = list[tuple[str, str]]
HeadersIn = Mapping[str, object] | Iterable[tuple[str, object]]

MAX_HEAD_BYTES = 64 * 1024   # what Tornado accepts by default; a longer head is an error, not a wait
MAX_CHUNK_LINE = 4096        # a chunk-size line with extensions
LAST_CHUNK = b"0\r\n\r\n"

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (\S+) (HTTP/\d\.\d)")
_STATUS_LINE = re.compile(r"(HTTP/\d\.\d) (\d{3})(?: ([^\r\n\0]*))?")
_FIELD = re.compile(rf"({_TOKEN}):[ \t]*([^\r\n\0]*?)[ \t]*")
_CHUNK_LINE = re.compile(rf"([0-9A-Fa-f]{{1,16}})[ \t]*((?:;[ \t]*{_TOKEN}(?:=[^;\r\n]*)?[ \t]*)*)")


def _prefixes(*parts: str) -> re.Pattern:
    """A pattern matching every beginning of ``parts`` in order: to reject a first line early."""
    nested = ""
    for part in reversed(parts):
        nested = f"(?:{part}{nested})?"
    return re.compile(nested)


_REQUEST_START = _prefixes(_TOKEN, " ", r"\S+", " ", *"HTTP/", r"\d", r"\.", r"\d", "\r")
_STATUS_START = _prefixes(*"HTTP/", r"\d", r"\.", r"\d", " ", r"\d", r"\d", r"\d", r"(?: [^\r\n\0]*)?", "\r")


class ProtocolError(ValueError):
    """The bytes are not HTTP/1.1 as RFC 9112 allows; the message says what was wrong."""


def get_header(headers: HeaderPairs, name: str, default: str | None = None) -> str | None:
    """The first value of field ``name`` (names are case-insensitive), else ``default``."""
    name = name.lower()
    return next((value for key, value in headers if key.lower() == name), default)


def _tokens(headers: HeaderPairs, name: str) -> list[str]:
    """Comma-separated tokens of every ``name`` field, lower case (``Connection``, ``Transfer-Encoding``)."""
    name = name.lower()
    return [t.strip().lower() for key, value in headers if key.lower() == name for t in value.split(",") if t.strip()]


@dataclass
class Request:
    """A request head. ``header_bytes`` counts the request line, the fields and the blank line."""

    method: str
    target: str
    headers: HeaderPairs = field(default_factory=list)
    version: str = "HTTP/1.1"
    header_bytes: int = 0

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"

    def header(self, name: str, default: str | None = None) -> str | None:
        return get_header(self.headers, name, default)


@dataclass
class Response:
    """A response head; ``start_line`` is the status line as received."""

    status: int
    reason: str = ""
    headers: HeaderPairs = field(default_factory=list)
    version: str = "HTTP/1.1"
    header_bytes: int = 0
    start_line: str = ""

    def __post_init__(self) -> None:
        self.start_line = self.start_line or f"{self.version} {self.status} {self.reason}".rstrip()

    def header(self, name: str, default: str | None = None) -> str | None:
        return get_header(self.headers, name, default)


@dataclass
class Data:
    """Body bytes as they arrived, with any chunk framing removed."""

    data: bytes


@dataclass
class EndOfMessage:
    """The body is complete; ``trailers`` are the fields after a chunked body's last chunk."""

    trailers: HeaderPairs = field(default_factory=list)


Event = Request | Response | Data | EndOfMessage


def keeps_alive(head: Request | Response) -> bool:
    """Whether the connection may carry another message after this one (RFC 9112 §9.3)."""
    tokens = _tokens(head.headers, "connection")
    return "close" not in tokens and (head.version != "HTTP/1.0" or "keep-alive" in tokens)


class HttpParser:
    """One direction of one HTTP/1.1 connection: ``feed(bytes)`` in, events out.

    ``response=True`` reads what a server sends. It needs to know which answers a ``HEAD``
    (they have no body): call :meth:`expect` with each request's method, in order; without it
    every request counts as a ``GET``. After each :class:`EndOfMessage` the next message starts.
    ``consumed`` counts the bytes turned into events so far, so a caller can map events back to
    the bytes on the wire. ``framing`` says how the current body ends: ``"none"``, ``"length"``,
    ``"chunked"`` or ``"close"``.
    """

    def __init__(self, response: bool, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self.response = response
        self.max_head_bytes = max_head_bytes
        self.consumed = 0
        self.framing = "none"
        self.head: Request | Response | None = None  # of the message being read
        self.switched = False   # the connection now speaks another protocol (see rest())
        self._buffer = bytearray()
        self._methods: deque[str] = deque()
        self._state = "head"    # head, length, size, chunk, crlf, trailer, close, end, done, switched
        self._remaining = 0
        self._trailers: HeaderPairs = []
        self._switch_after = False
        self._eof = False

    # -- feeding -------------------------------------------------------------------------------

    def expect(self, method: str) -> None:
        """Note the method of the next request this response side will answer."""
        self._methods.append(method.upper())

    def feed(self, data: bytes) -> list[Event]:
        """Add bytes; return every event they complete. Raises :class:`ProtocolError` on bad bytes."""
        self.receive(data)
        return list(iter(self.next_event, None))

    def feed_eof(self) -> list[Event]:
        """The peer closed. Ends a body that runs until close; mid-message it is a ProtocolError."""
        self._eof = True
        return list(iter(self.next_event, None))

    def receive(self, data: bytes) -> None:
        """Add bytes without parsing them yet (then call :meth:`next_event`)."""
        if self._eof and data:
            raise ProtocolError("bytes fed after the end of the stream")
        self._buffer += data

    def rest(self) -> bytes:
        """After a switch of protocols: the bytes received so far that belong to the new protocol."""
        data, self._buffer = bytes(self._buffer), bytearray()
        self.consumed += len(data)
        return data

    # -- parsing -------------------------------------------------------------------------------

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        self.consumed += n
        return data

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes (or the end of the stream) are needed."""
        state = self._state
        if state == "head":
            return self._read_head()
        if state == "length":
            if not self._buffer:
                return self._need(f"{self._remaining} more body bytes (Content-Length)")
            data = self._take(min(self._remaining, len(self._buffer)))
            self._remaining -= len(data)
            if self._remaining == 0:
                self._state = "end"
            return Data(data)
        if state == "size":
            return self._read_chunk_size()
        if state == "chunk":
            if not self._buffer:
                return self._need("the rest of a chunk")
            data = self._take(min(self._remaining, len(self._buffer)))
            self._remaining -= len(data)
            if self._remaining == 0:
                self._state = "crlf"
            return Data(data)
        if state == "crlf":
            if len(self._buffer) < 2:
                if self._buffer[:1] not in (b"", b"\r"):
                    raise ProtocolError("chunk data longer than its chunk-size line says")
                return self._need("the CRLF after a chunk")
            if self._take(2) != b"\r\n":
                raise ProtocolError("chunk data longer than its chunk-size line says (no CRLF after it)")
            self._state = "size"
            return self.next_event()
        if state == "trailer":
            return self._read_trailer()
        if state == "end":
            return self._end()
        if state == "close":
            if self._buffer:
                return Data(self._take(len(self._buffer)))
            if self._eof:
                return self._end()
            return None
        return None  # done (the stream ended), or switched: rest() has the bytes

    def _need(self, what: str) -> None:
        if self._eof:
            raise ProtocolError(f"the connection closed in the middle of a message (waiting for {what})")

    def _read_head(self) -> Event | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            self._check_partial_head()
            if self._buffer:
                return self._need("the rest of the head")
            return None
        if end + 4 > self.max_head_bytes:
            raise ProtocolError(f"a head of {end + 4} bytes, over the limit of {self.max_head_bytes}")
        raw = self._take(end + 4)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        headers = [_parse_field(line) for line in lines[1:]]
        if self.response:
            match = _STATUS_LINE.fullmatch(lines[0])
            if not match:
                raise ProtocolError(f"not an HTTP status line: {lines[0][:80]!r}")
            head: Request | Response = Response(int(match[2]), match[3] or "", headers, match[1], len(raw), lines[0])
        else:
            match = _REQUEST_LINE.fullmatch(lines[0])
            if not match:
                raise ProtocolError(f"not an HTTP request line: {lines[0][:80]!r}")
            head = Request(match[1], match[2], headers, match[3], len(raw))
        self.head = head
        self._frame(head)
        return head

    def _check_partial_head(self) -> None:
        """Reject what can no longer become a head: not HTTP, a bad first line, or too long."""
        buffer = self._buffer
        if len(buffer) > self.max_head_bytes:
            raise ProtocolError(f"no end of the head within {self.max_head_bytes} bytes")
        line_end = buffer.find(b"\r\n")
        first = bytes(buffer if line_end < 0 else buffer[:line_end]).decode("latin-1")
        if line_end >= 0:
            pattern = _STATUS_LINE if self.response else _REQUEST_LINE
        else:
            pattern = _STATUS_START if self.response else _REQUEST_START
        if not pattern.fullmatch(first):
            kind = "response" if self.response else "request"
            raise ProtocolError(f"not an HTTP {kind}: its first line starts {first[:40]!r}")

    def _frame(self, head: Request | Response) -> None:
        """Decide how this message's body ends (RFC 9112 §6.3) and whether a switch follows."""
        coding = _tokens(head.headers, "transfer-encoding")
        lengths = {v.strip() for key, value in head.headers if key.lower() == "content-length"
                   for v in value.split(",")}
        if coding and lengths:
            raise ProtocolError("both Transfer-Encoding and Content-Length: a request smuggling risk")
        if len(lengths) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
            raise ProtocolError(f"bad Content-Length: {', '.join(sorted(lengths))}")
        if isinstance(head, Response):
            if 100 <= head.status < 200 and head.status != 101:
                self._start_body("none", 0)  # informational: the final answer follows
                return
            method = self._methods.popleft() if self._methods else "GET"
            self._switch_after = head.status == 101 or (method == "CONNECT" and 200 <= head.status < 300)
            if self._switch_after or head.status in (204, 304) or method == "HEAD":
                self._start_body("none", 0)
                return
        else:
            self._switch_after = bool(head.header("upgrade")) and "upgrade" in _tokens(head.headers, "connection")
        if coding:
            if coding[-1] == "chunked":
                self._start_body("chunked", 0)
            elif isinstance(head, Response):
                self._start_body("close", 0)
            else:
                raise ProtocolError(f"a request body must end with the chunked coding, not {coding[-1]!r}")
        elif lengths:
            size = int(lengths.pop())
            self._start_body("length" if size else "none", size)
        else:
            self._start_body("close" if isinstance(head, Response) else "none", 0)

    def _start_body(self, framing: str, size: int) -> None:
        self.framing, self._remaining, self._trailers = framing, size, []
        self._state = {"none": "end", "length": "length", "chunked": "size", "close": "close"}[framing]

    def _read_chunk_size(self) -> Event | None:
        line_end = self._buffer.find(b"\r\n")
        if line_end < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise ProtocolError(f"no end of a chunk-size line within {MAX_CHUNK_LINE} bytes")
            return self._need("a chunk-size line")
        line = self._take(line_end + 2)[:-2].decode("latin-1")
        match = _CHUNK_LINE.fullmatch(line)
        if not match:
            raise ProtocolError(f"not a chunk-size line: {line[:40]!r}")
        self._remaining = int(match[1], 16)
        self._state = "chunk" if self._remaining else "trailer"
        return self.next_event()

    def _read_trailer(self) -> Event | None:
        line_end = self._buffer.find(b"\r\n")
        if line_end < 0:
            if len(self._buffer) > self.max_head_bytes:
                raise ProtocolError(f"no end of the trailer fields within {self.max_head_bytes} bytes")
            return self._need("the end of the chunked body")
        line = self._take(line_end + 2)[:-2].decode("latin-1")
        if line:
            self._trailers.append(_parse_field(line))
            return self.next_event()
        return self._end()

    def _end(self) -> EndOfMessage:
        event = EndOfMessage(self._trailers)
        if self._switch_after:
            self._state, self.switched = "switched", True
        elif self.framing == "close":
            self._state = "done"
        else:
            self._state = "head"
        self.framing, self._trailers, self._switch_after = "none", [], False
        return event

    @property
    def in_message(self) -> bool:
        """True between a head and its end (or while a head is half received)."""
        return self._state not in ("head", "done", "switched") or (self._state == "head" and bool(self._buffer))


def _parse_field(line: str) -> tuple[str, str]:
    if line[:1] in (" ", "\t"):
        raise ProtocolError(f"obsolete line folding (a field line starting with white space): {line[:40]!r}")
    match = _FIELD.fullmatch(line)
    if not match:
        raise ProtocolError(f"not a header field line: {line[:60]!r}")
    return match[1], match[2]


# -- writing -----------------------------------------------------------------------------------


def _pairs(headers: HeadersIn) -> HeaderPairs:
    return [(str(k), str(v)) for k, v in (headers.items() if isinstance(headers, Mapping) else headers)]


def encode_head(start_line: str, headers: HeadersIn = ()) -> bytes:
    """A head as bytes: the start line, each field as ``Name: value``, CRLF after each, a blank line.

    :func:`encode_request` and :func:`encode_response` check the start line and the framing;
    this is the layout alone, e.g. to count the smallest head a protocol allows.
    """
    pairs = _pairs(headers)
    for name, value in pairs:
        if not re.fullmatch(_TOKEN, name):
            raise ValueError(f"not a valid header name: {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name} contains CR, LF or NUL (that would inject a header)")
    lines = [start_line, *(f"{k}: {v}" for k, v in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _with_length(headers: HeadersIn, body: bytes | None, allowed: bool) -> HeaderPairs:
    pairs = _pairs(headers)
    if body is None:
        return pairs  # the caller frames (and sends) the body itself
    if get_header(pairs, "transfer-encoding") is not None:
        raise ValueError("with Transfer-Encoding, send the body with encode_chunk(), not as body=")
    given = get_header(pairs, "content-length")
    if given is not None and given != str(len(body)):
        raise ValueError(f"Content-Length {given} but the body has {len(body)} bytes")
    if not allowed:
        if body:
            raise ValueError("this message cannot have a body (RFC 9110 §6.4.1)")
        return pairs
    return pairs if given is not None else [*pairs, ("Content-Length", str(len(body)))]


def encode_request(method: str, target: str, headers: HeadersIn = (), body: bytes | None = None,
                   version: str = "HTTP/1.1") -> bytes:
    """A request as bytes. ``headers`` is a dict or (name, value) pairs, sent in that order.

    With ``body`` (bytes, even empty) a ``Content-Length`` is added (or checked); without it
    (``None``) only the head is written, for a request with no body or one framed by the caller.
    HTTP/1.1 needs a ``Host`` field (RFC 9112 §3.2): its absence is a ``ValueError``.
    """
    if not re.fullmatch(_TOKEN, method) or not target or any(c.isspace() for c in target):
        raise ValueError(f"not a valid request line: {method!r} {target!r}")
    pairs = _with_length(headers, body, True)
    if version == "HTTP/1.1" and get_header(pairs, "host") is None:
        raise ValueError("an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)")
    return encode_head(f"{method} {target} {version}", pairs) + (body or b"")


def encode_response(status: int, headers: HeadersIn = (), body: bytes | None = None, reason: str | None = None,
                    version: str = "HTTP/1.1") -> bytes:
    """A response as bytes; ``reason`` defaults to the standard phrase. ``body`` as in :func:`encode_request`.

    A ``1xx``, ``204`` or ``304`` cannot carry a body, so none is framed for them.
    """
    if not 100 <= status <= 999:
        raise ValueError(f"a status code has three digits, not {status}")
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    pairs = _with_length(headers, body, not (status < 200 or status in (204, 304)))
    return encode_head(f"{version} {status} {reason}".rstrip(" "), pairs) + (body or b"")


def encode_chunk(data: bytes, extensions: str = "") -> bytes:
    """One chunk of a chunked body: size in hex, optional ``;extensions``, CRLF, data, CRLF.

    Empty ``data`` would be the last chunk, which ends the body: send :data:`LAST_CHUNK` for that.
    """
    if not data:
        raise ValueError("an empty chunk ends the body; send LAST_CHUNK explicitly")
    if any(c in extensions for c in "\r\n"):
        raise ValueError("chunk extensions cannot contain CR or LF")
    return f"{len(data):x}{extensions}\r\n".encode("latin-1") + data + b"\r\n"


# -- whole captures ------------------------------------------------------------------------------


@dataclass
class HttpMessage:
    """One message of a capture: its head, and its body exactly as on the wire."""

    start_line: str
    headers: HeaderPairs
    header_bytes: int          # start line + headers + blank line
    body: bytes                # as on the wire (chunk framing included)
    complete: bool             # False when the bytes end inside this message
    chunked: bool = False

    @property
    def body_bytes(self) -> int:
        return len(self.body)

    def header(self, name: str) -> str | None:
        return get_header(self.headers, name)


def split_messages(data: bytes, response: bool,
                   methods: Iterable[str] | None = None) -> tuple[list[HttpMessage], bytes]:
    """Split one direction of a captured connection into messages; returns them and the rest.

    The rest is what follows that is not HTTP: the other protocol after a switch, or bytes that
    do not parse as a head. A capture may stop anywhere: the last message is then marked
    ``complete=False`` (a body that runs until close counts as complete), and a chunked body
    whose framing goes wrong keeps the remaining bytes, marked incomplete. ``methods`` (the
    request methods in order) tells the response side which answers a ``HEAD``.
    """
    parser = HttpParser(response, max_head_bytes=len(data) + 1)
    for method in methods or ():
        parser.expect(method)
    parser.receive(data)
    messages: list[HttpMessage] = []
    current: HttpMessage | None = None
    boundary = body_start = 0
    try:
        for event in iter(parser.next_event, None):
            if isinstance(event, (Request, Response)):
                current = HttpMessage(event.start_line, event.headers, event.header_bytes, b"", False,
                                      parser.framing == "chunked")
                messages.append(current)
                body_start = parser.consumed
            elif isinstance(event, EndOfMessage) and current is not None:
                current.body, current.complete = data[body_start:parser.consumed], True
                boundary, current = parser.consumed, None
                if parser.switched:
                    return messages, data[boundary:]
    except ProtocolError:
        if current is None:
            return messages, data[boundary:]  # not HTTP (any more)
    if current is not None:
        current.body, current.complete = data[body_start:], parser.framing == "close"
    elif boundary < len(data):
        messages.append(HttpMessage(data[boundary:].split(b"\r\n", 1)[0].decode("latin-1"), [],
                                    len(data) - boundary, b"", False))
    return messages, b""


@dataclass
class Chunk:
    """One chunk of a chunked body: ``line`` is its size line as sent (CRLF included)."""

    size: int
    extensions: str
    line: bytes
    data: bytes

    @property
    def wire_bytes(self) -> int:
        """Its size line, data and the CRLF after the data; for the last chunk the size line only
        (what follows it, trailer fields and the final CRLF, is the ``rest`` of :func:`split_chunked`)."""
        return len(self.line) + len(self.data) + (2 if self.size else 0)


def split_chunked(body: bytes) -> tuple[list[Chunk], bytes]:
    """A chunked body as sent, split into chunks (the last, size 0, included) and what is left.

    Stops at the first chunk that is cut off or malformed; ``rest`` holds it and what follows
    (after a complete last chunk: its trailer fields and final CRLF).
    """
    chunks: list[Chunk] = []
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return chunks, body[pos:]
        match = _CHUNK_LINE.fullmatch(body[pos:line_end].decode("latin-1"))
        if not match:
            return chunks, body[pos:]
        size, start = int(match[1], 16), line_end + 2
        if size and body[start + size:start + size + 2] != b"\r\n":
            return chunks, body[pos:]
        chunks.append(Chunk(size, match[2], body[pos:start], body[start:start + size]))
        if size == 0:
            return chunks, body[start:]
        pos = start + size + 2
