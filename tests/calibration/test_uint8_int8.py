"""INT8 graphs of a graph with a uint8 input: quantized as the float graph is, the preprocessing nodes put
back in FP32, for both targets; gated on pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from calibration.quantize import quantize_int8
from core.preprocessing import normalized, resized
from core.scores import sigmoid
from export.qdq_checks import check_int8_file
from export.uint8_input import PREFIX
from runtime.backends import make_runner
from tests.helpers import FIXTURE_INT8_LIMITS, facts_of


def _probabilities(graph: Path, feed: np.ndarray) -> np.ndarray:
    with make_runner(graph, device="cpu") as runner:
        return sigmoid(
            np.concatenate([runner.infer({"images": feed[i : i + 8]})["logits"] for i in range(0, len(feed), 8)])
        )


@pytest.mark.parametrize("target", ["tensorrt", "cpu"], ids=["engine-target", "cpu-target"])
def test_the_int8_graph_of_a_uint8_graph_is_the_float_ones_with_the_preprocessing_in_front(
    target: str, uint8_graph: Path, fp32_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    options = {"annotations": demo_data / "instances_train.json", "tolerance_overrides": FIXTURE_INT8_LIMITS}
    options |= {"target": target, "gate_images": demo_data / "val"}
    pixels = quantize_int8(uint8_graph, tmp_path / "pixels.int8.onnx", demo_data / "train", **options)
    floats = quantize_int8(fp32_graph, tmp_path / "floats.int8.onnx", demo_data / "train", **options)
    facts = facts_of(pixels.path)
    assert (facts.precision, facts.input_format, facts.calibration.target) == ("int8", "uint8", target)
    graph = onnx.load(str(pixels.path))
    assert graph.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    prefix = [node for node in graph.graph.node if node.name.startswith(PREFIX)]
    assert [node.op_type for node in prefix] == ["Cast", "Transpose", "Div", "Sub", "Div"]
    # The same ranges (the float part is what was calibrated), so the same probabilities on the same images.
    assert pixels.cache.read_text() != "" and pixels.gate.report.passed
    config = facts.config
    images = sorted((demo_data / "val").glob("*.jpg"))
    resized_pixels = np.stack([resized(path, config.image_size, config.preprocessing) for path in images])
    from_pixels = _probabilities(pixels.path, resized_pixels)
    from_floats = _probabilities(floats.path, normalized(resized_pixels, config.preprocessing))
    assert np.abs(from_pixels - from_floats).max() <= 1e-5
    if target == "tensorrt":
        check_int8_file(pixels.path, "remake it")  # TensorRT's Q/DQ rules hold behind the prefix
