"""Multi-label metrics of the ML-GCN suite, as functions on numpy arrays.

- mAP: mean over classes of the non-interpolated average precision of ML-GCN's
  ``AveragePrecisionMeter``: rank images by score, and average the precision at the rank of each
  positive. Tied scores are ranked as one group (every tied image is retrieved at once), so the
  result does not depend on sort order, where ML-GCN's depended on ``torch.sort``; without ties
  the two agree. Classes with no positive in the split have no AP: they are excluded and reported.
- CP, CR, CF1 (per-class, averaged) and OP, OR, OF1 (overall, pooled) at a probability threshold,
  as ML-GCN's ``evaluation``; the top-3 variants predict, per image, only the 3 highest-scoring
  classes that also pass the threshold (ML-GCN's ``overall_topk``).

Class-averaged metrics (CP, CR) average over the classes with at least one positive, as mAP does;
a class never predicted has precision 0. Overall metrics (OP, OR) pool every decision, so a class
predicted although absent from the split still counts against OP. Two differences from ML-GCN's
``evaluation()``: it averages CP/CR over all classes, scoring absent ones 0, and its
``Np[Np == 0] = 1`` adds one phantom prediction per never-predicted class to OP's denominator.
Targets are 0/1: ML-GCN's VOC "difficult" encoding (-1/0/1) is refused, not guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.config import DEFAULT_DECISION_THRESHOLD
from core.errors import ConfigError

TOP_K = 3


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class non-interpolated average precision.

    Args:
        scores: [images, classes], higher means more likely (logits or probabilities).
        targets: [images, classes], 1/True for positives, 0/False otherwise.

    Returns:
        [classes] float64; NaN for classes without a positive.
    """
    scores, targets = _check(scores, targets)
    result = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        positives = targets[:, c]
        if not positives.any():
            continue
        order = np.argsort(-scores[:, c], kind="stable")
        ranked_scores, ranked_hits = scores[order, c], positives[order]
        # Last rank of each group of tied scores: precision is read there for the whole group.
        group_end = np.r_[np.flatnonzero(np.diff(ranked_scores) != 0), len(ranked_scores) - 1]
        hits_to_end = np.cumsum(ranked_hits)[group_end]
        hits_in_group = np.diff(np.r_[0, hits_to_end])
        precision = hits_to_end / (group_end + 1)
        result[c] = float((hits_in_group * precision).sum() / positives.sum())
    return result


def label_frequency_baseline(targets: np.ndarray) -> float:
    """mAP of scoring every image by its classes' label frequency (no image information).

    A constant score per class ties all images, so each class's AP is its prevalence in the split:
    the baseline is the mean prevalence over the classes with a positive.
    """
    targets = np.asarray(targets).astype(bool)
    prevalence = targets.mean(axis=0)[targets.any(axis=0)]
    return float(prevalence.mean()) if prevalence.size else float("nan")


