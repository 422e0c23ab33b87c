"""The random-weight graph the figure scripts time (speed does not depend on the weights' values)."""

from __future__ import annotations

from pathlib import Path


def random_graph(folder: Path, backbone: str, image_size: int, *, max_batch: int, parity_samples: int = 8) -> Path:
    """``folder/model.onnx``: an 80-class masked-GAT classifier with random weights (seed 0), exported and gated."""
    import torch

    from core.config import ModelConfig
    from export.to_onnx import export_onnx
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(80, backbone=backbone, image_size=image_size), [f"class_{i}" for i in range(80)])
    checkpoint = save_checkpoint(model, folder / "model.pt")
    return export_onnx(checkpoint, folder / "model.onnx", max_batch=max_batch, parity_samples=parity_samples).path
