"""What an artifact says about itself: one record, written by ``export``, read by everyone else.

Every artifact the toolkit builds (ONNX graph, typed graph, TensorRT plan) records the same facts:
the class order of its outputs, the model config (input size, preprocessing, decision threshold,
mask), the batch range, its tensor names, its precision and where it came from. ONNX graphs carry
them in ``metadata_props`` (one entry per fact: text as it is, anything else as JSON), every
artifact in the manifest beside it (``core.manifest``). :class:`ArtifactFacts` is the one reader
and writer of that layout; :class:`ServingFacts` is the subset a prediction depends on, and its
comparison names what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._digest import DIGEST, check_digest, digest
from ._values import flag, json_list, text, whole
from .config import ModelConfig, Preprocessing, validate_class_names
from .errors import ClassNamesMismatchError, ConfigError, InputFileError

# 2: facts carry their digest (``facts_sha256``). A change to what ``to_dict`` writes for a key
# already written bumps the version: the digest is checked over the keys as they were written.
# 3: the input may be uint8 pixels. Artifacts with a float32 input still write 2, so that readers of
# version 2 read them; a uint8-input artifact writes 3, so that they refuse it instead of feeding floats.
FORMAT_VERSION = 3
_FLOAT_INPUT_VERSION = 2
UNKNOWN_PLATFORM = "unknown"
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
HARDWARE_COMPAT: tuple[str, ...] = ("none", "ampere+")
# What an artifact's image input is: preprocessed float32 [B, 3, S, S], or resized uint8 pixels
# [B, S, S, 3] that the artifact itself scales, normalises and transposes (``export.uint8_input``).
INPUT_FORMATS: tuple[str, ...] = ("float32", "uint8")
# What an INT8 graph is quantized for: TensorRT (symmetric S8S8 Q/DQ) or ONNX Runtime on x86 CPUs (U8S8).
INT8_TARGETS: tuple[str, ...] = ("tensorrt", "cpu")
# Config values every artifact also records at the top level, for readers without this toolkit.
_CONFIG_ECHOES = ("image_size", "decision_threshold", "mask_mode", "mask_threshold")
# Facts whose values are text: ONNX metadata holds them as they are, everything else as JSON.
_TEXT_FACTS = frozenset(
    {
        "precision",
        "mask_mode",
        "mask_sha256",
        "source_checkpoint",
        "source_checkpoint_sha256",
        "source_onnx",
        "source_onnx_sha256",
        "tensorrt_version",
        "hardware_compat",
        "build_command",
        "facts_sha256",
        "int8_target",
    }
)


def mask_sha256(mask: np.ndarray) -> str:
    """sha256 of a co-occurrence mask as the row-major bytes of a bool [N, N] array."""
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=bool).tobytes()).hexdigest()


@dataclass(frozen=True)
class ServingFacts:
    """What a prediction depends on: output order, preprocessing, threshold, batch limit, tensors.

    Attributes:
        class_names: Output order of the scores.
        config: The model's configuration (input size, preprocessing, threshold, mask mode).
        mask_sha256: Hash of the co-occurrence mask (:func:`mask_sha256`).
        precision: ``fp32``, ``fp16`` or ``int8``.
        max_batch: Largest batch the artifact takes (None: no limit, an eager model).
        input_name: Name of the image input.
        output_name: Name of the logits output.
        input_format: What the image input takes (:data:`INPUT_FORMATS`).
    """

    class_names: tuple[str, ...]
    config: ModelConfig
    mask_sha256: str
    precision: str = "fp32"
    max_batch: int | None = None
    input_name: str = "images"
    output_name: str = "logits"
    input_format: str = "float32"

    # What must agree between an artifact and the checkpoint it is compared with or served as.
    COMPARED = ("class_names", "image_size", "preprocessing", "decision_threshold", "mask_mode", "mask_sha256")

    @classmethod
    def of_model(cls, config: ModelConfig, class_names: Iterable[str], mask: np.ndarray) -> ServingFacts:
        """The facts of an eager model (FP32, no batch limit)."""
        return cls(tuple(class_names), config, mask_sha256(mask))

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def preprocessing(self) -> Preprocessing:
        return self.config.preprocessing

    @property
    def decision_threshold(self) -> float:
        return self.config.decision_threshold

    @property
    def mask_mode(self) -> str:
        return self.config.mask_mode

    @property
    def input_item_shape(self) -> tuple[int, int, int]:
        """One image's input: [3, S, S] preprocessed floats, or [S, S, 3] resized pixels."""
        return input_item_shape(self.input_format, self.image_size)

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.input_format == "uint8" else np.float32)

    def mismatches(self, other: ServingFacts) -> list[str]:
        """Names of the :data:`COMPARED` facts that differ between ``self`` and ``other``."""
        return [name for name in self.COMPARED if getattr(self, name) != getattr(other, name)]

    def require_same_model(self, other: ServingFacts, what: str) -> None:
        """Refuses ``other`` (the facts of ``what``) unless it serves the same model as ``self``.

        Raises:
            ClassNamesMismatchError: ``what`` was built for other classes or another class order.
            ConfigError: Another compared fact differs.
        """
        differ = self.mismatches(other)
        if differ:
            error = ClassNamesMismatchError if "class_names" in differ else ConfigError
            raise error(
                f"{what} records other {', '.join(differ)} than the checkpoint; it was not exported from this "
                "checkpoint: export it again, or name its own checkpoint"
            )


