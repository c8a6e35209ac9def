"""Importers: a CSV of ``path,lat,lon`` (+ extra columns) or a folder of photos with EXIF GPS.

Every input row is either imported or reported as a :class:`Problem` naming the file (and CSV line)
and the reason: missing file, unreadable image, duplicate image (by content), bad coordinates,
bad heading/date, no GPS in EXIF. A bad row never aborts the import.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import shutil
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoscout._io import IMAGE_SUFFIXES, atomic_path, check_user_file, read_user_file
from geoscout.errors import InvalidInput, PhotoFailure, UnreadableInput, failure_of

from .dataset import Dataset
from .schema import MANIFEST_NAME, parse_timestamp

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImportReport",
    "Problem",
    "import_csv",
    "import_exif_folder",
    "parse_column_mapping",
    "read_exif_location",
]

IMAGE_EXTENSIONS = IMAGE_SUFFIXES  # one list for every folder walk (geoscout.imageio)
PROBLEMS_NAME = "problems.csv"
_ALIASES: dict[str, tuple[str, ...]] = {
    "path": ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "img_path"),
    "lat": ("lat", "latitude", "gps_lat", "gps_latitude", "y"),
    "lon": ("lon", "lng", "long", "longitude", "gps_lon", "gps_lng", "gps_longitude", "x"),
}
_FORMAT_EXT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "TIFF": ".tif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "GIF": ".gif",
    "MPO": ".jpg",
    "HEIF": ".heic",
}


@dataclass(frozen=True)
class Problem:
    """One input that was not imported: its ``path``, the ``reason``, the CSV ``row`` (file line, header = 1)
    when it came from a CSV, and a short ``kind`` (missing_file, unreadable_image, duplicate,
    bad_coordinates, bad_value, no_gps, not_image, not_a_file, bad_row) for summaries. ``failure`` is the
    :class:`~geoscout.errors.PhotoFailure` made where the image could not be read (None for a problem with
    the row itself: coordinates, values, duplicates)."""

    path: str
    reason: str
    row: int | None = None
    kind: str = "invalid"
    failure: PhotoFailure | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"row {self.row} " if self.row is not None else ""
        return f"{where}{self.path}: {self.reason}"


@dataclass
class ImportReport:
    """Result of an import: the ``dataset`` of good rows and the ``problems`` of the others."""

    dataset: Dataset
    problems: list[Problem] = field(default_factory=list)
    total: int = 0  #: inputs considered (CSV rows or files)

    @property
    def n_imported(self) -> int:
        """Number of images imported."""
        return len(self.dataset)

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind, most frequent first."""
        return dict(Counter(p.kind for p in self.problems).most_common())

    def problems_frame(self) -> pd.DataFrame:
        """The problems as a DataFrame with columns ``row, path, kind, reason, failure_kind`` (the
        :class:`~geoscout.errors.PhotoFailure` kind of an unreadable image, empty otherwise)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "row": p.row,
                    "path": p.path,
                    "kind": p.kind,
                    "reason": p.reason,
                    "failure_kind": p.failure.kind if p.failure else None,
                }
                for p in self.problems
            ],
            columns=["row", "path", "kind", "reason", "failure_kind"],
        ).astype({"row": "Int64"})

    def write_problems(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`problems_frame` as CSV atomically."""
        with atomic_path(path) as tmp:
            self.problems_frame().to_csv(tmp, index=False)
        return Path(path)


# ---------------------------------------------------------------------------------------------
# per-file inspection (hash, decode check, EXIF), cached per (path, size, mtime)


@dataclass(frozen=True)
class _FileInfo:
    sha256: str = ""  # empty when the file could not be read
    width: int = 0
    height: int = 0
    ext: str = ""
    exif: dict[str, Any] | None = None
    exif_error: str | None = None
    error: str | None = None
    kind: str = ""
    failure: PhotoFailure | None = None  # made where the file failed (error says it in the import's words)


_CACHE: dict[tuple[str, int, int, bool], _FileInfo] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 500_000


