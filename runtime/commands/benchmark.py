"""``python -m runtime benchmark ARTIFACT...``: latency and throughput, side by side (``runtime.benchmark``);
with ``--clients``, throughput under concurrent clients (``runtime.serving_benchmark``)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from core.files import check_outputs, write_json, write_text
from core.preprocessing import image_files

from ..backends import BACKENDS
from ..benchmark import benchmark, markdown, synthetic_jpegs
from ..serving_benchmark import concurrency_benchmark
from ..serving_benchmark import markdown as concurrency_markdown
from ..torch_decode import DECODERS
from ..triton_client import is_url

DESCRIPTION = "Latency and throughput of artifacts, side by side."
# Each mode's own flags and their defaults (one definition: given to the other mode, a flag would be ignored).
LATENCY_DEFAULTS = {
    "batch_sizes": [1, 8, 32],
    "backend": "auto",
    "device": "auto",
    "torch_fp16": False,
    "decoder": "auto",
    "channels_last": False,
    "cuda_graphs": False,
    "bare_onnxruntime": False,
    "include_preprocessing": False,
    "warmup": 2,
    "iterations": 5,
    "rounds": 3,
}
CLIENTS_DEFAULTS = {"request_images": 1, "seconds": 10.0}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "artifacts",
        nargs="+",
        help=".plan / .onnx / .pt files, or served URLs (http://HOST:PORT/tagger); the first is the reference",
    )
    parser.set_defaults(**LATENCY_DEFAULTS, **CLIENTS_DEFAULTS)
    parser.add_argument("--batch-sizes", type=_batch_sizes, help="comma-separated batch sizes")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), help="backend for every artifact")
    parser.add_argument("--device", help="auto, cpu or cuda (cuda:N for torch)")
    parser.add_argument("--torch-fp16", action="store_true", help="also run each .pt with FP16 autocast (CUDA)")
    parser.add_argument("--decoder", choices=DECODERS, help="who decodes JPEG files (as for predict)")
    parser.add_argument("--channels-last", action="store_true", help="run each .pt channels-last")
    parser.add_argument("--cuda-graphs", action="store_true", help="run each .pt as CUDA graphs (CUDA)")
    parser.add_argument(
        "--bare-onnxruntime", action="store_true", help="also run each .onnx in a bare InferenceSession"
    )
    parser.add_argument("--include-preprocessing", action="store_true", help="also time JPEG files in")
    parser.add_argument("--images", type=Path, help="JPEG folder for --include-preprocessing (default: generated)")
    parser.add_argument("--warmup", type=_count(0), help="untimed calls per candidate and batch size")
    parser.add_argument("--iterations", type=_count(1), help="timed calls per candidate, batch, round")
    parser.add_argument("--rounds", type=_count(1), help="interleaved rounds")
    concurrent = parser.add_argument_group("concurrent clients (instead of the latency table)")
    concurrent.add_argument("--clients", type=_batch_sizes, help="comma-separated client counts, e.g. 1,8,32")
    concurrent.add_argument("--request-images", type=_count(1), help="images per request")
    concurrent.add_argument("--seconds", type=float, help="timed seconds per target and client count")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown")
    parser.add_argument("--force", action="store_true", help="replace existing --json/--markdown files")


def usage_problem(args: argparse.Namespace) -> str | None:
    exclusive = LATENCY_DEFAULTS if args.clients is not None else CLIENTS_DEFAULTS
    given = ["--" + name.replace("_", "-") for name, default in exclusive.items() if getattr(args, name) != default]
    if given:
        mode = "with --clients" if args.clients is not None else "without --clients"
        return f"{', '.join(given)}: no effect {mode}; drop what does not apply"
    served = any(map(is_url, args.artifacts))
    if args.clients is None and args.images is not None and not (args.include_preprocessing or served):
        return "--images is used with --include-preprocessing, a served URL or --clients"
    if args.clients is not None and args.seconds <= 0:
        return "--seconds must be positive"
    return None


def run(args: argparse.Namespace) -> None:
    """Prints the table; writes JSON and markdown where asked."""
    outputs = {"--json": args.json, "--markdown": args.markdown}
    artifacts = [a if is_url(a) else Path(a) for a in args.artifacts]
    check_outputs(outputs, [*(a for a in artifacts if isinstance(a, Path)), args.images], force=args.force)
    if args.clients is not None:
        result, table = _concurrent(artifacts, args)
    else:
        result = _latency(artifacts, args)
        table = markdown(result)
    print(table)
    if args.json is not None:
        write_json(args.json, result)
    if args.markdown is not None:
        write_text(args.markdown, table)


def _concurrent(artifacts: list, args: argparse.Namespace) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
        files = image_files(args.images) if args.images else synthetic_jpegs(Path(scratch), 32)
        result = concurrency_benchmark(artifacts, files, args.clients, batch=args.request_images, seconds=args.seconds)
    return result, concurrency_markdown(result)


def _latency(artifacts: list, args: argparse.Namespace) -> dict:
    return benchmark(
        artifacts,
        args.batch_sizes,
        backend=args.backend,
        device=args.device,
        torch_fp16=args.torch_fp16,
        decoder=args.decoder,
        channels_last=args.channels_last,
        cuda_graphs=args.cuda_graphs,
        bare_onnxruntime=args.bare_onnxruntime,
        include_preprocessing=args.include_preprocessing,
        images=args.images,
        warmup=args.warmup,
        iterations=args.iterations,
        rounds=args.rounds,
    )


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
