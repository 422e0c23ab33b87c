"""Inputs for parity checks, and a candidate's logits on them through the runner that serves it.

Inputs always go through the one preprocessing definition (``core.preprocessing``), so the
comparison is on the tensors a deployment would see; candidates run in the runner (and so the
session configuration) that serves them. The eager side is ``models.evaluation.eager_logits``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import ModelConfig, Preprocessing
from core.errors import InputFileError
from core.preprocessing import image_files, normalized, resized
from models.classifier import MaskedGATClassifier
from models.coco import read_labels_in_order
from runtime.backends import Runner, make_runner


@dataclass(frozen=True)
class ParityInputs:
    """Resized uint8 pixels [B, S, S, 3] and the preprocessed images [B, 3, S, S] float32 made from them,
    with labels [B, N] when known."""

    pixels: np.ndarray
    images: np.ndarray
    targets: np.ndarray | None = None
    source: str = ""

    @classmethod
    def of_pixels(cls, pixels: np.ndarray, preprocessing: Preprocessing, **details) -> ParityInputs:
        return cls(pixels, normalized(pixels, preprocessing), **details)

    def feed(self, input_format: str) -> np.ndarray:
        """What an artifact of ``input_format`` takes: the pixels (uint8) or the preprocessed images."""
        return self.pixels if input_format == "uint8" else self.images


def random_inputs(config: ModelConfig, count: int, seed: int = 0) -> ParityInputs:
    """``count`` random RGB images (smooth blobs plus noise), preprocessed as ``config`` says."""
    rng = np.random.default_rng(seed)
    size = config.image_size
    pixels = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        smooth = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1, 1), dtype=np.uint8))[:size, :size]
        noisy = np.clip(smooth.astype(np.int16) + rng.integers(-30, 31, smooth.shape), 0, 255).astype(np.uint8)
        pixels.append(resized(noisy, size, config.preprocessing))
    return ParityInputs.of_pixels(np.stack(pixels), config.preprocessing, source=f"{count} random images (seed {seed})")


def folder_inputs(model: MaskedGATClassifier, folder: str | os.PathLike) -> ParityInputs:
    """Every image file in ``folder`` (sorted by name), preprocessed."""
    files = image_files(folder)
    config = model.config
    pixels = np.stack([resized(p, config.image_size, config.preprocessing) for p in files])
    return ParityInputs.of_pixels(pixels, config.preprocessing, source=f"{len(files)} images from {folder}")


def coco_inputs(model: MaskedGATClassifier, annotations: str | os.PathLike, images: str | os.PathLike) -> ParityInputs:
    """A labelled COCO-format split, labels in the model's class order."""
    labels = read_labels_in_order(annotations, model.class_names)
    config = model.config
    pixels = np.stack(
        [resized(Path(images) / name, config.image_size, config.preprocessing) for name in labels.file_names]
    )
    source = f"{len(pixels)} labelled images from {annotations}"
    return ParityInputs.of_pixels(pixels, config.preprocessing, targets=labels.labels, source=source)


def runner_logits(
    artifact: str | os.PathLike, inputs: ParityInputs, *, device: str = "auto", fp16: bool = False
) -> np.ndarray:
    """An artifact's logits on ``inputs`` (in the format it takes) through the runner that serves it in production."""
    with make_runner(artifact, device=device, fp16=fp16) as runner:
        return batched_logits(runner, inputs.feed(runner.facts.input_format))


def batched_logits(runner: Runner, images: np.ndarray, batch: int | None = None) -> np.ndarray:
    """An opened runner's logits on ``images`` (in the format it takes) in calls of at most ``batch``
    images (None: the artifact's largest batch; 16 for an eager model, which has none)."""
    facts = runner.facts
    batch = batch or facts.max_batch or 16
    return np.concatenate(
        [
            runner.infer({facts.input_name: images[i : i + batch]})[facts.output_name]
            for i in range(0, len(images), batch)
        ]
    )


def polygraphy_run(outputs: str | os.PathLike, inputs: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images and logits of a ``polygraphy run --save-inputs/--save-outputs`` pair (first runner); the
    images as the run fed them (float32, or the uint8 pixels of a uint8-input artifact).

    Polygraphy's JSON stores arrays with ``np.save(allow_pickle=False)``; nothing is unpickled.

    Raises:
        InputFileError: A file is missing or holds no ``images`` input / ``logits`` output.
    """
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    for path in (outputs, inputs):
        if not Path(path).is_file():
            raise InputFileError(f"polygraphy file not found: {path}")
    try:
        results = RunResults.load(str(outputs))
        feeds = load_json(str(inputs))
        runner, iterations = next(iter(results.items()))
        logits = np.concatenate([np.asarray(iteration["logits"]) for iteration in iterations])
        images = np.concatenate([np.asarray(feed["images"]) for feed in feeds])
    except (KeyError, StopIteration, TypeError, ValueError) as exc:
        raise InputFileError(
            f"{outputs} / {inputs}: expected polygraphy run results with an 'images' input and a 'logits' "
            f"output ({exc!r})"
        ) from exc
    if len(images) != len(logits):
        raise InputFileError(f"{inputs} holds {len(images)} images but {outputs} ({runner}) {len(logits)} results")
    return images if images.dtype == np.uint8 else images.astype(np.float32), logits
