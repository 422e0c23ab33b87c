"""The uint8-input figures of docs/benchmarks.md, side by side in one run: ``python scripts/uint8_input_figures.py``.

A random-weight ResNet-101 @ 448 (80 classes, max batch 8) is exported twice, with a float32 input
and with a uint8 input (``export.to_onnx --input uint8``), and both graphs are timed through
``Predictor`` at batch 8 in interleaved rounds: on arrays (``Predictor.logits``: preprocessed floats
for the one, resized pixels for the other) and on JPEG files (``Predictor.predict``: decode, resize,
then the CPU normalises for the float graph only). Then both graphs in bare ONNX Runtime sessions,
alternated, and what the uint8 graph's preprocessing nodes cost by ONNX Runtime's own profiler. The
probabilities of both graphs on the same files are compared as well.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from random_graph import random_graph  # noqa: E402  (beside this script)

from runtime import Predictor  # noqa: E402
from runtime.benchmark import benchmark, markdown, synthetic_jpegs  # noqa: E402


def paired_sessions(graphs: dict[str, Path], pairs: int) -> list[float]:
    """uint8 time / float32 time of a batch of 8 in each graph's session (the served configuration), per
    pair of runs, the order alternating pair by pair so that a drifting machine touches both alike."""
    from runtime.onnxruntime_session import load_session

    sessions = {name: load_session(path, device="cpu") for name, path in graphs.items()}
    size = int(sessions["float32"].get_inputs()[0].shape[2])
    rng = np.random.default_rng(0)
    feeds = {
        "float32": rng.standard_normal((8, 3, size, size), dtype=np.float32),
        "uint8": rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8),
    }
    for name, session in sessions.items():
        session.run(None, {"images": feeds[name]})
    ratios = []
    for pair in range(pairs):
        seconds = {}
        for name in ("float32", "uint8") if pair % 2 == 0 else ("uint8", "float32"):
            started = time.perf_counter()
            sessions[name].run(None, {"images": feeds[name]})
            seconds[name] = time.perf_counter() - started
        ratios.append(seconds["uint8"] / seconds["float32"])
    return ratios


def prefix_milliseconds(graph: Path, runs: int = 3) -> tuple[float, float]:
    """Milliseconds per batch of 8 of the uint8 input's nodes, and of the whole graph, by ONNX Runtime's profiler."""
    import onnxruntime as ort

    from export.uint8_input import PREFIX

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(graph.with_name("profile"))
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    size = int(session.get_inputs()[0].shape[1])
    pixels = np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    for _ in range(runs):
        session.run(None, {"images": pixels})
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["name"].startswith(PREFIX)] += event["dur"] / runs / 1000
    return kernels[True], kernels[True] + kernels[False]


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
    ratios = paired_sessions(graphs, args.rounds * 3)
    low, middle, high = statistics.quantiles(ratios, n=4)
    print(
        f"bare sessions, batch 8, {len(ratios)} alternated pairs: uint8 time / float32 time median {middle:.3f} "
        f"(quartiles {low:.3f}, {high:.3f})"
    )
    prefix, total = prefix_milliseconds(graphs["uint8"])
    print(f"the uint8 input's preprocessing nodes: {prefix:.1f} ms of {total:.0f} ms of kernels a batch (profiler)")


if __name__ == "__main__":
    main()
