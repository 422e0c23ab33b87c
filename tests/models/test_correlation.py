from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import (
    AnnotationError,
    ClassNamesMismatchError,
    ConfigError,
    CorrelationError,
    InputFileError,
    UnsafePickleError,
)
from models.correlation import Correlation, CorrelationMask, main
from models.correlation_sources import read_correlation

# Categories whose alphabetical order (apple, mango, zebra) differs from their id order (zebra, mango, apple).
_CATEGORIES = [{"id": 1, "name": "zebra"}, {"id": 3, "name": "apple"}, {"id": 2, "name": "mango"}]
# image 1: zebra+apple, 2: apple, 3: apple+mango+zebra (zebra twice), 4: mango, 5: nothing.
_ANNOTATIONS = [(1, 1), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1), (3, 1), (4, 2)]


def _write_coco(path: Path, annotations=_ANNOTATIONS, categories=_CATEGORIES) -> Path:
    data = {
        "images": [{"id": i, "file_name": f"{i:03d}.jpg", "width": 8, "height": 8} for i in range(1, 6)],
        "annotations": [
            {"id": k, "image_id": image, "category_id": cat, "bbox": [0, 0, 1, 1]}
            for k, (image, cat) in enumerate(annotations)
        ],
        "categories": categories,
    }
    path.write_text(json.dumps(data))
    return path


def _pickle(path: Path, obj) -> Path:
    with path.open("wb") as handle:
        pickle.dump(obj, handle)
    return path


def test_coco_json_counts_by_hand_in_alphabetical_order(tmp_path: Path) -> None:
    correlation = read_correlation(_write_coco(tmp_path / "a.json"), class_order="alphabetical")
    assert correlation.class_names == ("apple", "mango", "zebra")
    # counts: apple 3 images, mango 2, zebra 2; pairs: apple&zebra 2, apple&mango 1, mango&zebra 1.
    expected = np.array([[1, 1 / 3, 2 / 3], [1 / 2, 1, 1 / 2], [2 / 2, 1 / 2, 1]])
    np.testing.assert_allclose(correlation.probability, expected, rtol=0, atol=1e-15)
    assert correlation.source == "coco-json"


def test_coco_json_counts_by_hand_in_category_id_order(tmp_path: Path) -> None:
    correlation = read_correlation(_write_coco(tmp_path / "a.json"), class_order="id")
    assert correlation.class_names == ("zebra", "mango", "apple")
    expected = np.array([[1, 1 / 2, 1], [1 / 2, 1, 1 / 2], [2 / 3, 1 / 3, 1]])
    np.testing.assert_allclose(correlation.probability, expected, rtol=0, atol=1e-15)


def test_coco_json_needs_an_explicit_class_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="class order"):
        read_correlation(_write_coco(tmp_path / "a.json"))


def test_mask_threshold_is_strict_and_self_loops_follow_the_mode() -> None:
    p = np.array([[0.0, 0.5, 0.51], [0.1, 0.0, 0.0], [0.0, 0.9, 0.0]])
    correlation = Correlation(p, ("a", "b", "c"), "test", "0" * 64)
    seed = correlation.mask(0.5, "seed")
    np.testing.assert_array_equal(seed, [[False, False, True], [False, False, False], [False, True, False]])
    np.testing.assert_array_equal(correlation.mask(0.5, "softmax"), seed | np.eye(3, dtype=bool))
    assert correlation.mask(0.1, "seed").sum() == 3  # 0.1 itself is not > 0.1


def test_mlgcn_coco_adj_keeps_565_edges_and_isolates_bear_and_zebra(shared_data: Path) -> None:
    correlation = read_correlation(shared_data / "coco_adj.pkl", names=shared_data / "coco_names_alphabetical.txt")
    assert len(correlation.class_names) == 80 and correlation.source == "mlgcn-adj"
    assert int(correlation.mask(0.1, "seed").sum()) == 565  # diagonal 0: no self-loops in seed mode
    softmax = CorrelationMask(correlation, 0.1, "softmax")
    assert softmax.edges == 565 and int(softmax.mask.sum()) == 565 + 80
    assert set(softmax.isolated) == {"bear", "zebra"}
    assert CorrelationMask(correlation, 0.4, "softmax").edges == 111
    assert correlation.class_names.index("person") == 49  # the alphabetical order, as the data README says


def test_seed_pp_pickle_with_pickled_names(tmp_path: Path) -> None:
    p = np.array([[1.0, 0.05, 0.3], [0.2, 1.0, 0.0], [0.7, 0.11, 1.0]], dtype=np.float32)
    source = _pickle(tmp_path / "coco_correlations.pkl", {"pp": p})
    names = _pickle(tmp_path / "coco_names.pkl", ["person", "bicycle", "car"])
    correlation = read_correlation(source, names=names)
    assert correlation.source == "seed-pp"
    assert correlation.class_names == ("person", "bicycle", "car")
    np.testing.assert_array_equal(correlation.probability, p.astype(np.float64))
    np.testing.assert_array_equal(correlation.mask(0.1, "seed"), p > 0.1)


