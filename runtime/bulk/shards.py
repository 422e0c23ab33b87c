"""Result shards: one record an image, in listing order, each shard written atomically.

JSON Lines (``part-000000.jsonl``) by default; Parquet (``part-000000.parquet``, pyarrow) on request.
A record is ``{"image", "labels", "probabilities"}`` (probabilities in class order, rounded to
1e-6 in JSON, float32 in Parquet) or ``{"image", "error"}`` for an image that could not be used.
A shard file exists only once whole (temporary file, fsync, rename): that is what a resume trusts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import InputFileError, MissingDependencyError
from core.files import atomic_output

from ..results import FailedItem, Prediction

FORMATS = ("jsonl", "parquet")
_NAME = re.compile(r"part-([0-9]{6,})\.(jsonl|parquet)")
Record = dict[str, Any]


def shard_name(index: int, fmt: str) -> str:
    return f"part-{index:06d}.{fmt}"


def record(image: str, result: Prediction | FailedItem) -> Record:
    """The record of one image from its result."""
    if isinstance(result, FailedItem):
        return {"image": image, "error": result.error}
    return {"image": image, "labels": list(result.labels), "probabilities": [round(float(p), 6) for p in result.scores]}


def write_shard(folder: Path, index: int, fmt: str, records: Sequence[Record]) -> Path:
    """Writes shard ``index`` atomically (a shard of an earlier, forced-over run is replaced).

    Raises:
        OutputError: The disk is full; nothing is left of the shard.
    """
    path = folder / shard_name(index, fmt)
    with atomic_output(path) as handle:
        if fmt == "jsonl":
            handle.write("".join(json.dumps(r) + "\n" for r in records).encode("ascii"))
        else:
            pyarrow, parquet = import_pyarrow()
            parquet.write_table(pyarrow.Table.from_pylist(list(records), schema=_schema(pyarrow)), handle)
    return path


def written_shards(folder: Path, fmt: str) -> set[int]:
    """The indices of the shards of format ``fmt`` already in ``folder``."""
    found = (_NAME.fullmatch(path.name) for path in folder.iterdir())
    return {int(match.group(1)) for match in found if match and match.group(2) == fmt}


def shard_errors(folder: Path, index: int, fmt: str) -> int:
    """How many of a written shard's records are errors.

    Raises:
        InputFileError: The shard is unreadable.
    """
    if fmt == "jsonl":
        return sum("error" in record for record in _jsonl(folder / shard_name(index, fmt)))
    _, parquet = import_pyarrow()
    errors = parquet.read_table(folder / shard_name(index, fmt), columns=["error"]).column("error")
    return len(errors) - errors.null_count


def read_records(folder: str | Path) -> Iterator[Record]:
    """Every record of a bulk run's output folder, in listing order (a missing shard is skipped).

    Raises:
        InputFileError: A shard is unreadable.
        MissingDependencyError: Parquet shards without pyarrow.
    """
    found = ((_NAME.fullmatch(p.name), p) for p in Path(folder).iterdir())
    for _, path in sorted((int(match.group(1)), path) for match, path in found if match):
        if path.suffix == ".jsonl":
            yield from _jsonl(path)
            continue
        _, parquet = import_pyarrow()
        for row in parquet.read_table(path).to_pylist():
            yield {key: value for key, value in row.items() if value is not None}


def _jsonl(path: Path) -> Iterator[Record]:
    try:
        with open(path, encoding="ascii") as handle:
            yield from (json.loads(line) for line in handle)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable shard ({exc})") from exc


def import_pyarrow():
    """``pyarrow`` and ``pyarrow.parquet``.

    Raises:
        MissingDependencyError: pyarrow is not installed.
    """
    try:
        import pyarrow
        import pyarrow.parquet as parquet
    except ImportError as exc:
        raise MissingDependencyError(
            "--format parquet needs pyarrow: pip install 'masked-gat-deploy[parquet]' (or use --format jsonl)"
        ) from exc
    return pyarrow, parquet


def _schema(pyarrow):
    return pyarrow.schema(
        [
            ("image", pyarrow.string()),
            ("labels", pyarrow.list_(pyarrow.string())),
            ("probabilities", pyarrow.list_(pyarrow.float32())),
            ("error", pyarrow.string()),
        ]
    )
