"""Where an artifact's JSON manifest lives: beside it, never inside it (a header inside a plan file
breaks Triton and trtexec)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".json"


def manifest_path(artifact: str | os.PathLike) -> Path:
    """``M.onnx`` → ``M.onnx.json``; ``M.plan`` → ``M.plan.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def decode_facts(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """ONNX ``metadata_props`` (key, string) pairs → facts: JSON-encoded values decoded, others kept."""
    facts: dict[str, Any] = {}
    for key, value in pairs:
        try:
            facts[key] = json.loads(value)
        except json.JSONDecodeError:
            facts[key] = value
    return facts
