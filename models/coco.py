"""COCO instances JSON → image-level multi-label targets.

An image's labels are the union of its annotations' categories; images without annotations are
skipped (as ML-GCN does) and counted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.config import validate_class_names
from core.errors import AnnotationError, ConfigError

from .class_names import permutation

logger = logging.getLogger(__name__)

ClassOrder = Literal["alphabetical", "id"]
CLASS_ORDERS: tuple[str, ...] = ("alphabetical", "id")


@dataclass(frozen=True)
class CocoLabels:
    """Image-level labels read from a COCO instances file.

    Attributes:
        class_names: Category names in the chosen class order.
        category_ids: COCO category ids, aligned with ``class_names``.
        image_ids: Ids of the images kept (those with at least one annotation).
        file_names: Their ``file_name`` entries, aligned with ``image_ids``.
        labels: [images, classes] bool, True where the image shows the class.
        skipped_images: Images listed without any annotation, left out.
    """

    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]
    image_ids: tuple[int, ...]
    file_names: tuple[str, ...]
    labels: np.ndarray
    skipped_images: int


def read_coco_labels(path: str | os.PathLike, class_order: ClassOrder) -> CocoLabels:
    """Reads a COCO instances JSON into image-level labels.

    Args:
        path: The instances JSON (``images``, ``annotations``, ``categories``).
        class_order: ``"alphabetical"`` (by name, as ML-GCN's ``coco_adj.pkl``) or ``"id"``
            (ascending category id, as most other code); there is no default on purpose.

    Raises:
        AnnotationError: The file is missing, not JSON, or inconsistent (names the file).
        ConfigError: ``class_order`` is not one of ``CLASS_ORDERS``.
    """
    if class_order not in CLASS_ORDERS:
        raise ConfigError(f"unknown class order {class_order!r}; choose one of {', '.join(CLASS_ORDERS)}")
    path = Path(path)
    data = _read_json(path)
    try:
        pairs = [(_int(c["id"]), str(c["name"])) for c in _field(data, "categories", path)]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{path}: every category needs an integer 'id' and a 'name' ({exc!r})") from exc
    if len({cid for cid, _ in pairs}) != len(pairs):
        raise AnnotationError(f"{path}: repeated category ids")
    pairs.sort(key=(lambda p: p[1]) if class_order == "alphabetical" else (lambda p: p[0]))
    class_names = validate_class_names([name for _, name in pairs], f"{path} categories")
    column = {cid: k for k, (cid, _) in enumerate(pairs)}

    try:
        listed = [(_int(img["id"]), str(img["file_name"])) for img in _field(data, "images", path)]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{path}: every image needs an integer 'id' and a 'file_name' ({exc!r})") from exc
    images = dict(listed)
    if len(images) != len(listed):
        raise AnnotationError(f"{path}: repeated image ids")
    labelled: dict[int, set[int]] = {}
    for ann in _field(data, "annotations", path):
        try:
            image_id, category_id = _int(ann["image_id"]), _int(ann["category_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError(f"{path}: an annotation lacks an integer image_id/category_id ({exc!r})") from exc
        if category_id not in column:
            raise AnnotationError(
                f"{path}: annotation {ann.get('id', '?')} uses category id {category_id}, "
                f"which is not among the file's {len(column)} categories"
            )
        if image_id not in images:
            raise AnnotationError(f"{path}: annotation {ann.get('id', '?')} refers to unknown image id {image_id}")
        labelled.setdefault(image_id, set()).add(column[category_id])

    if not labelled:
        raise AnnotationError(f"{path}: no image has an annotation; there are no labels to learn or count")
    image_ids = tuple(i for i in images if i in labelled)
    labels = np.zeros((len(image_ids), len(class_names)), dtype=bool)
    for row, image_id in enumerate(image_ids):
        labels[row, sorted(labelled[image_id])] = True
    skipped = len(images) - len(image_ids)
    if skipped:
        logger.info("%s: skipped %d of %d images that have no annotation", path, skipped, len(images))
    return CocoLabels(
        class_names=class_names,
        category_ids=tuple(cid for cid, _ in pairs),
        image_ids=image_ids,
        file_names=tuple(images[i] for i in image_ids),
        labels=labels,
        skipped_images=skipped,
    )


def read_labels_in_order(path: str | os.PathLike, class_names: Sequence[str]) -> CocoLabels:
    """A COCO file's labels with their columns in ``class_names`` order (a model's), mapped by name.

    Raises:
        AnnotationError: As :func:`read_coco_labels`.
        ClassNamesMismatchError: The file's categories are another class set than ``class_names``.
    """
    labels = read_coco_labels(path, "alphabetical")  # either order: columns are mapped by name next
    order = permutation(labels.class_names, class_names, f"{path} categories")
    if order is None:
        return labels
    return dataclasses.replace(
        labels,
        class_names=tuple(class_names),
        category_ids=tuple(labels.category_ids[i] for i in order),
        labels=labels.labels[:, order],
    )


def _int(value: Any) -> int:
    """An id that is an integer in the JSON (not a float, string or bool that converts to one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer id")
    return value


def _read_json(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise AnnotationError(f"{path}: its JSON is nested too deeply to be COCO instances") from exc
    if not isinstance(data, Mapping):
        raise AnnotationError(f"{path}: expected a COCO instances object, found {type(data).__name__}")
    return data


def _field(data: Mapping[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise AnnotationError(f"{path}: missing the COCO list {key!r}; is this an instances_*.json file?")
    return value
