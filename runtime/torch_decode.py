"""Images decoded, resized and normalised by torchvision on the device that serves them: nvJPEG on CUDA
(``torchvision.io.decode_jpeg(device="cuda")``, a batch at a time), libjpeg-turbo on the CPU.

The steps are the CPU definition's (``core.preprocessing``): RGB, a bilinear resize with antialiasing
(as Pillow downsamples) to the input size, rounded to uint8, then, for an artifact with a float32
input, scale, mean/std and NCHW; an artifact with a uint8 input gets the pixels [B, S, S, 3]. What
torchvision cannot decode (PNG and other formats, CMYK JPEGs, a corrupt file) falls back, per image,
to the CPU definition (``runtime.inputs.prepare``), so unusable images fail with the same errors, and
so does an image over the pixel bound (read from its header).
Decoders differ slightly (IDCT and chroma upsampling), so the pixels differ by a level or so from
Pillow's: :func:`decoder_parity` measures it and :data:`PIXEL_LIMITS` bounds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import BadInputError, MissingDependencyError
from core.facts import ServingFacts
from core.preprocessing import MAX_PIXELS, resized

from .inputs import prepare

# How far torchvision's pixels may lie from the CPU definition's, in uint8 levels: the mean over all
# pixels and the largest single difference. libjpeg-turbo through torchvision on the CPU measures
# 0.2 / 1 (the resize in float, rounded); nvJPEG's own IDCT and upsampling add to that.
PIXEL_LIMITS = {"mean": 1.0, "max": 16}
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class DecoderParity:
    """Pixels of torchvision's path against the CPU definition's, over ``images`` images."""

    images: int
    fallbacks: int
    mean_levels: float
    max_levels: int

    @property
    def passed(self) -> bool:
        return self.mean_levels <= PIXEL_LIMITS["mean"] and self.max_levels <= PIXEL_LIMITS["max"]


class TorchDecoder:
    """Decodes batches of items into the artifact's input (``facts.input_format``) on ``device``."""

    def __init__(self, facts: ServingFacts, device) -> None:
        try:
            import torch
            from torchvision.io import ImageReadMode, decode_jpeg
            from torchvision.transforms.v2 import functional
        except ImportError as exc:
            raise MissingDependencyError(f"decoding with torchvision needs torchvision ({exc})") from exc
        self._torch, self._decode_jpeg, self._functional = torch, decode_jpeg, functional
        self._rgb = ImageReadMode.RGB
        self.facts, self.device = facts, torch.device(device)
        preprocessing = facts.preprocessing
        self._mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocessing.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        # On CUDA the decoder has a stream of its own, so the next batch decodes while this one computes.
        # A batch is handed over only once that stream is synchronised, and its memory goes back to torch's
        # allocator only after the runner has finished with it (each runner returns host logits).
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def pixels(self, items: list, first_index: int) -> list:
        """Each item as uint8 [3, S, S] on the device, or the :class:`BadInputError` that names it."""
        torch = self._torch
        results: list = [None] * len(items)
        encoded: dict[int, object] = {}
        for offset, item in enumerate(items):
            data = _jpeg_bytes(item)
            if data is not None:
                encoded[offset] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if encoded:
            try:
                decoded = self._decode_jpeg(list(encoded.values()), device=self.device, mode=self._rgb)
            except RuntimeError:  # one of them is not decodable here: each alone says which
                decoded = [self._one(data) for data in encoded.values()]
            for offset, image in zip(encoded, decoded, strict=True):
                results[offset] = None if image is None else self._resized(image)
        for offset, item in enumerate(items):
            if results[offset] is None:  # the CPU definition, for what torchvision did not decode
                try:
                    array = prepare(first_index + offset, item, _as_uint8(self.facts))
                    results[offset] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(self.device)
                except BadInputError as exc:
                    results[offset] = exc
        return results

    def batch(self, items: list, first_index: int) -> tuple[list[int], object | None, list[BadInputError]]:
        """The usable items' offsets, their input batch on the device (None if none is usable), and the
        errors of the others. The batch is ready when returned (the decoding stream is synchronised)."""
        torch = self._torch
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            usable, batch, errors = self._batch(items, first_index)
        if self._stream is not None:
            self._stream.synchronize()
        return usable, batch, errors

    def _batch(self, items: list, first_index: int) -> tuple[list[int], object | None, list[BadInputError]]:
        decoded = self.pixels(items, first_index)
        usable = [offset for offset, result in enumerate(decoded) if not isinstance(result, BadInputError)]
        errors = [result for result in decoded if isinstance(result, BadInputError)]
        if not usable:
            return usable, None, errors
        pixels = self._torch.stack([decoded[offset] for offset in usable])
        if self.facts.input_format == "uint8":
            batch = pixels.permute(0, 2, 3, 1).contiguous()
        else:  # as core.preprocessing.normalized computes it
            batch = (pixels.float() / 255.0 - self._mean) / self._std
        return usable, batch, errors

    def _one(self, data):
        try:
            return self._decode_jpeg(data, device=self.device, mode=self._rgb)
        except RuntimeError:
            return None

    def _resized(self, image):
        size = self.facts.image_size
        if tuple(image.shape[1:]) == (size, size):
            return image
        scaled = self._functional.resize(
            image.float().unsqueeze(0),
            [size, size],
            interpolation=self._functional.InterpolationMode.BILINEAR,
            antialias=True,
        )
        return scaled.squeeze(0).round_().clamp_(0, 255).to(self._torch.uint8)


def decoder_parity(files: list[Path], facts: ServingFacts, device="cpu") -> DecoderParity:
    """torchvision's pixels of ``files`` on ``device`` against the CPU definition's."""
    decoder = TorchDecoder(facts, device)
    levels, fallbacks = [], 0
    for index, path in enumerate(files):
        (pixels,) = decoder.pixels([str(path)], index)
        fallbacks += _jpeg_bytes(str(path)) is None
        reference = resized(path, facts.image_size, facts.preprocessing).astype(np.int16)
        ours = pixels.permute(1, 2, 0).cpu().numpy().astype(np.int16)
        levels.append(np.abs(ours - reference))
    stacked = np.stack(levels)
    return DecoderParity(len(files), fallbacks, float(stacked.mean()), int(stacked.max()))


def torchvision_installed() -> bool:
    """Whether torchvision can be imported here (without importing it)."""
    return importlib.util.find_spec("torchvision") is not None


def _jpeg_bytes(item: object) -> bytes | None:
    """The encoded bytes of a JPEG path or bytes item; None for anything else (decoded on the CPU)."""
    if isinstance(item, bytes | bytearray):
        data = bytes(item)
    elif isinstance(item, str | os.PathLike):
        try:
            data = Path(item).read_bytes()
        except OSError:
            return None  # the CPU path names the problem
    else:
        return None
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:  # the header alone: an image over the pixel bound goes to the CPU path, which refuses it by name
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return data if width * height <= MAX_PIXELS else None


def _as_uint8(facts: ServingFacts) -> ServingFacts:
    """The same facts, asking for resized pixels (what the CPU fallback hands over)."""
    return dataclasses.replace(facts, input_format="uint8")
