"""``runtime.cuda_memory`` against the genuine cuda-python bindings on a machine without a GPU: each call
reaches CUDA's runtime with arguments the binding accepts (a wrong signature would be a TypeError), and
the missing driver comes back as a typed ``CudaError`` naming the call. The round trips run in test_gpu."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from core.errors import CudaError
from runtime.cuda_memory import CudaRuntime

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda cuda: cuda.pinned((2, 3), np.uint8), r"cudaMallocHost\(6 bytes\) failed"),
        (lambda cuda: cuda.free_pinned(0), "cudaFreeHost failed"),
        (lambda cuda: cuda.on_device(0, 0, 16, 0), "copy on the GPU failed"),
        (lambda cuda: cuda.malloc(16), r"cudaMalloc\(16 bytes\) failed"),
    ],
)
def test_each_call_reaches_cuda_and_a_missing_driver_is_a_typed_error(call, named: str) -> None:
    cuda = CudaRuntime()
    try:
        call(cuda)
    except CudaError as exc:
        assert re.search(named, str(exc)) and "cudaError" in str(exc)
    else:
        pytest.skip("a CUDA driver is here: the round trips in test_gpu check these calls")
