from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from core.config import BACKBONES, ModelConfig
from core.errors import ClassNamesMismatchError, ConfigError, WeightsError
from models.backbones import infer_resnet
from models.classifier import build_model
from models.correlation import Correlation, CorrelationMask

NAMES = ["cat", "dog", "car", "tree", "cup"]


def _config(backbone: str = "resnet18", **overrides) -> ModelConfig:
    return ModelConfig(num_classes=len(NAMES), backbone=backbone, image_size=64, **overrides)


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_resnet_builds_and_maps_images_to_class_logits(backbone: str) -> None:
    model = build_model(_config(backbone), NAMES)
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, len(NAMES))
    assert bool(torch.isfinite(logits).all())
    assert model.head.fc.in_features == (512 if backbone in ("resnet18", "resnet34") else 2048)
    assert infer_resnet(model.backbone.state_dict()) == backbone


def test_head_adds_the_gat_output_to_the_pooled_scores() -> None:
    model = build_model(_config(), NAMES)
    features = torch.randn(2, 512, 2, 2)
    with torch.no_grad():
        scores = model.head.fc(features.amax(dim=(2, 3))).unsqueeze(-1)
        expected = (scores + model.head.gat(scores)).squeeze(-1)
        torch.testing.assert_close(model.head(features), expected, rtol=0, atol=0)


def test_backbone_weights_come_from_the_named_local_file(resnet18_weights: Path) -> None:
    model = build_model(_config(), NAMES, backbone_weights=resnet18_weights)
    stored = torch.load(resnet18_weights, weights_only=True)
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, stored[key], rtol=0, atol=0)
    random_init = build_model(_config(), NAMES)
    assert not torch.equal(random_init.backbone.conv1.weight, model.backbone.conv1.weight)


def test_a_wrapped_state_dict_with_module_prefixes_loads(resnet18_weights: Path, tmp_path: Path) -> None:
    stored = torch.load(resnet18_weights, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in stored.items()}}, wrapped)
    model = build_model(_config(), NAMES, backbone_weights=wrapped)
    torch.testing.assert_close(model.backbone.conv1.weight, stored["conv1.weight"], rtol=0, atol=0)


def test_missing_weights_file_is_a_typed_error(tmp_path: Path) -> None:
    missing = tmp_path / "resnet18-nowhere.pth"
    with pytest.raises(WeightsError, match="not found.*resnet18-nowhere.pth"):
        build_model(_config(), NAMES, backbone_weights=missing)


@pytest.mark.parametrize(("made_for", "built_as"), [("resnet34", "resnet18"), ("resnet18", "resnet50")])
def test_weights_of_another_architecture_are_refused_and_named(made_for: str, built_as: str, tmp_path: Path) -> None:
    path = tmp_path / f"{made_for}.pth"
    torch.save(getattr(torchvision.models, made_for)(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=f"do not fit {built_as}.*look like {made_for}"):
        build_model(_config(built_as), NAMES, backbone_weights=path)


def test_a_file_that_is_not_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_bytes(b"these are not weights")
    with pytest.raises(WeightsError, match="not a readable torch weights file"):
        build_model(_config(), NAMES, backbone_weights=path)


def test_class_names_must_match_the_configured_count() -> None:
    with pytest.raises(ClassNamesMismatchError, match="5 classes but 2"):
        build_model(_config(), ["a", "b"])


def test_config_refuses_unknown_values_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16'"):
        ModelConfig(num_classes=3, backbone="vgg16")
    with pytest.raises(ConfigError, match="mask_threshold"):
        ModelConfig(num_classes=3, mask_threshold=1.5)
    config = _config(mask_mode="seed", mask_threshold=0.3)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 7})


@pytest.mark.slow
def test_default_model_is_resnet101_at_448() -> None:
    config = ModelConfig(num_classes=80)
    assert (config.backbone, config.image_size, config.mask_mode) == ("resnet101", 448, "softmax")
    model = build_model(config, [f"class_{i}" for i in range(80)])
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 448, 448))
    assert logits.shape == (1, 80) and bool(torch.isfinite(logits).all())
    assert sum(p.numel() for p in model.backbone.parameters()) == 42_500_160


def _correlation_mask(names: list[str], mode: str = "softmax") -> CorrelationMask:
    probability = np.linspace(0.0, 1.0, len(names) ** 2).reshape(len(names), len(names))
    return CorrelationMask(Correlation(probability, tuple(names), "test", "0" * 64), 0.1, mode)


def test_a_mask_in_another_class_order_is_reordered_by_name() -> None:
    alphabetical = sorted(NAMES)
    mask = _correlation_mask(alphabetical)
    model = build_model(_config(), NAMES, mask)
    column = {name: k for k, name in enumerate(alphabetical)}
    for i, row_name in enumerate(NAMES):
        for j, col_name in enumerate(NAMES):
            assert bool(model.mask[i, j]) == bool(mask.mask[column[row_name], column[col_name]])
    assert not np.array_equal(model.mask.numpy(), mask.mask)  # the order really differed


def test_a_mask_of_another_class_set_or_mode_is_refused() -> None:
    with pytest.raises(ClassNamesMismatchError, match="another class set"):
        build_model(_config(), NAMES, _correlation_mask([*NAMES[:-1], "bus"]))
    with pytest.raises(ConfigError, match="seed mode"):
        build_model(_config(), NAMES, _correlation_mask(NAMES, mode="seed"))


def test_a_mask_made_for_another_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="> 0.1, the model is configured for softmax mode at > 0.3"):
        build_model(_config(mask_threshold=0.3), NAMES, _correlation_mask(NAMES))


def test_a_refused_load_leaves_the_whole_model_unchanged() -> None:
    model = build_model(_config(), NAMES)
    before = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    other = build_model(_config(), list(reversed(NAMES)))
    with pytest.raises(ClassNamesMismatchError):
        model.load_state_dict(other.state_dict())
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, before[key]), f"{key} changed by a refused load"


def test_wide_resnet_weights_are_not_mistaken_for_a_plain_resnet(tmp_path: Path) -> None:
    path = tmp_path / "wide.pth"
    torch.save(torchvision.models.wide_resnet50_2(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit resnet50.*match no torchvision ResNet"):
        build_model(_config("resnet50"), NAMES, backbone_weights=path)


def test_a_whole_pickled_model_is_refused_with_a_safe_hint(tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(weights=None), path)
    with pytest.raises(WeightsError, match="save model.state_dict") as raised:
        build_model(_config(), NAMES, backbone_weights=path)
    assert "\n" not in str(raised.value) and "weights_only=False" not in str(raised.value)


def test_the_whole_model_pickles_for_users_who_save_modules() -> None:
    buffer = io.BytesIO()
    torch.save(build_model(_config(), NAMES), buffer)
    assert buffer.tell() > 1_000_000
