"""Images decoded, resized and normalised by torchvision on the device that serves them: nvJPEG on CUDA
(``torchvision.io.decode_jpeg(device="cuda")``, a batch at a time), libjpeg-turbo on the CPU.

The steps are the CPU definition's (``core.preprocessing``): RGB, a bilinear resize with antialiasing
(as Pillow downsamples) to the input size, rounded to uint8, then, for an artifact with a float32
input, scale, mean/std and NCHW; an artifact with a uint8 input gets the pixels [B, S, S, 3]. Every
other item (PNG and other formats, PIL images, arrays, preprocessed arrays, a JPEG torchvision cannot
decode, an image over the pixel bound read from its header) takes the CPU definition
(``runtime.inputs.prepare``) and is moved to the device, so unusable items fail with the same errors.

Decoders differ slightly (IDCT and chroma upsampling), so the pixels differ by a level or so from
Pillow's: :func:`decoder_parity` measures it, :data:`PIXEL_LIMITS` bounds it, and every decoder on a
GPU is gated on opening (:meth:`TorchDecoder.check`) against generated JPEGs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import BadInputError, ConfigError, MissingDependencyError
from core.facts import ServingFacts
from core.preprocessing import MAX_PIXELS, resized

from .inputs import prepare

logger = logging.getLogger(__name__)

# How far torchvision's pixels may lie from the CPU definition's, in uint8 levels: the mean over all
# pixels and the largest single difference. libjpeg-turbo through torchvision on the CPU measures
# 0.07-0.2 / 1 (the resize in float, rounded); nvJPEG's own IDCT and upsampling add to that.
PIXEL_LIMITS = {"mean": 1.0, "max": 16}
# Who decodes and resizes images: Pillow on the CPU (the definition), or torchvision on the serving device.
DECODERS = ("auto", "pillow", "torchvision")
_JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class DecoderParity:
    """Pixels of torchvision's path against the CPU definition's over ``images`` JPEGs, of which
    ``fallbacks`` torchvision did not decode (the figures are over the others)."""

    images: int
    fallbacks: int
    mean_levels: float
    max_levels: int

    @property
    def passed(self) -> bool:
        within = self.mean_levels <= PIXEL_LIMITS["mean"] and self.max_levels <= PIXEL_LIMITS["max"]
        return within and self.fallbacks == 0 and self.images > 0

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.images} JPEGs, {self.fallbacks} not decoded by torchvision: mean {self.mean_levels:.3f} levels, "
            f"max {self.max_levels} (limits: mean {PIXEL_LIMITS['mean']}, max {PIXEL_LIMITS['max']}): {verdict}"
        )


class TorchDecoder:
    """Decodes batches of items into the artifact's input (``facts.input_format``) on ``device``.

    Raises:
        MissingDependencyError: torch or torchvision cannot be imported.
    """

    def __init__(self, facts: ServingFacts, device) -> None:
        try:
            import torch
            from torchvision.io import ImageReadMode, decode_jpeg
            from torchvision.transforms.v2 import functional
        except ImportError as exc:
            raise MissingDependencyError(
                f"decoding with torchvision needs torch and torchvision ({exc}); pip install torchvision, or decode "
                "with Pillow (decoder='pillow', --decoder pillow)"
            ) from exc
        self._torch, self._decode_jpeg, self._functional = torch, decode_jpeg, functional
        self._rgb = ImageReadMode.RGB
        self._interpolation = {"bilinear": functional.InterpolationMode.BILINEAR}[facts.preprocessing.interpolation]
        self.facts, self.device = facts, torch.device(device)
        preprocessing = facts.preprocessing
        self._mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(preprocessing.std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        # On CUDA each decoding thread has a stream of its own, so the next batch decodes while this one
        # computes. A batch is handed over once that stream is synchronised, and its memory goes back to
        # torch's allocator only after the runner has finished with it (each runner returns host logits).
        self._streams = threading.local()

    def check(self) -> DecoderParity:
        """Gates this decoder against the CPU definition on generated JPEGs (of odd sizes, chroma subsampled).

        Raises:
            ConfigError: The pixels differ beyond :data:`PIXEL_LIMITS`, or torchvision decoded none of them.
        """
        parity = decoder_parity(_probe_jpegs(), self.facts, self.device, decoder=self)
        if not parity.passed:
            raise ConfigError(
                f"torchvision's decoding on {self.device} does not give the CPU definition's pixels ({parity.line()}); "
                "decode with Pillow (decoder='pillow', --decoder pillow)"
            )
        return parity

    def batch(self, items: Sequence, first_index: int) -> tuple[list[int], object | None, list[BadInputError]]:
        """The usable items' offsets, their input batch on the device (None if none is usable), and the
        errors of the others. The batch is ready when returned (the decoding stream is synchronised)."""
        stream = self._stream()
        with self._torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            decoded = self.decoded(items)
            usable, inputs, errors = [], [], []
            for offset, item in enumerate(items):
                if offset in decoded:
                    inputs.append(self._as_input(decoded[offset]))
                else:  # the CPU definition, for what torchvision did not decode
                    try:
                        array = prepare(first_index + offset, item, self.facts)
                    except BadInputError as exc:
                        errors.append(exc)
                        continue
                    inputs.append(self._torch.tensor(array, device=self.device))
                usable.append(offset)
            batch = self._torch.stack(inputs) if inputs else None
        if stream is not None:
            stream.synchronize()
        return usable, batch, errors

    def decoded(self, items: Sequence) -> dict[int, object]:
        """Offset → resized uint8 pixels [3, S, S] on the device, for the items torchvision decodes."""
        torch = self._torch
        encoded = {}
        for offset, item in enumerate(items):
            data = _jpeg_bytes(item)
            if data is not None:
                encoded[offset] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if not encoded:
            return {}
        try:
            images = self._decode_jpeg(list(encoded.values()), device=self.device, mode=self._rgb)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError:  # one of them is not decodable here: each alone says which
            images = [self._one(data) for data in encoded.values()]
        decoded = {
            offset: self._resized(image) for offset, image in zip(encoded, images, strict=True) if image is not None
        }
        if len(decoded) < len(encoded):
            logger.debug("%d of %d JPEGs taken by the CPU definition", len(encoded) - len(decoded), len(encoded))
        return decoded

    def _stream(self):
        if self.device.type != "cuda":
            return None
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = self._torch.cuda.Stream(self.device)
        return stream

    def _as_input(self, pixels):
        """uint8 [3, S, S] → one item of the artifact's input, as ``core.preprocessing.normalized`` computes it."""
        if self.facts.input_format == "uint8":
            return pixels.permute(1, 2, 0)
        return (pixels.float() / 255.0 - self._mean) / self._std

    def _one(self, data):
        try:
            return self._decode_jpeg(data, device=self.device, mode=self._rgb)
        except self._torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError:
            return None

    def _resized(self, image):
        size = self.facts.image_size
        if tuple(image.shape[1:]) == (size, size):
            return image
        scaled = self._functional.resize(
            image.float().unsqueeze(0), [size, size], interpolation=self._interpolation, antialias=True
        )
        return scaled.squeeze(0).round_().clamp_(0, 255).to(self._torch.uint8)


