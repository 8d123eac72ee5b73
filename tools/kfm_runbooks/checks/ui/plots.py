"""Small status grids for the UI runbooks (matplotlib is imported only when drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLORS = {True: "#2e7d32", False: "#c62828", None: "#cfd8dc"}


def status_grid(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[bool | None]],
    title: str,
) -> Any:
    """A rows x columns grid: green = good, red = bad, grey = not applicable."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    height = max(1.6, 0.35 * len(rows) + 1.0)
    fig, ax = plt.subplots(figsize=(6, min(height, 4.0)), dpi=80)
    for y, row in enumerate(values):
        for x, value in enumerate(row):
            ax.add_patch(Rectangle((x, y), 0.95, 0.9, color=COLORS[value]))
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([i + 0.475 for i in range(len(columns))], list(columns), fontsize=7)
    ax.set_yticks([i + 0.45 for i in range(len(rows))], list(rows), fontsize=8)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9, pad=18)
    ax.legend(
        handles=[
            Patch(color=COLORS[True], label="ok"),
            Patch(color=COLORS[False], label="broken"),
            Patch(color=COLORS[None], label="n/a"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    return fig
