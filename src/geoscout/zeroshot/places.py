"""The places a zero-shot model chooses between: countries, admin-1 regions, or a user's own list.

Every place has an id, the names its prompts are filled with, a label point (where its
candidate is put) and member points (GeoNames populated places inside it, weighted by the
square root of their population) that say how far its probability mass reaches, for the
uncertainty radius and the expected score. Sources are the package's installed places data:
Natural Earth countries (label points ``LABEL_Y``/``LABEL_X``) and GeoNames cities1000 (the
admin-1 regions and cities of :mod:`geoscout.places.cities`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoscout.errors import InvalidInput
from geoscout.geo import haversine_km, latlon_to_xyz, validate_latlon, xyz_to_latlon

__all__ = ["MAX_PLACES_FILE_BYTES", "PlaceSet", "admin1_places", "country_places", "load_place_list", "place_set"]

MAX_PLACES_FILE_BYTES = 4 << 20


@dataclass
class PlaceSet:
    """Places to score: ``ids`` (unique), prompt ``fields`` per place, label points ``lat``/``lon``
    (degrees), ``country`` (alpha-2 or None) and member points ``member_*`` (``member_place`` indexes
    the place). ``kind`` is ``countries``, ``admin1`` or ``places`` (which prompt templates apply)."""

    kind: str
    ids: list[str]
    fields: list[dict[str, str]]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    country: list[str | None]
    member_lat: NDArray[np.float64]
    member_lon: NDArray[np.float64]
    member_weight: NDArray[np.float64]
    member_place: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.ids)

    def assign(self, lat: Any, lon: Any) -> NDArray[np.int64]:
        """Index of the place containing each point (-1: none): countries by polygon, admin-1 regions by
        GeoNames (the region of the nearest place of the point's country), a user's list by nearest place."""
        la = np.asarray(lat, dtype=np.float64)
        lo = np.asarray(lon, dtype=np.float64)
        shape = la.shape
        la, lo = la.ravel(), lo.ravel()
        if self.kind == "places":
            d = haversine_km(la[:, None], lo[:, None], self.lat[None, :], self.lon[None, :])
            return np.asarray(d.argmin(axis=1), dtype=np.int64).reshape(shape)
        index = {pid: i for i, pid in enumerate(self.ids)}
        if self.kind == "countries":
            from geoscout.places import country_of

            keys: list[Any] = list(country_of(la, lo))
        else:
            from geoscout.places import reverse_geocode

            info = reverse_geocode(la, lo)
            keys = [_admin1_id(c, a) for c, a in zip(info["country"], info["admin1"])]
        return np.array([index.get(k, -1) if k else -1 for k in keys], dtype=np.int64).reshape(shape)


def _admin1_id(country: Any, admin1: Any) -> str | None:
    return f"{country}/{admin1}" if country and admin1 else None


def _members(
    df: Any, keys: NDArray[np.object_], ids: list[str], lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Member points: the GeoNames places whose key is a place id (weight sqrt(population), at least 1),
    plus each place's label point with the weight of its smallest member (a place without GeoNames
    places is its label point alone)."""
    index = {pid: i for i, pid in enumerate(ids)}
    place = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    keep = place >= 0
    pop = df["population"].to_numpy(dtype=np.float64)[keep]
    w = np.sqrt(np.where(np.isfinite(pop) & (pop > 0), pop, 1.0))
    w = np.maximum(w, 1.0)
    own = np.full(len(ids), np.inf)
    np.minimum.at(own, place[keep], w)
    own[~np.isfinite(own)] = 1.0
    return (
        np.concatenate([df["lat"].to_numpy(dtype=np.float64)[keep], lat]),
        np.concatenate([df["lon"].to_numpy(dtype=np.float64)[keep], lon]),
        np.concatenate([w, own]),
        np.concatenate([place[keep], np.arange(len(ids), dtype=np.int64)]),
    )


def country_places(countries: list[str] | None = None) -> PlaceSet:
    """Natural Earth countries (all, or the alpha-2 codes in ``countries``), at their label points."""
    from geoscout.places import geonames_cities
    from geoscout.places.countries import country_label_points

    df = country_label_points()
    if countries:
        wanted = [c.strip().upper() for c in countries if c.strip()]
        unknown = sorted(set(wanted) - set(df["country"]))
        if unknown:
            raise InvalidInput(
                f"countries {', '.join(unknown)}: not ISO 3166-1 alpha-2 codes of Natural Earth's countries "
                "(e.g. HR, SI, US)"
            )
        df = df[df["country"].isin(wanted)].reset_index(drop=True)
    ids = df["country"].astype(str).tolist()
    lat, lon = df["lat"].to_numpy(dtype=np.float64), df["lon"].to_numpy(dtype=np.float64)
    cities = geonames_cities()
    members = _members(cities, cities["country"].to_numpy(dtype=object), ids, lat, lon)
    return PlaceSet(
        "countries",
        ids,
        [{"country": str(n)} for n in df["name"]],
        lat,
        lon,
        list(ids),
        *members,
    )


def admin1_places(countries: list[str] | None = None) -> PlaceSet:
    """GeoNames admin-1 regions (of all countries, or of the alpha-2 codes in ``countries``).

    A region's label point is the GeoNames place of the region nearest to the sqrt-population-weighted
    mean position of its places (so it lies inside the region); its id is ``CC/Region name``.
    """
    from geoscout.places import geonames_cities
    from geoscout.places.countries import country_label_points

    cities = geonames_cities()
    names = dict(zip(country_label_points()["country"], country_label_points()["name"]))
    cc = cities["country"].to_numpy(dtype=object)
    a1 = cities["admin1"].to_numpy(dtype=object)
    if countries:
        wanted = {c.strip().upper() for c in countries if c.strip()}
        unknown = sorted(wanted - set(cc.tolist()))
        if unknown:
            raise InvalidInput(f"countries {', '.join(unknown)}: no GeoNames admin-1 regions for these codes")
        sel = np.isin(cc, list(wanted))
    else:
        sel = np.ones(len(cc), dtype=bool)
    sel &= np.array([bool(a) and bool(c) for a, c in zip(a1, cc)], dtype=bool)
    keys = np.full(len(cc), None, dtype=object)
    keys[sel] = [f"{c}/{a}" for c, a in zip(cc[sel], a1[sel])]
    ids = sorted(set(keys[sel].tolist()))
    if not ids:
        raise InvalidInput("no admin-1 regions found for these countries")
    pos = {k: i for i, k in enumerate(ids)}
    place = np.array([pos[k] for k in keys[sel]], dtype=np.int64)
    xyz = latlon_to_xyz(cities["lat"].to_numpy()[sel], cities["lon"].to_numpy()[sel])
    pop = cities["population"].to_numpy(dtype=np.float64)[sel]
    w = np.sqrt(np.where(np.isfinite(pop) & (pop > 0), pop, 1.0))
    centre = np.zeros((len(ids), 3))
    np.add.at(centre, place, xyz * w[:, None])
    # the member place closest to the weighted mean (largest dot product with it)
    score = np.einsum("ij,ij->i", xyz, centre[place])
    order = np.lexsort((-score, place))
    first = np.ones(len(order), dtype=bool)
    first[1:] = place[order][1:] != place[order][:-1]
    best = order[first]  # one per place, in place order
    lat, lon = xyz_to_latlon(xyz[best])
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    country = [i.split("/", 1)[0] for i in ids]
    fields = [{"admin1": i.split("/", 1)[1], "country": names.get(c, c)} for i, c in zip(ids, country)]
    members = _members(cities, keys, ids, lat, lon)
    return PlaceSet("admin1", ids, fields, lat, lon, list(country), *members)


def load_place_list(path: str | os.PathLike[str]) -> PlaceSet:
    """A user's own places from a file: CSV with a ``name`` column (and optional ``lat``, ``lon``,
    ``country`` alpha-2 columns), or plain text with one name per line (``#`` starts a comment).

    Names without coordinates are looked up, in this order: a country (alpha-2 code or Natural Earth
    name), an admin-1 region, the most populous GeoNames place of that name (within ``country`` when
    given). Names that match nothing raise :class:`InvalidInput` listing them.
    """
    p = Path(path).expanduser()
    df, is_csv = _place_table(p)
    rows = []
    unresolved = []
    for line_no, r in enumerate(df.to_dict("records"), start=2 if is_csv else 1):  # file rows
        name = str(r.get("name", "")).strip()
        if not name:
            raise InvalidInput(f"{p}: row {line_no} has no name")
        cc = str(r.get("country", "") or "").strip().upper() or None
        lat_s, lon_s = str(r.get("lat", "") or "").strip(), str(r.get("lon", "") or "").strip()
        if lat_s or lon_s:
            try:
                la, lo = float(lat_s), float(lon_s)
                validate_latlon(np.array([la]), np.array([lo]), what=f"{p} row {line_no} ({name})")
            except ValueError as exc:
                raise InvalidInput(f"{p}: row {line_no} ({name}): bad lat/lon {lat_s!r}, {lon_s!r} ({exc})") from None
            rows.append((name, la, lo, cc))
            continue
        hit = _look_up(name, cc)
        if hit is None:
            unresolved.append(name)
        else:
            rows.append((name, hit[0], hit[1], cc or hit[2]))
    if unresolved:
        shown = ", ".join(repr(n) for n in unresolved[:10]) + (
            f" (+{len(unresolved) - 10} more)" if len(unresolved) > 10 else ""
        )
        raise InvalidInput(
            f"{p}: {len(unresolved)} place(s) not found among countries, admin-1 regions and GeoNames places: "
            f"{shown}; add lat and lon columns for them"
        )
    ids = [r[0] for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InvalidInput(f"{p}: places listed twice: {', '.join(dup)}")
    lat = np.array([r[1] for r in rows], dtype=np.float64)
    lon = np.array([r[2] for r in rows], dtype=np.float64)
    return PlaceSet(
        "places",
        ids,
        [{"place": r[0]} for r in rows],
        lat,
        lon,
        [r[3] for r in rows],
        lat.copy(),
        lon.copy(),
        np.ones(len(rows)),
        np.arange(len(rows), dtype=np.int64),
    )


def _place_table(p: Path) -> tuple[Any, bool]:
    """The places file ``p`` as a table with a ``name`` column (and whatever else a CSV has), and whether it
    was a CSV (its rows then start at file line 2); a file too big, not UTF-8, empty or unreadable is refused."""
    import pandas as pd

    if not p.is_file():
        raise InvalidInput(f"{p}: no such places file (a CSV with a name column, or one name per line)")
    size = p.stat().st_size
    if size > MAX_PLACES_FILE_BYTES:
        raise InvalidInput(f"{p}: {size:,} bytes is too big for a list of places (limit {MAX_PLACES_FILE_BYTES:,})")
    try:
        text = p.read_bytes()[:MAX_PLACES_FILE_BYTES].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InvalidInput(f"{p}: no places in the file")
    first = [c.strip().lower() for c in lines[0].split(",")]
    is_csv = p.suffix.lower() == ".csv" or "name" in first
    if is_csv:
        import io

        try:
            df = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InvalidInput(f"{p}: not a readable CSV ({exc})") from None
        df.columns = [c.strip().lower() for c in df.columns]
        if "name" not in df.columns:
            raise InvalidInput(
                f"{p}: the CSV needs a 'name' column (and optionally lat, lon, country); got {list(df.columns)}"
            )
    else:
        df = pd.DataFrame({"name": [ln.strip() for ln in lines]})
    return df, is_csv


def _look_up(name: str, country: str | None) -> tuple[float, float, str | None] | None:
    """(lat, lon, alpha-2) of a country, admin-1 region or GeoNames place called ``name``, or None."""
    from geoscout.places import geonames_cities
    from geoscout.places.countries import country_label_points

    key = name.strip().casefold()
    countries = country_label_points()
    for r in countries.itertuples(index=False):
        if (country in (None, r.country)) and key in (str(r.country).casefold(), str(r.name).casefold()):
            return float(r.lat), float(r.lon), str(r.country)
    cities = geonames_cities()
    in_country = cities["country"] == country if country else np.ones(len(cities), dtype=bool)
    regions = cities[in_country & (cities["admin1"].str.casefold() == key)]
    if len(regions):
        codes = regions["country"].unique()
        ps = admin1_places(list(codes))
        wanted = {f"{c}/{a}" for c, a in zip(regions["country"], regions["admin1"])}
        for i, pid in enumerate(ps.ids):
            if pid in wanted:
                return float(ps.lat[i]), float(ps.lon[i]), ps.country[i]
    named = cities[in_country & (cities["name"].str.casefold() == key)]
    if len(named):
        best = named.sort_values("population", ascending=False, na_position="last").iloc[0]
        return float(best["lat"]), float(best["lon"]), str(best["country"]) or None
    return None


def place_set(spec: str | os.PathLike[str] | PlaceSet = "countries") -> PlaceSet:
    """``countries``, ``countries:HR,SI,BA``, ``admin1``, ``admin1:HR`` or the path of a places file."""
    if isinstance(spec, PlaceSet):
        return spec
    text = str(spec).strip()
    head, _, arg = text.partition(":")
    codes = [c for c in arg.split(",") if c.strip()] if arg else None
    if head in ("countries", "country"):
        return country_places(codes)
    if head in ("admin1", "regions"):
        return admin1_places(codes)
    if Path(text).expanduser().is_file() or os.sep in text or text.endswith((".csv", ".txt")):
        return load_place_list(text)
    raise InvalidInput(
        f"places {text!r}: expected countries, countries:HR,SI, admin1, admin1:HR or a places file (CSV/text)"
    )
