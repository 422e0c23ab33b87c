"""``python -m models.train``: train or fine-tune the classifier on COCO-format data.

The model comes from a checkpoint (fine-tuning), or is built new: random init or local backbone
weights, with the co-occurrence mask from ``--mask`` or counted from the training annotations.
``--data DIR`` reads the layout of ``models.synthetic`` (``DIR/train``, ``DIR/instances_train.json``,
``DIR/val``, ``DIR/instances_val.json``); the four ``--train-*``/``--val-*`` flags name any other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import cli
from core.config import BACKBONES, DEFAULT_MASK_THRESHOLD, MASK_MODES

from .checkpoint import load_model
from .coco import CLASS_ORDERS
from .devices import torch_device
from .splits import Splits
from .training import LAST, OPTIMIZERS, SCHEDULES, SGD_MOMENTUM, TrainConfig, check_run_folder, new_model, train_splits

_MODEL_FLAGS = ("backbone", "image_size", "mask", "class_order", "mask_threshold", "mode", "no_gat", "backbone_weights")


def _splits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Splits:
    explicit = {k: getattr(args, k) for k in ("train_images", "train_annotations", "val_images", "val_annotations")}
    if args.data is not None:
        if any(v is not None for v in explicit.values()):
            parser.error("--data names all four paths; it cannot be combined with --train-*/--val-* flags")
        return Splits.in_folder(args.data)
    missing = [f"--{k.replace('_', '-')}" for k, v in explicit.items() if v is None]
    if missing:
        parser.error(f"name the data with --data DIR, or give {', '.join(missing)}")
    return Splits(**explicit)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.train``: train, evaluate each epoch, write best and last checkpoints."""
    defaults = TrainConfig()
    parser = cli.parser("python -m models.train", "Train or fine-tune the masked-GAT classifier.")
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="folder with train/, val/, instances_train.json, instances_val.json")
    for split in ("train", "val"):
        data.add_argument(f"--{split}-images", type=Path, help=f"{split} image folder")
        data.add_argument(f"--{split}-annotations", type=Path, help=f"{split} COCO instances JSON")
    parser.add_argument("--output", type=Path, required=True, help="run folder: best.pt, last.pt, history.json")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last.pt")
    model = parser.add_argument_group("model (a checkpoint to fine-tune, or a new model)")
    model.add_argument("--checkpoint", type=Path, help="fine-tune this checkpoint")
    model.add_argument("--backbone", choices=BACKBONES, help="new model's backbone (default: resnet101)")
    model.add_argument("--image-size", type=int, help="new model's input size (default: 448)")
    model.add_argument("--backbone-weights", type=Path, help="local torchvision weights (default: random init)")
    model.add_argument("--mask", type=Path, help="mask file (default: counted from the training annotations)")
    model.add_argument(
        "--class-order", choices=CLASS_ORDERS, help="class order of a counted mask (default: alphabetical)"
    )
    model.add_argument("--mask-threshold", type=float, help=f"P(j|i) threshold (default: {DEFAULT_MASK_THRESHOLD})")
    model.add_argument("--mode", choices=MASK_MODES, help="mask mode (default: softmax)")
    model.add_argument("--no-gat", action="store_true", help="turn the graph attention off (ablation)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs")
    opt.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer, help="optimizer")
    opt.add_argument("--lr", type=float, default=defaults.lr, help="head learning rate")
    opt.add_argument(
        "--backbone-lr-scale", type=float, default=defaults.backbone_lr_scale, help="backbone lr = lr × this"
    )
    opt.add_argument("--momentum", type=float, help=f"SGD momentum (default: {SGD_MOMENTUM})")
    opt.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="weight decay")
    opt.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule")
    opt.add_argument("--lr-steps", type=int, nargs="*", default=[], help="step schedule: epochs where lr drops ×0.1")
    opt.add_argument("--seed", type=int, default=defaults.seed, help="seed of init, shuffling and augmentation")
    opt.add_argument("--workers", type=int, default=defaults.workers, help="DataLoader worker processes")
    opt.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1)")
    args = parser.parse_args(argv)
    splits = _splits(args, parser)
    given = [f"--{k.replace('_', '-')}" for k in _MODEL_FLAGS if getattr(args, k) not in (None, False)]
    if (args.checkpoint is not None or args.resume) and given:
        parser.error(f"{', '.join(given)} describe a new model; drop them with --checkpoint or --resume")
    if args.checkpoint is not None and args.resume:
        parser.error("--resume continues the run's own last.pt; it cannot be combined with --checkpoint")

    def body() -> None:
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            backbone_lr_scale=args.backbone_lr_scale,
            optimizer=args.optimizer,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            lr_steps=tuple(args.lr_steps),
            seed=args.seed,
            workers=args.workers,
        )
        check_run_folder(args.output, args.resume)  # fail before building anything, create nothing yet
        if args.resume or args.checkpoint is not None:
            model = load_model(args.output / LAST if args.resume else args.checkpoint).train()
        else:
            model = new_model(
                splits.train_annotations,
                backbone=args.backbone or "resnet101",
                image_size=448 if args.image_size is None else args.image_size,
                backbone_weights=args.backbone_weights,
                mask=args.mask,
                class_order=args.class_order,
                mask_threshold=args.mask_threshold,
                mode=args.mode,
                use_gat=not args.no_gat,
                seed=config.seed,
            )
        result = train_splits(model.to(torch_device(args.device)), splits, config, args.output, resume=args.resume)
        print(result.report.table())
        print(f"best val mAP {100 * result.best_map:.2f}: {result.best}")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
