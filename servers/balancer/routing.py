"""The routing log: one row per routing decision, the same columns for both balancers.

A learner reads it to see where each request of a login went ("the browser's stream is on A,
the phone's confirm went to B"). Our balancer appends a row when it decides (the status is filled
in when the backend answers, so an open stream is visible while it is open); nginx writes its
access log when a request *ends*, so an open SSE stream or WebSocket shows up there only after it
closes.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

import pandas as pd

from servers.balancer.policies import route_of, ticket_from

COLUMNS = ["time", "client", "method", "path", "route", "ticket", "backend", "backend_url", "status"]


def record(client: str, method: str, uri: str, backend: str | None, backend_url: str | None,
           status: int | None = None, time: float | None = None) -> dict[str, Any]:
    """One routing decision as a dict with the log's columns."""
    import time as _time

    path, _, query = uri.partition("?")
    return {"time": _time.time() if time is None else time, "client": client, "method": method,
            "path": uri, "route": route_of(path), "ticket": ticket_from(path, query), "backend": backend,
            "backend_url": backend_url, "status": status}


def routing_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The records as a DataFrame with the log's columns (also when there are none).

    ``time`` is a pandas timestamp (UTC); ``status`` is a nullable integer (empty while a request
    is still waiting for its backend's answer).
    """
    frame = pd.DataFrame(list(records), columns=COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["status"] = frame["status"].astype("Int64")
    return frame


def parse_nginx_access_line(line: str, names_by_address: Mapping[str, str]) -> dict[str, Any] | None:
    """One line of our nginx JSON access log (see ``servers.balancer.nginx``) as a record.

    nginx logs when the request ends: ``msec`` is that moment, so the decision time is
    ``msec - request_time``. ``upstream_addr`` may list several addresses if nginx tried more
    than one ("a:1, b:2"); the last is the one that answered. ``-`` or empty means nginx answered
    itself (no backend).
    """
    line = line.strip()
    if not line:
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    upstream = (entry.get("upstream") or "").split(",")[-1].strip()
    upstream = "" if upstream == "-" else upstream
    status = entry.get("status") or ""
    start = float(entry.get("msec") or 0) - float(entry.get("request_time") or 0)
    row = record(entry.get("client", ""), entry.get("method", ""), entry.get("uri", ""),
                 names_by_address.get(upstream, upstream or None),
                 f"http://{upstream}" if upstream else None,
                 int(status) if str(status).isdigit() else None, time=start)
    if entry.get("ticket"):
        row["ticket"] = entry["ticket"]
    return row
