"""torchvision ResNet trunks (everything before global pooling), with weights from local files only."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from core.config import BACKBONES
from core.errors import ConfigError, WeightsError

logger = logging.getLogger(__name__)

# The trunk keeps torchvision's child names, so torchvision weight files load into it as they are.
TRUNK_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_HEAD_PREFIXES = ("fc.",)
_BASE_WIDTH = 64  # output channels of layer1's first convolution in every plain ResNet
# Blocks per stage and whether the blocks are bottlenecks, for each torchvision ResNet.
_LAYOUTS: dict[tuple[tuple[int, int, int, int], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


def _factory(name: str) -> Callable[..., torchvision.models.ResNet]:
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return getattr(torchvision.models, name)


def build_backbone(name: str, weights: str | os.PathLike | None = None) -> tuple[nn.Sequential, int]:
    """A ResNet trunk mapping [B, 3, H, W] images to [B, C, H/32, W/32] features.

    Args:
        name: One of ``BACKBONES``.
        weights: A local torchvision state_dict for this ResNet (e.g. ``resnet101-63fe2227.pth``);
            its ``fc.*`` entries are ignored. None keeps torchvision's random initialisation.

    Returns:
        The trunk and its number of output channels C.

    Raises:
        ConfigError: ``name`` is not a supported backbone.
        WeightsError: ``weights`` is missing, unreadable, or made for another architecture.
    """
    resnet = _factory(name)(weights=None)
    if weights is not None:
        state = read_state_dict(weights)
        trunk_state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
        check_trunk_state(trunk_state, resnet.state_dict(), name, source=str(weights))
        resnet.load_state_dict(trunk_state, strict=False)
        logger.info("loaded %s backbone weights from %s", name, weights)
    trunk = nn.Sequential(OrderedDict((layer, getattr(resnet, layer)) for layer in TRUNK_LAYERS))
    return trunk, resnet.fc.in_features


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads a state dict with ``weights_only=True``; unwraps ``{"state_dict": ...}`` and ``module.``.

    Raises:
        WeightsError: The file is missing, unreadable, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}; pass a local torchvision state_dict file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise WeightsError(
            f"{path}: not a readable torch weights file ({type(exc).__name__}); it is corrupt, or holds a whole "
            "pickled model: load it where it was made and save model.state_dict() instead"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state_dict of tensors, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_trunk_state(
    state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], name: str, source: str
) -> None:
    """Checks that ``state`` holds exactly the trunk entries of ``reference``, shape for shape.

    Args:
        state: Trunk weights to check (torchvision key names).
        reference: State dict of a ``name`` ResNet or trunk; ``fc.*`` entries are ignored.
        name: The backbone ``reference`` was built as, for the message.
        source: Where ``state`` came from, for the message.

    Raises:
        WeightsError: Keys are missing or unexpected, or shapes differ; names the architecture
            the weights were made for when it can be recognised.
    """
    expected = {k: v for k, v in reference.items() if not k.startswith(_HEAD_PREFIXES)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong_shape):
        return
    found = infer_resnet(state)
    hint = f"they look like {found} weights" if found and found != name else "they match no torchvision ResNet"
    detail = "; ".join(
        f"{label} {len(keys)} (e.g. {sorted(keys)[0]})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
        if keys
    )
    raise WeightsError(f"{source}: weights do not fit {name} ({detail}); {hint}. Choose the matching --backbone")


def infer_resnet(state: Mapping[str, torch.Tensor]) -> str | None:
    """The torchvision ResNet whose trunk layout and width match ``state``, or None."""
    first_conv = state.get("layer1.0.conv1.weight")
    if first_conv is None or first_conv.shape[0] != _BASE_WIDTH:  # e.g. wide_resnet50_2 has 128
        return None
    blocks = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.") and k.split(".")[1].isdigit()}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = any(".conv3." in k for k in state)
    return _LAYOUTS.get((tuple(blocks), bottleneck))  # type: ignore[arg-type]
