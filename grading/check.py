"""``python -m grading check NOTEBOOK``: a learner's self-check with the visible tests only.

Prints, per question, the points earned and, for each failure, the reason in plain words and a
hint; exits 0 only at full marks. The notebook's solution cells run inside its source (found
in ``solutions/``, or in a student release the pristine copy in ``grading/sources/``, by file name,
else by its grade_ids), so a learner who deleted or edited a test
cell is still checked against the real test; a notebook with no known source is checked
against its own visible tests.
"""
from __future__ import annotations

import sys
from pathlib import Path

from grading.grade import DEFAULT_CELL_TIMEOUT, NEEDS_MANUAL_GRADING, GradeReport, grade_submission
from grading.notebook import grade_ids, read_notebook, NotebookUnreadable
from grading.paths import exercise_sources, find_source

__all__ = ["resolve_source", "format_report", "add_arguments", "main"]


def resolve_source(notebook: Path, solutions: Path | None = None, explicit: Path | None = None) -> Path | None:
    """The source notebook for ``notebook``: explicit, by file name, or by the most shared grade_ids."""
    if explicit is not None:
        return explicit
    solutions = solutions or exercise_sources()
    by_name = find_source(notebook.name, solutions)
    if by_name is not None:
        return by_name
    try:
        ids = set(grade_ids(read_notebook(notebook)))
    except NotebookUnreadable:
        return None
    best, best_shared = None, 0
    for candidate in sorted(solutions.glob("*.ipynb")):
        shared = len(ids & set(grade_ids(read_notebook(candidate))))
        if shared > best_shared:
            best, best_shared = candidate, shared
    return best


def format_report(report: GradeReport) -> str:
    pending = f" (and {report.manual_points:g} for written answers, graded by hand)" if report.manual_points else ""
    lines = [f"{report.assignment}: {report.points:g} / {report.max_points:g} points{pending}"]
    for number, q in enumerate(report.questions, 1):
        if q.status == NEEDS_MANUAL_GRADING:
            lines.append(f"  {q.title} [{q.grade_id}]: ?/{q.max_points:g} needs manual grading (written answer)")
            continue
        lines.append(f"  {q.title} [{q.grade_id}]: {q.points:g}/{q.max_points:g} {q.status}")
        if q.status != "passed":
            lines.append(f"      why:  {q.what_happened}")
            lines.append(f"      hint: {q.hint}")
    if report.problem:
        lines.append(f"  Problem: {report.problem}")
    for note in report.notes:
        lines.append(f"  Note: {note}")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("notebook", type=Path, help="the exercise notebook to check")
    parser.add_argument("--source", type=Path, default=None, help="the source notebook (default: found in solutions/)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds per cell")
    parser.add_argument("--notebook-timeout", type=float, default=None,
                        help="seconds for the whole notebook (default: the notebook's own budget)")


def main(args) -> int:
    if not args.notebook.is_file():
        print(f"no such notebook: {args.notebook}", file=sys.stderr)
        return 2
    source = resolve_source(args.notebook, explicit=args.source)
    if source is None:
        try:
            read_notebook(args.notebook)
        except NotebookUnreadable as exc:
            print(f"{args.notebook}: {exc}", file=sys.stderr)
            return 2
        source = args.notebook  # self-contained: its own visible tests
    report = grade_submission(source, args.notebook, student="you", hidden_tests=False,
                              cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout)
    print(format_report(report))
    full = report.max_points > 0 and report.points >= report.max_points and not report.problem
    print("Full marks on the visible tests. The grader also runs hidden tests." if full
          else "Not full marks yet: fix the questions above and check again.")
    return 0 if full else 1
