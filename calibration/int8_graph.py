"""The INT8 graphs, made from the FP32 graph or reused: the one an INT8 engine is built from, and the one
for ONNX Runtime on x86 CPUs.

``export.typed_graph`` takes or makes the FP32 and FP16 graphs; the INT8 graph needs calibration
images, so it is made here (by :func:`~calibration.quantize.quantize_int8`) under the same reuse rule:
a graph left by an earlier run is reused only when it records this FP32 graph's sha256 and this
calibration (method and image fingerprint), and its manifest shows a gate passed at these limits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, StaleArtifactError
from core.facts import CalibrationFacts
from core.files import sha256_file
from export.metadata import read_graph
from export.parity import tolerances
from export.qdq_checks import check_int8_file
from export.typed_graph import reuse, typed_graph_path

from .data import calibration_set
from .graph import check_cpu_int8_file
from .quantize import DEFAULT_PERCENTILE, method_spec, quantize_int8


@dataclass(frozen=True)
class Calibration:
    """What the INT8 graph is calibrated on: an image folder (with its COCO labels) and a method."""

    data: Path
    annotations: Path | None = None
    method: str = "minmax"


def int8_graph(
    source: Path,
    plan: Path,
    calibration: Calibration,
    *,
    tolerance_overrides: dict[str, float] | None = None,
    force: bool = False,
) -> Path:
    """The INT8 graph to build ``plan`` from (``M.int8.onnx`` beside it): ``source`` itself when it
    is INT8, else made from the FP32 ``source`` or reused.

    Raises:
        ConfigError: ``source`` is neither FP32 nor INT8; an INT8 graph of another source or other
            settings in the way without ``force``.
        StaleArtifactError: The range cache was computed for other images or another method, or the
            INT8 graph in the way breaks a TensorRT Q/DQ rule (``force`` recalibrates and remakes).
        ParityError: The INT8 graph fails its gate (nothing is written).
    """
    _, facts = read_graph(source, weights=False)
    if facts.precision == "int8":
        if facts.calibration is not None and facts.calibration.target != "tensorrt":
            raise ConfigError(
                f"{source} is quantized for ONNX Runtime on CPUs (--target {facts.calibration.target}); an engine is "
                "built from the FP32 graph's TensorRT INT8 graph (--target tensorrt)"
            )
        return source
    target = typed_graph_path(plan, "int8")
    return _made_or_reused(source, target, calibration, "tensorrt", tolerance_overrides, force)


def cpu_int8_graph(
    source: Path,
    output: Path,
    calibration: Calibration,
    *,
    tolerance_overrides: dict[str, float] | None = None,
    force: bool = False,
) -> Path:
    """The INT8 graph for ONNX Runtime on x86 CPUs (``--target cpu``) at ``output``, made from the FP32
    ``source`` or reused by the same rule as :func:`int8_graph`.

    Raises:
        As :func:`int8_graph`.
    """
    return _made_or_reused(source, output, calibration, "cpu", tolerance_overrides, force)


def _made_or_reused(
    source: Path,
    target: Path,
    calibration: Calibration,
    int8_target: str,
    tolerance_overrides: dict[str, float] | None,
    force: bool,
) -> Path:
    _, facts = read_graph(source, weights=False)
    if facts.precision != "fp32":
        raise ConfigError(f"{source} is the {facts.precision} graph; an INT8 graph is made from the FP32 graph")
    if target.exists():  # hashing the calibration images is worth it only when a graph may be reused
        chosen = calibration_set(calibration.data, facts.class_names, annotations=calibration.annotations)
        wanted = {
            "source_onnx_sha256": sha256_file(source),
            "precision": "int8",
            "calibration": CalibrationFacts(
                method_spec(calibration.method, DEFAULT_PERCENTILE),
                len(chosen.files),
                chosen.fingerprint(),
                int8_target,
            ),
        }
        limits = dataclasses.asdict(tolerances("int8", tolerance_overrides))
        if reuse(target, source, wanted, limits, force=force):
            check = check_int8_file if int8_target == "tensorrt" else check_cpu_int8_file
            try:
                check(target, fix="pass --force to remake it")
            except StaleArtifactError:
                if not force:
                    raise
            else:
                return target
    try:
        quantize_int8(
            source,
            target,
            calibration.data,
            annotations=calibration.annotations,
            method=calibration.method,
            tolerance_overrides=tolerance_overrides,
            target=int8_target,
            recalibrate=force,
            force=True,
        )
    except StaleArtifactError as exc:
        raise StaleArtifactError(f"{exc}. Here: pass --force to recalibrate") from exc
    return target
