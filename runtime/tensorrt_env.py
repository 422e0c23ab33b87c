"""What this machine offers TensorRT: a CUDA GPU (name, compute capability) and TensorRT's version.

Both are found without importing TensorRT: ``import tensorrt`` can succeed on a machine without a
GPU and a Runtime built there crash the process later (DESIGN.md), so the GPU is checked first and
TensorRT is imported only through :func:`import_tensorrt`, after that check.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from types import ModuleType

from models.errors import MissingDependencyError

INSTALL_HINT = (
    "install TensorRT 10.12 or newer, NVIDIA's wheels, into this environment: pip install -e '.[tensorrt]' "
    "from this repository (or pip install 'tensorrt>=10.12,<12')"
)


@dataclass(frozen=True)
class Machine:
    """The facts a TensorRT plan depends on."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str


def parse_gpu_query(text: str) -> list[tuple[str, tuple[int, int]]]:
    """``nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`` → [(name, (major, minor))]."""
    gpus = []
    for line in text.strip().splitlines():
        name, _, capability = line.rpartition(",")
        major, _, minor = capability.strip().partition(".")
        if name and major.isdigit() and minor.isdigit():
            gpus.append((name.strip(), (int(major), int(minor))))
    return gpus


def visible_gpu() -> tuple[str, tuple[int, int]] | None:
    """Name and compute capability of the GPU CUDA would use first, or None when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None or os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = parse_gpu_query(result.stdout)
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    index = int(first) if first.isdigit() else 0
    return gpus[index] if index < len(gpus) else None


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, read from package metadata (no import), or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    for distribution in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu13", "tensorrt_cu12"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def this_machine() -> Machine:
    """The GPU and TensorRT here.

    Raises:
        MissingDependencyError: No usable CUDA GPU, or no TensorRT; the message says which.
    """
    gpu = visible_gpu()
    if gpu is None:
        raise MissingDependencyError("no CUDA GPU is visible here (nvidia-smi lists none); TensorRT needs one")
    version = tensorrt_version()
    if version is None:
        raise MissingDependencyError(f"TensorRT is not installed; {INSTALL_HINT}")
    return Machine(gpu[0], gpu[1], version)


def import_tensorrt() -> ModuleType:
    """``tensorrt``, imported only once a GPU and TensorRT are known to be here.

    Raises:
        MissingDependencyError: As :func:`this_machine`.
    """
    this_machine()
    import tensorrt

    return tensorrt
