"""Which runner serves an artifact: TensorRT for ``.plan``, ONNX Runtime for ``.onnx``, torch for ``.pt``.

A runner is a context manager (:class:`Runner`); its ``facts`` and resolved ``device`` are set
once it is entered, from the artifact's own facts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import ConfigError
from core.facts import ServingFacts

BACKEND_BY_SUFFIX = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".pt": "torch"}
BACKENDS = ("tensorrt", "onnxruntime", "torch")


class Runner(Protocol):
    """What :func:`make_runner` returns: enter it, then ``infer`` feeds of batches in the artifact's input
    format (``facts.input_format``)."""

    name: str
    device: str
    facts: ServingFacts | None

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc_info) -> None: ...

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def infer_many(self, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """The outputs of ``feeds`` in order; a runner may overlap one batch's copies with another's compute."""
        ...


def one_by_one(infer, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """``infer_many`` of a runner whose ``infer`` returns only when its batch is done: each feed in turn."""
    for feed in feeds:
        yield infer(feed)


def backend_for(artifact: str | os.PathLike, backend: str) -> str:
    """The backend that runs ``artifact``: its suffix decides under ``"auto"``; a forced one must fit.

    Raises:
        ConfigError: The backend is unknown, or cannot run this kind of file.
    """
    suffix = Path(artifact).suffix.lower()
    natural = BACKEND_BY_SUFFIX.get(suffix)
    if backend == "auto":
        if natural is None:
            raise ConfigError(
                f"{artifact}: cannot tell its backend from the suffix {suffix!r}; serve a .plan (TensorRT), "
                ".onnx (ONNX Runtime) or .pt (torch), or name the backend"
            )
        return natural
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    if natural is not None and natural != backend:
        raise ConfigError(
            f"the {backend} backend cannot run {artifact} (a {suffix} file runs on {natural}); "
            "export the artifact that backend runs, or use backend='auto'"
        )
    return backend


def make_runner(
    artifact: str | os.PathLike,
    backend: str = "auto",
    *,
    device: str = "auto",
    fp16: bool = False,
    channels_last: bool = False,
    cuda_graphs: bool = False,
) -> Runner:
    """The (unopened) runner of ``artifact``.

    Args:
        artifact: A ``.plan``, ``.onnx`` or ``.pt`` file.
        backend: ``auto`` (from the suffix), ``tensorrt``, ``onnxruntime`` or ``torch``.
        device: ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` for torch).
        fp16: FP16 autocast; torch on CUDA only (other artifacts carry their precision in the file).
        channels_last, cuda_graphs: Torch-backend options (``runtime.torch_runner``).

    Raises:
        ConfigError: The backend cannot run the artifact, or a torch option is asked of another backend.
    """
    chosen = backend_for(artifact, backend)
    if fp16 and chosen != "torch":
        raise ConfigError(
            f"fp16 autocast is a torch-backend option; a {chosen} artifact's precision is in the file "
            "(export the FP16 graph or build the FP16 engine instead)"
        )
    if (channels_last or cuda_graphs) and chosen != "torch":
        raise ConfigError(
            f"channels_last and cuda_graphs are torch-backend options; a {chosen} artifact's engine chooses its own "
            "layouts and launches"
        )
    if chosen == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        return TensorRTRunner(artifact, device=device)
    if chosen == "onnxruntime":
        from .onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, device=device)
    from .torch_runner import TorchRunner

    return TorchRunner(artifact, device=device, fp16=fp16, channels_last=channels_last, cuda_graphs=cuda_graphs)
