"""Tests run against one genuine TensorRT binding module, in the subprocess ``tests/test_tensorrt_bindings.py``
starts once per installed version (one version per process: they share the module name). Outside
that subprocess nothing here is collected.

The subprocess has the registry's ``tensorrt-cu12-bindings`` wheel and stub native libraries on its
paths (``nvinfer_stub.c``): the module is NVIDIA's own, and every native factory returns NULL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from export import tensorrt_build
from runtime import tensorrt_env, tensorrt_runner

from .mirror import ModuleView, World

VERSION = os.environ.get("TENSORRT_API_VERSION")
GPU = ("NVIDIA H100 80GB HBM3", (9, 0))

if VERSION is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def trt():
    """The genuine module, imported as users import it (``tensorrt``, NVIDIA's meta package)."""
    import tensorrt

    assert tensorrt.__version__ == VERSION, f"imported TensorRT {tensorrt.__version__}, expected {VERSION}"
    assert tensorrt.Builder.__module__ == "tensorrt_bindings.tensorrt"  # the compiled module, not a stand-in
    return tensorrt


@pytest.fixture
def gpu_here(trt, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU is taken as visible (there is none here), so our code goes on to TensorRT itself."""
    monkeypatch.setattr(tensorrt_env, "visible_gpu", lambda: GPU)
    monkeypatch.setattr(tensorrt_env, "tensorrt_version", lambda: trt.__version__)


@pytest.fixture
def world(trt, gpu_here, monkeypatch: pytest.MonkeyPatch) -> World:
    """The genuine module with mirrors where its native factories would answer (``mirror.py``)."""
    world = World(trt)
    view = ModuleView(world)
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: view)
    monkeypatch.setattr(tensorrt_runner, "import_tensorrt", lambda: view)
    return world


@pytest.fixture(scope="session")
def fp32_graph() -> Path:
    """The FP32 graph of the suite's fixture model, made by the parent test run."""
    return Path(os.environ["TENSORRT_API_GRAPH"])


@pytest.fixture
def uint8_graph(fp32_graph: Path, tmp_path: Path) -> Path:
    """That graph with a uint8 input (``export.uint8_input``) and the facts that say so."""
    import dataclasses

    import onnx

    from export.metadata import read_graph, write_metadata
    from export.uint8_input import with_uint8_input

    graph, facts = read_graph(fp32_graph)
    pixels = with_uint8_input(graph, facts.config.preprocessing)
    write_metadata(pixels, dataclasses.replace(facts, input_format="uint8"))
    onnx.save(pixels, str(tmp_path / "pixels.onnx"))
    return tmp_path / "pixels.onnx"
