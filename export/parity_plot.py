"""|Δ probability| against the reference probability, one dot per (image, class)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.files import atomic_output
from core.scores import sigmoid

from .parity import ParityReport


def plot_parity(reference: np.ndarray, candidate: np.ndarray, report: ParityReport, path: str | os.PathLike) -> Path:
    """Scatter of |Δp| vs reference p (log scale), with the prob_abs limit and the decision threshold."""
    p_ref, p_cand = sigmoid(reference), sigmoid(candidate)
    delta = np.abs(p_cand - p_ref).ravel()
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    floor = 1e-9
    axes.scatter(p_ref.ravel(), np.maximum(delta, floor), s=6, alpha=0.5, color="tab:blue", label="image × class")
    axes.axhline(report.limits.prob_abs, color="tab:red", linestyle="--", label=f"limit {report.limits.prob_abs:g}")
    axes.set_yscale("log")
    axes.set_ylim(floor / 2, max(1.0, float(delta.max()) * 2))
    axes.set_xlim(0, 1)
    axes.set_xlabel("reference probability (eager FP32)")
    axes.set_ylabel("|Δ probability| (zeros drawn at 1e-9)")
    verdict = "PASS" if report.passed else "FAIL"
    axes.set_title(f"{report.precision} parity on {report.images} images: {verdict}")
    axes.legend(loc="upper right", fontsize=8)
    path = Path(path)
    with atomic_output(path) as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path
