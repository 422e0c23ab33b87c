"""Images users hand us: every mode decodes to what it shows, and what cannot be used is a typed error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core import preprocessing
from core.errors import InputFileError
from core.preprocessing import load_rgb


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("dtype", "mode"), [(np.uint16, "I;16"), (">u2", "I;16B"), (np.int32, "I")])
def test_16_bit_images_are_scaled_not_clipped_to_white(dtype, mode: str) -> None:
    ramp = (np.arange(256, dtype=np.int32).reshape(16, 16) * 257).astype(dtype)  # 0..65535
    image = Image.fromarray(ramp)
    assert image.mode == mode
    sources = [image, _png(image)] if mode != "I" else [image]  # a 16-bit grayscale PNG opens as I;16
    for source in sources:
        rgb = np.asarray(load_rgb(source))
        assert rgb.shape == (16, 16, 3)
        np.testing.assert_array_equal(rgb[..., 0], np.arange(256).reshape(16, 16))  # was 255 everywhere


def test_an_8_bit_image_in_32_bit_mode_i_keeps_its_values() -> None:
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for image in (Image.fromarray(ramp).convert("I"), Image.fromarray(ramp.astype(np.int32))):
        assert image.mode == "I"
        np.testing.assert_array_equal(np.asarray(load_rgb(image))[..., 0], ramp)


def test_images_without_pixels_closed_or_floating_point_are_refused() -> None:
    with pytest.raises(InputFileError, match=r"has no pixels \(0×0\)"):
        load_rgb(Image.new("RGB", (0, 0)))
    closed = Image.new("RGB", (4, 4))
    closed.close()
    with pytest.raises(InputFileError, match="cannot be read \\(closed"):
        load_rgb(closed)
    with pytest.raises(InputFileError, match="floating-point pixels"):
        load_rgb(Image.new("F", (4, 4)))


def test_an_image_above_the_pixel_bound_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = _png(Image.new("L", (300, 200)))
    monkeypatch.setattr(preprocessing, "MAX_PIXELS", 50_000)
    with pytest.raises(InputFileError, match=r"image bytes is 300×200 pixels; images above .* refused before decoding"):
        load_rgb(encoded)
    with Image.open(io.BytesIO(encoded)) as lazy, pytest.raises(InputFileError, match="the PIL image is 300×200"):
        load_rgb(lazy)  # opened, not yet decoded: refused before load()
    monkeypatch.setattr(preprocessing, "MAX_PIXELS", 60_000)
    assert load_rgb(encoded).size == (300, 200)
