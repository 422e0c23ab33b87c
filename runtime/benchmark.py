"""Latency and throughput of artifacts, backends side by side (``python -m runtime benchmark``).

Every artifact is opened through :class:`~runtime.Predictor`: "arrays" rows time its backend on a
preprocessed batch (``Predictor.logits``), "JPEG files" rows the whole ``Predictor.predict`` path from
files (decode, preprocess, infer, results). A served tagger's URL is timed on JPEG files only (the
server preprocesses). With ``bare_onnxruntime`` each ``.onnx`` also runs in a
plain ``InferenceSession`` with default options, the floor the backend is held to. Calls are timed
in interleaved rounds (A, B, C, A, B, C, …) after a warm-up, so drift of the machine hits every
candidate alike and ratios are measured side by side. ``include_preprocessing`` adds rows fed JPEG
files instead of preprocessed arrays.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from core.errors import ConfigError
from core.preprocessing import image_files

from .measure import Samples, peak_memory
from .predictor import Predictor
from .tensorrt_env import visible_gpu
from .triton_client import is_url

INFERENCE, FILES = "arrays", "JPEG files"


@dataclass
class Candidate:
    """One thing to time: a predictor (or a bare session) and how to call it."""

    label: str
    backend: str
    device: str
    precision: str
    call: Callable[[Any], Any]
    max_batch: int | None
    image_size: int
    mode: str = INFERENCE
    input_format: str = "float32"  # what its arrays are: preprocessed floats, or uint8 pixels
    cuda_devices: tuple[str, ...] = ()
    samples: dict[int, Samples] = field(default_factory=dict)


def benchmark(
    artifacts: Sequence[str | os.PathLike],
    batch_sizes: Sequence[int] = (1, 8, 32),
    *,
    backend: str = "auto",
    device: str = "auto",
    torch_fp16: bool = False,
    decoder: str = "auto",
    channels_last: bool = False,
    cuda_graphs: bool = False,
    bare_onnxruntime: bool = False,
    include_preprocessing: bool = False,
    images: str | os.PathLike | Sequence[Path] | None = None,
    warmup: int = 2,
    iterations: int = 5,
    rounds: int = 3,
) -> dict[str, Any]:
    """Opens every artifact, times it side by side, closes it; returns :func:`report`'s result.

    Args:
        artifacts: ``.plan``, ``.onnx`` or ``.pt`` files, or served taggers' URLs; the first is the
            reference of the ratios.
        batch_sizes: Images per call (sizes above an artifact's limit are left out for it).
        backend, device: As :class:`~runtime.Predictor`'s, for every artifact.
        torch_fp16: Also run each ``.pt`` with FP16 autocast (CUDA).
        decoder: Who decodes JPEG files, for every artifact run in process (``Predictor``'s ``decoder``).
        channels_last, cuda_graphs: Run each ``.pt`` so (``runtime.torch_runner``).
        bare_onnxruntime: Also run each ``.onnx`` in a bare ``InferenceSession``.
        include_preprocessing: Also time ``Predictor.predict`` on JPEG files.
        images: The JPEG files for ``include_preprocessing``, or a folder of them (default: generated
            ones).
        warmup: Untimed calls per candidate and batch size.
        iterations: Timed calls per candidate, batch size and round.
        rounds: Interleaved rounds.

    Raises:
        ConfigError: A count is out of range, every batch size exceeds every artifact's max batch, or
            the artifacts take different input sizes.
    """
    if not batch_sizes or min(batch_sizes) < 1 or min(iterations, rounds) < 1 or warmup < 0:
        raise ConfigError("batch sizes, iterations and rounds must be at least 1, warmup at least 0")
    artifacts = [a if is_url(a) else Path(a) for a in artifacts]
    timed_files = include_preprocessing or any(map(is_url, artifacts))
    if images is not None and not timed_files:
        raise ConfigError("images are timed with include_preprocessing (or for a served URL)")
    if isinstance(images, str | os.PathLike):
        images = image_files(images)
    settings = {
        "artifacts": [str(a) for a in artifacts],
        "batch_sizes": list(batch_sizes),
        "backend": backend,
        "device": device,
        "torch_fp16": torch_fp16,
        "decoder": decoder,
        "channels_last": channels_last,
        "cuda_graphs": cuda_graphs,
        "bare_onnxruntime": bare_onnxruntime,
        "include_preprocessing": include_preprocessing,
        "images": None if images is None else [str(p) for p in images],
        "warmup": warmup,
        "iterations": iterations,
        "rounds": rounds,
    }
    candidates, predictors = open_candidates(
        artifacts,
        backend=backend,
        device=device,
        torch_fp16=torch_fp16,
        bare_onnxruntime=bare_onnxruntime,
        files=include_preprocessing,
        decoder=decoder,
        torch_options={"channels_last": channels_last, "cuda_graphs": cuda_graphs},
        batch_size=max(batch_sizes),
    )
    try:
        limits = [c.max_batch for c in candidates]
        if None not in limits and min(batch_sizes) > max(limits):  # nothing would be measured
            raise ConfigError(
                f"every batch size ({', '.join(map(str, batch_sizes))}) exceeds the largest batch any artifact "
                f"takes ({max(limits)}); choose sizes up to {max(limits)}"
            )
        with tempfile.TemporaryDirectory(prefix="benchmark-") as scratch:
            files: Sequence[Path] = ()
            if timed_files:
                files = images if images is not None else synthetic_jpegs(Path(scratch), max(batch_sizes))
            run_benchmark(candidates, batch_sizes, files=files, warmup=warmup, iterations=iterations, rounds=rounds)
    finally:
        for predictor in predictors:
            predictor.close()
    return report(candidates, batch_sizes, settings)


def open_candidates(
    artifacts: Sequence[Path | str],
    *,
    backend: str,
    device: str,
    torch_fp16: bool,
    bare_onnxruntime: bool,
    files: bool,
    batch_size: int | None = None,
    decoder: str = "auto",
    torch_options: dict[str, bool] | None = None,
) -> tuple[list[Candidate], list[Predictor]]:
    """The candidates the flags ask for, and the predictors to close afterwards.

    ``batch_size`` is the batch of artifacts that record no limit (checkpoints), so that one timed
    call of a batch is one inference call. ``decoder`` applies to every artifact run in process,
    ``torch_options`` (``channels_last``, ``cuda_graphs``) to each ``.pt``.
    """
    candidates, predictors = [], []
    for artifact in artifacts:
        if is_url(artifact):
            predictor = Predictor(artifact, backend, device=device)  # refuses a backend or device of its own
            predictors.append(predictor)
            facts = predictor.facts
            served = dict(backend="triton", device="server", precision=facts.precision, image_size=facts.image_size)
            candidates.append(
                Candidate(artifact, call=predictor.predict, max_batch=predictor.batch_size, mode=FILES, **served)
            )
            continue
        variants = [False, True] if torch_fp16 and artifact.suffix == ".pt" else [False]
        for fp16 in variants:
            checkpoint = artifact.suffix == ".pt"
            predictor = Predictor(
                artifact,
                backend,
                device=device,
                fp16=fp16,
                decoder=decoder,
                batch_size=batch_size if checkpoint else None,
                **((torch_options or {}) if checkpoint else {}),
            )
            predictors.append(predictor)
            where = predictor.device
            precision = "fp16 autocast" if fp16 else predictor.facts.precision
            label = f"{artifact.name} (fp16 autocast)" if fp16 else artifact.name
            common = dict(
                backend=predictor.backend,
                device=where,
                precision=precision,
                max_batch=predictor.facts.max_batch,
                image_size=predictor.facts.image_size,
                input_format=predictor.facts.input_format,
                cuda_devices=(where,) if where.startswith("cuda") and artifact.suffix == ".pt" else (),
            )
            candidates.append(Candidate(label, call=predictor.logits, **common))
            if files:
                candidates.append(Candidate(label, call=predictor.predict, mode=FILES, **common))
            if bare_onnxruntime and artifact.suffix == ".onnx":
                candidates.append(_bare_session(artifact, predictor))
    sizes = {c.image_size for c in candidates}
    if len(sizes) > 1:
        raise ConfigError(f"the artifacts take different input sizes {sorted(sizes)}; benchmark one model at a time")
    return candidates, predictors


def _bare_session(artifact: Path, predictor: Predictor) -> Candidate:
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if predictor.device == "cuda" else None
    session = ort.InferenceSession(str(artifact), providers=providers or ["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return Candidate(
        f"{artifact.name} (bare InferenceSession)",
        backend="onnxruntime-bare",
        device=predictor.device,
        precision=predictor.facts.precision,
        call=lambda images: session.run(None, {name: images}),
        max_batch=predictor.facts.max_batch,
        image_size=predictor.facts.image_size,
        input_format=predictor.facts.input_format,
    )


def synthetic_jpegs(folder: Path, count: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[Path]:
    """``count`` JPEG photos-like images (smooth colour fields plus noise) of COCO's typical size."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-20, 21, (size[1], size[0], 3))
        path = folder / f"bench_{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def run_benchmark(
    candidates: list[Candidate],
    batch_sizes: Sequence[int],
    *,
    files: Sequence[Path] = (),
    warmup: int = 2,
    iterations: int = 5,
    rounds: int = 3,
) -> None:
    """Times every candidate at every batch size (``samples`` filled in place)."""
    size, most = candidates[0].image_size, max(batch_sizes)
    rng = np.random.default_rng(0)
    # Each artifact's arrays are what it takes: preprocessed floats, or the uint8 pixels it normalises.
    arrays = {
        "float32": rng.standard_normal((most, 3, size, size), dtype=np.float32),
        "uint8": rng.integers(0, 256, (most, size, size, 3), dtype=np.uint8),
    }
    active_at = {batch: [c for c in candidates if c.max_batch is None or batch <= c.max_batch] for batch in batch_sizes}
    total = sum(map(len, active_at.values())) * (warmup + rounds * iterations)
    with tqdm(total=total, desc="benchmark", unit="call", disable=None) as bar:
        for batch, active in active_at.items():
            paths = [files[i % len(files)] for i in range(batch)] if files else None
            feeds = [paths if c.mode == FILES else arrays[c.input_format][:batch] for c in active]
            for candidate, feed in zip(active, feeds, strict=True):
                candidate.samples[batch] = Samples(batch)
                for _ in range(warmup):
                    candidate.call(feed)
                    bar.update()
            for _ in range(rounds):
                for candidate, feed in zip(active, feeds, strict=True):
                    samples = candidate.samples[batch]
                    with peak_memory(candidate.cuda_devices) as peak:
                        for _ in range(iterations):
                            started = time.perf_counter()
                            candidate.call(feed)
                            samples.seconds.append(time.perf_counter() - started)
                            bar.update()
                    samples.add_peak(peak)


def report(candidates: list[Candidate], batch_sizes: Sequence[int], settings: dict[str, Any]) -> dict[str, Any]:
    """The results as plain data: machine, settings, one row per candidate and batch size, ratios."""
    references = {}  # the first candidate of each input mode
    for candidate in candidates:
        references.setdefault(candidate.mode, candidate)
    rows = []
    for candidate in candidates:
        for batch in batch_sizes:
            if batch not in candidate.samples:
                continue
            summary = candidate.samples[batch].summary()
            ref = references[candidate.mode].samples.get(batch)
            ratio = summary["images_per_s"] / ref.summary()["images_per_s"] if ref else None
            rows.append(
                {
                    "artifact": candidate.label,
                    "backend": candidate.backend,
                    "device": candidate.device,
                    "precision": candidate.precision,
                    "input": candidate.mode,
                    "batch": batch,
                    **summary,
                    "vs_reference": None if ratio is None else round(ratio, 3),
                }
            )
    return {"machine": machine_facts(), "settings": settings, "reference": candidates[0].label, "rows": rows}


def machine_facts() -> dict[str, Any]:
    """Where the numbers were taken: CPU, cores, GPU, library versions, date."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {
        name: sys.modules[name].__version__ for name in ("onnxruntime", "torch", "tensorrt") if name in sys.modules
    }
    gpu = visible_gpu()
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": None if gpu is None else gpu[0],
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table, with the machine and each side-by-side ratio."""
    machine = result["machine"]
    lines = [
        f"{machine['cpu']}, {machine['cores']} cores"
        + (f", {machine['gpu']}" if machine["gpu"] else "")
        + f"; {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}; {machine['date']}",
        "",
        "| artifact | backend | device | precision | input | batch | p50 ms | p95 ms | p99 ms | img/s "
        f"| peak host MiB | peak GPU MiB | vs {result['reference']}, same input |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        cells = [row[k] for k in ("artifact", "backend", "device", "precision", "input", "batch")]
        cells += [row[k] for k in ("p50_ms", "p95_ms", "p99_ms", "images_per_s", "peak_host_mib", "peak_gpu_mib")]
        cells.append(None if row["vs_reference"] is None else f"{row['vs_reference']:.2f}×")
        lines.append("| " + " | ".join("–" if c is None else str(c) for c in cells) + " |")
    lines += ["", *ratio_lines(result["rows"])]
    return "\n".join(lines) + "\n"


def ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per artifact and batch: backend vs bare session, and JPEG files vs arrays, measured side by side."""
    by_key = {
        (r["artifact"].removesuffix(" (bare InferenceSession)"), r["backend"], r["input"], r["batch"]): r for r in rows
    }
    lines = []
    for (artifact, backend, mode, batch), row in by_key.items():
        if backend == "onnxruntime-bare":
            ours = by_key.get((artifact, "onnxruntime", INFERENCE, batch))
            if ours:
                ratio = ours["images_per_s"] / row["images_per_s"]
                lines.append(f"- {artifact}, batch {batch}: ONNX Runtime backend / bare InferenceSession = {ratio:.3f}")
        if mode == FILES:
            arrays = by_key.get((artifact, backend, INFERENCE, batch))
            if arrays:
                ratio = row["images_per_s"] / arrays["images_per_s"]
                lines.append(
                    f"- {artifact} ({backend}), batch {batch}: JPEG files in / preprocessed arrays = {ratio:.3f}"
                )
    return lines
