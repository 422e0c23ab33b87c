"""``export.tensorrt_build`` and ``export.build_engine`` against the genuine TensorRT module."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from core.errors import ConfigError, ExportError, MissingDependencyError, TensorRTError
from core.manifest import manifest_path, read_manifest
from export import tensorrt_build
from export.build_engine import build_engine
from export.tensorrt_build import BuildSettings, build_serialized
from runtime.tensorrt_env import HOST_PLATFORM

from .mirror import APIMismatch, Mirror, World, signatures

SETTINGS = BuildSettings("images", (3, 64, 64), 1, 8, 32, 1024, 3, "ampere+", True)
BUILT = {"Builder.build_serialized_network": b"serialized engine", "ITimingCache.serialize": b"measured"}


def _flags(world: World, method: str) -> list:
    return [args[0] for key, args in world.calls if key == f"IBuilderConfig.{method}"]


def test_a_failing_native_builder_is_one_typed_error(trt, gpu_here) -> None:
    # The genuine module, its native factory returning NULL: pybind11 raises TypeError, we raise ours.
    with pytest.raises(TensorRTError, match="could not create a builder; check that the NVIDIA driver supports"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")


def test_every_builder_call_exists_with_the_signature_we_use(trt, world: World) -> None:
    world.answers.update(BUILT)
    built = build_serialized(Path("m.fp16.onnx"), SETTINGS, b"old cache")
    assert (built.plan, built.timing_cache, built.tensorrt_version) == (
        b"serialized engine",
        b"measured",
        trt.__version__,
    )
    calls = dict(world.calls)
    assert calls["Builder.create_network"] == (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),)
    assert calls["OnnxParser.parse_from_file"] == ("m.fp16.onnx",)
    assert calls["IBuilderConfig.set_memory_pool_limit"] == (trt.MemoryPoolType.WORKSPACE, 1024 << 20)
    assert calls["IBuilderConfig.builder_optimization_level="] == (3,)
    assert calls["IBuilderConfig.hardware_compatibility_level="] == (trt.HardwareCompatibilityLevel.AMPERE_PLUS,)
    assert calls["IBuilderConfig.create_timing_cache"] == (b"old cache",)
    assert calls["IBuilderConfig.set_timing_cache"][1:] == (("ignore_mismatch", False),)
    assert calls["IOptimizationProfile.set_shape"] == ("images", (1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))
    assert isinstance(calls["IBuilderConfig.progress_monitor="][0], trt.IProgressMonitor)
    # TF32 is on by default in every version and would break the fp32 gate: cleared, never set.
    assert _flags(world, "clear_flag") == [trt.BuilderFlag.TF32]
    assert _flags(world, "set_flag") == [trt.BuilderFlag.VERSION_COMPATIBLE]
    assert not hasattr(trt.BuilderFlag, "FP16") or trt.BuilderFlag.FP16 not in _flags(world, "set_flag")


def test_the_progress_monitor_overrides_what_tensorrt_declares(trt) -> None:
    # TensorRT calls these from C++ by name and position: each must be one the genuine class declares.
    monitor = type(tensorrt_build._progress_monitor(trt))
    overrides = [name for name in vars(monitor) if not name.startswith("_")]
    assert sorted(overrides) == ["phase_finish", "phase_start", "step_complete"]
    for name in overrides:
        (declared,) = signatures(inspect.getattr_static(trt.IProgressMonitor, name))
        ours = list(inspect.signature(getattr(monitor, name)).parameters)[1:]
        assert ours == [parameter for parameter, _, _ in declared.parameters], name


def test_a_tensorrt_older_than_10_12_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_build.import_tensorrt(), "__version__", "10.11.0.33", raising=False)
    with pytest.raises(MissingDependencyError, match="TensorRT 10.11.0.33 is older than 10.12"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")
    assert not world.calls  # refused before any native call


def test_the_mirror_refuses_what_the_genuine_module_does_not_offer(trt, world: World) -> None:
    # The conformance checks themselves can fail: a misspelt method, a wrong keyword, a wrong type.
    config = Mirror(trt.IBuilderConfig, world)
    with pytest.raises(APIMismatch, match="has no 'set_flags'"):
        config.set_flags(trt.BuilderFlag.TF32)
    with pytest.raises(APIMismatch, match="declares"):
        config.set_timing_cache(Mirror(trt.ITimingCache, world), ignore_mismatches=False)
    with pytest.raises(APIMismatch, match="declares"):
        config.set_flag(1)  # an int is not a BuilderFlag
    with pytest.raises(APIMismatch, match="takes"):
        config.builder_optimization_level = "3"
    with pytest.raises(APIMismatch, match="cannot be set"):
        Mirror(trt.OnnxParser, world).num_errors = 0


@pytest.mark.parametrize(
    ("failing", "what"),
    [
        ("OnnxParser.__init__", "an ONNX parser"),
        ("Builder.create_network", "a network"),
        ("Builder.create_builder_config", "a builder configuration"),
        ("Builder.create_optimization_profile", "an optimization profile"),
        ("IBuilderConfig.create_timing_cache", "a timing cache"),
    ],
)
def test_a_factory_returning_null_is_a_typed_error(world: World, failing: str, what: str) -> None:
    world.answers.update(BUILT)
    world.answers[failing] = None
    with pytest.raises(TensorRTError, match=f"could not create {what};"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")


def test_a_parser_failure_and_a_failed_build_are_typed(world: World) -> None:
    world.answers.update({"OnnxParser.parse_from_file": False, "OnnxParser.num_errors": 1})
    world.answers["ParserError.__str__"] = "Unsupported operator Foo"
    with pytest.raises(ExportError, match="parser refused m.onnx: Unsupported operator Foo"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")
    world.answers.update({"OnnxParser.parse_from_file": True, "Builder.build_serialized_network": None})
    with pytest.raises(ExportError, match="could not build m.onnx"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")


def test_a_refused_timing_cache_gives_way_to_a_fresh_one(trt, world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.answers.update(BUILT)
    refusals = iter([False, True])
    world.answers["IBuilderConfig.set_timing_cache"] = lambda cache, ignore_mismatch: next(refusals)
    built = build_serialized(Path("m.onnx"), SETTINGS, b"from another device")
    assert [args for key, args in world.calls if key == "IBuilderConfig.create_timing_cache"] == [
        (b"from another device",),
        (b"",),
    ]
    assert "refused the timing cache" in caplog.text and built.timing_cache == b"measured"
    # A cache TensorRT cannot read at all (a truncated file): the same fresh start.
    world.calls.clear()
    world.answers["IBuilderConfig.set_timing_cache"] = True
    world.answers["IBuilderConfig.create_timing_cache"] = lambda data: (
        Mirror(trt.ITimingCache, world) if not data else None
    )
    assert build_serialized(Path("m.onnx"), SETTINGS, b"truncated").plan == b"serialized engine"
    assert [args for key, args in world.calls if key == "IBuilderConfig.create_timing_cache"] == [
        (b"truncated",),
        (b"",),
    ]
    del world.answers["IBuilderConfig.create_timing_cache"]
    # No timing cache after the build: the plan is still returned, the cache file left alone.
    world.answers["IBuilderConfig.set_timing_cache"] = True
    world.answers["IBuilderConfig.get_timing_cache"] = None
    assert build_serialized(Path("m.onnx"), SETTINGS, b"").timing_cache is None


def test_build_engine_writes_the_plan_and_the_facts_of_this_tensorrt(
    trt, world: World, fp32_graph: Path, tmp_path: Path
) -> None:
    world.answers.update(BUILT)
    cache = tmp_path / "timing.cache"
    result = build_engine(fp32_graph, tmp_path / "model.plan", precision="fp32", timing_cache=cache)
    assert result.plan.read_bytes() == b"serialized engine"
    engine = read_manifest(result.plan).facts.engine
    assert engine.tensorrt_version == trt.__version__ and engine.compute_capability == (9, 0)
    assert engine.platform == HOST_PLATFORM
    assert cache.read_bytes() == b"measured"
    assert json.loads(manifest_path(cache).read_text())["tensorrt_version"] == trt.__version__


def test_optimization_level_0_neither_reads_nor_rewrites_the_timing_cache(
    world: World, fp32_graph: Path, tmp_path: Path
) -> None:
    world.answers.update(BUILT)
    level_0 = BuildSettings("images", (3, 64, 64), 1, 8, 32, 1024, 0, "none", False)
    assert build_serialized(Path("m.onnx"), level_0, b"cache").timing_cache is None
    assert not any("timing_cache" in key for key, _ in world.calls)
    assert dict(world.calls)["IBuilderConfig.builder_optimization_level="] == (0,)
    cache = tmp_path / "timing.cache"
    with pytest.raises(ConfigError, match="level 0 neither reads nor updates a timing cache; drop --timing-cache"):
        build_engine(fp32_graph, tmp_path / "model.plan", precision="fp32", timing_cache=cache, optimization_level=0)
