"""The Ray Data engine: the same shards, tagged by a pool of :class:`Predictor` actors.

The pending shards are the dataset's rows; each becomes its images' rows (read from the listing at
the shard's offset, so the driver never holds the image list), which CPU tasks decode and preprocess
(the one preprocessing definition, up to what the artifact takes: float32 images, or a quarter of
the bytes as the uint8 pixels of an artifact with a uint8 input) and an actor pool infers, one
:class:`Predictor` an actor (on its GPU where asked). The driver places each row in its shard by its
position, turns logits into records by the in-process rule, and writes each shard once it is whole,
so the output and the exactly-once guarantee are the local engine's. Without an address a local
cluster is started (node address 127.0.0.1, no dashboard) and stopped; with one, the run joins that
cluster, whose workers must have this toolkit installed and read the same paths (the images and the
output folder on a shared file system).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from core.errors import BadInputError, DeployError, MissingDependencyError, ServingError
from core.facts import ServingFacts

from ..inputs import prepare
from ..predictor import Predictor
from ..results import FailedItem, Prediction
from .listing import Shard, shard_images
from .model import Model
from .plan import Plan, image_path, stopped_by

# A decode task's CPU share: part of its time is spent reading the file. Asking other resources than
# the actors also keeps Ray from fusing decoding into them, which would run decoding and inference in
# turn instead of side by side.
DECODE_CPUS = 0.5


def import_ray():
    """``ray`` with Ray Data.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("--engine ray needs Ray Data: pip install 'masked-gat-deploy[ray]'") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Joins the cluster at ``address``, or starts a local one, for the run; leaves it afterwards. A
    session the caller had already opened is used as it is, and left open.

    Raises:
        ServingError: The cluster cannot be joined or started.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    try:
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ServingError(f"cannot join {where}: {exc}; check --address (or drop it to start one here)") from exc
    try:
        yield
    finally:
        ray.shutdown()


def run_ray(plan: Plan, model: Model, actor: dict[str, Any], *, workers: int, gpus_per_worker: float) -> None:
    """Tags every pending shard of ``plan`` in the current Ray session (:func:`ray_session`).

    ``actor``: the :class:`Predictor` options of each actor (artifact, backend, device).

    Raises:
        BadInputError: An image is unusable and ``plan.skip_bad`` is False; the shards before it are written.
        ServingError: A Ray worker failed (the error it raised, where it is one of this toolkit's).
    """
    ray = import_ray()
    from ray.exceptions import RayError

    context = ray.data.DataContext.get_current()
    saved = (
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        context.raise_original_map_exception,
    )
    context.execution_options.preserve_order = True  # rows in listing order: one shard assembled at a time
    context.enable_progress_bars = False  # the run's own bar counts images
    context.raise_original_map_exception = True  # a worker's own error, not Ray's wrapper of its text
    # Ray Data logs a worker's failure with its traceback, which the run reports in one line (the logs
    # stay in the session's ray-data log file); its progress and start lines would interleave with the bar.
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.CRITICAL)
    shards = [{"index": s.index, "first": s.first, "count": s.count, "offset": s.offset} for s in plan.pending]
    facts = model.facts
    dataset = (
        ray.data.from_items(shards, override_num_blocks=len(shards))
        .flat_map(_shard_rows, fn_kwargs={"listing": str(plan.listing.resolve()), "root": str(plan.root)})
        .map_batches(
            _decode,
            fn_kwargs={"facts": facts},
            batch_size=model.batch_size,
            batch_format="numpy",
            num_cpus=DECODE_CPUS,
        )
        .map_batches(
            _Classifier,
            # The actors take decoded rows (logits()), so they need no decoder of their own.
            fn_constructor_kwargs={"options": actor | {"batch_size": model.batch_size, "decoder": "pillow"}},
            batch_size=model.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus_per_worker or None,
        )
    )
    try:
        _assemble(dataset, plan, model)
    except RayError as exc:
        raise _typed(exc) from exc
    finally:
        data_logger.setLevel(level)
        (
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            context.raise_original_map_exception,
        ) = saved


