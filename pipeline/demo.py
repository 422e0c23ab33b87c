"""``python -m pipeline.demo``: the whole toolkit on the generated demo dataset, in one command.

Steps, each reusing what an earlier run left when it is still valid:
data → mask (+ heatmap) → train → evaluate → FP32 ONNX, with a float32 and with a uint8 input
(gated) → FP16 and INT8 graphs (gated) →
TensorRT engines (where a GPU and TensorRT exist; otherwise the reason is recorded) → every
artifact gated against the eager model on the held-out split (+ parity plots) → predictions of a
few held-out images through ``runtime.Predictor`` → the FP32 graph served on Triton where a server can
run here (checked equal to in process) → benchmark of every backend, the served one included → ``summary.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import cli
from core.errors import ConfigError, DeployError, MissingDependencyError, ParityError
from core.files import sha256_file, write_json, write_text
from core.preprocessing import image_files
from export.parity import ParityReport
from models.checkpoint import MASK_KEY, load_model, read_checkpoint
from models.coco import read_labels_in_order
from models.correlation import CorrelationMask
from models.splits import Splits
from models.synthetic import SyntheticSpec, generate
from models.training import LAST, TrainConfig, config_record

from .serving import served
from .summary import write_summary

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("demo")
DEFAULT_EPOCHS = 15
# The documented demo recipe (docs/training.md): Adam at 1e-3, backbone at the full rate, from scratch.
RECIPE = dict(batch_size=32, optimizer="adam", lr=1e-3, backbone_lr_scale=1.0, seed=0)
BACKBONE, IMAGE_SIZE = "resnet18", 64
PREDICTED_IMAGES = 6
BENCHMARK_BATCHES = (1, 8)


@dataclass
class DemoRun:
    """What the run made, measured and skipped, for the summary."""

    output: Path
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    parity: dict[str, ParityReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    benchmark: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str, body: Callable[[], str]) -> None:
        """Runs one step, logging and recording whether it built or reused, and how long it took."""
        started = time.perf_counter()
        logger.info("%s …", name)
        outcome = body()
        seconds = time.perf_counter() - started
        self.steps.append((name, outcome, seconds))
        logger.info("%s: %s (%.1f s)", name, outcome, seconds)


def run_demo(output: Path = DEFAULT_OUTPUT, *, epochs: int = DEFAULT_EPOCHS) -> DemoRun:
    """Runs every step into ``output``; returns what it made.

    A training run in ``output`` of other settings or another mask is stale and trained again.

    Raises:
        ParityError: An artifact fails its gate or could not be made (the summary is written first).
    """
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; name a folder for the demo to fill")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the demo folder {output}: {exc.strerror}; choose a writable place") from exc
    if not os.access(output, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write into {output}; choose a writable folder")
    run = DemoRun(output)
    data, reports = output / "data", output / "reports"
    splits = Splits.in_folder(data)
    reports.mkdir(exist_ok=True)
    checkpoint = output / "run" / "best.pt"
    run.step("dataset", lambda: _dataset(data, splits))
    run.step("co-occurrence mask", lambda: _mask(splits, output))
    run.step("training", lambda: _train(splits, output, epochs))
    run.artifacts["torch"] = checkpoint
    run.step("evaluation", lambda: _evaluate(run, checkpoint, splits, reports))
    run.step("FP32 ONNX export", lambda: _export(checkpoint, output / "model.onnx"))
    run.artifacts["onnx-fp32"] = output / "model.onnx"
    run.step("FP32 ONNX export, uint8 input", lambda: _export(checkpoint, output / "model.uint8.onnx", "uint8"))
    run.artifacts["onnx-fp32-uint8"] = output / "model.uint8.onnx"
    for precision in ("fp16", "int8"):
        run.step(f"{precision.upper()} graph and engine", lambda p=precision: _typed_and_engine(run, splits, p))
    run.step("INT8 graph for CPUs", lambda: _cpu_int8(run, splits))
    run.step("parity on the held-out split", lambda: _parity(run, checkpoint, splits, reports))
    run.step("predictions", lambda: _predict(run, splits, reports))
    run.step("offline tagging", lambda: _bulk(run, splits, output / "bulk"))
    with served(run, output / "model.onnx", image_files(splits.val_images)) as url:
        run.step("benchmark", lambda: _benchmark(run, splits, reports, url))
    write_summary(run, output / "summary.md")
    failed = [*run.failed, *(name for name, report in run.parity.items() if not report.passed)]
    if failed:
        raise ParityError(f"{', '.join(failed)} failed the parity gate; see {output / 'summary.md'}")
    return run


def _dataset(data: Path, splits: Splits) -> str:
    if splits.annotated():
        return "reused"
    generate(SyntheticSpec(), data, force=data.exists())
    return "generated 1,600 train / 400 val images"


def _mask(splits: Splits, output: Path) -> str:
    from models.correlation_sources import read_mask_source
    from models.mask_plot import plot_mask

    path, train = output / "mask.npz", splits.train_annotations
    try:
        if CorrelationMask.load(path).correlation.source_sha256 == sha256_file(train):
            return "reused"
    except DeployError:
        pass
    mask = read_mask_source(train, class_order="alphabetical")
    mask.save(path, force=True)
    plot_mask(mask, output / "mask.png")
    return mask.describe().splitlines()[0]


def _train(splits: Splits, output: Path, epochs: int) -> str:
    from models.training import new_model, train_splits

    config = TrainConfig(epochs=epochs, **RECIPE)
    folder = output / "run"
    mask = CorrelationMask.load(output / "mask.npz")
    resume = False
    if (folder / LAST).is_file():
        last = read_checkpoint(folder / LAST)
        state = last.extra.get("training") or {}
        if (
            state.get("train_config") == config_record(config)
            and (last.state_dict[MASK_KEY].numpy() == mask.mask).all()
        ):
            if state.get("epoch") == epochs:
                return f"reused (val mAP {100 * state['best_map']:.2f})"
            resume = True  # an interrupted run of these settings
        else:  # the demo's own run, made with other settings or another mask: stale
            logger.warning("%s was trained with other settings or another mask; training again", folder)
            shutil.rmtree(folder)
    if resume:
        model = load_model(folder / LAST).train()
    else:
        model = new_model(
            splits.train_annotations, backbone=BACKBONE, image_size=IMAGE_SIZE, mask=output / "mask.npz", seed=0
        )
    result = train_splits(model, splits, config, folder, resume=resume)
    return f"{'resumed' if resume else 'trained'} {epochs} epochs, val mAP {100 * result.best_map:.2f}"


def _evaluate(run: DemoRun, checkpoint: Path, splits: Splits, reports: Path) -> str:
    from models.evaluation import evaluate_checkpoint

    report = evaluate_checkpoint(
        checkpoint, splits.val_annotations, splits.val_images, output=reports / "val_metrics.json"
    )
    run.metrics = report.to_dict()
    return f"val mAP {100 * report.mAP:.2f}"


def _export(checkpoint: Path, graph: Path, input_format: str = "float32") -> str:
    """The FP32 graph; with ``input_format="uint8"`` the one that takes resized pixels and normalises them."""
    from export.parity import tolerances
    from export.to_onnx import export_onnx
    from export.typed_graph import reuse

    made_from = {"source_checkpoint_sha256": sha256_file(checkpoint), "input_format": input_format}
    if reuse(graph, checkpoint, made_from, dataclasses.asdict(tolerances("fp32")), force=True):
        return "reused"
    result = export_onnx(checkpoint, graph, input_format=input_format, force=True)
    return f"exported, gate passed (max rel. logit error {result.parity.figures['logits_max_rel']:.1e})"


def _typed_and_engine(run: DemoRun, splits: Splits, precision: str) -> str:
    from calibration.int8_graph import Calibration, int8_graph
    from export.build_engine import build_engine
    from export.typed_graph import typed_graph
    from runtime.plan_rules import check_plan
    from runtime.tensorrt_env import this_machine

    source, plan = run.artifacts["onnx-fp32"], run.output / f"model.{precision}.plan"
    try:
        if precision == "int8":
            calibration = Calibration(splits.train_images, splits.train_annotations)
            graph = int8_graph(source, plan, calibration, force=True)
        else:
            graph = typed_graph(source, precision, plan, force=True)
    except DeployError as exc:  # nothing was written; the summary shows why
        run.failed[f"onnx-{precision}"] = str(exc)
        return f"failed: {exc}"
    run.artifacts[f"onnx-{precision}"] = graph
    outcome = f"{graph.name} ready (gated)"
    try:
        machine = this_machine()
    except (MissingDependencyError, ConfigError) as exc:
        run.skipped[f"tensorrt-{precision}"] = str(exc)
        return f"{outcome}; TensorRT engine skipped: {exc}"
    try:
        check_plan(plan, machine)
        run.artifacts[f"tensorrt-{precision}"] = plan
        return f"{outcome}; reused {plan.name}"
    except DeployError:
        pass
    try:
        build_engine(graph, plan, precision=precision, force=True)
    except DeployError as exc:
        run.failed[f"tensorrt-{precision}"] = str(exc)
        return f"{outcome}; engine build failed: {exc}"
    run.artifacts[f"tensorrt-{precision}"] = plan
    return f"{outcome}; built {plan.name}"


def _cpu_int8(run: DemoRun, splits: Splits) -> str:
    """The INT8 graph ONNX Runtime runs fastest on x86 (U8S8), beside the TensorRT one."""
    from calibration.int8_graph import Calibration, cpu_int8_graph

    graph = run.output / "model.int8-cpu.onnx"
    calibration = Calibration(splits.train_images, splits.train_annotations)
    before = graph.stat().st_mtime_ns if graph.exists() else None
    try:
        cpu_int8_graph(run.artifacts["onnx-fp32"], graph, calibration, force=True)
    except DeployError as exc:  # nothing was written; the summary shows why
        run.failed["onnx-int8-cpu"] = str(exc)
        return f"failed: {exc}"
    run.artifacts["onnx-int8-cpu"] = graph
    return f"reused {graph.name}" if graph.stat().st_mtime_ns == before else f"{graph.name} ready (gated)"


def _parity(run: DemoRun, checkpoint: Path, splits: Splits, reports: Path) -> str:
    from export.artifact_parity import check_parity
    from export.parity_inputs import coco_inputs
    from export.parity_plot import plot_parity

    model = load_model(checkpoint)
    inputs = coco_inputs(model, splits.val_annotations, splits.val_images)
    for name, artifact in run.artifacts.items():
        if name == "torch":
            continue
        report, reference, logits = check_parity(model, artifact, inputs=inputs)
        run.parity[name] = report
        write_json(reports / f"parity_{name}.json", {"candidate": str(artifact), **report.to_dict()})
        plot_parity(reference, logits, report, reports / f"parity_{name}.png")
    passed = sum(report.passed for report in run.parity.values())
    return f"{passed} of {len(run.parity)} artifacts pass their gates on {len(inputs.images)} images"


def _predict(run: DemoRun, splits: Splits, reports: Path) -> str:
    from runtime import Predictor

    passed = [name for name in ("tensorrt-fp16", "onnx-fp32") if name in run.parity and run.parity[name].passed]
    artifact = run.artifacts[passed[0]] if passed else run.artifacts["torch"]
    files = image_files(splits.val_images)[:PREDICTED_IMAGES]
    with Predictor(artifact) as predictor:
        results = predictor.predict([str(f) for f in files], top_k=3)
        labels = read_labels_in_order(splits.val_annotations, predictor.class_names)
        truth = {
            name: [labels.class_names[j] for j in np.flatnonzero(row)]
            for name, row in zip(labels.file_names, labels.labels, strict=True)
        }
        run.predictions = [
            {**r.to_dict(predictor.class_names), "truth": truth.get(Path(r.source).name, [])} for r in results
        ]
    write_json(reports / "predictions.json", {"artifact": str(artifact), "results": run.predictions})
    return f"{len(results)} held-out images through {artifact.name}"


def _bulk(run: DemoRun, splits: Splits, folder: Path) -> str:
    from runtime.bulk import bulk

    summary = bulk(run.artifacts["onnx-fp32"], folder, images=splits.val_images, skip_bad=True, force=True)
    return (
        f"{summary.tagged} held-out images tagged into {folder.name}/ by python -m runtime bulk "
        f"({summary.images_per_second:.0f} img/s, {summary.failed} failed)"
    )


def _benchmark(run: DemoRun, splits: Splits, reports: Path, url: str | None) -> str:
    from runtime.benchmark import benchmark, markdown

    files = image_files(splits.val_images)[:16]
    run.benchmark = benchmark(
        [*run.artifacts.values(), *([url] if url else [])],
        BENCHMARK_BATCHES,
        include_preprocessing=True,
        images=files,
        warmup=2,
        iterations=5,
        rounds=2,
    )
    write_json(reports / "benchmark.json", run.benchmark)
    write_text(reports / "benchmark.md", markdown(run.benchmark))
    rows = {(row["artifact"], row["input"]) for row in run.benchmark["rows"]}
    return f"{len(rows)} candidates at batch {', '.join(map(str, BENCHMARK_BATCHES))}"


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.demo``: the README's main command."""
    parser = cli.parser("python -m pipeline.demo", "Run the whole toolkit on the generated demo dataset.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for everything the demo makes")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")

    def body() -> None:
        started = time.perf_counter()
        run_demo(args.output, epochs=args.epochs)
        print((args.output / "summary.md").read_text())
        print(f"demo finished in {time.perf_counter() - started:.0f} s; everything is in {args.output}/")

    return cli.run(body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
