from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import evaluate as evaluate_cli
from models import train as train_cli
from models.checkpoint import load_model, read_checkpoint
from models.classifier import build_model
from models.config import ModelConfig
from models.synthetic import SyntheticSpec, generate
from models.training import TrainConfig, make_optimizer

TINY = ["--backbone", "resnet18", "--image-size", "32", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SyntheticSpec(train=48, val=16, image_size=32, seed=2), tmp_path_factory.mktemp("train") / "d")


def _train(data: Path, output: Path, *extra: str) -> int:
    return train_cli.main(["--data", str(data), "--output", str(output), *extra])


def _states_equal(a: Path, b: Path) -> bool:
    left, right = read_checkpoint(a).state_dict, read_checkpoint(b).state_dict
    return left.keys() == right.keys() and all(
        torch.equal(left[k], right[k]) for k in left if isinstance(left[k], torch.Tensor)
    )


def test_training_writes_best_last_and_history(data: Path, tmp_path: Path, capsys) -> None:
    assert _train(data, tmp_path / "run", *TINY, "--epochs", "2") == 0
    out = capsys.readouterr().out
    assert "best val mAP" in out and "CP" in out
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2]
    assert all(0.0 <= e["mAP"] <= 1.0 and e["loss"] > 0 for e in history)
    model = load_model(tmp_path / "run" / "best.pt")
    assert model.config.backbone == "resnet18" and model.config.image_size == 32
    assert model.class_names == tuple(sorted(model.class_names))  # counted mask, alphabetical by default
    assert read_checkpoint(tmp_path / "run" / "last.pt").extra["training"]["epoch"] == 2


def test_training_is_deterministic_and_resume_continues_exactly(data: Path, tmp_path: Path) -> None:
    assert _train(data, tmp_path / "a", *TINY, "--epochs", "2") == 0
    assert _train(data, tmp_path / "b", *TINY, "--epochs", "2") == 0
    assert _states_equal(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert _train(data, tmp_path / "c", *TINY, "--epochs", "1") == 0
    resume = ["--resume", "--epochs", "2", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "16"]
    assert _train(data, tmp_path / "c", *resume) == 0
    assert _states_equal(tmp_path / "a" / "last.pt", tmp_path / "c" / "last.pt")
    assert len(json.loads((tmp_path / "c" / "history.json").read_text())) == 2


def test_a_run_is_never_overwritten_or_resumed_with_other_settings(data: Path, tmp_path: Path, capsys) -> None:
    assert _train(data, tmp_path / "run", *TINY, "--epochs", "1") == 0
    capsys.readouterr()
    assert _train(data, tmp_path / "run", *TINY, "--epochs", "1") == 1
    assert "pass --resume" in capsys.readouterr().err
    assert _train(data, tmp_path / "run", "--resume", "--epochs", "2", "--lr", "0.5") == 1
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        _train(data, tmp_path / "other", "--resume", "--backbone", "resnet18")
    assert usage.value.code == 2


def test_fine_tuning_a_checkpoint_and_evaluating_it(data: Path, tmp_path: Path, capsys) -> None:
    assert _train(data, tmp_path / "base", *TINY, "--epochs", "1", "--no-gat") == 0
    best = tmp_path / "base" / "best.pt"
    assert not load_model(best).config.use_gat
    assert _train(data, tmp_path / "tuned", "--checkpoint", str(best), "--epochs", "1", "--lr", "1e-4") == 0
    report = tmp_path / "report.json"
    argv = [
        "--checkpoint",
        str(tmp_path / "tuned" / "last.pt"),
        "--annotations",
        str(data / "instances_val.json"),
        "--images",
        str(data / "val"),
        "--output",
        str(report),
    ]
    capsys.readouterr()
    assert evaluate_cli.main(argv) == 0
    printed = capsys.readouterr().out
    document = json.loads(report.read_text())
    assert f"mAP {100 * document['mAP']:.2f}" in printed
    assert set(document["at_threshold"]) == {"CP", "CR", "CF1", "OP", "OR", "OF1"}


def test_the_backbone_learns_at_a_scaled_rate() -> None:
    model = build_model(ModelConfig(3, "resnet18", 32), ["a", "b", "c"])
    optimizer = make_optimizer(model, TrainConfig(lr=0.1, backbone_lr_scale=0.1))
    backbone, head = optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.01) and head["lr"] == 0.1
    assert len(backbone["params"]) == len(list(model.backbone.parameters()))
    assert isinstance(optimizer, torch.optim.SGD) and backbone["momentum"] == 0.9
    assert backbone["weight_decay"] == 1e-4
