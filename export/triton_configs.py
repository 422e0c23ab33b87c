"""The ``config.pbtxt`` of each model of a Triton repository, built with Triton's own model-config
protobuf (``tritonclient``'s ``model_config_pb2``), and our checks of what Triton's parser accepts
but the server cannot serve: dimensions, batch sizes, names, label files and the ensemble's wiring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from core.errors import ExportError
from core.facts import ArtifactFacts
from runtime.triton_client import model_config_pb2
from runtime.triton_names import (
    ARTIFACT_PARAMETER,
    CLASSIFIER,
    FACTS_PARAMETER,
    IMAGE,
    LABELS,
    LABELS_FILE,
    LOGITS,
    LOGITS_COPY,
    POSTPROCESS,
    PREPROCESS,
    PROBABILITIES,
    TAGGER,
    THRESHOLDS_PARAMETER,
)

CLASSIFIER_KINDS = ("tensorrt_plan", "onnxruntime_onnx", "python")
INSTANCE_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
MODEL_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}
# ONNX Runtime's TensorRT execution provider: the precision it may build in, from the graph's.
_ORT_TENSORRT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}
# The ensemble's tensors between its steps.
_PREPROCESSED = "preprocessed"
_CLASSIFIED = "classifier_logits"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Batching:
    """How the server batches: the largest batch, the sizes the dynamic batcher prefers, and how long a
    request may wait for others (microseconds)."""

    max_batch: int
    preferred: tuple[int, ...]
    max_queue_delay_us: int


@dataclass(frozen=True)
class Instances:
    """Instance groups: the classifier's count and kind, the preprocess model's count (CPU)."""

    classifier: int
    kind: str
    preprocess: int


def configs(
    facts: ArtifactFacts,
    classifier_kind: str,
    model_file: str,
    batching: Batching,
    instances: Instances,
    thresholds: Sequence[float],
    onnx_tensorrt: bool = False,
) -> dict[str, object]:
    """The four models' configurations (name → ``ModelConfig``), checked (:func:`check_repository`)."""
    pb = model_config_pb2()
    described = {
        FACTS_PARAMETER: json.dumps(facts.to_dict(), separators=(",", ":")),
        THRESHOLDS_PARAMETER: json.dumps([round(float(t), 9) for t in thresholds]),
    }
    classes = len(facts.class_names)
    image = _tensor(pb.ModelInput, IMAGE, pb.TYPE_STRING, [1])
    # The classifier's input is what the artifact takes: preprocessed floats, or uint8 pixels it normalises.
    pixel_type = pb.TYPE_UINT8 if facts.input_format == "uint8" else pb.TYPE_FP32
    pixels = (facts.input_name, pixel_type, list(facts.serving().input_item_shape))
    logits = (facts.output_name, pb.TYPE_FP32, [classes])
    probabilities = _tensor(pb.ModelOutput, PROBABILITIES, pb.TYPE_FP32, [classes], label_filename=LABELS_FILE)
    labels = _tensor(pb.ModelOutput, LABELS, pb.TYPE_STRING, [1])

    preprocess = _model(pb, PREPROCESS, batching, backend="python", input=[image])
    preprocess.output.append(_tensor(pb.ModelOutput, *pixels))
    preprocess.instance_group.add(count=instances.preprocess, kind=pb.ModelInstanceGroup.KIND_CPU)
    _parameters(preprocess, {FACTS_PARAMETER: described[FACTS_PARAMETER]})

    classifier = _model(pb, CLASSIFIER, batching, input=[_tensor(pb.ModelInput, *pixels)])
    classifier.output.append(_tensor(pb.ModelOutput, *logits))
    if classifier_kind == "python":  # the backend runs model.py, which runs the artifact named here
        classifier.backend = "python"
        _parameters(classifier, {ARTIFACT_PARAMETER: model_file})
    else:
        classifier.platform = classifier_kind
        classifier.default_model_filename = model_file
    classifier.dynamic_batching.preferred_batch_size.extend(batching.preferred)
    kind = getattr(pb.ModelInstanceGroup, INSTANCE_KINDS[instances.kind])
    group = classifier.instance_group.add(count=instances.classifier, kind=kind)
    if classifier_kind == "python" and instances.kind == "gpu":
        group.gpus.append(0)  # the twin's runners take no device index: its instances all run on the first GPU
    if onnx_tensorrt:
        accelerator = classifier.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = _ORT_TENSORRT_PRECISION[facts.precision]
    for batch in sorted({1, batching.max_batch}):
        warmup = classifier.model_warmup.add(name=f"batch_{batch}", batch_size=batch)
        warmup.inputs[facts.input_name].CopyFrom(
            pb.ModelWarmup.Input(data_type=pixel_type, dims=pixels[2], zero_data=True)
        )

    postprocess = _model(
        pb, POSTPROCESS, batching, backend="python", input=[_tensor(pb.ModelInput, LOGITS, *logits[1:])]
    )
    postprocess.output.extend([probabilities, labels, _tensor(pb.ModelOutput, LOGITS_COPY, *logits[1:])])
    postprocess.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    _parameters(postprocess, described)

    tagger = _model(pb, TAGGER, batching, platform="ensemble", input=[image])
    tagger.output.extend([probabilities, labels, _tensor(pb.ModelOutput, LOGITS, *logits[1:])])
    tagger.ClearField("dynamic_batching")  # an ensemble's steps batch; the ensemble itself does not
    steps = (
        (PREPROCESS, {IMAGE: IMAGE}, {facts.input_name: _PREPROCESSED}),
        (CLASSIFIER, {facts.input_name: _PREPROCESSED}, {facts.output_name: _CLASSIFIED}),
        (POSTPROCESS, {LOGITS: _CLASSIFIED}, {PROBABILITIES: PROBABILITIES, LABELS: LABELS, LOGITS_COPY: LOGITS}),
    )
    for name, inputs, outputs in steps:
        step = tagger.ensemble_scheduling.step.add(model_name=name, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    _parameters(tagger, described)
    models = {m.name: m for m in (preprocess, classifier, postprocess, tagger)}
    check_repository(models, {name: (facts.class_names if name in (POSTPROCESS, TAGGER) else None) for name in models})
    return models


def to_text(config) -> str:
    """``config`` as ``config.pbtxt`` text, parsed back with Triton's protobuf to the same message.

    Raises:
        ExportError: The text does not parse back to ``config``.
    """
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    if parse(text, config.name) != config:
        raise ExportError(f"the configuration of {config.name!r} does not survive its own text format")
    return text


def parse(text: str, where: str):
    """A ``config.pbtxt``'s text as a ``ModelConfig``.

    Raises:
        ExportError: Triton's protobuf cannot parse it.
    """
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, model_config_pb2().ModelConfig())
    except text_format.ParseError as exc:
        raise ExportError(f"{where}: not a Triton model configuration ({exc})") from exc


