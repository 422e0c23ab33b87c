"""The data-folder layout: a training and a validation split, each an image folder and its COCO
instances JSON. ``models.synthetic`` writes it; training, the demo and the tests read it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val")


def split_images(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/train`` (or ``ROOT/val``): the split's images."""
    return Path(root) / split


def split_annotations(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/instances_train.json`` (or ``…_val.json``): the split's COCO instances file."""
    return Path(root) / f"instances_{split}.json"


@dataclass(frozen=True)
class Splits:
    """Where the training and validation images and their annotations are."""

    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path

    @classmethod
    def in_folder(cls, root: str | os.PathLike) -> Splits:
        """The layout under ``root`` that ``models.synthetic`` writes."""
        train, val = SPLITS
        return cls(
            split_images(root, train),
            split_annotations(root, train),
            split_images(root, val),
            split_annotations(root, val),
        )

    def annotated(self) -> bool:
        """Whether both annotation files exist (the images are checked when the splits are read)."""
        return self.train_annotations.is_file() and self.val_annotations.is_file()
