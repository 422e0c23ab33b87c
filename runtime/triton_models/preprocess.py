"""The ``preprocess`` model: encoded image bytes → the network's input, by the one preprocessing definition
(preprocessed floats, or the resized uint8 pixels an artifact with a uint8 input takes).

Images of all the requests Triton batched into one call are decoded on a small thread pool (Pillow
releases the GIL). An unusable image fails its own request, with a message that starts with
:data:`~runtime.triton_names.BAD_IMAGE`; the other requests of the batch are answered.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

from core.errors import BadInputError

from ..inputs import prepare
from ..triton_names import BAD_IMAGE, IMAGE
from ._config import artifact_facts, model_config


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.facts = artifact_facts(model_config(args)).serving()
        self.pool = ThreadPoolExecutor(min(4, len(os.sched_getaffinity(0))), thread_name_prefix="decode")

    def execute(self, requests: list) -> list:
        encoded = [pb_utils.get_input_tensor_by_name(r, IMAGE).as_numpy().reshape(-1) for r in requests]
        decoded = [[self.pool.submit(self._prepare, i, item) for i, item in enumerate(items)] for items in encoded]
        responses = []
        for futures in decoded:
            try:
                batch = np.stack([future.result() for future in futures])
            except BadInputError as exc:
                message = f"{BAD_IMAGE}: item {exc.index}: {exc.problem}"
                error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)  # the client's fault: 400
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.facts.input_name, batch)]))
        return responses

    def _prepare(self, index: int, item: object) -> np.ndarray:
        if not isinstance(item, bytes):  # a BYTES element arrives as bytes; anything else is not an image
            raise BadInputError(index, type(item).__name__, "expected encoded image bytes")
        return prepare(index, item, self.facts)

    def finalize(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
