"""TensorRT runner: a plan checked against its manifest and this machine, then run per thread.

One engine; each calling thread gets up to two lanes, each an execution context (a context holds
per-call state such as the input shape, and runs one batch at a time) with its own stream, device
buffers and page-locked host buffers, sized for the plan's largest batch. A batch is copied into its
lane's page-locked input, then the lane's stream copies it in, runs ``execute_async_v3`` and copies
the logits back, all asynchronously. :meth:`TensorRTRunner.infer_many` alternates the two lanes, so
batch k+1 is copied in while batch k computes, and waits for batch k only once k+1 is queued; the
second lane is made only when a call has a second batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, InferenceError, InputFileError, TensorRTError
from core.facts import ServingFacts

from .cuda_memory import CudaRuntime
from .plan_rules import check_plan
from .tensorrt_env import NATIVE_HINT, created, import_tensorrt

logger = logging.getLogger(__name__)


@dataclass
class _Lane:
    """An execution context with its stream, device buffers (name → address) and page-locked host buffers
    (name → array over them, with their addresses); ``rows``: the batch in flight on it, if any."""

    context: Any
    stream: Any
    buffers: dict[str, int]
    host: dict[str, np.ndarray]
    host_pointers: list[int] = field(default_factory=list)
    rows: int | None = None


class TensorRTRunner:
    """Runs a plan built by ``export.build_engine`` (``with TensorRTRunner("m.plan") as r: r.infer(feed)``).

    Opening refuses a plan whose manifest is missing or stale, or that was built for another GPU or
    TensorRT version (``runtime.plan_rules``). A version-compatible plan is loaded with
    ``engine_host_code_allowed``: TensorRT then runs the lean runtime stored in the plan. Thread-safe:
    each thread gets its own lanes.
    """

    name = "tensorrt"

    def __init__(self, plan: str | os.PathLike, *, device: str = "auto") -> None:
        if device not in ("auto", "cuda"):
            raise ConfigError(f"TensorRT runs on the GPU; device {device!r} is not available to it")
        self.path = Path(plan)
        self.device = "cuda"
        self.facts: ServingFacts | None = None
        self._engine = None
        self._local = threading.local()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()

    def __enter__(self) -> TensorRTRunner:
        manifest = check_plan(self.path)
        self.facts = manifest.facts.serving()
        self._manifest_command = manifest.facts.engine.build_command
        trt = import_tensorrt()
        self._trt = trt
        self._cuda = CudaRuntime()
        self._trt_logger = trt.Logger(trt.Logger.VERBOSE if logger.isEnabledFor(logging.DEBUG) else trt.Logger.WARNING)
        self._runtime = created("a runtime", lambda: trt.Runtime(self._trt_logger))
        if manifest.facts.engine.version_compatible:
            # The plan embeds the lean runtime it was built with, and TensorRT runs that code only
            # when allowed to: load version-compatible plans only from a source you trust as you
            # would trust an executable. The manifest's sha256 guards against accidents (a replaced
            # or truncated plan), not tampering: it lies beside the plan, as writable as it.
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise InputFileError(
                f"{self.path}: TensorRT could not deserialize it (its log above says why); {NATIVE_HINT}, or rebuild "
                f"it here: {manifest.facts.engine.build_command}"
            )
        self._check_tensors()
        return self

    def _check_tensors(self) -> None:
        """The engine's own tensors are what the manifest says: one input in the facts' input format
        (float32 [batch, 3, S, S] or uint8 [batch, S, S, 3]) and one float32 output [batch, N] of those
        names (batch dynamic: -1)."""
        engine, facts = self._engine, self.facts
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        wanted = {facts.input_name, facts.output_name}
        if names != wanted:
            raise InputFileError(f"{self.path}: tensors {sorted(names)}, its manifest names {sorted(wanted)}")
        for name, mode, dtype, dims in (
            (facts.input_name, self._trt.TensorIOMode.INPUT, facts.input_dtype, facts.input_item_shape),
            (facts.output_name, self._trt.TensorIOMode.OUTPUT, np.dtype(np.float32), (len(facts.class_names),)),
        ):
            shape = tuple(engine.get_tensor_shape(name))
            if (
                engine.get_tensor_mode(name) != mode
                or shape[:1] != (-1,)
                or shape[1:] != dims
                or self._dtype(name) != dtype
            ):
                raise InputFileError(
                    f"{self.path}: tensor {name!r} is {self._dtype(name)} {list(shape)}; its manifest says a {dtype} "
                    f"{mode.name.lower()} [batch, {', '.join(map(str, dims))}] (rebuild it: "
                    f"{self._manifest_command})"
                )

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            for lane in self._lanes:
                self._settle(lane)  # a call left in flight (a paused infer_many) finishes before its memory goes
                for pointer in lane.buffers.values():
                    self._cuda.free(pointer)
                for pointer in lane.host_pointers:
                    self._cuda.free_pinned(pointer)
                self._cuda.destroy_stream(lane.stream)
                del lane.context  # contexts go before their engine
            self._lanes.clear()
            self._engine = None
            self._local = threading.local()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the plan on ``feed``: input name → a batch in the plan's input format, B within its profile, as
        a host array (floats are cast to float32 for a float32 input), or in C-contiguous GPU memory (an object
        with ``__cuda_array_interface__``, e.g. a torch CUDA tensor; the producer's stream, if it names one, is
        waited for)."""
        return next(self.infer_many([feed]))

    def infer_many(self, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The outputs of ``feeds``, in order, two batches in flight: batch k+1 is copied in while batch k
        runs. Each output is the caller's own array. Feeds are read one ahead of the outputs yielded. A
        thread runs one such stream at a time (its lanes are the thread's), to the end or until closed.

        Raises:
            ConfigError: The runner is closed, or this thread already has a stream open.
        """
        if self._engine is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        if getattr(self._local, "streaming", False):
            raise ConfigError(
                "this thread already has an infer_many stream open on this runner; finish or close it first "
                "(one stream a thread: the thread's lanes hold its batches)"
            )
        self._local.streaming = True
        in_flight: deque[_Lane] = deque()
        try:
            for number, feed in enumerate(feeds):
                lane = self._lane(number % 2)
                self._enqueue(lane, feed)
                in_flight.append(lane)
                if len(in_flight) == 2:
                    yield self._finish(in_flight.popleft())
            while in_flight:
                yield self._finish(in_flight.popleft())
        finally:  # a caller that stopped early, or a failed feed: nothing stays queued on the lanes
            for lane in in_flight:
                self._settle(lane)
            self._local.streaming = False

    def _enqueue(self, lane: _Lane, feed: dict[str, np.ndarray]) -> None:
        name, out = self.facts.input_name, self.facts.output_name
        images = feed[name]
        want, item = self.facts.input_dtype, self.facts.input_item_shape
        if isinstance(images, np.ndarray) and want == np.float32 and images.dtype.kind == "f":
            images = images.astype(np.float32, copy=False)
        on_gpu = getattr(images, "__cuda_array_interface__", None)
        if on_gpu is not None and on_gpu.get("strides") is not None:  # None: C-contiguous
            raise ConfigError(f"{self.path.name} takes C-contiguous GPU memory; pass tensor.contiguous()")
        shape, dtype = _layout(images, on_gpu)
        if dtype != want or shape[1:] != item:
            found = type(images).__name__ if dtype is None else f"{dtype} {shape}"
            raise ConfigError(f"{self.path.name} takes {want} [batch, {', '.join(map(str, item))}], got {found}")
        rows = shape[0]
        if not 1 <= rows <= self.facts.max_batch:
            raise ConfigError(f"batch of {rows}; {self.path.name} takes 1 to {self.facts.max_batch} images")
        self._settle(lane)
        if not lane.context.set_input_shape(name, shape):
            raise ConfigError(f"{self.path.name} refuses input shape {shape}")
        lane.rows = rows  # from the first queued copy on, the lane is waited for before it is reused or freed
        if on_gpu is not None:
            if on_gpu.get("stream"):  # the producer's stream (CUDA Array Interface v3): its writes come first
                self._cuda.synchronize(on_gpu["stream"])
            # The caller may free its memory once this returns: wait for the copy (the lane was idle, so
            # only the copy is waited for).
            nbytes = rows * int(np.prod(item)) * want.itemsize
            self._cuda.on_device(lane.buffers[name], on_gpu["data"][0], nbytes, lane.stream)
            self._cuda.synchronize(lane.stream)
        else:
            staged = lane.host[name][:rows]
            np.copyto(staged, images)  # into page-locked memory: the copy to the GPU is then truly asynchronous
            self._cuda.to_device(lane.buffers[name], staged, lane.stream)
        if not lane.context.execute_async_v3(int(lane.stream)):
            self._settle(lane)
            raise InferenceError(f"{self.path.name}: TensorRT failed to run the batch (see its log above)")
        self._cuda.to_host(lane.host[out][:rows], lane.buffers[out], lane.stream)

    def _finish(self, lane: _Lane) -> dict[str, np.ndarray]:
        if self._engine is None:
            raise ConfigError("the runner was closed while a call was in flight; close it after its calls")
        rows = lane.rows
        self._settle(lane)
        out = self.facts.output_name
        return {out: lane.host[out][:rows].astype(np.float32)}  # a copy: the lane's buffer is reused

    def _settle(self, lane: _Lane) -> None:
        """Waits for the batch in flight on ``lane``, if any."""
        if lane.rows is not None:
            lane.rows = None
            self._cuda.synchronize(lane.stream)

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _lane(self, number: int) -> _Lane:
        """This thread's lane ``number`` (0 or 1), made on first use."""
        if self._engine is None:
            raise ConfigError("the runner was closed while a call was in flight; close it after its calls")
        lanes = getattr(self._local, "lanes", None)
        if lanes is None:
            lanes = self._local.lanes = []
        while len(lanes) <= number:
            lanes.append(self._new_lane())
            logger.debug("lane %d for thread %s", len(lanes), threading.current_thread().name)
        return lanes[number]

    def _new_lane(self) -> _Lane:
        with self._lock:
            context = self._engine.create_execution_context()
            if context is None:
                raise TensorRTError(
                    f"TensorRT could not create an execution context for {self.path.name}, usually for want of GPU "
                    f"memory for its activations at batch {self.facts.max_batch}: free GPU memory (fewer threads "
                    f"or processes serving it), or rebuild the plan with a smaller --max-batch"
                )
            batch = self.facts.max_batch
            shapes = {
                self.facts.input_name: (batch, *self.facts.input_item_shape),
                self.facts.output_name: (batch, len(self.facts.class_names)),
            }
            lane = _Lane(context, self._cuda.stream(), {}, {})
            self._lanes.append(lane)  # released by __exit__ from here on, whatever fails below
            for name, shape in shapes.items():
                dtype = self._dtype(name)
                lane.buffers[name] = self._cuda.malloc(int(np.prod(shape)) * dtype.itemsize)
                context.set_tensor_address(name, lane.buffers[name])
                pointer, lane.host[name] = self._cuda.pinned(shape, dtype)
                lane.host_pointers.append(pointer)
            return lane


def _layout(images: object, on_gpu: dict | None) -> tuple[tuple[int, ...], np.dtype | None]:
    """Shape and dtype of a host array or of GPU memory (``__cuda_array_interface__``); ((), None) for
    anything else."""
    if isinstance(images, np.ndarray):
        return images.shape, images.dtype
    if on_gpu is None:
        return (), None
    return tuple(on_gpu["shape"]), np.dtype(on_gpu["typestr"])
