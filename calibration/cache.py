"""The activation-range cache: ranges computed once, reused only for the same model, images and method.

The file is JSON: a key (the source graph's sha256, the calibration set's fingerprint, the
method with its parameters and the INT8 target: symmetric ranges for TensorRT, asymmetric for the
CPU) and the ranges in ONNX Runtime's own calibration-cache form
(``TensorsData.to_dict``), which ``quantize_static`` reads back. A cache whose key differs from the
request is refused, never used: ranges of another model or another image set quantize silently
wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import InputFileError, StaleArtifactError
from core.files import write_json

FORMAT = "masked-gat-calibration-ranges"
VERSION = 1


@dataclass(frozen=True)
class RangeKey:
    """What the ranges depend on."""

    model_sha256: str
    files_sha256: str
    method: str
    target: str = "tensorrt"  # caches written before targets hold TensorRT's ranges


_WHAT = {
    "model_sha256": "source graph",
    "files_sha256": "calibration file list",
    "method": "calibration method",
    "target": "INT8 target",
}


def read_ranges(path: str | os.PathLike, key: RangeKey) -> dict[str, Any]:
    """The cached ranges (ONNX Runtime's form) if ``path`` was written for ``key``.

    Raises:
        InputFileError: The file is not a range cache.
        StaleArtifactError: It was computed for another model, file list, method or target.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        stored = RangeKey(**document["key"])
        ranges = document["ranges"]
        valid = document.get("format") == FORMAT and isinstance(ranges, dict) and isinstance(ranges.get("data"), dict)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputFileError(f"{path}: not a calibration range cache ({type(exc).__name__}: {exc})") from exc
    if not valid:
        raise InputFileError(f"{path}: not a calibration range cache written by calibration.quantize")
    differs = [what for name, what in _WHAT.items() if getattr(stored, name) != getattr(key, name)]
    if differs:
        raise StaleArtifactError(
            f"the range cache {path} was computed for another {', '.join(differs)} "
            f"(cached {stored.method!r} for {stored.target}, requested {key.method!r} for {key.target}); pass "
            "--recalibrate to recompute and "
            "replace it, or --cache to name another file"
        )
    return ranges


def write_ranges(path: str | os.PathLike, key: RangeKey, ranges: dict[str, Any], *, images: int, tool: str) -> None:
    """Writes the cache atomically (replacing an earlier one)."""
    document = {"format": FORMAT, "version": VERSION, "key": asdict(key), "images": images, "tool": tool}
    write_json(path, {**document, "ranges": ranges}, indent=None)