def _inspect(path: Path, *, want_exif: bool, max_pixels: int | None) -> _FileInfo:
    from geoscout.imageio import MAX_FILE_BYTES

    if not os.path.lexists(path):
        failure = PhotoFailure("missing", "file not found", str(path))
        return _FileInfo(error=f"file not found: {path}", kind="missing_file", failure=failure)
    try:  # a FIFO, a device, a folder, a symlink loop or a huge file is named before a byte is read
        st = check_user_file(path, max_bytes=MAX_FILE_BYTES)
    except UnreadableInput as exc:
        kind = "missing_file" if exc.failure.kind == "missing" else "not_a_file"
        return _FileInfo(error=str(exc), kind=kind, failure=exc.failure)
    key = (str(path), st.st_size, st.st_mtime_ns, want_exif)
    hit = _CACHE.get(key)
    if hit is not None and max_pixels is None:
        return hit
    try:
        info = _inspect_uncached(path, want_exif=want_exif, max_pixels=max_pixels)
    except Exception as exc:  # never let one odd file end the whole import
        return _FileInfo(
            error=f"unreadable image: unexpected {type(exc).__name__}: {exc}",
            kind="unreadable_image",
            failure=failure_of(exc, source=str(path)),
        )
    if max_pixels is None:
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.clear()
            _CACHE[key] = info
    return info


def _inspect_uncached(path: Path, *, want_exif: bool, max_pixels: int | None) -> _FileInfo:
    """Hash the file and prove it decodes completely (via :func:`geoscout.imageio.load_image`).

    JPEGs are decoded at 1/8 scale (``draft``): every byte of the entropy-coded data is still
    read, so truncation and corruption are caught, at a fraction of the cost. ``width``/``height``
    are the full upright size (EXIF orientation applied).
    """

    from geoscout.imageio import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, load_image, open_image

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    try:
        data = read_user_file(path, max_bytes=MAX_FILE_BYTES)
    except InvalidInput as exc:
        return _FileInfo(error=str(exc), kind="not_a_file", failure=failure_of(exc, source=str(path)))
    sha = hashlib.sha256(data).hexdigest()

    def bad(failure: PhotoFailure) -> _FileInfo:  # the reason alone: the problem names the path
        failure = PhotoFailure(failure.kind, failure.reason, str(path))
        return _FileInfo(
            sha256=sha, error=f"unreadable image: {failure.reason}", kind="unreadable_image", failure=failure
        )

    if not data:
        return bad(PhotoFailure("empty", "empty file (0 bytes); re-download or remove it"))
    try:
        raw = open_image(io.BytesIO(data))
    except Exception:  # let imageio word the reason (not an image, unknown format, ...)
        try:
            load_image(data, max_pixels=limit)
        except UnreadableInput as exc:
            return bad(exc.failure)
        return bad(PhotoFailure("not_an_image", "Pillow cannot open this file"))
    with raw:
        width, height = raw.size
        fmt = raw.format
        exif: dict[str, Any] | None = None
        exif_error = None
        orientation = None
        try:
            orientation = raw.getexif().get(0x0112)
            if want_exif:
                exif = read_exif_location(raw)
        except InvalidInput as exc:
            exif_error = str(exc)
        except Exception as exc:  # a decodable image with a broken EXIF block
            exif_error = f"unreadable EXIF ({type(exc).__name__}: {exc})"
        if width * height > limit:
            return bad(
                PhotoFailure(
                    "too_large",
                    f"{width}x{height} = {width * height} pixels exceeds the limit of {limit} "
                    "(protection against decompression bombs)",
                )
            )
        if fmt in ("JPEG", "MPO"):
            raw.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        try:
            load_image(raw, max_pixels=limit)
        except UnreadableInput as exc:
            return bad(exc.failure)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        ext = _FORMAT_EXT.get(fmt or "", ext or ".img")
    return _FileInfo(sha256=sha, width=width, height=height, ext=ext, exif=exif, exif_error=exif_error)


def _ratio(v: Any) -> float:
    """A TIFF rational (IFDRational, (num, den) tuple or number) as float; NaN for x/0."""
    if isinstance(v, tuple) and len(v) == 2:
        num, den = v
        return float(num) / float(den) if den else math.nan
    try:
        return float(v)
    except ZeroDivisionError:
        return math.nan


