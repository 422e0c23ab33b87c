"""Where an artifact's JSON manifest lives: beside it, never inside it (a header inside a plan file
breaks Triton and trtexec)."""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST_SUFFIX = ".json"


def manifest_path(artifact: str | os.PathLike) -> Path:
    """``M.onnx`` → ``M.onnx.json``; ``M.plan`` → ``M.plan.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)
