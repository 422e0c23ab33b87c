"""The masked-GAT multi-label classifier: ResNet trunk → global max pool → linear → GAT residual."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import ModelConfig, validate_class_names
from core.errors import ClassNamesMismatchError, ConfigError
from core.facts import ServingFacts

from .backbones import build_backbone
from .correlation import CorrelationMask
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
        self.use_gat = config.use_gat
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
        scores = self.fc(torch.amax(features, dim=(2, 3)))
        if not self.use_gat:
            return scores
        nodes = scores.unsqueeze(-1)  # [B, N, 1]: one feature a node
        return (nodes + self.gat(nodes)).squeeze(-1)


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
        # Check the GAT's part of an incoming state dict before any module copies its weights,
        # so a refused load leaves the whole model as it was.
        self.register_load_state_dict_pre_hook(_check_gat_before_load)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in output order."""
        return self.head.gat.class_names

    @property
    def mask(self) -> torch.Tensor:
        """The [N, N] bool co-occurrence mask buffer."""
        return self.head.gat.mask

    @property
    def serving_facts(self) -> ServingFacts:
        """What serving this model depends on (class order, config, mask), as artifacts record it."""
        return ServingFacts.of_model(self.config, self.class_names, self.mask.cpu().numpy())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Maps normalised images [B, 3, S, S] to logits [B, N]; sigmoid gives probabilities."""
        return self.head(self.backbone(images))


def _check_gat_before_load(module: MaskedGATClassifier, state_dict: Mapping[str, Any], prefix: str, *_: Any) -> None:
    module.head.gat.check_state_dict(state_dict, prefix + "head.gat.")


def build_model(
    config: ModelConfig,
    class_names: Sequence[str],
    mask: CorrelationMask | np.ndarray | torch.Tensor | None = None,
    backbone_weights: str | os.PathLike | None = None,
) -> MaskedGATClassifier:
    """Builds a classifier in eval mode.

    Args:
        config: Architecture and serving settings.
        class_names: The N class names, in output order.
        mask: A :class:`CorrelationMask`, reordered by name to ``class_names`` (refused if it
            names another class set, or was made for another mode or threshold than
            ``config``'s); or an [N, N] array already in ``class_names`` order; or None for
            a graph of self-loops only.
        backbone_weights: Local torchvision weights for the backbone; None for random init.

    Raises:
        ClassNamesMismatchError: ``mask`` describes another class set.
        ConfigError: ``mask`` was made for another mode or threshold than ``config``.
    """
    if isinstance(mask, CorrelationMask):
        if (mask.mode, mask.threshold) != (config.mask_mode, config.mask_threshold):
            raise ConfigError(
                f"the mask was made for {mask.mode} mode at P(j|i) > {mask.threshold}, the model is configured "
                f"for {config.mask_mode} mode at > {config.mask_threshold}; rebuild the mask or change the config"
            )
        mask = mask.aligned_to(class_names).mask
    elif mask is None:
        mask = torch.eye(config.num_classes, dtype=torch.bool)
    return MaskedGATClassifier(config, class_names, torch.as_tensor(mask), backbone_weights).eval()
