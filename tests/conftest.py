"""Shared test set-up: hardware markers that skip, the shared reference statistics, and small trained
checkpoints (ResNet-18 at 64 px, one epoch on generated data) with their FP32 graph."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from models import train as train_cli
from models.synthetic import SyntheticSpec, generate
from tests.helpers import FIXTURE_RECIPE, SHARED_DATA


def _cuda_missing() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no usable CUDA device"


def _tensorrt_missing() -> str | None:
    # Checked without importing tensorrt: on a machine without a GPU the import can succeed and a
    # later Runtime crash the process (DESIGN.md).
    return _cuda_missing() or (None if importlib.util.find_spec("tensorrt") else "TensorRT is not installed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {"gpu": _cuda_missing(), "tensorrt": _tensorrt_missing()}
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: {reason}"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real co-occurrence statistics); tests using it skip where it is absent."""
    if not (SHARED_DATA / "coco_adj.pkl").is_file():
        pytest.skip(f"reference statistics not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SyntheticSpec(train=64, val=24, image_size=64, seed=5), tmp_path_factory.mktemp("x") / "data")


def _trained(demo_data: Path, folder: Path, *extra: str) -> Path:
    assert train_cli.main(["--data", str(demo_data), "--output", str(folder), *FIXTURE_RECIPE, *extra]) == 0
    return folder / "best.pt"


@pytest.fixture(scope="session")
def trained_checkpoint(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Softmax-mode GAT, trained for an epoch (real batch-norm statistics)."""
    return _trained(demo_data, tmp_path_factory.mktemp("softmax"))


@pytest.fixture(scope="session")
def seed_mode_checkpoint(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained(demo_data, tmp_path_factory.mktemp("seed"), "--mode", "seed")


@pytest.fixture(scope="session")
def fp32_graph(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint exported to ONNX (FP32, gated), max batch 8."""
    from export.to_onnx import export_onnx

    return export_onnx(trained_checkpoint, tmp_path_factory.mktemp("graph") / "model.onnx", max_batch=8).path


@pytest.fixture(scope="session")
def uint8_graph(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint exported with a uint8 input (FP32, gated), max batch 8."""
    from export.to_onnx import export_onnx

    output = tmp_path_factory.mktemp("pixels") / "model.onnx"
    return export_onnx(trained_checkpoint, output, input_format="uint8", max_batch=8).path
