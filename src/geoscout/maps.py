"""Offline maps: PNG (matplotlib, Agg) and SVG/HTML (plain text), no tile server, no CDN.

Country outlines come from :func:`geoscout.places.world_outlines` (Natural Earth, shipped
by a PyPI package), simplified to the drawing scale and cached. The SVG uses an
equirectangular projection with a standard parallel at the view's centre latitude
(x = lon·cos φ0, y = lat), so a zoomed view keeps local shapes; the world view has φ0 = 0.

- :func:`world_map_png` — points and great-circle lines coloured by a value (error maps).
- :func:`prediction_map_svg` — one prediction: outlines, probability heat map, numbered
  top-k markers with ``<title>`` tooltips, the uncertainty circle; auto-zoom.
- :func:`prediction_map_html` — a self-contained page (inline SVG + table) per prediction.
- :func:`prediction_map_png` — the same content as a PNG (for ``geoscout locate --map x.png``).
"""

from __future__ import annotations

import functools
import html
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._io import atomic_path, atomic_write_text
from .errors import GeoscoutError, InvalidInput
from .geo import destination_point, haversine_km, initial_bearing_deg, spherical_mean, validate_latlon, wrap_longitude
from .types import Prediction

__all__ = [
    "View",
    "great_circle_segments",
    "prediction_map_html",
    "prediction_map_png",
    "prediction_map_svg",
    "world_map_png",
]

# colours
_OCEAN = "#dcebf5"
_LAND = "#f3f0e8"
_BORDER = "#9a968c"
_RADIUS = "#1f5fbf"
# YlOrRd-like ramp for probabilities (low -> high)
_RAMP = np.array([[255, 237, 160], [254, 178, 76], [253, 141, 60], [240, 59, 32], [189, 0, 38]], dtype=np.float64)


def _ramp(v: NDArray[np.float64]) -> list[str]:
    """Hex colours for values in [0, 1] on the yellow-orange-red ramp."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(np.floor(v).astype(int), len(_RAMP) - 2)
    f = (v - i)[:, None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return ["#{:02x}{:02x}{:02x}".format(*tuple(round(c) for c in row)) for row in rgb]


# --------------------------------------------------------------------------- geometry helpers


def great_circle_segments(lat1: float, lon1: float, lat2: float, lon2: float, n: int = 64) -> list[NDArray[np.float64]]:
    """The great-circle arc from point 1 to point 2 as (k, 2) arrays of (lon, lat) degrees.

    The arc is split where it crosses the antimeridian so each piece draws as a
    straight-ish polyline on an equirectangular map.
    """
    d = float(haversine_km(lat1, lon1, lat2, lon2))
    if d == 0.0:
        return [np.array([[lon1, lat1], [lon2, lat2]], dtype=np.float64)]
    brg = float(initial_bearing_deg(lat1, lon1, lat2, lon2))
    steps = max(2, min(n, int(d / 50.0) + 2))
    la, lo = destination_point(lat1, lon1, brg, np.linspace(0.0, d, steps))
    la[0], lo[0], la[-1], lo[-1] = lat1, wrap_longitude(lon1), lat2, wrap_longitude(lon2)
    return _split_antimeridian(lo, la)


def _split_antimeridian(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """Cut a (lon, lat) polyline where it jumps across ±180°, adding the crossing point on both edges."""
    parts: list[NDArray[np.float64]] = []
    cur_lon, cur_lat = [float(lon[0])], [float(lat[0])]
    for i in range(1, len(lon)):
        a, b = float(lon[i - 1]), float(lon[i])
        if abs(b - a) > 180.0:
            edge = 180.0 if a > 0 else -180.0
            b_unwrapped = b + (360.0 if a > 0 else -360.0)
            t = (edge - a) / (b_unwrapped - a)
            mid_lat = float(lat[i - 1] + t * (lat[i] - lat[i - 1]))
            cur_lon.append(edge)
            cur_lat.append(mid_lat)
            parts.append(np.column_stack([cur_lon, cur_lat]))
            cur_lon, cur_lat = [-edge], [mid_lat]
        cur_lon.append(b)
        cur_lat.append(float(lat[i]))
    parts.append(np.column_stack([cur_lon, cur_lat]))
    return parts


def _geodesic_circle(
    lat: float, lon: float, radius_km: float, n: int = 96
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lat, lon) of a circle of ``radius_km`` around a point (unwrapped longitudes, no jump)."""
    la, lo = destination_point(lat, lon, np.linspace(0.0, 360.0, n, endpoint=False), radius_km)
    lo = lon + (((lo - lon) + 180.0) % 360.0 - 180.0)  # keep continuous around the centre
    return la, lo


def _as_points(points: Any, what: str) -> NDArray[np.float64]:
    if points is None:
        return np.zeros((0, 2))
    a = np.asarray(points, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, 2))
    if a.ndim != 2 or a.shape[1] != 2:
        raise InvalidInput(f"{what} must be an (N, 2) array of (lat, lon) degrees, got shape {a.shape}")
    validate_latlon(a[:, 0], a[:, 1], what=what)
    return a


