"""``python -m runtime serve``: SIGTERM stops the server and everything it started within seconds,
leaving no process and no shared memory; and the plain-data parts of the launcher."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError, InputFileError, MissingDependencyError
from runtime.triton_backend_env import BackendPython, require_numpy_1
from runtime.triton_server import TritonServer, free_ports, load_failures, repository_flags
from tests.helpers import REPO

STOP_WITHIN_S = 20.0  # Triton's own exit timeout (10 s) and the stubs' shutdown, with room


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@contextlib.contextmanager
def _serving(graph: Path, repository: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python -m runtime serve`` over a repository of ``graph`` (the Python twin) on free ports; yields the
    process and its HTTP port, and afterwards checks that nothing it started is left."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient (the serve extra) is not installed")
    from export.triton_repo import RepositoryOptions, write_repository

    try:
        BackendPython.probe()
    except MissingDependencyError as exc:
        pytest.skip(f"no Python environment for Triton's Python models: {exc}")
    write_repository(graph, repository, RepositoryOptions(classifier="python"), force=False)
    http, grpc, metrics = free_ports(3)
    command = [sys.executable, "-m", "runtime", "serve", str(repository), "--http-port", str(http)]
    command += ["--grpc-port", str(grpc), "--metrics-port", str(metrics), "--startup-timeout", "120"]
    serve = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield serve, http
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)
    assert _processes_mentioning(str(repository)) == []
    assert [p.name for p in Path("/dev/shm").glob(f"masked_gat_{serve.pid}_*")] == []


def test_sigterm_stops_the_server_and_leaves_nothing_behind(fp32_graph: Path, tmp_path: Path) -> None:
    repository = tmp_path / "served"
    with _serving(fp32_graph, repository) as (serve, http):
        lines = []
        for _ in range(200):  # bounded: the banner is a handful of lines
            line = serve.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("stop with"):
                break
        output = "".join(lines)
        if "no tritonserver found" in output:
            pytest.skip(output.strip())
        assert "stop with" in output, output
        assert f"http://127.0.0.1:{http}" in output and "models: classifier, postprocess, preprocess, tagger" in output
        assert len(_processes_mentioning(str(repository))) >= 4  # the server and a stub per Python model instance
        serve.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert serve.wait(timeout=STOP_WITHIN_S) == 0
        assert time.monotonic() - sent < STOP_WITHIN_S
        assert "stopping" in serve.stdout.read()


def test_a_stop_signal_while_the_models_load_stops_the_start_and_leaves_nothing(
    fp32_graph: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "starting"
    with _serving(fp32_graph, repository) as (serve, _):
        for _ in range(600):  # until tritonserver runs, loading the models (bounded: 60 s)
            if _processes_mentioning(f"--model-repository={repository}") or serve.poll() is not None:
                break
            time.sleep(0.1)
        if serve.poll() is not None:
            pytest.skip(serve.stdout.read().strip())
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=STOP_WITHIN_S) == 0
        assert "stopped by SIGTERM before the models were ready" in serve.stdout.read()


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        http, metrics = free_ports(2)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*choose another --grpc-port"):
            TritonServer(tmp_path, http_port=http, grpc_port=port, metrics_port=metrics).start()


def test_a_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder; write one with python -m export.triton_repo"):
        TritonServer(tmp_path / "nothing").start()


def test_the_repositorys_server_flags_are_read_and_checked(tmp_path: Path) -> None:
    assert repository_flags(tmp_path) == []  # any repository: nothing asked
    (tmp_path / "serving.json").write_text(json.dumps({"server_flags": ["--backend-config=tensorrt,x=1"]}))
    assert repository_flags(tmp_path) == ["--backend-config=tensorrt,x=1"]
    for bad in ({"server_flags": ["rm -rf /"]}, {"flags": []}, "not json"):
        (tmp_path / "serving.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(InputFileError, match="write the repository again"):
            repository_flags(tmp_path)


def test_the_bundled_server_refuses_a_numpy_2_environment_for_its_python_models(tmp_path: Path) -> None:
    python = BackendPython(Path(sys.executable), "3.11", "2.4.6", "/usr/lib", tmp_path / "pytriton")
    with pytest.raises(MissingDependencyError, match="built against NumPy 1.x.*numpy 2.4.6.*numpy<2"):
        require_numpy_1(python)
    require_numpy_1(BackendPython(Path(sys.executable), "3.11", "1.26.4", "/usr/lib", None))


def test_a_failed_load_is_reported_by_model_with_tritons_reason(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(
        "I1201 loading: classifier:1\n"
        "E1201 model_lifecycle.cc:642] \"failed to load 'classifier' version 1: Invalid argument: unable to find "
        "backend library for backend 'tensorrt'\"\n"
        "| classifier | 1 | UNAVAILABLE |\n"
    )
    reason = load_failures(log)
    assert (
        reason
        == "model 'classifier' failed to load: Invalid argument: unable to find backend library for backend 'tensorrt'"
    )
    log.write_text("I1201 something\nE1201 the last words\n| table |\n")
    assert load_failures(log) == "I1201 something / E1201 the last words"


def test_a_models_python_without_numpy_is_refused_with_what_it_needs(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    with pytest.raises(MissingDependencyError, match="check .*No module named 'numpy'.*numpy<2, pillow, onnxruntime"):
        BackendPython.probe(bare / "bin" / "python")
