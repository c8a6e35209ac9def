"""Where to look for imagery: reproducible streams of (lat, lon) points.

Every sampler is registered in :data:`SAMPLERS` and yields an endless (or, for ``grid``, finite)
deterministic stream of :class:`SamplePoint` from a seed: the same seed gives the same points,
which is what lets a killed collect job regenerate its stream and resume where it stopped.

==============  ==========================================================================
``land``        area-uniform on the sphere, kept where the land mask says land
``population``  proportional to people (GPWv4 population density x cell area)
``cities``      GeoNames places (cities1000) jittered within ``radius_km`` (near roads)
``countries``   per-country quotas (``{"HR": 100, "SI": 50}``) inside country polygons
``bbox``        area-uniform inside ``W,S,E,N`` (optionally land only)
``polygon``     area-uniform inside a GeoJSON polygon file or a country (ISO alpha-2)
``grid``        a regular grid (spacing in km or degrees) over land, shuffled by the seed
``citybox``     random points in a box around named cities (``"London,Manchester"``)
==============  ==========================================================================
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoscout._registry import Registry
from geoscout.errors import InvalidInput

__all__ = [
    "SAMPLERS",
    "SamplePoint",
    "Sampler",
    "create_sampler",
    "list_samplers",
    "parse_bbox",
    "parse_quotas",
    "parse_spacing",
    "uniform_sphere",
]

SAMPLERS: Registry[Sampler] = Registry("sampler", group="geoscout.samplers")
_BATCH = 2048
_KM_PER_DEG = 6371.0 * math.pi / 180.0


@dataclass(frozen=True)
class SamplePoint:
    """A candidate location: ``lat``/``lon`` in degrees, an optional quota ``group``, and metadata."""

    lat: float
    lon: float
    group: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """Base class. Subclasses implement :meth:`_stream`; ``quotas`` maps group -> number of locations."""

    name = "sampler"
    quotas: dict[str, int] | None = None

    def points(self, seed: int = 0) -> Iterator[SamplePoint]:
        """The deterministic stream of points for ``seed``."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _stable_hash(self.name)]))
        return self._stream(rng)

    def sample(self, n: int, seed: int = 0) -> list[SamplePoint]:
        """The first ``n`` points of the stream (fewer if the sampler is finite)."""
        return list(itertools.islice(self.points(seed), int(n)))

    def config(self) -> dict[str, Any]:
        """JSON-able description (compared when a job resumes)."""
        return {"sampler": self.name}

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


# -- helpers ------------------------------------------------------------------------------------------


