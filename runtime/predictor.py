"""``Predictor`` / ``predict``: images in, labels and probabilities out, on any backend.

A request is split into batches no larger than the artifact's limit. Images are decoded and
preprocessed on a small thread pool a couple of batches ahead of the batch being inferred, so
decoding overlaps inference (Pillow and every backend release the GIL); the batches stream through
the runner's ``infer_many``, which on TensorRT copies one batch in while the previous one computes.
Everything a call needs is local to the call or thread-safe (the runner, the pool), so threads may
share one predictor.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import BadInputError, ConfigError, InferenceError

from .backends import make_runner
from .inputs import describe, encoded, prepare, preprocessed_range
from .results import FailedItem, Prediction, class_threshold_overrides, make_prediction, threshold_vector
from .torch_decode import DECODERS, gated_decoder, wants_torchvision
from .triton_client import BadImageReply, RemoteTagger, is_url

logger = logging.getLogger(__name__)

# Default batch of artifacts that record no limit (eager checkpoints), which take any batch_size.
UNLIMITED_BATCH = 32
# Batches of one request a served predictor keeps in flight.
REMOTE_IN_FLIGHT = 8
Result = Prediction | FailedItem


class Predictor:
    """Serves one artifact (``.plan`` → TensorRT, ``.onnx`` → ONNX Runtime, ``.pt`` → torch), or the
    ``tagger`` a Triton server serves (``http://HOST:PORT/tagger``, ``grpc://…``; see ``runtime.triton_client``).

    Args:
        artifact: The file to serve, or the served tagger's URL.
        backend: ``auto`` (from the suffix) or the backend to insist on.
        device: ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` for torch).
        fp16: FP16 autocast (torch backend on CUDA).
        decoder: ``pillow`` (the CPU definition, ``core.preprocessing``), ``torchvision`` (JPEG files and
            bytes decoded and resized on the runner's device, nvJPEG on CUDA, with the CPU definition as the
            fallback per image; ``runtime.torch_decode``), or ``auto``: torchvision where the torch or TensorRT
            backend runs on CUDA, Pillow elsewhere.
        channels_last, cuda_graphs: Torch-backend options (``runtime.torch_runner``).
        threshold: Default probability threshold of every class (default: the artifact's; a served
            tagger's own per-class thresholds).
        class_thresholds: Per-class thresholds over the default: a mapping, or a JSON file of one.
        top_k: Also return the k most probable classes of each image.
        batch_size: Images per inference call, at most the artifact's limit (default: that limit; 32 for a
            checkpoint, which has none).
        decode_workers: Threads that decode and preprocess images (for a served tagger: batches of one
            request in flight).

    Raises:
        ConfigError: An option is invalid or does not fit the artifact.
        InputFileError: The artifact cannot be read or served.
        StaleArtifactError: A plan does not fit this machine or no longer matches its manifest.
        MissingDependencyError: The backend's library or device is absent.
        ServingError: A served tagger does not answer, or is not one ``export.triton_repo`` wrote.
    """

    def __init__(
        self,
        artifact: str | os.PathLike,
        backend: str = "auto",
        *,
        device: str = "auto",
        fp16: bool = False,
        decoder: str = "auto",
        channels_last: bool = False,
        cuda_graphs: bool = False,
        threshold: float | None = None,
        class_thresholds: Mapping[str, float] | str | os.PathLike | None = None,
        top_k: int | None = None,
        batch_size: int | None = None,
        decode_workers: int | None = None,
    ) -> None:
        remote = is_url(artifact)
        self.artifact = artifact if remote else Path(artifact)
        top_k = _whole(top_k, "top_k")
        batch_size = _whole(batch_size, "batch_size")
        decode_workers = _whole(decode_workers, "decode_workers")
        class_thresholds = class_threshold_overrides(class_thresholds)
        if decoder not in DECODERS:
            raise ConfigError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        local_options = backend not in ("auto", "triton") or device != "auto" or fp16 or channels_last or cuda_graphs
        if remote and (local_options or decoder == "torchvision"):
            raise ConfigError(
                f"{artifact} is served by Triton, which decodes and runs on the server's backend and device; drop "
                "backend, device, fp16, decoder, channels_last and cuda_graphs"
            )
        self._calls = threading.Condition()  # guards the calls in flight and the closing, for close()
        self._in_flight = 0
        self._closed = False
        self._remote: RemoteTagger | None = None
        self._runner = None
        self._decoder = None
        if remote:
            self._remote = RemoteTagger(artifact)
            facts, self.backend, self.device = self._remote.facts, "triton", "remote"
            served_thresholds, limit = self._remote.thresholds, self._remote.max_batch
        else:
            runner = make_runner(
                self.artifact, backend, device=device, fp16=fp16, channels_last=channels_last, cuda_graphs=cuda_graphs
            )
            self._runner = runner.__enter__()
            facts, self.backend, self.device = runner.facts, runner.name, runner.device
            served_thresholds, limit = facts.decision_threshold, facts.max_batch
        try:
            self.facts = facts
            self.class_names: tuple[str, ...] = facts.class_names
            self.thresholds = threshold_vector(
                self.class_names, served_thresholds if threshold is None else threshold, class_thresholds
            )
            if batch_size is not None and limit is not None and not 1 <= batch_size <= limit:
                raise ConfigError(f"batch_size {batch_size}: {artifact} takes 1 to {limit} images a call")
            self.batch_size = batch_size or limit or UNLIMITED_BATCH
            self.top_k = top_k
            if not remote and wants_torchvision(decoder, self.backend, self.device):
                where = "cpu" if self.backend == "onnxruntime" else self.device
                self._decoder = gated_decoder(facts, where, strict=decoder == "torchvision")
            # Decoding is CPU work; a served tagger's pool only waits on the network.
            workers = decode_workers or (REMOTE_IN_FLIGHT if remote else min(8, len(os.sched_getaffinity(0))))
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        except BaseException:
            self._release()
            raise

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Releases the decode threads and the backend, once the calls in flight in other threads have
        finished; calls made after ``close`` began are refused."""
        with self._calls:
            if self._closed:
                return
            self._closed = True
            try:
                self._calls.wait_for(lambda: self._in_flight == 0)
            except BaseException:  # interrupted while waiting: not closed, so a later close() releases
                self._closed = False
                raise
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._release()

    def _release(self) -> None:
        if self._remote is not None:
            self._remote.close()
        if self._runner is not None:
            self._runner.__exit__(None, None, None)

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """Counts a call in flight; refuses it once the predictor is closed (or closing)."""
        with self._calls:
            if self._closed:
                raise ConfigError("the predictor is closed")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._calls:
                self._in_flight -= 1
                self._calls.notify_all()

    def predict(
        self,
        images,
        *,
        threshold: float | Mapping[str, float] | None = None,
        top_k: int | None = None,
        skip_bad: bool = False,
    ) -> list[Result]:
        """Labels and probabilities of each image, in request order.

        Args:
            images: One image or a sequence of them: paths, encoded bytes, PIL images, HWC uint8
                arrays, or float32 [3, S, S] arrays already preprocessed (an [B, …] array is B images;
                preprocessed arrays only for an artifact with a float32 input).
            threshold: For this call: one threshold for every class, or per-class overrides of the
                predictor's thresholds.
            top_k: For this call, instead of the predictor's ``top_k``.
            skip_bad: Return a :class:`FailedItem` in place of each unusable image instead of raising.

        Raises:
            BadInputError: An image is unusable (and ``skip_bad`` is False); it names the index and item.
            InferenceError: The backend returned unusable output.
        """
        with self._call():
            return self._predict(images, threshold, top_k, skip_bad)

    def _predict(self, images, threshold, top_k, skip_bad: bool) -> list[Result]:
        items = _as_items(images)
        thresholds = self._thresholds_for(threshold)
        top_k = self.top_k if top_k is None else _whole(top_k, "top_k")
        if self._remote is not None:
            return self._predict_remote(items, thresholds, top_k, skip_bad)
        results: list[Result | None] = [None] * len(items)
        pending: deque[Future] = deque()

        def failed(exc: BadInputError) -> None:
            if not skip_bad:
                raise exc
            results[exc.index] = FailedItem(exc.index, exc.source, exc.problem)

        def decoded_batches() -> Iterator[tuple[list[int], object]]:
            """Each batch decoded by torchvision on the device, two batches ahead on the pool."""
            starts = range(0, len(items), self.batch_size)
            for number, start in enumerate(starts):
                while len(pending) < 2 and number + len(pending) < len(starts):
                    first = starts[number + len(pending)]
                    chunk = items[first : first + self.batch_size]
                    pending.append(self._pool.submit(self._decoder.batch, chunk, first))
                usable, batch, errors = pending.popleft().result()
                for exc in errors:
                    failed(exc)
                if batch is not None:
                    yield (
                        [start + offset for offset in usable],
                        batch.numpy() if self.backend == "onnxruntime" else batch,
                    )

        def batches() -> Iterator[tuple[list[int], np.ndarray]]:
            """Each batch's usable indices and inputs; unusable items become results (or raise)."""
            submitted = 0
            for start in range(0, len(items), self.batch_size):
                stop = min(len(items), start + self.batch_size)
                while submitted < min(len(items), stop + 2 * self.batch_size):  # decode two batches ahead
                    pending.append(self._pool.submit(self._prepare, submitted, items[submitted]))
                    submitted += 1
                arrays, indices = [], []
                for index in range(start, stop):
                    try:
                        arrays.append(pending.popleft().result())
                        indices.append(index)
                    except BadInputError as exc:
                        failed(exc)
                if arrays:
                    yield indices, np.stack(arrays)

        try:
            decoded = self._decoder is not None
            for indices, logits in self._logits_stream(decoded_batches() if decoded else batches(), decoded=decoded):
                for index, row in zip(indices, logits, strict=True):
                    source = describe(items[index])
                    results[index] = make_prediction(index, source, row, self.class_names, thresholds, top_k)
        finally:
            for future in pending:
                future.cancel()
        return results

    def _predict_remote(self, items: list, thresholds: np.ndarray, top_k: int | None, skip_bad: bool) -> list[Result]:
        """Batches sent to the server, several in flight (the server batches them again): a request of one
        batch from the calling thread, so that callers' threads are the client's concurrency; longer ones
        from the pool. The results are made here by the same rules as in process."""
        batches = [range(s, min(len(items), s + self.batch_size)) for s in range(0, len(items), self.batch_size)]
        if not batches:
            return []
        futures = [self._pool.submit(self._remote_batch, items, batch) for batch in batches] if len(batches) > 1 else []
        answers = (future.result() for future in futures) if futures else [self._remote_batch(items, batches[0])]
        results: list[Result] = []
        try:
            for answer in answers:
                for index, outcome in answer:
                    if isinstance(outcome, BadInputError):
                        if not skip_bad:
                            raise outcome
                        results.append(FailedItem(index, outcome.source, outcome.problem))
                        continue
                    source = describe(items[index])
                    results.append(make_prediction(index, source, outcome, self.class_names, thresholds, top_k))
        finally:
            for future in futures:
                future.cancel()
        return results

    def _remote_batch(self, items: list, indices: range) -> list[tuple[int, np.ndarray | BadInputError]]:
        """Each item's logits row, or the :class:`BadInputError` that names what is wrong with it."""
        outcomes: dict[int, np.ndarray | BadInputError] = {}
        images: dict[int, bytes] = {}
        for index in indices:
            try:
                images[index] = encoded(index, items[index])
            except BadInputError as exc:
                outcomes[index] = exc
        if images:
            try:
                outcomes.update(zip(images, self._remote.logits(list(images.values())), strict=True))
            except BadImageReply:
                for index, image in images.items():  # one of them is unusable: asked alone, each says which
                    try:
                        outcomes[index] = self._remote.logits([image])[0]
                    except BadImageReply as exc:
                        outcomes[index] = BadInputError(index, describe(items[index]), exc.problem)
        return [(index, outcomes[index]) for index in indices]

    def _prepare(self, index: int, item) -> np.ndarray:
        return prepare(index, item, self.facts)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The backend's logits [B, N] of a batch in the artifact's input format, B ≤ ``batch_size``: a
        preprocessed float32 batch [B, 3, S, S], or resized uint8 pixels [B, S, S, 3] for an artifact
        with a uint8 input (``facts.input_format``).

        Raises:
            ConfigError: The batch is not of that dtype and shape with 1 ≤ B ≤ ``batch_size``.
            BadInputError: A float batch holds NaN or infinite values.
            InferenceError: The backend returned unusable output.
        """
        with self._call():
            if self._remote is not None:
                raise ConfigError(f"{self.artifact} is served: pass images to predict(); logits() runs in process")
            ((_, logits),) = self._logits_stream(iter([((), batch)]))
            return logits

    def _logits_stream(
        self, batches: Iterator[tuple[object, np.ndarray]], *, decoded: bool = False
    ) -> Iterator[tuple[object, np.ndarray]]:
        """(key, logits) of each (key, batch) in order, the batches streamed through the runner; ``decoded``:
        the batches are the decoder's, made to the facts (a caller's are checked)."""
        keys: deque[tuple[object, np.ndarray]] = deque()

        def feeds() -> Iterator[dict[str, np.ndarray]]:
            for key, batch in batches:
                if not decoded:
                    self._check_batch(batch)
                keys.append((key, batch))
                yield {self.facts.input_name: batch}

        for outputs in self._runner.infer_many(feeds()):
            key, batch = keys.popleft()
            yield key, self._checked_logits(batch, outputs)

    def _check_batch(self, batch: np.ndarray) -> None:
        facts = self.facts
        if (
            not isinstance(batch, np.ndarray)
            or batch.dtype != facts.input_dtype
            or batch.shape[1:] != facts.input_item_shape
            or not 1 <= len(batch) <= self.batch_size
        ):
            found = f"{batch.dtype} {batch.shape}" if isinstance(batch, np.ndarray) else type(batch).__name__
            shape = ", ".join(map(str, facts.input_item_shape))
            if facts.input_format == "uint8":
                what, how = "uint8", "resize them with core.preprocessing.resized"
                kind = " of resized pixels (input format uint8)"
            else:
                what, how, kind = "preprocessed float32", "preprocess them with core.preprocessing.preprocess_batch", ""
            raise ConfigError(
                f"logits() takes a {what} batch [1..{self.batch_size}, {shape}]{kind}, got {found}; pass images to "
                f"predict(), or {how}"
            )
        if facts.input_format == "float32" and not np.isfinite(batch).all():
            raise BadInputError(0, f"a batch {batch.shape}", "holds NaN or infinite values")

    def _checked_logits(self, batch: np.ndarray, outputs: dict[str, np.ndarray]) -> np.ndarray:
        logits = outputs.get(self.facts.output_name)
        expected = (len(batch), len(self.class_names))
        if logits is None or logits.shape != expected:
            found = None if logits is None else logits.shape
            raise InferenceError(f"{self.artifact.name}: expected logits of shape {expected}, got {found}")
        if not np.isfinite(logits).all():
            low, high = preprocessed_range(self.facts.preprocessing)
            float_input = self.facts.input_format == "float32" and isinstance(batch, np.ndarray)
            out_of_range = float_input and (np.any(batch < low.min()) or np.any(batch > high.max()))
            if out_of_range:  # the input is out of range, not the artifact
                raise BadInputError(
                    0,
                    f"a batch {batch.shape}",
                    f"holds values from {batch.min():.3g} to {batch.max():.3g}, and the logits overflowed; "
                    f"preprocessing gives {low.min():.3g} to {high.max():.3g} (pass images to predict(), or "
                    "core.preprocessing.preprocess_batch)",
                )
            raise InferenceError(
                f"{self.artifact.name} produced NaN or infinite logits from an input in range; the artifact is "
                "numerically broken (check it with python -m export.check_parity)"
            )
        return logits

    def _thresholds_for(self, threshold: float | Mapping[str, float] | None) -> np.ndarray:
        if threshold is None:
            return self.thresholds
        if isinstance(threshold, Mapping):
            return threshold_vector(self.class_names, self.thresholds, threshold)
        return threshold_vector(self.class_names, threshold)


def predict(
    images,
    model: str | os.PathLike,
    *,
    backend: str = "auto",
    skip_bad: bool = False,
    **options,
) -> list[Result]:
    """One-shot: opens a :class:`Predictor` on ``model``, predicts ``images``, closes it.

    ``options`` are :class:`Predictor`'s keyword arguments.
    """
    with Predictor(model, backend, **options) as predictor:
        return predictor.predict(images, skip_bad=skip_bad)


def _as_items(images) -> list:
    if isinstance(images, str | os.PathLike | bytes | bytearray | Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Sequence):
        return list(images)
    raise ConfigError(f"images must be an image or a sequence of images, got {type(images).__name__}")


def _whole(value, what: str) -> int | None:
    """``value`` as an int when it is a whole number of at least 1 (numpy integers included), None as None."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a whole number of at least 1, got {value!r}")
    return int(value)