@dataclass(frozen=True)
class CalibrationFacts:
    """What an INT8 graph's activation ranges were computed from.

    Attributes:
        method: The method with its parameters, e.g. ``minmax`` or ``percentile(99.999)``.
        images: Number of calibration images.
        files_sha256: Fingerprint of the calibration files (names and contents).
        target: What the graph is quantized for (:data:`INT8_TARGETS`): ``tensorrt`` (symmetric INT8,
            the graph an engine is built from) or ``cpu`` (ONNX Runtime's U8S8 on x86).
    """

    method: str
    images: int
    files_sha256: str
    target: str = "tensorrt"

    def __post_init__(self) -> None:
        if self.target not in INT8_TARGETS:
            raise ConfigError(f"INT8 target {self.target!r} is none of {', '.join(INT8_TARGETS)}")


@dataclass(frozen=True)
class EngineFacts:
    """How a TensorRT plan was built, and so where it may run.

    Attributes:
        tensorrt_version: The TensorRT that built it (the imported module's own version).
        gpu_name: The GPU it was built on.
        compute_capability: That GPU's (major, minor).
        opt_batch: The batch its profile is tuned for.
        hardware_compat: ``none`` (this GPU's compute capability only) or ``ampere+``.
        version_compatible: Built to run on later TensorRT versions (embeds a lean runtime).
        builder_optimization_level: TensorRT's builder optimization level, 0..5.
        workspace_mib: Builder workspace.
        build_seconds: How long the build took.
        build_command: The command that builds it again.
        platform: The OS and CPU architecture it was built on (``linux-x86_64``): plans are not
            portable across platforms. ``unknown`` in manifests written before it was recorded.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    opt_batch: int
    hardware_compat: str
    version_compatible: bool
    builder_optimization_level: int
    workspace_mib: int
    build_seconds: float
    build_command: str
    platform: str


@dataclass(frozen=True)
class ArtifactFacts:
    """Everything an artifact records about itself (see the module docstring).

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``: what the artifact computes in.
        class_names: Output order of the logits.
        config: The model's configuration.
        mask_sha256: Hash of the co-occurrence mask constant.
        min_batch: Smallest batch accepted.
        max_batch: Largest batch accepted.
        source_checkpoint: The checkpoint it was exported from.
        source_checkpoint_sha256: That checkpoint's sha256.
        opset: ONNX opset of the export.
        exporter: Versions of the tools that exported it, as sorted (tool, version) pairs.
        input_name: Name of the image input.
        output_name: Name of the logits output, [batch, N] float32.
        input_format: What the image input takes (:data:`INPUT_FORMATS`): ``float32`` [batch, 3, S, S]
            preprocessed images, or ``uint8`` [batch, S, S, 3] resized pixels.
        source_onnx: For a graph made from another graph, or a plan: the graph it was made from.
        source_onnx_sha256: That graph's sha256.
        calibration: For INT8: what its activation ranges were computed from.
        engine: For a TensorRT plan: how it was built.

    Raises:
        ConfigError: A value is out of range or contradicts another (on construction).
    """

    precision: str
    class_names: tuple[str, ...]
    config: ModelConfig
    mask_sha256: str
    max_batch: int
    source_checkpoint: str
    source_checkpoint_sha256: str
    opset: int
    exporter: tuple[tuple[str, str], ...]
    min_batch: int = 1
    input_name: str = "images"
    output_name: str = "logits"
    input_format: str = "float32"
    source_onnx: str | None = None
    source_onnx_sha256: str | None = None
    calibration: CalibrationFacts | None = None
    engine: EngineFacts | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", validate_class_names(self.class_names, "the artifact's class names"))
        object.__setattr__(self, "exporter", tuple(sorted(dict(self.exporter).items())))
        problems = [
            (self.precision in PRECISIONS, f"precision {self.precision!r} is none of {', '.join(PRECISIONS)}"),
            (
                self.input_format in INPUT_FORMATS,
                f"input format {self.input_format!r} is none of {', '.join(INPUT_FORMATS)}",
            ),
            (
                len(self.class_names) == self.config.num_classes,
                f"{len(self.class_names)} class names for a model of {self.config.num_classes} classes",
            ),
            (
                1 <= self.min_batch <= self.max_batch,
                f"batch range {self.min_batch}..{self.max_batch} is not 1 ≤ min ≤ max",
            ),
            ((self.calibration is None) or self.precision == "int8", "calibration facts on a non-INT8 artifact"),
            (
                self.engine is None or self.min_batch <= self.engine.opt_batch <= self.max_batch,
                "the plan's opt batch lies outside its batch range",
            ),
            (
                self.engine is None or self.engine.hardware_compat in HARDWARE_COMPAT,
                f"hardware compatibility is none of {', '.join(HARDWARE_COMPAT)}",
            ),
        ]
        for ok, problem in problems:
            if not ok:
                raise ConfigError(problem)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def serving(self) -> ServingFacts:
        """The subset a prediction depends on."""
        return ServingFacts(
            self.class_names,
            self.config,
            self.mask_sha256,
            self.precision,
            self.max_batch,
            self.input_name,
            self.output_name,
            self.input_format,
        )

    def made_into(
        self, precision: str, source_name: str, source_sha256: str, calibration: CalibrationFacts | None = None
    ) -> ArtifactFacts:
        """The facts of a graph of ``precision`` made from the graph these facts describe."""
        return dataclasses.replace(
            self,
            precision=precision,
            source_onnx=source_name,
            source_onnx_sha256=source_sha256,
            calibration=calibration,
        )

    def built_into(
        self, engine: EngineFacts, *, min_batch: int, max_batch: int, source_name: str, source_sha256: str
    ) -> ArtifactFacts:
        """The facts of a plan built from the graph these facts describe, with its batch profile."""
        return dataclasses.replace(
            self,
            engine=engine,
            min_batch=min_batch,
            max_batch=max_batch,
            source_onnx=source_name,
            source_onnx_sha256=source_sha256,
        )

    def to_dict(self) -> dict[str, Any]:
        """The facts as plain data, in the layout artifacts record (config echoes included)."""
        config = self.config.to_dict()
        shape = ["batch", *input_item_shape(self.input_format, self.config.image_size)]
        data: dict[str, Any] = {
            "format_version": FORMAT_VERSION if self.input_format == "uint8" else _FLOAT_INPUT_VERSION,
            "precision": self.precision,
            "class_names": list(self.class_names),
            "input": {"name": self.input_name, "shape": shape, "dtype": self.input_format},
            "output": {"name": self.output_name, "shape": ["batch", len(self.class_names)], "dtype": "float32"},
            "batch": {"min": self.min_batch, "max": self.max_batch},
            "preprocessing": config["preprocessing"],
            **{name: config[name] for name in _CONFIG_ECHOES},
            "mask_sha256": self.mask_sha256,
            "source_checkpoint": self.source_checkpoint,
            "source_checkpoint_sha256": self.source_checkpoint_sha256,
            "model_config": config,
            "opset": self.opset,
            "exporter": dict(self.exporter),
        }
        if self.source_onnx is not None:
            data |= {"source_onnx": self.source_onnx, "source_onnx_sha256": self.source_onnx_sha256}
        if self.calibration is not None:
            calibration = dataclasses.asdict(self.calibration)
            target = calibration.pop("target")
            data["calibration"] = calibration
            if target != "tensorrt":  # TensorRT graphs keep the facts they had before targets: older readers agree
                data["int8_target"] = target
        if self.engine is not None:
            engine = self.engine
            data |= {
                "profile": {"min": self.min_batch, "opt": engine.opt_batch, "max": self.max_batch},
                "tensorrt_version": engine.tensorrt_version,
                "gpu": {"name": engine.gpu_name, "compute_capability": list(engine.compute_capability)},
                "hardware_compat": engine.hardware_compat,
                "version_compatible": engine.version_compatible,
                "builder_optimization_level": engine.builder_optimization_level,
                "workspace_mib": engine.workspace_mib,
                "build_seconds": engine.build_seconds,
                "build_command": engine.build_command,
                "platform": engine.platform,
            }
        data[DIGEST] = digest(data)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> ArtifactFacts:
        """Inverse of :meth:`to_dict`; keys it does not know (a manifest's own) are left aside.

        Raises:
            InputFileError: A fact is missing, malformed, or contradicts another; the message
                names ``where`` and what is wrong.
        """
        if "format_version" not in data and "model_config" not in data:
            raise InputFileError(
                f"{where} does not record its serving facts (class names, input size, preprocessing, threshold): "
                "it was not made by this toolkit; export it with python -m export.to_onnx"
            )
        try:
            version = data["format_version"]
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise ConfigError(f"facts format version {version!r}; this toolkit reads up to {FORMAT_VERSION}")
            config = ModelConfig.from_dict(data["model_config"])
            echoes = {"preprocessing": data["preprocessing"], **{name: data[name] for name in _CONFIG_ECHOES}}
            recorded = config.to_dict()
            contradicted = sorted(name for name, value in echoes.items() if recorded[name] != value)
            if contradicted:
                raise ConfigError(f"its {', '.join(contradicted)} contradict its model config")
            facts = cls(
                precision=text(data["precision"]),
                class_names=tuple(json_list(data["class_names"])),
                config=config,
                mask_sha256=text(data["mask_sha256"]),
                min_batch=whole(data["batch"]["min"]),
                max_batch=whole(data["batch"]["max"]),
                source_checkpoint=text(data["source_checkpoint"]),
                source_checkpoint_sha256=text(data["source_checkpoint_sha256"]),
                opset=whole(data["opset"]),
                exporter=tuple((str(k), str(v)) for k, v in dict(data["exporter"]).items()),
                input_name=text(data["input"]["name"]),
                output_name=text(data["output"]["name"]),
                input_format=_input_format(data["input"], config.image_size),
                source_onnx=text(data["source_onnx"]) if "source_onnx" in data else None,
                source_onnx_sha256=text(data["source_onnx_sha256"]) if "source_onnx" in data else None,
                calibration=_calibration(data) if "calibration" in data else None,
                engine=_engine(data) if "tensorrt_version" in data else None,
            )
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            problem = f"{exc.args[0]!r} is missing" if isinstance(exc, KeyError) else str(exc)
            raise InputFileError(
                f"{where} does not record valid artifact facts ({problem}); use artifacts made by "
                "export.to_onnx, calibration.quantize or export.build_engine, and do not edit their facts"
            ) from exc
        check_digest(data, facts.to_dict(), where)
        return facts

    def to_metadata(self) -> dict[str, str]:
        """The facts as ONNX ``metadata_props``: text facts as they are, the others JSON-encoded."""
        return {key: value if key in _TEXT_FACTS else json.dumps(value) for key, value in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, pairs: Iterable[tuple[str, str]], where: str) -> ArtifactFacts:
        """Inverse of :meth:`to_metadata`, from (key, value) pairs as ONNX or ONNX Runtime give them.

        Raises:
            InputFileError: As :meth:`from_dict`; also when a value that should be JSON is not.
        """
        data = {}
        for key, value in pairs:
            try:
                data[key] = value if key in _TEXT_FACTS else json.loads(value)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise InputFileError(f"{where}: its metadata {key!r} is not JSON; the file was edited") from exc
        return cls.from_dict(data, where)


def input_item_shape(input_format: str, image_size: int) -> tuple[int, int, int]:
    """One image's input in ``input_format``: [3, S, S] (float32) or [S, S, 3] (uint8)."""
    return (image_size, image_size, 3) if input_format == "uint8" else (3, image_size, image_size)


def _input_format(recorded: Mapping[str, Any], image_size: int) -> str:
    """The input format the ``input`` fact records, its shape checked against it."""
    input_format = text(recorded["dtype"])
    if input_format in INPUT_FORMATS and json_list(recorded["shape"])[1:] != list(
        input_item_shape(input_format, image_size)
    ):
        raise ValueError(f"a {input_format} input of shape {recorded['shape']!r}")
    return input_format


def _calibration(data: Mapping[str, Any]) -> CalibrationFacts:
    calibration = data["calibration"]
    return CalibrationFacts(
        text(calibration["method"]),
        whole(calibration["images"]),
        text(calibration["files_sha256"]),
        text(data.get("int8_target", "tensorrt")),
    )


def _engine(data: Mapping[str, Any]) -> EngineFacts:
    capability = json_list(data["gpu"]["compute_capability"])
    if len(capability) != 2:
        raise ValueError(f"compute capability {capability!r} is not (major, minor)")
    return EngineFacts(
        tensorrt_version=text(data["tensorrt_version"]),
        gpu_name=text(data["gpu"]["name"]),
        compute_capability=(whole(capability[0], 0), whole(capability[1], 0)),
        opt_batch=whole(data["profile"]["opt"]),
        hardware_compat=text(data["hardware_compat"]),
        version_compatible=flag(data["version_compatible"]),
        builder_optimization_level=whole(data["builder_optimization_level"], 0),
        workspace_mib=whole(data["workspace_mib"]),
        build_seconds=float(data["build_seconds"]),
        build_command=text(data["build_command"]),
        platform=text(data["platform"]) if "platform" in data else UNKNOWN_PLATFORM,
    )
