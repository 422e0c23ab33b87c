"""The demo pipeline end to end (one short training run), and its reuse of what it built."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ParityError
from core.preprocessing import image_files
from pipeline.demo import run_demo
from runtime.bulk import read_records


@pytest.fixture(scope="module")
def demo_runs(demo_data: Path, tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("demo")
    output.joinpath("data").symlink_to(demo_data, target_is_directory=True)
    outcomes = []
    for _ in range(2):
        try:
            outcomes.append(run_demo(output, epochs=1))
        except ParityError as exc:  # one epoch may leave INT8 over its gate: the summary says so
            outcomes.append(exc)
        assert (output / "summary.md").is_file()
    return output, outcomes


def test_the_demo_writes_every_artifact_report_and_the_summary(demo_runs) -> None:
    output, _ = demo_runs
    for name in ("mask.npz", "mask.png", "run/best.pt", "model.onnx", "model.onnx.json", "model.fp16.onnx"):
        assert (output / name).is_file(), name
    reports = output / "reports"
    for name in ("val_metrics.json", "predictions.json", "benchmark.json", "benchmark.md", "parity_onnx-fp32.png"):
        assert (reports / name).is_file(), name
    summary = (output / "summary.md").read_text()
    assert "| torch (eager) | fp32 | `best.pt` |" in summary
    assert "| ONNX Runtime | fp32 | `model.onnx` |" in summary and "| ONNX Runtime | fp16 |" in summary
    # The graph that takes uint8 pixels, gated against the eager model on the same images.
    (pixels,) = [line for line in summary.splitlines() if "| ONNX Runtime | fp32-uint8 | `model.uint8.onnx` |" in line]
    assert "| PASS |" in pixels
    assert "| ONNX Runtime | int8 |" in summary  # written and gated, or listed with the gate's failure
    assert "| ONNX Runtime | int8-cpu |" in summary  # the U8S8 graph for CPUs, likewise
    if (output / "model.int8-cpu.onnx").exists():
        assert "| ONNX Runtime | int8-cpu | `model.int8-cpu.onnx` |" in summary
    for precision in ("fp16", "int8"):  # the demo's plans are model.<precision>.plan
        if (output / f"model.{precision}.plan").exists():
            assert f"| TensorRT | {precision} | `model.{precision}.plan` |" in summary
        elif (output / f"model.{precision}.onnx").exists():  # the typed graph is there, its engine is not
            assert f"| TensorRT | {precision} | – | " in summary  # skipped (no GPU/TensorRT) or failed
    # Served on Triton and equal to in process where a server runs here; otherwise skipped, with the reason.
    triton = [line for line in summary.splitlines() if line.startswith("| Triton (tagger) | fp32 |")]
    assert len(triton) == 1
    served = "`triton/` (python twin of `model.onnx`)" in triton[0] and "| = in process |" in triton[0]
    assert served or "| – | skipped: " in triton[0]
    # Every held-out image tagged offline, once, as in process.
    records = list(read_records(output / "bulk"))
    assert [Path(r["image"]).name for r in records] == [p.name for p in image_files(output / "data" / "val")]
    assert (output / "bulk" / "complete.json").is_file() and "| offline tagging | 24 held-out images" in summary


def test_a_second_run_reuses_what_is_still_valid(demo_runs) -> None:
    output, _ = demo_runs
    summary = (output / "summary.md").read_text()  # the second run's
    steps = ["dataset", "co-occurrence mask", "FP32 ONNX export", "FP32 ONNX export, uint8 input", "training"]
    if (output / "model.int8-cpu.onnx").exists():  # made (its gate passed) by the first run
        steps.append("INT8 graph for CPUs")
    for step in steps:
        assert f"| {step} | reused" in summary, step
