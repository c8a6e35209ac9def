"""Embedding throughput on real photos, all numbers from one run on the same images.

Prints, for a backbone (default effnet-lite2):
  - decode+preprocess images/s (Pillow/numpy, all worker threads),
  - forward-only images/s with the batch already in memory (torch eager and ONNX Runtime): the bound,
  - `embed_dataset` end-to-end images/s (decode in worker threads + forward + store commits), torch and ONNX,
  - the ratios end-to-end / bound (goal >= 0.9) and ONNX / torch (goal >= 1.3), and the peak RSS.

    python benchmarks/embed_throughput.py [--n 256] [--dataset ../shared/data/streetview-croatia]

The CPU may be shared with other jobs: compare ratios taken in one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="number of images")
    ap.add_argument(
        "--dataset", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/streetview-croatia")
    )
    ap.add_argument("--backbone", default="effnet-lite2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import pandas as pd
    import torch

    from geoscout.backbones import create_backbone
    from geoscout.backbones.base import cpu_threads
    from geoscout.data import import_csv
    from geoscout.embeddings import _decode, embed_dataset
    from geoscout.imageio import DEFAULT_MAX_PIXELS

    src = Path(args.dataset)
    if not (src / "manifest.csv").is_file():
        print(f"needs {src}/manifest.csv (a folder of real photos)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="geoscout-bench-"))
    os.environ.setdefault("GEOSCOUT_HOME", str(tmp / "home"))  # fresh ONNX export unless the caller set a cache
    try:
        man = pd.read_csv(src / "manifest.csv").head(args.n)
        man["path"] = [str((src / p).resolve()) for p in man["path"]]
        man.to_csv(tmp / "manifest.csv", index=False)
        ds = import_csv(tmp / "manifest.csv").dataset
        n = len(ds)
        paths = ds.image_paths()
        print(
            f"{n} images from {src} | backbone {args.backbone} | batch {args.batch_size} | "
            f"{args.workers} decode threads | {cpu_threads()} CPU cores | torch threads {torch.get_num_threads()}"
        )

        bb_t = create_backbone(args.backbone)
        bb_o = create_backbone(args.backbone, runtime="onnx")

        # decode + preprocess alone (threads, like embed_dataset)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            t_dec = timed(lambda: list(pool.map(lambda p: _decode(p, bb_t, DEFAULT_MAX_PIXELS), paths)))
        arrays = [_decode(p, bb_t, DEFAULT_MAX_PIXELS) for p in paths[: args.batch_size]]
        batch = np.stack([a for a in arrays if not isinstance(a, str)])
        reps = max(1, n // len(batch))

        def forward(bb):
            bb.forward_features(batch[:2])  # warm-up
            t = timed(lambda: [bb.forward_features(batch) for _ in range(reps)])
            return reps * len(batch) / t

        fwd_t, fwd_o = forward(bb_t), forward(bb_o)

        def e2e(bb, name):
            out = tmp / f"store-{name}"
            t = time.perf_counter()
            s = embed_dataset(ds, bb, out, batch_size=args.batch_size, workers=args.workers, progress=False)
            dt = time.perf_counter() - t
            assert len(s) + len(s.failures) == n
            return n / dt

        e2e_t, e2e_o = e2e(bb_t, "torch"), e2e(bb_o, "onnx")
        dec = n / t_dec
        print(f"decode+preprocess only          {dec:8.1f} images/s")
        print(f"forward only, torch eager       {fwd_t:8.1f} images/s   (bound for torch)")
        print(f"forward only, ONNX Runtime      {fwd_o:8.1f} images/s   (bound for onnx)")
        print(
            f"embed_dataset end-to-end, torch {e2e_t:8.1f} images/s   = {e2e_t / fwd_t:.2f} x its bound (goal >= 0.9)"
        )
        print(
            f"embed_dataset end-to-end, onnx  {e2e_o:8.1f} images/s   = {e2e_o / fwd_o:.2f} x its bound (goal >= 0.9)"
        )
        print(f"ONNX / torch: forward {fwd_o / fwd_t:.2f} x, end-to-end {e2e_o / e2e_t:.2f} x (goal >= 1.3)")
        print(f"peak RSS {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
