"""Plotting helpers the experiments share. matplotlib is optional: without it the report has
tables only, and says how to get the pictures."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PLOT_NOTE = ("matplotlib is not installed, so this report has tables only. For the pictures, "
             "install the plot extra (`pip install -e .[plot]` or `pip install matplotlib`) and run again.")


def load_pyplot():
    """matplotlib's pyplot with a file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def heatmap(ax, table: dict, rows: list[str], columns: list[str], title: str, digits: int = 2, cmap: str = "viridis"):
    """table[row][column] as coloured cells with their values written in."""
    values = np.array([[table[r][c] for c in columns] for r in rows])  # (rows, columns)
    image = ax.imshow(values, cmap=cmap)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    middle = (values.min() + values.max()) / 2
    for i in range(len(rows)):
        for j in range(len(columns)):
            ax.text(j, i, f"{values[i, j]:.{digits}f}", ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] < middle else "black")
    ax.set_title(title)
    return image


def save(fig, plt, out_dir: Path, name: str, written: list[str]) -> None:
    """Save `fig` as out_dir/name (a PNG), close it, and note the name in `written`."""
    fig.tight_layout()
    temporary = out_dir / f".{name}.tmp"
    fig.savefig(temporary, dpi=120, format="png")
    plt.close(fig)
    os.replace(temporary, out_dir / name)
    written.append(name)


def ratio_heatmap(fig, ax, ratio: dict, names: list[str], title: str, vmax: float | None = None):
    """ratio[trained_on][evaluated_on] (1 on the diagonal) on a logarithmic colour scale, so that a
    cell at x1.1 and one at x3 both read, and the colour bar says "x"."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter

    values = np.array([[ratio[t][e] for e in names] for t in names])  # (N, N), >= about 1
    low, high = max(values.min(), 1e-3), max(vmax or values.max(), values.min() * 1.01)
    image = ax.imshow(values, cmap="magma_r", norm=LogNorm(vmin=low, vmax=high))
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    middle = np.sqrt(low * high)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"x{values[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if values[i, j] < middle else "white")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    times = FuncFormatter(lambda value, _: f"x{value:.2f}")
    bar.ax.yaxis.set_major_formatter(times)
    bar.ax.yaxis.set_minor_formatter(times)
    return image
