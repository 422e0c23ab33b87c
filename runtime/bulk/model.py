"""What a run knows of its artifact: the facts, the thresholds that make labels, the batch size, and
the rule that turns logits into a result (the same as :meth:`Predictor.predict`'s)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError
from core.facts import ServingFacts

from ..backends import backend_for
from ..plan_rules import check_plan_files
from ..predictor import Predictor
from ..results import FailedItem, Prediction, class_threshold_overrides, make_prediction, threshold_vector


@dataclass(frozen=True)
class Model:
    """An artifact as a run uses it.

    Attributes:
        facts: Its serving facts (class order, preprocessing, batch limit).
        thresholds: Per-class thresholds [N].
        batch_size: Images per inference call.
    """

    facts: ServingFacts
    thresholds: np.ndarray
    batch_size: int

    def result(self, position: int, image: str, logits: np.ndarray, error: str | None) -> Prediction | FailedItem:
        """One image's result from its logits, or its error."""
        if error is not None:
            return FailedItem(position, image, error)
        return make_prediction(position, image, logits, self.facts.class_names, self.thresholds, None)


def driver_model(
    artifact: str | os.PathLike,
    backend: str,
    *,
    threshold: float | None,
    class_thresholds: Mapping[str, float] | str | os.PathLike | None,
    batch_size: int | None,
) -> Model:
    """The artifact as a driver that does not infer sees it (the Ray engine's): a plan is read from its
    manifest (checked against the plan, and loaded only by the actors: the driver may have no GPU);
    any other artifact is opened on the CPU, by the same rules as a :class:`Predictor`.

    Raises:
        As :class:`Predictor`.
    """
    options = {"threshold": threshold, "class_thresholds": class_thresholds, "batch_size": batch_size}
    if backend_for(artifact, backend) != "tensorrt":
        with Predictor(artifact, backend, device="cpu", **options) as predictor:
            return Model(predictor.facts, predictor.thresholds, predictor.batch_size)
    facts = check_plan_files(artifact).facts.serving()
    default = facts.decision_threshold if threshold is None else threshold
    thresholds = threshold_vector(facts.class_names, default, class_threshold_overrides(class_thresholds))
    if batch_size is not None and not 1 <= batch_size <= facts.max_batch:
        raise ConfigError(f"batch_size {batch_size}: {artifact} takes 1 to {facts.max_batch} images a call")
    return Model(facts, thresholds, batch_size or facts.max_batch)
