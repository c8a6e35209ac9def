"""Auxiliary rasters: Köppen-Geiger climate, ETOPO 20' elevation, GPWv4.11 population density.

Files (the same names as in ``../shared/geo``; with ``aux_dir`` they are read from that folder
or from its ``koppen/``, ``etopo/``, ``gpw/`` subfolders; without it they are downloaded once
from the official source into ``geoscout._io.cache_dir("aux")``):

=========================================================  =================================================
``Koeppen-Geiger-ASCII.txt``                                Kottek et al. (2006), 0.5° cells, text ``lat lon class``
``etopo20data.gz`` / ``etopo20lats.gz`` / ``etopo20lons.gz``  NOAA ETOPO 20-arc-minute grid (metres) as shipped with
                                                            matplotlib-basemap; longitudes 20.17..380.17 (wrap)
``gpw_v4_population_density_rev11_2020_30_min.asc``         CIESIN GPWv4.11 2020 (people/km²), ESRI ASCII grid;
(or ``..._1_deg.asc``)                                      SEDAC needs a free NASA Earthdata login, so this one
                                                            usually has to be fetched by hand into ``aux_dir``
=========================================================  =================================================

Lookups take the nearest grid cell, vectorised; grids are parsed once per process and kept
as numpy arrays (a few MB). Sea cells: climate ``''`` (unless a land cell lies within one
cell, see :meth:`AuxRasters.climate`), population density NaN, elevation the ocean depth (< 0).
"""

from __future__ import annotations

import gzip
import io
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from geoscout._io import atomic_path, cache_dir
from geoscout.errors import InvalidInput, MissingWeights

__all__ = ["KOPPEN_CLASSES", "SOURCES", "AuxRasters", "AuxSource", "month_of", "read_esri_ascii", "season"]


@dataclass(frozen=True)
class AuxSource:
    """Where a file comes from: ``url`` (a zip when ``member`` is set: the member to extract)."""

    url: str
    member: str | None = None
    note: str = ""


_GPW_30 = "gpw_v4_population_density_rev11_2020_30_min.asc"
_GPW_1 = "gpw_v4_population_density_rev11_2020_1_deg.asc"
_SEDAC = "https://sedac.ciesin.columbia.edu/downloads/data/gpw-v4/gpw-v4-population-density-rev11/"
_BASEMAP = "https://raw.githubusercontent.com/matplotlib/basemap/develop/examples/"
_SEDAC_NOTE = "SEDAC requires a free NASA Earthdata login: download it in a browser and unzip it into --aux-dir"

#: file name -> official source. Tests may point these at a local server.
SOURCES: dict[str, AuxSource] = {
    "Koeppen-Geiger-ASCII.txt": AuxSource(
        "https://koeppen-geiger.vu-wien.ac.at/data/Koeppen-Geiger-ASCII.zip", "Koeppen-Geiger-ASCII.txt"
    ),
    "etopo20data.gz": AuxSource(_BASEMAP + "etopo20data.gz"),
    "etopo20lats.gz": AuxSource(_BASEMAP + "etopo20lats.gz"),
    "etopo20lons.gz": AuxSource(_BASEMAP + "etopo20lons.gz"),
    _GPW_30: AuxSource(_SEDAC + "gpw-v4-population-density-rev11_2020_30_min_asc.zip", _GPW_30, _SEDAC_NOTE),
    _GPW_1: AuxSource(_SEDAC + "gpw-v4-population-density-rev11_2020_1_deg_asc.zip", _GPW_1, _SEDAC_NOTE),
}
_SUBDIRS = {"Koeppen": "koppen", "etopo": "etopo", "gpw": "gpw"}

#: The 31 Köppen-Geiger classes of Kottek et al. (2006); index 0 of the grid means "no class" (sea).
KOPPEN_CLASSES: tuple[str, ...] = (
    "Af", "Am", "As", "Aw", "BSh", "BSk", "BWh", "BWk", "Cfa", "Cfb", "Cfc", "Csa", "Csb", "Csc", "Cwa", "Cwb",
    "Cwc", "Dfa", "Dfb", "Dfc", "Dfd", "Dsa", "Dsb", "Dsc", "Dsd", "Dwa", "Dwb", "Dwc", "Dwd", "EF", "ET",
)  # fmt: skip

_GRIDS: dict[tuple[str, str], Any] = {}
_GRID_LOCK = threading.Lock()


