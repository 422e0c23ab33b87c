"""End-to-end pipelines over the toolkit: the one-command demo."""

import os

# The demo runs torch, ONNX Runtime and decode threads in one process: OpenMP threads that
# spin-wait between calls would take the cores from the others (torch reads this at import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
