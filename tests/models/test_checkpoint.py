from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from core.config import ModelConfig
from core.errors import CheckpointError, ConfigError
from models.checkpoint import FORMAT_VERSION, MASK_KEY, load_model, read_checkpoint, save_checkpoint
from models.classifier import build_model

NAMES = ["cat", "dog", "car", "tree"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    mask = torch.rand(len(NAMES), len(NAMES)) < 0.5
    config = ModelConfig(len(NAMES), "resnet18", image_size=64, mask_mode="seed", mask_threshold=0.2)
    return build_model(config, NAMES, mask)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model.pt", extra={"epoch": 3})


def test_save_and_load_give_the_same_model(model, saved: Path) -> None:
    loaded = load_model(saved)
    assert loaded.config == model.config
    assert loaded.class_names == model.class_names
    assert torch.equal(loaded.mask, model.mask) and loaded.mask.dtype == torch.bool
    assert not loaded.training
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


def test_checkpoint_holds_version_config_names_and_the_mask(model, saved: Path) -> None:
    checkpoint = read_checkpoint(saved)
    assert checkpoint.config.to_dict()["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert checkpoint.class_names == tuple(NAMES)
    assert torch.equal(checkpoint.state_dict[MASK_KEY], model.mask)
    assert checkpoint.extra == {"epoch": 3}
    payload = torch.load(saved, weights_only=True)  # plain data: no code needed to read it
    assert payload["format_version"] == FORMAT_VERSION


def test_missing_truncated_and_garbage_files_are_refused(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(garbage)


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "code.pt"
    torch.save({"format": "masked-gat-checkpoint", "format_version": 1, "hook": Payload()}, path)
    with pytest.raises(CheckpointError, match="carries code"):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_bare_state_dict_points_to_the_seed_importer(model, tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="models.import_seed"):
        read_checkpoint(path)


def test_newer_versions_and_weights_that_do_not_fit_are_refused(saved: Path, tmp_path: Path) -> None:
    payload = torch.load(saved, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match="format version"):
        read_checkpoint(newer)
    misfit = tmp_path / "misfit.pt"
    torch.save({**payload, "config": {**payload["config"], "backbone": "resnet34"}}, misfit)
    with pytest.raises(CheckpointError, match="do not fit the stored config"):
        load_model(misfit)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda state: {**state, MASK_KEY: "not a mask"}, "must be a bool tensor"),
        (lambda state: {**state, MASK_KEY: state[MASK_KEY].float()}, "must be a bool tensor"),
        (lambda state: {**state, "head.gat._extra_state": ["cat"]}, "do not fit the stored config"),
        (
            lambda state: {**state, "head.gat._extra_state": {"class_names": NAMES[::-1], "mode": "seed"}},
            "do not fit the stored config.*another order",
        ),
    ],
)
def test_a_checkpoint_with_a_corrupt_mask_or_extra_state_is_refused(
    saved: Path, tmp_path: Path, corrupt, message
) -> None:
    payload = torch.load(saved, weights_only=True)
    path = tmp_path / "corrupt.pt"
    torch.save({**payload, "state_dict": corrupt(payload["state_dict"])}, path)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_outputs_are_readable_by_others_as_the_umask_allows(model, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(model, tmp_path / "shared.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_saving_never_leaves_a_partial_file(model, saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--force"):
        save_checkpoint(model, saved, force=False)
    with pytest.raises(ConfigError, match="cannot write"):
        save_checkpoint(model, tmp_path / "no" / "such" / "dir" / "m.pt")
    with pytest.raises(ConfigError, match="is a folder"):
        save_checkpoint(model, tmp_path)

    class Unsaveable(torch.nn.Module):
        config, class_names = model.config, model.class_names

        def state_dict(self):
            raise KeyboardInterrupt  # interrupted half-way through writing

    target = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(Unsaveable(), target)
    assert list(tmp_path.iterdir()) == []
