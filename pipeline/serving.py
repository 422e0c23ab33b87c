"""The demo's Triton step: the FP32 graph served by a local tritonserver (the Python-backend twin, which
any server with the Python backend runs) while the later steps run, checked equal to in process.

Where no server can run here (no tritonserver, no Python environment for its models, no
``tritonclient``), the step is skipped and the summary says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import DeployError, MissingDependencyError

if TYPE_CHECKING:
    from .demo import DemoRun

NAME = "triton-fp32"
# The served path runs the same graph on the same decoded pixels: only float summation order may differ.
TOLERANCE = 1e-5


@contextlib.contextmanager
def served(run: DemoRun, graph: Path, images: Sequence[Path]) -> Iterator[str | None]:
    """Serves ``graph`` on Triton while the block runs; yields the tagger's URL (None where skipped)."""
    from export.triton_repo import RepositoryOptions, write_repository
    from runtime.triton_server import TritonServer, free_ports

    server: TritonServer | None = None
    url: str | None = None

    def start() -> str:
        nonlocal server, url
        options = RepositoryOptions(classifier="python", kind="cpu")
        try:
            repository = write_repository(graph, run.output / "triton", options, force=True)
            http, grpc, metrics = free_ports(3)
            candidate = TritonServer(repository, http_port=http, grpc_port=grpc, metrics_port=metrics)
            candidate.start()
        except MissingDependencyError as exc:
            run.skipped[NAME] = str(exc)
            return f"skipped: {exc}"
        except DeployError as exc:  # recorded; run_demo fails at its end, once the summary is written
            run.failed[NAME] = str(exc)
            return f"failed: {exc}"
        server, url = candidate, f"{candidate.endpoints.http}/tagger"
        try:
            run.served = {"repository": repository, **compare(url, graph, images)}
        except DeployError as exc:
            run.failed[NAME] = f"the served tagger did not answer as expected: {exc}"
            return f"failed: {exc}"
        if run.served["max_abs_dp"] > TOLERANCE or not run.served["labels_equal"]:
            run.failed[NAME] = f"served results differ from in-process ones: {run.served}"
            return f"failed: {run.failed[NAME]}"
        return f"serving {repository.name}/ at {url}; {len(images)} held-out images equal to in process"

    try:
        run.step("Triton serving", start)
        yield url
    finally:
        if server is not None:
            server.stop()


def compare(url: str, graph: Path, images: Sequence[Path]) -> dict:
    """The served tagger against the in-process predictor of ``graph`` on ``images``."""
    from runtime import Predictor

    files = [str(f) for f in images]
    with Predictor(url) as remote, Predictor(graph) as local:
        served_results, local_results = remote.predict(files), local.predict(files)
    pairs = list(zip(served_results, local_results, strict=True))
    return {
        "url": url,
        "images": len(files),
        "max_abs_dp": float(max(np.abs(a.scores - b.scores).max() for a, b in pairs)),
        "labels_equal": all(a.labels == b.labels for a, b in pairs),
    }
