"""Prints the import graph between this project's packages, read from the code, and checks the layers.

Every import counts, lazy ones inside functions included. The layers are DESIGN.md's: each package
may import only the packages listed for it below (``core`` none of them, and no torch); runtime may
import ``models`` and torch only lazily (inside a function) and only in the torch backend and its
decoder (torchvision on the serving device, ``runtime/torch_decode.py``); no module
imports another package's private (``_name``) module or name. Exit 0 when the graph is acyclic and
every edge is allowed, else 1.

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
# The modules of ``runtime`` that may import torch, and only lazily: the torch backend, and the decoder that
# runs torchvision on the serving device (asked for, or chosen where torchvision is installed). Only the
# torch backend may import ``models``.
TORCH_BACKEND = "runtime/torch_runner.py"
TORCH_DECODER = "runtime/torch_decode.py"
TORCH = {"torch", "torchvision"}


def imports(path: Path, root: Path) -> list[tuple[str, bool, int]]:
    """(imported module, imported at import time (not inside a function)?, line) for every import."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    in_function = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        eager = id(node) not in in_function
        if isinstance(node, ast.Import):
            found += [(alias.name, eager, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule or a name in base
            found += [(name, eager, node.lineno) for name in names]
    return found


def main(root: Path = ROOT) -> int:
    edges: dict[str, set[str]] = defaultdict(set)
    problems = []
    for package in ALLOWED:
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for module, eager, line in imports(path, root):
                parts = module.split(".")
                target = parts[0]
                if package == "core" and target in TORCH:
                    problems.append(f"{where}:{line}: core imports {target}")
                allowed_in = {TORCH_BACKEND, TORCH_DECODER} if target in TORCH else {TORCH_BACKEND}
                if (
                    package == "runtime"
                    and (target in TORCH or target == "models")
                    and (eager or where not in allowed_in)
                ):
                    problems.append(f"{where}:{line}: runtime imports {module} outside the torch modules' lazy imports")
                if target not in ALLOWED or target == package:
                    continue
                edges[package].add(target)
                if target not in ALLOWED[package]:
                    problems.append(f"{where}:{line}: {package} imports {module}, above it")
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
