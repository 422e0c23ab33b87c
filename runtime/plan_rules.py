"""When a TensorRT plan may be loaded, and when a timing cache may be fed to the builder.

Plain data: manifests and :class:`~runtime.tensorrt_env.Machine` facts in, a typed refusal out.
A plan is refused when its manifest is missing, when its bytes or its source graph no longer match
the manifest, or when it was built for another TensorRT version or GPU and not built to be
compatible with this one. Each refusal names the command that rebuilds it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from core.errors import InputFileError, StaleArtifactError
from core.files import sha256_file
from core.manifest import Manifest, manifest_path, read_manifest

from .tensorrt_env import UNKNOWN_VERSION, Machine, this_machine, version_tuple

logger = logging.getLogger(__name__)

# TensorRT's AMPERE_PLUS hardware compatibility: the plan runs on compute capability 8.0 and newer,
# except on NVIDIA DRIVE OS and JetPack, where hardware compatibility is not supported: the
# integrated parts of compute capability ≥ 8.0 are Orin (8.7) and Thor (10.1 under CUDA 12, 11.0
# under CUDA 13).
AMPERE = (8, 0)
JETSON_AND_DRIVE = frozenset({(8, 7), (10, 1), (11, 0)})
# Version-compatible plans load on a later runtime of the same major, and across majors only on
# these (built, runtime) pairs (TensorRT's support matrix, "Engine Portability").
ACROSS_MAJORS = frozenset({(8, 10), (10, 11)})


def rebuild_command(manifest: Manifest | None, plan: Path) -> str:
    """The command that rebuilds ``plan`` (the one recorded at build time when there is one)."""
    if manifest is not None and manifest.facts.engine is not None:
        return manifest.facts.engine.build_command
    return f"python -m export.build_engine MODEL.onnx --output {plan} --precision fp16|fp32|int8"


def read_plan_manifest(plan: str | os.PathLike) -> Manifest:
    """The manifest beside ``plan``.

    Raises:
        StaleArtifactError: There is none (the plan cannot be checked, so it is not loaded).
        InputFileError: The plan is missing, or its manifest is not one ``export.build_engine`` wrote.
    """
    plan = Path(plan)
    if not plan.is_file():
        raise InputFileError(f"plan not found: {plan}")
    path = manifest_path(plan)
    if not path.is_file():
        raise StaleArtifactError(
            f"{plan} has no manifest {path.name}, so its TensorRT version, GPU and source cannot be checked; "
            f"rebuild it with {rebuild_command(None, plan)} (which writes both)"
        )
    try:
        manifest = read_manifest(plan)
    except InputFileError as exc:
        raise InputFileError(f"not a plan manifest written by export.build_engine: {exc}") from exc
    if manifest.facts.engine is None:
        raise InputFileError(f"{path}: not a plan manifest written by export.build_engine (it records no build)")
    return manifest


def check_plan_files(plan: str | os.PathLike) -> Manifest:
    """The plan's manifest, once the plan is the file it describes and its source graph (where it lies
    beside the plan) has not changed since; the rules that need no machine.

    Raises:
        StaleArtifactError: Either changed; the message names the rebuild command.
        InputFileError: The plan or its manifest cannot be read.
    """
    plan = Path(plan)
    manifest = read_plan_manifest(plan)
    facts = manifest.facts
    fix = f"rebuild it: {rebuild_command(manifest, plan)}"
    if not manifest.describes(plan):
        raise StaleArtifactError(f"{plan} is not the plan its manifest describes (sha256 differs); {fix}")
    source = plan.parent / facts.source_onnx if facts.source_onnx else None
    if source is not None and source.is_file() and sha256_file(source) != facts.source_onnx_sha256:
        raise StaleArtifactError(f"{source.name} changed after {plan.name} was built from it; {fix}")
    return manifest


def check_plan(plan: str | os.PathLike, machine: Machine | None = None) -> Manifest:
    """The plan's manifest, once every loading rule holds for ``machine`` (default: this one, looked
    up after the manifest is read, so a missing plan or manifest is named before a missing GPU).

    Raises:
        StaleArtifactError: A rule is broken; the message says which and how to rebuild.
        InputFileError: The plan or its manifest cannot be read.
        MissingDependencyError: No ``machine`` is given and this one has no GPU or TensorRT.
    """
    plan = Path(plan)
    manifest = check_plan_files(plan)
    machine = this_machine() if machine is None else machine
    facts = manifest.facts
    fix = f"rebuild it on this machine: {rebuild_command(manifest, plan)}"
    problem = _platform_problem(manifest, machine) or _version_problem(manifest, machine)
    problem = problem or _hardware_problem(manifest, machine)
    if problem:
        raise StaleArtifactError(f"{plan.name} {problem}; {fix}")
    engine = facts.engine
    same_capability = engine.compute_capability == machine.compute_capability
    if same_capability and engine.gpu_name != machine.gpu_name and engine.hardware_compat == "none":
        logger.warning(
            "%s was built on %s and is loaded on %s (same compute capability): TensorRT allows it but does not "
            "recommend it (other tactics may be fastest here, or fail); rebuild here for the best engine: %s",
            plan.name,
            engine.gpu_name,
            machine.gpu_name,
            rebuild_command(manifest, plan),
        )
    return manifest


def timing_cache_problem(measured_on: Machine | None, machine: Machine) -> str | None:
    """Why a timing cache measured on ``measured_on`` (from its sidecar) must not be fed to this
    machine's builder."""
    if measured_on is None:
        return "it has no sidecar saying which GPU and TensorRT version it was measured on"
    if measured_on != machine or machine.tensorrt_version == UNKNOWN_VERSION:
        return (
            f"it was measured on {measured_on.gpu_name} (sm {measured_on.compute_capability}) with TensorRT "
            f"{measured_on.tensorrt_version}"
        )
    return None


