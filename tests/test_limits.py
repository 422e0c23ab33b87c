"""Inputs that would exhaust memory or the stack are refused with a typed error that says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import MAX_CLASSES, validate_class_names
from core.errors import AnnotationError, ConfigError, InputFileError
from core.files import read_json
from models.coco import read_coco_labels


def test_more_classes_than_the_mask_can_hold_are_refused() -> None:
    assert len(validate_class_names([f"c{i}" for i in range(MAX_CLASSES)])) == MAX_CLASSES
    with pytest.raises(ConfigError, match=r"100000 classes; .* would take 74\.5 GiB, and this toolkit takes at most"):
        validate_class_names([f"c{i}" for i in range(100_000)])


def test_deeply_nested_json_is_a_typed_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputFileError, match="nested too deeply"):
        read_json(deep)
    with pytest.raises(AnnotationError, match="nested too deeply"):
        read_coco_labels(deep, "alphabetical")


def test_a_coco_file_with_too_many_categories_is_refused_before_any_matrix(tmp_path: Path) -> None:
    categories = [{"id": i, "name": f"c{i}"} for i in range(100_000)]
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    with pytest.raises((ConfigError, AnnotationError), match="100000 classes"):
        read_coco_labels(coco, "alphabetical")
