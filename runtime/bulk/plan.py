"""What an engine is handed: the shards still to tag, how to read their images, how to write their records."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInputError

from ..results import FailedItem, Prediction
from .listing import Shard, shard_images
from .shards import record, write_shard


def stopped_by(position: int, image: str, problem: str) -> BadInputError:
    """The error that stops a run (without ``--skip-bad``) at an unusable image, with what to do."""
    return BadInputError(
        position,
        image,
        f"{problem}. The shards before it are written: replace the file and --resume, or --resume --skip-bad to "
        "record it as an error and go on",
    )


def image_path(root: str, image: str) -> str:
    """Where an image, as listed (absolute, or relative to the images root), is read from."""
    return image if os.path.isabs(image) else os.path.join(root, image)


@dataclass
class Plan:
    """A run's pending work.

    Attributes:
        folder: The output folder.
        listing: The run's listing file.
        root: The folder relative image paths are read from.
        pending: The shards not yet written, in order.
        fmt: The shards' format.
        skip_bad: Record an unusable image as an error instead of stopping.
        progress: Called with each written shard's image and error counts.
    """

    folder: Path
    listing: Path
    root: Path
    pending: Sequence[Shard]
    fmt: str
    skip_bad: bool
    progress: Callable[[int, int], None]

    def images(self, shard: Shard) -> list[str]:
        """The images of ``shard``, as listed."""
        return shard_images(self.listing, shard)

    def path(self, image: str) -> str:
        """Where an image, as listed, is read from."""
        return image_path(str(self.root), image)

    def write(self, shard: Shard, images: Sequence[str], results: Sequence[Prediction | FailedItem]) -> None:
        """Writes ``shard``'s records (one result an image, in listing order) and reports progress."""
        write_shard(self.folder, shard.index, self.fmt, [record(i, r) for i, r in zip(images, results, strict=True)])
        self.progress(len(images), sum(not r.ok for r in results))
