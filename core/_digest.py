"""The digest artifact facts carry (``facts_sha256``): a hand edit that does not recompute it is refused.

It guards against accidents and hand edits, not against someone who recomputes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .errors import InputFileError

DIGEST = "facts_sha256"
# Facts of this format version were written before digests, and are read without one.
UNDIGESTED_VERSION = 1


def check_digest(data: Mapping[str, Any], facts: Mapping[str, Any], where: str) -> None:
    """The digest recorded in ``data`` matches ``facts`` (their ``to_dict`` as read back), hashed over
    the keys the document has: a key a later version adds, with its default, is not among them, and
    a manifest's own additions are not hashed.

    Raises:
        InputFileError: It does not match, or a document of a digested format version has none.
    """
    if DIGEST not in data and data.get("format_version") == UNDIGESTED_VERSION:
        return
    written = {key: value for key, value in facts.items() if key in data and key != DIGEST}
    if data.get(DIGEST) != digest(written):
        raise InputFileError(
            f"{where}: its facts were edited after they were written (their sha256 is missing or no longer "
            "matches); remake the artifact with the command that made it instead of editing its facts"
        )


def digest(data: Mapping[str, Any]) -> str:
    """sha256 of the facts as canonical JSON (sorted keys), the digest itself left out."""
    facts = {key: value for key, value in data.items() if key != DIGEST}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
