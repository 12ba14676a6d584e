"""``python -m servers feed|qrlogin|balancer|cluster|gateway ...``: the servers outside Jupyter.

Each sub-command lives in its own module, imported only when used, that provides
``add_arguments(parser)`` and ``main(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "feed": ("servers.feed.cli", "the feed server: one event stream by every push technique"),
    "qrlogin": ("servers.qrlogin.cli", "the QR-login app server"),
    "balancer": ("servers.balancer.cli", "a load balancer in front of backends"),
    "cluster": ("servers.cluster.cli", "N QR-login servers (processes) behind a balancer"),
    "gateway": ("servers.qrlogin.fixes.gateway_tier", "the push tier of the gateway fix"),
}


def main(argv: list[str] | None = None) -> int:
    from servers import lifeline

    lifeline.watch_parent()  # started by servers.process: stop when the parent is gone, even if killed
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m servers", description="Run the Server Push Lab servers outside Jupyter.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        if name == chosen:  # import only the command in use: start-up stays fast
            importlib.import_module(module).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return importlib.import_module(COMMANDS[args.command][0]).main(args)


if __name__ == "__main__":
    sys.exit(main())
