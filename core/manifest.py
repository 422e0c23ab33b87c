"""The JSON manifest beside every artifact: its facts, its own hash and size, and its gate's report.

Beside it, never inside it: a header inside a plan file breaks Triton and trtexec. A manifest is
written only once its artifact is complete and gated, and moved into place after it
(:func:`publish`), so a manifest never describes an artifact that is not there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputFileError
from .facts import ArtifactFacts
from .files import read_json, sha256_file, write_json

MANIFEST_SUFFIX = ".json"
# Keys a manifest adds to its artifact's facts; an INT8 graph's also adds these to its calibration facts.
_OWN_KEYS = ("artifact", "artifact_sha256", "artifact_bytes", "parity")
_CALIBRATION_SET_KEYS = ("coverage", "warnings")


def manifest_path(artifact: str | os.PathLike) -> Path:
    """``M.onnx`` → ``M.onnx.json``; ``M.plan`` → ``M.plan.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


@dataclass(frozen=True)
class Manifest:
    """One artifact's manifest.

    Attributes:
        facts: What the artifact says about itself.
        artifact: The artifact's file name.
        artifact_sha256: Its sha256 when the manifest was written.
        artifact_bytes: Its size.
        parity: The report of the parity gate it passed (as ``export.parity.ParityReport.to_dict``
            writes it, plus what it was measured against), or None.
        calibration_set: For INT8 graphs: per-class coverage of the calibration images and the
            warnings about them (recorded beside the calibration facts).
    """

    facts: ArtifactFacts
    artifact: str
    artifact_sha256: str
    artifact_bytes: int
    parity: Mapping[str, Any] | None = None
    calibration_set: Mapping[str, Any] | None = None

    def describes(self, path: str | os.PathLike) -> bool:
        """Whether the file at ``path`` is the artifact this manifest was written for (same bytes)."""
        return Path(path).is_file() and sha256_file(path) == self.artifact_sha256

    def gate_passed(self, limits: Mapping[str, float] | None = None) -> bool:
        """Whether its gate passed (at exactly ``limits``, when given)."""
        if not self.parity or self.parity.get("passed") is not True:
            return False
        return limits is None or self.parity.get("limits") == dict(limits)

    def to_dict(self) -> dict[str, Any]:
        document = {
            **self.facts.to_dict(),
            "artifact": self.artifact,
            "artifact_sha256": self.artifact_sha256,
            "artifact_bytes": self.artifact_bytes,
        }
        if self.parity is not None:
            document["parity"] = dict(self.parity)
        if self.calibration_set is not None:  # beside the INT8 graph's calibration facts
            document["calibration"] = {**document["calibration"], **self.calibration_set}
        return document


def write_manifest(
    artifact: str | os.PathLike,
    facts: ArtifactFacts,
    *,
    parity: Mapping[str, Any] | None = None,
    calibration_set: Mapping[str, Any] | None = None,
    force: bool,
) -> Path:
    """Writes the manifest beside the finished ``artifact`` (its sha256 and size measured now)."""
    artifact = Path(artifact)
    manifest = Manifest(facts, artifact.name, sha256_file(artifact), artifact.stat().st_size, parity, calibration_set)
    return write_json(manifest_path(artifact), manifest.to_dict(), force=force)


def read_manifest(artifact: str | os.PathLike) -> Manifest:
    """The manifest beside ``artifact``.

    Raises:
        InputFileError: There is none, or it is not a manifest this toolkit wrote.
    """
    path = manifest_path(artifact)
    document = read_json(path, f"the manifest of {Path(artifact).name}")
    if not isinstance(document, dict):
        raise InputFileError(f"{path}: not a manifest written by this toolkit")
    facts = ArtifactFacts.from_dict(document, str(path))
    calibration = document.get("calibration") or {}  # a mapping: the facts above were read from it
    calibration_set = {key: calibration[key] for key in _CALIBRATION_SET_KEYS if key in calibration}
    try:
        own = {key: document[key] for key in _OWN_KEYS if key in document}
        manifest = Manifest(
            facts,
            str(own["artifact"]),
            str(own["artifact_sha256"]),
            int(own["artifact_bytes"]),
            own.get("parity"),
            calibration_set or None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: not a manifest written by this toolkit (no {exc})") from exc
    if manifest.parity is not None and not isinstance(manifest.parity, Mapping):
        raise InputFileError(f"{path}: its parity report is not a JSON object")
    return manifest


def publish(staged: str | os.PathLike, target: str | os.PathLike) -> None:
    """Moves a staged artifact into place with its side files (``M.onnx.data``), its manifest last.

    The manifest is the commit point. The old one goes first, so a run killed at any moment leaves
    either the old pair, or an artifact without a manifest (which no reuse rule accepts), or the new
    pair; never a manifest describing another file. Where side files are replaced, the old artifact
    goes before them, so no artifact ever lies beside another's external data.
    """
    staged, target = Path(staged), Path(target)
    manifest_path(target).unlink(missing_ok=True)
    side_files = [target.with_name(target.name + ".data")]
    if any(side.exists() for side in side_files):
        target.unlink(missing_ok=True)  # never the old graph beside the new weights, even for a moment
    for side in side_files:
        staged_side = staged.with_name(staged.name + side.name[len(target.name) :])
        if staged_side.exists():
            os.replace(staged_side, side)
        else:
            side.unlink(missing_ok=True)  # an earlier artifact's side file must not outlive it
    os.replace(staged, target)
    os.replace(manifest_path(staged), manifest_path(target))
