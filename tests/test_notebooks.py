"""Every notebook runs top to bottom in a fresh kernel within its time budget, and is committed clean.

- notebooks/ (lessons) and solutions/ (exercises with their solutions) must run without error.
- exercises/ (generated: solutions replaced by ``raise NotImplementedError()``) are run with
  errors allowed; the only cells allowed to fail are nbgrader solution stubs and graded test cells.
- Every notebook in the repository is stored without outputs and execution counts.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from grading.lessons import discover, error_cells, execute, is_graded_cell, is_solution_cell, time_budget

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = discover(ROOT, ("notebooks", "solutions"))
EXERCISES = discover(ROOT, ("exercises",))


def _with_budget(paths: list[Path]) -> list:
    """Each notebook as a test parameter whose pytest time-out leaves room for its own budget."""
    params = []
    for path in paths:
        try:
            budget = time_budget(nbformat.read(path, as_version=4))
        except Exception:  # unreadable: the test itself reports it
            budget = 120
        params.append(pytest.param(path, marks=pytest.mark.timeout(budget + 60), id=str(path.relative_to(ROOT))))
    return params


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _failure(result) -> str:
    text = str(result.error)
    return "\n".join(text.strip().splitlines()[-40:])


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", _with_budget(RUNNABLE))
def test_notebook_runs_in_a_fresh_kernel(path):
    result = execute(path)
    if not result.ok:
        pytest.fail(f"{_id(path)} failed after {result.seconds:.1f} s:\n{_failure(result)}", pytrace=False)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", _with_budget(EXERCISES))
def test_exercise_fails_only_in_stub_and_graded_cells(path):
    result = execute(path, allow_errors=True)
    if result.error is not None:  # a time-out or a dead kernel, not a failing cell
        pytest.fail(f"{_id(path)} did not run through: {_failure(result)}", pytrace=False)
    unexpected = [(i, cell) for i, cell in error_cells(result.nb)
                  if not (is_solution_cell(cell) or is_graded_cell(cell))]
    messages = []
    for i, cell in unexpected:
        error = next(o for o in cell.outputs if o.output_type == "error")
        messages.append(f"cell {i} ({cell.source.splitlines()[0][:60] if cell.source else ''!r}): "
                        f"{error.ename}: {error.evalue}")
    assert not unexpected, f"{_id(path)}: cells other than stubs and graded tests failed:\n" + "\n".join(messages)


def _tracked_notebooks() -> list[Path]:
    """Notebooks git knows of (committed or new but not ignored), else every one found on disk.

    Test fixtures under tests/ are left out: sample student submissions carry outputs (and some
    are broken) on purpose.
    """
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.ipynb"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
        found = [ROOT / p for p in listed if (ROOT / p).exists()]
    except (OSError, subprocess.CalledProcessError):
        found = [p for p in ROOT.rglob("*.ipynb") if not {".ipynb_checkpoints", ".venv", "build"} & set(p.parts)]
    return sorted(p for p in found if p.relative_to(ROOT).parts[0] != "tests")


@pytest.mark.parametrize("path", _tracked_notebooks(), ids=_id)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{_id(path)}: code cells {dirty} carry outputs or execution counts; clear them "
                       f"(jupyter nbconvert --clear-output --inplace {_id(path)})")


@pytest.mark.parametrize("path", RUNNABLE, ids=_id)
def test_notebook_declares_a_time_budget_and_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    budget = nb.get("metadata", {}).get("server_push_lab", {}).get("timeout_seconds")
    assert isinstance(budget, int) and budget > 0, (
        f'{_id(path)}: add metadata {{"server_push_lab": {{"timeout_seconds": N}}}} with its time budget')
    if path.parent.name == "notebooks":
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{_id(path)}: a lesson needs exactly one cell tagged 'parameters'"


def test_discovery_finds_the_tour():
    assert ROOT / "notebooks" / "00-tour.ipynb" in RUNNABLE


def _write(path: Path, *sources: str, budget: int | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    if budget is not None:
        nb.metadata["server_push_lab"] = {"timeout_seconds": budget}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_lessons_command_renders_html_and_reports_failures(tmp_path, capsys):
    from grading.lessons import main

    _write(tmp_path / "notebooks" / "01-good.ipynb", "print('fine')")
    _write(tmp_path / "notebooks" / "02-bad.ipynb", "1 / 0")
    out = tmp_path / "build"
    assert main([str(out), "--root", str(tmp_path)]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["01-good.html", "02-bad.html"]
    printed = capsys.readouterr()
    assert "01-good.ipynb" in printed.out and "ok" in printed.out and "FAILED" in printed.out
    assert "ZeroDivisionError" in printed.err
    assert main([str(out), "--root", str(tmp_path), "--only", "good"]) == 0


@pytest.mark.notebook
def test_the_time_budget_bounds_the_whole_notebook(tmp_path):
    # Three cells of 2.5 s: each alone fits within 6 s, together they exceed the 6 s budget.
    path = _write(tmp_path / "slow.ipynb", "import time; time.sleep(2.5)", "time.sleep(2.5)", "time.sleep(2.5)",
                  "print('end')", budget=6)
    result = execute(path)
    assert not result.ok and "end" not in str(result.nb.cells[3].get("outputs"))
