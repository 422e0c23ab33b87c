#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project with its test tools.
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
PIP_FIND_LINKS= .venv/bin/python -m pip install --quiet -e ".[test]"
