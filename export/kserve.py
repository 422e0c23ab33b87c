"""The KServe ``InferenceService`` that serves a Triton repository on Kubernetes, written beside it.

KServe's Triton runtime (ClusterServingRuntime ``kserve-tritonserver``) downloads ``storageUri`` — the
repository's root — to ``/mnt/models`` and runs ``tritonserver`` there (HTTP 8080, gRPC 9000); each
replica is one Triton with all of the repository's models. ``runtimeVersion`` is the tag of NVIDIA's
Triton container (``nvcr.io/nvidia/tritonserver:<tag>``): for a plan, a release with the plan's
TensorRT version. The Python models import this toolkit, so the image must have it installed
(``--image``: a Triton image with ``pip install masked-gat-deploy``; docs/serving.md has the Dockerfile).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.facts import ArtifactFacts

DEFAULT_RELEASE = "24.10-py3"  # tritonserver 2.51, the server the nvidia-pytriton wheel bundles
STOCK_IMAGE_NOTE = "The stock image lacks masked-gat-deploy, which the Python models import: pass --image."
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def inference_service_path(repository: Path) -> Path:
    """``models/tagger`` → ``models/tagger.inferenceservice.yaml``."""
    return repository.with_name(repository.name + ".inferenceservice.yaml")


def inference_service(
    name: str,
    storage_uri: str,
    server_flags: list[str],
    *,
    gpus: int,
    release: str = DEFAULT_RELEASE,
    image: str | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
) -> dict:
    """The ``InferenceService`` as plain data (the fields KServe documents for its Triton runtime).

    Raises:
        ConfigError: The name is not a DNS label, or the counts are out of range.
    """
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise ConfigError(f"service name {name!r}: lower-case letters, digits and '-', at most 63 (a DNS label)")
    if gpus < 0 or not 1 <= min_replicas <= max_replicas:
        raise ConfigError(f"--gpus {gpus}, replicas {min_replicas}..{max_replicas}: need gpus ≥ 0 and 1 ≤ min ≤ max")
    resources = {"cpu": "4", "memory": "8Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    model: dict = {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "storageUri": storage_uri,
        "args": server_flags,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if image is not None:
        model["image"] = image
    else:
        model["runtimeVersion"] = release
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"minReplicas": min_replicas, "maxReplicas": max_replicas, "model": model}},
    }


def inference_service_text(
    repository: Path,
    facts: ArtifactFacts,
    server_flags: list[str],
    storage_uri: str | None,
    *,
    gpus: int,
    release: str = DEFAULT_RELEASE,
    image: str | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
) -> str:
    """The ``InferenceService`` of ``repository`` as YAML (named after the repository), with a header saying
    what the cluster must provide.

    Raises:
        ConfigError: As :func:`inference_service`.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", repository.name.lower()).strip("-")[:63].strip("-") or "tagger"
    placeholder = storage_uri is None
    document = inference_service(
        name,
        storage_uri or f"pvc://model-store/{repository.name}",
        server_flags,
        gpus=gpus,
        release=release,
        image=image,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
    )
    header = [
        f"# KServe InferenceService of the Triton repository {repository.name} (python -m export.triton_repo).",
        "# storageUri must hold that repository's root"
        + (" (a placeholder: pass --storage-uri)." if placeholder else "."),
    ]
    if image is None:
        header.append(f"# {STOCK_IMAGE_NOTE}")
    engine = facts.engine
    if engine is not None:
        capability = ".".join(map(str, engine.compute_capability))
        header.append(f"# The plan needs TensorRT {engine.tensorrt_version} in the image, a GPU of sm {capability}.")
    return "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False)
