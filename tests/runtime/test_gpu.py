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


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_page_locked_memory_and_copies_on_the_gpu_round_trip() -> None:
    from runtime.cuda_memory import CudaRuntime

    cuda = CudaRuntime()
    stream = cuda.stream()
    host_pointer, pinned = cuda.pinned((4, 8, 8, 3), np.uint8)
    pinned[:] = np.random.default_rng(0).integers(0, 256, pinned.shape, dtype=np.uint8)
    first, second = cuda.malloc(pinned.nbytes), cuda.malloc(pinned.nbytes)
    back = np.zeros_like(pinned)
    try:
        cuda.to_device(first, pinned, stream)
        cuda.on_device(second, first, pinned.nbytes, stream)
        cuda.to_host(back, second, stream)
        cuda.synchronize(stream)
        np.testing.assert_array_equal(back, pinned)
    finally:
        for pointer in (first, second):
            cuda.free(pointer)
        cuda.free_pinned(host_pointer)
        cuda.destroy_stream(stream)


def test_gpu_decoding_passes_its_pixel_gate_and_serves_like_pillow(trained_checkpoint: Path, tmp_path: Path) -> None:
    from runtime.benchmark import synthetic_jpegs
    from runtime.torch_decode import decoder_parity

    files = synthetic_jpegs(tmp_path, 8, size=(160, 120))
    with (
        Predictor(trained_checkpoint, device="cuda", decoder="pillow") as pillow,
        Predictor(trained_checkpoint, device="cuda") as gpu,
    ):
        assert gpu._decoder is not None  # auto: torchvision on CUDA
        assert decoder_parity(files, gpu.facts, gpu.device).passed
        for want, got in zip(pillow.predict(files), gpu.predict(files), strict=True):
            assert np.abs(got.scores - want.scores).max() <= 2e-2


@pytest.mark.parametrize("options", [{"cuda_graphs": True}, {"channels_last": True, "cuda_graphs": True}])
def test_cuda_graphs_and_channels_last_give_the_eager_logits(trained_checkpoint: Path, options: dict) -> None:
    model = load_model(trained_checkpoint)
    images = random_inputs(model.config, 12).images
    with (
        Predictor(trained_checkpoint, device="cuda", batch_size=4) as eager,
        Predictor(trained_checkpoint, device="cuda", batch_size=4, **options) as graphed,
    ):
        for batch in (images[:4], images[4:8], images[8:11]):  # two replays of one graph, then another size
            np.testing.assert_allclose(graphed.logits(batch), eager.logits(batch), atol=1e-4)


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
