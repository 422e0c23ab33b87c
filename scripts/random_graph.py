"""The random-weight graph the figure scripts time (speed does not depend on the weights' values)."""

from __future__ import annotations

from pathlib import Path


def random_graph(
    folder: Path,
    backbone: str,
    image_size: int,
    *,
    max_batch: int,
    parity_samples: int = 8,
    input_format: str = "float32",
) -> Path:
    """``folder/model.onnx`` (``model.uint8.onnx`` with a uint8 input): an 80-class masked-GAT classifier with
    random weights (seed 0), exported and gated."""
    import torch

    from core.config import ModelConfig
    from export.to_onnx import export_onnx
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(80, backbone=backbone, image_size=image_size), [f"class_{i}" for i in range(80)])
    checkpoint = save_checkpoint(model, folder / "model.pt")
    output = folder / ("model.uint8.onnx" if input_format == "uint8" else "model.onnx")
    options = {"max_batch": max_batch, "parity_samples": parity_samples, "input_format": input_format}
    return export_onnx(checkpoint, output, **options).path
