from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError
from models.metrics import average_precision, compute_metrics, label_frequency_baseline, precision_recall_f1


def test_average_precision_without_ties_by_hand() -> None:
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    targets = np.array([[1], [0], [1], [0], [0]])
    # Positives at ranks 1 and 3: precision 1/1 and 2/3.
    np.testing.assert_allclose(average_precision(scores, targets), [(1 + 2 / 3) / 2])


def test_tied_scores_form_one_group_whatever_their_order() -> None:
    scores = np.array([[0.9], [0.5], [0.5], [0.1]])
    targets = np.array([[0], [1], [0], [1]])
    # Rank 1 is a miss; ranks 2-3 are tied and hold one hit: precision 1/3 at the group's end;
    # the last hit is at rank 4: precision 2/4.
    expected = (1 / 3 + 2 / 4) / 2
    np.testing.assert_allclose(average_precision(scores, targets), [expected])
    swapped = [0, 2, 1, 3]
    np.testing.assert_allclose(average_precision(scores[swapped], targets[swapped]), [expected])


def test_a_class_without_positives_has_no_ap_and_is_reported() -> None:
    scores = np.array([[0.9, 0.2], [0.1, 0.8], [0.5, 0.3]])
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    ap = average_precision(scores, targets)
    assert ap[0] == 1.0 and np.isnan(ap[1])
    report = compute_metrics(scores, targets, ["cat", "dog"])
    assert report.mAP == 1.0
    assert report.excluded_classes == ("dog",)
    # At 0.5: cat is predicted on its two positives (0.9 and 0.5); dog, absent, on image 1 (0.8).
    # The false positive on the absent class counts against OP, not against CP (cat only).
    assert report.at_threshold["OP"] == pytest.approx(2 / 3)
    assert report.at_threshold["CP"] == 1.0 and report.at_threshold["OR"] == 1.0
    assert report.per_class_ap == {"cat": 1.0, "dog": None}
    assert "no positives (excluded): dog" in report.table()


def test_all_correct_predictions_score_one_everywhere() -> None:
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    report = compute_metrics(targets.astype(float), targets, ["a", "b", "c"])
    assert report.mAP == 1.0
    assert report.at_threshold == {"CP": 1.0, "CR": 1.0, "CF1": 1.0, "OP": 1.0, "OR": 1.0, "OF1": 1.0}


def test_all_wrong_predictions_by_hand() -> None:
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    report = compute_metrics(1.0 - targets, targets, ["a", "b"])
    # Each class: the 2 positives share score 0 behind the 2 negatives (score 1), so both are read
    # at the tied group's end, rank 4: precision 2/4 each.
    np.testing.assert_allclose(report.mAP, 2 / 4)
    assert all(value == 0.0 for value in report.at_threshold.values())


def test_thresholded_and_top_k_metrics_by_hand() -> None:
    probabilities = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.8], [0.55, 0.1, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0]])
    # At 0.5: class 0 predicted {0, 2} of true {0, 2}; class 1 {0, 1} of {1, 2}; class 2 {1} of {1}.
    metrics = precision_recall_f1(probabilities, targets, 0.5)
    np.testing.assert_allclose(
        [metrics[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")],
        [(1 + 0.5 + 1) / 3, (1 + 0.5 + 1) / 3, (1 + 0.5 + 1) / 3, 4 / 5, 4 / 5, 4 / 5],
    )
    # Top-1: image 0 → class 0, image 1 → class 2, image 2 → class 0; class 1 is never predicted.
    top1 = precision_recall_f1(probabilities, targets, 0.5, top_k=1)
    np.testing.assert_allclose(
        [top1[k] for k in ("CP", "CR", "OP", "OR", "OF1")], [2 / 3, 2 / 3, 3 / 3, 3 / 5, 2 * 0.6 / 1.6]
    )
    # The threshold still applies inside the top-k: at 0.6 image 2's best class (0.55) is not predicted.
    assert precision_recall_f1(probabilities, targets, 0.6, top_k=1)["OR"] == 2 / 5


def test_report_is_json_ready_and_uses_top3() -> None:
    rng = np.random.default_rng(0)
    targets = rng.random((40, 6)) < 0.4
    probabilities = np.clip(targets * 0.6 + rng.random((40, 6)) * 0.5, 0, 1)
    report = compute_metrics(probabilities, targets, [f"c{i}" for i in range(6)])
    assert report.top3 == precision_recall_f1(probabilities, targets, 0.5, top_k=3)
    assert json.loads(json.dumps(report.to_dict()))["mAP"] == pytest.approx(report.mAP)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="equal 2-D shapes"):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        average_precision(np.array([[np.nan]]), np.array([[1]]))
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        compute_metrics(np.zeros((2, 2)), np.zeros((2, 2)), ["a", "b"])
    with pytest.raises(ConfigError, match="0/1"):
        average_precision(np.zeros((2, 2)), np.array([[1, -1], [0, 1]]))
    with pytest.raises(ConfigError, match="sigmoid"):
        precision_recall_f1(np.array([[2.5, -1.0]]), np.array([[1, 0]]))
    with pytest.raises(ConfigError, match="threshold"):
        precision_recall_f1(np.array([[0.5]]), np.array([[1]]), threshold=7.0)
    with pytest.raises(ConfigError, match="top_k"):
        precision_recall_f1(np.array([[0.5]]), np.array([[1]]), top_k=0)
    with pytest.raises(ConfigError, match="3 class names for 2"):
        compute_metrics(np.zeros((2, 2)), np.eye(2), ["a", "b", "c"])


def test_label_frequency_baseline_is_the_mean_prevalence() -> None:
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    # Prevalences 2/4 and 1/4; the third class has no positive and is excluded.
    assert label_frequency_baseline(targets) == pytest.approx((0.5 + 0.25) / 2)
    constant = np.tile([0.3, 0.9, 0.5], (4, 1))  # any constant score per class scores the same
    assert compute_metrics(constant, targets, ["a", "b", "c"]).mAP == pytest.approx(label_frequency_baseline(targets))
    assert compute_metrics(constant, targets, ["a", "b", "c"]).baseline_mAP == pytest.approx(0.375)
