"""GPU checks of the runtime: CUDA memory through cuda-python, the torch runner on CUDA (FP32 and FP16)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from export.parity import FP16, FP32, compare
from export.parity_inputs import random_inputs
from models.checkpoint import load_model
from runtime import Predictor

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_cuda_memory_round_trip() -> None:
    from runtime.cuda_memory import CudaRuntime

    cuda = CudaRuntime()
    stream = cuda.stream()
    data = np.random.default_rng(0).standard_normal((4, 3, 8, 8), dtype=np.float32)
    back = np.zeros_like(data)
    pointer = cuda.malloc(data.nbytes)
    try:
        cuda.to_device(pointer, data, stream)
        cuda.to_host(back, pointer, stream)
        cuda.synchronize(stream)
    finally:
        cuda.free(pointer)
        cuda.destroy_stream(stream)
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize(("fp16", "limits"), [(False, FP32), (True, FP16)])
def test_torch_runner_on_cuda_matches_eager_cpu(trained_checkpoint: Path, fp16: bool, limits) -> None:
    model = load_model(trained_checkpoint)
    images = random_inputs(model.config, 16).images
    with (
        Predictor(trained_checkpoint, device="cpu") as cpu,
        Predictor(trained_checkpoint, device="cuda", fp16=fp16) as gpu,
    ):
        assert gpu.device.startswith("cuda")
        reference, candidate = cpu.logits(images), gpu.logits(images)
    report = compare(reference, candidate, precision="fp16" if fp16 else "fp32", threshold=0.5, limits=limits)
    assert report.passed, report.failures
