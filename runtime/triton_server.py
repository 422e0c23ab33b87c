"""A local ``tritonserver`` over a model repository: found, prepared, started, waited for, stopped.

The server is the one on ``PATH`` (NVIDIA's container), one named, or the one the ``nvidia-pytriton``
wheel bundles (``tritonserver`` 2.51 with the ``python`` and ``ensemble`` backends). The bundled one
needs what ``pytriton`` itself prepares: the Python-backend stub of the models' Python version copied
beside the backend, that Python's library folder and the wheel's libraries on ``LD_LIBRARY_PATH``, and
that Python's environment first on ``PATH`` (the stub imports the models' modules from it). Its stub
is built against NumPy 1.x, so the models' environment must have ``numpy<2``
(``runtime.triton_backend_env``).

The server listens on 127.0.0.1 unless another address is named. Stopping sends SIGTERM (Triton
unloads its models and stops their stubs), kills what is left of its process group after a grace
period, and removes the shared-memory segments of its Python backend (all named with a prefix of
this server's own) and its working folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError, InputFileError, MissingDependencyError, ServingError

from .triton_backend_env import BackendPython, require_numpy_1

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install a server: run inside NVIDIA's Triton container (tritonserver on PATH), or pip install --no-deps "
    "nvidia-pytriton==0.7.0 into the models' Python environment (only its bundled tritonserver is used)"
)
# Server-wide flags a repository needs, recorded by export.triton_repo beside its models.
SERVING_FILE = "serving.json"
EXIT_TIMEOUT_S = 10  # how long Triton waits for requests in flight once asked to stop
_GRACE_S = EXIT_TIMEOUT_S + 10
_POLL_S = 0.25
_PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
_ESCAPED_QUOTE = '\\"'
_FAILED_LOAD = re.compile(r"failed to load '([^']+)' version \d+: (.+?)\"?$")


@dataclass(frozen=True)
class Endpoints:
    http: str
    grpc: str
    metrics: str


class TritonServer:
    """``with TritonServer(repo) as server:`` — a ``tritonserver`` serving ``repo`` until the block ends.

    Args:
        repository: A model repository (``export.triton_repo``'s, or any).
        address: Where the server listens.
        http_port, grpc_port, metrics_port: Its ports.
        tritonserver: The server binary (default: ``tritonserver`` on PATH, else the bundled one).
        backend_python: The Python the Python-backend models run in (see :meth:`BackendPython.probe`).
        startup_timeout: Seconds to wait for every model to be ready.
        log_file: Where the server's log goes (default: its working folder, removed at the end).
        verbose: Triton's verbose log.

    The server is tied to the thread that starts it: it gets SIGTERM when that thread ends (so a parent
    killed outright leaves no server behind). Start and stop it from one long-lived thread.

    Raises (on entry):
        ConfigError: A port is taken, or the repository is not a folder.
        MissingDependencyError: No server, or the models' Python cannot serve.
        ServingError: The server exited or a model failed to load (named, with Triton's reason),
            or it was not ready in time.
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        address: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        tritonserver: str | os.PathLike | None = None,
        backend_python: str | os.PathLike | None = None,
        startup_timeout: float = 300.0,
        log_file: str | os.PathLike | None = None,
        verbose: bool = False,
    ) -> None:
        self.repository = Path(repository)
        self.address = address
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.tritonserver = tritonserver
        self.backend_python = backend_python
        self.startup_timeout = startup_timeout
        self.log_file = Path(log_file) if log_file is not None else None
        self.verbose = verbose
        self.process: subprocess.Popen | None = None
        self._workspace: Path | None = None
        self._shm_prefix = f"masked_gat_{os.getpid()}_{secrets.token_hex(4)}_"

    @property
    def endpoints(self) -> Endpoints:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return Endpoints(
            f"http://{host}:{self.ports['http']}",
            f"grpc://{host}:{self.ports['grpc']}",
            f"http://{host}:{self.ports['metrics']}/metrics",
        )

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the server and returns once every model is ready (see the class for what it raises)."""
        if self.process is not None:
            raise ConfigError("this server is already started; stop() it first")
        if not self.repository.is_dir():
            raise ConfigError(f"{self.repository} is not a folder; write one with python -m export.triton_repo")
        if self.log_file is not None and not self.log_file.parent.is_dir():
            raise ConfigError(f"--log {self.log_file}: its folder does not exist; name a file in an existing folder")
        for name, port in self.ports.items():
            _check_port_free(self.address, port, name)
        python = BackendPython.probe(self.backend_python)
        self._workspace = Path(tempfile.mkdtemp(prefix="masked-gat-triton-"))
        try:
            command, env = self._command(python)
            log_path = self.log_file or self._workspace / "tritonserver.log"
            logger.debug("starting %s", " ".join(command))
            with open(log_path, "wb") as log:
                # A session of its own: the server's stubs share its process group, which stop() can end.
                self.process = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_die_with_parent,
                )  # fmt: skip
            self._wait_ready(log_path)
        except BaseException:
            self.stop()
            raise

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stops the server and everything it started; removes its shared memory and working folder."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                if not _exited_unreaped(process.pid, _GRACE_S):
                    logger.warning("tritonserver did not stop within %d s of SIGTERM; killing it", _GRACE_S)
            # The group is the server's own (start_new_session), and its id cannot be reused while the leader
            # is not reaped: whatever is left of it (a stub that outlived the server) ends here.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for segment in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            segment.unlink(missing_ok=True)
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
            self._workspace = None

    def _command(self, python: BackendPython) -> tuple[list[str], dict[str, str]]:
        binary, bundle = _find_binary(self.tritonserver, python)
        env = dict(os.environ)
        env["PATH"] = f"{python.executable.parent}{os.pathsep}{env.get('PATH', '')}"
        command = [
            str(binary),
            f"--model-repository={self.repository.resolve()}",
            *(f"--{name}-address={self.address}" for name in self.ports),
            *(f"--{name}-port={port}" for name, port in self.ports.items()),
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            f"--log-verbose={int(self.verbose)}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            *repository_flags(self.repository),
        ]
        if bundle is not None:
            require_numpy_1(python)
            command.append(f"--backend-directory={self._bundled_backends(bundle, python)}")
            libraries = [python.libdir, str(bundle.parent.parent / "nvidia_pytriton.libs"), env.get("LD_LIBRARY_PATH")]
            env["LD_LIBRARY_PATH"] = os.pathsep.join(path for path in libraries if path)
        return command, env

    def _bundled_backends(self, bundle: Path, python: BackendPython) -> Path:
        """The bundled backends, with the Python backend's stub of ``python``'s version beside it."""
        stub = bundle / "python_backend_stubs" / python.version / "triton_python_backend_stub"
        if not stub.is_file():
            raise MissingDependencyError(
                f"the bundled tritonserver has no Python-backend stub for Python {python.version}; "
                "use a Python from 3.8 to 3.13 for the models (--backend-python)"
            )
        backends = self._workspace / "backends"
        python_backend = backends / "python"
        python_backend.mkdir(parents=True)
        for entry in (bundle / "backends" / "python").iterdir():
            if entry.is_file():
                (python_backend / entry.name).symlink_to(entry)
        shutil.copy2(stub, python_backend / stub.name)
        return backends

    def _wait_ready(self, log_path: Path) -> None:
        url = f"{self.endpoints.http}/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout
        for _ in range(int(self.startup_timeout / _POLL_S) + 1):
            if self.process.poll() is not None:
                raise ServingError(f"tritonserver exited (code {self.process.returncode}): {load_failures(log_path)}")
            with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
            if time.monotonic() > deadline:
                break
            time.sleep(_POLL_S)
        raise ServingError(
            f"tritonserver was not ready within {self.startup_timeout:g} s ({load_failures(log_path)}); "
            "give it longer (--startup-timeout) or read its log (--log)"
        )


def repository_flags(repository: Path) -> list[str]:
    """The server flags the repository records that it needs (e.g. loading version-compatible plans).

    Raises:
        InputFileError: Its ``serving.json`` is not one ``export.triton_repo`` wrote.
    """
    path = repository / SERVING_FILE
    if not path.is_file():
        return []
    try:
        flags = json.loads(path.read_text())["server_flags"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: not written by export.triton_repo ({exc}); write the repository again") from exc
    if not isinstance(flags, list) or not all(isinstance(flag, str) and flag.startswith("--") for flag in flags):
        raise InputFileError(f"{path}: server_flags must be a list of --flags; write the repository again")
    return flags


def _find_binary(explicit: str | os.PathLike | None, python: BackendPython) -> tuple[Path, Path | None]:
    """The server binary, and the nvidia-pytriton ``tritonserver`` folder when it is the bundled one."""
    if explicit is not None:
        binary = Path(explicit)
        if not binary.is_file():
            raise MissingDependencyError(f"tritonserver not found at {binary}; {INSTALL_HINT}")
    elif shutil.which("tritonserver"):
        binary = Path(shutil.which("tritonserver"))
    else:
        candidates = [python.pytriton, _pytriton_here()]
        bundled = [c / "tritonserver" / "bin" / "tritonserver" for c in candidates if c is not None]
        binary = next((b for b in bundled if b.is_file()), None)
        if binary is None:
            raise MissingDependencyError(f"no tritonserver found; {INSTALL_HINT}")
    bundle = binary.parent.parent
    return binary, (bundle if (bundle / "python_backend_stubs").is_dir() else None)


def _pytriton_here() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    return Path(next(iter(spec.submodule_search_locations))) if spec else None


def _exited_unreaped(pid: int, timeout: float) -> bool:
    """Waits up to ``timeout`` s for ``pid`` to exit, leaving it unreaped (so its id stays its own)."""
    for _ in range(int(timeout / _POLL_S) + 1):
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        time.sleep(_POLL_S)
    return False


def _die_with_parent() -> None:
    """In the server's process before it runs: SIGTERM it when the thread that started it exits (Linux
    ``PR_SET_PDEATHSIG``), so that a parent killed outright leaves no server behind."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_ports(count: int, address: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``address`` just now (the system's choice), for a server of its own.
    Another process may take one before the server binds it (seconds later, once its models load); the
    server then fails to start, saying so."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind((address, 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def _check_port_free(address: str, port: int, name: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As servers bind: a port whose old connections linger (TIME_WAIT) is free; one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {address}:{port} ({exc.strerror}); choose another --{name}-port"
            ) from exc


def load_failures(log_path: Path) -> str:
    """Which models failed to load and Triton's reasons, or the end of its log."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    failures = [match.groups() for line in lines if (match := _FAILED_LOAD.search(line.strip()))]
    if failures:
        # Triton quotes its message, escaping the quotes inside it.
        reasons = {name: why.replace(_ESCAPED_QUOTE, '"') for name, why in failures}
        return "; ".join(f"model '{name}' failed to load: {why}" for name, why in reasons.items())
    tail = [line for line in lines if line.strip() and not line.startswith(("|", "+"))][-3:]
    return " / ".join(tail) or "no log"
