"""Device and page-locked host memory, streams and copies through CUDA's runtime API (cuda-python), for
the TensorRT runner.

cuda-python is NVIDIA's thin binding of the CUDA runtime, the one TensorRT's own Python samples use:
a few megabytes, where torch would bring gigabytes into ``runtime/`` for four calls.
"""

from __future__ import annotations

import ctypes
from types import ModuleType

import numpy as np

from core.errors import CudaError, MissingDependencyError

# cuda.bindings first ships in cuda-python 12.6.2; its major must match the driver's CUDA major.
CUDA_HINT = (
    "from this repository, pip install -e '.[tensorrt-cu12]' with a CUDA 12 driver or -e '.[tensorrt-cu13]' with a "
    "CUDA 13 driver (or pip install 'cuda-python>=12.6.2,<13' / 'cuda-python>=13,<14')"
)


def import_cuda_runtime() -> ModuleType:
    """``cuda.bindings.runtime`` (cuda-python ≥ 12.6.2), or a :class:`MissingDependencyError`."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise MissingDependencyError(f"CUDA's runtime bindings cannot be imported ({exc}); {CUDA_HINT}") from exc
    return runtime


class CudaRuntime:
    """The few CUDA runtime calls a runner needs, each checked."""

    def __init__(self, runtime: ModuleType | None = None) -> None:
        self.api = runtime or import_cuda_runtime()

    def _check(self, result: tuple, what: str):
        error, *values = result
        if error != self.api.cudaError_t.cudaSuccess:
            name = self.api.cudaGetErrorName(error)[1]
            raise CudaError(f"{what} failed: {name.decode() if isinstance(name, bytes) else name}")
        return values[0] if len(values) == 1 else tuple(values)

    def malloc(self, nbytes: int) -> int:
        """A device allocation of ``nbytes``; its address."""
        return int(self._check(self.api.cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)"))

    def free(self, pointer: int) -> None:
        self._check(self.api.cudaFree(pointer), "cudaFree")

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, np.ndarray]:
        """A page-locked host allocation for ``shape`` of ``dtype``: its address, and an array over it
        (copies from page-locked memory run asynchronously, at the bus's full speed)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pointer = int(self._check(self.api.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes} bytes)"))
        memory = (ctypes.c_byte * nbytes).from_address(pointer)
        return pointer, np.frombuffer(memory, dtype=dtype).reshape(shape)

    def free_pinned(self, pointer: int) -> None:
        self._check(self.api.cudaFreeHost(pointer), "cudaFreeHost")

    def stream(self):
        """A new non-blocking stream."""
        flags = self.api.cudaStreamNonBlocking
        return self._check(self.api.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")

    def destroy_stream(self, stream) -> None:
        self._check(self.api.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def synchronize(self, stream) -> None:
        self._check(self.api.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def to_device(self, pointer: int, array: np.ndarray, stream) -> None:
        """Queues a copy of the C-contiguous ``array`` to ``pointer`` on ``stream``."""
        kind = self.api.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.api.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, stream), "copy to GPU")

    def on_device(self, pointer: int, source: int, nbytes: int, stream) -> None:
        """Queues a copy of ``nbytes`` from the device address ``source`` to ``pointer`` on ``stream``."""
        kind = self.api.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check(self.api.cudaMemcpyAsync(pointer, source, nbytes, kind, stream), "copy on the GPU")

    def to_host(self, array: np.ndarray, pointer: int, stream) -> None:
        """Queues a copy from ``pointer`` into the C-contiguous ``array`` on ``stream``."""
        kind = self.api.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.api.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, stream), "copy to host")
