"""Importers for the open geolocation datasets, read from the files their publishers distribute.

- ``osv5m``: OpenStreetView-5M (``train.csv`` / ``test.csv`` with ``id, latitude, longitude, country, region,
  sub-region, city, land_cover, road_index, drive_side, climate, soil, dist_sea, quadtree_10_*, ...`` and the
  image folders ``images/{train,test}/NN/<id>.jpg`` unzipped from the publisher's ``NN.zip`` shards).
- ``mp16``: MP-16 / YFCC-style metadata (``IMG_ID, LAT, LON, ...`` as in ``mp16_places365.csv``; the same layout
  describes IM2GPS3k and YFCC4k/25600), images under the folder (or ``images=``) at ``IMG_ID``.
- ``hf``: a Hugging Face ``datasets`` ``save_to_disk`` folder (one split or a DatasetDict) or Parquet shards,
  with an image column (``bytes`` or ``{bytes, path}``) and latitude/longitude columns; image bytes are written
  into the dataset's ``images/`` folder.

Everything streams: CSV rows and Arrow/Parquet record batches are read ``chunk_size`` at a time and the
manifest is written batch by batch, so memory is one chunk plus ~100 bytes per imported image (duplicate
detection and the image index). Each bad row is reported as a :class:`~geoscout.data.Problem` (with its CSV
line) in ``problems.csv`` and never stops the import. The publisher's extra labels stay as columns (OSV-5M's
``land_cover, road_index, drive_side, climate_code, soil, dist_sea``, MP-16's scene labels) for the multi-task
head's auxiliary tasks.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoscout.errors import InvalidInput

from .importers import IMAGE_EXTENSIONS, PROBLEMS_NAME, Problem, _inspect, _row_checks, _stored_path
from .schema import CORE_COLUMNS, FORMAT_VERSION, MANIFEST_NAME, normalize_frame

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from .dataset import Dataset

__all__ = ["OPEN_FORMATS", "OSV5M_AUX_TASKS", "OpenImportReport", "import_open_dataset"]

OPEN_FORMATS = ("osv5m", "mp16", "hf")
#: OSV-5M's auxiliary labels as (manifest column, "class" | "value") for MultiTaskHead(aux_columns=...)
OSV5M_AUX_TASKS: dict[str, str] = {
    "land_cover": "class",
    "climate_code": "class",
    "soil": "class",
    "drive_side": "class",
    "road_index": "value",
    "dist_sea": "value",
}
ProgressFn = Callable[[int, "int | None"], None]
_KEPT_PROBLEMS = 10_000  # problems kept in memory for the report; all of them go to problems.csv

# OSV-5M columns -> (manifest name, type); "drop" = not kept. Unknown columns are kept as strings.
_OSV5M: dict[str, tuple[str, str]] = {
    "id": ("mapillary_image_id", "str"),
    "latitude": ("lat", "float"),
    "longitude": ("lon", "float"),
    "thumb_original_url": ("thumb_original_url", "str"),
    "country": ("country", "str"),
    "sequence": ("sequence", "str"),
    "captured_at": ("captured_at", "time"),
    "lon_bin": ("lon_bin", "float"),
    "lat_bin": ("lat_bin", "float"),
    "cell": ("cell", "str"),
    "region": ("region", "str"),
    "sub-region": ("sub_region", "str"),
    "city": ("city", "str"),
    "land_cover": ("land_cover", "float"),
    "road_index": ("road_index", "float"),
    "drive_side": ("drive_side", "float"),
    "climate": ("climate_code", "float"),  # integer Köppen code; `climate` holds geoscout's letter classes
    "soil": ("soil", "float"),
    "dist_sea": ("dist_sea", "float"),
    "unique_region": ("unique_region", "str"),
    "unique_sub-region": ("unique_sub_region", "str"),
    "unique_city": ("unique_city", "str"),
    "unique_country": ("unique_country", "str"),
    "creator_username": ("creator_username", "str"),
    "creator_id": ("creator_id", "str"),
}
_MP16: dict[str, tuple[str, str]] = {
    "img_id": ("mp16_id", "str"),
    "lat": ("lat", "float"),
    "lon": ("lon", "float"),
    "author": ("author", "str"),
    "s3_label": ("s3_label", "float"),
    "s16_label": ("s16_label", "float"),
    "s365_label": ("s365_label", "float"),
    "prob_indoor": ("prob_indoor", "float"),
    "prob_natural": ("prob_natural", "float"),
    "prob_urban": ("prob_urban", "float"),
}
_MP16_ALIASES = {
    "img_id": ("img_id", "image_id", "path", "file", "filename", "image", "img_path"),
    "lat": ("lat", "latitude", "gps_lat"),
    "lon": ("lon", "lng", "long", "longitude", "gps_lon"),
}
_HF_LAT = ("latitude", "lat", "gps_lat", "gps_latitude", "y")
_HF_LON = ("longitude", "lon", "lng", "long", "gps_lon", "gps_longitude", "x")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
_SPLIT_ALIASES.update({"dev": "val", "test": "test", "testing": "test"})
#: manifest columns geoscout computes itself; a source column of that name is kept with a prefix
_RESERVED = frozenset({"image_id", "path", "width", "height", "split"})


@dataclass
class OpenImportReport:
    """Result of :func:`import_open_dataset`: counts, the first problems, and the dataset folder ``root``."""

    root: Path
    total: int = 0  #: rows considered
    n_imported: int = 0
    n_problems: int = 0
    problems: list[Problem] = field(default_factory=list)  #: the first 10,000 (all are in problems.csv)
    counts: Counter[str] = field(default_factory=Counter)
    columns: list[str] = field(default_factory=list)  #: the manifest's columns

    def problem_counts(self) -> dict[str, int]:
        """Number of problems per kind, most frequent first."""
        return dict(self.counts.most_common())

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def dataset(self) -> Dataset:
        """Open the written dataset (loads the whole manifest into memory)."""
        from .dataset import Dataset

        return Dataset.open(self.root)


@dataclass
class _Item:
    """One source row: its CSV ``line`` (or None), a name for reports, the image (file or bytes) and fields."""

    line: int | None
    shown: str
    rec: dict[str, Any]
    path: Path | None = None
    data: bytes | None = None
    issues: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- writer


class _ManifestWriter:
    """Checks, hashes and de-duplicates chunks of items and appends them to a Parquet manifest."""

    def __init__(self, out: Path, columns: dict[str, str], *, workers: int, source: str, license: str) -> None:
        import pyarrow as pa

        self.out = out
        self.source = source
        self.license = license
        out.mkdir(parents=True, exist_ok=True)
        (out / "images").mkdir(exist_ok=True)
        fields = [
            pa.field("image_id", pa.string()),
            pa.field("path", pa.string()),
            pa.field("lat", pa.float64()),
            pa.field("lon", pa.float64()),
            pa.field("heading", pa.float64()),
            *(pa.field(c, pa.string()) for c in CORE_COLUMNS[5:]),
            pa.field("width", pa.int64()),
            pa.field("height", pa.int64()),
        ]
        kinds = {"float": pa.float64(), "str": pa.string(), "time": pa.string(), "int": pa.int64()}
        names = {f.name for f in fields}
        for name, kind in columns.items():
            if name not in names:
                fields.append(pa.field(name, kinds[kind]))
                names.add(name)
        self.columns = columns
        meta = {b"geoscout": json.dumps({"format_version": FORMAT_VERSION}).encode()}
        self.schema = pa.schema(fields, metadata=meta)
        self.pool = ThreadPoolExecutor(workers)
        self.seen: set[int] = set()
        self.report = OpenImportReport(out, columns=self.schema.names)
        self._tmp_manifest = out / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
        self._tmp_problems = out / f".{PROBLEMS_NAME}.{os.getpid()}.tmp"
        self._writer: Any = None
        self._pfh = open(self._tmp_problems, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._pcsv = csv.writer(self._pfh)
        self._pcsv.writerow(["row", "path", "kind", "reason"])
        self._n_tmp = 0

    def problem(self, p: Problem) -> None:
        self.report.n_problems += 1
        self.report.counts[p.kind] += 1
        if len(self.report.problems) < _KEPT_PROBLEMS:
            self.report.problems.append(p)
        self._pcsv.writerow(["" if p.row is None else p.row, p.path, p.kind, p.reason])

    def _inspect(self, item: _Item) -> Any:
        if item.issues:
            return None
        if item.data is not None:  # bytes from a Hugging Face / Parquet image column: spill, check, keep
            self._n_tmp += 1
            tmp = self.out / "images" / f".incoming-{os.getpid()}-{id(item)}-{self._n_tmp}"
            try:
                tmp.write_bytes(item.data)
            except OSError as exc:
                item.issues.append(("copy_failed", f"could not write into {self.out / 'images'}: {exc}"))
                return None
            item.path = tmp
        assert item.path is not None
        return _inspect(item.path, want_exif=False, max_pixels=None)

    def add(self, items: list[_Item]) -> None:
        import pandas as pd

        for it in items:
            if not it.issues:
                it.issues.extend(_row_checks(it.rec))
        infos = list(self.pool.map(self._inspect, items))
        rows = []
        for it, info in zip(items, infos):
            self.report.total += 1
            spilled = it.data is not None and it.path is not None
            if info is not None and info.error:
                reason = info.error.replace(str(it.path), it.shown) if spilled else info.error
                it.issues.insert(0, (info.kind, reason))
            if not it.issues and info is not None:
                key = int(info.sha256[:16], 16)
                if key in self.seen:
                    it.issues.append(("duplicate", "duplicate image: same content as an earlier row; kept that one"))
                else:
                    self.seen.add(key)
            if it.issues:
                if spilled:
                    it.path.unlink(missing_ok=True)  # type: ignore[union-attr]
                self.problem(Problem(it.shown, "; ".join(r for _, r in it.issues), it.line, it.issues[0][0]))
                continue
            rec = dict(it.rec)
            rec["image_id"] = info.sha256[:16]
            if spilled:
                rel = f"images/{rec['image_id']}{info.ext}"
                os.replace(it.path, self.out / rel)  # type: ignore[arg-type]
                rec["path"] = rel
            else:
                rec["path"] = _stored_path(it.path.resolve(), self.out)  # type: ignore[union-attr]
            rec.setdefault("source", self.source)
            rec.setdefault("license", self.license)
            rec["width"], rec["height"] = info.width, info.height
            rows.append(rec)
        if rows:
            self._write(pd.DataFrame(rows))
            self.report.n_imported += len(rows)

    def _write(self, frame: Any) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        df = normalize_frame(frame)
        for f in self.schema:
            if f.name not in df.columns:
                df[f.name] = None
            elif pa.types.is_floating(f.type):
                df[f.name] = pd.to_numeric(df[f.name], errors="coerce").astype("float64")
            elif pa.types.is_string(f.type):
                df[f.name] = df[f.name].map(
                    lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v)
                )
        table = pa.Table.from_pandas(df[self.schema.names], schema=self.schema, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp_manifest, self.schema)
        self._writer.write_table(table)

    def close(self, ok: bool) -> OpenImportReport:
        self.pool.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()
        self._pfh.close()
        manifest, problems = self.out / MANIFEST_NAME, self.out / PROBLEMS_NAME
        if ok and self.report.n_imported:
            os.replace(self._tmp_manifest, manifest)
        else:
            self._tmp_manifest.unlink(missing_ok=True)
        if ok and self.report.n_problems:
            os.replace(self._tmp_problems, problems)
        else:
            self._tmp_problems.unlink(missing_ok=True)
            if ok:
                problems.unlink(missing_ok=True)  # stale report of an earlier run
        for stray in (self.out / "images").glob(f".incoming-{os.getpid()}-*"):
            stray.unlink(missing_ok=True)
        return self.report


# ---------------------------------------------------------------------------------------------- readers


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Yield ``(line, fields, error)`` for each data row of a CSV (header excluded), with exact line numbers."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InvalidInput(f"{path}: the file is empty; expected a header line") from None
        except csv.Error as exc:
            raise InvalidInput(f"{path}: not a readable CSV ({exc})") from None
        yield 1, header, None
        n = len(header)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, None, f"malformed CSV row ({exc})"
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != n:
                yield start, None, f"malformed CSV row: {len(row)} fields, the header has {n}"
                continue
            yield start, row, None


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
    return max(0, n - 1)


def _convert(value: str, kind: str) -> Any:
    v = value.strip()
    if kind == "str":
        return v or None
    if not v or v.lower() in ("nan", "none", "null"):
        return math.nan if kind == "float" else None
    if kind == "time":
        try:
            num = float(v)
        except ValueError:
            return v  # ISO 8601 text: checked by the row checks
        secs = num / 1000.0 if abs(num) > 1e11 else num  # Mapillary's captured_at is in milliseconds
        return datetime.fromtimestamp(secs, tz=UTC).isoformat()
    if kind == "int":
        return int(float(v))
    float(v)  # a label that is not a number is reported (ValueError), not silently dropped
    return v  # converted by the row checks (lat/lon) or the writer


def _mapped_items(
    path: Path,
    mapping: dict[str, tuple[str, str]],
    aliases: dict[str, tuple[str, ...]],
    image_of: Callable[[dict[str, Any]], tuple[Path | None, str]],
    *,
    fixed: dict[str, Any],
) -> tuple[dict[str, str], Iterator[_Item]]:
    """Read a publisher CSV: returns the output column types and an iterator of items."""
    rows = _csv_rows(path)
    _, header, _ = next(rows)
    assert header is not None
    lower = [h.strip().lower() for h in header]
    resolved: dict[str, int] = {}
    for key, names in aliases.items():
        idx = next((lower.index(a) for a in names if a in lower), None)
        if idx is None:
            raise InvalidInput(
                f"{path}: no {key!r} column (looked for {', '.join(names)}); its columns are {header}. "
                "Is this the right --from format?"
            )
        resolved[key] = idx
    plan: list[tuple[int, str, str]] = []  # (column index, output name, kind)
    used = set(resolved.values())
    for key, idx in resolved.items():
        name, kind = mapping.get(key, (key, "str"))
        plan.append((idx, name, kind))
    for idx, h in enumerate(lower):
        if idx in used:
            continue
        name, kind = mapping.get(h, (h.replace("-", "_").replace(" ", "_"), "str"))
        if name in _RESERVED or name in fixed:  # the publisher's own column of that name is kept beside ours
            name = "src_" + name
        plan.append((idx, name, kind))
    types = {name: ("str" if kind == "time" else kind) for _, name, kind in plan if name not in ("lat", "lon")}
    types.update({k: "str" for k in fixed if k not in types})

    def items() -> Iterator[_Item]:
        for line, fields, error in rows:
            if fields is None:
                yield _Item(line, f"{path.name} line {line}", {}, issues=[("malformed_row", error or "malformed")])
                continue
            rec: dict[str, Any] = dict(fixed)
            issues: list[tuple[str, str]] = []
            for idx, name, kind in plan:
                if name in ("lat", "lon"):  # checked (and worded) by the row checks
                    rec[name] = fields[idx].strip()
                    continue
                try:
                    rec[name] = _convert(fields[idx], kind)
                except (ValueError, OverflowError, OSError):
                    issues.append(("bad_value", f"{header[idx]} {fields[idx]!r} is not a valid {kind}"))
            img, shown = image_of(rec)
            if img is None:
                issues.insert(0, ("missing_file", shown))
                shown = f"{path.name} line {line}"
            yield _Item(line, shown, rec, path=img, issues=issues)

    return types, items()


class _ImageIndex:
    """Where each image file of a publisher's folder tree lies, by file stem (compact: ~11 bytes per file)."""

    def __init__(self, root: Path) -> None:
        import numpy as np

        self.root = root
        self.dirs: list[str] = []
        self.exts: list[str] = []
        keys, dirs, exts = array("Q"), array("I"), array("B")
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                rel = os.path.relpath(dirpath, root)
                di = len(self.dirs)
                self.dirs.append("" if rel == "." else rel)
                for n in filenames:
                    stem, ext = os.path.splitext(n)
                    if ext.lower() not in IMAGE_EXTENSIONS or n.startswith("."):
                        continue
                    if ext not in self.exts:
                        self.exts.append(ext)
                    keys.append(self._key(stem))
                    dirs.append(di)
                    exts.append(self.exts.index(ext))
        k = np.frombuffer(keys, dtype=np.uint64) if len(keys) else np.zeros(0, np.uint64)
        order = np.argsort(k, kind="stable")
        self.keys = k[order]
        self.dir_of = (np.frombuffer(dirs, dtype=np.uint32) if len(dirs) else np.zeros(0, np.uint32))[order]
        self.ext_of = (np.frombuffer(exts, dtype=np.uint8) if len(exts) else np.zeros(0, np.uint8))[order]

    @staticmethod
    def _key(stem: str) -> int:
        return int.from_bytes(
            hashlib.blake2b(stem.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little"
        )

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def find(self, stem: str) -> Path | None:
        import numpy as np

        k = np.uint64(self._key(stem))
        i = int(np.searchsorted(self.keys, k))
        while i < len(self) and self.keys[i] == k:
            p = self.root / self.dirs[int(self.dir_of[i])] / f"{stem}{self.exts[int(self.ext_of[i])]}"
            if p.is_file():
                return p
            i += 1
        return None


def _osv5m_sources(src: Path, split: str | None) -> list[tuple[Path, str, Path]]:
    """(csv, split name, image folder) for each OSV-5M split found under ``src``."""
    if src.is_file():
        name = src.stem.split("_")[0].lower()
        sp = _SPLIT_ALIASES.get(name, "train")
        return [(src, sp, src.parent / "images" / name)]
    if not src.is_dir():
        raise InvalidInput(f"{src}: no such file or folder")
    wanted = ("train", "test") if split in (None, "all") else (split,)
    found = []
    for sp in wanted:
        for name in (f"{sp}.csv", f"{sp}_filtered.csv"):
            if (src / name).is_file():
                found.append((src / name, _SPLIT_ALIASES.get(sp, sp), src / "images" / sp))
                break
    if not found:
        raise InvalidInput(
            f"{src}: no OSV-5M {' or '.join(f'{s}.csv' for s in wanted)} there; download them with "
            "`huggingface-cli download osv5m/osv5m --repo-type dataset --local-dir DIR` (see docs/full-scale.md)"
        )
    return found


def _iter_osv5m(src: Path, split: str | None) -> Iterator[tuple[dict[str, str], Iterator[_Item], int]]:
    for csv_path, sp, image_dir in _osv5m_sources(src, split):
        index = _ImageIndex(image_dir)

        def image_of(rec: dict[str, Any], index: _ImageIndex = index, image_dir: Path = image_dir) -> Any:
            mid = rec.get("mapillary_image_id")
            if not mid:
                return None, "id is empty"
            p = index.find(str(mid))
            return (p, f"{image_dir.name}/{mid}") if p else (None, f"no image {mid}.jpg under {image_dir}")

        fixed = {"split": sp, "source": "osv5m", "license": "CC-BY-SA-4.0"}
        types, items = _mapped_items(
            csv_path,
            _OSV5M,
            {"id": ("id",), "latitude": ("latitude",), "longitude": ("longitude",)},
            image_of,
            fixed=fixed,
        )
        yield types, _osv5m_attribution(items), _count_lines(csv_path)


def _osv5m_attribution(items: Iterator[_Item]) -> Iterator[_Item]:
    for it in items:
        user = it.rec.get("creator_username")
        it.rec["attribution"] = f"{user} (Mapillary)" if user else "Mapillary contributors"
        yield it


def _mp16_csv(src: Path) -> Path:
    if src.is_file():
        return src
    if not src.is_dir():
        raise InvalidInput(f"{src}: no such file or folder")
    for name in ("mp16_places365.csv", "mp16.csv", "metadata.csv"):
        if (src / name).is_file():
            return src / name
    csvs = sorted(src.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    raise InvalidInput(
        f"{src}: expected one metadata CSV (e.g. mp16_places365.csv with IMG_ID,LAT,LON), found "
        f"{[c.name for c in csvs] or 'none'}; pass the CSV itself"
    )


def _iter_mp16(src: Path, images: Path | None) -> Iterator[tuple[dict[str, str], Iterator[_Item], int]]:
    csv_path = _mp16_csv(src)
    base = csv_path.parent
    roots = [images] if images is not None else [base, base / "images", base / "mp16"]

    def image_of(rec: dict[str, Any]) -> tuple[Path | None, str]:
        rel = rec.get("mp16_id")
        if not rel:
            return None, "IMG_ID is empty"
        for r in roots:
            p = r / rel
            if p.is_file():
                return p, rel
        return None, f"no image {rel} under {' or '.join(str(r) for r in roots)} (give the image folder with --images)"

    types, items = _mapped_items(csv_path, _MP16, _MP16_ALIASES, image_of, fixed={"source": "mp16"})

    def with_author(it: Iterator[_Item]) -> Iterator[_Item]:
        for item in it:
            if item.rec.get("author"):
                item.rec["attribution"] = f"{item.rec['author']} (Flickr)"
            yield item

    yield types, with_author(items), _count_lines(csv_path)


# -- Hugging Face ------------------------------------------------------------------------------------


def _hf_sources(src: Path, split: str | None) -> list[tuple[Path, str | None, str]]:
    """(file, split or None, kind: 'arrow' | 'parquet') for each shard under ``src``."""
    if src.is_file():
        kind = "parquet" if src.suffix == ".parquet" else "arrow"
        return [(src, _split_of(src.name), kind)]
    if not src.is_dir():
        raise InvalidInput(f"{src}: no such file or folder")
    out: list[tuple[Path, str | None, str]] = []
    if (src / "dataset_dict.json").is_file():
        names = json.loads((src / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        for name in names:
            for f, _, kind in _hf_sources(src / name, None):
                out.append((f, _SPLIT_ALIASES.get(str(name).lower()), kind))
    elif (src / "state.json").is_file():
        state = json.loads((src / "state.json").read_text(encoding="utf-8"))
        sp = _SPLIT_ALIASES.get(str(state.get("_split") or "").lower())
        out = [(src / d["filename"], sp, "arrow") for d in state.get("_data_files", [])]
    else:
        shards = sorted(p for p in src.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))
        out = [(p, _split_of(p.relative_to(src).as_posix()), "parquet") for p in shards]
    if split not in (None, "all"):
        out = [o for o in out if o[1] == _SPLIT_ALIASES.get(split, split)]
    if not out:
        raise InvalidInput(
            f"{src}: neither a `datasets` save_to_disk folder (state.json / dataset_dict.json) nor Parquet shards"
            + ("" if split in (None, "all") else f" of split {split!r}")
        )
    return out


def _split_of(name: str) -> str | None:
    for part in name.replace("\\", "/").split("/")[::-1]:
        head = part.split("-")[0].split("_")[0].split(".")[0].lower()
        if head in _SPLIT_ALIASES:
            return _SPLIT_ALIASES[head]
    return None


def _batches(path: Path, kind: str, chunk: int) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if kind == "parquet":
            pf = pq.ParquetFile(path)
            return pf.schema_arrow, pf.iter_batches(batch_size=chunk), pf.metadata.num_rows
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            freader = pa.ipc.open_file(source)
            return freader.schema, (freader.get_batch(i) for i in range(freader.num_record_batches)), None
        return reader.schema, iter(reader), None
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInput(f"{path}: not a readable {kind} file ({exc})") from None


def _image_column(schema: pa.Schema, path: Path) -> str:
    import pyarrow as pa

    def is_image(t: pa.DataType) -> bool:
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return True
        return pa.types.is_struct(t) and any(t.field(i).name == "bytes" for i in range(t.num_fields))

    names = [f.name for f in schema if is_image(f.type)]
    if not names:
        raise InvalidInput(f"{path}: no image column (binary, or struct with 'bytes'); its columns are {schema.names}")
    return "image" if "image" in names else names[0]


def _iter_hf(src: Path, split: str | None, chunk: int) -> Iterator[tuple[dict[str, str], Iterator[_Item], int | None]]:
    import pyarrow as pa

    for path, sp, kind in _hf_sources(src, split):
        schema, batches, n = _batches(path, kind, chunk)
        img_col = _image_column(schema, path)
        lower = {f.name.lower(): f.name for f in schema}
        lat = next((lower[a] for a in _HF_LAT if a in lower), None)
        lon = next((lower[a] for a in _HF_LON if a in lower), None)
        if lat is None or lon is None:
            raise InvalidInput(
                f"{path}: no latitude/longitude columns (looked for {_HF_LAT[:3]} / {_HF_LON[:3]}); "
                f"its columns are {schema.names}"
            )
        keep: dict[str, str] = {}
        for f in schema:
            if f.name in (img_col, lat, lon):
                continue
            t = f.type
            if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
                keep[f.name] = "float"
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                keep[f.name] = "str"
        rename = {c: ("hf_" + c if c in _RESERVED else c) for c in keep}
        types = {rename[c]: k for c, k in keep.items()}
        if sp:
            types["split"] = "str"
        yield types, _hf_items(path, batches, img_col, lat, lon, rename, sp, src), n


def _hf_items(
    path: Path,
    batches: Iterable[Any],
    img_col: str,
    lat: str,
    lon: str,
    rename: dict[str, str],
    sp: str | None,
    src: Path,
) -> Iterator[_Item]:
    i = 0
    for batch in batches:
        cols = {c: batch.column(c).to_pylist() for c in (*rename, lat, lon) if c in batch.schema.names}
        images = batch.column(img_col).to_pylist()
        for j, img in enumerate(images):
            shown = f"{path.name}#{i}"
            rec: dict[str, Any] = {rename[c]: cols[c][j] for c in rename if c in cols}
            rec["lat"], rec["lon"] = cols[lat][j], cols[lon][j]
            if sp:
                rec["split"] = sp
            rec.setdefault("source", "hf:" + src.name)
            data, ref = (img.get("bytes"), img.get("path")) if isinstance(img, dict) else (img, None)
            if data:
                yield _Item(None, shown, rec, data=bytes(data))
            elif ref:
                p = Path(ref)
                p = p if p.is_absolute() else path.parent / p
                yield _Item(None, shown, rec, path=p)
            else:
                yield _Item(None, shown, rec, issues=[("missing_file", "image is empty (no bytes, no path)")])
            i += 1


# ---------------------------------------------------------------------------------------------- entry point


def import_open_dataset(
    fmt: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    images: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    chunk_size: int = 4096,
    limit: int | None = None,
    progress: ProgressFn | bool | None = False,
) -> OpenImportReport:
    """Import an open dataset (``fmt`` in ``osv5m``, ``mp16``, ``hf``) from ``src`` into the dataset folder ``out``.

    Streams ``chunk_size`` rows at a time and writes ``out/manifest.parquet`` (atomically, at the end) and
    ``out/problems.csv``. ``split`` keeps one split (``train``/``val``/``test``; OSV-5M and HF); ``images`` is
    MP-16's image folder; ``limit`` stops after that many rows. ``progress``: a callable ``(done, total_or_None)``
    called after each chunk, or a bar on stderr (True; None: only in a terminal; False: none). Images stay where they are (OSV-5M, MP-16) or are written to ``out/images/`` (HF bytes).
    """
    if fmt not in OPEN_FORMATS:
        raise InvalidInput(f"unknown dataset format {fmt!r}; choose one of {', '.join(OPEN_FORMATS)}")
    if chunk_size < 1:
        raise InvalidInput(f"chunk_size must be >= 1, got {chunk_size}")
    src_p = Path(src).expanduser().resolve()
    out_p = Path(out).expanduser().resolve()
    if out_p.exists() and not out_p.is_dir():
        raise InvalidInput(f"output {out_p}: exists and is not a folder; give a folder for the dataset")
    parts, columns, total = _open_parts(fmt, src_p, split, images, chunk_size, limit)
    writer = _ManifestWriter(
        out_p,
        columns,
        workers=workers or max(1, min(8, os.cpu_count() or 1)),
        source=fmt,
        license="CC-BY-SA-4.0" if fmt == "osv5m" else "",
    )
    from geoscout._progress import progress_bar

    bar = None
    if not callable(progress):
        bar = progress_bar(total, f"import {fmt}", unit="row", enabled=progress)

        def report_progress(done: int, _total: int | None) -> None:
            bar.update(done - bar.n)

        progress = report_progress
    ok = False
    try:
        _stream_chunks(parts, writer, chunk_size, limit, lambda done: progress(done, total))
        ok = True
    finally:
        report = writer.close(ok)
        if bar is not None:
            bar.close()
    return report


_Parts = list[tuple[dict[str, str], Iterator[_Item], int | None]]


def _open_parts(
    fmt: str,
    src: Path,
    split: str | None,
    images: str | os.PathLike[str] | None,
    chunk_size: int,
    limit: int | None,
) -> tuple[_Parts, dict[str, str], int | None]:
    """The source's parts (column types, rows, row count or None), their columns and the rows to import (None:
    unknown). Headers are read here: a wrong format fails before anything is written."""
    if fmt == "osv5m":
        parts: Iterable[tuple[dict[str, str], Iterator[_Item], int | None]] = _iter_osv5m(src, split)
    elif fmt == "mp16":
        parts = _iter_mp16(src, None if images is None else Path(images).expanduser().resolve())
    else:
        parts = _iter_hf(src, split, chunk_size)
    parts = list(parts)
    columns: dict[str, str] = {}
    for types, _, _ in parts:
        for k, v in types.items():
            columns.setdefault(k, v)
    totals = [n for _, _, n in parts]
    total = None if any(n is None for n in totals) else sum(n for n in totals if n is not None)
    if limit is not None and total is not None:
        total = min(total, limit)
    return parts, columns, total


def _stream_chunks(
    parts: _Parts, writer: Any, chunk_size: int, limit: int | None, progress: Callable[[int], None]
) -> None:
    """Hand the parts' rows to ``writer`` ``chunk_size`` at a time (at most ``limit``), reporting rows done."""
    done = 0
    for _, items, _ in parts:
        chunk: list[_Item] = []
        for it in items:
            if limit is not None and done + len(chunk) >= limit:
                break
            chunk.append(it)
            if len(chunk) >= chunk_size:
                writer.add(chunk)
                done += len(chunk)
                chunk = []
                progress(done)
        if chunk:
            writer.add(chunk)
            done += len(chunk)
            progress(done)
        if limit is not None and done >= limit:
            break


def aux_tasks_for(columns: Iterable[str]) -> dict[str, str]:
    """The OSV-5M auxiliary tasks present among ``columns`` (for ``MultiTaskHead(aux_columns=...)``)."""
    cols = set(columns)
    return {c: k for c, k in OSV5M_AUX_TASKS.items() if c in cols}
