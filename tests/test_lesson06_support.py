"""Lesson 06's support code: the steady-state split of bytes per event, the Wilson interval, the
proxy lines read from the generated nginx.conf, the browser-side line counts, and the colours."""
from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest

from lab.lessons import comparison
from lab.plots import technique_color
from servers.balancer.backends import as_backend
from servers.balancer.nginx import render_config


# -- the steady state and the fixed cost, on a real feed process ---------------------------------------

@pytest.fixture
def feed():
    """A feed process per test (the autouse clean-up stops every server after each test)."""
    with comparison.FeedProcess(name="test-lesson06") as process:
        yield process


def test_bytes_per_event_split_into_steady_and_fixed_adds_up(feed):
    for technique in ("sse", "ws", "poll"):
        row, _ = comparison.measure_point(feed, technique, 50, 2, seconds=0.2, min_events=8, poll_interval=0.05)
        assert row["lost"] == 0, technique
        assert row["steady_deliveries"] > 0, technique
        total = (row["bytes_down_per_event"] + row["bytes_up_per_event"]) * row["delivered"]
        rebuilt = row["steady_bytes_per_event"] * row["delivered"] + row["fixed_bytes_per_connection"] * 2
        assert rebuilt == pytest.approx(total, abs=1e-6), technique


def test_steady_bytes_leave_the_handshake_out(feed):
    for technique, head in (("sse", comparison.MIN_SSE_RESPONSE), ("ws", comparison.MIN_WS_RESPONSE)):
        row, _ = comparison.measure_point(feed, technique, 50, 1, seconds=0.2, min_events=8)
        # once connected, a pushed event costs its framed bytes (within the few digits events differ by) ...
        assert row["steady_bytes_per_event"] == pytest.approx(row["framing_bytes_per_event"], rel=0.03), technique
        # ... and the handshake (a request and a response head at least) is the fixed cost
        assert row["fixed_bytes_per_connection"] > len(head), technique


def test_a_point_whose_window_holds_nothing_gives_nan_not_a_number_made_up():
    window = comparison.measurement._Window(tap=None, subscribers=1)
    steady, deliveries = window.steady()
    assert deliveries == 0 and math.isnan(steady)


# -- the Wilson interval -------------------------------------------------------------------------------

def test_wilson_interval_matches_known_values_and_stays_in_range():
    low, high = comparison.wilson_interval(12, 12)
    assert low == pytest.approx(0.7575, abs=1e-4) and high == 1.0
    low, high = comparison.wilson_interval(6, 12)
    assert low == pytest.approx(0.2538, abs=1e-4) and high == pytest.approx(0.7462, abs=1e-4)
    low, high = comparison.wilson_interval(0, 30)
    assert low == 0.0 and 0 < high < 0.12
    low, high = comparison.wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


# -- proxy lines, from the config the balancer really writes --------------------------------------------

@pytest.mark.parametrize("policy", ["round_robin", "ticket_hash", "cookie"])
def test_proxy_directives_are_lines_of_the_generated_config(policy):
    table = comparison.proxy_directives(policy)
    config = render_config([as_backend("A=http://127.0.0.1:8001"), as_backend("B=http://127.0.0.1:8002")], policy,
                           directory="nginx-dir", host="127.0.0.1", port=8080)
    assert set(comparison.PUSH_DIRECTIVES) <= set(table.directive)
    for line in table.line:
        if not line.startswith("map "):
            assert line in config
    lines = dict(zip(table.directive, table.line))
    assert lines["proxy_buffering"] == "proxy_buffering off;"
    assert lines["proxy_set_header Upgrade"] == "proxy_set_header Upgrade $http_upgrade;"
    assert lines["proxy_http_version"] == "proxy_http_version 1.1;"


# -- what a page needs -------------------------------------------------------------------------------

def test_script_lines_leave_out_blank_lines_and_comments():
    source = "// a comment\n\nconst a = 1;   // trailing\n/* block\n still */\nlet b = 2;\n"
    assert comparison.script_lines(source) == 2


def test_technique_lines_count_the_regions_when_a_page_marks_some(tmp_path):
    marked = tmp_path / "marked.html"
    marked.write_text("<script>\nconst x = 1;\n// region: push\nconst s = new EventSource('/e');\n"
                      "s.onmessage = (e) => show(e);\n// endregion\nwindow.test = 1;\n</script>\n")
    plain = tmp_path / "plain.html"
    plain.write_text("<script>\nconst x = 1;\nconst s = new EventSource('/e');\n</script>\n")
    assert comparison.technique_lines(str(marked)) == (2, "regions push")
    assert comparison.technique_lines(str(plain)) == (2, "whole script")


def test_browser_table_counts_every_technique_and_the_stomp_library():
    table = comparison.browser_table().set_index("technique")
    assert list(table.index) == list(comparison.TECHNIQUES)
    assert (table.technique_lines > 0).all()
    assert table.library_lines["stomp"] > 0 and (table.library_lines.drop("stomp") == 0).all()
    assert "EventSource" in comparison.page_script("sse.html")


# -- tables and colours ------------------------------------------------------------------------------

def test_latency_percentiles_counts_and_orders():
    frame = pd.DataFrame({"technique": ["sse"] * 100 + ["poll"] * 10,
                          "latency_ms": list(range(1, 101)) + [500.0] * 10})
    table = comparison.latency_percentiles(frame)
    assert table.loc["sse", "n"] == 100 and table.loc["poll", "n"] == 10
    assert table.loc["sse", "p50_ms"] == pytest.approx(50.5) and table.loc["sse", "max_ms"] == 100
    assert (table.p50_ms <= table.p90_ms).all() and (table.p90_ms <= table.p99_ms).all()


def test_colour_by_technique_uses_the_course_colour_whatever_the_order():
    from lab.plots import plot_bars, plot_lines

    frame = pd.DataFrame({"technique": ["WebSocket", "SSE", "short polling"] * 2, "x": [1, 1, 1, 2, 2, 2],
                          "y": [1, 2, 3, 4, 5, 6]})
    ax = plot_lines(frame, x="x", y="y", hue="technique", xlabel="x (s)", ylabel="y (B)")
    comparison.colour_by_technique(ax)
    assert {line.get_label(): line.get_color() for line in ax.get_lines()} == {
        "SSE": technique_color("sse"), "WebSocket": technique_color("ws"), "short polling": technique_color("poll")}
    bars = plot_bars(frame.head(3), x="technique", y="y", xlabel="technique (name)", ylabel="y (B)")
    comparison.colour_by_technique(bars)
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in bars.containers[0].patches]
    assert colours == [technique_color("ws"), technique_color("sse"), technique_color("poll")]
