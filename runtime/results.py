"""Logits → what a caller reads: probabilities in class order, labels over their thresholds, top-k."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError, InputFileError
from core.files import read_json
from core.scores import sigmoid


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    Attributes:
        index: Position of the image in the request.
        source: What the image was (a path, or its type and size).
        scores: Probabilities [N], in the predictor's ``class_names`` order.
        labels: Class names whose probability is at least their threshold, highest first.
        top_k: The k most probable (class name, probability) pairs, when asked for.
    """

    index: int
    source: str
    scores: np.ndarray
    labels: tuple[str, ...]
    top_k: tuple[tuple[str, float], ...] | None = None
    ok = True

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Plain data for JSON: scores keyed by class name."""
        result = {
            "index": self.index,
            "source": self.source,
            "labels": list(self.labels),
            "scores": {name: round(float(p), 6) for name, p in zip(class_names, self.scores, strict=True)},
        }
        if self.top_k is not None:
            result["top_k"] = [[name, round(p, 6)] for name, p in self.top_k]
        return result


@dataclass(frozen=True)
class FailedItem:
    """An item that could not be used, in place of its result when bad items are skipped."""

    index: int
    source: str
    error: str
    ok = False

    def to_dict(self, class_names: Sequence[str] = ()) -> dict[str, Any]:
        return {"index": self.index, "source": self.source, "error": self.error}


def threshold_vector(
    class_names: Sequence[str], default: float | np.ndarray, overrides: Mapping[str, float] | None = None
) -> np.ndarray:
    """Per-class thresholds [N]: ``default`` (one value, or one per class), ``overrides`` where named.

    Raises:
        ConfigError: A threshold is outside (0, 1) or names an unknown class.
    """
    if isinstance(default, np.ndarray):
        thresholds = default.astype(np.float32, copy=True)
    else:
        _check_threshold(default, "the threshold")
        thresholds = np.full(len(class_names), float(default), dtype=np.float32)
    index = {name: i for i, name in enumerate(class_names)}
    for name, value in (overrides or {}).items():
        if name not in index:
            raise ConfigError(f"a threshold names {name!r}, which is not a class of this model ({len(index)} classes)")
        _check_threshold(value, f"the threshold of {name!r}")
        thresholds[index[name]] = float(value)
    return thresholds


def read_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """A per-class thresholds file: a JSON object ``{"class name": threshold, ...}``.

    Raises:
        InputFileError: It is missing, not JSON, or not an object of numbers.
    """
    document = read_json(path, "thresholds file")
    if not isinstance(document, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in document.values()
    ):
        raise InputFileError(f'{path}: expected a JSON object of class name → threshold, e.g. {{"dog": 0.4}}')
    return {str(k): float(v) for k, v in document.items()}


def class_threshold_overrides(
    value: Mapping[str, float] | str | os.PathLike | None,
) -> Mapping[str, float] | None:
    """Per-class thresholds as a caller gives them: a mapping, a JSON file of one (read here), or None."""
    return value if value is None or isinstance(value, Mapping) else read_thresholds(value)


def make_prediction(
    index: int,
    source: str,
    logits: np.ndarray,
    class_names: Sequence[str],
    thresholds: np.ndarray,
    top_k: int | None,
) -> Prediction:
    """One image's :class:`Prediction` from its logits [N]."""
    scores = sigmoid(logits).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    labels = tuple(class_names[i] for i in order if scores[i] >= thresholds[i])
    top = None if top_k is None else tuple((class_names[i], float(scores[i])) for i in order[:top_k])
    return Prediction(index, source, scores, labels, top)


def _check_threshold(value: float, what: str) -> None:
    # numbers.Real admits numpy scalars (np.float32(0.3)) as well as int and float.
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value) or not 0 < value < 1:
        raise ConfigError(f"{what} must be a probability in (0, 1), got {value!r}")
