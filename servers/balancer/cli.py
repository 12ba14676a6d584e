"""``python -m servers balancer --port P --policy ... --backend URL [--backend URL ...]``.

A backend is ``URL`` or ``NAME=URL`` (the name shows in the routing log and the sticky cookie).
Prints one JSON line when ready: ``{"url", "kind", "policy", "backends": {name: url}, "pid"}``,
and runs until SIGINT/SIGTERM.
"""
from __future__ import annotations

import os
import sys

from servers import cli


def add_arguments(parser) -> None:
    from servers.balancer.policies import POLICIES

    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--policy", default="round_robin", choices=POLICIES, help="how to pick a backend")
    parser.add_argument("--backend", action="append", required=True, metavar="URL",
                        help="a backend: URL or NAME=URL (repeat for each)")
    parser.add_argument("--kind", default="python", choices=("python", "nginx"), help="ours (python) or real nginx")
    parser.add_argument("--name", default="lb", help="the balancer's name, sent in X-Served-By of its own answers")


def main(args) -> int:
    from servers.balancer import start_balancer

    handles = []

    def start() -> dict:
        lb = start_balancer(args.backend, args.policy, kind=args.kind, name=args.name, host=args.host, port=args.port)
        handles.append(lb)
        return {"url": lb.url, "kind": lb.kind, "policy": lb.policy,
                "backends": {b.name: b.url for b in lb.backends}, "pid": os.getpid()}

    def stop() -> None:
        for lb in handles:
            lb.stop()

    try:
        return cli.run_until_signal(start, stop)
    except (ValueError, RuntimeError) as exc:  # bad input, nginx/Redis missing or not starting: say so
        sys.stderr.write(f"python -m servers balancer: error: {exc}\n")
        return 2
