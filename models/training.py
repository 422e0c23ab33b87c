"""The training loop: ML-GCN's recipe, evaluation each epoch, best/last checkpoints, resume.

Reproducible on CPU under a seed: the model is initialised after seeding, and every epoch
re-seeds torch (shuffling and augmentation) from the seed and the epoch number, so a resumed run
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.config import MaskMode, ModelConfig
from core.errors import CheckpointError, ConfigError
from core.files import write_json

from .checkpoint import read_checkpoint, save_checkpoint
from .classifier import MaskedGATClassifier, build_model
from .coco import ClassOrder
from .correlation_sources import read_mask_source
from .dataset import CocoMultiLabel, collate_readable
from .evaluation import evaluate_model
from .metrics import MetricReport
from .splits import Splits
from .transforms import EvalTransform, train_transform

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step")
LAST, BEST, HISTORY = "last.pt", "best.pt", "history.json"
SGD_MOMENTUM = 0.9  # ML-GCN's


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: ML-GCN's SGD recipe with a cosine schedule).

    Attributes:
        epochs: Passes over the training set.
        batch_size: Images per step.
        lr: Learning rate of the head.
        backbone_lr_scale: The backbone's learning rate is ``lr`` times this (ML-GCN: 0.1).
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        momentum: SGD momentum (None for the default 0.9; refused with Adam/AdamW).
        weight_decay: L2 penalty (decoupled for adamw).
        schedule: ``cosine`` (to 0 over ``epochs``) or ``step`` (×0.1 at each of ``lr_steps``).
        lr_steps: Epochs at which the step schedule divides the learning rate by 10.
        seed: Seed of initialisation, shuffling and augmentation.
        workers: DataLoader worker processes (0 decodes in the training process).
    """

    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.1
    backbone_lr_scale: float = 0.1
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float | None = None
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "step"] = "cosine"
    lr_steps: tuple[int, ...] = field(default_factory=tuple)
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        checks = (
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.backbone_lr_scale >= 0, f"backbone lr scale must be >= 0, got {self.backbone_lr_scale}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.momentum is None or 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.momentum is None or self.optimizer == "sgd", "momentum applies to SGD only; drop --momentum"),
            (not self.lr_steps or self.schedule == "step", "lr steps apply to the step schedule; pass --schedule step"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True)
class TrainResult:
    """Where training left its outputs and how it went.

    Attributes:
        best: Checkpoint with the best validation mAP.
        last: Checkpoint of the last epoch (with the state needed to resume).
        best_map: Validation mAP of ``best``.
        history: One entry per epoch: loss, mAP, OF1, CF1, learning rate, seconds.
        report: The full metric report of the last epoch.
    """

    best: Path
    last: Path
    best_map: float
    history: list[dict[str, float]]
    report: MetricReport


def make_optimizer(model: MaskedGATClassifier, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser with ML-GCN's two parameter groups: backbone at ``lr × backbone_lr_scale``."""
    groups = [
        {"params": list(model.backbone.parameters()), "lr": config.lr * config.backbone_lr_scale},
        {"params": list(model.head.parameters()), "lr": config.lr},
    ]
    if config.optimizer == "sgd":
        momentum = SGD_MOMENTUM if config.momentum is None else config.momentum
        return torch.optim.SGD(groups, lr=config.lr, momentum=momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _schedule_factor(config: TrainConfig, epoch: int) -> float:
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    return 0.1 ** sum(epoch >= step for step in config.lr_steps)


def train(
    model: MaskedGATClassifier,
    train_set: CocoMultiLabel,
    val_set: CocoMultiLabel,
    config: TrainConfig,
    output: str | os.PathLike,
    *,
    resume: bool = False,
) -> TrainResult:
    """Trains ``model`` in place, evaluating on ``val_set`` after every epoch.

    Writes ``best.pt`` and ``last.pt`` (project checkpoints) and ``history.json`` to ``output``.

    Args:
        model: A freshly built or loaded classifier; its class order is the datasets'.
        train_set: Training split (with augmentation).
        val_set: Validation split (with the evaluation transform).
        config: Optimisation settings.
        output: Folder for checkpoints and history.
        resume: Continue from ``output/last.pt`` (same settings required).

    Raises:
        ConfigError: The datasets' classes are not the model's, or resume settings conflict.
        CheckpointError: ``resume`` is asked for but ``last.pt`` is missing or unreadable.
    """
    for split in (train_set, val_set):
        if split.class_names != model.class_names:
            raise ConfigError(
                "the dataset's class order is not the model's; build datasets with class_names=model.class_names"
            )
    created = not Path(output).exists()
    output = prepare_output(output, resume)
    try:
        return _train(model, train_set, val_set, config, output, resume)
    except BaseException:
        if created and not any(output.iterdir()):  # a start that failed leaves no empty run folder
            output.rmdir()
        raise


def _train(
    model: MaskedGATClassifier,
    train_set: CocoMultiLabel,
    val_set: CocoMultiLabel,
    config: TrainConfig,
    output: Path,
    resume: bool,
) -> TrainResult:
    optimizer = make_optimizer(model, config)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    loss_fn = nn.MultiLabelSoftMarginLoss()
    start, best_map, history = 0, -1.0, []
    if resume:
        start, best_map, history = _restore(model, optimizer, config, output / LAST)

    report = None
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * _schedule_factor(config, epoch)
        loss = _train_epoch(model, train_set, optimizer, loss_fn, config, epoch)
        report = evaluate_model(model, val_set, batch_size=max(64, config.batch_size))
        entry = {
            "epoch": epoch + 1,
            "loss": loss,
            "mAP": report.mAP,
            "OF1": report.at_threshold["OF1"],
            "CF1": report.at_threshold["CF1"],
            "lr": optimizer.param_groups[1]["lr"],
            "seconds": time.perf_counter() - started,
        }
        history.append(entry)
        improved = report.mAP > best_map
        best_map = max(best_map, report.mAP)
        state = {
            "epoch": epoch + 1,
            "best_map": best_map,
            "history": history,
            "train_config": config_record(config),
            "optimizer": optimizer.state_dict(),
        }
        if improved:  # before last.pt, whose best_map must never be ahead of best.pt on disk
            save_checkpoint(
                model, output / BEST, extra={"training": {k: v for k, v in state.items() if k != "optimizer"}}
            )
        save_checkpoint(model, output / LAST, extra={"training": state})
        write_json(output / HISTORY, history)
        logger.info(
            "epoch %d/%d: loss %.4f, val mAP %.2f (best %.2f), OF1 %.2f, %.0f s",
            epoch + 1,
            config.epochs,
            loss,
            100 * report.mAP,
            100 * best_map,
            100 * entry["OF1"],
            entry["seconds"],
        )
    if report is None:
        raise ConfigError(
            f"{output / LAST} already finished all {config.epochs} epochs; to train on, fine-tune it with "
            "--checkpoint in a new folder (or, for a step-schedule run, resume with more --epochs)"
        )
    return TrainResult(output / BEST, output / LAST, best_map, history, report)


def new_model(
    train_annotations: Path,
    *,
    backbone: str = "resnet101",
    image_size: int = 448,
    backbone_weights: Path | None = None,
    mask: Path | None = None,
    class_order: ClassOrder | None = None,
    mask_threshold: float | None = None,
    mode: MaskMode | None = None,
    use_gat: bool = True,
    seed: int = 0,
) -> MaskedGATClassifier:
    """A new classifier, initialised under ``seed``, in training mode.

    The mask is ``mask`` (its threshold and mode unless overridden) or, without it, counted from
    ``train_annotations`` in ``class_order`` (default alphabetical), P(j|i) > 0.1, softmax mode.

    Raises:
        ConfigError: ``class_order`` is given together with a mask file, or a value is invalid.
    """
    source, order = (mask, class_order) if mask is not None else (train_annotations, class_order or "alphabetical")
    graph = read_mask_source(source, class_order=order, threshold=mask_threshold, mode=mode)
    config = ModelConfig(
        num_classes=len(graph.class_names),
        backbone=backbone,
        image_size=image_size,
        mask_mode=graph.mode,
        mask_threshold=graph.threshold,
        use_gat=use_gat,
    )
    torch.manual_seed(seed)
    return build_model(config, graph.class_names, graph, backbone_weights).train()


def train_splits(
    model: MaskedGATClassifier, splits: Splits, config: TrainConfig, output: str | os.PathLike, *, resume: bool = False
) -> TrainResult:
    """Trains ``model`` on ``splits`` (training augmentation, evaluation transform on validation);
    see :func:`train`."""
    train_set = CocoMultiLabel(
        splits.train_images, splits.train_annotations, train_transform(model.config), class_names=model.class_names
    )
    val_set = CocoMultiLabel(
        splits.val_images, splits.val_annotations, EvalTransform(model.config), class_names=model.class_names
    )
    return train(model, train_set, val_set, config, output, resume=resume)


def check_run_folder(output: str | os.PathLike, resume: bool) -> Path:
    """Checks, without creating anything, that ``output`` can take a run (a new one, or the one resumed).

    Raises:
        ConfigError: It is a file, holds a run (without ``resume``) or holds none (with ``resume``).
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file; name a folder for the run")
    if resume and not (output / LAST).is_file():
        raise ConfigError(f"nothing to resume: {output / LAST} does not exist")
    if not resume and (output / LAST).exists():
        raise ConfigError(
            f"{output} already holds a training run; pass --resume to continue it or choose another folder"
        )
    return output


def prepare_output(output: str | os.PathLike, resume: bool) -> Path:
    """Creates the run folder once :func:`check_run_folder` accepts it.

    Raises:
        ConfigError: As :func:`check_run_folder`, or the folder cannot be created.
    """
    output = check_run_folder(output, resume)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder {output}: {exc.strerror}") from exc
    return output


def _train_epoch(
    model: MaskedGATClassifier,
    dataset: CocoMultiLabel,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    config: TrainConfig,
    epoch: int,
) -> float:
    torch.manual_seed(config.seed * 100_003 + epoch)  # shuffling and augmentation of this epoch
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(dataset) > config.batch_size,
        num_workers=config.workers,
        collate_fn=collate_readable,
        generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),
    )
    model.train()
    device = next(model.parameters()).device
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, disable=None)
    for batch in bar:
        if batch is None:  # every image of the batch was unreadable (each one is logged)
            continue
        images, targets = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), targets)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(images)
        seen += len(images)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    if not seen:
        raise ConfigError("no training image could be read")
    return total / seen


def _restore(model: MaskedGATClassifier, optimizer: torch.optim.Optimizer, config: TrainConfig, last: Path):
    checkpoint = read_checkpoint(last)
    state = checkpoint.extra.get("training")
    if not isinstance(state, dict) or "optimizer" not in state:
        raise CheckpointError(f"{last}: holds no training state to resume from")
    previous = state.get("train_config", {})
    # The step schedule does not depend on the length of the run, so a step run may be extended;
    # the cosine schedule does, so its length is a setting like the others.
    extendable = {"epochs"} if config.schedule == "step" else set()
    changed = sorted(k for k, v in config_record(config).items() if k not in extendable and previous.get(k) != v)
    if changed:
        raise ConfigError(f"{last} was trained with other settings ({', '.join(changed)}); resume with the same ones")
    if config.epochs != previous.get("epochs"):
        logger.info("extending the step-schedule run from %s to %d epochs", previous.get("epochs"), config.epochs)
    if checkpoint.config != model.config or checkpoint.class_names != model.class_names:
        raise ConfigError(f"{last} holds another model configuration; resume with the model it was trained with")
    model.load_state_dict(checkpoint.state_dict)
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resuming %s after epoch %d", last, state["epoch"])
    return int(state["epoch"]), float(state["best_map"]), list(state["history"])


def config_record(config: TrainConfig) -> dict[str, Any]:
    """The settings as recorded in a run's checkpoints (plain data; a resume must match them)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
