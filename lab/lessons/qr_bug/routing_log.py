"""Reading the balancer's routing log: where one login's requests went, and which clients stuck to a server.

The bug is invisible in any one server's log; the balancer's log shows it, once each row is
labelled browser or phone (:func:`~lab.lessons.qr_bug.addresses.who`). These tables are the
lesson's evidence that the browser's channel and the phone's confirm went apart, and that a
sticky policy pins each *client*, not each *login*.
"""
from __future__ import annotations

import pandas as pd

from lab.lessons.qr_bug.addresses import who


def login_trace(log: pd.DataFrame, ticket: str) -> pd.DataFrame:
    """Where each step of one login went: the rows of ``log`` about ``ticket``, plus the requests
    that name no ticket yet (the browser's login page and ticket creation just before, the phone's
    login just before its scan), in time order, with ``who`` (browser/phone) first.

    Meant for a quiet cluster (one login by hand): with many users at once, the nearest
    ticketless request may be another user's.
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
    return rows[["who", "method", "route", "backend", "status"]].reset_index(drop=True)


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