def _ref(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("ascii", "ignore")
    return str(v or "").strip("\x00 ").upper()


def _dms(v: Any) -> float:
    if isinstance(v, (tuple, list)):
        parts = [_ratio(x) for x in v]
        while len(parts) < 3:
            parts.append(0.0)
        d, m, s = parts[:3]
        return d + m / 60.0 + s / 3600.0
    return _ratio(v)


def read_exif_location(image: Any) -> dict[str, Any] | None:
    """Read GPS position and capture time from a PIL image's EXIF.

    Returns None when the image has no GPS latitude/longitude, else a dict with ``lat``, ``lon``
    (degrees, S/W negative), ``altitude_m`` (metres, negative below sea level, NaN if absent),
    ``heading`` (GPSImgDirection, degrees, NaN if absent), ``captured_at`` (ISO 8601 of
    DateTimeOriginal [+ OffsetTimeOriginal], else DateTime, else None), ``attribution`` (Artist)
    and ``license`` (Copyright). Raises :class:`InvalidInput` for malformed GPS values.
    """
    exif = image.getexif()
    gps = exif.get_ifd(0x8825)
    sub = exif.get_ifd(0x8769)
    if not gps or 2 not in gps or 4 not in gps:
        return None
    lat = _dms(gps[2])
    lon = _dms(gps[4])
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidInput("EXIF GPS latitude/longitude has a zero denominator or is not a number")
    lat_ref, lon_ref = _ref(gps.get(1)), _ref(gps.get(3))
    if lat_ref not in ("", "N", "S") or lon_ref not in ("", "E", "W"):
        raise InvalidInput(f"EXIF GPS reference {lat_ref!r}/{lon_ref!r} is not N/S and E/W")
    if lat_ref == "S":
        lat = -lat
    if lon_ref == "W":
        lon = -lon
    alt = math.nan
    if 6 in gps:
        alt = _ratio(gps[6])
        alt_ref = gps.get(5)
        if isinstance(alt_ref, bytes):
            alt_ref = alt_ref[0] if alt_ref else 0
        if alt_ref == 1 and math.isfinite(alt):
            alt = -alt
    heading = _ratio(gps[17]) if 17 in gps else math.nan
    when = sub.get(0x9003) or exif.get(0x0132)
    captured = None
    if when:
        try:
            captured = parse_timestamp(when)
        except ValueError:
            captured = None
        offset = sub.get(0x9011)
        if captured and sub.get(0x9003) and isinstance(offset, str) and len(offset.strip("\x00 ")) == 6:
            with contextlib.suppress(ValueError):
                captured = parse_timestamp(captured + offset.strip("\x00 "))

    def text(tag: int) -> str:
        v = exif.get(tag)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "ignore")
        return str(v or "").strip("\x00 ")

    return {
        "lat": lat,
        "lon": lon,
        "altitude_m": alt,
        "heading": heading,
        "captured_at": captured,
        "attribution": text(0x013B),
        "license": text(0x8298),
    }


# ---------------------------------------------------------------------------------------------


def parse_column_mapping(columns: str | dict[str, str] | None) -> dict[str, str]:
    """``"lat=latitude,lon=lng"`` or ``{"lat": "latitude"}`` -> ``{schema_name: csv_column}``."""
    if columns is None or columns == "":
        return {}
    if isinstance(columns, dict):
        return {str(k).strip(): str(v).strip() for k, v in columns.items()}
    out: dict[str, str] = {}
    for part in str(columns).split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InvalidInput(
                f"column mapping {part!r}: expected NAME=CSV_COLUMN, e.g. lat=latitude,lon=lng,path=file"
            )
        k, v = part.split("=", 1)
        if not k.strip() or not v.strip():
            raise InvalidInput(f"column mapping {part!r}: both sides must be non-empty (NAME=CSV_COLUMN)")
        out[k.strip()] = v.strip()
    return out


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _resolve_out(out: str | os.PathLike[str] | None) -> Path | None:
    if out is None:
        return None
    o = Path(out).expanduser()
    if o.exists() and not o.is_dir():
        raise InvalidInput(f"output {o}: exists and is not a folder; give a folder for the dataset")
    return o.resolve()


def _stored_path(src: Path, root: Path) -> str:
    try:
        return src.relative_to(root).as_posix()
    except ValueError:
        return src.as_posix()


def _copy_into(src: Path, out: Path, image_id: str, ext: str) -> str:
    rel = f"images/{image_id}{ext}"
    dest = out / rel
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return rel  # already copied by an earlier (possibly interrupted) run: content-addressed
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return rel


