"""The scaffolding of lesson 08's exercise: write a pub/sub fix of your own and run it on real servers.

:class:`PubSubExerciseBase` does the Redis plumbing of a pub/sub backplane, so that the learner
writes only the decisions that *are* the fix: which Redis channel carries a ticket's events
(``channel_of``), when a server listens to it (``on_first_channel`` / ``on_last_channel``), what
a change publishes (``publish``) and what a message delivers (``on_message``). Those decisions
are also where the typical mistakes live (one global channel every server hears, a server that
never stops listening), and the exercise's tests look at them from outside: how many messages an
uninvolved server received, what a server still listens to after its browser left.

:func:`start_pair` starts servers with such a hub on one Redis, and :func:`login_across` runs the
bug's story across two of them (browser on one, phone on the other). Short on purpose: the
exercise asks the learner to read it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from servers import runtime
from servers.clients.qr import login_once_async
from servers.qrlogin.push import Event, PushHub


class PubSubExerciseBase(PushHub):
    """The plumbing of a pub/sub backplane: one Redis subscriber connection per server.

    - :meth:`listen` / :meth:`unlisten` ``SUBSCRIBE`` / ``UNSUBSCRIBE`` a Redis channel on it and
      return once Redis has confirmed (``self.listening`` is the set of confirmed channels);
    - a reader task calls :meth:`on_message` with the data (a ``str``) of every message on a
      channel this server listens to, counted in ``stats["messages_in"]`` (an exception there is
      counted in ``stats["on_message_errors"]``, and the reader goes on); :meth:`drained` waits
      until every message published so far has been read;
    - the first browser channel for a ticket opening on this server calls
      :meth:`on_first_channel`, the last one closing calls :meth:`on_last_channel`, one at a time
      in order; after ``on_first_channel`` the ticket is read once from Redis and a newer state
      delivered (the *catch-up*: a change published before the subscription took effect is not lost).

    A subclass writes ``channel_of``, ``on_first_channel``, ``on_last_channel``, ``publish`` and
    ``on_message``.
    """

    name = "exercise_pubsub"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.listening: set[str] = set()
        self._pubsub = None
        self._reader: asyncio.Task | None = None
        self._hook_order = asyncio.Lock()  # hooks run one at a time, in the order they were asked for
        self._pending_hooks = 0
        self._drains = 0   # markers sent through this server's own channel ...
        self._drained = 0  # ... and read back by the reader
        # Subscribed from the start so the reader always has a connection to block on.
        self.control_channel = f"{app.namespace}:exercise-servers:{app.name}"

    # -- what the learner writes ----------------------------------------------------------------

    def channel_of(self, ticket: str) -> str:  # pragma: no cover - the exercise
        raise NotImplementedError("the Redis channel that carries this ticket's events")

    async def on_first_channel(self, ticket: str) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("the first browser channel for this ticket opened here")

    async def on_last_channel(self, ticket: str) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("the last browser channel for this ticket here closed")

    async def publish(self, ticket: str, event: Event) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("publish the event on the ticket's Redis channel")

    def on_message(self, data: str) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("hand the event in data to this server's channels")

    # -- the plumbing ---------------------------------------------------------------------------

    async def listen(self, channel: str, timeout: float = 5.0) -> None:
        """``SUBSCRIBE channel`` on this server's subscriber connection; returns once Redis confirmed."""
        await self._pubsub.subscribe(channel)
        await self.wait_until(lambda: channel in self.listening, timeout)

    async def unlisten(self, channel: str, timeout: float = 5.0) -> None:
        """``UNSUBSCRIBE channel``; returns once Redis confirmed that this server no longer listens."""
        await self._pubsub.unsubscribe(channel)
        await self.wait_until(lambda: channel not in self.listening, timeout)

    async def settled(self, timeout: float = 5.0) -> None:
        """Return once every channel opened or closed so far has had its hook run (a test waits on it)."""
        await self.wait_until(lambda: self._pending_hooks == 0, timeout)

    async def drained(self, timeout: float = 5.0) -> None:
        """Return once every message published (anywhere) before this call has reached this server's
        reader, if it was to reach it at all: Redis delivers a connection's messages in the order it
        executed the ``PUBLISH`` commands, so a marker published now on this server's own channel
        arrives after all of them. A test waits on it before counting what a server received."""
        self._drains += 1
        marker = self._drains
        await self.app.redis.publish(self.control_channel, f"drain:{marker}")
        await self.wait_until(lambda: self._drained >= marker, timeout)

    async def start(self) -> None:
        self._pubsub = self.app.redis.pubsub()
        await self._pubsub.subscribe(self.control_channel)
        while True:  # subscribed for real (Redis confirmed it) before the first request
            message = await self._pubsub.get_message(timeout=5)
            if message is None:
                raise RuntimeError(f"Redis did not confirm SUBSCRIBE {self.control_channel} within 5 s")
            if message["type"] == "subscribe":
                break
        self._reader = self.spawn(self._read(), "exercise-reader")

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            kind, channel = message.get("type"), message.get("channel")
            if channel == self.control_channel:
                if kind == "message" and str(message.get("data", "")).startswith("drain:"):
                    self._drained = max(self._drained, int(message["data"].split(":", 1)[1]))
                    self.wake_waiters()
                continue
            if kind == "subscribe":
                self.listening.add(channel)
                self.wake_waiters()
            elif kind == "unsubscribe":
                self.listening.discard(channel)
                self.wake_waiters()
            elif kind in ("message", "pmessage"):
                self.stats["messages_in"] += 1
                try:
                    self.on_message(message["data"])
                except Exception as exc:  # a learner's bug must show, not kill the reader
                    self.stats["on_message_errors"] += 1
                    self.stats[f"error: {exc!r}"[:120]] += 1

    def on_first_subscriber(self, ticket: str) -> None:
        self._queue_hook("first", ticket)

    def on_last_unsubscribe(self, ticket: str) -> None:
        self._queue_hook("last", ticket)

    def _queue_hook(self, which: str, ticket: str) -> None:
        if self._reader is not None and not self.stopped:
            self._pending_hooks += 1
            self.spawn(self._run_hook(which, ticket), f"exercise-on-{which}-channel")

    async def _run_hook(self, which: str, ticket: str) -> None:
        """Run one of the learner's hooks; the lock is fair, so hooks run in the order channels came and went."""
        try:
            async with self._hook_order:
                if which == "first":
                    await self.on_first_channel(ticket)
                    await self.catch_up(ticket)
                else:
                    await self.on_last_channel(ticket)
        except Exception as exc:
            self.stats["hook_errors"] += 1
            self.stats[f"error in on_{which}_channel: {exc!r}"[:120]] += 1
        finally:
            self._pending_hooks -= 1
            self.wake_waiters()

    async def stop(self) -> None:
        # PushHub.stop, with shorter waits: the app gives its whole shutdown 5 s.
        self.stopped = True
        await self.cancel(self.tasks, timeout=1.5)  # the reader and any hook still running
        if self._pubsub is not None:
            try:
                await asyncio.wait_for(self._pubsub.aclose(), 1.5)
            except Exception:
                pass


