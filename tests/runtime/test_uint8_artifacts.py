"""Every consumer feeds an artifact with a uint8 input what it asks for: the Predictor (and its
``logits``), the benchmark, bulk tagging on both engines' decoding, and Triton's configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import BadInputError, ConfigError
from core.preprocessing import preprocess, resized
from export.triton_repo import RepositoryOptions, write_repository
from runtime import FailedItem, Predictor
from runtime.benchmark import benchmark
from runtime.bulk import bulk, read_records
from runtime.bulk.ray_engine import _decode
from tests.helpers import facts_of

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def files(demo_data: Path) -> list[Path]:
    return sorted((demo_data / "val").glob("*.jpg"))[:10]


def test_the_predictor_feeds_pixels_and_answers_as_for_the_float_graph(
    uint8_graph: Path, fp32_graph: Path, files: list[Path]
) -> None:
    items = [str(files[0]), files[1].read_bytes(), Image.open(files[2]), np.asarray(Image.open(files[3]))]
    items += [str(path) for path in files[4:]]
    with Predictor(fp32_graph) as floats, Predictor(uint8_graph, batch_size=3) as pixels:
        assert pixels.facts.input_format == "uint8" and pixels.facts.input_item_shape == (64, 64, 3)
        expected, results = floats.predict(items), pixels.predict(items)
        for want, got in zip(expected, results, strict=True):
            assert np.abs(got.scores - want.scores).max() <= TOLERANCE and got.labels == want.labels
        config = facts_of(uint8_graph).config
        batch = np.stack([resized(path, config.image_size, config.preprocessing) for path in files[:3]])
        np.testing.assert_allclose(
            pixels.logits(batch),
            floats.logits(np.stack([preprocess(p, 64, config.preprocessing) for p in files[:3]])),
            atol=1e-4,
        )
        refused = r"takes a uint8 batch \[1..3, 64, 64, 3\] of resized pixels \(input format uint8\)"
        with pytest.raises(ConfigError, match=refused):
            pixels.logits(batch.astype(np.float32))


def test_a_preprocessed_array_is_refused_by_an_artifact_that_takes_pixels(uint8_graph: Path, files: list[Path]) -> None:
    preprocessed = preprocess(files[0], 64, facts_of(uint8_graph).config.preprocessing)
    with Predictor(uint8_graph) as predictor:
        with pytest.raises(BadInputError, match="takes uint8 pixels and normalises them itself"):
            predictor.predict([str(files[1]), preprocessed])
        results = predictor.predict([str(files[1]), preprocessed], skip_bad=True)
    assert isinstance(results[1], FailedItem) and "not a preprocessed array" in results[1].error


def test_the_benchmark_feeds_each_artifact_its_own_input(uint8_graph: Path, fp32_graph: Path) -> None:
    result = benchmark([fp32_graph, uint8_graph], (1, 2), warmup=1, iterations=1, rounds=1)
    timed = sorted((row["batch"], row["images_per_s"] > 0) for row in result["rows"])
    assert timed == [(1, True), (1, True), (2, True), (2, True)]  # both graphs ran, each on its own input


def test_bulk_tags_with_a_uint8_artifact_as_with_the_float_one(
    uint8_graph: Path, fp32_graph: Path, demo_data: Path, tmp_path: Path
) -> None:
    for graph, folder in ((fp32_graph, "floats"), (uint8_graph, "pixels")):
        bulk(graph, tmp_path / folder, images=demo_data / "val", shard_size=10, progress=False)
    floats, pixels = (list(read_records(tmp_path / name)) for name in ("floats", "pixels"))
    assert [r["image"] for r in pixels] == [r["image"] for r in floats] and len(pixels) == 24
    for want, got in zip(floats, pixels, strict=True):
        assert np.abs(np.asarray(got["probabilities"]) - want["probabilities"]).max() <= 2e-6  # rounded to 1e-6
        assert got["labels"] == want["labels"]


def test_ray_workers_decode_into_the_artifacts_input_a_quarter_of_the_bytes(
    uint8_graph: Path, files: list[Path]
) -> None:
    facts = facts_of(uint8_graph).serving()
    batch = {
        "path": np.array([str(files[0]), str(files[0].with_name("missing.jpg"))], dtype=object),
        "position": np.array([0, 1]),
        "shard": np.array([0, 0]),
        "image": np.array(["a", "b"], dtype=object),
    }
    decoded = _decode(batch, facts)
    assert decoded["pixels"].dtype == np.uint8 and decoded["pixels"].shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(decoded["pixels"][0], resized(files[0], 64, facts.preprocessing))
    assert decoded["error"][0] == "" and "not found" in decoded["error"][1]


def test_triton_feeds_the_classifier_uint8_pixels(uint8_graph: Path, tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    repository = write_repository(uint8_graph, tmp_path / "repo", RepositoryOptions(), force=False)
    configs = {}
    for name in ("preprocess", "classifier"):
        configs[name] = text_format.Parse((repository / name / "config.pbtxt").read_text(), pb.ModelConfig())
    (output,) = configs["preprocess"].output
    (feed,) = configs["classifier"].input
    for tensor in (output, feed):
        assert (tensor.data_type, list(tensor.dims)) == (pb.TYPE_UINT8, [64, 64, 3])
    warmups = [w.inputs["images"] for w in configs["classifier"].model_warmup]
    assert warmups and all((w.data_type, list(w.dims)) == (pb.TYPE_UINT8, [64, 64, 3]) for w in warmups)
    assert json.loads(configs["preprocess"].parameters["artifact_facts"].string_value)["input"]["dtype"] == "uint8"
