"""``python -m runtime predict ARTIFACT IMAGE...``: labels and probabilities of images (or folders of them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.preprocessing import image_files

from ..backends import BACKENDS
from ..predictor import Predictor
from ..torch_decode import DECODERS

DESCRIPTION = "Predict the labels of images with a deployed artifact."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help=".plan (TensorRT), .onnx (ONNX Runtime) or .pt (torch)")
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    parser.add_argument("--backend", default="auto", choices=("auto", *BACKENDS), help="backend (auto: from suffix)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (cuda:N for torch)")
    parser.add_argument("--fp16", action="store_true", help="FP16 autocast (torch backend on CUDA)")
    add_decoding_options(parser)
    parser.add_argument("--threshold", type=float, help="probability threshold of every class (default: the model's)")
    parser.add_argument("--class-thresholds", type=Path, help='JSON file of per-class thresholds, {"name": 0.4}')
    parser.add_argument("--top-k", type=int, help="also show the k most probable classes")
    parser.add_argument("--batch-size", type=int, help="images per inference call (default: the artifact's limit)")
    parser.add_argument("--skip-bad", action="store_true", help="report unusable images and go on (exit 0)")
    parser.add_argument("--json", action="store_true", help="print JSON: one object per image, scores by class")


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """``--decoder``, ``--channels-last`` and ``--cuda-graphs``, as ``Predictor`` takes them."""
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="auto",
        help="pillow (CPU), torchvision (on the runner's device: nvJPEG on CUDA); auto: torchvision for torch and "
        "TensorRT on CUDA",
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs (torch backend)")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay each batch size as a CUDA graph (torch)")


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the images directly in them, sorted by name."""
    result: list[Path] = []
    for path in paths:
        result.extend(image_files(path) if path.is_dir() else [path])
    return result


def run(args: argparse.Namespace) -> None:
    """Prints one line per image (or JSON with ``--json``); an unusable image is an error unless skipped."""
    with Predictor(
        args.artifact,
        args.backend,
        device=args.device,
        fp16=args.fp16,
        decoder=args.decoder,
        channels_last=args.channels_last,
        cuda_graphs=args.cuda_graphs,
        threshold=args.threshold,
        class_thresholds=args.class_thresholds,
        top_k=args.top_k,
        batch_size=args.batch_size,
    ) as predictor:
        results = predictor.predict([str(p) for p in expand(args.images)], skip_bad=args.skip_bad)
    if args.json:
        document = {
            "artifact": str(args.artifact),
            "backend": predictor.backend,
            "class_names": list(predictor.class_names),
            "results": [r.to_dict(predictor.class_names) for r in results],
        }
        print(json.dumps(document, indent=2))
        return
    for result in results:
        if not result.ok:
            print(f"{result.source}: error: {result.error}")
            continue
        labels = ", ".join(f"{name} {result.scores[predictor.class_names.index(name)]:.3f}" for name in result.labels)
        line = f"{result.source}: {labels or '(no label over its threshold)'}"
        if result.top_k is not None:
            line += "  | top: " + ", ".join(f"{name} {p:.3f}" for name, p in result.top_k)
        print(line)
