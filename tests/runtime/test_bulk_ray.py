"""``python -m runtime bulk --engine ray`` on a local Ray cluster: the local engine's records, from scratch
and resuming a run another engine began (or one with nothing left to tag), and nothing left running.

Ray 2.60's core servers listen on every interface whatever address they are given, so the cluster
runs in a network namespace of its own (``unshare --net``), where the only interface is loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from runtime.bulk import read_records
from runtime.commands import main as runtime_main
from tests.helpers import REPO

pytestmark = pytest.mark.slow
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data (the ray extra)")


def _isolation_missing() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) and ip (iproute2) are needed to run Ray's servers on loopback only"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a network namespace ({probe.stderr.strip()})"


ISOLATION = _isolation_missing()


@pytest.fixture
def ray_home():
    """A short private folder for Ray's sessions and home files; checked to hold no running process after."""
    folder = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # Ray's socket paths must stay short
    shm_before = set(os.listdir("/dev/shm"))
    yield folder
    running = [
        pid
        for pid in filter(str.isdigit, os.listdir("/proc"))
        if str(folder).encode() in _read(f"/proc/{pid}/cmdline") + _read(f"/proc/{pid}/environ")
    ]
    shutil.rmtree(folder, ignore_errors=True)
    assert running == [], f"Ray processes left running: {running}"
    assert set(os.listdir("/dev/shm")) - shm_before == set()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def ray_bulk(home: Path, *argv: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "runtime", "bulk", *map(str, argv), "--engine", "ray"]
    script = 'ip link set lo up && exec "$@"'
    env = os.environ | {"RAY_TMPDIR": str(home), "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", *command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def same_records(a: Path, b: Path) -> None:
    ours, theirs = list(read_records(a)), list(read_records(b))
    assert [r["image"] for r in ours] == [r["image"] for r in theirs]
    for x, y in zip(ours, theirs, strict=True):
        assert x.get("error") == y.get("error") and x.get("labels") == y.get("labels")
        if "probabilities" in x:
            assert np.abs(np.array(x["probabilities"]) - np.array(y["probabilities"])).max() <= 1e-5


@pytest.mark.skipif(ISOLATION is not None, reason=str(ISOLATION))
def test_the_ray_engine_writes_the_local_records_and_resumes_a_local_run(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, ray_home: Path
) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(demo_data / "val", photos / "val")
    (photos / "val" / "m-truncated.jpg").write_bytes((photos / "val" / "000000.jpg").read_bytes()[:300])
    common = ["--images", photos, "--shard-size", "5"]
    local = tmp_path / "local"
    assert runtime_main(["bulk", str(fp32_graph), *map(str, common), "--output", str(local), "--skip-bad"]) == 0

    scratch = ray_bulk(ray_home, fp32_graph, *common, "--output", tmp_path / "ray", "--skip-bad", "--workers", "1")
    assert scratch.returncode == 0, scratch.stderr[-3000:]
    assert "25 images: 24 tagged, 1 failed" in scratch.stdout
    same_records(tmp_path / "ray", local)
    (tmp_path / "ray" / "complete.json").unlink()  # killed after its last shard: nothing left to tag
    finishing = ray_bulk(ray_home, fp32_graph, *common, "--output", tmp_path / "ray", "--skip-bad", "--resume")
    assert finishing.returncode == 0 and "(25 done before the resume)" in finishing.stdout, finishing.stderr[-3000:]
    assert (tmp_path / "ray" / "complete.json").is_file()

    begun = tmp_path / "begun"  # stops at the truncated image (image 24, shard 4) with shards 0-3 written
    assert runtime_main(["bulk", str(fp32_graph), *map(str, common), "--output", str(begun)]) == 1
    assert len(list(begun.glob("part-*"))) == 4
    resumed = ray_bulk(ray_home, fp32_graph, *common, "--output", begun, "--resume", "--skip-bad")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(20 done before the resume)" in resumed.stdout
    same_records(begun, local)


@pytest.mark.skipif(ISOLATION is not None, reason=str(ISOLATION))
def test_an_actor_that_cannot_load_the_artifact_is_a_typed_error(
    fp32_graph: Path, demo_data: Path, tmp_path: Path, ray_home: Path
) -> None:
    # The driver reads the graph on the CPU; the actors are asked for CUDA, which this machine lacks.
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the actors would load the graph")
    out = tmp_path / "o"
    failed = ray_bulk(ray_home, fp32_graph, "--images", demo_data / "val", "--output", out, "--device", "cuda")
    assert failed.returncode == 1, failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "CUDA" in last and "Traceback" not in failed.stderr
    assert not list(out.glob("part-*")) and not (out / "complete.json").exists()
