"""Parity of a candidate artifact against the eager FP32 model: inputs chosen, both sides run, gated.

Candidates, each run through the runtime runner that serves it in production:
- an ``.onnx`` graph, with ONNX Runtime (its precision read from its content);
- a ``.plan``, with TensorRT (on a machine with a GPU and TensorRT; its manifest checked first);
- a ``.pt`` checkpoint, with torch, e.g. on CUDA with FP16 autocast;
- a ``polygraphy run --save-outputs`` JSON with the ``--save-inputs`` file of the same run, so a run
  made on a GPU machine, e.g. of a TensorRT plan, is compared here.
Each must record the serving facts of the reference model, or it is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputFileError, MissingDependencyError
from models.checkpoint import read_checkpoint
from models.classifier import MaskedGATClassifier
from models.evaluation import eager_logits
from runtime.plan_rules import read_plan_manifest

from .metadata import read_graph
from .parity import ParityReport, compare, tolerances
from .parity_inputs import ParityInputs, coco_inputs, folder_inputs, polygraphy_run, random_inputs, runner_logits


def select_inputs(model: MaskedGATClassifier, images: Path | None, annotations: Path | None, count: int | None):
    """The parity inputs the flags name: a labelled split, an image folder, or random images."""
    if annotations is not None:
        if images is None:
            raise ConfigError("--annotations needs --images, the folder its file names are relative to")
        return coco_inputs(model, annotations, images)
    if images is not None:
        return folder_inputs(model, images)
    return random_inputs(model.config, 8 if count is None else count)


def check_parity(
    model: MaskedGATClassifier,
    candidate: str | os.PathLike,
    *,
    inputs: ParityInputs | None = None,
    polygraphy_inputs: str | os.PathLike | None = None,
    precision: str | None = None,
    tolerance_overrides: dict[str, float] | None = None,
    device: str = "auto",
    fp16: bool = False,
) -> tuple[ParityReport, np.ndarray, np.ndarray]:
    """Runs ``model`` (the eager reference, FP32 on CPU) and the candidate, and gates; returns the
    report and the two logit arrays. ``device`` and ``fp16`` choose how the candidate runs.

    Raises:
        ConfigError: The candidate's kind is unknown, its inputs are missing, or it records other
            serving facts than ``model``.
        ClassNamesMismatchError: The candidate was built for other classes.
        InputFileError: An ONNX candidate's precision label is not what its graph is.
    """
    candidate = Path(candidate)
    if not candidate.is_file():
        raise InputFileError(f"candidate not found: {candidate}")
    inputs = inputs or random_inputs(model.config, 8)
    images, targets = inputs.images, inputs.targets
    expected = model.serving_facts
    if candidate.suffix == ".onnx":
        _, facts = read_graph(candidate, weights=False)  # refused when labelled other than its content
        expected.require_same_model(facts.serving(), candidate)
        precision = precision or facts.precision
        logits = runner_logits(candidate, inputs, device=device)
    elif candidate.suffix == ".plan":
        facts = read_plan_manifest(candidate).facts
        expected.require_same_model(facts.serving(), candidate)
        precision = precision or facts.precision
        try:
            logits = runner_logits(candidate, inputs, device=device)
        except MissingDependencyError as exc:
            raise MissingDependencyError(
                f"{exc}. Without them here: write inputs with --write-inputs, run `polygraphy run M.plan --trt "
                "--load-inputs inputs.json --save-inputs used.json --save-outputs out.json` on the GPU machine, "
                "and pass out.json here with --polygraphy-inputs used.json"
            ) from exc
    elif candidate.suffix == ".pt":
        expected.require_same_model(read_checkpoint(candidate).serving_facts, candidate)
        precision = precision or ("fp16" if fp16 else "fp32")
        logits = runner_logits(candidate, inputs, device=device, fp16=fp16)
    elif candidate.suffix == ".json":
        if polygraphy_inputs is None:
            raise ConfigError("a polygraphy outputs file needs --polygraphy-inputs, the --save-inputs file of its run")
        images, logits = polygraphy_run(candidate, polygraphy_inputs)
        targets = None
        size, preprocessing = model.config.image_size, model.config.preprocessing
        if images.dtype == np.uint8 and images.shape[1:] == (size, size, 3):  # a uint8-input artifact's run
            images = ParityInputs.of_pixels(images, preprocessing).images
        elif images.shape[1:] != (3, size, size):
            raise InputFileError(
                f"{polygraphy_inputs}: images of shape {images.shape[1:]}, the model takes (3, {size}, {size}) "
                f"floats or ({size}, {size}, 3) uint8 pixels"
            )
    else:
        raise ConfigError(f"{candidate}: a candidate is an .onnx, .plan or .pt file, or a polygraphy outputs .json")
    reference = eager_logits(model, images)
    precision = precision or "fp32"  # polygraphy outputs carry no graph to read a precision from
    report = compare(
        reference,
        logits,
        precision=precision,
        threshold=model.config.decision_threshold,
        limits=tolerances(precision, tolerance_overrides),
        targets=targets,
        class_names=model.class_names,
    )
    return report, reference, logits
