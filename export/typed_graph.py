"""The typed ONNX graph an engine is built from: the FP32 graph, its FP16 graph, or an INT8 Q/DQ graph.

TensorRT 11 builds strongly typed networks only, so an engine's precision is the graph's. A graph
already of the requested precision is taken as it is; from the FP32 graph the FP16 graph is made
here, checked, gated against the FP32 graph and written with a manifest. The INT8 graph is made by
``calibration`` (it needs calibration images; ``calibration.int8_graph`` applies the same reuse
rules). A typed graph left by an earlier run is reused only when :func:`reuse` says so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from core.errors import ConfigError, InputFileError
from core.facts import PRECISIONS, ArtifactFacts
from core.files import sha256_file, staging_folder
from core.manifest import publish, read_manifest, write_manifest

from .fp16 import to_fp16
from .metadata import read_graph, write_metadata
from .onnx_checks import check_model, find_mask_constant, mask_of_graph
from .parity import GATE_DEVICE, GateError, compare, tolerances
from .parity_inputs import random_inputs, runner_logits
from .uint8_input import float_part, in_input_format

logger = logging.getLogger(__name__)


def typed_graph_path(plan: Path, precision: str) -> Path:
    """``M.plan`` → ``M.fp16.onnx``; ``M.fp16.plan`` → ``M.fp16.onnx``."""
    stem = plan.name.removesuffix(plan.suffix)
    return plan.with_name(stem + ("" if stem.endswith(f".{precision}") else f".{precision}") + ".onnx")


def reuse(target: Path, source: Path, wanted: Mapping[str, Any], limits: Mapping[str, float], *, force: bool) -> bool:
    """Whether the graph ``target`` left by an earlier run may be reused: it records the ``wanted``
    facts (``ArtifactFacts`` field → value; ``source`` is what they name) and has an intact manifest
    whose gate passed at exactly ``limits``. False when it is absent, or when ``force`` lets it be
    replaced.

    Raises:
        ConfigError: Another graph is in the way and ``force`` is not given.
    """
    if not target.exists():
        return False
    try:
        _, facts = read_graph(target, weights=False)
        manifest = read_manifest(target)
        recorded = {name: getattr(facts, name) for name in wanted}
        if recorded == dict(wanted) and manifest.describes(target) and manifest.gate_passed(limits):
            logger.info("reusing %s, made from this %s", target, source.name)
            return True
    except InputFileError:
        pass  # unreadable or incomplete: made again, like any other graph in the way
    if not force:
        raise ConfigError(
            f"{target} exists but was not made from {source} with these settings (limits, and for INT8 the "
            "calibration); pass --force to replace it"
        )
    return False


def typed_graph(
    source: Path,
    precision: str,
    plan: Path,
    *,
    tolerance_overrides: dict[str, float] | None = None,
    force: bool = False,
) -> Path:
    """The graph of ``precision`` to build ``plan`` from: ``source`` itself, or its FP16 graph.

    Raises:
        ConfigError: ``source`` is neither FP32 nor ``precision``; INT8 from the FP32 graph (that is
            calibration's); an FP16 graph of another source in the way without ``force``.
        ParityError: The FP16 graph made here fails its gate (nothing is written).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    _, facts = read_graph(source, weights=False)
    if facts.precision == precision:
        return source
    if facts.precision != "fp32":
        raise ConfigError(
            f"{source} is the {facts.precision} graph; a {precision} engine is built from the FP32 graph "
            f"(export.to_onnx) or from a {precision} graph"
        )
    target = typed_graph_path(plan, precision)
    if precision == "int8":
        raise ConfigError(
            f"an INT8 engine is built from the INT8 Q/DQ graph, which needs calibration images: make it with "
            f"python -m calibration.quantize {source} --data DIR --output {target}, then build from {target.name}"
        )
    source_sha = sha256_file(source)
    limits = dataclasses.asdict(tolerances(precision, tolerance_overrides))
    if not reuse(target, source, {"source_onnx_sha256": source_sha, "precision": precision}, limits, force=force):
        _write_fp16(source, source_sha, read_graph(source)[0], facts, target, tolerance_overrides)
    return target


def _write_fp16(
    source: Path,
    source_sha: str,
    graph: onnx.ModelProto,
    facts: ArtifactFacts,
    target: Path,
    tolerance_overrides: dict[str, float] | None,
) -> None:
    """FP16 graph of ``graph``, checked, gated on random images against it, then moved into place."""
    # The uint8 prefix stays FP32: the float part is converted, then the prefix is put back.
    half = to_fp16(float_part(graph, facts.input_format))
    half = check_model(in_input_format(half, facts.input_format, facts.config.preprocessing))
    find_mask_constant(half, mask_of_graph(graph, facts.mask_sha256, len(facts.class_names)), facts.config.mask_mode)
    half_facts = facts.made_into("fp16", source.name, source_sha)
    write_metadata(half, half_facts)
    with staging_folder(target) as staging:
        staged = staging / target.name
        onnx.save(half, str(staged))
        inputs = random_inputs(facts.config, 8)
        report = compare(
            runner_logits(source, inputs, device=GATE_DEVICE),
            runner_logits(staged, inputs, device=GATE_DEVICE),
            precision="fp16",
            threshold=facts.config.decision_threshold,
            limits=tolerances("fp16", tolerance_overrides),
        )
        if not report.passed:
            raise GateError(f"{target.name} was not written: it fails the fp16 parity gate", report)
        parity = {"reference": f"the FP32 graph {source.name}", **report.to_dict()}
        write_manifest(staged, half_facts, parity=parity, force=True)
        publish(staged, target)
    logger.info("wrote the FP16 graph %s (%s)", target, report.table().splitlines()[0])