def _typed(error: Exception) -> DeployError:
    """The toolkit's own error a Ray worker raised, or a :class:`ServingError` that names the failure."""
    from ray.exceptions import RayError

    seen = error
    while seen is not None:
        if isinstance(seen, DeployError) and not isinstance(seen, RayError):  # Ray's copy names its traceback
            if seen.args and isinstance(seen.args[0], str):  # Ray Data appends its retry advice on new lines
                seen.args = (seen.args[0].split("\n", 1)[0], *seen.args[1:])
            return seen
        seen = getattr(seen, "cause", None) or seen.__cause__
    summary = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return ServingError(f"a Ray worker failed: {summary[:500]}; the shards written so far are kept (--resume)")


def _assemble(dataset, plan: Plan, model: Model) -> None:
    """Places the rows into their shards (by position) and writes each shard once it is whole."""
    pending = {shard.index: shard for shard in plan.pending}
    images: dict[int, list[str | None]] = {}
    results: dict[int, list[Prediction | FailedItem | None]] = {}
    filled: dict[int, int] = {}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for index, position, image, logits, error in zip(
            batch["shard"], batch["position"], batch["image"], batch["logits"], batch["error"], strict=True
        ):
            shard = pending[int(index)]
            if error and not plan.skip_bad:
                raise stopped_by(int(position), str(image), str(error))
            slot = int(position) - shard.first
            images.setdefault(shard.index, [None] * shard.count)[slot] = str(image)
            results.setdefault(shard.index, [None] * shard.count)[slot] = model.result(
                int(position), str(image), logits, str(error) or None
            )
            filled[shard.index] = filled.get(shard.index, 0) + 1
            if filled[shard.index] == shard.count:
                del filled[shard.index]
                plan.write(shard, images.pop(shard.index), results.pop(shard.index))


def _shard_rows(row: dict[str, Any], listing: str, root: str) -> list[dict[str, Any]]:
    """A shard's images as rows (runs on a worker)."""
    shard = Shard(row["index"], row["first"], row["count"], row["offset"])
    return [
        {"shard": shard.index, "position": shard.first + offset, "image": image, "path": image_path(root, image)}
        for offset, image in enumerate(shard_images(listing, shard))
    ]


def _decode(batch: dict[str, np.ndarray], facts: ServingFacts) -> dict[str, np.ndarray]:
    """Decodes and preprocesses a batch of rows into the artifact's input (a CPU task); an unusable image
    keeps zeros and its error."""
    pixels = np.zeros((len(batch["path"]), *facts.input_item_shape), dtype=facts.input_dtype)
    errors = []
    for row, path in enumerate(batch["path"]):
        try:
            pixels[row] = prepare(int(batch["position"][row]), str(path), facts)
            errors.append("")
        except BadInputError as exc:
            errors.append(exc.problem)
    kept = {key: batch[key] for key in ("shard", "position", "image")}
    return kept | {"pixels": pixels, "error": np.array(errors, dtype=object)}


class _Classifier:
    """One actor's :class:`Predictor`: logits of the usable rows of each batch. An artifact the actor
    cannot load fails its first batch with the toolkit's own error (Ray reports a failed constructor
    as a dead actor, without the error's type)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.failure: DeployError | None = None
        try:
            self.predictor = Predictor(**options)
        except DeployError as exc:
            self.failure = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.failure is not None:
            raise self.failure
        usable = np.array([not error for error in batch["error"]], dtype=bool)
        logits = np.zeros((len(usable), len(self.predictor.class_names)), dtype=np.float32)
        if usable.any():
            logits[usable] = self.predictor.logits(np.ascontiguousarray(batch["pixels"][usable]))
        return {key: batch[key] for key in ("shard", "position", "image", "error")} | {"logits": logits}
