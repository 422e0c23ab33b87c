"""A COCO-format multi-label dataset: an image folder and an instances JSON.

Labels are the union of each image's annotation categories, in the model's class order (mapped
by name). Images without annotations are skipped and counted (as ML-GCN does). A corrupt image is
logged and left out of its batch by :func:`collate_readable`, so one bad file does not end a run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from core.errors import AnnotationError, InputFileError
from core.preprocessing import load_rgb

from .coco import ClassOrder, read_coco_labels, read_labels_in_order

logger = logging.getLogger(__name__)

Item = tuple[torch.Tensor, torch.Tensor, int]


class CocoMultiLabel(Dataset):
    """Images and their multi-hot targets from a COCO instances file.

    Args:
        images: Folder the annotation's ``file_name`` entries are relative to.
        annotations: The instances JSON.
        transform: PIL image → tensor.
        class_names: Target column order (a model's classes); the file's categories must be the
            same set. None keeps the file's categories in ``class_order``.
        class_order: Order of the file's categories when ``class_names`` is None.

    Raises:
        AnnotationError: The JSON is malformed, or names images that are not in ``images``.
        ClassNamesMismatchError: The file's categories are not ``class_names``.
    """

    def __init__(
        self,
        images: str | os.PathLike,
        annotations: str | os.PathLike,
        transform: Callable[[Any], torch.Tensor],
        class_names: Sequence[str] | None = None,
        class_order: ClassOrder = "alphabetical",
    ) -> None:
        if class_names is None:
            labels = read_coco_labels(annotations, class_order)
        else:
            labels = read_labels_in_order(annotations, class_names)
        targets = labels.labels
        self.class_names = labels.class_names
        self.files = [Path(images) / name for name in labels.file_names]
        missing = [path for path in self.files if not path.is_file()]
        if missing:
            raise AnnotationError(
                f"{annotations}: {len(missing)} of {len(self.files)} listed images are not in {images} "
                f"(e.g. {missing[0].name}); check the image folder"
            )
        self.targets = torch.from_numpy(targets.astype("float32"))
        self.skipped_unannotated = labels.skipped_images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Item | None:
        try:
            image = load_rgb(self.files[index])
        except InputFileError as exc:
            logger.warning("left out an unreadable image: %s", exc)
            return None
        return self.transform(image), self.targets[index], index


def collate_readable(batch: list[Item | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Batches the items that could be read; None when none could."""
    readable = [item for item in batch if item is not None]
    return default_collate(readable) if readable else None
