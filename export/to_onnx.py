"""``python -m export.to_onnx``: checkpoint → ONNX (FP32, or the FP16 graph), checked and gated.

The graph has one input ``images`` and one output ``logits`` [batch, N], the batch dynamic up to
``--max-batch``, the co-occurrence mask a constant. The input is preprocessed float32 [batch, 3, S, S],
or with ``--input uint8`` resized uint8 pixels [batch, S, S, 3] that the graph scales, normalises and
transposes itself (``export.uint8_input``). After export: ONNX's full
checker, strict shape inference, the mask check, metadata, and the parity gate against the eager
model. Everything is built in a staging folder and moved into place only when all of it passed,
so a failure leaves no artifact behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from core import cli
from core.errors import ConfigError, ExportError
from core.facts import INPUT_FORMATS
from core.facts import PRECISIONS as FACT_PRECISIONS
from core.files import staging_folder
from core.manifest import manifest_path, publish, write_manifest
from models.checkpoint import load_model
from models.classifier import MaskedGATClassifier
from models.evaluation import eager_logits
from runtime.backends import make_runner

from .metadata import artifact_facts, write_metadata
from .onnx_checks import check_model, find_mask_constant
from .parity import GATE_DEVICE, GateError, ParityReport, add_tolerance_option, compare, parse_tolerances, tolerances
from .parity_inputs import batched_logits, random_inputs
from .uint8_input import in_input_format

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
DEFAULT_MAX_BATCH = 32
# The precisions exported directly; the INT8 graph is made from the FP32 one by calibration.quantize.
PRECISIONS = tuple(p for p in FACT_PRECISIONS if p != "int8")
_PROTOBUF_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class ExportResult:
    """Where the artifact went and how it compared with the eager model."""

    path: Path
    manifest: Path
    parity: ParityReport
    seconds: float


def export_graph(model: MaskedGATClassifier, path: Path, *, opset: int, max_batch: int) -> onnx.ModelProto:
    """Exports ``model`` with torch's dynamo exporter (batch dimension dynamic) and loads it back."""
    size = model.config.image_size
    example = torch.zeros(min(2, max_batch), 3, size, size)
    # A graph for batch 1 only is static; torch.export cannot declare a range of one value.
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=max_batch)}} if max_batch > 1 else None
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=dynamic,
            opset_version=opset,
            external_data=False,
            optimize=True,
        )
        program.save(str(path), external_data=False)
    logger.debug("exporter output:\n%s", log.getvalue())
    return onnx.load(str(path))


def export_onnx(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    max_batch: int = DEFAULT_MAX_BATCH,
    input_format: str = "float32",
    parity_samples: int = 8,
    tolerance_overrides: Mapping[str, float] | None = None,
    external_data: bool = False,
    force: bool = False,
) -> ExportResult:
    """Exports, checks and gates an artifact; see the module docstring.

    Raises:
        ConfigError: Bad arguments, an existing output without ``force``, an unwritable folder.
        CheckpointError: The checkpoint cannot be read.
        ExportError: The graph fails a structural check.
        ParityError: The graph fails the parity gate (its report is the message).
    """
    started = time.perf_counter()
    output = Path(output)
    _check_arguments(output, precision, opset, max_batch, parity_samples, force)
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"unknown input format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    limits = tolerances(precision, tolerance_overrides)
    model = load_model(checkpoint)
    with staging_folder(output) as staging:
        staged = staging / output.name
        graph = export_graph(model, staging / "fp32.onnx", opset=opset, max_batch=max_batch)
        if precision == "fp16":
            from .fp16 import to_fp16

            graph = to_fp16(graph)
        graph = check_model(in_input_format(graph, input_format, model.config.preprocessing))
        find_mask_constant(graph, model.mask.cpu().numpy(), model.config.mask_mode)
        facts = artifact_facts(
            model, checkpoint, precision=precision, opset=opset, max_batch=max_batch, input_format=input_format
        )
        write_metadata(graph, facts)
        if graph.ByteSize() > _PROTOBUF_LIMIT and not external_data:
            raise ExportError("the graph exceeds protobuf's 2 GB limit; pass --external-data")
        onnx.save(graph, str(staged), save_as_external_data=external_data, location=output.name + ".data")

        inputs = random_inputs(model.config, parity_samples)
        reference = eager_logits(model, inputs.images)
        feed = inputs.feed(input_format)
        # The whole set at the largest batch, then one image alone: both ends of the batch range.
        with make_runner(staged, device=GATE_DEVICE) as runner:
            full_report, single_report = (
                compare(
                    reference[:count],
                    batched_logits(runner, feed[:count], batch),
                    precision=precision,
                    threshold=model.config.decision_threshold,
                    limits=limits,
                )
                for count, batch in ((len(reference), max_batch), (1, 1))
            )
        for report in (full_report, single_report):
            if not report.passed:
                raise GateError(f"{output.name} was not written: it fails the {precision} parity gate", report)
        write_manifest(staged, facts, parity=full_report.to_dict(), force=True)
        if not force and any(path.exists() for path in _artifact_files(output)):
            raise ConfigError(f"{output} appeared while exporting; pass --force to replace it")
        publish(staged, output)
    return ExportResult(output, manifest_path(output), full_report, time.perf_counter() - started)


def _artifact_files(output: Path) -> list[Path]:
    """The graph, its external-data file and its manifest."""
    return [output, output.with_name(output.name + ".data"), manifest_path(output)]


def _check_arguments(output: Path, precision: str, opset: int, max_batch: int, samples: int, force: bool) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if output.suffix != ".onnx":
        raise ConfigError(f"{output}: the output must end in .onnx")
    if output.is_dir():
        raise ConfigError(f"{output} is a folder; name the .onnx file to write")
    if not force and any(path.exists() for path in _artifact_files(output)):
        raise ConfigError(f"{output} (or its manifest or .data) already exists; pass --force to replace it")
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise ConfigError(f"cannot write to {output.parent}: not a writable folder")
    if not 17 <= opset <= 23:
        raise ConfigError(f"opset {opset} is outside the supported 17..23")
    if max_batch < 1 or samples < 1:
        raise ConfigError("--max-batch and --parity-samples must be at least 1")


def main(argv: list[str] | None = None) -> int:
    """``python -m export.to_onnx``: export, check and gate; exit 1 when a check or the gate fails."""
    parser = cli.parser("python -m export.to_onnx", "Export a checkpoint to ONNX, checked and parity-gated.")
    parser.add_argument("--checkpoint", type=Path, required=True, help="project checkpoint (.pt)")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write (.onnx)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32, or the FP16 graph")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest batch the graph accepts")
    parser.add_argument(
        "--input",
        choices=INPUT_FORMATS,
        default="float32",
        help="float32: preprocessed [B, 3, S, S]; uint8: resized pixels [B, S, S, 3], normalised in the graph",
    )
    parser.add_argument("--parity-samples", type=int, default=8, help="random images for the parity gate")
    add_tolerance_option(parser)
    parser.add_argument("--external-data", action="store_true", help="store weights in a .data file beside the graph")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)

    def body() -> None:
        try:
            result = export_onnx(
                args.checkpoint,
                args.output,
                precision=args.precision,
                opset=args.opset,
                max_batch=args.max_batch,
                input_format=args.input,
                parity_samples=args.parity_samples,
                tolerance_overrides=parse_tolerances(args.tolerance),
                external_data=args.external_data,
                force=args.force,
            )
        except GateError as exc:
            print(exc.report.table())
            raise
        print(result.parity.table())
        print(
            f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB) and {result.manifest} "
            f"in {result.seconds:.1f} s"
        )

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
