"""ONNX Runtime runner: a session tuned for serving, on CUDA when this ONNX Runtime has it, else CPU."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputFileError, MissingDependencyError

from .artifact import ServingFacts

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def import_onnxruntime():
    """``onnxruntime``, or a :class:`MissingDependencyError` with the install hint."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            f"ONNX Runtime cannot be imported ({exc}); pip install 'onnxruntime>=1.20' "
            "(or onnxruntime-gpu for the CUDA provider)"
        ) from exc
    return onnxruntime


def providers_for(device: str, available: list[str]) -> list:
    """Execution providers for ``device``: ``auto`` takes CUDA when this ONNX Runtime offers it.

    Raises:
        ConfigError: ``cuda`` is asked for but this ONNX Runtime has no CUDA provider.
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown ONNX Runtime device {device!r}; choose one of {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ConfigError(
            "device 'cuda' needs ONNX Runtime's CUDA provider, which this installation lacks "
            f"(it offers {', '.join(available)}); install onnxruntime-gpu, or use device 'cpu'"
        )
    if device != "cpu" and has_cuda:
        # TF32 off: an FP32 graph must give FP32 numbers (parity gates run through this runner).
        return [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeRunner:
    """Runs an ONNX graph made by ``export`` (``with OnnxRuntimeRunner(path) as r: r.infer(feed)``).

    Session options: every graph optimisation, sequential execution, intra-op threads = the cores
    this process may use, and no spin-waiting between calls: idle ONNX Runtime threads that spin
    take the cores from the decode threads and from any other runner in the process.
    ``InferenceSession.run`` is thread-safe, so one runner serves many threads.
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
        ort = import_onnxruntime()
        if not self.path.is_file():
            raise InputFileError(f"ONNX graph not found: {self.path}")
        providers = providers_for(self.device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads or len(os.sched_getaffinity(0))
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime's load errors derive from Exception only
            raise InputFileError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.facts = ServingFacts.from_metadata_map(meta, str(self.path))
        names = [i.name for i in self.session.get_inputs()]
        if names != [self.facts.input_name]:
            raise InputFileError(f"{self.path}: inputs {names}, its metadata names {self.facts.input_name!r}")
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        if self.device == "cpu" and len(providers) > 1 and self.device_asked == "cuda":
            raise MissingDependencyError(
                "ONNX Runtime lists its CUDA provider but could not load it (CUDA or cuDNN libraries missing); "
                "install the CUDA libraries onnxruntime-gpu needs, or use device 'cpu'"
            )
        logger.debug("%s on %s", self.path.name, ", ".join(self.providers))
        return self

    def __exit__(self, *exc_info) -> None:
        self.session = None

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, in priority order."""
        return list(self.session.get_providers()) if self.session else []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the graph on ``feed`` (input name → array); returns output name → array."""
        if self.session is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        return dict(zip(self._outputs, self.session.run(self._outputs, feed), strict=True))
