"""The feed application: its routes, its state, and how to start it.

State (all on the application, never in module globals, so feeds run side by side):

- ``buffer`` - the :class:`~servers.feed.buffer.EventBuffer` (gapless seq from 1, bounded by
  the ``buffer_size`` setting, overflow reported as ``missed``);
- ``waiters`` - futures of held long polls, resolved by :meth:`FeedApp.publish`;
- ``subscribers`` - open SSE and WebSocket connections (each has a bounded outbox);
- ``stomp`` - the :class:`~servers.feed.stomp.StompBroker` (sessions, topics, ``/app`` routes).

From a cell::

    feed = start_feed()                                   # port 0, background server loop
    feed.call(lambda app: app.publish({"hello": 1}))      # publish on the server loop
    requests.get(feed.url + "/feed/poll", params={"after": 0}).json()
    feed.call(lambda app: app.stats())                    # waiters, subscribers, last seq
    feed.stop()
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from servers.feed.buffer import EventBuffer
from servers.feed.longpoll import LongPollHandler
from servers.feed.pages import PageHandler, RelativeRedirectHandler
from servers.feed.polling import PollHandler, PublishHandler
from servers.feed.sse import SSEHandler
from servers.feed.stomp import GreetingController, StompBroker
from servers.feed.stomp_session import StompWebSocketHandler
from servers.feed.ws import FeedWebSocketHandler
from servers.limits import Limits
from servers.runtime import ServerApp, ServerHandle, serve
from servers.settings import PUSH_DEFAULTS, merge_settings

__all__ = ["FeedApp", "make_feed_app", "start_feed", "urls", "DEFAULT_SETTINGS", "ROUTES"]

#: Every tunable, with its default. Pass any of them to make_feed_app / start_feed; handlers read
#: ``self.settings[name]`` (the style of every server: servers.settings). The push knobs (SSE retry
#: and heartbeat, long-poll ceiling, WebSocket size and ping) are servers.settings.PUSH_DEFAULTS;
#: no WebSocket pings here, so lesson 04's byte counts show only the frames it sends.
DEFAULT_SETTINGS: dict[str, Any] = {
    **PUSH_DEFAULTS,
    "max_publish_bytes": 64 * 1024,           # POST /feed/publish body limit (413 above)
    "outbox_limit": 1000,                     # messages queued per push connection before it is dropped
    "stomp_heartbeat_ms": (10000, 10000),     # what the broker offers in CONNECTED heart-beat
    "stomp_max_headers": 32,
    "stomp_max_header_length": 4096,          # bytes per header line
    "stomp_max_body": 32 * 1024,              # below the WebSocket limit, so ERROR (not 1009) says why
}

ROUTES = [
    (r"/feed/publish", PublishHandler),
    (r"/feed/poll", PollHandler),
    (r"/feed/longpoll", LongPollHandler),
    (r"/feed/sse", SSEHandler),
    (r"/feed/ws", FeedWebSocketHandler),
    (r"/stomp", StompWebSocketHandler),
    (r"/pages/([a-z0-9_.-]*)", PageHandler),
    (r"/pages", RelativeRedirectHandler, {"target": "pages/"}),
    (r"/", RelativeRedirectHandler, {"target": "pages/"}),
]


class FeedApp(ServerApp):
    """One event stream served by short polling, long polling, SSE, WebSocket and STOMP."""

    def __init__(self, name: str = "feed", buffer_size: int = 1000, stomp_controllers: list | None = None,
                 **settings: Any) -> None:
        super().__init__(ROUTES, name=name, **merge_settings(DEFAULT_SETTINGS, settings, owner=f"feed {name!r}"))
        self.buffer = EventBuffer(buffer_size)
        self.waiters: set[asyncio.Future] = set()
        self.subscribers: set[Any] = set()
        self.stomp = StompBroker(self)
        for controller in (stomp_controllers if stomp_controllers is not None else [GreetingController()]):
            self.stomp.add_controller(controller)
        self.dropped_slow = 0
        self.limits = Limits(self.settings)  # per-address limits (servers.limits); a bad setting fails here
        self.loop: asyncio.AbstractEventLoop | None = None  # set by startup(): where publish must run

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()

    # --- the one write path -----------------------------------------------------------------
    def publish(self, data: Any) -> dict[str, Any]:
        """Append an event and push it everywhere: long polls, SSE, WebSocket, STOMP /topic/feed.

        Call it on the server loop: ``handle.call(lambda app: app.publish(x))``.
        Returns the event ``{"seq", "data", "sent_at"}``. ``data`` must be JSON-serialisable
        (checked here, so that no push connection fails on it later).
        """
        self._check_loop()
        try:
            json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event data must be JSON-serialisable: {exc}") from None
        event = self.buffer.append(data)
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(event)
        for subscriber in list(self.subscribers):
            subscriber.deliver(event)
        self.stomp.deliver_event(event)
        return event

    def _check_loop(self) -> None:
        """State is touched only on the server's own loop; say so clearly instead of racing it."""
        if self.loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self.loop:
            raise RuntimeError(f"{self.name}: publish() must run on the server loop; "
                               "use handle.call(lambda app: app.publish(data)) or POST /feed/publish")

    def wait_for_event(self) -> asyncio.Future:
        """A future resolved by the next publish (a long poll's waiter); cancel it to give up."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.add(waiter)
        return waiter

    @property
    def waiter_count(self) -> int:
        return sum(1 for w in self.waiters if not w.done())

    def connections(self, kind: str | None = None) -> list[Any]:
        """Open push connections (``kind``: ``"sse"``, ``"ws"``, ``"stomp"`` or all)."""
        conns = list(self.subscribers) + list(self.stomp.sessions)
        return [c for c in conns if kind is None or c.kind == kind]

    def drop_streams(self, kind: str = "sse", abort: bool = False) -> int:
        """Test and lesson hook: end every open SSE stream (``abort=True``: cut TCP instead).

        An ``EventSource`` reconnects after ``retry`` ms with ``Last-Event-ID``: lesson 03 shows
        it, the interop test checks it. Returns how many streams were dropped.
        """
        if kind != "sse":
            raise ValueError("only SSE streams can be dropped this way; stop() or crash() the server otherwise")
        streams = self.connections("sse")
        for stream in streams:
            stream.abort() if abort else stream.end()
        return len(streams)

    def count_dropped(self, connection: Any) -> None:
        """A connection was dropped for being too slow (its outbox was full)."""
        self.dropped_slow += 1

    def stats(self) -> dict[str, Any]:
        """What the server holds right now, for a lesson's table or a test's assertion."""
        kinds = [c.kind for c in self.connections()]
        return {"name": self.name, "last_seq": self.buffer.last_seq, "first_seq": self.buffer.first_seq,
                "buffered": len(self.buffer), "buffer_size": self.buffer.size, "waiters": self.waiter_count,
                "sse": kinds.count("sse"), "ws": kinds.count("ws"), "stomp": kinds.count("stomp"),
                "dropped_slow": self.dropped_slow}

    async def shutdown(self) -> None:
        """Stopping: answer held long polls (no events), end SSE streams, close WebSockets with 1001."""
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for connection in self.connections():
            if connection.kind == "sse":
                connection.end()
            else:
                connection.close(1001, "server stopping")


def make_feed_app(name: str = "feed", buffer_size: int = 1000, **settings: Any) -> FeedApp:
    """A :class:`FeedApp`, not yet listening (``servers.serve(app)`` starts it).

    ``settings``: any key of :data:`DEFAULT_SETTINGS`, ``stomp_controllers=[...]``, or a
    Tornado application setting.
    """
    return FeedApp(name=name, buffer_size=buffer_size, **settings)


def start_feed(name: str = "feed", host: str = "127.0.0.1", **settings: Any) -> ServerHandle:
    """Start a feed server on a free port (port 0) on the server loop; returns its handle.

    A feed already running under ``name`` is stopped first, so re-running a cell is safe.
    ``handle.url`` is the base URL; :func:`urls` gives each technique's URL.
    """
    return serve(make_feed_app(name=name, **settings), host=host)


def urls(base_url: str) -> dict[str, str]:
    """The URL of each technique and of the pages, from a base ``http://host:port``."""
    ws_base = "ws" + base_url[len("http"):] if base_url.startswith("http") else base_url
    return {"url": base_url, "publish": base_url + "/feed/publish", "poll": base_url + "/feed/poll",
            "longpoll": base_url + "/feed/longpoll", "sse": base_url + "/feed/sse",
            "ws": ws_base + "/feed/ws", "stomp": ws_base + "/stomp", "pages": base_url + "/pages/"}
