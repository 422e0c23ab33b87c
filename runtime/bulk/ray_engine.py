"""The Ray Data engine: the same shards, tagged by a pool of :class:`Predictor` actors.

The pending shards are the dataset's rows; each becomes its images' rows (read from the listing
at the shard's offset, so the driver never holds the image list), which CPU tasks decode and
preprocess (the one preprocessing definition) and an actor pool infers, one :class:`Predictor` an
actor (on its GPU where asked). Rows come back to the driver in listing order; the driver turns
logits into records by the in-process rule and writes each shard once it is whole, so the output
and the exactly-once guarantee are the local engine's. Without an address a local cluster is
started (bound to 127.0.0.1) and stopped; with one, the run joins that cluster, whose workers must
have this toolkit installed and read the same paths (the images and the output folder on a shared
file system).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.config import Preprocessing
from core.errors import BadInputError, MissingDependencyError

from ..inputs import prepare
from ..predictor import Predictor
from .listing import Shard, shard_images
from .plan import Decisions, Plan

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


def run_ray(
    plan: Plan,
    decisions: Decisions,
    predictor_options: Mapping[str, Any],
    *,
    image_size: int,
    preprocessing: Preprocessing,
    batch_size: int,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
) -> None:
    """Tags every pending shard of ``plan`` on a Ray cluster (a local one without ``address``).

    Raises:
        BadInputError: An image is unusable and ``plan.skip_bad`` is False; the shards before it are written.
    """
    ray = import_ray()
    connected = ray.is_initialized()  # the caller's own session: used as it is, and left running
    if connected:
        pass
    elif address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(
            _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # rows in listing order: one shard assembled at a time
        context.enable_progress_bars = False  # the run's own bar counts images
        shards = [{"index": s.index, "first": s.first, "count": s.count, "offset": s.offset} for s in plan.pending]
        dataset = (
            ray.data.from_items(shards, override_num_blocks=len(shards))
            .flat_map(_shard_rows, fn_kwargs={"listing": str(plan.listing.resolve()), "root": str(plan.root)})
            .map_batches(
                _decode,
                fn_kwargs={"image_size": image_size, "preprocessing": preprocessing},
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=DECODE_CPUS,
            )
            .map_batches(
                _Classifier,
                fn_constructor_kwargs={"options": dict(predictor_options)},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_gpus=gpus_per_worker or None,
            )
        )
        _assemble(dataset, plan, decisions)
    finally:
        if not connected:
            ray.shutdown()


def _assemble(dataset, plan: Plan, decisions: Decisions) -> None:
    """Collects the rows into shards and writes each as soon as it is whole."""
    pending = {shard.index: shard for shard in plan.pending}
    images: dict[int, list[str]] = {}
    results: dict[int, list] = {}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for index, position, image, logits, error in zip(
            batch["shard"], batch["position"], batch["image"], batch["logits"], batch["error"], strict=True
        ):
            shard = pending[int(index)]
            if error and not plan.skip_bad:
                raise BadInputError(
                    int(position),
                    str(image),
                    f"{error}. The shards before it are written: replace the file and --resume, or --resume "
                    "--skip-bad to record it as an error and go on",
                )
            images.setdefault(shard.index, []).append(str(image))
            results.setdefault(shard.index, []).append(
                decisions.result(int(position), str(image), logits, str(error) or None)
            )
            if len(images[shard.index]) == shard.count:
                plan.write(shard, images.pop(shard.index), results.pop(shard.index))


def _shard_rows(row: dict[str, Any], listing: str, root: str) -> list[dict[str, Any]]:
    """A shard's images as rows (runs on a worker)."""
    shard = Shard(row["index"], row["first"], row["count"], row["offset"])
    return [
        {
            "shard": shard.index,
            "position": shard.first + offset,
            "image": image,
            "path": image if os.path.isabs(image) else os.path.join(root, image),
        }
        for offset, image in enumerate(shard_images(listing, shard))
    ]


def _decode(batch: dict[str, np.ndarray], image_size: int, preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """Decodes and preprocesses a batch of rows (a CPU task); an unusable image keeps zeros and its error."""
    pixels = np.zeros((len(batch["path"]), 3, image_size, image_size), dtype=np.float32)
    errors = []
    for row, path in enumerate(batch["path"]):
        try:
            pixels[row] = prepare(int(batch["position"][row]), str(path), image_size, preprocessing)
            errors.append("")
        except BadInputError as exc:
            errors.append(exc.problem)
    return {
        "shard": batch["shard"],
        "position": batch["position"],
        "image": batch["image"],
        "pixels": pixels,
        "error": np.array(errors, dtype=object),
    }


class _Classifier:
    """One actor's :class:`Predictor`: logits of the usable rows of each batch."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.predictor = Predictor(**options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        usable = np.array([not error for error in batch["error"]], dtype=bool)
        logits = np.zeros((len(usable), len(self.predictor.class_names)), dtype=np.float32)
        if usable.any():
            logits[usable] = self.predictor.logits(np.ascontiguousarray(batch["pixels"][usable]))
        return {key: batch[key] for key in ("shard", "position", "image", "error")} | {"logits": logits}
