"""Readers of co-occurrence statistics in the formats found in the wild.

- COCO instances JSON: counted here from image-level labels, in an explicit class order.
- The seed's ``coco_correlations.pkl``: a dict whose ``pp`` is P(j | i); names from ``coco_names.pkl``.
- ML-GCN's ``*_adj.pkl``: ``adj`` (pair counts, diagonal 0) and ``nums`` (per-class image counts).
- The project's own mask file (``.npz``), whose statistics can be re-thresholded.
Pickles go through the restricted loader; the pickled formats carry no names, so they are required.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.config import DEFAULT_MASK_THRESHOLD, MaskMode
from core.errors import ConfigError, CorrelationError
from core.files import sha256_file

from .class_names import read_class_names
from .coco import ClassOrder, read_coco_labels
from .correlation import Correlation, CorrelationMask
from .safe_pickle import load_pickle

logger = logging.getLogger(__name__)


def read_correlation(
    path: str | os.PathLike, names: str | os.PathLike | None = None, class_order: ClassOrder | None = None
) -> Correlation:
    """Reads statistics from any supported source, chosen by the file's suffix and content.

    Args:
        path: ``.json`` (COCO instances), ``.pkl`` (seed ``pp`` or ML-GCN ``adj``/``nums``) or
            ``.npz`` (a mask file).
        names: Class-names file; required for pickles, refused for the others (they carry names).
        class_order: ``"alphabetical"`` or ``"id"``; required for COCO JSON, refused otherwise.

    Raises:
        ConfigError: An argument is missing or does not apply to this source.
        CorrelationError, AnnotationError, UnsafePickleError: The source is malformed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        _refuse(names, "--names", "a COCO JSON names its own categories")
        if class_order is None:
            raise ConfigError(f"{path}: choose the class order of a COCO JSON explicitly: alphabetical or id")
        return correlation_from_coco(path, class_order)
    _refuse(class_order, "--class-order", "only a COCO JSON has a class order to choose")
    if suffix in (".pkl", ".pickle"):
        if names is None:
            raise ConfigError(f"{path}: a pickle carries no class names; pass the names file that belongs to it")
        return correlation_from_pickle(path, read_class_names(names))
    if suffix == ".npz":
        _refuse(names, "--names", "a mask file carries its class names")
        return CorrelationMask.load(path).correlation
    raise CorrelationError(f"{path}: unknown statistics format; expected a COCO .json, a .pkl or a mask .npz")


def read_mask_source(
    path: str | os.PathLike,
    names: str | os.PathLike | None = None,
    class_order: ClassOrder | None = None,
    threshold: float | None = None,
    mode: MaskMode | None = None,
) -> CorrelationMask:
    """Reads statistics as :func:`read_correlation` does and thresholds them into a mask.

    ``threshold`` and ``mode`` default to a mask file's own values, and otherwise to
    P(j|i) > 0.1 in softmax mode.
    """
    if Path(path).suffix.lower() == ".npz":
        _refuse(names, "--names", "a mask file carries its class names")
        _refuse(class_order, "--class-order", "only a COCO JSON has a class order to choose")
        stored = CorrelationMask.load(path)
        return CorrelationMask(
            stored.correlation,
            stored.threshold if threshold is None else threshold,
            stored.mode if mode is None else mode,
        )
    correlation = read_correlation(path, names, class_order)
    return CorrelationMask(
        correlation, DEFAULT_MASK_THRESHOLD if threshold is None else threshold, "softmax" if mode is None else mode
    )


def probability_from_counts(pair_counts: np.ndarray, class_counts: np.ndarray) -> np.ndarray:
    """P(j | i) = pair_counts[i, j] / class_counts[i]; rows of unseen classes are 0."""
    pair_counts = np.asarray(pair_counts, dtype=np.float64)
    class_counts = np.asarray(class_counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(class_counts[:, None] > 0, pair_counts / class_counts[:, None], 0.0)
    return p


def correlation_from_coco(path: str | os.PathLike, class_order: ClassOrder) -> Correlation:
    """Counts P(j | i) over the images of a COCO instances file (P(i | i) = 1 for seen classes)."""
    labels = read_coco_labels(path, class_order)
    counts = labels.labels.astype(np.int64)
    pairs = counts.T @ counts
    unseen = [n for n, c in zip(labels.class_names, pairs.diagonal(), strict=True) if c == 0]
    if unseen:
        logger.warning("%s: %d classes appear in no image, their rows are 0: %s", path, len(unseen), unseen[:10])
    return _correlation(path, probability_from_counts(pairs, pairs.diagonal()), labels.class_names, "coco-json")


def correlation_from_pickle(path: str | os.PathLike, class_names: tuple[str, ...]) -> Correlation:
    """Reads the seed's ``pp`` pickle or ML-GCN's ``adj``/``nums`` pickle."""
    data = load_pickle(path)
    if not isinstance(data, Mapping):
        raise CorrelationError(f"{path}: expected a dict of arrays, found {type(data).__name__}")
    if "pp" in data:
        return _correlation(path, _array(data, "pp", path), class_names, "seed-pp")
    if "adj" in data and "nums" in data:
        adj, nums = _array(data, "adj", path), _array(data, "nums", path)
        if adj.ndim != 2 or nums.shape != (adj.shape[0],):
            raise CorrelationError(f"{path}: adj {adj.shape} and nums {nums.shape} do not fit together")
        if (adj < 0).any() or (adj > nums[:, None]).any():
            raise CorrelationError(f"{path}: adj holds counts above the class counts in nums; not an ML-GCN adj file")
        return _correlation(path, probability_from_counts(adj, nums), class_names, "mlgcn-adj")
    raise CorrelationError(
        f"{path}: found keys {sorted(map(str, data))}; expected 'pp' (seed) or 'adj' and 'nums' (ML-GCN)"
    )


def _correlation(path: str | os.PathLike, probability: np.ndarray, names: tuple[str, ...], kind: str) -> Correlation:
    try:
        return Correlation(probability, names, kind, sha256_file(path))
    except CorrelationError as exc:
        raise CorrelationError(f"{path}: {exc}") from None


def _array(data: Mapping, key: str, path: str | os.PathLike) -> np.ndarray:
    value = data[key]
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.number):
        raise CorrelationError(f"{path}: {key!r} must be a numeric numpy array, found {type(value).__name__}")
    return value


def _refuse(value: object, flag: str, why: str) -> None:
    if value is not None:
        raise ConfigError(f"{flag} does not apply here: {why}")
