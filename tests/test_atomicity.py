"""What a killed writer leaves is swept by the next run, and an artifact and its manifest are replaced
as a pair: a manifest never describes a file that is not the one beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibration import quantize
from core.files import staging_folder, staging_prefix, write_bytes
from core.manifest import manifest_path, publish, read_manifest, write_manifest
from export.to_onnx import main as to_onnx_main
from tests.helpers import FIXTURE_INT8_LIMITS, REPO, facts_of


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def test_a_dead_writers_leftovers_are_swept_and_a_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    dead = staging_prefix(target).replace(f".{os.getpid()}@", f".{_dead_pid()}@")
    leftovers = [tmp_path / f"{dead}abc.tmp", tmp_path / f"{dead}xyz"]
    leftovers[0].write_bytes(b"half a checkpoint")
    (leftovers[1] / "inner").mkdir(parents=True)
    kept = [
        tmp_path / f"{staging_prefix(target)}keep.tmp",  # another thread of a running writer
        tmp_path / f"{dead.replace('@', '@other-host-')}abc.tmp",  # a writer on another host: not ours to judge
        tmp_path / f".last.pt.4000000{staging_prefix(target)[len('.last.pt') :]}x.tmp",  # target last.pt.4000000
        tmp_path / ".last.pt.²@x.y",  # not a name we make
    ]
    for path in kept:
        path.write_bytes(b"someone's")
    write_bytes(target, b"checkpoint")
    assert not any(path.exists() for path in leftovers) and all(path.exists() for path in kept)
    with staging_folder(tmp_path / "model.onnx") as staging:
        assert staging.name.startswith(staging_prefix(tmp_path / "model.onnx")) and staging.parent == tmp_path


def test_a_kill_while_publishing_never_leaves_a_mismatched_pair(
    fp32_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.onnx"
    facts = facts_of(fp32_graph)
    target.write_bytes(b"old graph")
    write_manifest(target, facts, force=True)
    real_replace = os.replace
    for moves_before_kill in range(3):  # killed before the graph, between graph and manifest, never
        staged = tmp_path / f"staged{moves_before_kill}" / "model.onnx"
        staged.parent.mkdir()
        staged.write_bytes(b"new graph")
        write_manifest(staged, facts, force=True)
        moves = []

        def replace(source, destination, moves=moves, budget=moves_before_kill):
            if len(moves) == budget and budget < 2:
                raise KeyboardInterrupt  # stands for the kill
            moves.append(destination)
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(KeyboardInterrupt) if moves_before_kill < 2 else contextlib.nullcontext():
            publish(staged, target)
        monkeypatch.setattr(os, "replace", real_replace)
        if manifest_path(target).exists():  # the commit point: present only with its own graph
            assert read_manifest(target).describes(target) and target.read_bytes() == b"new graph"


def _kill_mid_write(argv: list[str], output: Path, after: float) -> None:
    """Starts ``argv``, waits until its staging folder beside ``output`` appears, then ``after`` seconds
    more, and kills it with SIGKILL (still running at that moment when ``after`` is 0)."""
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = f".{output.name}.{child.pid}@"
    deadline = time.monotonic() + 300
    while not any(path.name.startswith(prefix) for path in output.parent.iterdir()):
        assert child.poll() is None and time.monotonic() < deadline, "the writer ended before staging anything"
        time.sleep(0.05)
    time.sleep(after)
    running = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert running or after > 0


@pytest.mark.parametrize("after", [0.0, 1.0, 3.0])
def test_an_export_killed_at_any_moment_then_rerun_ends_as_an_uninterrupted_one(
    trained_checkpoint: Path, tmp_path: Path, after: float
) -> None:
    reference = tmp_path / "reference" / "model.onnx"
    reference.parent.mkdir()
    command = ["--checkpoint", str(trained_checkpoint), "--max-batch", "4", "--parity-samples", "4"]
    assert to_onnx_main([*command, "--output", str(reference)]) == 0
    output = tmp_path / "run" / "model.onnx"
    output.parent.mkdir()
    _kill_mid_write([sys.executable, "-m", "export.to_onnx", *command, "--output", str(output)], output, after)
    assert to_onnx_main([*command, "--output", str(output), "--force"]) == 0
    assert sorted(path.name for path in output.parent.iterdir()) == ["model.onnx", "model.onnx.json"]  # no debris
    assert read_manifest(output).describes(output)
    assert output.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("after", [0.0, 1.0])
def test_a_quantization_killed_at_any_moment_then_rerun_ends_as_an_uninterrupted_one(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, after: float
) -> None:
    limits = [f"--tolerance={name}={value}" for name, value in FIXTURE_INT8_LIMITS.items()]
    command = [str(fp32_graph), "--data", str(demo_data / "train"), *limits]
    reference = tmp_path / "reference" / "model.int8.onnx"
    reference.parent.mkdir()
    assert quantize.main([*command, "--output", str(reference)]) == 0
    output = tmp_path / "run" / "model.int8.onnx"
    output.parent.mkdir()
    _kill_mid_write([sys.executable, "-m", "calibration.quantize", *command, "--output", str(output)], output, after)
    assert quantize.main([*command, "--output", str(output), "--force"]) == 0
    left = sorted(path.name for path in output.parent.iterdir())
    assert left == ["model.int8.onnx", "model.int8.onnx.json", "model.int8.onnx.minmax.ranges.json"]  # no debris
    assert read_manifest(output).describes(output)
    assert output.read_bytes() == reference.read_bytes()
