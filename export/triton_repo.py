"""``python -m export.triton_repo ARTIFACT --output REPO``: a Triton model repository of a built artifact.

The repository (the names clients rely on are ``runtime.triton_names``)::

    REPO/
      preprocess/   Python backend: encoded image bytes → the network's input (the one preprocessing)
      classifier/   tensorrt_plan (a .plan), onnxruntime_onnx (an .onnx), or a Python-backend twin
                    running this toolkit's own runner; the artifact and its manifest in 1/
      postprocess/  Python backend: probabilities, per-class thresholds, labels; labels.txt
      tagger/       the ensemble clients call: IMAGE → probabilities, labels, logits; labels.txt
      serving.json  what the server must have: TensorRT version, server flags (read by runtime serve)

and, beside it, a KServe ``InferenceService`` (``REPO.inferenceservice.yaml``). Batch limits and
dynamic batching come from the artifact's batch profile. Every ``config.pbtxt`` is written with
Triton's own protobuf and parsed back; the repository is built in a staging folder and moved into
place whole.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core import cli
from core.errors import ConfigError, OutputError, StaleArtifactError
from core.facts import ArtifactFacts
from core.files import NO_ROOM, check_outputs, staging_folder, staging_prefix, write_json, write_text
from core.manifest import Manifest, manifest_path
from runtime.onnxruntime_runner import manifest_beside
from runtime.plan_rules import check_plan_files
from runtime.results import read_thresholds, threshold_vector
from runtime.triton_names import CLASSIFIER, LABELS_FILE, POSTPROCESS, PREPROCESS, TAGGER
from runtime.triton_server import SERVING_FILE

from .kserve import DEFAULT_RELEASE, STOCK_IMAGE_NOTE, inference_service_path, inference_service_text
from .metadata import read_graph
from .triton_configs import CLASSIFIER_KINDS, INSTANCE_KINDS, MODEL_FILES, Batching, Instances, configs, to_text

logger = logging.getLogger(__name__)

# The Python-backend models, by folder: the module of runtime.triton_models each one runs.
PYTHON_MODELS = {PREPROCESS: "preprocess", POSTPROCESS: "postprocess", CLASSIFIER: "classifier"}
DEFAULT_QUEUE_DELAY_US = 500


@dataclass(frozen=True)
class RepositoryOptions:
    """How the repository serves the artifact (see ``--help`` for each)."""

    classifier: str = "auto"
    max_batch: int | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1
    kind: str | None = None
    preprocess_instances: int = 2
    onnx_tensorrt: bool = False
    threshold: float | None = None
    class_thresholds: Path | None = None
    storage_uri: str | None = None
    gpus: int = 1
    triton_release: str = DEFAULT_RELEASE
    image: str | None = None
    min_replicas: int = 1
    max_replicas: int = 1


def write_repository(
    artifact: str | os.PathLike, output: str | os.PathLike, options: RepositoryOptions, *, force: bool
) -> Path:
    """Writes the repository of ``artifact`` to ``output`` and its KServe manifest beside it.

    Raises:
        ConfigError: An option does not fit the artifact, or ``output`` exists without ``force``.
        StaleArtifactError: The artifact no longer matches its manifest.
        InputFileError: The artifact or its facts cannot be read.
        ExportError: A configuration would not serve (our checks).
        MissingDependencyError: ``tritonclient`` (Triton's model-config protobuf) is absent.
    """
    artifact, output = Path(artifact), Path(output)
    kserve = inference_service_path(output)
    check_outputs(
        {"--output": output, "the KServe manifest": kserve}, [artifact, options.class_thresholds], force=force
    )
    manifest, facts = _artifact(artifact)
    kind = _classifier_kind(artifact, options)
    batching = _batching(facts, kind, options)
    instance_kind = _instance_kind(artifact, kind, options)
    instances = Instances(options.instances, instance_kind, options.preprocess_instances)
    overrides = read_thresholds(options.class_thresholds) if options.class_thresholds else None
    default = facts.config.decision_threshold if options.threshold is None else options.threshold
    thresholds = threshold_vector(facts.class_names, default, overrides)
    model_file = MODEL_FILES["tensorrt_plan" if artifact.suffix == ".plan" else "onnxruntime_onnx"]
    models = configs(facts, kind, model_file, batching, instances, thresholds, options.onnx_tensorrt)
    flags = server_flags(facts)
    service = inference_service_text(  # checked before anything is written
        output,
        facts,
        flags,
        options.storage_uri,
        gpus=options.gpus,
        release=options.triton_release,
        image=options.image,
        min_replicas=options.min_replicas,
        max_replicas=options.max_replicas,
    )
    with staging_folder(output) as staged:
        for name, config in models.items():
            (staged / name / "1").mkdir(parents=True)
            write_text(staged / name / "config.pbtxt", to_text(config))
        for name, module in PYTHON_MODELS.items():
            if name != CLASSIFIER or kind == "python":
                write_text(staged / name / "1" / "model.py", _model_py(name, module))
        for name in (POSTPROCESS, TAGGER):
            write_text(staged / name / LABELS_FILE, "".join(f"{label}\n" for label in facts.class_names))
        _copy_artifact(artifact, manifest, staged / CLASSIFIER / "1" / model_file)
        write_json(staged / SERVING_FILE, _serving(artifact, facts, kind, flags, options))
        _move_into_place(staged, output, force=force)
    write_text(kserve, service, force=force)
    return output


def _artifact(artifact: Path) -> tuple[Manifest | None, ArtifactFacts]:
    """The artifact's manifest (None for a graph shipped alone) and facts, once they agree with its bytes."""
    if artifact.suffix == ".plan":
        manifest = check_plan_files(artifact)
        return manifest, manifest.facts
    if artifact.suffix != ".onnx":
        raise ConfigError(f"{artifact}: Triton serves a .plan or an .onnx graph; export one first")
    manifest = manifest_beside(artifact)
    facts = read_graph(artifact, weights=False)[1]
    if manifest is not None and manifest.facts != facts:
        raise StaleArtifactError(f"{artifact}'s facts are not its manifest's; export it again")
    return manifest, facts


def _classifier_kind(artifact: Path, options: RepositoryOptions) -> str:
    natural = "tensorrt_plan" if artifact.suffix == ".plan" else "onnxruntime_onnx"
    kind = natural if options.classifier == "auto" else options.classifier
    if kind not in CLASSIFIER_KINDS:
        raise ConfigError(f"--classifier {kind}: choose auto, {', '.join(CLASSIFIER_KINDS)}")
    if kind != "python" and kind != natural:
        raise ConfigError(f"--classifier {kind} cannot serve {artifact.name} (a {artifact.suffix} is {natural})")
    if options.onnx_tensorrt and kind != "onnxruntime_onnx":
        raise ConfigError("--onnx-tensorrt is an option of the onnxruntime_onnx classifier (an .onnx artifact)")
    return kind


def _instance_kind(artifact: Path, kind: str, options: RepositoryOptions) -> str:
    """The classifier's instance kind: a TensorRT engine (a plan, or ONNX Runtime's TensorRT provider) on
    GPUs; the Python twin of a graph on CPUs unless told (its ONNX Runtime needs the CUDA build for GPUs);
    Triton's ONNX Runtime backend wherever the server has GPUs (``auto``)."""
    on_gpu_only = artifact.suffix == ".plan" or options.onnx_tensorrt
    chosen = options.kind or ("gpu" if on_gpu_only else "cpu" if kind == "python" else "auto")
    if chosen not in INSTANCE_KINDS:
        raise ConfigError(f"--kind {chosen}: choose {', '.join(INSTANCE_KINDS)}")
    if chosen != "gpu" and on_gpu_only:
        raise ConfigError(f"--kind {chosen}: a TensorRT engine runs on a GPU only; use --kind gpu")
    if chosen == "auto" and kind == "python":
        raise ConfigError("--kind auto: the Python twin needs a kind it can count on; use --kind cpu or gpu")
    if options.instances < 1 or options.preprocess_instances < 1:
        raise ConfigError("--instances and --preprocess-instances must be at least 1")
    if on_gpu_only and options.gpus < 1:
        raise ConfigError("--gpus 0: a TensorRT engine needs a GPU in each replica")
    return chosen


def _batching(facts: ArtifactFacts, kind: str, options: RepositoryOptions) -> Batching:
    """The batch limit and dynamic batching, inside what the artifact's batch profile covers."""
    if facts.min_batch != 1:
        raise ConfigError(
            f"the artifact takes batches of {facts.min_batch} to {facts.max_batch}, and Triton sends any batch from 1: "
            "rebuild it with --min-batch 1"
        )
    max_batch = options.max_batch or facts.max_batch
    if not 1 <= max_batch <= facts.max_batch:
        raise ConfigError(f"--max-batch {max_batch}: the artifact's batch profile covers 1 to {facts.max_batch}")
    if options.preferred_batch_sizes is not None:
        preferred = tuple(sorted(set(options.preferred_batch_sizes)))
        if any(not 1 <= size <= max_batch for size in preferred):
            raise ConfigError(f"--preferred-batch-sizes {list(preferred)}: each must lie in 1..{max_batch}")
    else:  # the engine's optimal batch where it has one, and the largest
        opt = facts.engine.opt_batch if kind == "tensorrt_plan" and facts.engine else max_batch
        preferred = tuple(sorted({min(opt, max_batch), max_batch}))
    if options.max_queue_delay_us < 0:
        raise ConfigError("--max-queue-delay-us must be at least 0")
    return Batching(max_batch, preferred, options.max_queue_delay_us)


def _model_py(name: str, module: str) -> str:
    return (
        f'"""Triton Python-backend model {name!r}: runtime.triton_models.{module} of masked-gat-deploy, which\n'
        'must be installed where the server runs its Python models (written by export.triton_repo)."""\n\n'
        f"from runtime.triton_models.{module} import TritonPythonModel  # noqa: F401\n"
    )


def _copy_artifact(artifact: Path, manifest: Manifest | None, target: Path) -> None:
    """The artifact as ``target``, its manifest beside it under the matching name, and its external
    weights under their own name (the graph refers to them by it).

    Raises:
        OutputError: The disk is full.
    """
    copies = [(artifact, target)]
    if manifest is not None:
        copies.append((manifest_path(artifact), manifest_path(target)))
    weights = artifact.with_name(artifact.name + ".data")
    if weights.is_file():
        copies.append((weights, target.parent / weights.name))
    for source, copy in copies:
        try:
            shutil.copyfile(source, copy)
        except OSError as exc:
            if exc.errno in NO_ROOM:
                raise OutputError(f"cannot write {copy}: {exc.strerror}; free space or write elsewhere") from exc
            raise


def server_flags(facts: ArtifactFacts) -> list[str]:
    """The server flags the artifact needs: a version-compatible plan loads only where the TensorRT
    backend allows the lean runtime it carries."""
    engine = facts.engine
    return ["--backend-config=tensorrt,version-compatible=true"] if engine and engine.version_compatible else []


def _serving(artifact: Path, facts: ArtifactFacts, kind: str, flags: list[str], options: RepositoryOptions) -> dict:
    """What a server needs to serve the repository, for ``runtime serve`` and for people."""
    engine = facts.engine
    return {
        "written_by": "python -m export.triton_repo",
        "artifact": artifact.name,
        "precision": facts.precision,
        "classifier": kind,
        "tensorrt_version": engine.tensorrt_version if engine else None,
        "compute_capability": list(engine.compute_capability) if engine else None,
        "version_compatible": engine.version_compatible if engine else None,
        "server_flags": flags,
        "python_models_need": "masked-gat-deploy with numpy<2, pillow" + (", onnxruntime" if kind == "python" else ""),
        "onnx_tensorrt": options.onnx_tensorrt,
    }


def _move_into_place(staged: Path, output: Path, *, force: bool) -> None:
    """Moves the finished repository onto ``output``; an old one is moved aside first and removed after,
    so ``output`` is never a half-written repository."""
    if output.exists():
        if not force:
            raise ConfigError(f"{output} already exists; pass --force to replace it")
        aside = output.with_name(staging_prefix(output) + "old")  # a name sweep_leftovers knows
        os.replace(output, aside)
        try:
            os.replace(staged, output)
        except BaseException:
            os.replace(aside, output)  # the old repository back where it was
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staged, output)


