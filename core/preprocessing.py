"""The one definition of image preprocessing: numpy and Pillow only, no torch.

Training-time evaluation (``models.transforms``) and every runtime backend call this, so the
tensor a model is evaluated on is the tensor it is served on. Steps, as the model was trained
(ML-GCN's validation transform): decode → RGB → "warp" resize to the square input size
(bilinear, aspect ratio not kept) → scale to [0, 1] → subtract mean, divide by std → CHW float32.

The steps split in two: :func:`resized` (decode and resize: uint8 HWC pixels) and :func:`normalized`
(scale, mean/std, transpose). A graph exported with a uint8 input (``export.uint8_input``) holds the
second half with these same constants, so its feeders stop after the first.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.config import Preprocessing
from core.errors import InputFileError

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR}
# Larger images are refused before decoding: decoded, one takes MAX_PIXELS × 3 bytes.
MAX_PIXELS = 64_000_000
# 16-bit single-channel modes (a 16-bit grayscale PNG opens as one of these): 0..65535.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_rgb(source: ImageSource) -> Image.Image:
    """Decodes a path, encoded bytes, a PIL image or an HWC uint8 array into an RGB PIL image.

    16-bit images (PIL modes ``I;16*`` and ``I``) are scaled to 8 bits, not clipped. A file larger
    than :data:`MAX_PIXELS` is refused from its header, before it is decoded.

    Raises:
        InputFileError: The file is missing, not a decodable image or too large; the image has no
            pixels, is closed, or is floating point; the array is not HWC uint8 with 1, 3 or 4
            channels.
    """
    if isinstance(source, Image.Image):
        what = "the PIL image"
        _check_size(source.size, what)  # a lazily opened image is not decoded yet
        try:
            source.load()
        except (ValueError, OSError, AssertionError, AttributeError) as exc:
            raise InputFileError(f"{what} cannot be read (closed, or its file is gone): {exc}") from exc
        image = source
    elif isinstance(source, np.ndarray):
        what = "the array"
        image = _from_array(source)
    else:
        what = "image bytes" if isinstance(source, bytes) else str(source)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as opened:
                _check_size(opened.size, what)
                opened.load()
                image = opened.copy()
        except FileNotFoundError as exc:
            raise InputFileError(f"image not found: {what}") from exc
        except UnidentifiedImageError as exc:
            raise InputFileError(f"{what}: not a readable image (unknown format, or not an image)") from exc
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InputFileError(f"{what}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if image.width < 1 or image.height < 1:
        raise InputFileError(f"{what} has no pixels ({image.width}×{image.height})")
    return _to_rgb(image, what)


def _check_size(size: tuple[int, int], what: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InputFileError(
            f"{what} is {width}×{height} pixels; images above {MAX_PIXELS // 1_000_000} megapixels are refused "
            f"before decoding (they would take {width * height * 3 >> 20} MiB each); downscale it first"
        )


def _to_rgb(image: Image.Image, what: str) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:  # convert("RGB") would clip every value above 255 to white
        wide = np.asarray(image)
        # Mode I is 32-bit: 16-bit data (values above 255) is scaled, 8-bit data taken as it is.
        if image.mode.startswith("I;16") or wide.max(initial=0) > 255:
            wide = (np.clip(wide, 0, 65535).astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(np.clip(wide, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        raise InputFileError(f"{what} holds floating-point pixels, which have no fixed scale; convert it to 8-bit")
    return image.convert("RGB")


def resized(source: ImageSource, image_size: int, preprocessing: Preprocessing) -> np.ndarray:
    """One image → its RGB pixels resized to the input size, uint8 [image_size, image_size, 3]."""
    image = load_rgb(source).resize((image_size, image_size), _RESAMPLE[preprocessing.interpolation])
    return np.asarray(image, dtype=np.uint8)


def normalized(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Resized uint8 pixels [..., S, S, 3] → the network's input, float32 [..., 3, S, S]."""
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis((scaled - mean) / std, -1, -3))


def preprocess(source: ImageSource, image_size: int, preprocessing: Preprocessing) -> np.ndarray:
    """One image → the network's input, float32 [3, image_size, image_size]."""
    return normalized(resized(source, image_size, preprocessing), preprocessing)


def preprocess_batch(sources: Sequence[ImageSource], image_size: int, preprocessing: Preprocessing) -> np.ndarray:
    """Several images → float32 [B, 3, image_size, image_size]."""
    return np.stack([preprocess(source, image_size, preprocessing) for source in sources])


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises:
        InputFileError: ``folder`` is not a folder or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return files


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InputFileError(
            f"an image array must be HWC uint8 with 1, 3 or 4 channels, got {array.dtype} of shape {array.shape}"
        )
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
