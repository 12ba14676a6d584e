"""Grading a class with hostile students in it: each submission sealed off from the others and from the grades.

tests/hostile_class/<exercise>/submissions holds two honest students (``correct``,
``partly_wrong``) and one hostile submission per attack on the grader (tests/hostile_class/README.md
says what each does; every one of them won points or hurt classmates under the grader before the
sandbox). They are graded against a frozen copy of the exercise beside them, so the course's
exercises can change without moving this test. The honest students must get exactly their rows of the expected gradebook, the hostile
ones no point they did not earn, and nothing any submission started may be alive once the batch
returns. Kernels run for real, sandboxed by bubblewrap; without bwrap these tests are skipped (CI
installs it), and the fast tests at the end check the parts that need no sandbox.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

from grading import run as run_module
from grading.batch import grade_class, write_feedback, write_gradebook
from grading.exact import plain, same
from grading.grade import _nbgrader_points
from grading.notebook import Question
from grading.run import CellResult, _cell_event, run_notebook
from grading.sandbox import status

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile_class"
EXERCISE = "05-stomp-exercises"
SOURCE = HOSTILE / EXERCISE / f"{EXERCISE}.ipynb"  # frozen: rewriting the course's exercise moves nothing here
HONEST = {"correct", "partly_wrong"}
ATTACKS = {
    "appends_to_classmates": "a detached process appends failures to every classmate's results file",
    "outlives_batch": "a detached process outlives the batch and rewrites gradebook.csv",
    "forges_results": "replaces its own results file with 'ok' lines",
    "copies_classmate": "finds the class folder in /proc/<pid>/cmdline and copies a classmate",
    "imports_solutions": "reads solutions/ through PYTHONPATH",
    "reads_hidden_tests": "reads the hidden tests from ../submission.ipynb and answers from them",
    "swallows_errors": "get_ipython().set_custom_exc swallows every test failure",
    "rewrites_tests": "an input transformer turns every test cell into `pass`",
    "strips_asserts": "an AST transformer turns assert and raise into pass",
    "always_equal": "returns objects equal to anything (a bytes subclass, too)",
    "patches_checks": "replaces grading.exact.same and builtins.isinstance",
}

sandboxed = pytest.mark.skipif(not status().isolated, reason=f"no sandbox here: {status().reason}")


def processes_marked(tag: str) -> list[str]:
    """Processes whose environment or command line carries ``tag`` (every process a submission started does)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] == os.getpid():
            continue
        try:
            marked = any(tag in arg for arg in process.info["cmdline"] or []) or process.environ().get("SPL_TEST_TAG") == tag
            if marked and process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{process.info['pid']}: {' '.join(process.info['cmdline'] or [])[:120]}")
        except (psutil.Error, TypeError):
            continue
    return found


def rows_by_student(text: str) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(text.splitlines()):
        found.setdefault(row["student"], []).append(row)
    return found


@sandboxed
@pytest.mark.slow
@pytest.mark.notebook
def test_hostile_class_gets_nothing_it_did_not_earn_and_leaves_nothing_behind(tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    monkeypatch.setenv("SPL_TEST_TAG", tag)  # inherited by the workers, kernels and whatever they start
    submissions = HOSTILE / EXERCISE / "submissions"
    assert {p.stem for p in submissions.glob("*.ipynb")} == HONEST | set(ATTACKS)
    out = tmp_path / "graded"
    out.mkdir()

    reports = grade_class(submissions, source=SOURCE, jobs=2, cell_timeout=10)
    left = processes_marked(tag)  # before anything else: a survivor could still write
    write_gradebook(reports, out / "gradebook.csv")
    write_feedback(reports, out / "feedback")
    assert not left, "processes started by submissions outlived the batch:\n" + "\n".join(left)

    got = rows_by_student((out / "gradebook.csv").read_text())
    expected = rows_by_student((HOSTILE / EXERCISE / "expected-gradebook.csv").read_text())
    assert set(got) == set(expected) == HONEST | set(ATTACKS)
    for student in sorted(HONEST):
        assert got[student] == expected[student], f"{student}'s rows were changed by a classmate:\n{got[student]}"
    for student in sorted(ATTACKS):
        earned = {r["question"]: r["points"] for r in expected[student]}
        given = {r["question"]: r["points"] for r in got[student]}
        notes = [r["reason"] for r in got[student] if r["question"] == "(notebook)"]
        assert given == earned, f"{student} ({ATTACKS[student]}): points {given}, expected {earned}; notes: {notes}"
    # The same file byte for byte: every reason too, including the notes on the kernel hooks.
    assert (out / "gradebook.csv").read_text() == (HOSTILE / EXERCISE / "expected-gradebook.csv").read_text()
    assert "set_custom_exc" in (out / "feedback" / "swallows_errors.md").read_text()


SANDBOX_VIEW = r'''
import os, socket, tempfile
from pathlib import Path

problems = []
here = Path.cwd()
box = here.parent
if sorted(os.listdir(box.parent)) != [box.name]:
    problems.append(f"beside the box: {sorted(os.listdir(box.parent))}")
if [e for e in os.listdir("/tmp") if e.startswith("grading-")] != [box.parent.name]:
    problems.append(f"/tmp shows {os.listdir('/tmp')}")
project = Path(PROJECT)
for hidden in ("solutions", "tests", "README.md"):
    if (project / hidden).exists():
        problems.append(f"{hidden} is visible")
if not (project / "servers" / "__init__.py").exists():
    problems.append("the servers package is not visible")
try:
    open(project / "servers" / "__init__.py", "a").close()  # opened for writing, nothing written
    problems.append("the project is writable")
except OSError:
    pass
if os.getpid() > 10 or len([p for p in os.listdir("/proc") if p.isdigit()]) > 10:
    problems.append(f"sees other processes: {sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}")
capabilities = [line for line in open("/proc/self/status") if line.startswith("CapEff")][0].split()[1]
if int(capabilities, 16):
    problems.append(f"has capabilities {capabilities}")
if [name for _, name in socket.if_nameindex()] != ["lo"]:
    problems.append(f"network interfaces {socket.if_nameindex()}")
with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    socket.create_connection(server.getsockname(), timeout=2).close()
if Path.home() != Path("/tmp"):
    problems.append(f"home is {Path.home()}")
assert not problems, problems
'''


@sandboxed
@pytest.mark.notebook
def test_a_sandboxed_kernel_sees_its_own_folder_and_loopback_only(monkeypatch):
    made = []
    real_mkdtemp = run_module.tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        made.append(os.stat(made[-1]).st_mode & 0o777)
        return made[-2]

    monkeypatch.setattr(run_module.tempfile, "mkdtemp", mkdtemp)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"PROJECT = {str(ROOT)!r}\n" + SANDBOX_VIEW)])
    result = run_notebook(nb, cell_timeout=30, notebook_timeout=60)
    assert result.isolated and not result.failure, result.failure
    cell = result.cells[0]
    assert cell.status == "ok", f"{cell.ename}: {cell.evalue}"
    assert made[1] == 0o700 and not Path(made[0]).exists(), "the grader's folder: private, and removed afterwards"