def _cached(kind: str, path: Path, parse: Any) -> Any:
    key = (kind, str(path.resolve()))
    with _GRID_LOCK:
        if key not in _GRIDS:
            try:
                _GRIDS[key] = parse(path)
            except (ValueError, IndexError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise InvalidInput(f"{path}: not a valid {kind} file ({exc}); delete it or fetch it again") from exc
        return _GRIDS[key]


# ---------------------------------------------------------------------------------------- parsers


def _parse_koppen(path: Path) -> NDArray[np.uint8]:
    """(360, 720) class index (0 = none) on 0.5° cells; row 0 = -90..-89.5, column 0 = -180..-179.5."""
    lats, lons, classes = [], [], []
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) != 3:
                continue
            try:
                la, lo = float(parts[0]), float(parts[1])
            except ValueError:  # the "Lat Lon Cls" header of the official file
                continue
            lats.append(la)
            lons.append(lo)
            classes.append(parts[2])
    if not lats:
        raise ValueError("no 'lat lon class' rows")
    code = {c: i + 1 for i, c in enumerate(KOPPEN_CLASSES)}
    unknown = sorted(set(classes) - set(code))
    if unknown:
        raise ValueError(f"unknown Köppen classes {unknown[:5]}")
    grid = np.zeros((360, 720), dtype=np.uint8)
    i = np.clip(np.floor((np.asarray(lats) + 90.0) / 0.5).astype(int), 0, 359)
    j = np.clip(np.floor((np.asarray(lons) + 180.0) / 0.5).astype(int), 0, 719)
    grid[i, j] = np.array([code[c] for c in classes], dtype=np.uint8)
    return grid


def _read_floats_gz(path: Path) -> NDArray[np.float64]:
    with gzip.open(path, "rt", encoding="ascii") as fh:
        return np.array(fh.read().split(), dtype=np.float64)


def _parse_etopo(
    data: Path, lats_path: Path | None = None, lons_path: Path | None = None
) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.float64]]:
    lats = _read_floats_gz(lats_path or data.with_name("etopo20lats.gz"))
    lons = _read_floats_gz(lons_path or data.with_name("etopo20lons.gz"))
    z = _read_floats_gz(data)
    if z.size != lats.size * lons.size:
        raise ValueError(f"{z.size} values for a {lats.size} x {lons.size} grid")
    return z.reshape(lats.size, lons.size).astype(np.float32), lats, lons


@dataclass(frozen=True)
class _AsciiGrid:
    values: NDArray[np.float32]  # row 0 = north
    xll: float
    yll: float
    cell: float


def read_esri_ascii(path: str | Path, dtype: Any = np.float64) -> tuple[NDArray[Any], dict[str, float]]:
    """Read an ESRI ASCII grid: ``(values (nrows, ncols) with NaN for no-data, header)``; row 0 is north.

    The header's keys are lower-cased (``ncols``, ``nrows``, ``xllcorner``, ``cellsize``, ``nodata_value``...);
    ``NODATA_value`` defaults to -9999. A grid whose size disagrees with its header raises ``InvalidInput``.
    """
    header: dict[str, float] = {}
    with open(path, encoding="ascii") as fh:
        for _ in range(6):
            key, value = fh.readline().split()
            header[key.lower()] = float(value)
        values = np.array(fh.read().split(), dtype=dtype)
    nrows, ncols = int(header["nrows"]), int(header["ncols"])
    if values.size != nrows * ncols:
        raise InvalidInput(f"{path}: {values.size} values, but the header says {nrows} x {ncols}")
    values = values.reshape(nrows, ncols)
    values[values == header.get("nodata_value", -9999.0)] = np.nan
    return values, header


def _parse_esri_ascii(path: Path) -> _AsciiGrid:
    values, header = read_esri_ascii(path, np.float32)
    xll = header.get("xllcorner", header.get("xllcenter", 0.0) - header["cellsize"] / 2)
    yll = header.get("yllcorner", header.get("yllcenter", 0.0) - header["cellsize"] / 2)
    return _AsciiGrid(values, xll, yll, header["cellsize"])


# ---------------------------------------------------------------------------------------- files


def _download(name: str, target: Path, alternative: str = "run with --no-aux") -> Path:
    """Fetch ``name`` from its official source into ``target`` (atomic); MissingWeights when impossible."""
    import httpx

    src = SOURCES[name]
    hint = (
        f"{name} is not cached and could not be downloaded from {src.url}: {{why}}. "
        f"Download it yourself{' (' + src.note + ')' if src.note else ''} and pass --aux-dir DIR "
        f"(aux_dir=DIR) naming the folder that holds {name} (for example ../shared/geo), "
        f"or {alternative}."
    )
    try:  # the files are a few MB: fetch into memory, check, then write atomically
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=120.0)) as client:
            resp = client.get(src.url)
    except httpx.HTTPError as exc:
        raise MissingWeights(hint.format(why=f"{type(exc).__name__}: {exc}")) from exc
    if resp.status_code != 200:
        raise MissingWeights(hint.format(why=f"HTTP {resp.status_code}"))
    payload = resp.content
    if src.member:
        try:
            with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                member = next(m for m in zf.namelist() if m.rsplit("/", 1)[-1] == src.member)
                payload = zf.read(member)
        except (zipfile.BadZipFile, StopIteration):
            raise MissingWeights(
                hint.format(why=f"the reply is not a zip holding {src.member} (a login page?)")
            ) from None
    if name.endswith(".gz") and payload[:2] != b"\x1f\x8b":
        raise MissingWeights(hint.format(why="the reply is not gzip data"))
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)
    return target


