"""What a runner needs to know about the artifact it serves, read from the artifact's own facts.

Every artifact the toolkit writes records the same serving facts: class names (output order),
input size, preprocessing, decision threshold, batch limit and tensor names. ONNX graphs carry
them in ``metadata_props``, plans in the manifest beside them, checkpoints in their config. An
artifact without them was not made by this toolkit and is refused: serving it would mean
guessing the class order or the preprocessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import ModelConfig, Preprocessing
from core.errors import ConfigError, InputFileError

from .manifest import decode_facts

BACKEND_BY_SUFFIX = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".pt": "torch"}
BACKENDS = ("tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class ServingFacts:
    """The facts a prediction depends on.

    Attributes:
        class_names: Output order of the scores.
        image_size: Side of the square input.
        preprocessing: How an image becomes the input tensor.
        decision_threshold: Default probability threshold of a label.
        max_batch: Largest batch the artifact takes (None: no limit recorded).
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_name: Name of the image input.
        output_name: Name of the logits output.
    """

    class_names: tuple[str, ...]
    image_size: int
    preprocessing: Preprocessing
    decision_threshold: float
    max_batch: int | None
    precision: str
    input_name: str = "images"
    output_name: str = "logits"

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any], where: str) -> ServingFacts:
        """From an ONNX graph's metadata or a manifest (both written by ``export``).

        Raises:
            InputFileError: A serving fact is missing or malformed.
        """
        try:
            config = ModelConfig.from_dict(facts["model_config"])
            class_names = tuple(facts["class_names"])
            batch = facts.get("batch") or {}
            result = cls(
                class_names=class_names,
                image_size=int(facts["image_size"]),
                preprocessing=config.preprocessing,
                decision_threshold=float(facts["decision_threshold"]),
                max_batch=int(batch["max"]) if "max" in batch else None,
                precision=str(facts.get("precision", "fp32")),
                input_name=str((facts.get("input") or {}).get("name", "images")),
                output_name=str((facts.get("output") or {}).get("name", "logits")),
            )
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise InputFileError(
                f"{where} does not record its serving facts (class names, input size, preprocessing, threshold): "
                f"{exc!r}; serve only artifacts made by export.to_onnx / export.build_engine"
            ) from exc
        if len(class_names) != config.num_classes or config.image_size != result.image_size:
            raise InputFileError(f"{where}: its recorded class names or input size contradict its model config")
        return result

    @classmethod
    def from_metadata_map(cls, metadata: Mapping[str, str], where: str) -> ServingFacts:
        """From ONNX ``metadata_props`` as strings (JSON-encoded values), as ONNX Runtime returns them."""
        return cls.from_facts(decode_facts(metadata.items()), where)

    @classmethod
    def from_config(cls, config: ModelConfig, class_names: tuple[str, ...]) -> ServingFacts:
        """From a checkpoint's config (eager models have no batch limit)."""
        return cls(
            class_names=tuple(class_names),
            image_size=config.image_size,
            preprocessing=config.preprocessing,
            decision_threshold=config.decision_threshold,
            max_batch=None,
            precision="fp32",
        )


def backend_for(artifact: str, backend: str) -> str:
    """The backend that runs ``artifact``: its suffix decides under ``"auto"``; a forced one must fit.

    Raises:
        ConfigError: The backend is unknown, or cannot run this kind of file.
    """
    suffix = Path(artifact).suffix.lower()
    natural = BACKEND_BY_SUFFIX.get(suffix)
    if backend == "auto":
        if natural is None:
            raise ConfigError(
                f"{artifact}: cannot tell its backend from the suffix {suffix!r}; serve a .plan (TensorRT), "
                ".onnx (ONNX Runtime) or .pt (torch), or name the backend"
            )
        return natural
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    if natural is not None and natural != backend:
        raise ConfigError(
            f"the {backend} backend cannot run {artifact} (a {suffix} file runs on {natural}); "
            "export the artifact that backend runs, or use backend='auto'"
        )
    return backend
