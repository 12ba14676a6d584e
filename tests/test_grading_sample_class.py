"""Batch grading of the sample class equals the expected gradebook committed beside it.

tests/sample_class/<exercise>/submissions holds, for each exercise, a correct, a partly wrong,
a stub, a hanging (while True), a server-never-stopped, a kernel-crashing (os._exit), a
test-cells-deleted, a test-cells-edited, a duplicated-cell and a malformed-JSON submission.
The expected gradebook is what ``python -m grading batch ... --cell-timeout 10`` must write,
byte for byte. Kernels run for real; the hanging ones cost the 10 s cell limit each.
"""
from __future__ import annotations

import csv
import uuid
from pathlib import Path

import psutil
import pytest

from grading.batch import grade_class, write_feedback, write_gradebook

SAMPLE = Path(__file__).resolve().parent / "sample_class"
EXERCISES = sorted(p.name for p in SAMPLE.iterdir() if (p / "submissions").is_dir())
KINDS = {"correct", "partly_wrong", "stub", "hanging", "server_never_stopped", "kernel_crash", "tests_deleted",
         "tests_edited", "duplicated_cell", "malformed_json"}


def _kernels_of_ours(tag: str) -> set[int]:
    """ipykernel processes started by this test's grading: they inherit its ``SPL_TEST_TAG``.

    (Matching on the scratch folder alone would also find kernels of grading tests that run at
    the same time in another pytest worker.)
    """
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if ("ipykernel_launcher" in " ".join(process.info["cmdline"] or [])
                    and process.environ().get("SPL_TEST_TAG") == tag):
                found.add(process.info["pid"])
        except (psutil.Error, TypeError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("exercise", EXERCISES)
def test_sample_class_gradebook_equals_the_expected_one(exercise, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    monkeypatch.setenv("SPL_TEST_TAG", tag)  # inherited by the graders' workers and kernels
    submissions = SAMPLE / exercise / "submissions"
    assert {p.stem for p in submissions.glob("*.ipynb")} == KINDS
    reports = grade_class(submissions, jobs=2, cell_timeout=10)
    write_gradebook(reports, tmp_path / "gradebook.csv")
    write_feedback(reports, tmp_path / "feedback")

    got = (tmp_path / "gradebook.csv").read_text()
    expected = (SAMPLE / exercise / "expected-gradebook.csv").read_text()
    assert got == expected, "gradebook differs from the expected one:\n" + got

    rows = list(csv.DictReader(got.splitlines()))
    assert list(rows[0]) == ["student", "assignment", "question", "points", "max", "status", "reason"]
    totals = {}
    for row in rows:
        if row["status"] == "needs_manual_grading":  # a written answer: a person grades it, so never a 0 here
            assert row["points"] == "", row
            continue
        totals.setdefault(row["student"], [0.0, 0.0])
        totals[row["student"]][0] += float(row["points"])
        totals[row["student"]][1] += float(row["max"])
    full = totals["correct"][1]
    assert totals["correct"][0] == full and totals["server_never_stopped"][0] == full
    assert totals["stub"][0] == 0 and totals["malformed_json"][0] == 0
    assert 0 < totals["partly_wrong"][0] < full and 0 < totals["hanging"][0] < full
    assert 0 < totals["kernel_crash"][0] < full, "a crash costs only the question it happened in"
    assert any(r["student"] == "hanging" and r["status"] == "timeout" for r in rows)
    assert any(r["student"] == "duplicated_cell" and "appears in 2 cells" in r["reason"] for r in rows)

    for student in KINDS:
        feedback = (tmp_path / "feedback" / f"{student}.md").read_text()
        assert f"# Feedback for {student}" in feedback and "points" in feedback
    assert "**Hint:**" in (tmp_path / "feedback" / "partly_wrong.md").read_text()
    assert not _kernels_of_ours(tag), "a grading kernel outlived its submission"
