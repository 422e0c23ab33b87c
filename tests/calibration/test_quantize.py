"""INT8 quantization: TensorRT's Q/DQ rules, the range cache's keying, coverage, the gate and the CLI."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

from calibration import quantize as quantize_cli
from calibration.cache import RangeKey, read_ranges
from calibration.data import SMALL_SET, calibration_set
from calibration.quantize import method_spec, quantize_int8
from calibration.reader import BatchReader
from core.errors import ConfigError, ExportError, InputFileError, ParityError, StaleArtifactError
from core.files import sha256_file
from core.manifest import manifest_path, read_manifest
from export import build_engine as build_engine_cli
from export import check_parity as check_parity_cli
from export.fp16 import head_nodes
from export.metadata import graph_precision
from export.qdq_checks import check_placement, check_qdq, residual_adds
from export.typed_graph import typed_graph
from tests.helpers import FIXTURE_INT8_LIMITS, facts_of


def _quantize(source: Path, data: Path, output: Path, **options):
    options.setdefault("annotations", data / "instances_train.json")
    options.setdefault("tolerance_overrides", FIXTURE_INT8_LIMITS)
    return quantize_int8(source, output, data / "train", **options)


@pytest.fixture(scope="module")
def int8(fp32_graph: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return _quantize(
        fp32_graph,
        demo_data,
        output,
        gate_images=demo_data / "val",
        gate_annotations=demo_data / "instances_val.json",
    )


def _zero_point(graph: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    constants = {i.name: i for i in graph.initializer}
    return numpy_helper.to_array(constants[node.input[2]])


def test_every_qdq_node_is_symmetric_int8_and_the_head_has_none(int8) -> None:
    graph = onnx.load(str(int8.path))
    constants = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    qdq = [n for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 20
    for node in qdq:
        zero_point = constants[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    # Nothing downstream of the global max pool is a Q/DQ node or reads one's output.
    dequantized = {name for node in qdq for name in node.output}
    reached = set(next(n for n in graph.graph.node if n.op_type == "ReduceMax").output)
    for node in graph.graph.node:
        if any(name in reached for name in node.input):
            assert node.op_type not in ("QuantizeLinear", "DequantizeLinear"), node.name
            assert not dequantized & set(node.input), node.name
            reached.update(node.output)
    # Conv weights: INT8 initializers, one scale per output channel (axis 0), biases left FP32.
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    producer = {name: node for node in graph.graph.node for name in node.output}
    for conv in convs:
        dq = producer[conv.input[1]]
        weights, scale = constants[dq.input[0]], constants[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert dq.op_type == "DequantizeLinear" and weights.dtype == np.int8 and weights.ndim == 4
        assert axis == 0 and scale.shape == (weights.shape[0],), conv.name
        if len(conv.input) > 2:
            assert conv.input[2] in constants and constants[conv.input[2]].dtype == np.float32, conv.name


def test_the_int8_graph_records_its_calibration_and_passes_its_gate(int8, fp32_graph: Path) -> None:
    facts = facts_of(int8.path)
    assert graph_precision(onnx.load(str(int8.path))) == "int8" and facts.precision == "int8"
    assert facts.class_names == facts_of(fp32_graph).class_names
    assert facts.source_onnx_sha256 == sha256_file(fp32_graph)
    assert facts.calibration.method == "minmax" and facts.calibration.images == len(int8.calibration.files)
    manifest = read_manifest(int8.path)
    assert manifest.facts == facts and manifest.gate_passed() and manifest.parity["precision"] == "int8"
    assert "held-out" in manifest.parity["inputs"]
    assert manifest.calibration_set["coverage"] == int8.calibration.coverage()
    assert manifest.parity["figures"]["map_drop"] <= 1.0
    assert int8.path.stat().st_size < fp32_graph.stat().st_size / 3  # INT8 weights


def test_check_parity_applies_the_int8_limits_against_the_eager_model(int8, trained_checkpoint: Path, capsys) -> None:
    argv = ["--checkpoint", str(trained_checkpoint), "--candidate", str(int8.path)]
    limits = [f"--tolerance={name}={value}" for name, value in FIXTURE_INT8_LIMITS.items()]
    assert check_parity_cli.main([*argv, *limits]) == 0
    assert "int8 limits" in capsys.readouterr().out


def test_ranges_are_reused_only_for_the_same_key_and_give_the_same_graph(
    int8, fp32_graph: Path, demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_images(self):
        raise AssertionError("a cache hit must not read calibration images")

    monkeypatch.setattr(BatchReader, "get_next", no_images)
    again = _quantize(
        fp32_graph,
        demo_data,
        tmp_path / "again.onnx",
        cache=int8.cache,
        gate_images=demo_data / "val",
        gate_annotations=demo_data / "instances_val.json",
    )
    assert again.reused_cache and not int8.reused_cache
    original, reused = onnx.load(str(int8.path)), onnx.load(str(again.path))
    assert original.graph == reused.graph


def test_a_changed_model_invalidates_the_cache(int8, fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    changed = onnx.load(str(fp32_graph))
    changed.doc_string = "re-exported"
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    with pytest.raises(StaleArtifactError, match="another source graph.*--recalibrate"):
        _quantize(tmp_path / "changed.onnx", demo_data, tmp_path / "out.onnx", cache=int8.cache)
    assert not (tmp_path / "out.onnx").exists()


def test_a_changed_file_list_invalidates_the_cache(int8, fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    with pytest.raises(StaleArtifactError, match="another calibration file list"):
        _quantize(fp32_graph, demo_data, tmp_path / "out.onnx", cache=int8.cache, max_images=10)
    # Same names, one image's content changed: still another list.
    copy = tmp_path / "data"
    shutil.copytree(demo_data, copy)
    first = sorted((copy / "train").iterdir())[0]
    first.write_bytes((copy / "train" / sorted((copy / "train").iterdir())[1].name).read_bytes())
    with pytest.raises(StaleArtifactError, match="another calibration file list"):
        _quantize(fp32_graph, copy, tmp_path / "out.onnx", cache=int8.cache)


@pytest.mark.parametrize(
    ("first", "then"),
    [("minmax", ("entropy", 99.999)), ("entropy", ("percentile", 99.999)), ("percentile", ("percentile", 99.9))],
)
def test_a_changed_method_invalidates_the_cache(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, first: str, then: tuple[str, float]
) -> None:
    cache = tmp_path / "ranges.json"
    _quantize(fp32_graph, demo_data, tmp_path / "a.onnx", cache=cache, method=first)
    method, percentile = then
    with pytest.raises(StaleArtifactError, match="another calibration method"):
        _quantize(fp32_graph, demo_data, tmp_path / "b.onnx", cache=cache, method=method, percentile=percentile)
    result = _quantize(
        fp32_graph, demo_data, tmp_path / "b.onnx", cache=cache, method=method, percentile=percentile, recalibrate=True
    )
    assert not result.reused_cache
    files = calibration_set(
        demo_data / "train", result.calibration.class_names, annotations=demo_data / "instances_train.json"
    )
    expected = RangeKey(sha256_file(fp32_graph), files.fingerprint(), method_spec(method, percentile))
    assert read_ranges(cache, expected)  # the replaced cache answers to the new key only


def test_a_file_that_is_not_a_cache_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ranges.json"
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(InputFileError, match="not a calibration range cache"):
        read_ranges(path, RangeKey("a", "b", "minmax"))


def test_coverage_is_reported_and_weak_sets_warn(demo_data: Path) -> None:
    names = ["bar", "circle", "crescent", "cross", "diamond", "hexagon", "ring", "square", "star", "triangle"]
    labelled = calibration_set(demo_data / "train", names, annotations=demo_data / "instances_train.json")
    coverage = labelled.coverage()
    assert list(coverage) == names and sum(coverage.values()) >= len(labelled.files)
    assert any(f"fewer than {SMALL_SET}" in warning for warning in labelled.warnings())
    one = calibration_set(demo_data / "train", names, annotations=demo_data / "instances_train.json", max_images=1)
    assert any("classes have no calibration image" in warning for warning in one.warnings())
    unlabelled = calibration_set(demo_data / "train", names)
    assert unlabelled.coverage() is None
    assert any("coverage is unknown" in warning for warning in unlabelled.warnings())


def test_only_the_fp32_graph_is_calibrated(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    half = typed_graph(fp32_graph, "fp16", tmp_path / "model.plan")
    with pytest.raises(ConfigError, match="fp16 graph; calibrate the FP32 graph"):
        _quantize(half, demo_data, tmp_path / "out.onnx")


def test_a_failed_gate_writes_no_graph(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.int8.onnx"
    with pytest.raises(ParityError, match="was not written"):
        _quantize(fp32_graph, demo_data, output, tolerance_overrides={"logits_rel": 1e-9})
    assert not output.exists() and not manifest_path(output).exists()
    assert [p.name for p in tmp_path.iterdir()] == [f"{output.name}.minmax.ranges.json"]


def test_check_qdq_refuses_what_tensorrt_refuses(int8) -> None:
    graph = onnx.load(str(int8.path))
    check_qdq(graph, [])
    node = next(n for n in graph.graph.node if n.op_type == "QuantizeLinear")
    zero_point = next(i for i in graph.graph.initializer if i.name == node.input[2])
    zero_point.CopyFrom(
        numpy_helper.from_array(np.ones(numpy_helper.to_array(zero_point).shape, np.int8), zero_point.name)
    )
    with pytest.raises(ExportError, match="non-zero zero point"):
        check_qdq(graph, [])
    zero_point.CopyFrom(
        numpy_helper.from_array(np.zeros(numpy_helper.to_array(zero_point).shape, np.uint8), zero_point.name)
    )
    with pytest.raises(ExportError, match="UINT8; TensorRT needs INT8"):
        check_qdq(graph, [])
    with pytest.raises(ExportError, match="lies in the head"):
        check_qdq(graph, ["pool", node.name])


def test_a_quantized_constant_feeding_the_head_is_refused(int8) -> None:
    graph = onnx.load(str(int8.path))
    head = head_nodes(graph)
    assert check_qdq(graph, head)
    gemm = next(n for n in graph.graph.node if n.name in head[1:] and n.op_type == "Gemm")
    weight = next(i for i in graph.graph.initializer if i.name == gemm.input[1])
    quantized = np.zeros(tuple(weight.dims), np.int8)
    graph.graph.initializer.extend(
        [
            numpy_helper.from_array(quantized, "w_q"),
            numpy_helper.from_array(np.float32(0.01), "w_scale"),
            numpy_helper.from_array(np.int8(0), "w_zero"),
        ]
    )
    graph.graph.node.append(onnx.helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], "w_dq"))
    gemm.input[1] = "w_dq"
    with pytest.raises(ExportError, match="reads a Q/DQ output"):
        check_qdq(graph, head)


def test_a_batch_larger_than_the_graph_takes_is_refused(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exceeds the graph's max batch 8"):
        _quantize(fp32_graph, demo_data, tmp_path / "out.onnx", batch_size=9)
    with pytest.raises(ConfigError, match="--gate-max-images must be at least 1, got 0"):
        _quantize(fp32_graph, demo_data, tmp_path / "out.onnx", gate_max_images=0)


def test_the_cli_quantizes_and_refuses_to_overwrite(fp32_graph: Path, demo_data: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "model.int8.onnx"
    argv = [str(fp32_graph), "--data", str(demo_data / "train"), "--output", str(output), "--method", "percentile"]
    argv += [f"--tolerance={name}={value}" for name, value in FIXTURE_INT8_LIMITS.items()]
    assert quantize_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "class coverage: unknown" in printed and "INT8/FP32" in printed and "PASS" in printed
    assert quantize_cli.main(argv) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert quantize_cli.main([*argv, "--force"]) == 0
    assert "ranges reused" in capsys.readouterr().out


def _quantized_from(graph: onnx.GraphProto, tensor: str) -> str | None:
    """The tensor a Q→DQ pair reads when ``tensor`` is that pair's output, else None."""
    producer = {name: node for node in graph.node for name in node.output}
    dq = producer.get(tensor)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None


