"""Graph attention over class scores, masked by label co-occurrence (DESIGN.md, "The product").

Per batch element, with x the N class scores as N nodes of ``in_features`` features::

    h   = x @ W
    e   = LeakyReLU(h @ a1 + (h @ a2)^T)            # [N, N], no [N, N, 2F] tensor
    att = softmax_j(e * mask)                        # seed mode
    att = softmax_j(e where mask else excluded)      # softmax mode (self-loops kept)
    out = ELU(dropout(att) @ h + beta * h)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.config import MASK_MODES, MaskMode, validate_class_names
from core.errors import ClassNamesMismatchError, ConfigError

from .class_names import describe_difference

# The seed initialises W and a with Xavier-uniform at this gain (sqrt(2), as in pyGAT).
_XAVIER_GAIN = 1.414


def with_self_loops(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with its diagonal set, so that no row of a masked softmax is empty."""
    return mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)


class MaskedGATLayer(nn.Module):
    """One graph-attention layer over N label nodes with a fixed co-occurrence mask.

    The mask is a persistent bool buffer (in ``state_dict()``, moved by ``.to()``, exported as a
    graph constant); the class names it is ordered by travel in the state dict's extra state, and
    loading a state dict made for another class order or mask mode is refused.

    Args:
        mask: [N, N] bool (or 0/1), ``mask[i, j]`` keeps the edge i→j.
        class_names: The N class names in the mask's order.
        mode: ``"softmax"`` excludes masked pairs from the softmax (self-loops are added);
            ``"seed"`` reproduces the seed code's ``softmax(e * mask)``, where masked logits
            become 0 and still get weight.
        in_features: Features per node of the input.
        out_features: Features per node of the output.
        dropout: Attention dropout probability during training.
        negative_slope: LeakyReLU slope of the attention logits.
    """

    def __init__(
        self,
        mask: torch.Tensor,
        class_names: Sequence[str],
        mode: MaskMode = "softmax",
        in_features: int = 1,
        out_features: int = 1,
        dropout: float = 0.0,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if mode not in MASK_MODES:
            raise ConfigError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")
        if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
            raise ConfigError(f"mask must be square [N, N], got shape {tuple(mask.shape)}")
        class_names = validate_class_names(class_names)
        if len(class_names) != mask.shape[0]:
            raise ClassNamesMismatchError(
                f"mask is {mask.shape[0]}x{mask.shape[0]} but {len(class_names)} class names were given"
            )
        if mask.dtype != torch.bool:
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ConfigError(
                    "mask values must be 0 or 1 (or bool); threshold probabilities first, e.g. with "
                    "models.correlation's CorrelationMask"
                )
            mask = mask.to(torch.bool)
        self.register_buffer("mask", with_self_loops(mask) if mode == "softmax" else mask.clone())
        self.class_names: tuple[str, ...] = class_names
        self.mode: MaskMode = mode
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.W = nn.Parameter(torch.empty(in_features, out_features))
        self.a = nn.Parameter(torch.empty(2 * out_features, 1))
        self.beta = nn.Parameter(torch.empty(1))
        self.reset_parameters()
        self.register_load_state_dict_pre_hook(_check_before_load)

    def reset_parameters(self) -> None:
        """The seed's Xavier-uniform initialisation, except that W starts positive; beta = 1.

        With one feature a node and W < 0 (half of the seed's draws), ``x + ELU(att·Wx + beta·Wx)``
        falls as x rises wherever the ELU is linear, so a class's score cannot be pushed down
        and training stalls at the label prior. A positive W makes the map increasing in x at
        the start; W stays free to learn.
        """
        nn.init.xavier_uniform_(self.W, gain=_XAVIER_GAIN)
        with torch.no_grad():
            self.W.abs_()
        nn.init.xavier_uniform_(self.a, gain=_XAVIER_GAIN)
        nn.init.ones_(self.beta)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, N, N] (rows sum to 1) for node features h [B, N, F], in h's dtype.

        The logits and the softmax are computed in at least float32: in float16 a logit can
        overflow to ±inf, and then no fill value keeps masked pairs out or NaN away.
        """
        out_dtype = h.dtype
        dtype = torch.promote_types(out_dtype, torch.float32)
        h, a = h.to(dtype), self.a.to(dtype)
        out_features = self.W.shape[1]
        source = h @ a[:out_features]  # [B, N, 1]: h[i]·a1
        target = h @ a[out_features:]  # [B, N, 1]: h[j]·a2
        logits = F.leaky_relu(source + target.transpose(1, 2), self.negative_slope)
        if self.mode == "seed":
            attention = torch.softmax(logits * self.mask.to(dtype), dim=-1)
        else:
            # A finite fill: exp(fill - row max) is exactly 0 and, with self-loops on the
            # diagonal, no row is all-masked, so no NaN.
            # torch.where on the mask itself (not masked_fill on ~mask) keeps the exported graph's
            # constant equal to the checkpoint's mask.
            fill = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=logits.device)
            attention = torch.softmax(torch.where(self.mask, logits, fill), dim=-1)
        return attention.to(out_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps node features [B, N, in_features] to [B, N, out_features]."""
        h = x @ self.W
        attention = F.dropout(self.attention(h), self.dropout, self.training)
        return F.elu(attention @ h + self.beta * h)

    def get_extra_state(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "mode": self.mode}

    def set_extra_state(self, state: Any) -> None:
        """Nothing to restore: names and mode are fixed at construction; ``check_state_dict`` has
        already refused a state dict made for others."""

    def check_state_dict(self, state_dict: Mapping[str, Any], prefix: str = "") -> None:
        """Refuses, before anything is copied, a state dict made for another class order, mask
        mode or graph size, or a softmax-mode mask without self-loops.

        Raises:
            ClassNamesMismatchError: The state's class names differ from this layer's.
            ConfigError: The state's mode or mask does not fit this layer.
        """
        if prefix + "_extra_state" not in state_dict:
            return  # strict loading reports the missing key; non-strict loading keeps ours
        state = state_dict[prefix + "_extra_state"]
        if not isinstance(state, Mapping):
            raise ConfigError(
                f"the state dict's {prefix}_extra_state must hold class names and mode, found {state!r:.60}"
            )
        names = tuple(state.get("class_names", ()))
        if names != self.class_names:
            raise ClassNamesMismatchError(
                "the state dict's mask is ordered for other class names "
                f"({describe_difference(names, self.class_names)}); "
                "build the model with the checkpoint's class names, or reorder the mask with models.correlation"
            )
        if state.get("mode") != self.mode:
            raise ConfigError(
                f"the state dict was made for mask mode {state.get('mode')!r}, this layer uses {self.mode!r}; "
                "build the model with the checkpoint's mask mode"
            )
        mask = state_dict.get(prefix + "mask")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != self.mask.shape:
            found = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ConfigError(
                f"the state dict's mask must be a bool tensor of shape {tuple(self.mask.shape)}, found {found}"
            )
        if self.mode == "softmax" and not bool(mask.diagonal().all()):
            missing = [self.class_names[i] for i in (~mask.diagonal()).nonzero().flatten().tolist()]
            raise ConfigError(
                f"a softmax-mode mask needs self-loops, but the loaded one lacks them for {missing[:5]}; "
                "rebuild the mask with `python -m models.correlation --mode softmax`"
            )

    def extra_repr(self) -> str:
        loops = int(self.mask.diagonal().sum())
        edges = int(self.mask.sum()) - loops
        nodes = len(self.class_names)
        return f"nodes={nodes}, mode={self.mode}, edges={edges}, self_loops={loops}, dropout={self.dropout}"


def _check_before_load(module: MaskedGATLayer, state_dict: Mapping[str, Any], prefix: str, *_: Any) -> None:
    module.check_state_dict(state_dict, prefix)
