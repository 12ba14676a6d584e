"""Server-Sent Events framing (the ``text/event-stream`` format), both directions, no I/O.

The format is defined by the WHATWG HTML standard, section "Server-sent events"
(https://html.spec.whatwg.org/multipage/server-sent-events.html). Encoding is a few lines;
parsing follows the standard's "interpret the event stream" algorithm step by step, because
that is what a browser's ``EventSource`` does and the lesson compares the two:

- lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the
  next are one line end);
- a UTF-8 byte-order mark at the very start is dropped;
- a line starting with ``:`` is a comment (servers send them as heartbeats);
- ``field: value`` - one space after the colon is stripped; a line with no colon is a field
  with an empty value;
- ``data`` lines accumulate (joined with ``\\n``); a blank line dispatches the event; an event
  with no data is not dispatched;
- ``id`` sets the last event id (kept for later events too, sent back as ``Last-Event-ID`` on
  reconnect); an ``id`` containing NULL is ignored; ``retry`` with only ASCII digits sets the
  reconnection delay in milliseconds.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "encode_event", "encode_comment"]


def encode_event(data: str, id: str | int | None = None, event: str | None = None,
                 retry: int | None = None) -> bytes:
    """One event as bytes: ``[retry:] [id:] [event:] data:... \\n\\n``.

    Multi-line ``data`` becomes one ``data:`` line per line (the parser joins them back with
    ``\\n``), so a newline in the payload can never end the event early.
    """
    lines: list[str] = []
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    if id is not None:
        id_text = str(id)
        if any(c in id_text for c in "\r\n\0"):
            raise ValueError("an SSE id cannot contain CR, LF or NULL")
        lines.append(f"id: {id_text}")
    if event is not None:
        if any(c in event for c in "\r\n"):
            raise ValueError("an SSE event name cannot contain CR or LF")
        lines.append(f"event: {event}")
    for line in _split_lines(str(data)):
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment line (``: text``), ignored by clients; used as a heartbeat to keep proxies open."""
    return "".join(f": {line}\n" if line else ":\n" for line in _split_lines(text)).encode("utf-8")


def _split_lines(text: str) -> list[str]:
    """Split on CRLF, CR or LF exactly as the parser will (``str.splitlines`` splits on more)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


@dataclass
class SSEEvent:
    """A dispatched event: ``data`` (lines joined by ``\\n``), ``event`` type, ``id`` and ``retry``.

    ``id`` is the last event id in force when the event was dispatched (it persists across
    events, as ``EventSource.lastEventId`` does); ``retry`` is the reconnection delay in ms
    most recently set by the stream, or ``None``.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events completed by those bytes.

    >>> p = SSEParser()
    >>> p.feed(b"id: 1\\ndata: hello\\n")
    []
    >>> p.feed(b"\\n")
    [SSEEvent(data='hello', event='message', id='1', retry=None)]
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""          # text not yet ended by a line break
        self._skip_lf = False       # the last chunk ended in CR: an LF first in the next is its pair
        self._first = True          # a BOM is only dropped at the very start of the stream
        self._data: list[str] = []
        self._event_type = ""
        self.last_event_id = ""     # what a reconnecting client sends as Last-Event-ID
        self.retry: int | None = None
        self.comments = 0           # heartbeats seen (comment lines)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf and text:
            if text.startswith("\n"):
                text = text[1:]
            self._skip_lf = False
        events: list[SSEEvent] = []
        buffer = self._pending + text
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            if cr >= 0 and (lf < 0 or cr < lf):
                end, nxt = cr, cr + 1
                if nxt < length and buffer[nxt] == "\n":
                    nxt += 1
                elif nxt == length:
                    self._skip_lf = True  # the LF may be in the next chunk
            else:
                end, nxt = lf, lf + 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = nxt
        self._pending = buffer[start:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event_type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry = int(value)
        return None  # unknown fields are ignored

    def _dispatch(self) -> SSEEvent | None:
        data, event_type = self._data, self._event_type
        self._data, self._event_type = [], ""
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event_type or "message", id=self.last_event_id,
                        retry=self.retry)
