"""One request item → the network's input (or, for a served model, an encoded image), or a
:class:`BadInputError` naming the item.

Items are paths, encoded bytes, PIL images, HWC uint8 arrays (decoded and preprocessed), or
float32 arrays already preprocessed to [3, S, S] (checked for shape and finiteness). What an item
becomes is what the artifact's facts ask for: preprocessed float32 [3, S, S], or for an artifact with
a uint8 input the resized pixels [S, S, 3], which it normalises itself.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import Preprocessing
from core.errors import BadInputError, InputFileError
from core.facts import ServingFacts
from core.preprocessing import load_rgb, preprocess, resized


def describe(item: object) -> str:
    """A short name of ``item`` for messages: its path, or its type and size."""
    if isinstance(item, str | os.PathLike):
        return str(item)
    if isinstance(item, bytes | bytearray):
        return f"{len(item)} bytes"
    if isinstance(item, Image.Image):
        return f"PIL {item.mode} image {item.width}x{item.height}"
    if isinstance(item, np.ndarray):
        return f"{item.dtype} array {tuple(item.shape)}"
    return type(item).__name__


def prepare(index: int, item: object, facts: ServingFacts) -> np.ndarray:
    """``item`` as the artifact described by ``facts`` takes it (:attr:`ServingFacts.input_item_shape`).

    Raises:
        BadInputError: The item is unreadable, of an unsupported type, of the wrong shape, holds NaN or
            infinite values, or is a preprocessed array for an artifact that takes pixels; it names
            ``index`` and the item.
    """
    image_size, preprocessing = facts.image_size, facts.preprocessing
    try:
        if isinstance(item, np.ndarray) and item.dtype != np.uint8:
            if facts.input_format == "uint8":
                raise InputFileError(
                    "this artifact takes uint8 pixels and normalises them itself (its input format is uint8); "
                    "pass the image (HWC uint8 pixels, a path, bytes or a PIL image), not a preprocessed array"
                )
            return _preprocessed(item, image_size, preprocessing)
        if isinstance(item, bytearray):
            item = bytes(item)
        if not isinstance(item, str | os.PathLike | bytes | Image.Image | np.ndarray):
            raise InputFileError(f"expected a path, encoded bytes, a PIL image or an array, got {type(item).__name__}")
        if isinstance(item, np.ndarray) and min(item.shape[:2], default=0) < 1:
            raise InputFileError(f"an image array needs at least one pixel, got shape {item.shape}")
        source = Path(item) if isinstance(item, str) else item
        if facts.input_format == "uint8":
            return resized(source, image_size, preprocessing)
        return preprocess(source, image_size, preprocessing)
    except InputFileError as exc:
        raise BadInputError(index, describe(item), str(exc).removeprefix(f"{describe(item)}: ")) from exc


def encoded(index: int, item: object) -> bytes:
    """``item`` as the encoded image a served tagger takes: a file's or the caller's bytes as they are,
    a PIL image or an array as a lossless PNG of its RGB pixels (decoded there into the same pixels).

    Raises:
        BadInputError: The item is unreadable, of an unsupported type, or a preprocessed array (which
            only an in-process predictor takes); it names ``index`` and the item.
    """
    try:
        if isinstance(item, bytes | bytearray):
            return bytes(item)
        if isinstance(item, str | os.PathLike):
            try:
                return Path(item).read_bytes()
            except FileNotFoundError as exc:
                raise InputFileError(f"image not found: {item}") from exc
            except OSError as exc:
                raise InputFileError(f"{item}: cannot be read ({exc.strerror})") from exc
        if isinstance(item, np.ndarray) and item.dtype != np.uint8:
            raise InputFileError("a served model takes images; pass HWC uint8 pixels, not a preprocessed array")
        if not isinstance(item, Image.Image | np.ndarray):
            raise InputFileError(f"expected a path, encoded bytes, a PIL image or an array, got {type(item).__name__}")
        buffer = io.BytesIO()
        load_rgb(item).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()
    except InputFileError as exc:
        raise BadInputError(index, describe(item), str(exc).removeprefix(f"{describe(item)}: ")) from exc


def _preprocessed(array: np.ndarray, image_size: int, preprocessing: Preprocessing) -> np.ndarray:
    expected = (3, image_size, image_size)
    if array.dtype != np.float32 or array.shape != expected:
        raise InputFileError(
            f"a non-uint8 array is taken as preprocessed and must be float32 of shape {expected}, got "
            f"{array.dtype} {array.shape}; pass HWC uint8 pixels to have them preprocessed"
        )
    if not np.isfinite(array).all():
        raise InputFileError("holds NaN or infinite values")
    low, high = preprocessed_range(preprocessing)
    if np.any(array < low[:, None, None]) or np.any(array > high[:, None, None]):
        raise InputFileError(
            f"holds values from {array.min():.3g} to {array.max():.3g}, outside what preprocessing gives "
            f"({low.min():.3g} to {high.max():.3g}: pixels/255 less the mean, over the std); pass HWC uint8 "
            "pixels to have them preprocessed"
        )
    return np.ascontiguousarray(array)


def preprocessed_range(preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the least and greatest value preprocessing gives (pixels 0 and 255), with a
    margin for rounding."""
    mean, std = np.asarray(preprocessing.mean), np.asarray(preprocessing.std)
    margin = 1e-3 / std
    return (0.0 - mean) / std - margin, (1.0 - mean) / std + margin