# --------------------------------------------------------------------------- outlines


@functools.lru_cache(maxsize=8)
def _outlines(tolerance_deg: float) -> tuple[tuple[str, Any], ...]:
    from .places import world_outlines

    return tuple(world_outlines(tolerance_deg))


def _rings(geom: Any) -> list[NDArray[np.float64]]:
    """Exterior and interior rings of a (Multi)Polygon as (k, 2) lon/lat arrays."""
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty or not hasattr(poly, "exterior"):
            continue
        out.append(np.asarray(poly.exterior.coords))
        out.extend(np.asarray(r.coords) for r in poly.interiors)
    return out


@functools.lru_cache(maxsize=4)
def _world_rings(tolerance_deg: float) -> tuple[tuple[str, tuple[NDArray[np.float64], ...]], ...]:
    return tuple((iso, tuple(_rings(g))) for iso, g in _outlines(tolerance_deg))


@functools.lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    try:
        from .places import country_polygons

        return {c.iso2: c.name for c in country_polygons()}
    except Exception:  # names are a nicety for tooltips
        return {}


def _tolerance_for(deg_per_px: float) -> float:
    for tol in (0.5, 0.2, 0.1, 0.05, 0.02, 0.01):
        if tol <= deg_per_px * 3.0:  # about 2-3 px: finer detail does not show on a map this size
            return tol
    return 0.005


# --------------------------------------------------------------------------- PNG


