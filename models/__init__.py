"""The masked-GAT multi-label classifier: model, co-occurrence mask, checkpoints.

Names are imported lazily, so ``models.errors`` and ``models.config`` can be used without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MaskedGATClassifier": "classifier",
    "build_model": "classifier",
    "MaskedGATLayer": "gat",
    "ModelConfig": "config",
    "Preprocessing": "config",
    "Correlation": "correlation",
    "CorrelationMask": "correlation",
    "read_correlation": "correlation_sources",
    "save_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "DeployError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
