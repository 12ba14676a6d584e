"""The outbox and its task-free Sender: one write in flight, order kept, a failed write ends it.

Run on the server loop (``runtime.run``): another test may leave this thread with a running loop."""
from __future__ import annotations

import asyncio

from servers import runtime
from servers.outbox import Outbox, Sender


class Socket:
    """A fake connection: each write returns a future that the test completes (or not)."""

    def __init__(self, takes_at_once: bool) -> None:
        self.takes_at_once = takes_at_once
        self.written: list = []
        self.pending: list[asyncio.Future] = []

    def write(self, item):
        self.written.append(item)
        future = asyncio.get_running_loop().create_future()
        if self.takes_at_once:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future


def test_a_socket_that_takes_everything_gets_every_message_at_once():
    async def scenario():
        outbox, socket = Outbox(3), Socket(takes_at_once=True)
        sender = Sender(outbox, socket.write, on_error=lambda error: None)
        # more than the limit: none of them waits, so none is refused
        accepted = [sender.send(i) for i in range(10)]
        return socket.written, len(outbox), all(accepted)

    assert runtime.run(scenario()) == (list(range(10)), 0, True)


def test_a_stalled_socket_holds_one_write_and_queues_up_to_the_limit():
    async def scenario():
        outbox, socket = Outbox(3), Socket(takes_at_once=False)
        sender = Sender(outbox, socket.write, on_error=lambda error: None)
        accepted = [sender.send(i) for i in range(6)]
        stalled = (list(socket.written), len(outbox), accepted)
        socket.pending.pop(0).set_result(None)  # the socket drained: the next write goes out
        await asyncio.sleep(0)  # the done-callback runs on the next loop turn
        return stalled, list(socket.written)

    (written, queued, accepted), after = runtime.run(scenario())
    assert written == [0] and queued == 3 and accepted == [True, True, True, True, False, False]
    assert after == [0, 1]


def test_a_failed_write_ends_the_sending_and_is_reported_once():
    async def scenario():
        outbox, socket, errors = Outbox(10), Socket(takes_at_once=False), []
        sender = Sender(outbox, socket.write, on_error=errors.append)
        for i in range(3):
            sender.send(i)
        socket.pending.pop(0).set_exception(ConnectionResetError("gone"))
        await asyncio.sleep(0)
        sender.send(3)
        return socket.written, errors

    written, errors = runtime.run(scenario())
    assert written == [0] and len(errors) == 1 and isinstance(errors[0], ConnectionResetError)
