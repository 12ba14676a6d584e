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
from typing import Any, Iterator

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


def _events_of(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if body.get("missed"):
        yield {"type": "gap", "missed": body["missed"], "received_at": time.time()}
    yield from body["events"]


def iter_poll(server: Any, interval: float = 1.0, after: int = 0, max_events: int | None = None,
              duration: float | None = None) -> Iterator[dict[str, Any]]:
    """Short-poll every ``interval`` s and yield each new event (stops after ``max_events`` or ``duration`` s)."""
    deadline = None if duration is None else time.monotonic() + duration
    count = 0
    with requests.Session() as session:
        while deadline is None or time.monotonic() < deadline:
            for item in _events_of(poll(server, after, session)):
                if "seq" in item:
                    after = item["seq"]
                    count += 1
                yield item
                if max_events is not None and count >= max_events:
                    return
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))


def iter_longpoll(server: Any, after: int = 0, timeout: float = 30, max_events: int | None = None,
                  duration: float | None = None) -> Iterator[dict[str, Any]]:
    """Long-poll in a loop, re-asking at once after each answer, and yield each new event."""
    deadline = None if duration is None else time.monotonic() + duration
    count = 0
    with requests.Session() as session:
        while deadline is None or time.monotonic() < deadline:
            wait = timeout if deadline is None else max(0.0, min(timeout, deadline - time.monotonic()))
            for item in _events_of(longpoll(server, after, wait, session)):
                if "seq" in item:
                    after = item["seq"]
                    count += 1
                yield item
                if max_events is not None and count >= max_events:
                    return


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