def main(argv: list[str] | None = None) -> int:
    """``python -m export.triton_repo``: exit 0 on success, 1 on a checked failure, 2 on bad usage."""
    parser = cli.parser("python -m export.triton_repo", "Write a Triton model repository of a built artifact.")
    parser.add_argument("artifact", type=Path, help="a .plan (TensorRT) or an .onnx graph, with its manifest")
    parser.add_argument("--output", type=Path, required=True, help="the repository folder to write")
    parser.add_argument(
        "--classifier",
        default="auto",
        choices=("auto", *CLASSIFIER_KINDS),
        help="auto: tensorrt_plan for a .plan, onnxruntime_onnx for an .onnx; python: a Python-backend twin running "
        "this toolkit's runner, for servers without those backends",
    )
    batch = parser.add_argument_group("batching")
    batch.add_argument("--max-batch", type=int, help="max_batch_size (default: the artifact's largest batch)")
    batch.add_argument(
        "--preferred-batch-sizes", type=int, nargs="+", help="dynamic batcher's preferred sizes (default: opt, max)"
    )
    batch.add_argument(
        "--max-queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US, help="how long a request waits for others"
    )
    place = parser.add_argument_group("instances")
    place.add_argument("--instances", type=int, default=1, help="classifier instances (per GPU for kind gpu)")
    place.add_argument(
        "--kind", choices=sorted(INSTANCE_KINDS), help="classifier instance kind (default: gpu for TensorRT, else auto)"
    )
    place.add_argument("--preprocess-instances", type=int, default=2, help="preprocess instances (CPU processes)")
    parser.add_argument(
        "--onnx-tensorrt", action="store_true", help="onnxruntime_onnx: run through ONNX Runtime's TensorRT provider"
    )
    parser.add_argument("--threshold", type=float, help="decision threshold of every class (default: the artifact's)")
    parser.add_argument("--class-thresholds", type=Path, help='JSON file of per-class thresholds, {"name": 0.4}')
    kube = parser.add_argument_group("Kubernetes (KServe InferenceService beside the repository)")
    kube.add_argument("--storage-uri", help="where the cluster reads the repository (default: a pvc:// placeholder)")
    kube.add_argument("--gpus", type=int, default=1, help="GPUs each replica requests (0: a CPU-only replica)")
    kube.add_argument(
        "--triton-release", default=DEFAULT_RELEASE, help="NVIDIA Triton container tag (a plan needs its TensorRT)"
    )
    kube.add_argument("--image", help="a Triton image with this toolkit installed (instead of --triton-release)")
    kube.add_argument("--min-replicas", type=int, default=1, help="replicas kept running")
    kube.add_argument("--max-replicas", type=int, default=1, help="replicas the autoscaler may add up to")
    parser.add_argument("--force", action="store_true", help="replace an existing repository and manifest")
    args = parser.parse_args(argv)
    if args.image is not None and args.triton_release != DEFAULT_RELEASE:
        parser.error("--image names the whole image; --triton-release is the tag of NVIDIA's: give one of them")
    options = RepositoryOptions(
        classifier=args.classifier,
        max_batch=args.max_batch,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes) if args.preferred_batch_sizes else None,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        kind=args.kind,
        preprocess_instances=args.preprocess_instances,
        onnx_tensorrt=args.onnx_tensorrt,
        threshold=args.threshold,
        class_thresholds=args.class_thresholds,
        storage_uri=args.storage_uri,
        gpus=args.gpus,
        triton_release=args.triton_release,
        image=args.image,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )

    def body() -> None:
        repository = write_repository(args.artifact, args.output, options, force=args.force)
        print(f"wrote {repository} ({', '.join(sorted(p.name for p in repository.iterdir() if p.is_dir()))})")
        print(f"wrote {inference_service_path(repository)}")
        if args.image is None:
            print(f"note: {STOCK_IMAGE_NOTE} (docs/serving.md has the Dockerfile)")
        print(f"serve it: python -m runtime serve {repository}")
        logger.debug("server needs: %s", json.dumps(json.loads((repository / SERVING_FILE).read_text())))

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
