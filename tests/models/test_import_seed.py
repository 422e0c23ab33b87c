from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from models.checkpoint import load_model
from models.import_seed import main

from .seed_reference import SeedResnet


def _seed_files(tmp_path: Path, backbone: str, num_classes: int, seed: int = 0, wrap=lambda s: s):
    """A seed-structured model with non-default GAT parameters, saved the seed's way."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    pp = generator.uniform(0.0, 0.3, (num_classes, num_classes)).astype(np.float64)
    np.fill_diagonal(pp, 1.0)
    names = [f"label {i}" for i in range(num_classes)]
    seed_model = SeedResnet(getattr(torchvision.models, backbone)(weights=None), num_classes, pp > 0.1).eval()
    with torch.no_grad():
        seed_model.heads.gat.W.fill_(0.8)
        seed_model.heads.gat.a.copy_(torch.tensor([[1.5], [-0.7]]))
        seed_model.heads.gat.beta.fill_(0.6)
    state = tmp_path / "seed_state.pth"
    torch.save(wrap(seed_model.state_dict()), state)
    correlation = tmp_path / "coco_correlations.pkl"
    correlation.write_bytes(pickle.dumps({"pp": pp}))
    names_file = tmp_path / "coco_names.pkl"
    names_file.write_bytes(pickle.dumps(names))
    return seed_model, ["--state-dict", str(state), "--correlation", str(correlation), "--names", str(names_file)]


@pytest.mark.slow
def test_a_seed_resnet101_state_dict_imports_with_identical_outputs(tmp_path: Path) -> None:
    seed_model, argv = _seed_files(tmp_path, "resnet101", num_classes=80)
    output = tmp_path / "imported.pt"
    assert main([*argv, "--output", str(output)]) == 0
    model = load_model(output)
    assert (model.config.backbone, model.config.mask_mode, model.config.image_size) == ("resnet101", "seed", 448)
    images = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, actual = seed_model(images), model(images)
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-5)
    assert float((expected - expected.mean()).abs().max()) > 0.1  # the check compares real signal


def test_a_wrapped_parallel_state_dict_imports_with_identical_outputs(tmp_path: Path) -> None:
    def as_saved_by_a_trainer(state):
        return {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()}}

    seed_model, argv = _seed_files(tmp_path, "resnet18", num_classes=12, wrap=as_saved_by_a_trainer)
    output = tmp_path / "imported.pt"
    assert main([*argv, "--output", str(output), "--image-size", "96"]) == 0
    model = load_model(output)
    assert model.config.backbone == "resnet18" and model.config.image_size == 96
    assert model.class_names == tuple(f"label {i}" for i in range(12))
    np.testing.assert_array_equal(model.mask.numpy(), seed_model.heads.gat.mask.numpy() > 0)
    images = torch.randn(3, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(model(images), seed_model(images), rtol=1e-6, atol=1e-5)


def test_import_refuses_mismatched_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, argv = _seed_files(tmp_path, "resnet18", num_classes=6)
    output = tmp_path / "out.pt"
    other_size = tmp_path / "small.pkl"
    other_size.write_bytes(pickle.dumps({"pp": np.eye(5)}))
    names5 = tmp_path / "names5.txt"
    names5.write_text("\n".join("abcde"))
    swapped = [*argv[:2], "--correlation", str(other_size), "--names", str(names5)]
    assert main([*swapped, "--output", str(output)]) == 1
    assert "6 outputs but the statistics describe 5 classes" in capsys.readouterr().err
    assert main([*argv, "--backbone", "resnet34", "--output", str(output)]) == 1
    assert "weights are resnet18" in capsys.readouterr().err
    assert not output.exists()


def test_a_non_seed_state_dict_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, argv = _seed_files(tmp_path, "resnet18", num_classes=4)
    plain = tmp_path / "plain.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), plain)
    argv[1] = str(plain)
    assert main([*argv, "--output", str(tmp_path / "out.pt")]) == 1
    assert "not from the seed's masked_gat_after_resnet model" in capsys.readouterr().err
