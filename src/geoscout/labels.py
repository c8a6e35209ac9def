"""Fill a dataset's derived label columns from its coordinates (and capture times).

Places (country, admin-1, city, aux rasters) and partitions (cell ids) meet here, above both layers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cells import create_partition
from .errors import InvalidInput, MissingWeights
from .geo import valid_latlon

__all__ = ["AUX_COLUMNS", "PLACE_COLUMNS", "LabelReport", "label_dataset", "label_frame"]

PLACE_COLUMNS = ("country", "country_name", "admin1", "city")
AUX_COLUMNS = ("climate", "elevation_m", "pop_density")


@dataclass
class LabelReport:
    """What :func:`label_frame` did: columns written, rows left unlabelled, layers skipped (with why)."""

    columns: list[str] = field(default_factory=list)
    invalid_rows: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _frame_of(dataset: Any) -> Any:
    import pandas as pd

    if isinstance(dataset, pd.DataFrame):
        return dataset
    frame = getattr(dataset, "frame", None)
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"label_dataset: expected a geoscout Dataset or a DataFrame, got {type(dataset).__name__}")
    return frame


def _aux_columns(
    rasters: Any,
    points: tuple[np.ndarray, np.ndarray],
    put: Callable[..., None],
    step: Callable[[str], None],
    report: LabelReport,
    strict_aux: bool,
) -> None:
    """Put the auxiliary raster columns (climate, elevation_m, pop_density) at the valid ``points``; a layer
    whose file is missing is skipped, with its reason in ``report.skipped`` and a warning, unless ``strict_aux``."""
    la, lo = points
    layers = (
        ("climate", rasters.climate, None, object),
        ("elevation_m", rasters.elevation_m, np.nan, np.float64),
        ("pop_density", rasters.population_density, np.nan, np.float64),
    )
    for col, fn, empty, dtype in layers:
        try:
            values = fn(la, lo)
        except MissingWeights as exc:
            if strict_aux:
                raise
            report.skipped[col] = str(exc)
            warnings.warn(f"label: {col} skipped: {exc}", UserWarning, stacklevel=3)  # label_frame's caller
            step(col)
            continue
        if col == "climate":
            values = np.array([None if v == "" else v for v in values], dtype=object)
        put(col, values, empty, dtype)
        step(col)


def label_frame(
    frame: Any,
    *,
    aux_dir: str | os.PathLike[str] | None = None,
    aux: bool = True,
    cells: tuple[str, ...] | list[str] = (),
    coast_km: float | None = None,
    strict_aux: bool = False,
    progress: bool | None = False,
) -> tuple[Any, LabelReport]:
    """Return a copy of ``frame`` (columns ``lat``, ``lon``, optional ``captured_at``) with labels, and a report.

    Columns: ``country``, ``country_name``, ``admin1``, ``city`` (see
    :func:`geoscout.places.reverse_geocode`), ``month`` (Int8, from ``captured_at``), with
    ``aux``: ``climate`` (Köppen class), ``elevation_m`` (m), ``pop_density`` (people/km²), and
    one ``cell:<spec>`` column (cell id, None outside every cell) per spec in ``cells``, each
    partition fitted on these coordinates. Rows with missing/invalid coordinates get empty
    labels and are listed in ``report.invalid_rows``. An aux layer whose file is missing is
    skipped and its reason put in ``report.skipped`` (and warned), unless ``strict_aux``.
    ``progress``: a bar on stderr, one step per layer (None: only when stderr is a terminal).
    """
    import pandas as pd

    from .places import DEFAULT_COAST_KM, reverse_geocode
    from .places.aux import AuxRasters, month_of

    for col in ("lat", "lon"):
        if col not in frame.columns:
            raise InvalidInput(f"label_dataset: the frame has no {col!r} column (columns: {list(frame.columns)})")
    df = frame.copy()
    report = LabelReport()
    lat = pd.to_numeric(df["lat"], errors="coerce").to_numpy(dtype=np.float64)
    lon = pd.to_numeric(df["lon"], errors="coerce").to_numpy(dtype=np.float64)
    ok = valid_latlon(lat, lon, lon_limit=360.0)
    report.invalid_rows = [int(i) for i in np.flatnonzero(~ok)]
    la, lo = lat[ok], lon[ok]

    def put(col: str, values: Any, empty: Any, dtype: Any = object) -> None:
        out = pd.Series([empty] * len(df), index=df.index, dtype=dtype)
        out[ok] = np.asarray(values)
        df[col] = out
        report.columns.append(col)

    from geoscout._progress import progress_bar

    cells = [str(spec).strip() for spec in cells if str(spec).strip()]
    bar = progress_bar(2 + 3 * bool(aux) + len(cells), f"label {len(df)} points", unit="layer", enabled=progress)

    def step(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    places = reverse_geocode(la, lo, coast_km=DEFAULT_COAST_KM if coast_km is None else coast_km)
    for col in PLACE_COLUMNS:
        put(col, places[col].to_numpy(dtype=object), None)
    step("places")

    if "captured_at" in df.columns:
        df["month"] = month_of(df["captured_at"].to_numpy(dtype=object)).set_axis(df.index)
    else:
        df["month"] = pd.Series(pd.NA, index=df.index, dtype="Int8")
    report.columns.append("month")
    step("month")

    if aux:
        _aux_columns(AuxRasters(aux_dir), (la, lo), put, step, report, strict_aux)

    for spec in cells:
        part = create_partition(spec).fit(la, lo)
        idx = np.asarray(part.assign(la, lo))
        ids = np.array([*list(part.cell_ids), None], dtype=object)
        put(f"cell:{spec}", ids[np.where(idx >= 0, idx, len(ids) - 1)], None)
        step(f"cell:{spec}")
    bar.close()
    return df, report


def label_dataset(
    dataset: Any,
    *,
    aux_dir: str | os.PathLike[str] | None = None,
    aux: bool = True,
    cells: tuple[str, ...] | list[str] = (),
    coast_km: float | None = None,
    strict_aux: bool = False,
    progress: bool | None = False,
) -> Any:
    """Fill the derived label columns of ``dataset`` (a geoscout ``Dataset`` or a DataFrame) in memory.

    Returns the same Dataset with its ``frame`` replaced (call ``.save()`` to write the
    manifest), or a new DataFrame for a DataFrame input. See :func:`label_frame` for the
    columns, units and how missing aux files and bad rows are handled; the
    :class:`LabelReport` is attached as ``dataset.label_report`` (``df.attrs["label_report"]``).
    """
    import pandas as pd

    frame = _frame_of(dataset)
    df, report = label_frame(
        frame, aux_dir=aux_dir, aux=aux, cells=cells, coast_km=coast_km, strict_aux=strict_aux, progress=progress
    )
    if report.invalid_rows:
        warnings.warn(
            f"label: {len(report.invalid_rows)} row(s) with missing or invalid lat/lon left unlabelled "
            f"(first rows: {report.invalid_rows[:5]})",
            UserWarning,
            stacklevel=2,
        )
    if isinstance(dataset, pd.DataFrame):
        df.attrs["label_report"] = report
        return df
    dataset.frame = df
    dataset.label_report = report
    return dataset