def test_mask_file_round_trips_and_can_be_rethresholded(tmp_path: Path, shared_data: Path) -> None:
    correlation = read_correlation(shared_data / "voc_adj.pkl", names=_voc_names(tmp_path))
    saved = CorrelationMask(correlation, 0.1, "softmax").save(tmp_path / "voc.npz")
    loaded = CorrelationMask.load(saved)
    assert loaded.class_names == correlation.class_names
    assert (loaded.threshold, loaded.mode) == (0.1, "softmax")
    assert loaded.correlation.source_sha256 == correlation.source_sha256
    np.testing.assert_array_equal(loaded.mask, correlation.mask(0.1, "softmax"))
    assert read_correlation(saved).source == "mlgcn-adj"


def test_a_tampered_mask_file_is_refused(tmp_path: Path) -> None:
    correlation = Correlation(np.array([[1.0, 0.5], [0.0, 1.0]]), ("a", "b"), "test", "0" * 64)
    path = CorrelationMask(correlation, 0.1, "seed").save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["mask"] = ~arrays["mask"]
    np.savez(path, **arrays)
    with pytest.raises(CorrelationError, match="does not match its statistics"):
        CorrelationMask.load(path)
    (tmp_path / "junk.npz").write_bytes(b"PK not really")
    with pytest.raises(CorrelationError, match="not a mask file"):
        CorrelationMask.load(tmp_path / "junk.npz")
    meta = json.loads(str(arrays["meta"]))
    for broken_meta in ({k: v for k, v in meta.items() if k != "source"}, {**meta, "mode": "hard"}):
        np.savez(tmp_path / "hand.npz", **{**arrays, "meta": np.array(json.dumps(broken_meta))})
        with pytest.raises(CorrelationError, match="hand.npz: malformed mask file"):
            CorrelationMask.load(tmp_path / "hand.npz")
    np.savez(tmp_path / "text.npz", **{**arrays, "probability": np.array([["a", "b"], ["c", "d"]])})
    with pytest.raises(CorrelationError, match="text.npz: malformed mask file"):
        CorrelationMask.load(tmp_path / "text.npz")


def test_aligning_to_another_order_permutes_and_another_set_is_refused(tmp_path: Path) -> None:
    mask = CorrelationMask(read_correlation(_write_coco(tmp_path / "a.json"), class_order="alphabetical"), 0.4, "seed")
    by_id = mask.aligned_to(("zebra", "mango", "apple"))
    original = dict(zip(mask.class_names, range(3), strict=True))
    for i, row_name in enumerate(by_id.class_names):
        for j, col_name in enumerate(by_id.class_names):
            a, b = original[row_name], original[col_name]
            assert by_id.correlation.probability[i, j] == mask.correlation.probability[a, b]
            assert by_id.mask[i, j] == mask.mask[a, b]
    with pytest.raises(ClassNamesMismatchError, match="missing \\['kiwi'\\]"):
        mask.aligned_to(("zebra", "mango", "kiwi"))


def test_statistics_of_the_wrong_size_are_refused(tmp_path: Path) -> None:
    source = _pickle(tmp_path / "c.pkl", {"pp": np.eye(3)})
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\n")
    with pytest.raises(CorrelationError, match="c.pkl: .*3x3 but there are 4 class names"):
        read_correlation(source, names=names)
    bad_adj = _pickle(tmp_path / "adj.pkl", {"adj": np.ones((4, 4), dtype=np.int64), "nums": np.ones(3)})
    with pytest.raises(CorrelationError, match="do not fit together"):
        read_correlation(bad_adj, names=names)
    with pytest.raises(CorrelationError, match="expected 'pp'"):
        read_correlation(_pickle(tmp_path / "other.pkl", {"weights": np.eye(4)}), names=names)


