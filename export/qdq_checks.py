"""Structural rules of a TensorRT-bound INT8 graph: symmetric INT8 Q/DQ, none in the head, and Q/DQ
placed where TensorRT's explicit-quantization guidance puts them (``check_placement``).

``calibration`` checks every graph it writes or reuses; ``export.build_engine`` checks an INT8 graph
before building from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from core.errors import ExportError, StaleArtifactError

from .fp16 import head_nodes

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def check_qdq(model: onnx.ModelProto, head: list[str]) -> int:
    """Checks every Q/DQ node; returns how many there are.

    Each must carry a constant INT8 zero point equal to 0 (TensorRT accepts symmetric quantization
    only) and a positive constant scale. The head (``head``: its node names, its global max pool
    first) stays FP32: no Q/DQ node lies in it, and no head node but the pool reads a Q/DQ output
    (which would quantize one of its constants).

    Raises:
        ExportError: A rule is broken, or the graph holds no Q/DQ node at all.
    """
    constants = {i.name: i for i in model.graph.initializer}
    nodes = [node for node in model.graph.node if node.op_type in QDQ_OPS]
    if not nodes:
        raise ExportError("the quantized graph holds no QuantizeLinear/DequantizeLinear node")
    quantized = {name for node in nodes for name in node.output}
    for node in model.graph.node:
        if node.name in head[1:] and any(name in quantized for name in node.input):
            raise ExportError(f"head node {node.name!r} reads a Q/DQ output; the head must stay FP32")
    for node in nodes:
        where = f"{node.op_type} {node.name!r}"
        if node.name in head:
            raise ExportError(f"{where} lies in the head, which must stay FP32")
        if len(node.input) < 3 or node.input[2] not in constants:
            raise ExportError(f"{where} has no constant zero point; TensorRT needs an explicit INT8 zero point 0")
        zero_point = constants[node.input[2]]
        if zero_point.data_type != onnx.TensorProto.INT8:
            kind = onnx.TensorProto.DataType.Name(zero_point.data_type)
            raise ExportError(f"{where} quantizes to {kind}; TensorRT needs INT8")
        if np.any(numpy_helper.to_array(zero_point) != 0):
            raise ExportError(f"{where} has a non-zero zero point; TensorRT accepts symmetric quantization only")
        scale = constants.get(node.input[1])
        if scale is None or not np.all(numpy_helper.to_array(scale) > 0):
            raise ExportError(f"{where} has no constant positive scale")
    return len(nodes)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output}


def pair_source(tensor: str, producer: dict[str, onnx.NodeProto]) -> str:
    """The tensor a Q→DQ pair reads, if ``tensor`` is the output of one; else ``tensor`` itself."""
    dq = producer.get(tensor)
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
    return tensor


def _is_pair_output(tensor: str, producer: dict[str, onnx.NodeProto]) -> bool:
    return pair_source(tensor, producer) != tensor


def _ancestors(tensors: Iterable[str], producer: dict[str, onnx.NodeProto]) -> set[str]:
    """Every tensor that ``tensors`` are computed from (themselves excluded unless on a cycle)."""
    seen: set[str] = set()
    stack = [name for tensor in tensors if tensor in producer for name in producer[tensor].input]
    while stack:
        tensor = stack.pop()
        if tensor and tensor not in seen:
            seen.add(tensor)
            if tensor in producer:
                stack.extend(producer[tensor].input)
    return seen


def residual_adds(model: onnx.ModelProto, head: list[str]) -> list[tuple[onnx.NodeProto, int]]:
    """Each backbone Add with the index of its main-branch input.

    A ResNet block ends in ``Add(main, identity)``: ``main`` is the output of the branch's last Conv;
    ``identity`` is the block's input, or a downsample Conv reading it. The main input is the one
    whose Conv is computed from the block's input; the operand order is not relied on. Q→DQ pairs
    on either input are looked through, so this answers for the FP32 graph and the quantized one.

    Raises:
        ExportError: A backbone Add (outside ``head``) is not such a residual Add.
    """
    producer = producers(model)

    def is_main(add: onnx.NodeProto, index: int) -> bool:
        conv = producer.get(pair_source(add.input[index], producer))
        if conv is None or conv.op_type != "Conv":
            return False
        identity = pair_source(add.input[1 - index], producer)
        downsample = producer.get(identity)
        block_input = identity
        if downsample is not None and downsample.op_type == "Conv":
            block_input = pair_source(downsample.input[0], producer)
        return block_input in _ancestors([pair_source(conv.input[0], producer)], producer)

    adds = []
    for add in model.graph.node:
        if add.op_type != "Add" or add.name in head:
            continue
        mains = [index for index in (0, 1) if len(add.input) == 2 and is_main(add, index)]
        if len(mains) != 1:
            raise ExportError(
                f"Add {add.name!r} is not a ResNet residual Add (a block's last Conv plus its identity); "
                "the Q/DQ placement for TensorRT expects one"
            )
        adds.append((add, mains[0]))
    return adds


def check_placement(model: onnx.ModelProto, head: list[str]) -> None:
    """Checks that Q/DQ pairs sit where TensorRT's explicit-quantization guidance puts them.

    - Every backbone Conv reads its activation through a Q→DQ pair and its weights through a
      DequantizeLinear of an INT8 initializer (quantize all inputs of weighted operations).
    - No Q/DQ pair reads a Conv's output (a pair between a Conv and its ReLU or residual Add keeps
      TensorRT from fusing them), except a downsample Conv's output read as a residual identity.
    - Each residual Add reads its identity through a Q→DQ pair and its main branch straight from the
      Conv, so that TensorRT fuses Conv + Add + ReLU in INT8; no Q/DQ pair reads an Add's output.

    Raises:
        ExportError: A rule is broken, or a backbone Add is not a residual Add.
    """
    producer = producers(model)
    constants = {i.name: i for i in model.graph.initializer}
    adds = residual_adds(model, head)
    identities = set()
    for add, main in adds:
        if _is_pair_output(add.input[main], producer):
            raise ExportError(
                f"residual Add {add.name!r} reads its main branch through a Q/DQ pair; "
                "TensorRT then cannot fuse the Conv with the Add and its ReLU"
            )
        if not _is_pair_output(add.input[1 - main], producer):
            raise ExportError(f"residual Add {add.name!r} reads its identity in FP32; TensorRT needs it quantized")
        identities.add(add.input[1 - main])
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.name in head:
            continue
        if node.op_type == "Conv":
            weights = producer.get(node.input[1])
            quantized_weights = (
                weights is not None
                and weights.op_type == "DequantizeLinear"
                and weights.input[0] in constants
                and constants[weights.input[0]].data_type == onnx.TensorProto.INT8
            )
            if not _is_pair_output(node.input[0], producer) or not quantized_weights:
                raise ExportError(f"Conv {node.name!r} does not read a quantized input and INT8 weights")
        if node.op_type != "QuantizeLinear" or node.input[0] not in producer:
            continue
        upstream = producer[node.input[0]]
        dequantized = [out for dq in readers.get(node.output[0], []) for out in dq.output]
        if upstream.op_type == "Add":
            raise ExportError(
                f"{node.name!r} quantizes the output of Add {upstream.name!r}; "
                "TensorRT then cannot fuse the Add with its ReLU"
            )
        if upstream.op_type == "Conv" and not set(dequantized) <= identities:
            consumers = sorted({r.op_type for out in dequantized for r in readers.get(out, [])})
            raise ExportError(
                f"{node.name!r} quantizes the output of Conv {upstream.name!r} (read by {', '.join(consumers)}); "
                "TensorRT then cannot fuse the Conv with its consumer"
            )


def check_int8_graph(model: onnx.ModelProto) -> int:
    """Both rules on ``model`` (its head found as the FP16 graph's is); returns the Q/DQ node count.

    Raises:
        ExportError: A rule is broken.
    """
    head = head_nodes(model)
    count = check_qdq(model, head)
    check_placement(model, head)
    return count


def check_int8_file(path: Path, fix: str) -> None:
    """:func:`check_int8_graph` on the graph stored at ``path``; ``fix`` says how to remake it.

    Raises:
        StaleArtifactError: A rule is broken (INT8 graphs made before the TensorRT Q/DQ placement
            break the placement rule).
    """
    try:
        check_int8_graph(onnx.load(str(path), load_external_data=False))
    except ExportError as exc:
        raise StaleArtifactError(f"{path}: {exc}; {fix}") from exc
