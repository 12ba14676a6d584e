"""The feed's event buffer: gapless sequence numbers from 1, bounded, with overflow reported.

Every technique reads the same buffer, so "replay after N" means the same thing for
``?after=N``, ``Last-Event-ID`` and ``{"after": N}``. The buffer keeps the newest
``size`` events; a reader whose cursor points before the oldest kept event is told which
events it missed (``missed = {"from": a, "to": b}``, inclusive) instead of silently getting a
stream with a hole in it.

A resume point is only meaningful to the buffer that gave it: seqs start again at 1 when a
server restarts (a new buffer). Each buffer has an ``epoch``, a random instance id (like
Centrifugo's stream epoch), and :meth:`EventBuffer.resume` treats a resume point it cannot have
given - higher than any seq it gave, or sent with another buffer's epoch - as a *reset*: the
reader gets every buffered event, after a gap notice with ``"reset": true``, never seqs that
silently go backwards.
"""
from __future__ import annotations

import collections
import json
import secrets
import time
from typing import Any, Callable

__all__ = ["EventBuffer"]


class EventBuffer:
    """A bounded, append-only log of events ``{"seq", "data", "sent_at"}``."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.size = size
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.last_seq = 0  # seq of the newest event; 0 when nothing was ever published
        self.epoch = secrets.token_hex(4)  # this buffer's instance: a restarted server has another
        # (form, seq) -> the event encoded in that form, so a fan-out encodes once, not per subscriber
        self._encoded: dict[tuple[str, int], Any] = {}

    def __len__(self) -> int:
        return len(self._events)

    @property
    def first_seq(self) -> int:
        """Seq of the oldest event still buffered (``last_seq + 1`` when empty)."""
        return self._events[0]["seq"] if self._events else self.last_seq + 1

    def append(self, data: Any) -> dict[str, Any]:
        self.last_seq += 1
        event = {"seq": self.last_seq, "data": data, "sent_at": time.time()}
        self._events.append(event)
        return event

    def since(self, after: int) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
        """Buffered events with seq > ``after``, and the range no longer buffered (or ``None``)."""
        first = self.first_seq
        missed = {"from": after + 1, "to": first - 1} if after + 1 < first else None
        if after >= self.last_seq:
            return [], missed
        start = max(0, after + 1 - first)
        return [self._events[i] for i in range(start, len(self._events))], missed

    def resume(self, after: int, epoch: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """What a reader resuming after ``after`` gets: the buffered events, and the gap notice when
        they are not exactly the events after ``after`` (else ``None``):

        * some are no longer buffered: ``{"missed": {"from", "to"}, "first": F, "epoch": E}``;
        * ``after`` is not one of this buffer's seqs (above ``last_seq``, or ``epoch`` given and not
          this buffer's: the server restarted since): every buffered event, and
          ``{"missed": <this epoch's seqs no longer buffered, or None>, "first": F, "epoch": E,
          "reset": True}``.

        ``first`` is the seq the reader gets next: the oldest buffered, or the next published.
        """
        reset = after > self.last_seq or (epoch is not None and epoch != self.epoch)
        events, missed = self.since(0 if reset else after)
        if missed is None and not reset:
            return events, None
        notice: dict[str, Any] = {"missed": missed, "first": self.first_seq, "epoch": self.epoch}
        if reset:
            notice["reset"] = True
        return events, notice

    def encoded(self, event: dict[str, Any], form: str = "json",
                encode: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """``event`` encoded in ``form`` (``"json"``: compact JSON text; other forms need ``encode``),
        computed once per event however many connections send it. The newest ``2 * size``
        encodings are kept."""
        key = (form, event["seq"])
        value = self._encoded.get(key)
        if value is None:
            value = encode(event) if encode is not None else json.dumps(event, separators=(",", ":"))
            self._encoded[key] = value
            if len(self._encoded) > 2 * self.size:
                del self._encoded[next(iter(self._encoded))]  # the oldest encoding
        return value
