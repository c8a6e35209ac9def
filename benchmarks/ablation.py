"""Ablation of geoscout's training recipe, in the style of PIGEON's Table 1.

First the world-wide section (issue 16, ``ablation_world.py``): features, panorama handling, guess rule and
calibration of the default model on the feature cache of ``feature_cache.py``, with the goals printed
(held-out fifth of the panoramas >= 1.3x the training-centroid prior and >= 1.1x 1-NN; im2gps above both).
Then the recipe section below (``--world-only`` skips it).

Train on streetview-croatia (train locations only), streetview-world, streetview-strips (each
2560x512 strip embedded whole) and osv5m-sample; test on ../shared/data/im2gps and on held-out
Croatia locations (location-grouped split: all 4 views of a test panorama are unseen). Every
row uses the same EfficientNet-Lite2 features, embedded once into the cached EmbeddingStores.
Model selection uses only a location-grouped validation split of the training data; the
test photos are never used for tuning.

    python benchmarks/ablation.py [--seed 0] [--no-write] [--world-only]

Prints the tables and writes them into benchmarks/RESULTS.md (sections "World-wide default model" and "Ablation").
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED

TRAIN_SETS = ("streetview-croatia", "streetview-world", "streetview-strips", "osv5m-sample")
BACKBONE = "effnet-lite2"
METRICS = ("acc@1km", "acc@25km", "acc@200km", "acc@750km", "acc@2500km", "median_km", "geoguessr", "country_acc")
SECTION = "## Ablation (benchmarks/ablation.py)"


def load_all(progress: bool, cached_only: bool):
    """TrainingData per shared set (embedding is resumable and cached)."""
    from geoscout.train import load_training_data

    out = {}
    for name in (*TRAIN_SETS, "im2gps"):
        t = time.perf_counter()
        out[name] = load_training_data(
            [SHARED / "data" / name], backbone=BACKBONE, progress=progress, embed_missing=not cached_only
        )
        print(f"  {name}: {len(out[name])} embeddings ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    return out


def metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from geoscout.evaluate import distance_metrics
    from geoscout.geo import haversine_km
    from geoscout.places import country_of

    m = distance_metrics(haversine_km(pred[:, 0], pred[:, 1], truth[:, 0], truth[:, 1]))
    cp, ct = country_of(pred[:, 0], pred[:, 1]), country_of(truth[:, 0], truth[:, 1])
    m["country_acc"] = float(np.mean([a is not None and a == b for a, b in zip(cp, ct)]))
    return m


def fmt_row(name: str, m: dict[str, float] | None, note: str = "") -> str:
    if m is None:
        return f"| {name} | " + " | ".join("—" for _ in METRICS) + f" | {note} |"
    cells = []
    for k in METRICS:
        v = m[k]
        cells.append(f"{v:.0f}" if k in ("median_km", "geoguessr") else f"{100 * v:.1f}")
    return f"| {name} | " + " | ".join(cells) + f" | {note} |"


def header(title: str, n: int) -> list[str]:
    return [
        f"**{title}** (n = {n})",
        "",
        "| method | acc@1km % | acc@25km % | acc@200km % | acc@750km % | acc@2500km % | median km | GeoGuessr | country % | note |",
        "|---" * (len(METRICS) + 2) + "|",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="use only images already in the embedding stores (skip embedding the rest)",
    )
    ap.add_argument("--world-only", action="store_true", help="run only the world-wide section (issue 16)")
    ap.add_argument(
        "--compare",
        metavar="DIR",
        action="append",
        default=[],
        help="a bundle folder (e.g. a retrained candidate) judged beside the shipped one: rows, calibration, goals "
        "(repeatable)",
    )
    ap.add_argument(
        "--compare-label", action="append", default=[], help="how the tables name each --compare (default: its path)"
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)

    from ablation_world import SECTION as WORLD_SECTION
    from ablation_world import run as run_world

    world_text, _ = run_world(
        args.seed, log=lambda s: print(s, file=sys.stderr), compare=args.compare, compare_labels=args.compare_label
    )
    print(world_text)
    if not args.no_write:
        _write_section(WORLD_SECTION, world_text)
    if args.world_only:
        return

    from geoscout.cells import create_partition
    from geoscout.data import split_dataset
    from geoscout.geo import spherical_mean
    from geoscout.heads import create_head, list_heads
    from geoscout.heads._torch import available_cores

    t_start = time.perf_counter()
    print("embedding / loading stores ...", file=sys.stderr)
    data = load_all(progress=not args.quiet, cached_only=args.cached_only)

    # --- held-out Croatia locations: location-grouped split of the full manifest, 80 % train / 20 % test
    from geoscout.data import load_dataset

    full = load_dataset(SHARED / "data" / "streetview-croatia").frame
    full_split = split_dataset(full, fractions=(0.8, 0.0, 0.2), seed=args.seed).to_numpy()
    test_locs = {"streetview-croatia/" + str(v) for v in full["location_id"].to_numpy()[full_split == "test"]}
    cro = data["streetview-croatia"]
    is_test = cro.frame["location_id"].isin(test_locs).to_numpy()
    cro_tr, cro_te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    assert not set(cro.frame["location_id"].iloc[cro_tr]) & set(cro.frame["location_id"].iloc[cro_te])

    parts_X = [cro.X[cro_tr]] + [data[n].X for n in TRAIN_SETS[1:]]
    parts_y = [cro.y[cro_tr]] + [data[n].y for n in TRAIN_SETS[1:]]
    parts_g = [cro.frame["location_id"].to_numpy()[cro_tr]] + [
        data[n].frame["location_id"].to_numpy() for n in TRAIN_SETS[1:]
    ]
    X, y, groups = np.concatenate(parts_X), np.concatenate(parts_y), np.concatenate(parts_g)
    aux_dir = SHARED / "geo"

    test_sets = {
        "im2gps": (data["im2gps"].X, data["im2gps"].y),
        "croatia": (cro.X[cro_te], cro.y[cro_te]),
    }
    # panorama fusion: mean of the 4 view embeddings of each held-out Croatia location
    loc = cro.frame["location_id"].to_numpy()[cro_te]
    uniq, inv = np.unique(loc, return_inverse=True)
    pano_X = np.zeros((len(uniq), cro.X.shape[1]), np.float32)
    np.add.at(pano_X, inv, cro.X[cro_te])
    pano_X /= np.linalg.norm(pano_X, axis=1, keepdims=True)
    pano_y = np.zeros((len(uniq), 2))
    pano_y[inv] = cro.y[cro_te]

    n_sets = {n: len(data[n]) for n in data}
    print(
        f"train: {len(X)} images ({len(set(groups))} locations); test: im2gps {len(test_sets['im2gps'][1])}, "
        f"Croatia {len(cro_te)} views of {len(uniq)} held-out locations; {available_cores()} cores",
        file=sys.stderr,
    )

    results: list[tuple[str, dict[str, dict[str, float] | None], str]] = []

    class Refined:
        """A head plus the Locator's refinement step, with ``predict`` = the refined top-1 coordinate."""

        def __init__(self, head, partition, X_train, y_train, method: str) -> None:
            from geoscout.bundle import RetrievalData
            from geoscout.locator import Locator, RefineConfig

            ret = RetrievalData(
                vectors=X_train.astype(np.float16),
                lat=y_train[:, 0],
                lon=y_train[:, 1],
                cell=partition.assign(y_train[:, 0], y_train[:, 1]),
            )
            self.locator = Locator(
                None,
                head,
                partition=partition,
                retrieval=ret,
                refine=RefineConfig(method=method),
                geocode=False,
                heatmap_points=0,
            )

        def predict(self, Xt):
            preds = self.locator.locate_embeddings(Xt, [str(i) for i in range(len(Xt))], top_k=1)
            return np.array([[p.candidates[0].lat, p.candidates[0].lon] for p in preds])

    def evaluate(name: str, head, note: str = "") -> None:
        res = {k: metrics(head.predict(Xt), yt) for k, (Xt, yt) in test_sets.items()}
        results.append((name, res, note))
        print(
            f"{name:45s} im2gps GeoGuessr {res['im2gps']['geoguessr']:.0f} | Croatia GeoGuessr "
            f"{res['croatia']['geoguessr']:.0f}, median {res['croatia']['median_km']:.0f} km",
            file=sys.stderr,
        )

    # training-centroid prior
    clat, clon = spherical_mean(y[:, 0], y[:, 1])
    results.append(
        (
            "training-centroid prior",
            {k: metrics(np.tile([clat, clon], (len(yt), 1)), yt) for k, (_, yt) in test_sets.items()},
            "",
        )
    )

    evaluate("1-NN retrieval", create_head("knn", k=1).fit(X, y))

    partitions = {}
    for spec in ("geohash:2", "country", "semantic"):
        partitions[spec] = create_partition(spec).fit(y[:, 0], y[:, 1])
    common = {"seed": args.seed, "epochs": 40, "patience": 6}

    def fit(head_name: str, spec: str, **kw):
        t = time.perf_counter()
        h = create_head(head_name, **{**common, **kw})
        fit_kw = {"partition": partitions[spec], "groups": groups}
        h.fit(X, y, **fit_kw)
        h.fit_seconds_ = time.perf_counter() - t
        return h

    for spec in ("geohash:2", "country", "semantic"):
        h = fit("classifier", spec, tau=0.0)
        evaluate(f"classification, {spec} ({partitions[spec].n_cells} cells)", h, f"{h.fit_seconds_:.0f} s")
    h = fit("classifier", "semantic", tau=75.0)
    evaluate("+ haversine label smoothing (τ = 75 km)", h, f"{h.fit_seconds_:.0f} s")
    # PIGEON's refinement inside the top cells, on top of the label-smoothed classifier (geoscout-lite's recipe)
    for method, label in (
        ("retrieval", "+ retrieval refinement (k = 8 nearest training images, top 5 cells)"),
        ("protonet", "+ ProtoNet refinement (OPTICS prototypes per cell)"),
    ):
        evaluate(label, Refined(h, partitions["semantic"], X, y, method), "1000 km guard")
    h = fit("hybrid", "semantic", tau=75.0)
    evaluate("+ hybrid head (cell + offset)", h, f"{h.fit_seconds_:.0f} s")
    mt = fit("multitask", "semantic", tau=75.0, aux_dir=str(aux_dir))
    evaluate("+ multi-task (climate, elevation, population)", mt, f"{mt.fit_seconds_:.0f} s")
    pano = {"im2gps": None, "croatia": metrics(mt.predict(pano_X), pano_y)}
    results.append(
        ("+ panorama fusion (mean of 4 views)", pano, f"Croatia: {len(uniq)} panoramas; im2gps has no panoramas")
    )

    if "contrastive" in list_heads():
        t = time.perf_counter()
        try:
            ch = create_head("contrastive", seed=args.seed).fit(X, y, groups=groups)
            evaluate("GeoCLIP-style contrastive (ours)", ch, f"{time.perf_counter() - t:.0f} s")
        except Exception as exc:  # report, do not hide
            results.append(
                ("GeoCLIP-style contrastive (ours)", {"im2gps": None, "croatia": None}, f"failed: {exc}"[:120])
            )
    else:
        results.append(
            ("GeoCLIP-style contrastive (ours)", {"im2gps": None, "croatia": None}, "head not in this checkout")
        )

    elapsed = time.perf_counter() - t_start
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/ablation.py --seed {args.seed}{' --cached-only' if args.cached_only else ''}` ({elapsed / 60:.1f} min on {available_cores()} shared CPU cores, "
        f"embedding from cache). Backbone `{BACKBONE}` (ImageNet weights, no geo fine-tuning) for every row.",
        f"Training: {len(X)} images of {len(set(groups))} locations (streetview-croatia train locations: {len(cro_tr)} views, "
        f"streetview-world {n_sets['streetview-world']}, streetview-strips {n_sets['streetview-strips']} embedded whole, "
        f"osv5m-sample {n_sets['osv5m-sample']}); early stopping on a 10 % location-grouped validation split of "
        "the training data. Heads: MLP (512 hidden), AdamW, seed fixed. Country accuracy: point-in-polygon of prediction "
        "and truth. Numbers near the geographic prior are expected with ImageNet features and so few training photos; "
        "the Croatian test set shares its country with part of the training data, im2gps does not.",
        "",
    ]
    for key, title, n in (
        ("im2gps", "Test: im2gps", len(test_sets["im2gps"][1])),
        ("croatia", "Test: held-out Croatia locations, single views", len(cro_te)),
    ):
        lines += header(title, n)
        for name, res, note in results:
            lines.append(fmt_row(name, res.get(key), note))
        lines.append("")
    lines.append(f"Panorama fusion row on Croatia is per location (n = {len(uniq)}).")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        _write_section(SECTION, text)


def _write_section(section: str, text: str) -> None:
    """Replace ``section`` in RESULTS.md (up to the next section or marker) or append it."""
    from geoscout._io import atomic_write_text

    path = ROOT / "benchmarks" / "RESULTS.md"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pat = re.compile(re.escape(section) + r".*?(?=\n## |\n<!-- |\Z)", re.S)  # stop at the next section or marker
    new = pat.sub(lambda _: text.rstrip() + "\n", old) if pat.search(old) else old.rstrip() + "\n\n" + text
    atomic_write_text(path, new)
    print(f"updated {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
