"""Publishing, short polling and long polling, sync (``requests``) and async (Tornado).

Answers are the server's JSON, ``{"events": [...], "missed"?: {"from", "to"}}``, with every
event stamped ``received_at``. The loops (``iter_poll``, ``iter_longpoll``) keep the cursor
(the last seq seen) so nothing is lost between requests, and yield a ``{"type": "gap",
"missed": ...}`` notice when the server says events fell out of its buffer.
"""
from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any, Callable, Iterator

import requests
import tornado.httpclient

from servers.clients._common import base_url, stamp_body

__all__ = ["publish", "poll", "longpoll", "iter_poll", "iter_longpoll", "apublish", "apoll", "alongpoll"]


def _check(response: requests.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.url} -> {response.status_code}: {response.text}")
    return response.json()


def publish(server: Any, data: Any, session: requests.Session | None = None) -> int:
    """POST /feed/publish; returns the new event's seq."""
    http = session or requests
    return _check(http.post(base_url(server) + "/feed/publish", json={"data": data}, timeout=10))["seq"]


def poll(server: Any, after: int = 0, session: requests.Session | None = None) -> dict[str, Any]:
    """GET /feed/poll?after=N: what is buffered after N, at once."""
    http = session or requests
    return stamp_body(_check(http.get(base_url(server) + "/feed/poll", params={"after": after}, timeout=10)))


def longpoll(server: Any, after: int = 0, timeout: float = 30, session: requests.Session | None = None) -> dict[str, Any]:
    """GET /feed/longpoll?after=N&timeout=S: held until an event after N exists, or S seconds."""
    http = session or requests
    return stamp_body(_check(http.get(base_url(server) + "/feed/longpoll", params={"after": after, "timeout": timeout},
                                      timeout=timeout + 10)))


def _follow(ask: Callable[[requests.Session, int, float | None], dict[str, Any]], after: int,
            max_events: int | None, duration: float | None, pause: float,
            stats: dict[str, int] | None) -> Iterator[dict[str, Any]]:
    """The loop both pollers share: ask after the cursor, yield what came, move the cursor."""
    deadline = None if duration is None else time.monotonic() + duration
    stats = {} if stats is None else stats
    stats.update(requests=0, empty=0)
    count = 0
    with requests.Session() as session:
        while deadline is None or time.monotonic() < deadline:
            body = ask(session, after, None if deadline is None else max(0.0, deadline - time.monotonic()))
            stats["requests"] += 1
            stats["empty"] += not body["events"]
            if body.get("missed"):
                yield {"type": "gap", "missed": body["missed"], "received_at": time.time()}
            for event in body["events"]:
                after = event["seq"]
                count += 1
                yield event
                if max_events is not None and count >= max_events:
                    return
            if pause:
                time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))


def iter_poll(server: Any, interval: float = 1.0, after: int = 0, max_events: int | None = None,
              duration: float | None = None, stats: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Short-poll every ``interval`` s and yield each new event, stopping after ``max_events``
    events or ``duration`` s. Pass a dict as ``stats`` to have it count ``requests`` and ``empty``
    answers (the wasted ones) as it goes.
    """
    return _follow(lambda session, cursor, _left: poll(server, cursor, session), after, max_events, duration,
                   interval, stats)


def iter_longpoll(server: Any, after: int = 0, timeout: float = 30, max_events: int | None = None,
                  duration: float | None = None, stats: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Long-poll in a loop, re-asking at once after each answer, and yield each new event
    (``stats`` as for :func:`iter_poll`; here an empty answer is a long poll that timed out).
    """
    def ask(session: requests.Session, cursor: int, left: float | None) -> dict[str, Any]:
        return longpoll(server, cursor, timeout if left is None else min(timeout, left), session)

    return _follow(ask, after, max_events, duration, 0.0, stats)


# --- async: for many clients at once (await from a cell, or run on the server loop) ----------

_clients: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _client() -> tornado.httpclient.AsyncHTTPClient:
    """One HTTP client per event loop, allowed many parallel requests.

    Tornado's shared client runs at most 10 requests at once and queues the rest, which would
    turn 100 concurrent long polls into 10 - wrong for a measurement.
    """
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=10000)
    return client


async def _afetch(url: str, method: str = "GET", body: Any = None, timeout: float = 30) -> dict[str, Any]:
    client = _client()
    request = tornado.httpclient.HTTPRequest(
        url, method=method, body=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json"} if body is not None else None,
        request_timeout=timeout, connect_timeout=10)
    response = await client.fetch(request, raise_error=False)
    if response.code >= 400 or response.code == 599:
        raise RuntimeError(f"{method} {url} -> {response.code}: {response.body!r}")
    return json.loads(response.body)


async def apublish(server: Any, data: Any) -> int:
    """Async POST /feed/publish; returns the seq."""
    return (await _afetch(base_url(server) + "/feed/publish", "POST", {"data": data}))["seq"]


async def apoll(server: Any, after: int = 0) -> dict[str, Any]:
    return stamp_body(await _afetch(f"{base_url(server)}/feed/poll?after={int(after)}"))


async def alongpoll(server: Any, after: int = 0, timeout: float = 30) -> dict[str, Any]:
    url = f"{base_url(server)}/feed/longpoll?after={int(after)}&timeout={timeout}"
    return stamp_body(await _afetch(url, timeout=timeout + 10))
