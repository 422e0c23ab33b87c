"""What several test modules share: paths, limits for the barely trained fixture model, and artifact
edits. Fixtures live in ``conftest.py``; this is a plain module the tests import."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import onnx

from core.facts import ArtifactFacts
from export.metadata import read_graph, write_metadata

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
