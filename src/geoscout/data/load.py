"""``load_dataset``: open a dataset folder, or import a CSV (or a folder with manifest.csv) in memory."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from geoscout.errors import InvalidInput

from .dataset import Dataset
from .importers import import_csv
from .schema import MANIFEST_NAME

__all__ = ["load_dataset"]


def load_dataset(path: str | os.PathLike[str], *, progress: bool | None = False, warn: bool = True) -> Dataset:
    """Open ``path`` as a :class:`Dataset`.

    ``path`` may be a geoscout dataset folder (``manifest.parquet``), a folder holding ``manifest.csv``
    (columns ``path,lat,lon`` first, paths relative to the folder), or a CSV file. The latter two are
    imported in memory (images hashed and checked, nothing written); rows that fail the checks are left
    out and listed in the dataset's ``problems`` (with a :class:`UserWarning` naming the first few unless
    ``warn=False``, for callers that report them all themselves, as ``embed`` does in its store's failures).
    ``progress``: a bar on stderr while those images are checked (None: only when stderr is a terminal).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / MANIFEST_NAME).is_file():
            return Dataset.open(p)
        if (p / "manifest.csv").is_file():
            return _in_memory(p / "manifest.csv", name=p.resolve().name, progress=progress, warn=warn)
        raise InvalidInput(
            f"{p}: neither a geoscout dataset ({MANIFEST_NAME}) nor a folder with manifest.csv; "
            f"for a folder of geotagged photos run `geoscout import {p} -o OUT`"
        )
    if p.is_file():
        if p.name == MANIFEST_NAME:
            return Dataset.open(p.parent)
        if p.suffix.lower() in {".csv", ".tsv", ".txt"}:
            return _in_memory(
                p, name=p.parent.resolve().name if p.stem == "manifest" else p.stem, progress=progress, warn=warn
            )
        raise InvalidInput(f"{p}: expected a dataset folder, a folder with manifest.csv, or a .csv file")
    raise InvalidInput(f"{p}: no such file or folder")


def _in_memory(csv: Path, *, name: str, progress: bool | None = False, warn: bool = True) -> Dataset:
    report = import_csv(csv, progress=progress)
    report.dataset.problems = list(report.problems)
    if report.problems and warn:
        shown = "; ".join(str(pr) for pr in report.problems[:5])
        more = f" (+{len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
        warnings.warn(f"{csv}: {len(report.problems)} row(s) left out: {shown}{more}", UserWarning, stacklevel=3)
    report.dataset.name = name
    return report.dataset
