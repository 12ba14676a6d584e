"""Measurement helpers, the plotting helper and the notebook display helper."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from lab.display import browser_url, show
from lab.measure import (LatencyRecorder, Progress, delivery_counts, latency_frame, percentiles, progress,
                             rate_over_time, throughput)
from lab.plots import UnitMissing, plot_bars, plot_cdf, plot_lines, require_unit


# -- measure ----------------------------------------------------------------------------------------

def test_latency_frame_computes_milliseconds_and_keeps_columns():
    events = [{"seq": 1, "sent_at": 100.0, "received_at": 100.25, "client": "a"},
              {"seq": 2, "sent_at": 101.0, "received_at": 101.002, "client": "a"}]
    frame = latency_frame(events, technique="poll")
    assert list(frame.seq) == [1, 2]
    assert frame.latency_ms.round(6).tolist() == [250.0, 2.0]
    assert set(frame.technique) == {"poll"} and "client" in frame.columns


def test_latency_frame_names_missing_fields():
    with pytest.raises(KeyError, match="received_at"):
        latency_frame([{"seq": 1, "sent_at": 1.0}])
    assert latency_frame([]).empty


def test_recorder_stamps_arrival():
    rec = LatencyRecorder(technique="sse")
    rec.received({"seq": 1, "sent_at": 10.0}, at=10.5)
    rec.received({"seq": 2, "sent_at": 11.0}, at=11.1, client=3)
    frame = rec.frame()
    assert len(rec) == 2
    assert frame.latency_ms.round(6).tolist() == [500.0, 100.0]
    assert frame.technique.tolist() == ["sse", "sse"]


def test_percentiles_overall_and_by_group():
    frame = pd.DataFrame({"latency_ms": list(range(1, 101)) + [5.0] * 10,
                          "technique": ["poll"] * 100 + ["ws"] * 10})
    overall = percentiles(frame[frame.technique == "poll"])
    row = overall.iloc[0]
    assert row["count"] == 100 and row["max"] == 100
    assert row["p50"] == pytest.approx(50.5) and row["p95"] == pytest.approx(95.05)
    assert row["p99"] == pytest.approx(99.01)
    grouped = percentiles(frame, by="technique")
    assert grouped.loc["ws", "p99"] == 5.0 and grouped.loc["ws", "count"] == 10
    assert list(percentiles([1.0, 2.0, 3.0], ps=(50,)).columns) == ["count", "mean", "p50", "max"]
    with pytest.raises(KeyError, match="latency_ms"):
        percentiles(pd.DataFrame({"x": [1]}))


def test_throughput_and_rate_over_time():
    result = throughput([0.0, 0.5, 1.0, 2.0], amounts=[100, 100, 100, 100])
    assert result["per_second"] == 200.0 and result["seconds"] == 2.0
    assert math.isnan(throughput([1.0])["per_second"])
    frame = pd.DataFrame({"t": [10.0, 10.2, 10.9, 12.5], "bytes": [1, 2, 3, 4]})
    rate = rate_over_time(frame, "t", bin_seconds=1.0)
    assert rate.t_s.tolist() == [0.0, 1.0, 2.0] and rate.per_second.tolist() == [3.0, 0.0, 1.0]
    assert rate_over_time(frame, "t", amount="bytes").per_second.tolist() == [6.0, 0.0, 4.0]


def test_delivery_counts():
    counts = delivery_counts(range(1, 11), [1, 2, 4, 3, 3, 5, 6, 7, 42])
    assert counts == {"published": 10, "delivered": 7, "lost": 3, "duplicated": 1, "out_of_order": 1,
                      "unexpected": 1}


def test_progress_writes_a_terminal_line():
    out = io.StringIO()
    with Progress(4, "events", every_seconds=0, stream=out) as bar:
        for _ in range(4):
            bar.update()
    text = out.getvalue()
    assert "\revents 4/4 (100%)" in text and text.endswith("\n")
    assert list(progress([1, 2, 3], label="runs")) == [1, 2, 3]


# -- plots -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["latency", "", None, "latency ()", "latency ( )"])
def test_a_label_without_a_unit_is_refused(label):
    with pytest.raises(UnitMissing, match="unit in parentheses"):
        require_unit(label, "y")


def test_labels_with_units_pass():
    for label in ("latency (ms)", "interval (s)", "requests per event (count)", "share (%)"):
        assert require_unit(label, "x") == label


def test_plot_lines_draws_one_line_per_group_with_labels_and_log_scale():
    frame = pd.DataFrame({"interval_s": [0.1, 1, 10] * 2, "latency_ms": [50, 500, 5000, 1, 1, 1],
                          "technique": ["poll"] * 3 + ["ws"] * 3})
    ax = plot_lines(frame, x="interval_s", y="latency_ms", hue="technique", xlabel="interval (s)",
                    ylabel="latency (ms)", logx=True, title="t")
    assert [line.get_label() for line in ax.get_lines()] == ["poll", "ws"]
    assert ax.get_xlabel() == "interval (s)" and ax.get_ylabel() == "latency (ms)"
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    with pytest.raises(UnitMissing):
        plot_lines(frame, x="interval_s", y="latency_ms", xlabel="interval", ylabel="latency (ms)")
    with pytest.raises(KeyError, match="nope"):
        plot_lines(frame, x="nope", y="latency_ms", xlabel="x (s)", ylabel="y (ms)")


def test_plot_cdf_ends_at_100_percent():
    ax = plot_cdf(pd.DataFrame({"latency_ms": [3, 1, 2, 4]}), "latency_ms", xlabel="latency (ms)")
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == [1, 2, 3, 4] and list(y) == [25, 50, 75, 100]
    assert ax.get_ylabel() == "events at or below (%)"
    ax = plot_cdf(pd.Series([1.0, 2.0], name="gap_ms"), xlabel="gap (ms)")
    assert len(ax.get_lines()) == 1


def test_plot_bars_grouped_stacked_and_labelled():
    frame = pd.DataFrame({"part": ["request", "response"], "headers": [150, 220], "body": [0, 19]})
    ax = plot_bars(frame, x="part", y=["headers", "body"], xlabel="message (kind)", ylabel="size (B)",
                   stacked=True, values=True)
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0, 19, 150, 220]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["request", "response"]
    long = frame.melt(id_vars="part", var_name="what", value_name="bytes")
    ax = plot_bars(long, x="part", y="bytes", hue="what", xlabel="message (kind)", ylabel="size (B)")
    assert len(ax.patches) == 4 and ax.get_legend() is not None


# -- display -----------------------------------------------------------------------------------------

class FakeHandle:
    url = "http://127.0.0.1:41234"


def test_browser_url_locally(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.delenv("SERVER_PUSH_LAB_BASE_URL", raising=False)
    assert browser_url(FakeHandle(), "/login?transport=sse") == "http://127.0.0.1:41234/login?transport=sse"
    assert browser_url("http://0.0.0.0:5000", "feed") == "http://127.0.0.1:5000/feed"


def test_browser_url_through_the_hub_proxy(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    assert browser_url(FakeHandle(), "/m/abc") == "/user/alice/proxy/41234/m/abc"
    monkeypatch.setenv("SERVER_PUSH_LAB_BASE_URL", "https://hub.example.org/user/bob")
    assert browser_url(FakeHandle()) == "https://hub.example.org/user/bob/proxy/41234/"
    assert browser_url(FakeHandle(), base="") == "http://127.0.0.1:41234/"


def test_browser_url_errors():
    with pytest.raises(ValueError, match="no port"):
        browser_url("http://example.org/")
    with pytest.raises(TypeError):
        browser_url(3)


def test_show_outside_jupyter_prints_the_url(capsys, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.delenv("SERVER_PUSH_LAB_BASE_URL", raising=False)
    show(FakeHandle(), "/x")
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:41234/x"


@pytest.mark.notebook
def test_progress_updates_one_output_in_place_in_a_notebook():
    import nbformat

    from grading.lessons import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from lab.measure import Progress\n"
        "with Progress(50, 'events', every_seconds=0) as bar:\n"
        "    for _ in range(50):\n"
        "        bar.update()")])
    result = execute(nb, budget=60)
    assert result.ok, result.error
    outputs = result.nb.cells[0].outputs
    assert len(outputs) == 1, f"expected one output updated in place, got {outputs}"
    assert outputs[0].output_type == "display_data"
    assert outputs[0].data["text/plain"].startswith("events 50/50 (100%)")
