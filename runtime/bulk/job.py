"""``bulk``: tag every image of a folder, list or annotations file into result shards, exactly once.

The run is fixed before any image is tagged (``run.json``: artifact, classes, source, settings;
``listing.jsonl``: the images in order) and tagged shard by shard, each shard written atomically.
A run killed at any moment resumes from the shards on disk: a shard is either whole or absent,
and what it holds depends only on the listing, so no image is tagged twice or skipped, and the
records equal an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core.errors import ConfigError, InputFileError
from core.files import check_outputs, read_json, sha256_file

from ..predictor import Predictor
from ..triton_client import is_url
from .listing import LISTING_FILE, Shard, read_shards, write_listing
from .local_engine import run_local
from .model import Model, driver_model
from .plan import Plan
from .ray_engine import ray_session, run_ray
from .run_record import COMPLETE_FILE, RunRecord, abandon, begin, check_folder, exclusive, finish
from .shards import FORMATS, import_pyarrow, shard_errors, written_shards
from .sources import Source

ENGINES = ("local", "ray")
DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class BulkSummary:
    """What a run did.

    Attributes:
        output: The output folder.
        images: Images in the run (all shards).
        tagged: Images with labels and probabilities.
        failed: Images recorded as errors.
        shards: Shard files.
        done_before: Images an earlier, interrupted run had already tagged (resumed from).
        seconds: Wall time of this invocation.
        images_per_second: Images tagged by this invocation per second of ``seconds``.
        output_bytes: Size of the output folder's files.
    """

    output: str
    images: int
    tagged: int
    failed: int
    shards: int
    done_before: int
    seconds: float
    images_per_second: float
    output_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bulk(
    artifact: str | os.PathLike,
    output: str | os.PathLike,
    *,
    images: str | os.PathLike | None = None,
    listing: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    fmt: str = "jsonl",
    shard_size: int = DEFAULT_SHARD_SIZE,
    resume: bool = False,
    force: bool = False,
    skip_bad: bool = False,
    engine: str = "local",
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    backend: str = "auto",
    device: str = "auto",
    threshold: float | None = None,
    class_thresholds: Mapping[str, float] | str | os.PathLike | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> BulkSummary:
    """Tags the images of ``images`` (every image under it), ``listing`` (a file of paths) or
    ``annotations`` (COCO-format, with ``images`` as its folder) into shards in ``output``.

    Args:
        artifact: What :class:`Predictor` serves (a file, or for the local engine a served tagger's URL).
        output: The results folder (made if absent).
        fmt: ``jsonl`` or ``parquet`` (needs pyarrow).
        shard_size: Images a shard (the unit of work, of output and of a resume).
        resume: Continue the run in ``output`` (the same artifact, images and settings).
        force: Start over in an ``output`` that holds an earlier run (its files are removed).
        skip_bad: Record an unusable image as an error and go on (otherwise it stops the run).
        engine: ``local`` (this process) or ``ray`` (Ray Data; a local cluster without ``address``).
        workers: Ray: predictor actors; gpus_per_worker: Ray: GPUs each actor asks for.
        backend, device, threshold, class_thresholds, batch_size: As for :class:`Predictor`.
        progress: Show a progress bar.

    Raises:
        ConfigError: An option is invalid, or ``output`` holds another run and the flags do not say what to do.
        InputFileError: The artifact, images or listing cannot be read.
        BadInputError: An image is unusable and ``skip_bad`` is False (what was done before it is written).
        MissingDependencyError: Parquet without pyarrow, or the Ray engine without Ray.
        ServingError: The Ray cluster cannot be joined, or a Ray worker failed.
    """
    started = time.perf_counter()
    problem = usage_problem(engine, address, workers, gpus_per_worker, resume=resume, force=force)
    if problem:
        raise ConfigError(problem)
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"shard size must be a whole number of at least 1, got {shard_size!r}")
    source = Source.of(*(None if p is None else Path(p) for p in (images, listing, annotations)))
    folder = Path(output)
    check_outputs({"--output": folder}, [None if is_url(artifact) else artifact, images, source.file], force=True)
    if engine == "ray" and is_url(artifact):
        raise ConfigError(f"{artifact} is served: the Ray engine runs the artifact in its actors; use the local engine")
    if fmt == "parquet":
        import_pyarrow()
    check_folder(folder, resume=resume, force=force)
    predictor_options = {"threshold": threshold, "class_thresholds": class_thresholds, "batch_size": batch_size}
    with contextlib.ExitStack() as stack:
        if engine == "local":
            predictor = stack.enter_context(Predictor(artifact, backend, device=device, **predictor_options))
            model = Model(predictor.facts, predictor.thresholds, predictor.batch_size)
        else:
            stack.enter_context(ray_session(address))  # joined first: a cluster that cannot be reached ends here
            model = driver_model(artifact, backend, **predictor_options)
        stack.enter_context(exclusive(folder))
        record = _run_record(artifact, model, source, fmt, shard_size, backend=backend, device=device)
        if begin(folder, record, resume=resume):
            return _finished(folder)
        shards = _shards(folder, source, shard_size, resume=resume, utf8=fmt == "parquet")
        written = written_shards(folder, fmt)
        pending = [shard for shard in shards if shard.index not in written]
        failed = sum(shard_errors(folder, shard.index, fmt) for shard in shards if shard.index in written)
        total = sum(shard.count for shard in shards)
        done_before = total - sum(shard.count for shard in pending)
        shown = None if progress else True  # tqdm's disable: None shows the bar on a terminal only
        with tqdm(total=total, initial=done_before, desc="tagging", unit="img", disable=shown) as bar:

            def advance(count: int, errors: int) -> None:
                nonlocal failed
                failed += errors
                bar.update(count)
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)

            plan = Plan(folder, folder / LISTING_FILE, source.root, pending, fmt, skip_bad, advance)
            if engine == "local":
                run_local(plan, predictor)
            elif pending:  # a run killed after its last shard: nothing for a cluster to do
                actor = {"artifact": str(Path(artifact).resolve()), "backend": backend, "device": device}
                run_ray(plan, model, actor, workers=workers, gpus_per_worker=gpus_per_worker)
        seconds = time.perf_counter() - started
        summary = BulkSummary(
            output=str(folder),
            images=total,
            tagged=total - failed,
            failed=failed,
            shards=len(shards),
            done_before=done_before,
            seconds=round(seconds, 3),
            images_per_second=round((total - done_before) / seconds, 2),
            output_bytes=sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
        )
        finish(folder, {"summary": summary.to_dict()})
    return summary


def usage_problem(
    engine: str, address: str | None, workers: int, gpus_per_worker: float, *, resume: bool, force: bool
) -> str | None:
    """What is wrong with a combination of options, or None (the command line refuses it as bad usage)."""
    if resume and force:
        return "--resume continues the run in --output and --force starts it over: give one"
    if engine not in ENGINES:
        return f"engine {engine!r}: choose one of {', '.join(ENGINES)}"
    if not isinstance(workers, int) or workers < 1:
        return f"--workers must be a whole number of at least 1, got {workers!r}"
    if not gpus_per_worker >= 0:  # NaN too
        return f"--gpus-per-worker cannot be negative, got {gpus_per_worker}"
    if engine == "local" and (address or workers != 1 or gpus_per_worker):
        return "--address, --workers and --gpus-per-worker are the Ray engine's: add --engine ray"
    return None


def _shards(folder: Path, source: Source, shard_size: int, *, resume: bool, utf8: bool) -> list[Shard]:
    """The run's shards: from its listing, written now unless a resume finds it (a kill may come first).

    Raises:
        InputFileError: The source names no image; or a resume finds shards but no listing (an earlier
            run's files, not this run's).
    """
    listing = folder / LISTING_FILE
    if resume and listing.exists():
        return read_shards(listing, shard_size)
    if resume and any(folder.glob("part-*")):
        raise InputFileError(f"{folder} holds shards but no {LISTING_FILE}; start over there with --force")
    try:
        return write_listing(source.images(), listing, shard_size, utf8=utf8)
    except BaseException:
        if not resume:
            abandon(folder)
        raise


def _finished(folder: Path) -> BulkSummary:
    """The summary a finished run recorded."""
    try:
        return BulkSummary(**read_json(folder / COMPLETE_FILE, "completion record")["summary"])
    except (TypeError, KeyError) as exc:
        raise InputFileError(f"{folder / COMPLETE_FILE}: not a completion record of this toolkit ({exc})") from exc


def _run_record(
    artifact, model: Model, source: Source, fmt: str, shard_size: int, *, backend: str, device: str
) -> RunRecord:
    facts = model.facts
    return RunRecord(
        artifact={
            "path": str(artifact),
            "sha256": None if is_url(artifact) else sha256_file(artifact),
            "facts": {
                "precision": facts.precision,
                "config": facts.config.to_dict(),
                "mask_sha256": facts.mask_sha256,
                "max_batch": facts.max_batch,
            },
        },
        class_names=facts.class_names,
        source=source.describe(),
        settings={
            "format": fmt,
            "shard_size": shard_size,
            "batch_size": model.batch_size,
            "thresholds": [float(t) for t in model.thresholds],
            "backend": backend,
            "device": device,
        },
    )
