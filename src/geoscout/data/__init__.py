"""Datasets: the manifest schema, :class:`Dataset`, importers (CSV, EXIF) and location-grouped splits."""

from __future__ import annotations

from .dataset import Dataset
from .importers import ImportReport, Problem, import_csv, import_exif_folder, parse_column_mapping, read_exif_location
from .load import load_dataset
from .open_datasets import OpenImportReport, import_open_dataset
from .schema import CORE_COLUMNS, MANIFEST_NAME, REQUIRED_COLUMNS, SPLIT_NAMES, normalize_frame, validate_frame
from .splits import parse_fractions, split_dataset, split_for_training

__all__ = [
    "CORE_COLUMNS",
    "MANIFEST_NAME",
    "REQUIRED_COLUMNS",
    "SPLIT_NAMES",
    "Dataset",
    "ImportReport",
    "OpenImportReport",
    "Problem",
    "import_csv",
    "import_exif_folder",
    "import_open_dataset",
    "load_dataset",
    "normalize_frame",
    "parse_column_mapping",
    "parse_fractions",
    "read_exif_location",
    "split_dataset",
    "split_for_training",
    "validate_frame",
]
