"""Behind a balancer: lesson 07's QR-login bug, measured per transport for lesson 06's comparison.

The usual comparison table calls polling and SSE "compatible" with a load balancer and WebSocket
not; this measures that row instead of repeating it, with lesson 07's random users
(:func:`lab.lessons.qr_bug.traffic`) on a round-robin cluster without a fix.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd


def behind_balancer(transports: Sequence[str] = ("poll", "longpoll", "sse", "ws"), logins: int = 12,
                    n_servers: int = 2, seed: int = 6, wait_s: float = 1.0) -> pd.DataFrame:
    """QR logins through ``n_servers`` app servers behind a round-robin balancer, no fix.

    One row per transport: logins, how many completed, the success rate and the theory 1/N for
    a push channel that stays on one server (lesson 07 explains why).
    """
    from servers.cluster import start_cluster
    from lab.lessons.qr_bug import theory, traffic

    rows = []
    with start_cluster(n_servers, "round_robin", name="comparison-cluster") as cluster:
        for i, transport in enumerate(transports):
            frame = traffic(cluster, transport, logins, seed=seed + i, wait_s=wait_s,
                            **({"poll_interval": 0.05} if transport == "poll" else {}))
            rows.append({"transport": transport, "logins": len(frame), "completed": int(frame.ok.sum()),
                         "success_rate": float(frame.ok.mean()), "theory_if_stuck_to_one_server": theory(n_servers)})
    return pd.DataFrame(rows)
