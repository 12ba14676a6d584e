"""Run one notebook in a fresh kernel, in a process of its own, under a per-cell and a per-notebook time limit.

Why a separate process per notebook: student code may loop forever, start a server and never
stop it, spawn threads that keep the interpreter alive, or end the kernel with ``os._exit``. The
parent (:func:`run_notebook`) starts a worker (``python -m grading.run``) in a new session,
waits at most the notebook limit, and then kills the worker and every process below it, and
each kernel's process group (jupyter_client starts every kernel in a session of its own), so
nothing a student started outlives the grading of that student.

Why the kernel is sandboxed (:mod:`grading.sandbox`, where bubblewrap is available): it runs code
by someone who gains from a higher grade. It sees its own folder, a private /tmp, its own
processes and loopback, and everything it starts dies with it: the notebook with the hidden
tests, the worker and the other students are out of its reach.

Why results never pass through a file: the worker, outside the sandbox, is the only judge. It
takes each cell's result from the kernel's own execute_reply and outputs as nbclient receives
them, and sends one JSON line per executed cell to the parent over a pipe that no kernel holds,
as it goes, so a notebook stopped at its limit keeps the results it earned. A test cell whose
reply reports an error scores nothing, even when the submission kept the error from showing.

Inside the worker, nbclient executes the cells one by one with errors allowed (a failing
question does not stop the next one). Before each test cell the worker puts back what a
submission can hook into the kernel (:mod:`grading.kernel_guard`). A cell over the per-cell
limit is interrupted (KeyboardInterrupt in the kernel) and grading goes on. If the kernel dies,
it is restarted once per crash, the set-up and solution cells before the crashing cell are
replayed, the crashing cell scores nothing, and grading continues after it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.sandbox import kill_and_wait, process_tree

__all__ = ["CellResult", "RunResult", "run_notebook", "worker_main"]

TIMEOUT_ENAME = "CellTimeout"
CRASH_ENAME = "KernelDied"
GUARD_ENAME = "GradingGuard"
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
    undone: list = field(default_factory=list)  # kinds of change to the kernel put back before this test


@dataclass
class RunResult:
    cells: dict[int, CellResult] = field(default_factory=dict)
    notebook_timed_out: bool = False
    failure: str = ""  # the whole run failed (kernel would not start, ...), in words
    seconds: float = 0.0
    isolated: bool = False  # the kernel ran in a sandbox (grading.sandbox)


# ---------------------------------------------------------------------------------------------
# Parent side.


def run_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float, notebook_timeout: float,
                 env: dict[str, str] | None = None) -> RunResult:
    """Execute ``nb`` in a worker process + fresh (sandboxed) kernel; never raises for student faults."""
    from grading.paths import kernel_env
    from grading.sandbox import status

    sandbox = status()
    started = time.monotonic()
    # mkdtemp: a folder only we may enter (0700) whose name cannot be guessed. The notebook (with
    # the hidden tests) stays beside the box, which is all of it a sandboxed kernel sees.
    scratch = Path(tempfile.mkdtemp(prefix="grading-"))
    try:
        notebook_path = scratch / "submission.ipynb"
        box = scratch / "box"
        (box / "work").mkdir(parents=True)
        nbformat.write(nb, str(notebook_path))
        command = [sys.executable, "-m", "grading.run", str(notebook_path), "--box", str(box),
                   "--cell-timeout", str(cell_timeout)] + (["--bwrap", sandbox.bwrap] if sandbox.isolated else [])
        read_end, write_end = os.pipe()
        try:
            worker = subprocess.Popen(command + ["--results-fd", str(write_end)], env=env or kernel_env(),
                                      start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, pass_fds=(write_end,))
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        results = _ResultReader(read_end)
        timed_out = False
        try:
            _, stderr = worker.communicate(timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stderr = b""
        finally:
            _kill_everything(worker, results.kernels())
        result = _read_results(results.finish())
        result.notebook_timed_out = timed_out
        result.isolated = sandbox.isolated
        if not timed_out and worker.returncode not in (0, None) and not result.failure:
            tail = (stderr or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            result.failure = f"the grading worker failed: {tail[0]}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


class _ResultReader:
    """Collects the worker's result lines from the pipe in a thread (a full pipe would block the worker)."""

    def __init__(self, fd: int) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._file = os.fdopen(fd, "r", encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._read, name="grading-results", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._file:
            for line in self._file:
                with self._lock:
                    self._lines.append(line)

    def kernels(self) -> list[tuple[int, float]]:
        """(pid, start time) of each kernel the worker started and has not itself ended."""
        with self._lock:
            lines = list(self._lines)
        events = list(_events(lines))
        ended = {e.get("pid") for e in events if e.get("event") == "kernel_ended"}
        return [(e["pid"], e.get("started", 0.0)) for e in events if e.get("event") == "kernel" and e["pid"] not in ended]

    def finish(self) -> list[str]:
        """Every line, once the pipe is closed (everything that held it is dead by now)."""
        self._thread.join(timeout=30)
        with self._lock:
            return list(self._lines)


def _events(lines: list[str]):
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if isinstance(event, dict):
            yield event


def _kill_everything(worker: subprocess.Popen, kernels: list[tuple[int, float]]) -> None:
    """Kill the worker, every process below it, and every kernel it left running; wait until all are gone.

    A kernel counts only while its pid still names the process the worker started (same start
    time): pids are reused, and the next one may be another student's kernel.
    """
    doomed = process_tree(worker.pid)
    groups = [worker.pid]
    for pid, started in kernels:
        tree = process_tree(pid, include_root=True)
        if tree and abs(tree[0].create_time() - started) < 0.01:
            doomed += tree
            groups.append(pid)
    kill_and_wait(doomed, groups)
    try:
        worker.communicate(timeout=10)  # reaps it and drains its stderr
    except (subprocess.TimeoutExpired, ValueError):  # pragma: no cover - SIGKILL does not fail
        pass


def _read_results(lines: list[str]) -> RunResult:
    result = RunResult()
    if not lines:
        result.failure = "the grading worker did not start"
        return result
    for event in _events(lines):
        if event.get("event") == "cell":
            event.pop("event")
            result.cells[event["index"]] = CellResult(**event)
        elif event.get("event") == "failure":
            result.failure = event["reason"]
    return result


# ---------------------------------------------------------------------------------------------
# Worker side (python -m grading.run).


class _Results:
    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, **event) -> None:
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()


