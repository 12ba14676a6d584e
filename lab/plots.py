"""The one plotting helper every lesson uses: lines, CDFs and bars in one shared style.

Why one helper: a learner compares plots across lessons, so they should look alike; and every
axis must say what it measures *and in which unit* ("latency (ms)", not "latency"). The helper
refuses a label without a unit in parentheses, so a plot cannot silently lose its units.
Unitless quantities still name what they count: "requests per event (count)", "share (%)".

Each function returns the matplotlib ``Axes`` (end the cell with ``;`` to hide its repr) and
accepts ``ax=`` to draw into an existing one, ``logx``/``logy`` for log scales and ``title``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_lines", "plot_cdf", "plot_bars", "UnitMissing", "require_unit", "STYLE", "TECHNIQUE_COLORS",
           "technique_color"]

# One colour per technique across the whole course, whatever a plot's order of lines or bars:
# a learner who saw SSE in green in lesson 03 finds it green in lesson 06. Keys are the short names
# the code uses; technique_color also takes the labels the tables show ("short polling", ...).
TECHNIQUE_COLORS = {"poll": "#1f77b4", "longpoll": "#ff7f0e", "sse": "#2ca02c", "ws": "#d62728",
                    "stomp": "#9467bd"}
_TECHNIQUE_ALIASES = {"short polling": "poll", "short poll": "poll", "long polling": "longpoll",
                      "long poll": "longpoll", "server-sent events": "sse", "websocket": "ws",
                      "stomp over websocket": "stomp"}


def technique_color(name: str) -> str:
    """The course's colour for a technique, by short name (``"sse"``) or label (``"long polling"``)."""
    key = str(name).strip().lower()
    key = _TECHNIQUE_ALIASES.get(key, key)
    if key not in TECHNIQUE_COLORS:
        raise KeyError(f"no colour for technique {name!r}; techniques: {sorted(TECHNIQUE_COLORS)}")
    return TECHNIQUE_COLORS[key]


