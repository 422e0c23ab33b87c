"""``python -m export.build_engine``: a typed ONNX graph → a TensorRT plan and its manifest.

First the typed graph for the precision is taken or made and gated (``export.typed_graph``; an INT8
engine is built from the INT8 graph ``calibration.quantize`` makes); that step runs anywhere. Then,
on a machine with a CUDA GPU and TensorRT, the plan is built with one optimization profile over the
batch and written with ``M.plan.json`` beside it (no header inside the plan). Elsewhere the command
stops there with exit 1 and says what is missing.

A timing cache is fed to the builder only when its sidecar (``F.json``) says it was measured on this
GPU with this TensorRT version; any other is set aside (renamed ``F.set-aside``) with a message.
Builder optimization level 0 ignores timing caches, so ``--timing-cache`` with it is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from core import cli
from core.errors import ConfigError, InputFileError, MissingDependencyError
from core.facts import HARDWARE_COMPAT, PRECISIONS, ArtifactFacts, EngineFacts
from core.files import check_outputs, read_json, sha256_file, staging_folder, write_bytes, write_json
from core.manifest import manifest_path, publish, write_manifest
from runtime.plan_rules import timing_cache_problem
from runtime.tensorrt_env import Machine, this_machine

from .metadata import read_graph
from .parity import add_tolerance_option, parse_tolerances
from .qdq_checks import check_int8_file
from .tensorrt_build import NO_TIMING_LEVEL, BuildSettings, build_serialized
from .typed_graph import typed_graph

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MIB = 4096
DEFAULT_OPT_LEVEL = 3  # TensorRT's default builder optimization level


@dataclass(frozen=True)
class Profile:
    """The batch range the plan accepts and the batch it is tuned for."""

    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class EngineResult:
    plan: Path
    manifest: Path
    typed_graph: Path
    seconds: float


def batch_profile(graph_max: int, min_batch: int, opt_batch: int | None, max_batch: int | None) -> Profile:
    """The profile from the flags; max defaults to the graph's max batch, opt to min(8, max).

    Raises:
        ConfigError: Not 1 ≤ min ≤ opt ≤ max ≤ the graph's max batch.
    """
    top = graph_max if max_batch is None else max_batch
    profile = Profile(min_batch, min(8, top) if opt_batch is None else opt_batch, top)
    if not 1 <= profile.min <= profile.opt <= profile.max:
        raise ConfigError(f"batch profile needs 1 ≤ min ≤ opt ≤ max, got {profile.min}/{profile.opt}/{profile.max}")
    if profile.max > graph_max:
        raise ConfigError(f"--max-batch {profile.max} exceeds the graph's max batch {graph_max}; export a larger one")
    return profile


def build_command(graph: Path, plan: Path, precision: str, profile: Profile, settings: dict[str, object]) -> str:
    """The command line that builds this plan again (recorded in the manifest, named in refusals).

    ``settings``: flag name → value (True for a switch; None or False left out).
    """
    words = ["python", "-m", "export.build_engine", str(graph), "--output", str(plan), "--precision", precision]
    words += ["--min-batch", str(profile.min), "--opt-batch", str(profile.opt), "--max-batch", str(profile.max)]
    for flag, value in settings.items():
        if value is True:
            words.append(f"--{flag}")
        elif value not in (None, False):
            words += [f"--{flag}", str(value)]
    return shlex.join(words)


def load_timing_cache(path: Path | None, machine: Machine) -> bytes:
    """The timing cache's bytes when it was measured here; otherwise b"" (a stale one set aside)."""
    if path is None or not path.exists():
        return b""
    try:
        measured_on = Machine.from_dict(read_json(manifest_path(path)))
    except InputFileError:  # no sidecar, or not JSON
        measured_on = None
    problem = timing_cache_problem(measured_on, machine)
    if problem is None:
        return path.read_bytes()
    aside = path.with_name(path.name + ".set-aside")
    os.replace(path, aside)
    logger.warning("timing cache %s set aside as %s, not used: %s", path, aside.name, problem)
    return b""


def save_timing_cache(path: Path, data: bytes, machine: Machine) -> None:
    """Writes the cache and its sidecar (the machine it was measured on)."""
    write_bytes(path, data)
    write_json(manifest_path(path), machine.to_dict())


