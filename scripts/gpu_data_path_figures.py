"""The GPU data-path figures of docs/benchmarks.md, in one run on a CUDA machine:
``PYTHONPATH=. python3 scripts/gpu_data_path_figures.py`` (torch and torchvision with CUDA; no TensorRT).

For a random-weight ResNet-101 @ 448 (80 classes), through ``Predictor`` on the torch backend, each
table measured side by side in interleaved rounds (``runtime.benchmark``):

1. The parity of GPU-decoded pixels (nvJPEG, then the resize on the GPU) against the CPU definition,
   gated at ``runtime.torch_decode.PIXEL_LIMITS``.
2. FP16 autocast at batch 64: JPEG files → labels with GPU decoding, with Pillow decoding, and
   preprocessed arrays already on the host (the ceiling); the goal is files/arrays ≥ 0.90.
3. FP32 and FP16 at batch 1, 8 and 64 on arrays, eager and with CUDA graphs (and channels-last).

It prints markdown tables; nothing is written but a temporary folder of generated JPEGs. ``--device cpu``
runs what a CPU can (FP32, no CUDA graphs; the decoder is then libjpeg-turbo) as a check of the script.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime import Predictor  # noqa: E402
from runtime.benchmark import FILES, Candidate, markdown, report, run_benchmark, synthetic_jpegs  # noqa: E402
from runtime.torch_decode import decoder_parity  # noqa: E402


def random_checkpoint(folder: Path, backbone: str, image_size: int, device: str) -> Path:
    """Random weights (seed 0) whose batch-norm statistics are measured on a few batches of random images:
    with the initial statistics a ResNet-101's activations overflow float16, and FP16 logits would be NaN."""
    import torch

    from core.config import ModelConfig
    from models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(80, backbone=backbone, image_size=image_size), [f"class_{i}" for i in range(80)])
    norms = [module for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batches below
    model.to(device).train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, image_size, image_size, device=device))
    return save_checkpoint(model.eval().cpu(), folder / "model.pt")


def candidate(label: str, predictor: Predictor, precision: str, mode: str | None = None) -> Candidate:
    call = predictor.predict if mode == FILES else predictor.logits
    return Candidate(
        label,
        backend="torch",
        device=predictor.device,
        precision=precision,
        call=call,
        max_batch=predictor.batch_size,
        image_size=predictor.facts.image_size,
        cuda_devices=(predictor.device,) if predictor.device.startswith("cuda") else (),
        **({"mode": mode} if mode else {}),
    )


def timed(title: str, candidates: list[Candidate], batches: tuple[int, ...], files: list[Path], rounds: int) -> dict:
    run_benchmark(candidates, batches, files=files, warmup=3, iterations=10, rounds=rounds)
    result = report(candidates, batches, {"rounds": rounds})
    print(f"\n### {title}\n")
    print(markdown(result))
    return {row["artifact"]: row["images_per_s"] for row in result["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--images", type=int, default=128, help="generated 640x480 JPEGs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cuda; cpu only checks the script")
    args = parser.parse_args()
    cuda = args.device != "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu-data-path-"))
    checkpoint = random_checkpoint(work, args.backbone, args.image_size, args.device)
    (work / "jpegs").mkdir()
    files = synthetic_jpegs(work / "jpegs", args.images)

    half, precision = ({"fp16": True}, "fp16 autocast") if cuda else ({}, "fp32")
    with Predictor(checkpoint, device=args.device, batch_size=64) as predictor:
        parity = decoder_parity(files, predictor.facts, predictor.device)
    print(f"torchvision's pixels on {args.device} against the CPU definition: {parity.line()}")

    opened = [
        Predictor(checkpoint, device=args.device, batch_size=64, decoder="torchvision", **half),
        Predictor(checkpoint, device=args.device, batch_size=64, decoder="pillow", **half),
    ]
    try:
        torchvision_decoded, pillow = opened
        rates = timed(
            f"{precision}, batch 64: JPEG files in (torchvision or Pillow decoding) against host arrays",
            [
                candidate("arrays", torchvision_decoded, precision),
                candidate("JPEG files, torchvision decoding", torchvision_decoded, precision, FILES),
                candidate("JPEG files, Pillow decoding", pillow, precision, FILES),
            ],
            (64,),
            files,
            args.rounds,
        )
    finally:
        for predictor in opened:
            predictor.close()
    for decoding in ("torchvision", "Pillow"):
        share = rates[f"JPEG files, {decoding} decoding"] / rates["arrays"]
        print(f"- JPEG files with {decoding} decoding / arrays: {share:.2f} (goal for GPU decoding: 0.90)")

    variants = []
    options_tried = [{}, {"channels_last": True}]
    if cuda:
        options_tried += [{"cuda_graphs": True}, {"channels_last": True, "cuda_graphs": True}]
    for fp16 in (False, True) if cuda else (False,):
        for options in options_tried:
            name = "fp16 autocast" if fp16 else "fp32"
            label = f"{name}, {' + '.join(options) or 'eager'}"
            predictor = Predictor(checkpoint, device=args.device, fp16=fp16, batch_size=64, **options)
            variants.append((label, predictor, name))
    try:
        timed(
            "Arrays in, batch 1 / 8 / 64: eager, channels-last and CUDA graphs",
            [candidate(label, predictor, precision) for label, predictor, precision in variants],
            (1, 8, 64),
            files,
            args.rounds,
        )
    finally:
        for _, predictor, _ in variants:
            predictor.close()
    if not parity.passed:
        raise SystemExit("the decoder's pixel parity FAILED (above): these timings are of a decoder that may not serve")


if __name__ == "__main__":
    main()
