"""``python -m runtime serve REPO``: a local Triton server over a model repository, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import threading
import urllib.request
from pathlib import Path

from core.errors import ServingError

from ..triton_server import TritonServer

DESCRIPTION = "Serve a Triton model repository (export.triton_repo's) with a local tritonserver."
_WATCH_S = 0.5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", type=Path, help="the model repository")
    parser.add_argument("--address", default="127.0.0.1", help="where to listen (another only when you mean it)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    parser.add_argument("--tritonserver", type=Path, help="the server binary (default: PATH, else nvidia-pytriton's)")
    parser.add_argument(
        "--backend-python", type=Path, help="the Python the Python models run in (default: .venv/triton-backend's)"
    )
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the models")
    parser.add_argument("--log", type=Path, help="write the server's log here (default: a temporary file)")


def run(args: argparse.Namespace) -> None:
    """Starts the server, prints its endpoints and models, and serves until SIGINT, SIGTERM or SIGHUP; a
    signal while the models load stops the start."""
    stop = threading.Event()
    starting = [True]

    def on_signal(signum: int, _frame) -> None:
        stop.set()
        if starting[0]:  # interrupts the wait for the models; start() stops what it started
            raise _StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    server = TritonServer(
        args.repository,
        address=args.address,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        tritonserver=args.tritonserver,
        backend_python=args.backend_python,
        startup_timeout=args.startup_timeout,
        log_file=args.log,
        verbose=args.verbose,
    )
    try:
        server.start()
        starting[0] = False
        endpoints = server.endpoints
        print(f"serving {args.repository} (models: {', '.join(_models(endpoints.http))})")
        print(f"  HTTP    {endpoints.http}    e.g. Predictor('{endpoints.http}/tagger')")
        print(f"  gRPC    {endpoints.grpc}")
        print(f"  metrics {endpoints.metrics}")
        print("stop with Ctrl-C (SIGINT) or SIGTERM", flush=True)
        while not stop.wait(_WATCH_S):
            if not server.running():
                raise ServingError(f"tritonserver exited on its own (code {server.process.returncode})")
        print("stopping", flush=True)
    except _StopRequested as exc:
        print(f"stopped by {exc} before the models were ready", flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _StopRequested(Exception):
    """A stop signal arrived while the server was starting."""


def _models(http: str) -> list[str]:
    """The ready models, from the server's repository index."""
    request = urllib.request.Request(f"{http}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return sorted(entry["name"] for entry in json.loads(reply.read()) if entry.get("state") == "READY")
    except (OSError, ValueError) as exc:
        raise ServingError(f"{http}: the server does not list its models ({exc})") from exc
