"""TensorRT runner: a plan checked against its manifest and this machine, then run per thread.

One engine, one execution context per calling thread (a context holds per-call state such as the
input shape), each with its own stream and device buffers sized for the plan's largest batch.
Each call sets the input shape, copies in, runs ``execute_async_v3``, copies out and waits.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
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
class _Slot:
    """One thread's execution context, stream and device buffers (name → address)."""

    context: Any
    stream: Any
    buffers: dict[str, int]


class TensorRTRunner:
    """Runs a plan built by ``export.build_engine`` (``with TensorRTRunner("m.plan") as r: r.infer(feed)``).

    Opening refuses a plan whose manifest is missing or stale, or that was built for another GPU or
    TensorRT version (``runtime.plan_rules``). A version-compatible plan is loaded with
    ``engine_host_code_allowed``: TensorRT then runs the lean runtime stored in the plan. Thread-safe:
    each thread gets its own context.
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
        self._slots: list[_Slot] = []
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
        """The engine's own tensors are what the manifest says: one float32 input [batch, 3, S, S] and
        one float32 output [batch, N] of those names (batch dynamic: -1)."""
        engine, facts = self._engine, self.facts
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        wanted = {facts.input_name, facts.output_name}
        if names != wanted:
            raise InputFileError(f"{self.path}: tensors {sorted(names)}, its manifest names {sorted(wanted)}")
        size = facts.image_size
        for name, mode, dims in (
            (facts.input_name, self._trt.TensorIOMode.INPUT, (3, size, size)),
            (facts.output_name, self._trt.TensorIOMode.OUTPUT, (len(facts.class_names),)),
        ):
            shape = tuple(engine.get_tensor_shape(name))
            if (
                engine.get_tensor_mode(name) != mode
                or shape[:1] != (-1,)
                or shape[1:] != dims
                or self._dtype(name) != np.float32
            ):
                raise InputFileError(
                    f"{self.path}: tensor {name!r} is {self._dtype(name)} {list(shape)}; its manifest says a float32 "
                    f"{mode.name.lower()} [batch, {', '.join(map(str, dims))}] (rebuild it: "
                    f"{self._manifest_command})"
                )

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            for slot in self._slots:
                for pointer in slot.buffers.values():
                    self._cuda.free(pointer)
                self._cuda.destroy_stream(slot.stream)
                del slot.context  # contexts go before their engine
            self._slots.clear()
            self._engine = None
            self._local = threading.local()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the plan on ``feed`` (input name → [B, 3, S, S], B within the plan's profile)."""
        if self._engine is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        slot = self._slot()
        name, out = self.facts.input_name, self.facts.output_name
        images = np.ascontiguousarray(feed[name], dtype=self._dtype(name))
        if not 1 <= len(images) <= self.facts.max_batch:
            raise ConfigError(f"batch of {len(images)}; {self.path.name} takes 1 to {self.facts.max_batch} images")
        if not slot.context.set_input_shape(name, images.shape):
            raise ConfigError(f"{self.path.name} refuses input shape {images.shape}")
        logits = np.empty(tuple(slot.context.get_tensor_shape(out)), dtype=self._dtype(out))
        self._cuda.to_device(slot.buffers[name], images, slot.stream)
        if not slot.context.execute_async_v3(int(slot.stream)):
            raise InferenceError(f"{self.path.name}: TensorRT failed to run the batch (see its log above)")
        self._cuda.to_host(logits, slot.buffers[out], slot.stream)
        self._cuda.synchronize(slot.stream)
        return {out: logits.astype(np.float32, copy=False)}

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))

    def _slot(self) -> _Slot:
        slot = getattr(self._local, "slot", None)
        if slot is not None:
            return slot
        with self._lock:
            context = self._engine.create_execution_context()
            if context is None:
                raise TensorRTError(
                    f"TensorRT could not create an execution context for {self.path.name}, usually for want of GPU "
                    f"memory for its activations at batch {self.facts.max_batch}: free GPU memory (fewer threads "
                    f"or processes serving it), or rebuild the plan with a smaller --max-batch"
                )
            size, batch = self.facts.image_size, self.facts.max_batch
            shapes = {
                self.facts.input_name: (batch, 3, size, size),
                self.facts.output_name: (batch, len(self.facts.class_names)),
            }
            buffers = {}
            for name, shape in shapes.items():
                buffers[name] = self._cuda.malloc(int(np.prod(shape)) * self._dtype(name).itemsize)
                context.set_tensor_address(name, buffers[name])
            slot = _Slot(context, self._cuda.stream(), buffers)
            self._slots.append(slot)
        self._local.slot = slot
        logger.debug("execution context %d for thread %s", len(self._slots), threading.current_thread().name)
        return slot
