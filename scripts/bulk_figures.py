"""The figures of docs/bulk.md, measured side by side on this machine: ``python scripts/bulk_figures.py``.

1. Throughput: ``bulk`` (single process, end to end: listing, decoding, inference, shards) against one
   ``Predictor.predict`` call over the same images in the same batches, in interleaved rounds.
2. Memory: peak RSS of ``python -m runtime bulk`` over 1,000 and 20,000 images.
3. Ray: ``--engine ray`` on a local cluster over two image counts, against the local engine: steady
   throughput, and the fixed start-up cost (the time the line through both points has at zero images).

The model is a random-weight graph (``--backbone``, ``--image-size``, 80 classes); the images are
generated JPEGs. Ray runs in its own network namespace where ``unshare`` allows (its servers listen
on every interface otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from random_graph import random_graph  # noqa: E402  (beside this script)
from tqdm import tqdm  # noqa: E402

from runtime import Predictor  # noqa: E402
from runtime.benchmark import synthetic_jpegs  # noqa: E402
from runtime.bulk import bulk  # noqa: E402

# A child's peak RSS: run it, then read what the kernel kept of it.
PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
PEAK_RSS += "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def images(folder: Path, count: int) -> Path:
    """``count`` generated JPEGs (160x120) in ``folder``, made once."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) != count:
        synthetic_jpegs(folder, count, size=(160, 120))
    return folder


def subset(source: Path, folder: Path, count: int) -> Path:
    """The first ``count`` images of ``source``, hard-linked into ``folder``."""
    folder.mkdir(exist_ok=True)
    for path in sorted(source.glob("*.jpg"))[:count]:
        if not (folder / path.name).exists():
            os.link(path, folder / path.name)
    return folder


def throughput(artifact: Path, folder: Path, scratch: Path, rounds: int) -> dict[str, float]:
    paths = [str(p) for p in sorted(folder.glob("*.jpg"))]
    times: dict[str, list[float]] = {"predictor": [], "bulk": []}
    with Predictor(artifact) as predictor:
        predictor.predict(paths[:64])  # warm-up
        for index in tqdm(range(rounds), desc="throughput rounds", unit="round"):
            start = time.perf_counter()
            predictor.predict(paths)
            times["predictor"].append(time.perf_counter() - start)
            start = time.perf_counter()
            bulk(artifact, scratch / f"round{index}", images=folder, progress=False)
            times["bulk"].append(time.perf_counter() - start)
    return {name: len(paths) / statistics.median(values) for name, values in times.items()}


def command_line(artifact: Path, folder: Path, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runtime", "bulk", str(artifact), "--images", str(folder), "--output", str(output),
            *extra]  # fmt: skip


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], cwd=REPO, check=True, capture_output=True,
                          text=True)  # fmt: skip
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - start


def timed(command: list[str], isolated: bool, home: Path) -> float:
    if isolated:
        command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]
    env = os.environ | {"RAY_TMPDIR": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the graph, images and outputs (default: temporary)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-images", type=int, default=2000)
    parser.add_argument("--memory-images", default="1000,20000")
    parser.add_argument("--ray-images", default="1000,4000")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bulk-figures-"))
    work.mkdir(parents=True, exist_ok=True)
    small, large = map(int, args.memory_images.split(","))
    ray_counts = list(map(int, args.ray_images.split(",")))
    artifact = work / "model.onnx"
    if not artifact.exists():
        artifact = random_graph(work, args.backbone, args.image_size, max_batch=32)
    pool = images(work / "images", max(large, args.throughput_images, *ray_counts))
    outputs = work / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir()
    print(f"model: random {args.backbone} @ {args.image_size}, 80 classes; images: generated 160x120 JPEGs")

    rates = throughput(artifact, subset(pool, work / f"n{args.throughput_images}", args.throughput_images), outputs,
                       args.rounds)  # fmt: skip
    print(f"\n| {args.throughput_images} images, median of {args.rounds} interleaved rounds | img/s |\n| --- | --- |")
    print(f"| Predictor.predict (one call) | {rates['predictor']:.1f} |\n| bulk, local engine | {rates['bulk']:.1f} |")
    print(f"| bulk / Predictor | {rates['bulk'] / rates['predictor']:.2f} |")

    print("\n| images | peak RSS of python -m runtime bulk | wall time | img/s |\n| --- | --- | --- | --- |")
    for count in (small, large):
        folder = pool if count == len(list(pool.glob("*.jpg"))) else subset(pool, work / f"n{count}", count)
        rss, seconds = peak_rss_mb(command_line(artifact, folder, outputs / f"memory{count}"))
        print(f"| {count:,} | {rss:.0f} MB | {seconds:.1f} s | {count / seconds:.1f} |")

    if args.skip_ray:
        return
    isolated = shutil.which("unshare") is not None and subprocess.run(["unshare", "--net", "true"]).returncode == 0
    home = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    try:
        results = {}
        for engine in ("local", "ray"):
            for count in ray_counts:
                folder = subset(pool, work / f"n{count}", count)
                extra = ["--engine", "ray"] if engine == "ray" else []
                command = command_line(artifact, folder, outputs / f"{engine}{count}", *extra)
                results[engine, count] = timed(command, isolated and engine == "ray", home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    low, high = ray_counts
    print(f"\n| engine | {low:,} images | {high:,} images | steady img/s | fixed cost |")
    print("| --- | --- | --- | --- | --- |")
    for engine in ("local", "ray"):
        a, b = results[engine, low], results[engine, high]
        rate = (high - low) / (b - a)
        print(f"| {engine} | {a:.1f} s | {b:.1f} s | {rate:.1f} | {a - low / rate:.1f} s |")


if __name__ == "__main__":
    main()
