"""Scoring a model: its logits on preprocessed images, predictions over a COCO-format split, and the
ML-GCN metric report."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.errors import InputFileError
from core.files import write_json

from .classifier import MaskedGATClassifier
from .dataset import CocoMultiLabel, collate_readable
from .metrics import MetricReport, compute_metrics
from .transforms import EvalTransform

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """A model's probabilities on a dataset, with the targets of the images that could be read.

    Attributes:
        probabilities: [images read, classes].
        targets: [images read, classes] 0/1.
        indices: Dataset index of each row.
        unreadable: Images of the dataset that could not be read (left out).
    """

    probabilities: np.ndarray
    targets: np.ndarray
    indices: np.ndarray
    unreadable: int


@torch.inference_mode()
def predict(model: MaskedGATClassifier, dataset: CocoMultiLabel, batch_size: int = 64, workers: int = 0) -> Predictions:
    """Runs ``model`` (in eval mode) over ``dataset``; unreadable images are left out and counted.

    Raises:
        InputFileError: No image of the dataset could be read.
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_readable)
    device = next(model.parameters()).device
    probabilities, targets, indices = [], [], []
    for batch in tqdm(loader, desc="evaluating", unit="batch", leave=False, disable=None):
        if batch is None:
            continue
        images, target, index = batch
        probabilities.append(torch.sigmoid(model(images.to(device))).float().cpu().numpy())
        targets.append(target.numpy())
        indices.append(index.numpy())
    if not indices:
        raise InputFileError(f"none of the {len(dataset)} images could be read (each is logged above)")
    read = np.concatenate(indices)
    return Predictions(np.concatenate(probabilities), np.concatenate(targets), read, len(dataset) - len(read))


@torch.inference_mode()
def eager_logits(model: MaskedGATClassifier, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """The eager FP32 model's logits on preprocessed ``images`` [B, 3, S, S], in batches of ``batch``."""
    model = model.eval().float()
    return np.concatenate(
        [model(torch.from_numpy(images[i : i + batch])).numpy() for i in range(0, len(images), batch)]
    )


def evaluate_model(
    model: MaskedGATClassifier, dataset: CocoMultiLabel, threshold: float | None = None, batch_size: int = 64
) -> MetricReport:
    """The metric suite of ``model`` on ``dataset`` at ``threshold`` (default: the model's)."""
    predictions = predict(model, dataset, batch_size)
    if predictions.unreadable:
        logger.warning("%d of %d images could not be read and are not scored", predictions.unreadable, len(dataset))
    threshold = model.config.decision_threshold if threshold is None else threshold
    return compute_metrics(predictions.probabilities, predictions.targets, model.class_names, threshold)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    annotations: str | os.PathLike,
    images: str | os.PathLike,
    *,
    threshold: float | None = None,
    batch_size: int = 64,
    output: str | os.PathLike | None = None,
) -> MetricReport:
    """Loads a checkpoint, scores it on a split, optionally writes the report as JSON."""
    from .checkpoint import load_model

    model = load_model(checkpoint)
    dataset = CocoMultiLabel(images, annotations, EvalTransform(model.config), class_names=model.class_names)
    report = evaluate_model(model, dataset, threshold, batch_size)
    if output is not None:
        write_json(output, {"checkpoint": str(checkpoint), "annotations": str(annotations), **report.to_dict()})
    return report
