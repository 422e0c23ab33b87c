"""What this machine offers TensorRT: a CUDA GPU (name, compute capability) and TensorRT's version.

Both are found without importing TensorRT: ``import tensorrt`` can succeed on a machine without a
GPU and a Runtime built there crash the process later (DESIGN.md), so the GPU is checked first and
TensorRT is imported only through :func:`import_tensorrt`, after that check. Every object TensorRT's
native library creates goes through :func:`created`, which turns its failures into one typed error.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from core.errors import ConfigError, MissingDependencyError, TensorRTError

INSTALL_HINT = (
    "install TensorRT 10.12 or newer, NVIDIA's wheels, for this machine's driver: from this repository, "
    "pip install -e '.[tensorrt-cu12]' with a CUDA 12 driver, or pip install -e '.[tensorrt-cu13]' with a CUDA 13 "
    "driver (R580+; nvidia-smi shows the driver's CUDA version)"
)
NATIVE_HINT = (
    "check that the NVIDIA driver supports this TensorRT build's CUDA (nvidia-smi shows the driver's CUDA version; "
    "TensorRT's CUDA 13 wheels, which the plain `tensorrt` package installs from 10.13 on, need driver R580+, so "
    "with a CUDA 12 driver install the extra tensorrt-cu12), that TensorRT's libraries are the version of its "
    "Python bindings, and rerun with --verbose for TensorRT's log"
)
# Distributions that carry the `tensorrt` module, the meta packages first.
TENSORRT_DISTRIBUTIONS = (
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu13-bindings",
    "tensorrt-cu12-bindings",
)

Made = TypeVar("Made")


UNKNOWN_VERSION = "unknown"


# This machine's OS and CPU architecture; a TensorRT plan runs only on the platform it was built on.
HOST_PLATFORM = f"{sys.platform}-{platform.machine()}"


@dataclass(frozen=True)
class Machine:
    """The facts a TensorRT plan or timing cache depends on."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str
    platform: str = HOST_PLATFORM

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_name": self.gpu_name,
            "compute_capability": list(self.compute_capability),
            "tensorrt_version": self.tensorrt_version,
            "platform": self.platform,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Machine | None:
        """Inverse of :meth:`to_dict`; None when ``data`` is not such a record."""
        try:
            major, minor = data["compute_capability"]
            name, version, where = str(data["gpu_name"]), str(data["tensorrt_version"]), str(data["platform"])
            machine = cls(name, (int(major), int(minor)), version, where)
        except (KeyError, TypeError, ValueError):
            return None
        return machine


def parse_gpu_query(text: str) -> list[tuple[str, tuple[int, int], str]]:
    """``nvidia-smi --query-gpu=name,compute_cap,uuid --format=csv,noheader`` → [(name, (major, minor), uuid)]."""
    gpus = []
    for line in text.strip().splitlines():
        name, _, rest = line.rpartition(",")
        name, _, capability = name.rpartition(",")
        major, _, minor = capability.strip().partition(".")
        if name and major.isdigit() and minor.isdigit():
            gpus.append((name.strip(), (int(major), int(minor)), rest.strip()))
    return gpus


def select_gpu(
    gpus: list[tuple[str, tuple[int, int], str]], visible: str | None, order: str | None
) -> tuple[str, tuple[int, int]] | None:
    """The GPU CUDA uses first, given ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER``.

    nvidia-smi lists GPUs in PCI order; CUDA numbers them fastest first unless the order is
    ``PCI_BUS_ID``. An index is therefore trusted only in PCI order or when all GPUs are alike.

    Raises:
        ConfigError: An index is ambiguous (GPUs differ and the order is CUDA's own).
    """
    first = (visible if visible is not None else "0").split(",")[0].strip()
    if first in ("", "-1"):
        return None
    if first.startswith("GPU-"):  # a UUID or a unique prefix of one
        chosen = [gpu for gpu in gpus if gpu[2].startswith(first)]
        return (chosen[0][0], chosen[0][1]) if len(chosen) == 1 else None
    alike = len({(name, cc) for name, cc, _ in gpus}) <= 1
    if first.startswith("MIG-") and gpus and alike:  # a MIG slice: its parent is one of these alike GPUs
        return gpus[0][0], gpus[0][1]
    if not first.isdigit() or int(first) >= len(gpus):
        return None
    index = int(first)
    if order != "PCI_BUS_ID" and not alike:
        raise ConfigError(
            "GPUs of different kinds are installed and CUDA numbers them fastest first, nvidia-smi in PCI order; "
            "set CUDA_DEVICE_ORDER=PCI_BUS_ID (and CUDA_VISIBLE_DEVICES) so the GPU recorded is the GPU used"
        )
    return gpus[index][0], gpus[index][1]


def visible_gpu() -> tuple[str, tuple[int, int]] | None:
    """Name and compute capability of the GPU CUDA would use first, or None when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name,compute_cap,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = parse_gpu_query(result.stdout)
    return select_gpu(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUDA_DEVICE_ORDER"))


def version_tuple(text: str) -> tuple[int, ...]:
    """A TensorRT version's numeric parts: ``"10.14.1.48.post1"`` → (10, 14, 1, 48); () for none."""
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, read from package metadata (no import), or None.

    ``"unknown"`` when the module exists under no known distribution name; the build then records
    the imported module's own version, and the loading rules never match ``"unknown"``.
    """
    if importlib.util.find_spec("tensorrt") is None:
        return None
    for distribution in TENSORRT_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return UNKNOWN_VERSION


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
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # stub packages, or libnvinfer missing
        raise MissingDependencyError(f"TensorRT cannot be imported ({exc}); {INSTALL_HINT}") from exc
    return tensorrt


def created(what: str, make: Callable[[], Made | None]) -> Made:
    """``make()``, a TensorRT call that creates a native object, or a :class:`TensorRTError`.

    A native factory that fails returns NULL: methods then give None, and constructors
    (``trt.Builder``, ``trt.Runtime``, ``trt.OnnxParser``) raise pybind11's ``TypeError: ...
    factory function returned nullptr``. Any other TypeError is a wrong call, a bug, and propagates.
    """
    try:
        result = make()
    except TypeError as exc:
        if "returned nullptr" not in str(exc):
            raise
        result = None
    if result is None:
        raise TensorRTError(f"TensorRT could not create {what}; {NATIVE_HINT}")
    return result
