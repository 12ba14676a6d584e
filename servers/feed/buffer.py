"""The feed's event buffer: gapless sequence numbers from 1, bounded, with overflow reported.

Every technique reads the same buffer, so "replay after N" means the same thing for
``?after=N``, ``Last-Event-ID`` and ``{"after": N}``. The buffer keeps the newest
``size`` events; a reader whose cursor points before the oldest kept event is told which
events it missed (``missed = {"from": a, "to": b}``, inclusive) instead of silently getting a
stream with a hole in it.
"""
from __future__ import annotations

import collections
import json
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
