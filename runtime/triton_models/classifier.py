"""The ``classifier`` twin: the artifact run by this toolkit's own runner, for a server without the
``tensorrt_plan`` or ``onnxruntime_onnx`` backend.

All requests of one call are run as one batch (in slices of the artifact's batch limit), then split
back. An instance of kind GPU runs on CUDA, of kind CPU on the CPU.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from core.errors import DeployError

from ..backends import make_runner
from ..triton_names import ARTIFACT_PARAMETER
from ._config import model_config, parameter


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = model_config(args)
        path = f"{args['model_repository']}/{args['model_version']}/{parameter(config, ARTIFACT_PARAMETER)}"
        device = "cuda" if args["model_instance_kind"] == "GPU" else "cpu"
        self.runner = make_runner(path, device=device).__enter__()
        self.max_batch = int(config["max_batch_size"])

    def execute(self, requests: list) -> list:
        facts = self.runner.facts
        inputs = [pb_utils.get_input_tensor_by_name(r, facts.input_name).as_numpy() for r in requests]
        batch = np.concatenate(inputs)
        try:
            logits = np.concatenate(
                [
                    self.runner.infer({facts.input_name: batch[start : start + self.max_batch]})[facts.output_name]
                    for start in range(0, len(batch), self.max_batch)
                ]
            )
        except DeployError as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        splits = np.cumsum([len(x) for x in inputs])[:-1]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(facts.output_name, part.astype(np.float32))])
            for part in np.split(logits, splits)
        ]

    def finalize(self) -> None:
        self.runner.__exit__(None, None, None)
