"""The masked-GAT multi-label classifier: model, co-occurrence mask, checkpoints, training.

Names are imported lazily, so importing the package does not import torch. Its configuration
(``core.config.ModelConfig``) and errors (``core.errors``) live in the torch-free ``core``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MaskedGATClassifier": "classifier",
    "build_model": "classifier",
    "MaskedGATLayer": "gat",
    "Correlation": "correlation",
    "CorrelationMask": "correlation",
    "read_correlation": "correlation_sources",
    "save_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "load_model": "checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
