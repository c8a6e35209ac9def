"""load_image on real photos and on the broken inputs users actually hand us."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from geoscout.errors import InvalidInput
from geoscout.imageio import load_image


@pytest.fixture(scope="module")
def photo(shared_data):
    return sorted((shared_data("im2gps") / "images").glob("*.jpg"))[0]


def test_real_photo_decodes_rgb(photo):
    im = load_image(photo)
    assert im.mode == "RGB" and im.size == Image.open(photo).size


@pytest.mark.parametrize("cut", [0, 100, 3])
def test_empty_truncated_and_garbage_are_clear_errors(photo, tmp_path, cut):
    data = photo.read_bytes()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"" if cut == 0 else (data[:cut] if cut == 100 else b"not a picture at all"))
    with pytest.raises(InvalidInput, match="bad.jpg: (empty|truncated|not an image|cannot decode)"):
        load_image(bad)


def test_missing_file_and_pixel_limit(photo, tmp_path):
    with pytest.raises(InvalidInput, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InvalidInput, match="exceeds the limit"):
        load_image(photo, max_pixels=10_000)


def test_exotic_modes_become_rgb(photo):
    base = Image.open(photo).convert("RGB").resize((64, 48))
    samples = {
        "CMYK": base.convert("CMYK"),
        "L": base.convert("L"),
        "P": base.convert("P"),
        "RGBA": base.convert("RGBA"),
        "I;16": Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257),
    }
    for mode, im in samples.items():
        buf = io.BytesIO()
        im.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
        out = load_image(buf.getvalue())
        assert out.mode == "RGB" and out.size == (64, 48), mode
    # 16-bit grey keeps its brightness after scaling down to 8 bits
    grey16 = load_image(_png(samples["I;16"]))
    assert abs(np.asarray(grey16)[..., 0].astype(int) - np.asarray(base.convert("L")).astype(int)).max() <= 1


def test_exif_orientation_is_applied(photo):
    im = Image.open(photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    out = load_image(buf.getvalue())
    assert out.size == (im.size[1], im.size[0])


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
