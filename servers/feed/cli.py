"""``python -m servers feed --port P --name NAME``: the feed server as a process.

Prints one JSON line when ready - ``{"url", "name", "publish", "poll", "longpoll", "sse", "ws",
"stomp", "pages", "pid"}`` - and runs until SIGINT or SIGTERM.
"""
from __future__ import annotations

import argparse
import os

from servers.cli import run_until_signal

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one; the default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--name", default="feed", help="server name, sent as X-Served-By")
    parser.add_argument("--buffer-size", type=int, default=1000, help="events kept for replay (default 1000)")


def main(args: argparse.Namespace) -> int:
    from servers.feed.app import make_feed_app, urls
    from servers.runtime import serve

    if args.buffer_size < 1:
        raise SystemExit("--buffer-size must be at least 1")
    handles = []

    def start() -> dict:
        handle = serve(make_feed_app(name=args.name, buffer_size=args.buffer_size), host=args.host, port=args.port)
        handles.append(handle)
        return {**urls(handle.url), "name": handle.name, "pid": os.getpid()}

    def stop() -> None:
        for handle in handles:
            handle.stop()

    return run_until_signal(start, stop)
