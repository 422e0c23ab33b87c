"""Torch devices by name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, checked against what torch sees."""

from __future__ import annotations

import torch

from core.errors import ConfigError


def torch_device(name: str) -> torch.device:
    """The torch device ``name`` stands for; ``auto`` is CUDA when torch sees a GPU, else the CPU.

    Raises:
        ConfigError: ``name`` is not a device, or names CUDA where torch sees no usable GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name}: torch sees no usable CUDA device here; use cpu")
    return device
