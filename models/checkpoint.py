"""The project's checkpoint: one file with format version, config, class names and state dict.

It is a ``torch.save`` of plain data and tensors, so it loads with ``weights_only=True``: a
checkpoint a user hands in can carry no code. The mask is in the state dict (``head.gat.mask``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.config import ModelConfig
from core.errors import CheckpointError, ConfigError, DeployError
from core.facts import ServingFacts
from core.files import atomic_output

from .classifier import MaskedGATClassifier, build_model

FORMAT = "masked-gat-checkpoint"
FORMAT_VERSION = 1
MASK_KEY = "head.gat.mask"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's contents.

    Attributes:
        config: The model's configuration.
        class_names: Class names in output order.
        state_dict: Weights and buffers, the mask included.
        extra: Free-form plain data (training state, provenance).
    """

    config: ModelConfig
    class_names: tuple[str, ...]
    state_dict: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def serving_facts(self) -> ServingFacts:
        """What serving this checkpoint depends on, read without building the model."""
        return ServingFacts.of_model(self.config, self.class_names, self.state_dict[MASK_KEY].numpy())


def save_checkpoint(
    model: MaskedGATClassifier,
    path: str | os.PathLike,
    *,
    extra: Mapping[str, Any] | None = None,
    force: bool = True,
) -> Path:
    """Writes ``model`` atomically as a checkpoint (a failure leaves nothing behind).

    Args:
        model: The classifier to save.
        path: Destination ``.pt`` file.
        extra: Plain data to store beside the weights (dicts, lists, numbers, strings, tensors).
        force: When False, an existing ``path`` is refused.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_names": list(model.class_names),
        "state_dict": {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()
        },
        "extra": dict(extra or {}),
    }
    with atomic_output(path, force=force) as handle:
        torch.save(payload, handle)
    return path


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: The file is missing, corrupt, not a project checkpoint, or of a newer
            format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt, truncated or unsafe files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}); the file is corrupt, truncated or "
            "carries code, which is never loaded"
        ) from exc
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a {FORMAT} file; a bare state_dict from the seed code is converted with "
            "`python -m models.import_seed`"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this toolkit reads up to {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(payload["config"])
        class_names = tuple(payload["class_names"])
        state_dict = payload["state_dict"]
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: incomplete checkpoint ({exc})") from exc
    if not isinstance(state_dict, Mapping) or MASK_KEY not in state_dict:
        raise CheckpointError(f"{path}: the state dict has no co-occurrence mask ({MASK_KEY})")
    mask, n = state_dict[MASK_KEY], config.num_classes
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (n, n):
        raise CheckpointError(f"{path}: {MASK_KEY} must be a bool tensor of shape ({n}, {n}); the file is corrupt")
    return Checkpoint(config, class_names, state_dict, payload.get("extra") or {})


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> MaskedGATClassifier:
    """Rebuilds the classifier stored in a checkpoint, in eval mode on ``map_location``.

    Raises:
        CheckpointError: The checkpoint is unreadable or its weights do not fit its config.
    """
    checkpoint = read_checkpoint(path)
    try:
        model = build_model(checkpoint.config, checkpoint.class_names, checkpoint.state_dict[MASK_KEY])
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except (RuntimeError, DeployError) as exc:
        first = str(exc).splitlines()
        raise CheckpointError(f"{path}: weights do not fit the stored config ({' '.join(first[:3])})") from exc
    return model.to(map_location).eval()
