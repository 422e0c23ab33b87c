"""The INT8 gate: the quantized graph against its reference, and its speed against the FP32 graph.

Both graphs run in the runner that serves them (ONNX Runtime, on the CPU) on the same images (as
their input format asks: preprocessed floats, or the resized pixels they normalise), the FP32 graph
first; each is timed after one warm-up batch, so the speed ratio is measured side by side.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.facts import ArtifactFacts
from core.preprocessing import resized
from export.parity import GATE_DEVICE, GateError, ParityReport, compare, tolerances
from export.parity_inputs import ParityInputs, batched_logits
from models.checkpoint import load_model
from models.evaluation import eager_logits
from runtime.backends import make_runner

from .data import CalibrationSet


@dataclass(frozen=True)
class GateOutcome:
    """The parity report, what it was measured against, and both graphs' throughput."""

    report: ParityReport
    reference: str
    images: str  # what the gate ran on, e.g. "392 held-out images"
    fp32_images_per_s: float
    int8_images_per_s: float

    def speed_line(self) -> str:
        ratio = self.int8_images_per_s / self.fp32_images_per_s
        return (
            f"ONNX Runtime CPU, same inputs: FP32 {self.fp32_images_per_s:.1f} img/s, "
            f"INT8 {self.int8_images_per_s:.1f} img/s (INT8/FP32 = {ratio:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "inputs": self.images,
            **self.report.to_dict(),
            "speed_onnxruntime_cpu": {
                "fp32_images_per_s": self.fp32_images_per_s,
                "int8_images_per_s": self.int8_images_per_s,
            },
        }


def gate_int8(
    source: Path,
    candidate: Path,
    gate_set: CalibrationSet,
    facts: ArtifactFacts,
    *,
    held_out: bool,
    batch: int,
    checkpoint: str | os.PathLike | None = None,
    tolerance_overrides: dict[str, float] | None = None,
) -> GateOutcome:
    """Runs both graphs (and the eager model with ``checkpoint``) and applies the int8 limits.

    Args:
        facts: The source graph's facts; a ``checkpoint`` must match its serving facts.

    Raises:
        ConfigError / ClassNamesMismatchError: ``checkpoint`` is not the model the graph came from.
        GateError: The INT8 graph fails the gate.
    """
    config = facts.config
    pixels = np.stack([resized(path, config.image_size, config.preprocessing) for path in gate_set.files])
    inputs = ParityInputs.of_pixels(pixels, config.preprocessing)
    feed = inputs.feed(facts.input_format)
    fp32, fp32_speed = _timed(source, feed, batch)
    int8, int8_speed = _timed(candidate, feed, batch)
    reference, reference_name = fp32, f"the FP32 graph {source.name}"
    if checkpoint is not None:
        model = load_model(checkpoint)
        model.serving_facts.require_same_model(facts.serving(), source)
        reference, reference_name = eager_logits(model, inputs.images), f"the eager checkpoint {Path(checkpoint).name}"
    report = compare(
        reference,
        int8,
        precision="int8",
        threshold=config.decision_threshold,
        limits=tolerances("int8", tolerance_overrides),
        targets=gate_set.labels,
        class_names=gate_set.class_names,
    )
    kind = "held-out" if held_out else "calibration (not held out)"
    outcome = GateOutcome(report, reference_name, f"{len(feed)} {kind} images", fp32_speed, int8_speed)
    if not report.passed:
        raise GateError(f"{candidate.name} was not written: it fails the int8 parity gate", report)
    return outcome


def _timed(graph: Path, images: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Logits of ``graph`` on ``images`` and its images/s after one warm-up batch."""
    with make_runner(graph, device=GATE_DEVICE) as runner:
        batched_logits(runner, images[:batch], batch)
        started = time.perf_counter()
        logits = batched_logits(runner, images, batch)
        return logits, len(images) / (time.perf_counter() - started)
