"""A real tritonserver on 127.0.0.1 serving export.triton_repo's repository (the Python-backend twin,
as this machine's server has only the python and ensemble backends): the tagger answers as the
in-process Predictor does, over HTTP and gRPC, under concurrency and sustained load; bad images fail
their own requests; the generated tensorrt_plan and onnxruntime_onnx configs pass the server's own
checks. Skipped, with the reason, where no server or no Python environment for its models exists."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tritonclient.http", reason="tritonclient (the serve extra) is not installed")

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from core.errors import BadInputError, MissingDependencyError, ServingError
from core.preprocessing import image_files
from export.triton_repo import RepositoryOptions, write_repository
from runtime import FailedItem, Predictor
from runtime.triton_server import TritonServer, free_ports
from tests.helpers import fake_plan

LOAD_SECONDS = 30.0
TOLERANCE = 1e-5  # the served path runs the same graph on the same pixels: only float order may differ


def _server(repository: Path) -> TritonServer:
    http, grpc, metrics = free_ports(3)
    return TritonServer(repository, http_port=http, grpc_port=grpc, metrics_port=metrics, startup_timeout=120)


@contextlib.contextmanager
def _twin_served(artifact: Path, folder: Path) -> Iterator[TritonServer]:
    """``artifact``'s repository with the Python-backend twin on the CPU, served until the block ends."""
    repository = write_repository(
        artifact, folder / "repo", RepositoryOptions(classifier="python", kind="cpu"), force=False
    )
    server = _server(repository)
    try:
        server.start()
    except MissingDependencyError as exc:
        pytest.skip(f"no Triton server here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(fp32_graph: Path, tmp_path_factory: pytest.TempPathFactory):
    with _twin_served(fp32_graph, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="module")
def expected(fp32_graph: Path, demo_data: Path) -> dict[bytes, object]:
    """In-process results of the validation JPEGs, by their bytes."""
    files = image_files(demo_data / "val")[:12]
    with Predictor(fp32_graph) as predictor:
        results = predictor.predict([str(f) for f in files])
    return {f.read_bytes(): r for f, r in zip(files, results, strict=True)}


def _infer(module, client, images: list[bytes], **outputs):
    feed = module.InferInput("IMAGE", [len(images), 1], "BYTES")
    feed.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(-1, 1))
    return client.infer("tagger", [feed], **outputs)


def _check(reply, images: list[bytes], expected: dict) -> None:
    probabilities = reply.as_numpy("probabilities")
    labels = [json.loads(row[0]) for row in reply.as_numpy("labels")]
    for image, row, row_labels in zip(images, probabilities, labels, strict=True):
        assert np.abs(row - expected[image].scores).max() <= TOLERANCE
        assert row_labels == list(expected[image].labels)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_tagger_answers_as_the_in_process_predictor(served: TritonServer, expected: dict, protocol: str) -> None:
    module = httpclient if protocol == "http" else grpcclient
    address = getattr(served.endpoints, protocol).split("://")[1]
    with module.InferenceServerClient(address) as client:
        images = list(expected)
        _check(_infer(module, client, images[:4]), images[:4], expected)  # one request of 4
        for image in images:
            _check(_infer(module, client, [image]), [image], expected)


def test_the_classification_extension_returns_the_top_classes_with_their_labels(
    served: TritonServer, expected: dict, fp32_graph: Path
) -> None:
    from tests.helpers import facts_of

    names = facts_of(fp32_graph).class_names
    image, result = next(iter(expected.items()))
    with httpclient.InferenceServerClient(served.endpoints.http.split("://")[1]) as client:
        wanted = [httpclient.InferRequestedOutput("probabilities", class_count=3)]
        top = [
            entry.decode().split(":")
            for entry in _infer(httpclient, client, [image], outputs=wanted).as_numpy("probabilities")[0]
        ]
    order = np.argsort(-result.scores, kind="stable")[:3]
    assert [int(index) for _, index, _ in top] == list(order)
    assert [label for _, _, label in top] == [names[i] for i in order]
    assert [float(value) for value, _, _ in top] == pytest.approx(result.scores[order], abs=TOLERANCE)


