"""``runtime.tensorrt_runner`` against the genuine TensorRT module, on plans ``export.build_engine`` wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, InputFileError, TensorRTError
from export.build_engine import build_engine
from runtime import tensorrt_runner
from runtime.tensorrt_runner import TensorRTRunner
from tests.helpers import facts_of

from .mirror import World


class RecordingCuda:
    """Our own CUDA wrapper's calls (``runtime.cuda_memory``), recorded in order; no GPU is here. Streams
    are numbered from 7; a copy back fills the logits with the first value of the last batch copied in
    on the same stream, and only when that stream is synchronized, as the GPU would."""

    def __init__(self) -> None:
        self.allocated: list[int] = []
        self.pinned_arrays: dict[int, np.ndarray] = {}
        self.freed_pinned: list[int] = []
        self.events: list[tuple] = []
        self.copies: list[tuple[str, int, tuple]] = []
        self._streams = 6
        self._last_in: dict[int, float] = {}
        self._queued: dict[int, list[np.ndarray]] = {}

    def malloc(self, nbytes: int) -> int:
        self.allocated.append(nbytes)
        return 0x1000 * len(self.allocated)

    def free(self, pointer: int) -> None:
        pass

    def pinned(self, shape: tuple, dtype: np.dtype) -> tuple[int, np.ndarray]:
        pointer = 0x100000 + len(self.pinned_arrays)
        self.pinned_arrays[pointer] = np.zeros(shape, dtype)
        return pointer, self.pinned_arrays[pointer]

    def free_pinned(self, pointer: int) -> None:
        self.freed_pinned.append(pointer)

    def stream(self) -> int:
        self._streams += 1
        return self._streams

    def destroy_stream(self, stream: int) -> None:
        pass

    def synchronize(self, stream: int) -> None:
        self.events.append(("sync", stream))
        for array in self._queued.pop(stream, []):
            array[:] = self._last_in[stream]

    def to_device(self, pointer: int, array: np.ndarray, stream: int) -> None:
        assert any(np.shares_memory(array, pinned) for pinned in self.pinned_arrays.values()), "copy from pageable"
        self._last_in[stream] = float(array.flat[0])
        self.events.append(("in", stream))
        self.copies.append(("in", pointer, array.shape))

    def on_device(self, pointer: int, source: int, nbytes: int, stream: int) -> None:
        self._last_in[stream] = float(source)
        self.events.append(("on device", stream, source, nbytes))

    def to_host(self, array: np.ndarray, pointer: int, stream: int) -> None:
        assert any(np.shares_memory(array, pinned) for pinned in self.pinned_arrays.values()), "copy to pageable"
        self._queued.setdefault(stream, []).append(array)
        self.events.append(("out", stream))
        self.copies.append(("out", pointer, array.shape))


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> RecordingCuda:
    recording = RecordingCuda()
    monkeypatch.setattr(tensorrt_runner, "CudaRuntime", lambda: recording)
    return recording


def _plan(world: World, graph: Path, folder: Path, **build) -> Path:
    """The plan ``build_engine`` writes from ``graph`` (an FP32 graph, either input format)."""
    world.answers["Builder.build_serialized_network"] = b"serialized engine"
    world.answers["ITimingCache.serialize"] = b""
    plan = build_engine(graph, folder / "model.plan", precision="fp32", **build).plan
    world.calls.clear()
    return plan


def _engine_answers(trt, world: World, fp32_graph: Path, batch: int) -> None:
    facts = facts_of(fp32_graph).serving()
    names = [facts.input_name, facts.output_name]
    modes = {names[0]: trt.TensorIOMode.INPUT, names[1]: trt.TensorIOMode.OUTPUT}
    shapes = {names[0]: (-1, *facts.input_item_shape), names[1]: (-1, len(facts.class_names))}
    dtypes = {names[0]: trt.DataType.UINT8 if facts.input_format == "uint8" else trt.DataType.FLOAT}
    world.answers.update(
        {
            "ICudaEngine.num_io_tensors": 2,
            "ICudaEngine.get_tensor_name": lambda index: names[index],
            "ICudaEngine.get_tensor_dtype": lambda name: dtypes.get(name, trt.DataType.FLOAT),
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
    images = np.full((2, 3, facts.image_size, facts.image_size), 1.5, np.float32)
    with TensorRTRunner(plan) as runner:
        logits = runner.infer({facts.input_name: images})[facts.output_name]
    assert logits.shape == (2, len(facts.class_names)) and np.all(logits == 1.5)
    calls = dict(world.calls)
    assert calls["IExecutionContext.set_input_shape"] == (facts.input_name, images.shape)
    assert calls["IExecutionContext.execute_async_v3"] == (7,)
    addresses = [args for key, args in world.calls if key == "IExecutionContext.set_tensor_address"]
    assert [name for name, _ in addresses] == [facts.input_name, facts.output_name]
    assert [kind for kind, _, _ in cuda.copies] == ["in", "out"]
    assert sorted(cuda.freed_pinned) == sorted(cuda.pinned_arrays)  # page-locked buffers go with the runner


def test_batches_alternate_two_lanes_and_batch_k_is_awaited_only_once_k_plus_1_is_queued(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    facts = facts_of(fp32_graph)
    _engine_answers(trt, world, fp32_graph, batch=2)
    size = facts.image_size
    feeds = [{facts.input_name: np.full((2, 3, size, size), value, np.float32)} for value in (1.0, 2.0, 3.0)]
    with TensorRTRunner(plan) as runner:
        logits = [out[facts.output_name] for out in runner.infer_many(feeds)]
        again = runner.infer(feeds[1])[facts.output_name]
    # Each batch's logits come from its own lane, in order, and are the caller's copies.
    assert [float(batch[0, 0]) for batch in logits] == [1.0, 2.0, 3.0] and float(again[0, 0]) == 2.0
    assert not any(np.shares_memory(batch, pinned) for batch in logits for pinned in cuda.pinned_arrays.values())
    assert cuda.events == [
        ("in", 7), ("out", 7),  # batch 0 on lane 0
        ("in", 8), ("out", 8), ("sync", 7),  # batch 1 queued on lane 1 before batch 0 is awaited
        ("in", 7), ("out", 7), ("sync", 8),  # batch 2 reuses lane 0
        ("sync", 7),
        ("in", 7), ("out", 7), ("sync", 7),  # a single batch: lane 0 alone
    ]  # fmt: skip
    contexts = [key for key, _ in world.calls if key == "ICudaEngine.create_execution_context"]
    assert len(contexts) == 2


def test_a_uint8_plan_takes_pixels_and_refuses_floats(
    trt, world: World, cuda: RecordingCuda, uint8_graph: Path, tmp_path: Path
) -> None:
    graph = uint8_graph
    facts = facts_of(graph)
    size = facts.image_size
    world.answers["Builder.build_serialized_network"] = b"serialized engine"
    world.answers["ITimingCache.serialize"] = b""
    plan = build_engine(graph, tmp_path / "model.plan", precision="fp32").plan
    profile = dict(world.calls)["IOptimizationProfile.set_shape"]
    assert profile == ("images", (1, size, size, 3), (8, size, size, 3), (8, size, size, 3))
    world.calls.clear()
    _engine_answers(trt, world, graph, batch=3)
    with TensorRTRunner(plan) as runner:
        pixels = np.full((3, size, size, 3), 9, np.uint8)
        logits = runner.infer({facts.input_name: pixels})[facts.output_name]
        assert logits.shape == (3, len(facts.class_names)) and np.all(logits == 9.0)
        with pytest.raises(ConfigError, match=r"takes uint8 \[batch, 64, 64, 3\], got float32"):
            runner.infer({facts.input_name: pixels.astype(np.float32)})
    assert [shape for kind, _, shape in cuda.copies if kind == "in"] == [(3, size, size, 3)]


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


class GpuBatch:
    """A batch in GPU memory as torch and CuPy describe one (``__cuda_array_interface__``, version 3)."""

    def __init__(
        self, shape: tuple, typestr: str, pointer: int, strides: tuple | None = None, stream: int | None = None
    ) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "data": (pointer, False),
            "strides": strides,
            "version": 3,
            "stream": stream,
        }


def test_a_batch_in_gpu_memory_is_copied_on_the_gpu_and_awaited_before_the_caller_may_free_it(
    trt, world: World, cuda: RecordingCuda, uint8_graph: Path, tmp_path: Path
) -> None:
    facts = facts_of(uint8_graph)
    size = facts.image_size
    plan = _plan(world, uint8_graph, tmp_path)
    _engine_answers(trt, world, uint8_graph, batch=2)
    with TensorRTRunner(plan) as runner:
        batch = GpuBatch((2, size, size, 3), "|u1", 0x7000, stream=5)
        logits = runner.infer({facts.input_name: batch})[facts.output_name]
        with pytest.raises(ConfigError, match=r"takes C-contiguous GPU memory; pass tensor.contiguous\(\)"):
            runner.infer({facts.input_name: GpuBatch((2, size, size, 3), "|u1", 0x7000, strides=(1, 2, 3, 4))})
        with pytest.raises(ConfigError, match=r"got float32 \(2, 64, 64, 3\)"):
            runner.infer({facts.input_name: GpuBatch((2, size, size, 3), "<f4", 0x7000)})
    assert np.all(logits == float(0x7000))
    # The producer's stream first, then the copy on the GPU, waited for before the caller gets control back.
    assert cuda.events == [
        ("sync", 5), ("on device", 7, 0x7000, 2 * size * size * 3), ("sync", 7), ("out", 7), ("sync", 7)
    ]  # fmt: skip


def test_one_stream_a_thread_and_closing_waits_for_a_paused_one(
    trt, world: World, cuda: RecordingCuda, fp32_graph: Path, tmp_path: Path
) -> None:
    plan = _plan(world, fp32_graph, tmp_path)
    facts = facts_of(fp32_graph)
    _engine_answers(trt, world, fp32_graph, batch=1)
    feeds = [{facts.input_name: np.full((1, 3, facts.image_size, facts.image_size), v, np.float32)} for v in (1, 2, 3)]
    runner = TensorRTRunner(plan).__enter__()
    stream = runner.infer_many(feeds)
    assert float(next(stream)[facts.output_name][0, 0]) == 1.0  # batch 2 is in flight on lane 1
    with pytest.raises(ConfigError, match="this thread already has an infer_many stream open"):
        runner.infer(feeds[0])
    runner.__exit__(None, None, None)
    assert cuda.events[-1] == ("sync", 8)  # the batch in flight was waited for before its memory went
    assert sorted(cuda.freed_pinned) == sorted(cuda.pinned_arrays)
    with pytest.raises(ConfigError, match="the runner was closed while a call was in flight"):
        next(stream)
