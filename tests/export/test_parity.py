from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxconverter_common import float16
from PIL import Image

from core.errors import ConfigError, MissingDependencyError
from core.facts import PRECISIONS, EngineFacts
from core.manifest import write_manifest
from export.check_parity import main as check_parity_main
from export.parity import FP32, TOLERANCES, compare, tolerances
from export.parity_inputs import random_inputs, runner_logits
from export.to_onnx import main as to_onnx_main
from models.checkpoint import load_model, save_checkpoint
from models.evaluation import eager_logits
from tests.helpers import facts_of, relabelled

H100_BUILD = EngineFacts(
    "10.13.0", "H100", (9, 0), 8, "none", False, 3, 4096, 1.0, "python -m export.build_engine", "linux-x86_64"
)


def test_figures_by_hand_and_the_gate() -> None:
    reference = np.array([[2.0, -1.0], [0.5, -3.0]])
    candidate = np.array([[2.1, -1.0], [0.5, -3.0]])
    report = compare(reference, candidate, precision="fp32", threshold=0.5)
    assert report.figures["logits_max_abs"] == pytest.approx(0.1)
    assert report.figures["logits_max_rel"] == pytest.approx(0.1 / 2.0)  # of the image's largest |logit|
    assert report.figures["prob_max_abs"] == pytest.approx(1 / (1 + np.exp(-2.1)) - 1 / (1 + np.exp(-2.0)))
    assert report.figures["flip_rate"] == 0.0 and report.figures["topk_disagreement"] == 0.0
    assert not report.passed and any("logits_max_rel" in failure for failure in report.failures)
    assert compare(reference, candidate, precision="int8", threshold=0.5).passed
    flipped = compare(reference, np.array([[2.0, -1.0], [-0.5, -3.0]]), precision="int8", threshold=0.5)
    assert flipped.figures["flip_rate"] == pytest.approx(1 / 4)


def test_the_gate_fails_closed_on_non_finite_outputs() -> None:
    reference = np.zeros((2, 3))
    candidate = np.array([[0.0, np.nan, 0.0], [0.0, 0.0, np.inf]])
    report = compare(reference, candidate, precision="int8", threshold=0.5)
    assert not report.passed and "2 NaN/Inf" in report.failures[0]


def test_tolerances_are_named_and_loosened_only_explicitly() -> None:
    assert tuple(TOLERANCES) == PRECISIONS  # a gate for every precision an artifact can record
    assert tolerances("fp32") == FP32
    assert tolerances("fp32", {"prob_abs": 0.5}).prob_abs == 0.5
    with pytest.raises(ConfigError, match="unknown tolerance"):
        tolerances("fp32", {"probability": 0.5})
    with pytest.raises(ConfigError, match="unknown precision"):
        tolerances("fp8")
    # A limit outside its figure's range would fail (or pass) every gate: refused, not reported later.
    for name, value in (("prob_abs", float("nan")), ("prob_abs", -1.0), ("min_cosine", 1.5), ("flip_rate", 2.0)):
        with pytest.raises(ConfigError, match=f"tolerance {name} must be a number in"):
            tolerances("fp32", {name: value})