def test_a_corrupt_jpeg_fails_its_own_request_and_the_next_ones_succeed(served: TritonServer, expected: dict) -> None:
    good = next(iter(expected))
    corrupt = good[:300] + bytes(200)  # a JPEG header, then nothing decodable
    with httpclient.InferenceServerClient(served.endpoints.http.split("://")[1]) as client:
        with pytest.raises(InferenceServerException, match="bad image: item 0: .*not a readable image") as caught:
            _infer(httpclient, client, [corrupt])
        assert caught.value.status() == "400"
        for _ in range(3):
            _check(_infer(httpclient, client, [good]), [good], expected)


def test_32_concurrent_clients_all_get_their_own_answers(served: TritonServer, expected: dict) -> None:
    images = list(expected)

    def client_session(number: int) -> int:
        module = httpclient if number % 2 else grpcclient
        address = (served.endpoints.http if number % 2 else served.endpoints.grpc).split("://")[1]
        with module.InferenceServerClient(address) as client:
            for k in range(3):
                image = images[(number + k) % len(images)]
                _check(_infer(module, client, [image]), [image], expected)
        return 3

    with ThreadPoolExecutor(32) as pool:
        assert sum(pool.map(client_session, range(32))) == 96


def test_a_sustained_load_loses_nothing(served: TritonServer, expected: dict) -> None:
    images = list(expected)
    deadline = time.monotonic() + LOAD_SECONDS
    counts, lock = {"sent": 0, "right": 0}, threading.Lock()

    def worker(number: int) -> None:
        with grpcclient.InferenceServerClient(served.endpoints.grpc.split("://")[1]) as client:
            for k in range(100_000):  # bounded by the deadline first
                if time.monotonic() > deadline:
                    return
                batch = [images[(number + k + j) % len(images)] for j in range(1 + k % 3)]
                with lock:
                    counts["sent"] += 1
                _check(_infer(grpcclient, client, batch, client_timeout=60), batch, expected)
                with lock:
                    counts["right"] += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert counts["sent"] == counts["right"] > 50


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_predictor_on_the_url_equals_the_in_process_one(
    served: TritonServer, fp32_graph: Path, demo_data: Path, scheme: str
) -> None:
    files = [str(f) for f in image_files(demo_data / "val")[:10]]
    pil = Image.open(files[0]).convert("L")
    pixels = np.asarray(Image.open(files[1]))
    items = [*files, pil, pixels]
    url = f"{getattr(served.endpoints, scheme)}/tagger"
    options = {"threshold": 0.4, "top_k": 3, "batch_size": 4}
    with Predictor(url, **options) as remote, Predictor(fp32_graph, **options) as local:
        assert remote.backend == "triton" and remote.class_names == local.class_names
        served_results, local_results = remote.predict(items), local.predict(items)
        for a, b in zip(served_results, local_results, strict=True):
            assert (a.index, a.source, a.labels) == (b.index, b.source, b.labels)
            assert np.abs(a.scores - b.scores).max() <= TOLERANCE
            assert [name for name, _ in a.top_k] == [name for name, _ in b.top_k]
        corrupt = Path(files[2]).read_bytes()[:300] + bytes(200)
        with pytest.raises(BadInputError, match=r"item 1 \(500 bytes\): .*not a readable image"):
            remote.predict([files[0], corrupt, files[1]])
        mixed = remote.predict([files[0], corrupt, np.zeros((3, 8, 8), np.float32), "missing.jpg"], skip_bad=True)
        assert mixed[0].ok and [type(r) for r in mixed[1:]] == [FailedItem] * 3
        assert "preprocessed array" in mixed[2].error and "not found" in mixed[3].error