def _finish(
    rows: list[dict[str, Any]],
    srcs: list[Path],
    exts: list[str],
    lines: list[int | None],
    problems: list[Problem],
    total: int,
    *,
    root: Path,
    out: Path | None,
    copy: bool,
    workers: int,
    name: str,
) -> ImportReport:
    import pandas as pd

    if copy and out is None:
        raise InvalidInput("copy=True needs an output folder (out=...) to copy the images into")
    if copy and rows and out is not None:

        def safe_copy(args: tuple[Path, Path, str, str]) -> str | OSError:
            try:
                return _copy_into(*args)
            except OSError as exc:
                return exc

        with ThreadPoolExecutor(workers) as ex:
            rels = list(ex.map(safe_copy, [(s, out, r["image_id"], e) for r, s, e in zip(rows, srcs, exts)]))
        kept = []
        for r, s, rel, line in zip(rows, srcs, rels, lines):
            if isinstance(rel, OSError):
                problems.append(
                    Problem(_stored_path(s, root), f"could not copy into {out / 'images'}: {rel}", line, "copy_failed")
                )
            else:
                r["path"] = rel
                r["original_path"] = _stored_path(s, root)  # the copy is named by content: keep where it came from
                kept.append(r)
        rows = kept
    else:
        base = out if out is not None else root
        for r, s in zip(rows, srcs):
            r["path"] = _stored_path(s, base)
    frame = pd.DataFrame(rows)
    if not len(frame):
        frame = pd.DataFrame(columns=["image_id", "path", "lat", "lon"])
    problems.sort(key=lambda p: (p.row if p.row is not None else -1, p.path))
    if out is not None and len(frame):
        ds = Dataset.create(out, frame, overwrite=True)
    else:
        ds = Dataset(out if out is not None else root, frame, name=name)
    if out is not None:
        report = ImportReport(ds, problems, total)
        pfile = out / PROBLEMS_NAME
        if problems:
            report.write_problems(pfile)
        elif pfile.exists():
            pfile.unlink()  # stale report of an earlier run
        return report
    return ImportReport(ds, problems, total)


@dataclass
class CsvRows:
    """A CSV read row by row: the good rows as a string DataFrame, the file line of each, and the bad rows."""

    frame: pd.DataFrame
    lines: list[int]  #: file line (header = 1) where each row of ``frame`` starts
    bad: list[tuple[int, str]]  #: (file line, reason) of rows that could not be read


def read_csv_rows(csv: Path, *, strict: bool = False) -> CsvRows:
    """Read a CSV (``.tsv``: tab-separated) tolerantly: a row with bytes that are not UTF-8, the wrong
    number of fields or an unterminated quote is reported with its line number and the rest is read.
    ``strict=True`` refuses the file at the first bad row instead. Empty fields become missing values;
    other text, including ``NaN``, is kept as written."""
    import csv as csvmod

    import pandas as pd

    data = read_user_file(csv, max_bytes=MAX_CSV_BYTES)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="surrogateescape")
    physical = [ln + "\n" for ln in text.split("\n")]
    if physical[-1] == "\n":
        physical.pop()
    sep = "\t" if csv.suffix.lower() == ".tsv" else ","
    src = _LineCursor(physical)
    bad: list[tuple[int, str]] = []
    records: list[list[Any]] = []
    lines: list[int] = []
    header: list[str] | None = None
    reader = csvmod.reader(src, delimiter=sep, skipinitialspace=True, strict=True)
    while src.pos < len(physical):
        begin = src.pos
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csvmod.Error:  # an unterminated quote runs to the end of the file
            fields = None
        start, used = begin + 1, src.pos - begin
        if fields is not None and (not fields or (len(fields) == 1 and not fields[0].strip())):
            continue  # blank line
        reason = None
        if fields is None or (header is not None and len(fields) != len(header) and used > 1):
            reason = 'an unterminated quote (a field\'s closing " is missing); fix the quoting'
        elif header is not None and len(fields) != len(header):
            reason = f"{len(fields)} fields where the header has {len(header)}; fix the row's separators or quoting"
        elif any(_not_utf8(f) for f in fields):
            reason = "bytes that are not UTF-8 text; save the file as UTF-8"
        if reason is not None:
            if header is None:
                raise InvalidInput(f"{csv}: line {start} (the header) has {reason}")
            if strict:
                raise InvalidInput(f"{csv}: line {start} has {reason} (without --strict such rows are skipped)")
            bad.append((start, reason))
            if used != 1:  # resume on the line after the bad one, with a fresh parser state
                src.pos = begin + 1
                reader = csvmod.reader(src, delimiter=sep, skipinitialspace=True, strict=True)
            continue
        assert fields is not None
        if header is None:
            header = [f.strip() for f in fields]
            continue
        records.append([f if f.strip() else math.nan for f in fields])  # empty -> missing, as pandas reads it
        lines.append(start)
    if header is None:
        raise InvalidInput(f"{csv}: the file is empty; expected a header line such as path,lat,lon")
    frame = pd.DataFrame(records, columns=header, dtype=object)
    return CsvRows(frame, lines, bad)


