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

from core.errors import InputFileError, UnsafePickleError

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
    **{
        (core + ".numeric", "_frombuffer"): (_NUMPY_CORE + ".numeric", "_frombuffer")
        for core in ("numpy.core", "numpy._core")
    },
}
_LATIN1 = ("latin1", "latin-1", "iso-8859-1")


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to latin-1: protocol <= 2 pickles from Python 3 carry array
    bytes as latin-1 text re-encoded by it; any other codec could import arbitrary modules."""
    if encoding.lower() not in _LATIN1 or not isinstance(text, str):
        raise UnsafePickleError(
            f"refused _codecs.encode with codec {encoding!r}; only latin-1 is used by numpy pickles"
        )
    return text.encode("latin-1", errors)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        target = _ALLOWED.get((module, name))
        if target is None:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}; only numpy arrays, dicts, lists, "
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
            return _NumpyOnlyUnpickler(handle, encoding="latin1").load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except MemoryError as exc:
            raise InputFileError(f"{path}: the pickle asks for an array larger than memory") from exc
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            LookupError,
        ) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise InputFileError(f"{path}: not a readable pickle ({type(exc).__name__}: {first_line})") from exc
