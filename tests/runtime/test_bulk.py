"""``python -m runtime bulk`` on one process: every image exactly once, matching ``Predictor``; bad
images, kill -9 and resume, the rules of an output folder, the three sources and both formats."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import Predictor
from runtime.benchmark import synthetic_jpegs
from runtime.bulk import read_records
from runtime.bulk.listing import read_shards, shard_images, write_listing
from runtime.bulk.shards import write_shard, written_shards
from runtime.bulk.sources import Source
from runtime.commands import main as runtime_main
from tests.helpers import REPO, relabelled


def bulk(*argv: str | Path) -> int:
    return runtime_main(["bulk", *map(str, argv)])


@pytest.fixture(scope="module")
def photos(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out images in two levels of folders, with a corrupt JPEG, a text file named .jpg, and a
    non-image file that is not listed."""
    folder = tmp_path_factory.mktemp("photos")
    images = sorted((demo_data / "val").glob("*.jpg"))
    (folder / "b" / "deeper").mkdir(parents=True)
    for index, image in enumerate(images[:20]):
        target = folder / ("a.jpg" if index == 0 else "b" if index < 8 else "b/deeper" if index < 12 else ".")
        shutil.copy(image, target if target.suffix else target / image.name)
    (folder / "b" / "truncated.jpg").write_bytes(images[0].read_bytes()[:300])
    (folder / "not-an-image.jpg").write_text("hello")
    (folder / "notes.txt").write_text("not listed")
    return folder


def listed(folder: Path) -> list[str]:
    return sorted(
        (str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix == ".jpg"),
        key=lambda name: name.split("/"),
    )


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*"))}


