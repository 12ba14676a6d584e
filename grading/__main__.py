"""``python -m grading generate | check NOTEBOOK | batch SUBMISSIONS_DIR --out OUT_DIR | release OUT``."""
from __future__ import annotations

import argparse
import sys

from grading import batch, check, generate, release


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module, summary in [
        ("generate", generate, "write exercises/ from solutions/ (deterministic; --check compares only)"),
        ("check", check, "self-check one exercise notebook with its visible tests"),
        ("batch", batch, "grade a folder of submissions: gradebook CSV and feedback per student"),
        ("release", release, "write the students' tree: lessons, exercises, the package; no solutions or tests"),
    ]:
        sub = commands.add_parser(name, help=summary, description=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
        sub.set_defaults(main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
