"""Datasets: the manifest schema, :class:`Dataset`, importers (CSV, EXIF) and location-grouped splits."""

from __future__ import annotations

from .dataset import Dataset, load_dataset
from .importers import ImportReport, Problem, import_csv, import_exif_folder, parse_column_mapping, read_exif_location
from .schema import CORE_COLUMNS, MANIFEST_NAME, REQUIRED_COLUMNS, SPLIT_NAMES, normalize_frame, validate_frame
from .splits import parse_fractions, split_dataset

__all__ = [
    "Dataset",
    "load_dataset",
    "ImportReport",
    "Problem",
    "import_csv",
    "import_exif_folder",
    "read_exif_location",
    "parse_column_mapping",
    "split_dataset",
    "parse_fractions",
    "CORE_COLUMNS",
    "REQUIRED_COLUMNS",
    "MANIFEST_NAME",
    "SPLIT_NAMES",
    "normalize_frame",
    "validate_frame",
]
