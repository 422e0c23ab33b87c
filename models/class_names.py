"""Class-name lists: reading them, checking them, and mapping one class order onto another.

Two COCO class orders are in common use (alphabetical, as in ML-GCN's ``coco_adj.pkl``, and
ascending category id), so every per-class array travels with its names and is only ever
reordered by name, never used in an order it was not made for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.config import validate_class_names
from core.errors import ClassNamesMismatchError, InputFileError

from .safe_pickle import load_pickle


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """Reads class names from ``.txt`` (one a line), ``.json`` (a list) or ``.pkl`` (a list).

    Pickles go through the restricted loader.

    Raises:
        InputFileError: The file is missing or holds no list of names.
        ConfigError: The names are empty or repeated.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"class-names file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        names: object = load_pickle(path)
    elif suffix in (".txt", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
            names = (
                json.loads(text) if suffix == ".json" else [line.strip() for line in text.splitlines() if line.strip()]
            )
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InputFileError(f"{path}: not UTF-8 text of class names ({type(exc).__name__})") from exc
    else:
        raise InputFileError(f"{path}: class names must be a .txt (one a line), .json or .pkl list")
    if isinstance(names, np.ndarray) and names.ndim == 1:
        names = names.tolist()
    if not isinstance(names, list | tuple):
        raise InputFileError(f"{path}: expected a list of class names, found {type(names).__name__}")
    return validate_class_names(names, str(path))


def permutation(found: Sequence[str], wanted: Sequence[str], what: str = "class names") -> np.ndarray | None:
    """Index array ``p`` with ``found[p[k]] == wanted[k]``, or None when the orders agree.

    Raises:
        ClassNamesMismatchError: ``found`` and ``wanted`` are not the same set of names.
    """
    found, wanted = tuple(found), tuple(wanted)
    if found == wanted:
        return None
    if len(found) != len(wanted) or set(found) != set(wanted):
        raise ClassNamesMismatchError(f"{what} describe another class set: {describe_difference(found, wanted)}")
    index = {name: i for i, name in enumerate(found)}
    return np.array([index[name] for name in wanted], dtype=np.int64)


def describe_difference(found: Sequence[str], expected: Sequence[str]) -> str:
    """One line on how two class lists differ (order, or membership)."""
    if len(found) == len(expected) and set(found) == set(expected):
        first = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
        return f"same classes in another order; index {first} is {found[first]!r} here, {expected[first]!r} expected"
    missing = sorted(set(expected) - set(found))[:5]
    extra = sorted(set(found) - set(expected))[:5]
    return f"{len(found)} classes where {len(expected)} were expected; missing {missing}, unexpected {extra}"
