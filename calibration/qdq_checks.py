"""Structural rules of a TensorRT-bound INT8 graph: symmetric INT8 Q/DQ, none in the head."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from core.errors import ExportError

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
