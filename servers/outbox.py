"""A bounded outbox per push connection: the slow-consumer policy in one place, for both servers.

Tornado's write buffer is unbounded: a server that writes every event to a client that reads
slowly keeps every unread byte in memory. So each push connection (the feed's SSE, WebSocket and
STOMP, the QR-login app's SSE and WebSocket) gets an :class:`Outbox` of at most ``outbox_limit``
messages (an application setting: 1000 on the feed, 100 on a login channel),
and the next message is written only when the last one has left Tornado's buffer, so at most
one message sits there at a time. Messages wait in the outbox only while the socket takes no
more (the client's receive window and the kernel's buffers are full). When the outbox is full
the client is too slow to keep up: :meth:`Outbox.put` returns ``False`` and the connection drops
it (WebSocket close 1008, SSE and STOMP by closing the connection). An SSE or WebSocket client
then resumes from its last seq, from the event buffer, like after any other disconnect.

Two ways to drain an outbox: a sender coroutine that awaits :meth:`Outbox.get` and each write
(STOMP, whose session has more to do between frames), or a :class:`Sender`, which writes the
moment a message arrives and needs no task at all (SSE and WebSocket: with thousands of
subscribers, waking a task per subscriber per event cost most of a fan-out; see
``benchmarks/fanout.py``).
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable

__all__ = ["Outbox", "Sender"]


class Outbox:
    """A FIFO of messages with a limit, that a single sender drains with ``await get()``.

    Memory per connection counts (thousands are held open): the queue itself is made only when
    a message has to wait and dropped again once it is drained (an empty ``deque`` is 760 bytes,
    and a STOMP session, whose sender waits on :meth:`get`, would otherwise keep one from its
    first frame on), and ``__slots__`` drop the attribute dictionary.
    """

    __slots__ = ("limit", "closed", "_items", "_waiter")

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.closed = False
        self._items: collections.deque[Any] | None = None
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put(self, item: Any) -> bool:
        """Queue ``item``; ``False`` when the outbox is full (a slow consumer) or closed."""
        if self.closed or len(self) >= self.limit:
            return False
        if self._items is None:
            self._items = collections.deque()
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
        self._items = None
        self._wake()

    def pop(self) -> Any:
        """The next message, or ``None`` when nothing is queued (never waits)."""
        if self._items:
            return self._items.popleft()
        self._items = None  # drained: no empty queue is kept
        return None

    async def get(self) -> Any:
        """The next message, waiting for one; ``None`` when closed."""
        while not self._items:
            if self.closed:
                return None
            self._items = None  # drained: no empty queue is kept while the sender waits
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Sender:
    """Writes an outbox's messages as they arrive, one write in flight at a time, with no task.

    ``write(item)`` writes one message and returns the future of its flush (or ``None`` when it
    wrote nothing). :meth:`send` writes at once when nothing is waiting; when the socket took
    the bytes, the future is already done and the next message is written straight away too;
    otherwise the next ones wait, queued in the outbox, until the future completes. A write that
    fails (the connection is gone) goes to ``on_error`` and ends the sending.
    """

    __slots__ = ("outbox", "write", "on_error", "in_flight", "failed")

    def __init__(self, outbox: Outbox, write: Callable[[Any], "asyncio.Future | None"],
                 on_error: Callable[[BaseException], None]) -> None:
        self.outbox = outbox
        self.write = write
        self.on_error = on_error
        self.in_flight: asyncio.Future | None = None
        self.failed = False

    def send(self, item: Any) -> bool:
        """Write ``item`` now, or queue it behind a write that waits for the socket; ``False``
        when the outbox is full (a slow consumer) or closed."""
        outbox = self.outbox
        if self.in_flight is None and not self.failed and not outbox._items and not outbox.closed:
            # the common case: nothing waits, so no queue at all (_write_one, inlined: per subscriber
            # per event, one call less is measurable in a fan-out)
            try:
                future = self.write(item)
            except Exception as exc:  # e.g. StreamClosedError, WebSocketClosedError
                self._fail(exc)
                return True
            if future is not None:
                self._track(future)
            return True
        if not self.outbox.put(item):
            return False
        self._drain()  # writes nothing while a write waits for the socket
        return True

    def _written(self, future: asyncio.Future) -> None:
        self.in_flight = None
        error = _error_of(future)
        if error is not None:
            self._fail(error)
        else:
            self._drain()

    def _drain(self) -> None:
        while self.in_flight is None and not self.failed:
            item = self.outbox.pop()
            if item is None:
                return
            self._write_one(item)

    def _write_one(self, item: Any) -> None:
        """Write ``item``; remember its future if the socket has not taken it yet."""
        try:
            future = self.write(item)
        except Exception as exc:  # e.g. StreamClosedError, WebSocketClosedError
            self._fail(exc)
            return
        if future is not None:
            self._track(future)

    def _track(self, future: asyncio.Future) -> None:
        """Wait for ``future`` before the next write, or note its failure if it already ended."""
        if not future.done():
            self.in_flight = future
            future.add_done_callback(self._written)
            return
        error = _error_of(future)
        if error is not None:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        self.failed = True
        self.on_error(error)


def _error_of(future: asyncio.Future) -> BaseException | None:
    """What a finished write raised (a cancelled one counts as failed), or ``None``."""
    return asyncio.CancelledError() if future.cancelled() else future.exception()
