"""When a TensorRT plan may be loaded, and when a timing cache may be fed to the builder.

Plain data: manifests and :class:`~runtime.tensorrt_env.Machine` facts in, a typed refusal out.
A plan is refused when its manifest is missing, when its bytes or its source graph no longer match
the manifest, or when it was built for another TensorRT version or GPU and not built to be
compatible with this one. Each refusal names the command that rebuilds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.errors import InputFileError, StaleArtifactError
from core.files import sha256_file

from .manifest import manifest_path
from .tensorrt_env import UNKNOWN_VERSION, Machine

# TensorRT's AMPERE_PLUS hardware compatibility: the plan runs on compute capability 8.0 and newer.
AMPERE = (8, 0)
_REQUIRED = {"tensorrt_version", "gpu", "artifact_sha256", "precision", "class_names"}


def rebuild_command(manifest: dict[str, Any], plan: Path) -> str:
    """The command that rebuilds ``plan`` (the one recorded at build time when there is one)."""
    return manifest.get("build_command") or (
        f"python -m export.build_engine MODEL.onnx --output {plan} --precision fp16|fp32|int8"
    )


def read_plan_manifest(plan: str | os.PathLike) -> dict[str, Any]:
    """The manifest beside ``plan``.

    Raises:
        StaleArtifactError: There is none (the plan cannot be checked, so it is not loaded).
        InputFileError: It is not a readable plan manifest.
    """
    plan = Path(plan)
    path = manifest_path(plan)
    if not path.is_file():
        raise StaleArtifactError(
            f"{plan} has no manifest {path.name}, so its TensorRT version, GPU and source cannot be checked; "
            f"rebuild it with {rebuild_command({}, plan)} (which writes both)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not set(manifest) >= _REQUIRED or not _is_capability(manifest["gpu"]):
        raise InputFileError(f"{path}: not a plan manifest written by export.build_engine")
    return manifest


def check_plan(plan: str | os.PathLike, machine: Machine) -> dict[str, Any]:
    """The plan's manifest, once every loading rule holds for ``machine``.

    Raises:
        StaleArtifactError: A rule is broken; the message says which and how to rebuild.
        InputFileError: The plan or its manifest cannot be read.
    """
    plan = Path(plan)
    if not plan.is_file():
        raise InputFileError(f"plan not found: {plan}")
    manifest = read_plan_manifest(plan)
    fix = f"rebuild it on this machine: {rebuild_command(manifest, plan)}"
    if sha256_file(plan) != manifest["artifact_sha256"]:
        raise StaleArtifactError(f"{plan} is not the plan its manifest describes (sha256 differs); {fix}")
    source = plan.parent / manifest.get("source_onnx", "")
    if manifest.get("source_onnx") and source.is_file() and sha256_file(source) != manifest.get("source_onnx_sha256"):
        raise StaleArtifactError(f"{source.name} changed after {plan.name} was built from it; {fix}")
    problem = _version_problem(manifest, machine) or _hardware_problem(manifest, machine)
    if problem:
        raise StaleArtifactError(f"{plan.name} {problem}; {fix}")
    return manifest


def timing_cache_problem(sidecar: dict[str, Any] | None, machine: Machine) -> str | None:
    """Why a timing cache (described by its sidecar) must not be fed to this machine's builder."""
    if not isinstance(sidecar, dict):
        return "it has no sidecar saying which GPU and TensorRT version it was measured on"
    found = (sidecar.get("gpu_name"), tuple(sidecar.get("compute_capability") or ()), sidecar.get("tensorrt_version"))
    wanted = (machine.gpu_name, machine.compute_capability, machine.tensorrt_version)
    if found != wanted or UNKNOWN_VERSION in (found[2], wanted[2]):
        return f"it was measured on {found[0]} (sm {found[1]}) with TensorRT {found[2]}"
    return None


def _is_capability(gpu: Any) -> bool:
    capability = gpu.get("compute_capability") if isinstance(gpu, dict) else None
    return isinstance(capability, list) and len(capability) == 2 and all(isinstance(v, int) for v in capability)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _version_problem(manifest: dict[str, Any], machine: Machine) -> str | None:
    built, here = manifest["tensorrt_version"], machine.tensorrt_version
    if UNKNOWN_VERSION in (built, here):
        return f"was built with TensorRT {built}; this machine's TensorRT version is {here}, so they cannot be matched"
    if built == here:
        return None
    if manifest.get("version_compatible"):
        # A version-compatible plan runs on TensorRT of its build version or later (10.x plans on
        # 11.x included, per TensorRT's engine-compatibility documentation), never on an older one.
        if _version(here) >= _version(built):
            return None
        return f"was built version-compatible with TensorRT {built}, which does not cover the older TensorRT {here}"
    return f"was built with TensorRT {built}; this machine has TensorRT {here} (plans are not portable across versions)"


def _hardware_problem(manifest: dict[str, Any], machine: Machine) -> str | None:
    gpu = manifest["gpu"]
    built = tuple(gpu["compute_capability"])
    if built == machine.compute_capability:
        return None
    if manifest.get("hardware_compat") == "ampere+" and machine.compute_capability >= AMPERE:
        return None
    return (
        f"was built for {gpu.get('name', 'a GPU')} (compute capability {built[0]}.{built[1]}); this GPU is "
        f"{machine.gpu_name} ({machine.compute_capability[0]}.{machine.compute_capability[1]})"
    )
