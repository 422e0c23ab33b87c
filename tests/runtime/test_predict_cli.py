"""``python -m runtime predict``: text and JSON output, folders, bad images with and without --skip-bad."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime import Predictor
from runtime.commands import main as runtime_main


def main(argv: list[str]) -> int:
    return runtime_main(["predict", *argv])


@pytest.fixture(scope="module")
def val_images(demo_data: Path) -> list[Path]:
    return sorted((demo_data / "val").glob("*.jpg"))[:4]


@pytest.fixture
def corrupt_jpeg(val_images: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(val_images[0].read_bytes()[:200])
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def test_text_output_has_one_line_per_image(
    fp32_graph: Path, val_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fp32_graph), *map(str, val_images[:3]), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    with Predictor(fp32_graph) as predictor:
        results = predictor.predict([str(p) for p in val_images[:3]], top_k=2)
    for line, path, result in zip(lines, val_images[:3], results, strict=True):
        assert line.startswith(f"{path}: ")
        labels, top = line.removeprefix(f"{path}: ").split("  | top: ")
        if result.labels:
            assert [part.rsplit(" ", 1)[0] for part in labels.split(", ")] == list(result.labels)
        else:
            assert labels == "(no label over its threshold)"
        assert top == ", ".join(f"{name} {p:.3f}" for name, p in result.top_k)


def test_a_high_threshold_leaves_no_label(
    fp32_graph: Path, val_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fp32_graph), str(val_images[0]), "--threshold", "0.99"]) == 0
    assert capsys.readouterr().out == f"{val_images[0]}: (no label over its threshold)\n"


def test_json_output(fp32_graph: Path, val_images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(fp32_graph), *map(str, val_images[:2]), "--json"]) == 0
    document = _json(capsys)
    with Predictor(fp32_graph) as predictor:
        class_names = list(predictor.class_names)
        expected = predictor.predict([str(p) for p in val_images[:2]])
    assert document["backend"] == "onnxruntime"
    assert document["artifact"] == str(fp32_graph)
    assert document["class_names"] == class_names
    assert [r["index"] for r in document["results"]] == [0, 1]
    for entry, result in zip(document["results"], expected, strict=True):
        assert entry["source"] == result.source
        assert list(entry["scores"]) == class_names
        np.testing.assert_allclose(list(entry["scores"].values()), result.scores, rtol=0, atol=1e-6)
        assert entry["labels"] == list(result.labels)
        assert "error" not in entry and "top_k" not in entry


def test_class_thresholds_file(
    fp32_graph: Path, val_images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fp32_graph), str(val_images[0]), "--json"]) == 0
    entry = _json(capsys)["results"][0]
    best = max(entry["scores"], key=entry["scores"].get)
    assert best in entry["labels"]
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({best: 0.999}))
    assert main([str(fp32_graph), str(val_images[0]), "--json", "--class-thresholds", str(thresholds)]) == 0
    assert _json(capsys)["results"][0]["labels"] == [n for n in entry["labels"] if n != best]


def test_the_torch_checkpoint_gives_the_same_answer(
    fp32_graph: Path, trained_checkpoint: Path, val_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fp32_graph), *map(str, val_images[:2]), "--json"]) == 0
    onnx = _json(capsys)
    assert main([str(trained_checkpoint), *map(str, val_images[:2]), "--json", "--device", "cpu"]) == 0
    eager = _json(capsys)
    assert eager["backend"] == "torch"
    for a, b in zip(onnx["results"], eager["results"], strict=True):
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), rtol=0, atol=1e-4)


def test_a_folder_expands_to_its_images(
    fp32_graph: Path, val_images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, path in enumerate(val_images[:3]):
        shutil.copy(path, folder / f"{2 - i}.JPG")  # sorted by name: the reverse order
    (folder / "notes.txt").write_text("not an image")
    (folder / "nested").mkdir()
    shutil.copy(val_images[3], folder / "nested" / "deeper.jpg")
    assert main([str(fp32_graph), str(folder), str(val_images[3]), "--json"]) == 0
    results = _json(capsys)["results"]
    expected = [str(folder / f"{i}.JPG") for i in range(3)] + [str(val_images[3])]
    assert [r["source"] for r in results] == expected
    # 0.JPG is a copy of val_images[2].
    assert main([str(fp32_graph), str(val_images[2]), "--json"]) == 0
    assert _json(capsys)["results"][0]["scores"] == results[0]["scores"]


def test_an_empty_folder_is_an_error(fp32_graph: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(fp32_graph), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no images") and str(tmp_path) in captured.err


def test_a_corrupt_image_fails_in_one_line(
    fp32_graph: Path, val_images: list[Path], corrupt_jpeg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(fp32_graph), str(val_images[0]), str(corrupt_jpeg), str(val_images[1])]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith(f"error: item 1 ({corrupt_jpeg}): ")
    assert err.count("\n") == 1 and err.endswith("\n")


def test_skip_bad_reports_the_item_and_goes_on(
    fp32_graph: Path, val_images: list[Path], corrupt_jpeg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(fp32_graph), str(val_images[0]), str(corrupt_jpeg), str(val_images[1]), "--skip-bad"]
    assert main([*argv, "--json"]) == 0
    results = _json(capsys)["results"]
    assert len(results) == 3
    assert set(results[1]) == {"index", "source", "error"}
    assert results[1]["index"] == 1 and results[1]["source"] == str(corrupt_jpeg)
    assert "not a readable image" in results[1]["error"]
    assert "error" not in results[0] and "error" not in results[2]
    assert [r["source"] for r in results] == [str(val_images[0]), str(corrupt_jpeg), str(val_images[1])]

    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[1].startswith(f"{corrupt_jpeg}: error: ")
    assert lines[0].startswith(f"{val_images[0]}: ") and "error" not in lines[0]


def test_bad_arguments(
    fp32_graph: Path, val_images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.onnx"), str(val_images[0])]) == 1
    assert "ONNX graph not found" in capsys.readouterr().err
    assert main([str(fp32_graph), str(val_images[0]), "--backend", "torch"]) == 1
    assert "torch backend cannot run" in capsys.readouterr().err
    assert main([str(fp32_graph), str(val_images[0]), "--threshold", "1.5"]) == 1
    assert "(0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main([str(fp32_graph)])
    assert caught.value.code == 2