class AuxRasters:
    """Climate, elevation and population density at (lat, lon) from global rasters.

    ``aux_dir``: a folder holding the files (flat, or in ``koppen/ etopo/ gpw/`` subfolders like
    ``../shared/geo``); nothing is downloaded then. ``None``: files come from
    ``cache_dir("aux")``, downloaded from the official source on first use (``download=False``
    forbids that). A file that cannot be found raises ``MissingWeights`` naming the file, its
    URL and ``--aux-dir``, and ``alternative``, the caller's way to do without it (default: label's
    ``--no-aux``). Instances are cheap; parsed grids are shared per process.
    """

    def __init__(
        self,
        aux_dir: str | os.PathLike[str] | None = None,
        *,
        download: bool = True,
        alternative: str = "use --no-aux",
    ) -> None:
        self.aux_dir = None if aux_dir is None else Path(aux_dir)
        self.download = download
        self.alternative = alternative

    def __repr__(self) -> str:
        return f"AuxRasters(aux_dir={str(self.aux_dir) if self.aux_dir else None!r})"

    # -- files ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Local path of aux file ``name`` (downloading it into the cache when allowed)."""
        if name not in SOURCES:
            raise InvalidInput(f"unknown aux file {name!r}; known: {', '.join(SOURCES)}")
        if self.aux_dir is not None:
            if not self.aux_dir.is_dir():
                raise MissingWeights(f"aux folder {self.aux_dir} does not exist (--aux-dir)")
            sub = next((v for k, v in _SUBDIRS.items() if name.startswith(k)), "")
            for cand in (self.aux_dir / name, self.aux_dir / sub / name):
                if cand.is_file():
                    return cand
            raise MissingWeights(
                f"{name} not found in --aux-dir {self.aux_dir} (nor in its {sub}/ subfolder). "
                f"Get it from {SOURCES[name].url}"
                f"{' (' + SOURCES[name].note + ')' if SOURCES[name].note else ''}, "
                f"or drop --aux-dir to download into {cache_dir('aux')}, or {self.alternative}."
            )
        target = cache_dir("aux") / name
        if target.is_file():
            return target
        if not self.download:
            raise MissingWeights(
                f"{name} is not in the cache {target.parent} and downloading is off; "
                f"fetch it from {SOURCES[name].url} and pass --aux-dir DIR, or {self.alternative}."
            )
        return _download(name, target, self.alternative)

    def _gpw_path(self) -> Path:
        try:
            return self.path(_GPW_30)
        except MissingWeights as first:
            if self.aux_dir is None:
                raise
            try:
                return self.path(_GPW_1)
            except MissingWeights:
                raise first from None

    # -- lookups -------------------------------------------------------------------------------
    def climate(self, lat: ArrayLike, lon: ArrayLike) -> NDArray[np.str_]:
        """Köppen-Geiger class ('Cfb', 'BWh', ...) of the 0.5° cell at each point; '' at sea.

        When the point's own cell has no class (sea, or a coastal cell the 0.5° grid counts
        as sea) the nearest classed cell among its 8 neighbours is used, so coastal photos
        get the climate of the adjacent land. Further out at sea the answer is ''.
        """
        la, lo, shape = _coords(lat, lon)
        grid = _cached("Köppen-Geiger", self.path("Koeppen-Geiger-ASCII.txt"), _parse_koppen)
        i = np.clip(np.floor((la + 90.0) / 0.5).astype(np.int64), 0, 359)
        j = np.floor((lo + 180.0) / 0.5).astype(np.int64) % 720
        cls = grid[i, j].astype(np.int64)
        miss = np.flatnonzero(cls == 0)
        if miss.size:
            best = np.zeros(miss.size, dtype=np.int64)
            best_d = np.full(miss.size, np.inf)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if di == dj == 0:
                        continue
                    ii = np.clip(i[miss] + di, 0, 359)
                    jj = (j[miss] + dj) % 720
                    c = grid[ii, jj].astype(np.int64)
                    clat = -89.75 + 0.5 * ii
                    dlon = ((-179.75 + 0.5 * jj) - lo[miss] + 180.0) % 360.0 - 180.0
                    d = (clat - la[miss]) ** 2 + (dlon * np.cos(np.radians(la[miss]))) ** 2
                    better = (c > 0) & (d < best_d)
                    best = np.where(better, c, best)
                    best_d = np.where(better, d, best_d)
            cls[miss] = best
        names = np.array(("", *KOPPEN_CLASSES))
        return names[cls].reshape(shape)

    def elevation_m(self, lat: ArrayLike, lon: ArrayLike) -> NDArray[np.float64]:
        """ETOPO20 elevation in metres of the nearest 20' cell (negative = ocean depth)."""
        la, lo, shape = _coords(lat, lon)
        lats_path, lons_path = self.path("etopo20lats.gz"), self.path("etopo20lons.gz")
        z, glat, glon = _cached("ETOPO20", self.path("etopo20data.gz"), lambda p: _parse_etopo(p, lats_path, lons_path))
        step_lat = (glat[-1] - glat[0]) / (glat.size - 1)
        step_lon = (glon[-1] - glon[0]) / (glon.size - 1)
        period = round(360.0 / step_lon)  # 1080 distinct columns; the last repeats the first
        i = np.clip(np.rint((la - glat[0]) / step_lat).astype(np.int64), 0, glat.size - 1)
        j = np.rint(((lo - glon[0]) % 360.0) / step_lon).astype(np.int64) % period
        return z[i, j].astype(np.float64).reshape(shape)

    def population_density(self, lat: ArrayLike, lon: ArrayLike) -> NDArray[np.float64]:
        """GPWv4.11 2020 population density (people/km²) of the cell at each point; NaN where no data (sea)."""
        la, lo, shape = _coords(lat, lon)
        g = _cached("GPWv4 ESRI ASCII", self._gpw_path(), _parse_esri_ascii)
        nrows, ncols = g.values.shape
        top = g.yll + nrows * g.cell
        i = np.clip(np.floor((top - la) / g.cell).astype(np.int64), 0, nrows - 1)
        j = np.clip(np.floor((lo - g.xll) / g.cell).astype(np.int64), 0, ncols - 1)
        return g.values[i, j].astype(np.float64).reshape(shape)