def _error_of(cell) -> tuple[str, str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), output.get("evalue", "")
    return "", ""


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader") or {}
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell) -> str | None:
    return _nbgrader(cell).get("grade_id") or None


def _is_grade(cell) -> bool:
    return bool(_nbgrader(cell).get("grade"))


def _is_solution(cell) -> bool:
    return bool(_nbgrader(cell).get("solution"))


def _is_test(cell) -> bool:
    return _is_grade(cell) and not _is_solution(cell)


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


def _cell_event(index: int, cell, reply: dict | None) -> dict:
    """A cell's result as the kernel's execute_reply and outputs tell it, whatever the cell printed.

    An error status in the reply is an error even when no error output came (a custom exception handler
    can hide it), added to the scored outputs so that nbgrader's rule scores 0 too. No reply: an empty cell.
    """
    ename, evalue = _error_of(cell)
    outputs = _scored_outputs(cell)
    content = reply.get("content") or {} if reply is not None else {"status": "ok"}
    if content.get("status") != "ok" and not ename:
        ename = content.get("ename") or "Error"
        evalue = content.get("evalue") or f"the kernel reported the status {content.get('status')!r}"
        outputs.append({"output_type": "error", "ename": ename, "evalue": evalue[:4000], "traceback": []})
    return {"event": "cell", "index": index, "grade_id": _grade_id(cell), "status": "error" if ename else "ok",
            "ename": ename, "evalue": evalue, "stderr": _stderr_of(cell)[-2000:], "outputs": outputs}


