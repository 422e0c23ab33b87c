"""What several test modules share: paths, limits for the barely trained fixture model, and artifact
edits. Fixtures live in ``conftest.py``; this is a plain module the tests import."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import onnx

from core.facts import ArtifactFacts, EngineFacts
from core.manifest import write_manifest
from export.metadata import read_graph, write_metadata
from runtime.tensorrt_env import Machine

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MASKED_GAT_SHARED_DATA", REPO.parent / "shared" / "data"))

# The one-epoch fixture model is barely trained (val mAP ≈ 25): its logits are small and nearly
# flat, so its worst relative logit error and least cosine under INT8 run past the limits a trained
# model meets (docs/calibration.md). INT8 tests pass these explicit overrides, as a user would; the
# other int8 limits (mAP drop, flips, top-k) apply unchanged.
FIXTURE_INT8_LIMITS = {"logits_rel": 0.3, "min_cosine": 0.95}

# The recipe of the fixture checkpoints: ResNet-18 at 64 px, one epoch.
FIXTURE_RECIPE = ["--backbone", "resnet18", "--image-size", "64", "--optimizer", "adam", "--lr", "1e-3"]
FIXTURE_RECIPE += ["--epochs", "1"]

# The machine fake plans are built on.
H100 = Machine("NVIDIA H100 80GB HBM3", (9, 0), "10.13.0.35")


def relabelled(graph: Path, output: Path, *, metadata: dict[str, Any] | None = None, **changes: Any) -> Path:
    """A copy of ``graph`` whose facts have ``changes`` (``ArtifactFacts`` fields) applied, or whose
    raw ``metadata`` entries (JSON strings by key) are overwritten as a hand edit would."""
    model, facts = read_graph(graph)
    write_metadata(model, dataclasses.replace(facts, **changes))
    for prop in model.metadata_props:
        if metadata and prop.key in metadata:
            prop.value = metadata[prop.key]
    onnx.save(model, str(output))
    return output


def facts_of(graph: Path) -> ArtifactFacts:
    return read_graph(graph, weights=False)[1]


def fake_plan(folder: Path, graph: Path, *, min_batch: int = 1, max_batch: int = 8, **build: Any) -> Path:
    """A plan file and the manifest build_engine would write for it, from ``graph``'s facts, built on
    ``H100`` unless ``build`` (``EngineFacts`` fields) says otherwise. Its bytes are not an engine: the
    rules under test read only the manifest and hashes."""
    source = folder / "model.fp16.onnx"
    source.write_bytes(b"typed graph")
    plan = folder / "model.plan"
    plan.write_bytes(b"serialized engine")
    engine = EngineFacts(
        tensorrt_version=H100.tensorrt_version,
        gpu_name=H100.gpu_name,
        compute_capability=H100.compute_capability,
        opt_batch=min(max_batch, max(min_batch, 4)),
        hardware_compat="none",
        version_compatible=False,
        builder_optimization_level=3,
        workspace_mib=4096,
        build_seconds=1.0,
        build_command="python -m export.build_engine model.fp16.onnx --output model.plan --precision fp16",
        platform=H100.platform,
    )
    facts = dataclasses.replace(facts_of(graph), precision="fp16").built_into(
        dataclasses.replace(engine, **build),
        min_batch=min_batch,
        max_batch=max_batch,
        source_name=source.name,
        source_sha256=hashlib.sha256(b"typed graph").hexdigest(),
    )
    write_manifest(plan, facts, force=True)
    return plan
