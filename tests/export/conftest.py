"""Small trained checkpoints for the export tests (ResNet-18 at 64 px, one epoch on generated data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import train as train_cli
from models.synthetic import SyntheticSpec, generate

_RECIPE = ["--backbone", "resnet18", "--image-size", "64", "--optimizer", "adam", "--lr", "1e-3", "--epochs", "1"]


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SyntheticSpec(train=64, val=24, image_size=64, seed=5), tmp_path_factory.mktemp("x") / "data")


def _trained(demo_data: Path, folder: Path, *extra: str) -> Path:
    assert train_cli.main(["--data", str(demo_data), "--output", str(folder), *_RECIPE, *extra]) == 0
    return folder / "best.pt"


@pytest.fixture(scope="session")
def trained_checkpoint(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Softmax-mode GAT, trained for an epoch (real batch-norm statistics)."""
    return _trained(demo_data, tmp_path_factory.mktemp("softmax"))


@pytest.fixture(scope="session")
def seed_mode_checkpoint(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained(demo_data, tmp_path_factory.mktemp("seed"), "--mode", "seed")
