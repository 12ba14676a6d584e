"""Lesson 09, at scale: how many logins per second two servers carry, and which part runs out first.

:func:`live_capacity` runs the capacity benchmark (``benchmarks/load.py --capacity``) at a
lesson's size: a fresh two-server cluster behind nginx, and logins arriving at fixed rates from
generator processes of their own (``benchmarks/loadgen.py``: open loop, so a slow server cannot
slow the arrivals down and hide its queue). :func:`committed_capacity` reads the figures the
repository committed. Both return one row per (fix, rate): the login time's p50 and p99 (from
each login's due moment to its redeemed session), failures, and the CPU of each part in % of
one core (servers, Redis, balancer, generator) beside the machine's total. :func:`plot_capacity`
draws the p99 against the rate with the 1 s line, and where the CPU went.
"""
from __future__ import annotations

import os

import pandas as pd

from lab.lessons import ROOT, benchmark
from lab.plots import plot_bars, plot_lines

__all__ = ["live_capacity", "committed_capacity", "plot_capacity", "COLUMNS", "CPU_COLUMNS"]

COMMITTED = ROOT / "benchmarks" / "results" / "load_capacity.csv"
CPU_COLUMNS = ["servers_cpu_pct", "redis_cpu_pct", "balancer_cpu_pct", "generator_cpu_pct", "other_cpu_pct"]
COLUMNS = ["fix", "offered_per_s", "achieved_per_s", "completed", "failed", "login_p50_ms", "login_p99_ms",
           "late_p99_ms", "server_cpu_ms_per_login", *CPU_COLUMNS, "machine_cpu_pct", "within_slo"]


def live_capacity(redis_url: str, fixes=("pubsub",), rates=(5, 20), seconds: float = 2.0, workers: int = 2,
                  give_up_s: float = 10.0, slo_ms: float = 1000.0) -> pd.DataFrame:
    """Step the arrival rate through ``rates`` (logins/s, ``seconds`` each) for each fix."""
    load = benchmark("load")
    rows = []
    for fix in fixes:
        rows += load.capacity_runs(fix, list(rates), seconds, workers, load.default_balancer(), redis_url, give_up_s,
                                   slo_ms, None, verbose=False)
    return pd.DataFrame(rows)[COLUMNS].round(1)


def committed_capacity() -> pd.DataFrame | None:
    """The committed run's rows (``benchmarks/results/load_capacity.csv``), or None if absent."""
    if not COMMITTED.exists():
        return None
    return pd.read_csv(COMMITTED)


def plot_capacity(frame: pd.DataFrame, slo_ms: float = 1000.0, title: str = ""):
    """The login p99 against the offered rate, one line per fix, and the 1 s line; then the CPU
    of each part at each rate (stacked, % of one core; ``other``: processes outside the run) for
    the first fix, under the line of all the machine's cores."""
    ax = plot_lines(frame, "offered_per_s", "login_p99_ms", hue="fix", xlabel="offered logins (per s)",
                    ylabel="login time p99 (ms)", logy=True, title=f"{title}login time p99 by arrival rate")
    ax.axhline(slo_ms, color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"{slo_ms / 1000:g} s", (frame["offered_per_s"].min(), slo_ms), textcoords="offset points",
                xytext=(2, 3), fontsize=8, color="grey")
    fix = frame["fix"].iloc[0]
    first = frame[frame["fix"] == fix]
    parts = [c.removesuffix("_cpu_pct") for c in CPU_COLUMNS]
    cores = first["cpus"].iloc[0] if "cpus" in first else os.cpu_count()
    first = (first[CPU_COLUMNS].set_axis(parts, axis=1)  # only these: the frame has a "balancer" column too
             .assign(rate=first["offered_per_s"].map("{:g}".format)))
    bars = plot_bars(first, "rate", parts, stacked=True, xlabel="offered logins (per s)",
                     ylabel="CPU (% of one core)", title=f"{title}where the CPU went ({fix})")
    bars.axhline(100 * cores, color="grey", linestyle="--", linewidth=1, label=f"all {cores} cores")
    bars.legend(fontsize=8)
    return ax, bars
