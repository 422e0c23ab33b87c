"""Our TensorRT code against the genuine binding modules of every installed version (see
``tests/tensorrt_api``): the conformance tests in a process per version, and the build command with
a GPU visible but TensorRT's native library failing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.tensorrt_api.environment import environment, installed_bindings

VERSIONS = installed_bindings()
pytestmark = [
    pytest.mark.skipif(
        not VERSIONS, reason="no genuine TensorRT bindings installed; bash scripts/setup.sh installs them"
    ),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the stub native libraries"),
]
# The oldest (10.12: the first with strongly typed networks) and the newest, for the slower CLI check.
ENDS = [VERSIONS[0], VERSIONS[-1]] if VERSIONS else []


@pytest.mark.parametrize("bindings", VERSIONS, ids=lambda path: path.name)
def test_our_tensorrt_calls_against_the_genuine_bindings(bindings: Path, fp32_graph: Path, tmp_path: Path) -> None:
    env = environment(bindings, tmp_path) | {"TENSORRT_API_GRAPH": str(fp32_graph)}
    command = [sys.executable, "-m", "pytest", "tests/tensorrt_api", "-q", "-p", "no:cacheprovider"]
    command += ["--confcutdir", "tests/tensorrt_api", "-W", "error::pytest.PytestUnknownMarkWarning"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    assert "passed" in summary and not any(word in summary for word in ("skipped", "failed", "error")), output


@pytest.mark.parametrize("bindings", ENDS, ids=lambda path: path.name)
def test_build_engine_with_a_failing_native_library_ends_in_one_error_line(
    bindings: Path, fp32_graph: Path, tmp_path: Path
) -> None:
    env = environment(bindings, tmp_path)
    for variable in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):  # the listed GPU is the one used
        env.pop(variable, None)
    smi = tmp_path / "bin" / "nvidia-smi"  # a GPU is listed; TensorRT's native builder then fails
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0, GPU-00000000'\n")
    smi.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(smi.parent), env["PATH"]])
    plan = tmp_path / "model.plan"
    command = [sys.executable, "-m", "export.build_engine", str(fp32_graph), "--output", str(plan)]
    result = subprocess.run([*command, "--precision", "fp32"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    *progress, last = result.stderr.strip().splitlines()  # progress: the INFO line naming the build
    assert last.startswith("error: TensorRT could not create a builder;"), result.stderr
    assert all(line.startswith("INFO ") for line in progress) and "Traceback" not in result.stderr
    assert "tensorrt-cu12" in last and not plan.exists()
