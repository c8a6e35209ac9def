"""Photo-to-photo distance (`geoscout compare`) on pairs of held-out Street View views.

Pairs come from ../shared/data/streetview-panoramas (4 views side by side per file; none of its
photos is in the built-in model's training data): each strip is split into its 4 views and single
views are compared. Three kinds of pairs, drawn with a fixed seed:

- same location: view 1 and view 3 of one panorama (0 km apart);
- same country: view 1 of two panoramas in one country (country from lat/lon), at least 1 km apart;
- different continents: view 1 of two panoramas on different continents.

Printed: per true-distance bucket the median of the predicted medians, the share of pairs whose true
distance lies in the stated interval (coverage; nominal = the level), and how often retrieval answered;
for same country vs not, the AUC and the accuracy (at 0.5) of the same-country probability. The prior
to beat is the distance between two independent draws from the model's training locations (one
interval for every pair) and a constant same-country guess (AUC 0.5).

    nice python benchmarks/compare_distance.py [--pairs 80] [--level 0.8] [--seed 0] [-m geoscout-lite]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, need_shared

BUCKETS = ((0, 1), (1, 25), (25, 200), (200, 750), (750, 2500), (2500, 20040))


def _pairs(df, rng, n, apart):
    """(i, view_i, j, view_j, kind) rows."""
    out = [(int(i), 0, int(i), 2, "same location") for i in rng.choice(len(df), n, replace=False)]
    by_country = df.groupby("country").indices
    multi = [c for c, idx in by_country.items() if c is not None and len(idx) >= 2]
    weights = np.array([len(by_country[c]) for c in multi], float)
    while sum(k == "same country" for *_, k in out) < n:
        c = multi[int(rng.choice(len(multi), p=weights / weights.sum()))]
        i, j = rng.choice(by_country[c], 2, replace=False)
        if apart(i, j) >= 1.0:
            out.append((int(i), 0, int(j), 0, "same country"))
    while sum(k == "different continents" for *_, k in out) < n:
        i, j = rng.choice(len(df), 2, replace=False)
        if df.continent.iloc[i] and df.continent.iloc[j] and df.continent.iloc[i] != df.continent.iloc[j]:
            out.append((int(i), 0, int(j), 0, "different continents"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=80, help="pairs of each kind")
    ap.add_argument("--level", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-m", "--model", default="geoscout-lite")
    args = ap.parse_args()
    shared = need_shared()

    import pandas as pd

    from geoscout.geo import haversine_km
    from geoscout.locator import load_model, split_strip
    from geoscout.photo_distance import compare_embeddings, distance_distribution
    from geoscout.places import reverse_geocode

    root = shared / "data" / "streetview-panoramas"
    df = pd.read_csv(root / "manifest.csv")
    info = reverse_geocode(df.lat.to_numpy(), df.lon.to_numpy())
    df["country"], df["continent"] = list(info["country"]), list(info["continent"])

    def apart(i, j):
        return float(haversine_km(df.lat.iloc[i], df.lon.iloc[i], df.lat.iloc[j], df.lon.iloc[j]))

    rng = np.random.default_rng(args.seed)
    pairs = _pairs(df, rng, args.pairs, apart)

    t0 = time.perf_counter()
    loc = load_model(args.model)
    needed = sorted({(i, v) for i, vi, j, vj, _ in pairs for (i, v) in ((i, vi), (j, vj))})
    views = {}
    for i in sorted({i for i, _ in needed}):
        parts = split_strip(root / df.path.iloc[i], 4)
        for v in (0, 2):
            if (i, v) in needed:
                views[(i, v)] = parts[v]
    keys = list(views)
    X, failures = loc.embed([views[k] for k in keys])
    if failures:
        raise SystemExit(f"{len(failures)} views failed to embed: {list(failures.values())[:3]}")
    row = {k: n for n, k in enumerate(keys)}
    t_embed = time.perf_counter() - t0
    ia = [row[(i, vi)] for i, vi, *_ in pairs]
    ib = [row[(j, vj)] for _, _, j, vj, _ in pairs]
    t1 = time.perf_counter()
    comps = compare_embeddings(loc, X[ia], X[ib], level=args.level, seed=args.seed)
    t_compare = time.perf_counter() - t1

    true_d = np.array([apart(i, j) for i, _, j, _, _ in pairs])
    same_c = np.array(
        [df.country.iloc[i] == df.country.iloc[j] and df.country.iloc[i] is not None for i, _, j, _, _ in pairs]
    )
    kinds = np.array([k for *_, k in pairs])
    med = np.array([c.distance.median_km for c in comps])
    lo = np.array([c.distance.low_km for c in comps])
    hi = np.array([c.distance.high_km for c in comps])
    cover = (true_d >= lo) & (true_d <= hi)
    has_r = np.array([c.retrieval is not None for c in comps])
    r_cover = np.array(
        [c.retrieval is not None and c.retrieval.low_km <= d <= c.retrieval.high_km for c, d in zip(comps, true_d)]
    )
    p_same = np.array([c.same_country for c in comps])

    # the prior: two independent draws from the model's training locations (one interval for every pair)
    ref = getattr(loc, "_refiner", None)
    prior = None
    if ref is not None:
        w = np.full(len(ref.lat), 1.0 / len(ref.lat))
        prior = distance_distribution(ref.lat, ref.lon, w, ref.lat, ref.lon, w, level=args.level)
        prior_cover = (true_d >= prior.low_km) & (true_d <= prior.high_km)

    rows = []
    for a, b in BUCKETS:
        m = (true_d >= a) & (true_d < b)
        if not m.any():
            continue
        r = {
            "true distance": f"{a:,}-{b:,} km",
            "pairs": int(m.sum()),
            "true median km": float(np.median(true_d[m])),
            "predicted median km (median)": float(np.median(med[m])),
            f"{args.level:.0%} interval covers truth": f"{cover[m].mean():.0%}",
            "retrieval used": f"{has_r[m].mean():.0%}",
            "retrieval interval covers": f"{r_cover[m].sum() / max(has_r[m].sum(), 1):.0%}" if has_r[m].any() else "-",
        }
        if prior is not None:
            r["prior interval covers"] = f"{prior_cover[m].mean():.0%}"
        rows.append(r)
    by_kind = []
    for k in ("same location", "same country", "different continents"):
        m = kinds == k
        by_kind.append(
            {
                "pair kind": k,
                "pairs": int(m.sum()),
                "true median km": float(np.median(true_d[m])),
                "predicted median km (median)": float(np.median(med[m])),
                "interval covers": f"{cover[m].mean():.0%}",
                "mean P(same country)": float(p_same[m].mean()),
            }
        )

    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    rho = float(spearmanr(true_d, med).statistic)
    auc = float(roc_auc_score(same_c, p_same))
    acc = float(((p_same >= 0.5) == same_c).mean())
    base_acc = float(max(same_c.mean(), 1 - same_c.mean()))
    print(
        f"# compare_distance: model {loc.name}, {len(pairs)} pairs of single views from streetview-panoramas (held out), seed {args.seed}"
    )
    print(f"embedding {len(keys)} views: {t_embed:.1f} s; comparing {len(pairs)} pairs: {t_compare:.2f} s")
    if prior is not None:
        print(
            f"prior (two draws from the {len(ref.lat)} training locations): median {prior.median_km:,.0f} km, "
            f"{args.level:.0%} interval {prior.low_km:,.0f}-{prior.high_km:,.0f} km"
        )
    print()
    print(markdown_table(rows))
    print()
    print(markdown_table(by_kind))
    print()
    print(
        f"overall: interval coverage {cover.mean():.0%} (nominal {args.level:.0%})"
        + (f", prior's {prior_cover.mean():.0%}" if prior is not None else "")
        + f"; Spearman(true distance, predicted median) = {rho:.3f}"
    )
    print(
        f"same country (true {int(same_c.sum())} of {len(pairs)} pairs): AUC {auc:.3f} (constant guess 0.5), "
        f"accuracy at 0.5 {acc:.1%} (majority class {base_acc:.1%})"
    )
    print(f"retrieval answered for {has_r.mean():.0%} of pairs (near-similarity {comps[0].near_similarity})")


if __name__ == "__main__":
    main()