@pytest.fixture(scope="module")
def cli_graph(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint exported through the command line, with its defaults (max batch 32)."""
    output = tmp_path_factory.mktemp("graph") / "model.onnx"
    assert to_onnx_main(["--checkpoint", str(trained_checkpoint), "--output", str(output)]) == 0
    return output


def test_a_perturbed_candidate_fails_with_a_readable_reason(
    trained_checkpoint: Path, cli_graph: Path, tmp_path: Path, capsys
) -> None:
    graph = onnx.load(str(cli_graph))
    gemm = next(n for n in graph.graph.node if n.op_type == "Gemm")  # the classifier's linear layer
    weight = next(i for i in graph.graph.initializer if i.name == gemm.input[1])
    values = numpy_helper.to_array(weight).copy()
    values[0, 0] += 0.5  # one weight changed
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    perturbed = tmp_path / "perturbed.onnx"
    onnx.save(graph, str(perturbed))
    argv = ["--checkpoint", str(trained_checkpoint), "--candidate", str(perturbed)]
    assert check_parity_main(argv) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert captured.err.startswith("error: ") and "fails the fp32 parity gate: logits_max_rel" in captured.err
    assert check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(cli_graph)]) == 0


def _hot(layer_or_model) -> None:
    """Large attention weights: the attention logits reach ~1e5-1e6, beyond float16's 65504."""
    gat = getattr(getattr(layer_or_model, "head", None), "gat", layer_or_model)
    with torch.no_grad():
        gat.W.fill_(8.0)
        gat.a.fill_(4000.0)


def test_a_naive_full_fp16_masked_softmax_gives_nan_and_fails_the_gate(shared_data: Path, tmp_path: Path) -> None:
    from onnx.reference import ReferenceEvaluator

    from models.correlation_sources import read_correlation
    from models.gat import MaskedGATLayer

    correlation = read_correlation(shared_data / "coco_adj.pkl", names=shared_data / "coco_names_alphabetical.txt")
    layer = MaskedGATLayer(torch.from_numpy(correlation.mask(0.1, "softmax")), correlation.class_names).eval()
    _hot(layer)
    scores = torch.randn(4, 80, 1, generator=torch.Generator().manual_seed(0)) * 5
    program = torch.onnx.export(layer, (scores,), dynamo=True, input_names=["scores"], optimize=True)
    program.save(str(tmp_path / "gat.onnx"), external_data=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = float16.convert_float_to_float16(  # every op in FP16, constants cast as they are
            onnx.load(str(tmp_path / "gat.onnx")), keep_io_types=True, op_block_list=[], max_finite_val=3.5e38
        )
    fills = [numpy_helper.to_array(i) for i in naive.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert any(np.isneginf(v).any() for v in fills)  # the -3.4e38 fill overflowed to -inf
    # onnx's reference evaluator computes in the graph's dtypes: genuine float16 arithmetic,
    # which ONNX Runtime's CPU provider does not do (it computes FP16 graphs in FP32).
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is what is being shown
        (naive_out,) = ReferenceEvaluator(naive).run(None, {"scores": scores.numpy()})
    with torch.no_grad():
        reference = layer(scores).numpy()
    assert np.isnan(naive_out).any()  # +inf logits meet the -inf fill: inf - inf
    report = compare(reference[..., 0], naive_out[..., 0], precision="fp16", threshold=0.5)
    assert not report.passed and "NaN/Inf" in report.failures[0]


def test_our_fp16_graph_keeps_the_hot_head_finite_and_passes(trained_checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(trained_checkpoint)
    _hot(model)
    checkpoint = save_checkpoint(model, tmp_path / "hot.pt")
    output = tmp_path / "hot.fp16.onnx"
    assert to_onnx_main(["--checkpoint", str(checkpoint), "--output", str(output), "--precision", "fp16"]) == 0
    graph = onnx.load(str(output))
    where = next(n for n in graph.graph.node if n.op_type == "Where")
    fill = next(i for i in graph.graph.initializer if i.name == where.input[2])
    assert fill.data_type == onnx.TensorProto.FLOAT
    assert numpy_helper.to_array(fill) == np.finfo(np.float32).min  # exact, not clamped to float16
    inputs = random_inputs(model.config, 8)
    logits = runner_logits(output, inputs, device="cpu")
    assert np.isfinite(logits).all()
    assert compare(eager_logits(model, inputs.images), logits, precision="fp16", threshold=0.5).passed


def test_polygraphy_outputs_compare_and_reports_are_written(
    trained_checkpoint: Path, cli_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs.json"
    assert (
        check_parity_main(["--checkpoint", str(trained_checkpoint), "--write-inputs", str(inputs), "--random", "3"])
        == 0
    )
    polygraphy = Path(sys.executable).with_name("polygraphy")
    run = [
        str(polygraphy),
        "run",
        str(cli_graph),
        "--onnxrt",
        "--load-inputs",
        str(inputs),
        "--save-inputs",
        str(tmp_path / "used.json"),
        "--save-outputs",
        str(tmp_path / "out.json"),
    ]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    report, plot = tmp_path / "report.json", tmp_path / "parity.png"
    argv = [
        "--checkpoint",
        str(trained_checkpoint),
        "--candidate",
        str(tmp_path / "out.json"),
        "--polygraphy-inputs",
        str(tmp_path / "used.json"),
        "--report",
        str(report),
        "--plot",
        str(plot),
    ]
    assert check_parity_main(argv) == 0
    document = json.loads(report.read_text())
    assert document["passed"] and document["images"] == 3
    with Image.open(plot) as image:
        assert image.format == "PNG"
    labelled = [
        "--checkpoint",
        str(trained_checkpoint),
        "--candidate",
        str(cli_graph),
        "--annotations",
        str(demo_data / "instances_val.json"),
        "--images",
        str(demo_data / "val"),
        "--report",
        str(report),
    ]
    assert check_parity_main(labelled) == 1  # the first report is not replaced without --force
    assert check_parity_main([*labelled, "--force"]) == 0
    figures = json.loads(report.read_text())["figures"]
    assert abs(figures["map_drop"]) < 0.05 and figures["map_reference"] > 0


def test_a_plan_candidate_without_gpu_says_how_to_compare_it(
    trained_checkpoint: Path, cli_graph: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"serialized engine")
    facts = dataclasses.replace(facts_of(cli_graph), precision="fp16")
    write_manifest(
        plan, facts.built_into(H100_BUILD, min_batch=1, max_batch=8, source_name="x", source_sha256="0"), force=True
    )

    def no_gpu():
        raise MissingDependencyError("no CUDA GPU is visible here")

    monkeypatch.setattr("runtime.plan_rules.this_machine", no_gpu)
    assert check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(plan)]) == 1
    error = capsys.readouterr().err
    assert "no CUDA GPU" in error and "polygraphy run M.plan --trt" in error


def test_a_checkpoint_candidate_runs_through_the_torch_runner(trained_checkpoint: Path, capsys) -> None:
    args = ["--checkpoint", str(trained_checkpoint), "--candidate", str(trained_checkpoint), "--device", "cpu"]
    assert check_parity_main(args) == 0
    assert "logits_max_abs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "metadata", "message"),
    [
        ({"precision": "int8"}, None, "labelled int8 but its graph is fp32"),  # a label cannot buy looser limits
        ({"config": "decision_threshold=0.99"}, None, "records other decision_threshold"),
        ({"config": "image_size=32"}, None, "records other image_size"),
        ({}, {"decision_threshold": "0.99"}, "its decision_threshold contradict its model config"),  # a hand edit
    ],
)
def test_a_candidate_whose_facts_disagree_is_refused(
    trained_checkpoint: Path, cli_graph: Path, tmp_path: Path, capsys, changes: dict, metadata, message: str
) -> None:
    if "config" in changes:
        name, _, value = changes.pop("config").partition("=")
        config = facts_of(cli_graph).config
        changes["config"] = dataclasses.replace(config, **{name: type(getattr(config, name))(value)})
    relabelled_graph = relabelled(cli_graph, tmp_path / "relabelled.onnx", metadata=metadata, **changes)
    argv = ["--checkpoint", str(trained_checkpoint), "--candidate", str(relabelled_graph)]
    assert check_parity_main(argv) == 1
    assert message in capsys.readouterr().err


def test_bad_candidates_and_inputs_get_typed_errors(trained_checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(tmp_path / "no.onnx")]) == 1
    assert "candidate not found" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not protobuf at all")
    assert check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(junk)]) == 1
    assert "not a readable ONNX file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(junk), "--random", "0"])
    assert usage.value.code == 2
    with pytest.raises(ConfigError, match="no image"):
        compare(np.zeros((0, 3)), np.zeros((0, 3)), precision="fp32", threshold=0.5)
