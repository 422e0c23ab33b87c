"""What TensorRT needs from this machine: install hints for both CUDA majors, extras that install a
working pair, and one typed error for a failing native library."""

from __future__ import annotations

import tomllib

import pytest

from core.errors import MissingDependencyError, TensorRTError
from runtime import tensorrt_env
from runtime.cuda_memory import CUDA_HINT
from runtime.tensorrt_env import created
from tests.helpers import REPO


def test_without_tensorrt_the_hint_names_the_extra_for_each_cuda_major(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_env, "visible_gpu", lambda: ("NVIDIA H100 80GB HBM3", (9, 0)))
    monkeypatch.setattr(tensorrt_env, "tensorrt_version", lambda: None)
    with pytest.raises(MissingDependencyError) as caught:
        tensorrt_env.this_machine()
    for hint in (str(caught.value), CUDA_HINT):
        assert "'.[tensorrt-cu12]'" in hint and "'.[tensorrt-cu13]'" in hint


def test_each_tensorrt_extra_installs_cuda_bindings_of_its_cuda_major() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    # cuda.bindings first ships in cuda-python 12.6.2; the plain `tensorrt` package would pull CUDA 13.
    assert extras["tensorrt-cu12"] == ["tensorrt-cu12>=10.12,<12", "cuda-python>=12.6.2,<13"]
    assert extras["tensorrt-cu13"] == ["tensorrt-cu13>=10.13.2,<12", "cuda-python>=13,<14"]
    assert "tensorrt" not in extras


def test_a_native_factory_that_fails_is_a_tensorrt_error_and_a_wrong_call_stays_a_bug() -> None:
    def null_factory() -> None:
        raise TypeError("pybind11::init(): factory function returned nullptr")

    with pytest.raises(TensorRTError, match="could not create a builder; check that the NVIDIA driver"):
        created("a builder", null_factory)
    with pytest.raises(TensorRTError, match="could not create a network"):
        created("a network", lambda: None)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        created("a builder", lambda: (_ for _ in ()).throw(TypeError("incompatible function arguments")))
    assert created("a runtime", lambda: "made") == "made"
