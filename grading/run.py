"""Run one notebook in a fresh kernel, in a process of its own, under a per-cell and a per-notebook time limit.

Why a separate process per notebook: student code may loop forever, start a server and never
stop it, spawn threads that keep the interpreter alive, or end the kernel with ``os._exit``. The
parent (:func:`run_notebook`) starts a worker (``python -m grading.run``) in a new session,
waits at most the notebook limit, and then kills the worker's process group *and* the kernel's
(jupyter_client starts every kernel in a session of its own), so nothing a student started
outlives the grading of that student. The worker writes one JSON line per executed cell to a
progress file as it goes, so a notebook stopped at its limit keeps the results it earned.

Inside the worker, nbclient executes the cells one by one with errors allowed (a failing
question does not stop the next one). A cell over the per-cell limit is interrupted
(KeyboardInterrupt in the kernel) and grading goes on. If the kernel dies, it is restarted
once per crash, the set-up and solution cells before the crashing cell are replayed, the
crashing cell scores nothing, and grading continues after it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = ["CellResult", "RunResult", "run_notebook", "worker_main"]

TIMEOUT_ENAME = "CellTimeout"
CRASH_ENAME = "KernelDied"
MAX_RESTARTS = 2


@dataclass
class CellResult:
    """What happened to one cell: ``status`` is ok, error, timeout, crashed or not_run."""

    index: int
    grade_id: str | None
    status: str
    ename: str = ""
    evalue: str = ""
    stderr: str = ""
    outputs: list = field(default_factory=list)  # error, stderr and result outputs: what nbgrader scores


@dataclass
class RunResult:
    cells: dict[int, CellResult] = field(default_factory=dict)
    notebook_timed_out: bool = False
    failure: str = ""  # the whole run failed (kernel would not start, ...), in words
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Parent side.


def run_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float, notebook_timeout: float,
                 env: dict[str, str] | None = None) -> RunResult:
    """Execute ``nb`` in a worker process + fresh kernel, in a scratch directory; never raises for student faults."""
    from grading.paths import kernel_env

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grading-") as scratch:
        scratch_path = Path(scratch)
        notebook_path = scratch_path / "submission.ipynb"
        progress_path = scratch_path / "progress.jsonl"
        workdir = scratch_path / "work"
        workdir.mkdir()
        nbformat.write(nb, str(notebook_path))
        command = [sys.executable, "-m", "grading.run", str(notebook_path), "--progress", str(progress_path),
                   "--cwd", str(workdir), "--cell-timeout", str(cell_timeout)]
        worker = subprocess.Popen(command, env=env or kernel_env(), start_new_session=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        timed_out = False
        try:
            _, stderr = worker.communicate(timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stderr = b""
        finally:
            _kill_everything(worker, progress_path)
        result = _read_progress(progress_path)
        result.notebook_timed_out = timed_out
        if not timed_out and worker.returncode not in (0, None) and not result.failure:
            tail = (stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            result.failure = f"the grading worker failed: {tail[0]}"
    result.seconds = time.monotonic() - started
    return result


def _kill_everything(worker: subprocess.Popen, progress_path: Path) -> None:
    """Kill the worker's process group and every kernel's process group it reported."""
    kernels = []
    if progress_path.exists():
        for line in progress_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "kernel":
                kernels.append(event["pid"])
    for pgid in [worker.pid, *kernels]:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass
    if worker.stderr:
        worker.stderr.close()


def _read_progress(path: Path) -> RunResult:
    result = RunResult()
    if not path.exists():
        result.failure = "the grading worker did not start"
        return result
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if event.get("event") == "cell":
            event.pop("event")
            result.cells[event["index"]] = CellResult(**event)
        elif event.get("event") == "failure":
            result.failure = event["reason"]
    return result


# ---------------------------------------------------------------------------------------------
# Worker side (python -m grading.run).


class _Progress:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")

    def write(self, **event) -> None:
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def _error_of(cell) -> tuple[str, str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), output.get("evalue", "")
    return "", ""


def _grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id") or None


def _is_grade(cell) -> bool:
    return bool((cell.get("metadata", {}).get("nbgrader") or {}).get("grade"))


def _scored_outputs(cell) -> list:
    """The outputs nbgrader's determine_grade looks at (errors, stderr, the result), trimmed; no images."""
    kept = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "error":
            kept.append({"output_type": "error", "ename": output.get("ename", ""), "evalue": output.get("evalue", "")[:4000],
                         "traceback": []})
        elif kind == "stream" and output.get("name") == "stderr":
            kept.append({"output_type": "stream", "name": "stderr", "text": output.get("text", "")[-2000:]})
        elif kind == "execute_result":
            text = output.get("data", {}).get("text/plain", "")
            kept.append({"output_type": "execute_result", "data": {"text/plain": text[:200]}, "metadata": {},
                         "execution_count": None})
    return kept