MAX_CSV_BYTES = 4 * 1024**3  # a CSV is read whole; OSV-5M's largest is ~1 GB


class _LineCursor:
    """An iterator over lines that knows how many it handed out (the csv reader asks one at a time)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.pos = lines, 0

    def __iter__(self) -> _LineCursor:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _not_utf8(field: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in field)


def _map_columns(df: pd.DataFrame, mapping: dict[str, str], csv: Path) -> pd.DataFrame:
    cols = list(df.columns)
    for target, src in mapping.items():
        if src not in cols:
            raise InvalidInput(
                f"{csv}: column mapping {target}={src}: no column {src!r} in the CSV; its columns are {cols}"
            )
    rename = {src: target for target, src in mapping.items()}
    df = df.drop(columns=[c for c in cols if c in mapping and c not in rename]).rename(columns=rename)
    lower = {c.lower().strip(): c for c in df.columns}
    for target, aliases in _ALIASES.items():
        if target in df.columns:
            continue
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is None:
            raise InvalidInput(
                f"{csv}: no {target!r} column (looked for {list(aliases)}); its columns are {cols}. "
                f"Map yours with columns={{'{target}': 'YOUR_COLUMN'}} or --columns {target}=YOUR_COLUMN"
            )
        df = df.rename(columns={found: target})
    return df


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return math.nan


def _row_checks(rec: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate and coerce lat/lon/heading/captured_at in place; returns (kind, reason) pairs."""
    issues: list[tuple[str, str]] = []
    for key, name, limit in (("lat", "latitude", 90.0), ("lon", "longitude", 180.0)):
        raw = rec.get(key)
        v = _num(raw)
        if v is None:
            issues.append(("bad_coordinates", f"{name} is empty"))
        elif not math.isfinite(v):
            issues.append(("bad_coordinates", f"{name} {str(raw).strip()!r} is not a number (degrees)"))
        elif abs(v) > limit:
            issues.append(("bad_coordinates", f"{name} {v:g} outside [-{limit:g}, {limit:g}] degrees"))
        else:
            rec[key] = v
    if "heading" in rec:
        v = _num(rec["heading"])
        if v is None:
            rec["heading"] = math.nan
        elif not math.isfinite(v):
            issues.append(("bad_value", f"heading {str(rec['heading']).strip()!r} is not a number (degrees)"))
        else:
            rec["heading"] = v % 360.0
    if "captured_at" in rec:
        try:
            rec["captured_at"] = parse_timestamp(rec["captured_at"])
        except ValueError as exc:
            issues.append(("bad_value", f"captured_at {exc}"))
    return issues


def _inspect_all(paths: list[Any], *, want_exif: bool, workers: int, progress: bool | None) -> list[Any]:
    """Check every image (decode, hash, EXIF) on ``workers`` threads, with a progress bar on stderr."""
    from geoscout._progress import progress_bar

    def one(p: Path | None) -> Any:
        return None if p is None else _inspect(p, want_exif=want_exif, max_pixels=None)

    with (
        ThreadPoolExecutor(workers) as ex,
        progress_bar(len(paths), "check images", unit="img", enabled=progress) as bar,
    ):
        infos = []
        for info in ex.map(one, paths):
            infos.append(info)
            bar.update(1)
    return infos


