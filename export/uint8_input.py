"""The uint8 input: resized pixels in, the rest of the preprocessing inside the graph.

:func:`with_uint8_input` puts ``Cast → Transpose(NHWC → NCHW) → Div(255) → Sub(mean) → Div(std)`` in
front of a float-input graph: the arithmetic of ``core.preprocessing.normalized`` in its order, on
each value as it does it (so the same float32 results), with its constants read from the facts'
preprocessing. The Cast comes first because TensorRT takes uint8 only as a network input cast to
another type; the transpose comes before the arithmetic so that it runs with one constant per
channel plane (measured faster in ONNX Runtime than broadcasting over the last axis). The graph then
takes uint8 [B, S, S, 3], a quarter of the bytes to copy, and an engine does the arithmetic on the
GPU. These nodes stay FP32 in every precision (they are added after the FP16 conversion, and
calibration quantizes the float graph that :func:`without_uint8_input` gives back, then adds them
again), so the network sees the values the CPU definition gives.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.config import Preprocessing
from core.errors import ExportError

PREFIX = "uint8_input/"
# The float tensor the prefix hands the network: what the float graph's input was.
NORMALIZED = PREFIX + "normalized"


def with_uint8_input(graph: onnx.ModelProto, preprocessing: Preprocessing) -> onnx.ModelProto:
    """A copy of the float-input ``graph`` whose input (same name) is uint8 [batch, S, S, 3].

    Raises:
        ExportError: The graph does not have one float32 [batch, 3, S, S] input, or already has the prefix.
    """
    result = onnx.ModelProto()
    result.CopyFrom(graph)
    (image,) = _float_input(result)
    name, dims = image.name, image.type.tensor_type.shape.dim
    batch, size = onnx.TensorShapeProto.Dimension(), dims[2].dim_value
    batch.CopyFrom(dims[0])
    for node in result.graph.node:
        node.input[:] = [NORMALIZED if used == name else used for used in node.input]
    constants = {
        "scale": np.float32(255.0),
        "mean": np.asarray(preprocessing.mean, dtype=np.float32).reshape(1, 3, 1, 1),
        "std": np.asarray(preprocessing.std, dtype=np.float32).reshape(1, 3, 1, 1),
    }
    result.graph.initializer.extend(numpy_helper.from_array(value, PREFIX + key) for key, value in constants.items())
    steps = [
        helper.make_node("Cast", [name], [PREFIX + "float"], PREFIX + "cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", [PREFIX + "float"], [PREFIX + "nchw"], PREFIX + "nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Div", [PREFIX + "nchw", PREFIX + "scale"], [PREFIX + "scaled"], PREFIX + "scale"),
        helper.make_node("Sub", [PREFIX + "scaled", PREFIX + "mean"], [PREFIX + "centred"], PREFIX + "mean"),
        helper.make_node("Div", [PREFIX + "centred", PREFIX + "std"], [NORMALIZED], PREFIX + "std"),
    ]
    nodes = steps + list(result.graph.node)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    image.type.tensor_type.elem_type = TensorProto.UINT8
    del dims[:]
    dims.add().CopyFrom(batch)
    for extent in (size, size, 3):
        dims.add(dim_value=extent)
    return result


def without_uint8_input(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The float-input graph :func:`with_uint8_input` was given (the prefix's nodes and constants removed).

    Raises:
        ExportError: ``graph`` does not start with that prefix.
    """
    result = onnx.ModelProto()
    result.CopyFrom(graph)
    owned = [node for node in result.graph.node if node.name.startswith(PREFIX)]
    (image,) = result.graph.input
    if len(owned) != 5 or image.type.tensor_type.elem_type != TensorProto.UINT8:
        raise ExportError("the graph does not start with the uint8 input's preprocessing nodes")
    for node in owned:
        result.graph.node.remove(node)
    for node in result.graph.node:
        node.input[:] = [image.name if used == NORMALIZED else used for used in node.input]
    for field in (result.graph.initializer, result.graph.value_info):
        for entry in [entry for entry in field if entry.name.startswith(PREFIX)]:
            field.remove(entry)
    dims = image.type.tensor_type.shape.dim
    batch, size = onnx.TensorShapeProto.Dimension(), dims[1].dim_value
    batch.CopyFrom(dims[0])
    image.type.tensor_type.elem_type = TensorProto.FLOAT
    del dims[:]
    dims.add().CopyFrom(batch)
    for extent in (3, size, size):
        dims.add(dim_value=extent)
    return result


def _float_input(graph: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inputs = list(graph.graph.input)
    if len(inputs) != 1:
        raise ExportError(f"expected one image input, found {len(inputs)}")
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    shape_ok = len(dims) == 4 and dims[1].dim_value == 3 and dims[2].dim_value == dims[3].dim_value > 0
    if tensor.elem_type != TensorProto.FLOAT or not shape_ok:
        raise ExportError(f"input {inputs[0].name!r} is not float32 [batch, 3, S, S]; it cannot take a uint8 input")
    return inputs


def float_part(graph: onnx.ModelProto, input_format: str) -> onnx.ModelProto:
    """The graph as it takes float32 images: ``graph`` itself, or without its uint8 prefix."""
    return without_uint8_input(graph) if input_format == "uint8" else graph


def in_input_format(graph: onnx.ModelProto, input_format: str, preprocessing: Preprocessing) -> onnx.ModelProto:
    """The float-input ``graph`` taking ``input_format``: itself, or with the uint8 prefix."""
    return with_uint8_input(graph, preprocessing) if input_format == "uint8" else graph
