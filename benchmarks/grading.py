"""How long does batch grading take for a class of 30? Writes benchmarks/results/grading.csv.

The goal: 30 submissions of one exercise graded in under 3 minutes on a 2-core
machine. The class is made of the sample class's real kinds of student work, cycled to 30
(correct, partly wrong, stub, hanging, server never stopped, kernel crash, tests deleted,
tests edited, duplicated cell, malformed JSON), so the time includes the hanging ones waiting
out their per-cell limit. Each kernel runs in its bubblewrap sandbox where there is one (the
``sandboxed`` column; ``SPL_GRADING_BWRAP=off`` measures without). Run from the project root:

    python benchmarks/grading.py [--exercise 04-websocket-exercises] [--count 30] [--jobs 2] [--cell-timeout 10]
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading.batch import grade_class, write_gradebook  # noqa: E402
from grading.sandbox import status  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "grading.csv"
COLUMNS = ["date_utc", "exercise", "submissions", "jobs", "cell_timeout_s", "sandboxed", "wall_s", "s_per_submission",
           "points_total", "cpus", "load_avg_1min_before", "python"]


def build_class(exercise: str, count: int, directory: Path) -> None:
    kinds = sorted((ROOT / "tests" / "sample_class" / exercise / "submissions").glob("*.ipynb"))
    for number in range(count):
        kind = kinds[number % len(kinds)]
        shutil.copy(kind, directory / f"student{number:02d}_{kind.stem}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exercise", default="04-websocket-exercises")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="grading-bench-") as scratch:
        submissions = Path(scratch) / "submissions"
        submissions.mkdir()
        build_class(args.exercise, args.count, submissions)
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        reports = grade_class(submissions, source=ROOT / "solutions" / f"{args.exercise}.ipynb", jobs=args.jobs,
                              cell_timeout=args.cell_timeout)
        wall = time.monotonic() - started
        write_gradebook(reports, Path(scratch) / "gradebook.csv")
    row = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "exercise": args.exercise, "submissions": len(reports), "jobs": args.jobs,
        "cell_timeout_s": f"{args.cell_timeout:g}", "sandboxed": "yes" if status().isolated else "no",
        "wall_s": f"{wall:.1f}",
        "s_per_submission": f"{wall / max(1, len(reports)):.2f}",
        "points_total": f"{sum(r.points for r in reports):g}", "cpus": os.cpu_count(),
        "load_avg_1min_before": f"{load_before:.2f}", "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
    print(f"graded {len(reports)} submissions of {args.exercise} in {wall:.1f} s with {args.jobs} jobs "
          f"({status().describe()}) -> {RESULTS}")


if __name__ == "__main__":
    main()
