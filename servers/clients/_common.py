"""Small helpers the feed clients share: base URLs and arrival time stamps."""
from __future__ import annotations

import json
import time
from typing import Any


def base_url(server: Any) -> str:
    """``http://host:port`` from a URL string or anything with a ``url`` (a ServerHandle)."""
    url = getattr(server, "url", server)
    if not isinstance(url, str):
        raise TypeError(f"expected a base URL or a server handle, got {server!r}")
    return url.rstrip("/")


def ws_url(server: Any, path: str) -> str:
    url = base_url(server)
    if url.startswith("http"):
        url = "ws" + url[len("http"):]
    return url + path


def stamp(message: dict[str, Any], received_at: float | None = None) -> dict[str, Any]:
    """Add ``received_at`` (time.time() on arrival) to a received event or notice."""
    message["received_at"] = time.time() if received_at is None else received_at
    return message


def stamp_body(body: dict[str, Any]) -> dict[str, Any]:
    """Stamp every event of an HTTP ``{"events": [...]}`` answer with the same arrival time."""
    now = time.time()
    for event in body.get("events", []):
        event["received_at"] = now
    return body


def decode_json_message(text: str | bytes) -> dict[str, Any]:
    message = json.loads(text)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object from the server, got {text!r}")
    return message


def wait_until(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Return once ``condition()`` is true, checking every 5 ms; ``TimeoutError`` after ``timeout`` s.

    For waiting on *server state* from a cell or a test (``feed.call(lambda app: app.waiter_count) == 1``)
    instead of sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.005)
