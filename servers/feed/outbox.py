"""A bounded outbox per push connection: the slow-consumer policy in one place.

Tornado's write buffer is unbounded: a server that writes every event to a client that reads
slowly keeps every unread byte in memory. So each push connection (SSE, WebSocket, STOMP) gets
an :class:`Outbox` of at most ``outbox_limit`` messages (an application setting, default 1000)
and one sender coroutine that *awaits* each write before taking the next message, so at most
one message sits in Tornado's buffer at a time. When the outbox is full the client is too slow
to keep up: :meth:`Outbox.put` returns ``False`` and the connection drops it (WebSocket close
1008, SSE and STOMP by closing the connection). An SSE or WebSocket client then resumes from
its last seq, from the event buffer, like after any other disconnect.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any

__all__ = ["Outbox"]


class Outbox:
    """A FIFO of messages with a limit, that a single sender drains with ``await get()``."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.closed = False
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> bool:
        """Queue ``item``; ``False`` when the outbox is full (a slow consumer) or closed."""
        if self.closed or len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._wake()
        return True

    def seal(self) -> None:
        """Accept nothing more, but let the sender drain what is queued (e.g. an ERROR, then a close)."""
        self.closed = True
        self._wake()

    def close(self) -> None:
        """No more messages: the sender's next ``get()`` returns ``None`` once the queue is drained."""
        self.closed = True
        self._items.clear()
        self._wake()

    async def get(self, timeout: float | None = None) -> Any:
        """The next message, ``None`` when closed; raises ``TimeoutError`` after ``timeout`` s idle."""
        while not self._items:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            finally:
                self._waiter = None
        return self._items.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
