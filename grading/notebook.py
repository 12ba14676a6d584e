"""Reading exercise notebooks by ``grade_id`` and merging a submission into its source.

Why merge at all: the source notebook in ``solutions/`` defines the questions, the set-up cells
and the tests. A learner's submission contributes only what it is allowed to change, the
contents of its *solution* cells, matched by ``grade_id``. Everything else (set-up, prose, the
visible tests and, for an instructor, the hidden tests) is taken from the source, so a
submission that deletes or edits a test cell still meets the real test, and a submission never
sees the source's solutions: a solution cell it lacks is graded as the stub.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader import utils as nbgrader_utils

from grading import nbgrader_compat

__all__ = ["Question", "Submission", "read_notebook", "read_submission", "questions", "solution_cells",
           "grade_id", "grade_ids", "is_solution", "is_test", "is_written", "merge_submission", "NotebookUnreadable"]


class NotebookUnreadable(ValueError):
    """The file is not a notebook we can read (not JSON, not nbformat 4, ...); says why in words."""


def read_notebook(path: str | Path) -> NotebookNode:
    """Read a notebook as nbformat 4, or raise :class:`NotebookUnreadable` with a plain reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookUnreadable(f"the file could not be read as UTF-8 text ({exc.__class__.__name__})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookUnreadable(f"the file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                                 "it may have been edited outside Jupyter or saved half-way") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise NotebookUnreadable("the file is JSON but not a Jupyter notebook (no list of cells)")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for broken notebooks
        raise NotebookUnreadable(f"the notebook could not be read ({exc.__class__.__name__}: {exc})") from None
    return nb


def _nbgrader_meta(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader ``grade_id``, or None for an ordinary cell."""
    value = _nbgrader_meta(cell).get("grade_id")
    return value if isinstance(value, str) and value else None


def is_solution(cell: NotebookNode) -> bool:
    return bool(grade_id(cell)) and nbgrader_utils.is_solution(cell)


def is_test(cell: NotebookNode) -> bool:
    """An autograded test cell: graded, not a solution, code."""
    return bool(grade_id(cell)) and nbgrader_utils.is_grade(cell) and not nbgrader_utils.is_solution(cell) \
        and cell.cell_type == "code"


def is_written(cell: NotebookNode) -> bool:
    """A manually graded answer (nbgrader: solution and grade): a person reads it against the rubric."""
    return is_solution(cell) and nbgrader_utils.is_grade(cell)


def grade_ids(nb: NotebookNode) -> list[str]:
    return [gid for gid in (grade_id(c) for c in nb.cells) if gid]


def solution_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    """Solution cells by grade_id; for a duplicated grade_id the first cell wins (as nbgrader's DeduplicateIds)."""
    found: dict[str, NotebookNode] = {}
    for cell in nb.cells:
        if is_solution(cell):
            found.setdefault(grade_id(cell), cell)
    return found


@dataclass
class Question:
    """One question: its graded cell's grade_id, points, a title, and the solution cells it tests.

    ``written``: a manually graded answer cell (graded by a person, never by the tests).
    """

    grade_id: str
    points: float
    title: str
    solution_ids: list[str] = field(default_factory=list)
    written: bool = False


def questions(source: NotebookNode) -> list[Question]:
    """The questions of a source notebook, in order.

    A question is a test cell; its title is the nearest Markdown heading above it and the
    solution cells it tests are those since the previous test cell (how our exercises are laid
    out: heading, prose, solution cell(s), test cell). Test cells that follow one another split
    one question's points by concept, so they test the same solution cells. A manually graded
    answer cell is a question of its own (``written``).
    """
    found: list[Question] = []
    title = ""
    pending: list[str] = []
    for cell in source.cells:
        if cell.cell_type == "markdown" and not is_solution(cell):  # an answer's own headings are no title
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    title = line.lstrip("#").strip()
                    break
        points = float(_nbgrader_meta(cell).get("points", 0) or 0)
        if is_written(cell):
            found.append(Question(grade_id(cell), points, title or grade_id(cell), [grade_id(cell)], written=True))
        elif is_solution(cell):
            pending.append(grade_id(cell))
        elif is_test(cell):
            previous = found[-1].solution_ids if found and not found[-1].written else []
            found.append(Question(grade_id(cell), points, title or grade_id(cell), pending or list(previous)))
            pending = []
    return found


@dataclass
class Submission:
    """What a submission file holds that grading cares about, plus what was odd about it."""

    path: Path
    notebook: NotebookNode | None
    unreadable: str | None = None  # why it could not be read, in words

    @property
    def readable(self) -> bool:
        return self.notebook is not None


def read_submission(path: str | Path) -> Submission:
    try:
        return Submission(Path(path), read_notebook(path))
    except NotebookUnreadable as exc:
        return Submission(Path(path), None, str(exc))


def merge_submission(source: NotebookNode, submission: NotebookNode | None, *,
                     hidden_tests: bool) -> tuple[NotebookNode, list[str]]:
    """The notebook to run: the source with the submission's solution cells in place.

    The base is the source with solutions replaced by stubs (nbgrader's ClearSolutions) and,
    unless ``hidden_tests``, hidden tests removed (ClearHiddenTests); each solution cell's text
    is then taken from the submission's cell with the same grade_id. Returns the notebook and
    notes for the learner about what was odd (duplicated grade_ids, edited or deleted test
    cells, missing solution cells); the notes never change which tests run.
    """
    base = nbgrader_compat.release_version(source, keep_hidden_tests=hidden_tests)
    notes: list[str] = []
    if submission is None:
        return base, notes
    counts: dict[str, int] = {}
    for gid in grade_ids(submission):
        counts[gid] = counts.get(gid, 0) + 1
    for gid, count in counts.items():
        if count > 1:
            notes.append(f"grade_id {gid!r} appears in {count} cells; the first one was graded, the others ignored")
    answers = solution_cells(submission)
    released = nbgrader_compat.release_version(source, keep_hidden_tests=False)
    visible_tests = {grade_id(c): c.source for c in released.cells if is_test(c)}
    submitted_cells = {}
    for cell in submission.cells:
        gid = grade_id(cell)
        if gid and gid not in submitted_cells:
            submitted_cells[gid] = cell
    for gid, text in visible_tests.items():
        if gid not in submitted_cells:
            notes.append(f"test cell {gid!r} is missing from the submission; the original test was run")
        elif _without_hidden_tests(submitted_cells[gid]) != text:
            notes.append(f"test cell {gid!r} was edited in the submission; the original test was run")
    for cell in base.cells:
        if not is_solution(cell):
            continue
        gid = grade_id(cell)
        answer = answers.get(gid)
        if answer is None:
            notes.append(f"solution cell {gid!r} is missing from the submission; it was graded as unanswered")
            continue
        cell.source = answer.source if isinstance(answer.source, str) else "".join(answer.source)
    return base, notes


def _without_hidden_tests(cell: NotebookNode) -> str:
    """A submitted test cell's text as the learner's copy shows it (the source itself has hidden tests)."""
    probe = nbformat.v4.new_notebook(cells=[copy.deepcopy(cell)])
    return nbgrader_compat.strip_hidden_tests(probe).cells[0].source
