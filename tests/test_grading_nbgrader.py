"""Cross-check with real nbgrader: a throw-away course built from solutions/ scores like our grader.

The course lives in a temp dir: nbgrader_config.py, source/<assignment>/<notebook> copied from
solutions/. Real nbgrader runs ``generate_assignment`` (its release must equal our exercises/)
and ``autograde`` on the correct, partly wrong and stub submissions of the sample class; its
gradebook (sqlite, read through nbgrader.api.Gradebook) must give every question the points of
our grader, run on the same course folder (nbgrader's submitted/<student>/<assignment>/ layout),
and the committed expected gradebook.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grading.batch import grade_class
from grading.paths import kernel_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "sample_class"
STUDENTS = ["correct", "partly_wrong", "stub"]
ASSIGNMENTS = {"00-tour-exercises": "tour00", "04-websocket-exercises": "ws04"}

CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "server-push-lab"
c.CourseDirectory.db_assignments = [dict(name="{assignment}")]
c.ExecutePreprocessor.timeout = 30
"""


def start_nbgrader(course: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=course, env=kernel_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, f"nbgrader {' '.join(process.args[2:])} failed:\n{out}\n{err[-3000:]}"


def nbgrader(course: Path, *args: str) -> None:
    finish(start_nbgrader(course, *args))


def our_points(exercise: str) -> dict[tuple[str, str], float | None]:
    """Points per (student, question); None for a written answer waiting for a person (nbgrader's score is None too)."""
    rows = csv.DictReader((SAMPLE / exercise / "expected-gradebook.csv").read_text().splitlines())
    return {(r["student"], r["question"]): float(r["points"]) if r["points"] else None
            for r in rows if r["question"] != "(notebook)"}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("exercise", sorted(ASSIGNMENTS))
def test_real_nbgrader_scores_like_our_grader(exercise, tmp_path):
    from nbgrader.api import Gradebook

    assignment = ASSIGNMENTS[exercise]
    course = tmp_path / "course"
    (course / "source" / assignment).mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(assignment=assignment))
    shutil.copy(ROOT / "solutions" / f"{exercise}.ipynb", course / "source" / assignment / f"{exercise}.ipynb")

    nbgrader(course, "generate_assignment", assignment, "--force")
    released = json.loads((course / "release" / assignment / f"{exercise}.ipynb").read_text())
    ours = json.loads((ROOT / "exercises" / f"{exercise}.ipynb").read_text())
    assert released == ours, "nbgrader's release differs from our exercises/ notebook"

    for student in STUDENTS:
        target = course / "submitted" / student / assignment
        target.mkdir(parents=True)
        shutil.copy(SAMPLE / exercise / "submissions" / f"{student}.ipynb", target / f"{exercise}.ipynb")
    autograde = start_nbgrader(course, "autograde", assignment)  # nbgrader and our grader side by side
    try:
        reports = grade_class(course, jobs=1, cell_timeout=10)
    finally:
        finish(autograde)

    expected = our_points(exercise)
    ours = {(r.student, q.grade_id): None if q.status == "needs_manual_grading" else q.points
            for r in reports for q in r.questions}
    assert {(s, q): p for (s, q), p in ours.items()} == {k: v for k, v in expected.items() if k[0] in STUDENTS}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in STUDENTS:
            notebook = gradebook.find_submission_notebook(exercise, assignment, student)
            # nbgrader scores a written answer waiting for a person as 0 and flags it needs_manual_grade
            theirs = {grade.name: None if grade.needs_manual_grade else grade.score for grade in notebook.grades}
            for question, score in theirs.items():
                assert score == ours[(student, question)], (
                    f"{student} {question}: nbgrader gives {score}, our grader {ours[(student, question)]}")
            assert set(theirs) == {q for (s, q) in expected if s == student}
    assert os.path.exists(course / "autograded" / "correct" / assignment)
