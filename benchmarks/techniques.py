"""The five push techniques under the same workloads: bytes, requests, latency, server cost.

Usage (from the repository root)::

    python -m benchmarks.techniques --quick                 # well under a minute
    python -m benchmarks.techniques                         # the full sweep (about 10 minutes)
    python -m benchmarks.techniques --techniques sse ws --rates 1 100 --subscribers 1 1000

The server is ``python -m servers feed --port 0`` in a process of its own (a fresh one per
technique), so its CPU time, memory and file descriptors (``psutil``) are its own; the
subscribers, the wire tap and the publisher run in this process, on loopback. The measurement
code is :mod:`lab.lessons.comparison`, the same that lesson 06 calls.

Writes three CSV files (``--out`` names the first; the others sit beside it):

- ``techniques.csv``: one row per (technique, event rate, subscribers): bytes per delivered
  event each way and their ratio to the protocol minimum, ``framing_ratio`` (the bytes that
  carried events / what the protocol requires for them), requests and TCP connections per
  event, latency p50/p95/p99, server CPU seconds per 1,000 delivered events, RSS, descriptors;
- ``techniques_latency.csv``: a sample of the per-event latencies, 300 per point (for CDFs);
- ``techniques_idle.csv``: per open connection, with no events: memory, descriptors, CPU,
  bytes and requests per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.lessons.comparison import TECHNIQUES, sweep, sweep_points  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LATENCY_SAMPLE = 300  # per-event latencies kept per point (a seeded sample), for CDFs
LATENCY_COLUMNS = ["technique", "rate_eps", "subscribers", "client", "seq", "latency_ms"]

#: Full run: every rate at 1 and 100 subscribers, every subscriber count at 10 events/s.
FULL = {"rates": [0.1, 1, 10, 100, 1000], "subscribers": [1, 10, 100, 1000], "base_subscribers": [1, 100],
        "seconds": 5.0, "min_events": 3, "max_events": 5000, "idle_connections": 500, "idle_seconds": 5.0,
        "poll_interval": 1.0}
#: --quick: the same measurements, small (the test runs it).
QUICK = {"rates": [5, 50], "subscribers": [1, 4], "base_subscribers": [1], "seconds": 0.5, "min_events": 4,
         "max_events": 100, "idle_connections": 20, "idle_seconds": 0.5, "poll_interval": 0.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.techniques", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run, well under a minute")
    parser.add_argument("--out", type=Path, default=None,
                        help="summary CSV (default benchmarks/results/techniques.csv, or techniques_quick.csv)")
    parser.add_argument("--techniques", nargs="+", choices=TECHNIQUES, default=list(TECHNIQUES))
    parser.add_argument("--rates", nargs="+", type=float, help="event rates (events/s)")
    parser.add_argument("--subscribers", nargs="+", type=int, help="subscriber counts")
    parser.add_argument("--seconds", type=float, help="publishing time per point (events = rate x seconds)")
    parser.add_argument("--poll-interval", type=float, help="short-polling interval (s)")
    parser.add_argument("--payload-bytes", type=int, default=32, help="size of each event's text (B)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    for key in ("rates", "subscribers", "seconds", "poll_interval"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    out = args.out or RESULTS / ("techniques_quick.csv" if args.quick else "techniques.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    points = sweep_points(plan["rates"], plan["subscribers"], base_subscribers=plan["base_subscribers"],
                          base_rate=sorted(plan["rates"])[len(plan["rates"]) // 2])
    started = time.time()
    summary, latencies, idle = sweep(args.techniques, points, idle_connections=plan["idle_connections"],
                                     idle_seconds=plan["idle_seconds"], seconds=plan["seconds"],
                                     min_events=plan["min_events"], max_events=plan["max_events"],
                                     poll_interval=plan["poll_interval"], payload_bytes=args.payload_bytes,
                                     latency_sample=LATENCY_SAMPLE)
    latencies = latencies[LATENCY_COLUMNS]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    for frame in (summary, idle):
        frame["run_at"] = stamp
        frame["cpus"] = os.cpu_count()
    summary.round(4).to_csv(out, index=False)
    latencies.round(4).to_csv(out.with_name(out.stem + "_latency.csv"), index=False)
    idle.round(4).to_csv(out.with_name(out.stem + "_idle.csv"), index=False)
    print(f"\n{len(summary)} points in {time.time() - started:.0f} s -> {out}")
    columns = ["technique", "rate_eps", "subscribers", "bytes_down_per_event", "ratio_down", "framing_ratio",
               "requests_per_event", "latency_p50_ms", "latency_p99_ms", "server_cpu_s_per_1000_events"]
    with __import__("pandas").option_context("display.width", 200, "display.max_rows", 200):
        print(summary[columns].round(2).to_string(index=False))
        print(idle.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
