"""``python -m runtime benchmark``: rows for every candidate, ratios, batch limits, and the measuring helpers."""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np
import pytest

from runtime import benchmark
from runtime.commands import main as runtime_main
from runtime.measure import Samples, peak_memory

ARRAYS, FILES = "arrays", "JPEG files"
QUICK = ["--warmup", "0", "--iterations", "2", "--rounds", "1"]


def benchmark_cli(argv: list[str]) -> int:
    return runtime_main(["benchmark", *argv])


def _keys(rows: list[dict]) -> set[tuple[str, str, str, int]]:
    return {(r["artifact"], r["backend"], r["input"], r["batch"]) for r in rows}


def test_benchmark_writes_rows_and_ratios(
    fp32_graph: Path, trained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_md = tmp_path / "out.json", tmp_path / "out.md"
    argv = [str(fp32_graph), str(trained_checkpoint), "--batch-sizes", "1,2", "--device", "cpu", *QUICK]
    argv += ["--bare-onnxruntime", "--include-preprocessing", "--json", str(out_json), "--markdown", str(out_md)]
    assert benchmark_cli(argv) == 0
    result = json.loads(out_json.read_text())
    rows = result["rows"]
    onnx, pt, bare = fp32_graph.name, trained_checkpoint.name, f"{fp32_graph.name} (bare InferenceSession)"
    expected = {
        key
        for batch in (1, 2)
        for key in (
            (onnx, "onnxruntime", ARRAYS, batch),
            (onnx, "onnxruntime", FILES, batch),
            (bare, "onnxruntime-bare", ARRAYS, batch),
            (pt, "torch", ARRAYS, batch),
            (pt, "torch", FILES, batch),
        )
    }
    assert _keys(rows) == expected and len(rows) == len(expected)
    assert result["reference"] == onnx
    for row in rows:
        assert row["calls"] == 2
        assert row["images_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["device"] == "cpu"
        assert row["vs_reference"] is not None and row["vs_reference"] > 0
        assert row["peak_gpu_mib"] is None
    for row in rows:
        if (row["artifact"], row["input"]) == (onnx, ARRAYS):
            assert row["vs_reference"] == 1.0
    assert {r["precision"] for r in rows} == {"fp32"}
    assert result["settings"]["batch_sizes"] == [1, 2] and result["settings"]["bare_onnxruntime"] is True
    assert result["machine"]["cores"] >= 1 and "onnxruntime" in result["machine"]["versions"]

    table = out_md.read_text()
    assert capsys.readouterr().out == table + "\n"
    assert "| artifact | backend | device | precision | input | batch | p50 ms | p95 ms | p99 ms | img/s " in table
    assert f"| vs {onnx}, same input |" in table
    assert len([line for line in table.splitlines() if line.startswith(f"| {onnx} | onnxruntime |")]) == 4
    assert len([line for line in table.splitlines() if line.startswith(f"| {bare} | onnxruntime-bare |")]) == 2
    for batch in (1, 2):
        assert f"- {onnx}, batch {batch}: ONNX Runtime backend / bare InferenceSession = " in table
        assert f"- {onnx} (onnxruntime), batch {batch}: JPEG files in / preprocessed arrays = " in table
        assert f"- {pt} (torch), batch {batch}: JPEG files in / preprocessed arrays = " in table


def test_a_batch_over_an_artifacts_limit_is_left_out_of_its_rows(
    fp32_graph: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    out_json = tmp_path / "out.json"
    argv = [str(fp32_graph), str(trained_checkpoint), "--batch-sizes", "2,16", "--device", "cpu", *QUICK]
    assert benchmark_cli([*argv, "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())["rows"]
    onnx, pt = fp32_graph.name, trained_checkpoint.name
    # The graph takes at most 8 images; the eager checkpoint has no limit.
    assert _keys(rows) == {(onnx, "onnxruntime", ARRAYS, 2), (pt, "torch", ARRAYS, 2), (pt, "torch", ARRAYS, 16)}
    by_key = {(r["artifact"], r["batch"]): r for r in rows}
    assert by_key[onnx, 2]["vs_reference"] == 1.0
    assert by_key[pt, 2]["vs_reference"] > 0
    # Nothing to compare with at 16: the reference did not run there.
    assert by_key[pt, 16]["vs_reference"] is None


def test_an_onnx_only_run_skips_the_batch_it_cannot_take(
    fp32_graph: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "out.json"
    assert benchmark_cli([str(fp32_graph), "--batch-sizes", "1,16", *QUICK, "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())["rows"]
    assert [(r["artifact"], r["batch"]) for r in rows] == [(fp32_graph.name, 1)]
    assert "| 16 |" not in capsys.readouterr().out
    # Nothing at all to measure is refused, not an empty table with exit 0.
    assert benchmark_cli([str(fp32_graph), "--batch-sizes", "100000", *QUICK]) == 1
    assert "every batch size (100000) exceeds the largest batch any artifact takes (8)" in capsys.readouterr().err


def test_run_benchmark_never_calls_a_candidate_over_its_limit() -> None:
    calls: dict[str, list[int]] = {"small": [], "any": []}

    def candidate(label: str, max_batch: int | None) -> benchmark.Candidate:
        return benchmark.Candidate(
            label,
            backend="fake",
            device="cpu",
            precision="fp32",
            call=lambda images: calls[label].append(len(images)),
            max_batch=max_batch,
            image_size=8,
        )

    candidates = [candidate("small", 4), candidate("any", None)]
    benchmark.run_benchmark(candidates, [2, 4, 5], warmup=1, iterations=2, rounds=2)
    assert calls["small"] == [2] * 5 + [4] * 5
    assert calls["any"] == [2] * 5 + [4] * 5 + [5] * 5
    assert sorted(candidates[0].samples) == [2, 4] and sorted(candidates[1].samples) == [2, 4, 5]
    assert all(len(s.seconds) == 4 for c in candidates for s in c.samples.values())
    rows = benchmark.report(candidates, [2, 4, 5], {})["rows"]
    assert [(r["artifact"], r["batch"]) for r in rows] == [
        ("small", 2),
        ("small", 4),
        ("any", 2),
        ("any", 4),
        ("any", 5),
    ]


@pytest.mark.parametrize(
    "flags",
    [
        ["--batch-sizes", "1,x"],
        ["--batch-sizes", "1,0"],
        ["--batch-sizes", ""],
        ["--iterations", "0"],
        ["--warmup", "-1"],
        ["--images", "."],
        ["--clients", "1,8", "--rounds", "2"],  # a latency-table flag, which --clients would ignore
        ["--clients", "1", "--device", "cpu"],
        ["--seconds", "3"],  # a --clients flag without --clients
        ["--clients", "0"],
    ],
)
def test_bad_flags_exit_2(fp32_graph: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        benchmark_cli([str(fp32_graph), *flags])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith("usage: ")


def test_fp16_autocast_on_cpu_is_a_one_line_error(trained_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(trained_checkpoint), "--device", "cpu", "--torch-fp16", "--batch-sizes", "1", *QUICK]
    assert benchmark_cli(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "CUDA" in err and err.count("\n") == 1


def test_samples_summary() -> None:
    samples = Samples(4, seconds=[0.010, 0.020, 0.030, 0.040])
    summary = samples.summary()
    assert summary["calls"] == 4
    assert summary["p50_ms"] == pytest.approx(25.0)
    assert summary["p95_ms"] == pytest.approx(38.5)
    assert summary["p99_ms"] == pytest.approx(39.7)
    assert summary["images_per_s"] == pytest.approx(4 * 4 / 0.1)
    assert summary["peak_host_mib"] is None and summary["peak_gpu_mib"] is None


def test_peak_memory_sees_a_large_allocation() -> None:
    samples = Samples(1)
    with peak_memory() as quiet:
        pass
    samples.add_peak(quiet)
    with peak_memory() as busy, mmap.mmap(-1, 64 * 2**20) as block:
        # Fresh pages, touched: an allocator's cached memory would not raise the resident size.
        np.frombuffer(block, dtype=np.uint8)[:] = 1
    samples.add_peak(busy)
    if busy.host_mib is None:
        pytest.skip("this kernel does not let a process reset its peak resident size")
    assert busy.gpu_mib is None
    assert busy.host_mib >= quiet.host_mib + 48
    assert samples.peak.host_mib == busy.host_mib
