"""The manifest schema: one row per image, stored as Parquet (``manifest.parquet``).

Columns (see docs/CONTRACTS.md): ``image_id`` (first 16 hex chars of the file's SHA-256),
``path`` (relative to the dataset root, or absolute), ``lat``/``lon`` (WGS84 degrees),
``heading`` (degrees clockwise from north in [0, 360), NaN if unknown), ``location_id``
(views of one panorama share it), ``source``, ``license``, ``attribution``,
``captured_at`` (ISO 8601 or None); any further columns are kept as they are.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from geoscout.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CORE_COLUMNS",
    "FLOAT_COLUMNS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "REQUIRED_COLUMNS",
    "SPLIT_NAMES",
    "STRING_COLUMNS",
    "normalize_frame",
    "parse_timestamp",
    "validate_frame",
]

MANIFEST_NAME = "manifest.parquet"
FORMAT_VERSION = 1
REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "path", "lat", "lon")
CORE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "path",
    "lat",
    "lon",
    "heading",
    "location_id",
    "source",
    "license",
    "attribution",
    "captured_at",
)
#: columns stored as (nullable) strings when present
STRING_COLUMNS: tuple[str, ...] = (
    "image_id",
    "path",
    "location_id",
    "source",
    "license",
    "attribution",
    "captured_at",
    "country",
    "country_name",
    "admin1",
    "city",
    "climate",
    "split",
)
#: columns stored as float64 when present
FLOAT_COLUMNS: tuple[str, ...] = ("lat", "lon", "heading", "altitude_m", "elevation_m", "pop_density")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def parse_timestamp(value: Any) -> str | None:
    """Return ``value`` as an ISO 8601 string, or None when empty; raise ValueError when unparseable.

    Accepts ISO 8601 and the EXIF form ``YYYY:MM:DD HH:MM:SS``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat") and not isinstance(value, str):  # pandas Timestamp, date
        return value.isoformat()
    s = str(value).strip().rstrip("\x00").strip()
    if not s or s.lower() in {"nan", "none", "nat"}:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y:%m:%d %H:%M:%S.%f", "%Y:%m:%d"):
        try:
            return datetime.strptime(s, fmt).isoformat()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s).isoformat()
    except ValueError:
        raise ValueError(f"{s!r} is not an ISO 8601 date/time (e.g. 2021-06-30T14:05:00)") from None


def _string_series(col: pd.Series) -> pd.Series:
    import pandas as pd

    out = col.astype(object).where(col.notna(), None)
    out = out.map(lambda v: v if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
    return pd.Series(out, index=col.index, dtype=object)


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``frame`` with schema dtypes: core columns first, defaults filled.

    ``heading`` is wrapped into [0, 360); a missing ``location_id`` defaults to ``image_id``;
    ``source``/``license``/``attribution`` default to ``""``; ``captured_at`` to None.
    Raises :class:`InvalidInput` when a required column is missing or a value cannot be coerced.
    """
    import pandas as pd

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"manifest: missing required column(s) {missing}; got columns {list(frame.columns)}. "
            f"A manifest needs {list(REQUIRED_COLUMNS)} (import a CSV with geoscout.data.import_csv to compute image_id)."
        )
    df = frame.reset_index(drop=True).copy()
    for c in FLOAT_COLUMNS:
        if c in df.columns:
            try:
                df[c] = pd.to_numeric(df[c], errors="raise").astype("float64")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"manifest column {c!r}: values must be numbers ({exc})") from None
    if "heading" not in df.columns:
        df["heading"] = np.nan
    df["heading"] = np.mod(df["heading"].to_numpy(dtype=np.float64), 360.0)
    if "location_id" not in df.columns:
        df["location_id"] = df["image_id"]
    else:
        df["location_id"] = df["location_id"].where(
            df["location_id"].notna() & (df["location_id"].astype(str) != ""), df["image_id"]
        )
    for c in ("source", "license", "attribution"):
        if c not in df.columns:
            df[c] = ""
        df[c] = df[c].fillna("")
    if "captured_at" not in df.columns:
        df["captured_at"] = None
    for c in STRING_COLUMNS:
        if c in df.columns:
            df[c] = _string_series(df[c])
    df["path"] = _string_series(df["path"].map(lambda p: p if p is None else p.replace("\\", "/")))
    rest = [c for c in df.columns if c not in CORE_COLUMNS]
    return df[list(CORE_COLUMNS) + rest]


def validate_frame(df: pd.DataFrame, *, what: str = "manifest") -> None:
    """Raise :class:`InvalidInput` unless ``df`` satisfies the manifest schema (as written by :func:`normalize_frame`)."""
    from geoscout.geo import validate_latlon

    missing = [c for c in CORE_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInput(f"{what}: missing column(s) {missing}; got {list(df.columns)}")
    for c in ("lat", "lon", "heading"):
        if df[c].dtype != np.float64:
            raise InvalidInput(f"{what}: column {c!r} must be float64 degrees, got {df[c].dtype}")
    if len(df):
        validate_latlon(df["lat"].to_numpy(), df["lon"].to_numpy(), what=what)
    ids = df["image_id"]
    if ids.isna().any() or (ids.astype(str).str.len() == 0).any():
        raise InvalidInput(f"{what}: every row needs an image_id (first 16 hex chars of the file's SHA-256)")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InvalidInput(
            f"{what}: image_id {dup.iloc[0]!r} occurs more than once ({len(dup)} duplicate rows); "
            "image ids must be unique (re-import to drop duplicate images)"
        )
    if df["path"].isna().any():
        raise InvalidInput(f"{what}: every row needs a path")
    if "split" in df.columns:
        bad = set(df["split"].dropna().unique()) - set(SPLIT_NAMES)
        if bad:
            raise InvalidInput(f"{what}: column 'split' holds {sorted(bad)}; expected one of {list(SPLIT_NAMES)}")
