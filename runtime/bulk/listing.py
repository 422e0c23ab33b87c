"""The run's images fixed in one file, and their split into shards.

Before any image is tagged the source is walked once into ``listing.jsonl`` (one JSON string a
line, so that any file name survives), written atomically. Shard k is the k-th run of
``shard_size`` lines: what a shard holds never depends on how far a run got, which is what makes a
resume exactly once. A resume reads the listing, not the source again, so images added since the
run began are not picked up by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputFileError
from core.files import atomic_output

LISTING_FILE = "listing.jsonl"


@dataclass(frozen=True)
class Shard:
    """One unit of work and of output: images ``[first, first + count)`` of the listing.

    Attributes:
        index: Its number (its file is ``part-<index>``).
        first: Position of its first image in the listing.
        count: Its number of images.
        offset: Byte offset of its first line in the listing file.
    """

    index: int
    first: int
    count: int
    offset: int


def write_listing(images: Iterable[str], path: Path, shard_size: int, *, utf8: bool = False) -> list[Shard]:
    """Writes ``images`` to ``path`` (atomically) and returns its shards.

    Args:
        utf8: Refuse a name that is not valid UTF-8 (Parquet stores UTF-8 strings).

    Raises:
        InputFileError: The source holds no image, or (``utf8``) a name that is not UTF-8.
    """
    shards: list[Shard] = []
    with atomic_output(path) as handle:
        offset = count = 0
        for image in images:
            if utf8 and not _is_utf8(image):
                raise InputFileError(
                    f"{image!r}: a file name that is not UTF-8, which Parquet cannot store; rename it, or use "
                    "--format jsonl (which keeps any name)"
                )
            if count % shard_size == 0:
                shards.append(Shard(len(shards), count, 0, offset))
            line = (json.dumps(image) + "\n").encode("ascii")  # ASCII: any file name, even not UTF-8
            handle.write(line)
            offset += len(line)
            count += 1
        if count == 0:
            raise InputFileError("the source names no image (.jpg, .jpeg, .png, .bmp, .webp); nothing to tag")
    return _counted(shards, count)


def read_shards(path: Path, shard_size: int) -> list[Shard]:
    """The shards of an existing listing (one pass over it).

    Raises:
        InputFileError: It cannot be read.
    """
    shards: list[Shard] = []
    offset = count = 0
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if count % shard_size == 0:
                    shards.append(Shard(len(shards), count, 0, offset))
                offset += len(line)
                count += 1
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    return _counted(shards, count)


def shard_images(path: Path, shard: Shard) -> list[str]:
    """The images of ``shard``, read from the listing at its offset.

    Raises:
        InputFileError: The listing is shorter than the shard or not what this run wrote.
    """
    images: list[str] = []
    try:
        with open(path, "rb") as handle:
            handle.seek(shard.offset)
            for line in _first(handle, shard.count):
                images.append(json.loads(line))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read shard {shard.index} ({exc}); start the run again") from exc
    if len(images) != shard.count or not all(isinstance(image, str) for image in images):
        raise InputFileError(f"{path}: shard {shard.index} is not what this run listed; start the run again")
    return images


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a byte that is not UTF-8, kept by the file system as a surrogate
        return False
    return True


def _first(lines: Iterator[bytes], count: int) -> Iterator[bytes]:
    for number, line in enumerate(lines):
        if number == count:
            return
        yield line


def _counted(shards: list[Shard], total: int) -> list[Shard]:
    """The shards with their counts: each up to the next one's start, the last to ``total``."""
    ends = [shard.first for shard in shards[1:]] + [total]
    return [Shard(s.index, s.first, end - s.first, s.offset) for s, end in zip(shards, ends, strict=True)]
