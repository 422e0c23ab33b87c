"""``runtime.tensorrt_runner`` against the genuine TensorRT module, on plans ``export.build_engine`` wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import InputFileError, TensorRTError
from export.build_engine import build_engine
from runtime import tensorrt_runner
from runtime.tensorrt_runner import TensorRTRunner
from tests.helpers import facts_of

from .mirror import World


class RecordingCuda:
    """Our own CUDA wrapper's four calls (``runtime.cuda_memory``), recorded; no GPU is here."""

    def __init__(self) -> None:
        self.allocated: list[int] = []
        self.copies: list[tuple[str, int, tuple]] = []

    def malloc(self, nbytes: int) -> int:
        self.allocated.append(nbytes)
        return 0x1000 * len(self.allocated)

    def free(self, pointer: int) -> None:
        pass

    def stream(self) -> int:
        return 7

    def destroy_stream(self, stream: int) -> None:
        pass

    def synchronize(self, stream: int) -> None:
        pass

    def to_device(self, pointer: int, array: np.ndarray, stream: int) -> None:
        self.copies.append(("in", pointer, array.shape))

    def to_host(self, array: np.ndarray, pointer: int, stream: int) -> None:
        array[:] = 1.5
        self.copies.append(("out", pointer, array.shape))


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> RecordingCuda:
    recording = RecordingCuda()
    monkeypatch.setattr(tensorrt_runner, "CudaRuntime", lambda: recording)
    return recording


def _plan(world: World, fp32_graph: Path, folder: Path, **build) -> Path:
    world.answers["Builder.build_serialized_network"] = b"serialized engine"
    world.answers["ITimingCache.serialize"] = b""
    plan = build_engine(fp32_graph, folder / "model.plan", precision="fp32", **build).plan
    world.calls.clear()
    return plan


def _engine_answers(trt, world: World, fp32_graph: Path, batch: int) -> None:
    facts = facts_of(fp32_graph)
    names = [facts.input_name, facts.output_name]
    modes = {names[0]: trt.TensorIOMode.INPUT, names[1]: trt.TensorIOMode.OUTPUT}
    size = facts.image_size
    shapes = {names[0]: (-1, 3, size, size), names[1]: (-1, len(facts.class_names))}
    world.answers.update(
        {
            "ICudaEngine.num_io_tensors": 2,
            "ICudaEngine.get_tensor_name": lambda index: names[index],
            "ICudaEngine.get_tensor_dtype": lambda name: trt.DataType.FLOAT,
            "ICudaEngine.get_tensor_mode": lambda name: modes[name],
            "ICudaEngine.get_tensor_shape": lambda name: trt.Dims(shapes[name]),
            "IExecutionContext.get_tensor_shape": lambda name: trt.Dims((batch, len(facts.class_names))),
        }
    )


def test_a_failing_native_runtime_is_one_typed_error(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    monkeypatch.setattr(tensorrt_runner, "import_tensorrt", lambda: trt)  # the genuine factory, NULL from the stub
    with (
        pytest.raises(TensorRTError, match="could not create a runtime; check that the NVIDIA driver"),
        TensorRTRunner(plan),
    ):
        pass


@pytest.mark.parametrize("version_compatible", [False, True])
def test_host_code_is_allowed_exactly_for_version_compatible_plans(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path, version_compatible: bool
) -> None:
    plan = _plan(world, fp32_graph, tmp_path, version_compatible=version_compatible)
    _engine_answers(trt, world, fp32_graph, batch=2)
    with TensorRTRunner(plan):
        keys = [key for key, _ in world.calls]
    allowed = [args for key, args in world.calls if key == "Runtime.engine_host_code_allowed="]
    assert allowed == ([(True,)] if version_compatible else [])
    if version_compatible:  # set before the plan is deserialized, or TensorRT refuses the plan
        assert keys.index("Runtime.engine_host_code_allowed=") < keys.index("Runtime.deserialize_cuda_engine")
    assert dict(world.calls)["Runtime.deserialize_cuda_engine"] == (b"serialized engine",)


def test_every_runner_call_exists_with_the_signature_we_use(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    facts = facts_of(fp32_graph)
    _engine_answers(trt, world, fp32_graph, batch=2)
    images = np.zeros((2, 3, facts.image_size, facts.image_size), np.float32)
    with TensorRTRunner(plan) as runner:
        logits = runner.infer({facts.input_name: images})[facts.output_name]
    assert logits.shape == (2, len(facts.class_names)) and np.all(logits == 1.5)
    calls = dict(world.calls)
    assert calls["IExecutionContext.set_input_shape"] == (facts.input_name, images.shape)
    assert calls["IExecutionContext.execute_async_v3"] == (7,)
    addresses = [args for key, args in world.calls if key == "IExecutionContext.set_tensor_address"]
    assert [name for name, _ in addresses] == [facts.input_name, facts.output_name]
    assert [kind for kind, _, _ in cuda.copies] == ["in", "out"]


def test_a_plan_tensorrt_cannot_deserialize_and_a_missing_context_are_typed(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    world.answers["Runtime.deserialize_cuda_engine"] = None
    with (
        pytest.raises(InputFileError, match="could not deserialize it.*rebuild it here: python -m export.build_engine"),
        TensorRTRunner(plan),
    ):
        pass
    del world.answers["Runtime.deserialize_cuda_engine"]
    _engine_answers(trt, world, fp32_graph, batch=1)
    world.answers["ICudaEngine.create_execution_context"] = None
    facts = facts_of(fp32_graph)
    images = np.zeros((1, 3, facts.image_size, facts.image_size), np.float32)
    with TensorRTRunner(plan) as runner, pytest.raises(TensorRTError, match="could not create an execution context"):
        runner.infer({facts.input_name: images})


def test_an_engine_whose_tensors_are_not_its_manifests_is_refused(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    _engine_answers(trt, world, fp32_graph, batch=1)
    facts = facts_of(fp32_graph)
    assert facts.image_size != 96
    shapes = {facts.input_name: (-1, 3, 96, 96), facts.output_name: (-1, len(facts.class_names))}
    world.answers["ICudaEngine.get_tensor_shape"] = lambda name: trt.Dims(shapes[name])
    refused = r"tensor 'images' is float32 \[-1, 3, 96, 96\]; its manifest says a float32 input"
    with pytest.raises(InputFileError, match=refused), TensorRTRunner(plan):
        pass