def decoder_parity(
    sources: Sequence[Path | bytes], facts: ServingFacts, device="cpu", *, decoder: TorchDecoder | None = None
) -> DecoderParity:
    """torchvision's pixels of the JPEGs ``sources`` (files or bytes) on ``device`` against the CPU definition's."""
    decoder = decoder or TorchDecoder(facts, device)
    decoded = decoder.decoded(list(sources))
    levels = []
    for offset, pixels in decoded.items():
        reference = resized(sources[offset], facts.image_size, facts.preprocessing).astype(np.int16)
        levels.append(np.abs(pixels.permute(1, 2, 0).cpu().numpy().astype(np.int16) - reference))
    if not levels:
        return DecoderParity(len(sources), len(sources), float("inf"), 255)
    stacked = np.stack(levels)
    return DecoderParity(len(sources), len(sources) - len(decoded), float(stacked.mean()), int(stacked.max()))


def wants_torchvision(choice: str, backend: str, device: str) -> bool:
    """Whether the decoder ``choice`` (:data:`DECODERS`) means torchvision for ``backend`` on ``device``:
    ``auto`` does for the torch and TensorRT backends on CUDA where torchvision is installed."""
    if choice != "auto":
        return choice == "torchvision"
    on_cuda = backend in ("torch", "tensorrt") and device.startswith("cuda")
    return on_cuda and importlib.util.find_spec("torchvision") is not None


def gated_decoder(facts: ServingFacts, device: str, *, strict: bool) -> TorchDecoder | None:
    """torchvision's decoder on ``device`` once it passed its gate (:meth:`TorchDecoder.check`); unless
    ``strict``, a decoder that fails it gives way to Pillow (None), with a warning.

    Raises:
        ConfigError: ``strict`` and the decoder fails its gate.
        MissingDependencyError: torch or torchvision cannot be imported.
    """
    decoder = TorchDecoder(facts, device)
    try:
        logger.debug("torchvision decoding on %s: %s", device, decoder.check().line())
    except ConfigError as exc:
        if strict:
            raise
        logger.warning("%s; decoding with Pillow", exc)
        return None
    return decoder


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


def _probe_jpegs() -> list[bytes]:
    """Two photo-like JPEGs (smooth colour fields, noise, 4:2:0 chroma) of odd sizes, made here."""
    rng = np.random.default_rng(0)
    probes = []
    for width, height in ((161, 121), (97, 203)):
        coarse = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
        field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = np.clip(field + rng.integers(-20, 21, field.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="JPEG", quality=90)
        probes.append(buffer.getvalue())
    return probes
