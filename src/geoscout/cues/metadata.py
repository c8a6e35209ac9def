"""Metadata cues from a photo's EXIF: the GPS position (answers directly) and the UTC offset.

``OffsetTimeOriginal`` (EXIF 2.31, e.g. ``+02:00``) says the camera's clock ran at UTC+2:
local solar time suggests longitude about 15 degrees per hour, within a tolerance for wide
time zones (China spans 60 degrees on UTC+8) and daylight saving time (one hour less).
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any

from .text import Evidence

__all__ = ["exif_cues", "offset_likelihood"]

_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_OFFSET_TAGS = (0x9011, 0x9010)  # OffsetTimeOriginal, OffsetTime
#: longitudes within this many degrees of the offset's meridian (or of the meridian an hour earlier: DST) fit fully
OFFSET_TOLERANCE_DEG = 22.5
OFFSET_FLOOR = 0.02


def _exif(src: Any) -> Any:
    """The EXIF of a path, bytes or PIL image (header read only), or None."""
    from PIL import Image, UnidentifiedImageError

    from .._io import open_user_file
    from ..imageio import MAX_FILE_BYTES, open_image

    try:
        if isinstance(src, Image.Image):
            return src.getexif()
        if isinstance(src, (bytes, bytearray, memoryview)):
            with open_image(io.BytesIO(bytes(src))) as im:
                return im.getexif()
        if isinstance(src, (str, os.PathLike)):
            # the shared reader: regular files only (a pipe must not hang), within the size limit
            with open_user_file(src, max_bytes=MAX_FILE_BYTES) as fh, open_image(fh) as im:
                return im.getexif()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):  # InvalidInput is a ValueError
        return None
    return None


def _deg(value: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    x = d + m / 60.0 + s / 3600.0
    if str(ref).strip().upper() in ("S", "W"):
        x = -x
    return x if math.isfinite(x) else None


def _gps(exif: Any) -> tuple[float, float, float] | None:
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None
    lat = _deg(gps.get(2), gps.get(1, "N"))
    lon = _deg(gps.get(4), gps.get(3, "E"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None
    try:
        err = float(gps.get(31, 0.05 * 1000)) / 1000.0  # GPSHPositioningError, metres
    except (TypeError, ValueError, ZeroDivisionError):
        err = 0.05
    return lat, lon, max(err, 0.01)


def _offset_hours(exif: Any) -> tuple[str, float] | None:
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:
        return None
    for tag in _OFFSET_TAGS:
        v = sub.get(tag) if sub else None
        if isinstance(v, bytes):
            v = v.decode("ascii", "ignore")
        m = re.fullmatch(r"\s*([+-])(\d{2}):(\d{2})\s*\x00*", str(v or ""))
        if m:
            h = int(m.group(2)) + int(m.group(3)) / 60.0
            if h <= 14:
                return m.group(0).strip("\x00 "), h if m.group(1) == "+" else -h
    return None


def offset_likelihood(hours: float, lon: Any) -> Any:
    """Likelihood of longitudes (degrees, array) given a UTC offset in hours.

    1 within :data:`OFFSET_TOLERANCE_DEG` of the meridians ``15 * hours`` and ``15 * (hours - 1)``
    (daylight saving time), then falling off as a Gaussian with a 15-degree scale, floored.
    """
    import numpy as np

    lon = np.asarray(lon, dtype=np.float64)

    def gap(center: float) -> Any:
        return np.abs((lon - center + 180.0) % 360.0 - 180.0)

    d = np.minimum(gap(15.0 * hours), gap(15.0 * (hours - 1.0)))
    excess = np.maximum(d - OFFSET_TOLERANCE_DEG, 0.0)
    return OFFSET_FLOOR + (1.0 - OFFSET_FLOOR) * np.exp(-0.5 * (excess / 15.0) ** 2)


def exif_cues(src: Any) -> list[Evidence]:
    """``gps`` and ``utc_offset`` evidence from the EXIF of ``src`` (a path, bytes or PIL image)."""
    exif = _exif(src)
    if not exif:
        return []
    out = []
    gps = _gps(exif)
    if gps is not None:
        lat, lon, err = gps
        out.append(
            Evidence(
                "gps", f"{lat:.5f}, {lon:.5f}", "EXIF GPS position (answers directly)", points=[(lat, lon, err, 1.0)]
            )
        )
    off = _offset_hours(exif)
    if off is not None:
        text, hours = off
        out.append(
            Evidence(
                "utc_offset", text, f"camera clock at UTC{text}: longitude near {15 * hours:+.0f}°", utc_hours=hours
            )
        )
    return out