def _stderr_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")


def worker_main(argv: list[str] | None = None) -> int:
    # Only nbclient here: importing nbgrader would cost seconds per submission; the parent scores.
    from nbclient import NotebookClient
    from jupyter_core.utils import run_sync
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    parser = argparse.ArgumentParser(prog="python -m grading.run")
    parser.add_argument("notebook")
    parser.add_argument("--progress", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--cell-timeout", type=float, default=30)
    args = parser.parse_args(argv)

    nb = nbformat.read(args.notebook, as_version=4)
    progress = _Progress(args.progress)
    client = NotebookClient(nb, timeout=int(max(1, args.cell_timeout)), allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": args.cwd}}, startup_timeout=60)

    def start_kernel() -> None:
        client.km = client.create_kernel_manager()
        client.start_new_kernel(cwd=args.cwd)
        client.start_new_kernel_client()
        pid = client.km.provisioner.process.pid if client.km.provisioner else None
        if pid:
            progress.write(event="kernel", pid=pid)

    try:
        start_kernel()
    except Exception as exc:
        progress.write(event="failure", reason=f"the Python kernel did not start ({exc.__class__.__name__}: {exc})")
        return 2

    restarts = 0
    not_replayed: set[int] = set()  # cells that crashed or timed out are not run again after a restart
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = _grade_id(cell)
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            not_replayed.add(index)
            progress.write(event="cell", index=index, grade_id=gid, status="timeout", ename=TIMEOUT_ENAME,
                           evalue=f"did not finish within the per-cell limit of {args.cell_timeout:g} s")
            try:
                run_sync(client.km.interrupt_kernel)()  # an async kernel manager: must be awaited
            except Exception:
                pass
            continue
        except DeadKernelError:
            not_replayed.add(index)
            progress.write(event="cell", index=index, grade_id=gid, status="crashed", ename=CRASH_ENAME,
                           evalue="the Python kernel died while running this cell (for example os._exit or a crash)")
            if restarts >= MAX_RESTARTS:
                progress.write(event="failure", reason="the kernel died too often; grading stopped")
                return 0
            restarts += 1
            try:
                _kill_kernel(client)
                start_kernel()
                _replay(client, nb, upto=index, skip=not_replayed, is_replayed=lambda c: not _is_grade(c))
            except Exception as exc:
                progress.write(event="failure", reason=f"the kernel could not be restarted after a crash ({exc})")
                return 0
            continue
        ename, evalue = _error_of(cell)
        progress.write(event="cell", index=index, grade_id=gid, status="error" if ename else "ok", ename=ename,
                       evalue=evalue, stderr=_stderr_of(cell)[-2000:], outputs=_scored_outputs(cell))
    _kill_kernel(client)
    return 0


def _replay(client, nb, *, upto: int, skip: set[int], is_replayed) -> None:
    """Re-run the set-up and solution cells before ``upto`` in a new kernel; their results are not recorded."""
    for index, cell in enumerate(nb.cells[:upto]):
        if cell.cell_type == "code" and index not in skip and is_replayed(cell):
            try:
                client.execute_cell(nbformat.from_dict(dict(cell)), index)
            except Exception:
                return


def _kill_kernel(client) -> None:
    """Kill the kernel's whole process group at once (no graceful shutdown a student thread could block)."""
    km = client.km
    if km is None:
        return
    process = km.provisioner.process if km.provisioner else None
    try:
        client.kc.stop_channels()
    except Exception:
        pass
    if process is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=5)
        except Exception:
            pass
    try:
        from jupyter_core.utils import ensure_async, run_sync

        run_sync(lambda: ensure_async(km.cleanup_resources()))()  # connection files, ports
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(worker_main())
