"""``python -m export.check_parity``: the eager FP32 model against a candidate, gated.

Candidates, each run through the runtime runner that serves it in production:
- an ``.onnx`` graph, with ONNX Runtime (its precision read from its content);
- a ``.plan``, with TensorRT (on a machine with a GPU and TensorRT; its manifest checked first);
- a ``.pt`` checkpoint, with torch, e.g. on CUDA with FP16 autocast (``--device cuda --fp16``);
- a ``polygraphy run --save-outputs`` JSON (with ``--polygraphy-inputs``, the ``--save-inputs``
  file of the same run), so a run made on a GPU machine, e.g. of a TensorRT plan, is compared here.
``--write-inputs F`` writes this command's inputs in Polygraphy's format, for
``polygraphy run M.plan --trt --load-inputs F --save-outputs out.json`` on that machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx

from core import cli
from core.errors import ConfigError, InputFileError, MissingDependencyError
from core.files import atomic_output
from models.checkpoint import MASK_KEY, load_model, read_checkpoint
from models.classifier import MaskedGATClassifier
from runtime.plan_rules import read_plan_manifest

from .metadata import graph_precision, read_metadata, require_serving_facts, serving_facts
from .parity import TOLERANCES, GateError, ParityReport, add_tolerance_option, compare, parse_tolerances, tolerances
from .parity_inputs import (
    ParityInputs,
    coco_inputs,
    eager_logits,
    folder_inputs,
    polygraphy_run,
    random_inputs,
    runner_logits,
)


def select_inputs(model: MaskedGATClassifier, images: Path | None, annotations: Path | None, count: int | None):
    """The parity inputs the flags name: a labelled split, an image folder, or random images."""
    if annotations is not None:
        if images is None:
            raise ConfigError("--annotations needs --images, the folder its file names are relative to")
        return coco_inputs(model, annotations, images)
    if images is not None:
        return folder_inputs(model, images)
    return random_inputs(model.config, 8 if count is None else count)


def check_parity(
    model: MaskedGATClassifier,
    candidate: str | os.PathLike,
    *,
    inputs: ParityInputs | None = None,
    polygraphy_inputs: str | os.PathLike | None = None,
    precision: str | None = None,
    tolerance_overrides: dict[str, float] | None = None,
    device: str = "auto",
    fp16: bool = False,
) -> tuple[ParityReport, np.ndarray, np.ndarray]:
    """Runs ``model`` (the eager reference, FP32 on CPU) and the candidate, and gates; returns the
    report and the two logit arrays. ``device`` and ``fp16`` choose how the candidate runs.

    Raises:
        ConfigError: The candidate's kind is unknown, its inputs are missing, or it records other
            serving facts than ``model``.
        ClassNamesMismatchError: An ONNX candidate was built for other classes.
    """
    candidate = Path(candidate)
    if not candidate.is_file():
        raise InputFileError(f"candidate not found: {candidate}")
    inputs = inputs or random_inputs(model.config, 8)
    images, targets = inputs.images, inputs.targets
    if candidate.suffix == ".onnx":
        graph = _load_graph(candidate)
        metadata = read_metadata(graph)
        require_serving_facts(metadata, model, candidate)
        # The limits follow what the graph is, never only what its metadata says it is.
        content = graph_precision(graph)
        if metadata.get("precision", content) != content:
            raise ConfigError(f"{candidate} is labelled {metadata.get('precision')} but its graph is {content}")
        precision = precision or content
        logits = runner_logits(candidate, images, device=device)
    elif candidate.suffix == ".plan":
        manifest = read_plan_manifest(candidate)
        require_serving_facts(manifest, model, candidate)
        precision = precision or manifest["precision"]
        try:
            logits = runner_logits(candidate, images, device=device)
        except MissingDependencyError as exc:
            raise MissingDependencyError(
                f"{exc}. Without them here: write inputs with --write-inputs, run `polygraphy run M.plan --trt "
                "--load-inputs inputs.json --save-inputs used.json --save-outputs out.json` on the GPU machine, "
                "and pass out.json here with --polygraphy-inputs used.json"
            ) from exc
    elif candidate.suffix == ".pt":
        stored = read_checkpoint(candidate)
        facts = serving_facts(stored.config, stored.class_names, stored.state_dict[MASK_KEY].numpy())
        require_serving_facts(facts, model, candidate)
        precision = precision or ("fp16" if fp16 else "fp32")
        logits = runner_logits(candidate, images, device=device, fp16=fp16)
    elif candidate.suffix == ".json":
        if polygraphy_inputs is None:
            raise ConfigError("a polygraphy outputs file needs --polygraphy-inputs, the --save-inputs file of its run")
        images, logits = polygraphy_run(candidate, polygraphy_inputs)
        targets = None
        size = model.config.image_size
        if images.shape[1:] != (3, size, size):
            raise InputFileError(
                f"{polygraphy_inputs}: images of shape {images.shape[1:]}, the model takes (3, {size}, {size})"
            )
    else:
        raise ConfigError(f"{candidate}: a candidate is an .onnx, .plan or .pt file, or a polygraphy outputs .json")
    reference = eager_logits(model, images)
    precision = precision or "fp32"  # polygraphy outputs carry no graph to read a precision from
    report = compare(
        reference,
        logits,
        precision=precision,
        threshold=model.config.decision_threshold,
        limits=tolerances(precision, tolerance_overrides),
        targets=targets,
        class_names=model.class_names,
    )
    return report, reference, logits


def _load_graph(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a file that is not ONNX
        raise InputFileError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m export.check_parity``: print the parity table; exit 1 when the gate fails."""
    parser = cli.parser("python -m export.check_parity", "Compare a candidate artifact with the eager model.")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the reference checkpoint (.pt)")
    parser.add_argument(
        "--candidate", type=Path, help="an .onnx graph, a .plan, a .pt checkpoint, or a polygraphy --save-outputs .json"
    )
    parser.add_argument("--device", default="auto", help="where the candidate runs: auto, cpu, cuda (cuda:N for .pt)")
    parser.add_argument("--fp16", action="store_true", help="run a .pt candidate with FP16 autocast (CUDA)")
    source = parser.add_argument_group("inputs (default: 8 random images)")
    source.add_argument("--images", type=Path, help="an image folder (with --annotations: the split's images)")
    source.add_argument("--annotations", type=Path, help="COCO instances JSON: adds both mAPs and their difference")
    source.add_argument("--random", type=int, help="this many random images")
    source.add_argument("--polygraphy-inputs", type=Path, help="the --save-inputs file of a polygraphy run")
    parser.add_argument(
        "--precision",
        choices=sorted(TOLERANCES),
        help="limits to apply (default: what an .onnx graph's content is; fp32 for polygraphy outputs)",
    )
    add_tolerance_option(parser)
    parser.add_argument("--report", type=Path, help="write the report as JSON")
    parser.add_argument("--plot", type=Path, help="draw |Δprob| against the reference probability (PNG)")
    parser.add_argument("--write-inputs", type=Path, help="only write the inputs in polygraphy's format, then exit")
    args = parser.parse_args(argv)
    if args.random is not None and args.random < 1:
        parser.error("--random needs at least 1 image")
    if args.random is not None and (args.images or args.annotations):
        parser.error("--random cannot be combined with --images/--annotations")
    if args.polygraphy_inputs and (args.images or args.annotations or args.random):
        parser.error("a polygraphy run brings its own inputs; drop --images/--annotations/--random")
    if (args.candidate is None) == (args.write_inputs is None):
        parser.error("give exactly one of --candidate and --write-inputs")

    def body() -> None:
        model = load_model(args.checkpoint)
        model_inputs = None
        if args.polygraphy_inputs is None:
            model_inputs = select_inputs(model, args.images, args.annotations, args.random)
        if args.write_inputs is not None:
            from polygraphy.json import to_json

            with atomic_output(args.write_inputs, force=False) as handle:
                handle.write(to_json([{"images": image[None]} for image in model_inputs.images]).encode())
            print(f"wrote {model_inputs.source} to {args.write_inputs}")
            return
        report, reference, logits = check_parity(
            model,
            args.candidate,
            inputs=model_inputs,
            polygraphy_inputs=args.polygraphy_inputs,
            precision=args.precision,
            tolerance_overrides=parse_tolerances(args.tolerance),
            device=args.device,
            fp16=args.fp16,
        )
        print(report.table())
        if args.report is not None:
            document = {"checkpoint": str(args.checkpoint), "candidate": str(args.candidate), **report.to_dict()}
            with atomic_output(args.report) as handle:
                handle.write(json.dumps(document, indent=2).encode())
        if args.plot is not None:
            from .parity_plot import plot_parity

            plot_parity(reference, logits, report, args.plot)
        if not report.passed:
            raise GateError(f"{args.candidate} fails the {report.precision} parity gate", report)

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
