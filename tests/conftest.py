"""Shared fixtures. Tests that need ``../shared`` skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GEOSCOUT_SHARED", PROJECT_ROOT.parent / "shared"))
DATASETS = ("streetview-croatia", "streetview-world", "streetview-strips", "osv5m-sample", "im2gps")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or $GEOSCOUT_SHARED); skips the test when it is missing."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (absent in a plain clone)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path):
    """Function ``name -> Path`` of one photo set in ``../shared/data``; skips if that set is missing."""

    def get(name: str) -> Path:
        p = shared_dir / "data" / name
        if not (p / "manifest.csv").is_file():
            pytest.skip(f"needs {p}/manifest.csv")
        return p

    return get


@pytest.fixture(scope="session")
def shared_geo(shared_dir: Path) -> Path:
    p = shared_dir / "geo"
    if not p.is_dir():
        pytest.skip(f"needs {p}")
    return p