def _coords(lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[int, ...]]:
    from .countries import _prepare

    return _prepare(lat, lon)


# ---------------------------------------------------------------------------------------- time


_SEASONS_NORTH = np.array(["", "winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer",
                           "autumn", "autumn", "autumn", "winter"], dtype=object)  # fmt: skip
_FLIP = {"winter": "summer", "summer": "winter", "spring": "autumn", "autumn": "spring", "": ""}


def month_of(captured_at: ArrayLike) -> Any:
    """Month 1..12 of timestamps as a pandas nullable ``Int8`` Series (<NA> if missing or unparsable).

    The month is read as written (local time of the photo): ``2020-03-01T01:00+02:00`` is March,
    not February in UTC. ISO 8601 (``YYYY-MM...``) and EXIF (``YYYY:MM:DD ...``) strings,
    ``datetime`` objects and ``pandas.Timestamp`` are understood.
    """
    import datetime as _dt
    import re

    import pandas as pd

    pattern = re.compile(r"^\s*\d{4}[-:](\d{2})(?:[-:]\d{2})?(?:[T ]|$)")
    out: list[Any] = []
    for v in np.asarray(captured_at, dtype=object).ravel():
        month = None
        if isinstance(v, (_dt.date, pd.Timestamp)) and not pd.isna(v):
            month = v.month
        elif isinstance(v, str) and (m := pattern.match(v)):
            month = int(m.group(1))
        elif isinstance(v, str) and v.strip():
            t = pd.to_datetime(v, errors="coerce")
            month = None if pd.isna(t) else t.month
        out.append(month if month is not None and 1 <= month <= 12 else pd.NA)
    return pd.Series(out, dtype="Int8")


def season(lat: ArrayLike, month: ArrayLike) -> NDArray[np.object_]:
    """Meteorological season ('winter', 'spring', 'summer', 'autumn') at latitude ``lat`` in ``month`` (1..12).

    Northern hemisphere: Dec-Feb winter, Mar-May spring, Jun-Aug summer, Sep-Nov autumn; the
    southern hemisphere (lat < 0) is shifted by six months. Missing or invalid months give ''.
    """
    la = np.asarray(lat, dtype=np.float64)
    m = np.asarray(month, dtype=object)
    la, m = np.broadcast_arrays(la, m)
    mi = np.array([int(v) if _is_month(v) else 0 for v in m.ravel()], dtype=np.int64).reshape(m.shape)
    north = _SEASONS_NORTH[mi]
    south = np.array([_FLIP[s] for s in north.ravel()], dtype=object).reshape(north.shape)
    return np.where(la < 0, south, north).astype(object)


def _is_month(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return np.isfinite(f) and f == int(f) and 1 <= int(f) <= 12