def test_qdq_pairs_sit_where_tensorrt_fuses_conv_add_relu_in_int8(int8) -> None:
    graph = onnx.load(str(int8.path)).graph
    head = set(head_nodes(onnx.load(str(int8.path))))
    backbone = [n for n in graph.node if n.name not in head]
    producer = {name: node for node in graph.node for name in node.output}
    convs = [n for n in backbone if n.op_type == "Conv"]
    adds = [n for n in backbone if n.op_type == "Add"]
    # Every Conv reads a quantized activation (and INT8 weights, checked above).
    assert all(_quantized_from(graph, conv.input[0]) for conv in convs)
    # Each residual Add: its main branch straight from a Conv, its identity through a Q/DQ pair.
    identities = set()
    for add in adds:
        main, identity = add.input
        assert producer[main].op_type == "Conv" and not _quantized_from(graph, main), add.name
        assert _quantized_from(graph, identity), add.name
        identities.add(identity)
    # No Relu reads a Q/DQ pair; no Add output is quantized; a Conv output only as an identity (downsample).
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    for node in backbone:
        if node.op_type == "Relu":
            assert producer[node.input[0]].op_type in ("Conv", "Add"), node.name
    for q in quantize:
        upstream = producer.get(q.input[0])
        assert upstream is None or upstream.op_type in ("Relu", "MaxPool", "Conv"), q.name
        if upstream is not None and upstream.op_type == "Conv":
            (dq,) = [n for n in graph.node if q.output[0] in n.input]
            assert dq.output[0] in identities, q.name
    # MaxPool reads and writes INT8 at one scale.
    (pool,) = [n for n in backbone if n.op_type == "MaxPool"]
    readers = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == pool.output[0]]
    scale = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    source = producer[pool.input[0]]
    assert source.op_type == "DequantizeLinear" and readers
    assert all(scale[q.input[1]] == scale[source.input[1]] for q in readers)
    # One pair per Conv input, per identity and for the MaxPool input; one DequantizeLinear per weight.
    assert len(quantize) == len(convs) + len(adds) + 1
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) == len(quantize) + len(convs)