def uniform_sphere(
    rng: np.random.Generator, n: int, bbox: tuple[float, float, float, float] = (-180, -90, 180, 90)
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points area-uniform on the sphere inside ``bbox = (west, south, east, north)`` degrees.

    Latitude is drawn uniform in sin(lat) (equal-area); a box with west > east crosses the antimeridian.
    """
    w, s, e, nth = (float(v) for v in bbox)
    z = rng.uniform(math.sin(math.radians(s)), math.sin(math.radians(nth)), n)
    lat = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    width = 360.0 if e - w == 360.0 else (e - w) % 360.0
    lon = w + rng.uniform(0.0, width, n)
    lon = (lon + 180.0) % 360.0 - 180.0
    return lat, lon


def _sphere_box_area(bbox: tuple[float, float, float, float]) -> float:
    w, s, e, n = bbox
    width = 360.0 if e - w == 360.0 else (e - w) % 360.0
    return math.radians(width) * (math.sin(math.radians(n)) - math.sin(math.radians(s)))


def _is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Land mask (GLOBE 1 km mask or inside a country polygon) via :func:`geoscout.places.is_land`."""
    from geoscout.places import is_land

    lat = np.clip(np.asarray(lat, dtype=float), -90.0, 90.0)
    lon = (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0
    if lat.size == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(is_land(lat, lon), dtype=bool)


def parse_bbox(text: str | tuple[float, float, float, float] | list[float]) -> tuple[float, float, float, float]:
    """``"W,S,E,N"`` (min lon, min lat, max lon, max lat; degrees, like GeoJSON) -> tuple."""
    try:
        vals = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise InvalidInput(
            f"bbox {text!r}: expected 4 numbers W,S,E,N (min lon, min lat, max lon, max lat), "
            "e.g. 13.4,42.4,19.5,46.6 for Croatia"
        )
    w, s, e, n = vals
    if not (-90 <= s < n <= 90 and -180 <= w <= 180 and -180 <= e <= 180 and w != e):
        raise InvalidInput(f"bbox {text!r}: need -90 <= S < N <= 90 and longitudes in -180..180 (W > E crosses 180°)")
    return w, s, e, n


def parse_quotas(text: str | dict[str, int]) -> dict[str, int]:
    """``"HR:100,Slovenia:50"`` -> ``{"HR": 100, "SI": 50}`` (countries by ISO code or name, positive counts)."""
    items: list[tuple[Any, Any]]
    if isinstance(text, dict):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            code, sep, num = part.partition(":")
            if not sep:
                raise InvalidInput(f"countries {text!r}: each entry needs CODE:COUNT, e.g. HR:100,SI:50")
            items.append((code, num))
    out: dict[str, int] = {}
    for code, num in items:
        code = str(code).strip()
        try:
            k = int(str(num).strip())
        except ValueError:
            k = 0
        if not code or k <= 0:
            raise InvalidInput(f"countries entry {code}:{num}: expected a country (HR or Croatia) and a positive count")
        code = _country_code(code)
        out[code] = out.get(code, 0) + k
    if not out:
        raise InvalidInput(f"countries {text!r}: no entries; expected e.g. HR:100,SI:50")
    return out


def parse_spacing(text: str | float) -> tuple[float, str]:
    """``"10km"`` -> ``(10.0, "km")``; ``"0.5deg"`` or ``0.5`` -> ``(0.5, "deg")``."""
    if isinstance(text, (int, float)):
        value, unit = float(text), "deg"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(km|deg|°)?\s*", str(text).lower())
        if not m:
            raise InvalidInput(f"spacing {text!r}: expected a distance like 10km or 0.5deg")
        value, unit = float(m.group(1)), "km" if m.group(2) == "km" else "deg"
    if not value > 0:
        raise InvalidInput(f"spacing {text!r}: must be positive")
    return value, unit


class _ShapeSampler:
    """Exact area-uniform sampling inside a (multi)polygon: pick a part by its bbox's sphere area, reject outside."""

    def __init__(self, geom: Any, name: str) -> None:
        import shapely

        parts = [g for g in getattr(geom, "geoms", [geom]) if not g.is_empty]
        if not parts or geom.is_empty:
            raise InvalidInput(f"{name}: empty geometry")
        self.parts = parts
        for p in parts:
            shapely.prepare(p)
        self.boxes = [(b[0], b[1], b[2], b[3]) for b in (p.bounds for p in parts)]
        areas = np.array([max(_sphere_box_area(b), 1e-12) for b in self.boxes])
        self.weights = areas / areas.sum()

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        import shapely

        which = rng.choice(len(self.parts), size=n, p=self.weights)
        lat = np.empty(n)
        lon = np.empty(n)
        keep = np.zeros(n, dtype=bool)
        for i in np.unique(which):
            sel = np.flatnonzero(which == i)
            la, lo = uniform_sphere(rng, len(sel), self.boxes[i])
            lat[sel], lon[sel] = la, lo
            keep[sel] = shapely.contains_xy(self.parts[i], lo, la)
        return lat[keep], lon[keep]


def _rejection_stream(
    draw: Any, rng: np.random.Generator, what: str, group: str | None = None, info: dict[str, Any] | None = None
) -> Iterator[SamplePoint]:
    empty = 0
    while True:
        lat, lon = draw(rng, _BATCH)
        if len(lat) == 0:
            empty += 1
            if empty >= 200:
                raise InvalidInput(
                    f"{what}: no point found in {200 * _BATCH} tries; is the area on land and not empty?"
                )
            continue
        empty = 0
        for la, lo in zip(lat.tolist(), lon.tolist()):
            yield SamplePoint(round(la, 7), round(lo, 7), group, dict(info or {}))


# -- samplers -----------------------------------------------------------------------------------------


@SAMPLERS.register("land", help="area-uniform on land (global land mask)")
class LandSampler(Sampler):
    """Area-uniform points on land, optionally inside ``bbox`` (W,S,E,N)."""

    name = "land"

    def __init__(self, bbox: str | tuple[float, float, float, float] | None = None) -> None:
        self.bbox = parse_bbox(bbox) if bbox is not None else (-180.0, -90.0, 180.0, 90.0)

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "bbox": list(self.bbox)}

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        def draw(r: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            lat, lon = uniform_sphere(r, n, self.bbox)
            m = _is_land(lat, lon)
            return lat[m], lon[m]

        return _rejection_stream(draw, rng, "land sampler")


@SAMPLERS.register("bbox", help="area-uniform inside a W,S,E,N box")
class BBoxSampler(LandSampler):
    """Area-uniform points inside ``bbox`` (W,S,E,N degrees); on land only unless ``land_only=False``."""

    name = "bbox"

    def __init__(
        self,
        bbox: str | tuple[float, float, float, float] | None = None,
        arg: str | None = None,
        land_only: bool = True,
    ) -> None:
        box = bbox if bbox is not None else arg
        if box is None:
            raise InvalidInput("bbox sampler: give bbox='W,S,E,N' (e.g. --bbox 13.4,42.4,19.5,46.6)")
        super().__init__(box)
        self.land_only = bool(land_only)

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "bbox": list(self.bbox), "land_only": self.land_only}

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        if self.land_only:
            return super()._stream(rng)
        return _rejection_stream(lambda r, n: uniform_sphere(r, n, self.bbox), rng, "bbox sampler")


def _country_shapes() -> dict[str, Any]:
    from geoscout.places import country_polygons

    return {c.iso2: c.geometry for c in country_polygons() if c.iso2}


def _country_code(text: str) -> str:
    """ISO alpha-2 code of a country given by alpha-2, alpha-3 or English name (any case)."""
    from geoscout.places import country_polygons

    key = text.strip().casefold()
    names: dict[str, str] = {}
    for c in country_polygons():
        if c.iso2:
            for alias in (c.iso2, c.iso3, c.name):
                if alias:
                    names.setdefault(str(alias).casefold(), c.iso2)
    if key in names:
        return names[key]
    import difflib

    by_name = {c.name: c.iso2 for c in country_polygons() if c.iso2 and c.name}
    close = difflib.get_close_matches(text.strip(), list(by_name), n=3, cutoff=0.6)
    close += [
        c for c in difflib.get_close_matches(text.strip().upper(), list(_country_shapes()), n=3) if c not in close
    ]
    shown = [f"{c} ({by_name[c]})" if c in by_name else c for c in close[:3]]
    raise InvalidInput(
        f"country {text!r}: not a known country; give an ISO alpha-2 or alpha-3 code or an English name "
        "(HR, HRV or Croatia)" + (f"; did you mean {', '.join(shown)}?" if shown else "")
    )


def _country_geometry(code: str) -> Any:
    return _country_shapes()[_country_code(code)]


def _load_geojson(path: str | Path) -> Any:
    import shapely.geometry

    from geoscout._io import read_user_file

    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"{p}: polygon file not found")
    data = read_user_file(p, max_bytes=512 * 1024 * 1024)  # a regular file (no pipe), bounded
    try:
        obj = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{p}: not a readable GeoJSON file ({exc})") from None
    geoms = []
    feats = obj.get("features") if obj.get("type") == "FeatureCollection" else [obj]
    for f in feats or []:
        g = f.get("geometry") if f.get("type") == "Feature" else f
        if g and g.get("type") in ("Polygon", "MultiPolygon"):
            geoms.append(shapely.geometry.shape(g))
    if not geoms:
        raise InvalidInput(f"{p}: no Polygon or MultiPolygon in this GeoJSON")
    import shapely

    return shapely.union_all(geoms)


