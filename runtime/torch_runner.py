"""Torch runner: the eager checkpoint, the reference every artifact is compared with.

CPU or CUDA; on CUDA, FP16 autocast is optional (torch keeps softmax, the GAT's masked part, in
FP32 under autocast). On CUDA the FP32 path is true FP32: TF32 convolutions and matmuls are turned
off (torch's global flags), because this runner is the reference other artifacts are held to;
cuDNN's autotuner is turned on. Torch is imported only when this runner is opened.

Two options for CUDA: ``channels_last`` (NHWC weights and inputs, the layout tensor cores want) and
``cuda_graphs`` (each batch size's forward pass captured once as a CUDA graph, then replayed: one
launch instead of hundreds, which matters at small batches). Inputs may be host arrays or tensors
already on the device (``runtime.torch_decode``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from core.errors import ConfigError, MissingDependencyError
from core.facts import ServingFacts

from .backends import one_by_one


class TorchRunner:
    """Runs a project checkpoint (``with TorchRunner("best.pt", device="cuda", fp16=True) as r: ...``).

    ``device="auto"`` takes CUDA when torch sees a GPU. The forward pass is stateless in eval
    mode, so one runner serves many threads; replays of a CUDA graph share its buffers, so they take
    turns.
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        device: str = "auto",
        fp16: bool = False,
        channels_last: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        self.path = Path(checkpoint)
        self.device = device
        self.fp16 = fp16
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        self.model = None
        self.facts: ServingFacts | None = None
        self._torch = None
        self._graphs: dict[int, tuple] = {}  # batch → (graph, static input, static output)
        self._graph_pool = None
        self._graph_lock = threading.Lock()

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
        for wanted, what in ((self.fp16, "FP16 autocast"), (self.cuda_graphs, "CUDA graphs")):
            if wanted and device.type != "cuda":
                raise ConfigError(f"{what}: CUDA only; drop the option, or use a CUDA device")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = load_model(self.path, map_location=device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = str(device)
        self.facts = self.model.serving_facts
        return self

    def __exit__(self, *exc_info) -> None:
        self._graphs.clear()
        self._graph_pool = None
        self.model = None

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on ``feed["images"]`` (a host array, or a tensor); returns ``{"logits": [B, N] float32}``."""
        if self.model is None:
            raise ConfigError("the runner is closed; use it inside its `with` block")
        torch = self._torch
        images = feed[self.facts.input_name]
        if not torch.is_tensor(images):
            images = torch.from_numpy(np.ascontiguousarray(images))
        images = images.to(self.device)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            return {self.facts.output_name: self._replayed(images)}
        with torch.inference_mode(), self._autocast():
            logits = self.model(images)
        return {self.facts.output_name: logits.float().cpu().numpy()}

    def _autocast(self, cache_enabled: bool = True):
        torch = self._torch
        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.fp16, cache_enabled=cache_enabled)

    def _replayed(self, images) -> np.ndarray:
        """The logits of ``images`` from the CUDA graph of their batch size, captured on first use (after
        warm-up passes on a side stream, so cuDNN chooses its algorithms outside the capture). The graphs
        share one memory pool: replays take turns and each output is copied out before the next, so no
        graph reads what another left. The capture refuses unsafe CUDA calls from this thread only
        (decode threads keep working), and autocast's cast cache is off, as torch's CUDA-graph notes ask."""
        torch = self._torch
        with self._graph_lock:
            if len(images) not in self._graphs:
                static = images.clone()
                side = torch.cuda.Stream(images.device)
                side.wait_stream(torch.cuda.current_stream(images.device))
                with torch.cuda.stream(side), torch.inference_mode(), self._autocast():
                    for _ in range(3):
                        self.model(static)
                torch.cuda.current_stream(images.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                self._graph_pool = self._graph_pool or torch.cuda.graph_pool_handle()
                capture = torch.cuda.graph(graph, pool=self._graph_pool, capture_error_mode="thread_local")
                with capture, torch.inference_mode(), self._autocast(cache_enabled=False):
                    output = self.model(static)
                self._graphs[len(images)] = (graph, static, output)
            graph, static, output = self._graphs[len(images)]
            static.copy_(images)
            graph.replay()
            return output.float().cpu().numpy()  # before the next replay overwrites it

    def infer_many(self, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        """:meth:`infer` of each feed in turn (it returns host logits, so each batch is done)."""
        return one_by_one(self.infer, feeds)
