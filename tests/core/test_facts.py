"""The artifact-facts record: one layout written and read back, contradictions refused, the serving
subset and its comparison, and the manifest around it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from core.config import ModelConfig
from core.errors import ClassNamesMismatchError, ConfigError, InputFileError
from core.facts import ArtifactFacts, CalibrationFacts, EngineFacts, ServingFacts, mask_sha256
from core.manifest import manifest_path, publish, read_manifest, write_manifest

NAMES = ("cat", "dog", "car")
MASK = np.eye(3, dtype=bool)
CONFIG = ModelConfig(num_classes=3, backbone="resnet18", image_size=64)
FACTS = ArtifactFacts(
    precision="fp32",
    class_names=NAMES,
    config=CONFIG,
    mask_sha256=mask_sha256(MASK),
    max_batch=8,
    source_checkpoint="best.pt",
    source_checkpoint_sha256="ab" * 32,
    opset=18,
    exporter={"torch": "2.14", "onnx": "1.19"},
)
ENGINE = EngineFacts(
    "10.13.0", "NVIDIA H100", (9, 0), 4, "none", False, 3, 4096, 12.5, "python -m export.build_engine", "linux-x86_64"
)


@pytest.mark.parametrize(
    "facts",
    [
        FACTS,
        FACTS.made_into("int8", "model.onnx", "cd" * 32, CalibrationFacts("minmax", 100, "ef" * 32)),
        FACTS.made_into("int8", "model.onnx", "cd" * 32, CalibrationFacts("minmax", 100, "ef" * 32, "cpu")),
        FACTS.made_into("fp16", "model.onnx", "cd" * 32).built_into(
            ENGINE, min_batch=2, max_batch=8, source_name="model.fp16.onnx", source_sha256="12" * 32
        ),
        dataclasses.replace(FACTS, input_format="uint8"),
    ],
)
def test_every_kind_of_artifact_reads_back_what_it_wrote(facts: ArtifactFacts) -> None:
    assert ArtifactFacts.from_dict(json.loads(json.dumps(facts.to_dict())), "x") == facts
    assert ArtifactFacts.from_metadata(facts.to_metadata().items(), "x") == facts


def test_onnx_metadata_keeps_the_layout_earlier_versions_wrote() -> None:
    metadata = FACTS.to_metadata()
    # Text as text, the rest as JSON: what the previous version wrote, and what other readers parse.
    assert metadata["precision"] == "fp32" and metadata["mask_sha256"] == FACTS.mask_sha256
    assert json.loads(metadata["class_names"]) == list(NAMES) and json.loads(metadata["batch"]) == {"min": 1, "max": 8}
    assert FACTS.exporter == (("onnx", "1.19"), ("torch", "2.14")) and hash(FACTS)  # frozen through and through


def test_only_a_uint8_input_writes_the_format_version_older_readers_refuse() -> None:
    pixels = dataclasses.replace(FACTS, input_format="uint8")
    assert FACTS.to_dict()["format_version"] == 2 and pixels.to_dict()["format_version"] == 3
    assert FACTS.to_dict()["input"] == {"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "float32"}
    assert pixels.to_dict()["input"] == {"name": "images", "shape": ["batch", 64, 64, 3], "dtype": "uint8"}
    serving = pixels.serving()
    assert serving.input_item_shape == (64, 64, 3) and serving.input_dtype == np.uint8
    assert FACTS.serving().input_item_shape == (3, 64, 64) and FACTS.serving().input_dtype == np.float32
    with pytest.raises(ConfigError, match="input format 'rgb' is none of float32, uint8"):
        dataclasses.replace(FACTS, input_format="rgb")


def test_the_serving_subset_names_what_differs_from_a_model() -> None:
    model = ServingFacts.of_model(CONFIG, NAMES, MASK)
    assert FACTS.serving().mismatches(model) == [] and FACTS.serving().max_batch == 8
    model.require_same_model(FACTS.serving(), "model.onnx")
    reordered = ServingFacts.of_model(CONFIG, ("dog", "cat", "car"), MASK)
    with pytest.raises(ClassNamesMismatchError, match="records other class_names"):
        model.require_same_model(reordered, "model.onnx")
    other = ServingFacts.of_model(dataclasses.replace(CONFIG, decision_threshold=0.7), NAMES, ~MASK)
    assert model.mismatches(other) == ["decision_threshold", "mask_sha256"]
    with pytest.raises(ConfigError, match="records other decision_threshold, mask_sha256 than the checkpoint"):
        model.require_same_model(other, "model.onnx")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"decision_threshold": 0.01}, "decision_threshold contradict its model config"),
        ({"image_size": 32}, "image_size contradict its model config"),
        ({"class_names": ["cat", "dog", "cat"]}, "repeated class names"),
        ({"class_names": ["cat", "dog"]}, "2 class names for a model of 3 classes"),
        ({"batch": {"min": 1, "max": -5}}, "is not a whole number of at least 1"),
        ({"batch": {"min": 4, "max": 2}}, "is not 1 ≤ min ≤ max"),
        ({"precision": "fp8"}, "precision 'fp8' is none of fp32, fp16, int8"),
        ({"format_version": 4}, "reads up to 3"),
        ({"input": {"name": "images", "shape": ["batch", 3, 64, 64], "dtype": "uint8"}}, "a uint8 input of shape"),
        ({"mask_sha256": None}, "not a non-empty string"),
    ],
)
def test_facts_that_contradict_each_other_are_refused(edit: dict, problem: str) -> None:
    with pytest.raises(InputFileError, match=problem):
        ArtifactFacts.from_dict({**FACTS.to_dict(), **edit}, "model.onnx.json")


def test_a_plan_manifest_edit_is_refused() -> None:
    plan = FACTS.built_into(ENGINE, min_batch=1, max_batch=8, source_name="m.onnx", source_sha256="1" * 64).to_dict()
    with pytest.raises(InputFileError, match="not a whole number of at least 1"):
        ArtifactFacts.from_dict({**plan, "profile": {"min": 1, "opt": 0, "max": 8}}, "m.plan.json")
    with pytest.raises(InputFileError, match="compute capability"):
        ArtifactFacts.from_dict({**plan, "gpu": {"name": "H100", "compute_capability": [9]}}, "m.plan.json")


def test_a_plan_manifest_from_before_platforms_were_recorded_reads_as_unknown() -> None:
    plan = FACTS.built_into(ENGINE, min_batch=1, max_batch=8, source_name="m.onnx", source_sha256="1" * 64).to_dict()
    assert plan["platform"] == "linux-x86_64"
    del plan["platform"], plan["facts_sha256"]  # neither was recorded then (format version 1)
    plan["format_version"] = 1
    assert ArtifactFacts.from_dict(plan, "m.plan.json").engine.platform == "unknown"


def test_a_file_without_facts_is_named_as_foreign() -> None:
    with pytest.raises(InputFileError, match="does not record its serving facts.*not made by this toolkit"):
        ArtifactFacts.from_metadata([], "foreign.onnx")
    with pytest.raises(InputFileError, match="its metadata 'class_names' is not JSON; the file was edited"):
        ArtifactFacts.from_metadata([*FACTS.to_metadata().items(), ("class_names", "[cat")], "edited.onnx")


def test_a_tensorrt_int8_graph_keeps_the_facts_it_had_before_targets_and_a_changed_target_is_refused() -> None:
    facts = FACTS.made_into("int8", "model.onnx", "cd" * 32, CalibrationFacts("minmax", 100, "ef" * 32))
    written = facts.to_dict()
    assert "int8_target" not in written  # what earlier versions wrote and read
    assert ArtifactFacts.from_dict(written, "trt.onnx").calibration.target == "tensorrt"
    cpu = dataclasses.replace(facts, calibration=dataclasses.replace(facts.calibration, target="cpu")).to_dict()
    assert cpu["int8_target"] == "cpu"
    with pytest.raises(InputFileError, match="edited after they were written"):
        ArtifactFacts.from_dict({key: value for key, value in cpu.items() if key != "int8_target"}, "edited.onnx")
    with pytest.raises(ConfigError, match="INT8 target 'gpu' is none of tensorrt, cpu"):
        CalibrationFacts("minmax", 1, "ef" * 32, "gpu")


def test_an_int8_manifest_records_its_calibration_set_beside_the_calibration_facts(tmp_path: Path) -> None:
    graph = tmp_path / "model.int8.onnx"
    graph.write_bytes(b"int8 graph")
    facts = FACTS.made_into("int8", "model.onnx", "cd" * 32, CalibrationFacts("minmax", 2, "ef" * 32))
    coverage = {"coverage": {"cat": 2, "dog": 0, "car": 1}, "warnings": ["1 classes have no calibration image: dog"]}
    write_manifest(graph, facts, calibration_set=coverage, force=True)
    recorded = json.loads(manifest_path(graph).read_text())["calibration"]
    assert recorded == {"method": "minmax", "images": 2, "files_sha256": "ef" * 32, **coverage}  # the layout so far
    manifest = read_manifest(graph)
    assert manifest.facts == facts and manifest.calibration_set == coverage


def test_the_manifest_describes_its_artifact_and_moves_in_after_it(tmp_path: Path) -> None:
    staged, target = tmp_path / "staging.onnx", tmp_path / "model.onnx"
    staged.write_bytes(b"graph bytes")
    write_manifest(staged, FACTS, parity={"passed": True, "limits": {"prob_abs": 1e-4}}, force=False)
    with pytest.raises(ConfigError, match="already exists"):
        write_manifest(staged, FACTS, force=False)
    publish(staged, target)
    assert not staged.exists() and not manifest_path(staged).exists()
    manifest = read_manifest(target)
    assert manifest.facts == FACTS and manifest.artifact == "staging.onnx" and manifest.artifact_bytes == 11
    assert manifest.describes(target) and manifest.gate_passed() and manifest.gate_passed({"prob_abs": 1e-4})
    assert not manifest.gate_passed({"prob_abs": 1e-3})
    target.write_bytes(b"other bytes")
    assert not manifest.describes(target)
    with pytest.raises(InputFileError, match="the manifest of missing.onnx not found"):
        read_manifest(tmp_path / "missing.onnx")
    manifest_path(target).write_text(json.dumps({**FACTS.to_dict(), "artifact": "model.onnx"}))
    with pytest.raises(InputFileError, match="not a manifest written by this toolkit"):
        read_manifest(target)


def test_facts_edited_by_hand_are_refused_and_facts_from_before_digests_are_read() -> None:
    plan = FACTS.built_into(ENGINE, min_batch=1, max_batch=8, source_name="m.onnx", source_sha256="1" * 64).to_dict()
    edits = [
        {"class_names": list(reversed(plan["class_names"]))},
        {"decision_threshold": 0.01, "model_config": {**plan["model_config"], "decision_threshold": 0.01}},
        {"tensorrt_version": "10.14.1.48"},
    ]
    for edit in edits:
        with pytest.raises(InputFileError, match="m.plan.json: its facts were edited after they were written"):
            ArtifactFacts.from_dict({**plan, **edit}, "m.plan.json")
    metadata = FACTS.to_metadata()
    metadata["class_names"] = json.dumps(list(reversed(FACTS.class_names)))
    with pytest.raises(InputFileError, match="were edited"):
        ArtifactFacts.from_metadata(metadata.items(), "model.onnx")
    older = {key: value for key, value in plan.items() if key != "facts_sha256"} | {"format_version": 1}
    assert ArtifactFacts.from_dict(older, "m.plan.json") == ArtifactFacts.from_dict(plan, "m.plan.json")
    with pytest.raises(InputFileError, match="sha256 is missing"):  # deleting the digest is no way around it
        ArtifactFacts.from_dict({**older, "format_version": 2}, "m.plan.json")
