"""One ONNX Runtime session builder: the sessions the parity gates (FP32, FP16, INT8) run and the
session that serves a graph are built alike, so "passed its gate" means "what is served passed"."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

from calibration.quantize import quantize_int8
from export.check_parity import main as check_parity_main
from export.to_onnx import export_onnx
from export.typed_graph import typed_graph
from runtime import Predictor
from runtime.onnxruntime_session import session_options
from tests.helpers import FIXTURE_INT8_LIMITS

_CONFIG_ENTRIES = ("session.intra_op.allow_spinning",)


def _read(options: onnxruntime.SessionOptions) -> dict:
    return {
        "graph_optimization_level": options.graph_optimization_level,
        "execution_mode": options.execution_mode,
        "intra_op_num_threads": options.intra_op_num_threads,
        "inter_op_num_threads": options.inter_op_num_threads,
        "log_severity_level": options.log_severity_level,
        **{entry: _config_entry(options, entry) for entry in _CONFIG_ENTRIES},
    }


def _config_entry(options: onnxruntime.SessionOptions, entry: str) -> str | None:
    try:
        return options.get_session_config_entry(entry)
    except RuntimeError:  # not set
        return None


def _options(session: onnxruntime.InferenceSession) -> dict:
    """What a session was opened with, read back from the session itself."""
    return {**_read(session.get_session_options()), "providers": tuple(session.get_providers())}


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Every ONNX Runtime session opened in the test: (graph file name, its options)."""
    sessions: list[tuple[str, dict]] = []

    class Recorded(onnxruntime.InferenceSession):
        def __init__(self, path, *args, **kwargs) -> None:
            super().__init__(path, *args, **kwargs)
            sessions.append((Path(path).name, _options(self)))

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recorded)
    return sessions


def test_the_gates_and_the_runner_read_back_the_same_session_options(
    trained_checkpoint: Path, demo_data: Path, tmp_path: Path, opened: list[tuple[str, dict]]
) -> None:
    graph = export_onnx(trained_checkpoint, tmp_path / "model.onnx", max_batch=8).path  # the FP32 gate
    typed_graph(graph, "fp16", tmp_path / "model.plan")  # the FP16 gate
    quantize_int8(  # the INT8 gate (ONNX Runtime's calibrator opens sessions of its own on other files)
        graph,
        tmp_path / "model.int8.onnx",
        demo_data / "train",
        annotations=demo_data / "instances_train.json",
        tolerance_overrides=FIXTURE_INT8_LIMITS,
    )
    ours = {"model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    gates = [(name, options) for name, options in opened if name in ours]
    assert {name for name, _ in gates} == ours
    opened.clear()
    with Predictor(graph, device="cpu") as predictor:  # what serves
        assert predictor.predict(str(sorted((demo_data / "val").iterdir())[0]))[0].ok
    assert check_parity_main(["--checkpoint", str(trained_checkpoint), "--candidate", str(graph)]) == 0
    served = list(opened)
    assert len(served) == 2
    expected = {**_read(session_options()), "providers": ("CPUExecutionProvider",)}  # the one builder's
    assert expected["session.intra_op.allow_spinning"] == "0"
    for name, options in gates + served:
        assert options == expected, name
