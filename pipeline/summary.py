"""The demo's ``summary.md``: every backend and precision with its accuracy, parity and speed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import write_text

from .serving import TOLERANCE as SERVED_TOLERANCE

if TYPE_CHECKING:
    from .demo import DemoRun

_BACKEND = {"torch": "torch (eager)", "onnx": "ONNX Runtime", "tensorrt": "TensorRT", "triton": "Triton (tagger)"}


def _cell(text: str) -> str:
    """``text`` safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _speed(benchmark: dict[str, Any], label: str, mode: str, batch: int) -> str:
    for row in benchmark.get("rows", []):
        if row["artifact"] == label and row["input"] == mode and row["batch"] == batch:
            return f"{row['images_per_s']:.0f}"
    return "–"


def artifact_rows(run: DemoRun) -> list[str]:
    """One table row per artifact (the eager checkpoint first), then one per skipped engine."""
    rows = []
    reference_map = 100 * run.metrics.get("mAP", float("nan"))
    for name, artifact in run.artifacts.items():
        backend, _, precision = name.partition("-")
        speeds = [
            _speed(run.benchmark, artifact.name, mode, b)
            for mode, b in (("arrays", 1), ("arrays", 8), ("JPEG files", 8))
        ]
        if name == "torch":
            cells = ["fp32", f"{reference_map:.2f}", "reference", "–", "–", "–", "–"]
        else:
            report = run.parity[name]
            figures = report.figures
            cells = [
                precision,
                f"{figures.get('map_candidate', float('nan')):.2f}",
                f"{-figures.get('map_drop', float('nan')):+.2f}",
                f"{figures['logits_max_rel']:.1e}",
                f"{figures['prob_max_abs']:.1e}",
                f"{figures['flip_rate']:.4f}",
                "PASS" if report.passed else "FAIL",
            ]
        rows.append(
            "| " + " | ".join([_BACKEND[backend], *cells[:1], f"`{artifact.name}`", *cells[1:], *speeds]) + " |"
        )
    if run.served:  # the FP32 graph served by Triton, compared with in process (not with the eager model)
        served = run.served
        figures = ["–", "–", "–", f"{served['max_abs_dp']:.1e}", "–"]
        same = "= in process" if served["labels_equal"] and served["max_abs_dp"] <= SERVED_TOLERANCE else "DIFFERS"
        speeds = ["–", "–", _speed(run.benchmark, served["url"], "JPEG files", 8)]
        artifact = f"`{served['repository'].name}/` (python twin of `model.onnx`)"
        rows.append("| " + " | ".join([_BACKEND["triton"], "fp32", artifact, *figures, same, *speeds]) + " |")
    for name, reason in [*run.failed.items(), *run.skipped.items()]:
        backend, _, precision = name.partition("-")
        what = "not written, its gate failed" if name in run.failed else "skipped"
        rows.append(f"| {_BACKEND[backend]} | {precision} | – | {what}: {_cell(reason)} |" + " – |" * 8)
    return rows


def write_summary(run: DemoRun, path: Path) -> Path:
    """Writes the summary: results table, predictions, step log, and the files behind each figure."""
    machine = run.benchmark.get("machine", {})
    lines = [
        "# Demo summary",
        "",
        f"Measured by this run on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores"
        + (f", {machine['gpu']}" if machine.get("gpu") else ", no GPU")
        + f"), {machine.get('date', '')}. mAP and parity are on the held-out validation split, against the eager "
        "FP32 model; speeds are images/s of each backend on preprocessed arrays (batch 1 and 8) and with JPEG "
        "files in (batch 8), timed side by side (`reports/benchmark.md`). The Triton row is the FP32 graph served by a "
        "local tritonserver (`triton/`), compared with in-process results; its speed includes the HTTP round trip.",
        "",
        "| backend | precision | artifact | mAP | Δ mAP | max rel. logit err. | max abs Δp | flip rate | gate "
        "| img/s b1 | img/s b8 | img/s b8 JPEG |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
        *artifact_rows(run),
        "",
        "## Predictions on held-out images",
        "",
        "| image | predicted labels | top 3 | true labels |",
        "| --- | --- | --- | --- |",
    ]
    for result in run.predictions:
        if "error" in result:
            lines.append(f"| {Path(result['source']).name} | error: {result['error']} | | |")
            continue
        top = ", ".join(f"{name} {p:.2f}" for name, p in result.get("top_k", []))
        lines.append(
            f"| {Path(result['source']).name} | {', '.join(result['labels']) or '–'} | {top} "
            f"| {', '.join(result['truth']) or '–'} |"
        )
    lines += ["", "## Steps", "", "| step | outcome | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {name} | {_cell(outcome)} | {seconds:.1f} |" for name, outcome, seconds in run.steps]
    lines += [
        "",
        "## Files",
        "",
        "- `mask.png`: the co-occurrence heatmap P(j | i) with the kept edges outlined",
        "- `reports/parity_*.png` / `.json`: |Δp| against the reference probability, and every figure, per artifact",
        "- `reports/val_metrics.json`: the eager model's full metric table",
        "- `reports/predictions.json`, `reports/benchmark.json`, `reports/benchmark.md`",
        "- `bulk/`: every held-out image tagged offline by `python -m runtime bulk` (shards, `run.json`; docs/bulk.md)",
        "",
    ]
    write_text(path, "\n".join(lines))
    return path
