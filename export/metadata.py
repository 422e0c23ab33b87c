"""An ONNX graph's facts: built from the model it was exported from, written into the graph's
``metadata_props``, and read back with a check that the graph's content is what they say."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from core.errors import InputFileError
from core.facts import ArtifactFacts, mask_sha256
from core.files import sha256_file

if TYPE_CHECKING:
    from models.classifier import MaskedGATClassifier


def artifact_facts(
    model: MaskedGATClassifier,
    checkpoint: str | os.PathLike,
    *,
    precision: str,
    opset: int,
    max_batch: int,
    input_format: str = "float32",
) -> ArtifactFacts:
    """The facts of a graph exported from ``model`` (read from ``checkpoint``)."""
    import onnxscript
    import torch

    return ArtifactFacts(
        precision=precision,
        class_names=model.class_names,
        config=model.config,
        mask_sha256=mask_sha256(model.mask.cpu().numpy()),
        max_batch=max_batch,
        input_format=input_format,
        source_checkpoint=str(checkpoint),
        source_checkpoint_sha256=sha256_file(checkpoint),
        opset=opset,
        exporter=(("onnx", onnx.__version__), ("onnxscript", onnxscript.__version__), ("torch", torch.__version__)),
    )


def write_metadata(graph: onnx.ModelProto, facts: ArtifactFacts) -> None:
    """Replaces ``graph``'s metadata_props with ``facts``."""
    del graph.metadata_props[:]
    for key, value in facts.to_metadata().items():
        graph.metadata_props.add(key=key, value=value)


def graph_precision(graph: onnx.ModelProto) -> str:
    """The precision a graph's content shows: ``int8`` (Q/DQ nodes), ``fp16`` (FP16 weights) or ``fp32``."""
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.graph.node):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer):
        return "fp16"
    return "fp32"


def read_graph(path: str | os.PathLike, *, weights: bool = True) -> tuple[onnx.ModelProto, ArtifactFacts]:
    """A toolkit graph and its facts, refused when its precision label is not what its content is.

    Args:
        path: The ``.onnx`` file.
        weights: Also load weights stored in an external ``.data`` file (not needed for the facts).

    Raises:
        InputFileError: Missing, unreadable, without valid facts, or mislabelled.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"graph not found: {path}")
    try:
        graph = onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # protobuf raises several types for a file that is not ONNX
        raise InputFileError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    pairs = [(prop.key, prop.value) for prop in graph.metadata_props]
    if not pairs:
        raise InputFileError(f"{path} carries no toolkit metadata; export it with python -m export.to_onnx")
    facts = ArtifactFacts.from_metadata(pairs, str(path))
    content = graph_precision(graph)
    if facts.precision != content:
        raise InputFileError(f"{path} is labelled {facts.precision} but its graph is {content}")
    return graph, facts
