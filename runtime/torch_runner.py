"""Torch runner: the eager checkpoint, the reference every artifact is compared with.

CPU or CUDA; on CUDA, FP16 autocast is optional (torch keeps softmax, the GAT's masked part, in
FP32 under autocast). On CUDA the FP32 path is true FP32: TF32 convolutions and matmuls are turned
off (torch's global flags), because this runner is the reference other artifacts are held to;
cuDNN's autotuner is turned on. Torch is imported only when this runner is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from core.errors import ConfigError, MissingDependencyError
from core.facts import ServingFacts


class TorchRunner:
    """Runs a project checkpoint (``with TorchRunner("best.pt", device="cuda", fp16=True) as r: ...``).

    ``device="auto"`` takes CUDA when torch sees a GPU. The forward pass is stateless in eval
    mode, so one runner serves many threads.
    """

    name = "torch"

    def __init__(self, checkpoint: str | os.PathLike, *, device: str = "auto", fp16: bool = False) -> None:
        self.path = Path(checkpoint)
        self.device = device
        self.fp16 = fp16
        self.model = None
        self.facts: ServingFacts | None = None
        self._torch = None

    def __enter__(self) -> TorchRunner:
        # OpenMP threads that spin-wait between calls take the cores from decode threads and from
        # other runners; torch reads this once, when it is first imported (a user's setting wins).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
        except ImportError as exc:
            raise MissingDependencyError(f"the torch backend needs torch ({exc}); pip install torch") from exc
        from models.checkpoint import load_model
        from models.devices import torch_device

        self._torch = torch
        device = torch_device(self.device)
        if self.fp16 and device.type != "cuda":
            raise ConfigError("FP16 autocast runs on CUDA only; drop fp16, or use a CUDA device")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = load_model(self.path, map_location=device)
        self.device = str(device)
        self.facts = self.model.serving_facts
        return self

    def __exit__(self, *exc_info) -> None:
        self.model = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on ``feed["images"]``; returns ``{"logits": [B, N] float32}``."""
        if self.model is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        torch = self._torch
        images = torch.from_numpy(np.ascontiguousarray(feed[self.facts.input_name])).to(self.device)
        with (
            torch.inference_mode(),
            torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=self.fp16),
        ):
            logits = self.model(images)
        return {self.facts.output_name: logits.float().cpu().numpy()}

    def infer_many(self, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """:meth:`infer` of each feed in turn."""
        for feed in feeds:
            yield self.infer(feed)
