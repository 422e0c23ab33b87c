"""The TensorRT runner on a real plan (GPU + TensorRT only): it serves what ONNX Runtime serves."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from export.build_engine import build_engine
from export.parity import FP16, FP32, compare
from export.parity_inputs import random_inputs
from models.checkpoint import load_model
from runtime import Predictor

pytestmark = pytest.mark.tensorrt


@pytest.mark.parametrize(("precision", "limits"), [("fp32", FP32), ("fp16", FP16)])
def test_a_plan_serves_what_the_graph_serves(
    trained_checkpoint: Path, fp32_graph: Path, tmp_path: Path, precision: str, limits
) -> None:
    plan = build_engine(fp32_graph, tmp_path / "model.plan", precision=precision).plan
    images = random_inputs(load_model(trained_checkpoint).config, 20).images
    with Predictor(fp32_graph, device="cpu") as graph, Predictor(plan) as engine:
        assert engine.backend == "tensorrt" and engine.batch_size == 8
        reference, logits = graph.logits(images[:8]), engine.logits(images[:8])
        single = np.concatenate([engine.logits(images[i : i + 1]) for i in range(8)])
        with ThreadPoolExecutor(4) as pool:  # one execution context per thread
            threaded = list(pool.map(lambda i: engine.logits(images[i : i + 8]), range(0, 12, 4)))
    assert compare(reference, logits, precision=precision, threshold=0.5, limits=limits).passed
    np.testing.assert_allclose(single, logits, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(threaded[0], logits, rtol=1e-5, atol=1e-5)
