from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from core.config import ModelConfig
from core.errors import AnnotationError, ClassNamesMismatchError, ConfigError
from core.preprocessing import preprocess
from models.correlation_sources import correlation_from_coco
from models.dataset import CocoMultiLabel, collate_readable
from models.synthetic import SHAPES, SyntheticSpec, generate, main
from models.transforms import EvalTransform, MultiScaleCrop, train_transform

CONFIG = ModelConfig(num_classes=len(SHAPES), backbone="resnet18", image_size=32)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_generation_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    spec = SyntheticSpec(train=40, val=10, image_size=32, seed=3)
    first, second = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    assert _digest(first) == _digest(second)
    other = generate(SyntheticSpec(train=40, val=10, image_size=32, seed=4), tmp_path / "c")
    assert _digest(other) != _digest(first)
    assert sorted(p.name for p in first.iterdir()) == ["instances_train.json", "instances_val.json", "train", "val"]
    assert len(list((first / "train").glob("*.jpg"))) == 40
    with Image.open(first / "val" / "000000.jpg") as image:
        assert image.size == (32, 32)


def test_labels_co_occur_non_uniformly(tmp_path: Path) -> None:
    data = generate(SyntheticSpec(train=1500, val=1, image_size=32, seed=0), tmp_path / "d")
    correlation = correlation_from_coco(data / "instances_train.json", "alphabetical")
    p = dict(zip(correlation.class_names, correlation.probability, strict=True))
    index = {name: i for i, name in enumerate(correlation.class_names)}
    assert p["ring"][index["circle"]] > 0.85  # almost always together
    assert p["crescent"][index["star"]] > 0.8
    for a, b in (("diamond", "circle"), ("star", "square"), ("hexagon", "triangle")):
        assert p[a][index[b]] == 0.0 and p[b][index[a]] == 0.0  # never together
    off_diagonal = correlation.probability[~np.eye(len(SHAPES), dtype=bool)]
    assert off_diagonal.std() > 0.1  # far from uniform


def test_the_two_class_orders_differ_and_empty_images_are_skipped(tmp_path: Path) -> None:
    data = generate(SyntheticSpec(train=300, val=1, image_size=32), tmp_path / "d")
    alphabetical = correlation_from_coco(data / "instances_train.json", "alphabetical").class_names
    by_id = correlation_from_coco(data / "instances_train.json", "id").class_names
    assert alphabetical == tuple(sorted(SHAPES)) and by_id != alphabetical
    dataset = CocoMultiLabel(data / "train", data / "instances_train.json", EvalTransform(CONFIG))
    assert dataset.skipped_unannotated > 0 and len(dataset) == 300 - dataset.skipped_unannotated


def test_the_validation_split_does_not_depend_on_the_training_size(tmp_path: Path) -> None:
    small = generate(SyntheticSpec(train=5, val=8, image_size=32), tmp_path / "small")
    large = generate(SyntheticSpec(train=50, val=8, image_size=32), tmp_path / "large")
    assert (small / "instances_val.json").read_bytes() == (large / "instances_val.json").read_bytes()
    assert _digest(small / "val") == _digest(large / "val")


def test_generator_refuses_bad_specs_and_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        SyntheticSpec(num_classes=11)
    (tmp_path / "taken").mkdir()
    assert main(["--output", str(tmp_path / "taken"), "--train", "2", "--val", "1"]) == 1
    assert main(["--output", str(tmp_path / "taken"), "--train", "2", "--val", "1", "--force"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging folder left behind
    (tmp_path / "file").write_text("x")
    assert main(["--output", str(tmp_path / "file"), "--train", "2", "--val", "1", "--force"]) == 1


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SyntheticSpec(train=48, val=16, image_size=32, seed=1), tmp_path_factory.mktemp("data") / "small")


def test_eval_transform_is_the_runtime_preprocessing_and_matches_torchvision(small: Path, tmp_path: Path) -> None:
    # A non-square image, so the warp (aspect not kept) is exercised.
    with Image.open(small / "train" / "000001.jpg") as square:
        square.crop((0, 4, 32, 22)).save(tmp_path / "wide.png")
    path = tmp_path / "wide.png"
    with Image.open(path) as image:
        ours = EvalTransform(ModelConfig(len(SHAPES), image_size=48))(image.convert("RGB"))
        reference = v2.Compose(
            [
                v2.Resize((48, 48), antialias=True),
                v2.PILToTensor(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
            ]
        )(image.convert("RGB"))
    runtime = preprocess(path, 48, ModelConfig(len(SHAPES)).preprocessing)
    assert torch.equal(ours, torch.from_numpy(runtime))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_train_transform_is_seeded_and_sized(small: Path) -> None:
    with Image.open(small / "train" / "000002.jpg") as image:
        image = image.convert("RGB")
        transform = train_transform(CONFIG)
        torch.manual_seed(5)
        first = transform(image)
        torch.manual_seed(5)
        assert torch.equal(first, transform(image))
        assert first.shape == (3, 32, 32)
        crops = {MultiScaleCrop(16)(image).size for _ in range(5)}
        assert crops == {(16, 16)}


def test_targets_follow_the_models_class_order(small: Path) -> None:
    by_name = CocoMultiLabel(small / "train", small / "instances_train.json", EvalTransform(CONFIG))
    reversed_names = tuple(reversed(by_name.class_names))
    reordered = CocoMultiLabel(small / "train", small / "instances_train.json", EvalTransform(CONFIG), reversed_names)
    assert reordered.class_names == reversed_names
    assert torch.equal(reordered.targets, by_name.targets.flip(1))
    with pytest.raises(ClassNamesMismatchError, match="instances_train.json categories"):
        CocoMultiLabel(small / "train", small / "instances_train.json", EvalTransform(CONFIG), ("a",) * 1)


def test_bad_datasets_get_typed_errors_naming_the_file(small: Path, tmp_path: Path) -> None:
    broken = tmp_path / "instances_broken.json"
    broken.write_text("{")
    with pytest.raises(AnnotationError, match="instances_broken.json: not valid JSON"):
        CocoMultiLabel(small / "train", broken, EvalTransform(CONFIG))
    data = json.loads((small / "instances_train.json").read_text())
    data["annotations"][0]["category_id"] = 999
    unknown = tmp_path / "instances_unknown.json"
    unknown.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="instances_unknown.json: annotation .* category id 999"):
        CocoMultiLabel(small / "train", unknown, EvalTransform(CONFIG))
    with pytest.raises(AnnotationError, match=r"instances_train.json: .* are not in .*\(e.g. 0000"):
        CocoMultiLabel(small / "val", small / "instances_train.json", EvalTransform(CONFIG))


def test_a_corrupt_image_is_reported_and_left_out(small: Path, tmp_path: Path, caplog) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for path in (small / "val").iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    dataset = CocoMultiLabel(images, small / "instances_val.json", EvalTransform(CONFIG))
    dataset.files[1].write_bytes(b"\xff\xd8\xff truncated jpeg")
    with caplog.at_level(logging.WARNING, logger="models.dataset"):
        batch = collate_readable([dataset[i] for i in range(len(dataset))])
    assert batch is not None
    images_tensor, _, indices = batch
    assert len(images_tensor) == len(dataset) - 1 and 1 not in indices.tolist()
    assert dataset.files[1].name in caplog.text
    assert collate_readable([None, None]) is None


def test_the_generated_folder_is_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        folder = generate(SyntheticSpec(train=2, val=1, image_size=32), tmp_path / "data")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
