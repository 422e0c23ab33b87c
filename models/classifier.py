"""The masked-GAT multi-label classifier: ResNet trunk → global max pool → linear → GAT residual."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .backbones import build_backbone
from .class_names import validate_class_names
from .config import ModelConfig
from .errors import ClassNamesMismatchError
from .gat import MaskedGATLayer


class MaskedGATHead(nn.Module):
    """Global max pool → linear to N scores → scores plus a masked GAT over them.

    Args:
        in_channels: Channels of the backbone's feature map.
        mask: [N, N] co-occurrence mask in ``class_names`` order.
        class_names: The N class names.
        config: Supplies the mask mode and the GAT's dropout and slope.
    """

    def __init__(self, in_channels: int, mask: torch.Tensor, class_names: Sequence[str], config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, len(class_names))
        self.gat = MaskedGATLayer(
            mask,
            class_names,
            mode=config.mask_mode,
            dropout=config.gat_dropout,
            negative_slope=config.negative_slope,
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Maps features [B, C, H, W] to class logits [B, N]."""
        scores = self.fc(torch.amax(features, dim=(2, 3))).unsqueeze(-1)  # [B, N, 1]: one feature a node
        return (scores + self.gat(scores)).squeeze(-1)


class MaskedGATClassifier(nn.Module):
    """Multi-label classifier over N classes; outputs logits [B, N] in ``class_names`` order.

    Build it with :func:`build_model`, or load it with ``models.checkpoint.load_model``.
    """

    def __init__(
        self,
        config: ModelConfig,
        class_names: Sequence[str],
        mask: torch.Tensor,
        backbone_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        class_names = validate_class_names(class_names)
        if len(class_names) != config.num_classes:
            raise ClassNamesMismatchError(
                f"config says {config.num_classes} classes but {len(class_names)} class names were given"
            )
        self.config = config
        self.backbone, channels = build_backbone(config.backbone, backbone_weights)
        self.head = MaskedGATHead(channels, mask, class_names, config)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in output order."""
        return self.head.gat.class_names

    @property
    def mask(self) -> torch.Tensor:
        """The [N, N] bool co-occurrence mask buffer."""
        return self.head.gat.mask

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Maps normalised images [B, 3, S, S] to logits [B, N]; sigmoid gives probabilities."""
        return self.head(self.backbone(images))


def build_model(
    config: ModelConfig,
    class_names: Sequence[str],
    mask: np.ndarray | torch.Tensor | None = None,
    backbone_weights: str | os.PathLike | None = None,
) -> MaskedGATClassifier:
    """Builds a classifier in eval mode.

    Args:
        config: Architecture and serving settings.
        class_names: The N class names, in the order of ``mask`` and of the outputs.
        mask: [N, N] co-occurrence mask (e.g. ``CorrelationMask.mask``); None gives a graph of
            self-loops only.
        backbone_weights: Local torchvision weights for the backbone; None for random init.
    """
    if mask is None:
        mask = torch.eye(config.num_classes, dtype=torch.bool)
    return MaskedGATClassifier(config, class_names, torch.as_tensor(mask), backbone_weights).eval()