def _pair_on(model: onnx.ModelProto, reader: onnx.NodeProto, index: int) -> None:
    """Puts a dedicated symmetric Q/DQ pair on ``reader``'s input ``index``."""
    tensor = reader.input[index]
    name = f"{reader.name}_{index}_extra"
    args = [name + "_scale", name + "_zero"]
    model.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0.05), args[0]), numpy_helper.from_array(np.int8(0), args[1])]
    )
    model.graph.node.extend(
        [
            onnx.helper.make_node("QuantizeLinear", [tensor, *args], [name + "_q"], name + "_q"),
            onnx.helper.make_node("DequantizeLinear", [name + "_q", *args], [name + "_dq"], name + "_dq"),
        ]
    )
    reader.input[index] = name + "_dq"


def test_check_placement_refuses_what_blocks_tensorrt_fusions(int8, fp32_graph: Path) -> None:
    head = head_nodes(onnx.load(str(int8.path)))
    check_placement(onnx.load(str(int8.path)), head)
    # torchvision's blocks compute out += identity: the main branch is the Add's first input.
    assert [main for _, main in residual_adds(onnx.load(str(fp32_graph)), head)] == [0] * 8

    def broken(op_type: str, index: int, nth: int = 0) -> onnx.ModelProto:
        model = onnx.load(str(int8.path))
        nodes = [n for n in model.graph.node if n.op_type == op_type and n.name not in head]
        _pair_on(model, nodes[nth], index)
        return model

    with pytest.raises(ExportError, match="quantizes the output of Conv .* \\(read by Relu\\)"):
        check_placement(broken("Relu", 0), head)  # Conv → Q/DQ → Relu: the old placement
    with pytest.raises(ExportError, match="reads its main branch through a Q/DQ pair"):
        check_placement(broken("Add", 0), head)
    with pytest.raises(ExportError, match="quantizes the output of Add"):
        check_placement(broken("Relu", 0, nth=2), head)  # the first block's Add → Q/DQ → Relu
    model = onnx.load(str(int8.path))
    add = next(n for n in model.graph.node if n.op_type == "Add")
    add.input[1] = next(n for n in model.graph.node if n.op_type == "Relu").output[0]  # an Add of two Relus
    add.input[0] = add.input[1]
    with pytest.raises(ExportError, match="is not a ResNet residual Add"):
        check_placement(model, head)