def _platform_problem(manifest: Manifest, machine: Machine) -> str | None:
    built = manifest.facts.engine.platform
    if built == machine.platform:
        return None
    return f"was built on {built}; this machine is {machine.platform} (plans are not portable across platforms)"


def _version_problem(manifest: Manifest, machine: Machine) -> str | None:
    engine = manifest.facts.engine
    built, here = engine.tensorrt_version, machine.tensorrt_version
    if UNKNOWN_VERSION in (built, here) or not version_tuple(built) or not version_tuple(here):
        return f"was built with TensorRT {built}; this machine's TensorRT version is {here}, so they cannot be matched"
    if built == here:
        return None
    if engine.version_compatible:
        # A version-compatible plan runs on TensorRT of its build version or later within its major,
        # and across majors only as ACROSS_MAJORS says; never on an older one.
        major = version_tuple(built)[0]
        majors = {major} | {later for earlier, later in ACROSS_MAJORS if earlier == major}
        if version_tuple(here) >= version_tuple(built) and version_tuple(here)[0] in majors:
            return None
        covered = " and ".join(f"{m}.x" for m in sorted(majors))
        return f"was built version-compatible with TensorRT {built}, which covers later {covered} runtimes, not {here}"
    return f"was built with TensorRT {built}; this machine has TensorRT {here} (plans are not portable across versions)"


def _hardware_problem(manifest: Manifest, machine: Machine) -> str | None:
    engine = manifest.facts.engine
    built = engine.compute_capability
    if built == machine.compute_capability:
        return None
    here = machine.compute_capability
    if engine.hardware_compat == "ampere+" and here >= AMPERE and here not in JETSON_AND_DRIVE:
        return None
    if engine.hardware_compat == "ampere+" and here in JETSON_AND_DRIVE:
        return (
            f"was built with ampere+ hardware compatibility, which TensorRT does not support on JetPack or DRIVE OS "
            f"({machine.gpu_name}, compute capability {here[0]}.{here[1]})"
        )
    return (
        f"was built for {engine.gpu_name} (compute capability {built[0]}.{built[1]}); this GPU is "
        f"{machine.gpu_name} ({machine.compute_capability[0]}.{machine.compute_capability[1]})"
    )
