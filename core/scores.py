"""Logits → probabilities: the one sigmoid that serving, parity figures and plots share."""

from __future__ import annotations

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities of ``logits``, in float64, without overflow for large |logit|."""
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + exp), exp / (1.0 + exp))
