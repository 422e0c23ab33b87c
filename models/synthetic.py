"""``python -m models.synthetic``: a generated COCO-format multi-label dataset for tests and the demo.

Each image shows a few of K drawable shape classes, in random colours and sizes, on a textured
background. Labels co-occur non-uniformly, so the co-occurrence mask is informative: some pairs
almost always appear together, some never do. Everything is deterministic for a seed.

Layout written::

    OUTPUT/train/000000.jpg …        OUTPUT/instances_train.json
    OUTPUT/val/000000.jpg …          OUTPUT/instances_val.json
"""

from __future__ import annotations

import colorsys
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from core import cli
from core.errors import ConfigError
from core.files import new_folder_mode, staging_prefix, sweep_leftovers, write_json

from .splits import SPLITS, split_annotations, split_images

logger = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = (
    "circle",
    "ring",
    "square",
    "diamond",
    "triangle",
    "star",
    "cross",
    "hexagon",
    "crescent",
    "bar",
)
# Category ids on purpose neither 1..K nor in name order, so the two class orders differ.
_CATEGORY_IDS = (7, 3, 12, 5, 1, 9, 2, 11, 4, 8)
# Base frequency with which a class starts a scene.
_SEED_WEIGHT = (0.14, 0.06, 0.14, 0.08, 0.10, 0.12, 0.10, 0.10, 0.06, 0.10)
# (a, b, p): once a is in the image, b joins with probability p.
_PARTNERS = (
    ("ring", "circle", 0.95),  # a ring almost always comes with a circle
    ("crescent", "star", 0.9),  # crescents with stars
    ("star", "crescent", 0.35),
    ("square", "triangle", 0.6),  # "houses"
    ("triangle", "square", 0.5),
    ("cross", "bar", 0.5),
    ("bar", "cross", 0.3),
    ("circle", "hexagon", 0.25),
)
# Pairs that never appear together.
_NEVER = (("diamond", "circle"), ("diamond", "ring"), ("star", "square"), ("hexagon", "triangle"))
_MAX_OBJECTS = 4
# Each class draws its hue around its own centre, spread wider than the spacing of the centres:
# colour hints at the class, shape decides it.
_HUE_SPREAD = 0.08
_EMPTY_FRACTION = 0.02  # images with no object (and so no annotation), skipped by the loaders


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Attributes:
        train: Number of training images.
        val: Number of validation images.
        image_size: Side of the square images, in pixels.
        num_classes: K, the first K of ``SHAPES``.
        seed: Seed of everything random.
    """

    train: int = 1600
    val: int = 400
    image_size: int = 64
    num_classes: int = len(SHAPES)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(SHAPES):
            raise ConfigError(f"num_classes must be between 2 and {len(SHAPES)}, got {self.num_classes}")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if self.train < 1 or self.val < 1:
            raise ConfigError(f"train and val need at least one image each, got {self.train} and {self.val}")


def generate(spec: SyntheticSpec, output: str | os.PathLike, *, force: bool = False) -> Path:
    """Writes the dataset to ``output`` (built in a temporary folder, then moved into place).

    Raises:
        ConfigError: ``output`` exists and ``force`` is False.
    """
    output = Path(output)
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists; pass --force to replace it")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is a file; name a folder for the dataset")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(output)
        staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=staging_prefix(output)))
    except OSError as exc:
        raise ConfigError(f"cannot write the dataset next to {output}: {exc.strerror}") from exc
    try:
        # One random stream per split: the validation images do not change with --train.
        for stream, (split, count) in enumerate(zip(SPLITS, (spec.train, spec.val), strict=True)):
            _write_split(staging, split, count, spec, np.random.default_rng([spec.seed, stream]))
        if output.exists():
            shutil.rmtree(output)
        staging.chmod(new_folder_mode())
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _write_split(root: Path, split: str, count: int, spec: SyntheticSpec, rng: np.random.Generator) -> None:
    folder = split_images(root, split)
    folder.mkdir()
    names = SHAPES[: spec.num_classes]
    images, annotations = [], []
    for index in tqdm(range(count), desc=f"generating {split}", unit="img", leave=False, disable=None):
        labels = _sample_labels(names, rng)
        image, boxes = _draw(labels, spec.image_size, rng)
        file_name = f"{index:06d}.jpg"
        image.save(folder / file_name, quality=92)
        images.append({"id": index + 1, "file_name": file_name, "width": spec.image_size, "height": spec.image_size})
        for name, box in zip(labels, boxes, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": _CATEGORY_IDS[SHAPES.index(name)],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": _CATEGORY_IDS[SHAPES.index(n)], "name": n, "supercategory": "shape"} for n in names]
    data = {"images": images, "annotations": annotations, "categories": categories}
    write_json(split_annotations(root, split), data, indent=None)


def _sample_labels(names: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    if rng.random() < _EMPTY_FRACTION:
        return []
    weights = np.array(_SEED_WEIGHT[: len(names)])
    chosen: list[str] = [names[rng.choice(len(names), p=weights / weights.sum())]]
    if rng.random() < 0.45:  # a second, independent start
        chosen.append(names[rng.choice(len(names), p=weights / weights.sum())])
    for a, b, p in _PARTNERS:
        if a in chosen and b in names and rng.random() < p:
            chosen.append(b)
    labels: list[str] = []
    for name in chosen:
        if name not in labels and not any({name, other} == set(pair) for pair in _NEVER for other in labels):
            labels.append(name)
    return labels[:_MAX_OBJECTS]


def _draw(labels: list[str], size: int, rng: np.random.Generator) -> tuple[Image.Image, list[list[float]]]:
    image = _background(size, rng)
    draw = ImageDraw.Draw(image)
    boxes = []
    for name in labels:
        radius = float(rng.uniform(0.14, 0.24) * size)
        cx, cy = (float(rng.uniform(radius, size - radius)) for _ in range(2))
        colour = _colour(SHAPES.index(name), rng)
        _draw_shape(draw, name, cx, cy, radius, float(rng.uniform(0, 2 * math.pi)), colour)
        boxes.append([round(cx - radius, 1), round(cy - radius, 1), round(2 * radius, 1), round(2 * radius, 1)])
    return image, boxes


def _colour(class_index: int, rng: np.random.Generator) -> tuple[int, int, int]:
    hue = (class_index / len(SHAPES) + rng.normal(0.0, _HUE_SPREAD)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.5, 1.0))
    return tuple(int(255 * c) for c in rgb)  # type: ignore[return-value]


def _background(size: int, rng: np.random.Generator) -> Image.Image:
    base = rng.integers(60, 196, 3).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    direction = rng.uniform(-25, 25, 3).astype(np.float32)
    gradient = ramp[None, :, None] * direction[None, None, :]
    stripes = 8.0 * np.sin(ramp[:, None] * rng.uniform(4, 14) + rng.uniform(0, 6))[:, :, None]
    noise = rng.normal(0.0, 8.0, (size, size, 3)).astype(np.float32)
    pixels = np.clip(base + gradient + stripes + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _polygon(cx: float, cy: float, radii: list[float], angle: float) -> list[tuple[float, float]]:
    step = 2 * math.pi / len(radii)
    return [(cx + r * math.cos(angle + k * step), cy + r * math.sin(angle + k * step)) for k, r in enumerate(radii)]


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, angle: float, colour) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if name == "circle":
        draw.ellipse(box, fill=colour)
    elif name == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    elif name == "square":
        draw.polygon(_polygon(cx, cy, [r] * 4, angle), fill=colour)
    elif name == "diamond":
        draw.polygon(_polygon(cx, cy, [r, 0.55 * r] * 2, angle), fill=colour)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, [r] * 3, angle), fill=colour)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, [r, 0.4 * r] * 5, angle), fill=colour)
    elif name == "cross":
        arm = 0.3 * r
        for a in (angle, angle + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            draw.line((cx - r * dx, cy - r * dy, cx + r * dx, cy + r * dy), fill=colour, width=max(2, int(2 * arm)))
    elif name == "hexagon":
        draw.polygon(_polygon(cx, cy, [r] * 6, angle), fill=colour)
    elif name == "crescent":
        # The outer arc of one circle, back along the arc of a smaller circle shifted inwards.
        ix, iy = cx + 0.4 * r * math.cos(angle), cy + 0.4 * r * math.sin(angle)
        sweep = [0.8 * math.pi * (k / 12 - 1) for k in range(25)]
        outer = [(cx + r * math.cos(angle + math.pi + t), cy + r * math.sin(angle + math.pi + t)) for t in sweep]
        inner = [
            (ix + 0.75 * r * math.cos(angle + math.pi + t), iy + 0.75 * r * math.sin(angle + math.pi + t))
            for t in reversed(sweep)
        ]
        draw.polygon(outer + inner, fill=colour)
    elif name == "bar":
        dx, dy = math.cos(angle), math.sin(angle)
        draw.line((cx - r * dx, cy - r * dy, cx + r * dx, cy + r * dy), fill=colour, width=max(2, int(0.35 * r)))


def main(argv: list[str] | None = None) -> int:
    """``python -m models.synthetic``: write the generated dataset."""
    defaults = SyntheticSpec()
    parser = cli.parser("python -m models.synthetic", "Generate a COCO-format multi-label shapes dataset.")
    parser.add_argument("--output", type=Path, required=True, help="folder to create")
    parser.add_argument("--train", type=int, default=defaults.train, help="training images")
    parser.add_argument("--val", type=int, default=defaults.val, help="validation images")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="image side in pixels")
    parser.add_argument("--num-classes", type=int, default=defaults.num_classes, help=f"classes, at most {len(SHAPES)}")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--force", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)

    def body() -> None:
        spec = SyntheticSpec(args.train, args.val, args.image_size, args.num_classes, args.seed)
        generate(spec, args.output, force=args.force)
        print(f"wrote {spec.train} train and {spec.val} val images of {spec.num_classes} classes to {args.output}")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
