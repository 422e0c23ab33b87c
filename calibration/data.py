"""The calibration set: which images, their fingerprint, and how well they cover the classes.

Images come from a folder, or from a COCO-format split (a folder plus its instances JSON), which
adds labels and so a per-class coverage report. The selection is deterministic (sorted names,
evenly spaced when capped), and its fingerprint hashes every chosen file's name and content, so a
range cache can tell whether it was computed on exactly these images.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputFileError
from core.files import sha256_file
from core.preprocessing import image_files
from models.coco import read_labels_in_order

logger = logging.getLogger(__name__)

# Below this many images, activation ranges (especially the histogram methods') are noisy;
# TensorRT's and ONNX Runtime's guides calibrate on a few hundred to a thousand images.
SMALL_SET = 100


@dataclass(frozen=True)
class CalibrationSet:
    """The chosen images, with labels [images, classes] in the model's class order when known."""

    root: Path
    files: tuple[Path, ...]
    class_names: tuple[str, ...]
    labels: np.ndarray | None = None

    def fingerprint(self) -> str:
        """sha256 over each file's path relative to ``root`` and the sha256 of its content."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{path.relative_to(self.root).as_posix()}\0{sha256_file(path)}\n".encode())
        return digest.hexdigest()

    def coverage(self) -> dict[str, int] | None:
        """Images per class, or None when the set has no labels."""
        if self.labels is None:
            return None
        return dict(zip(self.class_names, (int(n) for n in self.labels.sum(axis=0)), strict=True))

    def warnings(self) -> list[str]:
        """What makes this set a weak basis for activation ranges."""
        found = []
        if len(self.files) < SMALL_SET:
            found.append(
                f"only {len(self.files)} calibration images (fewer than {SMALL_SET}): ranges may not represent "
                "deployment data; use a few hundred"
            )
        coverage = self.coverage()
        if coverage is None:
            found.append("the calibration images carry no labels, so class coverage is unknown; pass --annotations")
        else:
            missing = [name for name, count in coverage.items() if count == 0]
            if missing:
                found.append(f"{len(missing)} classes have no calibration image: {', '.join(missing)}")
        return found


def calibration_set(
    data: str | os.PathLike,
    class_names: Sequence[str],
    *,
    annotations: str | os.PathLike | None = None,
    max_images: int | None = None,
) -> CalibrationSet:
    """The images in ``data`` (with ``annotations``: the split's images and labels).

    Args:
        data: An image folder.
        class_names: The model's class order, for the labels.
        annotations: A COCO instances JSON whose ``file_name`` entries are relative to ``data``.
        max_images: Keep at most this many, evenly spaced in name order.

    Raises:
        InputFileError: No images found, or the annotations are unreadable.
        ClassNamesMismatchError: The annotations describe other classes than the model.
        ConfigError: ``max_images`` is below 1.
    """
    root = Path(data)
    if max_images is not None and max_images < 1:
        raise ConfigError(f"--max-images must be at least 1, got {max_images}")
    if not root.is_dir():
        raise InputFileError(f"calibration data folder not found: {root}")
    labels = None
    if annotations is None:
        files = image_files(root)
    else:
        coco = read_labels_in_order(annotations, class_names)
        labels = coco.labels
        files = [root / name for name in coco.file_names]
        absent = [str(p) for p in files if not p.is_file()]
        if absent:
            raise InputFileError(f"{len(absent)} images named in {annotations} are missing, e.g. {absent[0]}")
    if not files:
        raise InputFileError(f"{annotations} lists no annotated image")
    if max_images is not None and len(files) > max_images:
        keep = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in keep]
        labels = None if labels is None else labels[keep]
    logger.info("calibration set: %d images from %s", len(files), root)
    return CalibrationSet(root, tuple(files), tuple(class_names), labels)
