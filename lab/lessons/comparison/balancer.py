"""Behind a balancer: lesson 07's QR-login bug, measured per transport, and the proxy settings each
technique needs, read from the nginx configuration our balancer really generates.

The usual comparison table calls polling and SSE "compatible" with a load balancer and WebSocket
not; :func:`behind_balancer` measures that row instead of repeating it, with lesson 07's random
users (:func:`lab.lessons.qr_bug.traffic`) on a round-robin cluster without a fix, one run per
transport (mixed in one run, a loaded laptop misses the 1 s patience even on one server), each
success rate with its 95 % Wilson interval (:func:`wilson_interval`). :func:`proxy_directives` lists the lines of the generated
``nginx.conf`` (:func:`servers.balancer.nginx.render_config`) that push needs, so the lesson shows
the real configuration rather than a claim about it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pandas as pd


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for the default ``z``), as ``(low, high)``.

    Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not zero-width at 0 % or 100 %.
    """
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def behind_balancer(transports: Sequence[str] = ("poll", "longpoll", "sse", "ws"), logins: int = 12,
                    n_servers: int = 2, seed: int = 6, wait_s: float = 1.0) -> pd.DataFrame:
    """QR logins through ``n_servers`` app servers behind a round-robin balancer, no fix.

    ``logins`` per transport, one run per transport. One row per transport: logins, how many completed, the success rate, its 95 % Wilson interval
    (``ci_low``, ``ci_high``) and the theory 1/N for a push channel that stays on one server
    (lesson 07 explains why).
    """
    from lab.lessons.qr_bug import theory, traffic
    from servers.cluster import start_cluster

    rows = []
    with start_cluster(n_servers, "round_robin", name="comparison-cluster") as cluster:
        frames = {transport: traffic(cluster, transport, logins, seed=seed + i, wait_s=wait_s,
                                     **({"poll_interval": 0.05} if transport == "poll" else {}))
                  for i, transport in enumerate(transports)}
    for transport, mine in frames.items():
        completed = int(mine.ok.sum())
        low, high = wilson_interval(completed, len(mine))
        rows.append({"transport": transport, "logins": len(mine), "completed": completed,
                     "success_rate": completed / len(mine) if len(mine) else float("nan"),
                     "ci_low": low, "ci_high": high, "theory_if_stuck_to_one_server": theory(n_servers)})
    return pd.DataFrame(rows)


#: The directives of a proxied location that push depends on, and which technique needs each.
PUSH_DIRECTIVES = {
    "proxy_http_version": ("WebSocket, STOMP", "the Upgrade handshake is HTTP/1.1 (RFC 6455 §4.1)"),
    "proxy_set_header Upgrade": ("WebSocket, STOMP", "Upgrade is hop-by-hop: a proxy passes it on only when told"),
    "proxy_set_header Connection": ("WebSocket, STOMP", ("Connection is hop-by-hop too; 'upgrade' only if the "
                                                          "client asked ($connection_upgrade)")),
    "proxy_buffering": ("SSE, long polling", "with buffering on, nginx may hold a streamed event in its buffer"),
    "proxy_read_timeout": ("long polling, SSE, WebSocket, STOMP", "a quiet held connection is closed after it"),
}


def proxy_directives(policy: str = "round_robin") -> pd.DataFrame:
    """The push-related lines of the nginx.conf our balancer generates (its ``location /``), and the
    ``map`` that sets ``$connection_upgrade``; one row per line: ``directive``, ``line``, ``needed_by``, ``why``."""
    from servers.balancer.backends import as_backend
    from servers.balancer.nginx import render_config

    config = render_config([as_backend("A=http://127.0.0.1:8001"), as_backend("B=http://127.0.0.1:8002")],
                           policy, directory="nginx-dir", host="127.0.0.1", port=8080)
    location = config[config.index("location / {"):]
    location = location[:location.index("}")]
    rows = []
    for line in location.splitlines():
        line = line.split("#")[0].strip()
        for directive, (needed_by, why) in PUSH_DIRECTIVES.items():
            if re.match(re.escape(directive) + r"\b", line):
                rows.append({"directive": directive, "line": line, "needed_by": needed_by, "why": why})
    mapping = re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*\}", config)
    if mapping:
        rows.append({"directive": "map $http_upgrade $connection_upgrade",
                     "line": " ".join(mapping.group(0).split()), "needed_by": "WebSocket, STOMP",
                     "why": "Connection: upgrade when the client sent Upgrade, else close"})
    return pd.DataFrame(rows, columns=["directive", "line", "needed_by", "why"])
