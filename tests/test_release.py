"""``python -m grading release``: what students get holds the course and nothing that grades it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grading.generate import render
from grading.release import SOURCES_DIR, find_leaks, release, secret_lines

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "course"
    release(ROOT, out, nbgrader=True)
    return out


def test_the_release_has_the_course_and_not_the_instructors_tree(released):
    names = {p.name for p in released.iterdir()}
    assert {"notebooks", "exercises", "servers", "lab", "grading", "README.md", "environment.yml"} <= names
    assert not names & {"solutions", "tests", ".ci", ".git", "build"}, names
    assert not list(released.rglob("__pycache__")) and not list(released.rglob("*.egg-info"))


def test_every_exercise_is_generated_fresh_in_three_places(released):
    for source in sorted((ROOT / "solutions").glob("*.ipynb")):
        text = render(source)
        for copy in (released / "exercises" / source.name, released / SOURCES_DIR / source.name,
                     released / "release" / source.stem / source.name):
            assert copy.read_text(encoding="utf-8") == text, copy


def test_no_solution_or_hidden_test_line_is_anywhere_in_the_release(released):
    assert find_leaks(released, ROOT / "solutions") == []
    # and, independently of find_leaks, every long secret line of every source is in no file at all
    # in any copy of that exercise (lessons may teach what an exercise asks: not a leak), as a whole
    # line of a cell or, when long, anywhere in the file (an output, metadata)
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in released.rglob("*-exercises.ipynb")}
    lines = {p: {line.strip() for cell in nbformat.reads(text, as_version=4).cells for line in cell.source.splitlines()}
             for p, text in texts.items()}
    for source in sorted((ROOT / "solutions").glob("*.ipynb")):
        stub = {line.strip() for cell in nbformat.reads(render(source), as_version=4).cells
                for line in cell.source.splitlines()}
        for line in secret_lines(source) - stub:
            hits = [str(p.relative_to(released)) for p, text in texts.items() if p.name == source.name
                    and (line in lines[p] or (len(line) >= 40 and line in text))]
            assert not hits, f"{source.name}: {line!r} is in {hits}"


def test_a_planted_leak_is_found_and_nothing_is_left_behind(tmp_path):
    root = tmp_path / "checkout"
    (root / "solutions").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "def answer():\n    ### BEGIN SOLUTION\n    return 'forty-two, the secret answer'\n    ### END SOLUTION\n",
        metadata={"nbgrader": {"grade_id": "q1", "solution": True, "grade": False, "locked": False,
                               "schema_version": 3}})]
    nbformat.write(nb, root / "solutions" / "99-x-exercises.ipynb")
    (root / "notebooks").mkdir()
    leaky = nbformat.v4.new_notebook()
    leaky.cells = [nbformat.v4.new_code_cell("return 'forty-two, the secret answer'")]
    nbformat.write(leaky, root / "notebooks" / "99-x-exercises.ipynb")  # same name: a copy of the exercise
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="forty-two"):
        release(root, out)
    assert not out.exists(), "a failed release is removed"


def test_a_release_is_written_only_into_a_new_folder(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        release(ROOT, tmp_path / "used")


@pytest.mark.notebook
def test_the_self_check_in_a_release_uses_the_pristine_exercise_as_its_source(released, tmp_path):
    """A learner who deletes a visible test is still checked against it, with no solutions/ around."""
    exercise = released / "exercises" / "00-tour-exercises.ipynb"
    nb = nbformat.read(exercise, as_version=4)
    nb.cells = [c for c in nb.cells if not c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    nbformat.write(nb, exercise)  # every test cell deleted
    env = dict(os.environ, PYTHONPATH=str(released))
    result = subprocess.run([sys.executable, "-m", "grading", "check", "exercises/00-tour-exercises.ipynb"],
                            cwd=released, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not full marks yet" in result.stdout and "/ 0 points" not in result.stdout, result.stdout