def start_with_hub(name: str, hub_class: type, redis_url: str, **settings: Any):
    """A QR-login server whose push hub is ``hub_class(app)`` (a fix of your own), on a free port."""
    from servers.qrlogin.app import make_qrlogin_app
    from servers.qrlogin.push import Fix
    from servers.runtime import serve

    fix = Fix(getattr(hub_class, "name", hub_class.__name__), hub_class)  # the app adds the hub's routes
    return serve(make_qrlogin_app(name, fix, redis_url, **settings))


def start_pair(hub_class: type, redis_url: str, names: Sequence[str] = ("A", "B"), **settings: Any) -> list[Any]:
    """Servers (A and B, or ``names``) with the same hub class on one Redis: a cluster without a balancer."""
    return [start_with_hub(name, hub_class, redis_url, **settings) for name in names]


def login_across(a: Any, b: Any, transport: str = "sse", timeout: float = 3.0) -> dict[str, Any]:
    """The seed's story exactly: the browser on server ``a``, the phone on server ``b``.
    A :func:`~servers.clients.qr.login_once` result (``ok``, ``latency_s``, ``error``, ...)."""
    return runtime.run(login_once_async(getattr(a, "url", a), transport, timeout, phone_url=getattr(b, "url", b)),
                       timeout=timeout + 60)
