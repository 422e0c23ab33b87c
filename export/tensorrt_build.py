"""The TensorRT builder, kept thin: parse a typed ONNX graph, one batch profile, build, serialize.

Written against TensorRT's documented 10.12+/11.x Python API. The network is strongly typed (the
``STRONGLY_TYPED`` flag, looked up by name because its bit differs between versions), so the
engine's precision is the graph's; none of the builder precision flags removed in 11.0 is used.
Nothing here runs without a GPU and TensorRT (:func:`runtime.tensorrt_env.import_tensorrt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import ExportError, MissingDependencyError
from runtime.tensorrt_env import import_tensorrt

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    """Builder settings. Batches: the one optimization profile's min/opt/max of dimension 0."""

    input_name: str
    image_size: int
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int
    optimization_level: int
    hardware_compat: str  # "none" | "ampere+"
    version_compatible: bool


def build_serialized(graph: Path, settings: BuildSettings, timing_cache: bytes) -> tuple[bytes, bytes, str]:
    """Builds ``graph``; returns the serialized plan, the updated timing cache and TensorRT's version.

    Raises:
        MissingDependencyError: No GPU, no TensorRT, or a TensorRT without strongly typed networks.
        ExportError: The parser refused the graph or the build failed.
    """
    trt = import_tensorrt()
    trt_logger = trt.Logger(trt.Logger.VERBOSE if logger.isEnabledFor(logging.DEBUG) else trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is None:
        raise MissingDependencyError(f"TensorRT {trt.__version__} cannot build strongly typed networks; use 10.12+")
    network = builder.create_network(1 << int(strongly_typed))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser refused {graph.name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.optimization_level
    if settings.hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if settings.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    size = settings.image_size
    profile.set_shape(
        settings.input_name,
        (settings.min_batch, 3, size, size),
        (settings.opt_batch, 3, size, size),
        (settings.max_batch, 3, size, size),
    )
    config.add_optimization_profile(profile)
    config.progress_monitor = _progress_monitor(trt)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build {graph.name}; rerun with --verbose for the builder's log")
    return bytes(plan), bytes(config.get_timing_cache().serialize()), trt.__version__


def _progress_monitor(trt):
    """Logs the builder's top-level phases as they start and finish."""

    class PhaseLog(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                logger.info("TensorRT: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            logger.debug("TensorRT: %s done", phase_name)

    return PhaseLog()
