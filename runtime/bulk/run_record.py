"""What a bulk run writes once beside its shards, and the rules for starting over or resuming.

``run.json`` (written before any shard): the artifact (path, sha256, facts), the class names, the
source and the settings that decide the records. A resume must name the same; anything else
would mix two runs' records in one output. ``complete.json`` (written last) marks a finished run
with its counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.files import read_json, sweep_leftovers, write_json

from .listing import LISTING_FILE

RUN_FILE = "run.json"
COMPLETE_FILE = "complete.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
# What a run owns in its output folder (all that --force removes).
_TEMPORARY = re.compile(r"\.(.+)\.[0-9]+@.+")
_OWNED = re.compile(
    "|".join([r"part-[0-9]{6,}\.(jsonl|parquet)", *map(re.escape, (RUN_FILE, COMPLETE_FILE, LISTING_FILE))])
)


@dataclass(frozen=True)
class RunRecord:
    """The identity of a run: everything that decides its records.

    Attributes:
        artifact: The artifact as named, its sha256 (None for a served URL) and its facts.
        class_names: The order of every record's probabilities.
        source: Where the images come from (:meth:`Source.describe`).
        settings: Format, shard size, batch size and per-class thresholds.
    """

    artifact: dict[str, Any]
    class_names: tuple[str, ...]
    source: dict[str, Any]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "artifact": self.artifact,
            "class_names": list(self.class_names),
            "source": self.source,
            "settings": self.settings,
        }

    def differences(self, other: dict[str, Any]) -> list[str]:
        """The top-level entries in which a recorded run ``other`` differs from this one (an artifact is
        the same by its content and facts, wherever it lies now)."""
        ours = json.loads(json.dumps(self.to_dict()))
        theirs = dict(other)
        for record in (ours, theirs):
            if isinstance(record.get("artifact"), dict):
                record["artifact"] = {k: v for k, v in record["artifact"].items() if k != "path"}
        return sorted(key for key, value in ours.items() if theirs.get(key) != value)


def check_folder(folder: Path, *, resume: bool, force: bool) -> None:
    """What the flags say about ``folder`` holds, checked before any work (nothing is written).

    A new run needs an empty or absent folder, or ``force`` over one that holds only a run's files;
    a resume needs a run there. Hidden files (a writer's temporary files, the lock) do not count.

    Raises:
        ConfigError: It does not, with what to do.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--output {folder} is a file; name a folder")
    try:
        entries = [e.name for e in folder.iterdir() if not e.name.startswith(".")] if folder.exists() else []
    except OSError as exc:
        raise ConfigError(f"cannot read --output {folder}: {exc.strerror}; choose a folder you can write") from exc
    if resume:
        if RUN_FILE not in entries:
            raise ConfigError(f"--resume: {folder} holds no run ({RUN_FILE} is missing); drop --resume to start one")
        return
    foreign = sorted(name for name in entries if not _OWNED.fullmatch(name))
    if foreign:
        raise ConfigError(
            f"--output {folder} holds files no bulk run wrote ({', '.join(foreign[:3])}); name another --output"
        )
    if entries and not force:
        raise ConfigError(f"--output {folder} holds a run; pass --resume to continue it, --force to start over")


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Holds ``folder``'s lock for the run: two runs writing one folder would mix their shards.

    Raises:
        ConfigError: Another process holds it, or the folder cannot be made or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a+")  # noqa: SIM115 (held open for the whole run)
    except OSError as exc:
        raise ConfigError(f"cannot write into --output {folder}: {exc.strerror}; choose a writable folder") from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ConfigError(f"another bulk run writes {folder}; wait for it, or write to another --output") from exc
        yield


def begin(folder: Path, record: RunRecord, *, resume: bool) -> bool:
    """Starts the run in ``folder`` (checked by :func:`check_folder`, locked by :func:`exclusive`);
    returns whether it is already complete.

    A new run first removes what an earlier run wrote there (``--force``): its record first, so that a
    kill meanwhile leaves no run to resume. A resume must be the recorded run, and clears what dead
    writers left.

    Raises:
        ConfigError: A resume names another artifact, source or settings than the recorded run.
    """
    recorded = folder / RUN_FILE
    if resume:
        differ = record.differences(read_json(recorded, "run record"))
        if differ:
            raise ConfigError(
                f"--resume: {folder} holds a run with another {', '.join(differ)}; resume it with the same artifact, "
                "images and settings, or write this run to a new --output (or --force to start over there)"
            )
        _sweep(folder)
        return (folder / COMPLETE_FILE).exists()
    (folder / RUN_FILE).unlink(missing_ok=True)
    (folder / COMPLETE_FILE).unlink(missing_ok=True)
    for entry in folder.iterdir():
        if _OWNED.fullmatch(entry.name):
            entry.unlink()
    _sweep(folder)
    write_json(recorded, record.to_dict())
    return False


def abandon(folder: Path) -> None:
    """Undoes :func:`begin` of a new run that could not list its images (so the folder holds no run)."""
    (folder / RUN_FILE).unlink(missing_ok=True)


def _sweep(folder: Path) -> None:
    """Removes the temporary files that writers of this folder's files, now dead, left (a kill -9)."""
    for entry in list(folder.iterdir()):
        match = _TEMPORARY.fullmatch(entry.name)
        if match and _OWNED.fullmatch(match.group(1)):
            sweep_leftovers(folder / match.group(1))


def finish(folder: Path, counts: dict[str, Any]) -> None:
    """Marks the run complete with its counts."""
    write_json(folder / COMPLETE_FILE, counts)
