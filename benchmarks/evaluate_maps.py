"""Speed of ``geoscout.evaluate`` and size/speed of the offline maps, measured in one run.

    python benchmarks/evaluate_maps.py [--n 100000] [--k 5]

Prints: evaluate throughput (images/s) with and without country/admin-1 metrics on N
synthetic predictions with k candidates each; SVG render time cold (outlines loaded and
simplified) vs. warm (cached) and the ratio; SVG and HTML sizes (target < 1 MB per map).
Needs no ../shared data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, markdown_table, peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()

    import pandas as pd

    from geoscout.evaluate import evaluate
    from geoscout.geo import destination_point
    from geoscout.maps import prediction_map_html, prediction_map_svg
    from geoscout.types import Candidate, Prediction

    rng = np.random.default_rng(0)
    n, k = args.n, args.k
    lat, lon = rng.uniform(-55, 70, n), rng.uniform(-180, 180, n)
    truth = pd.DataFrame({"image_id": [f"img{i:07d}" for i in range(n)], "lat": lat, "lon": lon})
    d = rng.lognormal(5.0, 2.0, (n, k))
    plat, plon = destination_point(lat[:, None], lon[:, None], rng.uniform(0, 360, (n, k)), d)
    preds = [
        Prediction(truth["image_id"][i], [Candidate(float(plat[i, j]), float(plon[i, j]), 1.0 / k) for j in range(k)])
        for i in range(n)
    ]

    rows = []
    with Timer() as t_plain:
        evaluate(preds, truth, places=False)
    rows.append(
        {
            "what": f"evaluate {n:,} x top-{k}, distances only",
            "seconds": t_plain.seconds,
            "images/s": n / t_plain.seconds,
        }
    )
    with Timer() as t_places:
        rep = evaluate(preds, truth)
    rows.append(
        {
            "what": f"evaluate {n:,} x top-{k}, + country/admin-1 (cold places)",
            "seconds": t_places.seconds,
            "images/s": n / t_places.seconds,
        }
    )
    with Timer() as t_places2:
        evaluate(preds, truth)
    rows.append(
        {
            "what": f"evaluate {n:,} x top-{k}, + country/admin-1 (warm)",
            "seconds": t_places2.seconds,
            "images/s": n / t_places2.seconds,
        }
    )

    p = Prediction(
        "bench",
        [Candidate(43.51, 16.44, 0.5, city="Split"), Candidate(45.81, 15.98, 0.3), Candidate(44.79, 20.45, 0.2)],
        radius_km=250.0,
        heatmap=[
            [float(a), float(b), float(c)]
            for a, b, c in zip(rng.normal(44, 2, 300), rng.normal(17, 3, 300), rng.random(300))
        ],
    )
    with Timer() as cold:
        world = prediction_map_svg(p, zoom="world")
    with Timer() as warm:
        prediction_map_svg(p, zoom="world")
    with Timer() as zcold:
        zoomed = prediction_map_svg(p)
    with Timer() as zwarm:
        prediction_map_svg(p)
    with tempfile.TemporaryDirectory() as tmp:
        html = prediction_map_html([p] * 10, Path(tmp) / "m.html")
        html_kb = html.stat().st_size / 1024
    rows += [
        {
            "what": "world SVG, cold (outlines loaded + simplified)",
            "seconds": cold.seconds,
            "size KB": len(world) / 1024,
        },
        {"what": "world SVG, warm (cached outlines)", "seconds": warm.seconds, "size KB": len(world) / 1024},
        {"what": "auto-zoom SVG, first at this scale", "seconds": zcold.seconds, "size KB": len(zoomed) / 1024},
        {"what": "auto-zoom SVG, warm", "seconds": zwarm.seconds, "size KB": len(zoomed) / 1024},
        {"what": "HTML page, 10 predictions", "size KB": html_kb},
    ]
    print(markdown_table(rows, ["what", "seconds", "images/s", "size KB"]))
    print()
    print(
        f"world SVG warm/cold speed-up: {cold.seconds / warm.seconds:,.0f}x; "
        f"country metrics cost {t_places2.seconds / t_plain.seconds:.1f}x the distance-only evaluation (warm); "
        f"country acc of the synthetic run {rep.metrics['country_acc']:.3f}; peak RSS {peak_rss_mb():,.0f} MiB"
    )


if __name__ == "__main__":
    main()
