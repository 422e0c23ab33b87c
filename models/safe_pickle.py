"""A restricted unpickler for files users hand in (the seed's and ML-GCN's statistics).

``pickle.load`` runs whatever callable a file names. This loader resolves only numpy's array,
dtype and scalar reconstruction functions; builtin containers, numbers and strings need no
globals. Every other global is refused before anything is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

from .errors import InputFileError, UnsafePickleError

# (module, name) as written in pickles → (module, name) in the installed numpy. Pickles made
# with numpy 1.x name ``numpy.core``, numpy 2 renamed it ``numpy._core``.
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"
_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    **{
        (core + ".multiarray", name): (_NUMPY_CORE + ".multiarray", name)
        for core in ("numpy.core", "numpy._core")
        for name in ("_reconstruct", "scalar")
    },
    # Protocol 5 stores arrays through a buffer.
    **{(core + ".numeric", "_frombuffer"): (_NUMPY_CORE + ".numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")},
    # Protocol <= 2 pickles from Python 3 carry array bytes as latin-1 text re-encoded by this.
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"{self._path}: refused to load global {module}.{name}; only numpy arrays, dicts, lists, "
                "numbers and strings are accepted. Re-save the data with numpy.save or as JSON if you trust it"
            )
        return getattr(importlib.import_module(target[0]), target[1])


def load_pickle(path: str | os.PathLike) -> Any:
    """Loads a pickle that may hold only numpy arrays and builtin containers, numbers and strings.

    Raises:
        UnsafePickleError: The pickle names any other global (nothing it names is called).
        InputFileError: The file is missing or is not a readable pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"pickle not found: {path}")
    with path.open("rb") as handle:
        try:
            return _NumpyOnlyUnpickler(handle, path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise InputFileError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