def test_quantization_never_writes_beside_the_source(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a path, ONNX Runtime writes <source>-inferred.onnx beside it (a read-only folder fails,
    # two runs collide, a kill leaves it there); the graph is handed over in memory instead.
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not the function

    def beside_the_source(path):
        raise AssertionError(f"ONNX Runtime was about to write beside {path}")

    monkeypatch.setattr(ort_quantize, "load_model_with_shape_infer", beside_the_source)
    before = sorted(fp32_graph.parent.iterdir())
    _quantize(fp32_graph, demo_data, tmp_path / "model.int8.onnx", max_images=16)
    assert sorted(fp32_graph.parent.iterdir()) == before


@pytest.fixture(scope="module")
def int8_cpu(fp32_graph: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("int8cpu") / "model.int8-cpu.onnx"
    held_out = {"gate_images": demo_data / "val", "gate_annotations": demo_data / "instances_val.json"}
    return _quantize(fp32_graph, demo_data, output, target="cpu", **held_out)


def test_the_cpu_target_is_u8s8_with_an_fp32_head_and_passes_its_gate(
    int8_cpu, int8, fp32_graph: Path, tmp_path: Path
) -> None:
    source, graph = onnx.load(str(fp32_graph)), onnx.load(str(int8_cpu.path))
    producer = {output: node for node in graph.graph.node for output in node.output}
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    assert len(convs) == sum(node.op_type == "Conv" for node in source.graph.node) and convs
    activations = []
    for node in convs:  # uint8 activations at their own zero points, int8 weights, through DequantizeLinear
        x, w = producer[node.input[0]], producer[node.input[1]]
        assert x.op_type == w.op_type == "DequantizeLinear"
        activations.append(_zero_point(graph.graph, x))
        assert activations[-1].dtype == np.uint8 and _zero_point(graph.graph, w).dtype == np.int8
    assert any((zero != 0).any() for zero in activations)  # asymmetric: zero points of their own
    head = {node.name: node.op_type for node in source.graph.node if node.name in set(head_nodes(source))}
    assert {node.name: node.op_type for node in graph.graph.node if node.name in head} == head  # FP32, untouched
    options = onnxruntime.SessionOptions()  # what ONNX Runtime makes of it: every Conv an integer QLinearConv
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    onnxruntime.InferenceSession(str(int8_cpu.path), options, providers=["CPUExecutionProvider"])
    optimized = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert optimized.count("QLinearConv") == len(convs) and "Conv" not in optimized

    facts = facts_of(int8_cpu.path)
    assert facts.calibration.target == "cpu" and facts_of(int8.path).calibration.target == "tensorrt"
    manifest = read_manifest(int8_cpu.path)
    assert manifest.gate_passed() and manifest.parity["figures"]["map_drop"] <= 1.0
    assert int8_cpu.path.stat().st_size < fp32_graph.stat().st_size / 3


def test_the_two_targets_never_share_a_range_cache(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ranges.json"
    _quantize(fp32_graph, demo_data, tmp_path / "trt.onnx", cache=cache, max_images=8)
    with pytest.raises(StaleArtifactError, match="computed for another INT8 target"):
        _quantize(fp32_graph, demo_data, tmp_path / "cpu.onnx", cache=cache, max_images=8, target="cpu")


def test_an_engine_is_never_built_from_a_cpu_target_graph(int8_cpu, tmp_path: Path, capsys) -> None:
    argv = [str(int8_cpu.path), "--output", str(tmp_path / "model.plan"), "--precision", "int8"]
    assert build_engine_cli.main(argv) == 1
    error = capsys.readouterr().err
    assert "TensorRT needs symmetric INT8" in error and "--target tensorrt" in error
    assert not (tmp_path / "model.plan").exists()


def test_the_cli_takes_a_target(fp32_graph: Path, demo_data: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "model.int8-cpu.onnx"
    argv = [str(fp32_graph), "--data", str(demo_data / "train"), "--output", str(output), "--target", "cpu"]
    limits = [f"--tolerance={name}={value}" for name, value in FIXTURE_INT8_LIMITS.items()]
    assert quantize_cli.main([*argv, "--max-images", "16", *limits]) == 0
    assert facts_of(output).calibration.target == "cpu" and "INT8" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["tensorrt", "cpu"], ids=["s8s8", "u8s8"])  # "tensorrt" would mark it
def test_a_graph_whose_mask_is_over_a_kibibyte_quantizes(demo_data: Path, tmp_path: Path, target: str) -> None:
    # 40 classes: a 1,600-byte mask, which ONNX Runtime moves out of the proto it quantizes.
    torch = pytest.importorskip("torch")
    from core.config import ModelConfig
    from export.to_onnx import export_onnx
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(40, backbone="resnet18", image_size=64)
    checkpoint = save_checkpoint(build_model(config, [f"c{i}" for i in range(40)]), tmp_path / "m.pt")
    graph = export_onnx(checkpoint, tmp_path / "m.onnx", max_batch=8, parity_samples=2).path
    loose = {"logits_rel": 1e9, "prob_abs": 1.0, "min_cosine": -1.0, "flip_rate": 1.0, "topk_disagreement": 1.0}
    options = {"max_images": 16, "target": target, "tolerance_overrides": loose, "gate_max_images": 8}
    result = quantize_int8(graph, tmp_path / "m.int8.onnx", demo_data / "train", **options)
    assert facts_of(result.path).calibration.target == target