@SAMPLERS.register("polygon", help="area-uniform inside a GeoJSON polygon or a country (ISO code or name)")
class PolygonSampler(Sampler):
    """Area-uniform points inside ``polygon``: a GeoJSON file path or a country (``HR``, ``HRV`` or ``Croatia``)."""

    name = "polygon"

    def __init__(self, polygon: str | None = None, arg: str | None = None, land_only: bool = False) -> None:
        spec = polygon if polygon is not None else arg
        if not spec:
            raise InvalidInput(
                "polygon sampler: give polygon=<GeoJSON file, ISO country code or country name> (--polygon HR)"
            )
        self.spec = str(spec)
        self.land_only = bool(land_only)
        if Path(self.spec).suffix.lower() in (".json", ".geojson") or Path(self.spec).is_file():
            self.geometry = _load_geojson(self.spec)
        else:  # a country: alpha-2, alpha-3 or English name
            self.spec = _country_code(self.spec)
            self.geometry = _country_geometry(self.spec)
        self._shape = _ShapeSampler(self.geometry, f"polygon {self.spec}")

    def config(self) -> dict[str, Any]:
        return {
            "sampler": self.name,
            "polygon": self.spec,
            "land_only": self.land_only,
            "bounds": [round(v, 6) for v in self.geometry.bounds],
        }

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        def draw(r: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            lat, lon = self._shape.draw(r, n)
            if self.land_only:
                m = _is_land(lat, lon)
                lat, lon = lat[m], lon[m]
            return lat, lon

        return _rejection_stream(draw, rng, f"polygon sampler ({self.spec})")


@SAMPLERS.register("countries", help="per-country quotas, e.g. HR:100,SI:50, inside country polygons")
class CountriesSampler(Sampler):
    """Points inside several countries in turn; ``quotas`` caps the locations the job keeps per country."""

    name = "countries"

    def __init__(self, countries: str | dict[str, int] | None = None, arg: str | None = None) -> None:
        spec = countries if countries is not None else arg
        if not spec:
            raise InvalidInput("countries sampler: give countries='HR:100,SI:50' (--countries HR:100,SI:50)")
        self.quotas = parse_quotas(spec)
        self._shapes = {c: _ShapeSampler(_country_geometry(c), f"country {c}") for c in self.quotas}

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "countries": dict(sorted(self.quotas.items()))}  # type: ignore[union-attr]

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        streams = {
            c: _rejection_stream(s.draw, rng, f"country {c}", group=c, info={"country": c})
            for c, s in sorted(self._shapes.items())
        }
        while True:
            for c in sorted(streams):
                yield next(streams[c])


