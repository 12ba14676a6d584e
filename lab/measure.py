"""Measurement helpers: every measurement in a lesson ends as a pandas DataFrame.

Why one module: latency, throughput and delivery counts are computed the same way in every
lesson (and in benchmarks/), so "p95 latency" means the same thing in lesson 01 and lesson 09.

- :class:`LatencyRecorder` / :func:`latency_frame`: events (``seq``, ``sent_at``) and when a
  client received them → one row per event with ``latency_ms``.
- :func:`percentiles`: count, mean, p50/p95/p99, max, per group if asked.
- :func:`throughput`, :func:`rate_over_time`: events (or bytes) per second.
- :func:`delivery_counts`: lost, duplicated and out-of-order events for a stream with gapless seq.
- :class:`Progress`: a text progress line for long measurement cells, in a notebook or a terminal.

Times are ``time.time()`` floats (seconds), the clock the servers stamp ``sent_at`` with; the
servers run on the same machine, so there is no clock skew to correct.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

__all__ = ["LatencyRecorder", "latency_frame", "percentiles", "throughput", "rate_over_time",
           "delivery_counts", "Progress", "progress"]

DEFAULT_PERCENTILES = (50, 95, 99)


def latency_frame(events: Iterable[Mapping[str, Any]], *, sent: str = "sent_at", received: str = "received_at",
                  **labels: Any) -> pd.DataFrame:
    """One row per event with ``latency_ms = (received - sent) * 1000``.

    ``events`` are mappings with at least ``sent`` and ``received`` (seconds); other keys
    (``seq``, ``client``...) are kept as columns. ``labels`` are added as constant columns, e.g.
    ``latency_frame(events, technique="sse")`` so frames of several runs can be concatenated.
    """
    frame = pd.DataFrame(list(events))
    if frame.empty:
        frame = pd.DataFrame(columns=["seq", sent, received])
    missing = [c for c in (sent, received) if c not in frame.columns]
    if missing:
        raise KeyError(f"each event needs {sent!r} and {received!r}; missing column(s): {', '.join(missing)}")
    frame["latency_ms"] = (frame[received].astype(float) - frame[sent].astype(float)) * 1000.0
    for key, value in labels.items():
        frame[key] = value
    return frame


class LatencyRecorder:
    """Collects received events with their arrival time; ``frame()`` gives the DataFrame.

    Call :meth:`received` as each event arrives (from any thread)::

        rec = LatencyRecorder(technique="poll")
        for event in client.events():
            rec.received(event)          # stamps received_at = time.time()
        rec.frame()                      # seq, sent_at, received_at, latency_ms, technique
    """

    def __init__(self, **labels: Any) -> None:
        self.labels = labels
        self.rows: list[dict[str, Any]] = []

    def received(self, event: Mapping[str, Any], at: float | None = None, **extra: Any) -> None:
        """Record one event (``seq``, ``sent_at``...) received at ``at`` (default: now)."""
        row = {"seq": event.get("seq"), "sent_at": event.get("sent_at"),
               "received_at": time.time() if at is None else at}
        row.update(extra)
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def frame(self) -> pd.DataFrame:
        return latency_frame(self.rows, **self.labels)


def percentiles(data: pd.DataFrame | pd.Series | Iterable[float], column: str = "latency_ms", *,
                by: str | list[str] | None = None, ps: Iterable[float] = DEFAULT_PERCENTILES) -> pd.DataFrame:
    """count, mean, p50, p95, p99 (or ``ps``) and max of ``column``, overall or per group ``by``."""
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame({column: pd.Series(list(data) if not isinstance(data, pd.Series) else data,
                                               dtype=float)})
    if column not in data.columns:
        raise KeyError(f"no column {column!r}; the frame has: {', '.join(map(str, data.columns))}")
    ps = list(ps)

    def summary(values: pd.Series) -> pd.Series:
        values = values.dropna().astype(float)
        out = {"count": int(values.size), "mean": values.mean() if values.size else float("nan")}
        for p in ps:
            out[f"p{p:g}"] = values.quantile(p / 100) if values.size else float("nan")
        out["max"] = values.max() if values.size else float("nan")
        return pd.Series(out)

    if by is None:
        return summary(data[column]).to_frame().T.astype({"count": int})
    rows = {key: summary(group[column]) for key, group in data.groupby(by, sort=True)}
    result = pd.DataFrame(rows).T
    result.index.names = [by] if isinstance(by, str) else list(by)
    return result.astype({"count": int})


def throughput(times: Iterable[float], amounts: Iterable[float] | None = None) -> dict[str, float]:
    """Items (or ``amounts``, e.g. bytes) per second between the first and the last timestamp."""
    stamps = sorted(float(t) for t in times)
    total = float(sum(amounts)) if amounts is not None else float(len(stamps))
    span = (stamps[-1] - stamps[0]) if len(stamps) >= 2 else 0.0
    return {"count": float(len(stamps)), "total": total, "seconds": span,
            "per_second": total / span if span > 0 else float("nan")}


def rate_over_time(frame: pd.DataFrame, time_column: str, *, bin_seconds: float = 1.0,
                   amount: str | None = None) -> pd.DataFrame:
    """Events (or the sum of ``amount``) per second in bins of ``bin_seconds``, from the first event.

    Returns columns ``t_s`` (bin start, seconds since the first event) and ``per_second``.
    """
    if frame.empty:
        return pd.DataFrame(columns=["t_s", "per_second"])
    start = frame[time_column].min()
    bins = ((frame[time_column] - start) // bin_seconds).astype(int)
    values = frame[amount] if amount else pd.Series(1, index=frame.index)
    sums = values.groupby(bins).sum()
    full = sums.reindex(range(int(bins.max()) + 1), fill_value=0)
    return pd.DataFrame({"t_s": full.index * bin_seconds, "per_second": full.values / bin_seconds})


def delivery_counts(published: Iterable[int], received: Iterable[int]) -> dict[str, int]:
    """How a stream of seq numbers arrived: delivered, lost, duplicated, out of order, unexpected.

    ``published`` are the seqs sent; ``received`` the seqs one client got, in arrival order.
    """
    sent = set(published)
    got = list(received)
    seen: set[int] = set()
    duplicated = out_of_order = 0
    highest = None
    for seq in got:
        if seq in seen:
            duplicated += 1
            continue
        seen.add(seq)
        if highest is not None and seq < highest:
            out_of_order += 1
        highest = seq if highest is None else max(highest, seq)
    return {"published": len(sent), "delivered": len(seen & sent), "lost": len(sent - seen),
            "duplicated": duplicated, "out_of_order": out_of_order, "unexpected": len(seen - sent)}


class Progress:
    """A one-line text progress display for long cells: ``events 120/500 (24%) 3.1 s``.

    In a notebook it updates one output in place (IPython's display handles); elsewhere it
    rewrites one terminal line. Updates are throttled, so calling it per event is cheap.
    """

    def __init__(self, total: int | None, label: str = "progress", *, every_seconds: float = 0.25,
                 stream: Any = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.every = every_seconds
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0
        self._handle = _notebook_display(self.text())

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        if self.total:
            return f"{self.label} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%) {elapsed:.1f} s"
        return f"{self.label} {self.done} {elapsed:.1f} s"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every or (self.total is not None and self.done >= self.total):
            self._last = now
            self._render()

    def _render(self, final: bool = False) -> None:
        if self._handle is not None:
            self._handle.update(_Text(self.text()))
        else:
            self.stream.write("\r" + self.text() + ("\n" if final else ""))
            self.stream.flush()

    def close(self) -> None:
        self._render(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[Any], total: int | None = None, label: str = "progress") -> Iterable[Any]:
    """Wrap an iterable with a :class:`Progress` line: ``for i in progress(range(n), label="runs")``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, label) as bar:
        for item in iterable:
            yield item
            bar.update()


class _Text:
    """Plain text for IPython's display machinery (no HTML, so it reads the same everywhere)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _notebook_display(text: str):
    """A display handle when running in a Jupyter kernel, else None (then we print to a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or "ZMQInteractiveShell" not in type(shell).__name__ + "".join(
            c.__name__ for c in type(shell).__mro__):
        return None
    from IPython.display import display

    return display(_Text(text), display_id=True)
