"""Structural checks of an exported graph: ONNX's full checker, strict shape inference, and the
co-occurrence mask as a constant holding exactly the checkpoint's values."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from core.errors import ExportError
from core.facts import mask_sha256

# What consumes the mask: Where in softmax mode (keep or fill), Mul in seed mode (e * mask).
_MASK_CONSUMER = {"softmax": "Where", "seed": "Mul"}


def check_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Runs ``onnx.checker`` (full check) and strict shape inference; returns the inferred model.

    Raises:
        ExportError: The graph is invalid or its shapes do not infer.
    """
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported graph is invalid: {str(exc).splitlines()[0]}") from exc


def find_mask_constant(model: onnx.ModelProto, mask: np.ndarray, mode: str) -> str:
    """Name of the initializer that holds the co-occurrence mask.

    It must equal ``mask`` exactly (bool, or 0/1 float in seed mode), be no graph input, and feed
    the masking node directly, so the mask depends on nothing but constants.

    Raises:
        ExportError: No initializer qualifies.
    """
    graph = model.graph
    inputs = {i.name for i in graph.input}
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    for initializer in graph.initializer:
        if tuple(initializer.dims) != mask.shape or initializer.name in inputs:
            continue
        values = numpy_helper.to_array(initializer)
        if values.dtype != bool and not np.isin(values, (0, 1)).all():
            continue
        if np.array_equal(values.astype(bool), mask) and _MASK_CONSUMER[mode] in consumers.get(initializer.name, ()):
            return initializer.name
    raise ExportError(
        f"no constant in the graph holds the checkpoint's {mask.shape[0]}x{mask.shape[0]} mask feeding a "
        f"{_MASK_CONSUMER[mode]} node; the export lost or altered the mask"
    )


def mask_of_graph(model: onnx.ModelProto, sha256: str, size: int) -> np.ndarray:
    """The [size, size] 0/1 constant whose bool form has the recorded ``sha256``, as bool.

    Raises:
        ExportError: No constant matches: the graph lost or altered its mask.
    """
    for initializer in model.graph.initializer:
        if tuple(initializer.dims) != (size, size):
            continue
        values = numpy_helper.to_array(initializer)
        if (values.dtype == bool or np.isin(values, (0, 1)).all()) and mask_sha256(values.astype(bool)) == sha256:
            return values.astype(bool)
    raise ExportError(f"no {size}x{size} constant in the graph matches the recorded mask sha256 {sha256[:12]}…")
