"""Load: many concurrent QR logins through the balancer on two servers, steady and with a crash.

Usage (from the repository root)::

    python benchmarks/load.py                          # quick: 100 logins per run (results/load_100.csv)
    python benchmarks/load.py --logins 1000 --balancer nginx --redis-pool 4096 0 --give-up 60
                                                       # the committed results/load.csv (about 5 minutes)

For each fix (``streams``, ``pubsub`` by default) two runs on a fresh 2-server cluster whose
servers are separate processes (``python -m servers qrlogin``), behind the balancer:

* ``steady``: ``--logins`` logins started at once (SSE browsers, one phone), nothing breaks;
* ``crash_halfway``: the same, and once half of them have completed, the server holding the
  most open browser channels is killed (SIGKILL) and taken out of the balancer. Browsers whose
  channel died reconnect with jittered back-off and resume (``Last-Event-ID``).

Each login is driven by :func:`lab.lessons.faults.run_logins` (free-running), so "lost" means the
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
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.lessons import faults  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=100, help="concurrent logins per run (the issue: 1000)")
    parser.add_argument("--fixes", nargs="+", default=["streams", "pubsub"])
    parser.add_argument("--scenarios", nargs="+", default=["steady", "crash_halfway"],
                        choices=["steady", "crash_halfway"])
    parser.add_argument("--balancer", default="python", choices=("python", "nginx"))
    parser.add_argument("--transport", default="sse", choices=("sse", "ws", "longpoll", "poll"))
    parser.add_argument("--in-process", action="store_true", help="servers in this process (crash = in-process)")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds a browser waits for 'confirmed'")
    parser.add_argument("--redis-pool", type=int, nargs="+", default=[0], metavar="N",
                        help="Redis pool size per server, 0: redis-py's default (100); several values: one run each")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default: results/load.csv at 1000 logins, else results/load_<n>.csv, "
                             "so a quick run never overwrites the full one lesson 09 reads)")
    args = parser.parse_args(argv)
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