def _error_cmap() -> Any:
    """``plasma`` without its pale yellow end, so long lines stay visible on the light map."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["plasma"](np.linspace(0.0, 0.82, 256)), name="geoscout_error")


def world_map_png(
    path: str | os.PathLike[str],
    *,
    points: ArrayLike | None = None,
    lines: ArrayLike | None = None,
    line_values: ArrayLike | None = None,
    extra_points: ArrayLike | None = None,
    title: str | None = None,
    value_label: str = "km",
    extent: tuple[float, float, float, float] | None = None,
    width_in: float = 12.0,
    dpi: int = 110,
) -> Path:
    """Draw a world map PNG atomically at ``path`` and return it.

    ``points``: (N, 2) lat/lon drawn as dots; ``lines``: (M, 4) rows ``lat1, lon1, lat2, lon2``
    drawn as great-circle arcs (ending in a small cross), coloured by ``line_values`` on a log
    scale (e.g. error in km) with a colour bar; ``extra_points``: hollow markers (e.g.
    unanswered images). ``extent`` = (lon_min, lon_max, lat_min, lat_max), default the world.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    pts = _as_points(points, "points")
    extra = _as_points(extra_points, "extra_points")
    ln = np.zeros((0, 4)) if lines is None else np.asarray(lines, dtype=np.float64).reshape(-1, 4)
    if ln.size:
        validate_latlon(ln[:, [0, 2]], ln[:, [1, 3]], what="lines")
    vals = None if line_values is None else np.asarray(line_values, dtype=np.float64).ravel()
    if vals is not None and vals.size != len(ln):
        raise InvalidInput(f"line_values has {vals.size} values for {len(ln)} lines")
    lon0, lon1, lat0, lat1 = extent or (-180.0, 180.0, -90.0, 90.0)

    fig = Figure(figsize=(width_in, width_in * (lat1 - lat0) / (lon1 - lon0) + 0.9), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.1, 0.96, 0.82))
    ax.set_facecolor(_OCEAN)
    rings = [r for _, rs in _world_rings(0.1) for r in rs]
    ax.add_collection(PolyCollection(rings, facecolors=_LAND, edgecolors=_BORDER, linewidths=0.35, zorder=1))

    if len(ln):
        _draw_arcs(fig, ax, ln, vals, value_label)
    if len(pts):
        ax.scatter(pts[:, 1], pts[:, 0], s=9, c="#111111", edgecolors="white", linewidths=0.3, zorder=5, label="truth")
    if len(extra):
        ax.scatter(
            extra[:, 1],
            extra[:, 0],
            s=22,
            facecolors="none",
            edgecolors="#d35400",
            linewidths=0.9,
            zorder=5,
            label="no answer",
        )
    if len(pts) or len(extra):
        ax.legend(loc="lower left", fontsize=8, framealpha=0.8)
    ax.set_xlim(lon0, lon1)
    ax.set_ylim(lat0, lat1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _draw_arcs(fig: Any, ax: Any, ln: NDArray[np.float64], vals: NDArray[np.float64] | None, value_label: str) -> None:
    """Great-circle arcs ``lat1, lon1, lat2, lon2`` ending in a cross; coloured on a log scale by ``vals``
    (with a colour bar labelled ``value_label``), else red."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    segs: list[NDArray[np.float64]] = []
    seg_vals: list[float] = []
    for j, (a, b, c, d) in enumerate(ln):
        for s in great_circle_segments(a, b, c, d):
            segs.append(s)
            seg_vals.append(float(vals[j]) if vals is not None else 1.0)
    if vals is not None:
        lo_v = max(1.0, float(np.nanmin(vals)) if np.isfinite(vals).any() else 1.0)
        hi_v = max(lo_v * 10.0, float(np.nanmax(vals)) if np.isfinite(vals).any() else 20000.0)
        norm = LogNorm(vmin=min(lo_v, 1.0), vmax=max(hi_v, 20000.0))
        cmap = _error_cmap()
        lc = LineCollection(segs, cmap=cmap, norm=norm, linewidths=0.9, alpha=0.85, zorder=3)
        lc.set_array(np.clip(np.asarray(seg_vals), norm.vmin, None))
        ax.add_collection(lc)
        cb = fig.colorbar(lc, ax=ax, orientation="horizontal", fraction=0.04, pad=0.02, aspect=50)
        cb.set_label(value_label)
        ax.scatter(
            ln[:, 3],
            ln[:, 2],
            s=10,
            marker="x",
            c=np.clip(vals, norm.vmin, None),
            cmap=cmap,
            norm=norm,
            linewidths=0.8,
            zorder=4,
        )
    else:
        ax.add_collection(LineCollection(segs, colors="#c0392b", linewidths=0.9, alpha=0.85, zorder=3))
        ax.scatter(ln[:, 3], ln[:, 2], s=10, marker="x", c="#c0392b", linewidths=0.8, zorder=4)


# --------------------------------------------------------------------------- SVG


@dataclass(frozen=True)
class View:
    """A rectangular map view: longitudes may run past ±180 (unwrapped), φ0 is the standard parallel."""

    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float
    width: int
    height: int

    @property
    def k(self) -> float:
        return math.cos(math.radians(max(-60.0, min(60.0, (self.lat_min + self.lat_max) / 2.0))))

    @property
    def scale(self) -> float:
        """Pixels per degree of latitude."""
        return self.height / (self.lat_max - self.lat_min)

    def xy(self, lat: ArrayLike, lon: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        la = np.asarray(lat, dtype=np.float64)
        lo = np.asarray(lon, dtype=np.float64)
        return (lo - self.lon_min) * self.k * self.scale, (self.lat_max - la) * self.scale

    @property
    def is_world(self) -> bool:
        return self.lon_max - self.lon_min >= 359.0

    @classmethod
    def world(cls, width: int, height: int) -> View:
        # keep 2:1 with φ0 = 0 by trimming latitudes if the box is not 2:1
        lat_span = min(180.0, 360.0 * height / width)
        lat_max = min(90.0, lat_span / 2.0 + 5.0) if lat_span < 180.0 else 90.0
        return cls(-180.0, 180.0, lat_max - lat_span, lat_max, width, height)

    @classmethod
    def fit(
        cls,
        lat: NDArray[np.float64],
        lon: NDArray[np.float64],
        width: int,
        height: int,
        *,
        min_span_deg: float = 6.0,
        pad: float = 0.15,
    ) -> View:
        """The smallest view of the given aspect holding the points (longitudes unwrapped around their mean)."""
        clat, mean_lon = spherical_mean(lat, lon)
        clon = float(mean_lon)
        ulon = clon + (((np.asarray(lon) - clon) + 180.0) % 360.0 - 180.0)
        lo0, lo1 = float(ulon.min()), float(ulon.max())
        la0, la1 = float(np.min(lat)), float(np.max(lat))
        if lo1 - lo0 > 200.0 or la1 - la0 > 120.0:
            return cls.world(width, height)
        k = math.cos(math.radians(max(-60.0, min(60.0, (la0 + la1) / 2.0))))
        span_lat = max(la1 - la0, min_span_deg / 2.0) * (1 + 2 * pad)
        span_lon = max(lo1 - lo0, min_span_deg) * (1 + 2 * pad)
        # match the aspect: width/height = span_lon * k / span_lat
        if span_lon * k / span_lat < width / height:
            span_lon = span_lat * width / height / k
        else:
            span_lat = span_lon * k * height / width
        if span_lat >= 170.0 or span_lon >= 350.0:
            return cls.world(width, height)
        mid_lat, mid_lon = (la0 + la1) / 2.0, (lo0 + lo1) / 2.0
        lat_min = max(-90.0, min(90.0 - span_lat, mid_lat - span_lat / 2.0))
        return cls(mid_lon - span_lon / 2.0, mid_lon + span_lon / 2.0, lat_min, lat_min + span_lat, width, height)


def _path_d(view: View, rings: Sequence[NDArray[np.float64]]) -> str:
    parts = []
    for r in rings:
        x, y = view.xy(r[:, 1], r[:, 0])
        xi = np.round(x)  # whole pixels: outlines are 1 px lines; half the bytes of 0.1 px and fewer points
        yi = np.round(y)
        keep = np.ones(len(xi), dtype=bool)
        keep[1:] = (np.diff(xi) != 0) | (np.diff(yi) != 0)
        xi, yi = xi[keep], yi[keep]
        if len(xi) < 3:
            continue
        coords = " ".join(f"{a:g},{b:g}" for a, b in zip(xi, yi))
        parts.append(f"M{coords}Z")
    return "".join(parts)


@functools.lru_cache(maxsize=8)
def _world_svg_paths(width: int, height: int) -> str:
    """The country outlines of the world view (cached: the same for every prediction)."""
    view = View.world(width, height)
    return _outline_paths(view)


def _outline_paths(view: View) -> str:
    import shapely

    deg_per_px = 1.0 / view.scale
    tol = _tolerance_for(deg_per_px)
    names = _country_names()
    out = []
    offsets = (
        [0.0]
        if view.is_world
        else [o for o in (-360.0, 0.0, 360.0) if view.lon_min < 180.0 + o and view.lon_max > -180.0 + o]
    )
    for iso, geom in _outlines(tol):
        rings: list[NDArray[np.float64]] = []
        for off in offsets:
            g = geom
            if not view.is_world:
                g = shapely.clip_by_rect(
                    geom, view.lon_min - off - 1, view.lat_min - 1, view.lon_max - off + 1, view.lat_max + 1
                )
                if g.is_empty:
                    continue
            rings.extend(r + np.array([off, 0.0]) if off else r for r in _rings(g))
        if not rings:
            continue
        d = _path_d(view, rings)
        if not d:
            continue
        label = html.escape(names.get(iso, iso) or "")
        out.append(f'<path d="{d}"><title>{label}</title></path>')
    return "".join(out)


def _place_label(c: Any) -> str:
    bits = [
        b
        for b in (
            getattr(c, "city", None),
            getattr(c, "admin1", None),
            getattr(c, "country_name", None) or getattr(c, "country", None),
        )
        if b
    ]
    return ", ".join(dict.fromkeys(bits)) or "open sea / unknown place"


def _heat_arrays(
    heat: Any, prediction: Prediction
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None:
    if heat is None:
        heat = getattr(prediction, "heatmap", None)
        if not heat:
            return None
        a = np.asarray(heat, dtype=np.float64).reshape(-1, 3)
        return a[:, 0], a[:, 1], a[:, 2]
    if isinstance(heat, (tuple, list)) and len(heat) == 3 and not np.isscalar(heat[0]):
        la, lo, p = (np.asarray(h, dtype=np.float64).ravel() for h in heat)
    else:
        a = np.asarray(heat, dtype=np.float64).reshape(-1, 3)
        la, lo, p = a[:, 0], a[:, 1], a[:, 2]
    if not (la.size == lo.size == p.size):
        raise InvalidInput(f"heat: lat, lon and prob must have the same length, got {la.size}, {lo.size}, {p.size}")
    if la.size:
        validate_latlon(la, lo, what="heat")
    return la, lo, p


def prediction_map_svg(
    prediction: Prediction,
    *,
    heat: Any = None,
    width: int = 960,
    height: int = 480,
    zoom: str | bool = "auto",
    top_k: int | None = None,
    max_heat: int = 1500,
    title: str | None = None,
    outlines_ref: str | None = None,
) -> str:
    """An SVG map of one prediction (a string; parse it with any XML parser).

    Draws country outlines, the probability ``heat`` map (``(lat, lon, prob)`` arrays, an
    (N, 3) array, or by default ``prediction.heatmap``) as circles coloured by probability,
    the ~68 % uncertainty circle (``prediction.radius_km``) around the answered point, and
    numbered markers for the ``top_k`` candidates (all by default) with ``<title>``
    tooltips naming the place, probability and coordinates. ``zoom="auto"`` (or True)
    fits the view to the candidates and the radius circle; ``"world"`` (or False) shows
    the whole world. A failed prediction gives a world map with the error written on it.
    ``outlines_ref``: the id of a ``<g>`` holding :func:`world_outlines_svg` elsewhere in the same
    HTML page; a world view then ``<use>``-s it instead of repeating the outlines.
    """
    if not isinstance(prediction, Prediction):
        raise InvalidInput(f"prediction_map_svg: expected a geoscout.types.Prediction, got {type(prediction).__name__}")
    width, height = int(width), int(height)
    if width < 50 or height < 50:
        raise InvalidInput(f"prediction_map_svg: width and height must be >= 50 px, got {width}x{height}")
    cands = list(prediction.candidates[: top_k if top_k else None])
    heat_arr = _heat_arrays(heat, prediction)
    radius = prediction.radius_km if prediction.radius_km and math.isfinite(prediction.radius_km) else None

    if zoom not in (True, False, "auto", "world"):
        raise InvalidInput(f"prediction_map_svg: zoom must be 'auto' or 'world', got {zoom!r}")
    view = _svg_view(prediction, cands, radius, zoom is True or zoom == "auto", width, height)

    esc = html.escape
    label = title or (
        f"Where was {prediction.image_id} taken?" if prediction.ok else f"{prediction.image_id}: no answer"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(label)}" font-family="system-ui, sans-serif">',
        f"<title>{esc(label)}</title>",
        f'<rect class="ocean" x="0" y="0" width="{width}" height="{height}" fill="{_OCEAN}"/>',
        f'<g class="land" fill="{_LAND}" stroke="{_BORDER}" stroke-width="0.6" stroke-linejoin="round">',
        (f'<use href="#{esc(outlines_ref)}"/>' if outlines_ref else _world_svg_paths(width, height))
        if view.is_world
        else _outline_paths(view),
        "</g>",
    ]
    if heat_arr is not None and heat_arr[0].size:
        out.extend(_svg_heat(view, heat_arr, max_heat, width, height))
    if cands and radius:
        out.append(_svg_radius(view, prediction.answer, radius))
    if cands:
        out.extend(_svg_markers(view, cands))
    else:
        msg = prediction.error.message if prediction.error is not None else "no candidates"
        out.append(
            f'<text class="error" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="16" '
            f'fill="#c0392b">{esc(f"{prediction.image_id}: {msg}")}</text>'
        )
    out.append(_scale_bar(view))
    out.append("</svg>")
    return "\n".join(out)


def _svg_view(
    prediction: Prediction, cands: list[Any], radius: float | None, auto: bool, width: int, height: int
) -> View:
    """The world, or (``auto``) the smallest view holding the candidates and the radius circle around the answer."""
    if not (auto and cands):
        return View.world(width, height)
    plat = np.array([c.lat for c in cands])
    plon = np.array([c.lon for c in cands])
    if radius:
        clat, clon = _geodesic_circle(prediction.answer.lat, prediction.answer.lon, min(radius, 5000.0), n=16)
        plat = np.concatenate([plat, clat])
        plon = np.concatenate([plon, wrap_longitude(clon)])
    return View.fit(plat, plon, width, height)


def _unwrap(view: View, lon: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Longitudes shifted by whole turns into the view's span (for views across the antimeridian)."""
    mid = (view.lon_min + view.lon_max) / 2.0
    return mid + ((np.asarray(lon, dtype=np.float64) - mid + 180.0) % 360.0 - 180.0)


def _svg_heat(view: View, heat_arr: Any, max_heat: int, width: int, height: int) -> list[str]:
    """The probability heat map: up to ``max_heat`` circles coloured by probability, the most probable on top."""
    la, lo, p = heat_arr
    order = np.argsort(-p, kind="stable")[:max_heat]
    la, lo, p = la[order], lo[order], p[order]
    pmax = float(p.max()) if p.size and p.max() > 0 else 1.0
    keep = p >= pmax * 1e-3
    la, lo, p = la[keep], lo[keep], p[keep]
    x, y = view.xy(la, _unwrap(view, lo))
    inside = (x >= -20) & (x <= width + 20) & (y >= -20) & (y <= height + 20)
    x, y, la, lo, p = x[inside], y[inside], la[inside], lo[inside], p[inside]
    r = _heat_radius(x, y)
    v = np.sqrt(p / pmax)  # sqrt so small probabilities stay visible
    cols = _ramp(v)
    out = ['<g class="heat" stroke="none">']
    out.extend(  # most probable drawn last (on top)
        f'<circle cx="{x[j]:.1f}" cy="{y[j]:.1f}" r="{r:.1f}" fill="{cols[j]}" fill-opacity="{0.25 + 0.55 * v[j]:.2f}">'
        f"<title>{100 * p[j]:.2f} % at ({la[j]:.3f}, {lo[j]:.3f})</title></circle>"
        for j in np.argsort(p, kind="stable")
    )
    out.append("</g>")
    return out


def _svg_radius(view: View, answer: Any, radius: float) -> str:
    """The dashed ~68 % circle around the answered point."""
    clat, clon = _geodesic_circle(answer.lat, answer.lon, radius)
    x, y = view.xy(clat, _unwrap(view, answer.lon) + (clon - answer.lon))
    pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (
        f'<g class="radius"><polygon points="{pts}" fill="{_RADIUS}" fill-opacity="0.08" stroke="{_RADIUS}" '
        f'stroke-width="1.5" stroke-dasharray="5 3"><title>~68 % of the probability lies within {radius:,.0f} km '
        f"of the answer</title></polygon></g>"
    )


def _svg_markers(view: View, cands: list[Any]) -> list[str]:
    """Numbered candidate markers with tooltips; rank 1 drawn last, on top."""
    esc = html.escape
    out = ['<g class="candidates">']
    for rank in range(len(cands), 0, -1):
        c = cands[rank - 1]
        x, y = view.xy(c.lat, _unwrap(view, c.lon))
        rr = 11 if rank == 1 else 8
        fill = "#c0392b" if rank == 1 else "#34495e"
        tip = f"{rank}. {_place_label(c)} — {100 * c.probability:.1f} % ({c.lat:.4f}, {c.lon:.4f})"
        out.append(
            f'<g class="marker" data-rank="{rank}" data-lat="{c.lat:.5f}" data-lon="{c.lon:.5f}">'
            f"<title>{esc(tip)}</title>"
            f'<circle cx="{float(x):.1f}" cy="{float(y):.1f}" r="{rr}" fill="{fill}" stroke="white" stroke-width="2"/>'
            f'<text x="{float(x):.1f}" y="{float(y) + 4:.1f}" text-anchor="middle" font-size="{11 if rank == 1 else 9}" '
            f'font-weight="bold" fill="white">{rank}</text></g>'
        )
    out.append("</g>")
    return out


def _heat_radius(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Half the median nearest-neighbour spacing of the heat points, in pixels (2..14)."""
    n = x.size
    if n < 2:
        return 6.0
    sel = np.arange(n) if n <= 1500 else np.linspace(0, n - 1, 1500).astype(int)
    px, py = x[sel], y[sel]
    d2 = (px[:, None] - px[None, :]) ** 2 + (py[:, None] - py[None, :]) ** 2
    np.fill_diagonal(d2, np.inf)
    nn = np.sqrt(d2.min(axis=1))
    return float(np.clip(np.median(nn) * 0.6, 2.0, 14.0))


def _scale_bar(view: View) -> str:
    """A scale bar for the view's centre latitude (km)."""
    lat = (view.lat_min + view.lat_max) / 2.0
    km_per_px = 111.195 * math.cos(math.radians(lat)) / (view.k * view.scale)
    if not (km_per_px > 0 and math.isfinite(km_per_px)):
        return ""
    target = km_per_px * view.width * 0.18
    nice = 10 ** math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * nice <= target:
            nice *= m
            break
    px = nice / km_per_px
    x0, y0 = 12.0, view.height - 14.0
    label = f"{nice:,.0f} km" if nice >= 1 else f"{nice * 1000:,.0f} m"
    note = " (at map centre)" if view.is_world else ""
    return (
        f'<g class="scale" font-size="10" fill="#333"><rect x="{x0 - 4}" y="{y0 - 14}" width="{px + 80:.0f}" height="20" fill="white" fill-opacity="0.7"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x0 + px:.1f}" y2="{y0}" stroke="#333" stroke-width="2"/>'
        f'<text x="{x0 + px + 4:.1f}" y="{y0 + 3}">{label}{note}</text></g>'
    )


# --------------------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1000px;color:#222;padding:0 1rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem;word-break:break-all}
svg{max-width:100%;height:auto;border:1px solid #ccc;border-radius:4px}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} .thumbs{display:flex;gap:.4rem;flex-wrap:wrap;margin:.5rem 0}
img.thumb{max-height:240px;max-width:100%;display:block} .error{color:#c0392b} .meta{color:#555;font-size:.9rem}
"""


def prediction_map_html(
    predictions: Prediction | Sequence[Prediction],
    path: str | os.PathLike[str],
    *,
    title: str = "geoscout predictions",
    width: int = 960,
    height: int = 480,
    heat: dict[str, Any] | None = None,
    thumbnails: bool = True,
    refresh_seconds: int | None = None,
    image_paths: dict[str, str] | None = None,
) -> Path:
    """Write a self-contained HTML page (inline SVG maps + candidate tables; works offline).

    Several predictions get an overview map first (each photo's best guess, numbered, linking to its
    section). ``heat`` optionally maps ``image_id`` to heat arrays for :func:`prediction_map_svg`
    (by default each prediction's own ``heatmap``). With ``thumbnails``, a prediction whose
    ``image_id`` is a readable image file (or ``+``-joined views of a panorama) gets small inline
    JPEGs of it (``image_paths`` maps other ids to their files). World outlines are written once and
    shared by every world-view map.
    ``refresh_seconds`` makes the page reload itself (a live page such as ``geoscout watch``'s).
    Written atomically; returns the path.
    """
    preds = [predictions] if isinstance(predictions, Prediction) else list(predictions)
    esc = html.escape
    for p in preds:
        if not isinstance(p, Prediction):
            raise InvalidInput(f"prediction_map_html: expected Prediction objects, got {type(p).__name__}")
    ref = f"gs-world-{int(width)}x{int(height)}"
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{len(preds)} prediction(s). Maps drawn offline from Natural Earth outlines.</p>',
        f'<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs><g id="{ref}">'
        f"{_world_svg_paths(int(width), int(height))}</g></defs></svg>",
    ]
    if len(preds) > 1:
        body.append(_overview_svg(preds, int(width), int(height), ref))
    for n, p in enumerate(preds, 1):
        body += _html_section(n, p, (heat or {}).get(p.image_id), width, height, ref, thumbnails, image_paths or {})
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def _html_section(
    n: int,
    p: Prediction,
    heat: Any,
    width: int,
    height: int,
    ref: str,
    thumbnails: bool,
    image_paths: dict[str, str],
) -> list[str]:
    """The page's section for prediction ``n``: heading, thumbnails, then its map and candidates table
    (or why there is no answer)."""
    esc = html.escape
    views = _view_files(image_paths.get(p.image_id, p.image_id))
    name = _short_name(p.image_id, views)
    body = [f'<section id="p{n}"><h2 title="{esc(p.image_id)}">{n}. {esc(name)}</h2>']
    if thumbnails:
        size = 360 if len(views) <= 1 else 200
        thumbs = [(v, _thumbnail_uri(v, max_side=size)) for v in (views or [p.image_id])]
        imgs = [f'<img class="thumb" alt="{esc(v)}" title="{esc(v)}" src="{t}">' for v, t in thumbs if t]
        if imgs:
            body.append(f'<div class="thumbs">{"".join(imgs)}</div>')
    if not p.ok:
        why = p.error.message if p.error is not None else "no candidates"
        return [*body, f'<p class="error">No answer: {esc(why)}</p></section>']
    meta = []
    if p.radius_km is not None:
        meta.append(f"68 % radius {p.radius_km:,.0f} km")
    if p.expected_score is not None:
        meta.append(f"expected GeoGuessr score {p.expected_score:,.0f}")
    if p.source:
        meta.append(esc(p.source))
    if meta:
        body.append(f'<p class="meta">{" · ".join(meta)}</p>')
    body.append(prediction_map_svg(p, heat=heat, width=width, height=height, title=name, outlines_ref=ref))
    body.append("<table><tr><th>#</th><th>probability</th><th>place</th><th>lat</th><th>lon</th></tr>")
    for rank, c in enumerate(p.candidates, 1):
        body.append(
            f'<tr><td class="num">{rank}</td><td class="num">{100 * c.probability:.1f} %</td><td>{esc(_place_label(c))}</td>'
            f'<td class="num">{c.lat:.4f}</td><td class="num">{c.lon:.4f}</td></tr>'
        )
    body.append("</table></section>")
    return body


def _view_files(image_id: str) -> list[str]:
    """The files a prediction names: one photo, or the ``+``-joined views of a panorama (when all exist)."""
    parts = image_id.split("+") if "+" in image_id and not os.path.isfile(image_id) else [image_id]
    return parts if all(os.path.isfile(v) for v in parts) else ([image_id] if os.path.isfile(image_id) else [])


def _short_name(image_id: str, views: list[str]) -> str:
    """A photo's name as a person reads it: ``folder/photo.jpg``, or ``panorama folder/ (4 views: 0.jpg, ...)``."""
    if len(views) > 1:
        parent = os.path.commonpath([os.path.abspath(v) for v in views])
        names = [os.path.relpath(os.path.abspath(v), parent) for v in views]
        return f"panorama {os.path.basename(parent) or parent}/ ({len(views)} views: {', '.join(names)})"
    parts = image_id.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else image_id


def _overview_svg(preds: Sequence[Prediction], width: int, height: int, ref: str) -> str:
    """A world map of every photo's best guess, numbered like the sections below (click to jump)."""
    esc = html.escape
    view = View.world(width, height)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="overview" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="overview: best guess of each photo" '
        'font-family="system-ui, sans-serif"><title>Overview: the best guess of each photo</title>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="{_OCEAN}"/>',
        f'<g fill="{_LAND}" stroke="{_BORDER}" stroke-width="0.6" stroke-linejoin="round"><use href="#{ref}"/></g>',
    ]
    for n, p in enumerate(preds, 1):
        if not p.ok:
            continue
        c = p.top
        x, y = view.xy(c.lat, c.lon)
        tip = (
            f"{n}. {_short_name(p.image_id, _view_files(p.image_id))}: {_place_label(c)} ({100 * c.probability:.0f} %)"
        )
        out.append(
            f'<a href="#p{n}"><g class="marker" data-photo="{n}"><title>{esc(tip)}</title>'
            f'<circle cx="{float(x):.1f}" cy="{float(y):.1f}" r="10" fill="#c0392b" stroke="white" stroke-width="2"/>'
            f'<text x="{float(x):.1f}" y="{float(y) + 4:.1f}" text-anchor="middle" font-size="10" font-weight="bold" '
            f'fill="white">{n}</text></g></a>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _thumbnail_uri(name: str, max_side: int = 360, quality: int = 70) -> str | None:
    """A ``data:image/jpeg;base64`` thumbnail of the image file ``name``, or None if it is not one."""
    import base64
    import io

    try:
        if not os.path.isfile(name):
            return None
        from .imageio import load_image

        im = load_image(name)
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    except (GeoscoutError, OSError, ValueError):  # an unreadable file: the page just has no thumbnail for it
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def prediction_map_png(
    predictions: Prediction | Sequence[Prediction],
    path: str | os.PathLike[str],
    *,
    zoom: str | bool = "auto",
    title: str | None = None,
) -> Path:
    """A PNG of the predictions' candidates (numbered by rank; top-1 in red with its radius circle).

    With one prediction and ``zoom="auto"`` the view fits its candidates; otherwise the world. The
    map has a title (default: the photo's name, or the number of photos), a legend, and labels:
    each candidate's place and probability for one photo, each photo's name at its best guess for
    a few photos.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    preds = [predictions] if isinstance(predictions, Prediction) else list(predictions)
    ok = [p for p in preds if isinstance(p, Prediction) and p.ok]
    if not ok:
        raise InvalidInput("prediction_map_png: no prediction with candidates to draw")
    width, height = 1400, 700
    zoomed = len(ok) == 1 and (zoom is True or zoom == "auto")
    view = _png_view(ok[0], width, height) if zoomed else View.world(width, height)
    mid = (view.lon_min + view.lon_max) / 2.0

    def unwrap(lo: Any) -> NDArray[np.float64]:
        return mid + ((np.asarray(lo, dtype=np.float64) - mid + 180.0) % 360.0 - 180.0)

    fig = Figure(figsize=(width / 100, (height + 50) / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, height / (height + 50)))  # the title sits in the 50 px above the map
    ax.set_facecolor(_OCEAN)
    tol = _tolerance_for(1.0 / view.scale)
    rings = []
    for off in [0.0] if view.is_world else (-360.0, 0.0, 360.0):
        rings += [r + np.array([off, 0.0]) for _, rs in _world_rings(tol) for r in rs]
    ax.add_collection(PolyCollection(rings, facecolors=_LAND, edgecolors=_BORDER, linewidths=0.5))
    for p in ok:
        _png_candidates(ax, p, unwrap)
    _png_labels(ax, ok, unwrap)
    _png_legend(ax, ok)
    ax.set_title(title if title is not None else _png_title(ok), fontsize=13, loc="left")
    ax.set_xlim(view.lon_min, view.lon_max)
    ax.set_ylim(view.lat_min, view.lat_max)
    ax.set_aspect(1.0 / view.k)
    ax.set_xticks([])
    ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _png_view(p: Prediction, width: int, height: int) -> View:
    """The view that fits one prediction's candidates and (up to 5,000 km of) its radius circle."""
    lat = np.array([c.lat for c in p.candidates])
    lon = np.array([c.lon for c in p.candidates])
    if p.radius_km:
        cl, co = _geodesic_circle(p.answer.lat, p.answer.lon, min(p.radius_km, 5000.0), n=16)
        lat, lon = np.concatenate([lat, cl]), np.concatenate([lon, wrap_longitude(co)])
    return View.fit(lat, lon, width, height)


def _png_candidates(ax: Any, p: Prediction, unwrap: Callable[[Any], NDArray[np.float64]]) -> None:
    """One prediction's radius circle around its answer and its numbered candidates (best on top)."""
    if p.radius_km:
        cl, co = _geodesic_circle(p.answer.lat, p.answer.lon, p.radius_km)
        ax.fill(unwrap(p.answer.lon) + (co - p.answer.lon), cl, color=_RADIUS, alpha=0.1, lw=1.2, ls="--", ec=_RADIUS)
    for rank in range(len(p.candidates), 0, -1):
        c = p.candidates[rank - 1]
        x = float(unwrap(c.lon))
        ax.scatter(
            [x],
            [c.lat],
            s=160 if rank == 1 else 100,
            c="#c0392b" if rank == 1 else "#34495e",
            edgecolors="white",
            linewidths=1.5,
            zorder=5,
        )
        ax.text(x, c.lat, str(rank), color="white", ha="center", va="center", fontsize=8, fontweight="bold", zorder=6)


def _png_labels(ax: Any, ok: list[Prediction], unwrap: Callable[[Any], NDArray[np.float64]]) -> None:
    """Labels: each candidate's place and probability for one photo; each photo's name for up to 12."""
    box = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}
    if len(ok) == 1:
        for rank, c in enumerate(ok[0].candidates, 1):
            ax.annotate(
                f"{rank}. {_place_label(c)} ({100 * c.probability:.0f} %)",
                (float(unwrap(c.lon)), c.lat),
                xytext=(10, 6),
                textcoords="offset points",
                fontsize=9 if rank == 1 else 8,
                fontweight="bold" if rank == 1 else "normal",
                bbox=box,
                zorder=7,
                clip_on=True,
            )
    elif len(ok) <= 12:
        for p in ok:
            ax.annotate(
                _short_name(p.image_id, []),
                (float(unwrap(p.top.lon)), p.top.lat),
                xytext=(10, 6),
                textcoords="offset points",
                fontsize=8,
                bbox=box,
                zorder=7,
                clip_on=True,
            )


def _png_legend(ax: Any, ok: list[Prediction]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Line2D | Patch] = [
        Line2D([], [], ls="", marker="o", ms=11, mfc="#c0392b", mec="white", label="best guess (1)"),
        Line2D([], [], ls="", marker="o", ms=9, mfc="#34495e", mec="white", label="other candidates (2, 3, ...)"),
    ]
    if any(p.radius_km for p in ok):
        handles.append(Patch(fc=_RADIUS, alpha=0.25, ec=_RADIUS, ls="--", label="~68 % of the probability"))
    ax.legend(handles=handles, loc="lower left", fontsize=9, framealpha=0.9)


def _png_title(ok: list[Prediction]) -> str:
    """The default title: the photo's name (and radius) for one photo, else how many."""
    if len(ok) > 1:
        return f"Best guesses for {len(ok)} photos (numbers: rank of each candidate)"
    p = ok[0]
    radius = f"  (68 % radius {p.radius_km:,.0f} km)" if p.radius_km else ""
    return f"Where was {_short_name(p.image_id, _view_files(p.image_id))} taken?" + radius