def test_a_pickle_naming_any_other_global_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = _pickle(tmp_path / "evil.pkl", {"pp": Payload()})
    names = tmp_path / "names.txt"
    names.write_text("a\n")
    with pytest.raises(UnsafePickleError, match="refused to load global (posix|os).system"):
        read_correlation(evil, names=names)
    assert not marker.exists()
    evil_names = _pickle(tmp_path / "names.pkl", [Payload()])
    with pytest.raises(UnsafePickleError):
        read_correlation(_pickle(tmp_path / "ok.pkl", {"pp": np.eye(1)}), names=evil_names)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.write_text("{not json"), "not valid JSON"),
        (lambda p: _write_coco(p, annotations=[(1, 99)]), "category id 99"),
        (lambda p: _write_coco(p, annotations=[(42, 1)]), "unknown image id 42"),
        (lambda p: p.write_text(json.dumps({"images": []})), "missing the COCO list 'categories'"),
        (lambda p: _write_coco(p, annotations=[(1.7, 1)]), "integer image_id"),
        (lambda p: _write_coco(p, categories=[{"id": "1", "name": "zebra"}]), "integer 'id'"),
        (lambda p: _write_coco(p, categories=[{"id": 1}]), "integer 'id' and a 'name'"),
        (lambda p: _write_coco(p, annotations=[]), "no image has an annotation"),
        (
            lambda p: p.write_text(
                json.dumps(
                    {
                        "images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}],
                        "annotations": [],
                        "categories": _CATEGORIES,
                    }
                )
            ),
            "repeated image ids",
        ),
    ],
)
def test_malformed_coco_files_get_errors_naming_the_file(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "instances_bad.json"
    mutate(path)
    with pytest.raises(AnnotationError, match=message) as raised:
        read_correlation(path, class_order="id")
    assert "instances_bad.json" in str(raised.value)


def test_bad_names_files_and_truncated_mask_files_get_typed_errors(tmp_path: Path) -> None:
    source = _pickle(tmp_path / "c.pkl", {"pp": np.eye(2)})
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\nth\xe9\n".encode("latin-1"))
    with pytest.raises(InputFileError, match="latin.txt: not UTF-8"):
        read_correlation(source, names=latin)
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("cat\ncat\n")
    with pytest.raises(ConfigError, match="repeated.txt: repeated class names \\['cat'\\]"):
        read_correlation(source, names=repeated)
    correlation = Correlation(np.eye(2), ("a", "b"), "test", "0" * 64)
    path = CorrelationMask(correlation).save(tmp_path / "m.npz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorrelationError, match="m.npz: not a mask file"):
        CorrelationMask.load(path)


def test_cli_keeps_a_mask_files_threshold_and_mode_unless_told(tmp_path: Path) -> None:
    coco = _write_coco(tmp_path / "instances.json")
    first, second, third = (tmp_path / f"{k}.npz" for k in ("first", "second", "third"))
    assert main([str(coco), "--class-order", "id", "--threshold", "0.6", "--mode", "seed", "--output", str(first)]) == 0
    assert main([str(first), "--output", str(second)]) == 0
    kept = CorrelationMask.load(second)
    assert (kept.threshold, kept.mode) == (0.6, "seed")
    assert main([str(first), "--threshold", "0.2", "--output", str(third)]) == 0
    assert (CorrelationMask.load(third).threshold, CorrelationMask.load(third).mode) == (0.2, "seed")


def test_flags_that_do_not_apply_to_a_source_are_refused(tmp_path: Path) -> None:
    coco = _write_coco(tmp_path / "a.json")
    names = tmp_path / "names.txt"
    names.write_text("a\n")
    with pytest.raises(ConfigError, match="--names does not apply"):
        read_correlation(coco, names=names, class_order="id")
    with pytest.raises(ConfigError, match="--class-order does not apply"):
        read_correlation(_pickle(tmp_path / "c.pkl", {"pp": np.eye(1)}), names=names, class_order="id")
    with pytest.raises(ConfigError, match="carries no class names"):
        read_correlation(tmp_path / "c.pkl")


def test_cli_writes_the_mask_and_the_heatmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = _write_coco(tmp_path / "instances.json")
    output, plot = tmp_path / "mask.npz", tmp_path / "mask.png"
    argv = [str(coco), "--class-order", "id", "--threshold", "0.4", "--output", str(output), "--plot", str(plot)]
    assert main(argv) == 0
    # Off-diagonal P(j|i) above 0.4 (see the by-hand tests): 2/3, 1/2, 1/2, 1, 1/2; 1/3 is not.
    assert "3 classes from coco-json, P(j|i) > 0.4: 5 edges, 3 self-loops" in capsys.readouterr().out
    assert CorrelationMask.load(output).class_names == ("zebra", "mango", "apple")
    with Image.open(plot) as image:
        assert image.format == "PNG" and min(image.size) > 300
    assert main(argv) == 1  # an existing output needs --force
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.json", "mask.npz", "mask.png"]
    with pytest.raises(SystemExit) as usage:
        main([str(coco), "--class-order", "id"])
    assert usage.value.code == 2


def _voc_names(tmp_path: Path) -> Path:
    path = tmp_path / "voc_names.txt"
    path.write_text(
        "\n".join(
            "aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
            "person pottedplant sheep sofa train tvmonitor".split()
        )
    )
    return path
