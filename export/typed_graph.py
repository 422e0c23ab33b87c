"""The typed ONNX graph an engine is built from: the FP32 graph, its FP16 graph or its INT8 Q/DQ graph.

TensorRT 11 builds strongly typed networks only, so an engine's precision is the graph's. A graph
already of the requested precision is taken as it is. From the FP32 graph, the FP16 graph is made
here and the INT8 graph by ``calibration.quantize``; each is checked, gated against the FP32 graph
and written with a manifest. A typed graph left by an earlier run is reused only when its metadata
names this FP32 graph's sha256 and its manifest (written only after a passed gate) is present.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from core.config import ModelConfig
from core.errors import ConfigError, InputFileError, StaleArtifactError
from core.files import sha256_file

from .fp16 import to_fp16
from .metadata import graph_precision, manifest_path, publish, read_metadata, set_metadata, write_manifest
from .onnx_checks import check_model, find_mask_constant, mask_of_graph
from .parity import GateError, compare, tolerances
from .parity_inputs import onnx_logits, random_inputs

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Calibration:
    """What ``calibration.quantize`` needs to make the INT8 graph."""

    data: Path
    annotations: Path | None = None
    method: str = "minmax"


def typed_graph_path(plan: Path, precision: str) -> Path:
    """``M.plan`` → ``M.fp16.onnx``; ``M.fp16.plan`` → ``M.fp16.onnx``."""
    stem = plan.name.removesuffix(plan.suffix)
    return plan.with_name(stem + ("" if stem.endswith(f".{precision}") else f".{precision}") + ".onnx")


def read_graph(path: Path) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """A toolkit graph and its metadata.

    Raises:
        InputFileError: Missing, unreadable, or without the toolkit's metadata.
    """
    if not path.is_file():
        raise InputFileError(f"graph not found: {path}")
    try:
        graph = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for a file that is not ONNX
        raise InputFileError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    facts = read_metadata(graph)
    if "model_config" not in facts or "class_names" not in facts:
        raise InputFileError(f"{path} carries no toolkit metadata; export it with python -m export.to_onnx")
    if facts.get("precision") != graph_precision(graph):
        raise InputFileError(f"{path} is labelled {facts.get('precision')} but its graph is {graph_precision(graph)}")
    return graph, facts


def typed_graph(
    source: Path,
    precision: str,
    plan: Path,
    *,
    calibration: Calibration | None = None,
    tolerance_overrides: dict[str, float] | None = None,
    force: bool = False,
) -> Path:
    """The graph of ``precision`` to build ``plan`` from: ``source`` itself, or one made from it.

    Raises:
        ConfigError: ``source`` is neither FP32 nor ``precision``; INT8 without ``calibration``; a
            typed graph of another source in the way without ``force``.
        ParityError: A graph made here fails its gate (nothing is written).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    graph, facts = read_graph(source)
    if facts["precision"] == precision:
        return source
    if facts["precision"] != "fp32":
        raise ConfigError(
            f"{source} is the {facts['precision']} graph; a {precision} engine is built from the FP32 graph "
            f"(export.to_onnx) or from a {precision} graph"
        )
    target = typed_graph_path(plan, precision)
    source_sha = sha256_file(source)
    limits = dataclasses.asdict(tolerances(precision, tolerance_overrides))
    if precision == "int8" and calibration is None:
        raise ConfigError(
            f"an INT8 engine needs the INT8 Q/DQ graph: pass one made by calibration.quantize, or "
            f"--calibration-data DIR to make {target.name} from {source.name}"
        )
    if target.exists():
        wanted = _wanted_facts(source_sha, precision, calibration, facts["class_names"])
        if _made_from(target, wanted, limits):
            logger.info("reusing %s, made from this %s", target, source.name)
            return target
        if not force:
            raise ConfigError(
                f"{target} exists but was not made from {source} with these settings (calibration, limits); "
                "pass --force to replace it"
            )
    if calibration is not None:
        from calibration.quantize import quantize_int8

        try:
            quantize_int8(
                source,
                target,
                calibration.data,
                annotations=calibration.annotations,
                method=calibration.method,
                tolerance_overrides=tolerance_overrides,
                recalibrate=force,
                force=True,
            )
        except StaleArtifactError as exc:
            raise StaleArtifactError(f"{exc}. Here: pass --force to recalibrate") from exc
    else:
        _write_fp16(source, source_sha, graph, facts, target, tolerance_overrides)
    return target


def _wanted_facts(
    source_sha: str, precision: str, calibration: Calibration | None, class_names: list[str]
) -> dict[str, Any]:
    """What a reusable typed graph must record (hashing the calibration images only when asked)."""
    wanted: dict[str, Any] = {"source_onnx_sha256": source_sha, "precision": precision}
    if calibration is not None:
        from calibration.data import calibration_set
        from calibration.quantize import DEFAULT_PERCENTILE, method_spec

        chosen = calibration_set(calibration.data, class_names, annotations=calibration.annotations)
        wanted["calibration"] = {
            "method": method_spec(calibration.method, DEFAULT_PERCENTILE),
            "files_sha256": chosen.fingerprint(),
        }
    return wanted


def _made_from(target: Path, wanted: dict[str, Any], limits: dict[str, float]) -> bool:
    """Whether ``target`` records the ``wanted`` facts and an intact manifest with a gate passed at ``limits``."""
    try:
        _, facts = read_graph(target)
        manifest = json.loads(manifest_path(target).read_text())
        parity = manifest["parity"]
    except (InputFileError, OSError, ValueError, KeyError, TypeError):
        return False
    recorded = {key: facts.get(key) for key in wanted}
    if "calibration" in wanted:
        recorded["calibration"] = {k: (facts.get("calibration") or {}).get(k) for k in wanted["calibration"]}
    return (
        recorded == wanted
        and manifest.get("artifact_sha256") == sha256_file(target)
        and parity.get("passed") is True
        and parity.get("limits") == limits
    )


def _write_fp16(
    source: Path,
    source_sha: str,
    graph: onnx.ModelProto,
    facts: dict[str, Any],
    target: Path,
    tolerance_overrides: dict[str, float] | None,
) -> None:
    """FP16 graph of ``graph``, checked, gated on random images against it, then moved into place."""
    half = check_model(to_fp16(graph))
    find_mask_constant(half, mask_of_graph(graph, facts["mask_sha256"], len(facts["class_names"])), facts["mask_mode"])
    half_facts = {**facts, "precision": "fp16", "source_onnx": source.name, "source_onnx_sha256": source_sha}
    set_metadata(half, half_facts)
    config = ModelConfig.from_dict(facts["model_config"])
    batch = int(facts["batch"]["max"])
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as staging:
        staged = Path(staging) / target.name
        onnx.save(half, str(staged))
        images = random_inputs(config, 8).images
        report = compare(
            onnx_logits(source, images, batch),
            onnx_logits(staged, images, batch),
            precision="fp16",
            threshold=config.decision_threshold,
            limits=tolerances("fp16", tolerance_overrides),
        )
        if not report.passed:
            raise GateError(f"{target.name} was not written: it fails the fp16 parity gate", report)
        parity = {"reference": f"the FP32 graph {source.name}", **report.to_dict()}
        write_manifest(staged, {**half_facts, "parity": parity}, force=True)
        publish(staged, target)
    logger.info("wrote the FP16 graph %s (%s)", target, report.table().splitlines()[0])