def worker_main(argv: list[str] | None = None) -> int:
    # Only nbclient here: importing nbgrader would cost seconds per submission; the parent scores.
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from grading.kernel_guard import Guard, GuardFailed, test_imports
    from grading.paths import servers_path
    from grading.sandbox import kernel_manager

    # jupyter_client interrupts a cell with SIGINT to the kernel's process group, which includes
    # bwrap, and SIGINT would end bwrap and the sandbox with it. Ignored here, it is ignored by
    # every process we start; ipykernel installs its own handler while a cell runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m grading.run")
    parser.add_argument("notebook")
    parser.add_argument("--box", required=True, help="the kernel's folder: its working folder and sockets")
    parser.add_argument("--results-fd", type=int, required=True, help="where the result lines go (a pipe)")
    parser.add_argument("--cell-timeout", type=float, default=30)
    parser.add_argument("--bwrap", default=None, help="run the kernel in a bubblewrap sandbox with this binary")
    args = parser.parse_args(argv)

    nb = nbformat.read(args.notebook, as_version=4)
    results = _Results(args.results_fd)
    box = Path(args.box)
    workdir = box / "work"
    client = NotebookClient(nb, timeout=int(max(1, args.cell_timeout)), allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}, startup_timeout=60)
    replies: dict[int, dict] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: replies.__setitem__(cell_index, execute_reply)
    guard = Guard(client, test_imports(nb), timeout=max(1.0, args.cell_timeout))
    numbers = itertools.count(1)
    project = Path(servers_path()) if servers_path() else None

    def start_kernel() -> None:
        client.km = kernel_manager(box, args.bwrap, next(numbers), project)
        # the kernel's output goes nowhere: it must never reach the results pipe or the parent
        client.start_new_kernel(cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client.start_new_kernel_client()
        guard.new_kernel()
        pid = client.km.provisioner.process.pid if client.km.provisioner else None
        if pid:
            alive = process_tree(pid, include_root=True)
            results.write(event="kernel", pid=pid, started=alive[0].create_time() if alive else 0.0)

    try:
        start_kernel()
    except Exception as exc:
        results.write(event="failure", reason=f"the Python kernel did not start ({exc.__class__.__name__}: {exc})")
        return 2

    def interrupt() -> None:
        try:
            run_sync(client.km.interrupt_kernel)()  # an async kernel manager: must be awaited
        except Exception:
            pass

    def alive() -> bool:
        try:
            return bool(run_sync(client.km.is_alive)())
        except Exception:
            return False

    restarts = 0
    not_replayed: set[int] = set()  # cells that crashed or timed out are not run again after a restart
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = _grade_id(cell)
        undone: list[str] = []
        try:
            if _is_solution(cell):
                guard.install()
            elif _is_test(cell):
                undone = guard.reset()
            client.execute_cell(cell, index)
        except GuardFailed as exc:
            if not alive():  # the kernel died between cells (a thread that called os._exit, say)
                died = True
            elif exc.busy:
                results.write(event="cell", index=index, grade_id=gid, status="timeout", ename=TIMEOUT_ENAME,
                              evalue=f"the kernel was still busy with an earlier cell; did not start within the "
                                     f"per-cell limit of {args.cell_timeout:g} s")
                interrupt()
                continue
            else:
                results.write(event="cell", index=index, grade_id=gid, status="error", ename=GUARD_ENAME,
                              evalue=f"{exc}; the test was not run",
                              outputs=[{"output_type": "error", "ename": GUARD_ENAME, "evalue": str(exc), "traceback": []}])
                continue
        except CellTimeoutError:
            not_replayed.add(index)
            results.write(event="cell", index=index, grade_id=gid, status="timeout", ename=TIMEOUT_ENAME,
                          evalue=f"did not finish within the per-cell limit of {args.cell_timeout:g} s", undone=undone)
            interrupt()
            continue
        except DeadKernelError:
            died = True
        else:
            died = False
        if died:
            not_replayed.add(index)
            results.write(event="cell", index=index, grade_id=gid, status="crashed", ename=CRASH_ENAME,
                          evalue="the Python kernel died while running this cell (for example os._exit or a crash)",
                          undone=undone)
            if restarts >= MAX_RESTARTS:
                results.write(event="failure", reason="the kernel died too often; grading stopped")
                return 0
            restarts += 1
            try:
                _kill_kernel(client, results)
                start_kernel()
                _replay(client, nb, guard, upto=index, skip=not_replayed)
            except Exception as exc:
                results.write(event="failure", reason=f"the kernel could not be restarted after a crash ({exc})")
                return 0
            continue
        results.write(**_cell_event(index, cell, replies.pop(index, None)), undone=undone)
    _kill_kernel(client, results)
    return 0


def _replay(client, nb, guard, *, upto: int, skip: set[int]) -> None:
    """Re-run the set-up and solution cells before ``upto`` in a new kernel; their results are not recorded."""
    for index, cell in enumerate(nb.cells[:upto]):
        if cell.cell_type == "code" and index not in skip and not _is_grade(cell):
            if _is_solution(cell):
                guard.install()
            try:
                client.execute_cell(nbformat.from_dict(dict(cell)), index)
            except Exception:
                return


def _kill_kernel(client, results: _Results) -> None:
    """Kill the kernel and everything below it at once (no graceful shutdown a student thread could block)."""
    km = client.km
    if km is None:
        return
    process = km.provisioner.process if km.provisioner else None
    try:
        client.kc.stop_channels()
    except Exception:
        pass
    if process is not None:
        kill_and_wait(process_tree(process.pid, include_root=True), [process.pid])
        try:
            process.wait(timeout=5)
        except Exception:
            pass
        results.write(event="kernel_ended", pid=process.pid)
    try:
        from jupyter_core.utils import ensure_async, run_sync

        run_sync(lambda: ensure_async(km.cleanup_resources()))()  # connection files, sockets
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(worker_main())
