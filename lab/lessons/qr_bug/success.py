"""Lesson 07's main measurement: the share of logins that complete against the number of servers N.

The theory is 1/N (:func:`theory`): the confirm lands on the server holding the browser's
channel with that chance. :func:`success_vs_servers` measures it on one fresh cluster per N,
:func:`success_table` and :func:`plot_success_vs_servers` set it against the theory with its
standard error, and :func:`meeting_table` checks the claim behind it login by login: a push login
completes exactly when its confirm met its channel.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from lab.lessons.qr_bug.logins import _fill_held_channels, _frame, _plan, traffic_async
from servers import runtime


def theory(n_servers: int) -> float:
    """The chance that the confirm lands on the server holding the browser's channel: 1/N."""
    return 1.0 / n_servers


def success_vs_servers(ns: Iterable[int] = (1, 2, 3, 4, 5, 6), transports: Sequence[str] = ("sse",),
                       logins: int = 40, runs: int = 1, policy: str = "round_robin", balancer: str = "python",
                       redis_url: str | None = None, seed: int = 7, progress: bool = False,
                       name: str = "lesson07", overlap: bool = True, **options: Any) -> pd.DataFrame:
    """For each N in ``ns``: a fresh cluster of N servers, then ``runs`` runs of ``logins``
    random users per transport (the transports mixed in one run, see :func:`traffic_async`).
    One row per login, with ``n_servers`` and ``run`` columns.

    Most of a run's time is its end: the last users waiting ``wait_s`` for a confirm that never
    comes. With ``overlap`` (the default) the next run starts as soon as every user of the
    previous one has confirmed, so those waits overlap with the next run's work; the clusters
    then live side by side, so their servers are named per N (``A3``, ``B3``, ``C3`` for N = 3).
    Without it, one cluster at a time runs under ``name`` (servers ``A``, ``B``, ...).
    """
    from concurrent.futures import wait as wait_for_futures

    from servers.cluster import server_names, start_cluster

    transports = list(transports)
    options.setdefault("arrivals_per_s", 20.0)
    options.setdefault("think_s", 0.2)
    patience = options.get("wait_s", 1.0)
    longest_wait = max(patience.values()) if isinstance(patience, Mapping) else float(patience)
    frames: list[pd.DataFrame] = []
    started: list[tuple[int, int, Any, Any]] = []

    def collect(n: int, run: int, cluster: Any, future: Any) -> None:
        rows = future.result(timeout=logins * len(transports) * (longest_wait + 2) + 60)
        frame = _fill_held_channels(_frame(rows, cluster), cluster)
        frame["run"] = run
        frames.append(frame)
        cluster.stop()
        if progress:
            print(f"N={n} run {run}: {frame['ok'].mean():.0%} of {len(frame)} logins", flush=True)

    try:
        for n in ns:
            for run in range(runs):
                run_seed = seed * 1000 + n * 10 + run
                count = logins * len(transports)
                cluster = start_cluster(n, policy, balancer=balancer, redis_url=redis_url,
                                        name=f"{name}-N{n}-run{run}" if overlap else name,
                                        names=[f"{s}{n}" for s in server_names(n)] if overlap else None)
                future = asyncio.run_coroutine_threadsafe(
                    traffic_async(cluster.url, transports, count, seed=run_seed, **options), runtime.server_loop())
                started.append((n, run, cluster, future))
                if overlap:  # go on once this run's users have all confirmed (or the run ended)
                    plan = _plan(transports, count, options["arrivals_per_s"], options["think_s"], run_seed)
                    wait_for_futures([future], timeout=plan[-1][2] + 2 * options["think_s"] + 0.3)
                else:
                    collect(*started.pop())
        while started:
            collect(*started.pop(0))
    finally:
        for _, _, cluster, future in started:
            future.cancel()
            cluster.stop()
    return pd.concat(frames, ignore_index=True)


