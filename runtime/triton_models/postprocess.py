"""The ``postprocess`` model: logits → probabilities, the labels at or over their thresholds, and the
logits themselves (a copy, for the ensemble's ``logits`` output).

The same rules as the in-process ``Predictor`` (``runtime.results.make_prediction``): the one sigmoid,
per-class thresholds (written into the model's configuration by ``export.triton_repo``), labels most
probable first.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from ..results import make_prediction
from ..triton_names import LABELS, LOGITS, LOGITS_COPY, PROBABILITIES, THRESHOLDS_PARAMETER
from ._config import artifact_facts, model_config, parameter


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = model_config(args)
        self.class_names = artifact_facts(config).class_names
        self.thresholds = np.asarray(json.loads(parameter(config, THRESHOLDS_PARAMETER)), dtype=np.float32)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, LOGITS).as_numpy()
            rows = [make_prediction(0, "", row, self.class_names, self.thresholds, None) for row in logits]
            probabilities = np.stack([row.scores for row in rows])
            labels = np.array([[json.dumps(list(row.labels)).encode()] for row in rows], dtype=np.object_)
            outputs = [
                pb_utils.Tensor(PROBABILITIES, probabilities),
                pb_utils.Tensor(LABELS, labels),
                pb_utils.Tensor(LOGITS_COPY, logits.astype(np.float32, copy=False)),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
