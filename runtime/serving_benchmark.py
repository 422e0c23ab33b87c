"""Throughput and latency under concurrent clients: a served tagger beside the in-process Predictor
(``python -m runtime benchmark ARTIFACT URL --clients 1,8,32``).

Each target is timed for a fixed duration per client count: every client is a thread that sends
requests of ``batch`` JPEG files back to back (its own ``tritonclient`` client for a URL; one shared
``Predictor`` in process, as a multi-threaded application would hold it). Targets alternate per
client count, so drift of the machine hits them alike. For a served tagger the server's own
statistics add what it did with the requests: the batch sizes its dynamic batcher formed for the
classifier, and each model's average queue and compute time per request.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.errors import ConfigError

from .predictor import Predictor
from .triton_client import RemoteTagger, is_url
from .triton_names import CLASSIFIER, POSTPROCESS, PREPROCESS, TAGGER

STEPS = (TAGGER, PREPROCESS, CLASSIFIER, POSTPROCESS)


def concurrency_benchmark(
    targets: Sequence[str | Path],
    files: Sequence[Path],
    clients: Sequence[int] = (1, 8, 32),
    *,
    batch: int = 1,
    seconds: float = 10.0,
    warmup_seconds: float = 2.0,
) -> dict[str, Any]:
    """Times every target at every client count; returns rows of plain data.

    Raises:
        ConfigError: No files, or a count out of range.
    """
    if not files or batch < 1 or min(clients, default=0) < 1 or seconds <= 0:
        raise ConfigError("need JPEG files, batch ≥ 1, client counts ≥ 1 and a positive duration")
    rows = []
    with contextlib.ExitStack() as opened:
        predictors = [opened.enter_context(_open(target, batch)) for target in targets]
        servers = [
            opened.enter_context(contextlib.closing(RemoteTagger(str(t)))) if is_url(t) else None for t in targets
        ]
        with tqdm(total=len(clients) * len(targets), desc="concurrency", unit="run", disable=None) as bar:
            for count in clients:
                for target, predictor, server in zip(targets, predictors, servers, strict=True):
                    _run(predictor, files, count, batch, warmup_seconds)  # warm-up: connections, caches, batcher
                    before = server.statistics(STEPS) if server else None
                    row = _run(predictor, files, count, batch, seconds)
                    row |= {"target": str(target), "backend": predictor.backend, "clients": count, "batch": batch}
                    if server:
                        row |= _served(before, server.statistics(STEPS))
                    rows.append(row)
                    bar.update()
    return {"targets": [str(t) for t in targets], "files": len(files), "seconds": seconds, "rows": rows}


def _open(target: str | Path, batch: int) -> Predictor:
    # A served tagger takes its server's batch limit; in process, one call is one request.
    return Predictor(target, batch_size=None if is_url(target) else batch)


def _run(predictor: Predictor, files: Sequence[Path], clients: int, batch: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads sending requests for ``seconds``; latency percentiles and throughput."""
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients

    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for k in range(1_000_000):  # bounded by the deadline first
                if time.monotonic() >= deadline:
                    return
                request = [str(files[(number * 7919 + k * batch + i) % len(files)]) for i in range(batch)]
                started = time.perf_counter()
                results = predictor.predict(request, skip_bad=True)
                latencies[number].append(time.perf_counter() - started)
                failures[number] += sum(not r.ok for r in results)
        except BaseException as exc:  # re-raised in the caller's thread once every client has stopped
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,), name=f"client-{n}") for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    if not any(latencies):
        raise ConfigError(f"no request finished within {seconds:g} s; give it longer (--seconds)")
    times = np.concatenate([np.asarray(t) for t in latencies])
    p50, p95, p99 = np.percentile(times, [50, 95, 99]) * 1000
    return {
        "requests": int(sum(map(len, latencies))),
        "failed_images": int(sum(failures)),
        "images_per_s": round(batch * sum(map(len, latencies)) / wall, 1),
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
    }


def _served(before: dict, after: dict) -> dict[str, Any]:
    """What the server did between two statistics: the classifier's batch sizes, and per model the
    average queue and compute milliseconds per request."""
    formed: dict[int, int] = {}
    # JSON from gRPC leaves out fields that are zero.
    old = {int(b["batch_size"]): _count(b["compute_infer"]) for b in before[CLASSIFIER].get("batch_stats", [])}
    for entry in after[CLASSIFIER].get("batch_stats", []):
        size = int(entry["batch_size"])
        done = _count(entry["compute_infer"]) - old.get(size, 0)
        if done:
            formed[size] = done
    per_model = {}
    for model in STEPS:
        new, was = after[model]["inference_stats"], before[model]["inference_stats"]
        requests = _count(new.get("success", {})) - _count(was.get("success", {}))
        if requests:
            per_model[model] = {
                part: round((_ns(new.get(part, {})) - _ns(was.get(part, {}))) / requests / 1e6, 3)
                for part in ("queue", "compute_infer")
            }
    return {"batches_formed": dict(sorted(formed.items())), "server_ms_per_request": per_model}


def _batches(formed: dict[int, int]) -> str:
    """The classifier's batches in a few words: how many, their mean and largest size."""
    if not formed:
        return "–"
    executions = sum(formed.values())
    images = sum(size * count for size, count in formed.items())
    return f"{executions} of mean {images / executions:.1f}, max {max(formed)}"


def _count(duration: dict) -> int:
    return int(duration.get("count", 0))


def _ns(duration: dict) -> int:
    return int(duration.get("ns", 0))


def markdown(result: dict[str, Any]) -> str:
    """The rows as a markdown table, with each target's throughput relative to the first at the same
    client count."""
    lines = [
        f"{result['files']} JPEG files, {result['seconds']:g} s per run",
        "",
        "| target | backend | clients | batch | requests | img/s | vs first | p50 ms | p95 ms | p99 ms "
        "| classifier batches formed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    first = {}
    for row in result["rows"]:
        first.setdefault(row["clients"], row)
        ratio = row["images_per_s"] / first[row["clients"]]["images_per_s"]
        formed = _batches(row.get("batches_formed", {}))
        cells = [row["target"], row["backend"], row["clients"], row["batch"], row["requests"], row["images_per_s"]]
        cells += [f"{ratio:.2f}×", row["p50_ms"], row["p95_ms"], row["p99_ms"], formed]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    served = [row for row in result["rows"] if row.get("server_ms_per_request")]
    if served:
        lines += ["", "Server time per request (ms, averages from Triton's statistics): queue / compute", ""]
        for row in served:
            parts = ", ".join(
                f"{model} {t['queue']:.2f} / {t['compute_infer']:.2f}"
                for model, t in row["server_ms_per_request"].items()
            )
            lines.append(f"- {row['target']}, {row['clients']} clients: {parts}")
    return "\n".join(lines) + "\n"
