"""The client side of a served ``tagger`` ensemble: ``Predictor("http://host:port/tagger")`` runs on this.

``tritonclient`` (the ``serve`` extra) is imported here only, through :func:`import_tritonclient`.
A :class:`RemoteTagger` reads what it serves from the server (the artifact's facts and the
thresholds ``export.triton_repo`` wrote into the ensemble's configuration), sends encoded images and
returns their logits, so the caller applies the same score rules as in process. Each thread has a
client of its own (``tritonclient``'s are not meant to be shared between threads).
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Sequence
from types import ModuleType
from urllib.parse import urlsplit

import numpy as np

from core.errors import ConfigError, InferenceError, MissingDependencyError, ServingError
from core.facts import ArtifactFacts

from .triton_names import BAD_IMAGE, FACTS_PARAMETER, IMAGE, LOGITS, THRESHOLDS_PARAMETER

INSTALL_HINT = "pip install 'tritonclient[http,grpc]>=2.60,<3' (the serve extra: pip install -e '.[serve]')"
SCHEMES = {"http": "http", "https": "http", "grpc": "grpc"}
_TIMEOUT_S = 60.0
# How the preprocess model words an unusable image (runtime.triton_models.preprocess).
_BAD_IMAGE = re.compile(rf"{BAD_IMAGE}: item (\d+): (.*)", re.DOTALL)


def import_tritonclient(protocol: str) -> ModuleType:
    """``tritonclient.http`` or ``tritonclient.grpc``, or a :class:`MissingDependencyError` with the hint."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
    except ImportError as exc:
        raise MissingDependencyError(f"tritonclient cannot be imported ({exc}); {INSTALL_HINT}") from exc
    return client


def model_config_pb2() -> ModuleType:
    """Triton's model-config protobuf module (shipped in ``tritonclient``)."""
    import_tritonclient("grpc")
    from tritonclient.grpc import model_config_pb2 as module

    return module


def is_url(artifact: object) -> bool:
    """Whether ``artifact`` names a served model (``http://``, ``https://`` or ``grpc://``) rather than a file."""
    return isinstance(artifact, str) and urlsplit(artifact).scheme in SCHEMES and "://" in artifact


class RemoteTagger:
    """A ``tagger`` ensemble served by Triton at ``url`` (``http://HOST:PORT/tagger``, or ``grpc://``).

    Raises (on construction):
        ConfigError: The URL is not ``SCHEME://HOST:PORT/MODEL``.
        ServingError: The server does not answer, or the model is not ready or not a tagger.
        MissingDependencyError: ``tritonclient`` is absent.
    """

    def __init__(self, url: str, timeout: float = _TIMEOUT_S) -> None:
        parts = urlsplit(url)
        model = parts.path.strip("/")
        if parts.scheme not in SCHEMES or not parts.netloc or not model or "/" in model:
            raise ConfigError(f"{url}: expected SCHEME://HOST:PORT/MODEL, e.g. http://127.0.0.1:8000/tagger")
        self.url, self.model, self.timeout = url, model, timeout
        self.protocol = SCHEMES[parts.scheme]
        self._address = parts.netloc
        self._ssl = parts.scheme == "https"
        self._module = import_tritonclient(self.protocol)
        # One client per thread: the HTTP client belongs to the thread that made it (gevent). A thread's client
        # goes with the thread; close() closes those still alive.
        self._local = threading.local()
        self._clients: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        try:
            config = self._config()
        except BaseException:
            self.close()
            raise
        try:
            parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
            facts = ArtifactFacts.from_dict(json.loads(parameters[FACTS_PARAMETER]), url)
            self.thresholds = np.asarray(json.loads(parameters[THRESHOLDS_PARAMETER]), dtype=np.float32)
        except (KeyError, ValueError) as exc:
            raise ServingError(
                f"{url}: the model does not describe its artifact ({exc}); serve a repository written by "
                "python -m export.triton_repo"
            ) from exc
        self.facts = facts.serving()
        self.max_batch = int(config.get("max_batch_size", 1))

    def _client(self):
        """This thread's client (``tritonclient``'s are not meant to be shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._module.InferenceServerClient(self._address, ssl=self._ssl)
            else:
                client = self._module.InferenceServerClient(
                    self._address, ssl=self._ssl, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            self._local.client = client
            with self._lock:
                self._clients.add(client)
        return client

    def _config(self) -> dict:
        from tritonclient.utils import InferenceServerException

        try:
            client = self._client()
            if not client.is_model_ready(self.model):
                raise ServingError(f"{self.url}: the server has no ready model {self.model!r}")
            config = client.get_model_config(self.model, **self._as_json())
        except InferenceServerException as exc:
            raise ServingError(f"{self.url}: {exc.message()}") from exc
        except OSError as exc:  # refused, unreachable, timed out
            raise ServingError(f"{self.url}: the server does not answer ({exc}); is it running?") from exc
        return config["config"] if self.protocol == "grpc" else config

    def logits(self, images: list[bytes]) -> np.ndarray:
        """The logits [B, N] of encoded images (B ≤ ``max_batch``).

        Raises:
            BadImageReply: The server found an image unusable (its message names the item).
            ServingError: The server failed the request or does not answer.
            InferenceError: It returned logits of the wrong shape.
        """
        from tritonclient.utils import InferenceServerException

        feed = self._module.InferInput(IMAGE, [len(images), 1], "BYTES")
        feed.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(-1, 1))
        wanted = [self._module.InferRequestedOutput(LOGITS)]
        try:
            reply = self._client().infer(self.model, [feed], outputs=wanted, **self._timeout())
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            bad = _BAD_IMAGE.search(message)
            if bad:
                raise BadImageReply(int(bad.group(1)), bad.group(2)) from exc
            raise ServingError(f"{self.url}: {message}") from exc
        except OSError as exc:
            raise ServingError(f"{self.url}: the server does not answer ({exc})") from exc
        logits = reply.as_numpy(LOGITS)
        expected = (len(images), len(self.facts.class_names))
        if logits is None or logits.shape != expected:
            raise InferenceError(
                f"{self.url}: expected logits of shape {expected}, got {getattr(logits, 'shape', None)}"
            )
        return logits.astype(np.float32, copy=False)

    def statistics(self, models: Sequence[str]) -> dict[str, dict]:
        """The server's cumulative statistics of ``models`` (Triton's statistics extension, as JSON).

        Raises:
            ServingError: The server does not answer or has no such model.
        """
        from tritonclient.utils import InferenceServerException

        try:
            client = self._client()
            return {m: client.get_inference_statistics(m, **self._as_json())["model_stats"][0] for m in models}
        except (InferenceServerException, OSError, KeyError, IndexError) as exc:
            raise ServingError(f"{self.url}: no statistics of {', '.join(models)} ({exc!r})") from exc

    def _as_json(self) -> dict:
        # The HTTP client answers JSON already; the gRPC one, protobuf unless asked.
        return {"as_json": True} if self.protocol == "grpc" else {}

    def _timeout(self) -> dict:
        # gRPC takes a per-call deadline; the HTTP client's timeouts are set on the client.
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            client.close()


class BadImageReply(Exception):
    """The server refused item ``index`` of the request, for ``problem``."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"item {index}: {problem}")
        self.index = index
        self.problem = problem
