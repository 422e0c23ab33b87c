"""The P(j | i) heatmap with the mask's kept edges marked and class names on both axes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.files import atomic_output

from .correlation import CorrelationMask


def plot_mask(result: CorrelationMask, path: str | os.PathLike) -> Path:
    """Draws P(j | i) (row i = given class, column j) and outlines every kept cell; writes a PNG."""
    path = Path(path)
    names = result.class_names
    n = len(names)
    side = float(np.clip(0.14 * n, 5.0, 16.0))
    font = float(np.clip(400.0 / max(n, 1), 4.0, 10.0))
    figure = Figure(figsize=(side + 2.5, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(result.correlation.probability, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="P(j | i)")

    off_diagonal = result.mask & ~np.eye(n, dtype=bool)
    marker_size = (side * 72.0 / n) ** 2 * 0.5
    rows, cols = np.nonzero(off_diagonal)
    axes.scatter(
        cols,
        rows,
        s=marker_size,
        marker="s",
        facecolors="none",
        edgecolors="tab:red",
        linewidths=0.6,
        label=f"kept edge i→j ({result.edges})",
    )
    loops = np.flatnonzero(result.mask.diagonal())
    if loops.size:
        axes.scatter(
            loops, loops, s=marker_size * 0.3, marker="o", color="tab:orange", label=f"self-loop ({loops.size})"
        )

    axes.set_xticks(range(n), names, rotation=90, fontsize=font)
    axes.set_yticks(range(n), names, fontsize=font)
    axes.set_xlabel("j (co-occurring class)")
    axes.set_ylabel("i (given class)")
    axes.set_title(f"P(j | i) from {result.correlation.source}: kept where P > {result.threshold} ({result.mode} mode)")
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    with atomic_output(path) as handle:
        figure.savefig(handle, format="png", dpi=150)
    return path