def check_repository(models: Mapping[str, object], labels: Mapping[str, Sequence[str] | None]) -> None:
    """What Triton's parser accepts but cannot serve. ``models``: folder name → ``ModelConfig``;
    ``labels``: folder name → the lines of its labels file (None where it has none).

    Raises:
        ExportError: Every problem found, named.
    """
    pb = model_config_pb2()
    problems: list[str] = []
    for folder, model in models.items():
        problems += _model_problems(pb, folder, model, labels.get(folder))
    for model in models.values():
        if model.platform == "ensemble":
            problems += _ensemble_problems(model, models)
    if problems:
        raise ExportError("the Triton repository would not serve: " + "; ".join(problems))


def _model_problems(pb: ModuleType, folder: str, model, labels: Sequence[str] | None) -> list[str]:
    problems = []
    where = f"model {folder!r}"
    if model.name != folder or not _NAME.fullmatch(folder):
        problems.append(f"{where} is named {model.name!r} (a model is named as its folder, of letters, digits, _.-)")
    tensors = [*model.input, *model.output]
    names = [t.name for t in tensors]
    if len(set(names)) != len(names) or not all(_NAME.fullmatch(n) for n in names):
        problems.append(f"{where} has repeated or unusable tensor names {names}")
    for tensor in tensors:
        if not tensor.dims or any(d < 1 for d in tensor.dims):
            problems.append(f"{where}: {tensor.name} has dims {list(tensor.dims)} (each must be fixed and ≥ 1)")
        if tensor.data_type == pb.TYPE_INVALID:
            problems.append(f"{where}: {tensor.name} has no data type")
    for output in model.output:
        if output.label_filename:
            if labels is None:
                problems.append(f"{where}: {output.name} names a labels file the model folder does not hold")
            elif len(labels) != output.dims[-1]:
                problems.append(f"{where}: {len(labels)} labels for {output.name} of {output.dims[-1]} classes")
    if model.max_batch_size < 1:
        problems.append(f"{where}: max_batch_size {model.max_batch_size} (requests carry a batch dimension)")
    preferred = list(model.dynamic_batching.preferred_batch_size)
    if preferred != sorted(set(preferred)) or any(not 1 <= p <= model.max_batch_size for p in preferred):
        problems.append(
            f"{where}: preferred batch sizes {preferred} are not distinct sizes in 1..{model.max_batch_size}"
        )
    if model.platform != "ensemble" and not model.instance_group:
        problems.append(f"{where} has no instance group")
    if any(group.count < 1 for group in model.instance_group):
        problems.append(f"{where}: an instance group of fewer than 1 instance")
    return problems


