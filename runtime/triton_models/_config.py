"""What the Python-backend models read from the ``args`` Triton hands ``initialize``."""

from __future__ import annotations

import json
from typing import Any

from core.facts import ArtifactFacts

from ..triton_names import FACTS_PARAMETER


def model_config(args: dict[str, str]) -> dict[str, Any]:
    """The model's configuration, as the server parsed it."""
    return json.loads(args["model_config"])


def parameter(config: dict[str, Any], key: str) -> str:
    """A string parameter the repository writer put in the model's configuration."""
    try:
        return config["parameters"][key]["string_value"]
    except KeyError:
        raise KeyError(f"model {config.get('name')!r} has no parameter {key!r}; write the repository again") from None


def artifact_facts(config: dict[str, Any]) -> ArtifactFacts:
    """The served artifact's facts, from the model's configuration."""
    return ArtifactFacts.from_dict(json.loads(parameter(config, FACTS_PARAMETER)), f"model {config.get('name')!r}")
