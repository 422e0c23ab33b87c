"""Which runner serves an artifact: TensorRT for ``.plan``, ONNX Runtime for ``.onnx``, torch for ``.pt``."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from core.errors import ConfigError

from .artifact import ServingFacts, backend_for


class Runner(Protocol):
    """A context manager that runs one artifact; ``facts`` and the resolved ``device`` are set once
    it is entered."""

    name: str
    device: str
    facts: ServingFacts | None

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc_info) -> None: ...

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def make_runner(artifact: str | os.PathLike, backend: str = "auto", *, device: str = "auto", fp16: bool = False):
    """The (unopened) runner of ``artifact``.

    Args:
        artifact: A ``.plan``, ``.onnx`` or ``.pt`` file.
        backend: ``auto`` (from the suffix), ``tensorrt``, ``onnxruntime`` or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` for torch).
        fp16: FP16 autocast; torch on CUDA only (other artifacts carry their precision in the file).

    Raises:
        ConfigError: The backend cannot run the artifact, or ``fp16`` is asked of a non-torch backend.
    """
    chosen = backend_for(str(artifact), backend)
    if fp16 and chosen != "torch":
        raise ConfigError(
            f"fp16 autocast is a torch-backend option; a {chosen} artifact's precision is in the file "
            "(export the FP16 graph or build the FP16 engine instead)"
        )
    if chosen == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(artifact, device=device)
    if chosen == "onnxruntime":
        from .onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, device=device)
    from .torch_runner import TorchRunner

    return TorchRunner(artifact, device=device, fp16=fp16)
