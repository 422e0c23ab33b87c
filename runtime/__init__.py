"""Runs deployment artifacts in production; imports without torch unless the torch backend is used.

```python
from runtime import Predictor, predict
with Predictor("model.onnx") as p:          # .plan → TensorRT | .onnx → ONNX Runtime | .pt → torch
    results = p.predict(["a.jpg", pil_image, hwc_uint8_array])
```
"""

from __future__ import annotations

from .predictor import Predictor, predict
from .results import FailedItem, Prediction

__all__ = ["FailedItem", "Prediction", "Predictor", "predict"]
