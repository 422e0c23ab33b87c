"""Prints the import graph between this project's packages, read from the code, and checks the layers.

Every import counts, lazy ones inside functions included. The layers are DESIGN.md's: each package
may import only the packages listed for it below (``core`` none of them, and no torch); runtime may
import ``models`` only lazily and only for the torch backend; no module imports another package's
private (``_name``) module or name. Exit 0 when the graph is acyclic and every edge is allowed, else 1.

    python scripts/import_graph.py
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Package → the packages it may import (DESIGN.md, Layout), bottom layer first.
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "runtime": {"core", "models"},
    "export": {"core", "models", "runtime"},
    "calibration": {"core", "models", "runtime", "export"},
    "pipeline": {"core", "models", "runtime", "export", "calibration"},
}
# The one module of ``runtime`` that may import ``models`` (lazily): the torch backend.
RUNTIME_TO_MODELS = {"runtime/torch_runner.py"}
TORCH = {"torch", "torchvision"}


def imports(path: Path, root: Path) -> list[tuple[str, bool, int]]:
    """(imported module, imported at module level?, line) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule or a name in base
            found += [(name, id(node) in top_level, node.lineno) for name in names]
    return found


def main(root: Path = ROOT) -> int:
    edges: dict[str, set[str]] = defaultdict(set)
    problems = []
    for package in ALLOWED:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for module, at_top, line in imports(path, root):
                parts = module.split(".")
                target = parts[0]
                if package == "core" and target in TORCH:
                    problems.append(f"{where}:{line}: core imports {target}")
                if target not in ALLOWED or target == package:
                    continue
                edges[package].add(target)
                if target not in ALLOWED[package]:
                    problems.append(f"{where}:{line}: {package} imports {module}, above it")
                if package == "runtime" and target == "models" and (at_top or where not in RUNTIME_TO_MODELS):
                    problems.append(f"{where}:{line}: runtime imports {module} outside the torch backend's lazy import")
                if any(part.startswith("_") and not part.startswith("__") for part in parts[1:]):
                    problems.append(f"{where}:{line}: imports another package's private name {module}")
    for package in ALLOWED:
        print(f"{package:12} → {', '.join(sorted(edges[package])) or '(nothing of ours)'}")
    try:
        order = list(TopologicalSorter({p: edges[p] for p in ALLOWED}).static_order())
    except CycleError as exc:
        problems.append(f"import cycle: {' → '.join(exc.args[1])}")
    else:
        print(f"acyclic; layers from the bottom: {' ← '.join(order)}")
    for problem in problems:
        print(f"LAYER VIOLATION {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
