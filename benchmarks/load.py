"""Load: QR logins through the balancer on two server processes - how many per second, and with a crash.

Usage (from the repository root)::

    python -m benchmarks.load --capacity               # logins per second at a p99 under 1 s (a few minutes)
    python -m benchmarks.load                          # quick burst: 100 logins at once (results/load_100.csv)
    python -m benchmarks.load --logins 1000 --balancer nginx --redis-pool 4096 0 --give-up 60
                                                       # the committed results/load.csv (about 5 minutes)

**Capacity** (``--capacity``; ``results/load_capacity.csv``): for each fix, a fresh 2-server
cluster behind nginx, and :mod:`benchmarks.loadgen`'s worker processes starting logins at a
fixed arrival rate (open loop) for ``--seconds`` per step, at each of ``--rates`` in turn. Each
step's row has the offered and achieved logins per second, the login time's p50/p99 (from each
login's due moment to its redeemed session), failures, how late the generator started logins
(``late_p99_ms``: its own saturation), and the CPU of every part over the step, in % of one
core: the servers, Redis, the balancer and the generator, side by side with the machine's total
(``other_cpu_pct``: what processes outside the run took), so the reader sees which part
saturated; ``server_cpu_ms_per_login``: both servers' CPU time per completed login. ``within_slo``: p99 under ``--slo-ms`` (1 s) and no
login failed; the capacity is the highest such rate.

**Burst** (the default): for each fix (``streams``, ``pubsub``) two runs on a fresh 2-server
cluster whose servers are separate processes (``python -m servers qrlogin``), behind the balancer:

* ``steady``: ``--logins`` logins started at once (SSE browsers, one phone), nothing breaks;
* ``crash_halfway``: the same, and once half of them have completed, the server holding the
  most open browser channels is killed (SIGKILL) and taken out of the balancer. Browsers whose
  channel died reconnect with jittered back-off and resume (``Last-Event-ID``).

A burst counts what a crash loses; its latencies are those of one Python process playing every
browser and phone at once (the capacity run measures the servers). Each login is driven by
:func:`lab.lessons.faults.run_logins` (free-running), so "lost" means the
same as in lesson 09: a state change (scanned, confirmed) that never reached the browser.
``failed_redeem`` counts logins whose redeem was in flight on the killed server: the server
redeemed the ticket and died before answering, so the browser's retry is refused (409, single
use) - a failure of the non-idempotent redeem, not of push. Latencies are the client's clock:
``confirm_ms`` from the phone's confirm to the browser seeing
it, ``login_ms`` the whole login from ticket creation to the redeemed session. Timing figures
depend on the machine; the counts do not.

Why ``--redis-pool``: the ``streams`` fix once held one pooled Redis connection per followed
ticket (a blocking ``XREAD``), and redis-py's pool allows 100 per client by default, so with
hundreds of browser channels per server every other Redis call there failed ("Too many
connections", 503). It now follows every ticket with one ``XREAD`` per server, and the servers'
pools wait for a free connection instead of failing; ``--redis-pool 0 4096`` runs with the
default and with a big pool, to show that the pool size no longer decides the outcome.

Output: ``benchmarks/results/load.csv``, one row per pool × fix × scenario.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import Generator  # noqa: E402
from lab.lessons import faults  # noqa: E402
from servers.balancer.nginx import NginxMissing, find_nginx  # noqa: E402
from servers.cluster import start_cluster  # noqa: E402
from servers.redisproc import start_redis  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = ["fix", "scenario", "redis_pool", "balancer", "servers", "transport", "logins", "completed", "failed",
           "failed_redeem", "failed_steps", "lost_logins", "states_lost", "duplicated", "late", "dropped", "crashed", "channels_on_crashed", "confirm_p50_ms",
           "confirm_p99_ms", "login_p50_ms", "login_p99_ms", "wall_s"]


def one_run(fix: str, scenario: str, logins: int, balancer: str, transport: str, redis_url: str,
            processes: bool, give_up_s: float, pool: int | None = None) -> dict:
    """One run on a fresh cluster; returns the CSV row. ``pool``: each server's Redis connection
    pool size (redis-py's ``max_connections`` URL option; its default is 100)."""
    if pool:
        redis_url = f"{redis_url}?max_connections={pool}"
    with start_cluster(2, fix=fix, balancer=balancer, redis_url=redis_url, processes=processes,
                       name="load") as cluster:
        fault = faults.crash_fault() if scenario == "crash_halfway" else None
        started = time.monotonic()
        run = faults.run_logins(cluster, logins, transport, fault, lockstep=False, concurrency=logins,
                                fault_after=logins // 2 if fault else None, backoff=faults.Backoff(0.2, 2.0, 2.0),
                                give_up_s=give_up_s, deadline_s=1.0, measure_recovery=False)
        wall = time.monotonic() - started
    records = run.records
    done = records[records["completed"]]
    row = {"fix": fix, "scenario": scenario, "redis_pool": pool or "default (100)", "balancer": balancer, "servers": 2,
           "transport": transport, "logins": len(records), "completed": int(records["completed"].sum()),
           "failed": int((~records["completed"]).sum()),
           "failed_redeem": int((records["failed_step"] == "redeem").sum()),
           "failed_steps": " ".join(f"{k}:{v}" for k, v in records["failed_step"].value_counts().items()),
           "lost_logins": int((records["lost"] > 0).sum()),
           "states_lost": int(records["lost"].sum()), "duplicated": int(records["duplicated"].sum()),
           "late": int(records["late"].sum()), "dropped": int(records["dropped"].sum()),
           "crashed": run.info.get("target", ""), "channels_on_crashed": run.info.get("channels_on_target", 0),
           "confirm_p50_ms": 1000 * done["confirm_latency_s"].quantile(0.5),
           "confirm_p99_ms": 1000 * done["confirm_latency_s"].quantile(0.99),
           "login_p50_ms": 1000 * done["login_s"].quantile(0.5), "login_p99_ms": 1000 * done["login_s"].quantile(0.99),
           "wall_s": wall}
    errors = records["error"].dropna()
    if len(errors):  # the commonest reasons, each with one example
        kinds = errors.str.replace(r"'[^']*'|\b[\w-]{22}\b", "…", regex=True).str.slice(0, 110).value_counts()
        print(f"  {fix}/{scenario}: {len(errors)} failed:\n" + "\n".join(f"    {n} × {k}" for k, n in kinds.head(5).items()),
              file=sys.stderr)
    return row


# ------------------------------------------------------------------------------------------------
# Capacity: logins per second at a p99 under the SLO, with every part's CPU beside it.

ROLES = {"servers": ("servers qrlogin", "servers gateway"), "redis": ("redis-server",), "balancer": ("nginx",),
         "generator": ("benchmarks.loadgen",)}


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds (user + system) so far of every process this one started, by role
    (:data:`ROLES`, matched on the command line); ``this`` is this process (a Python balancer)."""
    import psutil

    totals = dict.fromkeys([*ROLES, "this"], 0.0)
    me = psutil.Process()
    totals["this"] = sum(me.cpu_times()[:2])
    for process in me.children(recursive=True):
        try:
            command, cpu = " ".join(process.cmdline()), sum(process.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            continue
        role = next((r for r, marks in ROLES.items() if any(m in command for m in marks)), None)
        if role:
            totals[role] += cpu
    return totals


def capacity_row(fix: str, balancer: str, rate: float, seconds: float, records: list[dict[str, Any]],
                 cpu: dict[str, float], machine_pct: float, wall: float, slo_ms: float) -> dict[str, Any]:
    frame = pd.DataFrame(records)
    done = frame[frame["ok"]]
    failed = frame[~frame["ok"]]
    quantile = lambda column, q: float(done[column].quantile(q)) if len(done) else float("nan")  # noqa: E731
    row = {"fix": fix, "balancer": balancer, "servers": 2, "offered_per_s": rate, "seconds": seconds,
           "logins": len(frame), "completed": len(done), "failed": len(failed),
           "failed_steps": " ".join(f"{k}:{v}" for k, v in failed["failed_step"].value_counts().items()),
           "achieved_per_s": len(done) / wall, "login_p50_ms": quantile("login_ms", 0.5),
           "login_p99_ms": quantile("login_ms", 0.99), "confirm_p50_ms": quantile("confirm_ms", 0.5),
           "confirm_p99_ms": quantile("confirm_ms", 0.99), "late_p99_ms": float(frame["late_ms"].quantile(0.99)),
           **{f"{role}_cpu_pct": 100 * seconds_ / wall for role, seconds_ in cpu.items()},
           "other_cpu_pct": max(0.0, machine_pct - 100 * sum(cpu.values()) / wall), "machine_cpu_pct": machine_pct,
           "server_cpu_ms_per_login": 1000 * cpu["servers"] / len(done) if len(done) else float("nan"),
           "wall_s": wall}
    row["within_slo"] = bool(row["failed"] == 0 and row["login_p99_ms"] < slo_ms)
    return row


def capacity_runs(fix: str, rates: list[float], seconds: float, workers: int, balancer: str, redis_url: str,
                  give_up_s: float, slo_ms: float, pool: int | None, verbose: bool = True) -> list[dict[str, Any]]:
    """One fresh cluster and generator for ``fix``; a step per rate, until a step is far past the SLO."""
    import psutil

    if pool:
        redis_url = f"{redis_url}?max_connections={pool}"
    rows: list[dict[str, Any]] = []
    with start_cluster(2, fix=fix, balancer=balancer, redis_url=redis_url, processes=True, name="load") as cluster, \
            Generator(cluster.url, workers) as generator:
        generator.step(min(rates), 1.0, give_up_s)  # warm-up: connections, imports, the servers' first requests
        for rate in rates:
            before, started = cpu_seconds_by_role(), time.monotonic()
            psutil.cpu_percent()  # starts the machine-wide interval
            records = generator.step(rate, seconds, give_up_s)
            wall, machine = time.monotonic() - started, psutil.cpu_percent() * (psutil.cpu_count() or 1)
            after = cpu_seconds_by_role()
            cpu = {role: after[role] - before[role] for role in after}
            this = cpu.pop("this")
            if balancer == "python":  # the Python balancer runs in this process
                cpu["balancer"] = this
            rows.append(capacity_row(fix, balancer, rate, seconds, records, cpu, machine, wall, slo_ms))
            verbose and print("  " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in rows[-1].items()), file=sys.stderr, flush=True)
            far_past = [r["login_p99_ms"] > 5 * slo_ms or r["completed"] < 0.5 * r["logins"] for r in rows[-2:]]
            if len(far_past) == 2 and all(far_past):
                break  # two steps far past saturation (one may be a burst of other work): higher rates only queue more
    return rows


def default_balancer() -> str:
    """nginx, the real balancer, if it is installed; else ours, saying so."""
    try:
        find_nginx()
        return "nginx"
    except NginxMissing:
        print("nginx is not installed: the Python balancer stands in (the README says how to install nginx)",
              file=sys.stderr)
        return "python"


def capacity(args: argparse.Namespace, redis_url: str) -> pd.DataFrame:
    out = args.out or RESULTS / "load_capacity.csv"
    rows: list[dict[str, Any]] = []
    for fix in args.fixes:
        print(f"{fix}: rates {args.rates} logins/s, {args.seconds:g} s each, {args.workers} generator processes",
              file=sys.stderr, flush=True)
        rows += capacity_runs(fix, args.rates, args.seconds, args.workers, args.balancer, redis_url, args.give_up,
                              args.slo_ms, args.redis_pool[0])
        frame = pd.DataFrame(rows)
        frame["run_at"], frame["cpus"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count()
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, float_format="%.1f")
    best = frame[frame["within_slo"]].groupby("fix")["offered_per_s"].max()
    print("capacity (logins/s with p99 < %g ms, none failed): %s" % (args.slo_ms, best.to_dict()), file=sys.stderr)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=100, help="concurrent logins per run (the issue: 1000)")
    parser.add_argument("--fixes", nargs="+", default=["streams", "pubsub"])
    parser.add_argument("--scenarios", nargs="+", default=["steady", "crash_halfway"],
                        choices=["steady", "crash_halfway"])
    parser.add_argument("--balancer", default=None, choices=("python", "nginx"),
                        help="default: nginx for --capacity (python if nginx is missing), python for a burst")
    parser.add_argument("--transport", default="sse", choices=("sse", "ws", "longpoll", "poll"))
    parser.add_argument("--in-process", action="store_true", help="servers in this process (crash = in-process)")
    parser.add_argument("--give-up", type=float, default=None,
                        help="seconds a browser waits for 'confirmed' (default 60; 10 with --capacity)")
    parser.add_argument("--redis-pool", type=int, nargs="+", default=[0], metavar="N",
                        help="Redis pool size per server, 0: redis-py's default (100); several values: one run each")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default: results/load.csv at 1000 logins, else results/load_<n>.csv, "
                             "so a quick run never overwrites the full one lesson 09 reads)")
    parser.add_argument("--capacity", action="store_true", help="step an arrival rate (module docstring)")
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 60, 70, 80, 90, 100, 110, 120, 150],
                        metavar="PER_S", help="--capacity: logins per second, one step each, in this order")
    parser.add_argument("--seconds", type=float, default=10.0, help="--capacity: seconds of arrivals per step")
    parser.add_argument("--workers", type=int, default=2, help="--capacity: generator processes")
    parser.add_argument("--slo-ms", type=float, default=1000.0, help="--capacity: the p99 login time to stay under")
    args = parser.parse_args(argv)
    if args.capacity:
        args.balancer = args.balancer or default_balancer()
        args.give_up = args.give_up or 10.0
        redis = start_redis()
        try:
            print(capacity(args, redis.url).to_string(index=False))
        finally:
            redis.stop()
        return 0
    args.balancer, args.give_up = args.balancer or "python", args.give_up or 60.0
    if args.out is None:
        args.out = RESULTS / ("load.csv" if args.logins == 1000 else f"load_{args.logins}.csv")

    rows = []
    redis = start_redis()
    try:
        runs = [(pool, fix, scenario) for pool in args.redis_pool for fix in args.fixes for scenario in args.scenarios]
        for pool, fix, scenario in runs:
            print(f"{fix} {scenario} pool={pool or 'default'}: {args.logins} logins ...", file=sys.stderr, flush=True)
            rows.append(one_run(fix, scenario, args.logins, args.balancer, args.transport, redis.url,
                                not args.in_process, args.give_up, pool))
            print("  " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rows[-1].items()), file=sys.stderr, flush=True)
            frame = pd.DataFrame(rows, columns=COLUMNS)  # written after every run: a long run keeps what it has
            args.out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(args.out, index=False, float_format="%.1f")
    finally:
        redis.stop()
    print(pd.DataFrame(rows, columns=COLUMNS).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
