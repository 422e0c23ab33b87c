"""A property-based fuzz suite over what users hand us: every input gives a correct result or a typed
error (``core.errors.DeployError``), never another exception. Examples are derandomized and bounded,
so a CI run is reproducible and quick; ``FUZZ_EXAMPLES`` raises the bound for a longer search."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from core.errors import BadInputError, DeployError
from core.facts import ArtifactFacts
from core.preprocessing import load_rgb
from models.coco import read_coco_labels
from models.correlation_sources import read_mask_source
from runtime import FailedItem, Prediction, Predictor
from tests.helpers import facts_of

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "I", "I;16", "I;16B", "F", "HSV", "LAB"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def predictor(fp32_graph: Path):
    with Predictor(fp32_graph, device="cpu", batch_size=4, decode_workers=2) as served:
        yield served


def _encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


@st.composite
def images(draw) -> object:
    """Anything a user might pass as an image: PIL images of every mode and size, arrays of any dtype
    and shape, encoded files cut anywhere, random bytes."""
    kind = draw(st.sampled_from(["pil", "array", "encoded", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    if kind == "array":
        dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64, np.bool_]))
        shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12))
        return draw(hnp.arrays(dtype, shape))
    size = (draw(st.integers(0, 40)), draw(st.integers(0, 40)))
    image = Image.new(draw(st.sampled_from(MODES)), size)
    if size[0] and size[1] and draw(st.booleans()):  # pixels, not a blank image
        noise = np.frombuffer(draw(st.binary(min_size=size[0] * size[1] * 3, max_size=size[0] * size[1] * 3)), np.uint8)
        image = Image.fromarray(noise.reshape(size[1], size[0], 3)).convert(image.mode)
    if kind == "pil":
        return image
    if size[0] == 0 or size[1] == 0 or image.mode not in ("L", "RGB", "RGBA", "P", "1"):
        return image
    data = _encoded(image, draw(st.sampled_from(["PNG", "BMP", "GIF"])))
    return data[: draw(st.integers(0, len(data)))]


@FUZZ
@given(pixels=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24)))
def test_16_bit_pixels_decode_to_their_8_bit_values(pixels: np.ndarray) -> None:
    expected = (pixels.astype(np.uint32) * 255 + 32767) // 65535
    for source in (Image.fromarray(pixels), _encoded(Image.fromarray(pixels), "PNG")):
        decoded = np.asarray(load_rgb(source))
        np.testing.assert_array_equal(decoded[..., 0], expected)
        np.testing.assert_array_equal(decoded[..., 2], expected)


@FUZZ
@given(item=images())
def test_any_image_decodes_or_is_a_typed_error(item) -> None:
    try:
        decoded = load_rgb(item)
    except DeployError:
        return
    assert decoded.mode == "RGB" and decoded.width > 0 and decoded.height > 0


@FUZZ
@given(items=st.lists(images(), min_size=1, max_size=5))
def test_a_request_of_anything_gives_results_or_typed_failures(predictor: Predictor, items: list) -> None:
    try:
        results = predictor.predict(items, skip_bad=True)
    except DeployError:
        return  # a request the predictor refuses as a whole (e.g. not a sequence of images)
    assert len(results) == len(items)
    for index, result in enumerate(results):
        assert isinstance(result, Prediction | FailedItem) and result.index == index
        if isinstance(result, Prediction):
            assert np.all((result.scores >= 0) & (result.scores <= 1))


OPTION_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
    | st.sampled_from([np.float32(0.3), np.int64(3), np.float64(float("nan")), np.int8(-1)])
)


@FUZZ
@given(threshold=OPTION_VALUES, top_k=OPTION_VALUES, batch_size=OPTION_VALUES, workers=OPTION_VALUES)
def test_any_option_values_work_or_are_typed_errors(fp32_graph: Path, threshold, top_k, batch_size, workers) -> None:
    options = {"threshold": threshold, "top_k": top_k, "batch_size": batch_size, "decode_workers": workers}
    try:
        with Predictor(fp32_graph, device="cpu", **options) as opened:
            (result,) = opened.predict(np.zeros((8, 8, 3), np.uint8))
    except DeployError:
        return
    assert isinstance(result, Prediction)


@FUZZ
@given(data=st.data())
def test_any_edit_of_the_facts_reads_or_is_a_typed_error(fp32_graph: Path, data) -> None:
    facts = facts_of(fp32_graph).to_dict()
    key = data.draw(st.sampled_from(sorted(facts)))
    edited = {**facts, key: data.draw(JSON_VALUES)}
    if data.draw(st.booleans()):
        del edited[key]
    try:
        read = ArtifactFacts.from_dict(edited, "fuzzed.json")
    except DeployError:
        return
    assert read == ArtifactFacts.from_dict(facts, "fuzzed.json")  # only a no-op edit reads


@FUZZ
@given(document=JSON_VALUES, categories=st.lists(JSON_VALUES, max_size=4))
def test_any_coco_file_reads_or_is_a_typed_error(tmp_path_factory, document, categories) -> None:
    path = tmp_path_factory.mktemp("coco") / "instances.json"
    if isinstance(document, dict):
        document = {"images": [], "annotations": [], **document, "categories": categories}
    path.write_text(json.dumps(document))
    try:
        labels = read_coco_labels(path, "alphabetical")
    except DeployError:
        return
    assert len(labels.class_names) == len(set(labels.class_names))


@FUZZ
@given(content=st.binary(max_size=512), member=st.sampled_from(["meta", "probability", "mask", "class_names"]))
def test_any_mask_file_reads_or_is_a_typed_error(tmp_path_factory, content: bytes, member: str) -> None:
    folder = tmp_path_factory.mktemp("mask")
    raw, archive = folder / "raw.npz", folder / "archive.npz"
    raw.write_bytes(content)
    with zipfile.ZipFile(archive, "w") as handle:  # a well-formed archive with one garbled member
        handle.writestr(f"{member}.npy", content)
    for path in (raw, archive):
        try:
            read_mask_source(path)
        except DeployError:
            continue


def test_a_bad_item_in_a_fuzzed_request_names_its_index(predictor: Predictor) -> None:
    with pytest.raises(BadInputError, match="item 1 "):
        predictor.predict([np.zeros((8, 8, 3), np.uint8), b"not an image"])
