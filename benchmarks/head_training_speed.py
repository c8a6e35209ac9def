"""How fast do the trainable heads fit a 100k x 1280 training set on this machine's CPU cores?

Synthetic but learnable data: 100,000 embeddings of dimension 1280 (EfficientNet-Lite2's)
drawn around 400 random prototypes, each tied to a random place on Earth; the partition is
``grid:5`` fitted on the training points. Reports seconds per epoch and examples per second
for each head with its default architecture (MLP, 512 hidden), label smoothing on.

    python benchmarks/head_training_speed.py [--n 100000] [--epochs 2] [--heads classifier,hybrid,multitask]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--heads", default="classifier,hybrid,multitask")
    args = ap.parse_args()

    from geoscout.cells import create_partition
    from geoscout.geo import haversine_km
    from geoscout.heads import create_head
    from geoscout.heads._torch import available_cores

    rng = np.random.default_rng(0)
    k = 400
    places = np.column_stack([rng.uniform(-55, 70, k), rng.uniform(-180, 180, k)])
    lab = rng.integers(0, k, args.n)
    y = np.clip(places[lab] + rng.normal(0, 1.0, (args.n, 2)), [-89, -180], [89, 179.999])
    X = rng.normal(0, 1, (k, args.dim)).astype(np.float32)[lab] + rng.normal(0, 1.0, (args.n, args.dim)).astype(
        np.float32
    )
    n_val = args.n // 20
    part = create_partition("grid:5").fit(y[n_val:, 0], y[n_val:, 1])
    aux = {
        "climate": np.array(["Af", "BWh", "Cfb", "Dfc"], dtype=object)[lab % 4],
        "elevation_m": (lab % 50) * 40.0,
        "pop_density": (lab % 30) * 10.0,
    }
    print(
        f"{args.n - n_val} train + {n_val} val embeddings x {args.dim}, {part.n_cells} cells, "
        f"{available_cores()} cores, {args.epochs} epochs",
        flush=True,
    )
    print("| head | seconds / epoch | train examples / s | val GeoGuessr | val median km |")
    print("|---|---|---|---|---|")
    for name in args.heads.split(","):
        h = create_head(name, epochs=args.epochs, seed=0, patience=args.epochs)
        kw = {"partition": part, "X_val": X[:n_val], "y_val": y[:n_val]}
        if name == "multitask":
            kw["aux"] = {c: v[n_val:] for c, v in aux.items()}
        t = time.perf_counter()
        h.fit(X[n_val:], y[n_val:], **kw)
        sec = time.perf_counter() - t
        p = h.predict(X[:n_val])
        d = haversine_km(p[:, 0], p[:, 1], y[:n_val, 0], y[:n_val, 1])
        per_epoch = sec / h.history_["epochs_run"]
        print(
            f"| {name} | {per_epoch:.1f} | {(args.n - n_val) / per_epoch:,.0f} | "
            f"{np.mean(5000 * np.exp(-d / 1492.7)):.0f} | {np.median(d):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
