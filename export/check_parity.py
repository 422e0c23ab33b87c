"""``python -m export.check_parity``: the eager FP32 model against a candidate, gated
(``export.artifact_parity``).

``--write-inputs F`` writes this command's inputs in Polygraphy's format, for
``polygraphy run M.plan --trt --load-inputs F --save-outputs out.json`` on a GPU machine; its
outputs are then gated here with ``--candidate out.json --polygraphy-inputs``.
"""

from __future__ import annotations

from pathlib import Path

from core import cli
from core.facts import INPUT_FORMATS
from core.files import check_outputs, write_json, write_text
from models.checkpoint import load_model

from .artifact_parity import check_parity, select_inputs
from .parity import TOLERANCES, GateError, add_tolerance_option, parse_tolerances


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
    parser.add_argument(
        "--input",
        choices=INPUT_FORMATS,
        default="float32",
        help="with --write-inputs: the input format of the artifact polygraphy will run (its facts' input.dtype)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing --report/--plot/--write-inputs files")
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
        outputs = {"--report": args.report, "--plot": args.plot, "--write-inputs": args.write_inputs}
        inputs = [args.checkpoint, args.candidate, args.images, args.annotations, args.polygraphy_inputs]
        check_outputs(outputs, inputs, force=args.force)
        model = load_model(args.checkpoint)
        model_inputs = None
        if args.polygraphy_inputs is None:
            model_inputs = select_inputs(model, args.images, args.annotations, args.random)
        if args.write_inputs is not None:
            from polygraphy.json import to_json

            feeds = model_inputs.feed(args.input)
            write_text(args.write_inputs, to_json([{"images": image[None]} for image in feeds]))
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
            write_json(
                args.report, {"checkpoint": str(args.checkpoint), "candidate": str(args.candidate), **report.to_dict()}
            )
        if args.plot is not None:
            from .parity_plot import plot_parity

            plot_parity(reference, logits, report, args.plot)
        if not report.passed:
            raise GateError(f"{args.candidate} fails the {report.precision} parity gate", report)

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
