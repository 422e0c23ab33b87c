"""``python -m models.summary``: build (or load) a model and print what it is and what it does.

With no arguments it builds the default: ResNet-101 at 448×448, softmax-mode GAT, 80 classes
with a graph of self-loops only (pass ``--mask`` for real co-occurrence edges).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from core import cli
from core.config import BACKBONES, ModelConfig
from core.errors import ConfigError

from .classifier import MaskedGATClassifier, build_model


def describe(model: MaskedGATClassifier) -> list[str]:
    """Lines describing the model's architecture, graph, preprocessing and size."""
    config, mask = model.config, model.mask
    pre = config.preprocessing
    loops = int(mask.diagonal().sum())
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    head_params = sum(p.numel() for p in model.head.parameters())
    return [
        f"backbone   {config.backbone}, {backbone_params / 1e6:.2f} M parameters, {model.head.fc.in_features} channels",
        f"head       global max pool → linear {model.head.fc.in_features}→{config.num_classes} → masked GAT "
        f"residual, {head_params:,} parameters",
        f"graph      {config.num_classes} nodes, {config.mask_mode} mode, {int(mask.sum()) - loops} edges "
        f"+ {loops} self-loops (P(j|i) > {config.mask_threshold})",
        f"classes    {', '.join(model.class_names[:6])}{', …' if config.num_classes > 6 else ''}",
        f"input      [B, 3, {config.image_size}, {config.image_size}] float32 {pre.channel_order}; {pre.resize} "
        f"resize ({pre.interpolation}), mean {pre.mean}, std {pre.std}",
        f"output     [B, {config.num_classes}] logits; label where sigmoid ≥ {config.decision_threshold}",
    ]


def smoke_forward(model: MaskedGATClassifier, batch: int = 1) -> str:
    """Runs one random batch through the model; a line with shape, time and finiteness."""
    size = model.config.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(images)
    elapsed = time.perf_counter() - start
    finite = "all finite" if bool(torch.isfinite(logits).all()) else "NOT FINITE"
    return f"forward    batch {batch} on cpu in {elapsed:.2f} s → {list(logits.shape)}, {finite}"


def main(argv: list[str] | None = None) -> int:
    """``python -m models.summary``: summarise a built model (the default) or a checkpoint."""
    parser = cli.parser("python -m models.summary", "Build or load a masked-GAT classifier and summarise it.")
    parser.add_argument("--checkpoint", type=Path, help="summarise this checkpoint instead of building a model")
    parser.add_argument("--backbone", choices=BACKBONES, help="backbone of a built model (default: resnet101)")
    parser.add_argument("--image-size", type=int, help="input size of a built model (default: 448)")
    parser.add_argument("--mask", type=Path, help="mask file from models.correlation (gives classes and edges)")
    parser.add_argument("--num-classes", type=int, help="classes of a built model without --mask (default: 80)")
    parser.add_argument("--backbone-weights", type=Path, help="local torchvision weights for the backbone")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward pass on a random image")
    args = parser.parse_args(argv)
    building = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "mask": args.mask,
        "num_classes": args.num_classes,
        "backbone_weights": args.backbone_weights,
    }
    given = [f"--{name.replace('_', '-')}" for name, value in building.items() if value is not None]
    if args.checkpoint is not None and given:
        parser.error(f"--checkpoint describes a stored model; it cannot be combined with {', '.join(given)}")
    if args.mask is not None and args.num_classes is not None:
        parser.error("--mask gives the classes; it cannot be combined with --num-classes")

    def body() -> None:
        if args.checkpoint is not None:
            from .checkpoint import load_model

            model = load_model(args.checkpoint)
            title = f"checkpoint {args.checkpoint}"
        else:
            model = build_described_model(
                "resnet101" if args.backbone is None else args.backbone,
                448 if args.image_size is None else args.image_size,
                args.mask,
                80 if args.num_classes is None else args.num_classes,
                args.backbone_weights,
            )
            title = "default model" if args.mask is None else f"model over {args.mask}"
        print(f"MaskedGATClassifier — {title}")
        for line in describe(model):
            print("  " + line)
        if not args.no_forward:
            print("  " + smoke_forward(model))

    return cli.run(body, verbose=args.verbose)


def build_described_model(
    backbone: str,
    image_size: int,
    mask_path: Path | None,
    num_classes: int,
    backbone_weights: Path | None,
) -> MaskedGATClassifier:
    """The model the summary describes: over a mask file's classes, or N placeholder classes
    with a graph of self-loops only."""
    if mask_path is None:
        if num_classes < 1:
            raise ConfigError(f"--num-classes must be at least 1, got {num_classes}")
        config = ModelConfig(num_classes, backbone, image_size)
        return build_model(config, [f"class_{i:02d}" for i in range(num_classes)], None, backbone_weights)
    from .correlation import CorrelationMask

    loaded = CorrelationMask.load(mask_path)
    config = ModelConfig(
        len(loaded.class_names), backbone, image_size, mask_mode=loaded.mode, mask_threshold=loaded.threshold
    )
    return build_model(config, loaded.class_names, loaded, backbone_weights)


if __name__ == "__main__":
    raise SystemExit(main())