def test_every_image_once_bad_ones_as_errors_and_the_predictors_results(
    fp32_graph: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tags"
    assert bulk(fp32_graph, "--images", photos, "--output", out, "--shard-size", "6", "--skip-bad") == 0
    assert "22 images: 20 tagged, 2 failed" in capsys.readouterr().out
    records = list(read_records(out))
    assert [r["image"] for r in records] == listed(photos)  # each once, in the walk's order
    failed = {r["image"]: r["error"] for r in records if "error" in r}
    assert set(failed) == {"b/truncated.jpg", "not-an-image.jpg"}
    assert all("image" in message for message in failed.values())
    good = [r for r in records if "error" not in r]
    with Predictor(fp32_graph) as predictor:
        expected = predictor.predict([str(photos / r["image"]) for r in good])
        run = json.loads((out / "run.json").read_text())
        assert run["class_names"] == list(predictor.class_names)
        assert run["settings"]["shard_size"] == 6 and run["source"]["kind"] == "folder"
    for record, prediction in zip(good, expected, strict=True):
        assert np.abs(np.array(record["probabilities"]) - prediction.scores).max() <= 1e-5
        assert record["labels"] == list(prediction.labels)
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-{i:06d}.jsonl" for i in range(4)]
    complete = json.loads((out / "complete.json").read_text())["summary"]
    assert (complete["images"], complete["tagged"], complete["failed"], complete["shards"]) == (22, 20, 2, 4)


def test_a_bad_image_stops_the_run_after_the_shards_before_it_and_a_resume_finishes_it_the_same(
    fp32_graph: Path, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "whole"
    assert bulk(fp32_graph, "--images", photos, "--output", whole, "--shard-size", "6", "--skip-bad") == 0
    stopped = tmp_path / "stopped"
    assert bulk(fp32_graph, "--images", photos, "--output", stopped, "--shard-size", "6") == 1
    error = capsys.readouterr().err
    assert "truncated.jpg" in error and "--resume --skip-bad" in error
    # b/truncated.jpg is image 20 (after 8 at the top, a.jpg, b's 7 and b/deeper's 4): shards 0-2 are written
    assert [p.name for p in sorted(stopped.glob("part-*"))] == [f"part-00000{i}.jsonl" for i in range(3)]
    assert not (stopped / "complete.json").exists()
    assert bulk(fp32_graph, "--images", photos, "--output", stopped, "--shard-size", "6", "--resume", "--skip-bad") == 0
    assert "(18 done before the resume)" in capsys.readouterr().out
    assert shard_bytes(stopped) == shard_bytes(whole)


def test_runs_killed_with_sigkill_at_any_moment_resume_exactly_once_and_identical(
    fp32_graph: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    synthetic_jpegs(images, 1200, size=(64, 48))
    command = [sys.executable, "-m", "runtime", "bulk", str(fp32_graph), "--images", str(images), "--shard-size", "8"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*command, "--output", str(whole)], cwd=REPO, check=True, capture_output=True, timeout=300)

    # Kills at growing delays land in start-up, listing, tagging and shard writes alike.
    midway = 0
    for delay in (0.3, 1.0, 1.6, 2.2, 2.8, 3.4):
        resume = ["--resume"] if (killed / "run.json").exists() else []
        process = subprocess.Popen([*command, "--output", str(killed), *resume], cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()  # SIGKILL
        finally:
            process.wait(timeout=30)
        shards = list(killed.glob("part-*")) if killed.exists() else []
        for shard in shards:  # every shard on disk is whole
            assert len(shard.read_text().splitlines()) == 8, shard
        midway += process.returncode == -signal.SIGKILL and 0 < len(shards) < 150
    assert midway >= 1, "no kill landed while shards were being written"

    again = [*command, "--output", str(killed), "--resume"] if (killed / "run.json").exists() else command
    subprocess.run(again, cwd=REPO, check=True, capture_output=True, text=True, timeout=300)
    assert shard_bytes(killed) == shard_bytes(whole)
    assert [p.name for p in killed.iterdir() if p.name.startswith(".")] == [".lock"]  # no temporary file left
    names = [r["image"] for r in read_records(killed)]
    assert len(names) == len(set(names)) == 1200


def test_a_second_run_on_a_folder_in_use_is_refused(fp32_graph: Path, photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tags"
    out.mkdir()
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert bulk(fp32_graph, "--images", photos, "--output", out) == 1
    assert "another bulk run writes" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [".lock"]


def test_the_output_folder_rules(fp32_graph: Path, photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tags"
    base = ["--images", photos, "--output", out, "--shard-size", "6", "--skip-bad"]
    assert bulk(fp32_graph, *base) == 0
    assert bulk(fp32_graph, *base) == 1
    assert "pass --resume to continue it, --force to start over" in capsys.readouterr().err
    assert bulk(fp32_graph, *base, "--resume", "--threshold", "0.9") == 1
    assert "another settings" in capsys.readouterr().err
    assert bulk(fp32_graph, *base[:-3], "--shard-size", "7", "--skip-bad", "--resume") == 1
    assert "another settings" in capsys.readouterr().err
    other = relabelled(fp32_graph, tmp_path / "other.onnx", source_checkpoint="another.pt")
    assert bulk(other, *base, "--resume") == 1
    assert "another artifact" in capsys.readouterr().err
    before = shard_bytes(out)
    assert bulk(fp32_graph, *base, "--resume") == 0  # a finished run: nothing to do
    assert shard_bytes(out) == before
    (out / "mine.csv").write_text("x")
    assert bulk(fp32_graph, *base, "--force") == 1
    assert "files no bulk run wrote (mine.csv)" in capsys.readouterr().err
    (out / "mine.csv").unlink()
    moved = shutil.copy(fp32_graph, tmp_path / "moved.onnx")
    assert bulk(moved, *base, "--resume") == 0  # the same artifact elsewhere
    assert bulk(fp32_graph, *base, "--force", "--threshold", "0.9") == 0
    assert json.loads((out / "run.json").read_text())["settings"]["thresholds"][0] == pytest.approx(0.9)
    assert bulk(fp32_graph, "--images", photos, "--output", photos / "inside") == 1
    assert "inside one" in capsys.readouterr().err


def test_a_source_without_images_leaves_no_run_behind(fp32_graph: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert bulk(fp32_graph, "--images", tmp_path / "empty", "--output", tmp_path / "out") == 1
    assert "names no image" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".lock"]  # no run: a later one needs no --force


def test_a_list_and_coco_annotations_name_the_images(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    names = [image["file_name"] for image in json.loads((demo_data / "instances_val.json").read_text())["images"]]
    coco = tmp_path / "coco"
    assert bulk(fp32_graph, "--images", demo_data / "val", "--annotations", demo_data / "instances_val.json",
                "--output", coco) == 0  # fmt: skip
    assert [r["image"] for r in read_records(coco)] == names

    paths = tmp_path / "paths.txt"
    paths.write_text("".join(f"{demo_data / 'val' / name}\n" for name in names[:3]) + f"val/{names[3]}\n")
    shutil.copytree(demo_data / "val", tmp_path / "val")
    listed = tmp_path / "listed"
    assert bulk(fp32_graph, "--list", paths, "--output", listed) == 0  # relative to the list's folder
    records = list(read_records(listed))
    assert [r["image"] for r in records] == [str(demo_data / "val" / n) for n in names[:3]] + [f"val/{names[3]}"]
    by_name = {r["image"]: r for r in read_records(coco)}
    for record, name in zip(records, names, strict=False):
        assert record["probabilities"] == by_name[name]["probabilities"]


def test_parquet_shards_hold_the_same_records(fp32_graph: Path, photos: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="--format parquet needs pyarrow (the parquet extra)")
    import pyarrow.parquet as parquet

    common = ["--images", photos, "--shard-size", "6", "--skip-bad"]
    assert bulk(fp32_graph, *common, "--output", tmp_path / "j") == 0
    assert bulk(fp32_graph, *common, "--output", tmp_path / "p", "--format", "parquet") == 0
    jsonl, table = list(read_records(tmp_path / "j")), list(read_records(tmp_path / "p"))
    assert [r["image"] for r in table] == [r["image"] for r in jsonl]
    for a, b in zip(jsonl, table, strict=True):
        assert a.get("error") == b.get("error") and a.get("labels") == b.get("labels")
        if "probabilities" in a:
            assert np.abs(np.array(a["probabilities"]) - np.array(b["probabilities"])).max() <= 1e-6
    schema = parquet.read_schema(tmp_path / "p" / "part-000000.parquet")
    assert str(schema.field("probabilities").type) == "list<element: float>"


def test_a_name_parquet_cannot_store_is_refused_before_tagging(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("pyarrow", reason="--format parquet needs pyarrow (the parquet extra)")
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(demo_data / "val" / "000000.jpg", folder / "ok.jpg")
    (folder / os.fsdecode(b"latin-\xe9.jpg")).write_bytes((folder / "ok.jpg").read_bytes())
    out = tmp_path / "out"
    assert bulk(fp32_graph, "--images", folder, "--output", out, "--format", "parquet") == 1
    assert "not UTF-8, which Parquet cannot store" in capsys.readouterr().err
    assert not (out / "run.json").exists()
    assert bulk(fp32_graph, "--images", folder, "--output", out) == 0  # JSON Lines keeps any name
    assert [r["image"] for r in read_records(out)] == [os.fsdecode(b"latin-\xe9.jpg"), "ok.jpg"]


def test_shards_past_a_million_keep_their_order(tmp_path: Path) -> None:
    for index in (1_000_000, 999_999, 2):
        write_shard(tmp_path, index, "jsonl", [{"image": str(index), "error": "x"}])
    assert written_shards(tmp_path, "jsonl") == {2, 999_999, 1_000_000}
    assert [r["image"] for r in read_records(tmp_path)] == ["2", "999999", "1000000"]


def test_the_walk_is_sorted_recursive_and_follows_no_folder_link(tmp_path: Path) -> None:
    for name in ("b/2.jpg", "b/1.PNG", "a.jpg", "c/x/y.webp", "b/skip.txt", "c/x/.hidden.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "c" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert list(Source.of(tmp_path, None, None).images()) == ["a.jpg", "b/1.PNG", "b/2.jpg", "c/x/.hidden.jpg",
                                                                "c/x/y.webp"]  # fmt: skip


def test_any_file_name_survives_the_listing(tmp_path: Path) -> None:
    names = ["plain.jpg", "new\nline.jpg", "ünïcode.jpg", "bad-utf8-\udcff.jpg", '"quoted".jpg']
    shards = write_listing(iter(names), tmp_path / "listing.jsonl", 2)
    assert [(s.first, s.count) for s in shards] == [(0, 2), (2, 2), (4, 1)]
    assert read_shards(tmp_path / "listing.jsonl", 2) == shards
    assert [n for s in shards for n in shard_images(tmp_path / "listing.jsonl", s)] == names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "o"], "name the images"),
        (["--images", "x", "--list", "y", "--annotations", "z", "--output", "o"], "both name the images"),
        (["--annotations", "{coco}", "--output", "o"], "add --images"),
        (["--images", "{val}", "--output", "o", "--workers", "2"], "add --engine ray"),
        (["--images", "{val}", "--output", "o", "--resume", "--force"], "give one"),
        (["--images", "{val}", "--output", "o", "--shard-size", "0"], "shard size"),
        (["--images", "{val}", "--output", "o", "--resume"], "holds no run"),
    ],
)
def test_bad_usage_is_refused_with_what_to_do(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, argv: list[str], message: str, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [a.format(coco=demo_data / "instances_val.json", val=demo_data / "val") for a in argv]
    try:
        code = bulk(fp32_graph, *argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    assert code in (1, 2)
    assert message in capsys.readouterr().err
