"""Reading fault-run records: per-group counts (:func:`summarize`) and the heat map of a matrix.

Both work on any records frame, one run's or a whole :func:`~lab.lessons.faults.scenarios.fault_matrix`,
so the lesson's table, the tests' checks and the picture all read a run the same way.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd


def summarize(records: pd.DataFrame, by: Sequence[str] = ("fault", "fix", "transport")) -> pd.DataFrame:
    """Per group: logins, completed, logins that lost a state, states lost, duplicated, late,
    dropped channels, median reconnect time and the run's recovery time."""
    by = [c for c in by if c in records.columns]
    grouped = records.groupby(by, sort=False)
    out = grouped.agg(logins=("login", "count"), completed=("completed", "sum"),
                      lost_logins=("lost", lambda s: int((s > 0).sum())), states_lost=("lost", "sum"),
                      duplicated=("duplicated", "sum"), late=("late", "sum"), dropped=("dropped", "sum"),
                      reconnected_s=("reconnected_s", "median"), recover_s=("recover_s", "max"))
    out["failed"] = out["logins"] - out["completed"]
    out["lost_pct"] = 100.0 * out["lost_logins"] / out["logins"]
    return out.reset_index()


def plot_heatmap(matrix: pd.DataFrame, value: str = "lost_pct", *, rows: str = "fault",
                 columns: Sequence[str] = ("fix", "transport"), label: str = "logins that lost a state (%)",
                 title: str | None = None, fmt: str = "{:.0f}", cmap: str = "Reds", vmin: float | None = 0,
                 vmax: float | None = None, ax=None):
    """A heat map of ``value`` with ``rows`` down and ``columns`` across, each cell written on.

    ``label`` names the colour scale and must carry its unit in parentheses (as every axis in
    ``lab.plots``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    from lab.plots import STYLE, require_unit

    require_unit(label, "colour")
    columns = list(columns)
    table = matrix.pivot_table(index=rows, columns=columns, values=value, aggfunc="mean", sort=False)
    with plt.rc_context(STYLE):
        if ax is None:
            _, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.9 * table.shape[1]), max(2.5, 0.8 + 0.6 * table.shape[0])))
        data = table.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=vmin,
                          vmax=vmax if vmax is not None else max(1.0, np.nanmax(data) if data.size else 1.0))
        ax.set_xticks(range(table.shape[1]), [" · ".join(map(str, c)) if isinstance(c, tuple) else str(c)
                                              for c in table.columns], rotation=30, ha="right")
        ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
        ax.set_xlabel(" × ".join(columns) + " (setting)")
        ax.set_ylabel(f"{rows} (injected)")
        ax.grid(False)
        for (i, j), cell in np.ndenumerate(data):
            if not np.isnan(cell):
                ax.text(j, i, fmt.format(cell), ha="center", va="center", fontsize=9,
                        color="white" if cell > 0.6 * (image.get_clim()[1] or 1) else "black")
        bar = ax.figure.colorbar(image, ax=ax)
        bar.set_label(label)
        if title:
            ax.set_title(title)
        ax.figure.tight_layout()
    return ax
