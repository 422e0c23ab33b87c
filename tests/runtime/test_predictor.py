"""CPU checks of ``runtime.Predictor``: backend choice, results, thresholds, batching, input kinds, bad items,
thread safety, torch-free ONNX serving and refusal of artifacts the toolkit did not make."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import BadInputError, ConfigError, InferenceError, InputFileError
from core.preprocessing import preprocess
from runtime import FailedItem, Prediction, Predictor, predict

REPO = Path(__file__).resolve().parents[2]
# Batch and single-image calls run different kernels' tilings: results agree to float rounding only.
ROUNDING = 1e-6


@pytest.fixture(scope="module")
def val_images(demo_data: Path) -> list[Path]:
    images = sorted((demo_data / "val").glob("*.jpg"))
    assert len(images) >= 20
    return images


@pytest.fixture(scope="module")
def onnx_predictor(fp32_graph: Path) -> Iterator[Predictor]:
    with Predictor(fp32_graph) as predictor:
        yield predictor


@pytest.fixture(scope="module")
def torch_predictor(trained_checkpoint: Path) -> Iterator[Predictor]:
    with Predictor(trained_checkpoint, device="cpu") as predictor:
        yield predictor


@pytest.fixture
def corrupt_jpeg(val_images: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(val_images[0].read_bytes()[:200])
    return path


def _scores(results: list) -> np.ndarray:
    assert all(r.ok for r in results)
    return np.stack([r.scores for r in results])


def _assert_same_results(got: list, expected: list, atol: float = ROUNDING) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert isinstance(a, Prediction) and isinstance(b, Prediction)
        np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=atol)
        assert a.labels == b.labels


# --- backend choice ----------------------------------------------------------------------------------------------


def test_backend_follows_the_suffix(onnx_predictor: Predictor, torch_predictor: Predictor) -> None:
    assert onnx_predictor.backend == "onnxruntime"
    assert onnx_predictor.device == "cpu"
    assert onnx_predictor.batch_size == 8 == onnx_predictor.facts.max_batch
    assert torch_predictor.backend == "torch"
    assert torch_predictor.device == "cpu"
    assert torch_predictor.class_names == onnx_predictor.class_names
    assert len(onnx_predictor.class_names) == 10


def test_a_backend_that_cannot_run_the_file_is_refused(fp32_graph: Path, trained_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="torch backend cannot run"):
        Predictor(fp32_graph, backend="torch")
    with pytest.raises(ConfigError, match="onnxruntime backend cannot run"):
        Predictor(trained_checkpoint, backend="onnxruntime")
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        Predictor(fp32_graph, backend="tflite")
    with pytest.raises(ConfigError, match="fp16 autocast is a torch-backend option"):
        Predictor(fp32_graph, fp16=True)


def test_an_unknown_suffix_is_refused(fp32_graph: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(fp32_graph.read_bytes())
    with pytest.raises(ConfigError, match="cannot tell its backend from the suffix '.bin'"):
        Predictor(renamed)


def test_batch_size_must_fit_the_artifact(fp32_graph: Path) -> None:
    with pytest.raises(ConfigError, match="takes 1 to 8 images"):
        Predictor(fp32_graph, batch_size=9)
    with pytest.raises(ConfigError, match="top_k"):
        Predictor(fp32_graph, top_k=0)
    for bad in ({"batch_size": 2.5}, {"batch_size": "4"}, {"decode_workers": -1}, {"decode_workers": True}):
        (name,) = bad
        with pytest.raises(ConfigError, match=f"{name} must be a whole number of at least 1"):
            Predictor(fp32_graph, **bad)


def test_numpy_scalars_are_valid_options(onnx_predictor: Predictor, fp32_graph: Path, val_images: list[Path]) -> None:
    image = str(val_images[0])
    reference = onnx_predictor.predict(image, threshold=0.3, top_k=3)[0]
    (result,) = onnx_predictor.predict(image, threshold=np.float32(0.3), top_k=np.int64(3))
    assert result.labels == reference.labels and result.top_k == reference.top_k
    with Predictor(fp32_graph, threshold=np.float64(0.3), top_k=np.int32(3), batch_size=np.int64(2)) as predictor:
        assert predictor.predict(image)[0].labels == reference.labels and predictor.batch_size == 2


# --- results -----------------------------------------------------------------------------------------------------


def test_onnx_and_torch_agree(onnx_predictor: Predictor, torch_predictor: Predictor, val_images: list[Path]) -> None:
    images = [str(p) for p in val_images[:6]]
    onnx_results, torch_results = onnx_predictor.predict(images), torch_predictor.predict(images)
    np.testing.assert_allclose(_scores(onnx_results), _scores(torch_results), rtol=0, atol=1e-4)
    # Not all alike: the comparison means something.
    assert np.ptp(_scores(onnx_results), axis=0).max() > 0.01


def test_scores_labels_and_order(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    images = [str(p) for p in val_images[:6]]
    results = onnx_predictor.predict(images)
    names = onnx_predictor.class_names
    logits = onnx_predictor.logits(np.stack([preprocess(p, 64, onnx_predictor.facts.preprocessing) for p in images]))
    assert [r.index for r in results] == list(range(6))
    assert [r.source for r in results] == images
    labelled = 0
    for result, row in zip(results, logits, strict=True):
        assert result.ok and result.top_k is None
        assert result.scores.shape == (len(names),) and result.scores.dtype == np.float32
        # Scores are the sigmoid of the logits, in class_names order.
        np.testing.assert_allclose(result.scores, 1 / (1 + np.exp(-row.astype(np.float64))), rtol=0, atol=1e-6)
        expected = {name for name, p in zip(names, result.scores, strict=True) if p >= 0.5}
        assert set(result.labels) == expected and len(result.labels) == len(expected)
        label_scores = [result.scores[names.index(name)] for name in result.labels]
        assert label_scores == sorted(label_scores, reverse=True)
        labelled += len(result.labels)
    assert labelled > 0


def test_a_threshold_per_call_changes_the_labels(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    image = str(val_images[3])
    default = onnx_predictor.predict(image)[0]
    scores = default.scores
    names = onnx_predictor.class_names
    threshold = float(np.sort(scores)[-4]) - 1e-6  # the four most probable classes
    low = onnx_predictor.predict(image, threshold=threshold)[0]
    top_four = [names[i] for i in np.argsort(-scores)[:4]]
    assert list(low.labels) == top_four
    assert low.labels != default.labels
    np.testing.assert_array_equal(low.scores, scores)
    high = onnx_predictor.predict(image, threshold=0.99)[0]
    assert high.labels == ()
    # The predictor's own thresholds are untouched by a call's.
    assert onnx_predictor.predict(image)[0].labels == default.labels


def test_class_thresholds_from_a_file_and_per_call(
    fp32_graph: Path, onnx_predictor: Predictor, val_images: list[Path], tmp_path: Path
) -> None:
    image = str(val_images[3])
    base = onnx_predictor.predict(image)[0]
    names = onnx_predictor.class_names
    order = [names[i] for i in np.argsort(-base.scores)]
    top, second = order[0], order[1]
    assert top in base.labels and second not in base.labels
    overrides = {top: 0.999, second: 0.01}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(overrides))
    with Predictor(fp32_graph, class_thresholds=path) as predictor:
        from_file = predictor.predict(image)[0]
        assert predictor.thresholds[names.index(top)] == pytest.approx(0.999)
        assert predictor.thresholds[names.index(second)] == pytest.approx(0.01)
    expected = tuple(n for n in base.labels if n != top)
    expected = tuple(sorted({*expected, second}, key=lambda n: -base.scores[names.index(n)]))
    assert from_file.labels == expected
    per_call = onnx_predictor.predict(image, threshold=overrides)[0]
    assert per_call.labels == expected
    # Per-call overrides sit on top of the predictor's thresholds, including its default threshold.
    with Predictor(fp32_graph, threshold=0.99) as strict:
        assert strict.predict(image)[0].labels == ()
        assert strict.predict(image, threshold={second: 0.01})[0].labels == (second,)


@pytest.mark.parametrize(
    "threshold", [{"no-such-class": 0.5}, {"star": 1.0}, {"star": 0.0}, 1.5, 0.0, -0.1, float("nan"), True]
)
def test_bad_thresholds_are_refused(onnx_predictor: Predictor, fp32_graph: Path, val_images: list[Path], threshold):
    with pytest.raises(ConfigError, match="no-such-class|threshold"):
        onnx_predictor.predict(str(val_images[0]), threshold=threshold)
    with pytest.raises(ConfigError, match="no-such-class|threshold"):
        if isinstance(threshold, dict):
            Predictor(fp32_graph, class_thresholds=threshold)
        else:
            Predictor(fp32_graph, threshold=threshold)


def test_a_bad_thresholds_file_is_refused(fp32_graph: Path, tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text('["star", 0.4]')
    with pytest.raises(InputFileError, match="expected a JSON object"):
        Predictor(fp32_graph, class_thresholds=path)
    with pytest.raises(InputFileError, match="not found"):
        Predictor(fp32_graph, class_thresholds=tmp_path / "missing.json")


def test_top_k(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    results = onnx_predictor.predict([str(p) for p in val_images[:3]], top_k=3)
    names = onnx_predictor.class_names
    for result in results:
        assert len(result.top_k) == 3
        probabilities = [p for _, p in result.top_k]
        assert probabilities == sorted(probabilities, reverse=True)
        assert [n for n, _ in result.top_k] == [names[i] for i in np.argsort(-result.scores)[:3]]
        for name, p in result.top_k:
            assert p == pytest.approx(float(result.scores[names.index(name)]))
        assert min(probabilities) >= np.sort(result.scores)[-3]
    assert onnx_predictor.predict(str(val_images[0]))[0].top_k is None
    with pytest.raises(ConfigError, match="top_k"):
        onnx_predictor.predict(str(val_images[0]), top_k=0)


# --- batching ----------------------------------------------------------------------------------------------------


def test_a_large_request_is_split_into_batches_in_order(
    onnx_predictor: Predictor, val_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [str(p) for p in val_images[:20]]
    alone = [onnx_predictor.predict(image)[0] for image in images]
    batches: list[int] = []
    infer = onnx_predictor._runner.infer

    def counting(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batches.append(len(feed["images"]))
        return infer(feed)

    monkeypatch.setattr(onnx_predictor._runner, "infer", counting)
    results = onnx_predictor.predict(images)
    assert batches == [8, 8, 4]
    assert [r.index for r in results] == list(range(20))
    assert [r.source for r in results] == images
    _assert_same_results(results, alone)


def test_a_smaller_batch_size_is_honoured(
    fp32_graph: Path, val_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Predictor(fp32_graph, batch_size=3) as predictor:
        batches: list[int] = []
        infer = predictor._runner.infer
        monkeypatch.setattr(predictor._runner, "infer", lambda feed: batches.append(len(feed["images"])) or infer(feed))
        assert len(predictor.predict([str(p) for p in val_images[:7]])) == 7
    assert batches == [3, 3, 1]


def test_an_unlimited_artifact_uses_the_default_batch(torch_predictor: Predictor) -> None:
    assert torch_predictor.facts.max_batch is None
    assert torch_predictor.batch_size == 32


# --- input kinds -------------------------------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_scores(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    path = val_images[5]
    with Image.open(path) as opened:
        pil = opened.convert("RGB")
    pixels = np.asarray(pil)
    preprocessed = preprocess(path, onnx_predictor.facts.image_size, onnx_predictor.facts.preprocessing)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and preprocessed.shape == (3, 64, 64)
    kinds = [str(path), path, path.read_bytes(), bytearray(path.read_bytes()), pil, pixels, preprocessed]
    reference = onnx_predictor.predict(str(path))[0]
    for kind in kinds:
        result = onnx_predictor.predict([kind])[0]
        np.testing.assert_allclose(result.scores, reference.scores, rtol=0, atol=ROUNDING, err_msg=type(kind).__name__)
        assert result.labels == reference.labels
    # In one request too, and a different image does differ.
    together = onnx_predictor.predict([*kinds, str(val_images[6])])
    for result in together[:-1]:
        np.testing.assert_allclose(result.scores, reference.scores, rtol=0, atol=ROUNDING)
    assert np.abs(together[-1].scores - reference.scores).max() > 1e-3
    assert together[4].source == "PIL RGB image 64x64"
    assert together[5].source == "uint8 array (64, 64, 3)"


def test_a_single_image_is_a_request_of_one(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    path = val_images[2]
    with Image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    for single in (str(path), path, path.read_bytes(), pixels):
        results = onnx_predictor.predict(single)
        assert len(results) == 1 and results[0].ok
    assert onnx_predictor.predict([]) == []
    with pytest.raises(ConfigError, match="images must be an image or a sequence"):
        onnx_predictor.predict(7)


def test_a_4d_uint8_array_is_several_images(onnx_predictor: Predictor, val_images: list[Path]) -> None:
    paths = val_images[:3]
    stack = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    assert stack.shape == (3, 64, 64, 3)
    results = onnx_predictor.predict(stack)
    _assert_same_results(results, onnx_predictor.predict([str(p) for p in paths]))
    preprocessed = np.stack([preprocess(p, 64, onnx_predictor.facts.preprocessing) for p in paths])
    _assert_same_results(onnx_predictor.predict(preprocessed), results)


# --- bad items ---------------------------------------------------------------------------------------------------


def test_a_corrupt_image_names_its_index_and_file(
    onnx_predictor: Predictor, val_images: list[Path], corrupt_jpeg: Path
) -> None:
    images = [str(p) for p in val_images[:10]]
    images[6] = str(corrupt_jpeg)
    with pytest.raises(BadInputError) as caught:
        onnx_predictor.predict(images)
    assert caught.value.index == 6
    assert caught.value.source == str(corrupt_jpeg)
    assert str(caught.value).startswith(f"item 6 ({corrupt_jpeg}): ")
    assert "not a readable image" in str(caught.value)


@pytest.mark.parametrize("bad_index", [0, 4, 9])
def test_skip_bad_puts_a_failed_item_in_place(
    onnx_predictor: Predictor, val_images: list[Path], tmp_path: Path, bad_index: int
) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(bad_index).integers(0, 256, 500, dtype=np.uint8).tobytes())
    good = [str(p) for p in val_images[:9]]
    images = [*good[:bad_index], str(garbage), *good[bad_index:]]
    results = onnx_predictor.predict(images, skip_bad=True)
    assert len(results) == 10
    assert [r.index for r in results] == list(range(10))
    assert [r.ok for r in results] == [i != bad_index for i in range(10)]
    failed = results[bad_index]
    assert isinstance(failed, FailedItem)
    assert failed.source == str(garbage) and "not a readable image" in failed.error
    assert failed.to_dict() == {"index": bad_index, "source": str(garbage), "error": failed.error}
    rest = [r for r in results if r.ok]
    assert all(isinstance(r, Prediction) for r in rest)
    assert [r.source for r in rest] == good
    _assert_same_results(rest, onnx_predictor.predict(good))


def test_skip_bad_with_every_item_bad(onnx_predictor: Predictor, corrupt_jpeg: Path) -> None:
    results = onnx_predictor.predict([str(corrupt_jpeg), 3], skip_bad=True)
    assert [type(r) for r in results] == [FailedItem, FailedItem]
    assert [r.index for r in results] == [0, 1]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 32, 32), dtype=np.float32), "must be float32 of shape (3, 64, 64)"),
        (np.zeros((3, 64, 64), dtype=np.float64), "must be float32 of shape (3, 64, 64)"),
        (np.full((3, 64, 64), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.full((3, 64, 64), np.inf, dtype=np.float32), "NaN or infinite"),
        (np.zeros((0, 5, 3), dtype=np.uint8), "at least one pixel"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "HWC uint8 with 1, 3 or 4 channels"),
        (5, "expected a path, encoded bytes"),
        (None, "expected a path, encoded bytes"),
        (b"not an image", "not a readable image"),
        ("/no/such/image.jpg", "image not found"),
    ],
)
def test_bad_items_raise_naming_the_index(onnx_predictor: Predictor, val_images: list[Path], bad, message) -> None:
    images = [str(val_images[0]), str(val_images[1]), bad]
    with pytest.raises(BadInputError) as caught:
        onnx_predictor.predict(images)
    assert caught.value.index == 2
    assert str(caught.value).startswith("item 2 (")
    assert message in str(caught.value)
    # The predictor still works after a bad request.
    assert onnx_predictor.predict(images[:2])[1].ok


# --- threads -----------------------------------------------------------------------------------------------------


def _thread_calls(count: int, calls: int) -> list[tuple[int, int, list[int]]]:
    return [(t, c, [(t * 7 + c * 3 + k * 5) % count for k in range(3)]) for t in range(8) for c in range(calls)]


@pytest.mark.parametrize("which", ["onnx", "torch"])
def test_threads_share_a_predictor(which: str, request: pytest.FixtureRequest, val_images: list[Path]) -> None:
    predictor: Predictor = request.getfixturevalue(f"{which}_predictor")
    calls = _thread_calls(len(val_images), 25 if which == "onnx" else 3)
    sequential = {(t, c): predictor.predict([str(val_images[i]) for i in chosen]) for t, c, chosen in calls}
    assert len({tuple(chosen) for _, _, chosen in calls}) > 10

    def worker(thread: int) -> dict[tuple[int, int], list]:
        return {
            (t, c): predictor.predict([str(val_images[i]) for i in chosen]) for t, c, chosen in calls if t == thread
        }

    with ThreadPoolExecutor(8) as pool:
        concurrent = {key: value for part in pool.map(worker, range(8)) for key, value in part.items()}
    assert concurrent.keys() == sequential.keys()
    for key, expected in sequential.items():
        got = concurrent[key]
        assert [r.source for r in got] == [r.source for r in expected]
        for a, b in zip(got, expected, strict=True):
            assert np.array_equal(a.scores, b.scores), key
            assert a.labels == b.labels


# --- convenience, lifecycle, broken backends ---------------------------------------------------------------------


def test_one_shot_predict_equals_the_predictor(
    fp32_graph: Path, onnx_predictor: Predictor, val_images: list[Path]
) -> None:
    images = [str(p) for p in val_images[:4]]
    one_shot = predict(images, fp32_graph, threshold=0.45, top_k=2)
    expected = onnx_predictor.predict(images, threshold=0.45, top_k=2)
    assert len(one_shot) == 4
    for a, b in zip(one_shot, expected, strict=True):
        assert np.array_equal(a.scores, b.scores)
        assert a.labels == b.labels and a.top_k == b.top_k and a.source == b.source
    skipped = predict([images[0], 3], fp32_graph, skip_bad=True)
    assert [r.ok for r in skipped] == [True, False]
    with pytest.raises(ConfigError):
        predict(images, fp32_graph, backend="torch")


def test_runtime_predict_is_the_function_and_the_command_a_subcommand(fp32_graph: Path, val_images: list[Path]) -> None:
    code = f"""
