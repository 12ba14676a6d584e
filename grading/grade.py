"""Grade one submission against its source: per question, points, a status and the reason in plain words.

Shared by the learner's self-check (visible tests only) and the instructor's batch grading
(visible and hidden tests). The points of a test cell are nbgrader's own rule
(``nbgrader.utils.determine_grade``: an error or anything on stderr scores 0, a number printed
as the cell's result is partial credit, otherwise full points), so our scores and nbgrader's
autograde agree; this module adds the *why* a learner needs when the points are not full.

Statuses: ``passed``, ``partial``, ``failed`` (the test ran and did not pass), ``unanswered``
(the code still raises ``NotImplementedError``), ``timeout`` (over the per-cell limit, interrupted),
``crashed`` (the kernel died in this cell), ``not_run`` (never reached: notebook time limit, a
notebook that cannot be read, ...), and for a written answer ``needs_manual_grading`` (a person
grades it against the rubric: never 0 before they do, and left out of the points the grader gives).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils as nbgrader_utils

from grading.notebook import (Question, grade_id, is_solution, merge_submission, questions, read_notebook,
                              read_submission)
from grading.run import RunResult, run_notebook

__all__ = ["QuestionResult", "GradeReport", "grade_submission", "notebook_timeout_of", "HINTS",
           "DEFAULT_CELL_TIMEOUT", "DEFAULT_NOTEBOOK_TIMEOUT", "NEEDS_MANUAL_GRADING"]

DEFAULT_CELL_TIMEOUT = 30.0
DEFAULT_NOTEBOOK_TIMEOUT = 120.0
NEEDS_MANUAL_GRADING = "needs_manual_grading"

HINTS = {
    "unanswered": "Replace `raise NotImplementedError()` in the solution cell with your code, run it, then run the test cell.",
    "timeout": "Look for a loop that never ends, or a call that waits for something that never comes "
               "(a blocking call to a server that runs on the kernel's own loop, a socket read with no timeout).",
    "crashed": "Your code ended the Python process (os._exit, a segfault, running out of memory). "
               "Raise an exception instead; the grader restarted the kernel for the other questions.",
    "not_run": "Fix the problem named in the reason and submit again; nothing in this question was run.",
    "failed": "Read the expected value and what came back above, then run the test cell yourself to see the whole traceback.",
    "partial": "Some checks passed; the reason says which one did not.",
    NEEDS_MANUAL_GRADING: "Nothing to fix: a person reads your answer against the rubric.",
}


@dataclass
class QuestionResult:
    grade_id: str
    title: str
    points: float
    max_points: float
    status: str
    reason: str = ""

    @property
    def hint(self) -> str:
        """The test's own hint when its message has one ("... Hint: ..."), else a general one for the status."""
        if self.status == "passed":
            return ""
        own = self.reason.split(" Hint: ", 1)
        return own[1] if len(own) == 2 else HINTS.get(self.status, "")

    @property
    def what_happened(self) -> str:
        """The reason without the test's hint and without the exception class a learner does not need."""
        text = self.reason.split(" Hint: ", 1)[0]
        return text[len("AssertionError: "):] if text.startswith("AssertionError: ") else text


