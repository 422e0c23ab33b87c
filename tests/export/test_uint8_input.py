"""Graphs with a uint8 input (``--input uint8``): the preprocessing's arithmetic inside the graph gives
the float graph's probabilities on JPEG files, in FP32 and FP16, and the prefix comes off again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from core.errors import ExportError
from core.preprocessing import normalized, resized
from core.scores import sigmoid
from export.to_onnx import export_onnx, main
from export.uint8_input import PREFIX, with_uint8_input, without_uint8_input
from runtime.backends import make_runner
from runtime.benchmark import synthetic_jpegs
from tests.helpers import facts_of


@pytest.fixture(scope="module")
def graphs(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """The trained checkpoint exported in both precisions, each with a float32 and a uint8 input."""
    folder = tmp_path_factory.mktemp("uint8")
    made = {}
    for precision in ("fp32", "fp16"):
        for input_format in ("float32", "uint8"):
            path = folder / f"{precision}-{input_format}.onnx"
            made[precision, input_format] = export_onnx(
                trained_checkpoint, path, precision=precision, input_format=input_format, max_batch=8
            ).path
    return made


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """JPEG files larger than the input and of another aspect, so the resize does real work."""
    return synthetic_jpegs(tmp_path_factory.mktemp("jpegs"), 12, size=(160, 120))


def _probabilities(graph: Path, feed: np.ndarray) -> np.ndarray:
    with make_runner(graph, device="cpu") as runner:
        logits = [runner.infer({"images": feed[i : i + 8]})["logits"] for i in range(0, len(feed), 8)]
    return sigmoid(np.concatenate(logits))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_uint8_graph_gives_the_float_graphs_probabilities_on_jpeg_files(
    graphs: dict, jpegs: list[Path], precision: str
) -> None:
    facts = facts_of(graphs[precision, "uint8"])
    pixels = np.stack([resized(path, facts.image_size, facts.config.preprocessing) for path in jpegs])
    floats = _probabilities(graphs[precision, "float32"], normalized(pixels, facts.config.preprocessing))
    pixel_fed = _probabilities(graphs[precision, "uint8"], pixels)
    assert np.abs(pixel_fed - floats).max() <= 1e-5
    assert facts.input_format == "uint8" and facts.precision == precision
    assert facts.to_dict()["input"] == {"name": "images", "shape": ["batch", 64, 64, 3], "dtype": "uint8"}


def test_the_prefix_is_fp32_in_the_fp16_graph_and_typed_uint8_nhwc(graphs: dict) -> None:
    graph = onnx.load(str(graphs["fp16", "uint8"]))
    (image,) = graph.graph.input
    assert image.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim][1:] == [64, 64, 3]
    prefix = [node for node in graph.graph.node if node.name.startswith(PREFIX)]
    assert [node.op_type for node in prefix] == ["Cast", "Transpose", "Div", "Sub", "Div"]
    assert graph.graph.node[: len(prefix)] == prefix
    # TensorRT takes uint8 only as a network input that is cast: the input's one reader is the Cast.
    assert [node.op_type for node in graph.graph.node if image.name in node.input] == ["Cast"]
    constants = [init for init in graph.graph.initializer if init.name.startswith(PREFIX)]
    assert len(constants) == 3 and all(init.data_type == TensorProto.FLOAT for init in constants)
    # The FP16 part starts with its own cast of the normalised floats, as in the float-input FP16 graph.
    (first,) = [node for node in graph.graph.node if PREFIX + "normalized" in node.input]
    assert first.op_type == "Cast" and first.attribute[0].i == TensorProto.FLOAT16


def test_the_prefix_comes_off_whole_and_cannot_go_on_twice(graphs: dict) -> None:
    float_graph = onnx.load(str(graphs["fp32", "float32"]))
    uint8_graph = onnx.load(str(graphs["fp32", "uint8"]))
    stripped = without_uint8_input(uint8_graph)
    assert stripped.graph.input == float_graph.graph.input
    assert [n.op_type for n in stripped.graph.node] == [n.op_type for n in float_graph.graph.node]
    assert {i.name for i in stripped.graph.initializer} == {i.name for i in float_graph.graph.initializer}
    onnx.checker.check_model(stripped, full_check=True)
    with pytest.raises(ExportError, match="is not float32 \\[batch, 3, S, S\\]; it cannot take a uint8 input"):
        with_uint8_input(uint8_graph, facts_of(graphs["fp32", "uint8"]).config.preprocessing)
    with pytest.raises(ExportError, match="does not start with the uint8 input's preprocessing nodes"):
        without_uint8_input(float_graph)


def test_the_command_line_writes_a_uint8_graph_older_readers_refuse(
    trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "pixels.onnx"
    arguments = ["--checkpoint", str(trained_checkpoint), "--output", str(output), "--max-batch", "2"]
    assert main([*arguments, "--input", "uint8", "--parity-samples", "3"]) == 0
    assert "PASS" in capsys.readouterr().out
    metadata = {prop.key: prop.value for prop in onnx.load(str(output)).metadata_props}
    assert metadata["format_version"] == "3"  # a reader of version 2 refuses it rather than feeding floats
    with pytest.raises(SystemExit, match="2"):
        main([*arguments, "--input", "rgb", "--force"])
    assert "invalid choice: 'rgb' (choose from 'float32', 'uint8')" in capsys.readouterr().err


def test_the_fp16_graph_an_engine_is_built_from_keeps_the_uint8_input_in_fp32(graphs: dict, tmp_path: Path) -> None:
    from export.typed_graph import typed_graph

    half = typed_graph(graphs["fp32", "uint8"], "fp16", tmp_path / "model.plan")
    graph = onnx.load(str(half))
    assert graph.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    prefix = [node.op_type for node in graph.graph.node if node.name.startswith(PREFIX)]
    assert prefix == ["Cast", "Transpose", "Div", "Sub", "Div"]
    assert all(i.data_type == TensorProto.FLOAT for i in graph.graph.initializer if i.name.startswith(PREFIX))
    facts = facts_of(half)
    assert (facts.precision, facts.input_format) == ("fp16", "uint8")
