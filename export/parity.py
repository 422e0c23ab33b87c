"""Parity between the eager FP32 model and a candidate artifact: figures, tolerances and the gate.

Every figure compares logits [images, classes] of the eager model (reference) and the candidate
on the same preprocessed inputs. The gate fails closed: a missing or non-finite figure fails it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError, ParityError
from core.scores import sigmoid
from models.metrics import TOP_K, average_precision


@dataclass(frozen=True)
class Tolerances:
    """Limits of one precision. ``None`` means the figure is not gated.

    Attributes:
        logits_rel: Max |Δlogit| divided by the image's largest |reference logit|.
        prob_abs: Max |Δ sigmoid(logit)|.
        min_cosine: Least cosine similarity between an image's two logit vectors.
        flip_rate: Largest fraction of (image, class) decisions allowed to change at the threshold.
        topk_disagreement: Largest fraction of images whose top-3 class sets may differ.
        map_drop: Largest mAP loss in points (0-100), when labels are given.
    """

    logits_rel: float
    prob_abs: float
    min_cosine: float
    flip_rate: float
    topk_disagreement: float
    map_drop: float


# The values a limit can take: the figure's own range (a NaN or a negative bound would fail every gate).
DOMAINS = {
    "logits_rel": (0.0, math.inf),
    "prob_abs": (0.0, 1.0),
    "min_cosine": (-1.0, 1.0),
    "flip_rate": (0.0, 1.0),
    "topk_disagreement": (0.0, 1.0),
    "map_drop": (0.0, 100.0),
}

# FP32: the same arithmetic in another order (ONNX Runtime's fused kernels vs torch). Observed
# differences are ~1e-6 of the logit scale; 1e-4 leaves room for deeper nets without hiding a
# wrong weight or op, which moves logits by percents. A probability within rounding of the
# threshold may flip, hence a small non-zero flip budget (1 decision in 200).
FP32 = Tolerances(
    logits_rel=1e-4, prob_abs=1e-4, min_cosine=0.99999, flip_rate=0.005, topk_disagreement=0.0, map_drop=0.05
)
# FP16 backbone, FP32 head: 11-bit mantissas through ~100 layers give relative errors ~1e-3;
# 1e-2 on logits and probabilities, cosine 0.999 and a 1-point mAP budget are the usual
# acceptance for half precision.
FP16 = Tolerances(
    logits_rel=1e-2, prob_abs=1e-2, min_cosine=0.999, flip_rate=0.02, topk_disagreement=0.05, map_drop=1.0
)
# INT8 Q/DQ: 8-bit activations move logits by several percent; the contract is the accuracy,
# a 1-point mAP budget, with looser per-output limits (the demo model's worst relative logit
# error is 0.06-0.07 across the three calibration methods, docs/calibration.md).
INT8 = Tolerances(logits_rel=0.1, prob_abs=0.1, min_cosine=0.98, flip_rate=0.05, topk_disagreement=0.2, map_drop=1.0)
TOLERANCES: dict[str, Tolerances] = {"fp32": FP32, "fp16": FP16, "int8": INT8}
# Where the gates that admit an ONNX graph run it: the CPU provider, present wherever ONNX Runtime
# is and deterministic, in the session configuration the runner serves with.
GATE_DEVICE = "cpu"


@dataclass(frozen=True)
class ParityReport:
    """Figures of one comparison and the gate's verdict.

    Attributes:
        precision: Which tolerances were applied.
        images: Number of images compared.
        figures: Name → value (see :class:`Tolerances` for the gated ones).
        limits: The tolerances applied.
        failures: One readable line per figure over its limit; empty when the gate passes.
    """

    precision: str
    images: int
    figures: dict[str, float]
    limits: Tolerances
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "images": self.images,
            "passed": self.passed,
            "figures": self.figures,
            "limits": dataclasses.asdict(self.limits),
            "failures": list(self.failures),
        }

    def table(self) -> str:
        """A short text table: each figure, its limit and whether it holds."""
        limits = dataclasses.asdict(self.limits)
        lines = [f"parity ({self.precision} limits, {self.images} images): {'PASS' if self.passed else 'FAIL'}"]
        for name, value in self.figures.items():
            limit_name = _LIMIT_OF.get(name)
            limit = "" if limit_name is None else f"{'≥' if name == 'min_cosine' else '≤'} {limits[limit_name]:g}"
            lines.append(f"  {name:24} {value:>12.6g}  {limit}")
        lines.extend(f"  FAILED: {failure}" for failure in self.failures)
        return "\n".join(lines)


class GateError(ParityError):
    """A parity gate failed; ``report`` says which figures and by how much."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(f"{message}: {'; '.join(report.failures)}")
        self.report = report


