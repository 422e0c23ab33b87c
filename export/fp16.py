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

import onnx
from onnxconverter_common import float16

from models.errors import ExportError

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
    """Converts an FP32 classifier graph to FP16, keeping the head in FP32 and the I/O in FP32."""
    blocked = head_nodes(model)
    logger.info("FP16 graph: %d head nodes kept in FP32", len(blocked))
    with warnings.catch_warnings(record=True) as clamped:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            min_positive_val=_FP16_MIN_POSITIVE,
            max_finite_val=_FP16_MAX,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST),
            node_block_list=blocked,
        )
    logger.debug("FP16 graph: %d constants clamped to the float16 range", len(clamped))
    return converted
