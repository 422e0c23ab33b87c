"""Where a bulk run's images come from, in one deterministic order, read lazily.

A folder is walked recursively, each level sorted by name (files and folders together), following
no symlinked folder (no cycles); what is held in memory is the sorted entries of the folders on the
way down to the one being read, never the whole tree.
A list file names one image a line; COCO-format annotations name theirs in ``images[].file_name``.
Each image is yielded as listed: relative to the images root where it is under it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, InputFileError
from core.preprocessing import IMAGE_SUFFIXES

KINDS = ("folder", "list", "annotations")


@dataclass(frozen=True)
class Source:
    """The images of a run.

    Attributes:
        kind: ``folder`` (every image under ``root``), ``list`` (a file of paths) or ``annotations``
            (a COCO-format JSON file).
        root: The folder relative paths are read from (``--images``; for a list without it, the list's folder).
        file: The list or annotations file (None for a folder).
    """

    kind: str
    root: Path
    file: Path | None = None

    @classmethod
    def of(cls, images: Path | None, listing: Path | None, annotations: Path | None) -> Source:
        """The source the command-line flags name.

        Raises:
            ConfigError: Not exactly one of a folder alone, a list, or annotations with their folder.
            InputFileError: A named file or folder is missing.
        """
        if listing is not None and annotations is not None:
            raise ConfigError("--list and --annotations both name the images; give one")
        if annotations is not None and images is None:
            raise ConfigError("--annotations names files relative to the image folder: add --images DIR")
        if images is None and listing is None:
            raise ConfigError("name the images: --images DIR, --list FILE, or --annotations FILE with --images DIR")
        if images is not None and not images.is_dir():
            raise InputFileError(f"--images {images}: not a folder")
        file = listing if listing is not None else annotations
        if file is not None and not file.is_file():
            raise InputFileError(f"{file}: not found")
        kind = "list" if listing is not None else "annotations" if annotations is not None else "folder"
        root = images if images is not None else listing.parent
        return cls(kind, root.resolve(), None if file is None else file.resolve())

    def describe(self) -> dict[str, str | None]:
        """Plain data for the run record (what a resume must name again)."""
        return {"kind": self.kind, "root": str(self.root), "file": None if self.file is None else str(self.file)}

    def images(self) -> Iterator[str]:
        """The images, as listed, in the run's order.

        Raises:
            InputFileError: The list or annotations file cannot be read.
        """
        if self.kind == "folder":
            return _walk(self.root, "")
        if self.kind == "list":
            return _lines(self.file)
        return iter(_annotated(self.file))


def _walk(folder: Path, prefix: str) -> Iterator[str]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        raise InputFileError(f"cannot list {folder}: {exc.strerror}") from exc
    for entry in entries:
        name = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), name + "/")
        elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            yield name


def _lines(file: Path) -> Iterator[str]:
    try:
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                path = line.rstrip("\r\n")
                if path.strip():
                    yield path
                elif line.strip("\r\n"):
                    raise InputFileError(f"{file}, line {number}: a path of blanks; remove the line")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{file}: not UTF-8 text; write one image path a line") from exc
    except OSError as exc:
        raise InputFileError(f"cannot read {file}: {exc.strerror}") from exc


def _annotated(file: Path) -> list[str]:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputFileError(f"{file}: not readable COCO-format JSON ({exc})") from exc
    images = document.get("images") if isinstance(document, dict) else None
    if not isinstance(images, list) or not all(
        isinstance(image, dict) and isinstance(image.get("file_name"), str) and image["file_name"] for image in images
    ):
        raise InputFileError(f'{file}: expected COCO-format JSON with "images": [{{"file_name": ...}}, ...]')
    return [image["file_name"] for image in images]