# --- the parts that need no sandbox --------------------------------------------------------------


def test_an_error_reply_scores_zero_even_when_no_error_was_shown():
    """A custom exception handler can hide a failure's output; the kernel's reply still says error."""
    cell = nbformat.v4.new_code_cell("assert False", metadata={"nbgrader": {"grade_id": "q_tests", "grade": True}})
    cell.outputs = []  # what nbclient collects when the failure's traceback was swallowed
    question = Question("q_tests", 4.0, "Q")

    def scored(reply) -> tuple[str, float]:
        event = _cell_event(3, cell, reply)
        event.pop("event")
        return event["status"], _nbgrader_points(question, CellResult(**event))

    assert scored({"content": {"status": "error", "ename": "AssertionError", "evalue": "wrong"}}) == ("error", 0.0)
    assert scored({"content": {"status": "ok"}}) == ("ok", 4.0)
    assert _cell_event(5, nbformat.v4.new_code_cell(""), None)["status"] == "ok"  # an empty cell is never sent


class _AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class _EqualBytes(bytes):
    def __eq__(self, other):
        return True

    __hash__ = bytes.__hash__


def test_same_trusts_only_plain_values():
    assert same(b"SEND\n", b"SEND\n") and same({"a": [1, (2, "x")]}, {"a": [1, (2, "x")]})
    assert same(0.1 + 0.2, 0.3, abs_tol=1e-9) and not same(0.1 + 0.2, 0.3)
    assert not same(_AlwaysEqual(), 3) and not same(_EqualBytes(b"x"), b"SEND\n")
    assert not same([1, _AlwaysEqual()], [1, 2]) and not same({"k": _AlwaysEqual()}, {"k": 1})
    assert not same({_AlwaysEqual(): 1}, {"k": 1}), "keys are values too"
    assert not same(1, True) and not same(True, 1) and same(False, False)
    assert not plain(type("Str", (str,), {})("x")), "a subclass of a built-in type is not plain"


def test_same_accepts_numpy_scalars_but_not_lookalikes():
    numpy = pytest.importorskip("numpy")
    assert same(numpy.float64(370.0), 370, abs_tol=1e-6) and same(numpy.int64(3), 3)
    lookalike = type("float64", (float,), {"__module__": "numpy", "__eq__": lambda self, other: True})
    assert not same(lookalike(1.0), 2.0)


def test_gradebook_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    from grading import batch
    from grading.grade import GradeReport, QuestionResult

    report = GradeReport("ann", "ex", Path("s"), Path("n"), [QuestionResult("q", "Q", 1.0, 1.0, "passed")])
    book = tmp_path / "gradebook.csv"
    book.write_text("the old gradebook\n")

    def refuse(*args):
        raise OSError("disk full")

    monkeypatch.setattr(batch.os, "replace", refuse)
    with pytest.raises(OSError):
        write_gradebook([report], book)
    assert book.read_text() == "the old gradebook\n" and sorted(p.name for p in tmp_path.iterdir()) == ["gradebook.csv"]
    monkeypatch.undo()
    write_gradebook([report], book)
    assert book.read_text().splitlines()[1] == "ann,ex,q,1,1,passed," and len(list(tmp_path.iterdir())) == 1


@pytest.mark.notebook
def test_without_bwrap_grading_works_and_says_submissions_are_not_isolated(tmp_path):
    (tmp_path / "class").mkdir()
    shutil.copy(HOSTILE / EXERCISE / "submissions" / "correct.ipynb", tmp_path / "class" / "ann.ipynb")
    done = subprocess.run([sys.executable, "-m", "grading", "batch", str(tmp_path / "class"), "--out", str(tmp_path / "out"),
                           "--source", str(SOURCE), "--cell-timeout", "10"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SPL_GRADING_BWRAP": "off"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NOT isolated" in done.stderr.splitlines()[0]
    assert "ann 05-stomp-exercises: 10/10" in done.stdout
