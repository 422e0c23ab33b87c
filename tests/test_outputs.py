"""The one rule every command's outputs follow (``core.files.check_outputs``): an input is never an
output, two outputs are never one file, and an existing file is replaced only with --force. Each
command is refused before it does any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.files import check_outputs, sha256_file
from export import check_parity
from models import correlation, evaluate
from runtime.commands import main as runtime_main


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
