"""Label co-occurrence statistics P(j | i) → the GAT's mask, and the project's mask file.

``python -m models.correlation SOURCE --output mask.npz`` reads a COCO instances JSON, the seed's
``coco_correlations.pkl`` or ML-GCN's ``coco_adj.pkl`` and writes a mask file: an ``.npz`` (read
without pickle) holding P(j | i), the mask, the class names, the threshold, the mask mode and the
source's sha256.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import cli
from core.config import DEFAULT_MASK_THRESHOLD, MASK_MODES, MaskMode, validate_class_names
from core.errors import ConfigError, CorrelationError, DeployError
from core.files import atomic_output, check_outputs

from .class_names import permutation
from .coco import CLASS_ORDERS

logger = logging.getLogger(__name__)

FILE_FORMAT = "masked-gat-correlation"
FILE_VERSION = 1


@dataclass(frozen=True)
class Correlation:
    """Conditional label probabilities with the class order they are in.

    Attributes:
        probability: [N, N] float64, ``probability[i, j] = P(j | i)``.
        class_names: The N class names, in row/column order.
        source: What the statistics were read from (``coco-json``, ``seed-pp``, ``mlgcn-adj``).
        source_sha256: sha256 of the source file.
    """

    probability: np.ndarray
    class_names: tuple[str, ...]
    source: str
    source_sha256: str

    def __post_init__(self) -> None:
        try:
            p = np.asarray(self.probability, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise CorrelationError(f"{self.source}: P(j|i) must be numeric ({exc})") from exc
        names = validate_class_names(self.class_names, f"{self.source} class names")
        if p.ndim != 2 or p.shape[0] != p.shape[1]:
            raise CorrelationError(f"{self.source}: P(j|i) must be a square matrix, got shape {p.shape}")
        if p.shape[0] != len(names):
            raise CorrelationError(
                f"{self.source}: P(j|i) is {p.shape[0]}x{p.shape[0]} but there are {len(names)} class names; "
                "pass the names file that belongs to these statistics"
            )
        if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
            raise CorrelationError(f"{self.source}: P(j|i) must be finite and within [0, 1]")
        object.__setattr__(self, "probability", p)
        object.__setattr__(self, "class_names", names)

    def mask(self, threshold: float = DEFAULT_MASK_THRESHOLD, mode: MaskMode = "softmax") -> np.ndarray:
        """[N, N] bool: ``P(j | i) > threshold`` (strict), plus self-loops in softmax mode.

        Seed mode keeps the diagonal as the statistics give it, as the seed code did.
        """
        if mode not in MASK_MODES:
            raise ConfigError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"threshold must be in [0, 1), got {threshold}")
        mask = self.probability > threshold
        if mode == "softmax":
            np.fill_diagonal(mask, True)
        return mask

    def reordered(self, class_names: Sequence[str]) -> Correlation:
        """The same statistics in the order of ``class_names`` (same set of names required).

        Raises:
            ClassNamesMismatchError: ``class_names`` is another class set.
        """
        order = permutation(self.class_names, class_names, f"{self.source} class names")
        if order is None:
            return self
        logger.info("reordering %s statistics to the requested class order", self.source)
        return Correlation(self.probability[np.ix_(order, order)], tuple(class_names), self.source, self.source_sha256)


@dataclass(frozen=True)
class CorrelationMask:
    """A :class:`Correlation` thresholded into the GAT's mask under a mask mode."""

    correlation: Correlation
    threshold: float = DEFAULT_MASK_THRESHOLD
    mode: MaskMode = "softmax"

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """[N, N] bool mask in ``class_names`` order."""
        return self.correlation.mask(self.threshold, self.mode)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.correlation.class_names

    @property
    def edges(self) -> int:
        """Kept pairs i ≠ j (self-loops not counted)."""
        return int(self.mask.sum() - np.trace(self.mask))

    @property
    def isolated(self) -> tuple[str, ...]:
        """Classes with no kept neighbour other than themselves."""
        off_diagonal = self.mask & ~np.eye(len(self.class_names), dtype=bool)
        return tuple(name for name, row in zip(self.class_names, off_diagonal, strict=True) if not row.any())

    def aligned_to(self, class_names: Sequence[str]) -> CorrelationMask:
        """This mask in the order of ``class_names``: permuted if the same set, refused otherwise."""
        return CorrelationMask(self.correlation.reordered(class_names), self.threshold, self.mode)

    def describe(self) -> str:
        """One line: classes, threshold, edges, self-loops and isolated classes."""
        isolated = ", ".join(self.isolated) or "none"
        return (
            f"{len(self.class_names)} classes from {self.correlation.source}, P(j|i) > {self.threshold}: "
            f"{self.edges} edges, {int(np.trace(self.mask))} self-loops ({self.mode} mode); "
            f"classes without neighbours: {isolated}"
        )

    def save(self, path: str | os.PathLike, *, force: bool = True) -> Path:
        """Writes the mask file atomically (an ``.npz`` readable without pickle)."""
        path = Path(path)
        meta = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "threshold": self.threshold,
            "mode": self.mode,
            "source": self.correlation.source,
            "source_sha256": self.correlation.source_sha256,
            "edges": self.edges,
        }
        with atomic_output(path, force=force) as handle:
            np.savez(
                handle,
                probability=self.correlation.probability,
                mask=self.mask,
                class_names=np.array(self.class_names, dtype=np.str_),
                meta=np.array(json.dumps(meta)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorrelationMask:
        """Reads a mask file written by :meth:`save`; its stored mask must match its statistics.

        Raises:
            CorrelationError: The file is missing, not a mask file, of an unknown version, or
                its stored mask disagrees with its statistics.
        """
        path = Path(path)
        if not path.is_file():
            raise CorrelationError(f"mask file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                probability, stored, names = data["probability"], data["mask"], data["class_names"].tolist()
        except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile) as exc:
            raise CorrelationError(f"{path}: not a mask file from models.correlation ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT or meta.get("version") != FILE_VERSION:
            found = meta if not isinstance(meta, dict) else (meta.get("format"), meta.get("version"))
            raise CorrelationError(
                f"{path}: unsupported mask file ({found!r}); expected {FILE_FORMAT!r} version {FILE_VERSION}"
            )
        try:
            correlation = Correlation(probability, tuple(names), meta["source"], meta["source_sha256"])
            result = cls(correlation, float(meta["threshold"]), meta["mode"])
            mask = result.mask
        except (KeyError, TypeError, ValueError, DeployError) as exc:
            raise CorrelationError(
                f"{path}: malformed mask file ({exc!r}); rebuild it with models.correlation"
            ) from exc
        if not np.array_equal(mask, stored):
            raise CorrelationError(f"{path}: the stored mask does not match its statistics; the file is corrupt")
        return result


def main(argv: list[str] | None = None) -> int:
    """``python -m models.correlation``: co-occurrence statistics → mask file (+ heatmap)."""
    parser = cli.parser("python -m models.correlation", "Build the GAT's co-occurrence mask from label statistics.")
    parser.add_argument(
        "source", type=Path, help="COCO instances .json, seed coco_correlations.pkl, ML-GCN *_adj.pkl, or a mask .npz"
    )
    parser.add_argument("--output", type=Path, help="mask file to write (.npz)")
    parser.add_argument(
        "--names", type=Path, help="class names (.txt one a line, .json or .pkl list); required for pickles"
    )
    parser.add_argument("--class-order", choices=CLASS_ORDERS, help="class order for a COCO JSON; required there")
    parser.add_argument(
        "--threshold",
        type=float,
        help=f"keep i→j where P(j|i) > this (default: a mask file's own, else {DEFAULT_MASK_THRESHOLD})",
    )
    parser.add_argument(
        "--mode", choices=MASK_MODES, help="mask mode the model uses (default: a mask file's own, else softmax)"
    )
    parser.add_argument("--plot", type=Path, help="also draw the P(j|i) heatmap with kept edges to this PNG")
    parser.add_argument("--force", action="store_true", help="replace an existing --output or --plot")
    args = parser.parse_args(argv)
    if args.output is None and args.plot is None:
        parser.error("nothing to do: pass --output and/or --plot")

    def body() -> None:
        from .correlation_sources import read_mask_source

        check_outputs({"--output": args.output, "--plot": args.plot}, [args.source, args.names], force=args.force)

        result = read_mask_source(args.source, args.names, args.class_order, args.threshold, args.mode)
        if args.output is not None:
            result.save(args.output, force=args.force)
        if args.plot is not None:
            from .mask_plot import plot_mask

            plot_mask(result, args.plot)
        print(result.describe())
        for label, target in (("mask", args.output), ("heatmap", args.plot)):
            if target is not None:
                print(f"{label}: {target}")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
