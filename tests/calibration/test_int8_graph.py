"""The INT8 graphs (the one an INT8 engine is built from, and the cpu target's): made from the FP32
graph, reused only when made from this source with this calibration, target and these limits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.int8_graph import Calibration, cpu_int8_graph, int8_graph
from core.errors import ConfigError, StaleArtifactError
from core.files import sha256_file
from core.manifest import read_manifest, write_manifest
from export.build_engine import build_engine
from export.metadata import graph_precision
from export.qdq_checks import check_int8_file
from export.typed_graph import typed_graph
from tests.helpers import FIXTURE_INT8_LIMITS, facts_of


def test_the_int8_graph_is_made_beside_the_plan(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    calibration = Calibration(demo_data / "train", demo_data / "instances_train.json")
    made = int8_graph(fp32_graph, tmp_path / "model.plan", calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    assert made == tmp_path / "model.int8.onnx" and graph_precision(onnx.load(str(made))) == "int8"
    assert int8_graph(made, tmp_path / "other.plan", calibration) == made  # an INT8 graph is taken as it is
    half = typed_graph(fp32_graph, "fp16", tmp_path / "model.plan")
    with pytest.raises(ConfigError, match="is the fp16 graph; an INT8 graph is made from the FP32 graph"):
        int8_graph(half, tmp_path / "model.plan", calibration)


def test_an_int8_graph_of_other_calibration_settings_is_not_reused(
    fp32_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "model.plan"
    minmax = Calibration(demo_data / "train", demo_data / "instances_train.json", "minmax")
    made = int8_graph(fp32_graph, plan, minmax, tolerance_overrides=FIXTURE_INT8_LIMITS)
    written = made.stat().st_mtime_ns
    assert int8_graph(fp32_graph, plan, minmax, tolerance_overrides=FIXTURE_INT8_LIMITS) == made
    assert made.stat().st_mtime_ns == written
    entropy = Calibration(minmax.data, minmax.annotations, "entropy")
    with pytest.raises(ConfigError, match="with these settings"):
        int8_graph(fp32_graph, plan, entropy, tolerance_overrides=FIXTURE_INT8_LIMITS)
    with pytest.raises(ConfigError, match="with these settings"):  # a gate passed at other limits
        int8_graph(fp32_graph, plan, minmax, tolerance_overrides={**FIXTURE_INT8_LIMITS, "map_drop": 2})
    int8_graph(fp32_graph, plan, entropy, tolerance_overrides=FIXTURE_INT8_LIMITS, force=True)
    assert facts_of(made).calibration.method == "entropy"


def test_a_changed_source_or_image_set_is_not_reused(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    calibration = Calibration(tmp_path / "data" / "train", tmp_path / "data" / "instances_train.json")
    shutil.copytree(demo_data, tmp_path / "data")
    made = int8_graph(fp32_graph, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    changed = tmp_path / "changed.onnx"
    graph = onnx.load(str(fp32_graph))
    graph.doc_string = "re-exported"
    onnx.save(graph, str(changed))
    with pytest.raises(ConfigError, match="was not made from .*changed.onnx with these settings"):
        int8_graph(changed, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    first, second = sorted(calibration.data.iterdir())[:2]
    first.write_bytes(second.read_bytes())  # same names, another image: another fingerprint
    with pytest.raises(ConfigError, match="with these settings"):
        int8_graph(fp32_graph, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    assert facts_of(made).source_onnx_sha256 == sha256_file(fp32_graph)


def _with_the_old_placement(graph: Path) -> None:
    """Rewrites ``graph`` (and its manifest, so that it still describes the bytes) with a Q/DQ pair
    between a Conv and its Relu, as INT8 graphs were made before the TensorRT placement."""
    model = onnx.load(str(graph))
    relu = next(node for node in model.graph.node if node.op_type == "Relu")
    names = [f"{relu.name}_scale", f"{relu.name}_zero"]
    model.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0.05), names[0]), numpy_helper.from_array(np.int8(0), names[1])]
    )
    quantize = onnx.helper.make_node("QuantizeLinear", [relu.input[0], *names], ["old_q"], "old_q")
    dequantize = onnx.helper.make_node("DequantizeLinear", ["old_q", *names], ["old_dq"], "old_dq")
    model.graph.node.extend([quantize, dequantize])
    relu.input[0] = "old_dq"
    onnx.save(model, str(graph))
    manifest = read_manifest(graph)
    write_manifest(graph, manifest.facts, parity=manifest.parity, calibration_set=manifest.calibration_set, force=True)


def test_an_int8_graph_with_the_old_qdq_placement_is_neither_reused_nor_built(
    fp32_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "model.plan"
    calibration = Calibration(demo_data / "train", demo_data / "instances_train.json")
    made = int8_graph(fp32_graph, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    _with_the_old_placement(made)
    with pytest.raises(StaleArtifactError, match=r"quantizes the output of Conv .*pass --force to remake it"):
        int8_graph(fp32_graph, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    # Handed straight to the engine build, it is refused before TensorRT or a GPU is looked for.
    with pytest.raises(StaleArtifactError, match=r"quantizes the output of Conv .*python -m calibration.quantize"):
        build_engine(made, tmp_path / "model.int8.plan", precision="int8")
    int8_graph(fp32_graph, plan, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS, force=True)
    check_int8_file(made, fix="")  # remade with the placement TensorRT fuses


def test_the_cpu_graph_is_reused_by_the_same_rule_and_never_taken_for_an_engine(
    fp32_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    calibration = Calibration(demo_data / "train", demo_data / "instances_train.json")
    target = tmp_path / "model.int8-cpu.onnx"
    made = cpu_int8_graph(fp32_graph, target, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    assert made == target and facts_of(made).calibration.target == "cpu"
    written = made.stat().st_mtime_ns
    assert cpu_int8_graph(fp32_graph, target, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS) == made
    assert made.stat().st_mtime_ns == written  # reused, not made again
    with pytest.raises(ConfigError, match="quantized for ONNX Runtime on CPUs"):
        int8_graph(made, tmp_path / "model.plan", calibration)

    trt = int8_graph(fp32_graph, tmp_path / "model.plan", calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    shutil.copy(trt, target)  # the TensorRT graph where the cpu graph belongs
    shutil.copy(trt.with_name(trt.name + ".json"), target.with_name(target.name + ".json"))
    with pytest.raises(ConfigError, match="was not made from"):
        cpu_int8_graph(fp32_graph, target, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS)
    remade = cpu_int8_graph(fp32_graph, target, calibration, tolerance_overrides=FIXTURE_INT8_LIMITS, force=True)
    assert facts_of(remade).calibration.target == "cpu"
