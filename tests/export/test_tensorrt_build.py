"""The builder calls, checked against a recording stand-in for TensorRT's Python module.

This checks which TensorRT API calls ``export.tensorrt_build`` makes and with what; it builds
nothing and says nothing about engines (those tests are marked ``tensorrt`` and need the real one).
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from core.errors import ExportError, MissingDependencyError
from export import tensorrt_build
from export.tensorrt_build import BuildSettings, build_serialized

SETTINGS = BuildSettings("images", 64, 1, 8, 32, 1024, 3, "ampere+", True)


def _recording_tensorrt(*, parses: bool = True, builds: bool = True, strongly_typed: bool = True):
    calls: dict = {"profiles": [], "flags": []}

    class Cache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data + b"+measured"

    class Config:
        progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            calls["pool"] = (pool, size)

        def set_flag(self, flag):
            calls["flags"].append(flag)

        def create_timing_cache(self, data):
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            calls["cache"] = (cache.data, ignore_mismatch)
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            calls["profiles"].append(profile.shapes)

    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = (name, low, opt, high)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"serialized" if builds else None

    class OnnxParser:
        num_errors = 0 if parses else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"] = path
            return parses

        def get_error(self, index):
            return "Unsupported operator Foo"

    class IProgressMonitor:
        def __init__(self):
            pass

    flags = types.SimpleNamespace(**({"STRONGLY_TYPED": 5} if strongly_typed else {}))
    # No FP16/INT8 builder flags: touching one (removed in TensorRT 11) raises AttributeError.
    module = types.SimpleNamespace(
        __version__="10.13.0.35",
        Logger=type("Logger", (), {"WARNING": 2, "VERBOSE": 4, "__init__": lambda self, level: None}),
        NetworkDefinitionCreationFlag=flags,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        HardwareCompatibilityLevel=types.SimpleNamespace(AMPERE_PLUS="AMPERE_PLUS"),
        BuilderFlag=types.SimpleNamespace(VERSION_COMPATIBLE="VERSION_COMPATIBLE"),
        Builder=Builder,
        OnnxParser=OnnxParser,
        IProgressMonitor=IProgressMonitor,
    )
    return module, calls


def test_a_strongly_typed_network_with_one_profile_and_the_timing_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    module, calls = _recording_tensorrt()
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: module)
    plan, cache, version = build_serialized(Path("m.fp16.onnx"), SETTINGS, b"old")
    assert (plan, cache, version) == (b"serialized", b"old+measured", "10.13.0.35")
    assert calls["network_flags"] == 1 << 5 and calls["parsed"] == "m.fp16.onnx"
    assert calls["profiles"] == [("images", (1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))]
    assert calls["pool"] == ("workspace", 1024 << 20)
    assert calls["cache"] == (b"old", False)
    assert calls["flags"] == ["VERSION_COMPATIBLE"]
    config = calls["config"]
    assert config.hardware_compatibility_level == "AMPERE_PLUS" and config.builder_optimization_level == 3
    assert config.progress_monitor is not None


def test_parser_errors_and_failed_builds_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    module, _ = _recording_tensorrt(parses=False)
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: module)
    with pytest.raises(ExportError, match="parser refused m.onnx: Unsupported operator Foo"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")
    module, _ = _recording_tensorrt(builds=False)
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: module)
    with pytest.raises(ExportError, match="could not build m.onnx"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")
    module, _ = _recording_tensorrt(strongly_typed=False)
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: module)
    with pytest.raises(MissingDependencyError, match="cannot build strongly typed networks"):
        build_serialized(Path("m.onnx"), SETTINGS, b"")
