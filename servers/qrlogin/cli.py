"""``python -m servers qrlogin --port 0 --name A [--fix none] [--redis URL] [--hardened]``: one QR-login server.

``--trusted-proxy ADDR`` (repeatable) names a balancer in front whose ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed (``servers.limits``: the limits count, and the confirm page
shows, that address; from anyone else both headers are ignored).

``--hardened`` is for a server that faces a network (a phone on the LAN): the limits of
``servers.limits.HARDENED_LIMITS``, among them login throttling - password attempts, ticket
creations and unknown ticket ids per address, counted in Redis for every server that shares it.
Without it the limits are the generous defaults the lessons and benchmarks need.

Prints one JSON line when ready: ``{"url", "name", "fix", "redis", "pid"}``. Without ``--redis``
(and no ``REDIS_URL``) it starts its own Redis, which only suits a single server: a cluster of
processes must share one ``--redis URL``.
"""
from __future__ import annotations

import os

from servers import cli


def add_arguments(parser) -> None:
    from servers.qrlogin.fixes import FIXES

    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 lets a phone on the LAN in)")
    parser.add_argument("--name", default="qr", help="server name, sent in X-Served-By")
    parser.add_argument("--fix", default="none", choices=sorted(FIXES), help="how state changes reach push channels")
    parser.add_argument("--redis", default=None, metavar="URL", help="shared Redis (default: REDIS_URL or start one)")
    parser.add_argument("--public-url", default=None, metavar="URL",
                        help="base URL the QR code points phones at (default: the address the browser used)")
    parser.add_argument("--ticket-ttl", type=float, default=120, help="seconds a ticket stays valid")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                        help="a balancer's address or network whose X-Forwarded-For/-Proto are believed "
                             "(repeatable; default: none, the peer address is the client's)")
    parser.add_argument("--hardened", action="store_true",
                        help="limits for a server on a network: login throttling and servers.limits.HARDENED_LIMITS "
                             "(password attempts, tickets and unknown ticket ids per address, cluster-wide)")


def main(args) -> int:
    from servers.limits import HARDENED_LIMITS, trusted_proxy_list
    from servers.qrlogin.app import make_qrlogin_app
    from servers.runtime import serve, stop_all

    try:
        trusted = trusted_proxy_list(args.trusted_proxy)
    except ValueError as exc:
        raise SystemExit(f"--trusted-proxy: {exc}") from None

    def start() -> dict:
        app = make_qrlogin_app(args.name, fix=args.fix, redis_url=args.redis, public_url=args.public_url,
                               ticket_ttl=args.ticket_ttl, trusted_proxies=trusted,
                               **(HARDENED_LIMITS if args.hardened else {}))
        handle = serve(app, host=args.host, port=args.port)
        return {"url": handle.url, "name": handle.name, "fix": args.fix, "redis": app.redis_url, "pid": os.getpid(),
                "hardened": bool(args.hardened)}

    return cli.run_until_signal(start, stop_all)

