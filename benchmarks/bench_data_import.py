"""Import throughput: geoscout's check (1/8-scale JPEG decode via draft) vs a full-size decode, one run.

    python benchmarks/bench_data_import.py [../shared/data/streetview-croatia]

Prints images/s of both and their ratio. Both decode every byte of every file (so both catch truncation).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from geoscout.data import importers
from geoscout.imageio import load_image


def main() -> None:
    root = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/streetview-croatia"
    )
    csv = root / "manifest.csv"
    paths = [root / p for p in pd.read_csv(csv)["path"]]
    importers._CACHE.clear()
    t0 = time.perf_counter()
    rep = importers.import_csv(csv, workers=1)
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in paths:
        load_image(p)
    t_full = time.perf_counter() - t0
    n = len(paths)
    print(f"{root.name}: {n} images, {rep.n_imported} imported, 1 thread")
    print(f"import_csv (hash + draft decode + checks): {n / t_import:8.1f} images/s")
    print(f"load_image full decode only:              {n / t_full:8.1f} images/s")
    print(f"ratio import / full-decode throughput:    {t_full / t_import:8.2f}x")


if __name__ == "__main__":
    main()
