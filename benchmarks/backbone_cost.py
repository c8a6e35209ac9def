"""Per-photo cost of ``effnet-lite2-stages`` against ``effnet-lite2``, measured in one run (issue 16).

``effnet-lite2-stages`` (final features + stage 3-6 mean/std pooling) against
``effnet-lite2`` (pooled final features only), both on ONNX Runtime (the default), on the same real photos,
interleaved (A, B, A, B, ...) so a busy machine slows both alike; medians over photos. Rows:

- forward pass alone, batch of 1 (what ``locate`` runs for one photo) and batch of 8 (``embed``), per photo;
- ``Locator.locate`` end to end for one photo (decode, preprocess, forward, head, refinement, calibration; no
  reverse geocoding, no cues), with the shipped bundle and, given ``--compare DIR``, a bundle on the other backbone.

Ratios are effnet-lite2-stages / effnet-lite2.

    python benchmarks/backbone_cost.py [--photos 12] [--compare DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, need_shared


def _photos(n: int) -> list[Path]:
    import pandas as pd

    root = need_shared() / "data" / "im2gps"
    paths = pd.read_csv(root / "manifest.csv")["path"]
    return [root / p for p in paths.iloc[:: max(1, len(paths) // n)][:n]]


def _interleaved(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds of each callable, run in turn ``reps`` times after one warm-up each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument(
        "--compare", metavar="DIR", help="a bundle on the other backbone (e.g. a candidate on effnet-lite2-stages)"
    )
    args = ap.parse_args()
    from geoscout.backbones import create_backbone
    from geoscout.locator import load_model

    photos = _photos(args.photos)
    names = ("effnet-lite2", "effnet-lite2-stages")
    bbs = {n: create_backbone(n) for n in names}
    assert all(b.runtime == "onnx" for b in bbs.values())
    ref = bbs[names[0]]
    x = np.stack([ref.preprocess(ref.load_image(p)) for p in photos])  # same preprocessing for both (a fingerprint)
    rows = []
    for batch in (1, 8):
        chunks = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
        per = {n: [] for n in names}
        for c in chunks:
            t = _interleaved({n: (lambda b=bbs[n], c=c: b.forward_features(c)) for n in names}, reps=3)
            for n in names:
                per[n].append(t[n] / len(c))
        ms = {n: 1000 * statistics.median(v) for n, v in per.items()}
        rows.append(
            {
                "what": f"forward pass, batch {batch}",
                "effnet-lite2 ms/photo": f"{ms[names[0]]:.0f}",
                "effnet-lite2-stages ms/photo": f"{ms[names[1]]:.0f}",
                "ratio": f"{ms[names[1]] / ms[names[0]]:.2f}",
            }
        )
    models = {"shipped": load_model("geoscout-lite", geocode=False)}
    if args.compare:
        models["compare"] = load_model(args.compare, geocode=False)
    per = {k: [] for k in models}
    for p in photos:
        t = _interleaved({k: (lambda m=m, p=p: m.locate([str(p)], top_k=5)) for k, m in models.items()}, reps=3)
        for k in models:
            per[k].append(t[k])
    loc_ms = {models[k].backbone.name: 1000 * statistics.median(v) for k, v in per.items()}
    row = {"what": "Locator.locate, 1 photo (no geocoding, no cues)"}
    row.update({f"{n} ms/photo": f"{v:.0f}" for n, v in loc_ms.items()})
    if set(loc_ms) == set(names):
        row["ratio"] = f"{loc_ms[names[1]] / loc_ms[names[0]]:.2f}"
    rows.append(row)
    cols = ["what", "effnet-lite2 ms/photo", "effnet-lite2-stages ms/photo", "ratio"]
    print(
        f"{len(photos)} im2gps photos, ONNX Runtime, interleaved; median per photo; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(markdown_table(rows, cols))


if __name__ == "__main__":
    main()
