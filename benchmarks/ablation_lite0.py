"""The EfficientNet-Lite0 + Lite2 row of the world-wide ablation alone (for when the Lite0 feature cache was
filled after ``python benchmarks/ablation.py`` ran; same splits, seed and recipe, so its numbers sit beside
that run's rows). Prints the row and today's features' validation score from the same run for comparison.

    python benchmarks/feature_cache.py --variant lite0
    python benchmarks/ablation_lite0.py [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _world16 import TRAIN_SETS, load_views
from ablation_world import lite0_lite2_row, onnx_ms_per_photo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    t0 = time.perf_counter()
    v = load_views(TRAIN_SETS, kind="mean", seed=args.seed)
    im2 = load_views(["im2gps"], kind="mean", seed=args.seed)
    ms = onnx_ms_per_photo()
    row = lite0_lite2_row(v, im2, ms, seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    if row is None:
        raise SystemExit(1)
    name, val, pano, im, note = row
    print(
        f"| {name} | {val['geoguessr']:.0f} | {pano['geoguessr']:.0f} | {pano['median_km']:.0f} | "
        f"{im['geoguessr']:.0f} | {im['median_km']:.0f} | {note} |"
    )
    print(f"({(time.perf_counter() - t0) / 60:.1f} min)", file=sys.stderr)


if __name__ == "__main__":
    main()
