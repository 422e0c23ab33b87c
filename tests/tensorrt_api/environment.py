"""The environment in which the genuine TensorRT binding module imports without TensorRT installed.

``scripts/setup.sh`` installs the registry's ``tensorrt-cu12-bindings`` wheels of several versions
into ``.venv/tensorrt-bindings/<version>/`` (one folder each: they share the module name). Each runs
in a process of its own with this environment: stub native libraries built from ``nvinfer_stub.c``
on the loader path, and ``tensorrt`` importable as users import it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.helpers import REPO

BINDINGS = REPO / ".venv" / "tensorrt-bindings"
STUB_SOURCE = Path(__file__).with_name("nvinfer_stub.c")
NATIVE_LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")
# NVIDIA's `tensorrt` meta package (tensorrt-cu12) holds only this module; the package itself cannot
# be installed here (its setup downloads the native libraries from NVIDIA's own index).
META_PACKAGE = "from tensorrt_bindings import *\nfrom tensorrt_bindings import __version__\n"


def installed_bindings() -> list[Path]:
    """The installed binding folders, oldest version first."""
    folders = [path for path in BINDINGS.glob("*") if re.fullmatch(r"\d+(\.\d+)+", path.name)]
    folders = [path for path in folders if (path / "tensorrt_bindings").is_dir()]
    return sorted(folders, key=lambda path: tuple(int(part) for part in path.name.split(".")))


def environment(bindings: Path, folder: Path) -> dict[str, str]:
    """Variables for a process that imports ``bindings``' module; stub libraries are built in ``folder``."""
    major = bindings.name.split(".")[0]
    libraries = folder / "lib"
    libraries.mkdir(parents=True, exist_ok=True)
    for name in NATIVE_LIBRARIES:
        library = libraries / f"lib{name}.so.{major}"
        command = ["cc", "-shared", "-fPIC", f"-Wl,-soname,{library.name}", "-o", str(library), str(STUB_SOURCE)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    meta = folder / "site" / "tensorrt"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "__init__.py").write_text(META_PACKAGE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(meta.parent), str(bindings), str(REPO)])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libraries), env.get("LD_LIBRARY_PATH")]))
    env["TENSORRT_API_VERSION"] = bindings.name
    return env
