"""Read and write predictions files: ``.jsonl``, ``.json`` and ``.csv``.

- ``.jsonl``: one :meth:`Prediction.to_dict` object per line (the default; streams well).
- ``.json``: one JSON list of those objects.
- ``.csv``: one row per candidate with the columns :data:`CSV_COLUMNS`; a failed prediction
  is one row with an empty ``rank``/``lat``/``lon``, the ``error`` text and its ``error_kind``
  (one of :data:`geoscout.errors.FAILURE_KINDS`). Only ``image_id``,
  ``lat`` and ``lon`` are required when reading (``rank`` orders candidates when present, else
  file order; a missing ``probability`` shares out the mass left by the others).
- ``.geojson``: a FeatureCollection with one Point feature per candidate (properties as the
  CSV columns); a failed prediction is a feature with ``geometry: null`` and its ``error``.

The heat map (``Prediction.heatmap``) and the cues' boxes and effects (``Prediction.cues``) are
kept by ``.jsonl`` and ``.json`` only; CSV and GeoJSON carry the cues as one line of text.

Coordinates are WGS84 degrees, distances kilometres. Every write is atomic; every read
error names the file and the line (and column) at fault.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from ._io import atomic_write_text, read_user_file
from .errors import FAILURE_KINDS, InvalidInput, PhotoFailure
from .types import Candidate, Cue, Prediction

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "WRITERS",
    "format_predictions",
    "predictions_to_rows",
    "read_predictions",
    "write_predictions",
]

#: per-prediction numbers repeated on each of its candidate rows (CSV, GeoJSON)
_PREDICTION_FLOATS = (
    "radius_km",
    "expected_score",
    "guess_lat",
    "guess_lon",
    "guess_probability",
    "radius_50_km",
    "radius_90_km",
)
#: Columns of the CSV format, in order (one row per candidate).
CSV_COLUMNS: tuple[str, ...] = (
    "image_id",
    "rank",
    "lat",
    "lon",
    "probability",
    "country",
    "country_name",
    "admin1",
    "city",
    "cell",
    *_PREDICTION_FLOATS,
    "source",
    "error",
    "error_kind",
    "cues",
)
FORMATS = (".jsonl", ".json", ".csv", ".geojson")
_CANDIDATE_TEXT = ("cell", "country", "country_name", "admin1", "city")


def _format_of(path: Path, fmt: str | None) -> str:
    suffix = ("." + fmt.lstrip(".")) if fmt else path.suffix.lower()
    if suffix == ".ndjson":
        suffix = ".jsonl"
    if suffix not in FORMATS:
        raise InvalidInput(
            f"{path}: unknown predictions format {suffix or '(no extension)'!r}; "
            f"use a file ending in one of {', '.join(FORMATS)}"
        )
    return suffix


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return repr(float(x))


def predictions_to_rows(preds: Iterable[Prediction]) -> list[dict[str, Any]]:
    """Flatten predictions to CSV-style rows (one per candidate; one row per failed prediction)."""
    rows: list[dict[str, Any]] = []
    for p in preds:
        common = {
            "image_id": p.image_id,
            "radius_km": p.radius_km,
            "expected_score": p.expected_score,
            "source": p.source,
            "error": p.error.message if p.error is not None else None,
            "error_kind": p.error.kind if p.error is not None else None,
            "cues": "; ".join(c.summary() for c in p.cues) or None,
            "guess_lat": p.guess.lat if p.guess is not None else None,
            "guess_lon": p.guess.lon if p.guess is not None else None,
            "guess_probability": p.guess.probability if p.guess is not None else None,
            "radius_50_km": (p.radii_km or {}).get("50"),
            "radius_90_km": (p.radii_km or {}).get("90"),
        }
        if not p.candidates:
            rows.append({**common, "rank": None, "lat": None, "lon": None, "probability": None})
            continue
        for rank, c in enumerate(p.candidates, start=1):
            rows.append(
                {
                    **common,
                    "rank": rank,
                    "lat": c.lat,
                    "lon": c.lon,
                    "probability": c.probability,
                    **{k: getattr(c, k) for k in _CANDIDATE_TEXT},
                }
            )
    return rows


def _csv_text(preds: Sequence[Prediction]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in predictions_to_rows(preds):
        out = {}
        for k in CSV_COLUMNS:
            v = row.get(k)
            if v is None:
                out[k] = ""
            elif isinstance(v, float):
                out[k] = _num(v)
            else:
                out[k] = str(v)
        w.writerow(out)
    return buf.getvalue()


def _jsonl_text(preds: Sequence[Prediction]) -> str:
    return "".join(json.dumps(p.to_dict(), ensure_ascii=False, allow_nan=False) + "\n" for p in preds)


def _json_text(preds: Sequence[Prediction]) -> str:
    return json.dumps([p.to_dict() for p in preds], ensure_ascii=False, indent=1, allow_nan=False) + "\n"


def _geojson_text(preds: Sequence[Prediction]) -> str:
    return json.dumps(_geojson(preds), ensure_ascii=False, allow_nan=False) + "\n"


#: The one writer per output format: files (``-o``), stdout, and every shell that writes predictions.
WRITERS: dict[str, Callable[[Sequence[Prediction]], str]] = {
    ".jsonl": _jsonl_text,
    ".json": _json_text,
    ".csv": _csv_text,
    ".geojson": _geojson_text,
}


def format_predictions(preds: Iterable[Prediction], format: str) -> str:
    """The text of ``preds`` in ``format`` (``jsonl``, ``json``, ``csv``, ``geojson``): what
    :func:`write_predictions` writes to a file, and what the CLI prints on stdout."""
    fmt = _format_of(Path(f"predictions.{format.lstrip('.')}"), format)
    preds = list(preds)
    _check(preds)
    return WRITERS[fmt](preds)


def _check(preds: Sequence[Any]) -> None:
    for i, p in enumerate(preds):
        if not isinstance(p, Prediction):
            raise InvalidInput(
                f"write_predictions: item {i} is a {type(p).__name__}, expected geoscout.types.Prediction"
            )
        for k, c in enumerate(p.candidates, start=1):
            if not (math.isfinite(c.lat) and math.isfinite(c.lon) and abs(c.lat) <= 90 and abs(c.lon) <= 180):
                raise InvalidInput(
                    f"write_predictions: {p.image_id!r} candidate {k} has an invalid (lat, lon) = ({c.lat!r}, {c.lon!r})"
                )


def write_predictions(preds: Iterable[Prediction], path: str | os.PathLike[str], *, format: str | None = None) -> Path:
    """Write predictions atomically to ``path``; the format follows the extension (or ``format``).

    Returns the path written.
    """
    path = Path(path)
    fmt = _format_of(path, format)
    preds = list(preds)
    _check(preds)
    return atomic_write_text(path, WRITERS[fmt](preds))


def _geojson(preds: Sequence[Prediction]) -> dict[str, Any]:
    feats = []
    for row in predictions_to_rows(preds):
        props = {k: row.get(k) for k in CSV_COLUMNS if k not in ("lat", "lon")}
        geom = None if row["lat"] is None else {"type": "Point", "coordinates": [row["lon"], row["lat"]]}
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "features": feats}


# --------------------------------------------------------------------------- reading


def _bad(where: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{where}: {msg}")


@overload
def _float(value: Any, where: str, name: str, *, required: Literal[True]) -> float: ...
@overload
def _float(value: Any, where: str, name: str, *, required: bool) -> float | None: ...
def _float(value: Any, where: str, name: str, *, required: bool) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise _bad(where, f"{name} is missing; expected a number")
        return None
    if isinstance(value, bool):
        raise _bad(where, f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _bad(where, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise _bad(where, f"{name} must be a finite number, got {value!r}")
    return x


def _candidate(d: Any, where: str, k: int) -> Candidate:
    if not isinstance(d, dict):
        raise _bad(where, f"candidate {k} must be an object with lat/lon/probability, got {type(d).__name__}")
    lat = _float(d.get("lat"), where, f"candidate {k} lat", required=True)
    lon = _float(d.get("lon"), where, f"candidate {k} lon", required=True)
    assert lat is not None and lon is not None
    if not -90.0 <= lat <= 90.0:
        raise _bad(where, f"candidate {k} lat={lat!r} is out of range; expected [-90, 90] degrees (lat before lon?)")
    if not -180.0 <= lon <= 180.0:
        raise _bad(where, f"candidate {k} lon={lon!r} is out of range; expected [-180, 180] degrees")
    prob = _float(d.get("probability"), where, f"candidate {k} probability", required=False)
    if prob is not None and not 0.0 <= prob <= 1.0 + 1e-6:
        raise _bad(where, f"candidate {k} probability={prob!r} is outside [0, 1]")
    text = {}
    for key in _CANDIDATE_TEXT:
        v = d.get(key)
        text[key] = None if v is None or (isinstance(v, str) and v == "") else str(v)
    return Candidate(lat=lat, lon=lon, probability=float("nan") if prob is None else prob, **text)


def _prediction_from_obj(d: Any, where: str) -> Prediction:
    if not isinstance(d, dict):
        raise _bad(where, f"expected a JSON object (one prediction), got {type(d).__name__}")
    image_id = d.get("image_id")
    if image_id is None or str(image_id).strip() == "":
        raise _bad(where, "image_id is missing")
    cands = d.get("candidates", [])
    if cands is None:
        cands = []
    if not isinstance(cands, list):
        raise _bad(where, f"candidates must be a list, got {type(cands).__name__}")
    candidates = [_candidate(c, where, k) for k, c in enumerate(cands, start=1)]
    _fill_probabilities(candidates)
    error = _failure(d.get("error"), d.get("error_kind"), d.get("error_source"), str(image_id), where)
    heat = _heatmap(d.get("heatmap"), where)
    cues = d.get("cues") or []
    if not (isinstance(cues, list) and all(isinstance(c, dict) and "kind" in c and "text" in c for c in cues)):
        raise _bad(where, "cues must be a list of objects with kind and text")
    guess = _candidate(d["guess"], where, 0) if d.get("guess") else None
    radii = d.get("radii_km")
    if radii is not None and not isinstance(radii, dict):
        raise _bad(where, f"radii_km must be an object like {{\"50\": km, \"68\": km, \"90\": km}}, got {radii!r}")
    return Prediction(
        guess=guess,
        radii_km={str(k): _float(v, where, f"radii_km[{k}]", required=True) for k, v in radii.items()}
        if radii
        else None,
        image_id=str(image_id),
        candidates=candidates,
        radius_km=_float(d.get("radius_km"), where, "radius_km", required=False),
        expected_score=_float(d.get("expected_score"), where, "expected_score", required=False),
        source=None if d.get("source") in (None, "") else str(d.get("source")),
        error=error,
        heatmap=heat,
        cues=[Cue.from_dict(c) for c in cues],
    )


def _failure(text: Any, kind: Any, source: Any, image_id: str, where: str) -> PhotoFailure | None:
    """The failure of an ``error`` text with its optional ``error_kind`` (and ``error_source``, JSON only);
    files written before the kinds give kind ``unknown``."""
    if text is None or str(text).strip() == "":
        return None
    if kind not in (None, "") and kind not in FAILURE_KINDS:
        raise _bad(where, f"error_kind {kind!r} is not one of {', '.join(FAILURE_KINDS)}")
    return PhotoFailure.from_text(
        str(text), kind=kind or None, source=None if source in (None, "") else str(source), image_id=image_id
    )


def _heatmap(rows: Any, where: str) -> list[list[float]] | None:
    """Validate an optional ``[[lat, lon, probability], ...]`` heat map."""
    if rows is None:
        return None
    if not isinstance(rows, list):
        raise _bad(where, f"heatmap must be a list of [lat, lon, probability] rows, got {type(rows).__name__}")
    out: list[list[float]] = []
    for j, r in enumerate(rows):
        if not (isinstance(r, (list, tuple)) and len(r) == 3):
            raise _bad(where, f"heatmap row {j} must be [lat, lon, probability], got {r!r}")
        la, lo, pr = (
            _float(v, where, f"heatmap row {j} {n}", required=True) for v, n in zip(r, ("lat", "lon", "probability"))
        )
        assert la is not None and lo is not None and pr is not None  # required=True raises instead
        if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
            raise _bad(where, f"heatmap row {j}: ({la}, {lo}) is not a valid (lat, lon) in degrees")
        out.append([la, lo, pr])
    return out


def _fill_probabilities(cands: list[Candidate]) -> None:
    """Candidates without a probability get an equal share of the mass not claimed by the others."""
    missing = [c for c in cands if math.isnan(c.probability)]
    if missing:
        rest = max(0.0, 1.0 - sum(c.probability for c in cands if not math.isnan(c.probability)))
        for c in missing:
            c.probability = rest / len(missing)


def _read_jsonl(path: Path, text: str, skip: _Skip) -> list[Prediction]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        with skip(where):
            if _not_utf8(line):
                raise _bad(where, "bytes that are not UTF-8 text")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _bad(where, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            out.append(_prediction_from_obj(obj, where))
    return out


def _read_json(path: Path, text: str, skip: _Skip) -> list[Prediction]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"{path} line {exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(obj, dict) and "predictions" in obj:
        obj = obj["predictions"]
    if not isinstance(obj, list):
        raise _bad(
            str(path),
            f"expected a JSON list of predictions, got {type(obj).__name__} (use .jsonl for one object per line)",
        )
    out = []
    for i, o in enumerate(obj):
        with skip(f"{path} item {i}"):
            out.append(_prediction_from_obj(o, f"{path} item {i}"))
    return out


def _read_csv(path: Path, text: str, skip: _Skip) -> list[Prediction]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    header = [h.strip() for h in header]
    reader.fieldnames = header
    missing = [c for c in ("image_id", "lat", "lon") if c not in header]
    if missing:
        raise _bad(
            f"{path} line 1",
            f"missing column(s) {', '.join(missing)}; the header has {', '.join(header) or 'nothing'}. "
            f"Expected at least image_id, lat, lon (full set: {', '.join(CSV_COLUMNS)})",
        )
    rows = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. an unterminated quote at the end of the file
            with skip(f"{path} line {reader.line_num}"):
                raise _bad(f"{path} line {reader.line_num}", f"not readable as CSV ({exc})") from None
            break
        where = f"{path} line {reader.line_num}"
        with skip(where):
            if None in row:
                raise _bad(where, f"has {len(header) + len(row[None])} fields but the header has {len(header)}")
            if any(isinstance(v, str) and _not_utf8(v) for v in row.values()):
                raise _bad(where, "bytes that are not UTF-8 text")
            rows.append((where, row))
    return _group_rows(rows, skip)


def _text(v: Any) -> str:
    return "" if v is None else str(v).strip()


#: per-prediction numbers of a candidate row (CSV / GeoJSON)
def _group_rows(rows: list[tuple[str, dict[str, Any]]], skip: _Skip) -> list[Prediction]:
    """Candidate rows (CSV lines, GeoJSON features) -> predictions, grouped by image_id in file order."""
    groups: dict[str, dict[str, Any]] = {}
    for order, (where, row) in enumerate(rows):
        with skip(where):  # every check before the group is touched: a skipped row leaves no trace
            image_id = _text(row.get("image_id"))
            if not image_id:
                raise _bad(where, "image_id is empty")
            n_cands = len(groups[image_id]["cands"]) if image_id in groups else 0
            err = _text(row.get("error"))
            values = {key: _float(row.get(key), where, key, required=False) for key in _PREDICTION_FLOATS}
            failed_row = _text(row.get("lat")) == "" and _text(row.get("lon")) == ""
            if failed_row and not err:
                raise _bad(
                    where, "lat and lon are empty but no error is given; a failed prediction needs its error text"
                )
            cand = None if failed_row else _candidate(row, where, n_cands + 1)
            rank = None if failed_row else _float(row.get("rank"), where, "rank", required=False)
            g = groups.setdefault(image_id, {"cands": []})
            if err:
                g["error"] = _failure(err, _text(row.get("error_kind")), None, image_id, where)
            g.update({k: v for k, v in values.items() if v is not None})
            if _text(row.get("source")):
                g["source"] = _text(row.get("source"))
            if cand is not None:
                g["cands"].append((rank if rank is not None else float(n_cands + 1), order, cand))
    out = []
    for image_id, g in groups.items():
        ranked = sorted(g["cands"], key=lambda t: (t[0], t[1]))
        cands = [c for _, _, c in ranked]
        _fill_probabilities(cands)
        out.append(
            Prediction(
                image_id=image_id,
                candidates=cands,
                radius_km=g.get("radius_km"),
                expected_score=g.get("expected_score"),
                source=g.get("source"),
                error=g.get("error"),
                guess=_guess_of(g, cands),
                radii_km=_radii_of(g),
            )
        )
    return out


def _guess_of(g: dict[str, Any], cands: list[Candidate]) -> Candidate | None:
    """The answered point of a CSV/GeoJSON prediction (its ``guess_lat``/``guess_lon`` columns)."""
    if g.get("guess_lat") is None or g.get("guess_lon") is None:
        return None
    la, lo = float(g["guess_lat"]), float(g["guess_lon"])
    if not (-90 <= la <= 90 and -180 <= lo <= 180):
        raise InvalidInput(f"guess ({la}, {lo}) is not a valid (lat, lon) in degrees")
    same = [c for c in cands if c.lat == la and c.lon == lo]
    if same:
        return same[0]
    p = g.get("guess_probability")
    return Candidate(lat=la, lon=lo, probability=0.0 if p is None else float(p))


def _radii_of(g: dict[str, Any]) -> dict[str, float] | None:
    radii = {k: g.get(f"radius_{k}_km") for k in ("50", "90")} | {"68": g.get("radius_km")}
    if radii["50"] is None and radii["90"] is None:
        return None
    return {k: float(v) for k, v in sorted(radii.items()) if v is not None}


MAX_PREDICTIONS_BYTES = 2 * 1024**3


def read_predictions(
    path: str | os.PathLike[str], *, format: str | None = None, bad_rows: list[str] | None = None
) -> list[Prediction]:
    """Read a predictions file written by :func:`write_predictions` (or by hand).

    Raises :class:`InvalidInput` naming the file and line for malformed content
    (missing column, bad number, latitude/longitude out of range). Given a list as ``bad_rows``,
    a malformed line (CSV row, JSONL line, JSON item, GeoJSON feature) is appended to it as
    ``"<file> line N: <reason>"`` and skipped instead, and the rest is read.
    """
    path = Path(path)
    fmt = _format_of(path, format)
    if not path.exists():
        raise InvalidInput(f"{path}: predictions file not found")
    data = read_user_file(path, max_bytes=MAX_PREDICTIONS_BYTES)  # a regular file, bounded
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if bad_rows is None or fmt in (".json", ".geojson"):  # one JSON document: no row to skip
            line = data[: exc.start].count(b"\n") + 1
            raise InvalidInput(
                f"{path}: not UTF-8 text ({exc.reason} at line {line}); is this a predictions file?"
            ) from None
        text = data.decode("utf-8", errors="surrogateescape")  # the rows holding such bytes are skipped
    skip = _Skip(bad_rows)
    if fmt == ".jsonl":
        return _read_jsonl(path, text, skip)
    if fmt == ".json":
        return _read_json(path, text, skip)
    if fmt == ".geojson":
        return _read_geojson(path, text, skip)
    return _read_csv(path, text, skip)


class _Skip:
    """``with skip(where):`` re-raises a row's :class:`InvalidInput`, or records it when skipping bad rows."""

    def __init__(self, bad_rows: list[str] | None) -> None:
        self.bad_rows = bad_rows

    @contextlib.contextmanager
    def __call__(self, where: str) -> Iterator[None]:
        try:
            yield
        except InvalidInput as exc:
            if self.bad_rows is None:
                raise
            self.bad_rows.append(str(exc))


def _not_utf8(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _read_geojson(path: Path, text: str, skip: _Skip) -> list[Prediction]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(f"{path} line {exc.lineno}", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not (isinstance(obj, dict) and obj.get("type") == "FeatureCollection" and isinstance(obj.get("features"), list)):
        raise _bad(str(path), "expected a GeoJSON FeatureCollection with a features list")
    rows = []
    for i, f in enumerate(obj["features"]):
        where = f"{path} feature {i}"
        with skip(where):
            if not isinstance(f, dict):
                raise _bad(where, f"expected a GeoJSON Feature object, got {type(f).__name__}")
            props = f.get("properties") or {}
            geom = f.get("geometry")
            row = {k: ("" if v is None else v) for k, v in props.items()}
            if geom is not None:
                coords = geom.get("coordinates") if isinstance(geom, dict) and geom.get("type") == "Point" else None
                if not (isinstance(coords, list) and len(coords) >= 2):
                    raise _bad(
                        where, "geometry must be a Point with [lon, lat] coordinates (or null for a failed prediction)"
                    )
                row["lon"], row["lat"] = coords[0], coords[1]
            rows.append((where, row))
    return _group_rows(rows, skip)
