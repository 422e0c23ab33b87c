"""The layers of DESIGN.md, read from the code: the package import graph is acyclic with core at the
bottom, and the checker that says so catches what it should."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

_spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)


def test_the_package_graph_is_acyclic_with_core_at_the_bottom() -> None:
    result = subprocess.run([sys.executable, "scripts/import_graph.py"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split() == ["core", "→", "(nothing", "of", "ours)"] for line in lines)
    assert "acyclic; layers from the bottom: core ← " in result.stdout


@pytest.mark.parametrize(
    ("files", "violation"),
    [
        ({"core/a.py": "import torch\n"}, "core imports torch"),
        ({"core/a.py": "from models.b import x\n"}, "core imports models.b.x, above it"),
        ({"models/b.py": "def f():\n    from runtime.c import y\n"}, "models imports runtime.c.y, above it"),
        ({"runtime/c.py": "from models.b import x\n"}, "outside the torch modules' lazy imports"),
        ({"runtime/torch_decode.py": "def f():\n    from models.b import x\n"}, "runtime imports models.b.x outside"),
        ({"runtime/torch_decode.py": "import torchvision\n"}, "runtime imports torchvision outside"),
        ({"runtime/c.py": "try:\n    import torch\nexcept ImportError:\n    pass\n"}, "runtime imports torch outside"),
        ({"runtime/torch_runner.py": "import torch\n"}, "runtime imports torch outside"),
        ({"export/d.py": "from core._hidden import z\n"}, "private name core._hidden.z"),
        (
            {"export/d.py": "from calibration.e import w\n", "calibration/e.py": "from export.d import v\n"},
            "export imports calibration.e.w, above it",
        ),
    ],
)
def test_the_checker_catches_an_upward_or_private_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], violation: str
) -> None:
    for package in import_graph.ALLOWED:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert import_graph.main(tmp_path) == 1
    assert violation in capsys.readouterr().err
