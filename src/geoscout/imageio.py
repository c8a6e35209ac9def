"""Decode any photo a user may hand us into an RGB Pillow image, or say clearly why not.

Handles EXIF orientation, CMYK, 16-bit and 32-bit grey, palette and alpha (composited
on white), grayscale, multi-frame files (first frame), and bounds the pixel count
against decompression bombs. Every failure is an :class:`~geoscout.errors.UnreadableInput`
whose ``failure`` (:class:`~geoscout.errors.PhotoFailure`) names the input, states the reason
and its kind; its message is ``"<name>: <reason>"``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._io import IMAGE_SUFFIXES, open_user_file
from .errors import FailureKind, InvalidInput, UnreadableInput

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "describe_source",
    "load_image",
    "open_image",
    "probe_image",
]

DEFAULT_MAX_PIXELS = 40_000_000  # ~ a 7700 x 5200 photo; raise it explicitly for panoramas you trust
MAX_FILE_BYTES = 100 * 1024 * 1024

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | Image.Image


def describe_source(src: object) -> str:
    """A short human name for an image source, for messages."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return f"<PIL image {src.size[0]}x{src.size[1]} {src.mode}>"
    return str(getattr(src, "name", None) or "<stream>")


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        else:  # 32-bit int or float: stretch the finite range to 0..255
            finite = a[np.isfinite(a)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            a = (a - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(
    src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """Decode ``src`` (a path, bytes, a binary stream or a PIL image) into a fully loaded RGB image.

    EXIF orientation is applied, so the result is upright. Raises :class:`UnreadableInput`
    (``"<name>: <reason>"``, with the failure's kind) for a missing, empty, truncated, non-image or
    over-large input.
    """
    name = describe_source(src)
    owned: BinaryIO | None = None
    try:
        with _reasons(name, "cannot decode image"):
            if isinstance(src, Image.Image):
                im = src
            else:
                im, owned = _open(src, name, max_bytes)
            _check_size(name, *im.size, max_pixels)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            try:
                im.load()
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                reason = (
                    "truncated or corrupt image data" if "truncat" in str(exc).lower() else f"cannot decode ({exc})"
                )
                raise _failed(name, f"{reason}; re-download or remove it", "decode_error") from None
            with contextlib.suppress(Exception):  # a broken EXIF block must not lose the picture itself
                im = ImageOps.exif_transpose(im) or im
            out = _to_rgb(im)
            out.load()
            return out if out is not src else out.copy()
    finally:
        _close(owned)


def probe_image(
    data: bytes, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> tuple[int, int]:
    """``(width, height)`` of encoded image ``data`` from its header alone, without decoding the pixels.

    Raises :class:`UnreadableInput` (``"<name>: <reason>"``) for an empty, over-large, non-image or
    over-``max_pixels`` input, so a server can refuse a decompression bomb before any decoding.
    """
    label = name or describe_source(data)
    owned: BinaryIO | None = None
    try:
        with _reasons(label, "cannot read the image header"):
            im, owned = _open(data, label, max_bytes)
            w, h = im.size
    finally:
        _close(owned)
    _check_size(label, w, h, max_pixels)
    return w, h


_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")


@functools.cache
def _heif_support() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow once, when the optional extra is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def open_image(stream: BinaryIO) -> Image.Image:
    """``Image.open`` (header only) with HEIC support when available and without Pillow's
    ``DecompressionBombWarning``: our own ``max_pixels`` check replaces it, with a clear error."""
    _heif_support()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(stream)


def _heif_hint(stream: BinaryIO) -> str:
    """The install hint for a HEIC/HEIF file Pillow could not open (empty for other files)."""
    try:
        pos = stream.tell()
        stream.seek(0)
        head = stream.read(16)
        stream.seek(pos)
    except (OSError, ValueError):
        return ""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS and not _heif_support():
        return "; it is a HEIC/HEIF photo: install the optional extra with pip install 'geoscout[heic]'"
    return ""


def _open(
    src: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO, name: str, max_bytes: int
) -> tuple[Image.Image, BinaryIO | None]:
    """Check a path, bytes or stream source and open it lazily (the header only).

    Returns the image and the file object opened here (for the caller to close; ``None`` for a
    caller's own stream). Raises :class:`UnreadableInput` for a missing, empty, over-large or non-image source.
    """
    owned: BinaryIO | None = None
    if isinstance(src, (str, os.PathLike)):
        owned = stream = open_user_file(src, max_bytes=max_bytes)  # regular files only: no FIFO, no device
        if os.fstat(stream.fileno()).st_size == 0:
            _close(owned)
            raise _failed(name, "empty file (0 bytes); re-download or remove it", "empty")
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise _failed(name, "empty upload (0 bytes)", "empty")
        if len(src) > max_bytes:
            raise _failed(name, f"{len(src)} bytes, over the {max_bytes}-byte limit", "too_large")
        owned = stream = io.BytesIO(bytes(src))
    else:
        stream = src
    try:
        try:
            return open_image(stream), owned
        except UnidentifiedImageError:
            raise _failed(
                name,
                f"not an image Pillow can read (unknown format or not a picture){_heif_hint(stream)}",
                "not_an_image",
            ) from None
    except BaseException:
        _close(owned)
        raise


@contextlib.contextmanager
def _reasons(name: str, failure: str) -> Iterator[None]:
    """Turn Pillow's errors inside the block into :class:`UnreadableInput` ``"<name>: <failure> (<detail>)"``."""
    try:
        yield
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:
        raise _failed(name, str(exc), "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _failed(name, f"{failure} ({exc})", "decode_error") from None


def _failed(name: str, reason: str, kind: FailureKind) -> UnreadableInput:
    return UnreadableInput.of(name, reason, kind)


def _close(stream: BinaryIO | None) -> None:
    if stream is not None:
        with contextlib.suppress(Exception):
            stream.close()


def _check_size(name: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise _failed(name, f"image has no pixels ({w}x{h})", "decode_error")
    if w * h > max_pixels:
        raise _failed(
            name,
            f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            "(protection against decompression bombs); downscale it or raise max_pixels if you trust the file",
            "too_large",
        )
