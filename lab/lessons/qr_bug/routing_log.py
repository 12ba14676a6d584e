"""Reading the balancer's routing log: where one login's requests went, and which clients stuck to a server.

The bug is invisible in any one server's log; the balancer's log shows it, once each row is
labelled browser or phone (:func:`~lab.lessons.qr_bug.addresses.who`). These tables are the
lesson's evidence that the browser's channel and the phone's confirm went apart, and that a
sticky policy pins each *client*, not each *login*. :func:`timeline` puts one login on one clock:
the routing log (when each request was routed, and where), the browser's channel (when each event
arrived) and the confirm's answer (when server B had published, to nobody), so the hang shows as
what it is - silence on the browser's channel after the confirm.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from lab.lessons.qr_bug.addresses import who


def login_trace(log: pd.DataFrame, ticket: str, with_time: bool = False) -> pd.DataFrame:
    """Where each step of one login went: the rows of ``log`` about ``ticket``, plus the requests
    that name no ticket yet (the browser's login page and ticket creation just before, the phone's
    login just before its scan), in time order, with ``who`` (browser/phone) first.

    Meant for a quiet cluster (one login by hand): with many users at once, the nearest
    ticketless request may be another user's. ``with_time`` keeps the routing time (first column).
    """
    labelled = log.assign(who=log["client"].map(who))
    about = labelled[labelled["ticket"] == ticket]
    parts = [about]
    if not about.empty:
        first, scans = about["time"].min(), about[about["route"] == "/api/tickets/{id}/scan"]
        for route, by, before in [("/login", "browser", first), ("/api/tickets", "browser", first),
                                  ("/api/phone/login", "phone", scans["time"].min() if not scans.empty else None)]:
            if before is None:
                continue
            earlier = labelled[(labelled["route"] == route) & (labelled["who"] == by) & (labelled["time"] <= before)]
            parts.append(earlier.sort_values("time").tail(1))
    rows = pd.concat(parts).sort_values("time", kind="stable")
    columns = ["who", "method", "route", "backend", "status"]
    return rows[(["time"] if with_time else []) + columns].reset_index(drop=True)


def browser_and_phone(log: pd.DataFrame) -> pd.DataFrame:
    """One row per ticket (one user's login): the servers its browser's requests went to, the
    servers its phone's requests went to, and ``apart`` (True when the two sets do not meet)."""
    rows = log.dropna(subset=["ticket"]).assign(who=lambda f: f["client"].map(who))
    table = rows.groupby(["ticket", "who"])["backend"].agg(lambda s: ", ".join(sorted(set(s.dropna()))))
    table = table.unstack("who").reindex(columns=["browser", "phone"]).fillna("")
    table["apart"] = [not (set(b.split(", ")) & set(p.split(", "))) for b, p in zip(table["browser"], table["phone"])]
    return table.reset_index()


def pinning(log: pd.DataFrame) -> pd.DataFrame:
    """Per kind of client (browser, phone): how many clients, how many of them had every request
    sent to one server (``pinned``), and that as a share in percent."""
    per_client = log.assign(who=log["client"].map(who)).groupby(["who", "client"])["backend"].nunique()
    table = per_client.groupby("who").agg(clients="size", pinned=lambda s: int((s == 1).sum()))
    table["pinned_pct"] = (100 * table["pinned"] / table["clients"]).round(1)
    return table.reset_index()


def clients_and_servers(log: pd.DataFrame) -> pd.DataFrame:
    """One row per client (browser, phone): how many requests, and the servers they were sent to."""
    frame = log.assign(who=log["client"].map(who))
    table = frame.groupby("who").agg(requests=("backend", "size"),
                                     servers=("backend", lambda s: ", ".join(sorted(set(s.dropna())))))
    return table.reset_index()


_STEPS = {"/login": "opens the login page", "/api/tickets": "creates the ticket (the QR code)",
          "/api/tickets/{id}/events": "opens its SSE channel (held open)",
          "/api/tickets/{id}/ws": "opens its WebSocket (held open)",
          "/api/tickets/{id}/longpoll": "sends a long poll (held)", "/api/tickets/{id}": "polls the state",
          "/api/phone/login": "logs in (bearer token)", "/api/tickets/{id}/scan": "scans the QR code",
          "/api/tickets/{id}/confirm": "confirms the login", "/api/tickets/{id}/redeem": "redeems the ticket"}


def timeline(trace: pd.DataFrame, channel_events: Sequence[dict[str, Any]], *, confirm_answered_at: float,
             confirm_server: str, undelivered: int, waited_until: float) -> pd.DataFrame:
    """One login on one clock: ``t_ms`` from the first request, ``who``, ``where`` (the server) and
    ``what``. ``trace`` is :func:`~lab.lessons.qr_bug.login_trace` *with* its ``time`` column
    (``with_time=True``); ``channel_events`` the events the browser's channel received (each with
    ``received_at``, seconds since the epoch); ``confirm_answered_at`` when the phone had B's answer,
    ``undelivered`` B's count of changes it published to no channel of its own, ``waited_until``
    when the browser stopped waiting."""
    rows = [{"at": row.time.timestamp(), "who": row.who, "where": row.backend,
             "what": f"{row.who} {_STEPS.get(row.route, row.route)}"} for row in trace.itertuples()]
    for event in channel_events:
        rows.append({"at": float(event["received_at"]), "who": "browser", "where": "(its channel)",
                     "what": f"browser's channel receives '{event['state']}' (version {event['version']})"})
    rows.append({"at": confirm_answered_at, "who": "server", "where": confirm_server,
                 "what": f"{confirm_server} stored 'confirmed' in Redis and published it to its own channels "
                         f"for the ticket: none ({undelivered} change(s) published to nobody)"})
    rows.append({"at": waited_until, "who": "browser", "where": "(its channel)",
                 "what": "browser gives up: nothing more arrived"})
    frame = pd.DataFrame(rows).sort_values("at", kind="stable").reset_index(drop=True)
    frame.insert(0, "t_ms", (1000 * (frame["at"] - frame["at"].min())).round(1))
    return frame.drop(columns="at")