def _ensemble_problems(ensemble, models: Mapping[str, object]) -> list[str]:
    """Every step's model exists and batches as much as the ensemble; every input of a step is
    mapped from a tensor produced earlier (or an ensemble input) of the same type and shape; every
    output of the ensemble is produced once."""
    where = f"ensemble {ensemble.name!r}"
    problems = []
    produced = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = models.get(step.model_name)
        if model is None:
            problems.append(f"{where}: step {step.model_name!r} is not a model of the repository")
            continue
        if model.max_batch_size < ensemble.max_batch_size:
            problems.append(
                f"{where}: step {model.name!r} takes batches of up to {model.max_batch_size}, "
                f"the ensemble {ensemble.max_batch_size}"
            )
        inputs = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        if set(step.input_map) != set(inputs):
            problems.append(
                f"{where}: step {model.name!r} maps inputs {sorted(step.input_map)}, it has {sorted(inputs)}"
            )
        for name, tensor in step.input_map.items():
            if tensor not in produced:
                problems.append(f"{where}: {model.name}.{name} reads {tensor!r}, which no earlier step produces")
            elif name in inputs and produced[tensor] != inputs[name]:
                problems.append(f"{where}: {model.name}.{name} is {inputs[name]}, {tensor!r} is {produced[tensor]}")
        for name, tensor in step.output_map.items():
            if name not in outputs:
                problems.append(f"{where}: step {model.name!r} has no output {name!r}")
            elif tensor in produced:
                problems.append(f"{where}: {tensor!r} is produced twice")
            else:
                produced[tensor] = outputs[name]
    for output in ensemble.output:
        found = produced.get(output.name)
        if found != (output.data_type, list(output.dims)):
            problems.append(f"{where}: its output {output.name!r} is {found or 'not produced'}")
    return problems


def _model(pb: ModuleType, name: str, batching: Batching, **fields):
    model = pb.ModelConfig(name=name, max_batch_size=batching.max_batch, **fields)
    model.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    return model


def _tensor(kind, name: str, data_type: int, dims: list[int], **fields):
    return kind(name=name, data_type=data_type, dims=dims, **fields)


def _parameters(model, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        model.parameters[key].string_value = value
