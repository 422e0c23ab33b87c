"""The toolkit's exceptions: one root, one subclass per kind of problem a user can fix.

Messages say what was expected, what was found and what to do. CLIs print them as one line
and exit 1; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class DeployError(Exception):
    """Root of every error a user can act on."""


class ConfigError(DeployError):
    """A configuration value or a combination of flags is invalid."""


class InputFileError(DeployError):
    """A file the user named is missing, unreadable or not what it should be."""


class WeightsError(InputFileError):
    """Backbone weights are missing or do not fit the architecture."""


class CheckpointError(InputFileError):
    """A checkpoint cannot be read, is corrupt, or has an unsupported format."""


class CorrelationError(InputFileError):
    """Co-occurrence statistics are malformed or do not fit the model."""


class AnnotationError(InputFileError):
    """A COCO-format annotation file is malformed."""


class UnsafePickleError(InputFileError):
    """A pickle asks for something other than numpy array reconstruction."""


class ClassNamesMismatchError(DeployError):
    """Two class lists that must describe the same classes do not."""


class OutputError(DeployError):
    """An output could not be written (disk full, a quota, an I/O error, a closed pipe)."""


class ExportError(DeployError):
    """An artifact could not be built or failed a structural check."""


class ParityError(DeployError):
    """A candidate artifact's outputs are not close enough to the eager model's."""


class StaleArtifactError(DeployError):
    """A cached or built artifact no longer matches its source, its settings or this machine."""


class MissingDependencyError(DeployError):
    """An optional dependency or a device the step needs is absent (TensorRT, a CUDA GPU)."""


class BadInputError(InputFileError):
    """One item of a prediction request cannot be used (unreadable, wrong shape, not finite).

    Attributes:
        index: Position of the item in the request.
        source: What the item was (a file name, or its type and shape).
    """

    def __init__(self, index: int, source: str, problem: str) -> None:
        super().__init__(f"item {index} ({source}): {problem}")
        self.index = index
        self.source = source
        self.problem = problem


class TensorRTError(DeployError):
    """TensorRT's native library could not create an object (a builder, runtime, parser or execution
    context): typically a driver too old for the wheel's CUDA, libraries that do not match the
    Python bindings, or too little GPU memory."""


class CudaError(DeployError):
    """A CUDA runtime call failed (out of memory, no device, a failed launch)."""


class InferenceError(DeployError):
    """A backend returned unusable output (wrong shape, NaN or infinite logits)."""


class ServingError(DeployError):
    """A model server could not start or serve: it exited, a model failed to load, or it did not answer."""
