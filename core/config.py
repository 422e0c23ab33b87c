"""Model configuration: everything besides weights that is needed to rebuild and serve a model.

Plain data (no torch), so that ``runtime`` can read preprocessing from artifacts without torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

MaskMode = Literal["seed", "softmax"]
MASK_MODES: tuple[str, ...] = ("seed", "softmax")
BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MASK_THRESHOLD = 0.1
DEFAULT_DECISION_THRESHOLD = 0.5


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input.

    Attributes:
        resize: ``"warp"``: resize to the square input size ignoring aspect ratio (ML-GCN's
            validation transform).
        interpolation: Resampling filter of the resize.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided by after the mean.
        channel_order: Channel order of the input tensor.
    """

    resize: Literal["warp"] = "warp"
    interpolation: Literal["bilinear"] = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: Literal["RGB"] = "RGB"

    def __post_init__(self) -> None:
        _require(self.resize == "warp", f"preprocessing.resize must be 'warp', got {self.resize!r}")
        _require(
            self.interpolation == "bilinear",
            f"preprocessing.interpolation must be 'bilinear', got {self.interpolation!r}",
        )
        _require(self.channel_order == "RGB", f"preprocessing.channel_order must be 'RGB', got {self.channel_order!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            _require(len(values) == 3, f"preprocessing.{name} needs 3 values (R, G, B), got {values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        _require(all(s > 0 for s in self.std), f"preprocessing.std must be positive, got {self.std!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and serving settings of a masked-GAT classifier.

    Attributes:
        num_classes: N, the number of labels (graph nodes).
        backbone: A torchvision ResNet name.
        image_size: Side of the square input image, in pixels.
        mask_mode: ``"softmax"`` (masked pairs get zero attention) or ``"seed"`` (the seed
            code's ``softmax(e * mask)``, kept to serve its checkpoints).
        mask_threshold: Graph edge i→j kept where ``P(j | i) > mask_threshold`` (strict).
        decision_threshold: A label is predicted where its probability is at least this.
        use_gat: False turns the graph attention off (scores = the linear layer's output), for
            ablations; the mask is kept so artifacts stay alike.
        gat_dropout: Attention dropout during training.
        negative_slope: LeakyReLU slope of the attention logits.
        preprocessing: Image preprocessing the model was trained with.
    """

    num_classes: int
    backbone: str = "resnet101"
    image_size: int = 448
    mask_mode: MaskMode = "softmax"
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    decision_threshold: float = DEFAULT_DECISION_THRESHOLD
    use_gat: bool = True
    gat_dropout: float = 0.0
    negative_slope: float = 0.2
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        _require(self.num_classes >= 1, f"num_classes must be at least 1, got {self.num_classes}")
        _require(
            self.backbone in BACKBONES, f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}"
        )
        _require(self.image_size >= 32, f"image_size must be at least 32 pixels, got {self.image_size}")
        _require(
            self.mask_mode in MASK_MODES, f"unknown mask mode {self.mask_mode!r}; choose one of {', '.join(MASK_MODES)}"
        )
        _require(0.0 <= self.mask_threshold < 1.0, f"mask_threshold must be in [0, 1), got {self.mask_threshold}")
        _require(
            0.0 < self.decision_threshold < 1.0,
            f"decision_threshold must be in (0, 1), got {self.decision_threshold}",
        )
        _require(0.0 <= self.gat_dropout < 1.0, f"gat_dropout must be in [0, 1), got {self.gat_dropout}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (dicts, lists, numbers, strings) for checkpoints and manifests."""
        data = dataclasses.asdict(self)
        data["preprocessing"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["preprocessing"].items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused.

        Raises:
            ConfigError: A key is unknown or a value is invalid.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _require(not unknown, f"unknown model config keys {unknown}; this file needs a newer version of the toolkit")
        values = dict(data)
        pre = values.pop("preprocessing", {})
        pre_known = {f.name for f in dataclasses.fields(Preprocessing)}
        _require(set(pre) <= pre_known, f"unknown preprocessing keys {sorted(set(pre) - pre_known)}")
        try:
            return cls(**values, preprocessing=Preprocessing(**pre))
        except TypeError as exc:
            raise ConfigError(f"incomplete model config: {exc}") from exc


# The graph attention is over all class pairs: N² entries in the mask, its statistics and the head.
MAX_CLASSES = 4096


def validate_class_names(names: Sequence[str], source: str = "class names") -> tuple[str, ...]:
    """Returns ``names`` as a tuple after checking they are non-empty, unique strings.

    Raises:
        ConfigError: A name is empty, not a string, or repeated, or there are more than MAX_CLASSES.
    """
    result = tuple(names)
    if not result:
        raise ConfigError(f"{source}: no class names")
    if len(result) > MAX_CLASSES:
        gib = len(result) ** 2 * 8 / 2**30
        raise ConfigError(
            f"{source}: {len(result)} classes; the model's {len(result)}×{len(result)} co-occurrence mask would take "
            f"{gib:.1f} GiB, and this toolkit takes at most {MAX_CLASSES} classes"
        )
    bad = [n for n in result if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ConfigError(f"{source}: class names must be non-empty strings, found {bad[:3]!r}")
    seen: set[str] = set()
    repeated = sorted({n for n in result if n in seen or seen.add(n)})
    if repeated:
        raise ConfigError(f"{source}: repeated class names {repeated[:5]}")
    return result


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
