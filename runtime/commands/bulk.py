"""``python -m runtime bulk ARTIFACT --images DIR --output OUT``: tag any number of images into result
shards, exactly once, resumable (``runtime.bulk``); ``--engine ray`` on a Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends import BACKENDS
from ..bulk import ENGINES, FORMATS, bulk
from ..bulk.job import DEFAULT_SHARD_SIZE
from ..bulk.job import usage_problem as options_problem

DESCRIPTION = "Tag a whole folder, list or dataset of images into result shards, exactly once."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help=".plan / .onnx / .pt, or a served tagger's URL")
    images = parser.add_argument_group("images (a folder, a list file, or COCO-format annotations)")
    images.add_argument("--images", type=Path, help="folder: every image under it, recursively, in name order")
    images.add_argument("--list", type=Path, help="file of image paths, one a line (relative to --images, or to it)")
    images.add_argument("--annotations", type=Path, help="COCO-format JSON: its images[].file_name under --images")
    parser.add_argument("--output", type=Path, required=True, help="results folder: shards, run.json, listing")
    parser.add_argument("--format", default="jsonl", choices=FORMATS, help="shard format (parquet needs pyarrow)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="images a shard")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    parser.add_argument("--force", action="store_true", help="start over in an --output that holds a run")
    parser.add_argument("--skip-bad", action="store_true", help="record unusable images as errors and go on")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="backend (auto: from suffix)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (cuda:N for torch)")
    parser.add_argument("--threshold", type=float, help="probability threshold of every class (default: the model's)")
    parser.add_argument("--class-thresholds", type=Path, help='JSON file of per-class thresholds, {"name": 0.4}')
    parser.add_argument("--batch-size", type=int, help="images per inference call (default: the artifact's limit)")
    ray = parser.add_argument_group("Ray (--engine ray)")
    ray.add_argument("--engine", default="local", choices=ENGINES, help="local: this process; ray: Ray Data")
    ray.add_argument("--address", help="a running Ray cluster to join, e.g. ray://head:10001 (default: start one)")
    ray.add_argument("--workers", type=int, default=1, help="predictor actors")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs each actor asks for")


def usage_problem(args: argparse.Namespace) -> str | None:
    engine = (args.engine, args.address, args.workers, args.gpus_per_worker)
    return options_problem(*engine, resume=args.resume, force=args.force)


def run(args: argparse.Namespace) -> None:
    """Prints a summary once every image is tagged."""
    summary = bulk(
        args.artifact,
        args.output,
        images=args.images,
        listing=args.list,
        annotations=args.annotations,
        fmt=args.format,
        shard_size=args.shard_size,
        resume=args.resume,
        force=args.force,
        skip_bad=args.skip_bad,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        backend=args.backend,
        device=args.device,
        threshold=args.threshold,
        class_thresholds=args.class_thresholds,
        batch_size=args.batch_size,
    )
    resumed = f" ({summary.done_before:,} done before the resume)" if summary.done_before else ""
    print(
        f"{summary.images:,} images: {summary.tagged:,} tagged, {summary.failed:,} failed{resumed}\n"
        f"{summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s\n"
        f"{summary.shards:,} shards, {summary.output_bytes / 1e6:.1f} MB in {summary.output}"
    )
