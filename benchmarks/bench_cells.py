"""Partition fitting and assignment speed, one run.

    python benchmarks/bench_cells.py [N=100000]

Fits every registered partition on the ../shared Street View + OSV-5M coordinates, then assigns
N random points (uniform on the sphere) and prints fit time, assign throughput, and for the
polygon partitions the ratio of the vectorised assign (STRtree bounding boxes + prepared
``intersects_xy`` per cell) to a plain per-point loop (``STRtree.query(point, "intersects")``)
measured on 2,000 of the same points; plus the boundary-vertex nearest-cell fallback vs shapely's
exact ``STRtree.query_nearest`` on 200 sea points.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import markdown_table, need_shared

SPECS = ["geohash:3", "grid:1.0", "h3:3", "quadtree:10:200", "cities:100", "country", "admin1", "semantic"]


def main() -> None:
    import pandas as pd
    import shapely

    from geoscout.cells import create_partition

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    shared = need_shared()
    df = pd.concat(
        [
            pd.read_csv(shared / "data" / name / "manifest.csv")[["lat", "lon"]]
            for name in ("streetview-croatia", "streetview-world", "osv5m-sample", "streetview-strips")
        ],
        ignore_index=True,
    )
    rng = np.random.default_rng(0)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    rows = []
    for spec in SPECS:
        t = time.perf_counter()
        p = create_partition(spec).fit(df.lat, df.lon)
        t_fit = time.perf_counter() - t
        p.assign(lat[:10], lon[:10], fallback="nearest")  # warm lazy structures (trees, boundary index)
        t = time.perf_counter()
        strict = p.assign(lat, lon, fallback=None)
        t_strict = time.perf_counter() - t
        t = time.perf_counter()
        p.assign(lat, lon, fallback="nearest")
        t_near = time.perf_counter() - t
        row = {
            "spec": spec,
            "cells": p.n_cells,
            "fit s": t_fit,
            "assign pts/s": n / t_strict,
            "assign+nearest pts/s": n / t_near,
            "inside %": 100.0 * (strict >= 0).mean(),
        }
        if hasattr(p, "_tree"):
            m = 2000
            pts = shapely.points(lon[:m], lat[:m])
            t = time.perf_counter()
            loop = np.array([min(p._tree.query(q, predicate="intersects"), default=-1) for q in pts])
            t_loop = time.perf_counter() - t
            t = time.perf_counter()
            vec = p.assign(lat[:m], lon[:m], fallback=None)
            t_vec = time.perf_counter() - t
            row["vectorised/loop speedup"] = t_loop / t_vec
            row["same answers"] = bool((loop == vec).all())
            sea = np.flatnonzero(strict[: 20 * m] < 0)[:200]
            t = time.perf_counter()
            exact = p._tree.query_nearest(shapely.points(lon[sea], lat[sea]), all_matches=False)[1]
            t_exact = time.perf_counter() - t
            t = time.perf_counter()
            approx = p._nearest(lat[sea], lon[sea])
            t_approx = time.perf_counter() - t
            row["nearest speedup vs exact"] = t_exact / t_approx
            row["nearest agrees %"] = 100.0 * (exact == approx).mean()
        rows.append(row)
        print(row, flush=True)
    print()
    print(f"{len(df)} training coordinates, {n} random query points")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(markdown_table(rows, cols))


if __name__ == "__main__":
    main()
