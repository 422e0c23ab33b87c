"""``python -m runtime benchmark ARTIFACT...``: latency and throughput, side by side (``runtime.benchmark``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.files import check_outputs, write_json, write_text

from ..backends import BACKENDS
from ..benchmark import benchmark, markdown

DESCRIPTION = "Latency and throughput of artifacts, side by side."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifacts", nargs="+", type=Path, help=".plan / .onnx / .pt files; the first is the reference")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="backend for every artifact")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (cuda:N for torch)")
    parser.add_argument("--torch-fp16", action="store_true", help="also run each .pt with FP16 autocast (CUDA)")
    parser.add_argument(
        "--bare-onnxruntime", action="store_true", help="also run each .onnx in a bare InferenceSession"
    )
    parser.add_argument("--include-preprocessing", action="store_true", help="also time JPEG files in")
    parser.add_argument("--images", type=Path, help="JPEG folder for --include-preprocessing (default: generated)")
    parser.add_argument("--warmup", type=_count(0), default=2, help="untimed calls per candidate and batch size")
    parser.add_argument("--iterations", type=_count(1), default=5, help="timed calls per candidate, batch, round")
    parser.add_argument("--rounds", type=_count(1), default=3, help="interleaved rounds")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown")
    parser.add_argument("--force", action="store_true", help="replace existing --json/--markdown files")


def usage_problem(args: argparse.Namespace) -> str | None:
    if args.images is not None and not args.include_preprocessing:
        return "--images is used with --include-preprocessing"
    return None


def run(args: argparse.Namespace) -> None:
    """Prints the table; writes JSON and markdown where asked."""
    outputs = {"--json": args.json, "--markdown": args.markdown}
    check_outputs(outputs, [*args.artifacts, args.images], force=args.force)
    result = benchmark(
        args.artifacts,
        args.batch_sizes,
        backend=args.backend,
        device=args.device,
        torch_fp16=args.torch_fp16,
        bare_onnxruntime=args.bare_onnxruntime,
        include_preprocessing=args.include_preprocessing,
        images=args.images,
        warmup=args.warmup,
        iterations=args.iterations,
        rounds=args.rounds,
    )
    table = markdown(result)
    print(table)
    if args.json is not None:
        write_json(args.json, result)
    if args.markdown is not None:
        write_text(args.markdown, table)


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"whole numbers separated by commas, got {text!r}") from None
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1, got {text!r}")
    return sizes


def _count(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse
