"""Image transforms for training and evaluation.

Evaluation uses the one preprocessing definition (``core.preprocessing.preprocess``), so a
model is evaluated on exactly the tensors it is served on. Training follows
ML-GCN: a multi-scale crop, a horizontal flip, then the same normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from core.config import ModelConfig
from core.preprocessing import preprocess

# ML-GCN's MultiScaleCrop: crop sides are these fractions of the image's shorter side.
CROP_SCALES = (1.0, 0.875, 0.75, 0.66, 0.5)
MAX_DISTORT = 1  # width and height scales may differ by at most this many steps


class EvalTransform:
    """PIL image → the model's input tensor [3, S, S], via the one preprocessing definition."""

    def __init__(self, config: ModelConfig) -> None:
        self.image_size = config.image_size
        self.preprocessing = config.preprocessing

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess(image, self.image_size, self.preprocessing))


class MultiScaleCrop(torch.nn.Module):
    """ML-GCN's multi-scale crop: a random crop whose sides are drawn from ``scales`` of the
    shorter side (aspect distorted by at most ``max_distort`` steps), resized to ``size``².

    Random numbers come from torch's generator, so runs are reproducible under ``torch.manual_seed``.
    """

    def __init__(self, size: int, scales: Sequence[float] = CROP_SCALES, max_distort: int = MAX_DISTORT) -> None:
        super().__init__()
        self.size = size
        self.pairs = [(i, j) for i in range(len(scales)) for j in range(len(scales)) if abs(i - j) <= max_distort]
        self.scales = tuple(scales)

    def forward(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        base = min(width, height)
        i, j = self.pairs[int(torch.randint(len(self.pairs), ()))]
        crop_w, crop_h = max(1, int(base * self.scales[i])), max(1, int(base * self.scales[j]))
        left = int(torch.randint(width - crop_w + 1, ()))
        top = int(torch.randint(height - crop_h + 1, ()))
        return TF.resized_crop(
            image, top, left, crop_h, crop_w, [self.size, self.size], interpolation=v2.InterpolationMode.BILINEAR
        )


def train_transform(config: ModelConfig) -> v2.Compose:
    """ML-GCN's training augmentation at the model's input size, normalised as in evaluation."""
    pre = config.preprocessing
    return v2.Compose(
        [
            MultiScaleCrop(config.image_size),
            v2.RandomHorizontalFlip(),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )
