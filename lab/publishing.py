"""Publish events on a feed at random moments, in the background, while a cell watches a client.

Why random moments: a client that polls every ``I`` seconds sees an event ``I/2`` late on
average only if events do not line up with its polls, i.e. if they happen at moments the client
cannot predict. Why *stratified* random: the run is cut into ``count`` equal slots and each slot
gets one event at a uniformly random moment inside it. Each event is still unpredictable, but
the events cover the run evenly, so a short run gives a mean close to the theory every time
(a few dozen purely independent moments can bunch up by chance).

The publisher runs on the shared server loop (where the feed lives), so a cell can block on a
client (``requests``, ``SSEStream``) while events keep coming.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
from typing import Any

from servers import runtime

__all__ = ["random_moments", "publish_at_random_times", "wait_published", "payload"]


def random_moments(count: int, duration: float, seed: int | None = None) -> list[float]:
    """``count`` moments in ``[0, duration)`` seconds: one at a random place in each equal slot."""
    if count < 1 or duration <= 0:
        raise ValueError("count must be at least 1 and duration positive")
    rng = random.Random(seed)
    slot = duration / count
    return [(k + rng.random()) * slot for k in range(count)]


def payload(size: int, seq_hint: int = 0) -> str:
    """A text payload of exactly ``size`` characters (ASCII), to make events of a chosen size."""
    text = f"event {seq_hint} "
    return (text * (size // len(text) + 1))[:size]


def publish_at_random_times(feed: Any, count: int, duration: float, *, seed: int | None = None,
                            data: Any = None, start_delay: float = 0.0) -> concurrent.futures.Future:
    """Start publishing ``count`` events on ``feed`` (a feed handle) over ``duration`` seconds.

    Returns at once with a future; ``future.result()`` is the list of published events
    (``seq``, ``data``, ``sent_at``) once the last one is out. ``data`` is a function of the
    event's index (default: ``{"n": i}``). Publishing starts ``start_delay`` s from now.
    """
    moments = random_moments(count, duration, seed)
    make = data if callable(data) else (lambda i: {"n": i})
    app = feed.app

    async def run() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        start = loop.time() + start_delay
        published = []
        for i, moment in enumerate(moments):
            delay = start + moment - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            published.append(app.publish(make(i)))
        return published

    return asyncio.run_coroutine_threadsafe(run(), runtime.server_loop())


def wait_published(future: concurrent.futures.Future, timeout: float = 60) -> list[dict[str, Any]]:
    """The events a :func:`publish_at_random_times` run published (blocks until it is done)."""
    started = time.monotonic()
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"publishing did not finish within {time.monotonic() - started:.0f} s") from None