def _find_gpw(aux_dir: str | Path | None) -> Path:
    """The GPWv4 density grid: from ``aux_dir`` (flat or ``gpw/``), else the aux cache (downloaded once)."""
    from geoscout.errors import MissingWeights
    from geoscout.places.aux import AuxRasters

    aux = AuxRasters(aux_dir, alternative="choose a sampler that needs no raster (land, cities, countries, bbox)")
    names = ("gpw_v4_population_density_rev11_2020_30_min.asc", "gpw_v4_population_density_rev11_2020_1_deg.asc")
    try:
        return aux.path(names[0])
    except MissingWeights as first:
        if aux_dir is None:
            raise
        try:
            return aux.path(names[1])
        except MissingWeights:
            raise first from None


@SAMPLERS.register("population", help="proportional to population (GPWv4 density grid; --aux-dir)")
class PopulationSampler(Sampler):
    """Points drawn with probability proportional to population: a grid cell by density x area, then
    area-uniform inside the cell, kept on land. Reads the GPWv4 grid from ``aux_dir`` (or the aux cache)."""

    name = "population"

    def __init__(
        self, aux_dir: str | Path | None = None, bbox: str | tuple[float, float, float, float] | None = None
    ) -> None:
        self.path = _find_gpw(aux_dir)
        self.bbox = parse_bbox(bbox) if bbox is not None else None
        from geoscout.places.aux import read_esri_ascii

        dens, h = read_esri_ascii(self.path)
        nrows, ncols, cs = int(h["nrows"]), int(h["ncols"]), h["cellsize"]
        x0, y0 = h["xllcorner"], h["yllcorner"]
        south = y0 + (nrows - 1 - np.arange(nrows)) * cs  # row 0 is the northernmost
        west = x0 + np.arange(ncols) * cs
        band = np.radians(cs) * (np.sin(np.radians(south + cs)) - np.sin(np.radians(south))) * 6371.0**2
        pop = np.nan_to_num(dens, nan=0.0).clip(min=0.0) * band[:, None]
        if self.bbox is not None:
            w, s, e, n = self.bbox
            lon_ok = (west + cs > w) & (west < e) if w < e else (west + cs > w) | (west < e)
            lat_ok = (south + cs > s) & (south < n)
            pop = pop * lat_ok[:, None] * lon_ok[None, :]
        total = pop.sum()
        if not total > 0:
            raise InvalidInput(f"population sampler: no population inside {self.bbox} in {self.path}")
        self._p = (pop / total).ravel()
        self._south, self._west, self._cs, self._ncols = south, west, cs, ncols
        self.total_population = float(total)

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "grid": self.path.name, "bbox": list(self.bbox) if self.bbox else None}

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        def draw(r: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
            cells = r.choice(len(self._p), size=n, p=self._p)
            row, col = np.divmod(cells, self._ncols)
            s = self._south[row]
            z = r.uniform(np.sin(np.radians(s)), np.sin(np.radians(s + self._cs)))
            lat = np.degrees(np.arcsin(z))
            lon = self._west[col] + r.uniform(0.0, self._cs, n)
            m = _is_land(lat, lon)
            if self.bbox is not None:
                w, so, e, no = self.bbox
                inside = (lat >= so) & (lat <= no) & ((lon >= w) & (lon <= e) if w < e else (lon >= w) | (lon <= e))
                m &= inside
            return lat[m], lon[m]

        return _rejection_stream(draw, rng, "population sampler")


def _jitter(
    rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, radius_km: float
) -> tuple[np.ndarray, np.ndarray]:
    from geoscout.geo import destination_point

    if radius_km <= 0:
        return lat, lon
    r = radius_km * np.sqrt(rng.uniform(0.0, 1.0, len(lat)))  # uniform in the disc
    b = rng.uniform(0.0, 360.0, len(lat))
    la, lo = destination_point(lat, lon, b, r)
    return np.asarray(la, dtype=float), np.asarray(lo, dtype=float)


@SAMPLERS.register("cities", help="GeoNames places (cities1000), jittered within radius_km")
class CitiesSampler(Sampler):
    """GeoNames places with at least ``min_population`` people (when known), each point jittered uniformly
    within ``radius_km`` of the place: settlements have roads, so the imagery hit rate is high.
    ``weight`` is ``uniform`` (every place alike) or ``population``."""

    name = "cities"

    def __init__(
        self, min_population: int = 0, radius_km: float = 1.0, weight: str = "uniform", countries: str | None = None
    ) -> None:
        from geoscout.places import geonames_cities

        if weight not in ("uniform", "population"):
            raise InvalidInput(f"weight={weight!r}: choose 'uniform' or 'population'")
        if radius_km < 0:
            raise InvalidInput(f"radius_km={radius_km}: must be >= 0")
        df = geonames_cities(min_population=int(min_population))
        self.countries = sorted({c.strip().upper() for c in countries.split(",") if c.strip()}) if countries else None
        if self.countries:
            df = df[df["country"].isin(self.countries)]
        if not len(df):
            raise InvalidInput(
                f"cities sampler: no GeoNames place with population >= {min_population}"
                + (f" in {self.countries}" if self.countries else "")
            )
        self.min_population, self.radius_km, self.weight = int(min_population), float(radius_km), weight
        self._lat = df["lat"].to_numpy(dtype=float)
        self._lon = df["lon"].to_numpy(dtype=float)
        self._name = df["name"].astype(str).to_numpy()
        self._cc = df["country"].astype(str).to_numpy() if "country" in df.columns else np.full(len(df), "")
        if weight == "population" and "population" in df.columns:
            pop = np.nan_to_num(df["population"].to_numpy(dtype=float), nan=0.0).clip(min=0)
            if pop.sum() <= 0:
                raise InvalidInput("cities sampler: weight='population' but the GeoNames table has no populations")
            self._p = pop / pop.sum()
        else:
            self._p = None

    def config(self) -> dict[str, Any]:
        return {
            "sampler": self.name,
            "min_population": self.min_population,
            "radius_km": self.radius_km,
            "weight": self.weight,
            "countries": self.countries,
            "n_places": len(self._lat),
        }

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        while True:
            idx = rng.choice(len(self._lat), size=_BATCH, p=self._p)
            lat, lon = _jitter(rng, self._lat[idx], self._lon[idx], self.radius_km)
            for i, la, lo in zip(idx.tolist(), lat.tolist(), lon.tolist()):
                yield SamplePoint(
                    round(la, 7), round(lo, 7), None, {"place": str(self._name[i]), "country": str(self._cc[i])}
                )


@SAMPLERS.register("citybox", help="random points in a box around named cities, e.g. 'London,Manchester'")
class CityBoxSampler(Sampler):
    """Area-uniform points in a square of ``box_km`` side centred on each named city (the most populous
    GeoNames place of that name; ``Name@CC`` picks the country). Cities take turns; the group is the city."""

    name = "citybox"

    def __init__(self, cities: str | list[str] | None = None, arg: str | None = None, box_km: float = 10.0) -> None:
        from geoscout.places import geonames_cities

        spec = cities if cities is not None else arg
        names = [c.strip() for c in (spec.split(",") if isinstance(spec, str) else (spec or [])) if c.strip()]
        if not names:
            raise InvalidInput("citybox sampler: give cities='London,Manchester' (--cities)")
        if not box_km > 0:
            raise InvalidInput(f"box_km={box_km}: must be positive")
        df = geonames_cities()
        lower = df["name"].astype(str).str.lower()
        pop = df["population"].fillna(0).to_numpy(dtype=float) if "population" in df.columns else np.zeros(len(df))
        self.box_km = float(box_km)
        self.cities: list[dict[str, Any]] = []
        for raw in names:
            name, _, cc = raw.partition("@")
            mask = (lower == name.strip().lower()).to_numpy()
            if cc:
                mask &= (df["country"].astype(str).str.upper() == cc.strip().upper()).to_numpy()
            if not mask.any():
                import difflib

                close = difflib.get_close_matches(name.strip(), df["name"].astype(str).unique().tolist(), n=3)
                raise InvalidInput(
                    f"city {raw!r}: not in GeoNames cities1000"
                    + (f"; did you mean {', '.join(close)}?" if close else "")
                )
            i = int(np.flatnonzero(mask)[np.argmax(pop[mask])])
            lat, lon = float(df["lat"].iloc[i]), float(df["lon"].iloc[i])
            half_lat = self.box_km / 2 / _KM_PER_DEG
            half_lon = half_lat / max(math.cos(math.radians(lat)), 1e-6)
            self.cities.append(
                {
                    "name": raw,
                    "lat": lat,
                    "lon": lon,
                    "country": str(df["country"].iloc[i]),
                    "bbox": (lon - half_lon, max(-90.0, lat - half_lat), lon + half_lon, min(90.0, lat + half_lat)),
                }
            )

    def config(self) -> dict[str, Any]:
        return {"sampler": self.name, "cities": [c["name"] for c in self.cities], "box_km": self.box_km}

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        while True:
            for c in self.cities:
                la, lo = uniform_sphere(rng, 1, c["bbox"])
                yield SamplePoint(
                    round(float(la[0]), 7),
                    round(float(lo[0]), 7),
                    c["name"],
                    {"city": c["name"], "country": c["country"]},
                )


@SAMPLERS.register("grid", help="regular grid over land, spacing in km or degrees (finite)")
class GridSampler(Sampler):
    """A regular grid: rows every ``spacing``; along a row every ``spacing`` km (``10km``: equal distances)
    or degrees (``0.5deg``). Kept on land (unless ``land_only=False``) inside ``bbox``; visited in an
    order shuffled by the seed so that a partial run still covers the whole area."""

    name = "grid"

    def __init__(
        self,
        spacing: str | float | None = None,
        arg: str | None = None,
        bbox: str | tuple[float, float, float, float] | None = None,
        land_only: bool = True,
        max_points: int = 5_000_000,
    ) -> None:
        sp = spacing if spacing is not None else arg
        if sp is None:
            raise InvalidInput("grid sampler: give spacing='10km' or '0.5deg' (--spacing)")
        self.spacing, self.unit = parse_spacing(sp)
        self.bbox = parse_bbox(bbox) if bbox is not None else (-180.0, -90.0, 180.0, 90.0)
        self.land_only = bool(land_only)
        lat, lon = self._grid(max_points)
        if self.land_only and len(lat):
            m = _is_land(lat, lon)
            lat, lon = lat[m], lon[m]
        if not len(lat):
            raise InvalidInput(f"grid sampler: no grid point {'on land ' if self.land_only else ''}inside {self.bbox}")
        self._lat, self._lon = lat, lon

    def _grid(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        w, s, e, n = self.bbox
        width = 360.0 if e - w == 360.0 else (e - w) % 360.0
        dlat = self.spacing / _KM_PER_DEG if self.unit == "km" else self.spacing
        lats = np.arange(s + dlat / 2, n, dlat)
        out_lat, out_lon = [], []
        count = 0
        for la in lats:
            if self.unit == "km":
                c = math.cos(math.radians(la))
                dlon = self.spacing / (_KM_PER_DEG * c) if c > 1e-9 else 360.0
            else:
                dlon = self.spacing
            k = max(1, int(width // dlon)) if dlon < width else 1
            offs = (np.arange(k) + 0.5) * (width / k) if self.unit == "km" else np.arange(dlon / 2, width, dlon)
            lo = (w + offs + 180.0) % 360.0 - 180.0
            out_lat.append(np.full(len(lo), la))
            out_lon.append(lo)
            count += len(lo)
            if count > max_points:
                raise InvalidInput(
                    f"grid sampler: spacing {self.spacing}{self.unit} gives more than {max_points} "
                    "points; use a larger spacing or a bbox"
                )
        if not out_lat:
            return np.empty(0), np.empty(0)
        return np.concatenate(out_lat), np.concatenate(out_lon)

    def __len__(self) -> int:
        return len(self._lat)

    def config(self) -> dict[str, Any]:
        return {
            "sampler": self.name,
            "spacing": self.spacing,
            "unit": self.unit,
            "bbox": list(self.bbox),
            "land_only": self.land_only,
        }

    def _stream(self, rng: np.random.Generator) -> Iterator[SamplePoint]:
        order = rng.permutation(len(self._lat))
        for i in order.tolist():
            yield SamplePoint(
                round(float(self._lat[i]), 7), round(float(self._lon[i]), 7), None, {"grid_index": int(i)}
            )


def create_sampler(name: str, **kwargs: Any) -> Sampler:
    """Build a sampler by registry name; ``"grid:10km"``, ``"polygon:HR"``, ``"countries:HR:100,SI:50"`` also work."""
    return SAMPLERS.create(name, **kwargs)


def list_samplers() -> list[str]:
    """Registered sampler names."""
    return SAMPLERS.list()
