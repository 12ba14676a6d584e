"""benchmarks/: both commands run end to end in their quick mode and write sane CSV.

Timing figures are not asserted (the machine is shared); what is asserted holds on any machine:
every event reached every subscriber, byte counts are positive, and our SSE and WebSocket
servers put no byte on the wire beyond what the protocol requires for an event (a property of
the bytes, not of speed). The byte accounting itself is checked on hand-made bytes first.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lab.lessons import comparison
from servers.wire.sse import encode_event
from servers.wire.websocket import encode_frame

ROOT = Path(__file__).resolve().parents[1]

SUMMARY_COLUMNS = set(comparison.SUMMARY_COLUMNS)
IDLE_COLUMNS = set(comparison.IDLE_COLUMNS)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


# -- the byte accounting, on bytes we made ourselves -------------------------------------------------

EVENTS = [{"seq": n, "data": {"n": n, "text": "x" * 32}, "sent_at": 1700000000.0 + n / 10} for n in range(1, 6)]


def _json(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


SSE_REQUEST = b"GET /feed/sse HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_sse_framing_is_exactly_the_protocol_minimum_and_extra_bytes_show():
    lean = SSE_HEAD + _chunk(b"retry: 1000\n\n") + b"".join(
        _chunk(encode_event(_json(e), id=e["seq"])) for e in EVENTS) + _chunk(b": heartbeat\n")
    cost = comparison.wire_cost("sse", SSE_REQUEST, lean, EVENTS)
    assert cost["framing_bytes"] == cost["framing_min"], cost
    padded = SSE_HEAD + b"".join(_chunk(b"event: message\n" + encode_event(_json(e), id=e["seq"])) for e in EVENTS)
    cost = comparison.wire_cost("sse", SSE_REQUEST, padded, EVENTS)
    assert cost["framing_bytes"] == cost["framing_min"] + len(EVENTS) * (len(b"event: message\n") + 0), cost


def test_websocket_framing_counts_the_rfc6455_header_only():
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    down = head + b"".join(encode_frame(_json(e)) for e in EVENTS) + encode_frame('{"type":"ack"}')
    up = b"GET /feed/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"
    cost = comparison.wire_cost("ws", up, down, EVENTS)
    assert cost["framing_bytes"] == cost["framing_min"] == sum(2 + len(_json(e)) for e in EVENTS)
    assert cost["requests"] == 1


def test_polling_minimum_is_a_bare_request_and_response_per_poll():
    body = json.dumps({"events": EVENTS[:2]}).encode()
    up = b"GET /feed/poll?after=0 HTTP/1.1\r\nHost: h\r\nUser-Agent: x\r\n\r\n" * 2
    response = b"HTTP/1.1 200 OK\r\nServer: TornadoServer\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    cost = comparison.wire_cost("poll", up, response + response, EVENTS[:2])
    assert cost["requests"] == 2
    assert cost["min_up"] == 2 * len(b"GET /feed/poll?after=0 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert cost["framing_bytes"] - cost["framing_min"] == 2 * len(b"Server: TornadoServer\r\n")


def test_code_lines_leaves_out_docstrings_comments_and_blank_lines():
    assert comparison.code_lines(_three_lines) == 3
    table = comparison.ease_table()
    assert list(table.technique) == list(comparison.TECHNIQUES)
    assert (table.total_lines > 0).all()


def _three_lines(x):
    """A docstring
    of two lines."""
    # a comment

    y = x + 1
    return y


# -- the commands, end to end ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(240)
def test_techniques_quick_run_writes_sane_csv(tmp_path):
    out = tmp_path / "techniques.csv"
    _run(["benchmarks.techniques", "--quick", "--out", str(out)], timeout=200)
    summary = pd.read_csv(out)
    idle = pd.read_csv(tmp_path / "techniques_idle.csv")
    latency = pd.read_csv(tmp_path / "techniques_latency.csv")
    assert SUMMARY_COLUMNS <= set(summary.columns), SUMMARY_COLUMNS - set(summary.columns)
    assert IDLE_COLUMNS <= set(idle.columns)
    assert set(summary.technique) == set(comparison.TECHNIQUES)
    assert (summary.lost == 0).all(), summary[summary.lost != 0]
    assert (summary.delivered == summary.events * summary.subscribers).all()
    for column in ("bytes_down_per_event", "bytes_up_per_event", "min_bytes_down_per_event", "ratio_down",
                   "framing_ratio", "event_json_bytes", "requests_per_event", "connections_per_event"):
        assert (summary[column] > 0).all(), f"{column} not positive:\n{summary[['technique', column]]}"
    # every byte counted is at least what the protocol needs
    assert (summary.ratio_down >= 0.99).all() and (summary.framing_ratio >= 0.99).all()
    lean = summary[summary.technique.isin(["sse", "ws"])]
    assert (lean.framing_ratio <= 1.05).all(), lean[["technique", "rate_eps", "framing_ratio"]]
    # short polling pays headers on every poll; the stream techniques pay them once per connection
    by_technique = summary.groupby("technique").requests_per_event.max()
    assert by_technique["longpoll"] > by_technique["sse"]
    assert (latency.latency_ms.notna()).all() and len(latency) > 0
    assert (idle.fds_per_connection > 0).all()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fanout_quick_run_reaches_every_subscriber(tmp_path):
    out = tmp_path / "fanout.csv"
    _run(["benchmarks.fanout", "--quick", "--out", str(out)], timeout=200)
    events = pd.read_csv(out)
    summary = pd.read_csv(tmp_path / "fanout_summary.csv")
    assert (events.received == events.subscribers).all(), events[events.received != events.subscribers]
    assert (events.time_to_last_ms > 0).all()
    assert {("ours", "sse"), ("ours", "ws"), ("ours", "sse+ws"), ("bare", "sse"), ("bare", "ws"),
            ("websockets", "ws"), ("floor", "sse"), ("floor", "ws")} <= set(zip(summary.server, summary.kind))
    assert {"vs_bare", "vs_websockets", "vs_floor", "deliveries_per_s", "rss_kb_per_connection"} <= set(summary.columns)
    assert (summary.rss_kb_per_connection > 0).all()
    assert (summary.loc[summary.server == "bare", "vs_bare"] == 1).all()


def test_the_readme_instructor_table_is_the_committed_lesson_sizing():
    from benchmarks import lesson_sizing

    rows = lesson_sizing.read_csv()
    lessons = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    assert sorted(r["lesson"] for r in rows) == lessons, "benchmarks/results/lesson_sizing.csv must size every lesson"
    assert all(r["ok"] == "True" for r in rows), [r["lesson"] for r in rows if r["ok"] != "True"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert lesson_sizing.readme_section(readme) == lesson_sizing.readme_table(rows), (
        "README's instructor table differs from benchmarks/results/lesson_sizing.csv: "
        "python -m benchmarks.lesson_sizing --readme")
    over = [r["lesson"] for r in rows if float(r["peak_rss_mib"]) > 1024 or float(r["cpu_s"]) > 60]
    assert not over, f"lessons over 1 GiB or 60 CPU-seconds by default (make their defaults smaller): {over}"


@pytest.mark.slow
@pytest.mark.timeout(320)
def test_load_capacity_steps_count_every_login_and_every_parts_cpu(tmp_path):
    out = tmp_path / "capacity.csv"
    _run(["benchmarks.load", "--capacity", "--fixes", "pubsub", "--rates", "4", "8", "--seconds", "2",
          "--out", str(out)], timeout=300)
    frame = pd.read_csv(out)
    assert list(frame["offered_per_s"]) == [4, 8]
    assert list(frame["logins"]) == [8, 16]  # open loop: rate × seconds, whatever the servers did
    assert (frame["completed"] + frame["failed"] == frame["logins"]).all()
    assert frame["completed"].sum() > 0, frame.to_string()
    # every part did work and is counted, the generator beside the servers (summed over the steps:
    # CPU time is counted in clock ticks, and nginx may spend less than one in a tiny step)
    for role in ("servers", "redis", "balancer", "generator"):
        assert frame[f"{role}_cpu_pct"].sum() > 0, frame.to_string()
    ok = frame[frame["within_slo"]]
    assert (ok["failed"] == 0).all() and (ok["login_p99_ms"] < 1000).all()
