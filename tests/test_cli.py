"""Command-line contracts shared by every entry point: --help, exit codes, torch-free imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models import summary

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [
    "calibration.quantize",
    "export.build_engine",
    "export.check_parity",
    "export.to_onnx",
    "models.correlation",
    "models.evaluate",
    "models.import_seed",
    "models.summary",
    "models.synthetic",
    "models.train",
]
SUBCOMMANDS = ["runtime predict", "runtime benchmark", "runtime serve", "runtime bulk"]


@pytest.mark.parametrize("command", COMMANDS + SUBCOMMANDS)
def test_help_shows_defaults_and_exits_0(command: str) -> None:
    argv = [sys.executable, "-m", *command.split(), "--help"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"python -m {command}" in result.stdout and "(default: " in result.stdout


@pytest.mark.parametrize("command", [*COMMANDS, *SUBCOMMANDS, "runtime", "runtime no-such-subcommand"])
def test_bad_usage_exits_2(command: str) -> None:
    argv = [sys.executable, "-m", *command.split(), "--no-such-flag"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ")


def test_summary_describes_a_built_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert summary.main(["--backbone", "resnet18", "--image-size", "64", "--num-classes", "7"]) == 0
    out = capsys.readouterr().out
    assert "resnet18, 11.18 M parameters, 512 channels" in out
    assert "7 nodes, softmax mode, 0 edges + 7 self-loops" in out
    assert "→ [1, 7], all finite" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--image-size", "0"], "image_size must be at least 32 pixels, got 0"), (["--num-classes", "0"], "at least 1")],
)
def test_summary_refuses_zero_instead_of_using_the_default(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert summary.main(["--backbone", "resnet18", "--no-forward", *flags]) == 1
    assert message in capsys.readouterr().err


def test_summary_reports_a_bad_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 10)
    assert summary.main(["--checkpoint", str(broken)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "broken.pt" in err and "\n" not in err


def test_errors_config_and_runtime_import_without_torch_or_ray() -> None:
    core = "core.errors, core.config, core.preprocessing, core.cli, core.files, core.facts, core.manifest"
    modules = f"{core}, runtime, runtime.commands, runtime.benchmark, runtime.onnxruntime_session, runtime.bulk"
    code = f"import sys, {modules}; sys.exit('torch' in sys.modules or 'ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
