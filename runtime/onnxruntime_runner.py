"""ONNX Runtime runner: a graph made by ``export``, in the session ``onnxruntime_session`` builds."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputFileError
from core.facts import ArtifactFacts, ServingFacts

from .onnxruntime_session import load_session, onnxruntime_errors

logger = logging.getLogger(__name__)


class OnnxRuntimeRunner:
    """Runs an ONNX graph made by ``export`` (``with OnnxRuntimeRunner(path) as r: r.infer(feed)``).

    ``device="auto"`` takes CUDA when this ONNX Runtime has it. ``InferenceSession.run`` is
    thread-safe, so one runner serves many threads.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        self.device = self.device_asked = device
        self.threads = threads
        self.session = None
        self.facts: ServingFacts | None = None
        self._outputs: list[str] = []

    def __enter__(self) -> OnnxRuntimeRunner:
        self.session = load_session(self.path, device=self.device_asked, threads=self.threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.facts = ArtifactFacts.from_metadata(meta.items(), str(self.path)).serving()
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.facts.input_name]:
            raise InputFileError(f"{self.path}: inputs {names}, its metadata names {self.facts.input_name!r}")
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        logger.debug("%s on %s", self.path.name, ", ".join(self.providers))
        return self

    def __exit__(self, *exc_info) -> None:
        self.session = None

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, in priority order."""
        return list(self.session.get_providers()) if self.session else []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the graph on ``feed`` (input name → array); returns output name → array.

        Raises:
            InferenceError: ONNX Runtime failed to run it.
        """
        if self.session is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        with onnxruntime_errors(f"{self.path.name}: ONNX Runtime failed to run the batch"):
            return dict(zip(self._outputs, self.session.run(self._outputs, feed), strict=True))