import runtime, runtime.commands
from runtime import predict
assert predict is runtime.predict and callable(predict) and type(predict).__name__ == "function"
results = predict([{str(val_images[0])!r}], {str(fp32_graph)!r}, top_k=1)
assert len(results) == 1 and results[0].ok and len(results[0].top_k) == 1, results
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    command = [sys.executable, "-m", "runtime", "predict", str(fp32_graph), str(val_images[0]), "--json"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["results"][0]["source"] == str(val_images[0])


def test_a_closed_predictor_refuses_to_predict(fp32_graph: Path, val_images: list[Path]) -> None:
    predictor = Predictor(fp32_graph)
    assert predictor.predict(str(val_images[0]))[0].ok
    predictor.close()
    predictor.close()  # twice is harmless
    with pytest.raises(ConfigError, match="closed"):
        predictor.predict(str(val_images[0]))
    with pytest.raises(ConfigError, match="closed"):
        predictor.logits(np.zeros((1, 3, 64, 64), dtype=np.float32))
    with Predictor(fp32_graph) as predictor:
        pass
    with pytest.raises(ConfigError, match="closed"):
        predictor.predict([str(val_images[0])])


@pytest.mark.parametrize("broken", ["nan", "inf", "shape", "missing"])
def test_unusable_backend_output_raises_inference_error(
    onnx_predictor: Predictor, val_images: list[Path], monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    classes = len(onnx_predictor.class_names)

    def infer(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(feed["images"])
        logits = np.zeros((batch, classes), dtype=np.float32)
        if broken == "nan":
            logits[-1, 3] = np.nan
        elif broken == "inf":
            logits[0, 0] = np.inf
        elif broken == "shape":
            logits = logits[:, :-1]
        else:
            return {"something_else": logits}
        return {"logits": logits}

    monkeypatch.setattr(onnx_predictor._runner, "infer", infer)
    with pytest.raises(InferenceError, match="NaN or infinite" if broken in ("nan", "inf") else "expected logits"):
        onnx_predictor.predict([str(p) for p in val_images[:2]])
    # skip_bad is about bad images, not a broken backend.
    with pytest.raises(InferenceError):
        onnx_predictor.predict([str(p) for p in val_images[:2]], skip_bad=True)


# --- artifacts the toolkit did not make --------------------------------------------------------------------------


def test_an_onnx_graph_without_serving_facts_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["logits"])],
        "bare",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "foreign.onnx"
    onnx.save(model, path)
    with pytest.raises(InputFileError, match="does not record its serving facts"):
        Predictor(path)


def test_unreadable_artifacts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        Predictor(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a graph" * 10)
    with pytest.raises(InputFileError, match="ONNX Runtime cannot load it"):
        Predictor(junk)


# --- torch stays out of ONNX serving -----------------------------------------------------------------------------


def test_onnx_serving_never_imports_torch(fp32_graph: Path, trained_checkpoint: Path, val_images: list[Path]) -> None:
    code = f"""
import sys
import runtime, runtime.benchmark
from core.errors import MissingDependencyError
from runtime import Predictor
from runtime.commands import main
with Predictor({str(fp32_graph)!r}) as predictor:
    results = predictor.predict([{str(val_images[0])!r}, {str(val_images[1])!r}])
assert predictor.backend == "onnxruntime" and all(r.ok for r in results), results
assert main(["predict", {str(fp32_graph)!r}, {str(val_images[0])!r}]) == 0
assert "torch" not in sys.modules, "torch was imported"
sys.modules["torch"] = None  # from here on, importing torch fails
try:
    Predictor({str(trained_checkpoint)!r})
except MissingDependencyError as exc:
    assert "needs torch" in str(exc)
else:
    raise AssertionError("the torch backend opened without torch")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_checkpoint_takes_any_batch_size(trained_checkpoint: Path) -> None:
    """An eager model records no batch limit: 32 is its default batch, not a ceiling."""
    images = np.random.default_rng(0).standard_normal((40, 3, 64, 64), dtype=np.float32)
    with (
        Predictor(trained_checkpoint, device="cpu") as default,
        Predictor(trained_checkpoint, device="cpu", batch_size=40) as wide,
    ):
        assert (default.batch_size, wide.batch_size) == (32, 40)
        assert wide.logits(images).shape == (40, len(wide.class_names))
        with pytest.raises(ConfigError, match="logits\\(\\) takes a preprocessed float32 batch \\[1..32"):
            default.logits(images)
