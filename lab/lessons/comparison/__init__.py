"""Lesson 06 and ``benchmarks/techniques.py``: the five push techniques measured under one workload.

Why one package for both: the lesson's small fresh numbers and the committed benchmark CSV must
mean the same thing, so both call :func:`measure_point`, :func:`measure_idle` and :func:`sweep`.

The set-up of every measurement:

- the feed server runs in **its own process** (:class:`FeedProcess`, ``python -m servers feed
  --port 0``), so ``psutil`` reads *its* CPU time, memory and file descriptors, not ours;
- the subscribers and the publisher run here, on the shared server loop (:mod:`servers.runtime`);
  the subscribers reach the server through a wire tap (:mod:`lab.tap`), which counts every
  byte each way; the publisher goes around the tap, so its bytes are not counted;
- HTTP clients keep their connection alive between requests, as a browser does
  (:class:`KeepAliveHTTP`; Tornado's own simple client opens a connection per request).

Each byte count is set against the *protocol minimum* (:func:`wire_cost`), the framing the
protocol itself requires for the events the client received; ``framing_ratio`` 1.00 means the
server adds nothing.

One module per topic, each short enough to read in one sitting:

- :mod:`~lab.lessons.comparison.feed_process`: the server under test, in its own process;
- :mod:`~lab.lessons.comparison.keepalive`: the keep-alive HTTP/1.1 client;
- :mod:`~lab.lessons.comparison.subscribers`: :data:`TECHNIQUES` and one subscriber per technique;
- :mod:`~lab.lessons.comparison.framing`: :func:`wire_cost`, what the protocol requires and what the tap saw;
- :mod:`~lab.lessons.comparison.measurement`: :func:`measure_point` (with the steady-state
  bytes per event apart from the per-connection cost), :func:`measure_idle`, :func:`sweep`, the latency
  percentiles, the committed benchmark CSVs;
- :mod:`~lab.lessons.comparison.ease`: lines per technique, the browser's (:func:`browser_table`) and ours (:func:`ease_table`);
- :mod:`~lab.lessons.comparison.duplex`: can the client send on the connection the server pushes on;
- :mod:`~lab.lessons.comparison.balancer`: the techniques behind a balancer (lesson 07's bug), with Wilson
  intervals, and the proxy lines of the nginx.conf our balancer generates.
"""
from __future__ import annotations

from lab.lessons.comparison.balancer import PUSH_DIRECTIVES, behind_balancer, proxy_directives, wilson_interval
from lab.lessons.comparison.duplex import demonstrate_duplex, duplex_table
from lab.lessons.comparison.ease import (BROWSER_PAGES, EASE_PARTS, browser_table, code_lines, ease_table, page_regions,
                                         page_script, script_lines, technique_lines)
from lab.lessons.comparison.feed_process import FeedProcess, raise_open_file_limit
from lab.lessons.comparison.framing import MIN_SSE_RESPONSE, MIN_WS_REQUEST_HEADERS, MIN_WS_RESPONSE, wire_cost
from lab.lessons.comparison.keepalive import KeepAliveHTTP
from lab.lessons.comparison.measurement import (CAPTURE_BYTES, IDLE_COLUMNS, SUMMARY_COLUMNS, committed_results,
                                                latency_percentiles, measure_idle, measure_point, sweep, sweep_points)
from lab.lessons.comparison.subscribers import LABELS, TECHNIQUES, colour_by_technique, technique_key

__all__ = ["TECHNIQUES", "LABELS", "FeedProcess", "KeepAliveHTTP", "raise_open_file_limit", "measure_point",
           "measure_idle", "sweep", "sweep_points", "wire_cost", "code_lines", "ease_table", "EASE_PARTS",
           "demonstrate_duplex", "duplex_table", "behind_balancer", "SUMMARY_COLUMNS", "IDLE_COLUMNS",
           "CAPTURE_BYTES", "MIN_SSE_RESPONSE", "MIN_WS_REQUEST_HEADERS", "MIN_WS_RESPONSE", "wilson_interval",
           "proxy_directives", "PUSH_DIRECTIVES", "browser_table", "BROWSER_PAGES", "page_script", "page_regions",
           "script_lines", "technique_lines", "latency_percentiles", "committed_results", "colour_by_technique",
           "technique_key"]