def test_a_graph_with_a_uint8_input_is_served_uint8_pixels_and_answers_as_the_float_graph(
    uint8_graph: Path, expected: dict, tmp_path: Path
) -> None:
    with _twin_served(uint8_graph, tmp_path) as server, Predictor(f"{server.endpoints.http}/tagger") as predictor:
        assert predictor.facts.input_format == "uint8"
        results = predictor.predict(list(expected))
    for image, result in zip(expected, results, strict=True):
        assert np.abs(result.scores - expected[image].scores).max() <= TOLERANCE
        assert result.labels == expected[image].labels


def test_a_predictor_on_a_url_without_a_server_is_a_clear_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(ServingError, match="does not answer"):
        Predictor(f"http://127.0.0.1:{port}/tagger")


@pytest.mark.parametrize("artifact", ["onnx", "plan"])
def test_the_tensorrt_and_onnxruntime_configs_pass_the_real_servers_checks(
    served: TritonServer, fp32_graph: Path, tmp_path: Path, artifact: str
) -> None:
    """Loaded alone by the real server, each classifier config fails only for want of its backend library
    (this server has only python and ensemble): every check before that one passed."""
    source = fp32_graph if artifact == "onnx" else fake_plan(tmp_path, fp32_graph)
    full = write_repository(source, tmp_path / "full", RepositoryOptions(), force=False)
    alone = tmp_path / "alone"
    alone.mkdir()
    (full / "classifier").rename(alone / "classifier")
    backend = {"onnx": "onnxruntime", "plan": "tensorrt"}[artifact]
    with pytest.raises(ServingError) as caught, _server(alone):
        pass
    reason = str(caught.value)
    assert reason.count("failed to load") == 1 and "model 'classifier' failed to load" in reason
    assert f"unable to find backend library for backend '{backend}'" in reason


def test_a_python_model_that_cannot_start_names_itself_and_its_reason(fp32_graph: Path, tmp_path: Path) -> None:
    repository = write_repository(fp32_graph, tmp_path / "repo", RepositoryOptions(kind="cpu"), force=False)
    (repository / "preprocess" / "1" / "model.py").write_text("raise RuntimeError('no preprocessing here')\n")
    server = _server(repository)
    try:
        with pytest.raises(ServingError, match="model 'preprocess' failed to load: .*no preprocessing here"):
            server.start()
    except MissingDependencyError as exc:
        pytest.skip(f"no Triton server here: {exc}")
    finally:
        server.stop()


def test_the_benchmark_times_a_served_url_on_files_beside_the_in_process_predictor(
    served: TritonServer, fp32_graph: Path, demo_data: Path
) -> None:
    from runtime.benchmark import benchmark
    from runtime.serving_benchmark import concurrency_benchmark, markdown

    files = image_files(demo_data / "val")[:8]
    url = f"{served.endpoints.http}/tagger"
    result = benchmark([fp32_graph, url], [1, 4], images=files, warmup=1, iterations=2, rounds=1)
    served_rows = [row for row in result["rows"] if row["artifact"] == url]
    assert [(row["input"], row["batch"]) for row in served_rows] == [("JPEG files", 1), ("JPEG files", 4)]
    assert all(row["backend"] == "triton" and row["images_per_s"] > 0 for row in served_rows)

    result = concurrency_benchmark([fp32_graph, url], files, (1, 4), seconds=1.0, warmup_seconds=0.2)
    rows = {(row["target"], row["clients"]): row for row in result["rows"]}
    assert set(rows) == {(str(fp32_graph), 1), (str(fp32_graph), 4), (url, 1), (url, 4)}
    assert all(row["failed_images"] == 0 and row["requests"] > 0 for row in rows.values())
    for clients in (1, 4):  # every image the clients sent went through the classifier, in the batches it formed
        formed = rows[url, clients]["batches_formed"]
        assert sum(size * count for size, count in formed.items()) == rows[url, clients]["requests"]
        assert set(rows[url, clients]["server_ms_per_request"]) == {"tagger", "preprocess", "classifier", "postprocess"}
    assert "classifier batches formed" in markdown(result)
