#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project with its test tools, the Triton client,
# pyarrow and Ray Data (the bulk engines), the genuine TensorRT binding modules its tests check
# against, and the environment a local Triton server runs its Python models in.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" - <<'PY' || { echo "setup: Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

[ -x .venv/bin/python ] || "$python" -m venv .venv
# Ignore any local wheel folder (PIP_FIND_LINKS): a CPU-only torch found there cannot load
# torchvision's operators; torch and torchvision must come from the registry as a pair.
PIP_FIND_LINKS= .venv/bin/python -m pip install --quiet --upgrade pip
PIP_FIND_LINKS= .venv/bin/python -m pip install --quiet -e ".[test,serve,parquet,ray]"

# The genuine TensorRT Python binding modules the tests check our TensorRT code against (small
# wheels; without TensorRT's native libraries they import only under tests/tensorrt_api's stubs).
# One folder per version: they share the module name.
for version in 10.12.0.36 10.13.3.9 10.16.1.11 11.0.0.114 11.4.0.106; do
    target=.venv/tensorrt-bindings/$version
    [ -d "$target/tensorrt_bindings" ] && continue
    rm -rf "$target.partial"
    PIP_FIND_LINKS= .venv/bin/python -m pip install --quiet --no-deps --target "$target.partial" \
        "tensorrt-cu12-bindings==$version"
    rm -rf "$target" && mv "$target.partial" "$target"
done

# The Python environment of Triton's Python-backend models (runtime serve finds it here): the
# tritonserver bundled in nvidia-pytriton 0.7.0 has a Python-backend stub built against NumPy 1.x, so
# these models need numpy<2, which the project's own environment need not have. Only the wheel's
# server binary is used (--no-deps: its Python API, and its numpy pin, stay out of .venv).
backend=.venv/triton-backend
if [ ! -f "$backend/.complete" ]; then
    rm -rf "$backend"
    "$python" -m venv "$backend"
    PIP_FIND_LINKS= "$backend/bin/python" -m pip install --quiet "numpy>=1.26,<2" "pillow>=10.0,<14" \
        "onnxruntime>=1.20,<2"
    PIP_FIND_LINKS= "$backend/bin/python" -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0" -e .
    touch "$backend/.complete"
fi
