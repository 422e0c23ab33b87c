"""export.triton_repo: the repository's layout and configs (Triton's own protobuf), our checks of what
Triton's parser accepts but cannot serve, refusals, atomic writing and the KServe manifest."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("tritonclient.grpc", reason="tritonclient (the serve extra) is not installed")

from core.errors import ConfigError, ExportError, OutputError, StaleArtifactError
from core.manifest import manifest_path
from export import triton_repo
from export.triton_configs import parse
from export.triton_repo import RepositoryOptions, write_repository
from runtime.triton_names import CLASSIFIER, POSTPROCESS, PREPROCESS, TAGGER
from runtime.triton_server import repository_flags
from tests.helpers import facts_of, fake_plan, relabelled

MODELS = (CLASSIFIER, POSTPROCESS, PREPROCESS, TAGGER)


def _configs(repository: Path) -> dict:
    return {name: parse((repository / name / "config.pbtxt").read_text(), name) for name in MODELS}


@pytest.mark.parametrize(("classifier", "platform"), [("python", ""), ("auto", "onnxruntime_onnx")])
def test_a_graph_becomes_a_repository_whose_configs_parse_and_agree_with_its_facts(
    fp32_graph: Path, tmp_path: Path, classifier: str, platform: str
) -> None:
    repository = write_repository(fp32_graph, tmp_path / "repo", RepositoryOptions(classifier=classifier), force=False)
    facts = facts_of(fp32_graph)
    assert sorted(p.name for p in repository.iterdir()) == sorted([*MODELS, "serving.json"])
    configs = _configs(repository)
    assert all(config.name == name and config.max_batch_size == facts.max_batch for name, config in configs.items())
    classifier_config = configs[CLASSIFIER]
    assert classifier_config.platform == platform and classifier_config.backend == ("python" if not platform else "")
    assert [tuple(i.dims) for i in classifier_config.input] == [(3, facts.image_size, facts.image_size)]
    assert [tuple(o.dims) for o in classifier_config.output] == [(len(facts.class_names),)]
    assert list(classifier_config.dynamic_batching.preferred_batch_size) == [facts.max_batch]
    assert [w.batch_size for w in classifier_config.model_warmup] == [1, facts.max_batch]
    version = repository / CLASSIFIER / "1"
    assert (version / "model.onnx").read_bytes() == fp32_graph.read_bytes()
    assert manifest_path(version / "model.onnx").read_bytes() == manifest_path(fp32_graph).read_bytes()
    assert (version / "model.py").exists() == (classifier == "python")
    group = classifier_config.instance_group[0]  # the twin of a graph defaults to CPUs; the ORT backend, to auto
    assert group.kind == (group.KIND_CPU if classifier == "python" else group.KIND_AUTO)
    for name in (POSTPROCESS, TAGGER):
        assert (repository / name / "labels.txt").read_text().splitlines() == list(facts.class_names)
    tagger = configs[TAGGER]
    assert [s.model_name for s in tagger.ensemble_scheduling.step] == [PREPROCESS, CLASSIFIER, POSTPROCESS]
    assert {o.name for o in tagger.output} == {"probabilities", "labels", "logits"}
    assert json.loads(tagger.parameters["thresholds"].string_value) == [facts.config.decision_threshold] * len(
        facts.class_names
    )
    for name in (PREPROCESS, POSTPROCESS):
        module = {PREPROCESS: "preprocess", POSTPROCESS: "postprocess"}[name]
        assert (
            f"from runtime.triton_models.{module} import TritonPythonModel"
            in (repository / name / "1" / "model.py").read_text()
        )


def test_class_thresholds_are_carried_into_the_postprocess_and_the_tagger(fp32_graph: Path, tmp_path: Path) -> None:
    names = facts_of(fp32_graph).class_names
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({names[1]: 0.25}))
    options = RepositoryOptions(threshold=0.6, class_thresholds=thresholds)
    repository = write_repository(fp32_graph, tmp_path / "repo", options, force=False)
    expected = [0.6] * len(names)
    expected[1] = 0.25
    for name in (POSTPROCESS, TAGGER):
        assert json.loads(_configs(repository)[name].parameters["thresholds"].string_value) == pytest.approx(expected)


def test_a_plan_becomes_a_tensorrt_plan_classifier_on_gpus_with_its_profile(fp32_graph: Path, tmp_path: Path) -> None:
    plan = fake_plan(tmp_path, fp32_graph, max_batch=8, version_compatible=True)
    repository = write_repository(plan, tmp_path / "repo", RepositoryOptions(instances=2), force=False)
    classifier = _configs(repository)[CLASSIFIER]
    assert classifier.platform == "tensorrt_plan" and classifier.default_model_filename == "model.plan"
    assert list(classifier.dynamic_batching.preferred_batch_size) == [4, 8]  # the profile's opt and max
    assert [(g.count, g.kind) for g in classifier.instance_group] == [(2, classifier.instance_group[0].KIND_GPU)]
    serving = json.loads((repository / "serving.json").read_text())
    assert serving["tensorrt_version"] == "10.13.0.35" and serving["compute_capability"] == [9, 0]
    # A version-compatible plan loads only where the server allows its embedded runtime.
    assert repository_flags(repository) == ["--backend-config=tensorrt,version-compatible=true"]
    service = yaml.safe_load((tmp_path / "repo.inferenceservice.yaml").read_text())
    assert service["spec"]["predictor"]["model"]["args"] == ["--backend-config=tensorrt,version-compatible=true"]
    twin = write_repository(plan, tmp_path / "twin", RepositoryOptions(classifier="python"), force=False)
    group = _configs(twin)[CLASSIFIER].instance_group[0]  # the twin's runners take no device index
    assert (group.kind, list(group.gpus)) == (group.KIND_GPU, [0])


def test_what_the_artifact_cannot_serve_is_refused(fp32_graph: Path, tmp_path: Path) -> None:
    plan = fake_plan(tmp_path, fp32_graph, max_batch=8)
    (tmp_path / "narrow").mkdir()
    narrow = fake_plan(tmp_path / "narrow", fp32_graph, min_batch=2, max_batch=8)
    refusals = [
        (fp32_graph, RepositoryOptions(max_batch=9), ConfigError, "covers 1 to 8"),
        (fp32_graph, RepositoryOptions(preferred_batch_sizes=(2, 16)), ConfigError, "each must lie in 1..8"),
        (fp32_graph, RepositoryOptions(classifier="tensorrt_plan"), ConfigError, "cannot serve model.onnx"),
        (plan, RepositoryOptions(kind="cpu"), ConfigError, "runs on a GPU only"),
        (plan, RepositoryOptions(onnx_tensorrt=True), ConfigError, "option of the onnxruntime_onnx classifier"),
        (narrow, RepositoryOptions(), ConfigError, "--min-batch 1"),
        (plan, RepositoryOptions(classifier="python", kind="cpu"), ConfigError, "runs on a GPU only"),
        (plan, RepositoryOptions(gpus=0), ConfigError, "needs a GPU in each replica"),
        (fp32_graph, RepositoryOptions(classifier="python", kind="auto"), ConfigError, "use --kind cpu or gpu"),
    ]
    for artifact, options, error, message in refusals:
        with pytest.raises(error, match=message):
            write_repository(artifact, tmp_path / "repo", options, force=False)
    plan = fake_plan(tmp_path, fp32_graph)
    plan.write_bytes(b"another engine")  # the manifest no longer describes it
    with pytest.raises(StaleArtifactError, match="sha256 differs"):
        write_repository(plan, tmp_path / "repo", RepositoryOptions(), force=False)
    relabelled(fp32_graph, tmp_path / "relabelled.onnx", max_batch=4)
    shutil.copyfile(manifest_path(fp32_graph), manifest_path(tmp_path / "relabelled.onnx"))
    with pytest.raises(StaleArtifactError):
        write_repository(tmp_path / "relabelled.onnx", tmp_path / "repo", RepositoryOptions(), force=False)
    assert not (tmp_path / "repo").exists() and not (tmp_path / "repo.inferenceservice.yaml").exists()


def test_an_existing_repository_is_replaced_only_with_force_and_never_left_half_written(
    fp32_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "repo"
    assert triton_repo.main([str(fp32_graph), "--output", str(output)]) == 0
    first = sorted(p.relative_to(output) for p in output.rglob("*"))
    assert triton_repo.main([str(fp32_graph), "--output", str(output)]) == 1  # exists: refused
    assert triton_repo.main([str(fp32_graph), "--output", str(output), "--force", "--max-batch", "4"]) == 0
    assert _configs(output)[TAGGER].max_batch_size == 4

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(triton_repo.shutil, "copyfile", disk_full)
    with pytest.raises(OutputError, match="No space left on device; free space"):
        write_repository(fp32_graph, output, RepositoryOptions(), force=True)
    assert _configs(output)[TAGGER].max_batch_size == 4  # the old repository, whole
    assert sorted(p.relative_to(output) for p in output.rglob("*")) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "repo.inferenceservice.yaml"]  # no staging left


def test_our_checks_catch_what_tritons_parser_accepts_but_cannot_serve(fp32_graph: Path, tmp_path: Path) -> None:
    from export.triton_configs import check_repository

    repository = write_repository(fp32_graph, tmp_path / "repo", RepositoryOptions(), force=False)
    labels = {name: (facts_of(fp32_graph).class_names if name in (POSTPROCESS, TAGGER) else None) for name in MODELS}
    check_repository(_configs(repository), labels)  # as written: serves

    def broken(edit) -> str:
        configs = _configs(repository)
        edit(configs)
        with pytest.raises(ExportError) as caught:
            check_repository(configs, labels)
        return str(caught.value)

    assert "each must be fixed and ≥ 1" in broken(lambda c: c[CLASSIFIER].input[0].dims.__setitem__(0, -1))
    assert "not a model of the repository" in broken(lambda c: c.pop(POSTPROCESS))
    assert "which no earlier step produces" in broken(
        lambda c: c[TAGGER].ensemble_scheduling.step[1].input_map.__setitem__("images", "pixels")
    )
    assert "'probabilities' is not produced" in broken(
        lambda c: c[TAGGER].ensemble_scheduling.step[2].output_map.pop("probabilities")
    )
    assert "postprocess.logits is (12, [" in broken(lambda c: c[POSTPROCESS].input[0].__setattr__("data_type", 12))
    assert "takes batches of up to 2" in broken(lambda c: c[PREPROCESS].__setattr__("max_batch_size", 2))
    assert "preferred batch sizes [32]" in broken(
        lambda c: c[CLASSIFIER].dynamic_batching.preferred_batch_size.__setitem__(0, 32)
    )
    assert "is named 'other'" in broken(lambda c: c[PREPROCESS].__setattr__("name", "other"))
    with pytest.raises(ExportError, match="3 labels for probabilities of"):
        check_repository(_configs(repository), {**labels, POSTPROCESS: ("a", "b", "c")})


def test_the_kserve_manifest_is_an_inference_service_of_the_triton_runtime(fp32_graph: Path, tmp_path: Path) -> None:
    options = RepositoryOptions(storage_uri="gs://models/tagger", gpus=2, min_replicas=1, max_replicas=4)
    write_repository(fp32_graph, tmp_path / "Tagger_v1", options, force=False)
    service = yaml.safe_load((tmp_path / "Tagger_v1.inferenceservice.yaml").read_text())
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and service["kind"] == "InferenceService"
    assert service["metadata"]["name"] == "tagger-v1"  # a DNS label
    predictor = service["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "gs://models/tagger" and model["runtimeVersion"] == "24.10-py3"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "the Python models import: pass --image" in (tmp_path / "Tagger_v1.inferenceservice.yaml").read_text()
    options = RepositoryOptions(image="registry.example/triton-tagger:1")
    write_repository(fp32_graph, tmp_path / "own", options, force=False)
    model = yaml.safe_load((tmp_path / "own.inferenceservice.yaml").read_text())["spec"]["predictor"]["model"]
    assert model["image"] == "registry.example/triton-tagger:1" and "runtimeVersion" not in model
    with pytest.raises(SystemExit):  # one image or the other, never both
        triton_repo.main(
            [str(fp32_graph), "--output", str(tmp_path / "r3"), "--image", "a", "--triton-release", "25.08-py3"]
        )
    with pytest.raises(ConfigError, match="1 ≤ min ≤ max"):
        write_repository(fp32_graph, tmp_path / "r2", RepositoryOptions(min_replicas=3, max_replicas=2), force=False)
    assert not (tmp_path / "r2").exists()  # checked before anything is written


def test_a_failed_write_raises_a_typed_error_when_the_disk_is_full(
    fp32_graph: Path, tmp_path: Path, monkeypatch
) -> None:
    from core import files

    real = files.os.replace

    def full(source, target):
        if str(target).endswith("config.pbtxt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(OutputError, match="free space"):
        write_repository(fp32_graph, tmp_path / "repo", RepositoryOptions(), force=False)
    assert list(tmp_path.iterdir()) == []