def import_csv(
    csv: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    columns: str | dict[str, str] | None = None,
    copy: bool = False,
    workers: int | None = None,
    source: str | None = None,
    strict: bool = False,
    progress: bool | None = False,
) -> ImportReport:
    """Import a CSV of images with coordinates; returns an :class:`ImportReport`.

    Columns ``path`` (relative to the CSV's folder, or absolute), ``lat``, ``lon`` (degrees) are
    required; common aliases (latitude, lng, file, ...) are found by themselves and ``columns``
    (``{"lat": "latitude"}`` or ``"lat=latitude,lon=lng"``) renames others. ``heading``,
    ``location_id``, ``source``, ``license``, ``attribution``, ``captured_at`` and any other
    columns are kept. With ``out`` the dataset is written to ``out/manifest.parquet`` (and problems to
    ``out/problems.csv``); images stay in place (``copy=False``; paths absolute when outside ``out``) or
    are copied to ``out/images/<image_id><ext>``. Without ``out`` the dataset lives in memory, rooted at
    the CSV's folder. A row that cannot be read as CSV (not UTF-8, wrong number of fields, unterminated
    quote) is a problem of kind ``bad_row`` with its line number; ``strict=True`` refuses the file instead.
    ``progress``: a bar on stderr while the images are checked (None: only in a terminal).
    """

    csv = Path(csv).expanduser().resolve()
    out_dir = _resolve_out(out)
    table = read_csv_rows(csv, strict=strict)
    df = _map_columns(table.frame, parse_column_mapping(columns), csv)
    root = csv.parent
    name = csv.parent.name if csv.stem == "manifest" else csv.stem
    src_name = source or name
    extra_numeric = _numeric_columns(df)
    if "image_id" in df.columns:  # always recomputed from content
        df = df.drop(columns=["image_id"])
    records = df.to_dict("records")
    problems = [Problem("(unreadable row)", reason, line, "bad_row") for line, reason in table.bad]
    checks, paths = _checks_and_paths(records, root)

    nw = workers or _default_workers()
    infos = _inspect_all(paths, want_exif=False, workers=nw, progress=progress)

    kept = _Kept()
    first_by_hash: dict[str, tuple[str, int]] = {}
    for i, (rec, issues, path, info) in enumerate(zip(records, checks, paths, infos)):
        line = table.lines[i]  # file line where the row starts (header = 1)
        shown = str(rec.get("path", "")).strip() if path is not None else "(empty)"
        failure = info.failure if info is not None else None
        if info is not None and info.error:
            issues.insert(0, (info.kind, info.error))
        if not issues and info is not None:
            prev = first_by_hash.get(info.sha256)
            if prev is not None:
                issues.append(
                    ("duplicate", f"duplicate image: same content as {prev[0]} (row {prev[1]}); kept that one")
                )
            else:
                first_by_hash[info.sha256] = (shown, line)
        if issues or info is None or path is None:  # no info or path only with an issue (empty path)
            problems.append(Problem(shown, "; ".join(r for _, r in issues), line, issues[0][0], failure))
            continue
        rec = {k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v) and k not in ("heading",))}
        for c in extra_numeric:
            if c in rec:
                rec[c] = float(rec[c])
        rec["image_id"] = info.sha256[:16]
        rec.setdefault("source", src_name)
        rec["width"] = info.width
        rec["height"] = info.height
        kept.add(rec, path.resolve(), info.ext, line)
    return _finish(
        *kept.lists(),
        problems,
        len(records) + len(table.bad),
        root=root,
        out=out_dir,
        copy=copy,
        workers=nw,
        name=name,
    )


class _Kept:
    """The imported rows with their source files, image suffixes and CSV lines, in the order :func:`_finish` takes."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.srcs: list[Path] = []
        self.exts: list[str] = []
        self.lines: list[int | None] = []

    def add(self, rec: dict[str, Any], src: Path, ext: str, line: int | None) -> None:
        self.rows.append(rec)
        self.srcs.append(src)
        self.exts.append(ext)
        self.lines.append(line)

    def lists(self) -> tuple[list[dict[str, Any]], list[Path], list[str], list[int | None]]:
        return self.rows, self.srcs, self.exts, self.lines


_KNOWN_COLUMNS = ("path", "lat", "lon", "heading", "captured_at", "location_id", "source", "license", "attribution")


def _numeric_columns(df: Any) -> list[str]:
    """Further columns whose every value is a number (kept as floats); ids and the known columns excepted."""
    import pandas as pd

    out = []
    for c in df.columns:
        if c in (*_KNOWN_COLUMNS, "image_id") or c.lower().endswith("id"):
            continue
        conv = pd.to_numeric(df[c], errors="coerce")
        if conv.notna().sum() == df[c].notna().sum() and df[c].notna().any():
            out.append(c)
    return out


def _checks_and_paths(
    records: list[dict[str, Any]], root: Path
) -> tuple[list[list[tuple[str, str]]], list[Path | None]]:
    """Per CSV row: its problems so far (coordinates, values, an empty path) and its image's path (None: empty)."""
    checks = []
    paths: list[Path | None] = []
    for rec in records:
        issues = _row_checks(rec)
        raw = rec.get("path")
        if raw is None or (isinstance(raw, float) and math.isnan(raw)) or not str(raw).strip():
            issues.insert(0, ("missing_file", "path is empty"))
            paths.append(None)
        else:
            p = Path(str(raw).strip()).expanduser()
            paths.append(p if p.is_absolute() else root / p)
        checks.append(issues)
    return checks, paths


