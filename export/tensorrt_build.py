"""The TensorRT builder, kept thin: parse a typed ONNX graph, one batch profile, build, serialize.

Written against TensorRT's 10.12+/11.x Python API and checked against the genuine binding modules
(``tests/tensorrt_api``). The network is strongly typed (the ``STRONGLY_TYPED`` flag, looked up by
name because its bit differs between versions), so the engine's precision is the graph's; none of
the builder precision flags removed in 11.0 is used, and TF32 is cleared (TensorRT enables it by
default) so that the graph's FP32 operations run in FP32. Nothing here runs without a GPU and
TensorRT (:func:`runtime.tensorrt_env.import_tensorrt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from core.errors import ExportError, MissingDependencyError
from runtime.tensorrt_env import INSTALL_HINT, created, import_tensorrt, version_tuple

logger = logging.getLogger(__name__)

OLDEST = (10, 12)
# Builder optimization level 0 takes the first working tactic and neither reads nor updates a
# timing cache (TensorRT's documentation of IBuilderConfig.builder_optimization_level).
NO_TIMING_LEVEL = 0


@dataclass(frozen=True)
class BuildSettings:
    """Builder settings. Batches: the one optimization profile's min/opt/max of dimension 0; ``item_shape``:
    one image's input, [3, S, S] (float32) or [S, S, 3] (uint8 pixels)."""

    input_name: str
    item_shape: tuple[int, int, int]
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int
    optimization_level: int
    hardware_compat: str  # "none" | "ampere+"
    version_compatible: bool


@dataclass(frozen=True)
class Built:
    """A build's results. ``timing_cache``: the updated cache, None when there is none to keep."""

    plan: bytes
    timing_cache: bytes | None
    tensorrt_version: str


def build_serialized(graph: Path, settings: BuildSettings, timing_cache: bytes) -> Built:
    """Builds ``graph``, feeding the builder ``timing_cache`` (b"" for none).

    Raises:
        MissingDependencyError: No GPU, no TensorRT, or a TensorRT without strongly typed networks.
        TensorRTError: TensorRT's native library could not create the builder or one of its objects.
        ExportError: The parser refused the graph or the build failed.
    """
    trt = import_tensorrt()
    trt_logger = trt.Logger(trt.Logger.VERBOSE if logger.isEnabledFor(logging.DEBUG) else trt.Logger.WARNING)
    if version_tuple(trt.__version__)[:2] < OLDEST:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is older than 10.12, the first release whose strongly typed networks carry "
            f"FP16 and INT8 graphs as this toolkit writes them; {INSTALL_HINT}"
        )
    strongly_typed = trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    builder = created("a builder", lambda: trt.Builder(trt_logger))
    network = created("a network", lambda: builder.create_network(1 << int(strongly_typed)))
    parser = created("an ONNX parser", lambda: trt.OnnxParser(network, trt_logger))
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser refused {graph.name}: {errors}")

    config = created("a builder configuration", builder.create_builder_config)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.optimization_level
    config.clear_flag(trt.BuilderFlag.TF32)
    if settings.hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if settings.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    timed = settings.optimization_level != NO_TIMING_LEVEL
    if timed:
        _set_timing_cache(config, timing_cache)
    profile = created("an optimization profile", builder.create_optimization_profile)
    item = settings.item_shape
    profile.set_shape(
        settings.input_name,
        (settings.min_batch, *item),
        (settings.opt_batch, *item),
        (settings.max_batch, *item),
    )
    config.add_optimization_profile(profile)
    config.progress_monitor = _progress_monitor(trt)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build {graph.name}; rerun with --verbose for the builder's log")
    return Built(bytes(plan), _timing_cache_bytes(config) if timed else None, trt.__version__)


def _set_timing_cache(config, data: bytes) -> None:
    """Feeds ``data`` (b"" for none) to the builder. A cache TensorRT cannot read, or refuses (measured
    on another device), gives way to a fresh one."""
    if data:
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
        logger.warning("TensorRT refused the timing cache (unreadable, or measured on another device); starting afresh")
    fresh = created("a timing cache", lambda: config.create_timing_cache(b""))
    if not config.set_timing_cache(fresh, ignore_mismatch=False):
        logger.warning("TensorRT refused a fresh timing cache too; building without one")


def _timing_cache_bytes(config) -> bytes | None:
    cache = config.get_timing_cache()
    if cache is None:
        logger.warning("TensorRT returned no timing cache after the build; the cache file is not updated")
        return None
    return bytes(cache.serialize())


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
