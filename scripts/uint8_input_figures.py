"""The uint8-input figures of docs/benchmarks.md, side by side in one run: ``python scripts/uint8_input_figures.py``.

A random-weight ResNet-101 @ 448 (80 classes, max batch 8) is exported twice, with a float32 input
and with a uint8 input (``export.to_onnx --input uint8``), and both graphs are timed through
``Predictor`` at batch 8 in interleaved rounds: on arrays (``Predictor.logits``: preprocessed floats
for the one, resized pixels for the other) and on JPEG files (``Predictor.predict``: decode, resize,
then the CPU normalises for the float graph only). The probabilities of both graphs on the same
files are compared as well.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from random_graph import random_graph  # noqa: E402  (beside this script)

from runtime import Predictor  # noqa: E402
from runtime.benchmark import benchmark, markdown, synthetic_jpegs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the graphs and images (default: temporary); reused")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="uint8-input-"))
    work.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for input_format in ("float32", "uint8"):
        path = work / ("model.uint8.onnx" if input_format == "uint8" else "model.onnx")
        graphs[input_format] = (
            path
            if path.exists()
            else random_graph(
                work, args.backbone, args.image_size, max_batch=8, parity_samples=2, input_format=input_format
            )
        )
    images = work / "jpegs"
    if not images.is_dir():
        images.mkdir()
        synthetic_jpegs(images, 16)
    files = sorted(images.glob("*.jpg"))
    with Predictor(graphs["float32"]) as floats, Predictor(graphs["uint8"]) as pixels:
        gap = max(
            float(np.abs(a.scores - b.scores).max())
            for a, b in zip(floats.predict(files), pixels.predict(files), strict=True)
        )
    result = benchmark(
        [graphs["float32"], graphs["uint8"]],
        (8,),
        include_preprocessing=True,
        images=files,
        warmup=1,
        iterations=3,
        rounds=args.rounds,
    )
    print(f"\nrandom {args.backbone} @ {args.image_size}, batch 8, through Predictor (median of interleaved rounds)")
    print(markdown(result))
    print(f"\nmax |Δp| between the two graphs over {len(files)} JPEG files: {gap:.2e}")


if __name__ == "__main__":
    main()
