"""The names a Triton model repository written by ``export.triton_repo`` exposes: clients rely on them.

One definition for the writer (``export.triton_repo``), the Python-backend models that run inside
the server (``runtime.triton_models``) and the client (``runtime.triton_client``).
"""

from __future__ import annotations

# Models.
TAGGER = "tagger"  # the ensemble clients call: encoded image bytes in, probabilities and labels out
PREPROCESS = "preprocess"
CLASSIFIER = "classifier"
POSTPROCESS = "postprocess"

# Tensors of the ensemble (the classifier's own input and output are named by the artifact's facts).
IMAGE = "IMAGE"  # TYPE_STRING [1]: one encoded image (JPEG, PNG, ...)
PROBABILITIES = "probabilities"  # TYPE_FP32 [N], the artifact's class order
LABELS = "labels"  # TYPE_STRING [1]: a JSON list of the classes at or over their thresholds, most probable first
LOGITS = "logits"  # TYPE_FP32 [N]: the classifier's logits, from which the client computes its own labels
# The postprocess model's copy of its input logits, which the ensemble returns as LOGITS: returning the
# classifier's tensor itself stalls tritonserver 2.51's ensemble whenever a client asks for a subset of
# the outputs ("unexpected deadlock").
LOGITS_COPY = "logits_copy"

# The labels file of the classification extension, in the models that output probabilities.
LABELS_FILE = "labels.txt"

# Model-config parameters (string values).
FACTS_PARAMETER = "artifact_facts"  # the served artifact's facts, as JSON (core.facts.ArtifactFacts.to_dict)
THRESHOLDS_PARAMETER = "thresholds"  # per-class decision thresholds [N], as a JSON list
ARTIFACT_PARAMETER = "artifact_file"  # the Python-backend classifier's artifact, in its version folder

# Every per-request error for an unusable image starts with this, so a client can tell it from a failure of
# the server.
BAD_IMAGE = "bad image"
