"""The quantization step: ONNX Runtime's ``quantize_static``, for TensorRT (its rules and Q/DQ placement) or
for ONNX Runtime on x86 CPUs (U8S8 Q/DQ), then checks."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from core.errors import ConfigError, ExportError, StaleArtifactError
from core.facts import ArtifactFacts, CalibrationFacts
from core.files import sha256_file
from export.fp16 import head_nodes
from export.metadata import read_graph, write_metadata
from export.onnx_checks import check_model, find_mask_constant, mask_of_graph
from export.qdq_checks import check_int8_graph, pair_source, producers, residual_adds
from export.uint8_input import float_part, in_input_format

from .data import CalibrationSet
from .reader import BatchReader

logger = logging.getLogger(__name__)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# Q/DQ placement after TensorRT's explicit-quantization guidance (docs/engines.md): every Conv reads a
# quantized input and per-channel INT8 weights; no Conv or Add output is quantized, so TensorRT fuses
# Conv+ReLU and Conv+Add+ReLU and folds the next layer's Q into them (INT8 output); a residual Add's
# identity input is quantized and its main-branch input is not (that pair is removed after ONNX
# Runtime, which quantizes both inputs of an Add or neither); MaxPool reads and writes INT8 at one
# scale. Relu gets no Q/DQ of its own: it fuses into the Conv or Add before it. ONNX Runtime's CPU
# kernels run these Convs in float (its QLinearConv needs a Q on the output): the graph is for TensorRT.
QUANTIZED_OPS = ("Conv", "Add", "MaxPool")
UNQUANTIZED_OUTPUTS = ("Conv", "Add")


class _PreprocessingAdvice(logging.Filter):
    """Drops ONNX Runtime's advice to run ``quant_pre_process`` first. It is skipped on purpose: the
    exported graph is already shape-inferred with batch norm folded into the convolutions, and its
    symbolic shape inference fails on a dynamic batch (DESIGN.md)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    advice = _PreprocessingAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def read_source(path: Path) -> tuple[onnx.ModelProto, ArtifactFacts]:
    """The FP32 graph and its facts.

    Raises:
        InputFileError: The file is missing or not an ONNX graph of this toolkit.
        ConfigError: The graph is not FP32 (calibrate the graph ``export.to_onnx`` wrote).
    """
    graph, facts = read_graph(path)
    if facts.precision != "fp32":
        raise ConfigError(f"{path} is a {facts.precision} graph; calibrate the FP32 graph written by export.to_onnx")
    return graph, facts


def quantize_graph(
    source: Path,
    graph: onnx.ModelProto,
    facts: ArtifactFacts,
    output: Path,
    dataset: CalibrationSet,
    *,
    method: str,
    percentile: float,
    batch_size: int,
    ranges: dict[str, Any] | None,
    calibration: CalibrationFacts,
) -> tuple[dict[str, Any], ArtifactFacts]:
    """Writes the checked INT8 graph (metadata included) to ``output``; returns the ranges used
    and the graph's facts.

    ``graph`` and ``facts`` are what :func:`read_source` read from ``source``. With ``ranges`` (a
    cache hit) no image is read; otherwise the ranges are computed here. A graph with a uint8 input is
    quantized without its preprocessing nodes, which are put back in FP32 (``export.uint8_input``).

    Raises:
        ExportError: The result breaks a rule of its target (TensorRT's, or :func:`check_cpu_int8_graph`)
            or a structural check, or a backbone Add is not a ResNet residual Add (TensorRT's Q/DQ
            placement needs one).
    """
    ranges_file = output.with_name(output.name + ".ranges.json")  # ONNX Runtime's own cache format
    if ranges is not None:
        ranges_file.write_text(json.dumps(ranges))
    reader = BatchReader(
        dataset,
        input_name=facts.input_name,
        image_size=facts.image_size,
        preprocessing=facts.config.preprocessing,
        batch_size=batch_size,
    )
    what = (source.name, calibration.target, calibration.method, len(dataset.files))
    logger.info("quantizing %s for %s (%s, %d images)", *what)
    # Read before quantizing: computing ranges, quantize_static saves the proto it is given with external
    # data, which moves every initializer of 1 KiB or more out of it into a folder it then deletes.
    mask = mask_of_graph(graph, facts.mask_sha256, len(facts.class_names))
    graph = float_part(graph, facts.input_format)
    common = {
        "calibrate_method": METHODS[method],
        "calibration_cache_path": str(ranges_file),
        "nodes_to_exclude": head_nodes(graph),
        "per_channel": True,
        "weight_type": QuantType.QInt8,
    }
    # One batch per collection pass (bounded memory, equal shapes within a pass).
    calibrator = {"CalibStridedMinMax": 1, "CalibPercentile": percentile}
    chatter = io.StringIO()  # the histogram calibrators print to stdout
    with contextlib.redirect_stdout(chatter), _without_preprocessing_advice():
        if calibration.target == "cpu":
            # ONNX Runtime's own x86 recipe: its default operator set, uint8 activations at their own
            # zero points, symmetric int8 weights, in Q/DQ form, which ONNX Runtime fuses into its
            # integer kernels when it loads the graph (measured faster than QOperator: docs/calibration.md).
            quantize_static(
                graph,  # a ModelProto: a path would make ONNX Runtime write <source>-inferred.onnx beside the source
                str(output),
                reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, **calibrator},
                **common,
            )
        else:
            quantize_static(
                graph,
                str(output),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                activation_type=QuantType.QInt8,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "CalibTensorRangeSymmetric": True,
                    "QuantizeBias": False,
                    "DedicatedQDQPair": True,
                    "OpTypesToExcludeOutputQuantization": list(UNQUANTIZED_OUTPUTS),
                    # MaxPool is otherwise quantized only when its input already is, which no Relu is now.
                    "ForceQuantizeNoInputCheck": True,
                    **calibrator,
                },
                **common,
            )
    logger.debug("quantizer output:\n%s", chatter.getvalue())
    used = json.loads(ranges_file.read_text())
    ranges_file.unlink()

    quantized = onnx.load(str(output))
    if calibration.target == "cpu":
        count = check_cpu_int8_graph(quantized, head_nodes(quantized))
    else:
        _unquantize_main_branches(quantized, head_nodes(quantized))
        count = check_int8_graph(quantized)
    quantized = check_model(in_input_format(quantized, facts.input_format, facts.config.preprocessing))
    find_mask_constant(quantized, mask, facts.config.mask_mode)
    facts = facts.made_into("int8", source.name, sha256_file(source), calibration)
    write_metadata(quantized, facts)
    onnx.save(quantized, str(output))
    logger.info("INT8 graph for %s: %d Q/DQ nodes; head left in FP32", calibration.target, count)
    return used, facts