def success_table(frame: pd.DataFrame, by: Sequence[str] = ("n_servers", "transport")) -> pd.DataFrame:
    """Per group: ``logins``, ``succeeded``, ``success_pct``, its standard error ``stderr_pct``
    (binomial, sqrt(p(1-p)/K)), and, when grouped by ``n_servers``, ``theory_pct`` = 100/N."""
    by = list(by)
    table = frame.groupby(by, sort=True)["ok"].agg(logins="count", succeeded="sum").reset_index()
    p = table["succeeded"] / table["logins"]
    table["success_pct"] = (100 * p).round(1)
    table["stderr_pct"] = (100 * (p * (1 - p) / table["logins"]).map(math.sqrt)).round(1)
    if "n_servers" in by:
        table["theory_pct"] = (100 / table["n_servers"]).round(1)
    return table


def plot_success_vs_servers(frame: pd.DataFrame, title: str | None = None, ax=None):
    """Measured success per N (pooled rate with ±2 standard errors; single runs as dots when
    there are several) against the theory 1/N (dashed)."""
    from lab.plots import plot_lines

    table = success_table(frame, ["n_servers", "transport"])
    ns = sorted(table["n_servers"].unique())
    theory_frame = pd.DataFrame({"n_servers": ns, "theory 1/N": [100 / n for n in ns]})
    ax = plot_lines(theory_frame, "n_servers", "theory 1/N", xlabel="servers behind the balancer N (count)",
                    ylabel="logins that complete (%)", marker=None, title=title, ax=ax)
    ax.lines[-1].set_linestyle("--")
    ax.lines[-1].set_color("black")
    ax.lines[-1].set_label("theory 1/N")
    transports = list(table["transport"].unique())
    for i, (transport, group) in enumerate(table.groupby("transport", sort=False)):
        shift = (i - (len(transports) - 1) / 2) * 0.08
        ax.errorbar(group["n_servers"] + shift, group["success_pct"], yerr=2 * group["stderr_pct"], marker="o",
                    capsize=3, label=f"{transport}: measured (±2 s.e.)")
        if "run" in frame.columns and frame["run"].nunique() > 1:
            per_run = success_table(frame[frame["transport"] == transport], ["n_servers", "run"])
            ax.scatter(per_run["n_servers"] + shift, per_run["success_pct"], s=12, alpha=0.4,
                       color=ax.lines[-1].get_color() if ax.lines else None)
    ax.set_xticks(ns)
    ax.set_ylim(-5, 105)
    ax.legend()
    return ax


def meeting_table(frame: pd.DataFrame, transports: Sequence[str] = ("sse", "ws"),
                  max_late_share: float = 0.05) -> pd.DataFrame:
    """Check the lesson's central claim on measured logins and return the counts behind it.

    For the streaming transports (SSE, WebSocket) a login completes exactly when the phone's
    confirm reached the server holding the browser's channel. One direction is strict: no login
    may complete without that meeting (``ok_without_meeting`` must be 0). The other may fail on an
    overloaded machine (a push delayed past the deadline, a request timing out), so up to
    ``max_late_share`` of the met logins may still have failed (``met_but_failed``). Raises
    AssertionError, with the rows at fault, when either is broken.
    """
    rows = frame[frame["transport"].isin(list(transports))]
    met = rows["channel_on"] == rows["confirm_on"]
    impossible = rows[rows["ok"] & ~met]
    assert impossible.empty, ("logins completed although the confirm went to another server than the channel's:\n"
                              f"{impossible[['transport', 'ticket', 'channel_on', 'confirm_on']]}")
    late = rows[~rows["ok"] & met]
    assert len(late) <= max_late_share * max(1, int(met.sum())), (
        f"{len(late)} of {int(met.sum())} logins whose confirm met the channel still failed (a very busy machine?):\n"
        f"{late[['transport', 'channel_on', 'confirm_on', 'error']]}")
    table = rows.assign(met=met, met_but_failed=~rows["ok"] & met).groupby("transport").agg(
        logins=("ok", "size"), met=("met", "sum"), ok=("ok", "sum"), met_but_failed=("met_but_failed", "sum"))
    table["ok_without_meeting"] = 0
    return table.reset_index()
