"""The engine build: typed graphs made and gated anywhere, plain-data plan and timing-cache rules, and a
real TensorRT build where TensorRT and a GPU exist (skipped elsewhere)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx
import pytest

from core.errors import ConfigError, InputFileError, MissingDependencyError, StaleArtifactError
from core.files import sha256_file
from core.manifest import manifest_path, read_manifest, write_manifest
from export import build_engine as build_cli
from export.build_engine import batch_profile, build_engine, load_timing_cache, save_timing_cache
from export.metadata import graph_precision
from export.typed_graph import typed_graph, typed_graph_path
from runtime import tensorrt_env
from runtime.plan_rules import check_plan, timing_cache_problem
from runtime.tensorrt_env import Machine, parse_gpu_query, select_gpu
from tests.helpers import H100, facts_of, fake_plan


def test_typed_graph_names_follow_the_plan() -> None:
    assert typed_graph_path(Path("d/model.plan"), "fp16") == Path("d/model.fp16.onnx")
    assert typed_graph_path(Path("d/model.int8.plan"), "int8") == Path("d/model.int8.onnx")


def test_without_a_gpu_the_fp16_graph_is_written_gated_and_the_build_refused(
    fp32_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(tensorrt_env, "visible_gpu", lambda: None)
    plan = tmp_path / "model.plan"
    assert build_cli.main([str(fp32_graph), "--output", str(plan), "--precision", "fp16"]) == 1
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "model.fp16.onnx is written and gated" in err
    assert "python -m export.build_engine" in err and "--precision fp16" in err
    half = tmp_path / "model.fp16.onnx"
    assert graph_precision(onnx.load(str(half))) == "fp16"
    manifest = read_manifest(half)
    assert manifest.gate_passed() and manifest.parity["precision"] == "fp16"
    assert manifest.facts == facts_of(half) and manifest.facts.source_onnx_sha256 == sha256_file(fp32_graph)
    assert not plan.exists() and not manifest_path(plan).exists()


def test_a_typed_graph_is_reused_only_when_made_from_this_source(fp32_graph: Path, tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    half = typed_graph(fp32_graph, "fp16", plan)
    written = half.stat().st_mtime_ns
    assert typed_graph(fp32_graph, "fp16", plan) == half and half.stat().st_mtime_ns == written
    other = onnx.load(str(fp32_graph))
    other.doc_string = "another export"
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(ConfigError, match="was not made from .*other.onnx with these settings.*pass --force"):
        typed_graph(tmp_path / "other.onnx", "fp16", plan)
    assert typed_graph(tmp_path / "other.onnx", "fp16", plan, force=True) == half
    assert half.stat().st_mtime_ns != written


def test_a_graph_of_the_requested_precision_is_taken_as_it_is(fp32_graph: Path, tmp_path: Path) -> None:
    assert typed_graph(fp32_graph, "fp32", tmp_path / "model.plan") == fp32_graph
    half = typed_graph(fp32_graph, "fp16", tmp_path / "model.plan")
    assert typed_graph(half, "fp16", tmp_path / "other.plan") == half
    with pytest.raises(ConfigError, match="is the fp16 graph; a int8 engine is built from the FP32 graph"):
        typed_graph(half, "int8", tmp_path / "other.plan")


def test_an_int8_engine_from_the_fp32_graph_names_the_calibration_step(fp32_graph: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"python -m calibration.quantize .*model.onnx --data DIR --output"):
        typed_graph(fp32_graph, "int8", tmp_path / "model.plan")
    assert not (tmp_path / "model.int8.onnx").exists()


def test_tolerances_for_a_graph_taken_as_it_is_are_refused(fp32_graph: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--tolerance applies to a graph made here"):
        build_engine(fp32_graph, tmp_path / "m.plan", precision="fp32", tolerance_overrides={"logits_rel": 1})


def test_with_a_gpu_but_no_tensorrt_the_message_says_how_to_install_it(
    fp32_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorrt_env, "visible_gpu", lambda: ("NVIDIA H100", (9, 0)))
    monkeypatch.setattr(tensorrt_env, "tensorrt_version", lambda: None)
    with pytest.raises(
        MissingDependencyError, match=r"TensorRT is not installed; .*\[tensorrt-cu12\].*\[tensorrt-cu13\]"
    ):
        build_engine(fp32_graph, tmp_path / "model.plan", precision="fp32")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ((1, 16, 8), "1 ≤ min ≤ opt ≤ max"),
        ((0, None, None), "1 ≤ min ≤ opt ≤ max"),
        ((1, None, 64), "exceeds the graph's max batch 8"),
    ],
)
def test_a_bad_batch_profile_is_refused(flags, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        batch_profile(8, *flags)


def test_the_default_profile_spans_the_graph() -> None:
    profile = batch_profile(32, 1, None, None)
    assert (profile.min, profile.opt, profile.max) == (1, 8, 32)


def test_bad_usage_is_refused_before_any_work(fp32_graph: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "m.plan")
    assert build_cli.main([str(fp32_graph), "--output", str(tmp_path / "m.engine"), "--precision", "fp32"]) == 1
    assert "must end in .plan" in capsys.readouterr().err
    assert build_cli.main([str(fp32_graph), "--output", out, "--precision", "fp32", "--builder-opt-level", "9"]) == 1
    assert build_cli.main([str(tmp_path / "missing.onnx"), "--output", out, "--precision", "fp32"]) == 1
    assert "graph not found" in capsys.readouterr().err


def test_nvidia_smi_output_is_parsed_and_the_gpu_cuda_uses_chosen() -> None:
    text = "NVIDIA H100 80GB HBM3, 9.0, GPU-aaaa-1\nNVIDIA A10, 8.6, GPU-bbbb-2\n"
    gpus = parse_gpu_query(text)
    assert gpus == [("NVIDIA H100 80GB HBM3", (9, 0), "GPU-aaaa-1"), ("NVIDIA A10", (8, 6), "GPU-bbbb-2")]
    assert parse_gpu_query("No devices were found\n") == []
    assert select_gpu(gpus, "GPU-bbbb", None) == ("NVIDIA A10", (8, 6))
    assert select_gpu(gpus, "1", "PCI_BUS_ID") == ("NVIDIA A10", (8, 6))
    assert select_gpu(gpus, "", None) is None and select_gpu(gpus, "7", "PCI_BUS_ID") is None
    with pytest.raises(ConfigError, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        select_gpu(gpus, None, None)  # mixed GPUs: CUDA's index 0 need not be nvidia-smi's
    assert select_gpu(gpus[:1] * 2, None, None) == ("NVIDIA H100 80GB HBM3", (9, 0))


# Plan loading rules, on plans written as build_engine writes them (bytes here are not a real engine:
# the rules read only the manifest and hashes, never the plan's content).


def test_a_plan_built_here_loads(tmp_path: Path, fp32_graph: Path) -> None:
    manifest = check_plan(fake_plan(tmp_path, fp32_graph), H100)
    assert manifest.facts.precision == "fp16" and manifest.facts.engine.gpu_name == H100.gpu_name


def test_a_plan_without_its_manifest_is_refused(tmp_path: Path, fp32_graph: Path) -> None:
    plan = fake_plan(tmp_path, fp32_graph)
    manifest_path(plan).unlink()
    with pytest.raises(StaleArtifactError, match="has no manifest model.plan.json.*python -m export.build_engine"):
        check_plan(plan, H100)


def test_a_manifest_that_is_not_one_is_refused(tmp_path: Path, fp32_graph: Path) -> None:
    plan = fake_plan(tmp_path, fp32_graph)
    manifest_path(plan).write_text(json.dumps({"precision": "fp16"}))
    with pytest.raises(InputFileError, match="not a plan manifest"):
        check_plan(plan, H100)
    graph_manifest = read_manifest(fp32_graph)  # an artifact's manifest, but not a plan's
    write_manifest(plan, graph_manifest.facts, force=True)
    with pytest.raises(InputFileError, match="not a plan manifest.*records no build"):
        check_plan(plan, H100)


def test_a_replaced_plan_or_a_changed_source_is_refused(tmp_path: Path, fp32_graph: Path) -> None:
    plan = fake_plan(tmp_path, fp32_graph)
    plan.write_bytes(b"another engine")
    with pytest.raises(StaleArtifactError, match="sha256 differs.*rebuild it: python -m export"):
        check_plan(plan, H100)
    plan = fake_plan(tmp_path, fp32_graph)
    (tmp_path / "model.fp16.onnx").write_bytes(b"re-exported graph")
    with pytest.raises(StaleArtifactError, match="model.fp16.onnx changed after model.plan was built"):
        check_plan(plan, H100)
    (tmp_path / "model.fp16.onnx").unlink()  # a deployment may ship the plan alone
    assert check_plan(fake_plan(tmp_path, fp32_graph), H100)


@pytest.mark.parametrize(
    ("machine", "build", "refused"),
    [
        (Machine(H100.gpu_name, (9, 0), "10.14.1.48"), {}, "built with TensorRT 10.13.0.35"),
        (Machine(H100.gpu_name, (9, 0), "10.14.1.48"), {"version_compatible": True}, None),
        (Machine(H100.gpu_name, (9, 0), "10.12.0.36"), {"version_compatible": True}, "covers later 10.x and 11.x"),
        (Machine(H100.gpu_name, (9, 0), "11.0.0.1"), {"version_compatible": True}, None),
        # Across majors only 8 → 10 and 10 → 11 (TensorRT's support matrix): not 10 → 12, not 11 → 12.
        (Machine(H100.gpu_name, (9, 0), "12.0.0.1"), {"version_compatible": True}, "not 12.0.0.1"),
        (
            Machine(H100.gpu_name, (9, 0), "12.1.0.1"),
            {"version_compatible": True, "tensorrt_version": "11.4.0.106"},
            "covers later 11.x runtimes, not 12.1.0.1",
        ),
        (Machine(H100.gpu_name, (9, 0), "unknown"), {"version_compatible": True}, "cannot be matched"),
        # Plans are not portable across platforms (a GH200 plan on an x86-64 H100: both sm 9.0).
        (H100, {"platform": "win32-AMD64"}, "built on win32-AMD64; this machine is linux"),
        (H100, {"platform": "unknown", "hardware_compat": "ampere+"}, "built on unknown"),
        (Machine(H100.gpu_name, (9, 0), "abc"), {"version_compatible": True}, "cannot be matched"),
        (Machine("NVIDIA A100", (8, 0), H100.tensorrt_version), {}, "compute capability 9.0"),
        (Machine("NVIDIA A100", (8, 0), H100.tensorrt_version), {"hardware_compat": "ampere+"}, None),
        (Machine("NVIDIA B200", (10, 0), H100.tensorrt_version), {"hardware_compat": "ampere+"}, None),
        (Machine("Tesla T4", (7, 5), H100.tensorrt_version), {"hardware_compat": "ampere+"}, "this GPU is Tesla T4"),
        # Hardware compatibility is not supported on JetPack or DRIVE OS: Orin (8.7), Thor (10.1 / 11.0).
        (Machine("Orin", (8, 7), H100.tensorrt_version), {"hardware_compat": "ampere+"}, "JetPack or DRIVE OS"),
        (Machine("NVIDIA Thor", (11, 0), H100.tensorrt_version), {"hardware_compat": "ampere+"}, "JetPack or DRIVE"),
        # The same compute capability on another model loads (with TensorRT's caution logged).
        (Machine("NVIDIA H100 PCIe", (9, 0), H100.tensorrt_version), {}, None),
    ],
)
def test_version_and_hardware_rules(
    tmp_path: Path, fp32_graph: Path, machine: Machine, build: dict, refused: str | None
) -> None:
    plan = fake_plan(tmp_path, fp32_graph, **build)
    if refused is None:
        assert check_plan(plan, machine)
    else:
        with pytest.raises(StaleArtifactError, match=refused):
            check_plan(plan, machine)


def test_a_plan_from_another_model_of_the_same_compute_capability_is_loaded_with_a_warning(
    tmp_path: Path, fp32_graph: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = fake_plan(tmp_path, fp32_graph)
    with caplog.at_level(logging.WARNING, logger="runtime.plan_rules"):
        check_plan(plan, H100)
        assert not caplog.records
        check_plan(plan, Machine("NVIDIA H100 PCIe", (9, 0), H100.tensorrt_version))
    assert "built on NVIDIA H100 80GB HBM3 and is loaded on NVIDIA H100 PCIe" in caplog.text
    assert "rebuild here" in caplog.text


def test_a_timing_cache_from_elsewhere_is_set_aside(tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    save_timing_cache(cache, b"measured on H100", H100)
    assert Machine.from_dict(json.loads(manifest_path(cache).read_text())) == H100
    assert timing_cache_problem(H100, H100) is None
    assert load_timing_cache(cache, H100) == b"measured on H100"
    a100 = Machine("NVIDIA A100", (8, 0), H100.tensorrt_version)
    assert load_timing_cache(cache, a100) == b""
    assert not cache.exists() and (tmp_path / "timing.cache.set-aside").read_bytes() == b"measured on H100"
    cache.write_bytes(b"no sidecar")
    manifest_path(cache).unlink()
    assert load_timing_cache(cache, H100) == b""
    assert "no sidecar" in timing_cache_problem(None, H100)
    assert Machine.from_dict([1]) is None and Machine.from_dict({"gpu_name": "x"}) is None
    unknown = Machine(H100.gpu_name, H100.compute_capability, "unknown")
    assert timing_cache_problem(unknown, unknown)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_builds_a_plan_that_its_rules_accept(fp32_graph: Path, tmp_path: Path, precision: str) -> None:
    result = build_engine(fp32_graph, tmp_path / "model.plan", precision=precision, timing_cache=tmp_path / "t.cache")
    facts = check_plan(result.plan, tensorrt_env.this_machine()).facts
    assert facts.precision == precision and (facts.min_batch, facts.engine.opt_batch, facts.max_batch) == (1, 8, 8)
    assert (tmp_path / "t.cache").stat().st_size > 0
