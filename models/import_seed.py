"""Converts a state dict saved by the seed's ``masked_gat_after_resnet.py`` into a checkpoint.

The seed's ``Resnet`` keeps the trunk as ``features`` (an ``nn.Sequential`` of conv1, bn1, relu,
maxpool, layer1–4) and the head as ``heads.fc`` and ``heads.gat.{W,a,beta}``. Its mask was an
attribute rebuilt from ``coco_correlations.pkl`` at start-up, not saved, so the statistics and
their class names are needed to rebuild it; the result is a seed-mode checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from core import cli
from core.config import BACKBONES, DEFAULT_MASK_THRESHOLD, ModelConfig
from core.errors import CorrelationError, WeightsError
from core.files import check_outputs

from .backbones import check_trunk_state, infer_resnet, read_state_dict
from .checkpoint import save_checkpoint
from .classifier import MaskedGATClassifier, build_model
from .correlation import Correlation

logger = logging.getLogger(__name__)

# Index in the seed's ``features`` Sequential → torchvision child name (2 and 3 hold no weights).
_SEED_TRUNK = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_SEED_GAT = ("W", "a", "beta")


def map_seed_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames the seed's keys to this project's (``backbone.*``, ``head.fc.*``, ``head.gat.*``).

    Raises:
        WeightsError: A key is not one the seed's model has.
    """
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        parts = key.split(".", 2)
        if parts[0] == "features" and len(parts) == 3 and parts[1] in _SEED_TRUNK:
            mapped[f"backbone.{_SEED_TRUNK[parts[1]]}.{parts[2]}"] = value
        elif key.startswith("heads.fc.") or key in {f"heads.gat.{name}" for name in _SEED_GAT}:
            mapped["head." + key.removeprefix("heads.")] = value
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys are not from the seed's masked_gat_after_resnet model (e.g. {unknown[:3]}); "
            "a project checkpoint needs no conversion"
        )
    return mapped


def convert_seed_state_dict(
    state: Mapping[str, torch.Tensor],
    correlation: Correlation,
    *,
    threshold: float = DEFAULT_MASK_THRESHOLD,
    image_size: int = 448,
    backbone: str | None = None,
    source: str = "state dict",
) -> MaskedGATClassifier:
    """Builds a seed-mode classifier holding the seed's weights and its rebuilt mask.

    Args:
        state: The seed's state dict (``module.`` prefixes already removed).
        correlation: The statistics the seed's mask was built from, with their class names.
        threshold: The seed's ``probability_filter_threshold``.
        image_size: The training image size.
        backbone: Expected ResNet; None infers it from the weights' layout.
        source: Where ``state`` came from, for messages.

    Raises:
        WeightsError: The state dict is not the seed's, or not of the backbone asked for.
        CorrelationError: The statistics are for another number of classes.
    """
    mapped = map_seed_keys(state)
    trunk = {k.removeprefix("backbone."): v for k, v in mapped.items() if k.startswith("backbone.")}
    found = infer_resnet(trunk)
    if found is None:
        raise WeightsError(f"{source}: the seed's trunk matches no torchvision ResNet ({', '.join(BACKBONES)})")
    if backbone is not None and backbone != found:
        raise WeightsError(f"{source}: --backbone {backbone} was given but the weights are {found}")
    if "head.fc.weight" not in mapped:
        raise WeightsError(f"{source}: no heads.fc.weight; not a state dict of the seed's model")
    num_classes = mapped["head.fc.weight"].shape[0]
    if num_classes != len(correlation.class_names):
        raise CorrelationError(
            f"{source} has {num_classes} outputs but the statistics describe {len(correlation.class_names)} classes; "
            "pass the correlation and names files the model was trained with"
        )
    config = ModelConfig(num_classes, found, image_size, mask_mode="seed", mask_threshold=threshold)
    model = build_model(config, correlation.class_names, correlation.mask(threshold, "seed"))
    check_trunk_state(trunk, model.backbone.state_dict(), found, source)
    try:
        missing, _ = model.load_state_dict(mapped, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{source}: head weights do not fit ({str(exc).splitlines()[-1].strip()})") from exc
    missing = sorted(set(missing) - {"head.gat.mask", "head.gat._extra_state"})
    if missing:
        raise WeightsError(f"{source}: the seed state dict lacks {missing[:5]}")
    return model


def import_seed(
    state_dict_path: str | os.PathLike,
    correlation_path: str | os.PathLike,
    names_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    threshold: float = DEFAULT_MASK_THRESHOLD,
    image_size: int = 448,
    backbone: str | None = None,
    force: bool = False,
) -> MaskedGATClassifier:
    """Reads the seed's files, converts them and writes a checkpoint; returns the model."""
    from .correlation_sources import read_correlation

    correlation = read_correlation(correlation_path, names=names_path)
    state = read_state_dict(state_dict_path)
    model = convert_seed_state_dict(
        state, correlation, threshold=threshold, image_size=image_size, backbone=backbone, source=str(state_dict_path)
    )
    extra = {"imported_from": {"state_dict": str(state_dict_path), "correlation_sha256": correlation.source_sha256}}
    save_checkpoint(model, output, extra=extra, force=force)
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m models.import_seed``: seed state dict + its statistics → project checkpoint."""
    parser = cli.parser("python -m models.import_seed", "Convert a seed-code state dict into a seed-mode checkpoint.")
    parser.add_argument("--state-dict", required=True, type=Path, help="state dict saved by the seed's code")
    parser.add_argument("--correlation", required=True, type=Path, help="the seed's coco_correlations.pkl ('pp')")
    parser.add_argument(
        "--names", required=True, type=Path, help="class names of the statistics (coco_names.pkl, .txt)"
    )
    parser.add_argument("--output", required=True, type=Path, help="checkpoint to write (.pt)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_MASK_THRESHOLD, help="the seed's mask threshold")
    parser.add_argument("--image-size", type=int, default=448, help="training image size")
    parser.add_argument("--backbone", choices=BACKBONES, help="expected backbone (default: inferred from the weights)")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)

    def body() -> None:
        check_outputs({"--output": args.output}, [args.state_dict, args.correlation, args.names], force=args.force)
        model = import_seed(
            args.state_dict,
            args.correlation,
            args.names,
            args.output,
            threshold=args.threshold,
            image_size=args.image_size,
            backbone=args.backbone,
            force=args.force,
        )
        edges = int(model.mask.sum() - model.mask.diagonal().sum())
        print(
            f"imported {model.config.backbone}, {model.config.num_classes} classes, seed mode, "
            f"{edges} edges at P(j|i) > {args.threshold} → {args.output}"
        )

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