def precision_recall_f1(
    probabilities: np.ndarray,
    targets: np.ndarray,
    threshold: float = DEFAULT_DECISION_THRESHOLD,
    top_k: int | None = None,
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 of the decisions ``probability >= threshold`` (top-k only, if given).

    Args:
        probabilities: [images, classes] in [0, 1].
        targets: [images, classes] 0/1.
        threshold: Decision threshold on probabilities.
        top_k: When given, per image only the ``top_k`` highest-scoring classes can be predicted.

    Returns:
        Keys ``CP``, ``CR``, ``CF1``, ``OP``, ``OR``, ``OF1`` (fractions in [0, 1]).
    """
    probabilities, targets = _check(probabilities, targets)
    if probabilities.min(initial=0.0) < 0.0 or probabilities.max(initial=0.0) > 1.0:
        raise ConfigError("probabilities must lie in [0, 1]; pass sigmoid(logits), not logits")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"the decision threshold must lie in (0, 1), got {threshold}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    predicted = probabilities >= threshold
    if top_k is not None:
        keep = np.zeros_like(predicted)
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        np.put_along_axis(keep, top, True, axis=1)
        predicted &= keep
    correct = (predicted & targets).sum(axis=0).astype(np.float64)
    n_predicted = predicted.sum(axis=0).astype(np.float64)
    n_positive = targets.sum(axis=0).astype(np.float64)
    op = float(correct.sum() / n_predicted.sum()) if n_predicted.sum() else 0.0
    o_r = float(correct.sum() / n_positive.sum())
    present = n_positive > 0
    correct, n_predicted, n_positive = correct[present], n_predicted[present], n_positive[present]
    cp = float(np.mean(np.divide(correct, n_predicted, out=np.zeros_like(correct), where=n_predicted > 0)))
    cr = float(np.mean(correct / n_positive))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


@dataclass(frozen=True)
class MetricReport:
    """The ML-GCN metric suite for one set of predictions.

    Attributes:
        mAP: Mean AP over ``evaluated_classes``.
        per_class_ap: AP of every class (None for those without positives).
        at_threshold: CP, CR, CF1, OP, OR, OF1 at ``threshold``.
        top3: The same for the top-3 predictions per image.
        threshold: Decision threshold on probabilities.
        images: Number of images scored.
        excluded_classes: Classes without a positive in the split (no AP).
        baseline_mAP: mAP of the label-frequency baseline on the same split.
    """

    mAP: float
    per_class_ap: dict[str, float | None]
    at_threshold: dict[str, float]
    top3: dict[str, float]
    threshold: float
    images: int
    excluded_classes: tuple[str, ...]
    baseline_mAP: float

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        return {**asdict(self), "excluded_classes": list(self.excluded_classes)}

    def table(self) -> str:
        """A short text table, metrics in percent."""
        lines = [
            f"mAP {100 * self.mAP:.2f} over {len(self.per_class_ap) - len(self.excluded_classes)} classes, "
            f"{self.images} images, threshold {self.threshold} (label-frequency baseline {100 * self.baseline_mAP:.2f})"
        ]
        lines.append(f"{'':8}" + "".join(f"{key:>8}" for key in self.at_threshold))
        for label, values in (("all", self.at_threshold), ("top-3", self.top3)):
            lines.append(f"{label:8}" + "".join(f"{100 * v:8.2f}" for v in values.values()))
        if self.excluded_classes:
            lines.append(f"no positives (excluded): {', '.join(self.excluded_classes)}")
        return "\n".join(lines)


def compute_metrics(
    probabilities: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    threshold: float = DEFAULT_DECISION_THRESHOLD,
) -> MetricReport:
    """The full suite: mAP, per-class AP, and the thresholded and top-3 metrics.

    Raises:
        ConfigError: Shapes disagree, or no class has a positive.
    """
    probabilities, targets = _check(probabilities, targets)
    if len(class_names) != probabilities.shape[1]:
        raise ConfigError(f"{len(class_names)} class names for {probabilities.shape[1]} score columns")
    ap = average_precision(probabilities, targets)
    if np.isnan(ap).all():
        raise ConfigError("no class has a positive example: there is nothing to evaluate")
    return MetricReport(
        mAP=float(np.nanmean(ap)),
        per_class_ap={name: None if np.isnan(v) else float(v) for name, v in zip(class_names, ap, strict=True)},
        at_threshold=precision_recall_f1(probabilities, targets, threshold),
        top3=precision_recall_f1(probabilities, targets, threshold, top_k=TOP_K),
        threshold=threshold,
        images=probabilities.shape[0],
        excluded_classes=tuple(name for name, v in zip(class_names, ap, strict=True) if np.isnan(v)),
        baseline_mAP=label_frequency_baseline(targets),
    )


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ConfigError(f"scores {scores.shape} and targets {targets.shape} must be equal 2-D shapes")
    if not np.isfinite(scores).all():
        raise ConfigError("scores contain NaN or infinity")
    if not np.isin(targets, (0, 1)).all():
        raise ConfigError("targets must be 0/1 (or bool); ML-GCN's -1 'difficult' encoding is not supported")
    return scores, targets.astype(bool)
