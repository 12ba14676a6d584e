"""benchmarks/idle.py: memory per held connection, for every technique, ours and its peers.

The quick mode runs end to end (50 connections per server and technique, each on a fresh server)
and what holds on any machine is asserted: a row per (server, technique), every connection held
by the client's and the server's count, memory per connection positive and in a plausible range
(a Python server's connection costs kilobytes, the raw-socket floor's almost nothing). No timing
is asserted. The table's arithmetic (median of runs, ratio to the peer) is checked on made-up rows.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import idle

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {("ours", "sse"), ("bare", "sse"), ("floor", "sse"),
            ("ours", "ws"), ("bare", "ws"), ("websockets", "ws"), ("floor", "ws"),
            ("ours", "stomp"), ("websockets", "stomp"),
            ("ours", "longpoll"), ("bare", "longpoll"), ("floor", "longpoll")}


def test_every_technique_has_ours_and_its_peer():
    assert set(idle.pairs(list(idle.CLIENTS), list(idle.TECHNIQUES))) == EXPECTED
    assert all(idle.PEER[t] in idle.CLIENTS and t in idle.CLIENTS[idle.PEER[t]] for t in idle.TECHNIQUES)


def test_the_table_takes_the_median_run_and_divides_by_the_peer():
    def run(server, technique, kb, held=10):
        return {"server": server, "technique": technique, "connections": 10, "held": held, "server_held": held,
                "rss_kb_per_connection": kb, "uss_kb_per_connection": kb, "server_rss_mb_before": 1.0,
                "server_rss_mb_after": 2.0, "server_uss_mb_before": 1.0, "server_uss_mb_after": 2.0,
                "warm_connections": 2, "connect_s": 0.1, "settle_s": 0.3, "settled": True}

    frame = idle.table([run("ours", "sse", 12.0), run("bare", "sse", 10.0), run("ours", "sse", 15.0, held=9),
                        run("bare", "sse", 10.0), run("ours", "sse", 13.0), run("bare", "sse", 10.0)])
    ours = frame.set_index("server").loc["ours"]
    assert ours.rss_kb_per_connection == 13.0 and (ours.rss_kb_min, ours.rss_kb_max) == (12.0, 15.0)
    assert ours.held == 9 and ours.repeats == 3  # the fewest held of its runs
    assert ours.vs_peer == pytest.approx(1.3) and frame.set_index("server").loc["bare"].vs_peer == 1.0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_run_holds_every_connection_and_measures_plausible_memory(tmp_path):
    out = tmp_path / "idle.csv"
    result = subprocess.run([sys.executable, "-m", "benchmarks.idle", "--quick", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    frame = pd.read_csv(out)
    assert set(zip(frame.server, frame.technique)) == EXPECTED and len(frame) == len(EXPECTED)
    assert {"rss_kb_per_connection", "uss_kb_per_connection", "server_rss_mb_before", "server_rss_mb_after",
            "vs_peer", "run_at", "cpus"} <= set(frame.columns)
    # every connection held: still open and unanswered after the reading, and owned by the server
    assert (frame.connections == 50).all()
    assert (frame.held == frame.connections).all(), frame[["server", "technique", "held"]]
    assert (frame.server_held >= frame.connections).all(), frame[["server", "technique", "server_held"]]
    python = frame[frame.server != "floor"]
    floor = frame[frame.server == "floor"]
    for column in ("rss_kb_per_connection", "uss_kb_per_connection"):
        # a Python server's connection: objects worth kilobytes (12-20 KiB here), not megabytes
        assert python[column].between(2, 100).all(), python[["server", "technique", column]]
        # the floor keeps a socket object per connection, and the kernel's buffers are not its RSS
        assert floor[column].between(0, 2).all(), floor[["server", "technique", column]]
    assert (python.server_rss_mb_after > python.server_rss_mb_before).all()
    assert (frame.loc[frame.server == frame.peer, "vs_peer"] == 1).all()
    for technique, rows in frame.groupby("technique"):
        kb = rows.set_index("server").rss_kb_per_connection
        assert kb["ours"] > kb.get("floor", 0), technique
