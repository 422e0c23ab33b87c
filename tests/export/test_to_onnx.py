from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from core.config import ModelConfig
from core.facts import mask_sha256
from core.files import sha256_file
from core.manifest import manifest_path, read_manifest
from export.onnx_checks import find_mask_constant
from export.to_onnx import main
from models.checkpoint import load_model, save_checkpoint
from models.classifier import build_model
from tests.helpers import facts_of


@pytest.fixture(scope="module")
def exported(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(output), "--max-batch", "8"]) == 0
    return output


def test_one_file_with_a_dynamic_batch_and_the_mask_as_a_constant(exported: Path, trained_checkpoint: Path) -> None:
    assert sorted(p.name for p in exported.parent.iterdir()) == ["model.onnx", "model.onnx.json"]  # no .data
    graph = onnx.load(str(exported))
    onnx.checker.check_model(graph, full_check=True)
    (images,), (logits,) = graph.graph.input, graph.graph.output
    assert images.name == "images" and logits.name == "logits"
    assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == ["batch", 3, 64, 64]
    model = load_model(trained_checkpoint)
    name = find_mask_constant(graph, model.mask.numpy(), "softmax")
    constant = next(i for i in graph.graph.initializer if i.name == name)
    np.testing.assert_array_equal(numpy_helper.to_array(constant), model.mask.numpy())
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 8):
        (out,) = session.run(None, {"images": np.zeros((batch, 3, 64, 64), np.float32)})
        assert out.shape == (batch, model.config.num_classes)


def test_metadata_and_manifest_record_the_same_facts(exported: Path, trained_checkpoint: Path) -> None:
    model = load_model(trained_checkpoint)
    facts = facts_of(exported)
    manifest = read_manifest(exported)
    assert manifest.facts == facts
    assert facts.class_names == model.class_names and facts.config == model.config
    assert facts.image_size == 64 and facts.precision == "fp32"
    assert facts.serving() == dataclasses.replace(model.serving_facts, max_batch=8)
    assert facts.mask_sha256 == mask_sha256(model.mask.numpy())
    assert facts.source_checkpoint_sha256 == sha256_file(trained_checkpoint)
    assert (facts.min_batch, facts.max_batch) == (1, 8)
    assert set(dict(facts.exporter)) == {"torch", "onnx", "onnxscript"}
    assert manifest.describes(exported) and manifest.artifact_bytes == exported.stat().st_size
    assert manifest.gate_passed() and manifest.parity["figures"]["logits_max_rel"] < 1e-4
    # Readers without this toolkit (Triton tooling, jq) find the serving facts at the top level.
    document = json.loads(manifest_path(exported).read_text())
    assert document["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and document["image_size"] == 64


def test_a_seed_mode_model_exports_and_passes(seed_mode_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "seed.onnx"
    assert main(["--checkpoint", str(seed_mode_checkpoint), "--output", str(output)]) == 0
    model = load_model(seed_mode_checkpoint)
    find_mask_constant(onnx.load(str(output)), model.mask.numpy(), "seed")
    assert read_manifest(output).facts.config.mask_mode == "seed"


def test_the_fp16_graph_keeps_io_and_head_in_fp32(trained_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.fp16.onnx"
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(output), "--precision", "fp16"]) == 0
    graph = onnx.load(str(output))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in graph.graph.node if n.op_type == "Conv"}
    dtypes = {i.data_type for i in graph.graph.initializer if i.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}  # the backbone is FP16
    inferred = onnx.shape_inference.infer_shapes(graph)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    softmax = next(n for n in graph.graph.node if n.op_type == "Softmax")
    assert types[softmax.input[0]] == onnx.TensorProto.FLOAT  # the masked softmax is FP32
    assert facts_of(output).precision == "fp16"


def test_export_refuses_and_leaves_nothing_half_written(trained_checkpoint: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(target)]) == 1
    assert "--force" in capsys.readouterr().err and target.read_bytes() == b"keep me"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 64)
    assert main(["--checkpoint", str(broken), "--output", str(tmp_path / "b.onnx")]) == 1
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(tmp_path / "no" / "dir" / "m.onnx")]) == 1
    assert "not a writable folder" in capsys.readouterr().err
    # A gate that cannot pass (exactness demanded of a different kernel library) fails closed.
    failing = [
        "--checkpoint",
        str(trained_checkpoint),
        "--output",
        str(tmp_path / "g.onnx"),
        "--tolerance",
        "logits_rel=0",
    ]
    assert main(failing) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "logits_max_rel" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pt", "model.onnx"]


def test_fp16_graph_of_the_real_coco_mask_is_finite_and_gated(shared_data: Path, tmp_path: Path) -> None:
    from models.correlation import CorrelationMask
    from models.correlation_sources import read_correlation

    correlation = read_correlation(shared_data / "coco_adj.pkl", names=shared_data / "coco_names_alphabetical.txt")
    torch.manual_seed(0)
    model = build_model(ModelConfig(80, "resnet18", 64), correlation.class_names, CorrelationMask(correlation))
    checkpoint = save_checkpoint(model, tmp_path / "coco.pt")
    output = tmp_path / "coco.fp16.onnx"
    assert main(["--checkpoint", str(checkpoint), "--output", str(output), "--precision", "fp16"]) == 0
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    images = 3.0 * np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    (logits,) = session.run(None, {"images": images})
    assert np.isfinite(logits).all()
    bear, zebra = correlation.class_names.index("bear"), correlation.class_names.index("zebra")
    assert model.mask[bear].sum() == 1 and model.mask[zebra].sum() == 1  # rows with no neighbour, exported


@pytest.mark.slow
def test_resnet101_at_448_exports_and_passes_the_fp32_gate(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(80), [f"class_{i}" for i in range(80)])
    checkpoint = save_checkpoint(model, tmp_path / "r101.pt")
    output = tmp_path / "r101.onnx"
    assert main(["--checkpoint", str(checkpoint), "--output", str(output), "--parity-samples", "2"]) == 0
    manifest = read_manifest(output)
    assert manifest.gate_passed() and manifest.parity["figures"]["logits_max_rel"] <= 1e-4
    assert output.stat().st_size > 150e6 and not (tmp_path / "r101.onnx.data").exists()


def test_a_batch_one_graph_is_static_and_a_folder_target_is_refused(
    trained_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    output = tmp_path / "single.onnx"
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(output), "--max-batch", "1"]) == 0
    dims = onnx.load(str(output)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 64, 64]
    (tmp_path / "folder.onnx").mkdir()
    assert main(["--checkpoint", str(trained_checkpoint), "--output", str(tmp_path / "folder.onnx"), "--force"]) == 1
    assert "is a folder" in capsys.readouterr().err
