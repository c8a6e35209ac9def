"""Imagery providers: Google Street View Static API and the Mapillary Graph API v4.

A provider answers two questions: *is there imagery near (lat, lon)?* (:meth:`Provider.locate`,
a :class:`Location` or ``None``) and *give me view k of that location* (:meth:`Provider.fetch`, JPEG
bytes). Base URLs are parameters, so tests point them at a server on 127.0.0.1. Keys are held by
the provider object, added to requests at send time, and never stored in a :class:`Location`
or :class:`View`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

from geoscout._registry import Registry
from geoscout.errors import InvalidInput

from .http import AccessDenied, PoliteClient, RequestFailed, Retry, check_jpeg
from .keys import load_key

__all__ = [
    "MAPILLARY_URL",
    "PROVIDERS",
    "STREETVIEW_URL",
    "Location",
    "MapillaryProvider",
    "Provider",
    "Skip",
    "StreetViewProvider",
    "View",
    "create_provider",
    "list_providers",
]

PROVIDERS: Registry[Provider] = Registry("provider", group="geoscout.providers")

STREETVIEW_URL = "https://maps.googleapis.com/maps/api/streetview"
MAPILLARY_URL = "https://graph.mapillary.com"


@dataclass
class Location:
    """A place with imagery: one panorama (Street View) or one photo (Mapillary)."""

    location_id: str
    lat: float
    lon: float
    captured_at: str | None
    license: str
    attribution: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class View:
    """One image to download at a location; ``params`` never contain a key."""

    view: int
    heading: float | None
    params: dict[str, Any]


@dataclass
class Skip:
    """No usable imagery at a point; ``reason`` says why (``no_imagery``, ``user_upload``...)."""

    reason: str
    detail: str = ""


class Provider:
    """Base class: subclasses set ``name``, ``source``, ``license``, ``billable_kinds`` and ``price_per_1000``."""

    name = "provider"
    source = ""
    license = ""
    #: request kinds that cost money
    billable_kinds: tuple[str, ...] = ()
    #: US dollars per 1000 billable requests
    price_per_1000 = 0.0

    def __init__(self, key: str) -> None:
        if not key:
            raise InvalidInput(f"{self.name}: an API key is required")
        self._key = key

    @property
    def secrets(self) -> list[str]:
        """Values to redact from every message."""
        return [self._key]

    def config(self) -> dict[str, Any]:
        """JSON-able options that shape the collected images (compared when a job resumes); no key."""
        return {"provider": self.name}

    def locate(self, http: PoliteClient, lat: float, lon: float) -> Location | Skip:
        raise NotImplementedError

    def views(self, loc: Location, rng: np.random.Generator) -> list[View]:
        raise NotImplementedError

    def fetch(self, http: PoliteClient, loc: Location, view: View) -> bytes:
        raise NotImplementedError

    def images_per_location(self) -> int:
        return 1

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


def _parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, tuple):
        w, h = size
    else:
        try:
            w, h = (int(v) for v in str(size).lower().split("x"))
        except ValueError:
            raise InvalidInput(f"size {size!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x640") from None
    if not (1 <= w <= 640 and 1 <= h <= 640):
        raise InvalidInput(f"size {size!r}: Street View Static images are at most 640x640 pixels")
    return w, h


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise Retry(f"{what}: response is not JSON ({len(resp.content)} bytes)") from None


@PROVIDERS.register("streetview", help="Google Street View Static API (metadata free, images billed)")
class StreetViewProvider(Provider):
    """Google Street View Static API.

    The free metadata endpoint is asked first (``location``, ``radius`` metres, ``source``); a panorama
    whose copyright is not Google's (a user upload, often indoors) is skipped unless ``allow_user_uploads``.
    Then ``headings`` views (``fov`` and ``pitch`` degrees, ``size`` pixels) are fetched by ``pano`` id,
    evenly spaced from a random start heading.
    """

    name = "streetview"
    source = "google-streetview"
    license = "Google Maps Platform Terms of Service (no redistribution)"
    billable_kinds = ("image",)
    price_per_1000 = 7.0

    def __init__(
        self,
        key: str | None = None,
        *,
        base_url: str = STREETVIEW_URL,
        headings: int = 4,
        size: str | tuple[int, int] = "640x640",
        fov: float = 90.0,
        pitch: float = 0.0,
        radius: float = 50.0,
        source: str = "outdoor",
        allow_user_uploads: bool = False,
        random_start: bool = True,
        keys_file: str | None = None,
    ) -> None:
        super().__init__(key or load_key("streetview", keys_file=keys_file))
        if not 1 <= int(headings) <= 36:
            raise InvalidInput(f"headings={headings}: choose 1 to 36 views per panorama")
        if not 10 <= float(fov) <= 120:
            raise InvalidInput(f"fov={fov}: Street View accepts a field of view of 10 to 120 degrees")
        if not -90 <= float(pitch) <= 90:
            raise InvalidInput(f"pitch={pitch}: must be within -90..90 degrees")
        if not float(radius) > 0:
            raise InvalidInput(f"radius={radius}: the search radius must be positive metres")
        if source not in ("outdoor", "default"):
            raise InvalidInput(f"source={source!r}: Street View accepts 'outdoor' or 'default'")
        self.base_url = base_url.rstrip("/")
        self.headings, self.fov, self.pitch = int(headings), float(fov), float(pitch)
        self.size = "x".join(str(v) for v in _parse_size(size))
        self.radius, self.pano_source = float(radius), source
        self.allow_user_uploads, self.random_start = bool(allow_user_uploads), bool(random_start)

    def config(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "headings": self.headings,
            "size": self.size,
            "fov": self.fov,
            "pitch": self.pitch,
            "radius": self.radius,
            "source": self.pano_source,
            "allow_user_uploads": self.allow_user_uploads,
            "random_start": self.random_start,
        }

    def images_per_location(self) -> int:
        return self.headings

    def locate(self, http: PoliteClient, lat: float, lon: float) -> Location | Skip:
        params = {
            "location": f"{lat:.6f},{lon:.6f}",
            "radius": f"{self.radius:g}",
            "source": self.pano_source,
            "key": self._key,
        }
        what = f"Street View metadata at {lat:.5f},{lon:.5f}"

        def validate(resp: httpx.Response) -> Location | Skip:
            body = _json(resp, what)
            status = str(body.get("status", "")) if isinstance(body, dict) else ""
            msg = str(body.get("error_message", "")) if isinstance(body, dict) else ""
            if status == "OK":
                return self._location(body, what)
            if status in ("ZERO_RESULTS", "NOT_FOUND"):
                return Skip("no_imagery", status)
            if status in ("OVER_QUERY_LIMIT", "UNKNOWN_ERROR"):
                raise Retry(f"status {status}")
            if status == "REQUEST_DENIED":
                raise AccessDenied(
                    http.redact(
                        "Street View refused the API key (REQUEST_DENIED"
                        + (f": {msg}" if msg else "")
                        + "). Check GOOGLE_MAPS_API_KEY or keys.toml, that the "
                        "'Street View Static API' is enabled for this key and that billing is set up."
                    )
                )
            if status == "INVALID_REQUEST":
                raise AccessDenied(
                    http.redact(
                        f"Street View rejected the request as INVALID_REQUEST{': ' + msg if msg else ''}; "
                        "check --radius/--size/--fov/--pitch"
                    )
                )
            raise Retry(f"unexpected metadata status {status!r}")

        return http.get(f"{self.base_url}/metadata", params=params, kind="metadata", what=what, validate=validate)

    def _location(self, body: dict[str, Any], what: str) -> Location | Skip:
        pano = body.get("pano_id")
        loc = body.get("location") or {}
        try:
            plat, plon = float(loc["lat"]), float(loc["lng"])
        except (KeyError, TypeError, ValueError):
            raise Retry(f"{what}: status OK without a location") from None
        if not pano:
            raise Retry(f"{what}: status OK without a pano_id")
        copyright_ = str(body.get("copyright") or "")
        if not self.allow_user_uploads and "google" not in copyright_.lower():
            return Skip("user_upload", copyright_)
        date = body.get("date")  # "YYYY-MM"
        return Location(
            location_id=str(pano),
            lat=plat,
            lon=plon,
            captured_at=str(date) if date else None,
            license=self.license,
            attribution=copyright_ or "© Google",
            extra={"pano_id": str(pano), "copyright": copyright_},
        )

    def views(self, loc: Location, rng: np.random.Generator) -> list[View]:
        start = float(rng.uniform(0.0, 360.0)) if self.random_start else 0.0
        step = 360.0 / self.headings
        out = []
        for k in range(self.headings):
            heading = round((start + k * step) % 360.0, 2)
            out.append(
                View(
                    k,
                    heading,
                    {
                        "pano": loc.location_id,
                        "size": self.size,
                        "heading": f"{heading:g}",
                        "fov": f"{self.fov:g}",
                        "pitch": f"{self.pitch:g}",
                    },
                )
            )
        return out

    def fetch(self, http: PoliteClient, loc: Location, view: View) -> bytes:
        what = f"Street View image {loc.location_id} heading {view.heading:g}"
        params = {**view.params, "return_error_code": "true", "key": self._key}

        def validate(resp: httpx.Response) -> bytes:
            data = resp.content
            check_jpeg(data, what)
            return data

        return http.get(self.base_url, params=params, kind="image", what=what, validate=validate)


_MLY_SIZES = (256, 1024, 2048)


@PROVIDERS.register("mapillary", help="Mapillary Graph API v4 (free; CC-BY-SA 4.0 imagery)")
class MapillaryProvider(Provider):
    """Mapillary Graph API v4: the image closest to a point within ``radius`` metres, as a thumbnail.

    ``thumb`` is the thumbnail width (256, 1024 or 2048 pixels, or ``"original"``). 360° panoramas are
    skipped unless ``allow_panos``. Licence CC-BY-SA 4.0; the creator is recorded for attribution.
    The token is sent in the ``Authorization: OAuth`` header, never in a URL.
    """

    name = "mapillary"
    source = "mapillary"
    license = "CC-BY-SA-4.0"
    billable_kinds = ()
    price_per_1000 = 0.0

    def __init__(
        self,
        key: str | None = None,
        *,
        base_url: str = MAPILLARY_URL,
        radius: float = 50.0,
        thumb: int | str = 1024,
        allow_panos: bool = False,
        limit: int = 50,
        keys_file: str | None = None,
    ) -> None:
        super().__init__(key or load_key("mapillary", keys_file=keys_file))
        if str(thumb) != "original" and int(thumb) not in _MLY_SIZES:
            raise InvalidInput(f"thumb={thumb}: Mapillary thumbnails are 256, 1024, 2048 or 'original'")
        if not 0 < float(radius) <= 2000:  # the Graph API refuses large bboxes
            raise InvalidInput(f"radius={radius}: choose up to 2000 metres for Mapillary")
        self.base_url = base_url.rstrip("/")
        self.radius, self.allow_panos, self.limit = float(radius), bool(allow_panos), int(limit)
        self.thumb = "original" if str(thumb) == "original" else int(thumb)

    @property
    def thumb_field(self) -> str:
        return f"thumb_{self.thumb}_url"

    def config(self) -> dict[str, Any]:
        return {"provider": self.name, "radius": self.radius, "thumb": self.thumb, "allow_panos": self.allow_panos}

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self._key}"}

    def locate(self, http: PoliteClient, lat: float, lon: float) -> Location | Skip:
        from geoscout.geo import haversine_km

        dlat = self.radius / 111_195.0
        dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
        bbox = f"{lon - dlon:.6f},{lat - dlat:.6f},{lon + dlon:.6f},{lat + dlat:.6f}"
        fields = f"id,geometry,captured_at,compass_angle,creator,is_pano,{self.thumb_field}"
        what = f"Mapillary images near {lat:.5f},{lon:.5f}"

        def validate(resp: httpx.Response) -> Location | Skip:
            body = _json(resp, what)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise Retry(f"{what}: no 'data' list in the response")
            best, best_d = None, math.inf
            for item in data:
                try:
                    ilon, ilat = (float(v) for v in item["geometry"]["coordinates"][:2])
                except (KeyError, TypeError, ValueError):
                    continue
                if item.get("is_pano") and not self.allow_panos:
                    continue
                if not item.get(self.thumb_field):
                    continue
                d = float(haversine_km(lat, lon, ilat, ilon)) * 1000.0
                if d <= self.radius and d < best_d:
                    best, best_d = (item, ilat, ilon), d
            if best is None:
                return Skip("no_imagery", f"{len(data)} images in the box, none usable within {self.radius:g} m")
            item, ilat, ilon = best
            creator = item.get("creator") or {}
            username = str(creator.get("username") or creator.get("id") or "unknown")
            captured = item.get("captured_at")
            captured_iso = None
            if isinstance(captured, (int, float)):
                captured_iso = datetime.fromtimestamp(captured / 1000.0, tz=UTC).isoformat()
            elif captured:
                captured_iso = str(captured)
            heading = item.get("compass_angle")
            return Location(
                location_id=str(item["id"]),
                lat=ilat,
                lon=ilon,
                captured_at=captured_iso,
                license=self.license,
                attribution=f"© {username}, Mapillary, CC BY-SA 4.0",
                extra={
                    "mapillary_image_id": str(item["id"]),
                    "creator": username,
                    "heading": float(heading) % 360.0 if isinstance(heading, (int, float)) else None,
                    "thumb_url": str(item[self.thumb_field]),
                    "distance_m": round(best_d, 2),
                },
            )

        return http.get(
            f"{self.base_url}/images",
            kind="metadata",
            what=what,
            validate=validate,
            params={"fields": fields, "bbox": bbox, "limit": str(self.limit)},
            headers=self._headers(),
        )

    def views(self, loc: Location, rng: np.random.Generator) -> list[View]:
        return [View(0, loc.extra.get("heading"), {"image_id": loc.location_id})]

    def fetch(self, http: PoliteClient, loc: Location, view: View) -> bytes:
        what = f"Mapillary thumbnail {loc.location_id}"

        def validate(resp: httpx.Response) -> bytes:
            check_jpeg(resp.content, what)
            return resp.content

        url = loc.extra.get("thumb_url")
        if url:
            try:  # the CDN URL is signed and expires; on a 4xx ask the Graph API for a fresh one
                return http.get(str(url), kind="image", what=what, validate=validate, deny_statuses=())
            except RequestFailed as exc:
                if exc.status is None:
                    raise

        def fresh(resp: httpx.Response) -> str:
            body = _json(resp, what)
            new = body.get(self.thumb_field) if isinstance(body, dict) else None
            if not new:
                raise RequestFailed(f"{what}: the Graph API returned no {self.thumb_field}")
            return str(new)

        new_url = http.get(
            f"{self.base_url}/{loc.location_id}",
            kind="metadata",
            what=what,
            validate=fresh,
            params={"fields": self.thumb_field},
            headers=self._headers(),
        )
        loc.extra["thumb_url"] = new_url
        return http.get(new_url, kind="image", what=what, validate=validate, deny_statuses=())


def create_provider(name: str, **kwargs: Any) -> Provider:
    """Build a provider by registry name (``streetview``, ``mapillary``) with its options."""
    return PROVIDERS.create(name, **kwargs)


def list_providers() -> list[str]:
    """Registered provider names."""
    return PROVIDERS.list()
