"""``python -m servers cluster --port P --servers N --policy ... --fix ... --balancer python|nginx [--redis URL] [--hardened]``.

The app servers are separate processes (``python -m servers qrlogin``); ``--port`` is the
balancer's. Prints one JSON line when ready: ``{"url": <the balancer's URL>, "servers": {name:
url}, "redis": url, "balancer", "policy", "fix", "pids": {name: pid}, "pid"}``. On SIGINT/SIGTERM
it stops its children (servers, nginx, the Redis it started) before it exits.
"""
from __future__ import annotations

import os
import sys

from servers import cli


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a cluster needs at least 1 server")
    return value


def add_arguments(parser) -> None:
    from servers.balancer.policies import POLICIES

    try:
        from servers.qrlogin.fixes import FIXES

        fixes = sorted(FIXES)
    except ImportError:  # pragma: no cover - the QR app is missing
        fixes = None
    parser.add_argument("--port", type=int, default=0, help="the balancer's port (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (balancer and servers)")
    parser.add_argument("--servers", type=_positive, default=2, metavar="N", help="how many QR-login servers")
    parser.add_argument("--policy", default=None, choices=POLICIES,
                        help="balancer policy (default: round_robin; ticket_hash with --fix ticket_hash)")
    parser.add_argument("--fix", default="none", choices=fixes, help="the fix the servers run")
    parser.add_argument("--balancer", default="python", choices=("python", "nginx"), help="ours or real nginx")
    parser.add_argument("--redis", default=None, metavar="URL", help="shared Redis (default: REDIS_URL or start one)")
    parser.add_argument("--ticket-ttl", type=float, default=120, help="seconds a ticket stays valid")
    parser.add_argument("--hardened", action="store_true",
                        help="every server with the limits for a network: login throttling, cluster-wide budgets")


def main(args) -> int:
    from servers.cluster import start_cluster

    clusters = []

    def start() -> dict:
        cluster = start_cluster(args.servers, args.policy, fix=args.fix, balancer=args.balancer,
                                redis_url=args.redis, processes=True, host=args.host, port=args.port,
                                ticket_ttl=args.ticket_ttl, hardened=args.hardened)
        clusters.append(cluster)
        return {"url": cluster.url, "servers": {n: s.url for n, s in cluster.servers.items()},
                "redis": cluster.redis_url, "balancer": args.balancer, "policy": cluster.policy, "fix": args.fix,
                "pids": {n: s.pid for n, s in cluster.servers.items()}, "pid": os.getpid()}

    def stop() -> None:
        for cluster in clusters:
            cluster.stop()

    try:
        return cli.run_until_signal(start, stop)
    except (ValueError, RuntimeError) as exc:  # bad input, nginx/Redis missing or not starting: say so
        sys.stderr.write(f"python -m servers cluster: error: {exc}\n")
        return 2
