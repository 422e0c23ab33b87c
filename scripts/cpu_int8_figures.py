"""The CPU INT8 figures of docs/calibration.md, side by side in one run: ``python scripts/cpu_int8_figures.py``.

A random-weight ResNet-101 @ 448 (80 classes, max batch 8) is exported, quantized for both targets
(``--target tensorrt``: symmetric S8S8 Q/DQ; ``--target cpu``: U8S8), and timed through
``Predictor`` at batch 8 with the FP32 graph, in interleaved rounds. ONNX Runtime's two U8S8 formats
(Q/DQ, which the cpu target writes, and QOperator) are also timed in bare sessions, which is how the
format was chosen. Random weights make the parity gates meaningless, so the quantization here passes
loose limits explicitly (``LOOSE``); speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from random_graph import random_graph  # noqa: E402  (beside this script)
from tqdm import tqdm  # noqa: E402

from calibration.quantize import quantize_int8  # noqa: E402
from runtime.benchmark import benchmark, markdown, synthetic_jpegs  # noqa: E402

LOOSE = {"logits_rel": 1e9, "prob_abs": 1.0, "min_cosine": -1.0, "flip_rate": 1.0, "topk_disagreement": 1.0}


def bare_formats(source: Path, data: Path, folder: Path, rounds: int) -> dict[str, float]:
    """img/s at batch 8 of the FP32 graph and ONNX Runtime's U8S8 QOperator and Q/DQ graphs, bare sessions."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from calibration.data import calibration_set
    from calibration.reader import BatchReader
    from export.fp16 import head_nodes
    from export.metadata import read_graph

    paths = {"fp32": source}
    _, facts = read_graph(source, weights=False)
    for fmt in (QuantFormat.QOperator, QuantFormat.QDQ):
        model, _ = read_graph(source)
        reader = BatchReader(
            calibration_set(data, facts.class_names),
            input_name=facts.input_name,
            image_size=facts.image_size,
            preprocessing=facts.config.preprocessing,
            batch_size=8,
        )
        paths[fmt.name] = folder / f"bare.{fmt.name}.onnx"
        quantize_static(
            model,
            str(paths[fmt.name]),
            reader,
            quant_format=fmt,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head_nodes(model),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": 1},
        )
    sessions = {
        name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for name, path in paths.items()
    }
    shape = (8, 3, facts.image_size, facts.image_size)
    feed = {facts.input_name: np.random.default_rng(0).standard_normal(shape, np.float32)}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        session.run(None, feed)
    for _ in tqdm(range(rounds), desc="bare formats", unit="round"):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append(time.perf_counter() - start)
    return {name: 8 / statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--work", type=Path, help="folder for the graphs and images (default: temporary); what is there is reused"
    )
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cpu-int8-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "model.onnx"
    if not source.exists():
        source = random_graph(work, args.backbone, args.image_size, max_batch=8, parity_samples=2)
    data = work / "calibration"
    if not data.is_dir():
        data.mkdir()
        synthetic_jpegs(data, 16)
    graphs = {}
    for target in ("tensorrt", "cpu"):
        graphs[target] = work / f"model.int8-{target}.onnx"
        if not graphs[target].exists():
            quantize_int8(source, graphs[target], data, target=target, tolerance_overrides=LOOSE, gate_max_images=8)
    result = benchmark([source, graphs["tensorrt"], graphs["cpu"]], (8,), warmup=1, iterations=3, rounds=args.rounds)
    print(f"\nrandom {args.backbone} @ {args.image_size}, batch 8, through Predictor (median of interleaved rounds)")
    print(markdown(result))
    rates = bare_formats(source, data, work, args.rounds * 3)
    print("\n| bare InferenceSession, batch 8 | img/s | × FP32 |\n| --- | ---: | ---: |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.2f} | {rate / rates['fp32']:.2f} |")


if __name__ == "__main__":
    main()
