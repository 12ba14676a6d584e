"""The scaffolding of lesson 08's exercise: write a pub/sub fix of your own and run it on two servers.

:class:`PubSubExerciseBase` does the Redis plumbing so the learner writes only the two halves
that are the fix (``publish`` and ``on_message``); :func:`start_pair` starts two servers with
that hub on one Redis, and :func:`login_across` runs the bug's story across them (browser on
one, phone on the other). Short on purpose: the exercise asks the learner to read it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from servers import runtime
from servers.clients.qr import login_once_async
from servers.qrlogin.push import Event, PushHub


class PubSubExerciseBase(PushHub):
    """The plumbing of a pattern-subscribed pub/sub backplane (Socket.IO's classic Redis adapter
    shape): ``start`` ``PSUBSCRIBE``s ``<ns>:events:*`` and a reader task hands every message's
    data to :meth:`on_message`. A subclass writes the two halves: :meth:`publish` and
    :meth:`on_message`.
    """

    name = "exercise_pubsub"

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.pattern = f"{app.namespace}:events:*"
        self._pubsub = None
        self._reader: asyncio.Task | None = None

    def channel_of(self, ticket: str) -> str:
        """The Redis channel of one ticket's events: ``<ns>:events:<ticket>`` (matched by the pattern)."""
        return f"{self.app.namespace}:events:{ticket}"

    async def start(self) -> None:
        self._pubsub = self.app.redis.pubsub()
        await self._pubsub.psubscribe(self.pattern)
        while True:  # subscribed for real (Redis confirmed it) before the first request
            message = await self._pubsub.get_message(timeout=5)
            if message is None:
                raise RuntimeError(f"Redis did not confirm PSUBSCRIBE {self.pattern} within 5 s")
            if message["type"] == "psubscribe":
                break
        self._reader = asyncio.create_task(self._read(), name=f"{self.app.name}:exercise-reader")

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") == "pmessage":
                self.stats["messages_in"] += 1
                try:
                    self.on_message(message["data"])
                except Exception as exc:  # a learner's bug must show, not kill the reader
                    self.stats["on_message_errors"] += 1
                    self.stats[f"error: {exc!r}"[:120]] += 1

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            try:
                await asyncio.wait_for(self._pubsub.aclose(), 2)
            except Exception:
                pass

    async def publish(self, ticket: str, event: Event) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("publish the event on the ticket's Redis channel")

    def on_message(self, data: str) -> None:  # pragma: no cover - the exercise
        raise NotImplementedError("hand the event in data to this server's channels")


def start_with_hub(name: str, hub_class: type, redis_url: str, **settings: Any):
    """A QR-login server whose push hub is ``hub_class(app)`` (a fix of your own), on a free port."""
    from servers.qrlogin.app import make_qrlogin_app
    from servers.qrlogin.push import Fix
    from servers.runtime import serve

    fix = Fix(getattr(hub_class, "name", hub_class.__name__), hub_class)  # the app adds the hub's routes
    return serve(make_qrlogin_app(name, fix, redis_url, **settings))


def start_pair(hub_class: type, redis_url: str, names: Sequence[str] = ("A", "B"), **settings: Any) -> list[Any]:
    """Servers (A and B) with the same hub class on one Redis: a two-server cluster without a balancer."""
    return [start_with_hub(name, hub_class, redis_url, **settings) for name in names]


def login_across(a: Any, b: Any, transport: str = "sse", timeout: float = 3.0) -> dict[str, Any]:
    """The seed's story exactly: the browser on server ``a``, the phone on server ``b``.
    A :func:`~servers.clients.qr.login_once` result (``ok``, ``latency_s``, ``error``, ...)."""
    return runtime.run(login_once_async(getattr(a, "url", a), transport, timeout, phone_url=getattr(b, "url", b)),
                       timeout=timeout + 60)
