"""``python -m calibration.quantize``: the FP32 graph → an INT8 graph, checked and gated.

Two targets. ``--target tensorrt`` (the default) writes the graph a TensorRT INT8 engine is built from;
``--target cpu`` writes the graph ONNX Runtime runs fastest on x86 CPUs: ONNX Runtime's own recipe,
uint8 activations with zero points and symmetric int8 weights per channel (U8S8), in Q/DQ form (which
ONNX Runtime fuses into QLinearConv and its kin when it loads the graph; measured faster than the
QOperator form), the head FP32 as for TensorRT. The x86 kernels (VNNI, or AVX2 pairs) want U8S8;
TensorRT wants S8S8 with zero points 0. Both are calibrated, cached and gated alike; the facts
record the target, and ``export.build_engine`` refuses a cpu-target graph.

For TensorRT, quantization is ONNX Runtime's ``quantize_static`` in QDQ format, shaped for TensorRT:
QInt8 activations and weights, symmetric (zero point 0), weights per output channel, biases left
in FP32 (``QuantizeBias`` off) and one Q/DQ pair per consumer (``DedicatedQDQPair``). Q/DQ pairs sit
where TensorRT's explicit-quantization guidance puts them: on every Conv's input (and its weights),
on each residual Add's identity input and on MaxPool, never on a Conv's or an Add's output, so
TensorRT fuses Conv+ReLU and Conv+Add+ReLU in INT8; the head (global max pool, linear layer, masked
attention) stays FP32. Weights are stored as INT8 initializers behind a DequantizeLinear,
the form TensorRT and ModelOpt use, a quarter of the FP32 size.

The INT8 graph is gated against a reference on held-out images when given (else on calibration
images): the eager checkpoint with ``--checkpoint``, otherwise the source FP32 graph (itself gated
against the eager model at FP32 limits when it was exported).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core import cli
from core.errors import ConfigError
from core.facts import INT8_TARGETS, CalibrationFacts
from core.files import check_outputs, sha256_file, staging_folder
from core.manifest import manifest_path, publish, write_manifest
from export.parity import add_tolerance_option, tolerances

from .cache import RangeKey, read_ranges, write_ranges
from .data import CalibrationSet, calibration_set
from .gate import GateOutcome, gate_int8
from .graph import METHODS, quantize_graph, read_source

logger = logging.getLogger(__name__)

DEFAULT_PERCENTILE = 99.999
DEFAULT_BATCH = 8
# Gate images are capped (evenly spaced): enough for stable figures, few enough to run both graphs quickly.
DEFAULT_GATE_IMAGES = 500


@dataclass(frozen=True)
class QuantizeResult:
    """Where the INT8 graph went, what it was calibrated on, and how it compared."""

    path: Path
    manifest: Path
    cache: Path
    reused_cache: bool
    calibration: CalibrationSet
    gate: GateOutcome
    seconds: float


def method_spec(method: str, percentile: float) -> str:
    """The method with the parameters its ranges depend on, e.g. ``percentile(99.999)``."""
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    return f"percentile({percentile:g})" if method == "percentile" else method


def default_cache(output: Path, method: str) -> Path:
    """``M.int8.onnx`` → ``M.int8.onnx.<method>.ranges.json``."""
    return output.with_name(f"{output.name}.{method}.ranges.json")


def quantize_int8(
    source: str | os.PathLike,
    output: str | os.PathLike,
    data: str | os.PathLike,
    *,
    annotations: str | os.PathLike | None = None,
    method: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
    max_images: int | None = None,
    batch_size: int | None = None,
    cache: str | os.PathLike | None = None,
    recalibrate: bool = False,
    checkpoint: str | os.PathLike | None = None,
    gate_images: str | os.PathLike | None = None,
    gate_annotations: str | os.PathLike | None = None,
    gate_max_images: int = DEFAULT_GATE_IMAGES,
    tolerance_overrides: dict[str, float] | None = None,
    target: str = "tensorrt",
    force: bool = False,
) -> QuantizeResult:
    """Calibrates, quantizes for ``target`` (``tensorrt`` or ``cpu``), checks and gates; see the module docstring.

    Raises:
        ConfigError: Bad arguments, an existing output without ``force``, a source that is not the
            FP32 graph of this toolkit.
        StaleArtifactError: The range cache was computed for another model, file list or method.
        InputFileError: Unreadable source, images or annotations.
        ExportError: The quantized graph breaks a TensorRT rule or a structural check.
        ParityError: The INT8 graph fails the int8 parity gate.
    """
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    spec = method_spec(method, percentile)
    if target not in INT8_TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(INT8_TARGETS)}")
    _check_arguments(source, output, batch_size, gate_max_images, force)
    inputs = [source, data, annotations, gate_images, gate_annotations, checkpoint]
    check_outputs({"--output": output, "--cache": cache}, inputs, force=True)  # existing outputs: above
    tolerances("int8", tolerance_overrides)  # an unknown limit name is refused before any work
    if not 0 < percentile <= 100:
        raise ConfigError(f"--percentile must be in (0, 100], got {percentile}")
    graph, facts = read_source(source)
    graph_max = facts.max_batch
    if batch_size is None:
        batch_size = min(DEFAULT_BATCH, graph_max)
    elif batch_size > graph_max:
        raise ConfigError(f"--batch-size {batch_size} exceeds the graph's max batch {graph_max}")
    dataset = calibration_set(data, facts.class_names, annotations=annotations, max_images=max_images)
    warnings = dataset.warnings()
    for warning in warnings:
        logger.warning("%s", warning)
    cache = Path(cache) if cache is not None else default_cache(output, method)
    key = RangeKey(sha256_file(source), dataset.fingerprint(), spec, target)
    ranges = None if recalibrate or not cache.exists() else read_ranges(cache, key)
    if ranges is not None:
        logger.info("reusing activation ranges from %s", cache)

    with staging_folder(output) as staging:
        staged = staging / output.name
        computed, int8_facts = quantize_graph(
            source,
            graph,
            facts,
            staged,
            dataset,
            method=method,
            percentile=percentile,
            batch_size=batch_size,
            ranges=ranges,
            calibration=CalibrationFacts(spec, len(dataset.files), key.files_sha256, target),
        )
        if ranges is None:
            import onnxruntime

            write_ranges(cache, key, computed, images=len(dataset.files), tool=f"onnxruntime {onnxruntime.__version__}")
            logger.info("activation ranges saved to %s", cache)
        gate_set = calibration_set(
            gate_images or data,
            facts.class_names,
            annotations=gate_annotations if gate_images is not None else annotations,
            max_images=gate_max_images,
        )
        outcome = gate_int8(
            source,
            staged,
            gate_set,
            facts,
            held_out=gate_images is not None,
            batch=graph_max,
            checkpoint=checkpoint,
            tolerance_overrides=tolerance_overrides,
        )
        coverage = {"coverage": dataset.coverage(), "warnings": warnings}
        write_manifest(staged, int8_facts, parity=outcome.to_dict(), calibration_set=coverage, force=True)
        if not force and any(path.exists() for path in (output, manifest_path(output))):
            raise ConfigError(f"{output} appeared while quantizing; pass --force to replace it")
        publish(staged, output)
    return QuantizeResult(
        output, manifest_path(output), cache, ranges is not None, dataset, outcome, time.perf_counter() - started
    )


def _check_arguments(source: Path, output: Path, batch_size: int | None, gate_images: int, force: bool) -> None:
    if output.suffix != ".onnx":
        raise ConfigError(f"{output}: the output must end in .onnx")
    if output.resolve() == source.resolve():
        raise ConfigError(f"{output} is the source graph; name another file for the INT8 graph")
    if not force and (output.exists() or manifest_path(output).exists()):
        raise ConfigError(f"{output} (or its manifest) already exists; pass --force to replace it")
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise ConfigError(f"cannot write to {output.parent}: not a writable folder")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if gate_images < 1:
        raise ConfigError(f"--gate-max-images must be at least 1, got {gate_images}")


def _coverage_table(dataset: CalibrationSet) -> str:
    coverage = dataset.coverage()
    if coverage is None:
        return "class coverage: unknown (no labels; pass --annotations)"
    width = max(len(name) for name in coverage)
    lines = [f"class coverage ({len(dataset.files)} calibration images):"]
    lines += [f"  {name:{width}} {count:6d}{'  ← none' if count == 0 else ''}" for name, count in coverage.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m calibration.quantize``: exit 1 when a check or the int8 gate fails."""
    parser = cli.parser("python -m calibration.quantize", "Calibrate and quantize an FP32 graph to INT8.")
    parser.add_argument("source", type=Path, help="the FP32 graph written by export.to_onnx")
    parser.add_argument("--data", type=Path, required=True, help="calibration image folder")
    parser.add_argument("--annotations", type=Path, help="COCO instances JSON of --data: labels for class coverage")
    parser.add_argument("--output", type=Path, required=True, help="INT8 graph to write (.onnx)")
    parser.add_argument(
        "--target",
        choices=INT8_TARGETS,
        default="tensorrt",
        help="tensorrt: symmetric Q/DQ for a TensorRT engine; cpu: U8S8 for ONNX Runtime on x86",
    )
    parser.add_argument("--method", choices=sorted(METHODS), default="minmax", help="activation range method")
    parser.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE, help="percentile method's cut")
    parser.add_argument("--max-images", type=int, help="calibrate on at most this many images (evenly spaced)")
    parser.add_argument(
        "--batch-size", type=int, help=f"calibration batch size (default: {DEFAULT_BATCH}, or the graph's max batch)"
    )
    parser.add_argument("--cache", type=Path, help="range cache (default: OUTPUT.<method>.ranges.json)")
    parser.add_argument("--recalibrate", action="store_true", help="recompute the ranges and replace the cache")
    gate = parser.add_argument_group("gate (default: calibration images against the source FP32 graph)")
    gate.add_argument("--checkpoint", type=Path, help="gate against this eager checkpoint instead of the FP32 graph")
    gate.add_argument("--gate-images", type=Path, help="held-out image folder for the gate")
    gate.add_argument("--gate-annotations", type=Path, help="COCO instances JSON of --gate-images: adds mAP")
    gate.add_argument("--gate-max-images", type=int, default=DEFAULT_GATE_IMAGES, help="gate on at most this many")
    add_tolerance_option(gate, "map_drop=1.5")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    if args.gate_annotations is not None and args.gate_images is None:
        parser.error("--gate-annotations needs --gate-images, the folder its file names are relative to")

    def body() -> None:
        from export.parity import GateError, parse_tolerances

        try:
            result = quantize_int8(
                args.source,
                args.output,
                args.data,
                annotations=args.annotations,
                method=args.method,
                percentile=args.percentile,
                max_images=args.max_images,
                batch_size=args.batch_size,
                cache=args.cache,
                recalibrate=args.recalibrate,
                checkpoint=args.checkpoint,
                gate_images=args.gate_images,
                gate_annotations=args.gate_annotations,
                gate_max_images=args.gate_max_images,
                tolerance_overrides=parse_tolerances(args.tolerance),
                target=args.target,
                force=args.force,
            )
        except GateError as exc:
            print(exc.report.table())
            raise
        print(_coverage_table(result.calibration))
        print(result.gate.report.table())
        print(result.gate.speed_line())
        reuse = "reused" if result.reused_cache else "saved"
        print(f"wrote {result.path} and {result.manifest} in {result.seconds:.1f} s; ranges {reuse}: {result.cache}")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
