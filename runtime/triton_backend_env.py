"""The Python environment a local Triton server runs its Python-backend models in.

The models (``runtime.triton_models``) import this toolkit, so that environment needs it, with NumPy,
Pillow and, for the classifier twin, ONNX Runtime. The Python-backend stub of the server bundled in
``nvidia-pytriton`` 0.7.0 is built against NumPy 1.x: under NumPy 2 it misreads tensors, so that
environment also needs ``numpy<2``, which the project's own need not have. ``scripts/setup.sh`` makes
one in :data:`BACKEND_ENV`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import MissingDependencyError

# Where scripts/setup.sh makes the Python environment of the Python-backend models (numpy<2).
BACKEND_ENV = Path(sys.prefix) / "triton-backend"
# Run by the models' Python: what the server needs to know of that environment.
_PROBE = """
import importlib.util, json, sys, sysconfig
import numpy
spec = importlib.util.find_spec("pytriton")
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "numpy": numpy.__version__,
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "toolkit": importlib.util.find_spec("runtime.triton_models") is not None,
    "pytriton": list(spec.submodule_search_locations)[0] if spec else None,
}))
"""


@dataclass(frozen=True)
class BackendPython:
    """The Python environment the Python-backend models run in."""

    executable: Path
    version: str
    numpy: str
    libdir: str
    pytriton: Path | None  # the nvidia-pytriton package installed there, if any

    @classmethod
    def probe(cls, executable: str | os.PathLike | None = None) -> BackendPython:
        """Looks ``executable`` up (default: ``BACKEND_ENV``'s Python where it exists, else this one).

        Raises:
            MissingDependencyError: It does not run, lacks NumPy, or lacks this toolkit.
        """
        if executable is None:
            made = BACKEND_ENV / "bin" / "python"
            executable = made if made.exists() else sys.executable
        executable = Path(executable)
        try:
            # From a neutral folder: run from a checkout, Python would find the toolkit there, and the server won't.
            done = subprocess.run(
                [str(executable), "-c", _PROBE],
                capture_output=True, text=True, timeout=60, check=False, cwd=tempfile.gettempdir(),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MissingDependencyError(f"cannot run the models' Python {executable}: {exc}") from exc
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise MissingDependencyError(
                f"the models' Python {executable} cannot run the environment check ({last}); give --backend-python "
                "an environment with numpy<2, pillow, onnxruntime and this toolkit"
            )
        found = json.loads(done.stdout)
        if not found["toolkit"]:
            raise MissingDependencyError(
                f"the models' Python {executable} cannot import this toolkit's runtime; install it there "
                "(pip install --no-deps -e . from the checkout, or its wheel; docs/serving.md)"
            )
        pytriton = Path(found["pytriton"]) if found["pytriton"] else None
        return cls(executable, found["version"], found["numpy"], found["libdir"], pytriton)


def require_numpy_1(python: BackendPython) -> None:
    """The bundled server's Python-backend stub is built against NumPy 1.x: under NumPy 2 it misreads tensors.

    Raises:
        MissingDependencyError: ``python`` has NumPy 2 or later.
    """
    if int(python.numpy.split(".")[0]) >= 2:
        raise MissingDependencyError(
            f"the bundled tritonserver's Python backend is built against NumPy 1.x, and {python.executable} has "
            f"numpy {python.numpy}; name a Python environment with numpy<2 (--backend-python; scripts/setup.sh "
            f"makes one in {BACKEND_ENV})"
        )
