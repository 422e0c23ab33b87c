"""ONNX Runtime runner: a graph made by ``export``, in the session ``onnxruntime_session`` builds."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from core.errors import ConfigError, InputFileError, StaleArtifactError
from core.facts import ArtifactFacts, ServingFacts
from core.manifest import Manifest, manifest_path, read_manifest

from .backends import one_by_one
from .onnxruntime_session import load_session, onnxruntime_errors

logger = logging.getLogger(__name__)


class OnnxRuntimeRunner:
    """Runs an ONNX graph made by ``export`` (``with OnnxRuntimeRunner(path) as r: r.infer(feed)``).

    ``device="auto"`` takes CUDA when this ONNX Runtime has it. ``InferenceSession.run`` is
    thread-safe, so one runner serves many threads.
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, device: str = "auto", threads: int | None = None) -> None:
        self.path = Path(path)
        self.device = self.device_asked = device
        self.threads = threads
        self.session = None
        self.facts: ServingFacts | None = None
        self._outputs: list[str] = []

    def __enter__(self) -> OnnxRuntimeRunner:
        manifest = manifest_beside(self.path)  # checked before the session is built: a refusal is quick
        self.session = load_session(self.path, device=self.device_asked, threads=self.threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        facts = ArtifactFacts.from_metadata(meta.items(), str(self.path))
        if manifest is not None and manifest.facts != facts:
            raise _stale(self.path)
        self.facts = facts.serving()
        check_graph_io(self.path, self.session.get_inputs(), self.session.get_outputs(), facts)
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        logger.debug("%s on %s", self.path.name, ", ".join(self.providers))
        return self

    def __exit__(self, *exc_info) -> None:
        self.session = None

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, in priority order."""
        return list(self.session.get_providers()) if self.session else []

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the graph on ``feed`` (input name → array); returns output name → array.

        Raises:
            InferenceError: ONNX Runtime failed to run it.
        """
        if self.session is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        with onnxruntime_errors(f"{self.path.name}: ONNX Runtime failed to run the batch"):
            return dict(zip(self._outputs, self.session.run(self._outputs, feed), strict=True))

    def infer_many(self, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """:meth:`infer` of each feed in turn (ONNX Runtime's ``run`` returns when the batch is done)."""
        return one_by_one(self.infer, feeds)


def check_graph_io(path: Path, inputs, outputs, facts: ArtifactFacts) -> None:
    """The graph's own inputs and outputs (ONNX Runtime's ``NodeArg``s) are what its facts say:
    one input of the facts' format (float32 [batch, 3, S, S] or uint8 [batch, S, S, 3]) and a float32
    output [batch, N] of the named tensors, S the image size, N the class count; a fixed batch
    dimension only where the facts' range is that one batch.

    Raises:
        InputFileError: They differ; the message names what.
    """
    serving = facts.serving()
    classes = len(facts.class_names)
    if [i.name for i in inputs] != [facts.input_name]:
        raise InputFileError(f"{path}: inputs {[i.name for i in inputs]}, its facts name {facts.input_name!r}")
    by_name = {o.name: o for o in outputs}
    if facts.output_name not in by_name:
        raise InputFileError(f"{path}: outputs {sorted(by_name)}, its facts name {facts.output_name!r}")
    for arg, dtype, dims, what in (
        (inputs[0], serving.input_dtype, serving.input_item_shape, "input"),
        (by_name[facts.output_name], np.dtype(np.float32), (classes,), "output"),
    ):
        shape = list(arg.shape)
        fixed_batch = shape[0] if shape and isinstance(shape[0], int) else None
        if (
            arg.type != f"tensor({'float' if dtype == np.float32 else dtype.name})"
            or len(shape) != 1 + len(dims)
            or tuple(shape[1:]) != dims
            or (fixed_batch is not None and not facts.min_batch == fixed_batch == facts.max_batch)
        ):
            expected = f"{dtype.name} [batch {facts.min_batch}..{facts.max_batch}, {', '.join(map(str, dims))}]"
            raise InputFileError(
                f"{path}: its {what} {arg.name!r} is {arg.type} {shape}; its facts say {expected} "
                "(the graph or its facts were changed; export it again)"
            )


def manifest_beside(path: Path) -> Manifest | None:
    """The manifest beside the graph, once the graph is checked to be the file it describes (its
    facts are compared when the graph is open); None for a graph shipped alone.

    Raises:
        StaleArtifactError: The graph is not the file the manifest describes.
    """
    if not manifest_path(path).is_file():
        return None  # a graph shipped alone is checked by its own facts and I/O only
    manifest = read_manifest(path)
    if not manifest.describes(path):
        raise _stale(path)
    return manifest


def _stale(path: Path) -> StaleArtifactError:
    return StaleArtifactError(
        f"{path} is not the graph its manifest {manifest_path(path).name} describes (its bytes or facts differ); "
        "export it again, or remove the stale manifest if the graph is the one you mean to serve"
    )
