"""Execute lessons headless, the way an instructor checks that the course still runs.

``python -m grading.lessons build/`` runs every notebook in ``notebooks/`` in a fresh kernel,
writes the rendered HTML to ``build/``, prints how long each took, and exits non-zero if any
failed. The tests (tests/test_notebooks.py) use the same functions, so "the lessons run" means
one thing everywhere.

Each notebook carries its time budget in its metadata, ``{"server_push_lab": {"timeout_seconds":
N}}`` (default 120 s). The budget bounds the whole notebook, not each cell: every cell gets what
is left of it.

Kernels talk to us over IPC sockets in a private temporary folder instead of TCP ports: random
TCP ports picked by several kernels starting at once (parallel tests) can collide. The kernel
manager is the asynchronous one nbclient uses by default: with a synchronous one, nbclient's cell
time-outs are not enforced.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NOTEBOOK_DIRS", "DEFAULT_TIMEOUT", "discover", "time_budget", "execute", "Execution",
           "error_cells", "is_solution_cell", "is_graded_cell", "main"]

NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
DEFAULT_TIMEOUT = 120


def discover(root: str | Path = ".", dirs: tuple[str, ...] = NOTEBOOK_DIRS) -> list[Path]:
    """Every ``.ipynb`` under ``root/<dir>`` for each dir, sorted, checkpoints left out."""
    found = []
    for name in dirs:
        folder = Path(root) / name
        if folder.is_dir():
            found += [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    return sorted(found)


def time_budget(nb: Any) -> int:
    """The notebook's time budget in seconds, from its metadata (default 120)."""
    meta = nb.get("metadata", {}).get("server_push_lab", {}) or {}
    return int(meta.get("timeout_seconds", DEFAULT_TIMEOUT))


@dataclass
class Execution:
    """What running one notebook gave: the executed notebook, the seconds it took, the error if any."""

    path: Path | None
    nb: Any
    seconds: float
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(notebook: str | Path | Any, *, cwd: str | Path | None = None, allow_errors: bool = False,
            budget: int | None = None, kernel_name: str = "python3") -> Execution:
    """Run a notebook (a path or an nbformat node) top to bottom in a fresh kernel.

    The kernel's working folder is the notebook's own folder (or ``cwd``). With
    ``allow_errors=True`` every cell runs and errors stay in the outputs (see :func:`error_cells`);
    otherwise the first error stops the run and is returned in ``Execution.error``.
    """
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    path = None
    if isinstance(notebook, (str, Path)):
        path = Path(notebook)
        nb = nbformat.read(path, as_version=4)
        cwd = cwd or path.parent
    else:
        nb = notebook
    budget = budget or time_budget(nb)
    deadline = time.monotonic() + budget

    def remaining(_cell: Any) -> int:  # every cell gets what is left of the notebook's budget
        return max(1, math.ceil(deadline - time.monotonic()))

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spl-kernel-") as ipc_dir:
        km = AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=str(Path(ipc_dir) / "kernel"),
                           connection_file=str(Path(ipc_dir) / "kernel.json"))
        client = NotebookClient(nb, km=km, timeout=budget, timeout_func=remaining, allow_errors=allow_errors,
                                resources={"metadata": {"path": str(cwd or Path.cwd())}})
        error = None
        try:
            client.execute()
        except Exception as exc:  # CellExecutionError, CellTimeoutError, DeadKernelError
            error = exc
        finally:
            # nbclient shuts down only kernels it created itself; this one is ours to stop, or it
            # (and every server it started) lives until this process ends.
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
    return Execution(path, nb, time.monotonic() - started, error)


def is_solution_cell(cell: Any) -> bool:
    """An nbgrader solution region (in exercises/ it holds the ``raise NotImplementedError()`` stub)."""
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def is_graded_cell(cell: Any) -> bool:
    """An nbgrader graded test cell (it fails while the stub above it is not filled in)."""
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("grade"))


def error_cells(nb: Any) -> list[tuple[int, Any]]:
    """(index, cell) of every code cell whose outputs hold an error."""
    return [(i, cell) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", []))]


def render_html(nb: Any, target: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    target.write_text(body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading.lessons",
                                     description="Execute every lesson headless and write rendered HTML.")
    parser.add_argument("out", nargs="?", default="build", help="folder for the HTML (default: build/)")
    parser.add_argument("--root", default=".", help="the repository (default: the current folder)")
    parser.add_argument("--only", default="", help="run only notebooks whose name contains this text")
    parser.add_argument("--ipynb", action="store_true",
                        help="also write each executed notebook, outputs included, as OUT/<name>.ipynb "
                             "(the course site is built from these: make site)")
    args = parser.parse_args(argv)

    lessons = [p for p in discover(args.root, ("notebooks",)) if args.only in p.name]
    if not lessons:
        print(f"no lessons found in {Path(args.root) / 'notebooks'}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in lessons:
        result = execute(path)
        render_html(result.nb, out / (path.stem + ".html"))
        if args.ipynb:
            import nbformat
            nbformat.write(result.nb, out / path.name)
        status = "ok" if result.ok else "FAILED"
        print(f"{path.name:<40} {result.seconds:6.1f} s  {status}", flush=True)
        if not result.ok:
            failed.append(path.name)
            print(_short(result.error), file=sys.stderr)
    print(f"{len(lessons) - len(failed)} of {len(lessons)} lessons ran; HTML in {out}/")
    return 1 if failed else 0


def _short(error: BaseException | None, lines: int = 25) -> str:
    text = str(error or "")
    parts = text.strip().splitlines()
    return "\n".join(parts[-lines:])


if __name__ == "__main__":
    sys.exit(main())
