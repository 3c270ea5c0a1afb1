"""Small statistics the experiments share: rank correlation, set overlap, seed summaries."""
from __future__ import annotations

import numpy as np


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (Pearson correlation of the ranks; ties get their mean rank);
    None when either side has no spread."""
    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=np.float64)
        for v in np.unique(values):  # average the ranks of tied values
            tied = values == v
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def jaccard_index(a: set, b: set) -> float:
    """|a & b| / |a | b| (1 for two empty sets)."""
    return len(a & b) / len(a | b) if (a or b) else 1.0
