"""Does each fix work? Random users per fix × balancer × transport; every login must complete.

The same traffic as lesson 07's bug (:func:`~lab.lessons.qr_bug.traffic`), now with a fix
switched on: where lesson 07 measured about 1/N, each fix must reach 100 %, behind our balancer
and behind nginx, for every transport.
"""
from __future__ import annotations

import asyncio
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.lessons import qr_bug
from lab.lessons.fixes.catalogue import FIXES
from lab.lessons.fixes.clusters import start_fix_cluster
from servers import runtime
from servers.clients.qr import TRANSPORTS


def success_matrix(fixes: Iterable[str] = FIXES, balancers: Sequence[str] = ("python", "nginx"),
                   transports: Sequence[str] = TRANSPORTS, logins: int = 8, *, n: int = 2, seed: int = 8,
                   wait_s: float = 3.0, think_s: float = 0.2, arrivals_per_s: float = 100.0,
                   progress: bool = False) -> pd.DataFrame:
    """One row per login: ``fix``, ``balancer``, ``transport``, ``ok``, ``latency_s``, ``channel_on``,
    ``confirm_on``, ``error``. Per fix and balancer one fresh cluster of ``n`` servers; the
    transports' users arrive at the same time (as on a real site, where pages differ).

    ``wait_s`` is generous on purpose: in the steady state a fix must deliver every login, and a
    busy laptop must not turn a slow delivery into a "failure".
    """
    frames = []
    for fix in fixes:
        for kind in balancers:
            with start_fix_cluster(fix, n, kind) as cluster:

                async def all_transports() -> list[list[dict[str, Any]]]:
                    return list(await asyncio.gather(*(
                        qr_bug.traffic_async(cluster.url, transport, logins, seed=seed + i, wait_s=wait_s,
                                             think_s=think_s, arrivals_per_s=arrivals_per_s)
                        for i, transport in enumerate(transports))))

                runs = runtime.run(all_transports(), timeout=logins * (wait_s + 2) + 60)
                frame = pd.DataFrame([row for rows in runs for row in rows])
                # A long poll's channel_on is the server that answered last; the one holding the poll
                # when the confirm came is in the routing log (lesson 07's helper reads it).
                frame = qr_bug._fill_held_channels(frame, cluster)
                frames.append(frame.assign(fix=fix, balancer=kind, n_servers=n))
            if progress:
                done = frames[-1]
                print(f"{fix:>11} behind {kind:<6}: {done['ok'].mean():.0%} of {len(done)} logins", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    frame["ok"] = frame["ok"].astype(bool)
    return frame[["fix", "balancer", "transport", "n_servers", "ok", "latency_s", "channel_on", "confirm_on",
                  "error", "ticket"]]


def success_table(frame: pd.DataFrame, by: Sequence[str] = ("fix", "balancer", "transport")) -> pd.DataFrame:
    """Per group: ``logins``, ``succeeded``, ``success_pct``."""
    table = frame.groupby(list(by), sort=False)["ok"].agg(logins="count", succeeded="sum").reset_index()
    table["success_pct"] = (100 * table["succeeded"] / table["logins"]).round(1)
    return table
