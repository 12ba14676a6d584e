"""``python -m grading batch SUBMISSIONS_DIR --out OUT_DIR``: grade a class, write a gradebook and feedback.

Layouts understood (``.ipynb_checkpoints`` ignored):

- ``SUBMISSIONS_DIR/<student>.ipynb``: the source is found by the notebook's grade_ids (a file
  that cannot be read takes the source most of the class matched, or ``--source``);
- ``SUBMISSIONS_DIR/<student>/<name>.ipynb``: the source is ``solutions/<name>.ipynb``;
- nbgrader's ``SUBMISSIONS_DIR/[submitted/]<student>/<assignment>/<name>.ipynb``.

Every submission is graded with the visible *and* hidden tests of its source, in a fresh kernel
and process of its own, ``--jobs`` at a time, each kernel sandboxed where bubblewrap is available
(``grading.sandbox``; without it the command says plainly that submissions are not isolated).
Output: ``OUT_DIR/gradebook.csv`` (one row per student and question, plus a ``(notebook)`` row
when something about the notebook itself needs saying) and ``OUT_DIR/feedback/<student>.md``,
written once every submission's processes have ended, each file whole or not at all (a new file
renamed over the old). Rows are sorted, so the same class gives the same file byte for byte.
"""
from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grading.check import resolve_source
from grading.grade import DEFAULT_CELL_TIMEOUT, NEEDS_MANUAL_GRADING, GradeReport, grade_submission
from grading.paths import find_source, project_root
from grading.sandbox import status as sandbox_status

__all__ = ["SubmittedNotebook", "discover", "grade_class", "gradebook_rows", "write_gradebook", "feedback_markdown",
           "write_atomically", "GRADEBOOK_COLUMNS", "add_arguments", "main"]

GRADEBOOK_COLUMNS = ["student", "assignment", "question", "points", "max", "status", "reason"]
NOTEBOOK_ROW = "(notebook)"


@dataclass
class SubmittedNotebook:
    student: str
    path: Path
    assignment: str | None = None  # from the nbgrader layout
    source: Path | None = None


def discover(directory: Path) -> list[SubmittedNotebook]:
    """Every submitted notebook under ``directory``, in one of the three layouts, sorted by student and path."""
    if (directory / "submitted").is_dir():
        directory = directory / "submitted"
    found: list[SubmittedNotebook] = []
    for path in sorted(directory.rglob("*.ipynb")):
        parts = path.relative_to(directory).parts
        if any(part.startswith(".") for part in parts):
            continue
        if len(parts) == 1:
            found.append(SubmittedNotebook(path.stem, path))
        elif len(parts) == 2:
            found.append(SubmittedNotebook(parts[0], path))
        elif len(parts) == 3:
            found.append(SubmittedNotebook(parts[0], path, assignment=parts[1]))
    return found


def _resolve_sources(items: list[SubmittedNotebook], solutions: Path, explicit: Path | None) -> None:
    for item in items:
        if explicit is not None:
            item.source = explicit
        else:  # by file name unless the file is named after the student, else by shared grade_ids
            named = find_source(item.path.name, solutions) if item.path.stem != item.student else None
            item.source = named or resolve_source(item.path, solutions)
    common = Counter(item.source for item in items if item.source is not None).most_common(1)
    for item in items:
        if item.source is None and common:
            item.source = common[0][0]


def grade_class(directory: Path, *, solutions: Path | None = None, source: Path | None = None, jobs: int = 2,
                cell_timeout: float = DEFAULT_CELL_TIMEOUT, notebook_timeout: float | None = None,
                progress=None) -> list[GradeReport]:
    """Grade every submission under ``directory``; reports sorted by (student, assignment)."""
    items = discover(directory)
    _resolve_sources(items, solutions or project_root() / "solutions", source)
    unknown = [item for item in items if item.source is None]
    if unknown:
        raise SystemExit(f"no source notebook found for: {', '.join(str(i.path) for i in unknown)} (use --source)")

    def one(item: SubmittedNotebook) -> GradeReport:
        report = grade_submission(item.source, item.path, student=item.student,
                                  assignment=item.assignment or item.source.stem, hidden_tests=True,
                                  cell_timeout=cell_timeout, notebook_timeout=notebook_timeout)
        if progress:
            progress(report)
        return report

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(pool.map(one, items))
    return sorted(reports, key=lambda r: (r.student, r.assignment))


def _number(value: float) -> str:
    return f"{value:g}"


