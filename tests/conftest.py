"""Shared test set-up: hardware markers that skip, and the shared reference statistics."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MASKED_GAT_SHARED_DATA", REPO.parent / "shared" / "data"))


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
