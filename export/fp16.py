"""The FP16 graph: FP16 backbone, FP32 head, FP32 inputs and outputs.

Built with onnxconverter-common's ``float16`` converter and a block list. Everything from the
global max pool onwards stays FP32: the linear layer, the masked attention with its fill
constant, the softmax and the residual. The head is a few thousand operations against the
backbone's billions, so this costs nothing measurable and removes every FP16 hazard of the
masked softmax (a fill or a logit overflowing to ±inf, then NaN).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnxconverter_common import float16

from core.errors import ExportError

logger = logging.getLogger(__name__)

# The global max pool that starts the head; everything downstream of it stays FP32.
_HEAD_START = "ReduceMax"
# Largest finite float16: constants beyond it (the masked-softmax fill) are clamped to it, not to
# the converter's default 1e4, which a logit could undercut.
_FP16_MAX = 65504.0
# Smallest positive float16 (a subnormal): smaller weights are clamped to it rather than to the
# converter's default 1e-7.
_FP16_MIN_POSITIVE = 2.0**-24


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes at and downstream of the head's global max pool.

    Raises:
        ExportError: The graph has no single global max pool (not a masked-GAT classifier).
    """
    starts = [node for node in model.graph.node if node.op_type == _HEAD_START]
    if len(starts) != 1:
        raise ExportError(f"expected one {_HEAD_START} (the head's global max pool) in the graph, found {len(starts)}")
    reached = set(starts[0].output)
    names = [starts[0].name]
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if any(name in reached for name in node.input):
            reached.update(node.output)
            names.append(node.name)
    return names


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Converts an FP32 classifier graph to FP16, keeping the head in FP32 and the I/O in FP32.

    Two repairs follow the converter, which keeps blocked nodes' arithmetic in FP32 but not the
    tensors between them: FP16 round trips between FP32 nodes are removed (an attention logit
    above 65504 would become inf there), and constants that only FP32 nodes read are restored to
    their exact FP32 values (the mask fill stays float32's minimum, weights keep all their bits).
    """
    blocked = head_nodes(model)
    float_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    fp32_constants = {
        i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
    }
    source = onnx.ModelProto()
    source.CopyFrom(model)  # the converter edits its argument
    logger.info("FP16 graph: %d head nodes kept in FP32", len(blocked))
    with warnings.catch_warnings(record=True) as clamped:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            source,
            keep_io_types=True,
            min_positive_val=_FP16_MIN_POSITIVE,
            max_finite_val=_FP16_MAX,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST),
            node_block_list=blocked,
        )
    logger.debug("FP16 graph: %d constants clamped to the float16 range", len(clamped))
    _restore_fp32_constants(converted, fp32_constants)
    _remove_fp16_round_trips(converted)
    _restore_fp32_outputs(converted, float_outputs)
    _drop_stale_value_info(converted)
    return converted


def _drop_stale_value_info(model: onnx.ModelProto) -> None:
    """Type annotations of tensors the repairs removed (shape inference re-creates the rest)."""
    graph = model.graph
    alive = {name for node in graph.node for name in (*node.input, *node.output)}
    kept = [v for v in graph.value_info if v.name in alive]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _casts_to(node: onnx.NodeProto, dtype: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == dtype for a in node.attribute)


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def _restore_fp32_constants(model: onnx.ModelProto, originals: dict[str, np.ndarray]) -> None:
    """``Cast(fp16 constant → FP32)`` becomes the original FP32 constant."""
    graph = model.graph
    fp16_constants = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    for cast in [n for n in graph.node if _casts_to(n, onnx.TensorProto.FLOAT)]:
        constant = cast.input[0]
        if constant in fp16_constants and constant in originals:
            graph.initializer.append(numpy_helper.from_array(originals[constant], cast.output[0]))
            graph.node.remove(cast)
    used = {name for node in graph.node for name in node.input}
    unused = [i for i in graph.initializer if i.name not in used]
    for initializer in unused:
        graph.initializer.remove(initializer)


def _remove_fp16_round_trips(model: onnx.ModelProto) -> None:
    """``Cast(→FP16)`` whose every reader is a ``Cast(→FP32)``: both go, the FP32 tensor flows on."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for down in [n for n in graph.node if _casts_to(n, onnx.TensorProto.FLOAT16)]:
        half = down.output[0]
        ups = readers.get(half, [])
        if not ups or half in outputs or not all(_casts_to(up, onnx.TensorProto.FLOAT) for up in ups):
            continue
        if any(up.output[0] in outputs for up in ups):
            continue
        for up in ups:
            _rename_uses(graph, up.output[0], down.input[0])
            graph.node.remove(up)
        graph.node.remove(down)


def _restore_fp32_outputs(model: onnx.ModelProto, names: set[str]) -> None:
    """Undoes the converter's final Cast to FP16 after a blocked (FP32) node that produces a
    graph output: ``keep_io_types`` is not honoured there."""
    graph = model.graph
    for output in graph.output:
        if output.name not in names or output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            continue
        producer = next((node for node in graph.node if output.name in node.output), None)
        if producer is None or not _casts_to(producer, onnx.TensorProto.FLOAT16):
            raise ExportError(f"the FP16 converter left output {output.name!r} in FP16; cannot restore FP32 I/O")
        source = producer.input[0]
        graph.node.remove(producer)
        for node in graph.node:
            node.output[:] = [output.name if name == source else name for name in node.output]
            node.input[:] = [output.name if name == source else name for name in node.input]
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
