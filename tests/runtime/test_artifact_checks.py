"""Serving trusts nothing it did not check: a graph's facts against the graph itself, against their own
digest, and against the manifest beside the graph."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from core.errors import BadInputError, ConfigError, InputFileError, StaleArtifactError
from runtime import Predictor
from tests.helpers import facts_of, relabelled


def test_facts_that_do_not_describe_the_graph_are_refused_when_it_is_opened(fp32_graph: Path, tmp_path: Path) -> None:
    renamed = relabelled(fp32_graph, tmp_path / "renamed.onnx", output_name="probabilities")
    with pytest.raises(InputFileError, match="outputs \\['logits'\\], its facts name 'probabilities'"):
        Predictor(renamed, device="cpu")
    config = dataclasses.replace(facts_of(fp32_graph).config, image_size=96)
    resized = relabelled(fp32_graph, tmp_path / "resized.onnx", config=config)
    with pytest.raises(
        InputFileError, match=r"its input 'images' is tensor\(float\) .*64, 64\]; its facts say .*96, 96"
    ):
        Predictor(resized, device="cpu")


def test_facts_edited_inside_the_graph_are_refused(fp32_graph: Path, tmp_path: Path) -> None:
    names = list(reversed(facts_of(fp32_graph).class_names))  # valid, but not what the graph computes
    edited = relabelled(fp32_graph, tmp_path / "edited.onnx", metadata={"class_names": json.dumps(names)})
    with pytest.raises(InputFileError, match="its facts were edited after they were written"):
        Predictor(edited, device="cpu")


def test_a_graph_is_checked_against_the_manifest_beside_it(fp32_graph: Path, tmp_path: Path) -> None:
    graph = tmp_path / "model.onnx"
    shutil.copy(fp32_graph, graph)
    shutil.copy(fp32_graph.with_name(fp32_graph.name + ".json"), tmp_path / "model.onnx.json")
    with Predictor(graph, device="cpu") as predictor:
        assert predictor.class_names == facts_of(fp32_graph).class_names
    model = onnx.load(str(graph))
    model.doc_string = "changed after export"
    onnx.save(model, str(graph))
    with pytest.raises(StaleArtifactError, match="is not the graph its manifest model.onnx.json describes"):
        Predictor(graph, device="cpu")


def test_logits_takes_only_a_preprocessed_float32_batch(fp32_graph: Path) -> None:
    size = facts_of(fp32_graph).image_size
    with Predictor(fp32_graph, device="cpu") as predictor:
        good = np.zeros((2, 3, size, size), np.float32)
        assert predictor.logits(good).shape == (2, len(predictor.class_names))
        for bad in (good.astype(np.float64), np.zeros((2, 3, size + 1, size + 1), np.float32), good[0], [good]):
            with pytest.raises(ConfigError, match="takes a preprocessed float32 batch"):
                predictor.logits(bad)
        broken = good.copy()
        broken[0, 0, 0, 0] = np.nan
        with pytest.raises(BadInputError, match="holds NaN or infinite values"):
            predictor.logits(broken)
        # Finite but far outside preprocessed pixels: the input is named, not the artifact.
        with pytest.raises(BadInputError, match="holds values from 3e\\+38 to 3e\\+38, and the logits overflowed"):
            predictor.logits(np.full((1, 3, size, size), 3e38, np.float32))


def test_a_missing_plan_is_named_before_the_gpu_is_looked_for(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="plan not found: .*model.plan"):
        Predictor(tmp_path / "model.plan")


def test_close_waits_for_calls_in_flight_and_refuses_later_ones(fp32_graph: Path, demo_data: Path) -> None:
    images = [str(path) for path in sorted((demo_data / "val").iterdir())[:16]]
    predictor = Predictor(fp32_graph, device="cpu", batch_size=2)
    expected = [result.labels for result in predictor.predict(images)]
    started, outcomes = threading.Event(), []

    def serve() -> None:
        for _ in range(5):
            try:
                outcomes.append([result.labels for result in predictor.predict(images)])
            except ConfigError as exc:  # only once close() has begun: a typed refusal
                outcomes.append(str(exc))
            started.set()  # close() comes while the others are mid-call

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for thread in threads:
        thread.start()
    started.wait(timeout=60)
    predictor.close()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 15
    assert all(outcome == expected or outcome == "the predictor is closed" for outcome in outcomes)
    assert outcomes.count(expected) >= 3
    with pytest.raises(ConfigError, match="the predictor is closed"):
        predictor.predict(images[:1])


def test_a_preprocessed_item_out_of_range_fails_alone_with_skip_bad(fp32_graph: Path) -> None:
    size = facts_of(fp32_graph).image_size
    good = np.zeros((3, size, size), np.float32)
    with Predictor(fp32_graph, device="cpu") as predictor:
        results = predictor.predict([good, np.full((3, size, size), 3e38, np.float32), good], skip_bad=True)
    assert [type(result).__name__ for result in results] == ["Prediction", "FailedItem", "Prediction"]
    assert results[1].index == 1 and "outside what preprocessing gives" in results[1].error