_LIMIT_OF = {
    "logits_max_rel": "logits_rel",
    "prob_max_abs": "prob_abs",
    "min_cosine": "min_cosine",
    "flip_rate": "flip_rate",
    "topk_disagreement": "topk_disagreement",
    "map_drop": "map_drop",
}


def tolerances(precision: str, overrides: Mapping[str, float] | None = None) -> Tolerances:
    """The named tolerances of ``precision``, with explicit overrides (e.g. from ``--tolerance``).

    Raises:
        ConfigError: Unknown precision or tolerance name, or a value outside its domain.
    """
    if precision not in TOLERANCES:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(TOLERANCES)}")
    base = TOLERANCES[precision]
    unknown = sorted(set(overrides or {}) - {f.name for f in dataclasses.fields(Tolerances)})
    if unknown:
        names = ", ".join(f.name for f in dataclasses.fields(Tolerances))
        raise ConfigError(f"unknown tolerance {unknown}; choose from {names}")
    for name, value in (overrides or {}).items():
        low, high = DOMAINS[name]
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"tolerance {name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return dataclasses.replace(base, **dict(overrides or {}))


def add_tolerance_option(parser, example: str = "prob_abs=0.02") -> None:
    """Adds ``--tolerance NAME=VALUE`` (repeatable) to an argparse parser or group."""
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"loosen (or tighten) one gate limit explicitly, e.g. {example}",
    )


def parse_tolerances(values: list[str]) -> dict[str, float]:
    """``["prob_abs=0.02", ...]`` → ``{"prob_abs": 0.02}``."""
    result = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            result[name] = float(number)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--tolerance takes NAME=VALUE, got {value!r}")
    return result


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    precision: str,
    threshold: float,
    limits: Tolerances | None = None,
    targets: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> ParityReport:
    """Compares two logit arrays [images, classes] and applies the gate.

    Args:
        reference: Eager FP32 logits.
        candidate: The artifact's logits on the same inputs.
        precision: Names the limits (``fp32``, ``fp16``, ``int8``) when ``limits`` is None.
        threshold: The model's decision threshold on probabilities.
        limits: Explicit limits (e.g. loosened by flags).
        targets: 0/1 labels [images, classes]; adds both mAPs and their difference.
        class_names: Names of the columns, for the mAP report.

    Raises:
        ConfigError: The arrays' shapes differ.
    """
    limits = limits or tolerances(precision)
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ConfigError(f"reference {reference.shape} and candidate {candidate.shape} logits differ in shape")
    if reference.size == 0:
        raise ConfigError("no outputs to compare: the inputs hold no image")
    with np.errstate(all="ignore"):
        delta = np.abs(candidate - reference)
        scale = np.maximum(np.abs(reference).max(axis=1, keepdims=True), 1e-12)
        p_ref, p_cand = sigmoid(reference), sigmoid(candidate)
        cosine = (reference * candidate).sum(1) / (
            np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-30
        )
        top_ref = np.sort(np.argsort(-reference, axis=1)[:, :TOP_K], axis=1)
        top_cand = np.sort(np.argsort(-candidate, axis=1)[:, :TOP_K], axis=1)
    figures = {
        "logits_max_abs": float(delta.max()),
        "logits_max_rel": float((delta / scale).max()),
        "prob_max_abs": float(np.abs(p_cand - p_ref).max()),
        "min_cosine": float(cosine.min()),
        "flip_rate": float(((p_ref >= threshold) != (p_cand >= threshold)).mean()),
        "topk_disagreement": float((top_ref != top_cand).any(axis=1).mean()),
    }
    if not np.isfinite(candidate).all():
        figures["non_finite_outputs"] = float((~np.isfinite(candidate)).sum())
    if targets is not None:
        map_ref = float(np.nanmean(average_precision(reference, targets)))
        map_cand = float(np.nanmean(average_precision(np.nan_to_num(candidate, nan=-np.inf), targets)))
        figures.update(
            {"map_reference": 100 * map_ref, "map_candidate": 100 * map_cand, "map_drop": 100 * (map_ref - map_cand)}
        )
    return ParityReport(precision, len(reference), figures, limits, _failures(figures, limits))


def _failures(figures: Mapping[str, float], limits: Tolerances) -> tuple[str, ...]:
    failures = []
    if "non_finite_outputs" in figures:
        failures.append(f"the candidate produced {int(figures['non_finite_outputs'])} NaN/Inf logits")
    for name, limit_name in _LIMIT_OF.items():
        if name not in figures:
            continue
        value, limit = figures[name], getattr(limits, limit_name)
        ok = value >= limit if name == "min_cosine" else value <= limit
        if not ok or math.isnan(value):
            relation = "below" if name == "min_cosine" else "above"
            failures.append(f"{name} = {value:.6g} is {relation} the limit {limit:g}")
    return tuple(failures)