STYLE: dict[str, Any] = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "axes.prop_cycle": matplotlib.cycler(color=["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                                "#8c564b", "#e377c2", "#17becf"]),
}

def _inline_in_kernels() -> None:
    """Select the inline backend inside a Jupyter kernel.

    Without it, some ipykernel/matplotlib-inline combinations show only a notebook's first
    figure in a fresh kernel and drop the later ones silently; ``%matplotlib inline`` is reliable.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and "IPKernelApp" in shell.config:
        shell.run_line_magic("matplotlib", "inline")


_inline_in_kernels()

_UNIT = re.compile(r"\(\s*[^()\s][^()]*\)")


class UnitMissing(ValueError):
    """An axis label without a unit in parentheses."""


def require_unit(label: str | None, axis: str) -> str:
    """Return ``label`` if it names a unit in parentheses, else raise :class:`UnitMissing`."""
    if not label or not isinstance(label, str) or not _UNIT.search(label):
        raise UnitMissing(f"the {axis} label {label!r} needs a unit in parentheses, e.g. 'latency (ms)', "
                          f"'interval (s)', 'header bytes (B)' or, for a plain count, 'requests (count)'")
    return label


def _new_axes(ax):
    if ax is not None:
        return ax
    with plt.rc_context(STYLE):
        _, ax = plt.subplots()
    return ax


def _finish(ax, xlabel: str, ylabel: str, title: str | None, logx: bool, logy: bool, legend: bool):
    with plt.rc_context(STYLE):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.figure.tight_layout()
    return ax


def _columns(frame: pd.DataFrame, *names: str | None) -> None:
    missing = [n for n in names if n is not None and n not in frame.columns]
    if missing:
        raise KeyError(f"no column(s) {', '.join(map(repr, missing))}; the frame has: "
                       f"{', '.join(map(str, frame.columns))}")


def plot_lines(frame: pd.DataFrame, x: str, y: str | Sequence[str], *, xlabel: str, ylabel: str,
               hue: str | None = None, title: str | None = None, logx: bool = False, logy: bool = False,
               marker: str | None = "o", ax=None):
    """One line per ``y`` column, or per value of ``hue``: ``y`` against ``x``, sorted by ``x``."""
    require_unit(xlabel, "x")
    require_unit(ylabel, "y")
    ys = [y] if isinstance(y, str) else list(y)
    _columns(frame, x, hue, *ys)
    ax = _new_axes(ax)
    with plt.rc_context(STYLE):
        groups = frame.groupby(hue, sort=True) if hue else [(None, frame)]
        for key, group in groups:
            group = group.sort_values(x)
            for column in ys:
                label = column if key is None else (f"{key}" if len(ys) == 1 else f"{key}: {column}")
                ax.plot(group[x], group[column], marker=marker, label=label)
    return _finish(ax, xlabel, ylabel, title, logx, logy, legend=bool(hue) or len(ys) > 1)


def plot_cdf(frame: pd.DataFrame | pd.Series, column: str | None = None, *, xlabel: str,
             ylabel: str = "events at or below (%)", hue: str | None = None, title: str | None = None,
             logx: bool = False, ax=None):
    """The empirical CDF of ``column`` (one curve per ``hue`` value): the share of values ≤ x."""
    require_unit(xlabel, "x")
    require_unit(ylabel, "y")
    if isinstance(frame, pd.Series):
        column = column or frame.name or "value"
        frame = frame.to_frame(column)
    if column is None:
        raise ValueError("plot_cdf needs the column to plot, e.g. plot_cdf(df, 'latency_ms', xlabel=...)")
    _columns(frame, column, hue)
    ax = _new_axes(ax)
    with plt.rc_context(STYLE):
        groups = frame.groupby(hue, sort=True) if hue else [(None, frame)]
        for key, group in groups:
            values = np.sort(group[column].dropna().to_numpy(dtype=float))
            if values.size == 0:
                continue
            share = np.arange(1, values.size + 1) / values.size * 100.0
            ax.step(values, share, where="post", label=None if key is None else str(key))
        ax.set_ylim(0, 100.5)
    return _finish(ax, xlabel, ylabel, title, logx, False, legend=bool(hue))


def plot_bars(frame: pd.DataFrame, x: str, y: str | Sequence[str], *, xlabel: str, ylabel: str,
              hue: str | None = None, stacked: bool = False, title: str | None = None, logy: bool = False,
              values: bool = False, ax=None):
    """Bars of ``y`` per ``x`` category; several ``y`` columns or a ``hue`` give grouped (or stacked) bars.

    ``values=True`` writes each bar's value on it.
    """
    require_unit(xlabel, "x")
    require_unit(ylabel, "y")
    ys = [y] if isinstance(y, str) else list(y)
    _columns(frame, x, hue, *ys)
    if hue:
        if len(ys) != 1:
            raise ValueError("plot_bars takes either several y columns or a hue column, not both")
        table = frame.pivot_table(index=x, columns=hue, values=ys[0], aggfunc="sum", sort=False)
    else:
        table = frame.set_index(x)[ys]
    ax = _new_axes(ax)
    with plt.rc_context(STYLE):
        positions = np.arange(len(table.index))
        n = len(table.columns)
        width = 0.8 if stacked else 0.8 / n
        bottom = np.zeros(len(table.index))
        for i, column in enumerate(table.columns):
            heights = table[column].fillna(0).to_numpy(dtype=float)
            offset = 0 if stacked else (i - (n - 1) / 2) * width
            bars = ax.bar(positions + offset, heights, width, bottom=bottom if stacked else None,
                          label=str(column))
            if values:
                ax.bar_label(bars, fmt="%g", label_type="center" if stacked else "edge", fontsize=8)
            if stacked:
                bottom = bottom + heights
        ax.set_xticks(positions, [str(v) for v in table.index])
        ax.grid(axis="x", visible=False)
    return _finish(ax, xlabel, ylabel, title, False, logy, legend=n > 1)
