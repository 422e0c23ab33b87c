"""The one ONNX Runtime session builder: the runner that serves a graph, the parity gates that admit
it, and the calibration gate all open their sessions here, so "passed its gate" means "what is
served passed".

Session options: every graph optimisation, sequential execution, intra-op threads = the cores this
process may use, and no spin-waiting between calls (idle ONNX Runtime threads that spin take the
cores from the decode threads and from any other runtime in the process). On CUDA, TF32 is off: an
FP32 graph must give FP32 numbers.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from types import ModuleType

from core.errors import ConfigError, InferenceError, InputFileError, MissingDependencyError

DEVICES = ("auto", "cpu", "cuda")
_CUDA, _CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def import_onnxruntime() -> ModuleType:
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
        ConfigError: An unknown device, or ``cuda`` where this ONNX Runtime has no CUDA provider.
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown ONNX Runtime device {device!r}; choose one of {', '.join(DEVICES)}")
    has_cuda = _CUDA in available
    if device == "cuda" and not has_cuda:
        raise ConfigError(
            f"device 'cuda' needs ONNX Runtime's CUDA provider, which this installation lacks "
            f"(it offers {', '.join(available)}); install onnxruntime-gpu, or use device 'cpu'"
        )
    if device != "cpu" and has_cuda:
        return [(_CUDA, {"use_tf32": "0"}), _CPU]
    return [_CPU]


def session_options(threads: int | None = None):
    """The session options every session of this toolkit runs with (see the module docstring)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_session(path: str | os.PathLike, *, device: str = "auto", threads: int | None = None):
    """An ``InferenceSession`` of the graph at ``path`` on ``device`` (see the module docstring).

    Raises:
        InputFileError: The graph is missing or ONNX Runtime cannot load it.
        ConfigError: ``device`` is unknown or unavailable.
        MissingDependencyError: ``cuda`` was asked for and its provider's libraries failed to load.
    """
    ort = import_onnxruntime()
    if not os.path.isfile(path):
        raise InputFileError(f"ONNX graph not found: {path}")
    providers = providers_for(device, ort.get_available_providers())
    with onnxruntime_errors(f"{path}: ONNX Runtime cannot load it", InputFileError):
        session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
    if device == "cuda" and session.get_providers()[0] != _CUDA:
        raise MissingDependencyError(
            "ONNX Runtime lists its CUDA provider but could not load it (CUDA or cuDNN libraries missing); "
            "install the CUDA libraries onnxruntime-gpu needs, or use device 'cpu'"
        )
    return session


@contextlib.contextmanager
def onnxruntime_errors(what: str, error: type[Exception] = InferenceError) -> Iterator[None]:
    """Maps ONNX Runtime's own exceptions to ``error``, with the first line of ONNX Runtime's message
    after ``what``."""
    try:
        yield
    except _onnxruntime_exceptions() as exc:
        raise error(f"{what} ({str(exc).splitlines()[0]})") from exc


@functools.cache
def _onnxruntime_exceptions() -> tuple[type[Exception], ...]:
    """ONNX Runtime's exception types (they derive from Exception only, one per status code)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
