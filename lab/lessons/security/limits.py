"""What the app refuses: an oversized WebSocket message and a burst of calls, sent for real.

Lesson 10 shows the app's limits from the client's side: how an oversized message is closed
(the close code and reason) and at which call a burst is refused (status, error and
``Retry-After``).
"""
from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import tornado.httpclient
import tornado.websocket

from servers import runtime


async def send_oversized_message_async(ws_url: str, size: int, origin: str | None = None,
                                       timeout: float = 10.0) -> dict[str, Any]:
    """Open ``ws_url``, read its first message, send ``size`` bytes of text; how did it end?"""
    headers = {"Origin": origin} if origin else {}
    conn = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(ws_url, headers=headers),
                                                     max_message_size=size + 1024)
    await asyncio.wait_for(conn.read_message(), timeout)
    await conn.write_message("x" * size)
    while await asyncio.wait_for(conn.read_message(), timeout) is not None:
        pass
    return {"sent_bytes": size, "close_code": conn.close_code, "close_reason": conn.close_reason}


def send_oversized_message(ws_url: str, size: int, origin: str | None = None) -> dict[str, Any]:
    """:func:`send_oversized_message_async`, blocking (for a cell)."""
    return runtime.run(send_oversized_message_async(ws_url, size, origin), timeout=30)


def burst_of_calls(url: str, path: str, body: dict[str, Any], n: int, headers: dict[str, str] | None = None,
                   timeout: float = 10.0) -> pd.DataFrame:
    """``n`` POSTs as fast as one client can send them (one after another); one row per call."""
    import requests

    rows = []
    with requests.Session() as session:
        for i in range(n):
            response = session.post(url + path, json=body, headers=headers or {}, timeout=timeout)
            try:
                error = response.json().get("error")
            except ValueError:
                error = None
            rows.append({"call": i + 1, "status": response.status_code, "error": error,
                         "retry_after_s": response.headers.get("Retry-After")})
    return pd.DataFrame(rows)