def _points(q) -> str:
    """A question's points for the gradebook; blank (not 0) while a written answer waits for a person."""
    return "" if q.status == NEEDS_MANUAL_GRADING else _number(q.points)


def gradebook_rows(reports: list[GradeReport]) -> list[dict[str, str]]:
    rows = []
    for report in reports:
        for q in report.questions:
            rows.append({"student": report.student, "assignment": report.assignment, "question": q.grade_id,
                         "points": _points(q), "max": _number(q.max_points), "status": q.status,
                         "reason": q.reason})
        if report.problem or report.notes:
            rows.append({"student": report.student, "assignment": report.assignment, "question": NOTEBOOK_ROW,
                         "points": "0", "max": "0", "status": "error" if report.problem else "warning",
                         "reason": "; ".join(([report.problem] if report.problem else []) + report.notes)})
    return rows


def write_gradebook(reports: list[GradeReport], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GRADEBOOK_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(gradebook_rows(reports))
    write_atomically(path, buffer.getvalue())


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a new file beside ``path`` and rename it over ``path``: a reader sees the old or the new file, whole."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp's is 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def feedback_markdown(student: str, reports: list[GradeReport]) -> str:
    """Feedback for one learner: per question the points, what was expected vs what came back, a hint."""
    lines = [f"# Feedback for {student}", ""]
    for report in reports:
        pending = f" (and {report.manual_points:g} for written answers, graded by hand)" if report.manual_points else ""
        lines += [f"## {report.assignment}: {report.points:g} / {report.max_points:g} points{pending}", ""]
        if report.problem:
            lines += [f"**Problem with the notebook:** {report.problem}.", ""]
        for q in report.questions:
            mark = {"timeout": "timed out", "crashed": "the kernel crashed"}.get(q.status, q.status.replace("_", " "))
            lines += [f"### {q.title}", "", f"**{_points(q) or '?'} / {q.max_points:g} points** ({mark})", ""]
            if q.status not in ("passed", NEEDS_MANUAL_GRADING):
                lines += [f"- **What happened:** {q.what_happened}", f"- **Hint:** {q.hint}", ""]
        if report.notes:
            lines += ["### Notes on your notebook", ""] + [f"- {note}" for note in report.notes] + [""]
        lines += ["Test cells always come from the course's copy of the exercise; hidden tests check other inputs "
                  "than the visible ones.", ""]
    return "\n".join(lines)


def write_feedback(reports: list[GradeReport], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[GradeReport]] = {}
    for report in reports:
        by_student.setdefault(report.student, []).append(report)
    for student, theirs in by_student.items():
        write_atomically(directory / f"{student}.md", feedback_markdown(student, theirs))


def add_arguments(parser) -> None:
    parser.add_argument("submissions", type=Path, help="folder of submissions (see the layouts above)")
    parser.add_argument("--out", type=Path, required=True, help="where to write gradebook.csv and feedback/")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds per cell (default 30)")
    parser.add_argument("--notebook-timeout", type=float, default=None,
                        help="seconds per notebook (default: the source's server_push_lab.timeout_seconds, else 120)")
    parser.add_argument("--source", type=Path, default=None, help="grade every submission against this source notebook")
    parser.add_argument("--solutions", type=Path, default=None, help="folder of source notebooks (default solutions/)")


def main(args) -> int:
    if not args.submissions.is_dir():
        print(f"no such folder: {args.submissions}", file=sys.stderr)
        return 2

    sandbox = sandbox_status()
    if not sandbox.isolated:
        print(f"WARNING: {sandbox.describe()}. Grade only submissions you trust, or grade on Linux with "
              "bubblewrap installed.", file=sys.stderr, flush=True)

    def progress(report: GradeReport) -> None:
        print(f"{report.student:>24} {report.assignment}: {report.points:g}/{report.max_points:g}"
              f"  ({report.seconds:.1f} s){'  ' + report.problem if report.problem else ''}", flush=True)

    reports = grade_class(args.submissions, solutions=args.solutions, source=args.source, jobs=args.jobs,
                          cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout, progress=progress)
    if not reports:
        print(f"no submissions found in {args.submissions}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    write_gradebook(reports, args.out / "gradebook.csv")
    write_feedback(reports, args.out / "feedback")
    print(f"graded {len(reports)} notebook(s): {args.out / 'gradebook.csv'}, feedback in {args.out / 'feedback'}")
    return 0