def check_cpu_int8_graph(model: onnx.ModelProto, head: list[str]) -> int:
    """The checks of a cpu-target graph: every convolution reads uint8 activations and int8 weights
    through DequantizeLinear and writes only to a QuantizeLinear (the pattern ONNX Runtime fuses into
    a QLinearConv), and the head (``head``: its node names, the global max pool first) is FP32: no
    Q/DQ node in it, and none feeding it but the backbone's last activation. Returns the number of
    Q/DQ nodes.

    Raises:
        ExportError: A check fails.
    """
    constants = {init.name: init for init in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def zero_point_type(tensor: str) -> int | None:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear" or len(node.input) < 3:
            return None
        zero = constants.get(node.input[2])
        return None if zero is None else zero.data_type

    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if not convs:
        raise ExportError("the cpu-target graph has no convolution")
    for node in convs:
        if zero_point_type(node.input[0]) != onnx.TensorProto.UINT8:
            raise ExportError(f"{node.name}: its input is not uint8 Q/DQ (ONNX Runtime's x86 kernels run U8S8)")
        if zero_point_type(node.input[1]) != onnx.TensorProto.INT8:
            raise ExportError(f"{node.name}: its weights are not int8 Q/DQ")
        if any(reader.op_type != "QuantizeLinear" for reader in readers.get(node.output[0], [])):
            raise ExportError(f"{node.name}: its output is not quantized, so ONNX Runtime would run it in float")
    qdq = [node for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    names = set(head)
    in_head = sorted({node.name for node in qdq} & names)
    fed = sorted(
        node.name
        for node in model.graph.node
        if node.name in names and node.name != head[0] and any(zero_point_type(name) is not None for name in node.input)
    )
    if in_head or fed:
        raise ExportError(f"the head must stay FP32; quantized there: {', '.join((in_head + fed)[:3])}")
    return len(qdq)


def check_cpu_int8_file(path: Path, *, fix: str) -> None:
    """:func:`check_cpu_int8_graph` on a graph file (one left by an earlier run, before it is reused).

    Raises:
        StaleArtifactError: It breaks a rule; ``fix`` says what to do.
    """
    model = onnx.load(str(path), load_external_data=False)
    try:
        check_cpu_int8_graph(model, head_nodes(model))
    except ExportError as exc:
        raise StaleArtifactError(f"{path} is not a valid cpu-target INT8 graph: {exc}; {fix}") from exc


def _unquantize_main_branches(model: onnx.ModelProto, head: list[str]) -> None:
    """Removes the Q/DQ pair on each residual Add's main-branch input, leaving the Conv's output
    read directly, so TensorRT fuses that Conv with the Add and the ReLU after it in INT8.

    Raises:
        ExportError: A backbone Add is not a residual Add, or its main branch does not pass
            through a Q/DQ pair of its own (one Conv → Q → DQ → Add chain).
    """
    producer = producers(model)
    readers = Counter(name for node in model.graph.node for name in node.input)
    removed: list[onnx.NodeProto] = []
    for add, main in residual_adds(model, head):
        source = pair_source(add.input[main], producer)
        if source == add.input[main]:
            raise ExportError(f"the main branch of residual Add {add.name!r} has no Q/DQ pair to remove")
        dq = producer[add.input[main]]
        q = producer[dq.input[0]]
        if readers[dq.output[0]] != 1 or readers[q.output[0]] != 1:
            raise ExportError(f"the Q/DQ pair on residual Add {add.name!r}'s main branch is shared; it must be its own")
        add.input[main] = source
        removed += [q, dq]
    gone = {name for node in removed for name in node.output}
    for index in reversed(range(len(model.graph.node))):
        if model.graph.node[index].output[0] in gone:
            del model.graph.node[index]
    read = {name for node in model.graph.node for name in node.input}
    unread = {name for node in removed for name in node.input} - read  # the pairs' scales and zero points
    for index in reversed(range(len(model.graph.initializer))):
        if model.graph.initializer[index].name in unread:
            del model.graph.initializer[index]
    for index in reversed(range(len(model.graph.value_info))):
        if model.graph.value_info[index].name in gone:
            del model.graph.value_info[index]
