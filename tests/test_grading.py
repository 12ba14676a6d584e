"""The grader's fast parts and the learner's self-check: one source, generated exercises, merging, layouts.

The self-check tests start real kernels (a few seconds each); everything else is pure notebook
handling.
"""
from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grading import nbgrader_compat
from grading.batch import discover, feedback_markdown, grade_class, write_gradebook
from grading.generate import generate, render
from grading.notebook import (grade_id, is_solution, is_test, merge_submission, questions, read_notebook,
                              read_submission)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
SOURCES = sorted(SOLUTIONS.glob("*.ipynb"))
OURS = [SOLUTIONS / "00-tour-exercises.ipynb", SOLUTIONS / "04-websocket-exercises.ipynb"]


def grading_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command line, as a learner types it (a fresh interpreter: slower, so used sparingly)."""
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def grading_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same command run in this process (nbgrader already imported), with its exit status and output."""
    from grading.__main__ import main

    status = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out, err)


# --- one source, generated exercises -------------------------------------------------------------


def test_generate_check_says_exercises_match_solutions():
    result = grading_cli("generate", "--check")
    assert result.returncode == 0, f"exercises/ drifted from solutions/:\n{result.stdout}{result.stderr}"


def test_generate_is_deterministic_and_check_catches_drift(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    generate(SOLUTIONS, first)
    generate(SOLUTIONS, second)
    for source in SOURCES:
        assert (first / source.name).read_bytes() == (second / source.name).read_bytes()
        assert (first / source.name).read_bytes() == (EXERCISES / source.name).read_bytes()
    drifted = first / SOURCES[0].name
    drifted.write_text(drifted.read_text().replace("raise NotImplementedError()", "pass", 1))
    result = grading_main(capsys, "generate", "--check", "--exercises", str(first))
    assert result.returncode == 1
    assert SOURCES[0].name in result.stderr and "python -m grading generate" in result.stderr


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_exercise_has_stubs_no_solutions_no_hidden_tests_no_outputs(source):
    text = (EXERCISES / source.name).read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    nb = read_notebook(EXERCISES / source.name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        if is_solution(cell):  # a written answer's stub is nbgrader's text stub
            assert ("raise NotImplementedError()" if cell.cell_type == "code" else "YOUR ANSWER HERE") in cell.source
        if is_test(cell):
            assert cell.metadata["editable"] is False and cell.metadata["deletable"] is False


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_is_nbgrader_shaped_and_states_its_total(source):
    nb = read_notebook(source)
    ids = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert len(ids) == len(set(ids)), f"duplicate grade_ids in {source.name}"
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]+", gid) for gid in ids)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta:
            assert meta["schema_version"] == 3
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
    total = sum(q.points for q in questions(nb))
    assert f"Total: {total:g} points" in nb.cells[0].source
    assert nb.metadata["server_push_lab"]["timeout_seconds"] > 0


def test_release_version_is_what_nbgrader_generate_assignment_would_write():
    """The exercises come from nbgrader's own preprocessors (compared with real nbgrader in test_grading_nbgrader)."""
    for source in OURS:
        assert render(source) == nbformat.writes(nbgrader_compat.release_version(read_notebook(source))) + "\n"


# --- merging a submission into its source --------------------------------------------------------


def _released(source: Path):
    return read_notebook(EXERCISES / source.name)


def test_merge_runs_the_source_tests_whatever_the_submission_did_to_them():
    source = read_notebook(OURS[1])
    submission = _released(OURS[1])
    for cell in submission.cells:
        if is_test(cell):
            cell.source = "assert True"
    submission.cells = [c for c in submission.cells if grade_id(c) != "ws_overhead_tests"]
    merged, notes = merge_submission(source, submission, hidden_tests=True)
    by_id = {grade_id(c): c.source for c in merged.cells if grade_id(c)}
    originals = {grade_id(c): c.source for c in source.cells if is_test(c)}
    for gid, text in originals.items():
        assert by_id[gid] == text and "BEGIN HIDDEN TESTS" in text
    assert any("ws_accept_key_tests" in n and "edited" in n for n in notes)
    assert any("ws_overhead_tests" in n and "missing" in n for n in notes)
    visible, _ = merge_submission(source, submission, hidden_tests=False)
    assert all("HIDDEN" not in c.source for c in visible.cells)


def test_merge_never_leaks_a_solution_and_first_duplicate_wins():
    source = read_notebook(OURS[1])
    submission = _released(OURS[1])
    answer = next(c for c in submission.cells if grade_id(c) == "ws_overhead")
    answer.source = "def frame_overhead(size, direction):\n    return 'first'"
    twin = copy.deepcopy(answer)
    twin.source = "def frame_overhead(size, direction):\n    return 'second'"
    submission.cells.insert(submission.cells.index(answer) + 1, twin)
    submission.cells = [c for c in submission.cells if grade_id(c) != "ws_accept_key"]
    merged, notes = merge_submission(source, submission, hidden_tests=True)
    cells = {grade_id(c): c.source for c in merged.cells if grade_id(c)}
    assert "'first'" in cells["ws_overhead"]
    assert "raise NotImplementedError()" in cells["ws_accept_key"] and "hashlib.sha1" not in cells["ws_accept_key"]
    assert any("'ws_overhead' appears in 2 cells" in n for n in notes)
    assert any("'ws_accept_key' is missing" in n for n in notes)


def test_unreadable_submissions_say_why(tmp_path):
    half = tmp_path / "half.ipynb"
    half.write_text((EXERCISES / OURS[0].name).read_text()[:500])
    not_a_notebook = tmp_path / "list.ipynb"
    not_a_notebook.write_text(json.dumps([1, 2]))
    assert "not valid JSON" in read_submission(half).unreadable
    assert "not a Jupyter notebook" in read_submission(not_a_notebook).unreadable


def test_questions_know_their_title_points_and_solution_cells():
    asked = questions(read_notebook(OURS[1]))
    assert [(q.grade_id, q.points, q.solution_ids, q.written) for q in asked] == [
        ("ws_accept_key_tests", 3.0, ["ws_accept_key"], False),
        ("ws_frame_header_tests", 2.0, ["ws_frame_header"], False),
        ("ws_frame_header_length_tests", 2.0, ["ws_frame_header"], False),  # the question's second concept
        ("ws_overhead_tests", 3.0, ["ws_overhead"], False),
        ("ws_written_masking", 2.0, ["ws_written_masking"], True),
    ]
    assert "Sec-WebSocket-Accept" in asked[0].title
    assert "why does only the client mask" in asked[-1].title, "a written answer's own text is no heading"


def test_discover_understands_the_three_layouts(tmp_path):
    nb = (EXERCISES / OURS[1].name).read_text()
    flat = tmp_path / "flat"
    (flat / ".ipynb_checkpoints").mkdir(parents=True)
    (flat / "ann.ipynb").write_text(nb)
    (flat / ".ipynb_checkpoints" / "ann-checkpoint.ipynb").write_text(nb)
    folders = tmp_path / "folders" / "bob"
    folders.mkdir(parents=True)
    (folders / OURS[1].name).write_text(nb)
    nbgrader_layout = tmp_path / "course" / "submitted" / "cy" / "ws04"
    nbgrader_layout.mkdir(parents=True)
    (nbgrader_layout / OURS[1].name).write_text(nb)
    assert [(s.student, s.assignment) for s in discover(flat)] == [("ann", None)]
    assert [(s.student, s.assignment) for s in discover(tmp_path / "folders")] == [("bob", None)]
    assert [(s.student, s.assignment) for s in discover(tmp_path / "course")] == [("cy", "ws04")]


# --- self-check ----------------------------------------------------------------------------------


@pytest.mark.notebook
@pytest.mark.parametrize("source", OURS, ids=lambda p: p.stem)
def test_self_check_gives_the_solution_full_marks(source, capsys):
    # one through the real command line, the other in-process (same code, less start-up time)
    if source.name.startswith("04"):
        result = grading_cli("check", str(source.relative_to(ROOT)))
    else:
        result = grading_main(capsys, "check", str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Full marks" in result.stdout
    assert re.search(r": (\d+) / \1 points", result.stdout)


@pytest.mark.notebook
@pytest.mark.parametrize("source", OURS, ids=lambda p: p.stem)
def test_self_check_gives_the_stub_zero_with_reasons(source, capsys):
    result = grading_main(capsys, "check", str(EXERCISES / source.name))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r": 0 / \d+ points", result.stdout)
    asked = questions(read_notebook(source))
    assert result.stdout.count("why:  not answered yet") == len(asked)
    coded = [q for q in asked if not q.written]
    assert result.stdout.count("hint: Replace `raise NotImplementedError()`") == len(coded)
    assert result.stdout.count("hint: replace it with your answer") == len(asked) - len(coded)


def _graded(gid: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict:
    meta = {"grade": grade, "grade_id": gid, "locked": not solution, "schema_version": 3, "solution": solution}
    return {"nbgrader": {**meta, "points": points} if grade else meta}


@pytest.mark.notebook
def test_a_written_answer_waits_for_a_person_and_never_scores_zero(tmp_path, capsys):
    """nbgrader's rule for a manually graded answer: answered, it waits for a person (blank, not 0); unanswered, 0."""
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A tiny exercise\n\n**Total: 3 points**"),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION\nANSWER = 42\n### END SOLUTION", metadata=_graded("answer", solution=True)),
        nbformat.v4.new_code_cell("assert ANSWER == 42", metadata=_graded("answer_tests", grade=True, points=1)),
        nbformat.v4.new_markdown_cell("## Why 42?"),
        nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                                      metadata=_graded("why", solution=True, grade=True, points=2))])
    (tmp_path / "solutions").mkdir()
    source_path = tmp_path / "solutions" / "tiny.ipynb"
    nbformat.write(source, str(source_path))
    assert [(q.grade_id, q.written, q.title) for q in questions(source)] == [
        ("answer_tests", False, "A tiny exercise"), ("why", True, "Why 42?")]
    released = nbgrader_compat.release_version(source)
    class_dir = tmp_path / "class"
    class_dir.mkdir()
    nbformat.write(released, str(class_dir / "stub.ipynb"))
    answered = copy.deepcopy(released)
    answered.cells[1].source, answered.cells[4].source = "ANSWER = 6 * 7", "Because it is 6 times 7."
    nbformat.write(answered, str(class_dir / "answered.ipynb"))

    reports = grade_class(class_dir, source=source_path, jobs=2)
    write_gradebook(reports, tmp_path / "gradebook.csv")
    rows = {(r["student"], r["question"]): r for r in csv.DictReader((tmp_path / "gradebook.csv").read_text().splitlines())}
    assert (rows[("answered", "why")]["points"], rows[("answered", "why")]["max"]) == ("", "2")
    assert rows[("answered", "why")]["status"] == "needs_manual_grading"
    assert rows[("answered", "answer_tests")]["points"] == "1"
    assert (rows[("stub", "why")]["points"], rows[("stub", "why")]["status"]) == ("0", "unanswered")
    feedback = feedback_markdown("answered", [r for r in reports if r.student == "answered"])
    assert "**? / 2 points** (needs manual grading)" in feedback and "0 / 2" not in feedback
    assert "1 / 1 points (and 2 for written answers, graded by hand)" in feedback

    result = grading_main(capsys, "check", str(class_dir / "answered.ipynb"), "--source", str(source_path))
    assert result.returncode == 0, "full marks on everything the grader can check: " + result.stdout
    assert "[why]: ?/2 needs manual grading (written answer)" in result.stdout


@pytest.mark.notebook
def test_self_check_explains_a_wrong_answer_with_visible_tests_only(capsys):
    partly = ROOT / "tests" / "sample_class" / "04-websocket-exercises" / "submissions" / "partly_wrong.ipynb"
    result = grading_main(capsys, "check", str(partly))
    assert result.returncode == 1
    # The decoder reads 127 as a 16-bit length: the visible tests catch it, and only that concept's points go...
    assert "[ws_frame_header_tests]: 2/2 passed" in result.stdout
    assert "[ws_frame_header_length_tests]: 0/2 failed" in result.stdout
    assert "payload_length should be 65536, but parse_frame_header gave 0" in result.stdout
    # ...and the forgotten masking key fails the overhead test, with what was expected and what came back.
    assert "[ws_overhead_tests]: 0/3 failed" in result.stdout
    assert "costs 6 bytes of frame header, but frame_overhead returned 2" in result.stdout
    # The written answer is left to a person: never 0, never counted against the visible total.
    assert "[ws_written_masking]: ?/2 needs manual grading" in result.stdout
    assert ": 5 / 10 points (and 2 for written answers, graded by hand)" in result.stdout