def build_engine(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: str,
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: str | os.PathLike | None = None,
    hardware_compat: str = "none",
    version_compatible: bool = False,
    optimization_level: int = DEFAULT_OPT_LEVEL,
    tolerance_overrides: dict[str, float] | None = None,
    force: bool = False,
) -> EngineResult:
    """Makes or takes the typed graph, then builds the plan; see the module docstring.

    Raises:
        ConfigError: Bad arguments or an existing output without ``force``.
        ParityError: A typed graph made here fails its gate.
        StaleArtifactError: An INT8 graph breaks a TensorRT Q/DQ rule (``export.qdq_checks``).
        MissingDependencyError: No GPU or no TensorRT here (after the typed graph was written).
        TensorRTError: TensorRT's native library failed (a driver too old for its CUDA, mismatched libraries).
        ExportError: TensorRT refused the graph or failed to build.
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    _check_arguments(output, precision, workspace_mib, hardware_compat, optimization_level, force)
    check_outputs({"--output": output, "--timing-cache": timing_cache}, [source], force=True)  # existing: above
    if timing_cache is not None and optimization_level == NO_TIMING_LEVEL:
        raise ConfigError(
            "--builder-opt-level 0 neither reads nor updates a timing cache; drop --timing-cache, or choose level 1-5"
        )
    _, source_facts = read_graph(source, weights=False)
    _refuse_cpu_target(source, source_facts)
    profile = batch_profile(source_facts.max_batch, min_batch, opt_batch, max_batch)
    if tolerance_overrides and source_facts.precision == precision:
        raise ConfigError(
            f"--tolerance applies to a graph made here; {source} is {precision} already and taken as it is"
        )
    graph_path = typed_graph(source, precision, output, tolerance_overrides=tolerance_overrides, force=force)
    facts = source_facts if graph_path == source else read_graph(graph_path, weights=False)[1]
    if precision == "int8":
        check_int8_file(graph_path, fix="remake it with python -m calibration.quantize (with --force)")
    flags = {
        "workspace": workspace_mib,
        "builder-opt-level": optimization_level,
        "hardware-compat": hardware_compat,
        "version-compatible": version_compatible,
        "timing-cache": timing_cache,
    }
    command = build_command(graph_path, output, precision, profile, flags)
    try:
        machine = this_machine()
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"{exc}. The {precision} graph {graph_path} is written and gated; build the plan on a machine with a "
            f"GPU and TensorRT: {command}"
        ) from exc

    settings = BuildSettings(
        input_name=facts.input_name,
        item_shape=facts.serving().input_item_shape,
        min_batch=profile.min,
        opt_batch=profile.opt,
        max_batch=profile.max,
        workspace_mib=workspace_mib,
        optimization_level=optimization_level,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
    )
    cache_path = Path(timing_cache) if timing_cache is not None else None
    logger.info(
        "building %s from %s on %s (TensorRT %s)", output, graph_path, machine.gpu_name, machine.tensorrt_version
    )
    build_started = time.perf_counter()
    built = build_serialized(graph_path, settings, load_timing_cache(cache_path, machine))
    machine = dataclasses.replace(machine, tensorrt_version=built.tensorrt_version)  # the module's, not the package's
    build_seconds = time.perf_counter() - build_started
    logger.info("built in %.1f s", build_seconds)
    engine = EngineFacts(
        tensorrt_version=machine.tensorrt_version,
        gpu_name=machine.gpu_name,
        compute_capability=machine.compute_capability,
        opt_batch=profile.opt,
        hardware_compat=hardware_compat,
        version_compatible=version_compatible,
        builder_optimization_level=optimization_level,
        workspace_mib=workspace_mib,
        build_seconds=round(build_seconds, 1),
        build_command=command,
        platform=machine.platform,
    )
    plan_facts = facts.built_into(
        engine,
        min_batch=profile.min,
        max_batch=profile.max,
        source_name=os.path.relpath(graph_path, output.parent),
        source_sha256=sha256_file(graph_path),
    )
    with staging_folder(output) as staging:  # the plan and its manifest land as a pair (core.manifest.publish)
        staged = staging / output.name
        write_bytes(staged, built.plan)
        write_manifest(staged, plan_facts, force=True)
        if not force and (output.exists() or manifest_path(output).exists()):
            raise ConfigError(f"{output} appeared while building; pass --force to replace it")
        publish(staged, output)
    manifest = manifest_path(output)
    if cache_path is not None and built.timing_cache is not None:
        save_timing_cache(cache_path, built.timing_cache, machine)
    return EngineResult(output, manifest, graph_path, time.perf_counter() - started)


def _refuse_cpu_target(graph: Path, facts: ArtifactFacts) -> None:
    """An INT8 graph quantized for ONNX Runtime on CPUs is no engine's source.

    Raises:
        ConfigError: It is one, with what to build from instead.
    """
    if facts.calibration is not None and facts.calibration.target != "tensorrt":
        fp32 = graph.parent / (facts.source_onnx or "model.onnx")
        raise ConfigError(
            f"{graph} is quantized for ONNX Runtime on x86 CPUs (--target {facts.calibration.target}: uint8 "
            "activations with zero points), and TensorRT needs symmetric INT8; quantize its FP32 graph for "
            f"TensorRT (python -m calibration.quantize {fp32} --data DIR --output M.int8.onnx --target tensorrt) "
            "and build from that"
        )


def _check_arguments(output: Path, precision: str, workspace: int, compat: str, level: int, force: bool) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if output.suffix != ".plan":
        raise ConfigError(f"{output}: the output must end in .plan")
    if not force and (output.exists() or manifest_path(output).exists()):
        raise ConfigError(f"{output} (or its manifest) already exists; pass --force to replace it")
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise ConfigError(f"cannot write to {output.parent}: not a writable folder")
    if workspace < 1:
        raise ConfigError(f"--workspace must be at least 1 MiB, got {workspace}")
    if compat not in HARDWARE_COMPAT:
        raise ConfigError(f"--hardware-compat must be one of {', '.join(HARDWARE_COMPAT)}, got {compat!r}")
    if not 0 <= level <= 5:
        raise ConfigError(f"--builder-opt-level must be in 0..5, got {level}")


def main(argv: list[str] | None = None) -> int:
    """``python -m export.build_engine``: exit 1 when a gate fails or TensorRT/a GPU is missing."""
    parser = cli.parser("python -m export.build_engine", "Build a TensorRT plan from the typed ONNX graph.")
    parser.add_argument(
        "source",
        type=Path,
        help="the FP32 graph (export.to_onnx), or a graph of --precision (INT8: calibration.quantize)",
    )
    parser.add_argument("--output", type=Path, required=True, help="plan to write (.plan); its manifest goes beside")
    parser.add_argument("--precision", choices=PRECISIONS, required=True, help="the engine's (and graph's) precision")
    parser.add_argument("--min-batch", type=int, default=1, help="smallest batch the plan accepts")
    parser.add_argument("--opt-batch", type=int, help="batch the plan is tuned for (default: min(8, max))")
    parser.add_argument("--max-batch", type=int, help="largest batch (default: the graph's max batch)")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace, MiB")
    parser.add_argument("--timing-cache", type=Path, help="read (when measured here) and update this timing cache")
    parser.add_argument("--hardware-compat", choices=HARDWARE_COMPAT, default="none", help="GPUs the plan runs on")
    parser.add_argument(
        "--version-compatible",
        action="store_true",
        help="plan also runs on later TensorRT (same major, or 10.x on 11.x); loading it runs code stored in it",
    )
    parser.add_argument("--builder-opt-level", type=int, default=DEFAULT_OPT_LEVEL, help="0 (fast) .. 5 (thorough)")
    add_tolerance_option(parser)
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)

    def body() -> None:
        result = build_engine(
            args.source,
            args.output,
            precision=args.precision,
            min_batch=args.min_batch,
            opt_batch=args.opt_batch,
            max_batch=args.max_batch,
            workspace_mib=args.workspace,
            timing_cache=args.timing_cache,
            hardware_compat=args.hardware_compat,
            version_compatible=args.version_compatible,
            optimization_level=args.builder_opt_level,
            tolerance_overrides=parse_tolerances(args.tolerance),
            force=args.force,
        )
        print(f"wrote {result.plan} and {result.manifest} from {result.typed_graph} in {result.seconds:.1f} s")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