@dataclass
class GradeReport:
    student: str
    assignment: str
    source: Path
    submission: Path
    questions: list[QuestionResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problem: str = ""  # why (part of) the notebook could not be graded; empty when all ran
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return sum(q.points for q in self.questions if q.status != NEEDS_MANUAL_GRADING)

    @property
    def max_points(self) -> float:
        """The points the grader can give: written answers waiting for a person are left out."""
        return sum(q.max_points for q in self.questions if q.status != NEEDS_MANUAL_GRADING)

    @property
    def manual_points(self) -> float:
        """The points of written answers a person has yet to grade."""
        return sum(q.max_points for q in self.questions if q.status == NEEDS_MANUAL_GRADING)


def notebook_timeout_of(source) -> float:
    """The per-notebook budget the source declares (metadata ``server_push_lab.timeout_seconds``), or the default."""
    meta = source.metadata.get("server_push_lab", {}) if hasattr(source, "metadata") else {}
    try:
        return float(meta.get("timeout_seconds", DEFAULT_NOTEBOOK_TIMEOUT))
    except (TypeError, ValueError):
        return DEFAULT_NOTEBOOK_TIMEOUT


def _one_line(text: str, limit: int = 600) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")  # colour codes from IPython tracebacks
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def grade_submission(source_path: Path, submission_path: Path, *, student: str, assignment: str | None = None,
                     hidden_tests: bool, cell_timeout: float = DEFAULT_CELL_TIMEOUT,
                     notebook_timeout: float | None = None) -> GradeReport:
    """Run one submission (its solution cells inside the source) and grade every question."""
    source = read_notebook(source_path)
    report = GradeReport(student, assignment or source_path.stem, source_path, submission_path)
    asked = questions(source)
    submission = read_submission(submission_path)
    if not submission.readable:
        report.problem = f"the notebook could not be read: {submission.unreadable}"
        report.questions = [QuestionResult(q.grade_id, q.title, 0.0, q.points, "not_run",
                                           "not graded: the notebook file could not be read") for q in asked]
        return report
    merged, report.notes = merge_submission(source, submission.notebook, hidden_tests=hidden_tests)
    budget = notebook_timeout if notebook_timeout is not None else notebook_timeout_of(source)
    run = run_notebook(merged, cell_timeout=cell_timeout, notebook_timeout=budget)
    report.seconds = run.seconds
    index_of = {grade_id(c): i for i, c in enumerate(merged.cells) if grade_id(c)}
    for i, cell in enumerate(merged.cells):
        result = run.cells.get(i)
        if result and is_solution(cell) and result.status in ("timeout", "crashed"):
            report.notes.append(f"solution cell {grade_id(cell)!r}: {result.evalue}")
    undone = list(dict.fromkeys(kind for i in sorted(run.cells) for kind in run.cells[i].undone))
    if undone:  # an instructor should read this submission: it reached into the machinery the tests run on
        report.notes.append(f"your code changed parts of the kernel the tests run on: {'; '.join(undone)}. The grader "
                            "put them back before every test, so the tests saw the kernel as the course set it up")
    if run.notebook_timed_out:
        report.problem = f"grading stopped at the notebook time limit of {budget:g} s"
    elif run.failure:
        report.problem = run.failure
    report.questions = [_grade_written(q, merged) if q.written else _grade_question(q, index_of, run, report.problem)
                        for q in asked]
    return report


def _grade_written(question: Question, merged) -> QuestionResult:
    """nbgrader's rule for a written answer: the stub unchanged scores 0, anything else waits for a person."""
    cell = next(c for c in merged.cells if grade_id(c) == question.grade_id)
    points, _ = nbgrader_utils.determine_grade(cell)
    if points is None:
        return QuestionResult(question.grade_id, question.title, 0.0, question.points, NEEDS_MANUAL_GRADING,
                              "a written answer: a person grades it against the rubric")
    return QuestionResult(question.grade_id, question.title, 0.0, question.points, "unanswered",
                          "not answered yet: the cell still says YOUR ANSWER HERE. "
                          "Hint: replace it with your answer, in your own words.")


def _nbgrader_points(question: Question, test) -> float:
    """nbgrader's own score for the executed test cell (its outputs as the worker recorded them)."""
    cell = nbformat.v4.new_code_cell(metadata={"nbgrader": {"grade": True, "solution": False,
                                                            "points": question.points, "grade_id": question.grade_id}})
    cell.outputs = [nbformat.from_dict(o) for o in test.outputs]
    points, _ = nbgrader_utils.determine_grade(cell)
    return float(points or 0.0)


def _grade_question(question: Question, index_of: dict[str, int], run: RunResult, problem: str) -> QuestionResult:
    def result(points: float, status: str, reason: str = "") -> QuestionResult:
        return QuestionResult(question.grade_id, question.title, points, question.points, status, _one_line(reason))

    test = run.cells.get(index_of.get(question.grade_id, -1))
    solutions = [run.cells.get(index_of.get(gid, -1)) for gid in question.solution_ids]
    if test is None:
        return result(0.0, "not_run", f"this test did not run: {problem or 'an earlier cell stopped the notebook'}")
    if test.status == "timeout":
        return result(0.0, "timeout", f"the test did not finish within the per-cell limit "
                                      f"({test.evalue.rsplit('of ', 1)[-1]}) and was interrupted")
    if test.status == "crashed":
        return result(0.0, "crashed", "the Python kernel died while this test ran (for example os._exit in your code)")
    points = _nbgrader_points(question, test)
    if points >= question.points and test.status == "ok":
        return result(points, "passed")
    failed_solution = next((s for s in solutions if s is not None and s.status != "ok"), None)
    if test.ename == "NotImplementedError" or (failed_solution and failed_solution.ename == "NotImplementedError"):
        return result(0.0, "unanswered", "not answered yet: the solution still raises NotImplementedError")
    if test.status == "ok" and points < question.points:
        if points > 0:
            return result(points, "partial", f"the test reported partial credit: {points:g} of {question.points:g}")
        return result(0.0, "failed", f"the test wrote to stderr, which counts as a failure: {test.stderr}")
    reason = f"{test.ename}: {test.evalue}" if test.evalue else test.ename
    if failed_solution is not None and failed_solution.status == "crashed":
        return result(0.0, "crashed", f"your solution cell {failed_solution.grade_id!r} ended the Python kernel "
                                      f"(for example os._exit); after a restart the test failed with {reason}")
    if failed_solution is not None and failed_solution.status == "timeout":
        return result(0.0, "timeout", f"your solution cell {failed_solution.grade_id!r} did not finish within the "
                                      f"per-cell limit ({failed_solution.evalue.rsplit('of ', 1)[-1]}) and was interrupted; "
                                      f"then the test failed with {reason}")
    if failed_solution is not None:
        reason = (f"your solution cell {failed_solution.grade_id!r} raised {failed_solution.ename}: "
                  f"{failed_solution.evalue}; then the test failed with {reason}")
    return result(0.0, "failed", reason)
