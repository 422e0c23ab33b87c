from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputFileError, UnsafePickleError
from models.safe_pickle import load_pickle

_DATA = {
    "adj": np.arange(16, dtype=np.int64).reshape(4, 4),
    "pp": np.linspace(0, 1, 9).reshape(3, 3),
    "mask": np.eye(2, dtype=bool),
    "scalar": np.float32(2.5),
    "names": ["person", "bicycle"],
    "nested": {"tuple": (1, 2.0, "x")},
}


def _write(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "data.pkl"
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_and_builtins_load_in_every_protocol(tmp_path: Path, protocol: int) -> None:
    loaded = load_pickle(_write(tmp_path, pickle.dumps(_DATA, protocol=protocol)))
    assert loaded.keys() == _DATA.keys()
    for key in ("adj", "pp", "mask"):
        np.testing.assert_array_equal(loaded[key], _DATA[key])
        assert loaded[key].dtype == _DATA[key].dtype
    assert loaded["scalar"] == np.float32(2.5) and loaded["names"] == ["person", "bicycle"]
    assert loaded["nested"] == {"tuple": (1, 2.0, "x")}


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),  # GLOBAL + REDUCE
        (b"cbuiltins\n__import__\n(S'os'\ntR.", "builtins.__import__"),
        (b"cbuiltins\ngetattr\n(S'x'\nS'upper'\ntR.", "builtins.getattr"),
        (b"(S'echo hi'\nios\nsystem\n.", "os.system"),  # INST
        (pickle.dumps(eval, protocol=4), "builtins.eval"),  # STACK_GLOBAL
        (pickle.dumps(np.load, protocol=2), "numpy.load"),
        (b"c_codecs\nencode\n(S'a'\nS'idna'\ntR.", "codec 'idna'"),  # would import encodings.idna
    ],
)
def test_every_other_global_is_refused(tmp_path: Path, payload: bytes, refused: str) -> None:
    with pytest.raises(UnsafePickleError, match=refused.replace(".", r"\.")) as raised:
        load_pickle(_write(tmp_path, payload))
    assert str(raised.value).startswith(str(tmp_path / "data.pkl"))


def test_latin1_encode_is_what_numpy_needs_and_is_allowed(tmp_path: Path) -> None:
    assert load_pickle(_write(tmp_path, b"c_codecs\nencode\n(Vabc\nS'latin1'\ntR.")) == b"abc"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (pickle.dumps(_DATA)[:40], "not a readable pickle"),
        (b"\x00\x01garbage", "not a readable pickle"),
        (b"c_codecs\nencode\n(V\\u20ac\nS'latin1'\nS'no-such-handler'\ntR.", "not a readable pickle"),
        (b"cnumpy\nndarray\n((I1125899906842624\ntS'f8'\ntR.", "larger than memory"),
    ],
)
def test_corrupt_or_hostile_data_is_a_typed_error(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(InputFileError, match=message) as raised:
        load_pickle(_write(tmp_path, payload))
    assert "\n" not in str(raised.value)


def test_a_missing_pickle_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="pickle not found: .*nothing.pkl"):
        load_pickle(tmp_path / "nothing.pkl")
