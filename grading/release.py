"""``python -m grading release OUT``: the tree students get, and nothing that grades them.

The instructor's checkout holds what a graded class must not see: ``solutions/`` (every answer
and the hidden tests), ``tests/`` (its known right and wrong answers are answers too, and the
sample class), the CI set-up and the teaching notes. A release is a copy of the rest, with the
exercises generated afresh from the solutions (so they cannot be stale) and a pristine copy of
each in ``grading/sources/``, which the self-check (``python -m grading check``) uses as the
source when ``solutions/`` is absent: a learner who edits or deletes a visible test is still
checked against it.

``--nbgrader`` also lays the exercises out as nbgrader's ``release_assignment`` expects
(``release/<assignment>/<notebook>.ipynb``), for courses that hand work out through nbgrader.

Before it finishes, the release is searched for the region markers of solutions, hidden tests and
mark schemes, and every copy of an exercise for the lines of its source's solutions and hidden
tests; one found is an error, and the release is removed. (The package may well contain code
like a solution's: lesson 04 teaches ``accept_key`` from ``servers/wire/websocket.py``, and the
exercise asks the learner to write it. What must not ship is the exercise's own answer.)
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grading.generate import render
from grading.notebook import read_notebook

__all__ = ["STUDENT_PATHS", "SOURCES_DIR", "release", "secret_lines", "find_leaks", "add_arguments", "main"]

#: What students get from the instructor's tree (exercises/ is generated, not copied).
STUDENT_PATHS = ("README.md", "CONTRIBUTING.md", "Makefile", "environment.yml", "pyproject.toml", "postBuild",
                 "notebooks", "servers", "lab", "grading", "benchmarks")
#: Inside a release: the pristine exercises the self-check uses as their source.
SOURCES_DIR = Path("grading") / "sources"
_JUNK = re.compile(r"(__pycache__|\.ipynb_checkpoints|\.egg-info|\.pyc$|\.pytest_cache)")
_REGIONS = [("### BEGIN SOLUTION", "### END SOLUTION"), ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
            ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ===")]
_MIN_SECRET = 16  # shorter lines ("return x", "pass") are too common to mean a leak


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or _JUNK.search(relative.as_posix()) or (source.name == "grading" and
                                                                  relative.parts[:1] == ("sources",)):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)


def secret_lines(source: Path) -> set[str]:
    """The lines (stripped, long enough to mean something) of one source notebook that only an
    instructor may see: inside a solution region, a hidden-test region or a mark scheme, and every
    line of a solution cell without markers (a written answer)."""
    secrets: set[str] = set()
    for cell in read_notebook(source).cells:
        lines = cell.source.splitlines()
        marked = any(begin in cell.source for begin, _ in _REGIONS)
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and not marked:
            secrets |= {line.strip() for line in lines}
            continue
        inside = False
        for line in lines:
            if any(line.strip().startswith(begin) for begin, _ in _REGIONS):
                inside = True
            elif any(line.strip().startswith(end) for _, end in _REGIONS):
                inside = False
            elif inside:
                secrets.add(line.strip())
    return {line for line in secrets if len(line) >= _MIN_SECRET}


def _lines_of(path: Path) -> set[str]:
    return {line.strip() for cell in read_notebook(path).cells for line in cell.source.splitlines()}


def find_leaks(out: Path, solutions: Path) -> list[str]:
    """What an instructor-only text left in the release at ``out``: a region marker in a notebook, or, in a copy of an exercise, a line of its source's solutions or hidden tests that the
    stub does not also have (a function's signature may stay in the stub, its body may not)."""
    leaks = []
    for path in sorted(out.rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        leaks += [f"{path.relative_to(out)}: {begin}" for begin, _ in _REGIONS if begin in text]
    for source in sorted(solutions.glob("*.ipynb")):
        stub = _lines_of(out / "exercises" / source.name)
        secrets = secret_lines(source) - stub
        for copy in sorted(out.rglob(source.name)):
            leaks += [f"{copy.relative_to(out)}: {line}" for line in sorted(_lines_of(copy) & secrets)]
    return leaks


def release(root: Path, out: Path, *, nbgrader: bool = False) -> list[Path]:
    """Write the students' tree for the checkout at ``root`` into ``out`` (which must not exist or be
    empty); returns the exercise notebooks written. Raises RuntimeError on a leak."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; a release is written into a new folder")
    solutions = root / "solutions"
    written: list[Path] = []
    try:
        for name in STUDENT_PATHS:
            if (root / name).exists():
                _copy_tree(root / name, out / name)
        for source in sorted(solutions.glob("*.ipynb")):
            text = render(source)
            targets = [out / "exercises" / source.name, out / SOURCES_DIR / source.name]
            if nbgrader:
                targets.append(out / "release" / source.stem / source.name)
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            written.append(targets[0])
        leaks = find_leaks(out, solutions)
        if leaks:
            raise RuntimeError("the release would leak solution or hidden-test text:\n  " + "\n  ".join(leaks[:20]))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def add_arguments(parser) -> None:
    parser.add_argument("out", type=Path, help="a new folder for the students' tree")
    parser.add_argument("--nbgrader", action="store_true",
                        help="also write release/<assignment>/<notebook>.ipynb, nbgrader's release_assignment layout")


def main(args) -> int:
    from grading.paths import project_root

    try:
        written = release(project_root(), args.out, nbgrader=args.nbgrader)
    except (FileExistsError, RuntimeError) as exc:
        print(f"no release written: {exc}", file=sys.stderr)
        return 1
    print(f"wrote the students' tree to {args.out}: {len(written)} exercise notebooks, no solutions, "
          "no hidden tests, no test suite")
    return 0