def import_exif_folder(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    copy: bool = False,
    workers: int | None = None,
    source: str = "exif",
    progress: bool | None = False,
) -> ImportReport:
    """Import every photo under ``folder`` (recursively) that carries EXIF GPS; returns an :class:`ImportReport`.

    Coordinates come from GPSLatitude/GPSLongitude (rational degrees-minutes-seconds with N/S/E/W
    references), ``altitude_m`` from GPSAltitude, ``heading`` from GPSImgDirection, ``captured_at``
    from DateTimeOriginal. Image sizes are those after the EXIF orientation is applied. Photos without
    GPS, unreadable or duplicate files and files that are not images are reported as problems.
    ``out`` and ``copy`` work as in :func:`import_csv`; hidden files and the output folder are skipped.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder; give a folder of photos (or a CSV to import_csv)")
    out_dir = _resolve_out(out)
    files, problems = _image_files(folder, out_dir)
    nw = workers or _default_workers()
    infos = _inspect_all(files, want_exif=True, workers=nw, progress=progress)
    kept = _Kept()
    first_by_hash: dict[str, str] = {}
    for p, info in zip(files, infos):
        shown = _stored_path(p, folder)
        rec, problem = _exif_record(info, shown)
        if problem is None and info.sha256 in first_by_hash:
            problem = Problem(
                shown,
                f"duplicate image: same content as {first_by_hash[info.sha256]}; kept that one",
                None,
                "duplicate",
            )
        if problem is not None:
            problems.append(problem)
            continue
        assert rec is not None  # a photo without a problem has its record
        first_by_hash[info.sha256] = shown
        rec.update(image_id=info.sha256[:16], source=source, width=info.width, height=info.height)
        kept.add(rec, p, info.ext, None)
    return _finish(
        *kept.lists(),
        problems,
        len(files) + sum(pr.kind == "not_image" for pr in problems),
        root=folder,
        out=out_dir,
        copy=copy,
        workers=nw,
        name=folder.name,
    )


def _image_files(folder: Path, out_dir: Path | None) -> tuple[list[Path], list[Problem]]:
    """Image files under ``folder`` (sorted; hidden files, manifests and ``out_dir`` skipped), and the other files
    as ``not_image`` problems."""
    files: list[Path] = []
    problems: list[Problem] = []
    skip_names = {MANIFEST_NAME, PROBLEMS_NAME, "manifest.csv"}
    for dirpath, dirnames, filenames in os.walk(folder):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and (out_dir is None or (d / n) != out_dir))
        for n in sorted(filenames):
            if n.startswith(".") or n in skip_names:
                continue
            p = d / n
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(p)
            else:
                problems.append(
                    Problem(
                        _stored_path(p, folder),
                        f"not an image file (extension {p.suffix or 'none'!r}); skipped",
                        None,
                        "not_image",
                    )
                )
    return files, problems


def _exif_record(info: Any, shown: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """A photo's record from its EXIF GPS, or the problem that keeps it out (unreadable, no or bad GPS)."""
    if info.error:
        return None, Problem(shown, info.error, None, info.kind, info.failure)
    if info.exif_error:
        return None, Problem(shown, f"bad EXIF GPS: {info.exif_error}", None, "bad_coordinates")
    if info.exif is None:
        return None, Problem(
            shown, "no GPS position in EXIF; add one or list the photo in a CSV with lat,lon", None, "no_gps"
        )
    rec = dict(info.exif)
    issues = _row_checks(rec)
    if not issues and rec["lat"] == 0.0 and rec["lon"] == 0.0:
        issues.append(("bad_coordinates", "EXIF GPS is exactly (0, 0), a placeholder written by cameras without a fix"))
    if issues:
        return None, Problem(shown, "; ".join(r for _, r in issues), None, issues[0][0])
    return rec, None
