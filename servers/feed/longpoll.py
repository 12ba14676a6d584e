"""Long polling: ``GET /feed/longpoll?after=N&timeout=S``.

The request is held open until an event with seq > N exists, then answered; after ``S``
seconds (default 30, at most the ``longpoll_max_s`` setting) with nothing new it is answered
with ``{"events": []}``, and the client asks again. Each held request is a *waiter*: a future in
``app.waiters`` that ``publish`` resolves, or a timer at the timeout (one ``call_later``, not
``asyncio.wait_for``, which holds a coroutine, a second future and a callback per request: about
0.6 KiB more per held long poll). When the client goes away first, ``on_connection_close``
cancels its future, so no waiter leaks (``app.waiter_count`` drops back to 0) - the pattern of
Tornado's ``demos/chat``. ``?epoch=E`` as for ``/feed/poll``
(:mod:`servers.feed.polling`): a client that names another run of the feed gets a ``reset``
answer at once instead of waiting for seqs this run may never reach.
"""
from __future__ import annotations

import asyncio

from servers.feed.polling import NoCacheMixin, events_body, read_events
from servers.limits import holds_connection
from servers.web import BaseHandler

__all__ = ["LongPollHandler"]


class LongPollHandler(NoCacheMixin, BaseHandler):
    """``GET /feed/longpoll?after=N&timeout=S``: held until an event after N exists, or S seconds pass."""

    waiter: asyncio.Future | None = None

    @holds_connection("longpoll")  # 429 beyond max_connections_per_address (servers.limits)
    async def get(self) -> None:
        app = self.application
        after = self.int_argument("after", default=0, minimum=0)
        timeout = self.float_argument("timeout", default=30.0, minimum=0.0, maximum=app.settings["longpoll_max_s"])
        body, _ = read_events(self, after)
        if body is None and timeout > 0:
            self.waiter = app.wait_for_event()
            timer = asyncio.get_running_loop().call_later(timeout, _time_out, self.waiter)
            try:
                await self.waiter
            except asyncio.CancelledError:
                return  # the client went away (on_connection_close): nobody to answer
            finally:
                timer.cancel()
                app.waiters.discard(self.waiter)
            body, _ = read_events(self, after)
        self.write_json(body or events_body([], None))

    def on_connection_close(self) -> None:
        if self.waiter is not None:
            self.waiter.cancel()


def _time_out(waiter: asyncio.Future) -> None:
    """Nothing new in time: the request is answered with no events, and the client asks again."""
    if not waiter.done():
        waiter.set_result(None)
