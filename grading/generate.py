"""``python -m grading generate``: write ``exercises/`` from ``solutions/``, byte for byte the same every time.

The solutions are the one source; the exercises are derived, never edited by hand. ``--check``
writes nothing and exits non-zero when ``exercises/`` differs from what would be generated (a
test runs it, so the two cannot drift apart).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from grading import nbgrader_compat
from grading.notebook import read_notebook

__all__ = ["render", "generate", "add_arguments", "main"]


def render(source_path: Path) -> str:
    """The exercise notebook's text for one source notebook (deterministic)."""
    nb = nbgrader_compat.release_version(read_notebook(source_path))
    return nbformat.writes(nb, version=4) + "\n"


def generate(solutions: Path, exercises: Path, *, check: bool = False) -> list[str]:
    """Write (or with ``check`` only compare) every exercise; returns the names that changed."""
    changed: list[str] = []
    sources = sorted(solutions.glob("*.ipynb"))
    wanted = {p.name for p in sources}
    for source in sources:
        target = exercises / source.name
        try:
            text = render(source)
        except Exception as exc:
            raise RuntimeError(f"{source.name}: {exc}") from exc
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(source.name)
            if not check:
                exercises.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    for stale in sorted(exercises.glob("*.ipynb")) if exercises.exists() else []:
        if stale.name not in wanted:
            changed.append(stale.name)
            if not check:
                stale.unlink()
    return changed


def add_arguments(parser) -> None:
    parser.add_argument("--solutions", type=Path, default=None, help="source notebooks (default: solutions/)")
    parser.add_argument("--exercises", type=Path, default=None, help="where to write (default: exercises/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if exercises/ would change")


def main(args) -> int:
    from grading.paths import project_root

    root = project_root()
    solutions = args.solutions or root / "solutions"
    exercises = args.exercises or root / "exercises"
    try:
        changed = generate(solutions, exercises, check=args.check)
    except Exception as exc:  # a broken source: nested or unclosed solution region, bad metadata, bad JSON
        print(f"could not generate exercises from {solutions}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if changed:
            print(f"exercises/ is out of date for: {', '.join(changed)}. Run: python -m grading generate",
                  file=sys.stderr)
            return 1
        print(f"exercises/ matches solutions/ ({len(list(solutions.glob('*.ipynb')))} notebooks)")
        return 0
    print(f"wrote {len(changed)} changed exercise notebook(s)" + (f": {', '.join(changed)}" if changed else ""))
    return 0
