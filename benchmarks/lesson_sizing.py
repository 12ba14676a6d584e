"""What one learner's lesson costs a hub: peak memory, processes, ports, CPU seconds and time per lesson.

``python -m benchmarks.lesson_sizing`` runs every lesson in ``notebooks/`` in a fresh kernel, as
``make lessons`` does, while a sampler thread watches every process below this one: the kernel
and whatever it starts (servers in child processes, ``redis-server``, nginx and its workers).
Results go to ``benchmarks/results/lesson_sizing.csv``; ``--readme`` then writes the README's
instructor table from it (between its ``lesson-sizing`` markers; ``tests/test_benchmarks.py``
checks the two agree).

What each column means:

- ``peak_rss_mib``: the largest sum, at one sample, of the resident memory of every process
  below the benchmark (the kernel included): what the learner's server must hold at once. Each
  process counts its proportional set size (shared pages split among their sharers: Linux
  ``/proc/PID/smaps_rollup``), so a browser's ten processes are not counted ten times over.
- ``peak_processes`` and ``peak_listening_ports``: the most processes, and TCP sockets in LISTEN
  state owned by them, at one sample.
- ``cpu_s``: user + system CPU seconds of those processes, each counted at the last sample it was
  seen in. A process that starts and ends between two samples (every 0.2 s) is missed, so this
  is a lower bound; the kernel's own time, most of it, is exact.
- ``seconds``: wall time of the whole lesson on this machine.

Sizing a hub from it: memory per learner is the peak (they do not add up over a lesson: each
lesson stops what it started), CPU is a burst per lesson, not a steady load.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import threading
from pathlib import Path

import psutil

from grading.lessons import discover, execute

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "lesson_sizing.csv"
COLUMNS = ["lesson", "seconds", "peak_rss_mib", "peak_processes", "peak_listening_ports", "cpu_s", "ok"]
INTERVAL_S = 0.2


class TreeSampler:
    """Samples every process below this one until stopped; keeps the peaks and the CPU seen."""

    def __init__(self) -> None:
        self.me = psutil.Process(os.getpid())
        self.peak_rss = 0
        self.peak_processes = 0
        self.peak_ports = 0
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create_time) -> CPU seconds at last sight
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(INTERVAL_S)

    def sample(self) -> None:
        rss = processes = ports = 0
        for proc in self.me.children(recursive=True):
            try:
                with proc.oneshot():
                    rss += _resident(proc)
                    times = proc.cpu_times()
                    self.cpu[(proc.pid, proc.create_time())] = times.user + times.system
                    ports += sum(1 for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
                processes += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, processes)
        self.peak_ports = max(self.peak_ports, ports)


def _resident(proc: psutil.Process) -> int:
    """The process's proportional set size (PSS: each shared page split between the processes that
    share it) where the system reports it, else its RSS. Chromium runs as ten processes sharing
    most of their pages: their RSS added up counts those pages ten times (a 1.2 GiB "peak" for a
    browser that holds about a third of it)."""
    try:
        return proc.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return proc.memory_info().rss


def size_lesson(path: Path) -> dict:
    with TreeSampler() as sampler:
        result = execute(path)
    return {"lesson": path.stem, "seconds": round(result.seconds, 1),
            "peak_rss_mib": round(sampler.peak_rss / 2**20), "peak_processes": sampler.peak_processes,
            "peak_listening_ports": sampler.peak_ports, "cpu_s": round(sum(sampler.cpu.values()), 1),
            "ok": result.ok}


README = ROOT / "README.md"
START, END = "<!-- lesson-sizing:start -->", "<!-- lesson-sizing:end -->"
HEADER = ("| lesson | time (s) | peak memory (MiB) | processes | listening ports | CPU (s) |\n"
          "|---|---:|---:|---:|---:|---:|")


def readme_table(rows: list[dict]) -> str:
    """The README's instructor table for ``rows`` (as read from the CSV)."""
    lines = [HEADER] + [f"| `{r['lesson']}` | {float(r['seconds']):.0f} | {int(float(r['peak_rss_mib']))} | "
                        f"{r['peak_processes']} | {r['peak_listening_ports']} | {float(r['cpu_s']):.1f} |" for r in rows]
    return "\n".join(lines)


def read_csv(path: Path = RESULTS) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def readme_section(text: str) -> str:
    """What the README has between the markers (the table)."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip()


def write_readme(rows: list[dict], readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    readme.write_text(text[:start] + "\n" + readme_table(rows) + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lesson_sizing", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="only lessons whose name contains this text")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"CSV to write (default: {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--readme", action="store_true",
                        help="only write the README's instructor table from the CSV (no lesson is run)")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme(read_csv(args.out))
        return 0
    rows = []
    for path in discover(ROOT, ("notebooks",)):
        if args.only in path.name:
            rows.append(size_lesson(path))
            print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
