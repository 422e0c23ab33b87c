"""What an artifact says about itself: ONNX ``metadata_props`` and the JSON manifest beside it.

Both carry the same facts, so a deployment can check an artifact without opening it, and the
runtime can read preprocessing, class names and threshold from either.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from core.config import ModelConfig
from core.errors import ClassNamesMismatchError, ConfigError
from core.files import atomic_output, sha256_file
from runtime.manifest import decode_facts, manifest_path

if TYPE_CHECKING:
    from models.classifier import MaskedGATClassifier

FORMAT_VERSION = 1


def mask_sha256(mask: np.ndarray) -> str:
    """sha256 of the mask as row-major bytes of a bool [N, N] array."""
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=bool).tobytes()).hexdigest()


def artifact_facts(
    model: MaskedGATClassifier, checkpoint: str | os.PathLike, *, precision: str, opset: int, max_batch: int
) -> dict[str, Any]:
    """The facts every artifact built from ``model`` records."""
    import onnxscript
    import torch

    config = model.config
    return {
        "format_version": FORMAT_VERSION,
        "precision": precision,
        "class_names": list(model.class_names),
        "image_size": config.image_size,
        "input": {"name": "images", "shape": ["batch", 3, config.image_size, config.image_size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", config.num_classes], "dtype": "float32"},
        "batch": {"min": 1, "max": max_batch},
        "preprocessing": config.to_dict()["preprocessing"],
        "decision_threshold": config.decision_threshold,
        "mask_mode": config.mask_mode,
        "mask_threshold": config.mask_threshold,
        "mask_sha256": mask_sha256(model.mask.cpu().numpy()),
        "source_checkpoint": str(checkpoint),
        "source_checkpoint_sha256": sha256_file(checkpoint),
        "model_config": config.to_dict(),
        "opset": opset,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__},
    }


def set_metadata(model: onnx.ModelProto, facts: Mapping[str, Any]) -> None:
    """Replaces ``model``'s metadata_props with ``facts`` (non-string values JSON-encoded)."""
    del model.metadata_props[:]
    for key, value in facts.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """Inverse of :func:`set_metadata`."""
    return decode_facts((prop.key, prop.value) for prop in model.metadata_props)


def write_manifest(artifact: str | os.PathLike, facts: Mapping[str, Any], *, force: bool) -> Path:
    """Writes the manifest beside ``artifact``: ``facts`` plus the artifact's own sha256 and size."""
    artifact = Path(artifact)
    document = {
        **facts,
        "artifact": artifact.name,
        "artifact_sha256": sha256_file(artifact),
        "artifact_bytes": artifact.stat().st_size,
    }
    path = manifest_path(artifact)
    with atomic_output(path, force=force) as handle:
        handle.write(json.dumps(document, indent=2).encode())
    return path


def publish(staged: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves a staged artifact, then its manifest, into place: a manifest never describes an artifact
    that is not there."""
    os.replace(staged, target)
    os.replace(manifest_path(staged), manifest_path(target))


def graph_precision(model: onnx.ModelProto) -> str:
    """The precision a graph's content shows: ``int8`` (Q/DQ nodes), ``fp16`` (FP16 weights) or ``fp32``."""
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16"
    return "fp32"


# Facts a deployment reads from the artifact; each must match the checkpoint it is compared with.
SERVING_FACTS = ("class_names", "image_size", "preprocessing", "decision_threshold", "mask_mode", "mask_sha256")


def require_serving_facts(metadata: Mapping[str, Any], model: MaskedGATClassifier, artifact: str | os.PathLike) -> None:
    """Refuses ``artifact`` when its recorded serving facts are not ``model``'s.

    Raises:
        ClassNamesMismatchError: It was built for other classes.
        ConfigError: Another serving fact differs.
    """
    mismatched = mismatched_facts(metadata, model)
    if mismatched:
        error = ClassNamesMismatchError if "class_names" in mismatched else ConfigError
        raise error(
            f"{artifact} records other {', '.join(mismatched)} than the checkpoint; "
            "it was not exported from this checkpoint: export it again, or name its own checkpoint"
        )


def mismatched_facts(metadata: Mapping[str, Any], model: MaskedGATClassifier) -> list[str]:
    """Names of the serving facts in ``metadata`` that differ from ``model``'s (missing ones included)."""
    expected = serving_facts(model.config, model.class_names, model.mask.cpu().numpy())
    return [key for key in SERVING_FACTS if metadata.get(key) != expected[key]]


def serving_facts(config: ModelConfig, class_names: Sequence[str], mask: np.ndarray) -> dict[str, Any]:
    """The :data:`SERVING_FACTS` of a model, in the form artifacts record them."""
    return {
        "class_names": list(class_names),
        "image_size": config.image_size,
        "preprocessing": config.to_dict()["preprocessing"],
        "decision_threshold": config.decision_threshold,
        "mask_mode": config.mask_mode,
        "mask_sha256": mask_sha256(mask),
    }
