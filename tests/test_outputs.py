"""The one rule every command's outputs follow (``core.files.check_outputs``): an input is never an
output, two outputs are never one file, and an existing file is replaced only with --force. Each
command is refused before it does any work."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calibration import quantize
from core.errors import ConfigError, OutputError
from core.files import check_outputs, sha256_file, write_json
from export import check_parity
from models import correlation, evaluate, import_seed
from pipeline import demo
from runtime.commands import main as runtime_main
from tests.helpers import REPO


def test_the_rule(tmp_path: Path) -> None:
    source, existing = tmp_path / "in.pt", tmp_path / "out.json"
    source.write_bytes(b"weights")
    existing.write_text("{}")
    check_outputs({"--output": tmp_path / "new.json", "--plot": None}, [source], force=False)
    with pytest.raises(ConfigError, match="--output .*in.pt is one of this command's inputs"):
        check_outputs({"--output": source}, [source], force=True)  # not even with --force
    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match="inside one"):  # a plot among the images would be read as one
        check_outputs({"--plot": tmp_path / "images" / "p.png"}, [tmp_path / "images"], force=True)
    with pytest.raises(ConfigError, match="out.json \\(--report\\) already exists; pass --force"):
        check_outputs({"--report": existing}, [source], force=False)
    check_outputs({"--report": existing}, [source], force=True)
    with pytest.raises(ConfigError, match="--plot and --report both name"):
        check_outputs({"--report": tmp_path / "x", "--plot": tmp_path / "x"}, [], force=True)


def test_evaluate_never_writes_its_report_over_the_checkpoint(
    trained_checkpoint: Path, demo_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sha256_file(trained_checkpoint)
    argv = ["--checkpoint", str(trained_checkpoint), "--annotations", str(demo_data / "instances_val.json")]
    argv += ["--images", str(demo_data / "val"), "--output", str(trained_checkpoint), "--force"]
    assert evaluate.main(argv) == 1
    assert "is one of this command's inputs" in capsys.readouterr().err
    assert sha256_file(trained_checkpoint) == before


def test_reports_and_plots_are_not_replaced_without_force(
    trained_checkpoint: Path, fp32_graph: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"a user's file")
    parity = ["--checkpoint", str(trained_checkpoint), "--candidate", str(fp32_graph), "--random", "2"]
    assert check_parity.main([*parity, "--plot", str(kept)]) == 1
    assert check_parity.main([*parity, "--report", str(fp32_graph)]) == 1
    assert runtime_main(["benchmark", str(fp32_graph), "--markdown", str(kept)]) == 1
    assert runtime_main(["benchmark", str(fp32_graph), "--json", str(fp32_graph), "--force"]) == 1
    mask_source = str(demo_data / "instances_train.json")
    assert correlation.main([mask_source, "--class-order", "id", "--plot", str(kept)]) == 1
    err = capsys.readouterr().err
    assert err.count("kept.png (--plot) already exists; pass --force") == 2
    assert "kept.png (--markdown) already exists" in err and err.count("is one of this command's inputs") == 2
    assert kept.read_bytes() == b"a user's file"
    assert check_parity.main([*parity, "--plot", str(kept), "--force"]) == 0
    assert kept.read_bytes().startswith(b"\x89PNG")


def test_a_failed_write_leaves_nothing_and_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError, match="cannot write .*report.json: No space left on device"):
        write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left


@pytest.mark.parametrize("shell", ["> /dev/full", "| true"])  # true exits before reading: a closed pipe
def test_a_full_or_closed_stdout_ends_in_one_line_not_a_traceback(
    fp32_graph: Path, demo_data: Path, shell: str
) -> None:
    command = f"{sys.executable} -m runtime predict {fp32_graph} {demo_data / 'val'} --json {shell}"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    if "full" in shell:
        assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write the output: No space left")
    else:  # the reader left: nothing to say
        assert "Error" not in result.stderr


def test_the_demo_refuses_a_file_as_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("mine")
    assert demo.main(["--output", str(tmp_path / "a-file")]) == 1
    assert "is a file; name a folder" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_printed_escaped(fp32_graph: Path, demo_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    odd = os.fsdecode(b"photo\xff.jpg")  # a name another system wrote in Latin-1
    (folder / odd).write_bytes((demo_data / "val" / "000000.jpg").read_bytes())
    command = [sys.executable, "-m", "runtime", "predict", str(fp32_graph), str(folder)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict: a surrogate would raise
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "photo\\udcff.jpg: " in result.stdout


def test_quantize_and_import_never_write_into_their_inputs(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = demo_data / "train" / "model.int8.onnx"  # would be read as data by the next calibration
    assert quantize.main([str(fp32_graph), "--data", str(demo_data / "train"), "--output", str(inside)]) == 1
    assert not inside.exists()
    seed = tmp_path / "seed.pth"
    seed.write_bytes(b"the user's only copy")
    argv = ["--state-dict", str(seed), "--correlation", str(seed), "--names", str(seed)]
    argv += ["--output", str(seed), "--force"]
    assert import_seed.main(argv) == 1
    assert capsys.readouterr().err.count("is one of this command's inputs") == 2
    assert seed.read_bytes() == b"the user's only copy"
